//! The payload of a disk buffer record: a batch of event values in a compact, typed
//! binary form.
//!
//! JSON would turn timestamps into strings and non-UTF-8 bytes into replacement
//! characters, so a sink would see different values behind a disk buffer than behind a
//! memory one; no serde format helps, because VRL's `Value` serialises to JSON's model.
//! This tagged form keeps every type (a regex, which only VRL programs create, comes back
//! as its pattern string). Layout: `[event count u32]` then each value; integers are
//! little-endian, lengths `u32`.

use bytes::Bytes;
use chrono::DateTime;
use vrl::value::{KeyString, ObjectMap, Value};

const NULL: u8 = 0;
const FALSE: u8 = 1;
const TRUE: u8 = 2;
const INTEGER: u8 = 3;
const FLOAT: u8 = 4;
const BYTES: u8 = 5;
const STRING: u8 = 6;
const TIMESTAMP: u8 = 7;
const ARRAY: u8 = 8;
const OBJECT: u8 = 9;
const REGEX: u8 = 10;

/// Deepest nesting a decoder follows: far beyond real records, short of the stack's end.
const MAX_DEPTH: usize = 128;

/// A payload that passed its checksum but does not decode (a format this build does not
/// know, or a bug): handled like a corrupted record.
#[derive(Debug, thiserror::Error)]
#[error("undecodable payload: {0}")]
pub(super) struct DecodeError(&'static str);

/// Starts a payload: the event count is patched in by [`finish`].
pub(super) fn begin(out: &mut Vec<u8>) {
    out.extend_from_slice(&0u32.to_le_bytes());
}

/// Writes the event count of a payload begun at `start`.
pub(super) fn finish(out: &mut [u8], start: usize, events: u32) {
    out[start..start + 4].copy_from_slice(&events.to_le_bytes());
}

/// The event count at the start of a payload, if it has one.
pub(super) fn event_count(payload_start: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(payload_start.get(..4)?.try_into().ok()?))
}

/// Appends one value.
pub(super) fn encode(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.push(NULL),
        Value::Boolean(false) => out.push(FALSE),
        Value::Boolean(true) => out.push(TRUE),
        Value::Integer(i) => {
            out.push(INTEGER);
            out.extend_from_slice(&i.to_le_bytes());
        }
        Value::Float(f) => {
            out.push(FLOAT);
            out.extend_from_slice(&f.into_inner().to_le_bytes());
        }
        Value::Bytes(b) => put_bytes(out, BYTES, b),
        Value::String(s) => put_bytes(out, STRING, s.as_bytes()),
        Value::Regex(r) => put_bytes(out, REGEX, r.as_str().as_bytes()),
        Value::Timestamp(t) => {
            out.push(TIMESTAMP);
            out.extend_from_slice(&t.timestamp().to_le_bytes());
            out.extend_from_slice(&t.timestamp_subsec_nanos().to_le_bytes());
        }
        Value::Array(items) => {
            out.push(ARRAY);
            put_len(out, items.len());
            for item in items {
                encode(item, out);
            }
        }
        Value::Object(map) => {
            out.push(OBJECT);
            put_len(out, map.len());
            for (key, item) in map {
                put_len(out, key.len());
                out.extend_from_slice(key.as_bytes());
                encode(item, out);
            }
        }
    }
}

fn put_bytes(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    out.push(tag);
    put_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    // Records are bounded far below 4 GiB, so every length fits.
    out.extend_from_slice(&(len as u32).to_le_bytes());
}

/// Decodes a whole payload into its values. Strings and bytes share `payload`'s memory.
pub(super) fn decode(payload: Bytes) -> Result<Vec<Value>, DecodeError> {
    let mut reader = Reader {
        bytes: payload,
        at: 0,
    };
    let count = reader.u32()? as usize;
    // Every value takes at least one byte: a count beyond what is left is corruption.
    if count > reader.left() {
        return Err(DecodeError("event count larger than the payload"));
    }
    let mut values = Vec::with_capacity(count);
    for _ in 0..count {
        values.push(reader.value(0)?);
    }
    if reader.left() != 0 {
        return Err(DecodeError("bytes after the last event"));
    }
    Ok(values)
}

struct Reader {
    bytes: Bytes,
    at: usize,
}

impl Reader {
    fn left(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        if n > self.left() {
            return Err(DecodeError("value runs past the payload"));
        }
        let slice = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(slice)
    }

