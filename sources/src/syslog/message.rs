//! One syslog message into one event: the header (RFC 5424 or 3164, read by
//! `syslog_loose`, the parser VRL's `parse_syslog` uses) into a `syslog` object, the
//! payload decoded as text, CEF (`siemflow_core::cef`, exactly VRL's `parse_cef`), LEEF or
//! JSON.
//!
//! Nothing is dropped: a message whose header or payload cannot be read is emitted whole
//! in `message` with a `parse_error` field, and counted.

use chrono::{Datelike as _, Utc};
use metrics::Counter;
use siemflow_core::decoding::Decoding;
use siemflow_core::event::Event;
use siemflow_core::metrics::ComponentMetrics;
use syslog_loose::{Message, ProcId, Protocol, Variant};
use vrl::value::{ObjectMap, Value};

use super::config::{Format, SyslogDecoding};
use crate::lines::{ERROR_INVALID_UTF8, STAGE_RECEIVING};

/// Turns messages into events and counts what went wrong; one per connection.
#[derive(Clone)]
pub struct MessageDecoder {
    format: Format,
    decoding: SyslogDecoding,
    counters: Counters,
}

/// The counters every connection shares.
#[derive(Clone)]
struct Counters {
    received_events: Counter,
    received_bytes: Counter,
    parse_failed: Counter,
    invalid_utf8: Counter,
}

/// What became of one message.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Why the message was kept whole, if it was.
    pub parse_error: Option<String>,
}

impl MessageDecoder {
    /// A decoder counting into this component's metrics.
    pub fn new(
        format: Format,
        decoding: SyslogDecoding,
        metrics: &ComponentMetrics,
    ) -> anyhow::Result<Self> {
        let errors = |error_type: &str| {
            metrics.labels.counter(
                "component_errors_total",
                &[("error_type", error_type), ("stage", STAGE_RECEIVING)],
            )
        };
        Ok(MessageDecoder {
            format,
            decoding,
            counters: Counters {
                received_events: metrics.received_events.clone(),
                received_bytes: metrics.received_bytes.clone(),
                parse_failed: errors("parse_failed"),
                invalid_utf8: errors(ERROR_INVALID_UTF8),
            },
        })
    }

    /// Decodes one message (its framing removed) from `peer` into `batch`.
    pub fn push(&mut self, raw: &[u8], peer: &str, batch: &mut Vec<Event>) -> Outcome {
        self.counters.received_bytes.increment(raw.len() as u64);
        let text = match std::str::from_utf8(raw) {
            Ok(text) => std::borrow::Cow::Borrowed(text),
            Err(_) => {
                self.counters.invalid_utf8.increment(1);
                String::from_utf8_lossy(raw)
            }
        };
        // Newline framing leaves a CR (CRLF) or NUL trailer; a UDP sender may add a LF.
        let text = text.trim_end_matches(['\r', '\n', '\0']);
        if text.is_empty() {
            // A blank line (or a bare trailer) carries nothing: no event, as in rsyslog.
            return Outcome::default();
        }
        let (header, payload) = self.split(text);
        let mut parse_error = match &header {
            Header::Unreadable => Some("not a syslog message (RFC 5424 or RFC 3164)".to_string()),
            _ => None,
        };
        let mut object = if parse_error.is_some() {
            message_only(text)
        } else {
            match self.decode_payload(payload) {
                Ok(object) => object,
                Err(error) => {
                    parse_error = Some(error);
                    message_only(payload)
                }
            }
        };
        object.insert("syslog".into(), Value::Object(header.fields(peer)));
        if let Some(error) = &parse_error {
            object.insert("parse_error".into(), Value::from(error.as_str()));
            self.counters.parse_failed.increment(1);
        }
        batch.push(Event::from_object(object));
        self.counters.received_events.increment(1);
        Outcome { parse_error }
    }

    /// Decodes a message the framing found at fault: emitted whole with `error`.
    pub fn push_flagged(
        &mut self,
        raw: &[u8],
        peer: &str,
        batch: &mut Vec<Event>,
        error: &str,
    ) -> Outcome {
        let before = batch.len();
        let outcome = self.push(raw, peer, batch);
        if outcome.parse_error.is_some() || batch.len() == before {
            return outcome;
        }
        if let Some(Value::Object(object)) = batch.get_mut(before).map(|e| &mut e.value) {
            object.insert("parse_error".into(), Value::from(error));
        }
        self.counters.parse_failed.increment(1);
        Outcome {
            parse_error: Some(error.to_string()),
        }
    }

