//! Where a mapped value comes from: a field path (with `??` fallbacks, array selectors
//! and an optional value map), a constant or a template.

use std::borrow::Cow;

use vrl::path::{OwnedSegment, parse_value_path};
use vrl::value::Value;

/// One value source of a mapping entry.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// The first of `paths` that yields a non-null value (`.A ?? .B`), else `default`
    /// (the constant after the last `??`, as in `.Severity ?? 3`); the result's text is
    /// then replaced through `map` when listed there (`.x -> {"0": "Low"}`).
    Fields {
        /// The alternatives, in order.
        paths: Vec<FieldPath>,
        /// The constant used when no path yields a value.
        default: Option<String>,
        /// Value text → replacement text; unlisted values pass unchanged.
        map: Vec<(String, String)>,
        /// What is used, unmapped, when none of `paths` yields a value and there is no
        /// `default`: the source after the map (`.x -> {"0": "Low"} ?? .y`).
        fallback: Option<Box<Source>>,
    },
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
    Field(Vec<FieldPath>),
}

/// A field path; `[*]` and `[key=value]` steps fan out over an array's elements.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldPath {
    steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    /// Plain VRL path segments.
    Path(Vec<OwnedSegment>),
    /// Every element of an array (`[*]`), or those whose `key` has the text `value`
    /// (`[type=service]`); `nth` (`[type=ip][0]`) keeps only that match.
    Select {
        filter: Option<(String, String)>,
        nth: Option<usize>,
    },
}

/// What a source yields for one event.
pub enum Got<'a> {
    /// A field's value and the real path it was found at (keys as spelled in the event).
    Field(&'a Value, Vec<OwnedSegment>),
    /// Text from a constant, a template, a fan-out or a value map, with the real paths read.
    Text(Cow<'a, str>, Vec<Vec<OwnedSegment>>),
}

impl Source {
    /// Parses `.a.b ?? .c`, `.list[*].name`, `.x -> {"0": "Low"}` (optionally followed by
    /// `?? <source>`, used unmapped), `{{ .a }}-x` or a constant.
    pub fn parse(text: &str) -> Result<Source, String> {
        let trimmed = text.trim();
        if trimmed.starts_with('.') && !text.contains("{{") {
            let (fields, map, fallback) = match trimmed.split_once("->") {
                Some((fields, rest)) => {
                    let rest = rest.trim();
                    // A value map is a flat JSON object: it ends at the first `}`.
                    let end = rest.find('}').map_or(rest.len(), |at| at + 1);
                    let after = rest[end..].trim();
                    let fallback = match after.strip_prefix("??") {
                        Some(next) => Some(Box::new(Source::parse(next)?)),
                        None if after.is_empty() => None,
                        None => {
                            return Err(format!(
                                "`{after}` after the value map in `{text}`: only `?? <source>` may follow it"
                            ));
                        }
                    };
                    (fields.trim(), parse_map(&rest[..end])?, fallback)
                }
                None => (trimmed, Vec::new(), None),
            };
            let (paths, default) = match fields.rsplit_once("??") {
                Some((paths, last)) if !last.trim().starts_with('.') => {
                    (paths, Some(last.trim().to_string()))
                }
                _ => (fields, None),
            };
            return Ok(Source::Fields {
                paths: parse_alternatives(paths)?,
                default,
                map,
                fallback,
            });
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

    /// Resolves this source against an event body. A template none of whose holes is
    /// filled yields nothing, so a template never writes its bare literal text.
    pub fn get<'a>(&'a self, root: &'a Value) -> Option<Got<'a>> {
        match self {
            Source::Fields {
                paths,
                default,
                map,
                fallback,
            } => {
                let got = match (paths.iter().find_map(|path| path.get(root)), default) {
                    (Some(got), _) => got,
                    (None, Some(default)) => Got::Text(Cow::Borrowed(default), Vec::new()),
                    (None, None) => return fallback.as_ref()?.get(root),
                };
                Some(if map.is_empty() {
                    got
                } else {
                    mapped(got, map)
                })
            }
            Source::Const(text) => Some(Got::Text(Cow::Borrowed(text), Vec::new())),
            Source::Template(parts) => {
                let mut out = String::new();
                let mut used = Vec::new();
                for part in parts {
                    match part {
                        Part::Literal(text) => out.push_str(text),
                        Part::Field(paths) => {
                            if let Some(got) = paths.iter().find_map(|path| path.get(root)) {
                                match got {
                                    Got::Field(value, path) => {
                                        value_text(value, &mut out);
                                        used.push(path);
                                    }
                                    Got::Text(text, paths) => {
                                        out.push_str(&text);
                                        used.extend(paths);
                                    }
                                }
                            }
                        }
                    }
                }
                if used.is_empty() {
                    return None;
                }
                Some(Got::Text(Cow::Owned(out), used))
            }
        }
    }
}

/// Replaces a value's text through a value map; unlisted values pass unchanged.
fn mapped<'a>(got: Got<'a>, map: &[(String, String)]) -> Got<'a> {
    let mut text = String::new();
    let (text, paths): (&str, Vec<Vec<OwnedSegment>>) = match &got {
        Got::Field(value, path) => {
            value_text(value, &mut text);
            (&text, vec![path.clone()])
        }
        Got::Text(t, paths) => (t, paths.clone()),
    };
    match map.iter().find(|(from, _)| from == text.trim()) {
        Some((_, to)) => Got::Text(Cow::Owned(to.clone()), paths),
        None => got,
    }
}

/// Parses a value map: a JSON object of texts or numbers, `{"0": "Low", "1": "Medium"}`.
fn parse_map(text: &str) -> Result<Vec<(String, String)>, String> {
    let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text)
        .map_err(|e| format!("value map `{text}` is not a JSON object: {e}"))?;
    object
        .into_iter()
        .map(|(from, to)| match to {
            serde_json::Value::String(to) => Ok((from, to)),
            serde_json::Value::Number(n) => Ok((from, n.to_string())),
            other => Err(format!(
                "value map entry `{from}`: {other} is not a text or number"
            )),
        })
        .collect()
}

