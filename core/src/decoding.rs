//! Turning lines of bytes into events: NDJSON or plain text.
//!
//! JSON is parsed once, straight into VRL values, by a visitor that also notes what the
//! event model could not take as written: keys given twice and integers beyond 64 bits.
//! Nothing is changed silently: the caller counts each [`LineIssues`] finding.

use std::fmt;

use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use vrl::value::{KeyString, ObjectMap, Value};

use crate::event::Event;

/// How a line-oriented source reads each line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum Decoding {
    /// One JSON object per line; other lines are kept whole in `message` and counted.
    #[default]
    Json,
    /// The line as it is, in `message`.
    Text,
}

/// What decoding one line had to work around; the event is emitted all the same.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineIssues {
    /// Why the line is not a JSON object (it is kept whole in `message`).
    pub parse_error: Option<String>,
    /// Bytes that are not UTF-8 were replaced with U+FFFD.
    pub invalid_utf8: bool,
    /// An integer outside the signed 64-bit range was kept as a string of its exact digits.
    pub lossy_number: bool,
    /// An object held a key more than once; the last value was kept.
    pub duplicate_key: bool,
}

impl Decoding {
    /// Decodes one line (without its newline). A JSON line that does not parse is kept,
    /// not lost: it becomes `{"message": <line>}` and the parse error is reported.
    pub fn decode(self, line: &[u8]) -> (Event, LineIssues) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let mut issues = LineIssues::default();
        let event = match self {
            Decoding::Text => Event::from_message(text(line, &mut issues)),
            Decoding::Json => match parse_json(line, &mut issues) {
                Ok(value @ Value::Object(_)) => Event::new(value),
                Ok(other) => {
                    issues.parse_error = Some("line is JSON but not an object".into());
                    Event::from_message(other)
                }
                Err(e) => {
                    // What the failed parse noted is not reported: the line is kept as text.
                    issues.parse_error = Some(e.to_string());
                    Event::from_message(text(line, &mut issues))
                }
            },
        };
        (event, issues)
    }
}

fn text(line: &[u8], issues: &mut LineIssues) -> Value {
    match std::str::from_utf8(line) {
        Ok(s) => Value::from(s),
        Err(_) => {
            issues.invalid_utf8 = true;
            Value::from(String::from_utf8_lossy(line).as_ref())
        }
    }
}

/// Parses one JSON document into a value, noting duplicate keys and big integers in
/// `issues` when it parses (only then).
///
/// serde_json hands an integer that fits neither i64 nor u64 to the visitor as a float,
/// with its digits already rounded. The visitor cannot tell `1e19` (a float, as written)
/// from `10000000000000000001` (an integer that lost digits), so when it sees an integral
/// float that large it asks for a second look at the text. Such lines are rare; every
/// other line is parsed exactly once.
pub fn parse_json(line: &[u8], issues: &mut LineIssues) -> serde_json::Result<Value> {
    let mut notes = Notes::default();
    let value = parse_with(line, &mut notes)?;
    if notes.big_integral_float
        && let Some(quoted) = quote_big_integers(line)
    {
        issues.lossy_number = true;
        issues.duplicate_key = notes.duplicate_key;
        // Quoting a number keeps valid JSON valid, so this parse succeeds; if it ever did
        // not, the rounded value is kept, and still reported.
        return Ok(parse_with(&quoted, &mut Notes::default()).unwrap_or(value));
    }
    issues.lossy_number = notes.big_integer;
    issues.duplicate_key = notes.duplicate_key;
    Ok(value)
}

fn parse_with(line: &[u8], notes: &mut Notes) -> serde_json::Result<Value> {
    // The line is checked for UTF-8 once, as a whole (a fast scan for ASCII), so the
    // parser takes its strings without checking each one again; a line that is not
    // UTF-8 is parsed from its bytes, which fails as before.
    match std::str::from_utf8(line) {
        Ok(text) => parse_from(serde_json::Deserializer::from_str(text), notes),
        Err(_) => parse_from(serde_json::Deserializer::from_slice(line), notes),
    }
}

fn parse_from<'de, R: serde_json::de::Read<'de>>(
    mut deserializer: serde_json::Deserializer<R>,
    notes: &mut Notes,
) -> serde_json::Result<Value> {
    let value = ValueSeed(notes).deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

/// What the visitor saw while building one value.
#[derive(Default)]
struct Notes {
    /// A u64 beyond i64 was kept as its digits.
    big_integer: bool,
    /// A float with no fraction at or beyond 2^63: maybe an integer literal that overflowed.
    big_integral_float: bool,
    /// A key appeared twice in one object.
    duplicate_key: bool,
}

/// Builds a VRL value from JSON, as VRL's own `Deserialize` does, but keeping integers
/// exact and noting duplicate keys.
struct ValueSeed<'a>(&'a mut Notes);

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

