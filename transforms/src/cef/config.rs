//! Options of the `cef` transform.

use schemars::JsonSchema;
use serde::Deserialize;
use siemflow_core::{ConfigIssue, Transform, TransformConfig, TransformContext};

use super::{Cef, CefEncoder};
use crate::siem_mapping::MappingOverrides;

/// What happens to event fields no mapping entry wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Unmapped {
    /// Written as compact JSON into `unmapped_key` (default).
    #[default]
    Json,
    /// Left out of the line, on purpose.
    Drop,
}

/// Renders each event as one CEF line (ArcSight Common Event Format, v25 rules).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CefConfig {
    /// `auto` (default) picks a Microsoft 365 preset per record; or a preset's name.
    #[serde(default = "auto")]
    pub preset: String,
    /// Overrides and additions to the preset (`name = ".Operation"`,
    /// `[mapping.extension] suser = ".UserId"`). Default: none.
    #[serde(default)]
    pub mapping: MappingOverrides,
    /// The field that receives the line; the event becomes `{ <target_field>: line }`.
    /// Default `message`.
    #[serde(default = "message")]
    pub target_field: String,
    /// `json` (default) keeps unmapped fields as JSON in `unmapped_key`; `drop` omits them.
    #[serde(default)]
    pub unmapped: Unmapped,
    /// The extension key holding the unmapped fields' JSON. Default `cs6`.
    #[serde(default = "cs6")]
    pub unmapped_key: String,
    /// The label sent with `unmapped_key` when it is a custom key. Default `unmapped`.
    #[serde(default = "unmapped_label")]
    pub unmapped_label: String,
}

fn auto() -> String {
    "auto".into()
}
fn message() -> String {
    "message".into()
}
fn cs6() -> String {
    "cs6".into()
}
fn unmapped_label() -> String {
    "unmapped".into()
}

impl TransformConfig for CefConfig {
    fn check(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        if self.target_field.is_empty() {
            issues.push(ConfigIssue::new("target_field", "must not be empty"));
        }
        if let Err(e) = CefEncoder::new(self) {
            issues.push(ConfigIssue::new("mapping", e).hint(
                "keys are letters and digits; custom keys come with their Label; \
                     sources are `.path`, `.a ?? .b`, constants or `{{ .path }}` templates",
            ));
        }
        issues
    }

    fn build(&self, cx: &TransformContext) -> anyhow::Result<Box<dyn Transform>> {
        let encoder = CefEncoder::new(self).map_err(|e| anyhow::anyhow!("cef mapping: {e}"))?;
        Ok(Box::new(Cef {
            encoder,
            target_field: self.target_field.clone(),
            line: String::with_capacity(2048),
            labels: cx.component.metrics.labels.clone(),
        }))
    }
}
