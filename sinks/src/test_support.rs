//! Drives a sink without the engine: a buffer, a context and events with receipts.

use std::path::Path;
use std::time::Duration;

use siemflow_core::api::HealthRegistry;
use siemflow_core::buffer::{self, BufferConfig, BufferSender};
use siemflow_core::event::attach_ack;
use siemflow_core::metrics::{ComponentKind, ComponentLabels, ComponentMetrics};
use siemflow_core::plugin::ComponentContext;
use siemflow_core::{AckReceipt, Batch, Event, SinkContext};
use tokio_util::sync::CancellationToken;

/// The labels of a test sink.
pub(crate) fn labels(id: &str, type_name: &str) -> ComponentLabels {
    ComponentLabels {
        id: id.to_string(),
        kind: ComponentKind::Sink,
        type_name: type_name.to_string(),
    }
}

/// A sink context plus the handles a test keeps to drive and observe it.
pub(crate) struct Harness {
    pub sender: BufferSender,
    pub health: HealthRegistry,
    pub abort: CancellationToken,
}

/// A context for a sink with this id and its test-side handles.
pub(crate) fn harness(id: &str, type_name: &str, state_dir: &Path) -> (Harness, SinkContext) {
    let labels = labels(id, type_name);
    let (sender, receiver) = buffer::channel(&BufferConfig::default(), &labels);
    let health = HealthRegistry::default();
    let abort = CancellationToken::new();
    let cx = SinkContext {
        component: ComponentContext {
            id: id.to_string(),
            state_dir: state_dir.to_path_buf(),
            metrics: ComponentMetrics::new(labels),
        },
        input: receiver,
        outputs: vec![],
        health: health.register(id, ComponentKind::Sink),
        abort: abort.clone(),
    };
    (
        Harness {
            sender,
            health,
            abort,
        },
        cx,
    )
}

/// An event from a JSON literal.
pub(crate) fn event(value: serde_json::Value) -> Event {
    Event::new(value.into())
}

/// A batch of events with an acknowledgement attached, and its receipt.
pub(crate) fn acked(values: Vec<serde_json::Value>) -> (Batch, AckReceipt) {
    let mut batch: Batch = values.into_iter().map(event).collect();
    let receipt = attach_ack(&mut batch);
    (batch, receipt)
}

/// Waits until `condition` holds, failing the test after a few seconds.
pub(crate) async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    for _ in 0..500 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}
