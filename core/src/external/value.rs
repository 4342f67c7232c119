//! The lossless mapping between siemflow's values (VRL's) and the protocol's `Value`.
//!
//! Every kind a [`Value`] holds has its own wire kind, with two exceptions. Bytes that
//! are valid UTF-8 travel as `string` like text does (so a Python plugin sees `str` for
//! the text fields sources read as bytes) and come back as text, which siemflow compares
//! equal to those bytes; other bytes travel as `bytes`. A regex travels as its pattern in
//! `string` and comes back as text (no plugin can build a VRL regex). A
//! double is never NaN in siemflow; a NaN from a plugin is refused, as is a timestamp
//! outside chrono's range. An unset wire value (proto3's default) reads as null.
//!
//! With the `json-events` capability an event travels as JSON text instead, with the
//! leaves JSON cannot hold exactly (timestamps, bytes that are not UTF-8, infinite
//! floats) beside it as wire values by path: as lossless, and several times cheaper to
//! encode and decode on both sides than nested `Value` messages.

use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use vrl::value::{KeyString, ObjectMap, Value};

use super::proto::{self, value::Kind};

/// A wire value siemflow cannot hold.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValueError {
    /// A double that is NaN.
    #[error("a float value is NaN, which siemflow's values cannot hold")]
    NaN,
    /// An event's `json` that is not a JSON document.
    #[error("the event's JSON does not parse: {0}")]
    Json(String),
    /// An `exact` entry whose path is not in the event's JSON.
    #[error("an exact value's path {0} is not in the event")]
    Path(String),
    /// A timestamp beyond what siemflow can represent, or with nanos out of range.
    #[error("timestamp {seconds}s {nanos}ns is out of range")]
    Timestamp {
        /// Its seconds.
        seconds: i64,
        /// Its nanoseconds.
        nanos: i32,
    },
}

/// The wire form of a value. It borrows: the host keeps every event it sends until the
/// plugin answered, to settle, resend or dead-letter it.
pub fn to_wire(value: &Value) -> proto::Value {
    let kind = match value {
        Value::Null => Kind::Null(proto::NullValue::NullValue as i32),
        Value::Boolean(b) => Kind::Boolean(*b),
        Value::Integer(i) => Kind::Integer(*i),
        Value::Float(f) => Kind::Float(f.into_inner()),
        Value::Bytes(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => Kind::String(text.to_owned()),
            Err(_) => Kind::Bytes(bytes.to_vec()),
        },
        Value::String(text) => Kind::String(text.to_string()),
        Value::Regex(regex) => Kind::String(regex.as_str().to_owned()),
        Value::Timestamp(ts) => Kind::Timestamp(proto::Timestamp {
            seconds: ts.timestamp(),
            // Below 2e9 always (a leap second is at most 1,999,999,999).
            nanos: ts.timestamp_subsec_nanos() as i32,
        }),
        Value::Array(values) => Kind::Array(proto::Array {
            values: values.iter().map(to_wire).collect(),
        }),
        Value::Object(map) => Kind::Object(proto::Object {
            fields: map
                .iter()
                .map(|(key, value)| (key.to_string(), to_wire(value)))
                .collect(),
        }),
    };
    proto::Value { kind: Some(kind) }
}

/// The value a wire value stands for.
pub fn from_wire(value: proto::Value) -> Result<Value, ValueError> {
    Ok(match value.kind {
        None | Some(Kind::Null(_)) => Value::Null,
        Some(Kind::Boolean(b)) => Value::Boolean(b),
        Some(Kind::Integer(i)) => Value::Integer(i),
        Some(Kind::Float(f)) => Value::Float(f.try_into().map_err(|_| ValueError::NaN)?),
        Some(Kind::Bytes(bytes)) => Value::Bytes(Bytes::from(bytes)),
        Some(Kind::String(text)) => Value::from(text),
        Some(Kind::Timestamp(proto::Timestamp { seconds, nanos })) => {
            let ts = u32::try_from(nanos)
                .ok()
                .filter(|n| *n < 1_000_000_000)
                .and_then(|n| DateTime::<Utc>::from_timestamp(seconds, n))
                .ok_or(ValueError::Timestamp { seconds, nanos })?;
            Value::Timestamp(ts)
        }
        Some(Kind::Array(array)) => Value::Array(
            array
                .values
                .into_iter()
                .map(from_wire)
                .collect::<Result<_, _>>()?,
        ),
        Some(Kind::Object(object)) => {
            let mut map = ObjectMap::new();
            for (key, value) in object.fields {
                map.insert(KeyString::from(key), from_wire(value)?);
            }
            Value::Object(map)
        }
    })
}

