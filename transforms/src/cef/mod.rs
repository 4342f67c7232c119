//! `cef`: renders each event as an ArcSight CEF line, mapped by a Microsoft 365 preset.

mod config;
mod escape;
mod keys;
#[cfg(test)]
pub(crate) mod tests;

pub use config::{CefConfig, Unmapped};

use std::borrow::Cow;

use siemflow_core::metrics::ComponentLabels;
use siemflow_core::{Batch, Transform, TransformOutputs, Value};

use crate::siem_mapping::{
    self, Compiled, HEADER_FIELDS, Kind, Rendered, Tracker, header_text, render_entries,
    unmapped_json,
};

/// Header field limits in characters: vendor, product, version, class id, name.
const HEADER_MAX: [usize; 5] = [63, 63, 31, 1023, 512];

/// The extension key that receives the unmapped fields' JSON.
#[derive(Debug)]
struct UnmappedKey {
    key: String,
    /// `(xLabel, label)` for a custom key, built once rather than per event.
    label: Option<(String, String)>,
    /// The key's length limit in characters.
    max: usize,
}

/// Renders events to CEF lines; reusable buffers keep the hot path allocation-light.
#[derive(Debug)]
pub struct CefEncoder {
    presets: Vec<Compiled>,
    unmapped: Option<UnmappedKey>,
    tracker: Tracker,
    tmp: String,
    /// What was given up on since the counters were last taken.
    pub stats: Rendered,
}

impl CefEncoder {
    /// An encoder for a validated config.
    pub fn new(config: &CefConfig) -> Result<Self, String> {
        // Pairs `csN`/`csNLabel`, checks keys and types.
        let presets = siem_mapping::compile_all(
            &config.preset,
            &config.mapping,
            |_| {},
            keys::kind,
            keys::needs_label,
        )?;
        let unmapped = match config.unmapped {
            Unmapped::Drop => None,
            Unmapped::Json => {
                let max = match keys::kind(&config.unmapped_key)
                    .map_err(|e| format!("unmapped_key: {e}"))?
                {
                    Kind::Text(max) => max,
                    _ => {
                        return Err(format!(
                            "unmapped_key `{}` holds a number, time or address; pick a text key \
                             such as cs6 or flexString2",
                            config.unmapped_key
                        ));
                    }
                };
                if let Some(name) = siem_mapping::preset_using(&presets, &config.unmapped_key) {
                    return Err(format!(
                        "unmapped_key `{}` is already used by preset `{name}`; pick a free key",
                        config.unmapped_key
                    ));
                }
                let label = keys::needs_label(&config.unmapped_key).then(|| {
                    (
                        format!("{}Label", config.unmapped_key),
                        config.unmapped_label.clone(),
                    )
                });
                Some(UnmappedKey {
                    key: config.unmapped_key.clone(),
                    label,
                    max,
                })
            }
        };
        Ok(CefEncoder {
            presets,
            tracker: Tracker::new(unmapped.is_some()),
            unmapped,
            tmp: String::new(),
            stats: Rendered::default(),
        })
    }

    /// The preset used for this record.
    pub fn preset_for(&self, root: &Value) -> &'static str {
        self.presets[self.select(root)].name
    }

    fn select(&self, root: &Value) -> usize {
        siem_mapping::select(&self.presets, |p| p.name, root)
    }

    /// Writes the CEF line of `root` into `out` (cleared first).
    pub fn encode(&mut self, root: &Value, out: &mut String) {
        self.render(Cow::Borrowed(root), out);
    }

    /// Like `encode`, but takes the record apart for the unmapped JSON instead of
    /// copying it: the transform replaces the record with the line anyway.
    pub fn encode_owned(&mut self, root: Value, out: &mut String) {
        self.render(Cow::Owned(root), out);
    }

    fn render(&mut self, record: Cow<'_, Value>, out: &mut String) {
        let root: &Value = &record;
        out.clear();
        self.tracker.reset();
        let preset = &self.presets[self.select(root)];
        out.push_str("CEF:0|");
        for (i, max) in HEADER_MAX.iter().enumerate() {
            if header_text(&preset.header[i], root, &mut self.tracker, &mut self.tmp)
                && escape::header(out, &self.tmp, *max)
            {
                // The cut is counted; the whole value goes to the unmapped JSON.
                self.stats.truncated += 1;
                self.tracker.keep_header(HEADER_FIELDS[i], &self.tmp);
            }
            out.push('|');
        }
        match preset.header[5].get(root) {
            Some(got) => match siem_mapping::severity(&got) {
                Some(n) => {
                    out.push_str(siem_mapping::severity_text(n));
                    self.tracker.consume(got);
                }
                None => out.push_str("Unknown"),
            },
            None => out.push_str("Unknown"),
        }
        // The eighth pipe is always written, even with no extension.
        out.push('|');
        let mut first = true;
        let stats = &mut self.stats;
        let mut write = |key: &str, value: &str, max: usize| {
            if !first {
                out.push(' ');
            }
            first = false;
            out.push_str(key);
            out.push('=');
            escape::value(out, value, max)
        };
        render_entries(
            &preset.entries,
            root,
            &mut self.tracker,
            &mut self.tmp,
            stats,
            &mut write,
        );
        if let Some(UnmappedKey { key, label, max }) = &self.unmapped
            && let Some(unmapped) = unmapped_json(record, &self.tracker, *max)
        {
            if let Some((label_key, label)) = label {
                write(label_key, label, 1023);
            }
            // Fitted to the key's limit by leaving fields out, never cut mid-value.
            write(key, &unmapped.json, *max);
            if unmapped.cut {
                stats.truncated += 1;
            }
        }
    }
}

/// The running transform.
pub struct Cef {
    encoder: CefEncoder,
    target_field: String,
    line: String,
    labels: ComponentLabels,
}

impl Transform for Cef {
    fn transform(&mut self, batch: Batch, out: &mut TransformOutputs) {
        for mut event in batch {
            let record = std::mem::replace(&mut event.value, Value::Null);
            self.encoder.encode_owned(record, &mut self.line);
            siem_mapping::replace_with_line(&mut event.value, &self.target_field, &self.line);
            out.push(event);
        }
        report(&self.labels, &mut self.encoder.stats);
    }
}

/// Moves an encoder's counts into the component's error counters.
pub(crate) fn report(labels: &ComponentLabels, stats: &mut Rendered) {
    let taken = std::mem::take(stats);
    if taken.truncated > 0 {
        labels
            .counter(
                "component_errors_total",
                &[("error_type", "value_truncated"), ("stage", "processing")],
            )
            .increment(taken.truncated);
    }
    if taken.invalid > 0 {
        labels
            .counter(
                "component_errors_total",
                &[("error_type", "invalid_value"), ("stage", "processing")],
            )
            .increment(taken.invalid);
    }
}
