//! The poll loop of a Graph collection read by a record time field (security alerts and
//! incidents, the Entra ID logs), written once for every source that reads one.
//!
//! Each poll covers a window `[cursor − overlap, until)` and pages through **all of it**
//! before the cursor may move to `until`: sign-ins come newest-first, so a cursor moved
//! page by page would skip what the later pages hold. Every page is one batch with one
//! end-to-end acknowledgement, registered with core's ordered settlement; the cursor store
//! (high-water mark + the (id, version) pairs already emitted inside the overlap) moves
//! only over the settled prefix and is written crash-safely.
//!
//! - A record version already emitted (a repeated record across pages, the overlap, a
//!   restarted walk) is dropped by the cursor's pair set, so each version is emitted once.
//! - An expired skip token restarts the walk of the same window (a few times).
//! - A failed batch rewinds: the walk in progress stops, the failed pairs are forgotten,
//!   and the next poll reads again from the checkpoint.
//! - A configuration error (permission, licence, credentials) is logged with what to fix
//!   and retried slowly.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use reqwest::Url;
use reqwest::header::HeaderMap;
use serde_json::value::RawValue;
use siemflow_core::auth::Cloud;
use siemflow_core::event::{Event, attach_ack};
use siemflow_core::fanout::Output;
use siemflow_core::metrics::ComponentMetrics;
use siemflow_core::retry::RetryRule;
use siemflow_core::settlement::{AfterFailure, OrderedSettlement, Settled};
use siemflow_core::{BatchStatus, ObjectMap, SourceContext, Value};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::client::{ApiClient, ApiRequest, RetryRules};
use super::cloud_apps::{CloudAppsPager, CloudAppsQuery, epoch_ms};
use super::cursor::{CursorStore, RecordVersion};
use super::paging::{ODataPager, PagesAhead, PagingError};

/// The metadata object every event carries (the same as `o365_management`'s).
pub const METADATA_FIELD: &str = "siemflow";

/// The cursor file in the component's state folder.
pub const STATE_FILE: &str = "cursors.json";

/// Walks of one window restarted after an expired skip token before the poll gives up
/// (and the next poll tries again).
const MAX_WALK_RESTARTS: u32 = 5;

/// The narrowest sub-window an unsorted collection is split into; one that still needs
/// more than a page is read page by page.
const MIN_SPLIT: TimeDelta = TimeDelta::seconds(1);

/// Emitted batches of one collection not yet acknowledged; past this the walk waits, which
/// bounds memory when a sink is slow.
const MAX_UNSETTLED_PAGES: usize = 64;

/// Records of a page built into events and emitted at a time: a page of 2,000 alerts is
/// kept as its records' JSON text, and only this many are built at once (a built record
/// takes several times its text's memory).
const EMIT_CHUNK: usize = 250;

/// The widest span of record times one walk reads: every (id, version) a walk emits is held
/// (and saved) until the walk ends, so a backfill goes a day at a time — a week of a million
/// sign-ins or 200,000 alerts would otherwise hold them all, written to the cursor file every
/// second. Each extra walk costs at most a page or two (a partial page, the overlap).
const MAX_WALK_SPAN: TimeDelta = TimeDelta::days(1);

/// Poll intervals a caught-up collection lets pass while its budget is spent by others
/// (backfills of the collections sharing it): each of its polls would take one of their
/// requests. Bounded, so that its own new records wait at most this many intervals more.
const MAX_YIELDED_POLLS: u32 = 4;

/// Where a newest-first walk from `from` ends when the collection is readable up to
/// `readable`, and whether more remains after it (read it without waiting).
fn newest_first_window(from: DateTime<Utc>, readable: DateTime<Utc>) -> (DateTime<Utc>, bool) {
    let until = readable.min(from + MAX_WALK_SPAN);
    (until, until < readable)
}

/// Whether a sorted walk from `from` that has read up to `reach` ends here (the next walk
/// goes on from the mark at once).
fn sorted_walk_spent(from: DateTime<Utc>, reach: DateTime<Utc>) -> bool {
    reach - from >= MAX_WALK_SPAN
}

/// Where a page of a sorted walk that began at `until` (the clock then) lets the mark
/// reach, given its latest record time and what the walk reached before, and whether the
/// walk has read its window (`now`: the clock as the page came).
///
/// A record that becomes visible after the walk passed its time is at most `overlap`
/// older than the instant it became visible, so the next walk, starting `overlap` before
/// the mark, reads it — only if the mark is not past the walk's start. A walk that read on
/// into records written while it ran (a long walk near now: throttling, a busy tenant)
/// would move the mark as far past them as it read, and a record it passed just before it
/// became visible would fall before the next walk's start, lost. So the mark stops at
/// `until`, and a page that reaches it ends the walk: what comes after is the next
/// walk's. A page whose records are later than `now` says that the service's clock is
/// ahead of ours: the walk reads on then (the mark still stops at `until`), rather than
/// wait for our clock to catch up.
fn sorted_reach(
    latest: Option<DateTime<Utc>>,
    reached: Option<DateTime<Utc>>,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> (Option<DateTime<Utc>>, bool) {
    let reach = latest.map(|latest| latest.min(until)).max(reached);
    let read = latest.is_some_and(|latest| latest >= until && latest <= now);
    (reach, read)
}

/// Where "now" comes from: the system clock, or a test's simulated one.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// Timings that are not options: fixed in production, shortened by tests.
#[derive(Clone)]
pub struct PollTuning {
    /// "Now" for windows and lag.
    pub clock: Clock,
    /// The client's retries (transient failures; throttling).
    pub retries: RetryRules,
    /// Wait after a configuration error: slow, never a hot loop.
    pub config_error_pause: Duration,
    /// Most frequent cursor file write.
    pub save_interval: Duration,
    /// How far behind now a log window ends, so that a clock ahead of the service's does
    /// not mark seconds it has not written yet as covered.
    pub log_lag: TimeDelta,
}

impl Default for PollTuning {
    fn default() -> Self {
        PollTuning {
            clock: Arc::new(Utc::now),
            retries: RetryRules::default(),
            config_error_pause: Duration::from_secs(300),
            save_interval: Duration::from_secs(1),
            log_lag: TimeDelta::minutes(1),
        }
    }
}

impl std::fmt::Debug for PollTuning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PollTuning")
            .field("retries", &self.retries)
            .field("config_error_pause", &self.config_error_pause)
            .finish_non_exhaustive()
    }
}

