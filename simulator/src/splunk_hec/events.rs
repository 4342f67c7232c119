//! Parsing and validating `/event` envelopes and `/raw` bodies (reference §1.3).

use serde::Serialize;
use serde_json::{Map, Value};

use super::config::HecToken;
use super::reply::Code;

/// One event as the simulated indexer stored it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IndexedEvent {
    /// The index it went to (the envelope's `index`, or the token's default).
    pub index: String,
    /// `host` as sent (none when the client left it to the token's default).
    pub host: Option<String>,
    /// `source` as sent.
    pub source: Option<String>,
    /// `sourcetype` as sent.
    pub sourcetype: Option<String>,
    /// `time` as sent, in epoch seconds (none ⇒ Splunk would use the receive time).
    pub time: Option<f64>,
    /// The `event` value (`/raw`: one line, as a string).
    pub event: Value,
    /// Index-time `fields` (always empty for `/raw`).
    pub fields: Map<String, Value>,
    /// The request's channel, if it named one.
    pub channel: Option<String>,
    /// Came through `/raw` rather than `/event`.
    pub raw: bool,
}

/// The outcome of parsing a body: the events Splunk indexes, and where it stopped.
#[derive(Debug)]
pub(crate) struct Parsed {
    /// Events before the first bad one (all of them when `error` is none).
    pub(crate) events: Vec<IndexedEvent>,
    /// The code and 0-based position of the first bad event; nothing after it is indexed.
    pub(crate) error: Option<(Code, usize)>,
}

/// Parses concatenated JSON envelopes, stopping at the first bad one.
pub(crate) fn parse_events(
    body: &[u8],
    token: &HecToken,
    reject_marker: Option<&str>,
    channel: Option<&str>,
) -> Parsed {
    let mut events = Vec::new();
    let mut stream = serde_json::Deserializer::from_slice(body).into_iter::<Value>();
    let mut start = 0;
    let marker = reject_marker.map(|m| memchr::memmem::Finder::new(m.as_bytes()));
    while let Some(item) = stream.next() {
        let k = events.len();
        let end = stream.byte_offset();
        let text = &body[start..end.min(body.len())];
        start = end;
        let value = match item {
            Ok(v) => v,
            Err(_) => return stopped(events, Code::InvalidDataFormat, k),
        };
        if marker.as_ref().is_some_and(|f| f.find(text).is_some()) {
            return stopped(events, Code::InvalidDataFormat, k);
        }
        match envelope(value, token, channel) {
            Ok(e) => events.push(e),
            Err(code) => return stopped(events, code, k),
        }
    }
    Parsed {
        events,
        error: None,
    }
}

fn stopped(events: Vec<IndexedEvent>, code: Code, k: usize) -> Parsed {
    Parsed {
        events,
        error: Some((code, k)),
    }
}

/// Validates one envelope in the order Splunk reports problems.
fn envelope(value: Value, token: &HecToken, channel: Option<&str>) -> Result<IndexedEvent, Code> {
    let Value::Object(mut map) = value else {
        return Err(Code::InvalidDataFormat);
    };
    let event = match map.remove("event") {
        None | Some(Value::Null) => return Err(Code::EventRequired),
        Some(Value::String(s)) if s.is_empty() => return Err(Code::EventBlank),
        Some(v) => v,
    };
    let time = match map.remove("time") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(n.as_f64().ok_or(Code::InvalidDataFormat)?),
        Some(Value::String(s)) => Some(
            s.trim()
                .parse::<f64>()
                .map_err(|_| Code::InvalidDataFormat)?,
        ),
        Some(_) => return Err(Code::InvalidDataFormat),
    };
    if time.is_some_and(|t| !t.is_finite() || t < 0.0) {
        return Err(Code::InvalidDataFormat);
    }
    let host = string_key(&mut map, "host")?;
    let source = string_key(&mut map, "source")?;
    let sourcetype = string_key(&mut map, "sourcetype")?;
    let index = resolve_index(token, string_key(&mut map, "index")?)?;
    let fields = match map.remove("fields") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(fields)) => {
            if !fields.values().all(flat_field) {
                return Err(Code::IndexedFields);
            }
            fields
        }
        Some(_) => return Err(Code::IndexedFields),
    };
    Ok(IndexedEvent {
        index,
        host,
        source,
        sourcetype,
        time,
        event,
        fields,
        channel: channel.map(str::to_string),
        raw: false,
    })
}

/// An index-time field value: a scalar or an array of scalars (no nesting).
fn flat_field(v: &Value) -> bool {
    let scalar = |v: &Value| matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_));
    match v {
        Value::Array(items) => items.iter().all(scalar),
        other => scalar(other),
    }
}

fn string_key(map: &mut Map<String, Value>, key: &str) -> Result<Option<String>, Code> {
    match map.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Code::InvalidDataFormat),
    }
}

