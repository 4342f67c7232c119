//! `file`: tails files matching glob patterns, through rotation, with end-to-end
//! acknowledged checkpoints.
//!
//! A reading thread ([`reader`]) finds files and decodes their lines into batches; this
//! task sends the batches on, waits for their acknowledgements, keeps the per-file
//! checkpoint ([`tracker`]) and writes it to `checkpoints.json`. Splitting the two lets
//! decoding (the costly part) overlap with everything downstream.

#[cfg(test)]
mod bench;
mod checkpoint;
mod complaints;
mod config;
mod listing;
mod open_files;
mod reader;
#[cfg(test)]
mod tests;
mod tracker;

use std::path::PathBuf;
use std::sync::mpsc as std_mpsc;

use anyhow::Context as _;
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use siemflow_core::event::attach_ack;
use siemflow_core::settlement::Ticket;
use siemflow_core::{AckReceipt, BatchStatus, BoxFuture, ConfigIssue, SourceConfig, SourceContext};
use tokio::sync::mpsc;

pub use config::{FileConfig, FollowSymlinks, ReadFrom};
pub(crate) use config::{MAX_BATCH_EVENTS, default_batch_max_events, default_max_line_bytes};
use listing::Lister;
use reader::{Command, FileSerial, ReadBatch, ReaderEvent, ReaderSettings};
use tracker::{FailureOutcome, Tracker};

use crate::lines::{LineDecoder, STAGE_RECEIVING};

/// Batches the reader may have read (and be decoding, each on its own blocking-pool
/// thread) ahead of the sender: enough to keep both cores decoding, few enough to bound
/// memory. Measured on 2 cores: 2 gave ~125k events/s, 4 gave ~170k events/s.
const READ_AHEAD_BATCHES: usize = 2;

impl SourceConfig for FileConfig {
    fn check(&self) -> Vec<ConfigIssue> {
        self.issues()
    }

