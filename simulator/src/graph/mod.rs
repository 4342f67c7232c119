//! Microsoft Graph: the security API (`/v1.0/security/alerts_v2`, `/v1.0/security/incidents`)
//! and the Entra ID reports (`/v1.0/auditLogs/signIns|directoryAudits|provisioning`,
//! `/beta/auditLogs/signIns`), served on the Microsoft 365 simulator's address from the same
//! world and tenants (reference §2, §6, §8).
//!
//! Records are a pure function of the configuration, derived per (tenant, hour): alerts and
//! incidents change after creation (each change a version with a later lastUpdateDateTime,
//! visible after a short indexing lag), log records become visible minutes — sign-ins up to
//! two hours — after their time. [`graph_ground_truth`] recomputes what a query sees.

mod catalog;
pub(crate) mod config;
mod errors;
mod evidence;
pub(crate) mod filter;
mod identity;
mod listing;
mod odata;
mod paging;
mod products;
pub(crate) mod routes;
mod security;
pub(crate) mod stats;
mod time;
mod versions;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::config::M365Config;
use crate::tenant_world;
use crate::throttle::SlidingWindows;
use crate::wire::Dice;
use crate::world::World;

pub use config::{Cloud, GraphConfig, GraphFaults, GraphTenantConfig};
pub use stats::GraphStats;

/// A Graph collection, for ground truth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphResource {
    /// `/v1.0/security/alerts_v2`.
    Alerts,
    /// `/v1.0/security/incidents` (without `$expand=alerts`).
    Incidents,
    /// `/v1.0/auditLogs/signIns`: interactive user sign-ins, v1.0 shape.
    SignIns,
    /// `/beta/auditLogs/signIns` with `signInEventTypes/any(t: t eq 'nonInteractiveUser')`.
    NonInteractiveSignIns,
    /// … `'servicePrincipal'`.
    ServicePrincipalSignIns,
    /// … `'managedIdentity'`.
    ManagedIdentitySignIns,
    /// `/v1.0/auditLogs/directoryAudits`.
    DirectoryAudits,
    /// `/v1.0/auditLogs/provisioning`.
    Provisioning,
}

/// Graph's part of the server state: limits, fault dice, the skiptoken secret.
#[derive(Debug)]
pub(crate) struct GraphState {
    pub(crate) limiter: SlidingWindows<(usize, String, odata::Family)>,
    pub(crate) dice: Dice,
    /// Binds skiptokens to this simulator instance.
    pub(crate) secret: u64,
    /// The rows of recent queries, for the pages that follow.
    pub(crate) listings: listing::ListingCache,
}

impl GraphState {
    /// State for a simulator seeded `seed` and started at `origin_ms`.
    pub(crate) fn new(seed: u64, origin_ms: i64) -> Self {
        Self {
            limiter: SlidingWindows::default(),
            dice: Dice::new(seed, 0x6a4f),
            secret: crate::world::rng::key(&[seed, origin_ms as u64, 0x5ec4e7]),
            listings: listing::ListingCache::default(),
        }
    }
}

/// The query behind a [`GraphResource`]: its collection and, for the beta kinds, the filter.
fn resource_query(resource: GraphResource) -> (odata::Collection, Option<&'static str>) {
    use odata::Collection as C;
    let beta = C::SignIns { beta: true };
    match resource {
        GraphResource::Alerts => (C::Alerts, None),
        GraphResource::Incidents => (C::Incidents, None),
        GraphResource::SignIns => (C::SignIns { beta: false }, None),
        GraphResource::NonInteractiveSignIns => (
            beta,
            Some("signInEventTypes/any(t: t eq 'nonInteractiveUser')"),
        ),
        GraphResource::ServicePrincipalSignIns => (
            beta,
            Some("signInEventTypes/any(t: t eq 'servicePrincipal')"),
        ),
        GraphResource::ManagedIdentitySignIns => (
            beta,
            Some("signInEventTypes/any(t: t eq 'managedIdentity')"),
        ),
        GraphResource::DirectoryAudits => (C::DirectoryAudits, None),
        GraphResource::Provisioning => (C::Provisioning, None),
    }
}

fn view(from: DateTime<Utc>, until: DateTime<Utc>) -> catalog::View {
    catalog::View {
        now: time::from_utc(until),
        from: time::from_utc(from),
        unknown_members: true,
    }
}

/// The rows of `resource` in tenant `t` of `world` as [`graph_ground_truth`] describes, and
/// how to render them.
fn truth_rows(
    world: &World,
    t: usize,
    resource: GraphResource,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> (Vec<catalog::Row>, catalog::Renderer) {
    let (collection, filter) = resource_query(resource);
    let view = view(from, until);
    let renderer = catalog::Renderer::new(t, collection, view, false);
    let pairs: Vec<(String, String)> = filter
        .map(|f| vec![("$filter".to_string(), f.to_string())])
        .unwrap_or_default();
    let Ok(query) = odata::parse(collection, &pairs) else {
        return (Vec::new(), renderer);
    };
    let shape = catalog::Shape {
        filter: query.filter.as_ref(),
        sort: query.sort,
        descending: query.descending,
        expand_alerts: false,
    };
    (catalog::rows(world, t, collection, view, shape), renderer)
}

/// Ground truth for tests: every record of `resource` in `tenant` created at or after `from`
/// and visible at `until`, alerts and incidents in their latest version visible then, in the
/// collection's default order (newest first), as served with
/// `Prefer: include-unknown-enum-members` — regardless of transport faults. Empty for an
/// unknown tenant. `from` is normally the server's [`crate::Simulator::history_start`],
/// `until` an instant the server has reached ([`crate::Simulator::visible_until`]).
pub fn graph_ground_truth(
    config: &M365Config,
    tenant: &str,
    resource: GraphResource,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Vec<Value> {
    tenant_world(config, tenant)
        .map(|(world, t)| {
            let (rows, renderer) = truth_rows(&world, t, resource, from, until);
            rows.iter()
                .map(|row| renderer.record(&world, &row.entry))
                .collect()
        })
        .unwrap_or_default()
}

/// Every version published of `resource` in `tenant`: (id, lastUpdateDateTime) of each
/// alert or incident version created at or after `from` and visible at `until` — what a
/// client polling often enough would see — or (id, createdDateTime/activityDateTime) of each
/// log record. Sorted by id, then time.
pub fn graph_versions(
    config: &M365Config,
    tenant: &str,
    resource: GraphResource,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Vec<(String, DateTime<Utc>)> {
    let Some((world, t)) = tenant_world(config, tenant) else {
        return Vec::new();
    };
    let (collection, filter) = resource_query(resource);
    if filter.is_some() {
        // Beta kinds: one version per record, the record's own time.
        return truth_rows(&world, t, resource, from, until)
            .0
            .into_iter()
            .map(|r| (r.id, time::to_utc(r.created)))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
    }
    catalog::versions(&world, t, collection, view(from, until))
        .into_iter()
        .map(|(id, at)| (id, time::to_utc(at)))
        .collect()
}
