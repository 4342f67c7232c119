//! `console`: writes events as lines to stdout or stderr.

mod writer;

use serde::Deserialize;
use siemflow_core::{BoxFuture, SinkConfig, SinkContext};

use crate::encoding::{Encoding, LineEncoder};

/// Options of the `console` sink.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSinkConfig {
    /// Where lines go: `"stdout"` (default) or `"stderr"`.
    #[serde(default)]
    pub target: ConsoleTarget,
    /// `"json"` (default): one compact JSON object per line; `"text"`: the `message`
    /// field, its control characters escaped so it stays one line.
    #[serde(default)]
    pub encoding: Encoding,
}

/// The standard stream the console sink writes to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConsoleTarget {
    /// The process's standard output.
    #[default]
    Stdout,
    /// The process's standard error.
    Stderr,
}

impl ConsoleTarget {
    fn name(self) -> &'static str {
        match self {
            ConsoleTarget::Stdout => "stdout",
            ConsoleTarget::Stderr => "stderr",
        }
    }
}

impl SinkConfig for ConsoleSinkConfig {
    fn build(&self, cx: SinkContext) -> anyhow::Result<BoxFuture<anyhow::Result<()>>> {
        let encoder = LineEncoder::new(self.encoding, &cx.component.metrics.labels);
        let target = self.target.name();
        // tokio's handles write on a blocking thread: a reader that stops reading makes
        // the write pend, so the sink stops taking batches and its buffer pushes back.
        Ok(match self.target {
            ConsoleTarget::Stdout => Box::pin(writer::write_lines(
                tokio::io::stdout(),
                target,
                encoder,
                cx,
            )),
            ConsoleTarget::Stderr => Box::pin(writer::write_lines(
                tokio::io::stderr(),
                target,
                encoder,
                cx,
            )),
        })
    }
}
