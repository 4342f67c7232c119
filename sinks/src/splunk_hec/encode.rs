//! One event to its HEC wire form: an `/event` envelope or a `/raw` line.

use chrono::{DateTime, Utc};
use siemflow_core::delivery::Rejection;
use siemflow_core::event_time::event_time;
use siemflow_core::template::Template;
use siemflow_core::{Event, Value};

use super::config::{EndpointTarget, SplunkHecSinkConfig};
use crate::encoding::write_json;

/// Builds envelopes (or raw lines) and the index each event goes to.
#[derive(Debug)]
pub(super) struct Encoder {
    target: EndpointTarget,
    index: Option<Template>,
    host: Option<String>,
    source: Option<String>,
    sourcetype: Option<String>,
    timestamp_field: String,
    fields: Vec<String>,
}

/// An encoded event and whether its index template lacked a field (it then goes to the
/// token's default index).
pub(super) struct Encoded {
    pub index: String,
    pub index_missing: bool,
}

impl Encoder {
    pub fn new(config: &SplunkHecSinkConfig) -> anyhow::Result<Self> {
        let index = match &config.index {
            Some(text) => Some(Template::parse(text).map_err(anyhow::Error::msg)?),
            None => None,
        };
        Ok(Encoder {
            target: config.endpoint_target,
            index,
            host: config.host.clone(),
            source: config.source.clone(),
            sourcetype: config.sourcetype.clone(),
            timestamp_field: config.timestamp_field.clone(),
            fields: config.fields.clone(),
        })
    }

    /// True when the index is rendered from event fields, so it can differ per event.
    pub fn index_has_fields(&self) -> bool {
        self.index.as_ref().is_some_and(Template::has_fields)
    }

    /// Appends the event's wire form to `out`; returns its index (empty: the default).
    pub fn encode(
        &self,
        event: &Event,
        out: &mut Vec<u8>,
        now: DateTime<Utc>,
    ) -> Result<Encoded, Rejection> {
        let (index, index_missing) = match &self.index {
            Some(template) => {
                let (index, missing) = template.render_path_or(event, now, "");
                (index, missing.is_some())
            }
            None => (String::new(), false),
        };
        match self.target {
            EndpointTarget::Raw => raw_line(event, out)?,
            EndpointTarget::Event => self.envelope(event, &index, out, now)?,
        }
        Ok(Encoded {
            index,
            index_missing,
        })
    }

    fn envelope(
        &self,
        event: &Event,
        index: &str,
        out: &mut Vec<u8>,
        now: DateTime<Utc>,
    ) -> Result<(), Rejection> {
        match &event.value {
            Value::Null => {
                return Err(Rejection::new(
                    "invalid_event",
                    "the event is empty (HEC code 12: event field is required)",
                ));
            }
            text if text.as_bytes().is_some_and(|b| b.is_empty()) => {
                return Err(Rejection::new(
                    "invalid_event",
                    "the event is an empty string (HEC code 13: event field cannot be blank)",
                ));
            }
            _ => {}
        }
        let object = event.value.as_object();
        let time = object
            .and_then(|o| o.get(self.timestamp_field.as_str()))
            .and_then(event_time)
            .unwrap_or(now);
        out.extend_from_slice(b"{\"time\":");
        out.extend_from_slice(epoch_seconds(time).as_bytes());
        for (key, value) in [
            ("host", self.host.as_deref()),
            ("source", self.source.as_deref()),
            ("sourcetype", self.sourcetype.as_deref()),
            ("index", (!index.is_empty()).then_some(index)),
        ] {
            if let Some(value) = value {
                out.extend_from_slice(b",\"");
                out.extend_from_slice(key.as_bytes());
                out.extend_from_slice(b"\":");
                write_json(out, &value);
            }
        }
        out.extend_from_slice(b",\"event\":");
        event.write_json(out);
        if let Some(object) = object {
            let mut first = true;
            for name in &self.fields {
                let Some(value) = object.get(name.as_str()) else {
                    continue;
                };
                let Some(value) = flat_field(value) else {
                    continue;
                };
                out.extend_from_slice(if first { b",\"fields\":{" } else { b"," });
                first = false;
                write_json(out, name);
                out.push(b':');
                write_json(out, &value);
            }
            if !first {
                out.push(b'}');
            }
        }
        out.push(b'}');
        Ok(())
    }
}

/// A `/raw` line: the `message` text, or the event as JSON.
fn raw_line(event: &Event, out: &mut Vec<u8>) -> Result<(), Rejection> {
    let message = event
        .value
        .as_object()
        .and_then(|o| o.get("message"))
        .and_then(Value::as_bytes)
        .or_else(|| event.value.as_bytes());
    match message {
        Some(bytes) => out.extend_from_slice(bytes),
        None => event.write_json(out),
    }
    if out.iter().all(u8::is_ascii_whitespace) {
        return Err(Rejection::new(
            "invalid_event",
            "the event has no text to send",
        ));
    }
    Ok(())
}

