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

/// Appends `value` as the `AnyValue` message field `tag` (key, length, message).
///
/// Every nested message's length is written before its content, so the lengths are
/// measured first, in one pass that stores them in the order the writing pass needs
/// them: measuring each level on the way down instead would measure a leaf once per
/// level above it.
pub(super) fn encode_field(tag: u32, value: &Value, out: &mut Vec<u8>) {
    LENGTHS.with_borrow_mut(|lengths| {
        lengths.clear();
        let len = measure(value, lengths);
        encode_key(tag, WireType::LengthDelimited, out);
        encode_varint(len as u64, out);
        write(value, &mut lengths.iter().copied(), out);
    });
}

thread_local! {
    /// [`encode_field`]'s lengths, kept between records: one buffer per thread instead of
    /// an allocation per record.
    static LENGTHS: std::cell::RefCell<Vec<usize>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The length of `value`'s `AnyValue` message; pushes the lengths of the messages
/// inside it in the order [`write`] takes them.
fn measure(value: &Value, lengths: &mut Vec<usize>) -> usize {
    match value {
        Value::Null => 0,
        Value::Bytes(_) | Value::String(_) | Value::Regex(_) => {
            text_field_len(STRING_VALUE, value.to_string_lossy().len())
        }
        Value::Timestamp(time) => text_field_len(STRING_VALUE, rfc3339(time).len()),
        Value::Boolean(_) => key_len(BOOL_VALUE) + 1,
        Value::Integer(i) => key_len(INT_VALUE) + encoded_len_varint(*i as u64),
        Value::Float(_) => key_len(DOUBLE_VALUE) + 8,
        Value::Array(values) => {
            let slot = reserve(lengths);
            let mut list = 0;
            for value in values {
                list += nested_len(VALUES, measure_message(value, lengths));
            }
            lengths[slot] = list;
            nested_len(ARRAY_VALUE, list)
        }
        Value::Object(object) => {
            let slot = reserve(lengths);
            let mut list = 0;
            for (key, value) in object {
                let pair_slot = reserve(lengths);
                let key = if key.is_empty() {
                    0
                } else {
                    text_field_len(KEY, key.len())
                };
                let pair = key + nested_len(VALUE, measure_message(value, lengths));
                lengths[pair_slot] = pair;
                list += nested_len(VALUES, pair);
            }
            lengths[slot] = list;
            nested_len(KVLIST_VALUE, list)
        }
    }
}

/// Measures a nested `AnyValue` whose length is written before it.
fn measure_message(value: &Value, lengths: &mut Vec<usize>) -> usize {
    let slot = reserve(lengths);
    let len = measure(value, lengths);
    lengths[slot] = len;
    len
}

fn reserve(lengths: &mut Vec<usize>) -> usize {
    lengths.push(0);
    lengths.len() - 1
}

/// Appends `value`'s `AnyValue` message (without a key or length of its own), taking
/// the lengths [`measure`] pushed, in its order.
fn write(value: &Value, lengths: &mut impl Iterator<Item = usize>, out: &mut Vec<u8>) {
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
            encode_varint(lengths.next().unwrap_or_default() as u64, out);
            for value in values {
                write_message(VALUES, value, lengths, out);
            }
        }
        Value::Object(object) => {
            encode_key(KVLIST_VALUE, WireType::LengthDelimited, out);
            encode_varint(lengths.next().unwrap_or_default() as u64, out);
            for (key, value) in object {
                encode_key(VALUES, WireType::LengthDelimited, out);
                encode_varint(lengths.next().unwrap_or_default() as u64, out);
                if !key.is_empty() {
                    text_field(KEY, key, out);
                }
                write_message(VALUE, value, lengths, out);
            }
        }
    }
}

/// A nested `AnyValue` as field `tag`: always written, an empty one too (prost writes a
/// present message field whatever it holds).
fn write_message(
    tag: u32,
    value: &Value,
    lengths: &mut impl Iterator<Item = usize>,
    out: &mut Vec<u8>,
) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(lengths.next().unwrap_or_default() as u64, out);
    write(value, lengths, out);
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
