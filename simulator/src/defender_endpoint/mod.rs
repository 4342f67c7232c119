//! Microsoft Defender for Endpoint: the alerts API (`GET /api/alerts`, reference §3),
//! served on the Microsoft 365 simulator's address from the same world, tenants and token
//! endpoint as Graph.
//!
//! - Tokens must be for the tenant cloud's MDE audience (`https://api.securitycenter.microsoft.com`
//!   in the commercial cloud, also known as `https://api.security.microsoft.com` and
//!   `https://securitycenter.onmicrosoft.com/windowsatpservice`; the Gov hosts in GCC and GCC
//!   High/DoD) and carry `Alert.Read.All` or `Alert.ReadWrite.All`; else 401/403 in MDE's
//!   envelope `{"error":{"code","message","target"}}`.
//! - 100 requests a minute and 1,500 an hour per (tenant, app), both enforced (429
//!   `TooManyRequests` with `Retry-After`); the periods are configurable for tests.
//! - OData: `$filter` (`and` of comparisons on the documented properties), `$top` ≤ 10,000,
//!   `$skip`, `$expand=evidence`; anything else is a 400. No documented order: a page is
//!   in an arbitrary (stable) order, and a page that leaves more has an `@odata.nextLink`
//!   with `$skip`; an alert updated between two pages moves, as it does on the service.
//! - The alerts are the Graph world's Defender for Endpoint alerts, in MDE's shape; each
//!   change is a new version with a later `lastUpdateTime`, visible after Graph's index lag.
//!
//! [`endpoint_alerts`] and [`endpoint_alert_versions`] recompute what a query sees.

mod alerts;
mod config;
mod query;
pub(crate) mod routes;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::config::M365Config;
use crate::graph::Cloud;
use crate::stats;
use crate::throttle::{SlidingWindows, Window};
use crate::wire::Dice;

pub use config::{EndpointConfig, EndpointFaults, RateLimit};

/// The token audiences MDE accepts in a cloud (§3.1).
pub fn endpoint_audiences(cloud: Cloud) -> &'static [&'static str] {
    match cloud {
        Cloud::Commercial => &[
            "https://api.securitycenter.microsoft.com",
            "https://api.security.microsoft.com",
            "https://securitycenter.onmicrosoft.com/windowsatpservice",
        ],
        Cloud::Gcc => &["https://api-gcc.securitycenter.microsoft.us"],
        Cloud::GccHigh | Cloud::Dod => &["https://api-gov.securitycenter.microsoft.us"],
    }
}

/// Defender for Endpoint requests of one tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EndpointStats {
    /// Requests to `/api/alerts`.
    pub requests: u64,
    /// Arrival times (simulator clock, Unix ms) of the latest requests, refused ones
    /// included (at least the latest 50,000).
    pub request_times: Vec<i64>,
    /// Requests answered 429 because a limit was reached (not injected).
    pub throttled: u64,
    /// Requests refused 401 (no, unknown, expired or wrong-audience token).
    pub unauthorized: u64,
    /// Requests refused 403 (no Alert.Read.All role).
    pub forbidden: u64,
    /// Requests refused 400 (a query option or filter the service does not take).
    pub bad_requests: u64,
    /// Injected faults that fired: `throttle`, `server_error`, `slow`.
    pub faults: BTreeMap<String, u64>,
    /// Pages answered 200.
    pub pages: u64,
    /// Alerts in those pages.
    pub records_served: u64,
}

impl EndpointStats {
    /// The most requests that arrived within any span of `window`.
    pub fn max_in_window(&self, window: Duration) -> usize {
        stats::max_in_window(&self.request_times, window)
    }

    /// How often the named fault fired.
    pub fn fault(&self, name: &str) -> u64 {
        self.faults.get(name).copied().unwrap_or(0)
    }

    fn arrived(&mut self, at_ms: i64) {
        stats::arrived(&mut self.request_times, at_ms);
    }
}

/// The server side: the request log per (tenant, app) and the fault dice.
#[derive(Debug)]
pub(crate) struct EndpointState {
    admitted: SlidingWindows<(usize, String)>,
    dice: Dice,
}

impl EndpointState {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            admitted: SlidingWindows::default(),
            dice: Dice::new(seed, 0x3de),
        }
    }

    /// Admits a request of (tenant, app) at `now_ms` when every limit has room; else the
    /// seconds until all of them do.
    fn admit(&self, caller: (usize, &str), now_ms: i64, limits: &[RateLimit]) -> Result<(), u64> {
        let windows: Vec<Window> = limits
            .iter()
            .map(|l| Window {
                requests: l.requests,
                per_ms: l.per.as_millis() as i64,
            })
            .collect();
        let key = (caller.0, caller.1.to_ascii_lowercase());
        self.admitted.admit(key, now_ms, &windows)
    }
}

/// Ground truth for tests: every Defender for Endpoint alert of `tenant` created at or
/// after `from` (normally [`crate::Simulator::history_start`]) and visible at `until`, in
/// its latest version then, with its evidence (as `$expand=evidence` serves it).
pub fn endpoint_alerts(
    config: &M365Config,
    tenant: &str,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Vec<Value> {
    alerts::alerts(config, tenant, from, until, true)
}

/// Ground truth: every version published of the Defender for Endpoint alerts of `tenant`
/// (created at or after `from`, visible at `until`) as (id, lastUpdateTime), sorted.
pub fn endpoint_alert_versions(
    config: &M365Config,
    tenant: &str,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Vec<(String, DateTime<Utc>)> {
    alerts::versions(config, tenant, from, until)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Vec<RateLimit> {
        vec![
            RateLimit {
                requests: 3,
                per: Duration::from_secs(1),
            },
            RateLimit {
                requests: 5,
                per: Duration::from_secs(10),
            },
        ]
    }

    #[test]
    fn both_windows_hold() {
        let state = EndpointState::new(1);
        let me = (0, "app");
        for at in [0, 100, 200] {
            assert_eq!(state.admit(me, at, &limits()), Ok(()));
        }
        assert_eq!(state.admit(me, 300, &limits()), Err(1), "3 in a second");
        assert_eq!(
            state.admit((1, "app"), 300, &limits()),
            Ok(()),
            "another tenant"
        );
        assert_eq!(state.admit(me, 1_000, &limits()), Ok(()));
        assert_eq!(state.admit(me, 1_100, &limits()), Ok(()));
        // Five in ten seconds: the first leaves at 10 s.
        assert_eq!(state.admit(me, 2_500, &limits()), Err(8));
        assert_eq!(state.admit(me, 10_000, &limits()), Ok(()));
    }
}