/// The capability under which events may travel as JSON text (`Event.json`).
pub const JSON_EVENTS: &str = "json-events";

/// The capability under which a transform may answer with patches (`Emitted.patch`).
pub const EVENT_PATCHES: &str = "event-patches";

/// How a sender puts events on the wire, as agreed in the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EventForm {
    /// Nested `Value` messages: what every peer reads.
    #[default]
    Value,
    /// JSON text with its exact leaves (both peers named [`JSON_EVENTS`]).
    Json,
}

impl EventForm {
    /// The form agreed by a handshake answer's capabilities.
    pub fn agreed(capabilities: &[String]) -> Self {
        if capabilities.iter().any(|c| c == JSON_EVENTS) {
            EventForm::Json
        } else {
            EventForm::Value
        }
    }
}

/// The wire form of an event's value.
pub fn event_to_wire(value: &Value, form: EventForm) -> proto::Event {
    EventEncoder {
        form,
        buffer: BytesMut::new(),
        chunk: SINGLE_CHUNK,
    }
    .encode(value)
}

/// The wire forms of a batch's values.
pub fn events_to_wire<'a>(
    values: impl IntoIterator<Item = &'a Value>,
    form: EventForm,
) -> Vec<proto::Event> {
    let mut encoder = EventEncoder::new(form);
    values.into_iter().map(|v| encoder.encode(v)).collect()
}

/// Puts the events of a batch on the wire in one form; their JSON texts are slices of
/// one buffer, not an allocation each.
pub struct EventEncoder {
    form: EventForm,
    buffer: BytesMut,
    /// Bytes the buffer grows by when it runs low.
    chunk: usize,
}

/// A batch's buffer grows by this much, room for dozens of events.
const BATCH_CHUNK: usize = 64 * 1024;
/// Room for one typical event: a single event does not hold a batch's buffer.
const SINGLE_CHUNK: usize = 1024;

impl EventEncoder {
    /// An encoder for `form`.
    pub fn new(form: EventForm) -> Self {
        EventEncoder {
            form,
            buffer: BytesMut::new(),
            chunk: BATCH_CHUNK,
        }
    }

    /// The wire form of one event's value.
    pub fn encode(&mut self, value: &Value) -> proto::Event {
        match self.form {
            EventForm::Value => proto::Event {
                value: Some(to_wire(value)),
                ..proto::Event::default()
            },
            EventForm::Json => {
                if self.buffer.capacity() - self.buffer.len() < self.chunk.min(4096) {
                    self.buffer.reserve(self.chunk);
                }
                let mut exact = Vec::new();
                // Only an event with a leaf its JSON cannot hold is walked for them.
                if !crate::json::write_value_exact(&mut self.buffer, value) {
                    collect_exact(value, None, &mut exact);
                }
                proto::Event {
                    value: None,
                    json: self.buffer.split().freeze(),
                    exact,
                }
            }
        }
    }
}

