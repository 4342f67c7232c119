//! The fetcher: downloads the admitted blobs concurrently (within the tenant's fetch
//! slots), emits their records in listing order with one acknowledgement per blob, and
//! hands each blob's outcome to the settler.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures_util::StreamExt as _;
use siemflow_core::event::attach_ack;
use tokio::sync::mpsc;

use super::settler::{Settle, Settlement};
use super::{Feed, SkipReason, config_advice};
use crate::microsoft::ApiError;
use crate::o365_management::client::Endpoint;
use crate::o365_management::listing::Descriptor;
use crate::o365_management::records::{BlobOrigin, DecodedBlob, decode_blob};

/// Decoding a blob larger than this moves to a blocking thread, off the async workers.
const DECODE_INLINE_BYTES: usize = 1 << 20;

/// A fetch's outcome, handed to the emitter in listing order.
enum Fetched {
    Blob {
        descriptor: Descriptor,
        decoded: DecodedBlob,
        bytes: usize,
    },
    Skipped {
        descriptor: Descriptor,
        reason: SkipReason,
        detail: String,
    },
    Failed {
        descriptor: Descriptor,
        error: ApiError,
    },
    /// Stopping: the blob stays pending, so the cursor stays below it.
    Stopped,
}

impl Feed {
    pub(super) async fn fetch_loop(
        self: &Arc<Self>,
        listed: mpsc::Receiver<Descriptor>,
        settle: mpsc::Sender<Settle>,
    ) {
        let descriptors = futures_util::stream::unfold(listed, |mut rx| async move {
            rx.recv().await.map(|d| (d, rx))
        });
        // Spawned, so that fetches progress (and decode on other cores) while this loop
        // waits on a full output; `buffered` keeps listing order and bounds how many.
        let fetched = descriptors
            .map(|descriptor| tokio::spawn(Arc::clone(self).fetch(descriptor)))
            .buffered(self.settings.max_concurrent_fetches);
        let mut fetched = std::pin::pin!(fetched);
        loop {
            let joined = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => break,
                next = fetched.next() => match next {
                    Some(joined) => joined,
                    None => break,
                },
            };
            match joined {
                Ok(outcome) => self.forward(outcome, &settle).await,
                Err(error) => {
                    // Its blob stays pending: the cursor cannot pass it, a restart fetches it.
                    tracing::error!(
                        tenant_id = %self.client.tenant_id,
                        content_type = %self.content_type,
                        %error,
                        "a blob fetch task failed"
                    );
                    self.component.labels.error("fetch_panicked", "receiving");
                }
            }
        }
    }

    async fn fetch(self: Arc<Self>, descriptor: Descriptor) -> Fetched {
        let _slot = tokio::select! {
            biased;
            _ = self.shutdown.cancelled() => return Fetched::Stopped,
            slot = self.fetch_slots.acquire() => match slot {
                Ok(slot) => slot,
                Err(_) => return Fetched::Stopped,
            },
        };
        if descriptor.content_expiration <= self.now() {
            return Fetched::Skipped {
                descriptor,
                reason: SkipReason::Expired,
                detail: "its contentExpiration passed before it could be fetched".into(),
            };
        }
        let url = match self.client.url(Endpoint::Blob, &descriptor.content_uri) {
            Ok(url) => url,
            // Not given up on: the blob stays pending (the cursor below it) until the
            // configuration is fixed or its content expires.
            Err(error @ ApiError::ForeignOrigin { .. }) => {
                return Fetched::Failed { descriptor, error };
            }
            Err(error) => {
                return Fetched::Skipped {
                    descriptor,
                    reason: SkipReason::InvalidUri,
                    detail: error.to_string(),
                };
            }
        };
        let answer = self
            .client
            .get(
                Endpoint::Blob,
                url,
                self.settings.max_blob_bytes,
                &self.shutdown,
            )
            .await;
        let answer = match answer {
            Ok(answer) => answer,
            Err(ApiError::Cancelled) => return Fetched::Stopped,
            Err(error) => {
                let reason = if matches!(error, ApiError::TooLarge { .. }) {
                    Some(SkipReason::TooLarge)
                } else if error.code_is(&["AF20050"]) {
                    Some(SkipReason::Missing)
                } else if error.code_is(&["AF20051"]) {
                    Some(SkipReason::Expired)
                } else if error.code_is(&["AF20052"]) {
                    Some(SkipReason::InvalidId)
                } else {
                    None
                };
                return match reason {
                    Some(reason) => Fetched::Skipped {
                        descriptor,
                        reason,
                        detail: error.to_string(),
                    },
                    None => Fetched::Failed { descriptor, error },
                };
            }
        };
        let origin = BlobOrigin {
            tenant_id: self.client.tenant_id.clone(),
            content_type: self.content_type.clone(),
            content_id: descriptor.content_id.clone(),
            content_created: descriptor.content_created,
            fetched_at: self.now(),
        };
        let bytes = answer.body.len();
        let decoded = if bytes > DECODE_INLINE_BYTES {
            let body = answer.body;
            match tokio::task::spawn_blocking(move || decode_blob(&body, &origin)).await {
                Ok(decoded) => decoded,
                Err(error) => {
                    return Fetched::Failed {
                        descriptor,
                        error: ApiError::Malformed {
                            endpoint: "blob",
                            detail: format!("decoding failed: {error}"),
                        },
                    };
                }
            }
        } else {
            decode_blob(&answer.body, &origin)
        };
        Fetched::Blob {
            descriptor,
            decoded,
            bytes,
        }
    }

    /// Emits a fetched blob (waiting for room downstream) and queues its settlement.
    async fn forward(&self, outcome: Fetched, settle: &mpsc::Sender<Settle>) {
        let (descriptor, settlement) = match outcome {
            Fetched::Stopped => return,
            Fetched::Skipped {
                descriptor,
                reason,
                detail,
            } => {
                self.skipped(reason, &descriptor.content_id, &detail);
                (descriptor, Settlement::Done)
            }
            Fetched::Failed { descriptor, error } => {
                if error.is_config() {
                    tracing::error!(
                        tenant_id = %self.client.tenant_id,
                        content_type = %self.content_type,
                        content_id = %descriptor.content_id,
                        %error,
                        "fetching a blob failed: {}; it is fetched again at a later poll",
                        config_advice(&error)
                    );
                    self.component.labels.error("config", "receiving");
                } else {
                    tracing::warn!(
                        tenant_id = %self.client.tenant_id,
                        content_type = %self.content_type,
                        content_id = %descriptor.content_id,
                        %error,
                        "fetching a blob failed; it is fetched again at a later poll"
                    );
                    self.component.labels.error("fetch_failed", "receiving");
                }
                (descriptor, Settlement::Retry)
            }
            Fetched::Blob {
                descriptor,
                decoded,
                bytes,
            } => {
                self.blobs_fetched.increment(1);
                self.component.received_bytes.increment(bytes as u64);
                let DecodedBlob {
                    mut events,
                    not_objects,
                    not_an_array,
                } = decoded;
                self.count_malformed(&descriptor, not_objects, not_an_array);
                let count = events.len() as u64;
                self.component.received_events.increment(count);
                if events.is_empty() {
                    (descriptor, Settlement::Done)
                } else {
                    let receipt = attach_ack(&mut events);
                    // Dropping the batch on shutdown fails its receipt: fetched again next run.
                    tokio::select! {
                        biased;
                        _ = self.shutdown.cancelled() => {}
                        _ = self.out.send(events) => {
                            self.records_emitted.fetch_add(count, Ordering::Relaxed);
                        }
                    }
                    (descriptor, Settlement::Receipt(receipt))
                }
            }
        };
        let _ = settle
            .send(Settle {
                descriptor,
                settlement,
            })
            .await;
    }

    fn count_malformed(&self, d: &Descriptor, not_objects: usize, not_an_array: Option<String>) {
        if not_objects > 0 {
            tracing::warn!(
                tenant_id = %self.client.tenant_id,
                content_type = %self.content_type,
                content_id = %d.content_id,
                entries = not_objects,
                "blob entries that are not JSON objects were kept as `message` events"
            );
            self.component
                .labels
                .counter(
                    "component_errors_total",
                    &[
                        ("error_type", "record_not_an_object"),
                        ("stage", "receiving"),
                    ],
                )
                .increment(not_objects as u64);
        }
        if let Some(detail) = not_an_array {
            tracing::warn!(
                tenant_id = %self.client.tenant_id,
                content_type = %self.content_type,
                content_id = %d.content_id,
                detail,
                "a blob that is not a JSON array was kept whole as one `message` event"
            );
            self.component
                .labels
                .error("blob_not_an_array", "receiving");
        }
    }
}
