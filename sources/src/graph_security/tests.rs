//! The source against the in-process Graph simulator, faults on: a sink-side buffer stands
//! in for the pipeline, the test delivers each batch, and the simulator's ground truth
//! (`graph_ground_truth`) and stats say what should have arrived and how it was asked for.
//! The harness (start, deliver, stop) is shared with `entra_logs`' tests.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use siemflow_core::auth::{Cloud, EntraConfig};
use siemflow_core::event::{Batch, resolve_batch};
use siemflow_core::retry::RetryRule;
use siemflow_core::{BatchStatus, BoxFuture, Secret, SourceContext, Value};
use siemflow_simulator::{
    DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TENANT_ID, GraphFaults, GraphResource,
    M365Config, Simulator, graph_ground_truth, graph_versions,
};

use super::GraphSecurityConfig;
use crate::microsoft::poll::PollTuning;
use crate::microsoft::{BudgetKey, RequestBudget, Window};
use crate::testing::{RunningSource, eventually, text};

/// Longest a test waits for something that should happen.
pub(crate) const PATIENCE: Duration = Duration::from_secs(150);

pub(crate) async fn simulator(config: M365Config) -> Arc<Simulator> {
    Arc::new(
        Simulator::start(config, "127.0.0.1:0".parse().expect("address"))
            .await
            .expect("simulator starts"),
    )
}

/// A world with `history` behind it, live (new versions and records as the clock moves),
/// with the Management API's own faults off and its limit out of the way.
pub(crate) fn world(history: &str, faults: GraphFaults) -> M365Config {
    let mut config = M365Config {
        history: humantime::parse_duration(history).expect("duration"),
        live: true,
        requests_per_minute: 1_000_000,
        ..M365Config::default()
    };
    config.graph.faults = faults;
    config
}

/// The faults of [`every_fault`] a run must have met (the simulator's names).
const EVERY_FAULT: [&str; 5] = [
    "throttle",
    "server_error",
    "slow",
    "repeat",
    "missing_next_link",
];

/// Every Graph fault the brief names, at rates that fire within a few dozen requests.
pub(crate) fn every_fault() -> GraphFaults {
    GraphFaults {
        throttle_rate: 0.1,
        server_error_rate: 0.08,
        slow_rate: 0.25,
        slow_latency: Duration::from_millis(300),
        repeat_rate: 0.3,
        missing_next_link_rate: 0.3,
        expired_skiptoken_rate: 0.15,
    }
}

pub(crate) fn entra(sim: &Simulator) -> EntraConfig {
    EntraConfig {
        tenant_id: DEFAULT_TENANT_ID.into(),
        client_id: DEFAULT_CLIENT_ID.into(),
        client_secret: Some(Secret::new(DEFAULT_CLIENT_SECRET)),
        certificate: None,
        cloud: Cloud::Commercial,
        login_url: Some(sim.base_url()),
    }
}

/// Short back-offs, the simulator's clock as "now", no log lag.
pub(crate) fn tuning(sim: &Arc<Simulator>) -> PollTuning {
    let clock = Arc::clone(sim);
    PollTuning {
        clock: Arc::new(move || clock.now()),
        config_error_pause: Duration::from_millis(300),
        save_interval: Duration::from_millis(20),
        log_lag: TimeDelta::zero(),
        ..PollTuning::default()
    }
    .with_retries(
        RetryRule::new(Duration::from_millis(5), Duration::from_millis(50)).at_most(30),
        RetryRule::new(Duration::from_millis(5), Duration::from_millis(50)),
    )
}

pub(crate) fn security_config(sim: &Simulator) -> GraphSecurityConfig {
    let mut config = GraphSecurityConfig::with_tenants(vec![entra(sim)]);
    config.api_url = Some(sim.base_url());
    // Further back than the history: everything that exists is read.
    config.start_from = Duration::from_secs(3 * 86_400);
    config.poll_interval = Duration::from_millis(100);
    config
}

/// A running source and the buffer it writes to.
pub(crate) struct Running(RunningSource);

/// Wires a source's context to a buffer the test reads, builds it with `build`, runs it.
pub(crate) fn start(
    id: &str,
    type_name: &str,
    state_dir: &Path,
    build: impl FnOnce(SourceContext) -> anyhow::Result<BoxFuture<anyhow::Result<()>>>,
) -> Running {
    Running(RunningSource::start(
        id, type_name, state_dir, 20_000, build,
    ))
}

