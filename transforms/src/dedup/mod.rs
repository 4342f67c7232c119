//! `dedup`: drops events whose key was already delivered within a time window. The
//! seen-set survives restarts and its memory is bounded; see `docs/transforms/dedup.md`.

mod config;
mod forward;
mod seen;
#[cfg(test)]
mod tests;

pub use config::{DedupConfig, MissingKey};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use siemflow_core::ack::{BatchStatus, batch_ack};
use siemflow_core::{Batch, Transform, TransformContext, TransformOutputs, Value};
use vrl::path::OwnedValuePath;
use xxhash_rust::xxh3::xxh3_128;

use forward::{Shared, State};
use seen::{Key, SeenSet};

/// "Now" in Unix seconds; a function so tests can move time.
pub(crate) type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The wall clock.
pub(crate) fn system_clock() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(1)
}

/// The running dedup transform.
pub struct Dedup {
    paths: Vec<OwnedValuePath>,
    missing_key: MissingKey,
    shared: Arc<Shared>,
    maintenance_started: bool,
    buf: Vec<u8>,
}

impl Dedup {
    fn new(
        config: &DedupConfig,
        paths: Vec<OwnedValuePath>,
        cx: &TransformContext,
        clock: Clock,
    ) -> anyhow::Result<Self> {
        let seen = SeenSet::open(
            &cx.component.state_dir,
            config.memory_budget,
            config.window,
            clock(),
        )?;
        let state = State {
            seen,
            pending: HashMap::new(),
        };
        let shared = Arc::new(Shared::new(state, clock, &cx.component.metrics.labels));
        shared.maintain(false);
        Ok(Dedup {
            paths,
            missing_key: config.missing_key,
            shared,
            maintenance_started: false,
            buf: Vec::new(),
        })
    }

    /// The key of an event: xxh3-128 of its key fields, each length-prefixed so that
    /// `["ab","c"]` and `["a","bc"]` differ. `None` when a field is missing or null.
    fn key_of(&mut self, value: &Value) -> Option<Key> {
        self.buf.clear();
        for path in &self.paths {
            match value.get(path) {
                None | Some(Value::Null) => return None,
                Some(Value::Bytes(bytes)) => {
                    self.buf.push(b's');
                    self.buf
                        .extend_from_slice(&(bytes.len() as u64).to_le_bytes());
                    self.buf.extend_from_slice(bytes);
                }
                Some(other) => {
                    // Objects serialize with sorted keys, so this JSON is canonical.
                    self.buf.push(b'j');
                    let at = self.buf.len();
                    self.buf.extend_from_slice(&[0; 8]);
                    let _ = serde_json::to_writer(&mut self.buf, other);
                    let len = (self.buf.len() - at - 8) as u64;
                    self.buf[at..at + 8].copy_from_slice(&len.to_le_bytes());
                }
            }
        }
        Some(xxh3_128(&self.buf))
    }
}

impl Transform for Dedup {
    fn transform(&mut self, batch: Batch, out: &mut TransformOutputs) {
        let runtime = tokio::runtime::Handle::try_current().ok();
        if !self.maintenance_started && runtime.is_some() {
            forward::spawn_maintenance(Arc::downgrade(&self.shared));
            self.maintenance_started = true;
        }
        let now = (self.shared.clock)();
        let keys: Vec<Option<Key>> = batch.iter().map(|e| self.key_of(&e.value)).collect();
        let (ack, receipt) = batch_ack();
        let mut new_keys = Vec::new();
        let mut originals = Vec::new();
        let (mut duplicates, mut missing) = (0u64, 0u64);
        {
            let mut state = self.shared.lock();
            let seen = state.seen.lookup(&keys, now).unwrap_or_else(|error| {
                self.shared.store_error(&error);
                vec![false; keys.len()]
            });
            for ((mut event, key), seen) in batch.into_iter().zip(keys).zip(seen) {
                let Some(key) = key else {
                    missing += 1;
                    match self.missing_key {
                        MissingKey::Pass => out.push(event),
                        MissingKey::Drop => event.deliver(),
                    }
                    continue;
                };
                if let Some(pending) = state.pending.get_mut(&key) {
                    // Its original is in flight: this copy shares its fate.
                    pending.held.extend(event.ack.take());
                    duplicates += 1;
                } else if seen {
                    event.deliver();
                    duplicates += 1;
                } else if runtime.is_none() {
                    // No runtime to await deliveries (never the case in a pipeline):
                    // count the key as seen at once rather than not deduplicating.
                    if let Err(error) = state.seen.insert(key, now) {
                        self.shared.store_error(&error);
                    }
                    out.push(event);
                } else {
                    state.pending.insert(
                        key,
                        forward::Pending {
                            first_seen: now,
                            held: Vec::new(),
                        },
                    );
                    new_keys.push(key);
                    originals.extend(event.ack.replace(ack.clone()));
                    out.push(event);
                }
            }
        }
        // The template share only spawned the clones.
        ack.resolve(BatchStatus::Delivered);
        self.shared.duplicates(duplicates);
        self.shared
            .missing(missing, self.missing_key == MissingKey::Drop);
        if let Some(runtime) = runtime
            && !new_keys.is_empty()
        {
            runtime.spawn(Arc::clone(&self.shared).settle(receipt, new_keys, originals));
        }
    }

    fn finish(&mut self, _out: &mut TransformOutputs) {
        self.shared.maintain(false);
    }
}
