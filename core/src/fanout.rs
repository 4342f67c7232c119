//! A component output: sends each batch to every consumer wired to it.
//!
//! The consumer list is shared with the topology, which adds and removes consumers
//! while the pipeline runs (reload) without the component noticing.

use std::sync::{Arc, Mutex};

use metrics::Counter;

use crate::ack::BatchStatus;
use crate::buffer::BufferSender;
use crate::event::{Batch, resolve_batch};
use crate::metrics::ComponentLabels;

/// The consumers of one output, keyed by consumer component id.
pub type Targets = Arc<Mutex<Vec<(String, BufferSender)>>>;

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

    /// Sends a batch to every consumer, waiting while any of them is full.
    ///
    /// With no consumer the batch is discarded, counted and settled as delivered: nothing
    /// downstream asked for it (an unused route output, say).
    pub async fn send(&self, batch: Batch) {
        if batch.is_empty() {
            return;
        }
        let targets: Vec<(String, BufferSender)> = match self.targets.lock() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        let count = batch.len() as u64;
        match targets.len() {
            0 => {
                self.labels.discarded("no_consumer", count);
                resolve_batch(batch, BatchStatus::Delivered);
                return;
            }
            1 => self.deliver(&targets[0], batch).await,
            n => {
                for target in &targets[..n - 1] {
                    self.deliver(target, batch.clone()).await;
                }
                self.deliver(&targets[n - 1], batch).await;
            }
        }
        self.sent.increment(count);
    }

    async fn deliver(&self, (consumer, sender): &(String, BufferSender), batch: Batch) {
        if let Err(closed) = sender.send(batch).await {
            // The consumer stopped (shutdown or reload); its copies stay unacknowledged so
            // the source re-reads them.
            tracing::debug!(consumer, events = closed.0.len(), "consumer gone");
            self.remove(consumer);
        }
    }

    fn remove(&self, consumer: &str) {
        if let Ok(mut guard) = self.targets.lock() {
            guard.retain(|(id, _)| id != consumer);
        }
    }

    /// Drops every consumer: the component is finished, so downstream may close.
    pub fn close(&self) {
        if let Ok(mut guard) = self.targets.lock() {
            guard.clear();
        }
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
