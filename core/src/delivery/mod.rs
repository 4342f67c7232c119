//! Shared delivery machinery of the HTTP sinks (`splunk_hec`, `sentinel`, `elasticsearch`).
//!
//! A sink implements [`Protocol`] — how one event is encoded, how one request is sent
//! and what the peer's answer means — and hands it to [`run`], which does the rest:
//! batching by events, bytes and age (per partition), a fixed or adaptive number of
//! requests in flight, retries under the one retry rule of [`crate::retry`] (exponential
//! backoff with jitter, or the peer's `Retry-After`, within `retry.max_duration`),
//! splitting on "too large", dead-lettering what can never be delivered, failing a batch
//! back to its source after `retry.max_duration`, health, and metrics.
//!
//! Acknowledgements: an event's ack resolves `Delivered` only once the peer confirmed it
//! (for Splunk with indexer acknowledgements: once the ack said so), `Failed` when its
//! batch ran out of retry time; a dead-lettered event keeps its ack and goes on to the
//! `dead_letter` output, whose consumer settles it.

mod adaptive;
mod batcher;
pub mod config;
mod dead_letter;
mod failure;
mod http;
mod metrics;
mod run;
mod slots;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::time::Duration;

pub use batcher::{Batcher, Cut, Item};
pub use config::{
    AdaptiveConcurrency, BatchConfig, Compression, Concurrency, HealthcheckConfig, RequestConfig,
    RetryConfig,
};
pub use dead_letter::{DEAD_LETTER, DeadLetter};
pub use failure::{Failure, FailureClass, Rejection};
pub use http::{HttpClient, HttpResponse, MAX_RESPONSE_BYTES};
pub use metrics::{DeadLetterMetrics, DeliveryMetrics};
pub use run::run;

use crate::BoxFuture;
pub use crate::dropped::DroppedResponse;
use crate::event::Event;

/// How a sink speaks to its peer; [`run`] drives it.
pub trait Protocol: Send + Sync + 'static {
    /// Appends one event's wire form to `out` and returns the partition it belongs to
    /// (requests never mix partitions; return `String::new()` when there is only one).
    /// An event that can never be encoded is rejected and dead-lettered.
    fn encode(&self, event: &Event, out: &mut Vec<u8>) -> Result<String, Rejection>;

    /// Sends one request and says what the peer did with it.
    fn send(&self, request: Request<'_>) -> impl Future<Output = Outcome> + Send;

    /// Probes the peer once at start (`/ready` shows a failure; delivery starts anyway).
    fn healthcheck(&self) -> impl Future<Output = Result<(), Failure>> + Send;
}

/// The events of one request.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Their partition, as [`Protocol::encode`] returned it.
    pub partition: &'a str,
    /// The events and their encoded forms, in order.
    pub items: &'a [Item],
}

impl Request<'_> {
    /// How many events the request holds.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when it holds none (never the case for a request [`run`] sends).
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The encoded events, in order.
    pub fn payloads(&self) -> impl Iterator<Item = &[u8]> {
        self.items.iter().map(|item| item.encoded.as_slice())
    }

    /// The request body: `prefix`, the encoded events separated by `separator`, `suffix`
    /// (`b"["`, `b","`, `b"]"` for a JSON array; `b""`, `b"\n"`, `b"\n"` for NDJSON).
    pub fn body(&self, prefix: &[u8], separator: &[u8], suffix: &[u8]) -> Vec<u8> {
        let size = prefix.len()
            + suffix.len()
            + self
                .items
                .iter()
                .map(|i| i.encoded.len() + separator.len())
                .sum::<usize>();
        let mut body = Vec::with_capacity(size);
        body.extend_from_slice(prefix);
        for (i, payload) in self.payloads().enumerate() {
            if i > 0 {
                body.extend_from_slice(separator);
            }
            body.extend_from_slice(payload);
        }
        body.extend_from_slice(suffix);
        body
    }
}

/// What the peer did with a request.
pub enum Outcome {
    /// It took every event.
    Delivered,
    /// The request as a whole failed.
    Failed(Failure),
    /// One result per event, in request order (Elasticsearch items, a Splunk partial
    /// failure). A wrong count is treated as a retryable failure of the whole request.
    PerEvent(Vec<EventOutcome>),
    /// It took the request but confirms delivery later (Splunk indexer acknowledgement):
    /// the request's concurrency slot is freed while the confirmation is awaited; an
    /// `Err` sends the request again (it counts against `retry.max_duration`).
    Accepted(Confirmation),
}

/// A later confirmation that an accepted request was delivered.
pub type Confirmation = BoxFuture<Result<(), Failure>>;

/// What the peer did with one event of a request.
#[derive(Debug, Clone, PartialEq)]
pub enum EventOutcome {
    /// Taken (or already there, like an Elasticsearch 409 on `create`).
    Delivered,
    /// Not looked at (the peer stopped before it): send again at once.
    Resend,
    /// Failed transiently (or a configuration problem): send again after a backoff.
    Retry(Failure),
    /// Never deliverable: dead-lettered.
    Rejected(Rejection),
}

/// The delivery options of one sink, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Batch limits.
    pub batch: BatchConfig,
    /// Requests in flight at most: fixed, or found by the adaptive controller.
    pub concurrency: Concurrency,
    /// Backoff and the retry time limit.
    pub retry: RetryConfig,
    /// Probe the peer at start and then this often; `None`: never.
    pub healthcheck: Option<Duration>,
    /// Bytes the body adds per event (a separator; 1 for NDJSON or a JSON array).
    pub separator_bytes: u64,
    /// Bytes the body adds once per request (2 for a JSON array's brackets).
    pub framing_bytes: u64,
}

impl Settings {
    /// Settings from the sink's options, one separator byte per event, no framing.
    pub fn new(
        batch: &BatchConfig,
        concurrency: Concurrency,
        retry: &RetryConfig,
        healthcheck: &HealthcheckConfig,
    ) -> Self {
        Settings {
            batch: batch.clone(),
            concurrency: match concurrency {
                Concurrency::Fixed(n) => Concurrency::Fixed(n.max(1)),
                adaptive => adaptive,
            },
            retry: retry.clone(),
            healthcheck: healthcheck.enabled.then_some(healthcheck.interval),
            separator_bytes: 1,
            framing_bytes: 0,
        }
    }
}
