//! One (tenant, content type): a lister that walks listing windows and admits new blobs,
//! a fetcher that downloads them concurrently and emits their records in listing order,
//! and a settler that awaits each blob's acknowledgement, in order, and moves the cursor.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures_util::StreamExt as _;
use siemflow_core::event::attach_ack;
use siemflow_core::fanout::Output;
use siemflow_core::metrics::ComponentMetrics;
use siemflow_core::{AckReceipt, BatchStatus};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::Settings;
use super::client::{ApiError, Endpoint, TenantClient};
use super::cursor::{Admission, ContentCursor, SourceState};
use super::listing::{self, Descriptor};
use super::records::{BlobOrigin, DecodedBlob, decode_blob};

/// The service throttles a repeated /start within this interval (reference 1.2).
const START_REPEAT: TimeDelta = TimeDelta::minutes(15);

/// Descriptors admitted ahead of the fetcher: about a listing page.
const LISTED_AHEAD: usize = 100;

/// Emitted blobs whose acknowledgement the settler has not reached yet. Beyond this the
/// fetcher waits, which also bounds memory when a sink is slow to acknowledge.
const UNSETTLED_BLOBS: usize = 1024;

/// Listing pages are JSON arrays of small descriptors; anything this big is broken.
const MAX_LISTING_BYTES: u64 = 64 << 20;

/// Decoding a blob larger than this moves to a blocking thread, off the async workers.
const DECODE_INLINE_BYTES: usize = 1 << 20;

/// A window re-listed this often after AF20031 (stale nextPage) fails the pass.
const MAX_RELISTS: usize = 3;

/// No window has this many pages; a server that keeps handing out NextPageUri loops.
const MAX_PAGES: usize = 100_000;

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

/// A fetch's outcome, handed to the emitter in listing order.
enum Fetched {
    Blob {
        descriptor: Descriptor,
        decoded: DecodedBlob,
        bytes: usize,
    },
    Skipped {
        descriptor: Descriptor,
        reason: SkipReason,
        detail: String,
    },
    Failed {
        descriptor: Descriptor,
        error: ApiError,
    },
    /// Stopping: the blob stays pending, so the cursor stays below it.
    Stopped,
}

/// How a blob is settled.
enum Settlement {
    /// Emitted: delivered or failed, as its receipt says.
    Receipt(AckReceipt),
    /// Nothing to deliver, now or ever (empty, skipped).
    Done,
    /// Not fetched: list and fetch it again later.
    Retry,
}

struct Settle {
    descriptor: Descriptor,
    settlement: Settlement,
}

/// What the lister does after a failed pass.
enum PassError {
    /// AF20022/AF20023: (re)start the subscription, then list again.
    NoSubscription(ApiError),
    /// Anything else.
    Api(ApiError),
}

