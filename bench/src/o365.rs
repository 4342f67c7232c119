//! The `o365_management` backfill benchmark: a simulated tenant with a week of content
//! (about 1,000,000 records) and added API latency, collected into a blackhole. The
//! simulator runs in this harness process, so only the collector is measured; its request
//! counters tell how close the collector comes to its request budget.

use std::path::Path;
use std::time::Duration;

use siemflow_simulator::{
    CONTENT_TYPES, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TENANT_ID, M365Config,
    Simulator, published_blobs,
};

use crate::scenario::{free_port, measure};

/// What the backfill run measured.
pub struct Backfill {
    /// Records the simulator published in the window.
    pub records: u64,
    /// Wall time from process start to the last record delivered.
    pub seconds: f64,
    /// Records per second.
    pub records_per_second: f64,
    /// Management API requests per minute the collector made.
    pub requests_per_minute: f64,
    /// The configured budget.
    pub budget_per_minute: f64,
    /// Requests the simulator throttled.
    pub throttled: u64,
    /// Peak resident memory of the collector.
    pub peak_rss_mib: f64,
    /// Added latency per API response.
    pub latency_ms: u64,
}

/// Runs the backfill of a 7-day simulated tenant.
pub fn run(
    binary: &Path,
    work: &Path,
    records_per_hour: u32,
    latency: Duration,
) -> anyhow::Result<Backfill> {
    let runtime = tokio::runtime::Runtime::new()?;
    let mut world = M365Config {
        seed: 42,
        live: false,
        records_per_hour,
        ..M365Config::default()
    };
    world.history = Duration::from_secs(7 * 24 * 3600 - 3600);
    world.faults.latency = latency;
    let budget = world.requests_per_minute;
    let simulator = runtime.block_on(Simulator::start(world.clone(), "127.0.0.1:0".parse()?))?;
    let now = simulator.now();
    let start = now - chrono::Duration::from_std(world.history)?;
    let records: u64 = CONTENT_TYPES
        .iter()
        .flat_map(|ct| published_blobs(&world, DEFAULT_TENANT_ID, ct, start, now))
        .map(|blob| blob.records as u64)
        .sum();
    eprintln!("  simulated tenant: {records} records over 7 days");

    let dir = tempfile::tempdir_in(work)?;
    let port = free_port()?;
    let address = format!("127.0.0.1:{port}");
    let base = simulator.base_url();
    let config = format!(
        r#"
data_dir = "data"
[api]
address = "{address}"
[sources.audit]
type = "o365_management"
api_url = "{base}"
start_from = "7d"
requests_per_minute = {budget}
[[sources.audit.tenants]]
tenant_id = "{DEFAULT_TENANT_ID}"
client_id = "{DEFAULT_CLIENT_ID}"
client_secret = "{DEFAULT_CLIENT_SECRET}"
login_url = "{base}"
[sinks.out]
type = "blackhole"
inputs = ["audit"]
"#
    );
    std::fs::write(dir.path().join("bench.toml"), config)?;
    let run = measure(
        binary,
        dir.path(),
        &address,
        "out",
        records,
        Duration::from_secs(3600),
        None,
    )?;
    let stats = simulator.stats().tenant(DEFAULT_TENANT_ID);
    runtime.block_on(simulator.stop());
    let management: u64 = stats
        .by_endpoint
        .iter()
        .filter(|(endpoint, _)| endpoint.as_str() != "token")
        .map(|(_, n)| n)
        .sum();
    let seconds = run.seconds;
    Ok(Backfill {
        records,
        seconds,
        records_per_second: records as f64 / seconds,
        requests_per_minute: management as f64 / seconds * 60.0,
        budget_per_minute: budget as f64,
        throttled: stats.throttled,
        peak_rss_mib: run.peak_rss_mib,
        latency_ms: latency.as_millis() as u64,
    })
}

/// The report section.
pub fn report(result: &Backfill) -> String {
    format!(
        "\n## o365_management backfill\n\n\
         A simulated tenant with 7 days of content, {latency} ms added to every API response,\n\
         collected by `o365_management` into a blackhole with the default request budget.\n\
         The collector is request-bound: its maximum speed is the budget times the records per blob.\n\n\
         | records | seconds | records/s | requests/min | budget/min | share of budget | throttled | peak RSS | target |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---|\n\
         | {records} | {seconds:.0} | {rate:.0} | {rpm:.0} | {budget:.0} | {share:.1} % | {throttled} | {rss:.1} MiB | within 10 % of the budget, RSS < 200 MiB |\n",
        latency = result.latency_ms,
        records = result.records,
        seconds = result.seconds,
        rate = result.records_per_second,
        rpm = result.requests_per_minute,
        budget = result.budget_per_minute,
        share = 100.0 * result.requests_per_minute / result.budget_per_minute,
        throttled = result.throttled,
        rss = result.peak_rss_mib,
    )
}
