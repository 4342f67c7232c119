//! Options of the `file` source.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use siemflow_core::ConfigIssue;
use siemflow_core::config::checks;
use siemflow_core::decoding::Decoding;
use siemflow_core::units;

use crate::schema;

/// Where to start in a file that has no checkpoint yet.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ReadFrom {
    /// Read the whole file.
    #[default]
    Beginning,
    /// Skip what the file holds at start-up; read only what is appended later.
    End,
}

/// Which symlinks among the matched paths are followed.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum FollowSymlinks {
    /// Follow a symlink only when the file it leads to lies inside the base folder of an
    /// include pattern (the part of the pattern before its first wildcard).
    #[default]
    WithinInclude,
    /// Follow every symlink, wherever it leads.
    Always,
    /// Read no file reached through a symlink below the base folder of its pattern.
    Never,
}

/// Tails files matching glob patterns, surviving rotation, with checkpoints that advance
/// only for delivered data.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Glob patterns of the files to read, e.g. `["/var/log/o365/*.ndjson"]`. Required.
    /// Files created later that match are picked up too.
    pub include: Vec<String>,

    /// Glob patterns of files to skip although `include` matches them. Default: none.
    #[serde(default)]
    pub exclude: Vec<String>,

    /// How each line is read: `json` (one JSON object per line; a line that does not parse
    /// is kept whole in `message` and counted) or `text` (the line in `message`).
    /// Default: `json`.
    #[serde(default, serialize_with = "schema::decoding")]
    #[schemars(with = "String")]
    pub decoding: Decoding,

    /// Where to start in a file found at start-up that has no checkpoint: `beginning` or
    /// `end`. Files that appear later are always read from their beginning.
    /// Default: `beginning`.
    #[serde(default)]
    pub read_from: ReadFrom,

    /// How often to look for new files matching `include`. Default: `1s`.
    #[serde(
        default = "default_glob_interval",
        deserialize_with = "units::duration",
        serialize_with = "schema::duration"
    )]
    #[schemars(with = "String")]
    pub glob_interval: Duration,

    /// How often to look for new data in a file that was read to its end.
    /// Default: `200ms`.
    #[serde(
        default = "default_poll_interval",
        deserialize_with = "units::duration",
        serialize_with = "schema::duration"
    )]
    #[schemars(with = "String")]
    pub poll_interval: Duration,

    /// Longest line kept; a longer one is discarded with a warning naming file and offset
    /// and counted (`component_errors_total{error_type="line_too_long"}`). Bounds memory.
    /// Default: `1MiB`.
    #[serde(
        default = "default_max_line_bytes",
        deserialize_with = "units::size",
        serialize_with = "schema::size"
    )]
    #[schemars(with = "String")]
    pub max_line_bytes: u64,

    /// Most events in one batch (one acknowledgement, one checkpoint step).
    /// Default: `500`.
    #[serde(default = "default_batch_max_events")]
    pub batch_max_events: usize,

    /// How often the checkpoint file is written when it changed (and always at shutdown).
    /// Default: `1s`.
    #[serde(
        default = "default_checkpoint_interval",
        deserialize_with = "units::duration",
        serialize_with = "schema::duration"
    )]
    #[schemars(with = "String")]
    pub checkpoint_interval: Duration,

    /// Most files held open at once. More matching files are read in turns: a file read
    /// to its end is closed when another waits, and opened again at its offset (checked
    /// to be the same file) when it grows. Default: a quarter of the process's open-file
    /// limit (`ulimit -n`), at least 8 and at most 4096.
    #[serde(default)]
    pub max_open_files: Option<usize>,

    /// Which symlinks are followed: `within_include` (only to files inside the base
    /// folder of an include pattern), `always` or `never`. A refused symlink is warned
    /// about once and counted (`component_errors_total{error_type="symlink_refused"}`).
    /// Default: `within_include`.
    #[serde(default)]
    pub follow_symlinks: FollowSymlinks,
}

fn default_glob_interval() -> Duration {
    Duration::from_secs(1)
}

fn default_poll_interval() -> Duration {
    Duration::from_millis(200)
}

fn default_checkpoint_interval() -> Duration {
    Duration::from_secs(1)
}

pub(crate) fn default_max_line_bytes() -> u64 {
    1 << 20
}

pub(crate) fn default_batch_max_events() -> usize {
    500
}

/// The most files `max_open_files` may allow: far above any real open-file limit.
const MAX_OPEN_FILES: usize = 1 << 20;

/// The most events a source batch may hold: room for them is reserved up front.
pub(crate) const MAX_BATCH_EVENTS: usize = 1_000_000;

impl FileConfig {
    /// A config with every default and these include patterns.
    pub fn with_include(include: Vec<String>) -> Self {
        FileConfig {
            include,
            exclude: Vec::new(),
            decoding: Decoding::default(),
            read_from: ReadFrom::default(),
            glob_interval: default_glob_interval(),
            poll_interval: default_poll_interval(),
            max_line_bytes: default_max_line_bytes(),
            batch_max_events: default_batch_max_events(),
            checkpoint_interval: default_checkpoint_interval(),
            max_open_files: None,
            follow_symlinks: FollowSymlinks::default(),
        }
    }

    /// The problems serde cannot see.
    pub(crate) fn issues(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        if self.include.is_empty() {
            issues.push(
                ConfigIssue::new("include", "no file pattern given")
                    .hint("list at least one glob, e.g. include = [\"/var/log/o365/*.ndjson\"]"),
            );
        }
        for (key, patterns) in [("include", &self.include), ("exclude", &self.exclude)] {
            for (index, pattern) in patterns.iter().enumerate() {
                if let Err(problem) = siemflow_core::config::checks::path(pattern) {
                    issues.push(ConfigIssue::new(&format!("{key}[{index}]"), problem));
                } else if let Err(e) = glob::Pattern::new(pattern) {
                    issues.push(
                        ConfigIssue::new(&format!("{key}[{index}]"), format!("`{pattern}` is not a valid glob: {e}"))
                            .hint("use *, ?, [abc] and ** (whole path segments), e.g. \"/var/log/*.json\""),
                    );
                }
            }
        }
        let positive = [
            ("glob_interval", self.glob_interval.is_zero()),
            ("poll_interval", self.poll_interval.is_zero()),
            ("checkpoint_interval", self.checkpoint_interval.is_zero()),
            ("max_line_bytes", self.max_line_bytes == 0),
        ];
        for (key, is_zero) in positive {
            if is_zero {
                issues.push(ConfigIssue::new(key, "must be greater than zero"));
            }
        }
        if let Some(limit) = self.max_open_files
            && let Err(problem) = checks::count(limit, MAX_OPEN_FILES)
        {
            issues.push(
                ConfigIssue::new("max_open_files", problem)
                    .hint("leave it out to derive it from the process's open-file limit"),
            );
        }
        if let Err(problem) = checks::count(self.batch_max_events, MAX_BATCH_EVENTS) {
            issues.push(ConfigIssue::new("batch_max_events", problem));
        }
        issues
    }
}
