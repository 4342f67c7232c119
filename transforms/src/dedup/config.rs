//! Options of the `dedup` transform.

use std::sync::Arc;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use siemflow_core::event::field_path;
use siemflow_core::{ConfigIssue, Transform, TransformConfig, TransformContext, units};
use vrl::path::OwnedValuePath;

use super::{Clock, Dedup, system_clock};

/// Smallest budget that still holds a useful in-memory table.
pub(super) const MIN_BUDGET: u64 = 1 << 20;

/// Drops events whose key was already delivered within a time window; the seen-set
/// persists under `data_dir` and its memory is bounded by `memory_budget`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DedupConfig {
    /// The fields that together identify an event: VRL-style paths with or without the
    /// leading dot, e.g. `["Id"]` or `["id", "lastUpdateDateTime"]`. Required.
    pub key: Vec<String>,
    /// How long a delivered key is remembered. Default `"7d"`, the time the Office 365
    /// Management Activity API keeps content available.
    #[serde(
        default = "default_window",
        deserialize_with = "units::duration",
        serialize_with = "units::serialize_duration"
    )]
    #[schemars(with = "String")]
    pub window: Duration,
    /// Memory the seen-set may use (in-memory table plus the disk store's cache); keys
    /// beyond it live on disk only. Default `"64MiB"`, at least `"1MiB"`.
    #[serde(
        default = "default_budget",
        deserialize_with = "units::size",
        serialize_with = "units::serialize_size"
    )]
    #[schemars(with = "String")]
    pub memory_budget: u64,
    /// What happens to an event that lacks one of the key fields (or has it null):
    /// `"pass"` (default) lets it through, `"drop"` drops it as delivered. Both are counted.
    #[serde(default)]
    pub missing_key: MissingKey,
}

/// What to do with an event that lacks a key field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MissingKey {
    /// Let it through unchanged.
    #[default]
    Pass,
    /// Drop it, settled as delivered.
    Drop,
}

fn default_window() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}

fn default_budget() -> u64 {
    64 << 20
}

impl DedupConfig {
    /// The parsed key paths, or every problem with them.
    pub(super) fn paths(&self) -> Result<Vec<OwnedValuePath>, Vec<ConfigIssue>> {
        let mut paths = Vec::new();
        let mut issues = Vec::new();
        if self.key.is_empty() {
            issues.push(
                ConfigIssue::new("key", "no key field given")
                    .hint("at least one field path, e.g. `key = [\"Id\"]`"),
            );
        }
        for (i, text) in self.key.iter().enumerate() {
            match field_path(&format!("key[{i}]"), text) {
                Ok(path) => paths.push(path),
                Err(issue) => issues.push(issue),
            }
        }
        if issues.is_empty() {
            Ok(paths)
        } else {
            Err(issues)
        }
    }

    /// Builds with an injected clock (seconds since the Unix epoch), for tests.
    pub(super) fn build_with_clock(
        &self,
        cx: &TransformContext,
        clock: Clock,
    ) -> anyhow::Result<Dedup> {
        let paths = self.paths().map_err(|issues| {
            anyhow::anyhow!(
                "option `key`: {}",
                issues
                    .iter()
                    .map(|i| i.message.clone())
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        })?;
        if let Some(issue) = self.check().into_iter().next() {
            anyhow::bail!(
                "option `{}`: {}",
                issue.key.unwrap_or_default(),
                issue.message
            );
        }
        Dedup::new(self, paths, cx, clock)
    }
}

impl TransformConfig for DedupConfig {
    fn check(&self) -> Vec<ConfigIssue> {
        let mut issues = self.paths().err().unwrap_or_default();
        if self.memory_budget < MIN_BUDGET {
            issues.push(
                ConfigIssue::new(
                    "memory_budget",
                    format!("{} bytes is too small", self.memory_budget),
                )
                .hint("at least \"1MiB\"; the default is \"64MiB\""),
            );
        }
        if self.window.as_secs() == 0 {
            issues.push(
                ConfigIssue::new("window", "the window must be at least one second")
                    .hint("e.g. \"7d\" (the default) or \"24h\""),
            );
        }
        issues
    }

    fn build(&self, cx: &TransformContext) -> anyhow::Result<Box<dyn Transform>> {
        let clock: Clock = Arc::new(system_clock);
        Ok(Box::new(self.build_with_clock(cx, clock)?))
    }
}
