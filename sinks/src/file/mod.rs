//! `file`: appends events as lines to files named by a template.
//!
//! A batch is encoded once, grouped by rendered path, written with one `write` per file,
//! optionally fsynced, and only then acknowledged. I/O errors are classified by
//! `siemflow_core::io_error`: a file name rendered from an event that the file system
//! refuses (too long, a file where a folder should be) sends that file's events to the
//! `dead_letter` output and the rest of the batch is written; any other error retries the
//! same batch (with its progress kept, so nothing is written twice) until it succeeds or
//! the process aborts.

mod open_files;
mod pending;
mod run;

#[cfg(test)]
mod tests;

use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;
use siemflow_core::delivery::DEAD_LETTER;
use siemflow_core::template::Template;
use siemflow_core::{BoxFuture, ConfigIssue, SinkConfig, SinkContext};

use crate::duration;
use crate::encoding::Encoding;

/// Options of the `file` sink.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// Required. The file to append to, as a template: strftime specifiers (`%Y-%m-%d`)
    /// from the write time in UTC and event fields (`{{ .Workload }}`), made path-safe. An
    /// event without the field goes to a path with `_missing` in its place.
    pub path: String,
    /// `"json"` (default): one compact JSON object per line; `"text"`: the `message`
    /// field, its control characters escaped so it stays one line (events without one
    /// are written as JSON).
    #[serde(default)]
    pub encoding: Encoding,
    /// Close a file that was not written for this long (default `"30s"`); it is reopened
    /// when the next event for it arrives.
    #[serde(
        default = "default_idle_timeout",
        deserialize_with = "siemflow_core::units::duration",
        serialize_with = "duration::serialize"
    )]
    #[schemars(with = "String")]
    pub idle_timeout: Duration,
    /// fsync every file a batch touched before acknowledging it (default `false`).
    /// Without it, acknowledged data is in the OS page cache: it survives a killed process
    /// but not a power loss or kernel crash. With it, each batch costs one disk flush per
    /// file, which is much slower on most disks.
    #[serde(default)]
    pub fsync: bool,
    /// At most this many files are kept open (default 256); the least recently written
    /// is closed first.
    #[serde(default = "default_max_open_files")]
    pub max_open_files: usize,
}

fn default_idle_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_max_open_files() -> usize {
    256
}

impl SinkConfig for FileSinkConfig {
    fn outputs(&self) -> Vec<String> {
        vec![DEAD_LETTER.to_string()]
    }

    fn check(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        if let Err(problem) = siemflow_core::config::checks::path(&self.path) {
            issues.push(
                ConfigIssue::new("path", problem).hint("e.g. \"out/%Y-%m-%d/{{ .Workload }}.log\""),
            );
        } else if let Err(message) = Template::parse(&self.path) {
            issues.push(
                ConfigIssue::new("path", message).hint("e.g. \"out/%Y-%m-%d/{{ .Workload }}.log\""),
            );
        }
        if self.path.ends_with('/') || self.path.ends_with(std::path::MAIN_SEPARATOR) {
            issues.push(
                ConfigIssue::new("path", "names a folder, not a file")
                    .hint("end it with a file name, e.g. \"out/%Y-%m-%d/audit.log\""),
            );
        }
        if self.max_open_files == 0 {
            issues.push(ConfigIssue::new("max_open_files", "must be at least 1"));
        }
        if self.idle_timeout.is_zero() {
            issues.push(
                ConfigIssue::new("idle_timeout", "must be longer than 0s").hint("e.g. \"30s\""),
            );
        }
        issues
    }

    fn build(&self, cx: SinkContext) -> anyhow::Result<BoxFuture<anyhow::Result<()>>> {
        Ok(Box::pin(run::append_batches(self.settings()?, cx)))
    }
}

impl FileSinkConfig {
    fn settings(&self) -> anyhow::Result<run::Settings> {
        let template = Template::parse(&self.path)
            .map_err(anyhow::Error::msg)
            .context("invalid `path` template")?;
        Ok(run::Settings {
            template,
            encoding: self.encoding,
            idle_timeout: self.idle_timeout.max(Duration::from_millis(1)),
            fsync: self.fsync,
            max_open_files: self.max_open_files.max(1),
            retry: run::WRITE_RETRY,
        })
    }
}
