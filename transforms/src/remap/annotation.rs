//! Vector's `metadata.dropped` annotation on events the program could not process.

use vrl::value::{KeyString, ObjectMap, Value};

/// Why the program did not produce its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    /// A runtime error (a failed `!` call, a non-object result).
    Error,
    /// The program called `abort`.
    Abort,
}

impl FailureReason {
    /// The word Vector puts in `metadata.dropped.reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Error => "error",
            FailureReason::Abort => "abort",
        }
    }
}

/// The field the annotation goes under, as in Vector's legacy log namespace.
const METADATA_KEY: &str = "metadata";
/// Where the annotation goes when the event already has a non-object `metadata` field,
/// so that field survives.
const FALLBACK_KEY: &str = "siemflow_metadata";

/// Adds `metadata.dropped = { reason, message, component_id, component_type, component_kind }`.
pub fn annotate_dropped(
    value: &mut Value,
    reason: FailureReason,
    message: String,
    component_id: &str,
) {
    let mut dropped = ObjectMap::new();
    dropped.insert("reason".into(), reason.as_str().into());
    dropped.insert("message".into(), message.into());
    dropped.insert("component_id".into(), component_id.into());
    dropped.insert("component_type".into(), "remap".into());
    dropped.insert("component_kind".into(), "transform".into());
    let dropped = Value::Object(dropped);

    if !value.is_object() {
        // A non-object body (a bare string, say) is kept whole under `message`.
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
            fields.insert("dropped".into(), dropped);
        }
        other => {
            // Only reachable when the fallback key holds a non-object: keep both.
            let previous = std::mem::replace(other, Value::Null);
            let mut fields = ObjectMap::new();
            fields.insert("previous".into(), previous);
            fields.insert("dropped".into(), dropped);
            *other = Value::Object(fields);
        }
    }
}
