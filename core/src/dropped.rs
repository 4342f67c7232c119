//! Vector's `metadata.dropped` annotation on events a component could not process or
//! deliver: what a dead-letter consumer (a file, another sink) reads to know why.

use vrl::value::{KeyString, ObjectMap, Value};

use crate::metrics::ComponentKind;

/// At most this much of a peer's response body is kept in an annotation.
pub const MAX_RESPONSE_BODY: usize = 4096;

/// The field the annotation goes under, as in Vector's legacy log namespace.
const METADATA_KEY: &str = "metadata";
/// Where the annotation goes when the event already has a non-object `metadata` field,
/// so that field survives.
const FALLBACK_KEY: &str = "siemflow_metadata";

/// The peer's answer that made an event undeliverable, bounded in size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DroppedResponse {
    /// HTTP status.
    pub status: u16,
    /// The body as text (lossy UTF-8), cut at [`MAX_RESPONSE_BODY`] bytes on a character
    /// boundary.
    pub body: String,
}

impl DroppedResponse {
    /// Keeps a bounded, printable copy of a response body.
    pub fn new(status: u16, body: &[u8]) -> Self {
        let cut = &body[..body.len().min(MAX_RESPONSE_BODY)];
        let mut text = String::from_utf8_lossy(cut).into_owned();
        if body.len() > MAX_RESPONSE_BODY {
            // A cut may split a multi-byte character into U+FFFD: keep the text honest.
            while text.len() > MAX_RESPONSE_BODY {
                text.pop();
            }
            text.push('…');
        }
        DroppedResponse { status, body: text }
    }
}

/// What the annotation says.
#[derive(Debug, Clone)]
pub struct Dropped<'a> {
    /// A short word: `error`, `abort` (remap), `rejected`, `too_large` (sinks)...
    pub reason: &'a str,
    /// What went wrong, for people.
    pub message: &'a str,
    /// The component that gave up on the event.
    pub component_id: &'a str,
    /// Its plugin `type`.
    pub component_type: &'a str,
    /// Its kind.
    pub component_kind: ComponentKind,
    /// The peer's response, for a sink.
    pub response: Option<&'a DroppedResponse>,
}

/// Adds `metadata.dropped = { reason, message, component_id, component_type,
/// component_kind[, response = { status, body }] }`.
///
/// A non-object body is kept whole under `message`; an existing non-object `metadata`
/// field is kept, the annotation then going under `siemflow_metadata`.
pub fn annotate(value: &mut Value, dropped: &Dropped<'_>) {
    let mut fields = ObjectMap::new();
    fields.insert("reason".into(), dropped.reason.into());
    fields.insert("message".into(), dropped.message.into());
    fields.insert("component_id".into(), dropped.component_id.into());
    fields.insert("component_type".into(), dropped.component_type.into());
    fields.insert(
        "component_kind".into(),
        dropped.component_kind.as_str().into(),
    );
    if let Some(response) = dropped.response {
        let mut object = ObjectMap::new();
        object.insert("status".into(), Value::Integer(i64::from(response.status)));
        object.insert("body".into(), response.body.as_str().into());
        fields.insert("response".into(), Value::Object(object));
    }
    let annotation = Value::Object(fields);

    if !value.is_object() {
        let body = std::mem::replace(value, Value::Null);
        let mut object = ObjectMap::new();
        object.insert("message".into(), body);
        *value = Value::Object(object);
    }
    let Value::Object(object) = value else {
        return;
    };
    let key = match object.get(METADATA_KEY) {
        None | Some(Value::Object(_)) => METADATA_KEY,
        Some(_) => FALLBACK_KEY,
    };
    let metadata = object
        .entry(KeyString::from(key))
        .or_insert_with(|| Value::Object(ObjectMap::new()));
    match metadata {
        Value::Object(fields) => {
            fields.insert("dropped".into(), annotation);
        }
        other => {
            // Only reachable when the fallback key holds a non-object: keep both.
            let previous = std::mem::replace(other, Value::Null);
            let mut fields = ObjectMap::new();
            fields.insert("previous".into(), previous);
            fields.insert("dropped".into(), annotation);
            *other = Value::Object(fields);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink_drop(response: Option<&DroppedResponse>) -> Dropped<'_> {
        Dropped {
            reason: "rejected",
            message: "HEC code 6: Invalid data format",
            component_id: "splunk",
            component_type: "splunk_hec",
            component_kind: ComponentKind::Sink,
            response,
        }
    }

    fn json(value: &Value) -> serde_json::Value {
        serde_json::to_value(value).expect("json")
    }

    #[test]
    fn annotates_with_the_response() {
        let response = DroppedResponse::new(400, br#"{"text":"Invalid data format","code":6}"#);
        let mut value: Value = serde_json::json!({"Id": "1", "metadata": {"tag": "x"}}).into();
        annotate(&mut value, &sink_drop(Some(&response)));
        let out = json(&value);
        assert_eq!(out["Id"], "1");
        assert_eq!(out["metadata"]["tag"], "x");
        let dropped = &out["metadata"]["dropped"];
        assert_eq!(dropped["reason"], "rejected");
        assert_eq!(dropped["component_kind"], "sink");
        assert_eq!(dropped["component_type"], "splunk_hec");
        assert_eq!(dropped["response"]["status"], 400);
        assert_eq!(
            dropped["response"]["body"],
            r#"{"text":"Invalid data format","code":6}"#
        );
    }

    #[test]
    fn keeps_odd_bodies_and_metadata() {
        let mut bare: Value = "just text".into();
        annotate(&mut bare, &sink_drop(None));
        let out = json(&bare);
        assert_eq!(out["message"], "just text");
        assert!(out["metadata"]["dropped"].get("response").is_none());

        let mut clash: Value = serde_json::json!({"metadata": 5}).into();
        annotate(&mut clash, &sink_drop(None));
        let out = json(&clash);
        assert_eq!(out["metadata"], 5);
        assert_eq!(out["siemflow_metadata"]["dropped"]["reason"], "rejected");
    }

    #[test]
    fn response_bodies_are_bounded() {
        let body = "é".repeat(MAX_RESPONSE_BODY);
        let response = DroppedResponse::new(500, body.as_bytes());
        assert!(response.body.len() <= MAX_RESPONSE_BODY + '…'.len_utf8());
        assert!(response.body.ends_with('…'));
        assert_eq!(DroppedResponse::new(400, b"short").body, "short");
    }
}
