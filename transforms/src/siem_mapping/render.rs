//! The per-event walk shared by the encoders: resolve each key, type it, hand it to the
//! format's writer, and remember which event fields made it into the line.

use vrl::path::OwnedSegment;
use vrl::value::Value;

use super::source::{Got, Source};
use super::values::{Kind, typed_text};

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

/// The event fields written into the line, so the rest can be kept as JSON.
#[derive(Debug, Default)]
pub struct Tracker {
    /// False when unmapped fields are dropped: nothing needs remembering then.
    pub on: bool,
    paths: Vec<Vec<OwnedSegment>>,
}

impl Tracker {
    /// A tracker that remembers fields only when `on`.
    pub fn new(on: bool) -> Self {
        Tracker {
            on,
            paths: Vec::new(),
        }
    }

    /// Starts a new event.
    pub fn reset(&mut self) {
        self.paths.clear();
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
}

/// The event minus the fields written, as compact JSON; `None` when nothing is left.
pub fn unmapped_json(root: &Value, tracker: &Tracker) -> Option<String> {
    let mut rest = root.clone();
    for path in &tracker.paths {
        if path.is_empty() {
            return None;
        }
        rest.remove(path, true);
    }
    match &rest {
        Value::Object(map) if map.is_empty() => None,
        Value::Null => None,
        _ => serde_json::to_string(&rest).ok(),
    }
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
            stats.invalid += 1;
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