impl PollTuning {
    /// A tuning whose retries follow `transient` and `throttle`.
    pub fn with_retries(mut self, transient: RetryRule, throttle: RetryRule) -> Self {
        self.retries = RetryRules {
            transient,
            throttle,
        };
        self
    }
}

/// In what order a collection returns its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Sorted by the time field, oldest first (`$orderby=… asc`): open-ended windows.
    Ascending,
    /// Newest first, unsortable (sign-ins): windows closed at `now − lag`.
    NewestFirst,
    /// In no documented order and not sortable (Defender for Endpoint's alerts): windows
    /// closed at `now − lag`, each read as sub-windows small enough to come in one page,
    /// because `$skip` pages of a changing, unsorted collection may skip a record that
    /// moved between two pages.
    Unsorted,
}

/// How a collection is asked for its records.
#[derive(Debug, Clone, PartialEq)]
pub enum Wire {
    /// OData: `$filter`, `$orderby`, `$top` and nextLinks (Graph, Defender for Endpoint);
    /// records identified by `id`, times in ISO 8601.
    OData,
    /// Defender for Cloud Apps: POST bodies with epoch-millisecond filters, keyset paging
    /// ([`super::cloud_apps`]); records identified by `_id`, sorted ascending only.
    CloudApps(CloudAppsQuery),
}

/// One collection of one tenant, as the poller reads it.
#[derive(Debug, Clone)]
pub struct Collection {
    /// Its name in the metadata, logs, metrics and cursor key (`alerts`, `sign_ins`).
    pub resource: String,
    /// The operation's name in request metrics (`alerts_v2`, `signIns`).
    pub endpoint: &'static str,
    /// The collection's URL with its fixed query parameters (`$expand=evidence`), if any.
    pub url: Url,
    /// The record time field the cursor follows (`lastUpdateDateTime`, `createdDateTime`).
    pub time_field: &'static str,
    /// True for mutable records: each `time_field` value is a new version to emit. False:
    /// a record is emitted once by `id`.
    pub versioned: bool,
    /// A filter clause always added (`signInEventTypes/any(t: t eq 'servicePrincipal')`).
    pub fixed_filter: Option<String>,
    /// The order of its records.
    pub order: Order,
    /// `$top`: the page size asked for.
    pub top: u32,
    /// Headers sent with every request (Graph's `Prefer`).
    pub headers: HeaderMap,
    /// How it is asked.
    pub wire: Wire,
}

/// An OData DateTimeOffset literal (no quotes; at most 7 fractional digits).
fn literal(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

impl Collection {
    /// The first page of the window `[from, until)` (`until` bounds newest-first windows
    /// only; a sorted query reads up to now).
    pub fn query(&self, from: DateTime<Utc>, until: DateTime<Utc>) -> Url {
        let field = self.time_field;
        let mut filter = format!("{field} ge {}", literal(from));
        if self.order != Order::Ascending {
            filter.push_str(&format!(" and {field} lt {}", literal(until)));
        }
        if let Some(fixed) = &self.fixed_filter {
            filter.push_str(&format!(" and {fixed}"));
        }
        let mut url = self.url.clone();
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("$filter", &filter);
            if self.order == Order::Ascending {
                query.append_pair("$orderby", &format!("{field} asc"));
            }
            query.append_pair("$top", &self.top.to_string());
        }
        url
    }

    /// The cursor key of this collection in a tenant.
    fn key(&self, tenant_id: &str) -> String {
        format!("{tenant_id}/{}", self.resource)
    }

    /// The record's version pair and time; `None` when it has no usable `id` or time.
    fn identify(&self, record: &ObjectMap) -> Option<(RecordVersion, DateTime<Utc>)> {
        if let Wire::CloudApps(query) = &self.wire {
            let (id, version) = query.identity(record)?;
            let at = epoch_ms(record.get(query.record_field)?)?;
            return Some((RecordVersion::new(id, version), at));
        }
        let id = text(record.get("id"))?;
        let written = text(record.get(self.time_field))?;
        let at = DateTime::parse_from_rfc3339(&written)
            .ok()?
            .with_timezone(&Utc);
        let version = if self.versioned { &*written } else { "" };
        Some((RecordVersion::new(id, version), at))
    }
}

fn text(value: Option<&Value>) -> Option<std::borrow::Cow<'_, str>> {
    value?.to_str_lossy()
}

/// The options every collection of a source reads.
#[derive(Debug, Clone)]
pub struct PollSettings {
    /// How far back a collection without a cursor starts.
    pub start_from: TimeDelta,
    /// The wait between polls once a window is read.
    pub poll_interval: Duration,
    /// The permission named when a request is refused for the lack of it.
    pub permission: &'static str,
    /// The timings.
    pub tuning: PollTuning,
}

