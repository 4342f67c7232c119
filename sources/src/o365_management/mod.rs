//! `o365_management`: the Office 365 Management Activity API (unified audit log) of one
//! or more tenants, following reference section 1.
//!
//! Each (tenant, content type) is a [`feed::Feed`]: it lists windows from `overlap`
//! before its cursor to now, fetches the blobs it has not processed yet (concurrently,
//! within the tenant's request budget), emits one event per record with an end-to-end
//! acknowledgement per blob, and moves its cursor only over delivered blobs. This task
//! owns the shared state and writes it to `state.json` at most every second and at
//! shutdown.

mod client;
mod config;
mod cursor;
mod feed;
mod listing;
mod records;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, TimeDelta, Utc};
use siemflow_core::auth::{TokenProvider, default_scope};
use siemflow_core::retry::RetryRule;
use siemflow_core::{BoxFuture, ConfigIssue, SourceConfig, SourceContext};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

pub use config::{CONTENT_TYPES, O365ManagementConfig};

use client::{TenantClient, TenantSettings};
use cursor::SourceState;
use feed::{Feed, Shared};

/// Where "now" comes from: the system clock, or a test's simulated one.
pub(crate) type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// Timings that are not options: fixed in production, shortened by tests.
#[derive(Clone)]
pub(crate) struct Tuning {
    /// "Now" for windows, expiry and the 15-minute rule.
    pub clock: Clock,
    /// Retries of one request after a timeout, 5xx or network error; past them the
    /// request counts as failed (the pass or blob is tried again at a later poll).
    pub transient: RetryRule,
    /// Pauses of the tenant after AF429: never given up on (Elastic waits 5 minutes).
    pub throttle: RetryRule,
    /// Wait after a configuration error (bad credentials, missing permission): slow, never a hot loop.
    pub config_error_pause: Duration,
    /// Most frequent state write.
    pub save_interval: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            clock: Arc::new(Utc::now),
            transient: RetryRule::new(Duration::from_secs(1), Duration::from_secs(60)).at_most(6),
            throttle: RetryRule::new(Duration::from_secs(2), Duration::from_secs(300)),
            config_error_pause: Duration::from_secs(300),
            save_interval: Duration::from_secs(1),
        }
    }
}

impl std::fmt::Debug for Tuning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tuning")
            .field("transient", &self.transient)
            .field("throttle", &self.throttle)
            .finish_non_exhaustive()
    }
}

/// The options every feed reads.
#[derive(Debug)]
pub(crate) struct Settings {
    pub start_from: TimeDelta,
    pub overlap: TimeDelta,
    pub poll_interval: Duration,
    pub max_concurrent_fetches: usize,
    pub max_blob_bytes: u64,
    pub tuning: Tuning,
}

impl SourceConfig for O365ManagementConfig {
    fn check(&self) -> Vec<ConfigIssue> {
        self.issues()
    }

    fn build(&self, cx: SourceContext) -> anyhow::Result<BoxFuture<anyhow::Result<()>>> {
        self.build_with(cx, Tuning::default())
    }
}

impl O365ManagementConfig {
    /// Builds the source with the given timings (tests shorten them).
    pub(crate) fn build_with(
        &self,
        cx: SourceContext,
        tuning: Tuning,
    ) -> anyhow::Result<BoxFuture<anyhow::Result<()>>> {
        crate::microsoft::tenants::refuse_issues(&self.issues(), "o365_management")?;
        let http = siemflow_core::http::client(&self.tls, self.request_timeout, None)?;
        let labels = &cx.component.metrics.labels;
        let mut tenants = Vec::with_capacity(self.tenants.len());
        for (i, entra) in self.tenants.iter().enumerate() {
            // The audience is the cloud's, even when api_url points elsewhere (a simulator, a proxy).
            let scope = default_scope(entra.cloud.management_url());
            let tokens = TokenProvider::new(entra, &scope, http.clone())
                .with_context(|| format!("tenants[{i}]"))?;
            let api_root = reqwest::Url::parse(&self.api_root(entra))
                .with_context(|| format!("the API root of tenants[{i}] is not a URL"))?;
            tenants.push(Arc::new(TenantClient::new(TenantSettings {
                tenant_id: &entra.tenant_id,
                api_root: &api_root,
                publisher: self.publisher_for(entra),
                http: http.clone(),
                tokens,
                requests_per_minute: self.requests_per_minute,
                tuning: tuning.clone(),
                labels,
            })));
        }
        let settings = Arc::new(Settings {
            start_from: TimeDelta::from_std(self.start_from)
                .context("start_from is out of range")?,
            overlap: TimeDelta::from_std(self.overlap).context("overlap is out of range")?,
            poll_interval: self.poll_interval,
            max_concurrent_fetches: self.max_concurrent_fetches.max(1),
            max_blob_bytes: self.max_blob_bytes,
            tuning,
        });
        Ok(Box::pin(run(
            settings,
            tenants,
            self.content_types.clone(),
            cx,
        )))
    }
}

