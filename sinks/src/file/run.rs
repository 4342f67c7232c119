//! The file sink's loop: encode, write on a blocking thread, retry, dead-letter,
//! acknowledge.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use metrics::Counter;
use siemflow_core::SinkContext;
use siemflow_core::delivery::{DEAD_LETTER, DeadLetter, DeadLetterMetrics, FailureClass};
use siemflow_core::retry::RetryRule;
use siemflow_core::template::Template;
use tokio::time::MissedTickBehavior;

use super::open_files::OpenFiles;
use super::pending::{BatchEncoder, PendingWrite, Stalled, quoted};
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
    /// Pace of the retries of a failed write.
    pub retry: RetryRule,
}

/// How a failing write is retried: from 250 ms doubling with jitter to 30 s (the pace of
/// a configuration error), with no budget, as a batch written to a file is never given
/// up on (only an abort ends it).
pub(super) const WRITE_RETRY: RetryRule =
    RetryRule::new(Duration::from_millis(250), Duration::from_secs(30));

/// Appends each batch from `cx.input` to its files and acknowledges it once written;
/// events whose file name can never be used go to the `dead_letter` output.
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
    let dead_letter = DeadLetter::new(
        cx.output(DEAD_LETTER).cloned(),
        DeadLetterMetrics::new(&labels),
    );
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
        let pending = encoder.encode(batch, chrono::Utc::now());
        let (returned, mut pending) =
            write_with_retry(files, pending, &settings, &cx, &dead_letter, &mut failures).await?;
        files = returned;
        if failures.failing {
            failures.failing = false;
            cx.health.healthy();
            tracing::info!(component = %cx.component.id, "file sink writes again");
        }
        let (events, bytes) = pending.written();
        cx.component.metrics.sent_events.increment(events);
        cx.component.metrics.sent_bytes.increment(bytes);
        pending.settle();
        encoder.recycle(pending);
    }
    Ok(())
}

/// Failure bookkeeping across batches: health is reported unhealthy while failing.
struct Failures {
    failing: bool,
    counter: Counter,
}

/// Writes a batch, dead-lettering the events whose name can never be used and retrying
/// other I/O errors under `settings.retry` until the rest is written or `cx.abort` (the
/// unwritten events are then failed, for their source to read again).
async fn write_with_retry(
    mut files: OpenFiles,
    mut pending: PendingWrite,
    settings: &Settings,
    cx: &SinkContext,
    dead_letter: &DeadLetter,
    failures: &mut Failures,
) -> anyhow::Result<(OpenFiles, PendingWrite)> {
    let mut retries = settings.retry.start();
    let mut attempt: u32 = 0;
    loop {
        let fsync = settings.fsync;
        // One blocking job per batch: its writes are plain syscalls, no per-write task.
        let job = tokio::task::spawn_blocking(move || {
            let result = pending.write_to(&mut files, fsync);
            (files, pending, result)
        });
        let (returned_files, returned_pending, result) = tokio::select! {
            // A panic takes the batch with it: its events count as failed, and are re-read.
            joined = job => joined.context("file sink writer thread panicked")?,
            _ = cx.abort.cancelled() => {
                anyhow::bail!("file sink aborted while writing; the batch will be re-read");
            }
        };
        files = returned_files;
        pending = returned_pending;
        for (events, rejection) in pending.take_rejected() {
            dead_letter.send_events(events, &rejection).await;
        }
        let stalled = match result {
            Ok(()) => return Ok((files, pending)),
            Err(stalled) => stalled,
        };
        attempt += 1;
        // The rule has no budget, so it always grants a wait; the fallback is never used.
        let delay = match stalled.class {
            FailureClass::Config => retries.after_config_failure(),
            FailureClass::Retry | FailureClass::Data => retries.after_failure(None),
        }
        .unwrap_or(settings.retry.max);
        report_failure(cx, failures, &stalled, attempt, delay);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = cx.abort.cancelled() => {
                let path = pending.first_pending_path().map(quoted).unwrap_or_default();
                tracing::warn!(component = %cx.component.id, path, attempt, "aborted while retrying; the batch will be re-read");
                pending.settle();
                return Err(anyhow::Error::new(stalled.error)
                    .context(format!("file sink aborted after {attempt} failed attempts")));
            }
        }
    }
}

fn report_failure(
    cx: &SinkContext,
    failures: &mut Failures,
    stalled: &Stalled,
    attempt: u32,
    retry_in: Duration,
) {
    let error = &stalled.error;
    failures.counter.increment(1);
    failures.failing = true;
    let what = match stalled.class {
        FailureClass::Config => {
            "file sink cannot write: a configuration problem (permissions, a read-only file system, a configured path that cannot be); retrying the same batch slowly until it is fixed"
        }
        FailureClass::Retry | FailureClass::Data => {
            "file sink cannot write; retrying the same batch"
        }
    };
    tracing::error!(
        component = %cx.component.id,
        path = %quoted(&error.path),
        action = error.action,
        error = %error.source,
        attempt,
        retry_in = ?retry_in,
        "{what}"
    );
    cx.health.unhealthy(error.to_string());
}

/// How often idle files are looked for: often enough to close them near `idle_timeout`.
fn sweep_period(idle_timeout: Duration) -> Duration {
    (idle_timeout / 2).clamp(Duration::from_millis(10), Duration::from_secs(5))
}
