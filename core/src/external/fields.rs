//! An object event as a transform plugin sees it through [`crate::external::sdk::serve_fields_transform`]:
//! its top-level fields are found in the event's JSON text without being parsed, a field
//! is parsed only when the transform reads it, and what the transform sets or removes is
//! kept apart, so the answer is a patch of those changes alone.
//!
//! Most plugin transforms enrich: they read one or two fields and add a few. Parsing an
//! 870-byte audit record into values, copying it to diff the result against and diffing
//! cost such a plugin about 49,000 instructions per record; finding where each top-level
//! value starts and ends, and answering with the changes, costs it about 14,000 in all
//! and allocates nothing per field (bench/RESULTS.md, "External plugins").

use std::collections::BTreeMap;
use std::ops::Range;

use bytes::Bytes;

use super::proto;
use super::value::{self, ValueError};
use crate::escape::{BLOCK, Stops};
use crate::{KeyString, ObjectMap, Value};

/// An object event's top-level fields, read lazily, with the transform's changes. Emit
/// it for the event it came from: what goes back is only the changes, which siemflow
/// applies to that input.
#[derive(Debug, Clone)]
pub struct Fields {
    input: Input,
    /// Fields the transform set (`Some`) or removed (`None`), by name.
    changes: BTreeMap<KeyString, Option<Value>>,
}

/// The event as it came.
#[derive(Debug, Clone)]
enum Input {
    /// JSON text, its top-level fields located, and the exact leaves beside it.
    Json {
        json: Bytes,
        entries: Vec<Entry>,
        exact: Vec<proto::ExactValue>,
    },
    /// Already values (the host sends the `Value` form).
    Object(ObjectMap),
}

/// One top-level field of the JSON text: where its name (a JSON string, quotes
/// included) and its value are.
#[derive(Debug, Clone)]
struct Entry {
    name: Range<usize>,
    value: Range<usize>,
}

impl Fields {
    /// The fields of a wire event; an error when it is not an object.
    pub(crate) fn from_wire(event: proto::Event) -> Result<Self, String> {
        let input = if event.json.is_empty() {
            match event.value.map(value::from_wire).transpose() {
                Ok(Some(Value::Object(fields))) => Input::Object(fields),
                Ok(_) => return Err(NOT_AN_OBJECT.into()),
                Err(e) => return Err(e.to_string()),
            }
        } else {
            let entries = locate(&event.json).map_err(|e| match e {
                Unlocated::NotAnObject => NOT_AN_OBJECT.to_string(),
                Unlocated::Malformed(problem) => ValueError::Json(problem.into()).to_string(),
            })?;
            Input::Json {
                json: event.json,
                entries,
                exact: event.exact,
            }
        };
        Ok(Fields {
            input,
            changes: BTreeMap::new(),
        })
    }

    /// The value of field `name` (parsed now; `None` when the event has no such field).
    /// An error only for a value siemflow could not have sent, e.g. an exact leaf whose
    /// path is not in the text.
    pub fn get(&self, name: &str) -> Result<Option<Value>, String> {
        if let Some(changed) = self.changes.get(name) {
            return Ok(changed.clone());
        }
        match &self.input {
            Input::Object(fields) => Ok(fields.get(name).cloned()),
            Input::Json {
                json,
                entries,
                exact,
            } => {
                let Some(entry) = find(json, entries, name) else {
                    return Ok(None);
                };
                let mut parsed = value::parse_json_text(&json[entry.value.clone()])
                    .map_err(|e| e.to_string())?;
                for leaf in exact.iter().filter(|leaf| starts_at(leaf, name)) {
                    value::place_exact(&mut parsed, &leaf.path[1..], leaf.value.clone())
                        .map_err(|e| e.to_string())?;
                }
                Ok(Some(parsed))
            }
        }
    }

    /// Whether the event has field `name`.
    pub fn contains_key(&self, name: &str) -> bool {
        match self.changes.get(name) {
            Some(changed) => changed.is_some(),
            None => match &self.input {
                Input::Object(fields) => fields.contains_key(name),
                Input::Json { json, entries, .. } => find(json, entries, name).is_some(),
            },
        }
    }

