//! The one mapping between OTLP log records and events, used both ways: the
//! `opentelemetry` source turns each `LogRecord` into an event of this shape, and the
//! `opentelemetry` sink turns such an event back into the same `LogRecord`.
//!
//! An event from a record (every field is left out when the record leaves it unset, so
//! a record round-trips without gaining empty fields):
//!
//! | event field | from the OTLP record |
//! |---|---|
//! | `timestamp` | `time_unix_nano`; when 0, `observed_time_unix_nano`; when both are 0, the time received |
//! | `observed_timestamp` | `observed_time_unix_nano`; when 0, the time received |
//! | `message` | `body` when it is a string |
//! | `body` | `body` of any other kind (object, array, number, boolean, bytes) |
//! | `attributes` | `attributes`, an object |
//! | `dropped_attributes_count` | `dropped_attributes_count` |
//! | `severity_number`, `severity_text` | the same |
//! | `trace_id`, `span_id` | the same, lowercase hex |
//! | `flags` | `flags` |
//! | `event_name` | `event_name` |
//! | `resource.attributes`, `resource.dropped_attributes_count` | the `ResourceLogs`' `resource` |
//! | `resource.schema_url` | `ResourceLogs.schema_url` |
//! | `scope.name`, `scope.version`, `scope.attributes`, `scope.dropped_attributes_count` | `ScopeLogs.scope` |
//! | `scope.schema_url` | `ScopeLogs.schema_url` |
//!
//! Values ([`AnyValue`]) map to event values: string, boolean, 64-bit integer and array
//! as themselves; a key-value list becomes an object (keys sorted, the last of a repeated
//! key wins); a double becomes a float, except NaN and the infinities, which JSON cannot
//! hold and become the strings `"NaN"`, `"Infinity"`, `"-Infinity"` (proto3 JSON's
//! spelling); bytes become their base64 text (standard alphabet, padded: OTLP/JSON's
//! spelling); an empty value becomes null. Back from events: text becomes a string,
//! integers `int_value`, floats `double_value`, a timestamp its RFC 3339 text, null an
//! empty value. So what does not come back as it went: bytes and non-finite doubles (as
//! strings), the order of key-value lists (sorted), and a `time_unix_nano` of 0 (as the
//! observed time, which the specification tells readers to use in its place).

use base64::Engine as _;
use chrono::{DateTime, Utc};
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::resource::v1::Resource;
use vrl::value::{KeyString, ObjectMap, Value};

pub use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};

/// Event field: the time the event occurred.
pub const TIMESTAMP: &str = "timestamp";
/// Event field: the time the event was observed by the collecting system.
pub const OBSERVED_TIMESTAMP: &str = "observed_timestamp";
/// Event field: a string body.
pub const MESSAGE: &str = "message";
/// Event field: a body that is not a string.
pub const BODY: &str = "body";
/// Event field (also inside `resource` and `scope`): attributes as an object.
pub const ATTRIBUTES: &str = "attributes";
/// Event field (also inside `resource` and `scope`): attributes the sender dropped.
pub const DROPPED_ATTRIBUTES_COUNT: &str = "dropped_attributes_count";
/// Event field: the OTLP severity number (1–24).
pub const SEVERITY_NUMBER: &str = "severity_number";
/// Event field: the severity as the sender wrote it.
pub const SEVERITY_TEXT: &str = "severity_text";
/// Event field: the W3C trace id, lowercase hex.
pub const TRACE_ID: &str = "trace_id";
/// Event field: the span id, lowercase hex.
pub const SPAN_ID: &str = "span_id";
/// Event field: the W3C trace flags (and reserved bits).
pub const FLAGS: &str = "flags";
/// Event field: the event name that marks an OTLP record as an event.
pub const EVENT_NAME: &str = "event_name";
/// Event field: the `ResourceLogs`' resource (`attributes`, `dropped_attributes_count`, `schema_url`).
pub const RESOURCE: &str = "resource";
/// Event field: the instrumentation scope (`name`, `version`, `attributes`, `dropped_attributes_count`, `schema_url`).
pub const SCOPE: &str = "scope";
/// Field inside `resource` and `scope`: the schema URL of the `ResourceLogs` or `ScopeLogs`.
pub const SCHEMA_URL: &str = "schema_url";
/// Field inside `scope`: the scope's name.
pub const SCOPE_NAME: &str = "name";
/// Field inside `scope`: the scope's version.
pub const SCOPE_VERSION: &str = "version";

