//! The same envelope checks as [`super::events::parse_events`], without building the events'
//! values: used when the simulator keeps no events (benchmarks), where parsing every event
//! into a `serde_json::Value` would make the receiver the bottleneck (about ten times slower).

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::config::HecToken;
use super::events::resolve_index;
use super::reply::Code;

/// Counts the valid envelopes before the first bad one; the bad one's code and position.
pub(crate) fn check_events(
    body: &[u8],
    token: &HecToken,
    reject_marker: Option<&str>,
) -> (usize, Option<(Code, usize)>) {
    let mut stream = serde_json::Deserializer::from_slice(body).into_iter::<Envelope>();
    let marker = reject_marker.map(|m| memchr::memmem::Finder::new(m.as_bytes()));
    let mut start = 0;
    let mut count = 0;
    while let Some(item) = stream.next() {
        let end = stream.byte_offset();
        let text = &body[start..end.min(body.len())];
        start = end;
        let Ok(envelope) = item else {
            return (count, Some((Code::InvalidDataFormat, count)));
        };
        if marker.as_ref().is_some_and(|f| f.find(text).is_some()) {
            return (count, Some((Code::InvalidDataFormat, count)));
        }
        if let Err(code) = envelope.check(token) {
            return (count, Some((code, count)));
        }
        count += 1;
    }
    (count, None)
}

/// What the checks need to know of one envelope.
struct Envelope {
    event: Seen,
    time_ok: bool,
    strings_ok: bool,
    index: Option<String>,
    fields_ok: bool,
}

impl Envelope {
    /// The checks of `events::envelope`, in the same order.
    fn check(self, token: &HecToken) -> Result<(), Code> {
        match self.event {
            Seen::Missing | Seen::Null => return Err(Code::EventRequired),
            Seen::Blank => return Err(Code::EventBlank),
            Seen::Present | Seen::Wrong => {}
        }
        if !self.time_ok || !self.strings_ok {
            return Err(Code::InvalidDataFormat);
        }
        resolve_index(token, self.index)?;
        if !self.fields_ok {
            return Err(Code::IndexedFields);
        }
        Ok(())
    }
}

/// The shape of a value, as far as the checks care.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Seen {
    Missing,
    Null,
    /// The empty string.
    Blank,
    /// A non-empty string, number or boolean (`Present` for `event`).
    Present,
    /// An array or object.
    Wrong,
}

impl<'de> Deserialize<'de> for Envelope {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(EnvelopeVisitor)
    }
}

struct EnvelopeVisitor;

impl<'de> Visitor<'de> for EnvelopeVisitor {
    type Value = Envelope;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a HEC event envelope (a JSON object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Envelope, A::Error> {
        let mut e = Envelope {
            event: Seen::Missing,
            time_ok: true,
            strings_ok: true,
            index: None,
            fields_ok: true,
        };
        // Later duplicates win, as with serde_json's maps.
        let (mut host, mut source, mut sourcetype) = (true, true, true);
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Event => {
                    e.event = match map.next_value::<Shape>()?.0 {
                        Seen::Wrong => Seen::Present,
                        other => other,
                    }
                }
                Key::Time => e.time_ok = map.next_value::<Time>()?.0,
                Key::Host => host = map.next_value::<Text>()?.ok(),
                Key::Source => source = map.next_value::<Text>()?.ok(),
                Key::Sourcetype => sourcetype = map.next_value::<Text>()?.ok(),
                Key::Index => match map.next_value::<Text>()? {
                    Text::Str(s) => e.index = Some(s),
                    Text::Null => e.index = None,
                    Text::Wrong => {
                        e.index = None;
                        e.strings_ok = false;
                    }
                },
                Key::Fields => e.fields_ok = map.next_value::<Fields>()?.0,
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        e.strings_ok &= host && source && sourcetype;
        Ok(e)
    }
}

enum Key {
    Event,
    Time,
    Host,
    Source,
    Sourcetype,
    Index,
    Fields,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(match v {
                    "event" => Key::Event,
                    "time" => Key::Time,
                    "host" => Key::Host,
                    "source" => Key::Source,
                    "sourcetype" => Key::Sourcetype,
                    "index" => Key::Index,
                    "fields" => Key::Fields,
                    _ => Key::Other,
                })
            }
        }
        d.deserialize_str(V)
    }
}

/// Drains a sequence without keeping it.
fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Drains a map without keeping it.
fn drain_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Any value, reduced to its [`Seen`] shape.
struct Shape(Seen);

