//! The per-event walk shared by the encoders: resolve each key, type it, hand it to the
//! format's writer, and remember which event fields made it into the line.

use std::borrow::Cow;

use vrl::path::OwnedSegment;
use vrl::value::{ObjectMap, Value};

use super::source::{Got, Source};
use super::values::{Kind, other_ip_family, typed_text};

/// One key of a compiled mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The key on the wire.
    pub key: String,
    /// A `(key, text)` written just before this key whenever it is written (`csNLabel`).
    pub label: Option<(String, String)>,
    /// The type the value must have.
    pub kind: Kind,
    /// Where the value comes from.
    pub source: Source,
}

/// What rendering one event had to give up on.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Rendered {
    /// Values cut to their key's maximum length.
    pub truncated: u64,
    /// Values that did not have their key's type (left to the unmapped JSON).
    pub invalid: u64,
}

/// Where the unmapped JSON keeps whole header values that were cut to their limit.
pub const TRUNCATED_KEY: &str = "siemflow_truncated";
/// Where the unmapped JSON names the fields left out so that it fits its key's limit.
pub const DROPPED_KEY: &str = "siemflow_dropped";

/// The event fields written into the line, so the rest can be kept as JSON.
#[derive(Debug, Default)]
pub struct Tracker {
    /// False when unmapped fields are dropped: nothing needs remembering then.
    pub on: bool,
    paths: Vec<Vec<OwnedSegment>>,
    /// Header fields cut to their limit: (option name, whole value).
    headers: Vec<(&'static str, String)>,
}

impl Tracker {
    /// A tracker that remembers fields only when `on`.
    pub fn new(on: bool) -> Self {
        Tracker {
            on,
            paths: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// Starts a new event.
    pub fn reset(&mut self) {
        self.paths.clear();
        self.headers.clear();
    }

    /// Marks the fields behind a value as written.
    pub fn consume(&mut self, got: Got<'_>) {
        if !self.on {
            return;
        }
        match got {
            Got::Field(_, path) => self.paths.push(path),
            Got::Text(_, paths) => self.paths.extend(paths),
        }
    }

    /// Keeps the whole value of a header field the line had to cut (`name`, `vendor`, …).
    pub fn keep_header(&mut self, field: &'static str, whole: &str) {
        if self.on {
            self.headers.push((field, whole.to_string()));
        }
    }
}

/// The unmapped fields as one JSON text.
#[derive(Debug, PartialEq, Eq)]
pub struct Unmapped {
    /// Compact JSON, always valid, at most the limit given in characters.
    pub json: String,
    /// True when top-level fields had to be left out (named under `siemflow_dropped`).
    pub cut: bool,
}

/// The event minus the fields written, plus the whole values of cut header fields
/// (under `siemflow_truncated`), as compact JSON of at most `max` characters; `None`
/// when nothing is left. JSON too long for `max` is never cut mid-value: the largest
/// top-level fields are left out until it fits, and their names listed under
/// `siemflow_dropped`, so what is written still parses. An owned `root` is taken apart
/// in place; a borrowed one is copied first.
pub fn unmapped_json(root: Cow<'_, Value>, tracker: &Tracker, max: usize) -> Option<Unmapped> {
    let mut rest = root.into_owned();
    for path in &tracker.paths {
        if path.is_empty() {
            rest = Value::Null;
            break;
        }
        // Most mapped fields are top-level: taken straight out of the map, which is what
        // the general removal does for them at several times the cost (no parent to prune).
        // Leaving them out while writing the JSON instead measured slower (sorting and
        // searching the names cost more than the removals).
        if let ([OwnedSegment::Field(key)], Value::Object(map)) = (path.as_slice(), &mut rest) {
            map.remove(key.as_str());
        } else {
            rest.remove(path, true);
        }
    }
    if !tracker.headers.is_empty() {
        let whole: ObjectMap = tracker
            .headers
            .iter()
            .map(|(field, value)| ((*field).into(), Value::from(value.as_str())))
            .collect();
        let mut map = match rest {
            Value::Object(map) => map,
            Value::Null => ObjectMap::new(),
            other => ObjectMap::from([("value".into(), other)]),
        };
        map.insert(free_key(&map, TRUNCATED_KEY).into(), Value::Object(whole));
        rest = Value::Object(map);
    }
    match &rest {
        Value::Object(map) if map.is_empty() => return None,
        Value::Null => return None,
        _ => {}
    }
    let json = serde_json::to_string(&rest).ok()?;
    // A character takes at least one byte: only a long text needs counting.
    if json.len() <= max || json.chars().count() <= max {
        return Some(Unmapped { json, cut: false });
    }
    let json = match &rest {
        Value::Object(map) => fit(map, max),
        // A bare value cannot be split: it is named as dropped whole.
        _ => fit(&ObjectMap::from([(".".into(), rest.clone())]), max),
    };
    Some(Unmapped { json, cut: true })
}

/// A key not yet in `map`: `key`, else `key` with underscores appended.
fn free_key(map: &ObjectMap, key: &str) -> String {
    let mut key = key.to_string();
    while map.contains_key(key.as_str()) {
        key.push('_');
    }
    key
}

/// Leaves out the largest fields of an object until its JSON fits `max` characters.
fn fit(map: &ObjectMap, max: usize) -> String {
    let mut kept: Vec<(String, String)> = map
        .iter()
        .map(|(key, value)| {
            let pair = format!("{}:{}", json(key.as_str()), json(value));
            (key.to_string(), pair)
        })
        .collect();
    let mut dropped: Vec<String> = Vec::new();
    let dropped_key = free_key(map, DROPPED_KEY);
    loop {
        let mut out = String::from("{");
        for (i, (_, pair)) in kept.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(pair);
        }
        if !dropped.is_empty() {
            if !kept.is_empty() {
                out.push(',');
            }
            out.push_str(&format!(
                "{}:{}",
                json(dropped_key.as_str()),
                json(&dropped)
            ));
        }
        out.push('}');
        if out.chars().count() <= max {
            return out;
        }
        let Some(largest) = (0..kept.len()).max_by_key(|&i| kept[i].1.chars().count()) else {
            // Even the list of names is too long: say how many instead.
            return format!("{{{}:{}}}", json(dropped_key.as_str()), dropped.len());
        };
        dropped.push(kept.remove(largest).0);
    }
}

/// Compact JSON of what `fit` writes: keys, values and lists of names.
fn json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    // These types always have a JSON form.
    serde_json::to_string(value).unwrap_or_default()
}

/// Resolves a header source into `out`; false when it yields nothing.
pub fn header_text(source: &Source, root: &Value, tracker: &mut Tracker, out: &mut String) -> bool {
    match source.get(root) {
        Some(got) if typed_text(&got, Kind::Text(usize::MAX), out) => {
            tracker.consume(got);
            true
        }
        _ => false,
    }
}

/// Writes every entry that resolves; `write(key, value, max_chars)` returns whether it
/// had to truncate. A truncated or mistyped value stays in the unmapped JSON.
pub fn render_entries(
    entries: &[Entry],
    root: &Value,
    tracker: &mut Tracker,
    tmp: &mut String,
    stats: &mut Rendered,
    mut write: impl FnMut(&str, &str, usize) -> bool,
) {
    for entry in entries {
        let Some(got) = entry.source.get(root) else {
            continue;
        };
        if !typed_text(&got, entry.kind, tmp) {
            // An IPv6 address offered to `dvc` is `c6a1`'s to write, not an error.
            if !other_ip_family(entry.kind, tmp) {
                stats.invalid += 1;
            }
            continue;
        }
        if let Some((label_key, label)) = &entry.label {
            write(label_key, label, 1023);
        }
        let max = match entry.kind {
            Kind::Text(max) => max,
            _ => usize::MAX,
        };
        if write(&entry.key, tmp, max) {
            stats.truncated += 1;
        } else {
            tracker.consume(got);
        }
    }
}

/// Folds constant `xLabel` entries into the entry `x` they name; errors on a label whose
/// key is missing or whose source is not a constant, and on a custom key without label.
pub fn pair_labels(
    extension: &[(String, Source)],
    kind_of: impl Fn(&str) -> Result<Kind, String>,
    needs_label: impl Fn(&str) -> bool,
) -> Result<Vec<Entry>, String> {
    let mut entries = Vec::new();
    for (key, source) in extension {
        if let Some(base) = key.strip_suffix("Label")
            && extension.iter().any(|(k, _)| k == base)
        {
            continue;
        }
        let label_key = format!("{key}Label");
        let label = match extension.iter().find(|(k, _)| *k == label_key) {
            Some((_, Source::Const(text))) => Some((label_key, text.clone())),
            Some(_) => return Err(format!("`{label_key}` must be a constant text")),
            None if needs_label(key) => {
                return Err(format!(
                    "`{key}` needs a `{label_key}` (send each custom key with its label)"
                ));
            }
            None => None,
        };
        entries.push(Entry {
            key: key.clone(),
            label,
            kind: kind_of(key)?,
            source: source.clone(),
        });
    }
    Ok(entries)
}