/// The top-level event fields this mapping reads and writes; a sink may treat any other
/// field of an event as it sees fit (the record itself carries none of them).
pub const FIELDS: [&str; 14] = [
    TIMESTAMP,
    OBSERVED_TIMESTAMP,
    MESSAGE,
    BODY,
    ATTRIBUTES,
    DROPPED_ATTRIBUTES_COUNT,
    SEVERITY_NUMBER,
    SEVERITY_TEXT,
    TRACE_ID,
    SPAN_ID,
    FLAGS,
    EVENT_NAME,
    RESOURCE,
    SCOPE,
];

/// What a mapping had to work around, for the caller to count; the data is mapped all the same.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Notes {
    /// A key-value list or attribute list held a key more than once (the last one was kept).
    pub duplicate_keys: u64,
    /// A profiles-only string-table reference (`*_strindex`), ignored as the spec asks of
    /// non-profile receivers.
    pub profile_references: u64,
    /// Text that was not UTF-8 (its bad bytes were replaced with U+FFFD), or a
    /// trace/span id that was not hex (left unset).
    pub lossy_text: u64,
}

impl Notes {
    /// True when nothing was worked around.
    pub fn is_empty(&self) -> bool {
        *self == Notes::default()
    }
}

/// The event value of an OTLP value.
pub fn value_from_any(any: &AnyValue, notes: &mut Notes) -> Value {
    value_from_owned_any(any.clone(), notes)
}

