//! `stdin`: reads lines from standard input into acknowledged batches; at end of input it
//! waits until every batch is settled and returns, so a pipeline can run as a batch job.

mod config;
#[cfg(test)]
mod tests;

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use siemflow_core::event::{Batch, attach_ack};
use siemflow_core::fanout::Output;
use siemflow_core::{AckReceipt, BatchStatus, BoxFuture, ConfigIssue, SourceConfig, SourceContext};
use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio_util::sync::CancellationToken;

pub use config::StdinConfig;

use crate::lines::{LineBuffer, LineDecoder, Piece};

impl SourceConfig for StdinConfig {
    fn check(&self) -> Vec<ConfigIssue> {
        self.issues()
    }

    fn build(&self, cx: SourceContext) -> anyhow::Result<BoxFuture<anyhow::Result<()>>> {
        let settings = LineSettings {
            max_line_bytes: usize::try_from(self.max_line_bytes).unwrap_or(usize::MAX),
            batch_max_events: self.batch_max_events.max(1),
            decoder: LineDecoder::new(self.decoding, &cx.component.metrics),
        };
        let delivery_failed = cx.component.metrics.labels.counter(
            "component_errors_total",
            &[("error_type", "delivery_failed"), ("stage", "sending")],
        );
        Ok(Box::pin(async move {
            let summary = read_lines(tokio::io::stdin(), &settings, &cx.out, &cx.shutdown).await?;
            summary.report(&delivery_failed);
            Ok(())
        }))
    }
}

/// How lines are cut and decoded.
pub(crate) struct LineSettings {
    pub max_line_bytes: usize,
    pub batch_max_events: usize,
    pub decoder: LineDecoder,
}

/// How the batches read from one input ended.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Summary {
    /// Batches every consumer delivered.
    pub delivered: u64,
    /// Batches that were not delivered (they cannot be read again from a stream).
    pub failed: u64,
    /// True when reading stopped at end of input (not by shutdown).
    pub reached_end: bool,
}

impl Summary {
    fn report(&self, delivery_failed: &metrics::Counter) {
        if self.failed > 0 {
            delivery_failed.increment(self.failed);
            tracing::error!(
                delivered = self.delivered,
                failed = self.failed,
                "batches from standard input were not delivered; they cannot be read again"
            );
        } else {
            tracing::info!(
                delivered = self.delivered,
                end_of_input = self.reached_end,
                "standard input done; every batch delivered"
            );
        }
    }
}

/// Reads `input` to its end (or until `shutdown`), sending batches with acknowledgements,
/// then waits for every acknowledgement.
pub(crate) async fn read_lines<R: AsyncRead + Unpin>(
    mut input: R,
    settings: &LineSettings,
    out: &Output,
    shutdown: &CancellationToken,
) -> anyhow::Result<Summary> {
    let mut lines = LineBuffer::new(settings.max_line_bytes);
    let mut receipts: FuturesUnordered<AckReceipt> = FuturesUnordered::new();
    let mut summary = Summary::default();
    let mut batch = Batch::new();
    let mut offset = 0u64;
    loop {
        let read = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            Some(status) = receipts.next(), if !receipts.is_empty() => {
                summary.count(status);
                continue;
            }
            read = input.read(lines.spare()) => read,
        };
        let read = match read {
            Ok(read) => read,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::error!(error = %e, "cannot read standard input; stopping as at its end");
                0
            }
        };
        let at_end = read == 0;
        if at_end {
            if let Some(piece) = lines.finish() {
                take_piece(piece, &lines, settings, &mut batch, &mut offset);
            }
        } else {
            lines.commit(read);
            while let Some(piece) = lines.next_piece() {
                take_piece(piece, &lines, settings, &mut batch, &mut offset);
                if batch.len() >= settings.batch_max_events
                    && !send(&mut batch, out, &mut receipts, shutdown).await
                {
                    break;
                }
            }
        }
        // Send what this read completed now: an interactive producer should not wait for
        // a full batch.
        if !send(&mut batch, out, &mut receipts, shutdown).await {
            break;
        }
        if at_end {
            summary.reached_end = true;
            break;
        }
    }
    while let Some(status) = receipts.next().await {
        summary.count(status);
    }
    Ok(summary)
}

impl Summary {
    fn count(&mut self, status: BatchStatus) {
        match status {
            BatchStatus::Delivered => self.delivered += 1,
            BatchStatus::Failed => self.failed += 1,
        }
    }
}

fn take_piece(
    piece: Piece,
    lines: &LineBuffer,
    settings: &LineSettings,
    batch: &mut Batch,
    offset: &mut u64,
) {
    match piece {
        Piece::Line { range, consumed } => {
            if let Some(error) = settings.decoder.push(lines.slice(range), batch) {
                tracing::debug!(
                    offset = *offset,
                    error,
                    "line is not a JSON object; kept whole in `message`"
                );
            }
            *offset += consumed;
        }
        Piece::TooLong { consumed } => {
            tracing::warn!(
                offset = *offset,
                bytes = consumed,
                max_line_bytes = settings.max_line_bytes,
                "line longer than max_line_bytes discarded"
            );
            settings.decoder.count_too_long();
            *offset += consumed;
        }
    }
}

/// Sends the batch (if any) with an acknowledgement; false when shutdown interrupted it.
async fn send(
    batch: &mut Batch,
    out: &Output,
    receipts: &mut FuturesUnordered<AckReceipt>,
    shutdown: &CancellationToken,
) -> bool {
    if batch.is_empty() {
        return true;
    }
    let mut events = std::mem::take(batch);
    receipts.push(attach_ack(&mut events));
    tokio::select! {
        biased;
        _ = shutdown.cancelled() => false,
        _ = out.send(events) => true,
    }
}
