//! Request counters per tenant, for benchmarks and tests.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;

use crate::defender_cloud_apps::CloudAppsStats;
use crate::defender_endpoint::EndpointStats;
use crate::graph::GraphStats;

/// Counters of one tenant (keyed by the tenant named in the request path).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TenantStats {
    /// Every request that named this tenant, token requests included.
    pub requests: u64,
    /// Requests answered AF429 (budget exceeded, shared pool exhausted or injected).
    pub throttled: u64,
    /// Requests answered 500/503 by fault injection.
    pub server_errors: u64,
    /// Requests refused for a missing, expired or foreign token, or a missing role.
    pub unauthorized: u64,
    /// Management API requests without PublisherIdentifier.
    pub unidentified: u64,
    /// Requests per endpoint: token, start, stop, list, content, notifications, blob, dlp_types.
    pub by_endpoint: BTreeMap<String, u64>,
    /// Blobs returned with HTTP 200.
    pub blobs_served: u64,
    /// Records inside those blobs.
    pub records_served: u64,
    /// Every PublisherIdentifier value seen.
    pub publisher_ids: BTreeSet<String>,
    /// Microsoft Graph requests (counted here only, not in the Management API counters
    /// above); requests without a usable token count under the empty tenant id.
    pub graph: GraphStats,
    /// Defender for Cloud Apps requests (counted here only); requests without a usable
    /// token count under the empty tenant id.
    pub cloud_apps: CloudAppsStats,
    /// Defender for Endpoint requests (counted here only); requests without a usable
    /// token count under the empty tenant id.
    pub defender_endpoint: EndpointStats,
}

/// A snapshot of every tenant's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Per tenant id (lower-case, as in the request path).
    pub tenants: BTreeMap<String, TenantStats>,
}

impl Stats {
    /// The counters of one tenant (zero when it was never asked for).
    pub fn tenant(&self, tenant: &str) -> TenantStats {
        self.tenants
            .get(&tenant.to_ascii_lowercase())
            .cloned()
            .unwrap_or_default()
    }
}

/// How many request arrival times a stats list always keeps (see [`arrived`]): far more
/// than any documented limit admits in its longest window, while a long-running
/// simulator's stats stay bounded.
pub(crate) const KEPT_TIMES: usize = 50_000;

/// Records a request arriving at `at_ms` in a stats list of arrival times (simulator
/// clock, Unix ms); once twice [`KEPT_TIMES`] are held, the older half goes (amortised
/// constant time), so every request of a run up to that many is kept, at least that many
/// latest ones after.
pub(crate) fn arrived(times: &mut Vec<i64>, at_ms: i64) {
    if times.len() >= 2 * KEPT_TIMES {
        times.drain(..times.len() - KEPT_TIMES);
    }
    times.push(at_ms);
}

/// The most of `times` (arrival times, Unix ms, in any order) within any span of `window`.
pub(crate) fn max_in_window(times: &[i64], window: Duration) -> usize {
    let mut sorted = times.to_vec();
    sorted.sort_unstable();
    let span = window.as_millis() as i64;
    let (mut best, mut start) = (0, 0);
    for end in 0..sorted.len() {
        while sorted[end] - sorted[start] >= span {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}
