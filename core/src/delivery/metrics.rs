//! The metrics of a delivering sink, Vector's names where one exists.

use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, histogram};

use crate::metrics::ComponentLabels;

/// Metric handles of one sink's delivery.
#[derive(Clone)]
pub struct DeliveryMetrics {
    labels: ComponentLabels,
    /// `component_sent_events_total`: events the peer confirmed.
    pub sent_events: Counter,
    /// `component_sent_bytes_total`: their encoded bytes, before compression.
    pub sent_bytes: Counter,
    /// `http_client_requests_sent_total`.
    pub requests: Counter,
    /// `http_client_rtt_seconds`: request round trips.
    pub rtt: Histogram,
    /// `delivery_in_flight_requests`: requests sent and not yet answered.
    pub in_flight: Gauge,
    /// `adaptive_concurrency_limit`: requests allowed in flight now (fixed or adaptive).
    pub concurrency_limit: Gauge,
    /// `adaptive_concurrency_averaged_rtt_seconds`: the adaptive controller's long-run
    /// round-trip average.
    pub averaged_rtt: Gauge,
    /// `delivery_retries_total`: requests sent again after a failure.
    pub retries: Counter,
    /// `delivery_failed_events_total`: events failed back to their source after
    /// `retry.max_duration` (it re-reads them).
    pub failed_events: Counter,
    /// Events sent to `dead_letter`.
    pub dead_letters: DeadLetterMetrics,
}

impl DeliveryMetrics {
    /// Registers the handles of one sink.
    pub fn new(labels: &ComponentLabels) -> Self {
        DeliveryMetrics {
            sent_events: labels.counter("component_sent_events_total", &[]),
            sent_bytes: labels.counter("component_sent_bytes_total", &[]),
            requests: labels.counter("http_client_requests_sent_total", &[]),
            rtt: histogram!("http_client_rtt_seconds", &labels.with(&[])),
            in_flight: labels.gauge("delivery_in_flight_requests", &[]),
            concurrency_limit: labels.gauge("adaptive_concurrency_limit", &[]),
            averaged_rtt: labels.gauge("adaptive_concurrency_averaged_rtt_seconds", &[]),
            retries: labels.counter("delivery_retries_total", &[]),
            failed_events: labels.counter("delivery_failed_events_total", &[]),
            dead_letters: DeadLetterMetrics::new(labels),
            labels: labels.clone(),
        }
    }

    /// The component's labels.
    pub fn labels(&self) -> &ComponentLabels {
        &self.labels
    }

    /// Counts one response by status (`http_client_responses_total{status}`) and its
    /// round trip.
    pub fn response(&self, status: u16, rtt: Duration) {
        self.labels
            .counter(
                "http_client_responses_total",
                &[("status", &status.to_string())],
            )
            .increment(1);
        self.rtt.record(rtt.as_secs_f64());
    }

    /// Counts one failed attempt (`component_errors_total{error_type, stage="sending"}`),
    /// `error_type` being the failure class or a transport error.
    pub fn error(&self, error_type: &str) {
        self.labels.error(error_type, "sending");
    }
}

/// The counters of a sink's `dead_letter` output: the HTTP sinks' and the `file` sink's.
#[derive(Clone)]
pub struct DeadLetterMetrics {
    labels: ComponentLabels,
    /// `delivery_dead_lettered_events_total`: events sent to `dead_letter`.
    pub dead_lettered: Counter,
}

impl DeadLetterMetrics {
    /// Registers the handles of one sink.
    pub fn new(labels: &ComponentLabels) -> Self {
        DeadLetterMetrics {
            dead_lettered: labels.counter("delivery_dead_lettered_events_total", &[]),
            labels: labels.clone(),
        }
    }

    /// The component's labels.
    pub fn labels(&self) -> &ComponentLabels {
        &self.labels
    }

    /// Counts events that will never be delivered and went to `dead_letter`:
    /// `component_discarded_events_total{intentional="false", reason}` as Vector counts
    /// them, plus the dead-letter counter.
    pub fn dead_lettered(&self, reason: &str, count: u64) {
        self.labels
            .counter(
                "component_discarded_events_total",
                &[("intentional", "false"), ("reason", reason)],
            )
            .increment(count);
        self.dead_lettered.increment(count);
    }
}
