//! An event value written straight as the protobuf of its OTLP `AnyValue`, without
//! building the `AnyValue` tree first: a Microsoft record of ~30 fields as a body would
//! otherwise cost an allocation per key, per text and per list, made only to be encoded
//! and dropped. The bytes are exactly prost's encoding of `otlp::any_from_value(value)`
//! (the tests hold them equal), so the generated code stays the reference.

use chrono::SecondsFormat;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};
use siemflow_core::Value;

/// `AnyValue` fields (`common.proto`).
const STRING_VALUE: u32 = 1;
const BOOL_VALUE: u32 = 2;
const INT_VALUE: u32 = 3;
const DOUBLE_VALUE: u32 = 4;
const ARRAY_VALUE: u32 = 5;
const KVLIST_VALUE: u32 = 6;
/// `ArrayValue.values`, `KeyValueList.values`.
const VALUES: u32 = 1;
/// `KeyValue.key`, `KeyValue.value`.
const KEY: u32 = 1;
const VALUE: u32 = 2;

/// The length of `value`'s `AnyValue` message.
pub(super) fn encoded_len(value: &Value) -> usize {
    match value {
        Value::Null => 0,
        Value::Bytes(_) | Value::String(_) | Value::Regex(_) => {
            text_field_len(STRING_VALUE, value.to_string_lossy().len())
        }
        Value::Timestamp(time) => text_field_len(STRING_VALUE, rfc3339(time).len()),
        Value::Boolean(_) => key_len(BOOL_VALUE) + 1,
        Value::Integer(i) => key_len(INT_VALUE) + encoded_len_varint(*i as u64),
        Value::Float(_) => key_len(DOUBLE_VALUE) + 8,
        Value::Array(values) => nested_len(ARRAY_VALUE, array_len(values)),
        Value::Object(object) => nested_len(KVLIST_VALUE, kvlist_len(object)),
    }
}

/// Appends `value`'s `AnyValue` message (without a key or length of its own).
pub(super) fn encode(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => {}
        Value::Bytes(_) | Value::String(_) | Value::Regex(_) => {
            text_field(STRING_VALUE, &value.to_string_lossy(), out)
        }
        Value::Timestamp(time) => text_field(STRING_VALUE, &rfc3339(time), out),
        Value::Boolean(b) => {
            encode_key(BOOL_VALUE, WireType::Varint, out);
            encode_varint(u64::from(*b), out);
        }
        Value::Integer(i) => {
            encode_key(INT_VALUE, WireType::Varint, out);
            // int64: two's complement, as prost writes it.
            encode_varint(*i as u64, out);
        }
        Value::Float(f) => {
            encode_key(DOUBLE_VALUE, WireType::SixtyFourBit, out);
            out.extend_from_slice(&f.into_inner().to_le_bytes());
        }
        Value::Array(values) => {
            encode_key(ARRAY_VALUE, WireType::LengthDelimited, out);
            encode_varint(array_len(values) as u64, out);
            for value in values {
                message(VALUES, value, out);
            }
        }
        Value::Object(object) => {
            encode_key(KVLIST_VALUE, WireType::LengthDelimited, out);
            encode_varint(kvlist_len(object) as u64, out);
            for (key, value) in object {
                let pair = key_value_len(key, value);
                encode_key(VALUES, WireType::LengthDelimited, out);
                encode_varint(pair as u64, out);
                if !key.is_empty() {
                    text_field(KEY, key, out);
                }
                message(VALUE, value, out);
            }
        }
    }
}

/// A nested `AnyValue` as field `tag`: always written, an empty one too (prost writes a
/// present message field whatever it holds).
fn message(tag: u32, value: &Value, out: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(encoded_len(value) as u64, out);
    encode(value, out);
}

fn array_len(values: &[Value]) -> usize {
    values
        .iter()
        .map(|v| nested_len(VALUES, encoded_len(v)))
        .sum()
}

fn kvlist_len(object: &vrl::value::ObjectMap) -> usize {
    object
        .iter()
        .map(|(key, value)| nested_len(VALUES, key_value_len(key, value)))
        .sum()
}

/// A `KeyValue`: the key (left out when empty, as proto3 does) and the value (always).
fn key_value_len(key: &str, value: &Value) -> usize {
    let key = if key.is_empty() {
        0
    } else {
        text_field_len(KEY, key.len())
    };
    key + nested_len(VALUE, encoded_len(value))
}

fn nested_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

fn text_field_len(tag: u32, len: usize) -> usize {
    nested_len(tag, len)
}

fn text_field(tag: u32, text: &str, out: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(text.len() as u64, out);
    out.extend_from_slice(text.as_bytes());
}

/// A timestamp as `siemflow_core::otlp` writes it into an `AnyValue`.
fn rfc3339(time: &chrono::DateTime<chrono::Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}
