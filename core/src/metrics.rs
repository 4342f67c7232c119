//! Metric names and per-component handles (Vector's names where one exists).

use std::sync::OnceLock;

use metrics::{Counter, Gauge, counter, gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Installs the process-wide Prometheus recorder once and returns its handle.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (a test harness); ours then only renders.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Which of the three roles a component plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ComponentKind {
    /// Emits events.
    Source,
    /// Rewrites, drops or routes events.
    Transform,
    /// Delivers events out of the process.
    Sink,
}

impl ComponentKind {
    /// The singular word used in labels and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            ComponentKind::Source => "source",
            ComponentKind::Transform => "transform",
            ComponentKind::Sink => "sink",
        }
    }

    /// The config table holding components of this kind.
    pub fn table(self) -> &'static str {
        match self {
            ComponentKind::Source => "sources",
            ComponentKind::Transform => "transforms",
            ComponentKind::Sink => "sinks",
        }
    }
}

impl std::fmt::Display for ComponentKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The labels every metric of a component carries.
#[derive(Debug, Clone)]
pub struct ComponentLabels {
    /// The component id from the config.
    pub id: String,
    /// Source, transform or sink.
    pub kind: ComponentKind,
    /// The plugin `type`.
    pub type_name: String,
}

impl ComponentLabels {
    /// The label pairs for a metric of this component, plus any extra ones.
    pub fn with(&self, extra: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
        let mut labels = vec![
            ("component_id", self.id.clone()),
            ("component_kind", self.kind.as_str().to_string()),
            ("component_type", self.type_name.clone()),
        ];
        labels.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        labels
    }

    /// A counter of this component.
    pub fn counter(&self, name: &'static str, extra: &[(&'static str, &str)]) -> Counter {
        counter!(name, &self.with(extra))
    }

    /// A gauge of this component.
    pub fn gauge(&self, name: &'static str, extra: &[(&'static str, &str)]) -> Gauge {
        gauge!(name, &self.with(extra))
    }

    /// Counts one error of the given type (`component_errors_total`).
    pub fn error(&self, error_type: &str, stage: &str) {
        self.counter(
            "component_errors_total",
            &[("error_type", error_type), ("stage", stage)],
        )
        .increment(1);
    }

    /// Counts events dropped on purpose or for a reason (`component_discarded_events_total`).
    pub fn discarded(&self, reason: &str, count: u64) {
        self.counter("component_discarded_events_total", &[("reason", reason)])
            .increment(count);
    }
}

/// The hot-path counters of a component, looked up once.
#[derive(Debug, Clone)]
pub struct ComponentMetrics {
    /// Its labels, for the less frequent metrics.
    pub labels: ComponentLabels,
    /// `component_received_events_total`.
    pub received_events: Counter,
    /// `component_received_bytes_total`: raw bytes read (sources).
    pub received_bytes: Counter,
    /// `component_sent_events_total` for sinks: events delivered.
    pub sent_events: Counter,
    /// `component_sent_bytes_total` for sinks: bytes written out.
    pub sent_bytes: Counter,
}

impl ComponentMetrics {
    /// Registers the counters of one component.
    pub fn new(labels: ComponentLabels) -> Self {
        ComponentMetrics {
            received_events: labels.counter("component_received_events_total", &[]),
            received_bytes: labels.counter("component_received_bytes_total", &[]),
            sent_events: labels.counter("component_sent_events_total", &[]),
            sent_bytes: labels.counter("component_sent_bytes_total", &[]),
            labels,
        }
    }
}
