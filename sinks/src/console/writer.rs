//! The console sink's loop, generic over the writer so tests can stand in for stdout.

use anyhow::Context as _;
use siemflow_core::ack::AckSet;
use siemflow_core::{BatchStatus, SinkContext};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::encoding::LineEncoder;

/// A batch buffer grown past this is given back, so one huge batch does not pin memory.
const KEPT_BUFFER_BYTES: usize = 4 << 20;

/// Writes each batch to `out`, flushes, then acknowledges it. Returns an error (after
/// failing the batch) when the writer fails, e.g. a closed pipe.
pub(crate) async fn write_lines<W>(
    mut out: W,
    target: &'static str,
    mut encoder: LineEncoder,
    mut cx: SinkContext,
) -> anyhow::Result<()>
where
    W: AsyncWrite + Unpin + Send,
{
    let mut buf = Vec::with_capacity(64 * 1024);
    while let Some(batch) = cx.input.recv().await {
        let events = batch.len() as u64;
        let mut acks = AckSet::default();
        for mut event in batch {
            if let Some(ack) = event.ack.take() {
                acks.push(ack);
            }
            encoder.encode(&event, &mut buf);
        }
        let written = tokio::select! {
            written = write_and_flush(&mut out, &buf) => written,
            _ = cx.abort.cancelled() => {
                acks.resolve(BatchStatus::Failed);
                tracing::warn!(component = %cx.component.id, target, "aborted while writing; the unwritten batch will be re-read");
                anyhow::bail!("console sink aborted while writing to {target}");
            }
        };
        if let Err(error) = written {
            acks.resolve(BatchStatus::Failed);
            tracing::error!(component = %cx.component.id, target, %error, "console sink cannot write; stopping (the batch will be re-read)");
            cx.component.metrics.labels.error("write_failed", "sending");
            cx.health
                .unhealthy(format!("cannot write to {target}: {error}"));
            return Err(error).with_context(|| format!("console sink cannot write to {target}"));
        }
        cx.component.metrics.sent_events.increment(events);
        cx.component.metrics.sent_bytes.increment(buf.len() as u64);
        acks.resolve(BatchStatus::Delivered);
        buf.clear();
        if buf.capacity() > KEPT_BUFFER_BYTES {
            buf = Vec::with_capacity(64 * 1024);
        }
    }
    Ok(())
}

async fn write_and_flush<W: AsyncWrite + Unpin>(out: &mut W, buf: &[u8]) -> std::io::Result<()> {
    out.write_all(buf).await?;
    out.flush().await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;
    use tokio::io::AsyncReadExt;

    use super::*;
    use crate::encoding::Encoding;
    use crate::test_support::{acked, harness};

    fn spawn_console<W: AsyncWrite + Unpin + Send + 'static>(
        out: W,
        encoding: Encoding,
        cx: SinkContext,
    ) -> tokio::task::JoinHandle<anyhow::Result<()>> {
        let encoder = LineEncoder::new(encoding, &cx.component.metrics.labels);
        tokio::spawn(write_lines(out, "test", encoder, cx))
    }

    #[tokio::test]
    async fn console_writes_json_lines_then_acknowledges() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (h, cx) = harness("console-json", "console", dir.path());
        let (out, mut reader) = tokio::io::duplex(1 << 16);
        let task = spawn_console(out, Encoding::Json, cx);
        let (batch, receipt) = acked(vec![json!({"Id": "1"}), json!({"Id": "2"})]);
        h.sender.send(batch).await.expect("open");
        assert_eq!(receipt.await, BatchStatus::Delivered);
        drop(h.sender);
        task.await.expect("no panic").expect("clean exit");
        let mut written = String::new();
        reader.read_to_string(&mut written).await.expect("read");
        assert_eq!(written, "{\"Id\":\"1\"}\n{\"Id\":\"2\"}\n");
    }

    #[tokio::test]
    async fn console_text_encoding_writes_messages() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (h, cx) = harness("console-text", "console", dir.path());
        let (out, mut reader) = tokio::io::duplex(1 << 16);
        let task = spawn_console(out, Encoding::Text, cx);
        let (batch, receipt) = acked(vec![json!({"message": "hello"}), json!({"Id": "2"})]);
        h.sender.send(batch).await.expect("open");
        drop(h.sender);
        task.await.expect("no panic").expect("clean exit");
        assert_eq!(receipt.await, BatchStatus::Delivered);
        let mut written = String::new();
        reader.read_to_string(&mut written).await.expect("read");
        assert_eq!(written, "hello\n{\"Id\":\"2\"}\n");
    }

    #[tokio::test]
    async fn console_blocked_reader_holds_the_ack_until_it_reads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (h, cx) = harness("console-backpressure", "console", dir.path());
        // A pipe smaller than one batch, like a stdout nobody reads.
        let (out, mut reader) = tokio::io::duplex(16);
        let task = spawn_console(out, Encoding::Json, cx);
        let (batch, mut receipt) = acked(vec![json!({"Id": "a long enough record"}); 8]);
        h.sender.send(batch).await.expect("open");
        let pending = tokio::time::timeout(Duration::from_millis(100), &mut receipt).await;
        assert!(
            pending.is_err(),
            "acknowledged before the reader took the data"
        );
        assert!(!task.is_finished());
        let reading = tokio::spawn(async move {
            let mut written = Vec::new();
            reader.read_to_end(&mut written).await.expect("read");
            written
        });
        assert_eq!(receipt.await, BatchStatus::Delivered);
        drop(h.sender);
        task.await.expect("no panic").expect("clean exit");
        let written = reading.await.expect("reader");
        assert_eq!(written.iter().filter(|b| **b == b'\n').count(), 8);
    }

    #[tokio::test]
    async fn console_broken_pipe_fails_the_batch_and_stops() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (h, cx) = harness("console-broken", "console", dir.path());
        let (out, reader) = tokio::io::duplex(16);
        drop(reader);
        let task = spawn_console(out, Encoding::Json, cx);
        let (batch, receipt) = acked(vec![json!({"Id": "1"})]);
        h.sender.send(batch).await.expect("open");
        assert_eq!(receipt.await, BatchStatus::Failed);
        let result = task.await.expect("no panic");
        assert!(result.is_err(), "a write error must stop the sink");
        assert!(h.health.ready().is_err(), "the sink must report unhealthy");
    }
}
