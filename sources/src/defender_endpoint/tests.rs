//! The source against the in-process simulator's Defender for Endpoint API, faults on: a
//! sink-side buffer stands in for the pipeline, the test delivers each batch, and the
//! simulator's ground truth (`endpoint_alerts`, `endpoint_alert_versions`) and stats say
//! what should have arrived and how it was asked for. The harness is graph_security's.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use siemflow_simulator::{
    DEFAULT_TENANT_ID, EndpointFaults, M365Config, RateLimit, Simulator, TenantConfig,
    endpoint_alert_versions, endpoint_alerts,
};

use super::DefenderEndpointConfig;
use crate::graph_security::tests::{
    Received, entra, first_missing, has_final_versions, missing_final_versions, parse, simulator,
    start, tuning,
};
use crate::microsoft::Window;
use crate::testing::eventually;

/// A live world with `history` of alerts behind it (a busy tenant: MDE raises about a third
/// of Graph's alerts), the Management API's limit out of the way.
fn world(history: &str, faults: EndpointFaults) -> M365Config {
    let mut config = M365Config {
        history: humantime::parse_duration(history).expect("duration"),
        live: true,
        requests_per_minute: 1_000_000,
        ..M365Config::default()
    };
    config.graph.alerts_per_hour = 60;
    config.defender_endpoint.faults = faults;
    config
}

/// Every fault the simulator injects, at rates that fire within a few dozen requests.
fn every_fault() -> EndpointFaults {
    EndpointFaults {
        throttle_rate: 0.1,
        server_error_rate: 0.08,
        slow_rate: 0.2,
        slow_latency: Duration::from_millis(300),
    }
}

const EVERY_FAULT: [&str; 3] = ["throttle", "server_error", "slow"];

fn source(sim: &Simulator) -> DefenderEndpointConfig {
    let mut config = DefenderEndpointConfig::with_tenants(vec![entra(sim)]);
    config.api_url = Some(sim.base_url());
    // Further back than the history: everything that exists is read.
    config.start_from = Duration::from_secs(3 * 86_400);
    config.poll_interval = Duration::from_millis(100);
    config
}

fn received() -> Received {
    Received::new(&[("alerts", "lastUpdateTime")])
}