/// The event value of an OTLP value taken by value: its strings become the event's
/// without a copy (what a receiver, owning the decoded request, wants).
pub fn value_from_owned_any(any: AnyValue, notes: &mut Notes) -> Value {
    match any.value {
        None => Value::Null,
        Some(any_value::Value::StringValue(s)) => Value::from(s),
        Some(any_value::Value::BoolValue(b)) => Value::Boolean(b),
        Some(any_value::Value::IntValue(i)) => Value::Integer(i),
        Some(any_value::Value::DoubleValue(d)) => double(d),
        Some(any_value::Value::ArrayValue(array)) => Value::Array(
            array
                .values
                .into_iter()
                .map(|v| value_from_owned_any(v, notes))
                .collect(),
        ),
        Some(any_value::Value::KvlistValue(list)) => {
            Value::Object(object_from_owned_key_values(list.values, notes))
        }
        Some(any_value::Value::BytesValue(bytes)) => {
            Value::from(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
        Some(any_value::Value::StringValueStrindex(_)) => {
            notes.profile_references += 1;
            Value::Null
        }
    }
}

/// A double as an event value: JSON has no NaN or infinity, so those become proto3 JSON's words.
fn double(d: f64) -> Value {
    if d.is_nan() {
        Value::from("NaN")
    } else if d == f64::INFINITY {
        Value::from("Infinity")
    } else if d == f64::NEG_INFINITY {
        Value::from("-Infinity")
    } else {
        // Neither NaN nor infinite: the conversion cannot fail.
        Value::from_f64_or_zero(d)
    }
}

/// Key-value pairs (attributes, a kvlist) as an object: keys sorted, the last of a repeated key wins.
pub fn object_from_key_values(pairs: &[KeyValue], notes: &mut Notes) -> ObjectMap {
    object_from_owned_key_values(pairs.to_vec(), notes)
}

/// [`object_from_key_values`] taking the pairs by value (no key or string copied).
pub fn object_from_owned_key_values(pairs: Vec<KeyValue>, notes: &mut Notes) -> ObjectMap {
    let mut kept = 0u64;
    // Collected at once: the map sorts the pairs and builds its nodes in one pass (the
    // last of equal keys kept), cheaper than an insert per pair.
    let object: ObjectMap = pairs
        .into_iter()
        .filter_map(|pair| {
            if pair.key_strindex != 0 && pair.key.is_empty() {
                notes.profile_references += 1;
                return None;
            }
            kept += 1;
            let value = pair
                .value
                .map_or(Value::Null, |v| value_from_owned_any(v, notes));
            Some((KeyString::from(pair.key), value))
        })
        .collect();
    notes.duplicate_keys += kept - object.len() as u64;
    object
}

/// The OTLP value of an event value.
pub fn any_from_value(value: &Value) -> AnyValue {
    let inner = match value {
        Value::Null => None,
        Value::Bytes(_) | Value::String(_) | Value::Regex(_) => Some(
            any_value::Value::StringValue(value.to_string_lossy().into_owned()),
        ),
        Value::Integer(i) => Some(any_value::Value::IntValue(*i)),
        Value::Float(f) => Some(any_value::Value::DoubleValue(f.into_inner())),
        Value::Boolean(b) => Some(any_value::Value::BoolValue(*b)),
        Value::Timestamp(t) => Some(any_value::Value::StringValue(rfc3339(t))),
        Value::Object(object) => Some(any_value::Value::KvlistValue(KeyValueList {
            values: key_values_from_object(object),
        })),
        Value::Array(array) => Some(any_value::Value::ArrayValue(ArrayValue {
            values: array.iter().map(any_from_value).collect(),
        })),
    };
    AnyValue { value: inner }
}

/// An object's fields as key-value pairs (attributes, a kvlist), in key order.
pub fn key_values_from_object(object: &ObjectMap) -> Vec<KeyValue> {
    object
        .iter()
        .map(|(key, value)| KeyValue {
            key: key.to_string(),
            value: Some(any_from_value(value)),
            key_strindex: 0,
        })
        .collect()
}

/// A time as RFC 3339 with nanoseconds, as events' timestamps are written.
fn rfc3339(time: &DateTime<Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// The time of nanoseconds since the Unix epoch; `None` for 0 (OTLP's "unknown").
pub fn time_from_nanos(nanos: u64) -> Option<DateTime<Utc>> {
    if nanos == 0 {
        return None;
    }
    let seconds = i64::try_from(nanos / 1_000_000_000).ok()?;
    // The remainder is below one billion: it fits a u32.
    DateTime::from_timestamp(seconds, (nanos % 1_000_000_000) as u32)
}

/// Nanoseconds since the Unix epoch of a time; 0 (OTLP's "unknown") before the epoch or
/// past what 64 bits hold.
pub fn nanos_from_time(time: &DateTime<Utc>) -> u64 {
    let Ok(seconds) = u64::try_from(time.timestamp()) else {
        return 0;
    };
    seconds
        .checked_mul(1_000_000_000)
        .and_then(|n| n.checked_add(u64::from(time.timestamp_subsec_nanos())))
        .unwrap_or(0)
}

/// The resource and scope a record was sent under, mapped once per `ScopeLogs` and
/// shared by the events of all its records.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Envelope {
    /// The `resource` field, `None` when the resource carries nothing.
    pub resource: Option<Value>,
    /// The `scope` field, `None` when the scope carries nothing.
    pub scope: Option<Value>,
}

impl Envelope {
    /// The envelope of records sent under `resource` (with the `ResourceLogs`' schema URL)
    /// and `scope` (with the `ScopeLogs`' schema URL).
    pub fn new(
        resource: Option<&Resource>,
        resource_schema_url: &str,
        scope: Option<&InstrumentationScope>,
        scope_schema_url: &str,
        notes: &mut Notes,
    ) -> Self {
        let mut r = ObjectMap::new();
        if let Some(resource) = resource {
            put_attributes(&mut r, resource.attributes.clone(), notes);
            put_count(
                &mut r,
                DROPPED_ATTRIBUTES_COUNT,
                resource.dropped_attributes_count,
            );
        }
        put_text(&mut r, SCHEMA_URL, resource_schema_url);
        let mut s = ObjectMap::new();
        if let Some(scope) = scope {
            put_text(&mut s, SCOPE_NAME, &scope.name);
            put_text(&mut s, SCOPE_VERSION, &scope.version);
            put_attributes(&mut s, scope.attributes.clone(), notes);
            put_count(
                &mut s,
                DROPPED_ATTRIBUTES_COUNT,
                scope.dropped_attributes_count,
            );
        }
        put_text(&mut s, SCHEMA_URL, scope_schema_url);
        Envelope {
            resource: (!r.is_empty()).then_some(Value::Object(r)),
            scope: (!s.is_empty()).then_some(Value::Object(s)),
        }
    }
}

fn put_text(object: &mut ObjectMap, key: &str, text: &str) {
    if !text.is_empty() {
        object.insert(key.into(), Value::from(text));
    }
}

fn put_count(object: &mut ObjectMap, key: &str, count: u32) {
    if count != 0 {
        object.insert(key.into(), Value::Integer(i64::from(count)));
    }
}

fn put_attributes(object: &mut ObjectMap, attributes: Vec<KeyValue>, notes: &mut Notes) {
    if !attributes.is_empty() {
        object.insert(
            ATTRIBUTES.into(),
            Value::Object(object_from_owned_key_values(attributes, notes)),
        );
    }
}

fn put_owned_text(object: &mut ObjectMap, key: &str, text: String) {
    if !text.is_empty() {
        object.insert(key.into(), Value::from(text));
    }
}

/// The event of one log record sent under `envelope`; `received` is the time it arrived,
/// the observed time when the sender left it unset.
pub fn event_from_record(
    record: &LogRecord,
    envelope: &Envelope,
    received: DateTime<Utc>,
    notes: &mut Notes,
) -> ObjectMap {
    event_from_owned_record(record.clone(), envelope, received, notes)
}

/// [`event_from_record`] taking the record by value: its strings become the event's
/// without a copy.
pub fn event_from_owned_record(
    record: LogRecord,
    envelope: &Envelope,
    received: DateTime<Utc>,
    notes: &mut Notes,
) -> ObjectMap {
    let mut event = ObjectMap::new();
    let observed = time_from_nanos(record.observed_time_unix_nano).unwrap_or(received);
    let time = time_from_nanos(record.time_unix_nano).unwrap_or(observed);
    event.insert(TIMESTAMP.into(), Value::Timestamp(time));
    event.insert(OBSERVED_TIMESTAMP.into(), Value::Timestamp(observed));
    if let Some(body) = record.body {
        // Bytes come out as text too; only a string body is the message.
        let field = match body.value {
            Some(any_value::Value::StringValue(_)) => MESSAGE,
            _ => BODY,
        };
        match value_from_owned_any(body, notes) {
            Value::Null => {}
            value => {
                event.insert(field.into(), value);
            }
        }
    }
    put_attributes(&mut event, record.attributes, notes);
    put_count(
        &mut event,
        DROPPED_ATTRIBUTES_COUNT,
        record.dropped_attributes_count,
    );
    if record.severity_number != 0 {
        event.insert(
            SEVERITY_NUMBER.into(),
            Value::Integer(i64::from(record.severity_number)),
        );
    }
    put_owned_text(&mut event, SEVERITY_TEXT, record.severity_text);
    put_owned_text(&mut event, TRACE_ID, hex(&record.trace_id));
    put_owned_text(&mut event, SPAN_ID, hex(&record.span_id));
    put_count(&mut event, FLAGS, record.flags);
    put_owned_text(&mut event, EVENT_NAME, record.event_name);
    if let Some(resource) = &envelope.resource {
        event.insert(RESOURCE.into(), resource.clone());
    }
    if let Some(scope) = &envelope.scope {
        event.insert(SCOPE.into(), scope.clone());
    }
    event
}

/// Lowercase hex, as OTLP/JSON writes trace and span ids.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
    text
}

/// The bytes of hex text (either case); `None` when it is not hex.
fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    text.as_bytes()
        .chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

/// A log record and the resource and scope it belongs under, read back from an event of
/// this module's shape: the reverse of [`Envelope::new`] and [`event_from_record`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecordParts {
    /// The record.
    pub record: LogRecord,
    /// Its resource (`None` when the event has no `resource` field).
    pub resource: Option<Resource>,
    /// The `ResourceLogs.schema_url`.
    pub resource_schema_url: String,
    /// Its scope (`None` when the event has no `scope` field).
    pub scope: Option<InstrumentationScope>,
    /// The `ScopeLogs.schema_url`.
    pub scope_schema_url: String,
}