    /// The header and the payload of a message.
    fn split<'a>(&self, text: &'a str) -> (Header<'a>, &'a str) {
        if self.format == Format::None {
            return (Header::Absent, text);
        }
        let marker = match self.decoding {
            SyslogDecoding::Cef => Some("CEF:"),
            SyslogDecoding::Leef => Some("LEEF:"),
            _ => None,
        };
        // RFC 5424 is unambiguous: read it whole (its structured data may hold anything).
        if self.format != Format::Rfc3164
            && let Some((fields, payload)) = parse_rfc5424(text)
        {
            return (Header::Parsed(fields), payload);
        }
        if self.format == Format::Rfc5424 {
            return (Header::Unreadable, text);
        }
        // A CEF/LEEF payload starts at its marker; what comes before is the header (the
        // Defender for Cloud Apps agent writes only a timestamp there, which RFC 3164
        // parsers would otherwise read as part of a hostname or tag).
        if let Some(marker) = marker
            && let Some(at) = text.find(marker)
        {
            let head = text[..at].trim_end();
            let payload = &text[at..];
            if head.is_empty() {
                return (Header::Absent, payload);
            }
            return match parse_head(head) {
                Some(message) => (Header::Parsed(header_fields(&message)), payload),
                None => (Header::Raw(head), payload),
            };
        }
        match parse(text, Variant::RFC3164) {
            Ok(message) => (Header::Parsed(header_fields(&message)), message.msg),
            // With a payload decoding, a bare payload still decodes (no header).
            Err(_) if self.decoding != SyslogDecoding::Text => (Header::Absent, text),
            Err(_) => (Header::Unreadable, text),
        }
    }

    fn decode_payload(&mut self, payload: &str) -> Result<ObjectMap, String> {
        let payload = payload.strip_prefix('\u{feff}').unwrap_or(payload);
        match self.decoding {
            SyslogDecoding::Text => Ok(message_only(payload)),
            SyslogDecoding::Json => {
                let (event, issues) = Decoding::Json.decode(payload.as_bytes());
                match (issues.parse_error, event.value) {
                    (None, Value::Object(object)) => Ok(object),
                    (Some(error), _) => Err(format!("not a JSON object: {error}")),
                    (None, _) => Err("not a JSON object".into()),
                }
            }
            SyslogDecoding::Leef => {
                let leef =
                    siemflow_core::leef::parse(payload).map_err(|e| format!("not LEEF: {e}"))?;
                let mut object = ObjectMap::new();
                for (key, value) in leef.attributes {
                    object.insert(key.into(), Value::from(value));
                }
                for (key, value) in [
                    ("leefVersion", leef.version),
                    ("deviceVendor", leef.vendor),
                    ("deviceProduct", leef.product),
                    ("deviceVersion", leef.product_version),
                    ("eventId", leef.event_id),
                    ("delimiter", leef.delimiter.to_string()),
                ] {
                    object.insert(key.into(), Value::from(value));
                }
                Ok(object)
            }
            SyslogDecoding::Cef => {
                siemflow_core::cef::parse(payload).map_err(|e| format!("not CEF: {e}"))
            }
        }
    }
}

fn message_only(text: &str) -> ObjectMap {
    let mut object = ObjectMap::new();
    object.insert("message".into(), Value::from(text));
    object
}

/// The syslog header of one message.
enum Header<'a> {
    /// Read into its fields.
    Parsed(ObjectMap),
    /// Text before a CEF/LEEF payload that is no syslog header: kept as it is.
    Raw(&'a str),
    /// No header (the message is only a payload).
    Absent,
    /// A header was required and none could be read.
    Unreadable,
}

impl Header<'_> {
    /// The `syslog` object: the header's fields and the sender's address.
    fn fields(self, peer: &str) -> ObjectMap {
        let mut out = match self {
            Header::Parsed(fields) => fields,
            Header::Raw(text) => {
                let mut out = ObjectMap::new();
                out.insert("header".into(), Value::from(text));
                out
            }
            Header::Absent | Header::Unreadable => ObjectMap::new(),
        };
        out.insert("peer".into(), Value::from(peer));
        out
    }
}