async fn run(
    settings: Arc<Settings>,
    tenants: Vec<Arc<TenantClient>>,
    content_types: Vec<String>,
    cx: SourceContext,
) -> anyhow::Result<()> {
    let state_dir = cx.component.ensure_state_dir()?;
    let path = state_dir.join(cursor::FILE_NAME);
    let state = cursor::load(&path)?;
    for tenant in &tenants {
        for content_type in &content_types {
            let resumed = state.cursor(&tenant.tenant_id, content_type);
            match resumed {
                Some(cursor) => tracing::info!(
                    tenant_id = %tenant.tenant_id,
                    %content_type,
                    %cursor,
                    "resuming from the saved cursor"
                ),
                None => tracing::info!(
                    tenant_id = %tenant.tenant_id,
                    %content_type,
                    start_from = %humantime::format_duration(settings.start_from.to_std().unwrap_or_default()),
                    "no saved cursor: backfilling"
                ),
            }
        }
    }
    let state = Arc::new(Mutex::new(state));
    let shared = Shared {
        settings: Arc::clone(&settings),
        state: Arc::clone(&state),
        out: cx.out.clone(),
        shutdown: cx.shutdown.clone(),
        component: cx.component.metrics.clone(),
    };
    let mut feeds = JoinSet::new();
    for tenant in &tenants {
        let fetch_slots = Arc::new(Semaphore::new(settings.max_concurrent_fetches));
        for content_type in &content_types {
            let feed = Feed::new(
                Arc::clone(tenant),
                Arc::clone(&fetch_slots),
                content_type.clone(),
                shared.clone(),
            );
            feeds.spawn(Arc::new(feed).run());
        }
    }
    let saver = Saver {
        path,
        state,
        writes: cx
            .component
            .metrics
            .labels
            .counter("checkpoint_writes_total", &[]),
        clock: settings.tuning.clock.clone(),
        cx: &cx,
    };
    let mut save_tick = tokio::time::interval(settings.tuning.save_interval);
    save_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failed = 0;
    loop {
        tokio::select! {
            biased;
            _ = cx.shutdown.cancelled() => break,
            joined = feeds.join_next() => match joined {
                Some(Err(error)) => {
                    failed += 1;
                    tracing::error!(%error, "an o365_management feed task failed");
                    cx.component.metrics.labels.error("feed_failed", "receiving");
                }
                Some(Ok(())) => {}
                // Feeds only end at shutdown; with none left there is nothing to run.
                None => break,
            },
            _ = save_tick.tick() => saver.save_if_dirty().await,
        }
    }
    let waiting = feeds.len();
    if waiting > 0 {
        tracing::info!(
            feeds = waiting,
            "stopping: waiting for the acknowledgements of emitted blobs"
        );
    }
    while let Some(joined) = feeds.join_next().await {
        if let Err(error) = joined {
            failed += 1;
            tracing::error!(%error, "an o365_management feed task failed");
        }
    }
    saver.save().await?;
    if failed > 0 {
        anyhow::bail!("{failed} o365_management feed task(s) failed; see the errors above");
    }
    Ok(())
}

/// Writes `state.json` crash-safely, off the async workers.
struct Saver<'a> {
    path: std::path::PathBuf,
    state: Arc<Mutex<SourceState>>,
    /// Completed writes: what tests wait on to know the file holds a later state.
    writes: metrics::Counter,
    clock: Clock,
    cx: &'a SourceContext,
}

impl Saver<'_> {
    async fn save_if_dirty(&self) {
        let dirty = self.lock().is_dirty();
        if dirty && let Err(error) = self.save().await {
            tracing::error!(error = %format!("{error:#}"), "cannot save the o365_management state; will try again");
            self.cx
                .component
                .metrics
                .labels
                .error("checkpoint_failed", "processing");
            self.lock().mark_dirty();
        }
    }

    async fn save(&self) -> anyhow::Result<()> {
        let snapshot = self.lock().snapshot((self.clock)());
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || siemflow_core::state::save_json(&path, &snapshot))
            .await
            .context("the state writer failed")?
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        self.writes.increment(1);
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SourceState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}
