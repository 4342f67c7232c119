//! One (tenant, content type), in three parts that run side by side and hand work on
//! through bounded channels:
//!
//! - the [lister](lister) walks listing windows and admits the blobs not processed yet;
//! - the [fetcher](fetcher) downloads them concurrently and emits their records in
//!   listing order;
//! - the [settler](settler) awaits each blob's acknowledgement, in order, and moves the
//!   cursor.
//!
//! This module holds what they share: the feed itself, its view of the cursor, and how
//! skipped blobs and configuration errors are reported.

mod fetcher;
mod lister;
mod settler;

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use siemflow_core::fanout::Output;
use siemflow_core::metrics::ComponentMetrics;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::Settings;
use super::client::TenantClient;
use super::cursor::{FeedCursor, SourceState};
use crate::microsoft::ApiError;
use crate::microsoft::api::O365_MANAGEMENT;

/// Descriptors admitted ahead of the fetcher: about a listing page.
const LISTED_AHEAD: usize = 100;

/// Emitted blobs whose acknowledgement has not resolved yet. Beyond this the fetcher
/// waits, which also bounds memory when a sink is slow to acknowledge.
const UNSETTLED_BLOBS: usize = 1024;

/// Why a blob is skipped for good (the `reason` label of `o365_blobs_skipped_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SkipReason {
    /// Its contentExpiration passed (AF20051, or seen before fetching): data lost.
    Expired,
    /// AF20050: the service says it does not exist.
    Missing,
    /// AF20052: the id in the URL is invalid (usually the wrong cloud host).
    InvalidId,
    /// Larger than `max_blob_bytes`.
    TooLarge,
    /// The descriptor's contentUri is not a URL.
    InvalidUri,
}

impl SkipReason {
    fn label(self) -> &'static str {
        match self {
            SkipReason::Expired => "expired",
            SkipReason::Missing => "missing",
            SkipReason::InvalidId => "invalid_id",
            SkipReason::TooLarge => "too_large",
            SkipReason::InvalidUri => "invalid_uri",
        }
    }
}

/// What every feed of a source shares.
#[derive(Clone)]
pub(crate) struct Shared {
    pub settings: Arc<Settings>,
    pub state: Arc<Mutex<SourceState>>,
    pub out: Output,
    pub shutdown: CancellationToken,
    pub component: ComponentMetrics,
}

/// One (tenant, content type) and everything it shares with its tenant and source.
pub(crate) struct Feed {
    client: Arc<TenantClient>,
    content_type: String,
    /// The tenant's fetch concurrency, shared by its content types.
    fetch_slots: Arc<Semaphore>,
    settings: Arc<Settings>,
    state: Arc<Mutex<SourceState>>,
    out: Output,
    shutdown: CancellationToken,
    component: ComponentMetrics,
    records_emitted: AtomicU64,
    lag: metrics::Gauge,
    blobs_fetched: metrics::Counter,
}

impl Feed {
    /// A feed of one content type of one tenant.
    pub(crate) fn new(
        client: Arc<TenantClient>,
        fetch_slots: Arc<Semaphore>,
        content_type: String,
        shared: Shared,
    ) -> Self {
        let labels = [
            ("tenant_id", client.tenant_id.as_str()),
            ("content_type", content_type.as_str()),
        ];
        let component = shared.component;
        Feed {
            lag: component.labels.gauge("source_lag_seconds", &labels),
            blobs_fetched: component
                .labels
                .counter("o365_blobs_fetched_total", &labels),
            records_emitted: AtomicU64::new(0),
            client,
            content_type,
            fetch_slots,
            settings: shared.settings,
            state: shared.state,
            out: shared.out,
            shutdown: shared.shutdown,
            component,
        }
    }

    /// Runs until shutdown, then until every emitted blob is settled.
    pub(crate) async fn run(self: Arc<Self>) {
        let (listed_tx, listed_rx) = mpsc::channel(LISTED_AHEAD);
        let (settle_tx, settle_rx) = mpsc::channel(UNSETTLED_BLOBS);
        tokio::join!(
            self.list_loop(listed_tx),
            self.fetch_loop(listed_rx, settle_tx),
            self.settle_loop(settle_rx),
        );
    }

    fn now(&self) -> DateTime<Utc> {
        (self.settings.tuning.clock)()
    }

    fn state(&self) -> MutexGuard<'_, SourceState> {
        // Each update is a few map operations; a panic cannot leave them half done in a
        // way that loses data (at worst a blob is fetched again).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn with_cursor<T>(&self, f: impl FnOnce(&mut FeedCursor<'_>) -> T) -> T {
        let mut state = self.state();
        f(&mut state.cursor_mut(&self.client.tenant_id, &self.content_type))
    }

    fn cursor(&self) -> Option<DateTime<Utc>> {
        self.state()
            .cursor(&self.client.tenant_id, &self.content_type)
    }

    fn update_lag(&self) {
        if let Some(cursor) = self.cursor() {
            let lag = (self.now() - cursor).num_milliseconds().max(0) as f64 / 1000.0;
            self.lag.set(lag);
        }
    }

    /// Sleeps unless stopping; false when stopping.
    async fn pause(&self, wait: Duration) -> bool {
        tokio::select! {
            biased;
            _ = self.shutdown.cancelled() => false,
            _ = tokio::time::sleep(wait) => true,
        }
    }

    fn skipped(&self, reason: SkipReason, content_id: &str, detail: &str) {
        self.component
            .labels
            .counter(
                "o365_blobs_skipped_total",
                &[
                    ("tenant_id", &self.client.tenant_id),
                    ("content_type", &self.content_type),
                    ("reason", reason.label()),
                ],
            )
            .increment(1);
        let (tenant_id, content_type) = (&self.client.tenant_id, &self.content_type);
        match reason {
            SkipReason::TooLarge => tracing::error!(
                %tenant_id, %content_type, content_id, detail,
                "BLOB SKIPPED: larger than max_blob_bytes; its records are NOT delivered (raise max_blob_bytes to read it)"
            ),
            SkipReason::InvalidId => tracing::error!(
                %tenant_id, %content_type, content_id, detail,
                "blob skipped: the API calls its id invalid (AF20052); check `cloud` and `api_url` match the tenant's cloud"
            ),
            SkipReason::Expired => tracing::warn!(
                %tenant_id, %content_type, content_id, detail,
                "blob skipped: past its 7-day retention, its records are lost"
            ),
            SkipReason::Missing | SkipReason::InvalidUri => tracing::warn!(
                %tenant_id, %content_type, content_id, detail,
                "blob skipped: it cannot be fetched"
            ),
        }
    }
}

/// What to do about a configuration error, in words, naming the permission the API needs.
fn config_advice(error: &ApiError) -> String {
    error.advice(O365_MANAGEMENT.permission)
}