impl Running {
    /// Receives and delivers until `done` holds; false when the patience ran out first.
    pub(crate) async fn deliver_until(
        &mut self,
        seen: &mut Received,
        mut done: impl FnMut(&Received) -> bool,
    ) -> bool {
        let deadline = Instant::now() + PATIENCE;
        while !done(seen) {
            if Instant::now() >= deadline {
                return false;
            }
            if let Ok(Some(batch)) =
                tokio::time::timeout(Duration::from_millis(200), self.0.rx.recv()).await
            {
                seen.add(&batch);
                resolve_batch(batch, BatchStatus::Delivered);
            }
        }
        true
    }

    /// Delivers whatever comes for `period`.
    pub(crate) async fn deliver_for(&mut self, seen: &mut Received, period: Duration) {
        let until = Instant::now() + period;
        self.deliver_until(seen, |_| Instant::now() >= until).await;
    }

    /// Stops the source, delivering whatever it still emits; it must end cleanly.
    pub(crate) async fn stop(self, seen: &mut Received) {
        self.0.stop(PATIENCE, |batch| seen.add(batch)).await;
    }

    pub(crate) fn counter(&self, name: &str, label: &str) -> u64 {
        self.0.counter(name, label)
    }
}

/// What arrived: per resource, each (id, version time) pair and how often.
#[derive(Default)]
pub(crate) struct Received {
    pub events: usize,
    /// (resource, id, time field as written) → times received.
    pub pairs: HashMap<(String, String, String), usize>,
    pub without_metadata: usize,
    /// The time field each resource is identified by.
    pub time_fields: HashMap<String, &'static str>,
}

impl Received {
    pub(crate) fn new(time_fields: &[(&str, &'static str)]) -> Self {
        Received {
            time_fields: time_fields
                .iter()
                .map(|(r, f)| (r.to_string(), *f))
                .collect(),
            ..Received::default()
        }
    }

    fn add(&mut self, batch: &Batch) {
        for event in batch {
            let object = event.value.as_object().expect("object event");
            let Some(meta) = object.get("siemflow").and_then(Value::as_object) else {
                self.without_metadata += 1;
                continue;
            };
            let resource = text(meta.get("resource"));
            assert_eq!(text(meta.get("tenant_id")), DEFAULT_TENANT_ID);
            assert!(matches!(meta.get("fetched_at"), Some(Value::Timestamp(_))));
            let field = self.time_fields.get(&resource).copied().unwrap_or("");
            let key = (resource, text(object.get("id")), text(object.get(field)));
            *self.pairs.entry(key).or_default() += 1;
            self.events += 1;
        }
    }

    /// (id, time) pairs of one resource, each once.
    pub(crate) fn of(&self, resource: &str) -> HashSet<(String, DateTime<Utc>)> {
        self.pairs
            .keys()
            .filter(|(r, _, _)| r == resource)
            .map(|(_, id, at)| (id.clone(), parse(at)))
            .collect()
    }

    /// Pairs received more than once.
    pub(crate) fn repeated(&self) -> usize {
        self.pairs.values().filter(|n| **n > 1).count()
    }
}

pub(crate) fn parse(at: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(at)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|e| panic!("`{at}` is not a time: {e}"))
}

/// The (id, time) of each ground-truth record: for alerts and incidents their latest
/// version visible at `until`.
pub(crate) fn truth(
    sim: &Simulator,
    resource: GraphResource,
    field: &str,
    until: DateTime<Utc>,
) -> HashSet<(String, DateTime<Utc>)> {
    graph_ground_truth(
        sim.config(),
        DEFAULT_TENANT_ID,
        resource,
        sim.history_start(),
        until,
    )
    .iter()
    .map(|r| {
        (
            r["id"].as_str().expect("id").to_string(),
            parse(r[field].as_str().expect("time")),
        )
    })
    .collect()
}

/// True when every truth pair arrived, or a later version of its record did.
pub(crate) fn has_final_versions(
    got: &HashSet<(String, DateTime<Utc>)>,
    want: &HashSet<(String, DateTime<Utc>)>,
) -> bool {
    missing_final_versions(got, want).is_empty()
}

/// The truth pairs that did not arrive, nor any later version of their record.
pub(crate) fn missing_final_versions<'a>(
    got: &HashSet<(String, DateTime<Utc>)>,
    want: &'a HashSet<(String, DateTime<Utc>)>,
) -> Vec<&'a (String, DateTime<Utc>)> {
    let latest: HashMap<&str, DateTime<Utc>> =
        got.iter().fold(HashMap::new(), |mut m, (id, at)| {
            let e = m.entry(id.as_str()).or_insert(*at);
            *e = (*e).max(*at);
            m
        });
    want.iter()
        .filter(|(id, at)| latest.get(id.as_str()).is_none_or(|l| l < at))
        .collect()
}

