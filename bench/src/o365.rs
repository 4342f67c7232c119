//! The `o365_management` backfill benchmark: a simulated tenant with a week of content
//! (about 1,000,000 records) and added API latency, collected into a blackhole. The
//! simulator runs in this harness process, so only the collector is measured; its request
//! counters tell how close the collector comes to its request budget.

use std::path::Path;
use std::time::Duration;

use siemflow_simulator::{CONTENT_TYPES, DEFAULT_TENANT_ID, published_blobs};

use crate::backfill::{HarnessSimulator, Rate, collect, frozen_world, tenant_table};

/// What the backfill run measured.
pub struct Backfill {
    /// Records the simulator published in the window.
    pub records: u64,
    /// Wall time from process start to the last record delivered.
    pub seconds: f64,
    /// Records per second.
    pub records_per_second: f64,
    /// Management API requests against the configured budget.
    pub rate: Rate,
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
    let world = siemflow_simulator::M365Config {
        records_per_hour,
        ..frozen_world(latency)
    };
    let budget = world.requests_per_minute;
    let simulator = HarnessSimulator::start(world)?;
    let now = simulator.now();
    let start = now - chrono::Duration::from_std(simulator.world().history)?;
    let records: u64 = CONTENT_TYPES
        .iter()
        .flat_map(|ct| published_blobs(simulator.world(), DEFAULT_TENANT_ID, ct, start, now))
        .map(|blob| blob.records as u64)
        .sum();
    eprintln!("  simulated tenant: {records} records over 7 days");

    let base = simulator.base_url();
    let pipeline = format!(
        r#"
[sources.audit]
type = "o365_management"
api_url = "{base}"
start_from = "7d"
requests_per_minute = {budget}
{tenant}
[sinks.out]
type = "blackhole"
inputs = ["audit"]
"#,
        tenant = tenant_table("audit", &base),
    );
    let run = collect(
        binary,
        work,
        &pipeline,
        &[("out", records)],
        Duration::from_secs(3600),
    )?;
    let stats = simulator.stats();
    simulator.stop();
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
        rate: Rate {
            requests: management,
            seconds,
            budget_per_minute: budget as f64,
        },
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
        rpm = result.rate.per_minute(),
        budget = result.rate.budget_per_minute,
        share = result.rate.share_of_budget(),
        throttled = result.throttled,
        rss = result.peak_rss_mib,
    )
}
