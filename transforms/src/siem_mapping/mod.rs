//! The mapping model shared by `cef` and `leef`: which event fields fill which header
//! fields and keys, the Microsoft 365 presets, and per-record preset selection.

mod detect;
mod presets;
mod render;
mod source;
mod values;

pub use detect::{detect, select};
pub use presets::{PRESETS, Preset, preset};
pub use render::{
    DROPPED_KEY, Entry, Rendered, TRUNCATED_KEY, Tracker, Unmapped, header_text, pair_labels,
    render_entries, unmapped_json,
};
pub use source::{FieldPath, Got, Source};
pub use values::{
    Kind, epoch_ms, other_ip_family, parse_time, severity, severity_text, typed_text,
};

/// The option names of the header fields, in header order (vendor … name).
pub const HEADER_FIELDS: [&str; 5] = ["vendor", "product", "version", "event_class_id", "name"];

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

/// A user's changes to a preset, from `[transforms.x.mapping]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MappingOverrides {
    /// Device vendor (a `.path`, a constant, or a `{{ .path }}` template).
    pub vendor: Option<String>,
    /// Device product.
    pub product: Option<String>,
    /// Device version.
    pub version: Option<String>,
    /// Signature / event class id (LEEF EventID).
    pub event_class_id: Option<String>,
    /// Event name (CEF header; a `name` attribute in LEEF).
    pub name: Option<String>,
    /// Severity: a number or text such as `High`, mapped to 0–10 (LEEF 1–10).
    pub severity: Option<String>,
    /// Extension keys (CEF) or attributes (LEEF) to add or replace; `""` removes one.
    #[serde(default)]
    pub extension: BTreeMap<String, String>,
}

/// A mapping ready to render: header sources and ordered key sources.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapping {
    /// Vendor, product, version, event class id, name, severity.
    pub header: [Source; 6],
    /// Keys in output order.
    pub extension: Vec<(String, Source)>,
}

impl Mapping {
    /// The mapping a preset describes.
    pub fn from_preset(preset: &Preset) -> Result<Mapping, String> {
        let h = &preset.header;
        let header = [
            Source::parse(h[0])?,
            Source::parse(h[1])?,
            Source::parse(h[2])?,
            Source::parse(h[3])?,
            Source::parse(h[4])?,
            Source::parse(h[5])?,
        ];
        let extension = preset
            .common
            .iter()
            .chain(preset.extra)
            .map(|(k, v)| Ok((k.to_string(), Source::parse(v)?)))
            .collect::<Result<Vec<_>, String>>()?;
        let mut mapping = Mapping {
            header,
            extension: Vec::new(),
        };
        // A workload's extra entry replaces a common one of the same key.
        for (key, source) in extension {
            mapping.set(&key, Some(source));
        }
        Ok(mapping)
    }

    /// Sets, replaces (in place) or removes (`None`) one key.
    pub fn set(&mut self, key: &str, source: Option<Source>) {
        let position = self.extension.iter().position(|(k, _)| k == key);
        match (position, source) {
            (Some(i), Some(source)) => self.extension[i].1 = source,
            (Some(i), None) => {
                self.extension.remove(i);
            }
            (None, Some(source)) => self.extension.push((key.to_string(), source)),
            (None, None) => {}
        }
    }

    /// Applies a user's overrides; errors name the key at fault.
    pub fn apply(&mut self, overrides: &MappingOverrides) -> Result<(), String> {
        let header = [
            ("vendor", &overrides.vendor),
            ("product", &overrides.product),
            ("version", &overrides.version),
            ("event_class_id", &overrides.event_class_id),
            ("name", &overrides.name),
            ("severity", &overrides.severity),
        ];
        for (i, (key, text)) in header.into_iter().enumerate() {
            if let Some(text) = text {
                self.header[i] = Source::parse(text).map_err(|e| format!("mapping.{key}: {e}"))?;
            }
        }
        for (key, text) in &overrides.extension {
            let source = if text.is_empty() {
                None
            } else {
                Some(Source::parse(text).map_err(|e| format!("mapping.extension.{key}: {e}"))?)
            };
            self.set(key, source);
        }
        Ok(())
    }
}