/// 2^63: the first magnitude an i64 cannot hold.
const I64_LIMIT: f64 = 9_223_372_036_854_775_808.0;

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Boolean(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Integer(value))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(match i64::try_from(value) {
            Ok(value) => Value::Integer(value),
            Err(_) => {
                // VRL's own conversion from serde_json does the same: exact digits, as text.
                self.0.big_integer = true;
                Value::from(value.to_string())
            }
        })
    }

    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        if value.fract() == 0.0 && value.abs() >= I64_LIMIT {
            self.0.big_integral_float = true;
        }
        // JSON has no NaN (serde_json refuses one), so the zero is never used.
        Ok(Value::from_f64_or_zero(value))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element_seed(ValueSeed(&mut *self.0))? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(16));
        while let Some(key) = map.next_key::<KeyString>()? {
            let value = map.next_value_seed(ValueSeed(&mut *self.0))?;
            pairs.push((key, value));
        }
        let written = pairs.len();
        // Built at once: the map sorts the pairs (stably) and builds its nodes in one pass,
        // cheaper than an insert per pair. Of equal keys the last is kept, as in serde_json
        // and most parsers; that one was dropped is noted, not hidden.
        let object = ObjectMap::from_iter(pairs);
        if object.len() < written {
            self.0.duplicate_key = true;
        }
        Ok(Value::Object(object))
    }
}

