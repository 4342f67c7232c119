//! siemflow-simulator: strict local stand-ins for Microsoft's Entra ID token endpoint, the
//! Office 365 Management Activity API and Microsoft Graph ([`graph`]: security alerts and
//! incidents, Entra ID sign-in and audit logs), for the demo pipeline, tests and benchmarks; and for
//! the SIEM endpoints the sinks write to: [`splunk_hec`], [`sentinel`] (Azure Monitor Logs
//! Ingestion) and [`elasticsearch`] (Elasticsearch / OpenSearch `_bulk`), each keeping ground
//! truth of what it accepted.
//!
//! The simulated world is a pure function of [`M365Config`]: the same seed yields the same
//! tenants, blobs and records, derived lazily per hour, so [`published_records`] and
//! [`graph_ground_truth`] can serve as ground truth for tests without running a server.

mod activity;
mod config;
pub mod defender_cloud_apps;
pub mod defender_endpoint;
pub mod elasticsearch;
mod errors;
pub mod event_hubs;
mod faults;
pub mod graph;
pub mod mda_agent;
pub mod sentinel;
mod server;
pub mod splunk_hec;
mod state;
mod stats;
mod throttle;
mod tokens;
mod wire;
mod world;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context;
use chrono::{DateTime, Utc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::{
    CONTENT_TYPES, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_ROLES, DEFAULT_TENANT_ID,
    Faults, M365Config, MAX_HISTORY, TenantConfig,
};
pub use defender_cloud_apps::{
    CloudAppsConfig, CloudAppsStats, cloud_apps_activities, cloud_apps_alert_changes,
    cloud_apps_alerts,
};
pub use defender_endpoint::{
    EndpointConfig, EndpointFaults, EndpointStats, RateLimit, endpoint_alert_versions,
    endpoint_alerts,
};
pub use elasticsearch::{ElasticsearchConfig, ElasticsearchSimulator, ElasticsearchStats};
pub use graph::{
    Cloud, GraphConfig, GraphFaults, GraphResource, GraphStats, GraphTenantConfig,
    graph_ground_truth, graph_versions,
};
pub use sentinel::{SentinelConfig, SentinelSimulator, SentinelStats};
pub use splunk_hec::{HecStats, IndexedEvent, SplunkHecConfig, SplunkHecSimulator};
pub use stats::{Stats, TenantStats};

/// A running simulator (login, management and Graph roots on one address).
#[derive(Debug)]
pub struct Simulator {
    sim: Arc<state::Sim>,
    address: SocketAddr,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl Simulator {
    /// Validates the configuration, binds `listen` (port 0 picks a free one) and serves.
    pub async fn start(config: M365Config, listen: SocketAddr) -> anyhow::Result<Simulator> {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("simulator: cannot listen on {listen}"))?;
        let address = listener
            .local_addr()
            .context("simulator: no local address")?;
        let sim = Arc::new(state::Sim::new(config, address)?);
        let cancel = CancellationToken::new();
        let app = server::router(sim.clone());
        let task = tokio::spawn(server::serve(listener, app, cancel.clone()));
        tracing::info!(%address, "M365 simulator listening");
        Ok(Simulator {
            sim,
            address,
            cancel,
            task,
        })
    }

    /// The bound address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// `http://127.0.0.1:PORT`: the login root (`/{tenant}/oauth2/v2.0/token`), the
    /// management root (`/api/v1.0/{tenant}/activity/feed/...`) and the Graph root
    /// (`/v1.0/...`, `/beta/...`) all live here.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The configuration in force.
    pub fn config(&self) -> &M365Config {
        &self.sim.cfg
    }

    /// A snapshot of the per-tenant request counters.
    pub fn stats(&self) -> Stats {
        state::lock(&self.sim.stats).clone()
    }

    /// The simulator's current time (wall clock plus any [`Simulator::advance_clock`]).
    pub fn now(&self) -> DateTime<Utc> {
        world::generate::to_utc(self.sim.now_ms())
    }

    /// The oldest instant records exist at: the start minus `history` (ground-truth `from`).
    pub fn history_start(&self) -> DateTime<Utc> {
        world::generate::to_utc(self.sim.history_start_ms())
    }

    /// The instant up to which the world is visible: now when `live`, the start when frozen
    /// (ground-truth `until`).
    pub fn visible_until(&self) -> DateTime<Utc> {
        world::generate::to_utc(self.sim.published_until_ms())
    }

    /// Moves the simulator's clock forward (tests: token expiry, content expiry, the
    /// 15-minute /start rule); the world's history keeps its original start.
    pub fn advance_clock(&self, by: std::time::Duration) {
        self.sim
            .offset_ms
            .fetch_add(by.as_millis() as i64, Ordering::Relaxed);
    }

    /// Stops accepting, lets in-flight requests finish, and returns when the server is gone.
    pub async fn stop(self) {
        self.cancel.cancel();
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "simulator task ended abnormally");
        }
    }
}

/// The world of `config` and the index of `tenant` (by id) in it, for the ground-truth
/// functions; `None` for a tenant the configuration does not have.
pub(crate) fn tenant_world(config: &M365Config, tenant: &str) -> Option<(world::World, usize)> {
    let world = world::World::new(Arc::new(config.clone()));
    let t = world
        .tenants
        .iter()
        .position(|p| p.id.eq_ignore_ascii_case(tenant))?;
    Some((world, t))
}

/// Ground truth for tests: every record the world publishes for `tenant` and `content_type`
/// in blobs whose contentCreated is in [start, end), regardless of transport faults; a record
/// repeated in several blobs appears once (first occurrence). Empty for an unknown tenant or
/// content type. Independent of any server: callers choose windows a server has published
/// (contentCreated ≤ now, within its history).
pub fn published_records(
    config: &M365Config,
    tenant: &str,
    content_type: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Vec<serde_json::Value> {
    let Some((world, t)) = tenant_world(config, tenant) else {
        return Vec::new();
    };
    let Some(ct) = world::generate::content_type_index(content_type) else {
        return Vec::new();
    };
    world.records_created_in(t, ct, start.timestamp_millis(), end.timestamp_millis())
}

/// Ground truth at blob level: (contentId, contentCreated, record count) of every blob the
/// world publishes in [start, end), in listing order, regardless of transport faults.
pub fn published_blobs(
    config: &M365Config,
    tenant: &str,
    content_type: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Vec<PublishedBlob> {
    let Some((world, t)) = tenant_world(config, tenant) else {
        return Vec::new();
    };
    let Some(ct) = world::generate::content_type_index(content_type) else {
        return Vec::new();
    };
    world
        .blobs_created_in(t, ct, start.timestamp_millis(), end.timestamp_millis())
        .into_iter()
        .map(|b| PublishedBlob {
            content_id: world.content_id(&b),
            content_created: world::generate::to_utc(b.created_ms),
            records: world.blob_records(&b).len(),
            late: b.late,
        })
        .collect()
}

/// One blob of the ground truth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedBlob {
    /// The content id as listed.
    pub content_id: String,
    /// When the blob became available.
    pub content_created: DateTime<Utc>,
    /// Records inside, repeats included.
    pub records: usize,
    /// Published hours after its records (the late-blob fault).
    pub late: bool,
}
