//! `leef`: renders each event as an IBM QRadar LEEF 1.0/2.0 line, mapped by the same
//! Microsoft 365 presets as `cef` (keys translated to QRadar's predefined attributes).

mod config;
mod escape;
mod keys;
#[cfg(test)]
mod tests;

pub use config::{DevTime, LeefConfig, LeefVersion};

use std::borrow::Cow;

use siemflow_core::metrics::ComponentLabels;
use siemflow_core::{Batch, Transform, TransformOutputs, Value};

use crate::cef::{Unmapped, report};
use crate::siem_mapping::{
    self, Compiled, HEADER_FIELDS, Rendered, Tracker, header_text, render_entries, unmapped_json,
};

/// Header field limits in characters: vendor, product, version, EventID.
const HEADER_MAX: [usize; 4] = [255, 255, 255, 255];

/// Renders events to LEEF lines with reusable buffers.
#[derive(Debug)]
pub struct LeefEncoder {
    presets: Vec<Compiled>,
    version: LeefVersion,
    delimiter: char,
    /// The delimiter as LEEF 2.0 writes it in the header (`^` or `x09`).
    header_delimiter: String,
    dev_time: DevTime,
    unmapped: Option<String>,
    tracker: Tracker,
    tmp: String,
    /// What was given up on since the counters were last taken.
    pub stats: Rendered,
}

impl LeefEncoder {
    /// An encoder for a config; errors say which option is wrong.
    pub fn new(config: &LeefConfig) -> Result<Self, String> {
        let delimiter =
            escape::parse_delimiter(&config.delimiter).map_err(|e| format!("delimiter: {e}"))?;
        if config.version == LeefVersion::V1 && delimiter != '\t' {
            return Err("delimiter: LEEF 1.0 always uses TAB; use version = \"2.0\"".into());
        }
        // LEEF has no custom keys that need a label.
        let presets = siem_mapping::compile_all(
            &config.preset,
            &config.mapping,
            keys::translate,
            keys::kind,
            |_| false,
        )?;
        let unmapped = match config.unmapped {
            Unmapped::Drop => None,
            Unmapped::Json => {
                keys::kind(&config.unmapped_key).map_err(|e| format!("unmapped_key: {e}"))?;
                if let Some(name) = siem_mapping::preset_using(&presets, &config.unmapped_key) {
                    return Err(format!(
                        "unmapped_key `{}` is already used by preset `{name}`",
                        config.unmapped_key
                    ));
                }
                Some(config.unmapped_key.clone())
            }
        };
        Ok(LeefEncoder {
            presets,
            version: config.version,
            delimiter,
            header_delimiter: escape::header_delimiter(delimiter),
            dev_time: config.dev_time,
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

    /// Writes the LEEF line of `root` into `out` (cleared first).
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
        out.push_str(match self.version {
            LeefVersion::V1 => "LEEF:1.0|",
            LeefVersion::V2 => "LEEF:2.0|",
        });
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
        if self.version == LeefVersion::V2 {
            out.push_str(&self.header_delimiter);
            out.push('|');
        }
        let delimiter = self.delimiter;
        let mut first = true;
        let stats = &mut self.stats;
        let mut write = |key: &str, value: &str, max: usize| {
            if !first {
                out.push(delimiter);
            }
            first = false;
            out.push_str(key);
            out.push('=');
            escape::value(out, value, delimiter, max)
        };
        // QRadar wants sev as 1–10; text severities map as in CEF, then 0 becomes 1.
        if let Some(got) = preset.header[5].get(root)
            && let Some(n) = siem_mapping::severity(&got)
        {
            write("sev", siem_mapping::severity_text(n.max(1)), usize::MAX);
            self.tracker.consume(got);
        }
        if header_text(&preset.header[4], root, &mut self.tracker, &mut self.tmp) {
            write("name", &self.tmp, usize::MAX);
        }
        let dev_time = self.dev_time;
        render_entries(
            &preset.entries,
            root,
            &mut self.tracker,
            &mut self.tmp,
            stats,
            |key, value, max| {
                if key == "devTime" && dev_time == DevTime::Iso8601 {
                    let iso = iso_time(value);
                    write("devTimeFormat", "yyyy-MM-dd'T'HH:mm:ss.SSSZ", usize::MAX);
                    return write(key, &iso, max);
                }
                write(key, value, max)
            },
        );
        // LEEF sets no length limit on a custom attribute: the JSON is always whole.
        if let Some(key) = &self.unmapped
            && let Some(unmapped) = unmapped_json(record, &self.tracker, usize::MAX)
        {
            write(key, &unmapped.json, usize::MAX);
        }
    }
}

/// Epoch milliseconds (as `render_entries` typed them) in `devTimeFormat`'s pattern.
fn iso_time(epoch_ms: &str) -> String {
    epoch_ms
        .parse::<i64>()
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string())
        .unwrap_or_else(|| epoch_ms.to_string())
}

/// The running transform.
pub struct Leef {
    encoder: LeefEncoder,
    target_field: String,
    line: String,
    labels: ComponentLabels,
}

impl Transform for Leef {
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