/// The changes to `input`'s top-level fields that make `output`: the fields added or
/// changed (moved out of `output`) and the names removed; `Err(output)` when the two
/// share no field unchanged, so a patch would save nothing.
pub fn diff(input: &ObjectMap, output: ObjectMap) -> Result<(ObjectMap, Vec<String>), ObjectMap> {
    // Both maps are sorted by key: one pass over each, no lookups, one key comparison
    // per step.
    let mut set = Vec::new();
    let mut removed = Vec::new();
    let mut kept = 0;
    let mut before = input.iter().peekable();
    for (key, value) in output {
        let same = loop {
            match before.peek() {
                Some((name, _)) => match name.as_str().cmp(key.as_str()) {
                    std::cmp::Ordering::Less => {
                        removed.push(name.to_string());
                        before.next();
                    }
                    std::cmp::Ordering::Equal => {
                        break before.next().is_some_and(|(_, old)| *old == value);
                    }
                    std::cmp::Ordering::Greater => break false,
                },
                None => break false,
            }
        };
        if same {
            kept += 1;
        } else {
            set.push((key, value));
        }
    }
    removed.extend(before.map(|(name, _)| name.to_string()));
    let set: ObjectMap = set.into_iter().collect();
    if kept == 0 {
        // Every field of the output is in `set`: it is the output.
        return Err(set);
    }
    Ok((set, removed))
}

/// Applies a patch (fields set, names removed) to an object event's fields.
pub fn apply_patch(fields: &mut ObjectMap, set: ObjectMap, removed: &[String]) {
    for name in removed {
        fields.remove(name.as_str());
    }
    fields.extend(set);
}

/// One step of a path into a value, borrowed while walking it.
#[derive(Clone, Copy)]
enum Step<'a> {
    Field(&'a str),
    Index(usize),
}

/// Where a walk is: its last step and the path before it, on the walk's own stack, so a
/// walk that finds nothing allocates nothing.
struct Path<'v, 'p> {
    step: Step<'v>,
    parent: Option<&'p Path<'v, 'p>>,
}

impl Path<'_, '_> {
    fn to_wire(&self) -> Vec<proto::PathSegment> {
        let mut segments = Vec::new();
        let mut at = Some(self);
        while let Some(path) = at {
            segments.push(proto::PathSegment {
                kind: Some(match path.step {
                    Step::Field(key) => proto::path_segment::Kind::Field(key.to_owned()),
                    // An event holds fewer than 2^32 values in one array.
                    Step::Index(i) => proto::path_segment::Kind::Index(i as u32),
                }),
            });
            at = path.parent;
        }
        segments.reverse();
        segments
    }
}

/// Adds an entry for every leaf of `value` whose JSON form is not exact.
fn collect_exact<'v>(
    value: &'v Value,
    path: Option<&Path<'v, '_>>,
    out: &mut Vec<proto::ExactValue>,
) {
    let mut walk = |step, item| {
        let here = Path { step, parent: path };
        collect_exact(item, Some(&here), out);
    };
    let inexact = match value {
        Value::Object(map) => {
            map.iter()
                .for_each(|(key, item)| walk(Step::Field(key.as_str()), item));
            return;
        }
        Value::Array(items) => {
            items
                .iter()
                .enumerate()
                .for_each(|(i, item)| walk(Step::Index(i), item));
            return;
        }
        Value::Timestamp(_) => true,
        Value::Bytes(bytes) => std::str::from_utf8(bytes).is_err(),
        Value::Float(f) => f.is_infinite(),
        _ => false,
    };
    if inexact {
        out.push(proto::ExactValue {
            path: path.map(Path::to_wire).unwrap_or_default(),
            value: Some(to_wire(value)),
        });
    }
}

/// The value of a wire event (null when it has none).
pub fn event_from_wire(event: proto::Event) -> Result<Value, ValueError> {
    if event.json.is_empty() {
        return event.value.map_or(Ok(Value::Null), from_wire);
    }
    let mut value = parse_json_text(&event.json)?;
    for exact in event.exact {
        place_exact(&mut value, &exact.path, exact.value)?;
    }
    Ok(value)
}

/// A value from an event's JSON text, read as a file source reads a line.
pub(crate) fn parse_json_text(json: &[u8]) -> Result<Value, ValueError> {
    // A plugin's big integers and repeated keys are read as a file source reads them
    // (exact digits as text; the last value), not refused.
    let mut issues = crate::decoding::LineIssues::default();
    crate::decoding::parse_json(json, &mut issues).map_err(|e| ValueError::Json(e.to_string()))
}

