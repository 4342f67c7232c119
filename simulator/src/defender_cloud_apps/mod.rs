//! Microsoft Defender for Cloud Apps: the REST API's activity and alert lists
//! (`/api/v1/activities/`, `/api/v1/alerts/`, reference §5.1), served on the Microsoft 365
//! simulator's address from the same world and tenants, with Entra tokens from the same
//! token endpoint (audience `05a65629-4c1b-48c1-a78b-804c4abdd4af`, app role
//! `Investigation.read`) or a legacy API token (`Authorization: Token …`).
//!
//! - POST list bodies: `filters` with epoch-millisecond operators, `sortField`,
//!   `sortDirection`, `skip`, `limit` (at most 100 items a response); `{"total", "hasNext",
//!   "data"}` answers, `total` approximate past 1,000.
//! - 30 requests in any 60 s per tenant, then 429 with `Retry-After`.
//! - Activities are ingested in batches (many share one `created`), some indexed late;
//!   alerts are read and resolved later, each change a new state of the same `_id`.
//!
//! [`cloud_apps_activities`] and [`cloud_apps_alerts`] recompute what a query sees.

mod config;
mod filters;
pub(crate) mod routes;
mod world;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::config::M365Config;
use crate::stats;
use crate::tenant_world;
use crate::throttle::{SlidingWindows, Window};
use crate::wire::Dice;

pub use config::{ApiTokenConfig, CloudAppsConfig, CloudAppsFaults, DEFAULT_API_TOKEN};

/// The application id of the "Microsoft Cloud App Security" API: the token audience.
pub const CLOUD_APPS_AUDIENCE: &str = "05a65629-4c1b-48c1-a78b-804c4abdd4af";

/// Defender for Cloud Apps requests of one tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CloudAppsStats {
    /// Requests per list: `activities`, `alerts`.
    pub requests: BTreeMap<String, u64>,
    /// Arrival times (simulator clock, Unix ms) of every request, refused ones included.
    pub request_times: Vec<i64>,
    /// Requests answered 429 because 30 in 60 s were reached (not injected).
    pub throttled: u64,
    /// Requests refused 401 (no, unknown, expired or wrong-audience token).
    pub unauthorized: u64,
    /// Requests refused 403 (no Investigation.read role).
    pub forbidden: u64,
    /// Requests refused 400 (malformed body, unknown filter or operator).
    pub bad_requests: u64,
    /// Injected faults that fired: `throttle`, `server_error`.
    pub faults: BTreeMap<String, u64>,
    /// Pages answered 200.
    pub pages: u64,
    /// Records in those pages.
    pub records_served: u64,
}

impl CloudAppsStats {
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

/// The server side: the per-tenant request window and the fault dice.
#[derive(Debug)]
pub(crate) struct CloudAppsState {
    windows: SlidingWindows<usize>,
    dice: Dice,
}

impl CloudAppsState {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            windows: SlidingWindows::default(),
            dice: Dice::new(seed, 0x3da),
        }
    }

    /// Admits a request of `tenant` at `now_ms` when fewer than `limit` came in the last
    /// minute; else the seconds until one leaves.
    fn admit(&self, tenant: usize, now_ms: i64, limit: u32) -> Result<(), u64> {
        let minute = Window {
            requests: limit,
            per_ms: 60_000,
        };
        self.windows.admit(tenant, now_ms, &[minute])
    }
}

/// Ground truth for tests: every activity of `tenant` whose event time is at or after
/// `from` (normally [`crate::Simulator::history_start`]) and that is visible at `until`,
/// sorted by `created` then `_id`.
pub fn cloud_apps_activities(
    config: &M365Config,
    tenant: &str,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Vec<Value> {
    let Some((world, t)) = tenant_world(config, tenant) else {
        return Vec::new();
    };
    let until = until.timestamp_millis();
    world
        .mda_activities(t, from.timestamp_millis(), i64::MIN, until, until)
        .iter()
        .map(|a| world.mda_activity_record(a))
        .collect()
}

/// Ground truth for tests: every alert of `tenant` raised at or after `from` and visible at
/// `until`, in its state at `until`.
pub fn cloud_apps_alerts(
    config: &M365Config,
    tenant: &str,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Vec<Value> {
    let Some((world, t)) = tenant_world(config, tenant) else {
        return Vec::new();
    };
    let until = until.timestamp_millis();
    let from = from.timestamp_millis();
    world
        .mda_alerts(t, from, from, until, until)
        .iter()
        .map(|a| world.mda_alert_record(a, until))
        .collect()
}

/// Ground truth: the instants at which alerts of `tenant` (raised at or after `from`)
/// change state up to `until`, creation included, as (alert id, instant) pairs.
pub fn cloud_apps_alert_changes(
    config: &M365Config,
    tenant: &str,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Vec<(String, DateTime<Utc>)> {
    let Some((world, t)) = tenant_world(config, tenant) else {
        return Vec::new();
    };
    let until = until.timestamp_millis();
    let from = from.timestamp_millis();
    let mut out = Vec::new();
    for a in world.mda_alerts(t, from, from, until, until) {
        for at in a.change_times().into_iter().filter(|at| *at <= until) {
            out.push((a.id.clone(), crate::world::generate::to_utc(at)));
        }
    }
    out
}