/// A preset's keys with their source texts as written in the definitions, after a
/// workload's keys replaced the family's (for the generated docs tables), passed
/// through `adapt` (the format's key translation).
pub fn preset_rows(preset: &Preset, adapt: fn(&mut Mapping)) -> Vec<(String, String)> {
    let mut mapping = Mapping {
        header: std::array::from_fn(|i| Source::Const(preset.header[i].to_string())),
        extension: Vec::new(),
    };
    for (key, text) in preset.common.iter().chain(preset.extra) {
        mapping.set(key, Some(Source::Const(text.to_string())));
    }
    adapt(&mut mapping);
    mapping
        .extension
        .into_iter()
        .map(|(key, source)| match source {
            Source::Const(text) => (key, text),
            other => (key, format!("{other:?}")),
        })
        .collect()
}

/// Builds the mapping of every preset a transform may use, each passed through
/// `adapt` (the format's key translation) and then the user's overrides.
pub fn build_all(
    preset_choice: &str,
    overrides: &MappingOverrides,
    adapt: fn(&mut Mapping),
) -> Result<Vec<(&'static str, Mapping)>, String> {
    let chosen: Vec<&Preset> = if preset_choice == "auto" {
        PRESETS.iter().collect()
    } else {
        vec![preset(preset_choice).ok_or_else(|| {
            format!(
                "unknown preset `{preset_choice}`; valid: auto, {}",
                PRESETS
                    .iter()
                    .map(|p| p.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?]
    };
    chosen
        .into_iter()
        .map(|p| {
            let mut mapping = Mapping::from_preset(p)?;
            adapt(&mut mapping);
            mapping.apply(overrides)?;
            Ok((p.name, mapping))
        })
        .collect()
}

/// One preset compiled for a format: header sources and typed, label-paired keys.
#[derive(Debug)]
pub struct Compiled {
    /// The preset's name.
    pub name: &'static str,
    /// Vendor, product, version, event class id, name, severity.
    pub header: [Source; 6],
    /// Keys in output order.
    pub entries: Vec<Entry>,
}

/// Builds (see `build_all`) and compiles every preset a transform may use for a
/// format's keys: `kind_of` types each key, `needs_label` says which need an `xLabel`.
pub fn compile_all(
    preset_choice: &str,
    overrides: &MappingOverrides,
    adapt: fn(&mut Mapping),
    kind_of: fn(&str) -> Result<Kind, String>,
    needs_label: fn(&str) -> bool,
) -> Result<Vec<Compiled>, String> {
    build_all(preset_choice, overrides, adapt)?
        .into_iter()
        .map(|(name, mapping)| {
            let entries = pair_labels(&mapping.extension, kind_of, needs_label)
                .map_err(|e| format!("preset `{name}`: {e}"))?;
            Ok(Compiled {
                name,
                header: mapping.header,
                entries,
            })
        })
        .collect()
}

/// The first preset that already writes `key`, if any.
pub fn preset_using(presets: &[Compiled], key: &str) -> Option<&'static str> {
    presets
        .iter()
        .find(|p| p.entries.iter().any(|e| e.key == key))
        .map(|p| p.name)
}

#[cfg(test)]
pub(crate) mod tests;

/// Replaces the event's body with `{target_field: line}`: what a CEF or LEEF transform
/// emits (the line stands for the whole record).
pub fn replace_with_line(value: &mut vrl::value::Value, target_field: &str, line: &str) {
    let mut object = vrl::value::ObjectMap::new();
    object.insert(target_field.into(), vrl::value::Value::from(line));
    *value = vrl::value::Value::Object(object);
}