/// Puts an exact leaf at its path inside `value` (the path must lead to a value the JSON
/// text already has there).
pub(crate) fn place_exact(
    value: &mut Value,
    path: &[proto::PathSegment],
    exact: Option<proto::Value>,
) -> Result<(), ValueError> {
    let slot = path
        .iter()
        .try_fold(value, |at, segment| match (at, &segment.kind) {
            (Value::Object(map), Some(proto::path_segment::Kind::Field(key))) => {
                map.get_mut(key.as_str())
            }
            (Value::Array(items), Some(proto::path_segment::Kind::Index(i))) => {
                items.get_mut(*i as usize)
            }
            _ => None,
        })
        .ok_or_else(|| ValueError::Path(format!("{path:?}")))?;
    *slot = exact.map_or(Ok(Value::Null), from_wire)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::json::arbitrary::any_value;

    proptest! {
        #[test]
        fn every_value_round_trips_through_the_wire(value in any_value()) {
            let wire = to_wire(&value);
            // Through the bytes too, as a plugin would receive and send it.
            let bytes = prost::Message::encode_to_vec(&wire);
            let decoded = <proto::Value as prost::Message>::decode(bytes.as_slice()).expect("decodes");
            prop_assert_eq!(from_wire(decoded).expect("valid"), value);
        }
    }

    proptest! {
        #[test]
        fn the_writer_tells_exactly_when_a_leaf_needs_its_exact_form(value in any_value()) {
            let mut text = Vec::new();
            let exact = crate::json::write_value_exact(&mut text, &value);
            let mut leaves = Vec::new();
            collect_exact(&value, None, &mut leaves);
            prop_assert_eq!(exact, leaves.is_empty());
        }

        #[test]
        fn every_value_round_trips_through_the_json_form(value in any_value()) {
            let wire = event_to_wire(&value, EventForm::Json);
            prop_assert!(wire.value.is_none());
            let bytes = prost::Message::encode_to_vec(&wire);
            let decoded = <proto::Event as prost::Message>::decode(bytes.as_slice()).expect("decodes");
            prop_assert_eq!(event_from_wire(decoded).expect("valid"), value);
        }
    }

    fn any_object() -> impl Strategy<Value = ObjectMap> {
        proptest::collection::btree_map("[a-e]{1,2}", 0i64..3, 0..8).prop_map(|m| {
            m.into_iter()
                .map(|(k, v)| (KeyString::from(k), Value::Integer(v)))
                .collect()
        })
    }

    proptest! {
        #[test]
        fn a_patch_rebuilds_any_output_from_its_input(input in any_object(), output in any_object()) {
            match diff(&input, output.clone()) {
                Ok((set, removed)) => {
                    let mut rebuilt = input.clone();
                    apply_patch(&mut rebuilt, set, &removed);
                    prop_assert_eq!(rebuilt, output);
                }
                Err(whole) => prop_assert_eq!(whole, output),
            }
        }
    }

    #[test]
    fn only_what_json_cannot_hold_goes_beside_it() {
        let ts = DateTime::<Utc>::from_timestamp(1_700_000_000, 123_456_789).expect("in range");
        let value = Value::Object(
            [
                ("text".into(), Value::from("plain")),
                ("n".into(), Value::Integer(-7)),
                ("at".into(), Value::Timestamp(ts)),
                (
                    "list".into(),
                    Value::Array(vec![
                        Value::from_f64_or_zero(1.5),
                        Value::Bytes(Bytes::from_static(&[0xff])),
                        Value::from_f64_or_zero(f64::INFINITY),
                    ]),
                ),
            ]
            .into_iter()
            .collect(),
        );
        let wire = event_to_wire(&value, EventForm::Json);
        let json: serde_json::Value = serde_json::from_slice(&wire.json).expect("JSON");
        // The JSON alone is the nearest JSON value, for a peer that reads only it.
        assert_eq!(json["text"], "plain");
        assert_eq!(json["at"], "2023-11-14T22:13:20.123456789Z");
        assert_eq!(json["list"][2], serde_json::Value::Null);
        let paths: Vec<_> = wire.exact.iter().map(|e| format!("{:?}", e.path)).collect();
        assert_eq!(wire.exact.len(), 3, "{paths:?}");
        assert_eq!(event_from_wire(wire), Ok(value));
    }

    #[test]
    fn an_exact_value_off_the_json_is_refused() {
        let mut wire = event_to_wire(
            &Value::Object([("a".into(), Value::Integer(1))].into_iter().collect()),
            EventForm::Json,
        );
        wire.exact.push(proto::ExactValue {
            path: vec![proto::PathSegment {
                kind: Some(proto::path_segment::Kind::Field("b".into())),
            }],
            value: Some(to_wire(&Value::Boolean(true))),
        });
        assert!(matches!(event_from_wire(wire), Err(ValueError::Path(_))));
        let broken = proto::Event {
            json: Bytes::from_static(b"{\"a\":"),
            ..proto::Event::default()
        };
        assert!(matches!(event_from_wire(broken), Err(ValueError::Json(_))));
    }

    fn object(fields: &[(&str, Value)]) -> ObjectMap {
        fields
            .iter()
            .map(|(k, v)| (KeyString::from(*k), v.clone()))
            .collect()
    }

    #[test]
    fn a_patch_carries_only_what_changed_and_rebuilds_the_output() {
        let input = object(&[
            ("kept", Value::from("same")),
            ("changed", Value::Integer(1)),
            ("gone", Value::Boolean(true)),
        ]);
        let output = object(&[
            ("kept", Value::from("same")),
            ("changed", Value::Integer(2)),
            ("added", Value::Null),
        ]);
        let (set, removed) = diff(&input, output.clone()).expect("a field is kept");
        assert_eq!(
            set,
            object(&[("changed", Value::Integer(2)), ("added", Value::Null)])
        );
        assert_eq!(removed, vec!["gone".to_string()]);
        let mut rebuilt = input.clone();
        apply_patch(&mut rebuilt, set, &removed);
        assert_eq!(rebuilt, output);
        // Nothing shared: the whole event is cheaper.
        let other = object(&[("kept", Value::from("different"))]);
        assert_eq!(diff(&input, other.clone()), Err(other));
    }

    #[test]
    fn the_json_form_is_agreed_only_by_name() {
        assert_eq!(EventForm::agreed(&[]), EventForm::Value);
        assert_eq!(
            EventForm::agreed(&["other".into(), JSON_EVENTS.into()]),
            EventForm::Json
        );
    }

    #[test]
    fn text_goes_as_a_string_and_other_bytes_as_bytes() {
        let text = to_wire(&Value::from("héllo"));
        assert_eq!(text.kind, Some(Kind::String("héllo".into())));
        let binary = to_wire(&Value::Bytes(Bytes::from_static(&[0xff, 0])));
        assert_eq!(binary.kind, Some(Kind::Bytes(vec![0xff, 0])));
    }

    #[test]
    fn a_regex_goes_as_its_pattern() {
        let regex = vrl::value::ValueRegex::from(std::sync::Arc::new(
            regex::Regex::new("^a+$").expect("regex"),
        ));
        let wire = to_wire(&Value::Regex(regex));
        assert_eq!(from_wire(wire), Ok(Value::from("^a+$")));
    }

    #[test]
    fn nan_bad_timestamps_and_unset_values() {
        let nan = proto::Value {
            kind: Some(Kind::Float(f64::NAN)),
        };
        assert_eq!(from_wire(nan), Err(ValueError::NaN));
        let nanos = proto::Value {
            kind: Some(Kind::Timestamp(proto::Timestamp {
                seconds: 0,
                nanos: -1,
            })),
        };
        assert!(matches!(
            from_wire(nanos),
            Err(ValueError::Timestamp { .. })
        ));
        let far = proto::Value {
            kind: Some(Kind::Timestamp(proto::Timestamp {
                seconds: i64::MAX,
                nanos: 0,
            })),
        };
        assert!(matches!(from_wire(far), Err(ValueError::Timestamp { .. })));
        assert_eq!(from_wire(proto::Value { kind: None }), Ok(Value::Null));
        assert_eq!(event_from_wire(proto::Event::default()), Ok(Value::Null));
    }
}
