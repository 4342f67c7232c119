//! What the Microsoft 365 backfill scenarios share: the simulator running in this harness
//! process (so only the collector is measured) with a frozen world and added latency, the
//! collector's config and run into blackholes, and request rates against a budget.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use siemflow_simulator::{
    DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TENANT_ID, M365Config, Simulator, TenantStats,
};

use crate::scenario::{Run, measure, write_config};

/// How far back the backfilled world reaches: 7 days less an hour, so that a collector
/// starting `7d` back covers all of it even a little after the simulator started.
pub const HISTORY: Duration = Duration::from_secs(7 * 24 * 3600 - 3600);

/// A frozen world of `history` (default tenant, seed 42, nothing published after the
/// start) with `latency` added to every response.
pub fn frozen_world(latency: Duration) -> M365Config {
    let mut world = M365Config {
        seed: 42,
        live: false,
        history: HISTORY,
        ..M365Config::default()
    };
    world.faults.latency = latency;
    world
}

/// The Microsoft 365 simulator (login, Management API, Graph) on its own runtime in this
/// process.
pub struct HarnessSimulator {
    runtime: tokio::runtime::Runtime,
    simulator: Simulator,
}

impl HarnessSimulator {
    /// Starts it on a free loopback port. Its runtime has more threads than the machine
    /// has cores: the first page of a large listing computes it for seconds on its thread,
    /// and the other requests must not queue behind it (their late arrival, bunched, would
    /// meet the simulator's sliding-window limit although the collector kept its budget).
    pub fn start(world: M365Config) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(8)
            .enable_all()
            .build()?;
        let simulator = runtime.block_on(Simulator::start(world, "127.0.0.1:0".parse()?))?;
        Ok(HarnessSimulator { runtime, simulator })
    }

    /// `http://127.0.0.1:PORT`: login, Management API and Graph root.
    pub fn base_url(&self) -> String {
        self.simulator.base_url()
    }

    /// The simulator's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.simulator.now()
    }

    /// The oldest instant records exist at (ground truth `from`).
    pub fn history_start(&self) -> DateTime<Utc> {
        self.simulator.history_start()
    }

    /// The instant up to which the frozen world is visible (ground truth `until`).
    pub fn visible_until(&self) -> DateTime<Utc> {
        self.simulator.visible_until()
    }

    /// The configuration in force.
    pub fn world(&self) -> &M365Config {
        self.simulator.config()
    }

    /// The counters of the default tenant.
    pub fn stats(&self) -> TenantStats {
        self.simulator.stats().tenant(DEFAULT_TENANT_ID)
    }

    /// Stops serving.
    pub fn stop(self) {
        self.runtime.block_on(self.simulator.stop());
    }
}

/// The `[[sources.ID.tenants]]` table of the simulator's default tenant and app.
pub fn tenant_table(source: &str, base: &str) -> String {
    format!(
        r#"[[sources.{source}.tenants]]
tenant_id = "{DEFAULT_TENANT_ID}"
client_id = "{DEFAULT_CLIENT_ID}"
client_secret = "{DEFAULT_CLIENT_SECRET}"
login_url = "{base}"
"#
    )
}

/// Runs the release binary on `pipeline` (sources and blackhole sinks; `data_dir` and the
/// API address are added) in a fresh folder under `work` until each `(sink, records)`
/// delivered its records.
pub fn collect(
    binary: &Path,
    work: &Path,
    pipeline: &str,
    sinks: &[(&str, u64)],
    limit: Duration,
) -> anyhow::Result<Run> {
    let dir = tempfile::tempdir_in(work)?;
    let address = write_config(dir.path(), pipeline)?;
    measure(binary, dir.path(), &address, sinks, limit, None)
}

/// Requests made over a span, against a budget.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    /// Requests counted.
    pub requests: u64,
    /// The span they were made in.
    pub seconds: f64,
    /// The budget, in requests per minute.
    pub budget_per_minute: f64,
}

impl Rate {
    /// Requests per minute over the span.
    pub fn per_minute(&self) -> f64 {
        self.requests as f64 / self.seconds * 60.0
    }

    /// The share of the budget used, in per cent.
    pub fn share_of_budget(&self) -> f64 {
        100.0 * self.per_minute() / self.budget_per_minute
    }
}