fn parse_alternatives(text: &str) -> Result<Vec<FieldPath>, String> {
    text.split("??")
        .map(|alt| FieldPath::parse(alt.trim()))
        .collect()
}

impl FieldPath {
    /// Parses `.a.b[0]`, `.list[*].name`, `.entities[type=ip][0].id`.
    pub fn parse(text: &str) -> Result<FieldPath, String> {
        let invalid = |e: String| format!("invalid field path `{text}`: {e}");
        let mut steps = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let Some((before, selector, after)) = next_selector(rest) else {
                steps.push(Step::Path(plain(rest).map_err(invalid)?));
                break;
            };
            if !before.is_empty() {
                steps.push(Step::Path(plain(before).map_err(invalid)?));
            }
            let filter = if selector == "*" {
                None
            } else {
                let (key, value) = selector.split_once('=').ok_or_else(|| {
                    invalid(format!("`[{selector}]` is not `[*]` or `[key=value]`"))
                })?;
                Some((key.trim().to_string(), value.trim().to_string()))
            };
            // `[n]` right after a selector picks the nth match.
            let (nth, after) = match after.strip_prefix('[').and_then(|a| a.split_once(']')) {
                Some((n, tail)) if n.bytes().all(|b| b.is_ascii_digit()) && !n.is_empty() => {
                    (Some(n.parse().map_err(|e| invalid(format!("{e}")))?), tail)
                }
                _ => (None, after),
            };
            if !after.is_empty() && !after.starts_with('.') && !after.starts_with('[') {
                return Err(invalid(format!("unexpected `{after}` after a selector")));
            }
            steps.push(Step::Select { filter, nth });
            rest = after;
        }
        if steps.is_empty() {
            return Err(invalid("empty path".into()));
        }
        Ok(FieldPath { steps })
    }

    /// The value at this path: one field, or the comma-joined texts of a fan-out (an
    /// element without the field leaves an empty place, as Microsoft's agents print it).
    fn get<'a>(&self, root: &'a Value) -> Option<Got<'a>> {
        if let [Step::Path(segments)] = self.steps.as_slice() {
            let mut real = Vec::with_capacity(segments.len());
            return lookup(root, segments, &mut real)
                .filter(|v| !matches!(v, Value::Null))
                .map(|v| Got::Field(v, real));
        }
        let mut found = Vec::new();
        if !walk(root, &self.steps, Vec::new(), &mut found) {
            return None;
        }
        let fans_out = self
            .steps
            .iter()
            .any(|s| matches!(s, Step::Select { nth: None, .. }));
        if !fans_out {
            // Every selector picked one element: a single field, typed as it is.
            return match found.pop() {
                Some(Some((value, path))) if found.is_empty() => Some(Got::Field(value, path)),
                _ => None,
            };
        }
        let mut text = String::new();
        let mut paths = Vec::new();
        let values = found.into_iter().map(|item| {
            item.map(|(value, path)| {
                paths.push(path);
                value
            })
        });
        join_list(values, &mut text);
        // No element held the field: nothing was read, nothing to write.
        (!paths.is_empty()).then_some(Got::Text(Cow::Owned(text), paths))
    }
}

