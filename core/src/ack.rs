//! End-to-end acknowledgements.
//!
//! A source attaches one [`EventAck`] per event of a batch it emits and keeps the
//! [`AckReceipt`]. Every copy of an event (fan-out clones it) must be resolved: a sink
//! resolves it `Delivered` once the data is safely out, a transform that drops an event
//! on purpose resolves it `Delivered` too. A copy that is dropped unresolved (a closed
//! channel, a panic, an aborted task) counts as `Failed`, so forgetting can only cause a
//! re-read, never a loss. The receipt resolves when the last copy is gone.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::sync::oneshot;

/// The outcome of a batch: delivered only when every copy of every event was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchStatus {
    /// Every copy reached its sink (or was deliberately dropped).
    Delivered,
    /// At least one copy was not delivered.
    Failed,
}

struct Shared {
    failed: AtomicBool,
    notify: Mutex<Option<oneshot::Sender<BatchStatus>>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        let status = if self.failed.load(Ordering::Acquire) {
            BatchStatus::Failed
        } else {
            BatchStatus::Delivered
        };
        if let Ok(mut notify) = self.notify.lock()
            && let Some(tx) = notify.take()
        {
            let _ = tx.send(status);
        }
    }
}

/// One copy's share in a batch acknowledgement. Dropping it unresolved fails the batch.
pub struct EventAck {
    shared: Arc<Shared>,
    resolved: bool,
}

impl EventAck {
    /// Settles this copy; the batch is delivered when every copy settled `Delivered`.
    pub fn resolve(mut self, status: BatchStatus) {
        if status == BatchStatus::Failed {
            self.shared.failed.store(true, Ordering::Release);
        }
        self.resolved = true;
    }

    /// True when both acks belong to the same batch.
    pub fn same_batch(&self, other: &EventAck) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

impl Clone for EventAck {
    /// A clone is a new copy that must be resolved on its own.
    fn clone(&self) -> Self {
        EventAck {
            shared: Arc::clone(&self.shared),
            resolved: false,
        }
    }
}

impl Drop for EventAck {
    fn drop(&mut self) {
        if !self.resolved {
            self.shared.failed.store(true, Ordering::Release);
        }
    }
}

impl std::fmt::Debug for EventAck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventAck")
    }
}

/// Resolves to the batch's [`BatchStatus`] once every copy is settled.
pub struct AckReceipt {
    rx: oneshot::Receiver<BatchStatus>,
}

impl Future for AckReceipt {
    type Output = BatchStatus;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<BatchStatus> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(BatchStatus::Failed))
    }
}

/// Creates the first copy of a batch acknowledgement and its receipt.
pub fn batch_ack() -> (EventAck, AckReceipt) {
    let (tx, rx) = oneshot::channel();
    let shared = Arc::new(Shared {
        failed: AtomicBool::new(false),
        notify: Mutex::new(Some(tx)),
    });
    (
        EventAck {
            shared,
            resolved: false,
        },
        AckReceipt { rx },
    )
}

/// Acks collected from events a sink is about to deliver, with copies of the same batch
/// folded together (settling the group settles each member the same way).
#[derive(Default, Debug)]
pub struct AckSet {
    acks: Vec<EventAck>,
}

impl AckSet {
    /// Adds one copy, folding it into the last one when both share a batch.
    pub fn push(&mut self, ack: EventAck) {
        match self.acks.last() {
            Some(last) if last.same_batch(&ack) => ack.resolve(BatchStatus::Delivered),
            _ => self.acks.push(ack),
        }
    }

    /// Moves every ack of `other` into this set.
    pub fn extend(&mut self, other: AckSet) {
        for ack in other.acks {
            self.push(ack);
        }
    }

    /// Settles every copy in the set.
    pub fn resolve(self, status: BatchStatus) {
        for ack in self.acks {
            ack.resolve(status);
        }
    }

    /// True when the set holds no ack.
    pub fn is_empty(&self) -> bool {
        self.acks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn delivered_only_when_every_copy_is() {
        let (ack, receipt) = batch_ack();
        let copy = ack.clone();
        ack.resolve(BatchStatus::Delivered);
        copy.resolve(BatchStatus::Delivered);
        assert_eq!(receipt.await, BatchStatus::Delivered);
    }

    #[tokio::test]
    async fn one_failed_copy_fails_the_batch() {
        let (ack, receipt) = batch_ack();
        let copy = ack.clone();
        ack.resolve(BatchStatus::Delivered);
        copy.resolve(BatchStatus::Failed);
        assert_eq!(receipt.await, BatchStatus::Failed);
    }

    #[tokio::test]
    async fn an_unresolved_drop_fails_the_batch() {
        let (ack, receipt) = batch_ack();
        let copy = ack.clone();
        ack.resolve(BatchStatus::Delivered);
        drop(copy);
        assert_eq!(receipt.await, BatchStatus::Failed);
    }

    #[tokio::test]
    async fn folded_set_keeps_failure() {
        let (ack, receipt) = batch_ack();
        let mut set = AckSet::default();
        set.push(ack.clone());
        set.push(ack.clone());
        ack.resolve(BatchStatus::Delivered);
        assert_eq!(set.acks.len(), 1);
        set.resolve(BatchStatus::Failed);
        assert_eq!(receipt.await, BatchStatus::Failed);
    }
}
