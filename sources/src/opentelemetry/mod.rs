//! `opentelemetry`: receives OTLP logs over gRPC (`LogsService/Export`) and HTTP
//! (`POST /v1/logs`, protobuf or JSON), gzip or not, each log record one event of the
//! shape `siemflow_core::otlp` documents.
//!
//! A request is answered only once every sink has delivered its events (or a disk buffer
//! holds them): until then the sender keeps its copy, and a failure is answered with the
//! status OTLP defines as retryable, so nothing is lost between the two. A pipeline that
//! already holds `max_pending_events` undelivered events turns requests away with
//! "retry later" before taking them in, so a retry does not duplicate them.

mod config;
mod grpc;
mod http;
mod receive;
mod serve;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use anyhow::Context as _;
use metrics::Counter;
use siemflow_core::fanout::Output;
use siemflow_core::metrics::ComponentLabels;
use siemflow_core::otlp::Notes;
use siemflow_core::{BoxFuture, ConfigIssue, SourceConfig, SourceContext};
use tokio::sync::Semaphore;

pub use config::{Listener, OpenTelemetrySourceConfig};

use crate::lines::STAGE_RECEIVING;

impl SourceConfig for OpenTelemetrySourceConfig {
    fn check(&self) -> Vec<ConfigIssue> {
        self.issues()
    }

    fn build(&self, cx: SourceContext) -> anyhow::Result<BoxFuture<anyhow::Result<()>>> {
        let shared = Shared::new(self, &cx.component.metrics, cx.out.clone());
        let tls = self
            .tls
            .as_ref()
            .map(serve::tls_acceptor)
            .transpose()
            .context("tls")?;
        let app = serve::router(&shared);
        let addresses: Vec<(&'static str, String)> =
            [("grpc", self.grpc_address()), ("http", self.http_address())]
                .into_iter()
                .filter_map(|(name, address)| Some((name, address?.to_string())))
                .collect();
        let slots = Arc::new(Semaphore::new(self.max_connections));
        Ok(Box::pin(async move {
            let mut listeners = Vec::new();
            for (name, address) in addresses {
                let listener = tokio::net::TcpListener::bind(&address)
                    .await
                    .with_context(|| format!("cannot listen for OTLP/{name} on {address}"))?;
                tracing::info!(
                    component = shared.counters.component,
                    listener = name,
                    address = %listener.local_addr().map_or(address, |a| a.to_string()),
                    "listening for OTLP logs"
                );
                listeners.push(tokio::spawn(serve::accept_loop(
                    listener,
                    tls.clone(),
                    app.clone(),
                    Arc::clone(&slots),
                    shared.clone(),
                    cx.shutdown.clone(),
                )));
            }
            for listener in listeners {
                listener.await.context("an OTLP listener failed")?;
            }
            Ok(())
        }))
    }
}

/// What both listeners and every request share.
#[derive(Clone)]
pub(crate) struct Shared {
    pub config: Arc<OpenTelemetrySourceConfig>,
    pub out: Output,
    /// `max_pending_events` permits, held by a request's events until they are delivered.
    pub pending: Arc<Semaphore>,
    pub counters: Counters,
}

/// The source's counters.
#[derive(Clone)]
pub(crate) struct Counters {
    pub component: String,
    labels: ComponentLabels,
    /// `component_received_events_total`: events taken into the pipeline.
    pub received_events: Counter,
    /// `component_received_bytes_total`: request bodies as sent (compressed or not).
    pub received_bytes: Counter,
    /// Events a sink failed to deliver (answered "retry": the sender sends them again).
    pub undelivered: Counter,
    /// Records refused one by one (reported in `partial_success`).
    pub rejected: Counter,
    /// TLS handshakes that failed or did not finish in time.
    pub tls_handshake_failed: Counter,
}

impl Counters {
    /// Counts one answered request (`otlp_requests_total{protocol, status}`).
    pub fn request(&self, protocol: &'static str, status: &'static str) {
        self.labels
            .counter(
                "otlp_requests_total",
                &[("protocol", protocol), ("status", status)],
            )
            .increment(1);
    }
}

impl Shared {
    fn new(
        config: &OpenTelemetrySourceConfig,
        metrics: &siemflow_core::metrics::ComponentMetrics,
        out: Output,
    ) -> Self {
        let labels = &metrics.labels;
        let errors = |error_type: &str| {
            labels.counter(
                "component_errors_total",
                &[("error_type", error_type), ("stage", STAGE_RECEIVING)],
            )
        };
        Shared {
            config: Arc::new(config.clone()),
            out,
            pending: receive::pending_permits(config.max_pending_events),
            counters: Counters {
                component: labels.id.clone(),
                labels: labels.clone(),
                received_events: metrics.received_events.clone(),
                received_bytes: metrics.received_bytes.clone(),
                undelivered: labels.counter(
                    "component_errors_total",
                    &[("error_type", "delivery_failed"), ("stage", "sending")],
                ),
                rejected: errors("record_rejected"),
                tls_handshake_failed: errors("tls_handshake_failed"),
            },
        }
    }

    /// Counts what the mapping worked around (it keeps the events all the same).
    pub fn count_notes(&self, notes: &Notes) {
        let labels = &self.counters.labels;
        for (count, error_type) in [
            (notes.duplicate_keys, "duplicate_key"),
            (notes.profile_references, "profile_reference_ignored"),
            (notes.lossy_text, "lossy_text"),
        ] {
            if count > 0 {
                labels
                    .counter(
                        "component_errors_total",
                        &[("error_type", error_type), ("stage", STAGE_RECEIVING)],
                    )
                    .increment(count);
            }
        }
    }
}