/// The cursors and their settlement, shared by a source's collections.
struct State {
    store: CursorStore,
    settlement: OrderedSettlement<String, DateTime<Utc>>,
}

/// What every collection of a source shares.
struct Shared {
    settings: PollSettings,
    state: Mutex<State>,
    out: Output,
    shutdown: CancellationToken,
    component: ComponentMetrics,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // Each update is a few map operations; a panic cannot leave them half done in a
        // way that loses data (at worst a page is read again).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now(&self) -> DateTime<Utc> {
        (self.settings.tuning.clock)()
    }

    /// Sleeps unless stopping; false when stopping.
    async fn pause(&self, wait: Duration) -> bool {
        tokio::select! {
            biased;
            _ = self.shutdown.cancelled() => false,
            _ = tokio::time::sleep(wait) => true,
        }
    }
}

/// One collection of one tenant and the client that reads it.
pub struct Feed {
    /// The tenant's client (token, budget, retries).
    pub client: Arc<ApiClient>,
    /// The collection.
    pub collection: Collection,
}

/// Runs every feed until shutdown, then until every emitted page is settled, and writes
/// the cursor file (`overlap` is how far behind its mark each window starts).
pub async fn run(
    settings: PollSettings,
    overlap: TimeDelta,
    feeds: Vec<Feed>,
    cx: SourceContext,
) -> anyhow::Result<()> {
    let path = cx.component.ensure_state_dir()?.join(STATE_FILE);
    let mut store = CursorStore::open(path, overlap)?;
    let mut settlement = OrderedSettlement::new(AfterFailure::Rewind);
    for feed in &feeds {
        let key = feed.collection.key(feed.client.tenant_id());
        if let Wire::CloudApps(CloudAppsQuery {
            overlap: Some(own), ..
        }) = &feed.collection.wire
        {
            store.set_overlap(&key, *own);
        }
        let mark = store.cursor(&key).and_then(|c| c.high_water());
        match mark {
            Some(mark) => tracing::info!(%key, %mark, "resuming from the saved cursor"),
            None => tracing::info!(%key, "no saved cursor: backfilling"),
        }
        settlement.track(key, mark);
    }
    let shared = Arc::new(Shared {
        settings,
        state: Mutex::new(State { store, settlement }),
        out: cx.out.clone(),
        shutdown: cx.shutdown.clone(),
        component: cx.component.metrics.clone(),
    });
    let mut tasks = JoinSet::new();
    for feed in feeds {
        tasks.spawn(poll_feed(Arc::clone(&shared), feed));
    }
    let writes = cx
        .component
        .metrics
        .labels
        .counter("checkpoint_writes_total", &[]);
    let mut save_tick = tokio::time::interval(shared.settings.tuning.save_interval);
    save_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failed = 0;
    // After a failed write the next tick writes even if nothing changed since.
    let mut write_pending = false;
    loop {
        tokio::select! {
            joined = tasks.join_next() => match joined {
                Some(Err(error)) => {
                    failed += 1;
                    tracing::error!(%error, "a collection's poll task failed");
                    shared.component.labels.error("feed_failed", "receiving");
                }
                Some(Ok(())) => {}
                // Feeds end only at shutdown, once their pages are settled.
                None => break,
            },
            _ = save_tick.tick() => {
                match save(&shared, write_pending).await {
                    Ok(wrote) => {
                        write_pending = false;
                        if wrote {
                            writes.increment(1);
                        }
                    }
                    Err(error) => {
                        write_pending = true;
                        tracing::error!(error = %format!("{error:#}"), "cannot save the cursors; will try again");
                        shared.component.labels.error("checkpoint_failed", "processing");
                    }
                }
            }
        }
    }
    save(&shared, true).await?;
    writes.increment(1);
    if failed > 0 {
        anyhow::bail!("{failed} poll task(s) failed; see the errors above");
    }
    Ok(())
}

/// Writes the cursor file off the async workers when something changed (or `always`);
/// true when it wrote.
async fn save(shared: &Shared, always: bool) -> anyhow::Result<bool> {
    let (path, snapshot) = {
        let mut state = shared.state();
        if !always && !state.store.is_dirty() {
            return Ok(false);
        }
        (state.store.path().to_path_buf(), state.store.snapshot())
    };
    tokio::task::spawn_blocking(move || super::cursor::write(&path, &snapshot))
        .await
        .map_err(|e| anyhow::anyhow!("the cursor writer failed: {e}"))??;
    Ok(true)
}

/// Why a poll ended before its window was read.
enum Stop {
    /// Shutting down.
    Shutdown,
    /// A batch failed: the next poll reads again from the checkpoint.
    Rewound,
    /// The request failed; `config` when no retry soon can help.
    Failed { config: bool },
}

/// One collection's metrics and cursor key.
struct Poll {
    shared: Arc<Shared>,
    feed: Feed,
    key: String,
    lag: metrics::Gauge,
    repeated: metrics::Counter,
    /// Acknowledgement waits of emitted pages.
    acks: JoinSet<()>,
    unsettled: Arc<Semaphore>,
    /// What the pages registered so far reach (the settlement's tail), so that each
    /// registration reaches at least as far as the one before.
    reached: Option<DateTime<Utc>>,
    /// The settlement epoch `reached` belongs to; a rewind starts it again.
    epoch: u64,
    /// The last window read ended before now (a backfill): the next one starts at once.
    behind: bool,
    /// The clock when the walk in progress began (before its first request).
    walk_started: DateTime<Utc>,
}

