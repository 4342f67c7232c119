//! Indexer acknowledgements: pending ackIds of this sink's channel, polled at
//! `/services/collector/ack` (reference §1.6).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::Gauge;
use serde::Deserialize;
use siemflow_core::delivery::{Failure, HttpClient};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tokio_util::sync::CancellationToken;

/// The acks one sink waits for.
pub(super) struct AckTracker {
    pending: Mutex<HashMap<u64, oneshot::Sender<()>>>,
    slots: Arc<Semaphore>,
    timeout: Duration,
    gauge: Gauge,
}

/// Polls the pending acks until stopped.
pub(super) struct AckPoller {
    pub tracker: Arc<AckTracker>,
    pub http: HttpClient,
    pub url: String,
    pub authorization: String,
    pub channel: String,
    pub interval: Duration,
    pub component: String,
}

#[derive(Deserialize)]
struct AckAnswer {
    acks: HashMap<String, bool>,
}

impl AckTracker {
    pub fn new(max_pending: usize, timeout: Duration, gauge: Gauge) -> Self {
        AckTracker {
            pending: Mutex::new(HashMap::new()),
            slots: Arc::new(Semaphore::new(max_pending.max(1))),
            timeout,
            gauge,
        }
    }

    /// Waits for room under `max_pending_acks`; the permit travels with the request.
    pub async fn slot(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.slots).acquire_owned().await.ok()
    }

    /// Resolves once Splunk reports `ack_id` true; a [`Failure::Retry`] after
    /// `ack_timeout`, so the request is sent again.
    pub fn wait(
        self: &Arc<Self>,
        ack_id: u64,
        slot: Option<OwnedSemaphorePermit>,
    ) -> impl Future<Output = Result<(), Failure>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut pending) = self.pending.lock() {
            pending.insert(ack_id, tx);
            self.gauge.set(pending.len() as f64);
        }
        let tracker = Arc::clone(self);
        async move {
            let _slot = slot;
            match tokio::time::timeout(tracker.timeout, rx).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(_)) => Err(Failure::retry("the ack poller stopped")),
                Err(_) => {
                    tracker.forget(ack_id);
                    Err(Failure::retry(format!(
                        "Splunk did not acknowledge ackId {ack_id} within acknowledgements.ack_timeout ({:?}); sending the request again",
                        tracker.timeout
                    )))
                }
            }
        }
    }

    fn forget(&self, ack_id: u64) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.remove(&ack_id);
            self.gauge.set(pending.len() as f64);
        }
    }

    fn ids(&self) -> Vec<u64> {
        match self.pending.lock() {
            Ok(pending) => pending.keys().copied().collect(),
            Err(_) => Vec::new(),
        }
    }

    fn acknowledged(&self, ids: impl Iterator<Item = u64>) {
        if let Ok(mut pending) = self.pending.lock() {
            for id in ids {
                if let Some(tx) = pending.remove(&id) {
                    let _ = tx.send(());
                }
            }
            self.gauge.set(pending.len() as f64);
        }
    }
}

/// `url` with query parameters appended, encoded.
pub(super) fn with_query(url: &str, pairs: &[(&str, &str)]) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            parsed.query_pairs_mut().extend_pairs(pairs);
            parsed.to_string()
        }
        // The endpoint was checked at validation; a broken one fails at send, named.
        Err(_) => url.to_string(),
    }
}

impl AckPoller {
    /// Asks for every pending ackId each `interval` until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => return,
            }
            let ids = self.tracker.ids();
            if ids.is_empty() {
                continue;
            }
            if let Err(failure) = self.poll(&ids).await {
                tracing::warn!(component = %self.component, pending = ids.len(), reason = %failure, "indexer acknowledgement query failed; asking again next interval");
            }
        }
    }

    async fn poll(&self, ids: &[u64]) -> Result<(), Failure> {
        let body = serde_json::json!({ "acks": ids }).to_string();
        let request = self
            .http
            .inner()
            .post(with_query(&self.url, &[("channel", self.channel.as_str())]))
            .header("authorization", &self.authorization)
            .header("x-splunk-request-channel", &self.channel)
            .header("content-type", "application/json")
            .body(body);
        let response = self.http.send(request).await?;
        if let Some(failure) =
            Failure::from_status(response.status, &response.headers, &response.body)
        {
            return Err(failure);
        }
        let answer: AckAnswer = serde_json::from_slice(&response.body)
            .map_err(|e| Failure::retry(format!("the ack answer is not HEC JSON: {e}")))?;
        self.tracker.acknowledged(
            answer
                .acks
                .into_iter()
                .filter(|(_, done)| *done)
                .filter_map(|(id, _)| id.parse().ok()),
        );
        Ok(())
    }
}