    /// Sets field `name` to `value`.
    pub fn insert(&mut self, name: impl Into<KeyString>, value: Value) {
        self.changes.insert(name.into(), Some(value));
    }

    /// Removes field `name`; whether the event had it.
    pub fn remove(&mut self, name: &str) -> bool {
        let had = self.contains_key(name);
        self.changes.insert(name.into(), None);
        had
    }

    /// The whole event as values, changes applied (parses every field).
    pub fn into_object(self) -> Result<ObjectMap, String> {
        let mut fields = match self.input {
            Input::Object(fields) => fields,
            Input::Json { json, exact, .. } => {
                let mut whole = value::parse_json_text(&json).map_err(|e| e.to_string())?;
                for leaf in exact {
                    value::place_exact(&mut whole, &leaf.path, leaf.value)
                        .map_err(|e| e.to_string())?;
                }
                match whole {
                    Value::Object(fields) => fields,
                    _ => return Err(NOT_AN_OBJECT.into()),
                }
            }
        };
        let (set, removed) = Self::split(self.changes);
        value::apply_patch(&mut fields, set, &removed);
        Ok(fields)
    }

    /// The changes as a patch: the fields set, the names removed.
    pub(crate) fn into_patch(self) -> (ObjectMap, Vec<String>) {
        Self::split(self.changes)
    }

    fn split(changes: BTreeMap<KeyString, Option<Value>>) -> (ObjectMap, Vec<String>) {
        let mut set = ObjectMap::new();
        let mut removed = Vec::new();
        for (name, change) in changes {
            match change {
                Some(value) => {
                    set.insert(name, value);
                }
                None => removed.push(name.into()),
            }
        }
        (set, removed)
    }
}

const NOT_AN_OBJECT: &str = "the event is not an object: a fields transform reads objects only";

/// Whether an exact leaf lies inside top-level field `name`.
fn starts_at(leaf: &proto::ExactValue, name: &str) -> bool {
    matches!(
        leaf.path.first().and_then(|s| s.kind.as_ref()),
        Some(proto::path_segment::Kind::Field(first)) if first == name
    )
}

/// The last entry named `name`: a repeated key's last value is the one a parse keeps.
/// A name is compared as written; only one with escapes is decoded first.
fn find<'e>(json: &[u8], entries: &'e [Entry], name: &str) -> Option<&'e Entry> {
    entries.iter().rev().find(|entry| {
        let quoted = &json[entry.name.clone()];
        let text = &quoted[1..quoted.len() - 1];
        if text.contains(&b'\\') {
            serde_json::from_slice::<String>(quoted).is_ok_and(|decoded| decoded == name)
        } else {
            text == name.as_bytes()
        }
    })
}

