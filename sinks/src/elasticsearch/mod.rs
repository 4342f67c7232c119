//! `elasticsearch`: delivers events to Elasticsearch or OpenSearch with `_bulk`.
//!
//! NDJSON action and source lines, into indices or a data stream (`create` only), index
//! names from a template, a deterministic `_id` from configured fields so a re-delivery
//! lands as a harmless 409 on `create`, and the answer read item by item: 429/5xx items
//! retried, 409 on `create` counted as already delivered, other 4xx dead-lettered with
//! the error attached. Batching, retries, concurrency and dead-lettering are
//! `siemflow_core::delivery`'s.

mod config;
mod encode;
mod items;
mod protocol;
mod root;

#[cfg(test)]
mod tests;

pub use config::{Auth, Batch, BulkAction, ElasticsearchSinkConfig, MissingId, Mode};

use siemflow_core::delivery::{self, DEAD_LETTER, Settings};
use siemflow_core::{BoxFuture, ConfigIssue, SinkConfig, SinkContext};

impl SinkConfig for ElasticsearchSinkConfig {
    fn outputs(&self) -> Vec<String> {
        vec![DEAD_LETTER.to_string()]
    }

    fn check(&self) -> Vec<ConfigIssue> {
        self.issues()
    }

    fn build(&self, cx: SinkContext) -> anyhow::Result<BoxFuture<anyhow::Result<()>>> {
        let labels = cx.component.metrics.labels.clone();
        let protocol = protocol::Bulk::new(self, &labels)?;
        let settings = Settings::new(
            &(&self.batch).into(),
            self.concurrency,
            &self.retry,
            &self.healthcheck,
        );
        Ok(Box::pin(delivery::run(protocol, settings, cx)))
    }
}
