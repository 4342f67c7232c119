//! An object event as a transform plugin sees it through [`crate::external::sdk::serve_fields_transform`]:
//! its top-level fields are found in the event's JSON text without being parsed, a field
//! is parsed only when the transform reads it, and what the transform sets or removes is
//! kept apart, so the answer is a patch of those changes alone.
//!
//! Most plugin transforms enrich: they read one or two fields and add a few. Parsing a
//! 1 KB audit record into values, copying it to compare the result and diffing the two
//! cost such a plugin about eight times the work of its own step; finding where each
//! top-level value starts and ends costs a fraction of a parse and allocates nothing per
//! field.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use bytes::Bytes;
use serde::de::{self, Deserializer as _, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::proto;
use super::value::{self, ValueError};
use crate::{KeyString, ObjectMap, Value};

/// An object event's top-level fields, read lazily, with the transform's changes.
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

/// One top-level field of the JSON text: where its name and its value are.
#[derive(Debug, Clone)]
struct Entry {
    name: Name,
    value: Range<usize>,
}

/// A field name: a slice of the text, or decoded when it holds escapes.
#[derive(Debug, Clone)]
enum Name {
    At(Range<usize>),
    Decoded(Box<str>),
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
            let entries = locate(&event.json).map_err(|e| {
                if e.is_data() {
                    NOT_AN_OBJECT.to_string()
                } else {
                    ValueError::Json(e.to_string()).to_string()
                }
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
fn find<'e>(json: &[u8], entries: &'e [Entry], name: &str) -> Option<&'e Entry> {
    entries.iter().rev().find(|entry| match &entry.name {
        Name::At(range) => &json[range.clone()] == name.as_bytes(),
        Name::Decoded(decoded) => decoded.as_ref() == name,
    })
}

/// Where each top-level field's name and value are in `json`, an object. The scan checks
/// the whole text is valid JSON, as a parse would, without building any value.
fn locate(json: &[u8]) -> serde_json::Result<Vec<Entry>> {
    let base = json.as_ptr() as usize;
    let offset = |text: &str| text.as_ptr() as usize - base;
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let found = deserializer.deserialize_map(TopLevel)?;
    deserializer.end()?;
    Ok(found
        .into_iter()
        .map(|(name, value)| Entry {
            name: match name {
                Cow::Borrowed(text) => Name::At(offset(text)..offset(text) + text.len()),
                Cow::Owned(text) => Name::Decoded(text.into_boxed_str()),
            },
            value: offset(value.get())..offset(value.get()) + value.get().len(),
        })
        .collect())
}

/// Reads an object's members as (name, unparsed value) pairs borrowed from the text.
struct TopLevel;

impl<'de> Visitor<'de> for TopLevel {
    type Value = Vec<(Cow<'de, str>, &'de RawValue)>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(32));
        while let Some(FieldName(name)) = map.next_key()? {
            members.push((name, map.next_value::<&'de RawValue>()?));
        }
        Ok(members)
    }
}

/// A member name, borrowed unless it holds escapes.
struct FieldName<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for FieldName<'de> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Name;
        impl<'de> Visitor<'de> for Name {
            type Value = FieldName<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Self::Value, E> {
                Ok(FieldName(Cow::Borrowed(text)))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
                Ok(FieldName(Cow::Owned(text.to_owned())))
            }
        }
        deserializer.deserialize_str(Name)
    }
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

    proptest! {
        #[test]
        fn every_field_reads_as_the_whole_parse_reads_it(value in any_value()) {
            let input = Value::Object(
                [("a".into(), value.clone()), ("b\n\"c".into(), Value::Array(vec![value]))]
                    .into_iter()
                    .collect(),
            );
            let wire = value::event_to_wire(&input, value::EventForm::Json);
            let whole = object(value::event_from_wire(wire.clone()).expect("reads back"));
            let fields = Fields::from_wire(wire).expect("an object");
            for (name, expected) in &whole {
                prop_assert_eq!(fields.get(name).expect("reads"), Some(expected.clone()));
            }
            prop_assert_eq!(fields.into_object().expect("reads"), whole);
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
        for text in [&b"{\"a\":1"[..], b"{\"a\":1} x", b"{\"a\":[1,}"] {
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