/// An index-time field value HEC accepts: a string, or an array of strings. Numbers and
/// booleans become text; objects and nested arrays become JSON text (HEC code 15 otherwise).
fn flat_field(value: &Value) -> Option<serde_json::Value> {
    let text = |v: &Value| -> Option<String> {
        match v {
            Value::Null => None,
            Value::Bytes(_) | Value::String(_) => v.to_str_lossy().map(|t| t.into_owned()),
            Value::Object(_) | Value::Array(_) => serde_json::to_string(v).ok(),
            other => Some(other.to_string_lossy().into_owned()),
        }
    };
    match value {
        Value::Array(items) => Some(serde_json::Value::Array(
            items
                .iter()
                .filter_map(text)
                .map(serde_json::Value::String)
                .collect(),
        )),
        other => text(other).map(serde_json::Value::String),
    }
}

/// Epoch seconds with the fraction HEC wants, e.g. `1767225600.123` (never milliseconds
/// as an integer, which lands 50,000 years ahead).
fn epoch_seconds(time: DateTime<Utc>) -> String {
    let micros = time.timestamp_subsec_micros();
    let seconds = time.timestamp();
    if micros.is_multiple_of(1000) {
        format!("{seconds}.{:03}", micros / 1000)
    } else {
        format!("{seconds}.{micros:06}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn config(extra: &str) -> SplunkHecSinkConfig {
        toml::from_str(&format!(
            "endpoint = \"http://127.0.0.1:8088\"\ntoken = \"t\"\n{extra}"
        ))
        .expect("config")
    }

    fn encode(encoder: &Encoder, value: serde_json::Value) -> (serde_json::Value, String) {
        let mut out = Vec::new();
        let now = Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("time");
        let encoded = encoder
            .encode(&Event::new(value.into()), &mut out, now)
            .expect("encodes");
        (serde_json::from_slice(&out).expect("json"), encoded.index)
    }

    #[test]
    fn envelope_with_time_metadata_and_fields() {
        let encoder = Encoder::new(&config(
            "index = \"m365_{{ .Workload }}\"\nsourcetype = \"o365:management:activity\"\nhost = \"shipper\"\nfields = [\"TenantId\", \"Tags\", \"Nested\"]",
        ))
        .expect("encoder");
        let (envelope, index) = encode(
            &encoder,
            serde_json::json!({
                "CreationTime": "2026-11-02T10:15:30.123",
                "Workload": "Exchange",
                "TenantId": "t-1",
                "Tags": ["a", 1],
                "Nested": {"x": 1}
            }),
        );
        assert_eq!(index, "m365_Exchange");
        assert_eq!(envelope["index"], "m365_Exchange");
        assert_eq!(envelope["host"], "shipper");
        assert_eq!(envelope["sourcetype"], "o365:management:activity");
        assert!(envelope.get("source").is_none());
        assert_eq!(envelope["time"].as_f64(), Some(1793614530.123));
        assert_eq!(envelope["event"]["Workload"], "Exchange");
        assert_eq!(envelope["fields"]["TenantId"], "t-1");
        assert_eq!(envelope["fields"]["Tags"], serde_json::json!(["a", "1"]));
        assert_eq!(envelope["fields"]["Nested"], "{\"x\":1}");
    }

    #[test]
    fn time_forms_and_fallback() {
        let encoder = Encoder::new(&config("timestamp_field = \"t\"")).expect("encoder");
        let time =
            |t: serde_json::Value| encode(&encoder, serde_json::json!({"t": t})).0["time"].clone();
        assert_eq!(
            time(serde_json::json!("2026-11-02T10:15:30Z")).as_f64(),
            Some(1793614530.0)
        );
        assert_eq!(
            time(serde_json::json!(1793614530123i64)).as_f64(),
            Some(1793614530.123)
        );
        assert_eq!(
            time(serde_json::json!(1793614530.5)).as_f64(),
            Some(1793614530.5)
        );
        // Unparseable or missing: the send time.
        assert_eq!(
            time(serde_json::json!("yesterday")).as_f64(),
            Some(1767225600.0)
        );
        assert_eq!(
            epoch_seconds(DateTime::from_timestamp_micros(1_500_000).expect("t")),
            "1.500"
        );
        assert_eq!(
            epoch_seconds(DateTime::from_timestamp_micros(1_000_001).expect("t")),
            "1.000001"
        );
    }

    #[test]
    fn missing_index_field_goes_to_the_default_index() {
        let encoder = Encoder::new(&config("index = \"{{ .Workload }}\"")).expect("encoder");
        let mut out = Vec::new();
        let encoded = encoder
            .encode(&Event::from_message("x"), &mut out, Utc::now())
            .expect("encodes");
        assert!(encoded.index_missing);
        assert_eq!(encoded.index, "");
        let envelope: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert!(envelope.get("index").is_none());
    }

    #[test]
    fn raw_lines_and_rejections() {
        let encoder = Encoder::new(&config("endpoint_target = \"raw\"")).expect("encoder");
        let mut out = Vec::new();
        encoder
            .encode(&Event::from_message("CEF:0|a|b"), &mut out, Utc::now())
            .expect("encodes");
        assert_eq!(out, b"CEF:0|a|b");
        out.clear();
        encoder
            .encode(
                &Event::new(serde_json::json!({"a": 1}).into()),
                &mut out,
                Utc::now(),
            )
            .expect("encodes");
        assert_eq!(out, b"{\"a\":1}");
        let events = Encoder::new(&config("")).expect("encoder");
        let blank = events.encode(&Event::new(Value::from("")), &mut Vec::new(), Utc::now());
        assert_eq!(
            blank.err().map(|r| r.reason),
            Some("invalid_event".to_string())
        );
    }
}