/// Finds the first `[*]` or `[key=value]` in a path text: (before, inside, after).
fn next_selector(text: &str) -> Option<(&str, &str, &str)> {
    let mut from = 0;
    while let Some(open) = text[from..].find('[').map(|i| i + from) {
        let close = text[open..].find(']')? + open;
        let inside = &text[open + 1..close];
        if inside == "*" || (inside.contains('=') && !inside.starts_with('"')) {
            return Some((&text[..open], inside, &text[close + 1..]));
        }
        from = close + 1;
    }
    None
}

/// Parses plain VRL path text (`.a.b[0]`, or `[0].c` right after a selector).
fn plain(text: &str) -> Result<Vec<OwnedSegment>, String> {
    let dotted = if text.starts_with('[') {
        format!(".{text}")
    } else {
        text.to_string()
    };
    parse_value_path(&dotted)
        .map(|path| path.segments)
        .map_err(|e| e.to_string())
}

/// Follows `steps` from `value`, pushing one entry per element reached (`None` for an
/// element the rest of the path is missing in). False when an array itself is missing,
/// or a selector matches nothing.
fn walk<'a>(
    value: &'a Value,
    steps: &[Step],
    mut real: Vec<OwnedSegment>,
    found: &mut Vec<Option<(&'a Value, Vec<OwnedSegment>)>>,
) -> bool {
    let Some((step, rest)) = steps.split_first() else {
        if matches!(value, Value::Null) {
            found.push(None);
        } else {
            found.push(Some((value, real)));
        }
        return true;
    };
    match step {
        Step::Path(segments) => match lookup(value, segments, &mut real) {
            Some(next) => walk(next, rest, real, found),
            None => false,
        },
        Step::Select { filter, nth } => {
            let Value::Array(items) = value else {
                return false;
            };
            let matches = items.iter().enumerate().filter(|(_, item)| match filter {
                None => true,
                Some((key, wanted)) => match item {
                    Value::Object(map) => map.get(key.as_str()).is_some_and(|v| {
                        let mut text = String::new();
                        value_text(v, &mut text);
                        text == *wanted
                    }),
                    _ => false,
                },
            });
            let picked: Vec<(usize, &Value)> = match nth {
                Some(n) => matches.skip(*n).take(1).collect(),
                None => matches.collect(),
            };
            if picked.is_empty() {
                return false;
            }
            for (i, item) in picked {
                let mut path = real.clone();
                path.push(OwnedSegment::Index(i as isize));
                let before = found.len();
                if !walk(item, rest, path, found) && found.len() == before {
                    // The rest of the path is missing in this element: an empty place.
                    found.push(None);
                }
            }
            true
        }
    }
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

/// Appends a value as text: strings as is, a list of plain values joined (`join_list`),
/// objects and lists holding containers as compact JSON.
pub fn value_text(value: &Value, out: &mut String) {
    use std::fmt::Write;
    match value {
        Value::Array(items) if items.iter().all(is_plain) => join_list(items.iter().map(Some), out),
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

/// Appends list elements the way Microsoft's SIEM agent prints lists
/// (`targetObjects=a,b,c`): each element's text, joined with commas; an absent or null
/// element leaves an empty place. Every list value of CEF and LEEF goes through here.
fn join_list<'a>(items: impl IntoIterator<Item = Option<&'a Value>>, out: &mut String) {
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        if let Some(value) = item {
            value_text(value, out);
        }
    }
}

/// A value with a text form of its own: not an object or a list. A list of such values
/// is a plain list; one holding containers stays JSON (commas between JSON objects
/// would be neither JSON nor a plain value).
fn is_plain(value: &Value) -> bool {
    !matches!(value, Value::Object(_) | Value::Array(_))
}
