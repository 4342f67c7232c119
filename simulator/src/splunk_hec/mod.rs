//! A strict Splunk HTTP Event Collector: tokens and their indexes, the HEC reply codes,
//! partial failures with `invalid-event-number`, indexer acknowledgement with delayed and
//! lost acks, body limits and gzip (reference `siem-sinks.md` §1). Keeps ground truth of
//! every event it indexed.

mod acks;
mod config;
mod events;
mod light;
mod reply;
mod routes;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde::Serialize;

pub use config::{
    DEFAULT_HEC_TOKEN, DEFAULT_MAX_CONTENT_LENGTH, HecFaults, HecToken, SplunkHecConfig,
};
pub use events::IndexedEvent;

use crate::server::Serving;
use crate::state::lock;
use crate::wire::Dice;

/// Request and event counters of the HEC simulator.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HecStats {
    /// Every request, whatever the endpoint and answer.
    pub requests: u64,
    /// Requests per endpoint: `event` (also `/services/collector`), `raw`, `ack`, `health`.
    pub by_endpoint: BTreeMap<String, u64>,
    /// Requests per HTTP status of the answer.
    pub by_status: BTreeMap<u16, u64>,
    /// Requests per HEC code of the answer (413s and ack answers carry none).
    pub by_code: BTreeMap<u32, u64>,
    /// Events indexed (the ground truth's length when `keep_events` is on).
    pub events_indexed: u64,
    /// Events refused at an `invalid-event-number` (one per partially failed request).
    pub events_rejected: u64,
    /// Events answered with an ackId that was lost: never indexed.
    pub events_lost: u64,
    /// ackIds handed out.
    pub acks_issued: u64,
    /// ackIds reported true to an ack query.
    pub acks_acknowledged: u64,
    /// ackIds that will never turn true (the `lost_ack_rate` fault).
    pub acks_lost: u64,
    /// Ack queries answered.
    pub ack_queries: u64,
    /// Largest request body as sent (compressed size for gzip).
    pub largest_body: u64,
    /// Largest request body after decompression.
    pub largest_decoded_body: u64,
}

/// State shared by the handlers.
#[derive(Debug)]
pub(crate) struct Hec {
    cfg: SplunkHecConfig,
    dice: Dice,
    inner: Mutex<Inner>,
    /// Requests being handled (a dropped handler counts down too).
    in_flight: tokio::sync::watch::Sender<usize>,
}

/// Counts a request as in flight until dropped (answered, or abandoned by its client).
pub(crate) struct InFlight<'a>(&'a tokio::sync::watch::Sender<usize>);

impl Hec {
    /// Marks a request in flight for as long as the guard lives.
    pub(crate) fn enter(&self) -> InFlight<'_> {
        self.in_flight.send_modify(|n| *n += 1);
        InFlight(&self.in_flight)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

#[derive(Debug, Default)]
struct Inner {
    events: Vec<IndexedEvent>,
    stats: HecStats,
    channels: acks::Channels,
}

/// A running Splunk HEC simulator.
#[derive(Debug)]
pub struct SplunkHecSimulator {
    hec: Arc<Hec>,
    serving: Serving,
}

impl SplunkHecSimulator {
    /// Validates the configuration, binds `listen` (port 0 picks a free one) and serves.
    pub async fn start(
        config: SplunkHecConfig,
        listen: SocketAddr,
    ) -> anyhow::Result<SplunkHecSimulator> {
        config.validate()?;
        let (listener, address) = Serving::bind(listen, "splunk_hec").await?;
        let hec = Arc::new(Hec {
            dice: Dice::new(config.seed, 0x5e1c),
            cfg: config,
            inner: Mutex::default(),
            in_flight: tokio::sync::watch::Sender::new(0),
        });
        let serving = Serving::spawn(listener, address, routes::router(hec.clone()));
        tracing::info!(%address, "Splunk HEC simulator listening");
        Ok(SplunkHecSimulator { hec, serving })
    }

    /// The bound address.
    pub fn address(&self) -> SocketAddr {
        self.serving.address()
    }

    /// `http://127.0.0.1:PORT`, the HEC base URL (endpoints under `/services/collector`).
    pub fn url(&self) -> String {
        format!("http://{}", self.address())
    }

    /// The configuration in force.
    pub fn config(&self) -> &SplunkHecConfig {
        &self.hec.cfg
    }

    /// Every event indexed, in index order (empty when `keep_events` is off).
    pub fn indexed(&self) -> Vec<IndexedEvent> {
        lock(&self.hec.inner).events.clone()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> HecStats {
        lock(&self.hec.inner).stats.clone()
    }

    /// Returns once no request is being handled: every one answered, or dropped because its
    /// client closed the connection first (nothing of a dropped request is indexed).
    pub async fn wait_idle(&self) {
        let mut idle = self.hec.in_flight.subscribe();
        // The sender lives as long as `self`, so waiting cannot fail.
        let _ = idle.wait_for(|n| *n == 0).await;
    }

    /// Stops accepting, lets in-flight requests finish, and returns when the server is gone.
    pub async fn stop(self) {
        self.serving.stop("splunk_hec").await;
    }
}