async fn poll_feed(shared: Arc<Shared>, feed: Feed) {
    let tenant_id = feed.client.tenant_id().to_string();
    let key = feed.collection.key(&tenant_id);
    let labels = [
        ("tenant_id", tenant_id.as_str()),
        ("resource", feed.collection.resource.as_str()),
    ];
    let prefix = feed.client.profile().metric_prefix;
    let mut poll = Poll {
        lag: shared.component.labels.gauge("source_lag_seconds", &labels),
        repeated: metrics::counter!(
            format!("{prefix}_repeated_records_total"),
            &shared.component.labels.with(&labels)
        ),
        shared,
        feed,
        key,
        acks: JoinSet::new(),
        unsettled: Arc::new(Semaphore::new(MAX_UNSETTLED_PAGES)),
        reached: None,
        epoch: u64::MAX,
        behind: false,
        walk_started: DateTime::<Utc>::MIN_UTC,
    };
    poll.run().await;
}

impl Poll {
    async fn run(&mut self) {
        loop {
            let polled = self.poll_once().await;
            let caught_up = polled.is_ok() && !self.behind;
            let wait = match polled {
                Ok(()) if self.behind => {
                    // The next window starts at this one's end once its pages are
                    // settled (the mark moves, its pairs are pruned): then at once.
                    while self.acks.join_next().await.is_some() {}
                    Duration::ZERO
                }
                Ok(()) | Err(Stop::Rewound) => self.shared.settings.poll_interval,
                Err(Stop::Failed { config: true }) => {
                    self.shared.settings.tuning.config_error_pause
                }
                Err(Stop::Failed { config: false }) => self.shared.settings.poll_interval,
                Err(Stop::Shutdown) => break,
            };
            // Settled acknowledgements need no keeping.
            while self.acks.try_join_next().is_some() {}
            if !self.shared.pause(wait).await || (caught_up && !self.yield_to_backfills().await) {
                break;
            }
        }
        // Emitted pages settle (delivered, or failed when dropped at shutdown) before the
        // last cursor write.
        while self.acks.join_next().await.is_some() {}
        self.apply_checkpoint(&mut self.shared.state());
    }

    /// Waits while the budget is spent by other collections, up to [`MAX_YIELDED_POLLS`]
    /// poll intervals; false when stopping.
    async fn yield_to_backfills(&self) -> bool {
        for _ in 0..MAX_YIELDED_POLLS {
            if !self.feed.client.budget().is_saturated() {
                break;
            }
            if !self.shared.pause(self.shared.settings.poll_interval).await {
                return false;
            }
        }
        true
    }

    /// Reads one window whole; the cursor may then move to its end.
    async fn poll_once(&mut self) -> Result<(), Stop> {
        let now = self.shared.now();
        self.walk_started = now;
        let order = self.feed.collection.order;
        let until = match order {
            Order::Ascending => now,
            Order::NewestFirst | Order::Unsorted => now - self.shared.settings.tuning.log_lag,
        };
        // The mark moves here, between walks only: pairs it forgets leave the window this
        // walk asks for, never one a walk in progress may still be served.
        let (from, epoch) = {
            let mut state = self.shared.state();
            self.apply_checkpoint(&mut state);
            let epoch = state.settlement.epoch(&self.key);
            let checkpoint = state.settlement.checkpoint(&self.key);
            if epoch != self.epoch || state.settlement.is_idle(&self.key) {
                self.epoch = epoch;
                self.reached = checkpoint;
            }
            let from = state
                .store
                .cursor(&self.key)
                .and_then(|c| c.query_from())
                .unwrap_or(now - self.shared.settings.start_from);
            (from, epoch)
        };
        self.behind = false;
        let until = if order == Order::NewestFirst {
            let (until, behind) = newest_first_window(from, until);
            self.behind = behind;
            until
        } else {
            until
        };
        // A window closed at `until` may be empty; a sorted query reads on from `from`
        // whatever `until` says: a mark ahead of this clock (the service's clock ahead of
        // ours by more than the overlap) must not stop it until ours catches up.
        if from >= until && order != Order::Ascending {
            return Ok(());
        }
        if order == Order::Unsorted {
            self.read_in_single_pages(from, until, epoch).await?;
            return self.close_window(until, epoch);
        }
        if let Wire::CloudApps(query) = &self.feed.collection.wire {
            self.read_cloud_apps(query.clone(), from, until, epoch)
                .await?;
            return self.close_window(until, epoch);
        }
        let collection = self.feed.collection.clone();
        let mut request = ApiRequest::get(collection.endpoint, collection.query(from, until));
        request.headers = collection.headers.clone();
        // One request ahead while a page is handed on, but none past where a sorted walk
        // ends (a day read, or the walk's start).
        let stop_ahead = (order == Order::Ascending).then(|| until.min(from + MAX_WALK_SPAN));
        let (client, cancel) = (Arc::clone(&self.feed.client), self.shared.shutdown.clone());
        let walk = |request| {
            PagesAhead::<Box<RawValue>>::new(request, Arc::clone(&client), cancel.clone())
                .stop_ahead_at(stop_ahead)
        };
        let mut pages = walk(request);
        let mut restarts = 0;
        // The oldest record time read by this walk (newest-first collections end there).
        let mut oldest: Option<DateTime<Utc>> = None;
        loop {
            let page = pages.next_page().await;
            let page = match page {
                Ok(Some(page)) => page,
                Ok(None) => break,
                Err(PagingError::SkipTokenExpired { detail }) if restarts < MAX_WALK_RESTARTS => {
                    restarts += 1;
                    tracing::info!(key = %self.key, restarts, "{detail}; reading the rest of the window again");
                    match (order, oldest) {
                        // Newest first: everything after the oldest record read is read
                        // (ties are asked again and dropped by id), so the walk goes on
                        // below it and always progresses.
                        (Order::NewestFirst, Some(oldest)) => {
                            restarts = 0;
                            let below = oldest + TimeDelta::microseconds(1);
                            let mut request =
                                ApiRequest::get(collection.endpoint, collection.query(from, below));
                            request.headers = collection.headers.clone();
                            pages = walk(request);
                        }
                        _ => pages.restart(),
                    }
                    continue;
                }
                Err(error) => return Err(self.failed(error)),
            };
            // The page goes out in chunks, each built from its text just before; only the
            // last one reaches the page's end (a chunk delivered before the rest of its page
            // must not move the mark over them).
            let mut latest = None;
            let mut texts = page.items.into_iter().peekable();
            let mut reach = self.reached.unwrap_or(from);
            let mut window_read = false;
            while texts.peek().is_some() {
                let chunk: Vec<Value> = texts
                    .by_ref()
                    .take(EMIT_CHUNK)
                    .map(|text| built(&text))
                    .collect();
                let records = Identified::of(&collection, chunk);
                if let Some(min) = records.earliest {
                    oldest = Some(oldest.map_or(min, |o| o.min(min)));
                }
                latest = latest.max(records.latest);
                if texts.peek().is_none() {
                    reach = match order {
                        // Sorted: everything up to the page's last time is read (the mark
                        // stops at the walk's start).
                        Order::Ascending => {
                            let (reach, read) =
                                sorted_reach(latest, self.reached, until, self.shared.now());
                            window_read = read;
                            reach
                        }
                        // Newest first: nothing is safe until the whole window is read.
                        Order::NewestFirst | Order::Unsorted => self.reached,
                    }
                    .unwrap_or(from);
                }
                self.reached = Some(reach);
                self.emit(records.records, epoch, reach).await?;
            }
            if order == Order::Ascending && sorted_walk_spent(from, reach) {
                self.behind = true;
                // Everything before the last time read is read (its ties come again).
                let mut state = self.shared.state();
                state
                    .store
                    .cursor_mut(&self.key)
                    .close(reach, self.walk_started);
                return Ok(());
            }
            if window_read {
                break;
            }
        }
        self.close_window(until, epoch)
    }

