//! Options of the `leef` transform.

use schemars::JsonSchema;
use serde::Deserialize;
use siemflow_core::{ConfigIssue, Transform, TransformConfig, TransformContext};

use super::{Leef, LeefEncoder};
use crate::cef::Unmapped;
use crate::siem_mapping::MappingOverrides;

/// The LEEF header version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
pub enum LeefVersion {
    /// `LEEF:1.0`, TAB-delimited.
    #[serde(rename = "1.0")]
    V1,
    /// `LEEF:2.0` with the delimiter in the header (default).
    #[default]
    #[serde(rename = "2.0")]
    V2,
}

/// How `devTime` is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DevTime {
    /// Epoch milliseconds (13 digits; no `devTimeFormat` needed). Default.
    #[default]
    EpochMs,
    /// `yyyy-MM-dd'T'HH:mm:ss.SSSZ` in UTC, with `devTimeFormat` sent before it.
    Iso8601,
}

/// Renders each event as one LEEF line for IBM QRadar.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LeefConfig {
    /// `"2.0"` (default) or `"1.0"`.
    #[serde(default)]
    pub version: LeefVersion,
    /// Attribute delimiter: one character, `\t`, or hex `x09`/`0x5E`. Default TAB.
    /// LEEF 1.0 only allows TAB.
    #[serde(default = "tab")]
    pub delimiter: String,
    /// How `devTime` is written: `epoch_ms` (default) or `iso8601`.
    #[serde(default)]
    pub dev_time: DevTime,
    /// `auto` (default) picks a Microsoft 365 preset per record; or a preset's name.
    #[serde(default = "auto")]
    pub preset: String,
    /// Overrides and additions, keyed by LEEF attribute names. Default: none.
    #[serde(default)]
    pub mapping: MappingOverrides,
    /// The field that receives the line. Default `message`.
    #[serde(default = "message")]
    pub target_field: String,
    /// `json` (default) keeps unmapped fields as JSON in `unmapped_key`; `drop` omits them.
    #[serde(default)]
    pub unmapped: Unmapped,
    /// The attribute holding the unmapped fields' JSON. Default `unmapped`.
    #[serde(default = "unmapped_key")]
    pub unmapped_key: String,
}

fn tab() -> String {
    "\t".into()
}
fn auto() -> String {
    "auto".into()
}
fn message() -> String {
    "message".into()
}
fn unmapped_key() -> String {
    "unmapped".into()
}

impl TransformConfig for LeefConfig {
    fn check(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        if self.target_field.is_empty() {
            issues.push(ConfigIssue::new("target_field", "must not be empty"));
        }
        if let Err(e) = LeefEncoder::new(self) {
            issues.push(ConfigIssue::new("mapping", e).hint(
                "attribute names are letters, digits and `_`; sources are `.path`, \
                 `.a ?? .b`, constants or `{{ .path }}` templates",
            ));
        }
        issues
    }

    fn build(&self, cx: &TransformContext) -> anyhow::Result<Box<dyn Transform>> {
        let encoder = LeefEncoder::new(self).map_err(|e| anyhow::anyhow!("leef: {e}"))?;
        Ok(Box::new(Leef {
            encoder,
            target_field: self.target_field.clone(),
            line: String::with_capacity(2048),
            labels: cx.component.metrics.labels.clone(),
        }))
    }
}
