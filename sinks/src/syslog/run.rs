//! The syslog sink's loop: encode a batch, send it, reconnect and resend on errors, ack.

use std::time::Duration;

use metrics::Counter;
use siemflow_core::ack::AckSet;
use siemflow_core::delivery::RetryConfig;
use siemflow_core::metrics::ComponentLabels;
use siemflow_core::{Batch, BatchStatus, SinkContext};

use super::config::{MAX_UDP_PAYLOAD, Oversize};
use super::format::{BatchTime, MessageEncoder, MessageFormat};
use super::transport::{Connection, Liveness, Target};

/// Everything the running sink needs, checked and parsed.
pub(crate) struct Settings {
    /// Where to send.
    pub target: Target,
    /// How events become messages.
    pub format: MessageFormat,
    /// UDP size rule; `None` for streams.
    pub datagrams: Option<DatagramLimit>,
    /// Connect (and TLS handshake) timeout.
    pub connect_timeout: Duration,
    /// Timeout of writing one batch.
    pub write_timeout: Duration,
    /// Backoff and give-up rule.
    pub retry: RetryConfig,
}

/// The UDP size rule.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DatagramLimit {
    /// Messages above this are counted and warned about.
    pub max_bytes: usize,
    /// Sent whole or truncated.
    pub oversize: Oversize,
}

/// One batch, encoded: the bytes to write and, for UDP, where each datagram ends.
struct Encoded {
    bytes: Vec<u8>,
    datagram_ends: Vec<usize>,
    events: u64,
}

/// The sink's metrics beyond the standard ones.
struct Counters {
    established: Counter,
    shutdown: Counter,
    reconnects: Counter,
    connection_failed: Counter,
    writer_failed: Counter,
    delivery_failed: Counter,
    oversize: Counter,
    truncated: Counter,
}

impl Counters {
    fn new(labels: &ComponentLabels) -> Self {
        let error = |error_type| {
            labels.counter(
                "component_errors_total",
                &[("error_type", error_type), ("stage", "sending")],
            )
        };
        Counters {
            established: labels.counter("connection_established_total", &[]),
            shutdown: labels.counter("connection_shutdown_total", &[]),
            reconnects: labels.counter("syslog_reconnects_total", &[]),
            connection_failed: error("connection_failed"),
            writer_failed: error("writer_failed"),
            delivery_failed: error("delivery_failed"),
            oversize: labels.counter("syslog_oversize_datagrams_total", &[]),
            truncated: labels.counter(
                "component_errors_total",
                &[("error_type", "message_truncated"), ("stage", "processing")],
            ),
        }
    }
}

/// Why a send attempt failed.
enum SendError {
    /// No connection could be opened.
    Connect(std::io::Error),
    /// The connection broke while writing.
    Write(std::io::Error),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Connect(e) => write!(f, "cannot connect: {e}"),
            SendError::Write(e) => write!(f, "cannot write: {e}"),
        }
    }
}

/// The connection and its bookkeeping.
struct Link {
    target: Target,
    connection: Option<Connection>,
    connect_timeout: Duration,
    write_timeout: Duration,
    ever_connected: bool,
    failing: bool,
    counters: Counters,
    component: String,
}

impl Link {
    async fn connected(&mut self) -> Result<&mut Connection, SendError> {
        if let Some(connection) = &mut self.connection
            && let Liveness::Closed(reason) = connection.liveness().await
        {
            // Writing into a half-closed connection would "succeed" into the void.
            self.counters.shutdown.increment(1);
            tracing::info!(component = %self.component, target = ?self.target, reason, "the syslog receiver closed the connection; reconnecting");
            self.connection = None;
        }
        if self.connection.is_none() {
            let connection = self
                .target
                .connect(self.connect_timeout)
                .await
                .map_err(SendError::Connect)?;
            self.counters.established.increment(1);
            if self.ever_connected {
                self.counters.reconnects.increment(1);
            }
            self.ever_connected = true;
            tracing::debug!(component = %self.component, target = ?self.target, "connected");
            self.connection = Some(connection);
        }
        match &mut self.connection {
            Some(connection) => Ok(connection),
            None => Err(SendError::Connect(std::io::Error::other("not connected"))),
        }
    }