/// The first few truth pairs [`missing_final_versions`] finds, for a failure message.
pub(crate) fn first_missing<'a>(
    got: &HashSet<(String, DateTime<Utc>)>,
    want: &'a HashSet<(String, DateTime<Utc>)>,
) -> Vec<&'a (String, DateTime<Utc>)> {
    missing_final_versions(got, want)
        .into_iter()
        .take(5)
        .collect()
}

fn security_received() -> Received {
    Received::new(&[
        ("alerts", "lastUpdateDateTime"),
        ("incidents", "lastUpdateDateTime"),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_alert_and_incident_arrives_in_its_final_version_through_every_fault() {
    let mut config = world("2d", every_fault());
    config.seed = 11;
    config.graph.alerts_per_hour = 60;
    let sim = simulator(config).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let source = security_config(&sim);
    let mut running = start("graph_faults", "graph_security", dir.path(), |cx| {
        source.build_with(cx, tuning(&sim))
    });
    let mut seen = security_received();

    // The 2-day backfill, then live arrivals: the clock moves on in steps.
    for step in 0..4 {
        if step > 0 {
            sim.advance_clock(Duration::from_secs(40 * 60));
        }
        let until = sim.now();
        let alerts = truth(&sim, GraphResource::Alerts, "lastUpdateDateTime", until);
        let incidents = truth(&sim, GraphResource::Incidents, "lastUpdateDateTime", until);
        assert!(
            alerts.len() > 1000 && incidents.len() > 400,
            "a real workload: {} alerts, {} incidents",
            alerts.len(),
            incidents.len()
        );
        let arrived = running
            .deliver_until(&mut seen, |r| {
                has_final_versions(&r.of("alerts"), &alerts)
                    && has_final_versions(&r.of("incidents"), &incidents)
            })
            .await;
        assert!(
            arrived,
            "step {step}: missing alerts {:?}, incidents {:?} (received {})",
            first_missing(&seen.of("alerts"), &alerts),
            first_missing(&seen.of("incidents"), &incidents),
            seen.events
        );
    }
    // The workload takes a few dozen requests, which need not have drawn every fault
    // (throttling at 10 %, say): the source runs on, polling, until each has fired.
    let fired = running
        .deliver_until(&mut seen, |_| {
            let graph = sim.stats().tenant(DEFAULT_TENANT_ID).graph;
            EVERY_FAULT.iter().all(|fault| graph.fault(fault) > 0)
        })
        .await;
    assert!(fired, "every fault fired");
    running
        .deliver_for(&mut seen, Duration::from_millis(500))
        .await;
    let repeated_dropped = running.counter("graph_repeated_records_total", "");
    running.stop(&mut seen).await;

    // Nothing invented, nothing twice: every pair is a published version, emitted once.
    let until = sim.now();
    for (resource, which) in [
        ("alerts", GraphResource::Alerts),
        ("incidents", GraphResource::Incidents),
    ] {
        let versions: HashSet<(String, DateTime<Utc>)> = graph_versions(
            sim.config(),
            DEFAULT_TENANT_ID,
            which,
            sim.history_start(),
            until,
        )
        .into_iter()
        .collect();
        let got = seen.of(resource);
        let invented: Vec<_> = got.difference(&versions).take(5).collect();
        assert!(
            invented.is_empty(),
            "{resource}: unpublished versions {invented:?}"
        );
        let updated = got.len() - got.iter().map(|(id, _)| id).collect::<HashSet<_>>().len();
        assert!(
            updated > 20,
            "{resource}: later versions arrived too ({updated})"
        );
    }
    let twice: Vec<_> = seen.pairs.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(
        twice.is_empty(),
        "each version emitted once: {} twice, e.g. {twice:?} (now {until})",
        seen.repeated()
    );
    assert_eq!(seen.without_metadata, 0);
    assert!(
        repeated_dropped > 0,
        "repeated records across pages were dropped"
    );

    let graph = sim.stats().tenant(DEFAULT_TENANT_ID).graph;
    for fault in EVERY_FAULT {
        assert!(graph.fault(fault) > 0, "{fault} fired: {:?}", graph.faults);
    }
    assert_eq!(graph.bad_requests, 0, "every query is one Graph accepts");
    assert!(graph.requests["alerts_v2"] > 0 && graph.requests["incidents"] > 0);
    assert!(graph.max_in_window("security", Duration::from_secs(60)) <= 150);

    // The saved cursors resume a restart where it stopped: nothing new to emit.
    let mut again = start("graph_faults_again", "graph_security", dir.path(), |cx| {
        source.build_with(cx, tuning(&sim))
    });
    let mut after = security_received();
    again.deliver_for(&mut after, Duration::from_secs(2)).await;
    again.stop(&mut after).await;
    let fresh: Vec<_> = after
        .pairs
        .keys()
        .filter(|key| !seen.pairs.contains_key(*key))
        .collect();
    assert_eq!(
        after.events,
        fresh.len(),
        "a restart re-emits nothing delivered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sources_of_one_tenant_share_its_budget_and_its_pauses() {
    const PER_MINUTE: u32 = 20;
    let mut config = world(
        "2d",
        GraphFaults {
            throttle_rate: 0.1,
            ..GraphFaults::default()
        },
    );
    config.seed = 5;
    config.graph.alerts_per_hour = 20;
    config.graph.security_requests_per_minute = PER_MINUTE;
    let sim = simulator(config).await;
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let mut source = security_config(&sim);
    source.requests_per_minute = PER_MINUTE;
    let mut a = start("graph_budget_a", "graph_security", dir_a.path(), |cx| {
        source.build_with(cx, tuning(&sim))
    });
    let mut b = start("graph_budget_b", "graph_security", dir_b.path(), |cx| {
        source.build_with(cx, tuning(&sim))
    });
    // The budget both sources' clients hold: one per (tenant, host, quota) in the process.
    let budget = RequestBudget::join(
        BudgetKey {
            tenant: DEFAULT_TENANT_ID.to_string(),
            host: sim.address().to_string(),
            quota: "security",
        },
        &[Window::per_minute(PER_MINUTE)],
        "graph",
    );
    let security_requests = || {
        sim.stats()
            .tenant(DEFAULT_TENANT_ID)
            .graph
            .request_times
            .get("security")
            .map_or(0, Vec::len)
    };
    let (mut seen_a, mut seen_b) = (security_received(), security_received());
    let mut pauses_checked = 0;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(75) {
        a.deliver_for(&mut seen_a, Duration::from_millis(100)).await;
        b.deliver_for(&mut seen_b, Duration::from_millis(100)).await;
        // A 429 to either pauses both: no request reaches the simulator until it passes.
        if let Some(until) = budget.paused_until()
            && until > tokio::time::Instant::now() + Duration::from_millis(600)
        {
            // Requests sent before the pause began are answered first (the clients count
            // a request when its answer arrives, the simulator when the request does).
            eventually("the requests sent before the pause are answered", || {
                a.counter("graph_requests_total", "") + b.counter("graph_requests_total", "")
                    >= security_requests() as u64
            })
            .await;
            let before = security_requests();
            tokio::time::sleep_until(until - Duration::from_millis(100)).await;
            assert_eq!(
                security_requests(),
                before,
                "a request went out during a pause"
            );
            pauses_checked += 1;
        }
    }
    assert!(pauses_checked > 0, "a throttled answer paused the budget");
    assert!(a.counter("graph_throttled_total", "") + b.counter("graph_throttled_total", "") > 0);
    let graph = sim.stats().tenant(DEFAULT_TENANT_ID).graph;
    let total = graph.request_times["security"].len();
    assert!(
        total > PER_MINUTE as usize,
        "the window was put to the test: {total} requests"
    );
    let most = graph.max_in_window("security", Duration::from_secs(60));
    assert!(most <= PER_MINUTE as usize, "{most} requests in one minute");
    assert_eq!(
        graph.throttled, 0,
        "the simulator's own limit never had to refuse"
    );
    assert!(graph.fault("throttle") > 0);
    assert!(seen_a.events > 0 && seen_b.events > 0, "both sources read");
    a.stop(&mut seen_a).await;
    b.stop(&mut seen_b).await;
}

/// Graph leaves out the nextLink of a full `$top` page at times (reference §2.2); a
/// walk sorted by `lastUpdateDateTime` that went on with `$skip` would skip a record
/// whenever one read before moved to a later time (a new version) between two pages:
/// everything after it shifts down by one. Here every full page comes without a link,
/// and between the first and second page the first record read gets a new version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sorted_walk_without_next_links_misses_nothing_when_a_record_moves_mid_walk() {
    sorted_walk_with_a_record_moving_mid_walk(1.0).await;
}

/// Graph's nextLinks of the security collections page with `$skip` (reference §2.2's
/// example): followed as given, a record read before that moves to a later time
/// between two pages shifts the rest down by one, and the record at the page boundary
/// is never listed — the mark then passes it, and it is lost (seen in the e2e kill test,
/// whose simulator clock jumps mid-walk). With every link given, nothing is missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sorted_walk_following_skip_next_links_misses_nothing_when_a_record_moves_mid_walk() {
    sorted_walk_with_a_record_moving_mid_walk(0.0).await;
}

/// Walks alerts_v2 sorted by lastUpdateDateTime in pages of 3, full pages coming without
/// a nextLink at `missing_next_link_rate`; after the first page the clock jumps so that
/// its first record gets a new version; every alert must be read in its final version.
async fn sorted_walk_with_a_record_moving_mid_walk(missing_next_link_rate: f64) {
    use crate::microsoft::api::GRAPH_SECURITY;
    use crate::microsoft::{ApiClient, ApiRequest, ClientSettings, ODataPager};
    let mut config = world(
        "2d",
        GraphFaults {
            missing_next_link_rate,
            ..GraphFaults::default()
        },
    );
    config.graph.security_requests_per_minute = 1_000_000;
    let sim = simulator(config).await;
    let tenant = DEFAULT_TENANT_ID;
    let jump = Duration::from_secs(12 * 3600);
    // An alert whose latest visible version gets a newer one within `jump`: the walk
    // starts at that version, so the alert is the first record of the first page.
    let now = sim.visible_until();
    let later = now + TimeDelta::from_std(jump).expect("jump") - TimeDelta::minutes(5);
    let latest = |until| {
        graph_versions(
            sim.config(),
            tenant,
            GraphResource::Alerts,
            sim.history_start(),
            until,
        )
        .into_iter()
        .fold(
            HashMap::new(),
            |mut m: HashMap<String, DateTime<Utc>>, (id, at)| {
                let e = m.entry(id).or_insert(at);
                *e = (*e).max(at);
                m
            },
        )
    };
    let (before, after) = (latest(now), latest(later));
    let from = before
        .iter()
        .filter(|(id, at)| after.get(*id).is_some_and(|l| l > *at))
        .map(|(_, at)| *at)
        .min()
        .expect("an alert that changes within the jump");
    let top = 3;
    let mut url =
        reqwest::Url::parse(&format!("{}/v1.0/security/alerts_v2", sim.base_url())).expect("url");
    url.query_pairs_mut()
        .append_pair(
            "$filter",
            &format!(
                "lastUpdateDateTime ge {}",
                from.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
            ),
        )
        .append_pair("$orderby", "lastUpdateDateTime asc")
        .append_pair("$top", &top.to_string());
    let cx_labels = siemflow_core::metrics::ComponentLabels {
        id: "graph_sorted_walk".into(),
        kind: siemflow_core::metrics::ComponentKind::Source,
        type_name: "graph_security".into(),
    };
    siemflow_core::metrics::prometheus();
    let http = siemflow_core::http::client(
        &siemflow_core::http::TlsConfig::default(),
        Duration::from_secs(10),
        None,
    )
    .expect("http");
    let tokens = siemflow_core::auth::TokenProvider::new(
        &entra(&sim),
        "https://graph.microsoft.com/.default",
        http.clone(),
    )
    .expect("tokens");
    let root = reqwest::Url::parse(&format!("{}/", sim.base_url())).expect("root");
    let client = ApiClient::new(ClientSettings {
        profile: GRAPH_SECURITY,
        tenant_id: tenant,
        api_root: &root,
        http,
        tokens,
        windows: &[Window::per_minute(100_000)],
        retries: tuning(&sim).retries,
        labels: &cx_labels,
    });
    let cancel = tokio_util::sync::CancellationToken::new();
    let mut pager = ODataPager::new(ApiRequest::get("alerts_v2", url));
    let mut seen: HashSet<(String, DateTime<Utc>)> = HashSet::new();
    let mut pages = 0;
    let mut moved = None;
    while let Some(page) = pager
        .next_page::<serde_json::Value>(&client, &cancel)
        .await
        .expect("page")
    {
        pages += 1;
        for item in &page.items {
            let id = item["id"].as_str().expect("id").to_string();
            let at = parse(item["lastUpdateDateTime"].as_str().expect("time"));
            moved.get_or_insert((id.clone(), at));
            seen.insert((id, at));
        }
        if pages == 1 {
            assert_eq!(page.items.len(), top, "a full first page");
            sim.advance_clock(jump);
        }
        assert!(pages < 10_000, "the walk ends");
    }
    let (moved_id, moved_at) = moved.expect("a first record");
    // Every alert visible now (the clock does not move again) at or after `from`, in
    // this version or a later one.
    let want: HashSet<(String, DateTime<Utc>)> = latest(sim.visible_until())
        .into_iter()
        .filter(|(_, at)| *at >= from)
        .collect();
    assert!(
        want.iter()
            .any(|(id, at)| *id == moved_id && *at > moved_at),
        "the first record read moved to a later time"
    );
    let missing = missing_final_versions(&seen, &want);
    assert!(
        missing.is_empty(),
        "{} of {} alerts missed (in {pages} pages): {missing:?}",
        missing.len(),
        want.len()
    );
    let without_link = sim.stats().tenant(tenant).graph.fault("missing_next_link");
    if missing_next_link_rate > 0.0 {
        assert!(without_link >= 1, "pages came without a link");
    } else {
        assert_eq!(without_link, 0, "every page came with its link");
    }
}

/// A Graph client signing in by certificate, in each cloud's Graph audience, against the
/// simulator: when the simulator expires its token (the client's own clock still holds
/// it valid), the 401 makes it sign a new assertion, fetch a new token and send the
/// request again, once; the data then flows as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_client_gets_a_new_token_after_a_401_in_every_cloud() {
    use siemflow_core::auth::{CertificateConfig, SignatureStyle, TokenProvider, default_scope};
    use siemflow_simulator::{GraphTenantConfig, TenantConfig};

    use crate::microsoft::api::GRAPH_SECURITY;
    use crate::microsoft::{ApiClient, ApiRequest, ClientSettings};
    let certs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../simulator/fixtures/test-certs");
    let tenants = [
        (
            "3c9e1a52-7d4b-4e8f-a1c6-2b5d8f0e9a13",
            Cloud::Commercial,
            siemflow_simulator::Cloud::Commercial,
        ),
        (
            "7d2c4b1e-3f5a-4e6b-8c9d-0a1b2c3d4e5f",
            Cloud::Gcc,
            siemflow_simulator::Cloud::Gcc,
        ),
        (
            "0b6f0c1e-5a3d-4c2b-9e8f-1a2b3c4d5e6f",
            Cloud::GccHigh,
            siemflow_simulator::Cloud::GccHigh,
        ),
        (
            "5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d",
            Cloud::Dod,
            siemflow_simulator::Cloud::Dod,
        ),
    ];
    const CLIENT: &str = "6f1a2b3c-0d4e-4f5a-8b6c-7d8e9f0a1b2c";
    let mut config = world("1d", GraphFaults::default());
    config.live = false;
    config.token_lifetime = Duration::from_secs(60);
    config.graph.security_requests_per_minute = 1_000_000;
    for (tenant, _, cloud) in tenants {
        config.tenants.push(TenantConfig {
            tenant_id: tenant.into(),
            client_id: CLIENT.into(),
            client_secret: None,
            certificate_pem: Some(certs.join("app.cert.pem")),
            roles: siemflow_simulator::DEFAULT_ROLES
                .iter()
                .map(|r| r.to_string())
                .collect(),
        });
        config.graph.tenants.push(GraphTenantConfig {
            tenant_id: tenant.into(),
            premium: true,
            cloud,
        });
    }
    let sim = simulator(config).await;
    siemflow_core::metrics::prometheus();
    let http = siemflow_core::http::client(
        &siemflow_core::http::TlsConfig::default(),
        Duration::from_secs(10),
        None,
    )
    .expect("http");
    let root = reqwest::Url::parse(&format!("{}/", sim.base_url())).expect("root");
    let mut clients = Vec::new();
    for (i, (tenant, cloud, _)) in tenants.into_iter().enumerate() {
        let entra = EntraConfig {
            tenant_id: tenant.into(),
            client_id: CLIENT.into(),
            client_secret: None,
            certificate: Some(CertificateConfig {
                path: certs.join("app.cert.pem"),
                key_path: Some(certs.join("app.key.pem")),
                password: None,
                signature: if i % 2 == 0 {
                    SignatureStyle::Ps256
                } else {
                    SignatureStyle::Rs256
                },
            }),
            cloud,
            login_url: Some(sim.base_url()),
        };
        let tokens = TokenProvider::new(&entra, &default_scope(cloud.graph_url()), http.clone())
            .expect("certificate loads");
        let labels = siemflow_core::metrics::ComponentLabels {
            id: format!("graph_certificate_{i}"),
            kind: siemflow_core::metrics::ComponentKind::Source,
            type_name: "graph_security".into(),
        };
        let client = ApiClient::new(ClientSettings {
            profile: GRAPH_SECURITY,
            tenant_id: tenant,
            api_root: &root,
            http: http.clone(),
            tokens,
            windows: &[Window::per_minute(100_000)],
            retries: tuning(&sim).retries,
            labels: &labels,
        });
        clients.push((tenant, client));
    }
    let alerts = root.join("v1.0/security/alerts_v2?$top=1").expect("url");
    async fn read(client: &ApiClient, url: &reqwest::Url) -> usize {
        let request = ApiRequest::get("alerts_v2", url.clone());
        let cancel = tokio_util::sync::CancellationToken::new();
        let answer = client.send(&request, &cancel).await.expect("answered");
        let body: serde_json::Value = serde_json::from_slice(&answer.body).expect("JSON");
        body["value"].as_array().map_or(0, Vec::len)
    }
    for (tenant, client) in &clients {
        assert_eq!(
            read(client, &alerts).await,
            1,
            "{tenant}: its own cloud's Graph token works"
        );
    }
    sim.advance_clock(Duration::from_secs(61));
    for (tenant, client) in &clients {
        assert_eq!(
            read(client, &alerts).await,
            1,
            "{tenant}: read again with a new token"
        );
        let stats = sim.stats().tenant(tenant);
        assert_eq!(
            stats.graph.unauthorized, 1,
            "{tenant}: one 401, for the expired token"
        );
        assert_eq!(
            stats.by_endpoint.get("token"),
            Some(&2),
            "{tenant}: one new token"
        );
    }
}

/// The service's clock ahead of ours by more than the overlap: the mark (a record's
/// `lastUpdateDateTime`) is then ahead of our "now", and a sorted query, which has no end,
/// must still be sent — not wait until our clock catches up with the service's (found by
/// the e2e kill test, whose simulator clock jumps ahead of the process's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_behind_the_services_by_more_than_the_overlap_does_not_stop_the_reading() {
    let mut config = world("1d", GraphFaults::default());
    config.seed = 31;
    config.graph.alerts_per_hour = 60;
    let sim = simulator(config).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let source = security_config(&sim);
    let behind = TimeDelta::hours(1);
    let clock = Arc::clone(&sim);
    let tuning = PollTuning {
        clock: Arc::new(move || clock.now() - behind),
        ..tuning(&sim)
    };
    let mut running = start("graph_clock_behind", "graph_security", dir.path(), |cx| {
        source.build_with(cx, tuning)
    });
    let mut seen = security_received();
    let mut before = None;
    for step in 0..2 {
        if step > 0 {
            sim.advance_clock(Duration::from_secs(40 * 60));
        }
        let until = sim.now();
        let alerts = truth(&sim, GraphResource::Alerts, "lastUpdateDateTime", until);
        let incidents = truth(&sim, GraphResource::Incidents, "lastUpdateDateTime", until);
        if let Some((old_alerts, old_incidents)) = &before {
            assert!(
                alerts.difference(old_alerts).count() + incidents.difference(old_incidents).count()
                    > 0,
                "alerts or incidents changed in the 40 minutes"
            );
        }
        let arrived = running
            .deliver_until(&mut seen, |r| {
                has_final_versions(&r.of("alerts"), &alerts)
                    && has_final_versions(&r.of("incidents"), &incidents)
            })
            .await;
        assert!(
            arrived,
            "step {step}: missing alerts {:?}, incidents {:?}",
            first_missing(&seen.of("alerts"), &alerts),
            first_missing(&seen.of("incidents"), &incidents)
        );
        before = Some((alerts, incidents));
    }
    running.stop(&mut seen).await;
}