    fn take_bytes(&mut self) -> Result<Bytes, DecodeError> {
        let len = self.u32()? as usize;
        if len > self.left() {
            return Err(DecodeError("value runs past the payload"));
        }
        let bytes = self.bytes.slice(self.at..self.at + len);
        self.at += len;
        Ok(bytes)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        let mut raw = [0u8; 4];
        raw.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(raw))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(raw))
    }

    fn count(&mut self) -> Result<usize, DecodeError> {
        let count = self.u32()? as usize;
        if count > self.left() {
            return Err(DecodeError("element count larger than the payload"));
        }
        Ok(count)
    }

    fn value(&mut self, depth: usize) -> Result<Value, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError("nested too deeply"));
        }
        Ok(match self.u8()? {
            NULL => Value::Null,
            FALSE => Value::Boolean(false),
            TRUE => Value::Boolean(true),
            INTEGER => Value::Integer(self.u64()? as i64),
            FLOAT => Value::from_f64_or_zero(f64::from_bits(self.u64()?)),
            BYTES => Value::Bytes(self.take_bytes()?),
            STRING | REGEX => Value::from_utf8_or_bytes(self.take_bytes()?),
            TIMESTAMP => {
                let secs = self.u64()? as i64;
                let nanos = self.u32()?;
                let time = DateTime::from_timestamp(secs, nanos)
                    .ok_or(DecodeError("timestamp out of range"))?;
                Value::Timestamp(time)
            }
            ARRAY => {
                let count = self.count()?;
                let mut items = Vec::with_capacity(count);
                for _ in 0..count {
                    items.push(self.value(depth + 1)?);
                }
                Value::Array(items)
            }
            OBJECT => {
                let count = self.count()?;
                let mut map = ObjectMap::new();
                for _ in 0..count {
                    let key = self.take_bytes()?;
                    let key = std::str::from_utf8(&key)
                        .map_err(|_| DecodeError("object key is not UTF-8"))?;
                    let item = self.value(depth + 1)?;
                    map.insert(KeyString::from(key), item);
                }
                Value::Object(map)
            }
            _ => return Err(DecodeError("unknown value tag")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(values: &[Value]) -> Vec<Value> {
        let mut out = Vec::new();
        begin(&mut out);
        for value in values {
            encode(value, &mut out);
        }
        finish(&mut out, 0, values.len() as u32);
        assert_eq!(event_count(&out), Some(values.len() as u32));
        decode(Bytes::from(out)).expect("decodes")
    }

    #[test]
    fn every_type_survives() {
        let time = DateTime::from_timestamp(1_764_000_000, 123_456_789).expect("valid time");
        let mut object = ObjectMap::new();
        object.insert("null".into(), Value::Null);
        object.insert("yes".into(), Value::Boolean(true));
        object.insert("no".into(), Value::Boolean(false));
        object.insert("int".into(), Value::Integer(-42));
        object.insert("float".into(), Value::from_f64_or_zero(2.5));
        object.insert("text".into(), Value::from("héllo"));
        object.insert(
            "raw".into(),
            Value::Bytes(Bytes::from_static(&[0xff, 0x00, 0x80])),
        );
        object.insert("time".into(), Value::Timestamp(time));
        object.insert(
            "list".into(),
            Value::Array(vec![Value::Integer(1), Value::from("two")]),
        );
        let values = vec![Value::Object(object), Value::Null, Value::from("x")];
        assert_eq!(round_trip(&values), values);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for garbage in [
            &b""[..],
            &[1, 0, 0, 0][..],
            &[1, 0, 0, 0, 99][..],
            &[1, 0, 0, 0, BYTES, 255, 255, 255, 255][..],
            &[255, 255, 255, 255, NULL][..],
            &[1, 0, 0, 0, NULL, NULL][..],
        ] {
            assert!(
                decode(Bytes::copy_from_slice(garbage)).is_err(),
                "{garbage:?}"
            );
        }
    }

    #[test]
    fn deep_nesting_is_refused() {
        let mut out = Vec::new();
        begin(&mut out);
        for _ in 0..=MAX_DEPTH + 1 {
            out.push(ARRAY);
            out.extend_from_slice(&1u32.to_le_bytes());
        }
        out.push(NULL);
        finish(&mut out, 0, 1);
        assert!(decode(Bytes::from(out)).is_err());
    }
}
