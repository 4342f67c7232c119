//! The simulators' request limits: sliding windows of admitted request times per caller
//! key, each key held to one or more limits at once (Graph's 150 in any 60 s under
//! `/security` and 5 in any 10 s for the identity reports, Defender for Endpoint's 100 a
//! minute and 1,500 an hour, Defender for Cloud Apps' 30 a minute).

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::Mutex;

use crate::state::lock;

/// One limit: at most `requests` admitted in any `per_ms` milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    pub(crate) requests: u32,
    pub(crate) per_ms: i64,
}

/// Admitted request times per caller key, pruned to the longest window.
#[derive(Debug)]
pub(crate) struct SlidingWindows<K> {
    admitted: Mutex<HashMap<K, VecDeque<i64>>>,
}

impl<K> Default for SlidingWindows<K> {
    fn default() -> Self {
        Self {
            admitted: Mutex::default(),
        }
    }
}

impl<K: Hash + Eq> SlidingWindows<K> {
    /// Admits a request of `key` at `now_ms` when every limit has room; otherwise returns
    /// the seconds until all of them do (for `Retry-After`).
    pub(crate) fn admit(&self, key: K, now_ms: i64, limits: &[Window]) -> Result<(), u64> {
        let mut admitted = lock(&self.admitted);
        let times = admitted.entry(key).or_default();
        let longest = limits.iter().map(|l| l.per_ms).max().unwrap_or_default();
        while times.front().is_some_and(|t| *t <= now_ms - longest) {
            times.pop_front();
        }
        let mut wait_ms = 0;
        for limit in limits {
            let inside = times
                .iter()
                .rev()
                .take_while(|t| **t > now_ms - limit.per_ms)
                .count();
            if inside >= limit.requests as usize {
                // The oldest of the last `requests` admitted leaves the window first.
                let oldest = match limit.requests as usize {
                    0 => now_ms,
                    n => times[times.len() - n],
                };
                wait_ms = wait_ms.max((oldest + limit.per_ms - now_ms).max(1));
            }
        }
        if wait_ms > 0 {
            return Err(((wait_ms + 999) / 1000) as u64);
        }
        times.push_back(now_ms);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(requests: u32, per_ms: i64) -> [Window; 1] {
        [Window { requests, per_ms }]
    }

    #[test]
    fn sliding_window_admits_n_then_waits_for_the_oldest() {
        let l = SlidingWindows::default();
        let me = (0, "app", "identity");
        for i in 0..5 {
            assert_eq!(l.admit(me, 1_000 + i * 100, &one(5, 10_000)), Ok(()));
        }
        assert_eq!(
            l.admit(me, 2_000, &one(5, 10_000)),
            Err(9),
            "oldest (1.0 s) leaves at 11.0 s"
        );
        assert_eq!(
            l.admit((1, "app", "identity"), 2_000, &one(5, 10_000)),
            Ok(()),
            "other tenant"
        );
        assert_eq!(
            l.admit((0, "app", "security"), 2_000, &one(5, 10_000)),
            Ok(()),
            "other family"
        );
        assert_eq!(
            l.admit(me, 11_000, &one(5, 10_000)),
            Ok(()),
            "the first left the window"
        );
        assert!(l.admit(me, 11_050, &one(5, 10_000)).is_err());
    }

    #[test]
    fn no_room_at_all_waits_a_whole_window() {
        let l = SlidingWindows::default();
        assert_eq!(l.admit(0, 5_000, &one(0, 60_000)), Err(60));
        assert_eq!(l.admit(0, 5_000, &[]), Ok(()), "no limit");
    }
}
