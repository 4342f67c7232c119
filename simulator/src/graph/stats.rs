//! Graph counters of one tenant: requests, refusals, faults that fired, and the arrival time
//! of every request so tests can check a client's pace against the limits.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

/// Graph requests of one tenant (the tenant of the bearer token).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GraphStats {
    /// Requests per collection: `alerts_v2`, `incidents`, `signIns`, `beta/signIns`,
    /// `directoryAudits`, `provisioning`.
    pub requests: BTreeMap<String, u64>,
    /// Arrival time (simulator clock, Unix ms) of every request, per limit family
    /// (`security`, `identity`), throttled ones included.
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
    /// The most requests of `family` that arrived within any span of `window`.
    pub fn max_in_window(&self, family: &str, window: Duration) -> usize {
        let Some(times) = self.request_times.get(family) else {
            return 0;
        };
        let mut sorted = times.clone();
        sorted.sort_unstable();
        let span = window.as_millis() as i64;
        let mut best = 0;
        let mut start = 0;
        for end in 0..sorted.len() {
            while sorted[end] - sorted[start] >= span {
                start += 1;
            }
            best = best.max(end - start + 1);
        }
        best
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
}
