//! The Graph backfill benchmark (issue 10): a simulated tenant with a week of security
//! alerts and incidents and of sign-ins of every kind, with added API latency, collected by
//! `graph_security` and `entra_logs` into two blackholes. Both are bound by Graph's request
//! limits, so the figure that matters is how close each comes to its budget-limited
//! maximum: the fewest pages that hold the records (the largest `$top` of each endpoint),
//! at the documented request rate.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use siemflow_simulator::{DEFAULT_TENANT_ID, GraphConfig, GraphResource, graph_versions};

use crate::backfill::{HarnessSimulator, Rate, collect, frozen_world, tenant_table};
use crate::scenario::peak_rss_mib;

/// Records per page the sources ask for (their `$top`, the endpoints' maxima, reference
/// §2.2 and §6.2): alerts_v2, incidents, signIns.
const ALERTS_PAGE: u64 = 2_000;
const INCIDENTS_PAGE: u64 = 50;
const SIGN_INS_PAGE: u64 = 1_000;

/// The documented limits the sources keep to by default (reference §2.3, §6.3).
const SECURITY_PER_MINUTE: f64 = 150.0;
const IDENTITY_PER_MINUTE: f64 = 5.0 * 6.0;

/// The sign-in logs read, by the source's `sign_in_types` name and the simulator's resource.
const SIGN_IN_KINDS: [(&str, GraphResource); 4] = [
    ("interactive", GraphResource::SignIns),
    ("non_interactive", GraphResource::NonInteractiveSignIns),
    ("service_principal", GraphResource::ServicePrincipalSignIns),
    ("managed_identity", GraphResource::ManagedIdentitySignIns),
];

/// The simulated tenant's volumes.
#[derive(Debug, Clone, Copy)]
pub struct GraphWorld {
    /// Alerts per hour on a weekday (the daily rhythm applies).
    pub alerts_per_hour: u32,
    /// Sign-ins per hour across the four kinds on a weekday.
    pub sign_ins_per_hour: u32,
    /// Added to every API response.
    pub latency: Duration,
}

/// One request family's run: its records, requests and what the budget allows.
#[derive(Debug, Clone)]
pub struct Family {
    /// `security (alerts_v2, incidents)` or `identity (signIns)`.
    pub name: &'static str,
    /// Records delivered (the simulator's ground truth).
    pub records: u64,
    /// The fewest requests that return them all.
    pub min_requests: u64,
    /// Requests made until the last record was delivered, over that span.
    pub rate: Rate,
}

impl Family {
    /// Records per second achieved.
    pub fn records_per_second(&self) -> f64 {
        self.records as f64 / self.rate.seconds
    }

    /// The shortest possible run: the fewest requests at the budget's rate.
    pub fn min_seconds(&self) -> f64 {
        self.min_requests as f64 / self.rate.budget_per_minute * 60.0
    }

    /// Records per second at the budget-limited maximum.
    pub fn max_records_per_second(&self) -> f64 {
        self.records as f64 / self.min_seconds()
    }

    /// Achieved records per second as a share of that maximum, in per cent.
    pub fn share_of_maximum(&self) -> f64 {
        100.0 * self.records_per_second() / self.max_records_per_second()
    }
}

