//! Graph's request limits: a sliding window per (tenant, app, family) — 150 requests in any
//! 60 s under `/security` (§2.3), 5 in any 10 s for the identity reports (§6.3).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use super::odata::Family;
use crate::state::lock;

/// Admitted request times per caller, pruned to the window.
#[derive(Debug, Default)]
pub(crate) struct Limiter {
    windows: Mutex<HashMap<(usize, String, Family), VecDeque<i64>>>,
}

impl Limiter {
    /// Admits a request at `now_ms` when fewer than `limit` were admitted in the last
    /// `window_ms`; otherwise returns the seconds until a slot frees (for `Retry-After`).
    pub(crate) fn admit(
        &self,
        caller: (usize, &str, Family),
        now_ms: i64,
        limit: u32,
        window_ms: i64,
    ) -> Result<(), u64> {
        let mut windows = lock(&self.windows);
        let times = windows
            .entry((caller.0, caller.1.to_string(), caller.2))
            .or_default();
        while times.front().is_some_and(|t| *t <= now_ms - window_ms) {
            times.pop_front();
        }
        if times.len() >= limit as usize {
            let oldest = times.front().copied().unwrap_or(now_ms);
            let wait_ms = (oldest + window_ms - now_ms).max(1);
            return Err(((wait_ms + 999) / 1000) as u64);
        }
        times.push_back(now_ms);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_window_admits_n_then_waits_for_the_oldest() {
        let l = Limiter::default();
        let me = (0, "app", Family::Identity);
        for i in 0..5 {
            assert_eq!(l.admit(me, 1_000 + i * 100, 5, 10_000), Ok(()));
        }
        assert_eq!(
            l.admit(me, 2_000, 5, 10_000),
            Err(9),
            "oldest (1.0 s) leaves at 11.0 s"
        );
        assert_eq!(
            l.admit((1, "app", Family::Identity), 2_000, 5, 10_000),
            Ok(()),
            "other tenant"
        );
        assert_eq!(
            l.admit((0, "app", Family::Security), 2_000, 5, 10_000),
            Ok(()),
            "other family"
        );
        assert_eq!(
            l.admit(me, 11_000, 5, 10_000),
            Ok(()),
            "the first left the window"
        );
        assert!(l.admit(me, 11_050, 5, 10_000).is_err());
    }
}
