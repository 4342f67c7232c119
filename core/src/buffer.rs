//! The bounded, event-counted channel in front of every transform and sink.
//!
//! Capacity is counted in events, not batches, so `max_events` means what it says. A full
//! buffer either blocks the sender (backpressure that reaches the sources) or discards
//! the newest batch, counted, as the user chose.

use std::sync::Arc;

use metrics::{Counter, Gauge};
use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::ack::BatchStatus;
use crate::event::{Batch, resolve_batch};
use crate::metrics::ComponentLabels;

/// What a full buffer does with the next batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Wait for room: the slow sink slows its sources.
    #[default]
    Block,
    /// Discard the incoming batch and count it (`buffer_discarded_events_total`).
    DropNewest,
}

/// A sink's `buffer` table.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct BufferConfig {
    /// Buffer type; only `memory` is built in so far.
    #[serde(rename = "type")]
    pub kind: BufferType,
    /// Events the buffer holds before it is full.
    pub max_events: usize,
    /// `block` or `drop_newest`.
    pub when_full: WhenFull,
}

/// Where a buffer keeps its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum BufferType {
    /// In memory: lost on a crash, which is safe because nothing is acknowledged until the
    /// sink delivered it.
    #[default]
    Memory,
}

impl Default for BufferConfig {
    fn default() -> Self {
        BufferConfig {
            kind: BufferType::Memory,
            max_events: 500,
            when_full: WhenFull::Block,
        }
    }
}

struct Gauges {
    events: Gauge,
    discarded: Counter,
}

type Message = (Batch, Option<OwnedSemaphorePermit>);

/// The sending half; cheap to clone, one per upstream output.
#[derive(Clone)]
pub struct BufferSender {
    tx: mpsc::UnboundedSender<Message>,
    room: Arc<Semaphore>,
    max_events: usize,
    when_full: WhenFull,
    gauges: Arc<Gauges>,
}

/// A sender that does not keep the channel open.
#[derive(Clone)]
pub struct WeakBufferSender {
    tx: mpsc::WeakUnboundedSender<Message>,
    room: Arc<Semaphore>,
    max_events: usize,
    when_full: WhenFull,
    gauges: Arc<Gauges>,
}

/// The receiving half, owned by the transform or sink task.
pub struct BufferReceiver {
    rx: mpsc::UnboundedReceiver<Message>,
    gauges: Arc<Gauges>,
    received: Counter,
}

/// The consumer has gone; the batch came back undelivered.
#[derive(Debug)]
pub struct Closed(pub Batch);

/// Creates a buffer for the component with these labels.
pub fn channel(config: &BufferConfig, labels: &ComponentLabels) -> (BufferSender, BufferReceiver) {
    let max_events = config.max_events.max(1);
    let (tx, rx) = mpsc::unbounded_channel();
    labels
        .gauge("buffer_max_events", &[])
        .set(max_events as f64);
    let gauges = Arc::new(Gauges {
        events: labels.gauge("buffer_events", &[]),
        discarded: labels.counter("buffer_discarded_events_total", &[]),
    });
    let sender = BufferSender {
        tx,
        room: Arc::new(Semaphore::new(max_events)),
        max_events,
        when_full: config.when_full,
        gauges: Arc::clone(&gauges),
    };
    let receiver = BufferReceiver {
        rx,
        gauges,
        received: labels.counter("component_received_events_total", &[]),
    };
    (sender, receiver)
}

impl BufferSender {
    /// Queues a batch, waiting for room (or discarding it when `drop_newest`). A batch
    /// larger than the whole buffer is queued in pieces, so `max_events` is never exceeded.
    pub async fn send(&self, mut batch: Batch) -> Result<(), Closed> {
        while batch.len() > self.max_events {
            let rest = batch.split_off(self.max_events);
            if let Err(Closed(mut unsent)) = self.send_within_capacity(batch).await {
                unsent.extend(rest);
                return Err(Closed(unsent));
            }
            batch = rest;
        }
        self.send_within_capacity(batch).await
    }

    async fn send_within_capacity(&self, batch: Batch) -> Result<(), Closed> {
        if batch.is_empty() {
            return Ok(());
        }
        let wanted = batch.len() as u32;
        let permit = match self.when_full {
            WhenFull::Block => match Arc::clone(&self.room).acquire_many_owned(wanted).await {
                Ok(permit) => permit,
                Err(_) => return Err(Closed(batch)),
            },
            WhenFull::DropNewest => match Arc::clone(&self.room).try_acquire_many_owned(wanted) {
                Ok(permit) => permit,
                Err(_) => {
                    self.gauges.discarded.increment(batch.len() as u64);
                    // Discarding was the user's explicit choice: settle so sources move on.
                    resolve_batch(batch, BatchStatus::Delivered);
                    return Ok(());
                }
            },
        };
        let len = batch.len();
        self.tx
            .send((batch, Some(permit)))
            .map_err(|mpsc::error::SendError((batch, _))| Closed(batch))?;
        self.gauges.events.increment(len as f64);
        Ok(())
    }