/// The fields of a parsed header.
fn header_fields(message: &Message<&str>) -> ObjectMap {
    let mut out = ObjectMap::new();
    let mut put = |key: &str, value: Value| {
        out.insert(key.into(), value);
    };
    if let Protocol::RFC5424(version) = message.protocol {
        put("version", Value::from(i64::from(version)));
    }
    if let Some(facility) = message.facility {
        put("facility", Value::from(facility.as_str()));
    }
    if let Some(severity) = message.severity {
        put("severity", Value::from(severity.as_str()));
    }
    if let Some(timestamp) = message.timestamp {
        put("timestamp", Value::from(timestamp.with_timezone(&Utc)));
    }
    for (key, value) in [
        ("hostname", message.hostname),
        ("appname", message.appname),
        ("msgid", message.msgid),
    ] {
        if let Some(value) = value.filter(|v| *v != "-") {
            put(key, Value::from(value));
        }
    }
    match &message.procid {
        Some(ProcId::PID(pid)) => put("procid", Value::from(i64::from(*pid))),
        Some(ProcId::Name(name)) => put("procid", Value::from(*name)),
        None => {}
    }
    if !message.structured_data.is_empty() {
        let mut elements = ObjectMap::new();
        for element in &message.structured_data {
            let params: ObjectMap = element
                .params()
                .map(|(k, v)| (k.to_string().into(), Value::from(v.to_string())))
                .collect();
            elements.insert(element.id.to_string().into(), Value::Object(params));
        }
        put("structured_data", Value::Object(elements));
    }
    out
}

/// An RFC 5424 message's header fields and its MSG. `syslog_loose` refuses the NILVALUE
/// timestamp (`<14>1 - host …`, which RFC 5424 6.2.3 allows and rsyslog accepts), so such
/// a message is read with a stand-in timestamp that is then left out.
fn parse_rfc5424(text: &str) -> Option<(ObjectMap, &str)> {
    if let Ok(message) = parse(text, Variant::RFC5424) {
        return Some((header_fields(&message), message.msg));
    }
    let after_pri = text.strip_prefix('<')?.split_once('>')?.1;
    let rest = after_pri.strip_prefix("1 - ")?;
    const STAND_IN: &str = "1970-01-01T00:00:00Z ";
    let head = &text[..text.len() - rest.len() - 2];
    let patched = format!("{head}{STAND_IN}{rest}");
    let message = parse(&patched, Variant::RFC5424).ok()?;
    let mut fields = header_fields(&message);
    fields.remove("timestamp");
    // MSG is a slice of `patched`; the same bytes sit in `text`, shifted by the stand-in.
    let msg_at = (message.msg.as_ptr() as usize).checked_sub(patched.as_ptr() as usize)?;
    let shift = STAND_IN.len() - 2;
    let payload = match message.msg.is_empty() {
        true => "",
        false => text.get(msg_at.checked_sub(shift)?..)?,
    };
    Some((fields, payload))
}

/// Parses one message exactly: RFC 3164 timestamps carry no year (the current one is
/// taken, the previous in January for a December date) and no zone (UTC).
fn parse(text: &str, variant: Variant) -> Result<Message<&str>, String> {
    syslog_loose::parse_message_with_year_exact_tz(text, resolve_year, Some(Utc), variant)
}

/// A header alone (the text before a CEF/LEEF payload). `syslog_loose` wants something
/// after a timestamp, so a lone timestamp or PRI is read with a placeholder hostname.
fn parse_head(head: &str) -> Option<Message<&str>> {
    if let Ok(message) = parse(head, Variant::Either) {
        return Some(message);
    }
    let padded = format!("{head} -");
    let message = parse(&padded, Variant::Either).ok()?;
    // Only the parsed values survive: copy them out of `padded` by re-borrowing `head`.
    let timestamp = message.timestamp;
    let (facility, severity) = (message.facility, message.severity);
    Some(Message {
        protocol: message.protocol,
        facility,
        severity,
        timestamp,
        hostname: None,
        appname: None,
        procid: None,
        msgid: None,
        structured_data: Vec::new(),
        msg: "",
    })
}

fn resolve_year((month, _, _, _, _): syslog_loose::IncompleteDate) -> i32 {
    let now = Utc::now();
    if now.month() == 1 && month == 12 {
        now.year() - 1
    } else {
        now.year()
    }
}
