//! The in-memory, event-counted buffer.
//!
//! Capacity is counted in events, not batches, so `max_events` means what it says. A full
//! buffer either blocks the sender (backpressure that reaches the sources) or discards
//! the newest batch, counted, as the user chose.

use std::sync::Arc;

use metrics::{Counter, Gauge};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use super::{Closed, WhenFull};
use crate::ack::BatchStatus;
use crate::event::{Batch, resolve_batch};
use crate::metrics::ComponentLabels;

struct Gauges {
    events: Gauge,
    discarded: Counter,
}

type Message = (Batch, Option<OwnedSemaphorePermit>);

/// The sending half; cheap to clone.
#[derive(Clone)]
pub(super) struct Sender {
    tx: mpsc::UnboundedSender<Message>,
    room: Arc<Semaphore>,
    max_events: usize,
    when_full: WhenFull,
    gauges: Arc<Gauges>,
}

/// A sender that does not keep the channel open.
#[derive(Clone)]
pub(super) struct WeakSender {
    tx: mpsc::WeakUnboundedSender<Message>,
    room: Arc<Semaphore>,
    max_events: usize,
    when_full: WhenFull,
    gauges: Arc<Gauges>,
}

/// The receiving half.
pub(super) struct Receiver {
    rx: mpsc::UnboundedReceiver<Message>,
    gauges: Arc<Gauges>,
    received: Counter,
}

/// Creates a buffer of `max_events` for the component with these labels.
pub(super) fn channel(
    max_events: usize,
    when_full: WhenFull,
    labels: &ComponentLabels,
) -> (Sender, Receiver) {
    let max_events = max_events.max(1);
    let (tx, rx) = mpsc::unbounded_channel();
    labels
        .gauge("buffer_max_events", &[])
        .set(max_events as f64);
    let gauges = Arc::new(Gauges {
        events: labels.gauge("buffer_events", &[]),
        discarded: labels.counter("buffer_discarded_events_total", &[]),
    });
    let sender = Sender {
        tx,
        room: Arc::new(Semaphore::new(max_events)),
        max_events,
        when_full,
        gauges: Arc::clone(&gauges),
    };
    let receiver = Receiver {
        rx,
        gauges,
        received: labels.counter("component_received_events_total", &[]),
    };
    (sender, receiver)
}

impl Sender {
    /// Queues a batch, waiting for room (or discarding it when `drop_newest`). A batch
    /// larger than the whole buffer is queued in pieces, so `max_events` is never exceeded.
    pub(super) async fn send(&self, mut batch: Batch) -> Result<(), Closed> {
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
    pub(super) fn downgrade(&self) -> WeakSender {
        WeakSender {
            tx: self.tx.downgrade(),
            room: Arc::clone(&self.room),
            max_events: self.max_events,
            when_full: self.when_full,
            gauges: Arc::clone(&self.gauges),
        }
    }

    /// True once the receiver is gone.
    pub(super) fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

impl WeakSender {
    /// A strong sender, unless the channel already closed.
    pub(super) fn upgrade(&self) -> Option<Sender> {
        Some(Sender {
            tx: self.tx.upgrade()?,
            room: Arc::clone(&self.room),
            max_events: self.max_events,
            when_full: self.when_full,
            gauges: Arc::clone(&self.gauges),
        })
    }
}

impl Receiver {
    /// The next batch; `None` once every sender is gone and the buffer is empty.
    pub(super) async fn recv(&mut self) -> Option<Batch> {
        let (batch, permit) = self.rx.recv().await?;
        Some(self.taken(batch, permit))
    }

    /// The next batch if one is waiting, without blocking.
    pub(super) fn try_recv(&mut self) -> Option<Batch> {
        let (batch, permit) = self.rx.try_recv().ok()?;
        Some(self.taken(batch, permit))
    }

    fn taken(&self, batch: Batch, permit: Option<OwnedSemaphorePermit>) -> Batch {
        drop(permit);
        self.gauges.events.decrement(batch.len() as f64);
        self.received.increment(batch.len() as u64);
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::super::{BufferConfig, channel};
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
