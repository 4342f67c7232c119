//! `opentelemetry`: delivers events as OTLP log records to an OpenTelemetry Collector or
//! any OTLP receiver, over gRPC (tonic) or OTLP/HTTP (binary protobuf).
//!
//! Events map to `LogRecord`s by `siemflow_core::otlp`'s shared mapping (so what the
//! `opentelemetry` source produced goes out as the record it came in as) plus this sink's
//! options (body, attributes, resource, scope, time, severity, event name); records are
//! grouped into one `ResourceLogs`/`ScopeLogs` per distinct resource and scope. Answers
//! are classified as the OTLP specification says: its retryable codes retried (with
//! `RetryInfo` or `Retry-After` as the wait), a partial success never retried (the
//! refused count dead-lettered), a message over the receiver's size limit split.
//! Batching, retries, concurrency and dead-lettering are `siemflow_core::delivery`'s.

mod any;
mod config;
mod encode;
mod grpc;
mod http;
mod protocol;
mod status;

#[cfg(test)]
#[path = "../../../tests/support/rsyslogd.rs"]
#[allow(dead_code)] // only its test certificates are used here
mod rsyslogd;
#[cfg(test)]
mod tests;

pub use config::{OpentelemetrySinkConfig, ScopeConfig, Transport};

use siemflow_core::delivery::{self, DEAD_LETTER, Settings};
use siemflow_core::{BoxFuture, ConfigIssue, SinkConfig, SinkContext};

impl SinkConfig for OpentelemetrySinkConfig {
    fn outputs(&self) -> Vec<String> {
        vec![DEAD_LETTER.to_string()]
    }

    fn check(&self) -> Vec<ConfigIssue> {
        self.issues()
    }

    fn build(&self, cx: SinkContext) -> anyhow::Result<BoxFuture<anyhow::Result<()>>> {
        let labels = cx.component.metrics.labels.clone();
        let protocol = protocol::Otlp::new(self, &labels)?;
        let mut settings = Settings::new(
            &self.batch,
            self.concurrency,
            &self.retry,
            &self.healthcheck,
        );
        settings.separator_bytes = encode::RECORD_FRAMING_BYTES;
        Ok(Box::pin(delivery::run(protocol, settings, cx)))
    }
}