    /// The whole window up to `until` is read: the mark may move to its end once its pages
    /// settle.
    fn close_window(&mut self, until: DateTime<Utc>, epoch: u64) -> Result<(), Stop> {
        let end = self.reached.map_or(until, |r| r.max(until));
        let mut state = self.shared.state();
        if state.settlement.epoch(&self.key) != epoch {
            return Err(Stop::Rewound);
        }
        state.settlement.register_settled(self.key.clone(), end);
        state
            .store
            .cursor_mut(&self.key)
            .close(end, self.walk_started);
        self.reached = Some(end);
        Ok(())
    }

    /// Reads `[from, until)` of an unsorted collection as consecutive sub-windows, each
    /// answered whole by one page (one response is one consistent view). A sub-window
    /// whose answer does not fit one page (a nextLink, a full page, or too large a body)
    /// is halved and asked again; after a sub-window that fit, the next one may be twice
    /// as wide. Only a sub-window narrower than [`MIN_SPLIT`] is read page by page.
    async fn read_in_single_pages(
        &mut self,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
        epoch: u64,
    ) -> Result<(), Stop> {
        let collection = self.feed.collection.clone();
        let (mut start, mut end) = (from, until);
        while start < until {
            let mut request = ApiRequest::get(collection.endpoint, collection.query(start, end));
            request.headers = collection.headers.clone();
            let mut pager = ODataPager::new(request);
            let splittable = end - start >= MIN_SPLIT;
            let first = pager
                .next_page::<Value>(&self.feed.client, &self.shared.shutdown)
                .await;
            let mut page = match first {
                Ok(Some(page)) => page,
                Ok(None) => break,
                Err(PagingError::Api(super::ApiError::TooLarge { .. })) if splittable => {
                    end = start + (end - start) / 2;
                    continue;
                }
                Err(error) => return Err(self.failed(error)),
            };
            if !page.last && splittable {
                end = start + (end - start) / 2;
                continue;
            }
            if !page.last {
                tracing::warn!(
                    key = %self.key, %start, %end,
                    "more records in one second than a page holds: reading its pages with $skip, which may miss a record updated meanwhile (the overlap of the next poll reads it again)"
                );
            }
            loop {
                let last = page.last;
                let records = Identified::of(&collection, page.items);
                // Nothing of the sub-window is safe before its last page is read.
                let reach = if last {
                    self.reached.map_or(end, |r| r.max(end))
                } else {
                    self.reached.unwrap_or(start)
                };
                self.reached = Some(reach);
                self.emit(records.records, epoch, reach).await?;
                if last {
                    break;
                }
                page = match pager
                    .next_page::<Value>(&self.feed.client, &self.shared.shutdown)
                    .await
                {
                    Ok(Some(page)) => page,
                    Ok(None) => break,
                    Err(error) => return Err(self.failed(error)),
                };
            }
            let width = end - start;
            start = end;
            end = (start + width * 2).min(until);
        }
        Ok(())
    }