impl From<ApiError> for PassError {
    fn from(error: ApiError) -> Self {
        match error.code() {
            Some("AF20022" | "AF20023") => PassError::NoSubscription(error),
            _ => PassError::Api(error),
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

    fn with_cursor<T>(&self, f: impl FnOnce(&mut ContentCursor) -> T) -> T {
        let mut state = self.state();
        f(state.cursor_mut(&self.client.tenant_id, &self.content_type))
    }

    fn cursor(&self) -> Option<DateTime<Utc>> {
        self.state()
            .cursor(&self.client.tenant_id, &self.content_type)
            .and_then(ContentCursor::cursor)
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

    async fn list_loop(&self, listed: mpsc::Sender<Descriptor>) {
        let mut starting_up = true;
        let mut need_start = true;
        while !self.shutdown.is_cancelled() {
            if need_start {
                match self.ensure_subscription(starting_up).await {
                    Ok(()) => need_start = false,
                    Err(ApiError::Cancelled) => return,
                    Err(error) => {
                        let wait = self.report(&error, "starting the subscription");
                        if !self.pause(wait).await {
                            return;
                        }
                        continue;
                    }
                }
                starting_up = false;
            }
            let wait = match self.pass(&listed).await {
                Ok(()) => self.settings.poll_interval,
                Err(PassError::Api(ApiError::Cancelled)) => return,
                Err(PassError::NoSubscription(error)) => {
                    tracing::warn!(
                        tenant_id = %self.client.tenant_id,
                        content_type = %self.content_type,
                        %error,
                        "the subscription is not enabled; starting it"
                    );
                    need_start = true;
                    continue;
                }
                Err(PassError::Api(error)) => self.report(&error, "listing content"),
            };
            if !self.pause(wait).await {
                return;
            }
        }
    }

    /// Logs and counts a failure; returns how long to wait before trying again.
    fn report(&self, error: &ApiError, doing: &str) -> Duration {
        let labels = &self.component.labels;
        if error.is_config() {
            let pause = self.settings.tuning.config_error_pause;
            tracing::error!(
                tenant_id = %self.client.tenant_id,
                content_type = %self.content_type,
                %error,
                retry_in_seconds = pause.as_secs(),
                "{doing} failed: {}",
                config_advice(error)
            );
            labels.error("config", "receiving");
            pause
        } else {
            tracing::warn!(
                tenant_id = %self.client.tenant_id,
                content_type = %self.content_type,
                %error,
                "{doing} failed; trying again at the next poll"
            );
            labels.error("request_failed", "receiving");
            self.settings.poll_interval
        }
    }

    /// Calls /start unless it was called less than 15 minutes ago. At start-up a recent
    /// call means "already started"; later (the listing said it is not enabled) it means
    /// waiting until the 15 minutes are over.
    async fn ensure_subscription(&self, starting_up: bool) -> Result<(), ApiError> {
        let last = self.with_cursor(|c| c.subscription_started_at());
        if let Some(last) = last
            && self.now() - last < START_REPEAT
        {
            if starting_up {
                tracing::debug!(
                    tenant_id = %self.client.tenant_id,
                    content_type = %self.content_type,
                    %last,
                    "subscription started less than 15 minutes ago; not starting it again"
                );
                return Ok(());
            }
            tracing::warn!(
                tenant_id = %self.client.tenant_id,
                content_type = %self.content_type,
                %last,
                "the API throttles /start within 15 minutes of the last one; waiting before starting the subscription again"
            );
            // Re-checked every poll so a clock that jumps (or a test's) is noticed.
            loop {
                let left = last + START_REPEAT - self.now();
                let Ok(left) = left.to_std() else { break };
                if left.is_zero() || !self.pause(left.min(self.settings.poll_interval)).await {
                    break;
                }
            }
            if self.shutdown.is_cancelled() {
                return Err(ApiError::Cancelled);
            }
        }
        let called_at = self.now();
        let started = self
            .client
            .start_subscription(&self.content_type, &self.shutdown)
            .await;
        // Only a /start the service accepted starts its 15 minutes (a throttled one did nothing).
        if started.is_ok() || started.as_ref().err().and_then(ApiError::code) == Some("AF20024") {
            self.with_cursor(|c| c.subscription_started(called_at));
        }
        match started {
            Ok(_) => {
                tracing::info!(
                    tenant_id = %self.client.tenant_id,
                    content_type = %self.content_type,
                    "subscription started (the first content can take up to 12 hours to appear)"
                );
                Ok(())
            }
            Err(error) if error.code() == Some("AF20024") => {
                tracing::debug!(
                    tenant_id = %self.client.tenant_id,
                    content_type = %self.content_type,
                    "subscription already enabled"
                );
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    /// One listing pass: from `overlap` before the cursor to now, window by window.
    async fn pass(&self, listed: &mpsc::Sender<Descriptor>) -> Result<(), PassError> {
        let now = self.now();
        let (cursor, lost) = {
            let mut state = self.state();
            let c = state.cursor_mut(&self.client.tenant_id, &self.content_type);
            (c.cursor(), c.prune(now))
        };
        for content_id in lost {
            self.skipped(
                SkipReason::Expired,
                &content_id,
                "expired before it could be delivered again",
            );
        }
        let settings = &self.settings;
        let (mut start, gap) =
            listing::pass_start(cursor, now, settings.start_from, settings.overlap);
        if let Some(gap) = gap {
            self.report_gap(gap);
        }
        let total = listing::window_count(start, now);
        let backfill = cursor.is_none() || total > 1;
        let mut done = 0u64;
        loop {
            let now = self.now();
            // A pass that took long (or a clock that jumped) can leave the 7 days behind.
            start = self.within_retention(start, now);
            let end = listing::window_end(start, now);
            if end <= start {
                break;
            }
            let blobs = self.list_window(start, end, listed).await?;
            self.with_cursor(|c| c.listed(end));
            self.update_lag();
            done += 1;
            let records = self.records_emitted.load(Ordering::Relaxed);
            if backfill {
                tracing::info!(
                    tenant_id = %self.client.tenant_id,
                    content_type = %self.content_type,
                    window = format!("{done}/{}", total.max(done)),
                    window_start = %start,
                    new_blobs = blobs,
                    records_emitted = records,
                    "backfill: window listed"
                );
            } else {
                tracing::debug!(
                    tenant_id = %self.client.tenant_id,
                    content_type = %self.content_type,
                    window_start = %start,
                    new_blobs = blobs,
                    records_emitted = records,
                    "window listed"
                );
            }
            if end >= listing::whole_seconds(now) {
                break;
            }
            start = end;
        }
        Ok(())
    }

    /// Lists one window to its last page, admitting each new blob; returns how many.
    async fn list_window(
        &self,
        mut start: DateTime<Utc>,
        mut end: DateTime<Utc>,
        listed: &mpsc::Sender<Descriptor>,
    ) -> Result<usize, ApiError> {
        let mut relists = 0;
        let mut clamped = false;
        let mut admitted = 0;
        'window: loop {
            let mut url = self.client.url(&listing::content_url(
                &self.client.feed_root,
                &self.content_type,
                start,
                end,
            ))?;
            for _ in 0..MAX_PAGES {
                let answer = match self
                    .client
                    .get(Endpoint::Content, url, MAX_LISTING_BYTES, &self.shutdown)
                    .await
                {
                    Ok(answer) => answer,
                    Err(error) if error.code() == Some("AF20031") && relists < MAX_RELISTS => {
                        relists += 1;
                        tracing::warn!(
                            tenant_id = %self.client.tenant_id,
                            content_type = %self.content_type,
                            %error,
                            "the API refused its own nextPage token; listing the window again"
                        );
                        continue 'window;
                    }
                    Err(error)
                        if matches!(error.code(), Some("AF20055" | "AF20030")) && !clamped =>
                    {
                        clamped = true;
                        let now = self.now();
                        start = self.within_retention(start, now);
                        end = listing::window_end(start, now).min(end.max(start));
                        tracing::warn!(
                            tenant_id = %self.client.tenant_id,
                            content_type = %self.content_type,
                            %error,
                            %start,
                            %end,
                            "the API refused the window; listing it again clamped to the last 7 days (check this machine's clock if this repeats)"
                        );
                        if end <= start {
                            return Ok(admitted);
                        }
                        continue 'window;
                    }
                    Err(error) => return Err(error),
                };
                let page =
                    listing::parse_page(&answer.body).map_err(|detail| ApiError::Malformed {
                        endpoint: "content",
                        detail,
                    })?;
                if page.malformed > 0 {
                    tracing::warn!(
                        tenant_id = %self.client.tenant_id,
                        content_type = %self.content_type,
                        entries = page.malformed,
                        "listing entries without contentId, contentUri or contentCreated were ignored"
                    );
                    self.component
                        .labels
                        .error("malformed_descriptor", "receiving");
                }
                for descriptor in page.descriptors {
                    if self.admit(descriptor, listed).await? {
                        admitted += 1;
                    }
                }
                match listing::next_page_uri(&answer.headers) {
                    Some(next) => url = self.client.url(&next)?,
                    None => return Ok(admitted),
                }
            }
            return Err(ApiError::Malformed {
                endpoint: "content",
                detail: format!("more than {MAX_PAGES} pages in one window"),
            });
        }
    }

    /// Hands a new blob to the fetcher; true when it was new.
    async fn admit(
        &self,
        descriptor: Descriptor,
        listed: &mpsc::Sender<Descriptor>,
    ) -> Result<bool, ApiError> {
        let now = self.now();
        match self.with_cursor(|c| c.admit(&descriptor, now)) {
            Admission::AlreadyProcessed | Admission::InFlight => Ok(false),
            Admission::Expired => {
                self.skipped(
                    SkipReason::Expired,
                    &descriptor.content_id,
                    "listed after its contentExpiration",
                );
                Ok(false)
            }
            Admission::Fetch => tokio::select! {
                biased;
                // Left pending: the cursor stays below it, so the next run lists it again.
                _ = self.shutdown.cancelled() => Err(ApiError::Cancelled),
                sent = listed.send(descriptor) => sent.map(|()| true).map_err(|_| ApiError::Cancelled),
            },
        }
    }

    /// `start`, moved up to the oldest time the API still lists (reporting the gap) if it fell behind.
    fn within_retention(&self, start: DateTime<Utc>, now: DateTime<Utc>) -> DateTime<Utc> {
        let oldest = listing::oldest_start(now);
        if start < oldest {
            self.report_gap(oldest - start);
        }
        start.max(oldest)
    }

    /// Content older than the API keeps was never listed: say so, loudly, and count it.
    fn report_gap(&self, gap: TimeDelta) {
        tracing::error!(
            tenant_id = %self.client.tenant_id,
            content_type = %self.content_type,
            gap_minutes = gap.num_minutes(),
            "listing fell behind the 7 days the API keeps content; jumping forward, content in the gap is lost"
        );
        self.component.labels.error("content_gap", "receiving");
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

    async fn fetch_loop(
        self: &Arc<Self>,
        listed: mpsc::Receiver<Descriptor>,
        settle: mpsc::Sender<Settle>,
    ) {
        let descriptors = futures_util::stream::unfold(listed, |mut rx| async move {
            rx.recv().await.map(|d| (d, rx))
        });
        // Spawned, so that fetches progress (and decode on other cores) while this loop
        // waits on a full output; `buffered` keeps listing order and bounds how many.
        let fetched = descriptors
            .map(|descriptor| tokio::spawn(Arc::clone(self).fetch(descriptor)))
            .buffered(self.settings.max_concurrent_fetches);
        let mut fetched = std::pin::pin!(fetched);
        loop {
            let joined = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => break,
                next = fetched.next() => match next {
                    Some(joined) => joined,
                    None => break,
                },
            };
            match joined {
                Ok(outcome) => self.forward(outcome, &settle).await,
                Err(error) => {
                    // Its blob stays pending: the cursor cannot pass it, a restart fetches it.
                    tracing::error!(
                        tenant_id = %self.client.tenant_id,
                        content_type = %self.content_type,
                        %error,
                        "a blob fetch task failed"
                    );
                    self.component.labels.error("fetch_panicked", "receiving");
                }
            }
        }
    }

    async fn fetch(self: Arc<Self>, descriptor: Descriptor) -> Fetched {
        let _slot = tokio::select! {
            biased;
            _ = self.shutdown.cancelled() => return Fetched::Stopped,
            slot = self.fetch_slots.acquire() => match slot {
                Ok(slot) => slot,
                Err(_) => return Fetched::Stopped,
            },
        };
        if descriptor.content_expiration <= self.now() {
            return Fetched::Skipped {
                descriptor,
                reason: SkipReason::Expired,
                detail: "its contentExpiration passed before it could be fetched".into(),
            };
        }
        let url = match self.client.url(&descriptor.content_uri) {
            Ok(url) => url,
            Err(error) => {
                return Fetched::Skipped {
                    descriptor,
                    reason: SkipReason::InvalidUri,
                    detail: error.to_string(),
                };
            }
        };
        let answer = self
            .client
            .get(
                Endpoint::Blob,
                url,
                self.settings.max_blob_bytes,
                &self.shutdown,
            )
            .await;
        let answer = match answer {
            Ok(answer) => answer,
            Err(ApiError::Cancelled) => return Fetched::Stopped,
            Err(error) => {
                let reason = match (&error, error.code()) {
                    (ApiError::TooLarge { .. }, _) => Some(SkipReason::TooLarge),
                    (_, Some("AF20050")) => Some(SkipReason::Missing),
                    (_, Some("AF20051")) => Some(SkipReason::Expired),
                    (_, Some("AF20052")) => Some(SkipReason::InvalidId),
                    _ => None,
                };
                return match reason {
                    Some(reason) => Fetched::Skipped {
                        descriptor,
                        reason,
                        detail: error.to_string(),
                    },
                    None => Fetched::Failed { descriptor, error },
                };
            }
        };
        let origin = BlobOrigin {
            tenant_id: self.client.tenant_id.clone(),
            content_type: self.content_type.clone(),
            content_id: descriptor.content_id.clone(),
            content_created: descriptor.content_created,
            fetched_at: self.now(),
        };
        let bytes = answer.body.len();
        let decoded = if bytes > DECODE_INLINE_BYTES {
            let body = answer.body;
            match tokio::task::spawn_blocking(move || decode_blob(&body, &origin)).await {
                Ok(decoded) => decoded,
                Err(error) => {
                    return Fetched::Failed {
                        descriptor,
                        error: ApiError::Malformed {
                            endpoint: "blob",
                            detail: format!("decoding failed: {error}"),
                        },
                    };
                }
            }
        } else {
            decode_blob(&answer.body, &origin)
        };
        Fetched::Blob {
            descriptor,
            decoded,
            bytes,
        }
    }

    /// Emits a fetched blob (waiting for room downstream) and queues its settlement.
    async fn forward(&self, outcome: Fetched, settle: &mpsc::Sender<Settle>) {
        let (descriptor, settlement) = match outcome {
            Fetched::Stopped => return,
            Fetched::Skipped {
                descriptor,
                reason,
                detail,
            } => {
                self.skipped(reason, &descriptor.content_id, &detail);
                (descriptor, Settlement::Done)
            }
            Fetched::Failed { descriptor, error } => {
                if error.is_config() {
                    tracing::error!(
                        tenant_id = %self.client.tenant_id,
                        content_type = %self.content_type,
                        content_id = %descriptor.content_id,
                        %error,
                        "fetching a blob failed: {}; it is fetched again at a later poll",
                        config_advice(&error)
                    );
                    self.component.labels.error("config", "receiving");
                } else {
                    tracing::warn!(
                        tenant_id = %self.client.tenant_id,
                        content_type = %self.content_type,
                        content_id = %descriptor.content_id,
                        %error,
                        "fetching a blob failed; it is fetched again at a later poll"
                    );
                    self.component.labels.error("fetch_failed", "receiving");
                }
                (descriptor, Settlement::Retry)
            }
            Fetched::Blob {
                descriptor,
                decoded,
                bytes,
            } => {
                self.blobs_fetched.increment(1);
                self.component.received_bytes.increment(bytes as u64);
                let DecodedBlob {
                    mut events,
                    not_objects,
                    not_an_array,
                } = decoded;
                self.count_malformed(&descriptor, not_objects, not_an_array);
                let count = events.len() as u64;
                self.component.received_events.increment(count);
                if events.is_empty() {
                    (descriptor, Settlement::Done)
                } else {
                    let receipt = attach_ack(&mut events);
                    // Dropping the batch on shutdown fails its receipt: fetched again next run.
                    tokio::select! {
                        biased;
                        _ = self.shutdown.cancelled() => {}
                        _ = self.out.send(events) => {
                            self.records_emitted.fetch_add(count, Ordering::Relaxed);
                        }
                    }
                    (descriptor, Settlement::Receipt(receipt))
                }
            }
        };
        let _ = settle
            .send(Settle {
                descriptor,
                settlement,
            })
            .await;
    }

    fn count_malformed(&self, d: &Descriptor, not_objects: usize, not_an_array: Option<String>) {
        if not_objects > 0 {
            tracing::warn!(
                tenant_id = %self.client.tenant_id,
                content_type = %self.content_type,
                content_id = %d.content_id,
                entries = not_objects,
                "blob entries that are not JSON objects were kept as `message` events"
            );
            self.component
                .labels
                .counter(
                    "component_errors_total",
                    &[
                        ("error_type", "record_not_an_object"),
                        ("stage", "receiving"),
                    ],
                )
                .increment(not_objects as u64);
        }
        if let Some(detail) = not_an_array {
            tracing::warn!(
                tenant_id = %self.client.tenant_id,
                content_type = %self.content_type,
                content_id = %d.content_id,
                detail,
                "a blob that is not a JSON array was kept whole as one `message` event"
            );
            self.component
                .labels
                .error("blob_not_an_array", "receiving");
        }
    }

    /// Awaits each blob's outcome in the order emitted and moves the cursor.
    async fn settle_loop(&self, mut settle: mpsc::Receiver<Settle>) {
        while let Some(Settle {
            descriptor,
            settlement,
        }) = settle.recv().await
        {
            let delivered = match settlement {
                Settlement::Receipt(receipt) => receipt.await == BatchStatus::Delivered,
                Settlement::Done => true,
                Settlement::Retry => false,
            };
            if delivered {
                self.with_cursor(|c| c.processed(&descriptor));
            } else {
                self.with_cursor(|c| c.failed(&descriptor));
                if !self.shutdown.is_cancelled() {
                    tracing::warn!(
                        tenant_id = %self.client.tenant_id,
                        content_type = %self.content_type,
                        content_id = %descriptor.content_id,
                        "a blob was not delivered; the cursor stays before it and it is fetched again at the next poll"
                    );
                }
                self.component.labels.error("delivery_failed", "sending");
            }
            self.update_lag();
        }
    }
}

/// What to do about a configuration error, in words.
fn config_advice(error: &ApiError) -> &'static str {
    match error.code() {
        Some("AF10001") => {
            "the app lacks the ActivityFeed.Read application permission of Office 365 Management APIs, or admin consent for it"
        }
        Some("AF20010" | "AF20011" | "AF20012" | "AF20013") => {
            "the tenant id is wrong or does not match the app's tenant: check tenant_id and that the app is consented in that tenant"
        }
        Some("AF20020") => "a content type name is not valid",
        Some("HTTP404") => "the API root is wrong: check api_url and cloud",
        Some("HTTP401") => {
            "the token was refused: check the app's permissions (ActivityFeed.Read), admin consent, and cloud"
        }
        _ if matches!(error, ApiError::Auth(_)) => {
            "fix the credentials (the message above says how)"
        }
        _ => "check the configuration and the app registration",
    }
}
