//! A component output: sends each batch to every consumer wired to it.
//!
//! The consumer list is shared with the topology, which rewires it while the pipeline
//! runs (reload) without the component noticing. While a consumer is being replaced the
//! topology pauses the output: a batch then waits, as it would for a full buffer, until
//! the successor is wired. Only an output that no configured component consumes discards.

use std::sync::Arc;

use metrics::Counter;
use tokio::sync::watch;

use crate::ack::BatchStatus;
use crate::buffer::BufferSender;
use crate::event::{Batch, resolve_batch};
use crate::metrics::ComponentLabels;

/// A consumer component id and its input buffer.
type Consumer = (String, BufferSender);

/// Who consumes one output right now.
#[derive(Default)]
struct Wiring {
    /// The consumers; shared, so a send takes the list without copying it.
    consumers: Arc<Vec<Consumer>>,
    /// True while a reload replaces a consumer: batches wait instead of being sent.
    paused: bool,
}

/// The consumers of one output, shared by the producing component and the topology.
#[derive(Clone)]
pub struct Targets(Arc<watch::Sender<Wiring>>);

impl Default for Targets {
    fn default() -> Self {
        Targets(Arc::new(watch::Sender::new(Wiring::default())))
    }
}

impl Targets {
    /// Targets wired to the given consumers.
    pub fn new(consumers: Vec<Consumer>) -> Self {
        Targets(Arc::new(watch::Sender::new(Wiring {
            consumers: Arc::new(consumers),
            paused: false,
        })))
    }

    /// Wires `consumer` in (replacing an earlier wiring of the same id).
    pub fn attach(&self, consumer: &str, sender: BufferSender) {
        self.0.send_modify(|wiring| {
            let consumers = Arc::make_mut(&mut wiring.consumers);
            consumers.retain(|(id, _)| id != consumer);
            consumers.push((consumer.to_string(), sender));
        });
    }

    /// Unwires `consumer`; true when it was wired here.
    pub fn detach(&self, consumer: &str) -> bool {
        self.0.send_if_modified(|wiring| {
            if !wiring.consumers.iter().any(|(id, _)| id == consumer) {
                return false;
            }
            Arc::make_mut(&mut wiring.consumers).retain(|(id, _)| id != consumer);
            true
        })
    }

    /// True when `consumer` is wired here.
    pub fn feeds(&self, consumer: &str) -> bool {
        self.0
            .borrow()
            .consumers
            .iter()
            .any(|(id, _)| id == consumer)
    }

    /// Holds (or releases) every batch sent to this output.
    pub fn set_paused(&self, paused: bool) {
        self.0.send_if_modified(|wiring| {
            let changed = wiring.paused != paused;
            wiring.paused = paused;
            changed
        });
    }

    /// Drops every consumer: the producer is finished, so downstream may close.
    pub fn clear(&self) {
        self.0
            .send_modify(|wiring| wiring.consumers = Arc::default());
    }

    /// The consumers once the output is not paused.
    async fn consumers(&self) -> Arc<Vec<Consumer>> {
        let mut wiring = self.0.subscribe();
        match wiring.wait_for(|w| !w.paused).await {
            Ok(wired) => Arc::clone(&wired.consumers),
            // The sender lives in `self`, so it cannot be gone.
            Err(_) => Arc::default(),
        }
    }
}

/// One named (or the default) output of a component.
#[derive(Clone)]
pub struct Output {
    name: Option<String>,
    targets: Targets,
    sent: Counter,
    labels: ComponentLabels,
}

impl Output {
    /// An output with the given consumer list.
    pub fn new(name: Option<String>, targets: Targets, labels: &ComponentLabels) -> Self {
        let port = name.as_deref().unwrap_or("_default");
        Output {
            sent: labels.counter("component_sent_events_total", &[("output", port)]),
            name,
            targets,
            labels: labels.clone(),
        }
    }