impl<'de> Deserialize<'de> for Shape {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Shape;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Shape, E> {
                Ok(Shape(Seen::Null))
            }
            fn visit_none<E: de::Error>(self) -> Result<Shape, E> {
                Ok(Shape(Seen::Null))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Shape, E> {
                Ok(Shape(Seen::Present))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Shape, E> {
                Ok(Shape(Seen::Present))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Shape, E> {
                Ok(Shape(Seen::Present))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Shape, E> {
                Ok(Shape(Seen::Present))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Shape, E> {
                Ok(Shape(if v.is_empty() {
                    Seen::Blank
                } else {
                    Seen::Present
                }))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Shape, A::Error> {
                drain_seq(seq).map(|()| Shape(Seen::Wrong))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Shape, A::Error> {
                drain_map(map).map(|()| Shape(Seen::Wrong))
            }
        }
        d.deserialize_any(V)
    }
}

/// `time`: valid when absent, null, a non-negative number or a numeric string.
struct Time(bool);

impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        fn seconds(t: f64) -> Time {
            Time(t.is_finite() && t >= 0.0)
        }
        impl<'de> Visitor<'de> for V {
            type Value = Time;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("epoch seconds")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Time, E> {
                Ok(Time(true))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Time, E> {
                Ok(Time(false))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Time, E> {
                Ok(seconds(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Time, E> {
                Ok(seconds(v as f64))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Time, E> {
                Ok(seconds(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Time, E> {
                Ok(v.trim().parse::<f64>().map_or(Time(false), seconds))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Time, A::Error> {
                drain_seq(seq).map(|()| Time(false))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Time, A::Error> {
                drain_map(map).map(|()| Time(false))
            }
        }
        d.deserialize_any(V)
    }
}

/// A metadata string (`host`, `source`, `sourcetype`, `index`).
enum Text {
    Str(String),
    Null,
    Wrong,
}

impl Text {
    fn ok(&self) -> bool {
        !matches!(self, Text::Wrong)
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TextVisitor)
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Text;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Text, E> {
        Ok(Text::Null)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
        Ok(Text::Str(v.to_string()))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Text, E> {
        Ok(Text::Wrong)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Text, E> {
        Ok(Text::Wrong)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Text, E> {
        Ok(Text::Wrong)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Text, E> {
        Ok(Text::Wrong)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Text, A::Error> {
        drain_seq(seq).map(|()| Text::Wrong)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Text, A::Error> {
        drain_map(map).map(|()| Text::Wrong)
    }
}

/// `fields`: valid when absent, null, or an object of scalars and arrays of scalars.
struct Fields(bool);

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Fields;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of index-time fields")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Fields, E> {
                Ok(Fields(true))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Fields, E> {
                Ok(Fields(false))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Fields, E> {
                Ok(Fields(false))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Fields, E> {
                Ok(Fields(false))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Fields, E> {
                Ok(Fields(false))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Fields, E> {
                Ok(Fields(false))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Fields, A::Error> {
                drain_seq(seq).map(|()| Fields(false))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
                let mut flat = true;
                while let Some((_, value)) = map.next_entry::<IgnoredAny, Field>()? {
                    flat &= value.0;
                }
                Ok(Fields(flat))
            }
        }
        d.deserialize_any(V)
    }
}

/// One field value: a scalar, or an array of scalars.
struct Field(bool);

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Field;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field value")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Field, E> {
                Ok(Field(false))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Field, E> {
                Ok(Field(true))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Field, E> {
                Ok(Field(true))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Field, E> {
                Ok(Field(true))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Field, E> {
                Ok(Field(true))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Field, E> {
                Ok(Field(true))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Field, A::Error> {
                let mut flat = true;
                while let Some(item) = seq.next_element::<Shape>()? {
                    flat &= matches!(item.0, Seen::Present | Seen::Blank);
                }
                Ok(Field(flat))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Field, A::Error> {
                drain_map(map).map(|()| Field(false))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::super::events::parse_events;
    use super::*;

    /// The light checks agree with the full parser on every case.
    #[test]
    fn agrees_with_the_full_parser() {
        let token = HecToken {
            indexes: vec!["main".into(), "m365".into()],
            ..HecToken::default()
        };
        let cases: [&[u8]; 22] = [
            br#"{"event":"a"}{"event":{"k":[1,{"x":null}]},"time":"1767225600.5","index":"m365"}"#,
            br#"{"event":"a"} {"time":1}{"event":"c"}"#,
            br#"{"event":null}"#,
            br#"{"event":""}"#,
            br#"{"event":[]}"#,
            br#"{"event":0}"#,
            br#"{"event":"a","index":"x"}"#,
            br#"{"event":"a","index":null}"#,
            br#"{"event":"a","index":""}"#,
            br#"{"event":"a","index":5}"#,
            br#"{"event":"a","fields":{"n":{"x":1}}}"#,
            br#"{"event":"a","fields":{"n":[1,"b",true]}}"#,
            br#"{"event":"a","fields":{"n":[[1]]}}"#,
            br#"{"event":"a","fields":{"n":null}}"#,
            br#"{"event":"a","fields":[1]}"#,
            br#"{"event":"a","fields":null}"#,
            br#"{"event":"a","time":"soon"}"#,
            br#"{"event":"a","time":-1}"#,
            br#"{"event":"a","time":null,"host":"h","source":null}"#,
            br#"{"event":"a","host":{"h":1}}"#,
            br#"["a"]"#,
            br#"{"event":"a"}{"event":"b""#,
        ];
        for body in cases {
            let full = parse_events(body, &token, Some("POISON"), None);
            let light = check_events(body, &token, Some("POISON"));
            assert_eq!(
                (full.events.len(), full.error),
                light,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
