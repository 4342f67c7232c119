//! The file sink's loop: encode, write on a blocking thread, retry, acknowledge.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use metrics::Counter;
use siemflow_core::template::Template;
use siemflow_core::{BatchStatus, SinkContext};
use tokio::time::MissedTickBehavior;

use super::open_files::OpenFiles;
use super::pending::{BatchEncoder, PendingWrite, WriteError};
use crate::encoding::{Encoding, LineEncoder};

/// Everything the running sink needs, checked and parsed.
pub(super) struct Settings {
    /// Where each event goes.
    pub template: Template,
    /// How events become lines.
    pub encoding: Encoding,
    /// Files unwritten this long are closed.
    pub idle_timeout: Duration,
    /// Sync each touched file before acknowledging.
    pub fsync: bool,
    /// Bound of the open-file map.
    pub max_open_files: usize,
    /// Backoff of failed writes.
    pub retry: RetryPolicy,
}

/// How fast a failing write is retried.
#[derive(Debug, Clone)]
pub(super) struct RetryPolicy {
    /// The first delay.
    pub min_delay: Duration,
    /// The longest delay.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            min_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// Endless delays, doubling with jitter up to `max_delay`: only an abort gives up.
    fn delays(&self) -> ExponentialBackoff {
        ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build()
    }
}

/// Appends each batch from `cx.input` to its files and acknowledges it once written.
pub(super) async fn append_batches(settings: Settings, mut cx: SinkContext) -> anyhow::Result<()> {
    let labels = cx.component.metrics.labels.clone();
    let mut encoder = BatchEncoder::new(
        settings.template.clone(),
        LineEncoder::new(settings.encoding, &labels),
        &labels,
    );
    let mut failures = Failures {
        failing: false,
        counter: labels.counter(
            "component_errors_total",
            &[("error_type", "write_failed"), ("stage", "sending")],
        ),
    };
    let mut files = OpenFiles::new(settings.max_open_files);
    let mut sweep = tokio::time::interval(sweep_period(settings.idle_timeout));
    sweep.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let next = tokio::select! {
            batch = cx.input.recv() => batch,
            _ = sweep.tick() => {
                let closed = files.close_idle(settings.idle_timeout, Instant::now());
                if closed > 0 {
                    tracing::debug!(component = %cx.component.id, closed, "closed idle files");
                }
                continue;
            }
        };
        let Some(batch) = next else { break };
        let (pending, acks) = encoder.encode(batch, chrono::Utc::now());
        let (returned, pending) =
            match write_with_retry(files, pending, &settings, &cx, &mut failures).await {
                Ok(done) => done,
                Err(e) => {
                    acks.resolve(BatchStatus::Failed);
                    return Err(e);
                }
            };
        files = returned;
        if failures.failing {
            failures.failing = false;
            cx.health.healthy();
            tracing::info!(component = %cx.component.id, "file sink writes again");
        }
        cx.component.metrics.sent_events.increment(pending.events);
        cx.component.metrics.sent_bytes.increment(pending.bytes());
        acks.resolve(BatchStatus::Delivered);
        encoder.recycle(pending);
    }
    Ok(())
}

/// Failure bookkeeping across batches: health is reported unhealthy while failing.
struct Failures {
    failing: bool,
    counter: Counter,
}

/// Writes a batch, retrying I/O errors with backoff until it succeeds or `cx.abort`.
async fn write_with_retry(
    mut files: OpenFiles,
    mut pending: PendingWrite,
    settings: &Settings,
    cx: &SinkContext,
    failures: &mut Failures,
) -> anyhow::Result<(OpenFiles, PendingWrite)> {
    let mut delays: Option<ExponentialBackoff> = None;
    let mut attempt: u32 = 0;
    loop {
        let fsync = settings.fsync;
        // One blocking job per batch: its writes are plain syscalls, no per-write task.
        let job = tokio::task::spawn_blocking(move || {
            let result = pending.write_to(&mut files, fsync);
            (files, pending, result)
        });
        let (returned_files, returned_pending, result) = tokio::select! {
            joined = job => joined.context("file sink writer thread panicked")?,
            _ = cx.abort.cancelled() => {
                anyhow::bail!("file sink aborted while writing; the batch will be re-read");
            }
        };
        files = returned_files;
        pending = returned_pending;
        let error = match result {
            Ok(()) => return Ok((files, pending)),
            Err(error) => error,
        };
        attempt += 1;
        let delay = delays
            .get_or_insert_with(|| settings.retry.delays())
            .next()
            .unwrap_or(settings.retry.max_delay);
        report_failure(cx, failures, &error, attempt, delay);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = cx.abort.cancelled() => {
                let path = pending.first_pending_path().map(|p| p.display().to_string()).unwrap_or_default();
                tracing::warn!(component = %cx.component.id, path, attempt, "aborted while retrying; the batch will be re-read");
                return Err(anyhow::Error::new(error)
                    .context(format!("file sink aborted after {attempt} failed attempts")));
            }
        }
    }
}

fn report_failure(
    cx: &SinkContext,
    failures: &mut Failures,
    error: &WriteError,
    attempt: u32,
    retry_in: Duration,
) {
    failures.counter.increment(1);
    failures.failing = true;
    tracing::error!(
        component = %cx.component.id,
        path = %error.path.display(),
        action = error.action,
        error = %error.source,
        attempt,
        retry_in = ?retry_in,
        "file sink cannot write; retrying the same batch"
    );
    cx.health.unhealthy(error.to_string());
}

/// How often idle files are looked for: often enough to close them near `idle_timeout`.
fn sweep_period(idle_timeout: Duration) -> Duration {
    (idle_timeout / 2).clamp(Duration::from_millis(10), Duration::from_secs(5))
}