    /// The output's name; `None` for the default output.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Sends a batch to every consumer, waiting while any of them is full or the output
    /// is paused for a reload.
    ///
    /// With no consumer the batch is discarded, counted and settled as delivered: nothing
    /// downstream asked for it (an unused route output, say).
    pub async fn send(&self, batch: Batch) {
        if batch.is_empty() {
            return;
        }
        let targets = self.targets.consumers().await;
        let count = batch.len() as u64;
        match targets.len() {
            0 => {
                self.labels.discarded("no_consumer", count);
                resolve_batch(batch, BatchStatus::Delivered);
                return;
            }
            1 => deliver(&targets[0], batch).await,
            n => {
                for target in &targets[..n - 1] {
                    deliver(target, batch.clone()).await;
                }
                deliver(&targets[n - 1], batch).await;
            }
        }
        self.sent.increment(count);
    }

    /// Drops every consumer: the component is finished, so downstream may close.
    pub fn close(&self) {
        self.targets.clear();
    }
}

async fn deliver((consumer, sender): &Consumer, batch: Batch) {
    if let Err(closed) = sender.send(batch).await {
        // The consumer ended (it failed, or was aborted past its drain deadline). Its
        // copies are dropped unresolved, which fails them, so the source reads them
        // again; the consumer stays wired so later batches fail the same way instead of
        // passing for "nothing consumes this output".
        tracing::debug!(
            consumer,
            events = closed.0.len(),
            "consumer gone; events failed"
        );
    }
}

/// The outputs of a component: the default one and any named ones.
#[derive(Clone)]
pub struct Outputs {
    /// The unnamed output (`id`).
    pub default: Output,
    /// Named outputs (`id.name`).
    pub named: Vec<Output>,
}

impl Outputs {
    /// The named output, if the component declared it.
    pub fn named(&self, name: &str) -> Option<&Output> {
        self.named.iter().find(|o| o.name() == Some(name))
    }

    /// Drops every consumer of every output.
    pub fn close(&self) {
        self.default.close();
        for output in &self.named {
            output.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::buffer::{self, BufferConfig};
    use crate::event::{Event, attach_ack};
    use crate::metrics::ComponentKind;

    fn labels(id: &str) -> ComponentLabels {
        ComponentLabels {
            id: id.into(),
            kind: ComponentKind::Source,
            type_name: "test".into(),
        }
    }

    fn acked_batch() -> (Batch, crate::ack::AckReceipt) {
        let mut batch = vec![Event::from_message("held")];
        let receipt = attach_ack(&mut batch);
        (batch, receipt)
    }

    #[tokio::test]
    async fn a_paused_output_holds_its_batch_until_the_successor_is_wired() {
        let targets = Targets::default();
        let output = Output::new(None, targets.clone(), &labels("paused_src"));
        targets.set_paused(true);
        let (batch, receipt) = acked_batch();
        let sending = tokio::spawn(async move { output.send(batch).await });
        tokio::task::yield_now().await;
        assert!(!sending.is_finished(), "a paused output must not discard");

        let (tx, mut rx) = buffer::channel(&BufferConfig::default(), &labels("paused_sink"));
        targets.attach("successor", tx);
        targets.set_paused(false);
        let delivered = rx
            .recv()
            .await
            .expect("the held batch reaches the successor");
        sending.await.expect("send finishes");
        resolve_batch(delivered, BatchStatus::Delivered);
        assert_eq!(receipt.await, BatchStatus::Delivered);
    }

    #[tokio::test]
    async fn an_unconsumed_output_settles_delivered_and_a_dead_consumer_fails() {
        let targets = Targets::default();
        let output = Output::new(None, targets.clone(), &labels("lonely_src"));
        let (batch, receipt) = acked_batch();
        output.send(batch).await;
        assert_eq!(receipt.await, BatchStatus::Delivered);

        let (tx, rx) = buffer::channel(&BufferConfig::default(), &labels("dead_sink"));
        targets.attach("dead", tx);
        drop(rx);
        for _ in 0..2 {
            let (batch, receipt) = acked_batch();
            tokio::time::timeout(Duration::from_secs(5), output.send(batch))
                .await
                .expect("a dead consumer does not block");
            assert_eq!(receipt.await, BatchStatus::Failed);
        }
        assert!(targets.feeds("dead"));
    }
}
