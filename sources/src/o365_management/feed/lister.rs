//! The lister: walks listing windows from `overlap` before the cursor to now, page by
//! page, and hands each blob not processed yet to the fetcher; starts the subscription
//! when the API says it is not enabled, within the 15-minute rule.

use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::mpsc;

use super::{Feed, SkipReason, config_advice};
use crate::microsoft::ApiError;
use crate::o365_management::client::Endpoint;
use crate::o365_management::cursor::Admission;
use crate::o365_management::listing::{self, Descriptor};

/// The service throttles a repeated /start within this interval (reference 1.2).
const START_REPEAT: TimeDelta = TimeDelta::minutes(15);

/// Listing pages are JSON arrays of small descriptors; anything this big is broken.
const MAX_LISTING_BYTES: u64 = 64 << 20;

/// A window re-listed this often after AF20031 (stale nextPage) fails the pass.
const MAX_RELISTS: usize = 3;

/// No window has this many pages; a server that keeps handing out NextPageUri loops.
const MAX_PAGES: usize = 100_000;

/// What the lister does after a failed pass.
enum PassError {
    /// AF20022/AF20023: (re)start the subscription, then list again.
    NoSubscription(ApiError),
    /// Anything else.
    Api(ApiError),
}

impl From<ApiError> for PassError {
    fn from(error: ApiError) -> Self {
        if error.code_is(&["AF20022", "AF20023"]) {
            PassError::NoSubscription(error)
        } else {
            PassError::Api(error)
        }
    }
}

impl Feed {
    pub(super) async fn list_loop(&self, listed: mpsc::Sender<Descriptor>) {
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
        if started
            .as_ref()
            .err()
            .is_none_or(|error| error.code_is(&["AF20024"]))
        {
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
            Err(error) if error.code_is(&["AF20024"]) => {
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
            let mut c = state.cursor_mut(&self.client.tenant_id, &self.content_type);
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
            let mut url = self.client.url(
                Endpoint::Content,
                &listing::content_url(&self.client.feed_root, &self.content_type, start, end),
            )?;
            for _ in 0..MAX_PAGES {
                let answer = match self
                    .client
                    .get(Endpoint::Content, url, MAX_LISTING_BYTES, &self.shutdown)
                    .await
                {
                    Ok(answer) => answer,
                    Err(error) if error.code_is(&["AF20031"]) && relists < MAX_RELISTS => {
                        relists += 1;
                        tracing::warn!(
                            tenant_id = %self.client.tenant_id,
                            content_type = %self.content_type,
                            %error,
                            "the API refused its own nextPage token; listing the window again"
                        );
                        continue 'window;
                    }
                    Err(error) if error.code_is(&["AF20055", "AF20030"]) && !clamped => {
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
                    Some(next) => url = self.client.url(Endpoint::Content, &next)?,
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
}