    /// Reads a Cloud Apps collection from `from` on, sorted ascending, up to the walk's
    /// start `until`: everything up to a page's latest time (not past `until`) is read once
    /// the page is.
    async fn read_cloud_apps(
        &mut self,
        query: CloudAppsQuery,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
        epoch: u64,
    ) -> Result<(), Stop> {
        let collection = self.feed.collection.clone();
        let mut pager =
            CloudAppsPager::new(query, collection.endpoint, collection.url.clone(), from);
        loop {
            let page = match pager
                .next_page(&self.feed.client, &self.shared.shutdown)
                .await
            {
                Ok(Some(page)) => page,
                Ok(None) => return Ok(()),
                Err(error) => return Err(self.failed(error)),
            };
            let records = Identified::of(&collection, page.items);
            let (reach, window_read) =
                sorted_reach(records.latest, self.reached, until, self.shared.now());
            let reach = reach.unwrap_or(from);
            self.reached = Some(reach);
            self.emit(records.records, epoch, reach).await?;
            if window_read {
                return Ok(());
            }
        }
    }

    fn failed(&self, error: PagingError) -> Stop {
        let tenant_id = self.feed.client.tenant_id();
        let resource = &self.feed.collection.resource;
        match error {
            PagingError::Api(super::ApiError::Cancelled) => Stop::Shutdown,
            PagingError::Api(error) if error.is_config() => {
                tracing::error!(
                    %tenant_id, %resource, %error,
                    "reading failed: {}; trying again in {}",
                    error.advice(self.shared.settings.permission),
                    humantime::format_duration(self.shared.settings.tuning.config_error_pause)
                );
                self.shared.component.labels.error("config", "receiving");
                Stop::Failed { config: true }
            }
            error => {
                tracing::warn!(%tenant_id, %resource, %error, "reading failed; the window is read again at the next poll");
                self.shared
                    .component
                    .labels
                    .error("request_failed", "receiving");
                Stop::Failed { config: false }
            }
        }
    }

    /// Emits a page's new record versions as one batch whose acknowledgement settles them.
    async fn emit(
        &mut self,
        items: Vec<IdentifiedRecord>,
        epoch: u64,
        reach: DateTime<Utc>,
    ) -> Result<(), Stop> {
        let Ok(permit) = Arc::clone(&self.unsettled).acquire_owned().await else {
            return Err(Stop::Shutdown);
        };
        let metadata = self.metadata();
        let mut events = Vec::with_capacity(items.len());
        let mut pairs = Vec::with_capacity(items.len());
        let mut repeated = 0;
        let ticket = {
            let mut state = self.shared.state();
            if state.settlement.epoch(&self.key) != epoch {
                return Err(Stop::Rewound);
            }
            let cursor = state.store.cursor_mut(&self.key);
            for (item, identity) in items {
                let mut record = match item {
                    Value::Object(record) => record,
                    other => {
                        // Kept, never dropped: the JSON text as `message`.
                        let text = serde_json::to_string(&other).unwrap_or_default();
                        let mut record = ObjectMap::new();
                        record.insert("message".into(), Value::from(text));
                        self.shared
                            .component
                            .labels
                            .error("record_not_an_object", "receiving");
                        record
                    }
                };
                match identity {
                    Some((pair, at)) => {
                        if !cursor.admit(pair, at) {
                            repeated += 1;
                            continue;
                        }
                        pairs.push(pair);
                    }
                    None => self
                        .shared
                        .component
                        .labels
                        .error("record_without_id_or_time", "receiving"),
                }
                record.insert(METADATA_FIELD.into(), metadata.clone());
                events.push(Event::from_object(record));
            }
            if events.is_empty() {
                state.settlement.register_settled(self.key.clone(), reach);
                None
            } else {
                Some(state.settlement.register(self.key.clone(), reach))
            }
        };
        self.repeated.increment(repeated);
        let Some(ticket) = ticket else {
            return Ok(());
        };
        self.shared
            .component
            .received_events
            .increment(events.len() as u64);
        let receipt = attach_ack(&mut events);
        // A batch dropped at shutdown fails its receipt: read again at the next start.
        tokio::select! {
            biased;
            _ = self.shared.shutdown.cancelled() => {}
            _ = self.shared.out.send(events) => {}
        }
        let shared = Arc::clone(&self.shared);
        let key = self.key.clone();
        let lag = self.lag.clone();
        self.acks.spawn(async move {
            let status = receipt.await;
            let mut state = shared.state();
            let outcome = state.settlement.settle(&ticket, status);
            let delivered = status == BatchStatus::Delivered;
            state.store.cursor_mut(&key).settle(&pairs, delivered);
            if let Some(mark) = state.settlement.checkpoint(&key) {
                // Saved as it moves, so a crash in a long walk (a backfill) resumes near
                // where delivery got to instead of at the walk's start; the pairs are
                // forgotten only between walks.
                state.store.cursor_mut(&key).raise(mark);
                lag.set((shared.now() - mark).num_milliseconds().max(0) as f64 / 1000.0);
            }
            if let Settled::Failed(_) = outcome
                && !shared.shutdown.is_cancelled()
            {
                tracing::warn!(%key, records = pairs.len(), "a page was not delivered; the cursor stays before it and the next poll reads it again");
                shared.component.labels.error("delivery_failed", "sending");
            }
            drop(permit);
        });
        Ok(())
    }

    fn apply_checkpoint(&self, state: &mut State) {
        if let Some(mark) = state.settlement.checkpoint(&self.key) {
            state.store.cursor_mut(&self.key).advance(mark);
            let lag = (self.shared.now() - mark).num_milliseconds().max(0) as f64 / 1000.0;
            self.lag.set(lag);
        }
    }

