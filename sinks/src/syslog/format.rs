//! Events to syslog messages: PRI, header (RFC 5424 or RFC 3164), payload, framing.
//!
//! Header fields are sanitised here, once, so no configured value and no event field can
//! break the header: PRINTUSASCII only, within the RFC's lengths, `-` when empty. The
//! payload's control characters are escaped by `core::escape` (`\n`, `\x1b`, `\u2028`, ...;
//! TAB, LEEF's delimiter, stays) unless the user turned that off, so a value can never
//! end the message early, start a forged one, or reach a terminal that shows the log.

use std::io::Write as _;

use chrono::{DateTime, Local, SecondsFormat, Utc};
use metrics::Counter;
use siemflow_core::metrics::ComponentLabels;
use siemflow_core::{Event, escape};
use vrl::path::OwnedValuePath;

use super::config::{Facility, Format, Framing, Payload, Severity};
use crate::encoding::message_bytes;

/// RFC 5424 §6.2: field limits in octets.
const MAX_HOSTNAME: usize = 255;
const MAX_APP_NAME: usize = 48;
const MAX_PROC_ID: usize = 128;
const MAX_MSG_ID: usize = 32;
/// RFC 3164 §4.1.3: the TAG is at most 32 characters.
const MAX_TAG: usize = 32;

/// The header fields, sanitised once when the sink starts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HeaderFields {
    /// HOSTNAME: PRINTUSASCII, at most 255 octets, `-` when unknown.
    pub hostname: String,
    /// APP-NAME (RFC 5424), `-` when empty.
    pub app_name: String,
    /// TAG (RFC 3164): letters, digits, `-`, `_`, `.`; empty means no TAG at all.
    pub tag: String,
    /// PROCID, `-` when empty.
    pub proc_id: String,
    /// MSGID, `-` when empty.
    pub msg_id: String,
}

impl HeaderFields {
    /// Sanitises the configured values; see the module comment.
    pub fn new(hostname: &str, app_name: &str, proc_id: &str, msg_id: &str) -> Self {
        HeaderFields {
            hostname: header_field(hostname, MAX_HOSTNAME),
            app_name: header_field(app_name, MAX_APP_NAME),
            tag: tag(app_name),
            proc_id: header_field(proc_id, MAX_PROC_ID),
            msg_id: header_field(msg_id, MAX_MSG_ID),
        }
    }
}

/// A header field of RFC 5424: printable US-ASCII (33–126), other characters become `_`,
/// cut to `max` octets; empty becomes the NILVALUE `-`.
pub(crate) fn header_field(value: &str, max: usize) -> String {
    let clean: String = value
        .trim()
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .take(max)
        .collect();
    if clean.is_empty() {
        "-".to_string()
    } else {
        clean
    }
}

/// A TAG of RFC 3164: letters, digits and `-_.` (others become `_`), at most 32.
fn tag(value: &str) -> String {
    value
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(MAX_TAG)
        .collect()
}

/// Counters of what the encoder changed or could not honour.
pub(crate) struct EncoderCounters {
    /// Events whose payload had control characters escaped (the name predates the
    /// characters beyond CR, LF and NUL; kept so dashboards keep working).
    pub escaped_newlines: Counter,
    /// Events without a string `message` (sent as JSON instead).
    pub missing_message: Counter,
    /// Events whose severity or facility field held no usable value (the fixed one was used).
    pub invalid_priority: Counter,
}

impl EncoderCounters {
    /// The counters of the component with these labels.
    pub fn new(labels: &ComponentLabels) -> Self {
        EncoderCounters {
            escaped_newlines: labels.counter("syslog_escaped_newlines_total", &[]),
            missing_message: labels.counter(
                "component_errors_total",
                &[("error_type", "missing_message"), ("stage", "processing")],
            ),
            invalid_priority: labels.counter(
                "component_errors_total",
                &[("error_type", "invalid_priority"), ("stage", "processing")],
            ),
        }
    }
}

/// Everything that decides how an event becomes a message.
#[derive(Debug, Clone)]
pub(crate) struct MessageFormat {
    /// RFC 5424 or RFC 3164.
    pub format: Format,
    /// Stream framing; `None` for UDP (one message per datagram).
    pub framing: Option<Framing>,
    /// The `message` field or the whole event as JSON.
    pub payload: Payload,
    /// Escape control characters in the payload (`core::escape`).
    pub escape_newlines: bool,
    /// Fixed facility.
    pub facility: Facility,
    /// Fixed severity.
    pub severity: Severity,
    /// A field whose value overrides the facility.
    pub facility_field: Option<OwnedValuePath>,
    /// A field whose value overrides the severity.
    pub severity_field: Option<OwnedValuePath>,
    /// Sanitised header fields.
    pub header: HeaderFields,
}

