//! The settler: awaits each emitted blob's acknowledgement in the order the blobs were
//! emitted and moves the cursor over the delivered ones; a blob that was not delivered
//! holds the cursor before it until it is listed and fetched again.

use siemflow_core::{AckReceipt, BatchStatus};
use tokio::sync::mpsc;

use super::Feed;
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
    /// Awaits each blob's outcome in the order emitted and moves the cursor.
    pub(super) async fn settle_loop(&self, mut settle: mpsc::Receiver<Settle>) {
        while let Some(Settle {
            descriptor,
            settlement,
        }) = settle.recv().await
        {
            let delivered = match settlement {
                Settlement::Receipt(receipt) => receipt.await == BatchStatus::Delivered,
                Settlement::Done => true,
                Settlement::Retry => false,
            };
            if delivered {
                self.with_cursor(|c| c.processed(&descriptor));
            } else {
                self.with_cursor(|c| c.failed(&descriptor));
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
}