/// The record an event of this module's shape describes. Fields of the wrong kind are
/// left unset and noted (`lossy_text`); fields outside [`FIELDS`] are not read.
pub fn record_from_event(event: &ObjectMap, notes: &mut Notes) -> RecordParts {
    let mut parts = RecordParts::default();
    let record = &mut parts.record;
    let time = |key: &str| {
        event
            .get(key)
            .and_then(crate::event_time::event_time)
            .map_or(0, |t| nanos_from_time(&t))
    };
    record.time_unix_nano = time(TIMESTAMP);
    record.observed_time_unix_nano = time(OBSERVED_TIMESTAMP);
    record.body = match (event.get(MESSAGE), event.get(BODY)) {
        (Some(message), _) => Some(any_from_value(message)),
        (None, Some(body)) => Some(any_from_value(body)),
        (None, None) => None,
    };
    record.attributes = attributes_of(event);
    record.dropped_attributes_count = count_of(event, DROPPED_ATTRIBUTES_COUNT);
    record.severity_number = event
        .get(SEVERITY_NUMBER)
        .and_then(integer)
        .and_then(|n| i32::try_from(n).ok())
        .unwrap_or(0);
    record.severity_text = text_of(event, SEVERITY_TEXT);
    record.trace_id = id_of(event, TRACE_ID, notes);
    record.span_id = id_of(event, SPAN_ID, notes);
    record.flags = count_of(event, FLAGS);
    record.event_name = text_of(event, EVENT_NAME);
    if let Some(Value::Object(resource)) = event.get(RESOURCE) {
        parts.resource_schema_url = text_of(resource, SCHEMA_URL);
        parts.resource = Some(Resource {
            attributes: attributes_of(resource),
            dropped_attributes_count: count_of(resource, DROPPED_ATTRIBUTES_COUNT),
            entity_refs: Vec::new(),
        });
    }
    if let Some(Value::Object(scope)) = event.get(SCOPE) {
        parts.scope_schema_url = text_of(scope, SCHEMA_URL);
        parts.scope = Some(InstrumentationScope {
            name: text_of(scope, SCOPE_NAME),
            version: text_of(scope, SCOPE_VERSION),
            attributes: attributes_of(scope),
            dropped_attributes_count: count_of(scope, DROPPED_ATTRIBUTES_COUNT),
        });
    }
    parts
}

fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Integer(i) => Some(*i),
        Value::Float(f) if f.fract() == 0.0 => Some(f.into_inner() as i64),
        other => other.to_str()?.trim().parse().ok(),
    }
}

fn count_of(object: &ObjectMap, key: &str) -> u32 {
    object
        .get(key)
        .and_then(integer)
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(0)
}

fn text_of(object: &ObjectMap, key: &str) -> String {
    match object.get(key) {
        None | Some(Value::Null) => String::new(),
        Some(text @ (Value::Bytes(_) | Value::String(_))) => text.to_string_lossy().into_owned(),
        Some(other) => other.to_string_lossy().into_owned(),
    }
}

fn attributes_of(object: &ObjectMap) -> Vec<KeyValue> {
    match object.get(ATTRIBUTES) {
        Some(Value::Object(attributes)) => key_values_from_object(attributes),
        _ => Vec::new(),
    }
}

fn id_of(object: &ObjectMap, key: &str, notes: &mut Notes) -> Vec<u8> {
    let Some(value) = object.get(key) else {
        return Vec::new();
    };
    match value.to_str().and_then(|text| unhex(text.trim())) {
        Some(bytes) => bytes,
        None => {
            notes.lossy_text += 1;
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn s(text: &str) -> AnyValue {
        AnyValue {
            value: Some(any_value::Value::StringValue(text.into())),
        }
    }

    fn kv(key: &str, value: AnyValue) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(value),
            key_strindex: 0,
        }
    }

    fn received() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).expect("a valid time")
    }

    fn full_record() -> LogRecord {
        LogRecord {
            time_unix_nano: 1_767_225_600_123_456_789,
            observed_time_unix_nano: 1_767_225_661_000_000_001,
            severity_number: 9,
            severity_text: "Informational".into(),
            body: Some(AnyValue {
                value: Some(any_value::Value::KvlistValue(KeyValueList {
                    values: vec![
                        kv("Operation", s("New-InboxRule")),
                        kv(
                            "RecordType",
                            AnyValue {
                                value: Some(any_value::Value::IntValue(1)),
                            },
                        ),
                    ],
                })),
            }),
            attributes: vec![kv("tenant", s("t1"))],
            dropped_attributes_count: 2,
            flags: 1,
            trace_id: (1..=16).collect(),
            span_id: (0xf0..=0xf7).collect(),
            event_name: "o365.audit.exchange".into(),
        }
    }

    fn full_envelope(notes: &mut Notes) -> Envelope {
        Envelope::new(
            Some(&Resource {
                attributes: vec![kv("service.name", s("siemflow"))],
                dropped_attributes_count: 3,
                entity_refs: Vec::new(),
            }),
            "https://opentelemetry.io/schemas/1.26.0",
            Some(&InstrumentationScope {
                name: "siemflow.o365".into(),
                version: "0.1.0".into(),
                attributes: vec![kv("a", s("b"))],
                dropped_attributes_count: 4,
            }),
            "https://scope.example/schema",
            notes,
        )
    }

    #[test]
    fn a_record_becomes_the_documented_event() {
        let mut notes = Notes::default();
        let envelope = full_envelope(&mut notes);
        let event = event_from_record(&full_record(), &envelope, received(), &mut notes);
        let json = serde_json::to_value(Value::Object(event)).expect("json");
        assert_eq!(
            json,
            serde_json::json!({
                "timestamp": "2026-01-01T00:00:00.123456789Z",
                "observed_timestamp": "2026-01-01T00:01:01.000000001Z",
                "severity_number": 9,
                "severity_text": "Informational",
                "body": {"Operation": "New-InboxRule", "RecordType": 1},
                "attributes": {"tenant": "t1"},
                "dropped_attributes_count": 2,
                "flags": 1,
                "trace_id": "0102030405060708090a0b0c0d0e0f10",
                "span_id": "f0f1f2f3f4f5f6f7",
                "event_name": "o365.audit.exchange",
                "resource": {
                    "attributes": {"service.name": "siemflow"},
                    "dropped_attributes_count": 3,
                    "schema_url": "https://opentelemetry.io/schemas/1.26.0"
                },
                "scope": {
                    "name": "siemflow.o365",
                    "version": "0.1.0",
                    "attributes": {"a": "b"},
                    "dropped_attributes_count": 4,
                    "schema_url": "https://scope.example/schema"
                }
            })
        );
        assert!(notes.is_empty());
    }

    #[test]
    fn a_string_body_is_the_message_and_unset_fields_stay_out() {
        let record = LogRecord {
            body: Some(s("hello")),
            observed_time_unix_nano: 1_767_225_661_000_000_000,
            ..LogRecord::default()
        };
        let event = event_from_record(
            &record,
            &Envelope::default(),
            received(),
            &mut Notes::default(),
        );
        let json = serde_json::to_value(Value::Object(event)).expect("json");
        // time_unix_nano 0: the observed time stands in (spec: consumers use it then).
        assert_eq!(
            json,
            serde_json::json!({
                "timestamp": "2026-01-01T00:01:01Z",
                "observed_timestamp": "2026-01-01T00:01:01Z",
                "message": "hello"
            })
        );
        let event = event_from_record(
            &LogRecord::default(),
            &Envelope::default(),
            received(),
            &mut Notes::default(),
        );
        assert_eq!(event.get(TIMESTAMP), Some(&Value::Timestamp(received())));
        assert_eq!(
            event.get(OBSERVED_TIMESTAMP),
            Some(&Value::Timestamp(received()))
        );
        assert_eq!(event.len(), 2);
    }

    #[test]
    fn the_full_record_round_trips() {
        let mut notes = Notes::default();
        let envelope = full_envelope(&mut notes);
        let record = full_record();
        let event = event_from_record(&record, &envelope, received(), &mut notes);
        let parts = record_from_event(&event, &mut notes);
        assert_eq!(parts.record, record);
        assert_eq!(
            parts.resource_schema_url,
            "https://opentelemetry.io/schemas/1.26.0"
        );
        assert_eq!(parts.scope_schema_url, "https://scope.example/schema");
        let again = Envelope::new(
            parts.resource.as_ref(),
            &parts.resource_schema_url,
            parts.scope.as_ref(),
            &parts.scope_schema_url,
            &mut notes,
        );
        assert_eq!(again, envelope);
        assert!(notes.is_empty());
    }

    #[test]
    fn what_json_cannot_hold_becomes_text() {
        let mut notes = Notes::default();
        let bytes = AnyValue {
            value: Some(any_value::Value::BytesValue(vec![0, 0xff, 0x10])),
        };
        assert_eq!(value_from_any(&bytes, &mut notes), Value::from("AP8Q"));
        for (d, text) in [
            (f64::NAN, "NaN"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
        ] {
            let any = AnyValue {
                value: Some(any_value::Value::DoubleValue(d)),
            };
            assert_eq!(value_from_any(&any, &mut notes), Value::from(text));
        }
        assert!(notes.is_empty());
        let strindex = AnyValue {
            value: Some(any_value::Value::StringValueStrindex(3)),
        };
        assert_eq!(value_from_any(&strindex, &mut notes), Value::Null);
        let twice = vec![kv("k", s("first")), kv("k", s("second"))];
        let object = object_from_key_values(&twice, &mut notes);
        assert_eq!(object.get("k"), Some(&Value::from("second")));
        assert_eq!(
            notes,
            Notes {
                duplicate_keys: 1,
                profile_references: 1,
                lossy_text: 0
            }
        );
    }

    #[test]
    fn bad_ids_are_left_unset_and_noted() {
        let mut event = ObjectMap::new();
        event.insert(TRACE_ID.into(), Value::from("not hex"));
        event.insert(SPAN_ID.into(), Value::from("ABCDEF0123456789"));
        let mut notes = Notes::default();
        let parts = record_from_event(&event, &mut notes);
        assert!(parts.record.trace_id.is_empty());
        assert_eq!(
            parts.record.span_id,
            [0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89]
        );
        assert_eq!(notes.lossy_text, 1);
    }

    #[test]
    fn times_at_the_edges() {
        assert_eq!(time_from_nanos(0), None);
        let far = time_from_nanos(u64::MAX).expect("year 2554 is a valid time");
        assert_eq!(nanos_from_time(&far), u64::MAX);
        let before_epoch = DateTime::from_timestamp(-1, 0).expect("valid");
        assert_eq!(nanos_from_time(&before_epoch), 0);
    }

    /// AnyValue trees of what JSON holds exactly: no bytes, finite doubles, unique keys
    /// (the spec forbids repeats) in sorted order (objects keep keys sorted).
    fn any_tree() -> impl Strategy<Value = AnyValue> {
        let leaf = prop_oneof![
            Just(AnyValue { value: None }),
            any::<String>().prop_map(|t| s(&t)),
            any::<bool>().prop_map(|b| AnyValue {
                value: Some(any_value::Value::BoolValue(b))
            }),
            any::<i64>().prop_map(|i| AnyValue {
                value: Some(any_value::Value::IntValue(i))
            }),
            any::<f64>()
                .prop_filter("finite", |d| d.is_finite())
                .prop_map(|d| AnyValue {
                    value: Some(any_value::Value::DoubleValue(d))
                }),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(|values| AnyValue {
                    value: Some(any_value::Value::ArrayValue(ArrayValue { values }))
                }),
                prop::collection::btree_map(any::<String>(), inner, 0..6).prop_map(|map| {
                    AnyValue {
                        value: Some(any_value::Value::KvlistValue(KeyValueList {
                            values: map.into_iter().map(|(k, v)| kv(&k, v)).collect(),
                        })),
                    }
                }),
            ]
        })
    }

    /// `-0.0` and `0.0` are equal doubles but not equal bits; compare through `==`.
    fn same(a: &AnyValue, b: &AnyValue) -> bool {
        a == b
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn any_values_round_trip(tree in any_tree()) {
            let mut notes = Notes::default();
            let value = value_from_any(&tree, &mut notes);
            prop_assert!(notes.is_empty());
            let back = any_from_value(&value);
            prop_assert!(same(&back, &tree), "{tree:?} came back as {back:?}");
            // Through JSON too, as the file sink writes it and a reader parses it.
            let json = serde_json::to_string(&value).expect("json");
            let reread: Value = serde_json::from_str::<serde_json::Value>(&json).expect("parse").into();
            let back = any_from_value(&reread);
            prop_assert!(same(&back, &tree), "{tree:?} came back through JSON as {back:?}");
        }

        #[test]
        fn records_round_trip(
            body in proptest::option::of(any_tree()),
            attributes in prop::collection::btree_map("[a-z.]{1,12}", any_tree(), 0..5),
            time in any::<u64>(),
            observed in 1..u64::MAX,
            severity_number in 0..=24i32,
            severity_text in ".{0,12}",
            flags in any::<u32>(),
            dropped in any::<u32>(),
            trace_id in proptest::option::of(prop::array::uniform16(any::<u8>())),
            span_id in proptest::option::of(prop::array::uniform8(any::<u8>())),
            event_name in ".{0,20}",
        ) {
            // A present-but-empty body is the same as none: both come back as none.
            let body = body.filter(|b| b.value.is_some());
            let record = LogRecord {
                time_unix_nano: if time == 0 { observed } else { time },
                observed_time_unix_nano: observed,
                severity_number,
                severity_text,
                body,
                attributes: attributes.into_iter().map(|(k, v)| kv(&k, v)).collect(),
                dropped_attributes_count: dropped,
                flags,
                trace_id: trace_id.map(Vec::from).unwrap_or_default(),
                span_id: span_id.map(Vec::from).unwrap_or_default(),
                event_name,
            };
            let mut notes = Notes::default();
            let event = event_from_record(&record, &Envelope::default(), received(), &mut notes);
            let parts = record_from_event(&event, &mut notes);
            prop_assert!(notes.is_empty());
            prop_assert_eq!(parts.record, record);
        }
    }
}
