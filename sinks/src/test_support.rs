//! Drives a sink without the engine: a buffer, a context and events with receipts.

use std::path::Path;
use std::time::Duration;

use siemflow_core::api::HealthRegistry;
use siemflow_core::buffer::{self, BufferConfig, BufferSender};
use siemflow_core::delivery::DEAD_LETTER;
use siemflow_core::event::{attach_ack, resolve_batch};
use siemflow_core::fanout::Output;
use siemflow_core::metrics::{ComponentKind, ComponentLabels, ComponentMetrics};
use siemflow_core::plugin::ComponentContext;
use siemflow_core::{AckReceipt, Batch, BatchStatus, Event, SinkConfig, SinkContext};
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

/// A sink running on its own task with a `dead_letter` output the test reads.
pub(crate) struct RunningSink {
    /// Feeds the sink.
    pub input: BufferSender,
    /// What the sink dead-lettered.
    pub dead: siemflow_core::buffer::BufferReceiver,
    /// The sink's health, as `/ready` would show it.
    pub health: HealthRegistry,
    /// Aborts the sink (a second signal).
    pub abort: CancellationToken,
    /// The sink's task.
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Builds and spawns the sink with its `dead_letter` output wired to a buffer the test reads.
pub(crate) fn start_sink(id: &str, type_name: &str, config: &dyn SinkConfig) -> RunningSink {
    let (harness, mut cx) = harness(id, type_name, &std::env::temp_dir());
    let labels = labels(id, type_name);
    let (dead_tx, dead) = buffer::channel(&BufferConfig::default(), &labels);
    let targets = siemflow_core::fanout::Targets::new(vec![("dead".to_string(), dead_tx)]);
    cx.outputs = vec![Output::new(Some(DEAD_LETTER.into()), targets, &labels)];
    let task = tokio::spawn(config.build(cx).expect("builds"));
    RunningSink {
        input: harness.sender,
        dead,
        health: harness.health,
        abort: harness.abort,
        task,
    }
}

impl RunningSink {
    /// Sends the records in batches of 50, each with an acknowledgement; returns the receipts.
    pub async fn send(
        &self,
        records: impl IntoIterator<Item = serde_json::Value>,
    ) -> Vec<AckReceipt> {
        let mut receipts = Vec::new();
        let mut records = records.into_iter().peekable();
        while records.peek().is_some() {
            let mut batch: Batch = records.by_ref().take(50).map(event).collect();
            receipts.push(attach_ack(&mut batch));
            self.input.send(batch).await.expect("sink running");
        }
        receipts
    }

    /// Plays the dead-letter consumer: collects and settles what has arrived.
    pub fn drain_dead(&mut self) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        while let Some(batch) = self.dead.try_recv() {
            out.extend(dead_values(batch));
        }
        out
    }

    /// Waits for every receipt to resolve as delivered while playing the dead-letter
    /// consumer (a dead letter keeps its acknowledgement until its consumer settles it);
    /// returns the dead letters.
    pub async fn settle(&mut self, receipts: Vec<AckReceipt>) -> Vec<serde_json::Value> {
        let mut dead = Vec::new();
        for receipt in receipts {
            let mut receipt = std::pin::pin!(receipt);
            let status = loop {
                tokio::select! {
                    status = &mut receipt => break status,
                    Some(batch) = self.dead.recv() => dead.extend(dead_values(batch)),
                }
            };
            assert_eq!(status, BatchStatus::Delivered);
        }
        dead.extend(self.drain_dead());
        dead
    }

    /// Closes the input, waits for the sink to end cleanly and returns what it
    /// dead-lettered meanwhile.
    pub async fn finish(mut self) -> Vec<serde_json::Value> {
        drop(self.input);
        self.task.await.expect("task").expect("sink");
        let mut dead = Vec::new();
        while let Some(batch) = self.dead.try_recv() {
            dead.extend(dead_values(batch));
        }
        dead
    }
}

/// A dead-lettered batch as JSON, settled as its consumer would.
fn dead_values(batch: Batch) -> Vec<serde_json::Value> {
    let values = batch
        .iter()
        .map(|e| serde_json::to_value(&e.value).expect("json"))
        .collect();
    resolve_batch(batch, BatchStatus::Delivered);
    values
}
