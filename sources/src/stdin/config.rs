//! Options of the `stdin` source.

use serde::Deserialize;
use siemflow_core::ConfigIssue;
use siemflow_core::decoding::Decoding;
use siemflow_core::units;

use crate::file::{MAX_BATCH_EVENTS, default_batch_max_events, default_max_line_bytes};
use crate::schema;

/// Reads lines from standard input until it ends.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StdinConfig {
    /// How each line is read: `json` (one JSON object per line; a line that does not parse
    /// is kept whole in `message` and counted) or `text` (the line in `message`).
    /// Default: `json`.
    #[serde(default, serialize_with = "schema::decoding")]
    #[schemars(with = "String")]
    pub decoding: Decoding,

    /// Longest line kept; a longer one is discarded with a warning and counted
    /// (`component_errors_total{error_type="line_too_long"}`). Default: `1MiB`.
    #[serde(
        default = "default_max_line_bytes",
        deserialize_with = "units::size",
        serialize_with = "schema::size"
    )]
    #[schemars(with = "String")]
    pub max_line_bytes: u64,

    /// Most events in one batch. Default: `500`.
    #[serde(default = "default_batch_max_events")]
    pub batch_max_events: usize,
}

impl Default for StdinConfig {
    fn default() -> Self {
        StdinConfig {
            decoding: Decoding::default(),
            max_line_bytes: default_max_line_bytes(),
            batch_max_events: default_batch_max_events(),
        }
    }
}

impl StdinConfig {
    /// The problems serde cannot see.
    pub(crate) fn issues(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        if self.max_line_bytes == 0 {
            issues.push(ConfigIssue::new(
                "max_line_bytes",
                "must be greater than zero",
            ));
        }
        if let Err(problem) =
            siemflow_core::config::checks::count(self.batch_max_events, MAX_BATCH_EVENTS)
        {
            issues.push(ConfigIssue::new("batch_max_events", problem));
        }
        issues
    }
}
