//! Blobs into events: one event per audit record, untouched, plus the `siemflow`
//! metadata object and a `RecordTypeName` (reference 1.8).

use chrono::{DateTime, Utc};
use siemflow_core::event::Event;
use siemflow_core::{ObjectMap, Value};

use crate::microsoft::record_type_name;

/// The metadata object every event carries.
pub(crate) const METADATA_FIELD: &str = "siemflow";

/// The name added beside `RecordType`.
pub(crate) const RECORD_TYPE_NAME: &str = "RecordTypeName";

/// Where a blob came from.
#[derive(Debug, Clone)]
pub(crate) struct BlobOrigin {
    pub tenant_id: String,
    pub content_type: String,
    pub content_id: String,
    pub content_created: DateTime<Utc>,
    pub fetched_at: DateTime<Utc>,
}

impl BlobOrigin {
    fn metadata(&self) -> Value {
        let mut meta = ObjectMap::new();
        meta.insert("tenant_id".into(), Value::from(self.tenant_id.as_str()));
        meta.insert(
            "content_type".into(),
            Value::from(self.content_type.as_str()),
        );
        meta.insert("content_id".into(), Value::from(self.content_id.as_str()));
        meta.insert(
            "content_created".into(),
            Value::Timestamp(self.content_created),
        );
        meta.insert("fetched_at".into(), Value::Timestamp(self.fetched_at));
        Value::Object(meta)
    }
}

/// A decoded blob.
#[derive(Debug, Default)]
pub(crate) struct DecodedBlob {
    /// One per record, in blob order.
    pub events: Vec<Event>,
    /// Array entries that were not objects (kept as `message` events).
    pub not_objects: usize,
    /// The body was not a JSON array (kept whole as one `message` event).
    pub not_an_array: Option<String>,
}

/// Decodes a blob body. Nothing is dropped: an entry that is not an object, or a body
/// that is not a JSON array, becomes a `message` event and is counted by the caller.
pub(crate) fn decode_blob(body: &[u8], origin: &BlobOrigin) -> DecodedBlob {
    let mut decoded = DecodedBlob::default();
    if body.iter().all(u8::is_ascii_whitespace) {
        // Documented: an empty body means "nothing".
        return decoded;
    }
    let items = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(items)) => items,
        Ok(_) => {
            decoded.not_an_array = Some("the blob is JSON but not an array".into());
            decoded.events.push(message_event(body, origin));
            return decoded;
        }
        Err(e) => {
            decoded.not_an_array = Some(format!("the blob is not JSON: {e}"));
            decoded.events.push(message_event(body, origin));
            return decoded;
        }
    };
    let metadata = origin.metadata();
    decoded.events.reserve(items.len());
    for item in items {
        match item {
            Value::Object(mut record) => {
                if let Some(name) = record.get("RecordType").and_then(record_type_name)
                    && !record.contains_key(RECORD_TYPE_NAME)
                {
                    record.insert(RECORD_TYPE_NAME.into(), Value::from(name));
                }
                record.insert(METADATA_FIELD.into(), metadata.clone());
                decoded.events.push(Event::from_object(record));
            }
            other => {
                decoded.not_objects += 1;
                let text = serde_json::to_string(&other).unwrap_or_default();
                let mut event = Event::from_message(text);
                if let Some(object) = event.value.as_object_mut() {
                    object.insert(METADATA_FIELD.into(), metadata.clone());
                }
                decoded.events.push(event);
            }
        }
    }
    decoded
}

fn message_event(body: &[u8], origin: &BlobOrigin) -> Event {
    let mut event = Event::from_message(String::from_utf8_lossy(body).into_owned());
    if let Some(object) = event.value.as_object_mut() {
        object.insert(METADATA_FIELD.into(), origin.metadata());
    }
    event
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> BlobOrigin {
        let at = DateTime::from_timestamp(1_790_000_000, 0).expect("time");
        BlobOrigin {
            tenant_id: "41463f53-8812-40f4-890f-865bf6e35190".into(),
            content_type: "Audit.General".into(),
            content_id: "a$b".into(),
            content_created: at,
            fetched_at: at,
        }
    }

    fn field<'a>(event: &'a Event, name: &str) -> Option<&'a Value> {
        event.value.as_object().and_then(|o| o.get(name))
    }

    #[test]
    fn records_are_kept_whole_with_metadata() {
        let body = br#"[{"Id":"1","RecordType":"40","CreationTime":"2026-09-01T10:07:00","Data":"{\"ts\":1}"},
                        {"Id":"2","RecordType":261,"Workload":"Copilot"}]"#;
        let decoded = decode_blob(body, &origin());
        assert_eq!(decoded.events.len(), 2);
        assert_eq!(decoded.not_objects, 0);
        let first = &decoded.events[0];
        assert_eq!(field(first, "RecordType"), Some(&Value::from("40")));
        assert_eq!(
            field(first, RECORD_TYPE_NAME),
            Some(&Value::from("SecurityComplianceAlerts"))
        );
        assert_eq!(field(first, "Data"), Some(&Value::from("{\"ts\":1}")));
        let meta = field(first, METADATA_FIELD)
            .and_then(Value::as_object)
            .expect("metadata");
        assert_eq!(meta.get("content_id"), Some(&Value::from("a$b")));
        assert_eq!(
            meta.get("content_type"),
            Some(&Value::from("Audit.General"))
        );
        assert!(matches!(
            meta.get("content_created"),
            Some(Value::Timestamp(_))
        ));
        let mut json = Vec::new();
        first.write_json(&mut json);
        let json: serde_json::Value = serde_json::from_slice(&json).expect("json");
        assert_eq!(
            json["siemflow"]["tenant_id"],
            "41463f53-8812-40f4-890f-865bf6e35190"
        );
        assert_eq!(
            field(&decoded.events[1], RECORD_TYPE_NAME),
            Some(&Value::from("CopilotInteraction"))
        );
    }

    #[test]
    fn odd_blobs_are_kept_and_counted() {
        let decoded = decode_blob(br#"[{"Id":"1"}, 42, "text"]"#, &origin());
        assert_eq!(decoded.events.len(), 3);
        assert_eq!(decoded.not_objects, 2);
        assert_eq!(
            field(&decoded.events[1], "message"),
            Some(&Value::from("42"))
        );
        let not_array = decode_blob(br#"{"error":"x"}"#, &origin());
        assert_eq!(not_array.events.len(), 1);
        assert!(not_array.not_an_array.is_some());
        assert_eq!(
            field(&not_array.events[0], "message"),
            Some(&Value::from(r#"{"error":"x"}"#))
        );
        let garbage = decode_blob(b"<html>oops", &origin());
        assert_eq!(garbage.events.len(), 1);
        assert!(garbage.not_an_array.is_some());
        assert!(decode_blob(b"  ", &origin()).events.is_empty());
        assert!(decode_blob(b"[]", &origin()).events.is_empty());
    }
}