    fn metadata(&self) -> Value {
        let mut meta = ObjectMap::new();
        meta.insert(
            "tenant_id".into(),
            Value::from(self.feed.client.tenant_id()),
        );
        meta.insert(
            "resource".into(),
            Value::from(self.feed.collection.resource.as_str()),
        );
        meta.insert("fetched_at".into(), Value::Timestamp(self.shared.now()));
        Value::Object(meta)
    }
}

/// What a Graph source's options give its poll loop: how to reach Graph for each tenant,
/// and how to poll.
pub struct GraphSource<'a> {
    /// The API (quota, metric prefix).
    pub profile: super::ApiProfile,
    /// The API's root in a cloud (`Cloud::graph_url`, `Cloud::defender_url`).
    pub root: fn(Cloud) -> &'static str,
    /// The API's token audience in a cloud (`Cloud::graph_url`, `Cloud::defender_audience`).
    pub audience: fn(Cloud) -> &'static str,
    /// The tenants, each with its app registration.
    pub tenants: &'a [siemflow_core::auth::EntraConfig],
    /// The source's request budget per (tenant, host).
    pub windows: &'a [super::Window],
    /// Overrides the API root (a simulator, a proxy, a regional host); else each
    /// tenant's cloud's.
    pub api_url: Option<&'a str>,
    /// Longest one request may take.
    pub request_timeout: Duration,
    /// TLS for the login and Graph hosts.
    pub tls: &'a siemflow_core::http::TlsConfig,
    /// How far back a collection without a cursor starts.
    pub start_from: Duration,
    /// How far behind its cursor each query starts: the option's name and value.
    pub overlap: (&'static str, Duration),
    /// The wait between polls once a window is read.
    pub poll_interval: Duration,
    /// The permission named when a request is refused for the lack of it.
    pub permission: &'static str,
}

impl GraphSource<'_> {
    /// The source: one client per tenant (tokens for its cloud's audience of the API, even
    /// when `api_url` points elsewhere), the feeds `feeds` makes of each client and its API
    /// root, and the poll loop over them all.
    pub fn build(
        self,
        cx: SourceContext,
        tuning: PollTuning,
        mut feeds: impl FnMut(&Arc<ApiClient>, &Url) -> anyhow::Result<Vec<Feed>>,
    ) -> anyhow::Result<siemflow_core::BoxFuture<anyhow::Result<()>>> {
        use anyhow::Context as _;
        let http = siemflow_core::http::client(self.tls, self.request_timeout, None)?;
        let mut all = Vec::new();
        for (i, entra) in self.tenants.iter().enumerate() {
            let scope = siemflow_core::auth::default_scope((self.audience)(entra.cloud));
            let tokens = siemflow_core::auth::TokenProvider::new(entra, &scope, http.clone())
                .with_context(|| format!("tenants[{i}]"))?;
            let root = self
                .api_url
                .map(|url| url.trim().trim_end_matches('/'))
                .unwrap_or((self.root)(entra.cloud));
            let root = Url::parse(&format!("{root}/"))
                .with_context(|| format!("the API root of tenants[{i}] is not a URL"))?;
            let client = Arc::new(ApiClient::new(super::ClientSettings {
                profile: self.profile,
                tenant_id: &entra.tenant_id,
                api_root: &root,
                http: http.clone(),
                tokens,
                windows: self.windows,
                retries: tuning.retries,
                labels: &cx.component.metrics.labels,
            }));
            all.extend(feeds(&client, &root)?);
        }
        let (overlap_option, overlap) = self.overlap;
        let overlap = TimeDelta::from_std(overlap)
            .with_context(|| format!("{overlap_option} is out of range"))?;
        let settings = PollSettings {
            start_from: TimeDelta::from_std(self.start_from)
                .context("start_from is out of range")?,
            poll_interval: self.poll_interval,
            permission: self.permission,
            tuning,
        };
        Ok(Box::pin(run(settings, overlap, all, cx)))
    }
}

/// A record built from its JSON text (which the page parsed once: it reads back).
fn built(text: &RawValue) -> Value {
    serde_json::from_str(text.get()).unwrap_or(Value::Null)
}

/// A record and its version pair and time, when it has them.
type IdentifiedRecord = (Value, Option<(RecordVersion, DateTime<Utc>)>);

/// A page's records, each with its version pair and time when it has them, identified
/// once for the walk and the emission alike.
struct Identified {
    records: Vec<IdentifiedRecord>,
    /// The earliest record time of the page.
    earliest: Option<DateTime<Utc>>,
    /// The latest record time of the page.
    latest: Option<DateTime<Utc>>,
}