    /// A handle that lets the channel close when every strong sender is gone.
    pub fn downgrade(&self) -> WeakBufferSender {
        WeakBufferSender {
            tx: self.tx.downgrade(),
            room: Arc::clone(&self.room),
            max_events: self.max_events,
            when_full: self.when_full,
            gauges: Arc::clone(&self.gauges),
        }
    }

    /// True once the receiver is gone.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

impl WeakBufferSender {
    /// A strong sender, unless the channel already closed.
    pub fn upgrade(&self) -> Option<BufferSender> {
        Some(BufferSender {
            tx: self.tx.upgrade()?,
            room: Arc::clone(&self.room),
            max_events: self.max_events,
            when_full: self.when_full,
            gauges: Arc::clone(&self.gauges),
        })
    }
}

impl BufferReceiver {
    /// The next batch; `None` once every sender is gone and the buffer is empty.
    pub async fn recv(&mut self) -> Option<Batch> {
        let (batch, permit) = self.rx.recv().await?;
        drop(permit);
        self.gauges.events.decrement(batch.len() as f64);
        self.received.increment(batch.len() as u64);
        Some(batch)
    }

    /// The next batch if one is waiting, without blocking.
    pub fn try_recv(&mut self) -> Option<Batch> {
        let (batch, permit) = self.rx.try_recv().ok()?;
        drop(permit);
        self.gauges.events.decrement(batch.len() as f64);
        self.received.increment(batch.len() as u64);
        Some(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, attach_ack};
    use crate::metrics::ComponentKind;

    fn labels() -> ComponentLabels {
        ComponentLabels {
            id: "t".into(),
            kind: ComponentKind::Sink,
            type_name: "test".into(),
        }
    }

    fn batch(n: usize) -> Batch {
        (0..n).map(|i| Event::from_message(i.to_string())).collect()
    }

    #[tokio::test]
    async fn block_waits_for_room() {
        let config = BufferConfig {
            max_events: 3,
            ..BufferConfig::default()
        };
        let (tx, mut rx) = channel(&config, &labels());
        tx.send(batch(3)).await.expect("room for three");
        let pending = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send(batch(1)).await.is_ok() }
        });
        tokio::task::yield_now().await;
        assert!(!pending.is_finished(), "a full buffer must block");
        assert_eq!(rx.recv().await.map(|b| b.len()), Some(3));
        assert!(pending.await.expect("task"));
        assert_eq!(rx.recv().await.map(|b| b.len()), Some(1));
    }

    #[tokio::test]
    async fn a_batch_larger_than_the_buffer_goes_in_pieces() {
        let config = BufferConfig {
            max_events: 4,
            ..BufferConfig::default()
        };
        let (tx, mut rx) = channel(&config, &labels());
        let sending = tokio::spawn(async move { tx.send(batch(10)).await.is_ok() });
        let mut sizes = Vec::new();
        while let Some(b) = rx.recv().await {
            sizes.push(b.len());
        }
        assert!(sending.await.expect("task"));
        assert_eq!(sizes, vec![4, 4, 2]);
    }

    #[tokio::test]
    async fn drop_newest_discards_and_settles() {
        let config = BufferConfig {
            max_events: 2,
            when_full: WhenFull::DropNewest,
            ..BufferConfig::default()
        };
        let (tx, mut rx) = channel(&config, &labels());
        tx.send(batch(2)).await.expect("fits");
        let mut extra = batch(1);
        let receipt = attach_ack(&mut extra);
        tx.send(extra).await.expect("discarded, not an error");
        assert_eq!(receipt.await, BatchStatus::Delivered);
        assert_eq!(rx.recv().await.map(|b| b.len()), Some(2));
        assert!(rx.try_recv().is_none());
    }

    #[tokio::test]
    async fn closes_when_senders_are_gone() {
        let (tx, mut rx) = channel(&BufferConfig::default(), &labels());
        let weak = tx.downgrade();
        tx.send(batch(1)).await.expect("open");
        drop(tx);
        assert!(weak.upgrade().is_none());
        assert_eq!(rx.recv().await.map(|b| b.len()), Some(1));
        assert!(rx.recv().await.is_none());
    }
}
