//! `sentinel`: sends events to Microsoft Sentinel through the Azure Monitor Logs
//! Ingestion API (reference `siem-sinks.md` §2).
//!
//! Each event becomes one record (`TimeGenerated` from the event's time, field names
//! that break the column rules renamed); records go out as a JSON array of at most
//! 1 MiB before compression, gzipped, with an Entra ID bearer token. The shared delivery
//! machinery batches, retries (429/503 with `Retry-After`, 5xx, timeouts), splits on
//! 413 and dead-letters. A record that alone exceeds 1 MiB is dead-lettered before it is
//! sent; a 400 for a whole request is bisected to dead-letter only the records at
//! fault. The retired HTTP Data Collector API is not offered (docs/sinks/sentinel.md).

mod cloud;
mod config;
mod protocol;
mod record;

#[cfg(test)]
mod tests;

use anyhow::Context as _;
use siemflow_core::auth::TokenProvider;
use siemflow_core::delivery::{self, DEAD_LETTER, HttpClient, Settings};
use siemflow_core::{BoxFuture, ConfigIssue, SinkConfig, SinkContext};

pub use config::{DEFAULT_API_VERSION, MAX_REQUEST_BYTES, SentinelSinkConfig};

use protocol::{Counters, Sentinel};
use record::RecordWriter;

impl SinkConfig for SentinelSinkConfig {
    fn outputs(&self) -> Vec<String> {
        vec![DEAD_LETTER.to_string()]
    }

    fn check(&self) -> Vec<ConfigIssue> {
        self.issues()
    }

    fn build(&self, cx: SinkContext) -> anyhow::Result<BoxFuture<anyhow::Result<()>>> {
        let labels = cx.component.metrics.labels.clone();
        let http = HttpClient::new(
            &self.tls,
            self.request.timeout,
            self.proxy.as_ref(),
            &labels,
        )
        .context("invalid `tls` or `proxy` options")?;
        let tokens = TokenProvider::new(
            &self.effective_auth(),
            &self.effective_scope(),
            http.inner().clone(),
        )
        .map_err(|e| anyhow::anyhow!("auth: {e}"))?;
        let protocol = Sentinel {
            http,
            tokens,
            url: self.ingestion_url(),
            compression: self.compression,
            records: RecordWriter {
                timestamp_fields: self
                    .timestamp_field
                    .iter()
                    .map(|f| f.trim().to_string())
                    .collect(),
                rename_prefix: self.rename_prefix.clone(),
            },
            counters: Counters::new(&labels),
        };
        let mut settings = Settings::new(
            &self.batch,
            self.concurrency,
            &self.retry,
            &self.healthcheck,
        );
        // The request is a JSON array: one comma per record, two brackets per request,
        // all within the API's limit before compression.
        settings.batch.max_bytes = settings.batch.max_bytes.min(MAX_REQUEST_BYTES);
        settings.separator_bytes = 1;
        settings.framing_bytes = 2;
        Ok(Box::pin(delivery::run(protocol, settings, cx)))
    }
}