/// Why a JSON text's fields could not be located.
#[derive(Debug, PartialEq)]
enum Unlocated {
    /// The text is a JSON value other than an object.
    NotAnObject,
    /// The text is not well-formed where the scan looked.
    Malformed(&'static str),
}

/// Where each top-level field's name and value are in `json`, an object. Sixteen bytes
/// at a time, the scan finds the quotes and, from their running parity, which bytes are
/// inside strings; only the brackets, colons and commas outside strings are then looked
/// at, one by one (a block with a backslash, rare in events, is read byte by byte, so an
/// escaped quote is not taken for one). A value is checked when it is read; the text is
/// the host's own JSON, and the fields a transform leaves alone are never sent back.
fn locate(json: &[u8]) -> Result<Vec<Entry>, Unlocated> {
    let start = json
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .ok_or(Unlocated::Malformed("the text is empty"))?;
    if json[start] != b'{' {
        return Err(Unlocated::NotAnObject);
    }
    let quotes = Stops {
        controls: false,
        non_ascii: false,
        ascii: b"\"",
    };
    let backslashes = Stops {
        controls: false,
        non_ascii: false,
        ascii: b"\\",
    };
    let structure = Stops {
        controls: false,
        non_ascii: false,
        ascii: STRUCTURAL,
    };
    let mut scan = Scan {
        entries: Vec::with_capacity(32),
        ..Scan::default()
    };
    // From the object's opening brace: the first byte visited.
    let text = &json[start..];
    let (blocks, rest) = text.as_chunks::<BLOCK>();
    let mut padded = [b' '; BLOCK];
    padded[..rest.len()].copy_from_slice(rest);
    let mut strings = Strings::default();
    for (n, block) in blocks
        .iter()
        .chain((!rest.is_empty()).then_some(&padded))
        .enumerate()
    {
        let at = start + n * BLOCK;
        let outside = if backslashes.mask(block) == 0 && !strings.escape_pending {
            strings.fast(quotes.mask(block)) & structure.mask(block)
        } else {
            strings.bytewise(block)
        };
        let mut marks = outside;
        while marks != 0 {
            let i = marks.trailing_zeros() as usize;
            if !scan.step(json, at + i, block[i]) {
                break;
            }
            marks &= marks - 1;
        }
        if scan.end.is_some() || scan.problem.is_some() {
            break;
        }
    }
    let end = match (scan.problem, scan.end) {
        (Some(problem), _) => return Err(Unlocated::Malformed(problem)),
        (None, Some(end)) => end,
        (None, None) => return Err(Unlocated::Malformed("the object is not closed")),
    };
    if !json[end + 1..].iter().all(u8::is_ascii_whitespace) {
        return Err(Unlocated::Malformed("text follows the object"));
    }
    Ok(scan.entries)
}

/// The bytes that give a JSON text its structure outside its strings.
const STRUCTURAL: &[u8] = b"{}[],:";

/// Which bytes of a block are inside strings, carried from block to block.
#[derive(Default)]
struct Strings {
    /// The block before ended inside a string.
    open: bool,
    /// The block before ended with a backslash that escapes this block's first byte.
    escape_pending: bool,
}

impl Strings {
    /// The bytes outside strings (bit i: byte i) of a block without a backslash, from the
    /// running parity of its quotes.
    #[inline(always)]
    fn fast(&mut self, quotes: u32) -> u32 {
        let mut inside = quotes;
        inside ^= inside << 1;
        inside ^= inside << 2;
        inside ^= inside << 4;
        inside ^= inside << 8;
        if self.open {
            inside = !inside;
        }
        inside &= 0xffff;
        self.open = inside >> (BLOCK - 1) == 1;
        !inside & 0xffff
    }

    /// The structural bytes outside strings of any block, byte by byte.
    fn bytewise(&mut self, block: &[u8; BLOCK]) -> u32 {
        let mut outside = 0;
        for (i, &byte) in block.iter().enumerate() {
            if self.escape_pending {
                self.escape_pending = false;
            } else if self.open {
                match byte {
                    b'\\' => self.escape_pending = true,
                    b'"' => self.open = false,
                    _ => {}
                }
            } else if byte == b'"' {
                self.open = true;
            } else if STRUCTURAL.contains(&byte) {
                outside |= 1 << i;
            }
        }
        outside
    }
}

/// The state of [`locate`]'s walk over the structural bytes outside strings.
#[derive(Default)]
struct Scan {
    entries: Vec<Entry>,
    /// Arrays and objects open; 1 inside the outer object only.
    depth: usize,
    /// Where the member being read starts (after the outer `{` or a comma), and its colon.
    member_start: usize,
    colon: Option<usize>,
    /// The outer object's closing brace.
    end: Option<usize>,
    problem: Option<&'static str>,
}

impl Scan {
    /// Takes the structural byte at `at`; false once the scan is over.
    #[inline(always)]
    fn step(&mut self, json: &[u8], at: usize, byte: u8) -> bool {
        match byte {
            b'{' | b'[' => {
                self.depth += 1;
                if self.depth == 1 {
                    self.member_start = at + 1;
                }
            }
            b'}' | b']' if self.depth == 1 => {
                let empty = self.entries.is_empty()
                    && self.colon.is_none()
                    && json[self.member_start..at]
                        .iter()
                        .all(u8::is_ascii_whitespace);
                if byte == b']' || !(empty || self.close_member(json, at)) {
                    return self.fail("a member is cut short");
                }
                self.end = Some(at);
                return false;
            }
            b'}' | b']' => self.depth -= 1,
            b':' if self.depth == 1 => {
                if self.colon.is_some() {
                    return self.fail("a colon is out of place");
                }
                self.colon = Some(at);
            }
            b',' if self.depth == 1 => {
                if !self.close_member(json, at) {
                    return self.fail("a member is cut short");
                }
                self.member_start = at + 1;
            }
            _ => {}
        }
        true
    }

