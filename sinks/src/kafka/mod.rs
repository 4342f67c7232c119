//! `kafka`: produces events to Apache Kafka (or the Event Hubs Kafka endpoint) with
//! librdkafka.
//!
//! A topic from a template, a key from a field (one user or tenant stays on one
//! partition, in order), headers from fields, JSON or `message` text. The idempotent
//! producer (`acks=all`) is on by default. An event is acknowledged upstream only from its
//! delivery report; librdkafka retries transient errors within `message_timeout`, after
//! which the batch is retried under `retry` by a new producer and finally failed back to
//! its source; messages Kafka can never take (too large, an invalid or unknown topic, no
//! permission) are dead-lettered with the reason. Batching, retries and dead-lettering
//! are `siemflow_core::delivery`'s; one batch is in flight at a time so batches reach
//! librdkafka in the order they came.

mod config;
mod errors;
mod protocol;

#[cfg(test)]
mod tests;

pub use config::{KafkaCompression, KafkaSinkConfig, SaslConfig};

use siemflow_core::delivery::{self, Concurrency, DEAD_LETTER, Settings};
use siemflow_core::{BoxFuture, ConfigIssue, SinkConfig, SinkContext};

impl SinkConfig for KafkaSinkConfig {
    fn outputs(&self) -> Vec<String> {
        vec![DEAD_LETTER.to_string()]
    }

    fn check(&self) -> Vec<ConfigIssue> {
        self.issues()
    }

    fn build(&self, cx: SinkContext) -> anyhow::Result<BoxFuture<anyhow::Result<()>>> {
        let labels = cx.component.metrics.labels.clone();
        let protocol = protocol::Kafka::new(self, &labels)?;
        let mut settings = Settings::new(
            &self.batch,
            // Two batches in flight could reach librdkafka in either order, and break the
            // order of a key; librdkafka pipelines the messages of one batch itself.
            Concurrency::Fixed(1),
            &self.retry,
            &self.healthcheck,
        );
        // Messages are not joined into one body.
        settings.separator_bytes = 0;
        Ok(Box::pin(delivery::run(protocol, settings, cx)))
    }
}
