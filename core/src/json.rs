//! Values as compact JSON: byte for byte what serde_json writes for them (a unit test
//! compares the two on any value), at a fraction of the cost. serde_json looks at every
//! byte of every string through a table; here the runs with nothing to escape — nearly
//! all of a record's text — are found eight bytes at a time and copied whole. Every
//! JSON line, body and wire event siemflow writes of an event goes through
//! [`write_value`].

use bytes::BufMut;
use chrono::SecondsFormat;
use vrl::value::Value;

use crate::escape::{Stops, first_flagged};

/// Appends `value` as compact JSON, as serde_json would: text that is not UTF-8 with
/// U+FFFD, a timestamp as RFC 3339 text (VRL's form), a regex as its pattern, an
/// infinite float as `null`.
pub fn write_value<B: BufMut>(out: &mut B, value: &Value) {
    write_value_exact(out, value);
}

/// Appends `value` as [`write_value`] does; false when a leaf's JSON reads back as
/// something else (a timestamp, text that is not UTF-8, an infinite float), so a reader
/// needs those leaves beside the text.
pub fn write_value_exact<B: BufMut>(out: &mut B, value: &Value) -> bool {
    match value {
        Value::Null => out.put_slice(b"null"),
        Value::Boolean(true) => out.put_slice(b"true"),
        Value::Boolean(false) => out.put_slice(b"false"),
        Value::Integer(i) => out.put_slice(itoa::Buffer::new().format(*i).as_bytes()),
        Value::Float(f) if f.is_finite() => {
            out.put_slice(zmij::Buffer::new().format_finite(f.into_inner()).as_bytes());
        }
        Value::Float(_) => {
            out.put_slice(b"null");
            return false;
        }
        Value::Bytes(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => write_str(out, text),
            Err(_) => {
                write_str(out, &String::from_utf8_lossy(bytes));
                return false;
            }
        },
        Value::String(text) => write_str(out, text),
        Value::Regex(regex) => write_str(out, regex.as_str()),
        Value::Timestamp(ts) => {
            write_str(out, &ts.to_rfc3339_opts(SecondsFormat::AutoSi, true));
            return false;
        }
        Value::Object(map) => {
            let mut exact = true;
            out.put_u8(b'{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.put_u8(b',');
                }
                write_str(out, key.as_str());
                out.put_u8(b':');
                exact &= write_value_exact(out, item);
            }
            out.put_u8(b'}');
            return exact;
        }
        Value::Array(items) => {
            let mut exact = true;
            out.put_u8(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.put_u8(b',');
                }
                exact &= write_value_exact(out, item);
            }
            out.put_u8(b']');
            return exact;
        }
    }
    true
}

/// Appends `text` as a JSON string, escaped as serde_json does: `"` and `\` with a
/// backslash, the controls below 0x20 in their short form or as `\u00xx`; nothing else.
pub fn write_str<B: BufMut>(out: &mut B, text: &str) {
    let bytes = text.as_bytes();
    out.put_u8(b'"');
    let mut start = 0;
    while let Some(found) = first_to_escape(&bytes[start..]) {
        let at = start + found;
        out.put_slice(&bytes[start..at]);
        push_escape(out, bytes[at]);
        start = at + 1;
    }
    out.put_slice(&bytes[start..]);
    out.put_u8(b'"');
}

fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// Where the first byte JSON must escape is: a byte below 0x20, `"` or `\`.
#[inline(always)]
fn first_to_escape(text: &[u8]) -> Option<usize> {
    match text.len() {
        // Most names and many values are short: a word or two of eight bytes each.
        8..16 => {
            let (head, tail) = (first_word(text), last_word(text));
            escapes_in(head).or_else(|| escapes_in(tail).map(|i| i + text.len() - WORD))
        }
        0..8 => text.iter().position(|b| needs_escape(*b)),
        _ => first_flagged(
            text,
            Stops {
                controls: true,
                non_ascii: false,
                ascii: b"\"\\",
            },
            |b| needs_escape(*b),
        ),
    }
}

const WORD: usize = 8;

fn first_word(text: &[u8]) -> u64 {
    text.first_chunk::<WORD>()
        .map_or(0, |w| u64::from_le_bytes(*w))
}

fn last_word(text: &[u8]) -> u64 {
    text.last_chunk::<WORD>()
        .map_or(0, |w| u64::from_le_bytes(*w))
}