    /// One attempt: connect if needed, write what is left of the batch.
    async fn attempt(
        &mut self,
        batch: &Encoded,
        next_datagram: &mut usize,
    ) -> Result<(), SendError> {
        let write_timeout = self.write_timeout;
        let connection = self.connected().await?;
        let timed_out = || {
            SendError::Write(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the receiver did not take the batch within {write_timeout:?}"),
            ))
        };
        if batch.datagram_ends.is_empty() {
            return tokio::time::timeout(write_timeout, connection.write_stream(&batch.bytes))
                .await
                .map_err(|_| timed_out())?
                .map_err(SendError::Write);
        }
        // UDP: resume after the datagrams already handed over, so a retry sends none twice.
        while *next_datagram < batch.datagram_ends.len() {
            let start = match *next_datagram {
                0 => 0,
                i => batch.datagram_ends[i - 1],
            };
            let datagram = &batch.bytes[start..batch.datagram_ends[*next_datagram]];
            tokio::time::timeout(write_timeout, connection.send_datagram(datagram))
                .await
                .map_err(|_| timed_out())?
                .map_err(SendError::Write)?;
            *next_datagram += 1;
        }
        Ok(())
    }

    async fn close(&mut self) {
        if let Some(connection) = self.connection.take() {
            connection.close().await;
            self.counters.shutdown.increment(1);
        }
    }
}

/// How a batch ended.
enum Outcome {
    Delivered,
    GaveUp(String),
    Aborted(String),
}

/// Sends every batch from `cx.input` and acknowledges it once written.
pub(crate) async fn send_batches(settings: Settings, mut cx: SinkContext) -> anyhow::Result<()> {
    let labels = cx.component.metrics.labels.clone();
    let mut encoder = MessageEncoder::new(settings.format.clone(), &labels);
    let mut link = Link {
        target: settings.target.clone(),
        connection: None,
        connect_timeout: settings.connect_timeout,
        write_timeout: settings.write_timeout,
        ever_connected: false,
        failing: false,
        counters: Counters::new(&labels),
        component: cx.component.id.clone(),
    };
    // Connect up front so /ready tells the truth before the first event.
    if let Err(error) = link.connected().await {
        link.failing = true;
        link.counters.connection_failed.increment(1);
        tracing::warn!(component = %cx.component.id, target = ?link.target, %error, "syslog receiver not reachable yet; will retry when events arrive");
        cx.health.unhealthy(format!("{:?}: {error}", link.target));
    }
    let mut warned_oversize = false;
    while let Some(batch) = cx.input.recv().await {
        let (encoded, acks) = encode(
            batch,
            &mut encoder,
            &settings,
            &link.counters,
            &mut warned_oversize,
            &cx.component.id,
        );
        match deliver(&mut link, &encoded, &settings.retry, &cx).await {
            Outcome::Delivered => {
                cx.component.metrics.sent_events.increment(encoded.events);
                cx.component
                    .metrics
                    .sent_bytes
                    .increment(encoded.bytes.len() as u64);
                acks.resolve(BatchStatus::Delivered);
            }
            Outcome::GaveUp(error) => {
                link.counters.delivery_failed.increment(1);
                tracing::error!(component = %cx.component.id, target = ?link.target, events = encoded.events, %error, "gave up on a batch after retry.max_duration; its events are failed and their source will read them again");
                acks.resolve(BatchStatus::Failed);
            }
            Outcome::Aborted(error) => {
                acks.resolve(BatchStatus::Failed);
                anyhow::bail!(
                    "syslog sink aborted while retrying a batch ({error}); it will be read again"
                );
            }
        }
    }
    link.close().await;
    Ok(())
}

