//! Request counters per tenant, for benchmarks and tests.

use std::collections::{BTreeMap, BTreeSet};

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
