//! The concurrency slots of one sink: a semaphore whose size follows the adaptive
//! controller (or stays fixed).
//!
//! Growing adds permits. Shrinking forgets the permits that are free at once and owes
//! the rest: each permit given back while a debt is owed is forgotten instead of
//! returned. So `permits − debt` always equals the limit, no permit is lost, and once a
//! decrease settles no more than the limit are held.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::adaptive::{Controller, Signal};
use super::config::Concurrency;
use super::metrics::DeliveryMetrics;

/// The slots of one sink; a [`Slot`] is one request's right to be sent.
pub(super) struct Slots {
    semaphore: Arc<Semaphore>,
    adaptive: Option<Mutex<Adaptive>>,
    metrics: DeliveryMetrics,
}

struct Adaptive {
    controller: Controller,
    /// Permits to forget as they come back, after a decrease found them held.
    debt: usize,
}

/// One held slot; dropping it gives it back (or pays a debt).
pub(super) struct Slot {
    permit: Option<OwnedSemaphorePermit>,
    slots: Arc<Slots>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            self.slots.give_back(permit);
        }
    }
}

impl Slots {
    /// Slots for `concurrency`, reporting the limit (and the averaged RTT) in `metrics`.
    pub(super) fn new(concurrency: Concurrency, metrics: DeliveryMetrics) -> Arc<Self> {
        let (limit, adaptive) = match concurrency {
            Concurrency::Fixed(n) => (n.max(1), None),
            Concurrency::Adaptive(config) => {
                let controller = Controller::new(config);
                (
                    controller.limit(),
                    Some(Mutex::new(Adaptive {
                        controller,
                        debt: 0,
                    })),
                )
            }
        };
        metrics.concurrency_limit.set(limit as f64);
        Arc::new(Slots {
            semaphore: Arc::new(Semaphore::new(limit)),
            adaptive,
            metrics,
        })
    }

    /// Waits for a free slot.
    pub(super) async fn acquire(self: &Arc<Self>) -> Result<Slot, AcquireError> {
        let permit = Arc::clone(&self.semaphore).acquire_owned().await?;
        Ok(Slot {
            permit: Some(permit),
            slots: Arc::clone(self),
        })
    }

    /// A request is being sent.
    pub(super) fn sending(&self) {
        if let Some(mut adaptive) = self.lock() {
            adaptive.controller.started();
        }
    }

    /// A request sent with [`Slots::sending`] finished, telling `signal`.
    pub(super) fn finished(&self, signal: Signal) {
        let Some(mut adaptive) = self.lock() else {
            return;
        };
        let before = adaptive.controller.limit();
        let after = adaptive.controller.finished(signal, Instant::now());
        if after != before {
            self.resize(&mut adaptive, before, after);
            tracing::debug!(
                from = before,
                to = after,
                "adaptive concurrency limit moved"
            );
        }
        if let Some(rtt) = adaptive.controller.average_rtt() {
            self.metrics.averaged_rtt.set(rtt.as_secs_f64());
        }
    }

