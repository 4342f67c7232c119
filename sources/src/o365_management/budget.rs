//! The per-tenant request budget: a token bucket (GCRA) that keeps the source under the
//! API's per-minute quota by design, plus a tenant-wide pause after throttling.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

/// Paces one tenant's requests so that no 60-second span holds more than the quota.
#[derive(Debug)]
pub(crate) struct RequestBudget {
    /// One request per interval, sustained.
    interval: Duration,
    /// How far ahead of the sustained schedule a burst may run: (burst − 1) × interval.
    burst_allowance: Duration,
    requests_per_minute: u32,
    state: Mutex<BucketState>,
}

#[derive(Debug)]
struct BucketState {
    /// Theoretical arrival time of the next request on the sustained schedule.
    next_slot: Instant,
    /// No request leaves before this (after an AF429).
    paused_until: Instant,
}

impl RequestBudget {
    /// A budget of `requests_per_minute`.
    ///
    /// The sustained rate leaves room for the burst and for the same again as slack for
    /// requests that arrive a little late at the server, so that even a server that counts
    /// fixed minutes never sees more than the quota: burst − 1 + sustained ≤ quota.
    pub(crate) fn per_minute(requests_per_minute: u32) -> Self {
        let quota = requests_per_minute.max(1);
        let burst = (quota / 200).clamp(1, 50);
        let sustained = quota.saturating_sub(2 * burst).max(quota / 2).max(1);
        let interval = Duration::from_secs(60) / sustained;
        let now = Instant::now();
        RequestBudget {
            interval,
            burst_allowance: interval * (burst - 1),
            requests_per_minute: quota,
            state: Mutex::new(BucketState {
                next_slot: now,
                paused_until: now,
            }),
        }
    }

    /// The configured quota.
    pub(crate) fn requests_per_minute(&self) -> u32 {
        self.requests_per_minute
    }

    /// Waits for this request's slot. Waiters reserve slots in arrival order.
    pub(crate) async fn acquire(&self) {
        loop {
            let start = {
                let mut state = self.lock();
                let now = Instant::now();
                if state.paused_until > now {
                    Err(state.paused_until)
                } else {
                    let slot = state.next_slot.max(now);
                    let allowed_at = slot
                        .checked_sub(self.burst_allowance)
                        .unwrap_or(now)
                        .max(now);
                    state.next_slot = slot + self.interval;
                    Ok(allowed_at)
                }
            };
            match start {
                Ok(at) => {
                    tokio::time::sleep_until(at).await;
                    // A pause that began while this request waited holds it back too.
                    if self.lock().paused_until <= Instant::now() {
                        return;
                    }
                }
                Err(until) => tokio::time::sleep_until(until).await,
            }
        }
    }

    /// Holds every request of this tenant back for `wait` (after throttling).
    pub(crate) fn pause(&self, wait: Duration) {
        let mut state = self.lock();
        let until = Instant::now() + wait;
        if until > state.paused_until {
            state.paused_until = until;
        }
        // Restart the schedule after the pause without a burst of saved-up slots.
        if state.next_slot < state.paused_until {
            state.next_slot = state.paused_until;
        }
    }

    fn lock(&self) -> MutexGuard<'_, BucketState> {
        // Every update is a plain assignment: a poisoned lock still holds usable times.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// The most request start times inside any 60-second span.
    fn busiest_minute(times: &[Duration]) -> usize {
        let mut most = 0;
        let mut first = 0;
        for (last, t) in times.iter().enumerate() {
            while *t - times[first] >= Duration::from_secs(60) {
                first += 1;
            }
            most = most.max(last - first + 1);
        }
        most
    }

    #[tokio::test(start_paused = true)]
    async fn never_more_than_the_quota_in_any_minute_and_close_to_it() {
        for quota in [1u32, 2, 60, 500, 2000] {
            let budget = Arc::new(RequestBudget::per_minute(quota));
            let begin = Instant::now();
            let mut times = Vec::new();
            for _ in 0..(quota as usize * 3) {
                budget.acquire().await;
                times.push(Instant::now() - begin);
            }
            let most = busiest_minute(&times);
            assert!(
                most <= quota as usize,
                "quota {quota}: {most} in one minute"
            );
            if quota >= 60 {
                assert!(
                    most as f64 >= quota as f64 * 0.95,
                    "quota {quota}: only {most} in the busiest minute"
                );
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_waiters_share_the_budget() {
        let budget = Arc::new(RequestBudget::per_minute(600));
        let begin = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let budget = budget.clone();
            tasks.push(tokio::spawn(async move {
                let mut times = Vec::new();
                for _ in 0..150 {
                    budget.acquire().await;
                    times.push(Instant::now() - begin);
                }
                times
            }));
        }
        let mut times = Vec::new();
        for task in tasks {
            times.extend(task.await.expect("task"));
        }
        times.sort();
        assert!(busiest_minute(&times) <= 600);
        assert!(busiest_minute(&times) >= 570);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_every_request_back() {
        let budget = RequestBudget::per_minute(6000);
        budget.acquire().await;
        let begin = Instant::now();
        budget.pause(Duration::from_secs(30));
        budget.acquire().await;
        assert!(Instant::now() - begin >= Duration::from_secs(30));
        // A shorter pause does not shorten a longer one.
        budget.pause(Duration::from_secs(20));
        budget.pause(Duration::from_secs(5));
        let begin = Instant::now();
        budget.acquire().await;
        assert!(Instant::now() - begin >= Duration::from_secs(20));
    }
}