/// What the Graph backfill measured.
pub struct GraphBackfill {
    /// The world collected.
    pub world: GraphWorld,
    /// Security alerts and incidents.
    pub security: Family,
    /// Sign-ins of the four kinds.
    pub identity: Family,
    /// Alerts, incidents and sign-ins per kind, as served.
    pub counts: Vec<(&'static str, u64)>,
    /// Process start to the last record of both families delivered.
    pub seconds: f64,
    /// Requests the simulator refused for its own limits (the collector's budget should
    /// keep this at 0).
    pub throttled: u64,
    /// Peak resident memory of the collector.
    pub peak_rss_mib: f64,
    /// Peak resident memory of this harness, which hosts the simulator (and counted the
    /// ground truth).
    pub simulator_peak_rss_mib: f64,
}

/// Distinct ids of `resource` in the frozen world, as a backfill of the whole history reads it.
fn distinct(simulator: &HarnessSimulator, resource: GraphResource) -> u64 {
    let versions = graph_versions(
        simulator.world(),
        DEFAULT_TENANT_ID,
        resource,
        simulator.history_start(),
        simulator.visible_until(),
    );
    versions
        .iter()
        .map(|(id, _)| id.as_str())
        .collect::<BTreeSet<_>>()
        .len() as u64
}

/// Runs the backfill of a 7-day simulated tenant.
pub fn run(binary: &Path, work: &Path, world: GraphWorld) -> anyhow::Result<GraphBackfill> {
    let mut config = frozen_world(world.latency);
    config.graph = GraphConfig {
        alerts_per_hour: world.alerts_per_hour,
        sign_ins_per_hour: world.sign_ins_per_hour,
        ..GraphConfig::default()
    };
    let simulator = HarnessSimulator::start(config)?;
    eprintln!("  counting the simulated tenant's records (ground truth) ...");
    let alerts = distinct(&simulator, GraphResource::Alerts);
    let incidents = distinct(&simulator, GraphResource::Incidents);
    let mut counts = vec![("alerts", alerts), ("incidents", incidents)];
    for (kind, resource) in SIGN_IN_KINDS {
        counts.push((kind, distinct(&simulator, resource)));
    }
    let sign_ins: u64 = counts[2..].iter().map(|(_, n)| n).sum();
    eprintln!("  simulated tenant over 7 days: {counts:?}");
    let sign_in_pages: u64 = counts[2..]
        .iter()
        .map(|(_, n)| n.div_ceil(SIGN_INS_PAGE).max(1))
        .sum();
    let security_pages =
        alerts.div_ceil(ALERTS_PAGE).max(1) + incidents.div_ceil(INCIDENTS_PAGE).max(1);

    let base = simulator.base_url();
    let kinds: Vec<String> = SIGN_IN_KINDS
        .iter()
        .map(|(kind, _)| format!("\"{kind}\""))
        .collect();
    let pipeline = format!(
        r#"
[sources.security]
type = "graph_security"
api_url = "{base}"
start_from = "7d"
{security_tenant}
[sources.sign_ins]
type = "entra_logs"
api_url = "{base}"
start_from = "7d"
resources = ["sign_ins"]
sign_in_types = [{kinds}]
{identity_tenant}
[sinks.security_out]
type = "blackhole"
inputs = ["security"]
[sinks.sign_ins_out]
type = "blackhole"
inputs = ["sign_ins"]
"#,
        security_tenant = tenant_table("security", &base),
        identity_tenant = tenant_table("sign_ins", &base),
        kinds = kinds.join(", "),
    );
    // Generous: three times the budget-limited run, and ten minutes.
    let min_seconds = (sign_in_pages as f64 / IDENTITY_PER_MINUTE)
        .max(security_pages as f64 / SECURITY_PER_MINUTE)
        * 60.0;
    let limit = Duration::from_secs_f64(3.0 * min_seconds + 600.0);
    let started_ms = simulator.now().timestamp_millis();
    let run = collect(
        binary,
        work,
        &pipeline,
        &[
            ("security_out", alerts + incidents),
            ("sign_ins_out", sign_ins),
        ],
        limit,
    )?;
    let stats = simulator.stats().graph;
    simulator.stop();
    let simulator_peak_rss_mib = peak_rss_mib(std::process::id())?;
    // Requests of a family that arrived before its last record was delivered.
    let requests_until = |family: &str, seconds: f64| {
        let until_ms = started_ms + (seconds * 1000.0) as i64;
        stats
            .request_times
            .get(family)
            .map_or(0, |times| times.iter().filter(|t| **t <= until_ms).count()) as u64
    };
    let family = |name, records, min_requests, family: &str, seconds: f64, budget| Family {
        name,
        records,
        min_requests,
        rate: Rate {
            requests: requests_until(family, seconds),
            seconds,
            budget_per_minute: budget,
        },
    };
    Ok(GraphBackfill {
        world,
        security: family(
            "security (alerts_v2, incidents)",
            alerts + incidents,
            security_pages,
            "security",
            run.sink_seconds[0],
            SECURITY_PER_MINUTE,
        ),
        identity: family(
            "identity (signIns, 4 kinds)",
            sign_ins,
            sign_in_pages,
            "identity",
            run.sink_seconds[1],
            IDENTITY_PER_MINUTE,
        ),
        counts,
        seconds: run.seconds,
        throttled: stats.throttled,
        peak_rss_mib: run.peak_rss_mib,
        simulator_peak_rss_mib,
    })
}

/// The report section.
pub fn report(result: &GraphBackfill) -> String {
    let w = result.world;
    let counts: Vec<String> = result
        .counts
        .iter()
        .map(|(what, n)| format!("{n} {what}"))
        .collect();
    let mut out = format!(
        "\n## Graph backfill (graph_security + entra_logs)\n\n\
         A simulated tenant with 7 days of Graph content ({alerts}/h alerts, {sign_ins}/h sign-ins \
         on weekdays, the daily rhythm applied: {counts}), {latency} ms added to every API response, \
         collected by `graph_security` (alerts and incidents) and `entra_logs` (sign-ins of the four \
         kinds) into blackholes with the default request budgets. Each family is bound by its \
         budget: the budget-limited maximum is the fewest pages that hold its records ($top \
         {ALERTS_PAGE} alerts, {INCIDENTS_PAGE} incidents, {SIGN_INS_PAGE} sign-ins) at the \
         documented rate. Requests are the simulator's counts up to the family's last delivery.\n\n\
         | family | records | seconds | records/s | maximum records/s | share of maximum | requests | requests/min | budget/min | share of budget |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        alerts = w.alerts_per_hour,
        sign_ins = w.sign_ins_per_hour,
        counts = counts.join(", "),
        latency = w.latency.as_millis(),
    );
    for f in [&result.security, &result.identity] {
        out.push_str(&format!(
            "| {} | {} | {:.0} | {:.0} | {:.0} | {:.1} % | {} (at least {}) | {:.1} | {:.0} | {:.1} % |\n",
            f.name,
            f.records,
            f.rate.seconds,
            f.records_per_second(),
            f.max_records_per_second(),
            f.share_of_maximum(),
            f.rate.requests,
            f.min_requests,
            f.rate.per_minute(),
            f.rate.budget_per_minute,
            f.rate.share_of_budget(),
        ));
    }
    let total = result.security.records + result.identity.records;
    out.push_str(&format!(
        "\nWhole run: {total} records in {:.0} s ({:.0} records/s), {} requests refused by the \
         simulator's limits, peak RSS {:.1} MiB (target: ≥ 90 % of the budget-limited maximum, \
         RSS < 150 MiB). The harness, which hosts the simulator, peaked at {:.0} MiB.\n",
        result.seconds,
        total as f64 / result.seconds,
        result.throttled,
        result.peak_rss_mib,
        result.simulator_peak_rss_mib,
    ));
    out
}
