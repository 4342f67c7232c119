//! Where a mapped value comes from: a field path (with `??` fallbacks), a constant or a template.

use std::borrow::Cow;

use vrl::path::{OwnedSegment, OwnedValuePath, parse_value_path};
use vrl::value::Value;

/// One value source of a mapping entry.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// The first of these paths that holds a non-null value (`.A ?? .B`), else the
    /// constant after the last `??` if there is one (`.Severity ?? 3`).
    Fields(Vec<OwnedValuePath>, Option<String>),
    /// A fixed text.
    Const(String),
    /// Literal text with `{{ .path }}` holes.
    Template(Vec<Part>),
}

/// A piece of a template.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    /// Text copied as is.
    Literal(String),
    /// A hole filled from the event (empty when absent).
    Field(Vec<OwnedValuePath>),
}

/// What a source yields for one event.
pub enum Got<'a> {
    /// A field's value and the real path it was found at (keys as spelled in the event).
    Field(&'a Value, Vec<OwnedSegment>),
    /// Text from a constant or template, with the real paths a template read.
    Text(Cow<'a, str>, Vec<Vec<OwnedSegment>>),
}

impl Source {
    /// Parses `.a.b ?? .c`, `{{ .a }}-x` or a constant.
    pub fn parse(text: &str) -> Result<Source, String> {
        let trimmed = text.trim();
        if trimmed.starts_with('.') && !text.contains("{{") {
            let (paths, default) = match trimmed.rsplit_once("??") {
                Some((paths, last)) if !last.trim().starts_with('.') => {
                    (paths, Some(last.trim().to_string()))
                }
                _ => (trimmed, None),
            };
            return Ok(Source::Fields(parse_alternatives(paths)?, default));
        }
        if !text.contains("{{") {
            return Ok(Source::Const(text.to_string()));
        }
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Literal(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| format!("template `{text}` has `{{{{` without `}}}}`"))?;
            parts.push(Part::Field(parse_alternatives(after[..end].trim())?));
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_string()));
        }
        Ok(Source::Template(parts))
    }

    /// Resolves this source against an event body.
    pub fn get<'a>(&'a self, root: &'a Value) -> Option<Got<'a>> {
        match self {
            Source::Fields(paths, default) => match first(paths, root) {
                Some((value, path)) => Some(Got::Field(value, path)),
                None => default
                    .as_deref()
                    .map(|text| Got::Text(Cow::Borrowed(text), Vec::new())),
            },
            Source::Const(text) => Some(Got::Text(Cow::Borrowed(text), Vec::new())),
            Source::Template(parts) => {
                let mut out = String::new();
                let mut used = Vec::new();
                for part in parts {
                    match part {
                        Part::Literal(text) => out.push_str(text),
                        Part::Field(paths) => {
                            if let Some((value, path)) = first(paths, root) {
                                value_text(value, &mut out);
                                used.push(path);
                            }
                        }
                    }
                }
                Some(Got::Text(Cow::Owned(out), used))
            }
        }
    }
}

fn parse_alternatives(text: &str) -> Result<Vec<OwnedValuePath>, String> {
    text.split("??")
        .map(|alt| {
            let alt = alt.trim();
            parse_value_path(alt).map_err(|e| format!("invalid field path `{alt}`: {e}"))
        })
        .collect()
}

fn first<'a>(paths: &[OwnedValuePath], root: &'a Value) -> Option<(&'a Value, Vec<OwnedSegment>)> {
    paths.iter().find_map(|path| {
        let mut real = Vec::with_capacity(path.segments.len());
        lookup(root, &path.segments, &mut real)
            .filter(|v| !matches!(v, Value::Null))
            .map(|v| (v, real))
    })
}

/// Follows a path; a key missing as spelled is matched ignoring ASCII case, because some
/// exports lower-case Management Activity keys (`creationtime`, `userid`).
fn lookup<'a>(
    value: &'a Value,
    segments: &[OwnedSegment],
    real: &mut Vec<OwnedSegment>,
) -> Option<&'a Value> {
    let Some((segment, rest)) = segments.split_first() else {
        return Some(value);
    };
    let next = match (segment, value) {
        (OwnedSegment::Field(key), Value::Object(map)) => match map.get_key_value(key.as_str()) {
            Some((k, v)) => Some((k, v)),
            None => map
                .iter()
                .find(|(k, _)| k.as_str().eq_ignore_ascii_case(key.as_str())),
        }
        .map(|(k, v)| (OwnedSegment::Field(k.clone()), v)),
        (OwnedSegment::Index(index), Value::Array(items)) => {
            let i = if *index < 0 {
                items.len().checked_sub(index.unsigned_abs())?
            } else {
                usize::try_from(*index).ok()?
            };
            items.get(i).map(|v| (OwnedSegment::Index(i as isize), v))
        }
        _ => None,
    }?;
    real.push(next.0);
    lookup(next.1, rest, real)
}

/// Appends a value as text: strings as is, containers as compact JSON.
pub fn value_text(value: &Value, out: &mut String) {
    use std::fmt::Write;
    match value {
        Value::Bytes(bytes) => out.push_str(&String::from_utf8_lossy(bytes)),
        Value::String(text) => out.push_str(text),
        Value::Integer(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Float(f) => {
            let _ = write!(out, "{f}");
        }
        Value::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Timestamp(t) => {
            out.push_str(&t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        }
        Value::Null => {}
        other => {
            // Serializing a Value cannot fail: every variant has a JSON form.
            if let Ok(json) = serde_json::to_string(other) {
                out.push_str(&json);
            }
        }
    }
}
