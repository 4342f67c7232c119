//! `kafka`: consumes topics of a Kafka cluster (or Event Hubs through its Kafka endpoint)
//! in a consumer group, with librdkafka.
//!
//! Each message becomes one event (its value decoded as JSON or text) with the message's
//! topic, partition, offset, key, timestamp and headers under `metadata.<metadata_key>`.
//! Events go out in batches of one partition; a partition's offset is stored — and
//! committed by librdkafka in the background — only over the prefix whose every batch was
//! delivered by every sink (`core::settlement`, one key per partition). A failed batch
//! rewinds its partition to it. Rebalancing is cooperative-sticky; a revoke stops emitting
//! the partitions, waits up to `drain_timeout` for their events in flight and commits what
//! was delivered before they go; acknowledgements arriving later no longer count (the next
//! owner re-reads what was not committed: duplicates, never loss, counted). Shutdown
//! drains the same way. When downstream is full the partitions are paused while the
//! consumer keeps polling.

mod config;
mod consume;

#[cfg(test)]
mod tests;

use std::sync::atomic::AtomicU64;

pub use config::{KafkaSourceConfig, OffsetReset};

use rdkafka::consumer::{BaseConsumer, Consumer};
use siemflow_core::kafka::OAuthTokens;
use siemflow_core::{BoxFuture, ConfigIssue, SourceConfig, SourceContext};

use crate::lines::LineDecoder;

impl KafkaSourceConfig {
    /// The consumer's callbacks: revokes go to the loop through `revokes`; with
    /// OAUTHBEARER, tokens come from Entra ID. Needs a Tokio runtime.
    fn consumer_context(
        &self,
        component: &str,
        revokes: tokio::sync::mpsc::UnboundedSender<consume::Revoking>,
    ) -> anyhow::Result<consume::Context> {
        Ok(consume::Context {
            component: component.to_string(),
            drain_timeout: self.drain_timeout(),
            revokes,
            generation: AtomicU64::new(0),
            oauth: self
                .oauth()
                .map(|(auth, scope)| OAuthTokens::new(auth, &scope))
                .transpose()?,
        })
    }
}

impl SourceConfig for KafkaSourceConfig {
    fn check(&self) -> Vec<ConfigIssue> {
        self.issues()
    }

    fn build(&self, cx: SourceContext) -> anyhow::Result<BoxFuture<anyhow::Result<()>>> {
        let drain_timeout = self.drain_timeout();
        let (revokes, revoked) = tokio::sync::mpsc::unbounded_channel();
        let context = self.consumer_context(&cx.component.id, revokes)?;
        let consumer: BaseConsumer<consume::Context> = self
            .client_config()
            .create_with_context(context)
            .map_err(|error| anyhow::anyhow!("cannot create the Kafka consumer: {error}"))?;
        let topics: Vec<&str> = self.topics.iter().map(|t| t.trim()).collect();
        consumer
            .subscribe(&topics)
            .map_err(|error| anyhow::anyhow!("cannot subscribe to {topics:?}: {error}"))?;
        let reading = consume::Reading {
            paused: cx
                .component
                .metrics
                .labels
                .gauge("kafka_consumer_paused", &[]),
            decoding: consume::Decoding {
                decoder: LineDecoder::new(self.decoding, &cx.component.metrics),
                metadata_key: self.metadata_key.trim().to_string(),
                unpack_records: self.unpack_records,
                batch_max_events: self.batch_max_events.max(1),
            },
            batch_max_events: self.batch_max_events.max(1),
        };
        let settings = consume::Settings { drain_timeout };
        Ok(Box::pin(consume::run(
            consumer, revoked, reading, settings, cx,
        )))
    }
}
