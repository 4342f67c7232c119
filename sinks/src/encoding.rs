//! Events to output lines, shared by the line-oriented sinks (console, file), and the
//! JSON writer the HTTP sinks build their bodies with.

use metrics::Counter;
use serde::Deserialize;
use siemflow_core::escape;
use siemflow_core::metrics::ComponentLabels;
use siemflow_core::{Event, Value};

/// How an event becomes one line of output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// The whole event as one compact JSON object per line. What JSON leaves raw but
    /// `core::escape` does not (DEL, C1 such as NEL, U+2028/U+2029) is written `\uHHHH`:
    /// the same JSON value, and no line break or terminal control on the way.
    #[default]
    Json,
    /// The event's `message` field, its control characters escaped so one event stays
    /// one line (`core::escape`). An event without a string `message` is written as JSON
    /// instead, so it is never lost (counted as `missing_message`).
    Text,
}

/// Encodes the events of one sink into lines, counting those `text` cannot represent.
pub struct LineEncoder {
    encoding: Encoding,
    component: String,
    missing_message: Counter,
    warned_missing_message: bool,
}

impl LineEncoder {
    /// An encoder for the component with these labels.
    pub fn new(encoding: Encoding, labels: &ComponentLabels) -> Self {
        LineEncoder {
            encoding,
            component: labels.id.clone(),
            missing_message: labels.counter(
                "component_errors_total",
                &[("error_type", "missing_message"), ("stage", "processing")],
            ),
            warned_missing_message: false,
        }
    }

    /// Appends the event and a newline to `buf`.
    pub fn encode(&mut self, event: &Event, buf: &mut Vec<u8>) {
        let start = buf.len();
        match self.encoding {
            Encoding::Json => {
                event.write_json(buf);
                escape::escape_tail(buf, start);
            }
            Encoding::Text => match message_bytes(event) {
                // The message came from outside: a raw LF would forge a line, an ESC would
                // reach the terminal of whoever reads the console or tails the file.
                Some(message) => {
                    escape::push_escaped(buf, message);
                }
                None => {
                    self.note_missing_message();
                    event.write_json(buf);
                    escape::escape_tail(buf, start);
                }
            },
        }
        buf.push(b'\n');
    }

    fn note_missing_message(&mut self) {
        self.missing_message.increment(1);
        // Once per run: a pipeline without `message` would otherwise flood the log.
        if !self.warned_missing_message {
            self.warned_missing_message = true;
            tracing::warn!(
                component = %self.component,
                "event has no string `message` field; writing it as JSON instead (counted as component_errors_total{{error_type=\"missing_message\"}}, warned once)"
            );
        }
    }
}

/// Appends `value` as JSON to `out`.
pub(crate) fn write_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    // Writing JSON into a Vec cannot fail: every value the sinks write has a JSON form.
    let _ = serde_json::to_writer(&mut *out, value);
}

/// The event's `message` field, when it is text or bytes.
pub(crate) fn message_bytes(event: &Event) -> Option<&[u8]> {
    match &event.value {
        Value::Object(object) => match object.get("message") {
            Some(Value::String(text)) => Some(text.as_bytes()),
            Some(Value::Bytes(bytes)) => Some(bytes),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::test_support::{event, labels};

    fn encode(encoding: Encoding, events: &[Event]) -> String {
        let mut encoder = LineEncoder::new(encoding, &labels("encoding-test", "file"));
        let mut buf = Vec::new();
        for e in events {
            encoder.encode(e, &mut buf);
        }
        String::from_utf8(buf).expect("utf-8")
    }

    #[test]
    fn json_is_one_compact_object_per_line() {
        let events = [
            event(serde_json::json!({"Id": "1", "Workload": "Exchange"})),
            event(serde_json::json!({"Id": "2"})),
        ];
        assert_eq!(
            encode(Encoding::Json, &events),
            "{\"Id\":\"1\",\"Workload\":\"Exchange\"}\n{\"Id\":\"2\"}\n"
        );
    }

    #[test]
    fn text_escapes_control_characters_so_each_event_is_one_line() {
        let events = [
            Event::from_message("a\nforged line\r\u{1b}[2J\u{7}\0tab\tkept"),
            Event::from_message("nel\u{85}ls\u{2028}ps\u{2029}"),
            Event::from_message(Value::Bytes(bytes::Bytes::from_static(b"raw\xff\x1b"))),
        ];
        assert_eq!(
            encode(Encoding::Text, &events),
            "a\\nforged line\\r\\u001b[2J\\u0007\\0tab\tkept\nnel\\u0085ls\\u2028ps\\u2029\nraw\\xff\\u001b\n"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any message, text or bytes: exactly one line per event, nothing unsafe in it.
        #[test]
        fn text_is_one_safe_line_per_event(
            messages in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..80), 1..6),
            as_text in any::<bool>(),
        ) {
            let events: Vec<Event> = messages
                .iter()
                .map(|m| match (as_text, std::str::from_utf8(m)) {
                    (true, Ok(text)) => Event::from_message(text),
                    _ => Event::from_message(Value::Bytes(bytes::Bytes::copy_from_slice(m))),
                })
                .collect();
            let out = encode(Encoding::Text, &events);
            prop_assert_eq!(out.matches('\n').count(), events.len());
            for line in out.split_terminator('\n') {
                prop_assert!(!line.chars().any(escape::is_line_unsafe), "{:?}", line);
            }
        }
    }

    #[test]
    fn text_writes_the_message_as_it_is() {
        let events = [
            Event::from_message("plain \"line\""),
            Event::from_message("second"),
        ];
        assert_eq!(encode(Encoding::Text, &events), "plain \"line\"\nsecond\n");
    }

    #[test]
    fn text_accepts_raw_bytes_messages() {
        let raw = Event::from_message(Value::Bytes(bytes::Bytes::from_static(b"raw bytes")));
        assert_eq!(encode(Encoding::Text, &[raw]), "raw bytes\n");
    }

    #[test]
    fn json_escapes_what_json_leaves_raw_and_keeps_the_value() {
        let value = "a\u{85}b\u{2028}c\u{7f}d\u{9b}2J\u{1b}e";
        for encoding in [Encoding::Json, Encoding::Text] {
            let out = encode(encoding, &[event(serde_json::json!({ "Id": value }))]);
            assert_eq!(out.lines().count(), 1, "{out:?}");
            assert!(
                !out.trim_end().chars().any(escape::is_line_unsafe),
                "{out:?}"
            );
            let parsed: serde_json::Value = serde_json::from_str(out.trim_end()).expect("JSON");
            assert_eq!(parsed["Id"], value, "{encoding:?}");
        }
    }

    #[test]
    fn text_without_a_string_message_falls_back_to_json() {
        let events = [
            event(serde_json::json!({"Id": "1"})),
            event(serde_json::json!({"message": 42})),
        ];
        assert_eq!(
            encode(Encoding::Text, &events),
            "{\"Id\":\"1\"}\n{\"message\":42}\n"
        );
    }
}