    fn lock(&self) -> Option<MutexGuard<'_, Adaptive>> {
        // Nothing panics while holding the lock (plain arithmetic), so a poisoned lock
        // still holds consistent numbers.
        self.adaptive
            .as_ref()
            .map(|m| m.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    fn resize(&self, adaptive: &mut Adaptive, before: usize, after: usize) {
        if after > before {
            let grow = after - before;
            let repaid = grow.min(adaptive.debt);
            adaptive.debt -= repaid;
            self.semaphore.add_permits(grow - repaid);
        } else {
            let shrink = before - after;
            let forgotten = self.semaphore.forget_permits(shrink);
            adaptive.debt += shrink - forgotten;
        }
        self.metrics.concurrency_limit.set(after as f64);
    }

    fn give_back(&self, permit: OwnedSemaphorePermit) {
        match self.lock() {
            Some(mut adaptive) if adaptive.debt > 0 => {
                adaptive.debt -= 1;
                permit.forget();
            }
            // Returned while the lock is held, so a concurrent resize sees it.
            _ => drop(permit),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::adaptive::AdaptiveConcurrency;
    use super::*;
    use crate::metrics::{ComponentKind, ComponentLabels};

    fn slots(initial: usize) -> Arc<Slots> {
        let labels = ComponentLabels {
            id: "slots".into(),
            kind: ComponentKind::Sink,
            type_name: "slots".into(),
        };
        Slots::new(
            Concurrency::Adaptive(AdaptiveConcurrency {
                initial,
                ..AdaptiveConcurrency::default()
            }),
            DeliveryMetrics::new(&labels),
        )
    }

    fn set_limit(slots: &Slots, after: usize) {
        let mut adaptive = slots.lock().expect("adaptive");
        let before = adaptive.controller.limit();
        // The controller's own limit is not consulted by the semaphore bookkeeping.
        slots.resize(&mut adaptive, before, after);
        adaptive.controller = Controller::new(AdaptiveConcurrency {
            initial: after,
            ..AdaptiveConcurrency::default()
        });
    }

    fn try_take(slots: &Arc<Slots>) -> Option<Slot> {
        let permit = Arc::clone(&slots.semaphore).try_acquire_owned().ok()?;
        Some(Slot {
            permit: Some(permit),
            slots: Arc::clone(slots),
        })
    }

    fn take_all(slots: &Arc<Slots>) -> Vec<Slot> {
        std::iter::from_fn(|| try_take(slots)).collect()
    }

    fn debt(slots: &Slots) -> usize {
        slots.lock().expect("adaptive").debt
    }

    #[test]
    fn a_decrease_with_slots_held_settles_as_they_come_back() {
        let slots = slots(10);
        let mut held = take_all(&slots);
        assert_eq!(held.len(), 10);
        set_limit(&slots, 4);
        assert_eq!(debt(&slots), 6, "all ten are held: six are owed");
        // The first six given back pay the debt and free nothing.
        for _ in 0..6 {
            held.pop();
            assert!(try_take(&slots).is_none(), "still above the new limit");
        }
        assert_eq!(debt(&slots), 0);
        // Now four are held, the new limit: the next one given back is free again.
        held.pop();
        let again = try_take(&slots).expect("a free slot");
        assert!(try_take(&slots).is_none());
        drop(again);
        drop(held);
        assert_eq!(slots.semaphore.available_permits(), 4, "no permit lost");
    }

    #[test]
    fn a_decrease_with_slots_free_forgets_them_at_once() {
        let slots = slots(10);
        let held: Vec<Slot> = (0..3).map(|_| try_take(&slots).expect("slot")).collect();
        set_limit(&slots, 5);
        assert_eq!(debt(&slots), 0);
        assert_eq!(take_all(&slots).len(), 2, "five minus the three held");
        drop(held);
        assert_eq!(slots.semaphore.available_permits(), 5);
    }

    #[test]
    fn an_increase_repays_the_debt_first() {
        let slots = slots(8);
        let mut held = take_all(&slots);
        set_limit(&slots, 2);
        assert_eq!(debt(&slots), 6);
        set_limit(&slots, 5);
        assert_eq!(debt(&slots), 3, "three of the six owed are no longer owed");
        assert!(try_take(&slots).is_none(), "eight held, limit five");
        held.truncate(4);
        assert!(try_take(&slots).is_some(), "four held, limit five");
        drop(held);
        assert_eq!(slots.semaphore.available_permits(), 5);
        set_limit(&slots, 7);
        assert_eq!(slots.semaphore.available_permits(), 7);
    }

    #[test]
    fn a_fixed_limit_never_moves() {
        let labels = ComponentLabels {
            id: "fixed".into(),
            kind: ComponentKind::Sink,
            type_name: "fixed".into(),
        };
        let slots = Slots::new(Concurrency::Fixed(3), DeliveryMetrics::new(&labels));
        slots.sending();
        slots.finished(Signal::BackPressure);
        assert_eq!(take_all(&slots).len(), 3);
    }
}