impl Identified {
    fn of(collection: &Collection, items: Vec<Value>) -> Self {
        let mut page = Identified {
            records: Vec::with_capacity(items.len()),
            earliest: None,
            latest: None,
        };
        for item in items {
            let identity = match &item {
                Value::Object(record) => collection.identify(record),
                _ => None,
            };
            if let Some((_, at)) = &identity {
                page.earliest = Some(page.earliest.map_or(*at, |e| e.min(*at)));
                page.latest = Some(page.latest.map_or(*at, |l| l.max(*at)));
            }
            page.records.push((item, identity));
        }
        page
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backfill_is_walked_a_day_at_a_time() {
        let from = DateTime::from_timestamp(1_790_000_000, 0).expect("time");
        let now = from + TimeDelta::days(7);
        assert_eq!(
            newest_first_window(from, now),
            (from + TimeDelta::days(1), true),
            "a week behind: one day, and more at once"
        );
        assert_eq!(
            newest_first_window(from, from + TimeDelta::hours(3)),
            (from + TimeDelta::hours(3), false),
            "caught up: up to now, then the poll interval"
        );
        assert_eq!(
            newest_first_window(from, from + TimeDelta::days(1)),
            (from + TimeDelta::days(1), false)
        );
        assert!(!sorted_walk_spent(from, from + TimeDelta::hours(23)));
        assert!(sorted_walk_spent(from, from + TimeDelta::days(1)));
    }

    #[test]
    fn a_sorted_walk_ends_at_its_start_and_its_mark_never_passes_it() {
        let start = DateTime::from_timestamp(1_790_000_000, 0).expect("time");
        let before = start - TimeDelta::seconds(5);
        // A page before the walk's start: read up to its last time, the walk goes on.
        assert_eq!(
            sorted_reach(Some(before), None, start, start),
            (Some(before), false)
        );
        // 90 minutes on, a page past the start: the mark stops there and the walk ends.
        let later = start + TimeDelta::minutes(90);
        assert_eq!(
            sorted_reach(
                Some(later - TimeDelta::minutes(10)),
                Some(before),
                start,
                later
            ),
            (Some(start), true)
        );
        // Never down; a page without times moves nothing.
        assert_eq!(
            sorted_reach(
                Some(before - TimeDelta::minutes(1)),
                Some(before),
                start,
                start
            ),
            (Some(before), false)
        );
        assert_eq!(
            sorted_reach(None, Some(before), start, start),
            (Some(before), false)
        );
        // Records later than our clock (the service's is ahead): read on, the mark still
        // stops at the start.
        assert_eq!(
            sorted_reach(Some(later), None, start, start + TimeDelta::seconds(1)),
            (Some(start), false)
        );
    }

    fn collection(order: Order) -> Collection {
        Collection {
            resource: "alerts".into(),
            endpoint: "alerts_v2",
            url: Url::parse("https://graph.microsoft.com/v1.0/security/alerts_v2").expect("url"),
            time_field: "lastUpdateDateTime",
            versioned: true,
            fixed_filter: None,
            order,
            top: 2000,
            headers: HeaderMap::new(),
            wire: Wire::OData,
        }
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("time")
            .with_timezone(&Utc)
    }

    #[test]
    fn windows_are_written_as_graph_reads_them() {
        let from = at("2026-09-01T10:00:00.1234567Z");
        let until = at("2026-09-01T11:00:00Z");
        let sorted = collection(Order::Ascending).query(from, until);
        let pairs: Vec<(String, String)> = sorted.query_pairs().into_owned().collect();
        assert_eq!(
            pairs,
            [
                (
                    "$filter".to_string(),
                    "lastUpdateDateTime ge 2026-09-01T10:00:00.123456Z".to_string()
                ),
                ("$orderby".to_string(), "lastUpdateDateTime asc".to_string()),
                ("$top".to_string(), "2000".to_string()),
            ]
        );
        let mut logs = collection(Order::NewestFirst);
        logs.time_field = "createdDateTime";
        logs.fixed_filter = Some("signInEventTypes/any(t: t eq 'servicePrincipal')".into());
        let pairs: Vec<(String, String)> =
            logs.query(from, until).query_pairs().into_owned().collect();
        assert_eq!(
            pairs[0].1,
            "createdDateTime ge 2026-09-01T10:00:00.123456Z and createdDateTime lt 2026-09-01T11:00:00.000000Z and signInEventTypes/any(t: t eq 'servicePrincipal')"
        );
        assert_eq!(pairs.len(), 2, "no $orderby on newest-first collections");
        let mut alerts = collection(Order::Unsorted);
        alerts.url = Url::parse("https://api.security.microsoft.com/api/alerts?$expand=evidence")
            .expect("url");
        alerts.time_field = "lastUpdateTime";
        let pairs: Vec<(String, String)> = alerts
            .query(from, until)
            .query_pairs()
            .into_owned()
            .collect();
        assert_eq!(
            pairs,
            [
                ("$expand".to_string(), "evidence".to_string()),
                (
                    "$filter".to_string(),
                    "lastUpdateTime ge 2026-09-01T10:00:00.123456Z and lastUpdateTime lt 2026-09-01T11:00:00.000000Z".to_string()
                ),
                ("$top".to_string(), "2000".to_string()),
            ],
            "unsorted windows are closed, keep the fixed query and ask no order"
        );
    }

    #[test]
    fn versions_are_id_and_time_as_written_or_the_id_alone() {
        let mut record = ObjectMap::new();
        record.insert("id".into(), Value::from("da1_2"));
        record.insert(
            "lastUpdateDateTime".into(),
            Value::from("2026-09-01T10:12:09.02Z"),
        );
        let alerts = collection(Order::Ascending);
        let (pair, time) = alerts.identify(&record).expect("identified");
        assert_eq!(pair, RecordVersion::new("da1_2", "2026-09-01T10:12:09.02Z"));
        assert_eq!(time, at("2026-09-01T10:12:09.020Z"));
        let mut logs = collection(Order::NewestFirst);
        logs.versioned = false;
        assert_eq!(
            logs.identify(&record).expect("identified").0,
            RecordVersion::new("da1_2", ""),
            "the id alone"
        );
        record.remove("lastUpdateDateTime");
        assert!(alerts.identify(&record).is_none());
    }
}