/// The index an event goes to: the named one if the token allows it, else the default.
pub(crate) fn resolve_index(token: &HecToken, named: Option<String>) -> Result<String, Code> {
    match named {
        None => Ok(token.default_index.clone()),
        Some(i) if i.is_empty() => Ok(token.default_index.clone()),
        Some(i) if token.indexes.is_empty() || token.indexes.contains(&i) => Ok(i),
        Some(_) => Err(Code::IncorrectIndex),
    }
}

/// `/raw`: one event per non-blank line, metadata from the query string.
pub(crate) struct RawMeta {
    pub(crate) index: String,
    pub(crate) host: Option<String>,
    pub(crate) source: Option<String>,
    pub(crate) sourcetype: Option<String>,
    pub(crate) channel: Option<String>,
}

/// The lines of a raw body that are events: CR/LF stripped, blank lines dropped.
fn raw_lines(body: &str) -> impl Iterator<Item = &str> {
    body.split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .filter(|l| !l.trim().is_empty())
}

/// How many events a raw body holds (without building them).
pub(crate) fn count_raw(body: &[u8]) -> usize {
    raw_lines(&String::from_utf8_lossy(body)).count()
}

/// Splits a raw body into line events (Splunk's default line breaking).
pub(crate) fn parse_raw(body: &[u8], meta: &RawMeta) -> Vec<IndexedEvent> {
    raw_lines(&String::from_utf8_lossy(body))
        .map(|line| IndexedEvent {
            index: meta.index.clone(),
            host: meta.host.clone(),
            source: meta.source.clone(),
            sourcetype: meta.sourcetype.clone(),
            time: None,
            event: Value::String(line.to_string()),
            fields: Map::new(),
            channel: meta.channel.clone(),
            raw: true,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(indexes: &[&str]) -> HecToken {
        HecToken {
            indexes: indexes.iter().map(|s| s.to_string()).collect(),
            default_index: indexes.first().copied().unwrap_or("main").to_string(),
            ..HecToken::default()
        }
    }

    #[test]
    fn concatenated_envelopes_with_whitespace() {
        let body = br#"{"event":"a","time":"1767225600.5"}
  {"event":{"k":1},"time":1767225601,"index":"m365","fields":{"t":"x","l":["a","b"]}}"#;
        let p = parse_events(body, &token(&[]), None, Some("c"));
        assert!(p.error.is_none());
        assert_eq!(p.events.len(), 2);
        assert_eq!(p.events[0].time, Some(1_767_225_600.5));
        assert_eq!(p.events[0].index, "main");
        assert_eq!(p.events[1].index, "m365");
        assert_eq!(p.events[1].fields.len(), 2);
    }

    #[test]
    fn stops_at_the_first_bad_event() {
        let cases: [(&[u8], Code); 9] = [
            (
                br#"{"event":"a"}{"time":1}{"event":"c"}"#,
                Code::EventRequired,
            ),
            (
                br#"{"event":"a"}{"event":""}{"event":"c"}"#,
                Code::EventBlank,
            ),
            (
                br#"{"event":"a"}{"event":"b","index":"x"}{"event":"c"}"#,
                Code::IncorrectIndex,
            ),
            (
                br#"{"event":"a"}{"event":"b","fields":{"n":{"x":1}}}{"event":"c"}"#,
                Code::IndexedFields,
            ),
            (
                br#"{"event":"a"}{"event":"b","fields":[1]}{"event":"c"}"#,
                Code::IndexedFields,
            ),
            (
                br#"{"event":"a"}{"event":"b","time":"soon"}{"event":"c"}"#,
                Code::InvalidDataFormat,
            ),
            (
                br#"{"event":"a"}["b"]{"event":"c"}"#,
                Code::InvalidDataFormat,
            ),
            (br#"{"event":"a"}{"event":"b""#, Code::InvalidDataFormat),
            (
                br#"{"event":"a"}{"event":"b","host":5}"#,
                Code::InvalidDataFormat,
            ),
        ];
        for (body, code) in cases {
            let p = parse_events(body, &token(&["main"]), None, None);
            assert_eq!(
                p.error,
                Some((code, 1)),
                "{}",
                String::from_utf8_lossy(body)
            );
            assert_eq!(p.events.len(), 1);
        }
    }

    #[test]
    fn marker_rejects_its_event() {
        let body = br#"{"event":"ok"} {"event":"POISON here"} {"event":"ok"}"#;
        let p = parse_events(body, &token(&[]), Some("POISON"), None);
        assert_eq!(p.error, Some((Code::InvalidDataFormat, 1)));
    }

    #[test]
    fn raw_lines() {
        let meta = RawMeta {
            index: "main".into(),
            host: Some("h".into()),
            source: None,
            sourcetype: Some("st".into()),
            channel: None,
        };
        let e = parse_raw(b"one\r\n\n  \ntwo\n", &meta);
        assert_eq!(e.len(), 2);
        assert_eq!(e[1].event, Value::String("two".into()));
        assert!(e[0].raw);
    }
}
