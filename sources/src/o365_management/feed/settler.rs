//! The settler: awaits the emitted blobs' acknowledgements in whatever order they come
//! and hands each outcome to the cursor, whose ordered settlement moves it only over the
//! settled prefix; a blob that was not delivered holds the cursor before it until it is
//! listed and fetched again.

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use siemflow_core::{AckReceipt, BatchStatus};
use tokio::sync::mpsc;

use super::{Feed, UNSETTLED_BLOBS};
use crate::o365_management::listing::Descriptor;

/// How a blob is settled.
pub(super) enum Settlement {
    /// Emitted: delivered or failed, as its receipt says.
    Receipt(AckReceipt),
    /// Nothing to deliver, now or ever (empty, skipped).
    Done,
    /// Not fetched: list and fetch it again later.
    Retry,
}

/// One blob's outcome, in the order the fetcher emitted it.
pub(super) struct Settle {
    /// The blob.
    pub descriptor: Descriptor,
    /// What became of it.
    pub settlement: Settlement,
}

impl Feed {
    /// Settles each blob as its outcome is known, until the fetcher is done and every
    /// receipt resolved.
    pub(super) async fn settle_loop(&self, mut settle: mpsc::Receiver<Settle>) {
        let mut receipts = FuturesUnordered::new();
        let mut open = true;
        while open || !receipts.is_empty() {
            tokio::select! {
                // Beyond UNSETTLED_BLOBS unresolved receipts the fetcher waits (its channel
                // fills): that bounds what a slow sink keeps in flight.
                next = settle.recv(), if open && receipts.len() < UNSETTLED_BLOBS => match next {
                    Some(Settle { descriptor, settlement }) => match settlement {
                        Settlement::Receipt(receipt) => {
                            receipts.push(async move { (descriptor, receipt.await) });
                        }
                        Settlement::Done => self.settled(&descriptor, true),
                        Settlement::Retry => self.settled(&descriptor, false),
                    },
                    None => open = false,
                },
                Some((descriptor, status)) = receipts.next(), if !receipts.is_empty() => {
                    self.settled(&descriptor, status == BatchStatus::Delivered);
                }
            }
        }
    }

    fn settled(&self, descriptor: &Descriptor, delivered: bool) {
        if delivered {
            self.with_cursor(|c| c.processed(descriptor));
        } else {
            self.with_cursor(|c| c.failed(descriptor));
            if !self.shutdown.is_cancelled() {
                tracing::warn!(
                    tenant_id = %self.client.tenant_id,
                    content_type = %self.content_type,
                    content_id = %descriptor.content_id,
                    "a blob was not delivered; the cursor stays before it and it is fetched again at the next poll"
                );
            }
            self.component.labels.error("delivery_failed", "sending");
        }
        self.update_lag();
    }
}