    fn build(&self, cx: SourceContext) -> anyhow::Result<BoxFuture<anyhow::Result<()>>> {
        let exclude = self
            .exclude
            .iter()
            .map(|p| {
                glob::Pattern::new(p).with_context(|| format!("invalid exclude pattern `{p}`"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        for pattern in &self.include {
            glob::Pattern::new(pattern)
                .with_context(|| format!("invalid include pattern `{pattern}`"))?;
        }
        let labels = &cx.component.metrics.labels;
        let errors = |error_type: &'static str| {
            labels.counter(
                "component_errors_total",
                &[("error_type", error_type), ("stage", STAGE_RECEIVING)],
            )
        };
        let max_open_files = self
            .max_open_files
            .unwrap_or_else(open_files::default_limit);
        let process_limit = open_files::soft_file_limit();
        match process_limit {
            Some(limit) if max_open_files >= limit => tracing::warn!(
                component = %cx.component.id,
                max_open_files,
                process_limit = limit,
                "max_open_files is not below the process's open-file limit: the source will run out of descriptors and then hold fewer files"
            ),
            _ => tracing::debug!(
                component = %cx.component.id,
                max_open_files,
                process_limit,
                "file source open-file budget"
            ),
        }
        let settings = ReaderSettings {
            lister: Lister::new(
                self.include.clone(),
                exclude,
                self.follow_symlinks,
                errors("listing_failed"),
                errors("symlink_refused"),
            ),
            read_from: self.read_from,
            glob_interval: self.glob_interval,
            poll_interval: self.poll_interval,
            max_line_bytes: usize::try_from(self.max_line_bytes).unwrap_or(usize::MAX),
            batch_max_events: self.batch_max_events.max(1),
            max_open_files,
            decoder: LineDecoder::new(self.decoding, &cx.component.metrics),
            watched: labels.gauge("source_files_watched", &[]),
            open: labels.gauge("source_files_open", &[]),
            open_failed: errors("open_failed"),
            resume: Vec::new(),
            runtime: tokio::runtime::Handle::try_current()
                .context("the file source must be built inside the tokio runtime")?,
        };
        Ok(Box::pin(run(settings, self.checkpoint_interval, cx)))
    }
}

/// A batch's ticket with its acknowledgement's outcome.
type SettledBatch = (Ticket<FileSerial>, BatchStatus);

struct Source {
    cx: SourceContext,
    tracker: Tracker,
    receipts: FuturesUnordered<BoxFuture<SettledBatch>>,
    /// `None` once stopping: dropping it tells the reader to end.
    commands: Option<std_mpsc::Sender<Command>>,
    checkpoint_path: PathBuf,
    delivery_failed: metrics::Counter,
    checkpoint_writes: metrics::Counter,
}

async fn run(
    mut settings: ReaderSettings,
    checkpoint_interval: std::time::Duration,
    cx: SourceContext,
) -> anyhow::Result<()> {
    let state_dir = cx.component.ensure_state_dir()?;
    let checkpoint_path = state_dir.join(checkpoint::FILE_NAME);
    let loaded = checkpoint::load(&checkpoint_path)?;
    settings.resume = loaded.clone();

    let (event_tx, mut events) = mpsc::channel(READ_AHEAD_BATCHES);
    let (commands, command_rx) = std_mpsc::channel();
    let reader = tokio::task::spawn_blocking(move || reader::run(settings, event_tx, command_rx));

    let delivery_failed = cx.component.metrics.labels.counter(
        "component_errors_total",
        &[("error_type", "delivery_failed"), ("stage", "sending")],
    );
    let checkpoint_writes = cx
        .component
        .metrics
        .labels
        .counter("checkpoint_writes_total", &[]);
    let shutdown = cx.shutdown.clone();
    let mut source = Source {
        cx,
        tracker: Tracker::new(loaded),
        receipts: FuturesUnordered::new(),
        commands: Some(commands),
        checkpoint_path,
        delivery_failed,
        checkpoint_writes,
    };
    let mut save_tick = tokio::time::interval(checkpoint_interval);
    save_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    let mut failure = None;
    let reader_ended = loop {
        tokio::select! {
            // Acknowledgements first: one that resolved is settled before anything the
            // reader found after it (tests rely on this order too).
            biased;
            _ = shutdown.cancelled() => break false,
            Some(settled) = source.receipts.next(), if !source.receipts.is_empty() => {
                source.settle(settled, true);
            }
            event = events.recv() => match event {
                Some(event) => match source.handle(event).await {
                    Ok(true) => {}
                    Ok(false) => break false,
                    Err(e) => {
                        failure = Some(e);
                        break false;
                    }
                },
                None => break true,
            },
            _ = save_tick.tick() => {
                if source.tracker.is_dirty() {
                    source.save().await;
                }
            }
        }
    };

    // Both channels closing is what ends the reader thread.
    drop(events);
    source.commands = None;
    let outstanding = source.tracker.outstanding();
    if outstanding > 0 {
        tracing::info!(
            batches = outstanding,
            "waiting for acknowledgements before stopping"
        );
    }
    while let Some(settled) = source.receipts.next().await {
        source.settle(settled, false);
    }
    source.save().await;
    if let Err(e) = reader.await {
        anyhow::bail!("the file reading thread failed: {e}");
    }
    if let Some(e) = failure {
        return Err(e);
    }
    if reader_ended {
        anyhow::bail!("the file reading thread stopped unexpectedly");
    }
    Ok(())
}

impl Source {
    /// Handles one reader event; false when shutdown interrupted a send.
    async fn handle(&mut self, event: ReaderEvent) -> anyhow::Result<bool> {
        match event {
            ReaderEvent::Opened(file) => self.tracker.opened(file),
            ReaderEvent::Forget(gone) => self.tracker.forget(&gone),
            ReaderEvent::Drained(serial) => {
                let command = self.tracker.drained(serial);
                self.command(command);
            }
            ReaderEvent::Truncated(serial) | ReaderEvent::Vanished(serial) => {
                self.tracker.unreadable(serial);
            }
            ReaderEvent::Batch(batch) => return self.send(batch).await,
        }
        Ok(true)
    }

    async fn send(&mut self, batch: ReadBatch) -> anyhow::Result<bool> {
        let Some(ticket) = self.tracker.accept(&batch) else {
            // Read before a rewind of its file: the re-read supplies these lines again.
            return Ok(true);
        };
        let mut events = batch.events.events().await?;
        if events.is_empty() {
            // Only blank or discarded lines: nothing to wait for.
            self.settle((ticket, BatchStatus::Delivered), true);
            return Ok(true);
        }
        let receipt: AckReceipt = attach_ack(&mut events);
        self.receipts
            .push(Box::pin(async move { (ticket, receipt.await) }));
        Ok(tokio::select! {
            biased;
            // Dropping the unsent batch fails its receipt: it is not checkpointed.
            _ = self.cx.shutdown.cancelled() => false,
            _ = self.cx.out.send(events) => true,
        })
    }

    fn settle(&mut self, (ticket, status): SettledBatch, retry: bool) {
        let command = match status {
            BatchStatus::Delivered => self.tracker.delivered(&ticket),
            BatchStatus::Failed => {
                let path = self
                    .tracker
                    .path(*ticket.key())
                    .map(|p| p.display().to_string());
                let (outcome, command) = self.tracker.failed(&ticket, retry);
                match outcome {
                    FailureOutcome::Ignored => {}
                    FailureOutcome::Retried => {
                        self.delivery_failed.increment(1);
                        tracing::warn!(
                            path,
                            "a batch was not delivered; reading it again after a back-off"
                        );
                    }
                    FailureOutcome::Lost if retry => {
                        self.delivery_failed.increment(1);
                        tracing::error!(
                            path,
                            "a batch was not delivered and the file was truncated or went away since; those lines cannot be read again"
                        );
                    }
                    FailureOutcome::Lost => {
                        self.delivery_failed.increment(1);
                        tracing::warn!(
                            path,
                            "a batch was not delivered before shutdown; it is read again at the next start"
                        );
                    }
                }
                command
            }
        };
        self.command(command);
    }

    fn command(&self, command: Option<Command>) {
        if let (Some(command), Some(commands)) = (command, &self.commands) {
            // A send error means the reader has stopped, which the main loop notices.
            let _ = commands.send(command);
        }
    }

    async fn save(&mut self) {
        let entries = self.tracker.take_entries();
        let path = self.checkpoint_path.clone();
        let saved = tokio::task::spawn_blocking(move || checkpoint::save(&path, entries)).await;
        let error = match saved {
            Ok(Ok(())) => {
                self.checkpoint_writes.increment(1);
                return;
            }
            Ok(Err(e)) => format!("{e:#}"),
            Err(e) => e.to_string(),
        };
        tracing::error!(error, "cannot save the file checkpoints; will try again");
        self.cx
            .component
            .metrics
            .labels
            .error("checkpoint_failed", "processing");
        self.tracker.mark_dirty();
    }
}