/// The first of a word's eight bytes (little-endian) that JSON must escape. Each test
/// marks the high bit of a matching byte exactly when no byte before it matched (a
/// borrow only runs upwards), so the lowest mark is the first match.
#[inline(always)]
fn escapes_in(word: u64) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let below = |w: u64, n: u64| w.wrapping_sub(ONES * n) & !w & HIGHS;
    let zero = |w: u64| below(w, 1);
    let marks = below(word, 0x20)
        | zero(word ^ (ONES * u64::from(b'"')))
        | zero(word ^ (ONES * u64::from(b'\\')));
    (marks != 0).then(|| marks.trailing_zeros() as usize / 8)
}

fn push_escape<B: BufMut>(out: &mut B, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let short = match byte {
        b'"' => b'"',
        b'\\' => b'\\',
        0x08 => b'b',
        0x09 => b't',
        0x0a => b'n',
        0x0c => b'f',
        0x0d => b'r',
        _ => {
            out.put_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0xf)],
            ]);
            return;
        }
    };
    out.put_slice(&[b'\\', short]);
}

/// Arbitrary values for the property tests of every module that writes or carries them.
#[cfg(test)]
pub(crate) mod arbitrary {
    use bytes::Bytes;
    use chrono::{DateTime, Utc};
    use proptest::prelude::*;
    use vrl::value::{KeyString, Value};

    pub(crate) fn any_text() -> impl Strategy<Value = String> {
        // Controls, quotes, backslashes and multi-byte characters among plain text.
        proptest::collection::vec(
            prop_oneof![
                4 => "[a-zA-Z0-9 ]{0,12}",
                1 => "[\u{0}-\u{1f}\"\\\\/\u{7f}]{1,3}",
                1 => "[é€😀\u{2028}]{1,2}",
                1 => ".{0,12}",
            ],
            0..6,
        )
        .prop_map(|parts| parts.concat())
    }

    pub(crate) fn any_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Boolean),
            any::<i64>().prop_map(Value::Integer),
            any::<f64>()
                .prop_filter("not NaN", |f| !f.is_nan())
                .prop_map(Value::from_f64_or_zero),
            proptest::collection::vec(any::<u8>(), 0..16)
                .prop_map(|b| Value::Bytes(Bytes::from(b))),
            any_text().prop_map(Value::from),
            (-62_000_000_000i64..250_000_000_000, 0u32..1_000_000_000).prop_map(|(s, n)| {
                Value::Timestamp(DateTime::<Utc>::from_timestamp(s, n).expect("in range"))
            }),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map(any_text(), inner, 0..6).prop_map(|m| {
                    Value::Object(
                        m.into_iter()
                            .map(|(k, v)| (KeyString::from(k), v))
                            .collect(),
                    )
                }),
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::arbitrary::any_value;
    use super::*;

    proptest! {
        #[test]
        fn writes_what_serde_json_writes(value in any_value()) {
            let mut ours = Vec::new();
            write_value(&mut ours, &value);
            let theirs = serde_json::to_vec(&value).expect("serializes");
            prop_assert_eq!(String::from_utf8_lossy(&ours), String::from_utf8_lossy(&theirs));
        }

        /// Every length (the word tests below sixteen bytes, the block scan above), every
        /// byte that borders the escaped ones, several escapes in a row.
        #[test]
        fn the_first_byte_to_escape_is_found_at_any_length(
            text in proptest::collection::vec(
                prop_oneof![
                    4 => 0x20u8..0x7f,
                    1 => prop::sample::select(vec![0u8, 0x1f, 0x20, 0x21, 0x22, 0x23, 0x5b, 0x5c, 0x5d, 0x7f, 0x80, 0xa2, 0xdc, 0xff]),
                ],
                0..40,
            ),
        ) {
            prop_assert_eq!(first_to_escape(&text), text.iter().position(|b| needs_escape(*b)));
        }
    }

    #[test]
    fn escapes_in_long_runs_are_found_wherever_they_sit() {
        for at in 0..24 {
            for special in [b'"', b'\\', b'\n', 0x01, 0x1f] {
                let mut text = vec![b'a'; 24];
                text[at] = special;
                let text = String::from_utf8(text).expect("ASCII");
                let mut ours = Vec::new();
                write_str(&mut ours, &text);
                assert_eq!(
                    ours,
                    serde_json::to_vec(&text).expect("serializes"),
                    "{at} {special}"
                );
            }
        }
    }
}
