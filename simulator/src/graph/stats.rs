//! Graph counters of one tenant: requests, refusals, faults that fired, and the arrival times
//! of the latest requests so tests can check a client's pace against the limits.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::stats;

/// Graph requests of one tenant (the tenant of the bearer token).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GraphStats {
    /// Requests per collection: `alerts_v2`, `incidents`, `signIns`, `beta/signIns`,
    /// `directoryAudits`, `provisioning`.
    pub requests: BTreeMap<String, u64>,
    /// Arrival times (simulator clock, Unix ms) of the latest requests, per limit family
    /// (`security`, `identity`), throttled ones included: every request of a run up to
    /// [`GraphStats::KEPT_TIMES`] of a family, at least that many latest ones after.
    pub request_times: BTreeMap<String, Vec<i64>>,
    /// Requests answered 429 because the family's limit was reached (not injected).
    pub throttled: u64,
    /// Requests refused 401 (missing, unknown, expired or wrong-audience token).
    pub unauthorized: u64,
    /// Requests refused 403 (missing app role or licence).
    pub forbidden: u64,
    /// Requests refused 400 (malformed or unsupported query, bad or expired skiptoken).
    pub bad_requests: u64,
    /// Injected faults that fired, by name: `throttle`, `server_error`, `slow`, `repeat`,
    /// `missing_next_link`, `expired_skiptoken`.
    pub faults: BTreeMap<String, u64>,
    /// Pages answered 200.
    pub pages: u64,
    /// Records in those pages (expanded alerts not counted).
    pub records_served: u64,
}

impl GraphStats {
    /// How many arrival times of a family are always kept: far more than the documented
    /// limits admit in their longest window (150 in 60 s), while a long-running simulator's
    /// stats stay bounded.
    pub const KEPT_TIMES: usize = stats::KEPT_TIMES;

    /// Records a request of `family` arriving at `at_ms` (bounded: see [`Self::KEPT_TIMES`]).
    pub(crate) fn arrived(&mut self, family: &str, at_ms: i64) {
        stats::arrived(self.request_times.entry(family.into()).or_default(), at_ms);
    }

    /// The most requests of `family` that arrived within any span of `window`.
    pub fn max_in_window(&self, family: &str, window: Duration) -> usize {
        self.request_times
            .get(family)
            .map_or(0, |times| stats::max_in_window(times, window))
    }

    /// How often the named fault fired.
    pub fn fault(&self, name: &str) -> u64 {
        self.faults.get(name).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_maximum() {
        let mut s = GraphStats::default();
        s.request_times.insert(
            "identity".into(),
            vec![0, 1_000, 9_999, 10_000, 10_500, 30_000],
        );
        assert_eq!(s.max_in_window("identity", Duration::from_secs(10)), 4);
        assert_eq!(s.max_in_window("identity", Duration::from_secs(1)), 3);
        assert_eq!(s.max_in_window("security", Duration::from_secs(60)), 0);
    }

    #[test]
    fn arrival_times_stay_bounded_and_keep_the_latest() {
        let mut s = GraphStats::default();
        let n = 5 * GraphStats::KEPT_TIMES as i64;
        for at in 0..n {
            s.arrived("security", at);
        }
        let times = &s.request_times["security"];
        assert!(
            (GraphStats::KEPT_TIMES..=2 * GraphStats::KEPT_TIMES).contains(&times.len()),
            "{}",
            times.len()
        );
        assert_eq!(times.last(), Some(&(n - 1)), "the latest arrival is kept");
        assert!(
            times.windows(2).all(|w| w[1] == w[0] + 1),
            "a contiguous run of the latest arrivals"
        );
        assert_eq!(
            s.max_in_window("security", Duration::from_millis(1_000)),
            1_000
        );
    }
}
