//! Options of the `remap` transform.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Deserialize;
use siemflow_core::{ConfigIssue, Transform, TransformConfig, TransformContext};
use vrl::compiler::TimeZone;

use super::{DROPPED, FailurePolicy, Remap};
use crate::vrl_program::{self, Access, Compiled};

/// The most a VRL program file may hold: programs are a few KiB, and a file is compiled
/// whole in memory.
pub const PROGRAM_FILE_LIMIT: u64 = 1 << 20;

/// Rewrites each event with a VRL program.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RemapConfig {
    /// The VRL program, inline. Set exactly one of `source` and `file`. Default: none.
    #[serde(default)]
    pub source: Option<String>,
    /// A file holding the VRL program (relative paths are relative to the working
    /// directory): a regular file of at most 1 MiB. Set exactly one of `source` and
    /// `file`. Default: none.
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// The time zone for timestamps parsed without one (`parse_timestamp`, `format_timestamp`):
    /// a tz database name such as `Europe/Paris`, or `local`. Default: `"UTC"`.
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// Drop an event whose program fails with an error (to the `dropped` output when
    /// `reroute_dropped` is true). When false the original event goes on unmodified on
    /// the default output. Default: `false`.
    #[serde(default)]
    pub drop_on_error: bool,
    /// Drop an event whose program calls `abort` (to the `dropped` output when
    /// `reroute_dropped` is true). When false the original event goes on unmodified on
    /// the default output. Default: `true`.
    #[serde(default = "default_true")]
    pub drop_on_abort: bool,
    /// Send dropped events, unmodified and annotated with `metadata.dropped`, to the
    /// `dropped` output (addressed `<id>.dropped`) instead of discarding them. Default: `true`.
    #[serde(default = "default_true")]
    pub reroute_dropped: bool,
}

fn default_timezone() -> String {
    "UTC".to_string()
}

fn default_true() -> bool {
    true
}

impl RemapConfig {
    /// The program text, the option it came from and where diagnostics locate it.
    fn program_source(&self) -> Result<(String, &'static str, String), ConfigIssue> {
        match (&self.source, &self.file) {
            (Some(source), None) => Ok((source.clone(), "source", "source".to_string())),
            (None, Some(path)) => {
                siemflow_core::fs::read_text_bounded(path, PROGRAM_FILE_LIMIT, "the VRL program")
                    .map(|text| (text, "file", path.display().to_string()))
                    .map_err(|e| ConfigIssue::new("file", e.to_string()))
            }
            (Some(_), Some(_)) => Err(ConfigIssue::new(
                "source",
                "`source` and `file` are both set; a remap runs one program",
            )
            .hint("keep either `source` (inline VRL) or `file` (path to a .vrl file)")),
            (None, None) => Err(ConfigIssue::new("source", "no VRL program given")
                .hint("set `source` (inline VRL) or `file` (path to a .vrl file)")),
        }
    }

    fn timezone(&self) -> Result<TimeZone, ConfigIssue> {
        TimeZone::parse(&self.timezone).ok_or_else(|| {
            ConfigIssue::new("timezone", format!("unknown time zone `{}`", self.timezone))
                .hint("a tz database name such as `UTC` or `Europe/Paris`, or `local`")
        })
    }

    fn compile(&self) -> Result<Compiled, ConfigIssue> {
        let (source, key, origin) = self.program_source()?;
        vrl_program::compile(&source, &origin, Access::ReadWrite).map_err(|diagnostics| {
            ConfigIssue::new(
                key,
                format!("the VRL program does not compile:\n{diagnostics}"),
            )
        })
    }
}

fn into_error(issue: ConfigIssue) -> anyhow::Error {
    anyhow::anyhow!(
        "option `{}`: {}",
        issue.key.as_deref().unwrap_or("source"),
        issue.message
    )
}

impl TransformConfig for RemapConfig {
    fn outputs(&self) -> Vec<String> {
        if self.reroute_dropped {
            vec![DROPPED.to_string()]
        } else {
            Vec::new()
        }
    }

    fn check(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        if let Err(issue) = self.timezone() {
            issues.push(issue);
        }
        if let Err(issue) = self.compile() {
            issues.push(issue);
        }
        issues
    }

    fn build(&self, cx: &TransformContext) -> anyhow::Result<Box<dyn Transform>> {
        let timezone = self.timezone().map_err(into_error)?;
        let compiled = self.compile().map_err(into_error)?;
        if !compiled.warnings.is_empty() {
            tracing::warn!(component_id = %cx.component.id, warnings = %compiled.warnings, "VRL program compiled with warnings");
        }
        let policy = FailurePolicy {
            drop_on_error: self.drop_on_error,
            drop_on_abort: self.drop_on_abort,
            reroute_dropped: self.reroute_dropped,
        };
        Ok(Box::new(Remap::new(
            compiled.program,
            timezone,
            policy,
            &cx.component,
        )))
    }
}
