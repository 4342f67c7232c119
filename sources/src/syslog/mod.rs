//! `syslog`: receives syslog messages over TCP (octet counting or newline framing), TLS
//! or UDP, reads their RFC 5424 / RFC 3164 header into a `syslog` object and decodes the
//! payload as text, CEF, LEEF or JSON.
//!
//! Syslog has no application-level acknowledgement, so delivery rests on backpressure:
//! each connection sends its batches into the bounded pipeline and stops reading its
//! socket while they wait, so TCP's own flow control slows the sender instead of this
//! process buffering (or dropping) what it cannot deliver yet. A disk buffer behind the
//! source makes what was read durable. What syslog cannot guarantee — bytes a sender
//! wrote that were never read (a crash, a reset connection), and UDP datagrams the
//! kernel dropped — is documented in `docs/sources/syslog.md` and counted where it can
//! be known (batches a sink failed; kernel UDP drops).

mod config;
mod frames;
mod message;
mod tcp;
pub(crate) mod tls;
mod udp;

#[cfg(test)]
mod mapping_tests;
#[cfg(test)]
mod rsyslog_tests;
#[cfg(test)]
#[path = "../../../tests/support/rsyslogd.rs"]
mod rsyslogd;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use metrics::Counter;
use siemflow_core::event::{Batch, attach_ack};
use siemflow_core::fanout::Output;
use siemflow_core::log_limit::RateLimitedLog;
use siemflow_core::metrics::ComponentMetrics;
use siemflow_core::{BatchStatus, BoxFuture, ConfigIssue, SourceConfig, SourceContext};

pub use config::{Format, Framing, Mode, ServerTls, SyslogDecoding, SyslogSourceConfig};

use crate::lines::STAGE_RECEIVING;
use message::MessageDecoder;

impl SourceConfig for SyslogSourceConfig {
    fn check(&self) -> Vec<ConfigIssue> {
        self.issues()
    }

    fn build(&self, cx: SourceContext) -> anyhow::Result<BoxFuture<anyhow::Result<()>>> {
        let shared = Shared::new(self, &cx.component.metrics, cx.out.clone())?;
        let address = self.address.trim().to_string();
        Ok(match self.effective_mode() {
            Mode::Udp => Box::pin(async move {
                let socket = tokio::net::UdpSocket::bind(&address)
                    .await
                    .with_context(|| format!("cannot listen on udp {address}"))?;
                udp::receive(socket, shared, cx.shutdown).await
            }),
            mode => {
                warn_if_descriptors_are_short(self.max_connections);
                let acceptor = match (mode, &self.tls) {
                    (Mode::Tls, Some(tls)) => Some(tls::acceptor(tls)?),
                    _ => None,
                };
                Box::pin(async move {
                    let listener = tokio::net::TcpListener::bind(&address)
                        .await
                        .with_context(|| format!("cannot listen on tcp {address}"))?;
                    tcp::serve(listener, acceptor, shared, cx.shutdown).await
                })
            }
        })
    }
}

/// What every connection of one source shares.
#[derive(Clone)]
pub(crate) struct Shared {
    pub config: Arc<SyslogSourceConfig>,
    pub decoder: MessageDecoder,
    pub out: Output,
    pub counters: Counters,
    pub component: String,
    pub complaints: Arc<Complaints>,
}

/// Rate-limited logs of problems a hostile or broken peer can repeat at will.
#[derive(Default)]
pub(crate) struct Complaints {
    pub refused: Mutex<RateLimitedLog>,
    pub connection: Mutex<RateLimitedLog>,
    pub message: Mutex<RateLimitedLog>,
    pub delivery: Mutex<RateLimitedLog>,
    pub accept: Mutex<RateLimitedLog>,
}

/// `Some(suppressed)` when this occurrence of a problem should be logged.
pub(crate) fn admit(log: &Mutex<RateLimitedLog>) -> Option<u64> {
    log.lock().map(|mut log| log.admit()).unwrap_or(Some(0))
}