/// Encodes events into syslog messages (framed for streams), counting what it changed.
pub(crate) struct MessageEncoder {
    format: MessageFormat,
    counters: EncoderCounters,
    component: String,
    warned_missing_message: bool,
    warned_invalid_priority: bool,
    /// The message being built, before framing.
    scratch: Vec<u8>,
}

/// The timestamp of every message of one batch, formatted once.
pub(crate) struct BatchTime(String);

impl BatchTime {
    /// The time as the format writes it: RFC 3339 UTC with milliseconds for RFC 5424,
    /// `Mmm dd hh:mm:ss` local time (day space-padded, no year, no zone) for RFC 3164.
    pub fn new(format: Format, now: DateTime<Utc>) -> Self {
        BatchTime(match format {
            Format::Rfc5424 => now.to_rfc3339_opts(SecondsFormat::Millis, true),
            Format::Rfc3164 => now
                .with_timezone(&Local)
                .format("%b %e %H:%M:%S")
                .to_string(),
        })
    }
}

impl MessageEncoder {
    /// An encoder for a component with these labels.
    pub fn new(format: MessageFormat, labels: &ComponentLabels) -> Self {
        MessageEncoder {
            format,
            counters: EncoderCounters::new(labels),
            component: labels.id.clone(),
            warned_missing_message: false,
            warned_invalid_priority: false,
            scratch: Vec::with_capacity(1024),
        }
    }

    /// Appends the event's message to `out`, framed when the transport is a stream.
    /// Returns the length of the message itself (without framing).
    pub fn encode(&mut self, event: &Event, time: &BatchTime, out: &mut Vec<u8>) -> usize {
        let mut message = std::mem::take(&mut self.scratch);
        message.clear();
        self.write_message(event, time, &mut message);
        let len = message.len();
        match self.format.framing {
            Some(Framing::OctetCounting) => {
                // Writing into a Vec cannot fail.
                let _ = write!(out, "{len} ");
                out.extend_from_slice(&message);
            }
            Some(Framing::Newline) => {
                out.extend_from_slice(&message);
                out.push(b'\n');
            }
            None => out.extend_from_slice(&message),
        }
        self.scratch = message;
        len
    }

    fn write_message(&mut self, event: &Event, time: &BatchTime, out: &mut Vec<u8>) {
        let pri = self.priority(event);
        let h = &self.format.header;
        // Written straight into the buffer (no String per event); writing into a Vec
        // cannot fail.
        let _ = match self.format.format {
            // <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD SP MSG; SD is always NIL.
            Format::Rfc5424 => write!(
                out,
                "<{pri}>1 {} {} {} {} {} - ",
                time.0, h.hostname, h.app_name, h.proc_id, h.msg_id
            ),
            Format::Rfc3164 => match (h.tag.is_empty(), h.proc_id.as_str()) {
                (true, _) => write!(out, "<{pri}>{} {} ", time.0, h.hostname),
                (false, "-") => write!(out, "<{pri}>{} {} {}: ", time.0, h.hostname, h.tag),
                (false, pid) => write!(out, "<{pri}>{} {} {}[{pid}]: ", time.0, h.hostname, h.tag),
            },
        };
        let start = out.len();
        match self.format.payload {
            Payload::Json => event.write_json(out),
            Payload::Message => match message_bytes(event) {
                Some(message) => out.extend_from_slice(message),
                None => {
                    self.note_missing_message();
                    event.write_json(out);
                }
            },
        }
        if self.format.escape_newlines && escape::escape_tail(out, start) {
            self.counters.escaped_newlines.increment(1);
        }
    }

    /// PRI = facility × 8 + severity, each from its field when one is set and usable.
    fn priority(&mut self, event: &Event) -> u8 {
        let mut invalid = false;
        let facility = match &self.format.facility_field {
            Some(path) => match event.get(path).and_then(Facility::from_value) {
                Some(facility) => facility,
                None => {
                    invalid = true;
                    self.format.facility
                }
            },
            None => self.format.facility,
        };
        let severity = match &self.format.severity_field {
            Some(path) => match event.get(path).and_then(Severity::from_value) {
                Some(severity) => severity,
                None => {
                    invalid = true;
                    self.format.severity
                }
            },
            None => self.format.severity,
        };
        if invalid {
            self.note_invalid_priority();
        }
        facility.code() * 8 + severity.code()
    }

    fn note_missing_message(&mut self) {
        self.counters.missing_message.increment(1);
        if !self.warned_missing_message {
            self.warned_missing_message = true;
            tracing::warn!(
                component = %self.component,
                "event has no string `message` field; sending it as JSON instead (counted as component_errors_total{{error_type=\"missing_message\"}}, warned once)"
            );
        }
    }