/// (id, lastUpdateTime) of each alert in its latest version visible at `until`.
fn truth(sim: &Simulator, until: DateTime<Utc>) -> HashSet<(String, DateTime<Utc>)> {
    endpoint_alerts(sim.config(), DEFAULT_TENANT_ID, sim.history_start(), until)
        .iter()
        .map(|a| {
            (
                a["id"].as_str().expect("id").to_string(),
                parse(a["lastUpdateTime"].as_str().expect("time")),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_alert_arrives_in_its_final_version_through_every_fault() {
    // The documented windows pace the backfill (the hour's 1,500 evenly spread: one
    // request every 2.4 s after a small burst), so the history is kept to a day.
    let mut config = world("1d", every_fault());
    config.seed = 17;
    let sim = simulator(config).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut source = source(&sim);
    // Small pages: a window holds more than one, so windows are split.
    source.page_size = 40;
    let mut running = start("mde_faults", "defender_endpoint", dir.path(), |cx| {
        source.build_with(cx, tuning(&sim))
    });
    let mut seen = received();

    // The backfill, then live arrivals and updates: the clock moves on in steps.
    for step in 0..4 {
        if step > 0 {
            sim.advance_clock(Duration::from_secs(40 * 60));
        }
        let alerts = truth(&sim, sim.now());
        assert!(
            alerts.len() > 200,
            "a real workload: {} alerts",
            alerts.len()
        );
        let arrived = running
            .deliver_until(&mut seen, |r| has_final_versions(&r.of("alerts"), &alerts))
            .await;
        assert!(
            arrived,
            "step {step}: missing alerts {:?} (received {})",
            first_missing(&seen.of("alerts"), &alerts),
            seen.events
        );
    }
    let fired = running
        .deliver_until(&mut seen, |_| {
            let mde = sim.stats().tenant(DEFAULT_TENANT_ID).defender_endpoint;
            EVERY_FAULT.iter().all(|fault| mde.fault(fault) > 0)
        })
        .await;
    assert!(fired, "every fault fired");
    running.stop(&mut seen).await;

    // Nothing invented, nothing twice: every pair is a published version, emitted once.
    let until = sim.now();
    let versions: HashSet<(String, DateTime<Utc>)> =
        endpoint_alert_versions(sim.config(), DEFAULT_TENANT_ID, sim.history_start(), until)
            .into_iter()
            .collect();
    let got = seen.of("alerts");
    let invented: Vec<_> = got.difference(&versions).take(5).collect();
    assert!(invented.is_empty(), "unpublished versions {invented:?}");
    let updated = got.len() - got.iter().map(|(id, _)| id).collect::<HashSet<_>>().len();
    assert!(updated > 10, "later versions arrived too ({updated})");
    let twice: Vec<_> = seen.pairs.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(twice.is_empty(), "each version emitted once: {twice:?}");
    assert_eq!(seen.without_metadata, 0);

    let mde = sim.stats().tenant(DEFAULT_TENANT_ID).defender_endpoint;
    assert_eq!(mde.bad_requests, 0, "every query is one MDE accepts");
    assert_eq!(
        mde.throttled, 0,
        "the simulator's own limits never had to refuse"
    );
    assert!(mde.max_in_window(Duration::from_secs(60)) <= 100);
    assert!(mde.max_in_window(Duration::from_secs(3600)) <= 1500);

    // The saved cursor resumes a restart where it stopped: nothing delivered comes again.
    let mut again = start("mde_faults_again", "defender_endpoint", dir.path(), |cx| {
        source.build_with(cx, tuning(&sim))
    });
    let mut after = received();
    again.deliver_for(&mut after, Duration::from_secs(2)).await;
    again.stop(&mut after).await;
    let fresh = after
        .pairs
        .keys()
        .filter(|key| !seen.pairs.contains_key(*key))
        .count();
    assert_eq!(after.events, fresh, "a restart re-emits nothing delivered");
}

/// Both documented windows at once, on shortened periods (the minute as 2 s, the hour as
/// 10 s, limits in the same proportion of strictness): the budget keeps to both, the
/// longer one binding over a long run, and the simulator never has to refuse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_request_windows_hold_together() {
    let (short, long) = (
        Window::new(5, Duration::from_secs(2)),
        Window::new(12, Duration::from_secs(10)),
    );
    let mut config = world("2d", EndpointFaults::default());
    config.defender_endpoint.limits = [short, long]
        .iter()
        .map(|w| RateLimit {
            requests: w.limit,
            per: w.period,
        })
        .collect();
    let sim = simulator(config).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut source = source(&sim);
    // Tiny pages: the backfill takes far more requests than the windows allow in the run.
    source.page_size = 3;
    let mut running = start("mde_windows", "defender_endpoint", dir.path(), |cx| {
        source.build_windowed(cx, tuning(&sim), &[short, long])
    });
    let mut seen = received();
    let requests = || {
        sim.stats()
            .tenant(DEFAULT_TENANT_ID)
            .defender_endpoint
            .request_times
            .len()
    };
    // Three long windows' worth of requests, whatever time that takes.
    let enough = 3 * long.limit as usize;
    let started = Instant::now();
    while requests() < enough && started.elapsed() < Duration::from_secs(150) {
        running
            .deliver_for(&mut seen, Duration::from_millis(200))
            .await;
    }
    running.stop(&mut seen).await;
    let mde = sim.stats().tenant(DEFAULT_TENANT_ID).defender_endpoint;
    assert!(
        mde.request_times.len() >= enough,
        "{} requests",
        mde.request_times.len()
    );
    let in_short = mde.max_in_window(short.period);
    let in_long = mde.max_in_window(long.period);
    assert!(
        in_short <= short.limit as usize,
        "{in_short} in {:?}",
        short.period
    );
    assert!(
        in_long <= long.limit as usize,
        "{in_long} in {:?}",
        long.period
    );
    assert!(
        in_long > short.limit as usize,
        "the long window was filled ({in_long}), not just the short one"
    );
    assert_eq!(
        mde.throttled, 0,
        "the simulator's own limits never had to refuse"
    );
    assert!(seen.events > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_permission_is_a_config_error_retried_slowly() {
    let mut config = world("2h", EndpointFaults::default());
    let no_role = "0b9e6f6e-3c1d-4c55-9a43-2f6a4fcb5a10";
    config.tenants.push(TenantConfig {
        client_id: no_role.into(),
        client_secret: Some("other".into()),
        roles: vec!["SecurityAlert.Read.All".into()],
        ..TenantConfig::default()
    });
    let sim = simulator(config).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut source = source(&sim);
    source.tenants[0].client_id = no_role.into();
    source.tenants[0].client_secret = Some(siemflow_core::Secret::new("other"));
    let sim_for_clock = Arc::clone(&sim);
    let mut running = start("mde_forbidden", "defender_endpoint", dir.path(), |cx| {
        source.build_with(cx, tuning(&sim_for_clock))
    });
    eventually(
        "a config error is counted, then another after the pause",
        || running.counter("component_errors_total", "error_type=\"config\"") >= 2,
    )
    .await;
    let mut seen = received();
    running
        .deliver_for(&mut seen, Duration::from_millis(100))
        .await;
    running.stop(&mut seen).await;
    assert_eq!(seen.events, 0);
    let mde = sim.stats().tenant(DEFAULT_TENANT_ID).defender_endpoint;
    assert!(mde.forbidden >= 2, "{mde:?}");
    assert_eq!(mde.pages, 0);
}

/// The hard moment of an unsorted API: alerts change while a window is read. A server that
/// answers MDE's way (an order unrelated to time, `$skip` nextLinks) moves one alert out of
/// the window before each of its first answers, so every alert after it shifts down by one
/// position: a client following `$skip` pages steps over an unchanged alert. The source
/// reads windows whole, each in one response, and misses none.
/// An alert as the test server lists it: its id and its lastUpdateTime.
type Listed = (String, DateTime<Utc>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_moving_while_a_window_is_read_skips_no_other() {
    use crate::microsoft::tests::{TENANT, json, serve};

    // Times to the microsecond, as written on the wire.
    let now = || DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).expect("now");
    let first = now() - chrono::TimeDelta::hours(2);
    // 30 alerts, one every 4 minutes; ids in the order the server lists them.
    let alerts: Arc<std::sync::Mutex<Vec<Listed>>> = Arc::new(std::sync::Mutex::new(
        (0..30)
            .map(|i| {
                (
                    format!("da{i:02}"),
                    first + chrono::TimeDelta::minutes(4 * i),
                )
            })
            .collect(),
    ));
    let state = Arc::clone(&alerts);
    // The server's own address, for its absolute nextLinks (known once it listens).
    let base: Arc<std::sync::OnceLock<String>> = Arc::default();
    let own_base = Arc::clone(&base);
    let server = serve(move |call, index| {
        let url = reqwest::Url::parse(&format!("http://h{}", call.target)).expect("url");
        let query: std::collections::HashMap<String, String> =
            url.query_pairs().into_owned().collect();
        let mut alerts = state.lock().expect("alerts");
        // Before each of the first answers, the first alert not yet moved changes now.
        if (1..=5).contains(&index) {
            alerts[index].1 = now();
        }
        let filter = query.get("$filter").cloned().unwrap_or_default();
        let bound = |op: &str| {
            filter
                .split(" and ")
                .find_map(|c| c.strip_prefix(&format!("lastUpdateTime {op} ")))
                .map(parse)
        };
        let (from, until) = (bound("ge"), bound("lt"));
        let top: usize = query
            .get("$top")
            .and_then(|t| t.parse().ok())
            .unwrap_or(10_000);
        let skip: usize = query.get("$skip").and_then(|s| s.parse().ok()).unwrap_or(0);
        let matching: Vec<&(String, DateTime<Utc>)> = alerts
            .iter()
            .filter(|(_, at)| from.is_none_or(|f| *at >= f) && until.is_none_or(|u| *at < u))
            .collect();
        let page: Vec<serde_json::Value> = matching
            .iter()
            .skip(skip)
            .take(top)
            .map(|(id, at)| {
                serde_json::json!({
                    "id": id,
                    "machineId": "m",
                    "alertCreationTime": first.to_rfc3339(),
                    "lastUpdateTime": at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                })
            })
            .collect();
        let mut body = serde_json::json!({ "value": page });
        if skip + top < matching.len() {
            let mut next = url.clone();
            next.query_pairs_mut()
                .clear()
                .extend_pairs(query.iter().filter(|(k, _)| *k != "$skip"))
                .append_pair("$skip", &(skip + top).to_string());
            let next = next.as_str().replacen("http://h", "", 1);
            let base = own_base.get().map(String::as_str).unwrap_or_default();
            body["@odata.nextLink"] = serde_json::json!(format!("{base}{next}"));
        }
        json(200, &body.to_string())
    })
    .await;
    base.set(server.base.clone()).expect("set once");
    let mut source = DefenderEndpointConfig::with_tenants(vec![siemflow_core::auth::EntraConfig {
        tenant_id: TENANT.into(),
        client_id: "5e1f3a9c-6b2d-4c8e-9f01-365d0c0a5e1f".into(),
        client_secret: Some(siemflow_core::Secret::new("secret")),
        certificate: None,
        cloud: siemflow_core::auth::Cloud::Commercial,
        login_url: Some(server.base.clone()),
    }]);
    source.api_url = Some(server.base.clone());
    source.page_size = 10;
    source.start_from = Duration::from_secs(3 * 3600);
    source.poll_interval = Duration::from_millis(100);
    let tuning = crate::microsoft::poll::PollTuning {
        log_lag: chrono::TimeDelta::zero(),
        save_interval: Duration::from_millis(20),
        ..crate::microsoft::poll::PollTuning::default()
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut running = start("mde_moving", "defender_endpoint", dir.path(), |cx| {
        source.build_windowed(cx, tuning, &[Window::per_minute(6000)])
    });
    let mut seen = received();
    let arrived = running
        .deliver_until(&mut seen, |r| {
            let want: HashSet<(String, DateTime<Utc>)> =
                alerts.lock().expect("alerts").iter().cloned().collect();
            server.calls().len() > 5 && has_final_versions(&r.of("alerts"), &want)
        })
        .await;
    let want: HashSet<(String, DateTime<Utc>)> =
        alerts.lock().expect("alerts").iter().cloned().collect();
    assert!(
        arrived,
        "missing {:?}; requests {:?}",
        missing_final_versions(&seen.of("alerts"), &want),
        server
            .calls()
            .iter()
            .map(|c| c.target.clone())
            .collect::<Vec<_>>()
    );
    running.stop(&mut seen).await;
    assert!(
        server.calls().iter().all(|c| !c.target.contains("skip")),
        "windows are split, never paged"
    );
}