/// The source's own error counters (`component_errors_total{error_type=…}`).
#[derive(Clone)]
pub(crate) struct Counters {
    /// A message longer than `max_message_bytes` (discarded).
    pub too_long: Counter,
    /// A connection closed at once: `max_connections` were open.
    pub connection_refused: Counter,
    /// A connection idle past `read_timeout`, closed.
    pub read_timeout: Counter,
    /// A TLS handshake that failed (or did not finish within `read_timeout`).
    pub tls_handshake_failed: Counter,
    /// A read error other than end of stream (a reset connection).
    pub read_failed: Counter,
    /// Events a sink failed to deliver (syslog cannot ask the sender again).
    pub delivery_failed: Counter,
    /// UDP datagrams the kernel dropped because the socket's receive buffer was full.
    pub udp_dropped: Counter,
    /// TCP/TLS connections open now (`syslog_connections`).
    pub connections: metrics::Gauge,
}

impl Shared {
    fn new(
        config: &SyslogSourceConfig,
        metrics: &ComponentMetrics,
        out: Output,
    ) -> anyhow::Result<Self> {
        let labels = &metrics.labels;
        let errors = |error_type: &str, stage: &str| {
            labels.counter(
                "component_errors_total",
                &[("error_type", error_type), ("stage", stage)],
            )
        };
        Ok(Shared {
            config: Arc::new(config.clone()),
            decoder: MessageDecoder::new(config.format, config.decoding, metrics)?,
            out,
            counters: Counters {
                too_long: errors("message_too_long", STAGE_RECEIVING),
                connection_refused: errors("connection_refused", STAGE_RECEIVING),
                read_timeout: errors("read_timeout", STAGE_RECEIVING),
                tls_handshake_failed: errors("tls_handshake_failed", STAGE_RECEIVING),
                read_failed: errors("read_failed", STAGE_RECEIVING),
                delivery_failed: errors("delivery_failed", "sending"),
                udp_dropped: errors("udp_dropped", STAGE_RECEIVING),
                connections: labels.gauge("syslog_connections", &[]),
            },
            component: labels.id.clone(),
            complaints: Arc::new(Complaints::default()),
        })
    }

    /// Sends a batch (waiting while the pipeline is full: that is the backpressure) and
    /// counts, once its acknowledgement resolves, the events a sink failed.
    pub async fn send(&self, batch: &mut Batch) {
        if batch.is_empty() {
            return;
        }
        let mut events = std::mem::take(batch);
        let count = events.len() as u64;
        let receipt = attach_ack(&mut events);
        let failed = self.counters.delivery_failed.clone();
        let complaints = Arc::clone(&self.complaints);
        let component = self.component.clone();
        tokio::spawn(async move {
            if receipt.await == BatchStatus::Failed {
                failed.increment(count);
                if let Some(suppressed) = admit(&complaints.delivery) {
                    tracing::error!(
                        component,
                        events = count,
                        suppressed,
                        "syslog events were not delivered; syslog cannot ask the sender for them again (counted as delivery_failed)"
                    );
                }
            }
        });
        self.out.send(events).await;
    }
}

/// Descriptors the process needs besides the connections (files, sockets, the runtime).
const DESCRIPTOR_HEADROOM: u64 = 64;

/// Warns when `max_connections` cannot be reached: past the descriptor limit accepting
/// fails (EMFILE), and connections wait in the kernel's listen backlog, unserved, until
/// their senders time out.
fn warn_if_descriptors_are_short(max_connections: usize) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes a plain struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    let wanted = max_connections as u64 + DESCRIPTOR_HEADROOM;
    if limit.rlim_cur != libc::RLIM_INFINITY && wanted > limit.rlim_cur {
        tracing::warn!(
            max_connections,
            descriptor_limit = limit.rlim_cur,
            "max_connections is above what the process's descriptor limit allows (with {DESCRIPTOR_HEADROOM} to spare): past that, connections wait unserved in the kernel's backlog until their senders time out; raise the limit (ulimit -n, LimitNOFILE=) or lower max_connections"
        );
    }
}
