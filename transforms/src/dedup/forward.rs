//! Acknowledgement forwarding: a key becomes "seen" only once an event carrying it was
//! delivered downstream, so a copy that fails and is re-read is never dropped as a repeat.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use metrics::{Counter, Gauge};
use siemflow_core::ack::{AckReceipt, BatchStatus, EventAck};
use siemflow_core::metrics::ComponentLabels;

use super::Clock;
use super::seen::{Key, SeenSet};

/// Sweeps expired keys once every this many flushes (flushes run every second).
const SWEEP_EVERY: u64 = 60;

/// A key emitted downstream whose delivery is not yet known.
pub(super) struct Pending {
    /// When the original arrived: the key's first-seen time once delivered.
    pub first_seen: u64,
    /// Acks of duplicates dropped meanwhile; they share the original's outcome.
    pub held: Vec<EventAck>,
}

/// What the transform and its acknowledgement tasks share.
pub(super) struct State {
    /// Delivered keys.
    pub seen: SeenSet,
    /// Keys in flight.
    pub pending: HashMap<Key, Pending>,
}

/// The shared state with its clock and metrics.
pub(super) struct Shared {
    state: Mutex<State>,
    /// Unix seconds; injectable for tests.
    pub clock: Clock,
    metrics: DedupMetrics,
}

impl Shared {
    /// Wraps the state.
    pub(super) fn new(state: State, clock: Clock, labels: &ComponentLabels) -> Self {
        Shared {
            state: Mutex::new(state),
            clock,
            metrics: DedupMetrics::new(labels),
        }
    }

    /// Locks the state; a panic elsewhere never makes it unusable.
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts a store failure; dedup then errs towards passing events (a repeat, not a loss).
    pub(super) fn store_error(&self, error: &anyhow::Error) {
        tracing::error!(error = format!("{error:#}"), "dedup: seen-set store failed");
        self.metrics.labels.error("store_failed", "processing");
    }

    /// Counts dropped duplicates.
    pub(super) fn duplicates(&self, count: u64) {
        if count > 0 {
            self.metrics.labels.discarded("duplicate", count);
            self.metrics.duplicates.increment(count);
        }
    }

    /// Counts events lacking a key field; dropped ones are also counted as discarded.
    pub(super) fn missing(&self, count: u64, dropped: bool) {
        if count > 0 {
            self.metrics.missing.increment(count);
            if dropped {
                self.metrics.labels.discarded("missing_key", count);
            }
        }
    }

    /// Flushes (and now and then sweeps) the seen-set, then refreshes the gauges. The
    /// disk write runs without the state lock so the transform is not held up by fsync.
    pub(super) fn maintain(&self, sweep: bool) {
        let now = (self.clock)();
        let job = self.lock().seen.take_flush();
        if let Some(job) = job {
            match job.write() {
                Ok(disk_keys) => self.lock().seen.flushed(disk_keys),
                Err(error) => self.store_error(&error),
            }
        }
        let mut state = self.lock();
        if sweep && let Err(error) = state.seen.sweep(now) {
            self.store_error(&error);
        }
        self.metrics.update(&state);
    }

    /// Settles one emitted batch once its receipt resolves.
    pub(super) async fn settle(
        self: Arc<Self>,
        receipt: AckReceipt,
        keys: Vec<Key>,
        originals: Vec<EventAck>,
    ) {
        let status = receipt.await;
        let mut held = Vec::new();
        {
            let mut state = self.lock();
            for key in keys {
                let Some(pending) = state.pending.remove(&key) else {
                    continue;
                };
                if status == BatchStatus::Delivered
                    && let Err(error) = state.seen.insert(key, pending.first_seen)
                {
                    self.store_error(&error);
                }
                held.extend(pending.held);
            }
        }
        // Let go of the store before the sources hear back, so whoever waits on them
        // (a test, a reload) can reopen it at once.
        drop(self);
        for ack in held.into_iter().chain(originals) {
            ack.resolve(status);
        }
    }
}

/// Flushes once a second and sweeps once a minute until the transform and its
/// acknowledgement tasks are gone.
pub(super) fn spawn_maintenance(shared: Weak<Shared>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut count = 0u64;
        loop {
            tick.tick().await;
            let Some(shared) = shared.upgrade() else {
                return;
            };
            count += 1;
            // The store may be slow (fsync): keep it off the async worker's hot path.
            let sweep = count.is_multiple_of(SWEEP_EVERY);
            let _ = tokio::task::spawn_blocking(move || shared.maintain(sweep)).await;
        }
    });
}

/// The dedup-specific metrics.
struct DedupMetrics {
    labels: ComponentLabels,
    duplicates: Counter,
    missing: Counter,
    keys_in_memory: Gauge,
    keys_on_disk: Gauge,
    keys_pending: Gauge,
    memory_bytes: Gauge,
    disk_bytes: Gauge,
}

impl DedupMetrics {
    fn new(labels: &ComponentLabels) -> Self {
        DedupMetrics {
            duplicates: labels.counter("dedup_duplicates_dropped_total", &[]),
            missing: labels.counter("dedup_missing_key_events_total", &[]),
            keys_in_memory: labels.gauge("dedup_keys_in_memory", &[]),
            keys_on_disk: labels.gauge("dedup_keys_on_disk", &[]),
            keys_pending: labels.gauge("dedup_keys_pending", &[]),
            memory_bytes: labels.gauge("dedup_memory_bytes", &[]),
            disk_bytes: labels.gauge("dedup_disk_bytes", &[]),
            labels: labels.clone(),
        }
    }

    fn update(&self, state: &State) {
        let seen = &state.seen;
        self.keys_in_memory.set(seen.keys_in_memory() as f64);
        self.keys_on_disk.set(seen.keys_on_disk() as f64);
        self.keys_pending.set(state.pending.len() as f64);
        self.memory_bytes
            .set((seen.memory_bytes() + seen.unflushed_bytes()) as f64);
        self.disk_bytes.set(seen.disk_bytes() as f64);
    }
}