fn encode(
    batch: Batch,
    encoder: &mut MessageEncoder,
    settings: &Settings,
    counters: &Counters,
    warned_oversize: &mut bool,
    component: &str,
) -> (Encoded, AckSet) {
    let time = BatchTime::new(settings.format.format, chrono::Utc::now());
    let mut acks = AckSet::default();
    let mut encoded = Encoded {
        bytes: Vec::with_capacity(batch.len() * 512),
        datagram_ends: Vec::new(),
        events: batch.len() as u64,
    };
    for mut event in batch {
        if let Some(ack) = event.ack.take() {
            acks.push(ack);
        }
        let start = encoded.bytes.len();
        let len = encoder.encode(&event, &time, &mut encoded.bytes);
        if let Some(limit) = settings.datagrams {
            if len > limit.max_bytes {
                counters.oversize.increment(1);
                if !*warned_oversize {
                    *warned_oversize = true;
                    tracing::warn!(component, bytes = len, max_datagram_bytes = limit.max_bytes, oversize = ?limit.oversize, "a syslog message is larger than one unfragmented datagram; use TCP or TLS for large events (counted as syslog_oversize_datagrams_total, warned once)");
                }
            }
            let keep = match limit.oversize {
                Oversize::Truncate => limit.max_bytes,
                Oversize::Send => MAX_UDP_PAYLOAD,
            };
            if len > keep {
                counters.truncated.increment(1);
                let end = utf8_boundary(&encoded.bytes[start..], keep);
                encoded.bytes.truncate(start + end);
            }
            encoded.datagram_ends.push(encoded.bytes.len());
        }
    }
    (encoded, acks)
}

/// The largest cut at or below `max` that does not split a UTF-8 character.
fn utf8_boundary(bytes: &[u8], max: usize) -> usize {
    let mut end = max.min(bytes.len());
    while end > 0 && end < bytes.len() && (bytes[end] & 0b1100_0000) == 0b1000_0000 {
        end -= 1;
    }
    end
}

/// Sends one batch, reconnecting under the retry rule (`siemflow_core::retry`) until it
/// is written, the next wait would pass `retry.max_duration`, or the process aborts. A batch whose write failed is written again whole on the
/// next connection (at least once).
async fn deliver(
    link: &mut Link,
    batch: &Encoded,
    retry: &RetryConfig,
    cx: &SinkContext,
) -> Outcome {
    if batch.events == 0 {
        return Outcome::Delivered;
    }
    let mut retries = retry.rule().start();
    let mut next_datagram = 0;
    let mut attempt: u32 = 0;
    loop {
        let error = match link.attempt(batch, &mut next_datagram).await {
            Ok(()) => {
                if link.failing {
                    link.failing = false;
                    cx.health.healthy();
                    tracing::info!(component = %cx.component.id, target = ?link.target, "syslog receiver reachable again");
                }
                return Outcome::Delivered;
            }
            Err(error) => error,
        };
        attempt += 1;
        link.connection = None;
        match &error {
            SendError::Connect(_) => link.counters.connection_failed.increment(1),
            SendError::Write(_) => link.counters.writer_failed.increment(1),
        }
        link.failing = true;
        cx.health.unhealthy(format!("{:?}: {error}", link.target));
        // A syslog receiver never says when to come back: no Retry-After.
        let Some(delay) = retries.after_failure(None) else {
            return Outcome::GaveUp(format!("{error} (after {attempt} attempts)"));
        };
        tracing::warn!(component = %cx.component.id, target = ?link.target, %error, attempt, retry_in = ?delay, "syslog send failed; reconnecting and sending the batch again");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = cx.abort.cancelled() => return Outcome::Aborted(error.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::utf8_boundary;

    #[test]
    fn truncation_keeps_whole_characters() {
        let text = "aé€".as_bytes(); // 1 + 2 + 3 bytes
        assert_eq!(utf8_boundary(text, 2), 1);
        assert_eq!(utf8_boundary(text, 3), 3);
        assert_eq!(utf8_boundary(text, 5), 3);
        assert_eq!(utf8_boundary(text, 6), 6);
        assert_eq!(utf8_boundary(text, 60), 6);
    }
}