    /// Ends the member that runs up to `at`; false if it has no name or no value.
    fn close_member(&mut self, json: &[u8], at: usize) -> bool {
        let Some(colon) = self.colon.take() else {
            return false;
        };
        let name = trimmed(json, self.member_start..colon);
        let value = trimmed(json, colon + 1..at);
        // A name is one JSON string, its quotes at either end; what is between them is
        // read when a field is looked up.
        let quoted = name.len() >= 2 && json[name.start] == b'"' && json[name.end - 1] == b'"';
        if value.is_empty() || !quoted {
            return false;
        }
        self.entries.push(Entry { name, value });
        true
    }

    fn fail(&mut self, problem: &'static str) -> bool {
        self.problem = Some(problem);
        false
    }
}

/// `range` without the whitespace at either end.
fn trimmed(json: &[u8], range: Range<usize>) -> Range<usize> {
    let text = &json[range.clone()];
    let start = range.start + (text.len() - text.trim_ascii_start().len());
    start..start + text.trim_ascii().len()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::json::arbitrary::any_value;

    fn fields_of(value: &Value) -> Fields {
        Fields::from_wire(value::event_to_wire(value, value::EventForm::Json)).expect("an object")
    }

    fn object(value: Value) -> ObjectMap {
        match value {
            Value::Object(fields) => fields,
            _ => panic!("not an object"),
        }
    }

    fn any_object() -> impl Strategy<Value = ObjectMap> {
        prop::collection::btree_map(any::<String>(), any_value(), 0..6)
            .prop_map(|fields| fields.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    proptest! {
        /// Every field, whatever its name or value (nesting, escapes, quotes and braces in
        /// text, exact leaves), reads as the whole event's parse reads it.
        #[test]
        fn every_field_reads_as_the_whole_parse_reads_it(fields in any_object()) {
            let input = Value::Object(fields);
            let wire = value::event_to_wire(&input, value::EventForm::Json);
            let whole = object(value::event_from_wire(wire.clone()).expect("reads back"));
            let fields = Fields::from_wire(wire).expect("an object");
            for (name, expected) in &whole {
                prop_assert!(fields.contains_key(name));
                prop_assert_eq!(fields.get(name).expect("reads"), Some(expected.clone()));
            }
            prop_assert_eq!(fields.into_object().expect("reads"), whole);
        }

        /// Text that is not JSON is refused or located, never a panic; what is located
        /// reads as a parse reads it.
        #[test]
        fn any_text_is_located_or_refused(text in "[ {}\\[\\],:\"\\\\a1]{0,24}") {
            let event = proto::Event {
                json: Bytes::from(text.clone()),
                ..proto::Event::default()
            };
            if let (Ok(fields), Ok(Value::Object(whole))) =
                (Fields::from_wire(event), value::parse_json_text(text.as_bytes()))
            {
                for (name, expected) in &whole {
                    prop_assert_eq!(fields.get(name).ok().flatten(), Some(expected.clone()));
                }
            }
        }
    }

    #[test]
    fn names_with_escapes_and_values_with_structure_in_their_text() {
        let json = br#" { "a\"b" : "x\\\"},[:" , "c\u0064":{"e":["}",1]} ,"f":-1.5e3 } "#;
        let fields = Fields::from_wire(proto::Event {
            json: Bytes::from_static(json),
            ..proto::Event::default()
        })
        .expect("an object");
        assert_eq!(fields.get("a\"b"), Ok(Some(Value::from("x\\\"},[:"))));
        let nested = fields.get("cd").expect("reads").expect("present");
        assert_eq!(nested.to_string(), r#"{ "e": ["}", 1] }"#);
        let number = value::parse_json_text(b"-1.5e3").expect("a number");
        assert_eq!(fields.get("f"), Ok(Some(number)));
        let empty = Fields::from_wire(proto::Event {
            json: Bytes::from_static(b"{ }"),
            ..proto::Event::default()
        })
        .expect("an object");
        assert!(empty.into_object().expect("reads").is_empty());
    }

    /// An escaped quote (and an escaped backslash before a real quote) at every position
    /// around a block's edge.
    #[test]
    fn escapes_across_block_edges_do_not_end_a_string() {
        for pad in 0..40 {
            let text = format!(
                r#"{{"p":"{}\"}},\\","k":{{"q":"\\"}},"n":1}}"#,
                "x".repeat(pad)
            );
            let fields = Fields::from_wire(proto::Event {
                json: Bytes::from(text.clone()),
                ..proto::Event::default()
            })
            .expect("an object");
            let whole = object(value::parse_json_text(text.as_bytes()).expect("JSON"));
            assert_eq!(whole.len(), 3, "{text}");
            for (name, expected) in &whole {
                assert_eq!(fields.get(name), Ok(Some(expected.clone())), "{text}");
            }
        }
    }

    #[test]
    fn a_repeated_name_reads_as_its_last_value_and_an_absent_one_as_none() {
        let fields = Fields::from_wire(proto::Event {
            json: Bytes::from_static(br#"{"a":1,"b":{"c":[2]},"a":3}"#),
            ..proto::Event::default()
        })
        .expect("an object");
        assert_eq!(fields.get("a"), Ok(Some(Value::Integer(3))));
        assert!(fields.contains_key("b"));
        assert_eq!(fields.get("z"), Ok(None));
        assert!(!fields.contains_key("z"));
    }

    #[test]
    fn changes_are_read_back_and_make_the_patch() {
        let mut fields = fields_of(&Value::Object(
            [("keep".into(), 1.into()), ("drop".into(), 2.into())]
                .into_iter()
                .collect(),
        ));
        fields.insert("added", Value::Boolean(true));
        assert!(fields.remove("drop"));
        assert!(!fields.remove("never"));
        assert_eq!(fields.get("added"), Ok(Some(Value::Boolean(true))));
        assert_eq!(fields.get("drop"), Ok(None));
        assert!(!fields.contains_key("drop"));
        let (set, removed) = fields.clone().into_patch();
        assert_eq!(set.keys().collect::<Vec<_>>(), ["added"]);
        assert_eq!(removed, ["drop", "never"]);
        let whole = fields.into_object().expect("reads");
        assert_eq!(whole.keys().collect::<Vec<_>>(), ["added", "keep"]);
    }

    #[test]
    fn what_is_not_an_object_or_not_json_is_refused_by_name() {
        for text in [&b"[1,2]"[..], b"\"text\"", b"7"] {
            let event = proto::Event {
                json: Bytes::copy_from_slice(text),
                ..proto::Event::default()
            };
            assert_eq!(Fields::from_wire(event).unwrap_err(), NOT_AN_OBJECT);
        }
        for text in [
            &b"{\"a\":1"[..],
            b"{\"a\":1} x",
            b"{\"a\":[1,}",
            b"{\"a\":1,}",
            b"{\"a\"::1}",
            b"{:1}",
            b"{\"a\":}",
            b"{\"a\":1]",
            b"   ",
        ] {
            let event = proto::Event {
                json: Bytes::copy_from_slice(text),
                ..proto::Event::default()
            };
            let error = Fields::from_wire(event).unwrap_err();
            assert!(error.contains("does not parse"), "{error}");
        }
    }

    #[test]
    fn the_value_form_is_read_too() {
        let input = Value::Object([("a".into(), 1.into())].into_iter().collect());
        let fields = Fields::from_wire(value::event_to_wire(&input, value::EventForm::Value))
            .expect("an object");
        assert_eq!(fields.get("a"), Ok(Some(Value::Integer(1))));
        assert_eq!(fields.into_object().expect("reads"), object(input));
    }
}
