//! `splunk_hec`: delivers events to a Splunk HTTP Event Collector.
//!
//! `/services/collector/event` envelopes (or `/raw` lines) in batches per index, a channel
//! GUID on every request, the HEC code table classified (retry / data / configuration),
//! a partial failure (`invalid-event-number`) settled event by event, and — with indexer
//! acknowledgements on — an event acknowledged upstream only once Splunk's `/ack` said so.
//! Batching, retries, concurrency and dead-lettering are `siemflow_core::delivery`'s.

mod acks;
mod codes;
mod config;
mod encode;
mod protocol;

#[cfg(test)]
mod tests;

pub use config::{AcknowledgementsConfig, EndpointTarget, SplunkHecSinkConfig};

use siemflow_core::delivery::{self, DEAD_LETTER, Settings};
use siemflow_core::{BoxFuture, ConfigIssue, SinkConfig, SinkContext};

impl SinkConfig for SplunkHecSinkConfig {
    fn outputs(&self) -> Vec<String> {
        vec![DEAD_LETTER.to_string()]
    }

    fn check(&self) -> Vec<ConfigIssue> {
        self.issues()
    }

    fn build(&self, cx: SinkContext) -> anyhow::Result<BoxFuture<anyhow::Result<()>>> {
        let labels = cx.component.metrics.labels.clone();
        let (protocol, poller) = protocol::Hec::new(self, &labels)?;
        let settings = Settings::new(
            &self.batch,
            self.concurrency,
            &self.retry,
            &self.healthcheck,
        );
        // Made here, not in the task: the sink reports its pending healthcheck as it is built.
        let delivering = delivery::run(protocol, settings, cx);
        Ok(Box::pin(async move {
            // The ack poller lives exactly as long as the delivery loop.
            let stop = tokio_util::sync::CancellationToken::new();
            let polling = poller.map(|poller| tokio::spawn(poller.run(stop.clone())));
            let result = delivering.await;
            stop.cancel();
            if let Some(polling) = polling {
                let _ = polling.await;
            }
            result
        }))
    }
}