    fn note_invalid_priority(&mut self) {
        self.counters.invalid_priority.increment(1);
        if !self.warned_invalid_priority {
            self.warned_invalid_priority = true;
            tracing::warn!(
                component = %self.component,
                "an event's facility_field or severity_field is missing or not a syslog name or number; the fixed value was used (counted as component_errors_total{{error_type=\"invalid_priority\"}}, warned once)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use proptest::prelude::*;

    use super::*;
    use crate::test_support::{event, labels};

    fn format(format: Format, framing: Option<Framing>) -> MessageFormat {
        MessageFormat {
            format,
            framing,
            payload: Payload::Message,
            escape_newlines: true,
            facility: Facility::Local4,
            severity: Severity::Notice,
            facility_field: None,
            severity_field: None,
            header: HeaderFields::new("shipper01", "m365-shipper", "4711", "SIGNIN"),
        }
    }

    fn encode(format: MessageFormat, events: &[Event]) -> String {
        let mut encoder = MessageEncoder::new(format.clone(), &labels("syslog-format", "syslog"));
        let now = Utc.with_ymd_and_hms(2026, 11, 2, 10, 15, 30).unwrap()
            + chrono::Duration::milliseconds(123);
        let time = BatchTime::new(format.format, now);
        let mut out = Vec::new();
        for e in events {
            encoder.encode(e, &time, &mut out);
        }
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn rfc5424_header_with_octet_counting() {
        let text = encode(
            format(Format::Rfc5424, Some(Framing::OctetCounting)),
            &[Event::from_message("CEF:0|a|b|1|x|y|3|msg=é")],
        );
        let message = "<165>1 2026-11-02T10:15:30.123Z shipper01 m365-shipper 4711 SIGNIN - CEF:0|a|b|1|x|y|3|msg=é";
        assert_eq!(text, format!("{} {message}", message.len()));
    }

    #[test]
    fn rfc3164_header_with_newline_framing() {
        let text = encode(
            format(Format::Rfc3164, Some(Framing::Newline)),
            &[Event::from_message("LEEF:2.0|a|b|1|x|^|k=v")],
        );
        let local = Utc
            .with_ymd_and_hms(2026, 11, 2, 10, 15, 30)
            .unwrap()
            .with_timezone(&Local)
            .format("%b %e %H:%M:%S")
            .to_string();
        assert_eq!(
            text,
            format!("<165>{local} shipper01 m365-shipper[4711]: LEEF:2.0|a|b|1|x|^|k=v\n")
        );
    }

    #[test]
    fn rfc3164_time_is_local_with_a_space_padded_day() {
        let local = Local.with_ymd_and_hms(2026, 11, 2, 8, 5, 3).unwrap();
        let time = BatchTime::new(Format::Rfc3164, local.with_timezone(&Utc));
        assert_eq!(time.0, "Nov  2 08:05:03");
    }

    #[test]
    fn rfc3164_without_tag_or_pid() {
        let mut f = format(Format::Rfc3164, None);
        f.header = HeaderFields::new("host", "", "", "");
        let text = encode(f, &[Event::from_message("CEF:0|x")]);
        assert!(text.ends_with(" host CEF:0|x"), "{text}");
        let mut f = format(Format::Rfc3164, None);
        f.header = HeaderFields::new("host", "app", "", "");
        let text = encode(f, &[Event::from_message("CEF:0|x")]);
        assert!(text.ends_with(" host app: CEF:0|x"), "{text}");
    }

    #[test]
    fn header_fields_are_sanitised() {
        let h = HeaderFields::new("bad host\nname", &"a".repeat(60), "", "id with space and ü");
        assert_eq!(h.hostname, "bad_host_name");
        assert_eq!(h.app_name, "a".repeat(48));
        assert_eq!(h.tag, "a".repeat(32));
        assert_eq!(h.proc_id, "-");
        assert_eq!(h.msg_id, "id_with_space_and__");
        assert_eq!(header_field("  ", 10), "-");
        assert_eq!(
            HeaderFields::new("h", "my app[1]:", "", "").tag,
            "my_app_1__"
        );
    }

    #[test]
    fn newlines_in_the_payload_are_escaped_and_counted() {
        let text = encode(
            format(Format::Rfc5424, Some(Framing::Newline)),
            &[Event::from_message(
                "first\n<13>1 2026-01-01T00:00:00Z evil app - - - forged\r\0end",
            )],
        );
        assert_eq!(text.matches('\n').count(), 1, "only the trailer: {text:?}");
        assert!(
            text.ends_with("- first\\n<13>1 2026-01-01T00:00:00Z evil app - - - forged\\r\\0end\n")
        );
    }

    #[test]
    fn terminal_controls_and_unicode_line_breaks_in_the_payload_are_escaped() {
        let text = encode(
            format(Format::Rfc5424, Some(Framing::Newline)),
            &[Event::from_message(
                "a\u{1b}]0;pwned\u{7}b\u{85}c\u{2028}d\u{2029}e\u{7f}f\tLEEF-tab",
            )],
        );
        assert!(
            text.ends_with(
                "- a\\u001b]0;pwned\\u0007b\\u0085c\\u2028d\\u2029e\\u007ff\tLEEF-tab\n"
            ),
            "{text:?}"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any payload, any format and framing with escaping on: one message per event, and
        /// nothing unsafe in it besides the framing's own newline.
        #[test]
        fn every_event_is_one_safe_message(
            messages in proptest::collection::vec(any::<String>(), 1..5),
            rfc3164 in any::<bool>(),
            framing in prop_oneof![Just(None), Just(Some(Framing::Newline)), Just(Some(Framing::OctetCounting))],
            json in any::<bool>(),
        ) {
            let mut f = format(if rfc3164 { Format::Rfc3164 } else { Format::Rfc5424 }, framing);
            if json {
                f.payload = Payload::Json;
            }
            let mut encoder = MessageEncoder::new(f.clone(), &labels("syslog-props", "syslog"));
            let time = BatchTime::new(f.format, Utc::now());
            for message in &messages {
                let mut out = Vec::new();
                let len = encoder.encode(&Event::from_message(message.as_str()), &time, &mut out);
                let text = String::from_utf8(out).expect("utf-8");
                let body = match framing {
                    Some(Framing::Newline) => text.strip_suffix('\n').expect("framed by a newline"),
                    Some(Framing::OctetCounting) => {
                        let (count, body) = text.split_once(' ').expect("octet count");
                        prop_assert_eq!(count.parse::<usize>().ok(), Some(body.len()));
                        body
                    }
                    None => text.as_str(),
                };
                prop_assert_eq!(body.len(), len);
                prop_assert!(!body.chars().any(escape::is_line_unsafe), "{:?}", body);
            }
        }
    }

    #[test]
    fn an_escaped_json_payload_is_still_the_same_json() {
        let record = serde_json::json!({"Id": "1", "n": "a\u{7f}\u{85}\u{2028}\u{1b}\nb"});
        let mut f = format(Format::Rfc5424, None);
        f.payload = Payload::Json;
        let text = encode(f, &[event(record.clone())]);
        let payload = text.split_once(" - ").expect("header").1;
        let parsed: serde_json::Value = serde_json::from_str(payload).expect("valid JSON");
        assert_eq!(parsed, record);
        assert!(!payload.chars().any(escape::is_line_unsafe), "{payload:?}");
    }

    #[test]
    fn escaping_can_be_turned_off_for_octet_counting() {
        let mut f = format(Format::Rfc5424, Some(Framing::OctetCounting));
        f.escape_newlines = false;
        let text = encode(f, &[Event::from_message("a\nb")]);
        assert!(text.ends_with("- a\nb"));
    }

    #[test]
    fn json_payload_and_missing_message_fallback() {
        let mut f = format(Format::Rfc5424, None);
        f.payload = Payload::Json;
        let text = encode(f, &[event(serde_json::json!({"Id": "1", "n": "a\nb"}))]);
        assert!(text.ends_with(r#"- {"Id":"1","n":"a\nb"}"#), "{text}");
        let text = encode(
            format(Format::Rfc5424, None),
            &[event(serde_json::json!({"Id": "2"}))],
        );
        assert!(text.ends_with(r#"- {"Id":"2"}"#), "{text}");
    }

    #[test]
    fn severity_and_facility_from_fields() {
        let mut f = format(Format::Rfc5424, None);
        f.severity_field = Some(vrl::path::parse_value_path("sev").unwrap());
        f.facility_field = Some(vrl::path::parse_value_path("fac").unwrap());
        let events = [
            event(serde_json::json!({"message": "m", "sev": "err", "fac": "auth"})),
            event(serde_json::json!({"message": "m", "sev": 2, "fac": 16})),
            event(serde_json::json!({"message": "m", "sev": "nonsense"})),
            event(serde_json::json!({"message": "m", "sev": 9, "fac": -1})),
        ];
        let mut encoder = MessageEncoder::new(f.clone(), &labels("syslog-pri", "syslog"));
        let time = BatchTime::new(Format::Rfc5424, Utc::now());
        let pris: Vec<String> = events
            .iter()
            .map(|e| {
                let mut out = Vec::new();
                encoder.encode(e, &time, &mut out);
                let text = String::from_utf8(out).unwrap();
                text[1..text.find('>').unwrap()].to_string()
            })
            .collect();
        // auth(4)*8+err(3); local0(16)*8+crit(2); local4(20)*8+notice(5) twice.
        assert_eq!(pris, ["35", "130", "165", "165"]);
    }
}
