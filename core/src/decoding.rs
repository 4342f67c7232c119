//! Turning lines of bytes into events: NDJSON or plain text.

use serde::Deserialize;
use vrl::value::Value;

use crate::event::Event;

/// How a line-oriented source reads each line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum Decoding {
    /// One JSON object per line; other lines are kept whole in `message` and counted.
    #[default]
    Json,
    /// The line as it is, in `message`.
    Text,
}

impl Decoding {
    /// Decodes one line (without its newline). A JSON line that does not parse is kept,
    /// not lost: it becomes `{"message": <line>}` and the parse error is returned.
    pub fn decode(self, line: &[u8]) -> (Event, Option<String>) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match self {
            Decoding::Text => (Event::from_message(text(line)), None),
            Decoding::Json => match serde_json::from_slice::<Value>(line) {
                Ok(value @ Value::Object(_)) => (Event::new(value), None),
                Ok(other) => {
                    let mut event = Event::from_message(Value::Null);
                    if let Some(object) = event.value.as_object_mut() {
                        object.insert("message".into(), other);
                    }
                    (event, Some("line is JSON but not an object".into()))
                }
                Err(e) => (Event::from_message(text(line)), Some(e.to_string())),
            },
        }
    }
}

fn text(line: &[u8]) -> Value {
    match std::str::from_utf8(line) {
        Ok(s) => Value::from(s),
        Err(_) => Value::from(String::from_utf8_lossy(line).as_ref()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_objects_become_events() {
        let (event, error) = Decoding::Json.decode(br#"{"Id":"a","RecordType":15}"#);
        assert!(error.is_none());
        let mut out = Vec::new();
        event.write_json(&mut out);
        assert_eq!(out, br#"{"Id":"a","RecordType":15}"#);
    }

    #[test]
    fn broken_json_is_kept_whole() {
        let (event, error) = Decoding::Json.decode(b"{\"Id\": oops\r");
        assert!(error.is_some());
        let mut out = Vec::new();
        event.write_json(&mut out);
        assert_eq!(out, br#"{"message":"{\"Id\": oops"}"#);
    }

    #[test]
    fn text_lines_go_to_message() {
        let (event, error) = Decoding::Text.decode(b"CEF:0|x");
        assert!(error.is_none());
        let mut out = Vec::new();
        event.write_json(&mut out);
        assert_eq!(out, br#"{"message":"CEF:0|x"}"#);
    }
}