/// The line with every integer literal outside the i64 range put in quotes, so that it
/// parses as a string of its exact digits; `None` when there is none (the big floats were
/// written as floats). Expects text that already parsed as JSON.
fn quote_big_integers(line: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(line.len() + 8);
    let mut quoted_any = false;
    let mut at = 0;
    while at < line.len() {
        match line[at] {
            b'"' => {
                let end = string_end(line, at);
                out.extend_from_slice(&line[at..end]);
                at = end;
            }
            b'-' | b'0'..=b'9' => {
                let end = at
                    + line[at..]
                        .iter()
                        .position(|b| !matches!(b, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'))
                        .unwrap_or(line.len() - at);
                let literal = &line[at..end];
                let integer = !literal.iter().any(|b| matches!(b, b'.' | b'e' | b'E'));
                let fits = std::str::from_utf8(literal)
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok())
                    .is_some();
                if integer && !fits {
                    quoted_any = true;
                    out.push(b'"');
                    out.extend_from_slice(literal);
                    out.push(b'"');
                } else {
                    out.extend_from_slice(literal);
                }
                at = end;
            }
            other => {
                out.push(other);
                at += 1;
            }
        }
    }
    quoted_any.then_some(out)
}

/// The index just past the closing quote of the string starting at `start`.
fn string_end(line: &[u8], start: usize) -> usize {
    let mut at = start + 1;
    while at < line.len() {
        match line[at] {
            b'\\' => at += 2,
            b'"' => return at + 1,
            _ => at += 1,
        }
    }
    line.len()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn json_of(event: &Event) -> String {
        let mut out = Vec::new();
        event.write_json(&mut out);
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn json_objects_become_events() {
        let (event, issues) = Decoding::Json.decode(br#"{"Id":"a","RecordType":15}"#);
        assert_eq!(issues, LineIssues::default());
        assert_eq!(json_of(&event), r#"{"Id":"a","RecordType":15}"#);
    }

    #[test]
    fn values_are_the_ones_vrl_would_build() {
        let line = br#"{"s":"x\u00e9\n","i":-5,"f":1.5,"b":true,"n":null,"a":[1,{"k":[]}],"o":{}}"#;
        let (event, issues) = Decoding::Json.decode(line);
        assert_eq!(issues, LineIssues::default());
        let vrl: Value = serde_json::from_slice(line).expect("json");
        assert_eq!(event.value, vrl);
    }

    #[test]
    fn broken_json_is_kept_whole() {
        let (event, issues) = Decoding::Json.decode(b"{\"Id\": oops\r");
        assert!(issues.parse_error.is_some());
        assert_eq!(json_of(&event), r#"{"message":"{\"Id\": oops"}"#);
        // What the parse met before it failed is not reported: the line is kept as text.
        let line = br#"{"k":1,"k":2,"n":18446744073709551615,"x":1e99999"#;
        let (event, issues) = Decoding::Json.decode(line);
        assert!(issues.parse_error.is_some());
        assert!(!issues.duplicate_key && !issues.lossy_number && !issues.invalid_utf8);
        let kept = Event::from_message(Value::from(std::str::from_utf8(line).expect("utf-8")));
        assert_eq!(event.value, kept.value);
    }

    #[test]
    fn text_lines_go_to_message() {
        let (event, issues) = Decoding::Text.decode(b"CEF:0|x");
        assert_eq!(issues, LineIssues::default());
        assert_eq!(json_of(&event), r#"{"message":"CEF:0|x"}"#);
    }

    #[test]
    fn invalid_utf8_is_replaced_and_reported() {
        let (event, issues) = Decoding::Text.decode(b"caf\xe9 \xff");
        assert!(issues.invalid_utf8);
        assert_eq!(json_of(&event), "{\"message\":\"caf\u{fffd} \u{fffd}\"}");
        // In JSON mode the line does not parse; it is kept as text, replaced and reported.
        let (_, issues) = Decoding::Json.decode(b"{\"k\":\"\xff\"}");
        assert!(issues.invalid_utf8 && issues.parse_error.is_some());
    }

    #[test]
    fn duplicate_keys_keep_the_last_value_and_are_reported() {
        let (event, issues) = Decoding::Json.decode(br#"{"dup":1,"x":{"d":1,"d":2},"dup":3}"#);
        assert!(issues.duplicate_key);
        assert_eq!(json_of(&event), r#"{"dup":3,"x":{"d":2}}"#);
    }

    #[test]
    fn integers_beyond_i64_keep_their_exact_digits_as_strings() {
        let line = br#"{"max":18446744073709551615,"big":123456789012345678901234567890,"neg":-9223372036854775809,"ok":9223372036854775807,"min":-9223372036854775808}"#;
        let (event, issues) = Decoding::Json.decode(line);
        assert!(issues.lossy_number);
        assert!(!issues.duplicate_key);
        assert_eq!(
            json_of(&event),
            r#"{"big":"123456789012345678901234567890","max":"18446744073709551615","min":-9223372036854775808,"neg":"-9223372036854775809","ok":9223372036854775807}"#
        );
        let (event, issues) = Decoding::Json.decode(br#"{"u":9223372036854775808}"#);
        assert!(issues.lossy_number);
        assert_eq!(json_of(&event), r#"{"u":"9223372036854775808"}"#);
    }

    #[test]
    fn big_numbers_written_as_floats_stay_floats() {
        let (event, issues) = Decoding::Json
            .decode(br#"{"e":1e19,"f":12345678901234567890.0,"s":"99999999999999999999","x":0.1}"#);
        assert_eq!(issues, LineIssues::default());
        assert_eq!(
            json_of(&event),
            r#"{"e":1e+19,"f":1.2345678901234567e+19,"s":"99999999999999999999","x":0.1}"#
        );
    }

    #[test]
    fn a_big_integer_inside_a_string_or_beside_a_float_is_found_exactly() {
        let (event, issues) =
            Decoding::Json.decode(br#"{"k\"1e99":"\\","f":1e20,"n":[100000000000000000000,-1]}"#);
        assert!(issues.lossy_number);
        assert_eq!(
            json_of(&event),
            r#"{"f":1e+20,"k\"1e99":"\\","n":["100000000000000000000",-1]}"#
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any bytes: no panic, one event, and a parse error exactly when serde_json fails.
        #[test]
        fn any_line_decodes_to_one_event(line in proptest::collection::vec(any::<u8>(), 0..200)) {
            let (_, issues) = Decoding::Json.decode(&line);
            let trimmed = line.strip_suffix(b"\r").unwrap_or(&line);
            let parses = serde_json::from_slice::<serde_json::Value>(trimmed)
                .is_ok_and(|v| v.is_object());
            prop_assert_eq!(issues.parse_error.is_none(), parses);
            let (_, issues) = Decoding::Text.decode(&line);
            prop_assert_eq!(issues.invalid_utf8, std::str::from_utf8(trimmed).is_err());
        }

        /// Every integer keeps its exact digits, as a number when it fits i64.
        #[test]
        fn integers_are_exact(digits in "-?[1-9][0-9]{0,40}") {
            let line = format!(r#"{{"n":{digits},"m":[{digits}]}}"#);
            let (event, issues) = Decoding::Json.decode(line.as_bytes());
            let fits = digits.parse::<i64>().is_ok();
            prop_assert_eq!(issues.lossy_number, !fits);
            let expected = if fits { digits.clone() } else { format!("\"{digits}\"") };
            prop_assert_eq!(json_of(&event), format!(r#"{{"m":[{expected}],"n":{expected}}}"#));
        }
    }
}
