//! The source against the in-process Defender for Cloud Apps simulator, faults on: the
//! simulator's ground truth says what should have arrived and its stats how it was asked
//! for. The running-source harness is `graph_security`'s.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use siemflow_core::Secret;
use siemflow_core::auth::Cloud;
use siemflow_core::event::Batch;
use siemflow_core::{ObjectMap, Value};
use siemflow_simulator::{
    DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TENANT_ID, M365Config, Simulator,
    cloud_apps_activities, cloud_apps_alerts,
};

use super::{CloudAppsConfig, CloudAppsTenant};
use crate::graph_security::tests::{PATIENCE, simulator, tuning};
use crate::testing::{RunningSource, text};

/// The simulator's legacy API token of the default tenant.
const API_TOKEN: &str = siemflow_simulator::defender_cloud_apps::DEFAULT_API_TOKEN;

/// The requests a minute both sides allow in these tests: the documented 30 scaled up so
/// a day of activities takes seconds, not an hour; the pacing is the same.
const PER_MINUTE: u32 = 1_200;

fn world(history: &str) -> M365Config {
    let mut config = M365Config {
        history: humantime::parse_duration(history).expect("duration"),
        live: true,
        ..M365Config::default()
    };
    config.defender_cloud_apps.requests_per_minute = PER_MINUTE;
    config
}

fn entra_tenant(sim: &Simulator) -> CloudAppsTenant {
    CloudAppsTenant {
        portal_url: sim.base_url(),
        api_token: None,
        tenant_id: Some(DEFAULT_TENANT_ID.into()),
        client_id: Some(DEFAULT_CLIENT_ID.into()),
        client_secret: Some(Secret::new(DEFAULT_CLIENT_SECRET)),
        certificate: None,
        cloud: Cloud::Commercial,
        login_url: Some(sim.base_url()),
    }
}

fn token_tenant(portal_url: &str, token: &str) -> CloudAppsTenant {
    CloudAppsTenant {
        portal_url: portal_url.to_string(),
        api_token: Some(Secret::new(token)),
        tenant_id: Some(DEFAULT_TENANT_ID.into()),
        client_id: None,
        client_secret: None,
        certificate: None,
        cloud: Cloud::Commercial,
        login_url: None,
    }
}

fn source(tenant: CloudAppsTenant) -> CloudAppsConfig {
    let mut config = CloudAppsConfig::with_tenants(vec![tenant]);
    // Further back than the history: everything that exists is read.
    config.start_from = Duration::from_secs(3 * 86_400);
    config.poll_interval = Duration::from_millis(100);
    config.requests_per_minute = PER_MINUTE;
    config
}

/// What arrived: (resource, `_id`, version) → times received.
#[derive(Default)]
struct Received {
    pairs: HashMap<(String, String, String), usize>,
    without_metadata: usize,
}

fn version(record: &ObjectMap) -> String {
    match record.get("resolutionStatusValue") {
        Some(_) => format!(
            "{}/{}",
            text(record.get("statusValue")),
            text(record.get("resolutionStatusValue"))
        ),
        None => String::new(),
    }
}

impl Received {
    fn add(&mut self, batch: &Batch) {
        for event in batch {
            let object = event.value.as_object().expect("object event");
            let Some(meta) = object.get("siemflow").and_then(Value::as_object) else {
                self.without_metadata += 1;
                continue;
            };
            assert_eq!(text(meta.get("tenant_id")), DEFAULT_TENANT_ID);
            let key = (
                text(meta.get("resource")),
                text(object.get("_id")),
                version(object),
            );
            *self.pairs.entry(key).or_default() += 1;
        }
    }

    fn of(&self, resource: &str) -> HashSet<(String, String)> {
        self.pairs
            .keys()
            .filter(|(r, _, _)| r == resource)
            .map(|(_, id, v)| (id.clone(), v.clone()))
            .collect()
    }
}

/// (`_id`, version) of every record the simulator holds at its now.
fn truth(sim: &Simulator, resource: &str) -> HashSet<(String, String)> {
    let rows = match resource {
        "alerts" => cloud_apps_alerts(
            sim.config(),
            DEFAULT_TENANT_ID,
            sim.history_start(),
            sim.now(),
        ),
        _ => cloud_apps_activities(
            sim.config(),
            DEFAULT_TENANT_ID,
            sim.history_start(),
            sim.now(),
        ),
    };
    rows.iter()
        .map(|r| {
            let record: ObjectMap = serde_json::from_value(r.clone()).expect("object");
            (text(record.get("_id")), version(&record))
        })
        .collect()
}

fn missing(
    got: &HashSet<(String, String)>,
    want: &HashSet<(String, String)>,
) -> Vec<(String, String)> {
    want.difference(got).take(5).cloned().collect()
}

/// What of `want` (a resource's (`_id`, version) pairs when a step began) has not arrived.
/// An alert counts in the version it had then or in the one it has now: a state it left
/// before a poll could read it is never seen (two changes between polls give the later
/// one, as the docs say), and the simulator's clock runs on after `want` was taken.
fn not_arrived(
    sim: &Simulator,
    seen: &Received,
    resource: &str,
    want: &HashSet<(String, String)>,
) -> Vec<(String, String)> {
    let got = seen.of(resource);
    let mut left: Vec<(String, String)> = want.difference(&got).cloned().collect();
    if resource == "alerts" && !left.is_empty() {
        let now: HashMap<String, String> = truth(sim, "alerts").into_iter().collect();
        left.retain(|(id, _)| {
            !now.get(id)
                .is_some_and(|version| got.contains(&(id.clone(), version.clone())))
        });
    }
    left
}

async fn deliver_until(
    running: &mut RunningSource,
    seen: &mut Received,
    sim: &Simulator,
    want: &[(&str, HashSet<(String, String)>)],
) -> bool {
    deliver_while(running, seen, |seen| {
        want.iter()
            .any(|(r, w)| !not_arrived(sim, seen, r, w).is_empty())
    })
    .await
}

/// Delivers what the source emits while `more` says so; false when [`PATIENCE`] ran out
/// first.
async fn deliver_while(
    running: &mut RunningSource,
    seen: &mut Received,
    mut more: impl FnMut(&Received) -> bool,
) -> bool {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        if !more(seen) {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        if let Ok(Some(batch)) =
            tokio::time::timeout(Duration::from_millis(200), running.rx.recv()).await
        {
            seen.add(&batch);
            siemflow_core::event::resolve_batch(batch, siemflow_core::BatchStatus::Delivered);
        }
    }
}

/// Faults on (429s and 5xx injected, activities indexed late), the clock moving on in
/// steps so new activities arrive and open alerts are read and resolved: every activity
/// arrives once, every alert in the state it has at each step (its final one), nothing
/// invented, nothing twice, and the simulator never saw its limit broken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_activity_and_alert_arrives_in_its_final_version_through_every_fault() {
    let mut config = world("1d");
    config.seed = 31;
    config.defender_cloud_apps.activities_per_hour = 400;
    config.defender_cloud_apps.alerts_per_hour = 30;
    config.defender_cloud_apps.faults.throttle_rate = 0.1;
    config.defender_cloud_apps.faults.server_error_rate = 0.08;
    config.defender_cloud_apps.faults.late_index_rate = 0.2;
    let sim = simulator(config).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let source = source(entra_tenant(&sim));
    let mut running = RunningSource::start(
        "mda_faults",
        "defender_cloud_apps",
        dir.path(),
        20_000,
        |cx| source.build_with(cx, tuning(&sim)),
    );
    let mut seen = Received::default();
    let mut resolved_later = 0;
    let mut open_before: HashSet<String> = HashSet::new();
    for step in 0..4 {
        if step > 0 {
            // Far enough for tokens to expire and open alerts to be resolved.
            sim.advance_clock(Duration::from_secs(90 * 60));
        }
        let activities = truth(&sim, "activities");
        let alerts = truth(&sim, "alerts");
        assert!(
            activities.len() > 3_000 && alerts.len() > 200,
            "a real workload: {} activities, {} alerts",
            activities.len(),
            alerts.len()
        );
        resolved_later += alerts
            .iter()
            .filter(|(id, v)| open_before.contains(id) && !v.ends_with("/0"))
            .count();
        open_before = alerts
            .iter()
            .filter(|(_, v)| v.ends_with("/0"))
            .map(|(id, _)| id.clone())
            .collect();
        let want = [("activities", activities), ("alerts", alerts)];
        let arrived = deliver_until(&mut running, &mut seen, &sim, &want).await;
        assert!(
            arrived,
            "step {step}: missing activities {:?}, alerts {:?}",
            missing(&seen.of("activities"), &want[0].1),
            not_arrived(&sim, &seen, "alerts", &want[1].1)
                .into_iter()
                .take(5)
                .collect::<Vec<_>>(),
        );
    }
    assert!(
        resolved_later > 5,
        "alerts open at one step were resolved at a later one: {resolved_later}"
    );
    let repeated_dropped = running.counter("mda_repeated_records_total", "");
    running.stop(PATIENCE, |batch| seen.add(batch)).await;

    // Nothing invented, nothing twice; every activity once.
    let activities: HashSet<String> = truth(&sim, "activities")
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let got = seen.of("activities");
    assert!(
        got.iter().all(|(id, _)| activities.contains(id)),
        "no invented activity"
    );
    let twice: Vec<_> = seen.pairs.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(twice.is_empty(), "each (id, version) once: {twice:?}");
    assert_eq!(seen.without_metadata, 0);
    assert!(
        repeated_dropped > 0,
        "overlaps and re-reads were dropped by _id"
    );

    let stats = sim.stats().tenant(DEFAULT_TENANT_ID).cloud_apps;
    for fault in ["throttle", "server_error"] {
        assert!(stats.fault(fault) > 0, "{fault} fired: {:?}", stats.faults);
    }
    assert_eq!(stats.bad_requests, 0, "every body was valid");
    assert_eq!(stats.forbidden, 0);
    let most = stats.max_in_window(Duration::from_secs(60));
    assert!(most <= PER_MINUTE as usize, "{most} requests in 60 s");
    assert_eq!(
        stats.throttled, 0,
        "the simulator's own limit was never reached"
    );
    assert!(
        sim.stats().tenant("").cloud_apps.unauthorized > 0,
        "tokens expired on the way and were renewed"
    );
}

/// The legacy API token: a wrong one is a configuration error (refused, retried slowly,
/// nothing emitted, counted); the right one reads everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_legacy_api_token_reads_and_a_wrong_one_is_refused() {
    let mut config = world("6h");
    config.defender_cloud_apps.activities_per_hour = 200;
    let sim = simulator(config).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let wrong = source(token_tenant(&sim.base_url(), "not-the-token"));
    let mut running = RunningSource::start(
        "mda_wrong_token",
        "defender_cloud_apps",
        dir.path(),
        20_000,
        |cx| wrong.build_with(cx, tuning(&sim)),
    );
    let deadline = std::time::Instant::now() + PATIENCE;
    while sim.stats().tenant("").cloud_apps.unauthorized < 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "the source asked again after its pause"
        );
        let got = tokio::time::timeout(Duration::from_millis(50), running.rx.recv()).await;
        assert!(got.is_err(), "nothing emitted");
    }
    assert!(
        running.counter("mda_config_error", "") > 0,
        "the config error gauge is up"
    );
    running.stop(PATIENCE, |_| panic!("nothing to emit")).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let right = source(token_tenant(&sim.base_url(), API_TOKEN));
    let mut running = RunningSource::start(
        "mda_token",
        "defender_cloud_apps",
        dir.path(),
        20_000,
        |cx| right.build_with(cx, tuning(&sim)),
    );
    let mut seen = Received::default();
    let want = [
        ("activities", truth(&sim, "activities")),
        ("alerts", truth(&sim, "alerts")),
    ];
    assert!(
        deliver_until(&mut running, &mut seen, &sim, &want).await,
        "missing {:?}",
        missing(&seen.of("activities"), &want[0].1)
    );
    running.stop(PATIENCE, |batch| seen.add(batch)).await;
    assert_eq!(
        sim.stats()
            .tenant(DEFAULT_TENANT_ID)
            .cloud_apps
            .unauthorized,
        0
    );
}

/// At the documented limit itself — 30 requests in any minute on both sides, both lists
/// sharing it, polls every 100 ms so the source always has a request waiting — the
/// simulator never sees a 31st request within 60 s and never answers 429 for its limit,
/// and everything still arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_a_minute_is_never_broken() {
    let mut config = world("3h");
    config.defender_cloud_apps.requests_per_minute = 30;
    config.defender_cloud_apps.activities_per_hour = 600;
    let sim = simulator(config).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut source = source(token_tenant(&sim.base_url(), API_TOKEN));
    source.requests_per_minute = 30;
    let mut running =
        RunningSource::start("mda_30", "defender_cloud_apps", dir.path(), 20_000, |cx| {
            source.build_with(cx, tuning(&sim))
        });
    let mut seen = Received::default();
    let want = [
        ("activities", truth(&sim, "activities")),
        ("alerts", truth(&sim, "alerts")),
    ];
    // The simulator's day has a rhythm: 3 hours of a weekend night hold about 250
    // activities, of a weekday afternoon about 3,000. Any of them spans pages; the limit
    // is tested by the requests (45 at least, past a minute's worth), not by the pages.
    assert!(
        want[0].1.len() > 200,
        "more than two pages: {}",
        want[0].1.len()
    );
    let requests = || {
        let stats = sim.stats().tenant(DEFAULT_TENANT_ID).cloud_apps;
        stats.requests.values().sum::<u64>()
    };
    // Past one minute's worth: the window has been crossed with requests waiting.
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    while requests() < 45
        || want
            .iter()
            .any(|(r, w)| !not_arrived(&sim, &seen, r, w).is_empty())
    {
        assert!(
            std::time::Instant::now() < deadline,
            "{} requests so far",
            requests()
        );
        if let Ok(Some(batch)) =
            tokio::time::timeout(Duration::from_millis(200), running.rx.recv()).await
        {
            seen.add(&batch);
            siemflow_core::event::resolve_batch(batch, siemflow_core::BatchStatus::Delivered);
        }
    }
    running.stop(PATIENCE, |batch| seen.add(batch)).await;
    let stats = sim.stats().tenant(DEFAULT_TENANT_ID).cloud_apps;
    let most = stats.max_in_window(Duration::from_secs(60));
    assert!(most <= 30, "{most} requests in 60 s");
    assert_eq!(
        stats.throttled, 0,
        "the simulator's limit was never reached"
    );
}

/// The losing schedule of a walk that runs on past its start, pinned with a scripted
/// portal and a clock the test moves: a page boundary inside an ingest batch 5 s old
/// (`hasNext`), an activity ingested 10 s ago but indexed only 30 s from now, and between
/// the walk's first and second page 90 minutes pass (a walk slowed by throttling, or
/// reading on into a busy tenant's new activities). The walk reads on into the activities
/// of those 90 minutes; had its mark followed them, the next walk would start an overlap
/// before them, past the late activity, and it would never be read. It must arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_activity_indexed_late_behind_a_walk_that_reads_on_is_read_by_the_next_walk() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicI64, Ordering};

    use crate::microsoft::poll::PollTuning;
    use crate::microsoft::tests::{json, serve};

    const MINUTE: i64 = 60_000;
    let t0: i64 = 1_790_000_000_000;
    // The service's clock, which the source reads too.
    let clock = Arc::new(AtomicI64::new(t0));
    // (`_id`, `created`, visible from).
    let mut activities = vec![("late".to_string(), t0 - 10_000, t0 + 30_000)];
    activities.extend((0..120).map(|i| (format!("batch-{i}"), t0 - 5_000, t0 - 5_000)));
    activities.extend((1..=90).map(|m| (format!("new-{m}"), t0 + m * MINUTE, t0 + m * MINUTE)));
    let service_clock = Arc::clone(&clock);
    let server = serve(move |call, index| {
        let now = service_clock.load(Ordering::SeqCst);
        let body: serde_json::Value = serde_json::from_str(&call.body).expect("a JSON body");
        let from = body["filters"]["created"]["gte"]
            .as_i64()
            .expect("created gte");
        let skip = body["skip"].as_u64().expect("skip") as usize;
        let limit = body["limit"].as_u64().expect("limit") as usize;
        // Sorted by `created`, ties in a stable order.
        let mut rows: Vec<_> = activities
            .iter()
            .filter(|(_, created, visible)| *created >= from && *visible <= now)
            .collect();
        rows.sort_by_key(|(_, created, _)| *created);
        let data: Vec<serde_json::Value> = rows
            .iter()
            .skip(skip)
            .take(limit)
            .map(|(id, created, _)| {
                serde_json::json!({"_id": id, "created": created, "timestamp": created - MINUTE})
            })
            .collect();
        let has_next = skip + data.len() < rows.len();
        if index == 0 {
            service_clock.fetch_add(90 * MINUTE, Ordering::SeqCst);
        }
        json(
            200,
            &serde_json::json!({"total": rows.len(), "hasNext": has_next, "data": data})
                .to_string(),
        )
    })
    .await;
    let mut config = CloudAppsConfig::with_tenants(vec![token_tenant(&server.base, API_TOKEN)]);
    config.resources = vec!["activities".into()];
    config.requests_per_minute = PER_MINUTE;
    // Long enough that a walk's pages are delivered before the next walk starts, as in a
    // pipeline that keeps up: the mark has moved when the next walk asks from it.
    config.poll_interval = Duration::from_millis(500);
    let source_clock = Arc::clone(&clock);
    let tuning = PollTuning {
        clock: Arc::new(move || {
            chrono::DateTime::from_timestamp_millis(source_clock.load(Ordering::SeqCst))
                .expect("a time")
        }),
        save_interval: Duration::from_millis(20),
        ..PollTuning::default()
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut running = RunningSource::start(
        "mda_late_behind_a_walk",
        "defender_cloud_apps",
        dir.path(),
        20_000,
        |cx| config.build_with(cx, tuning),
    );
    // A walk's first request asks from its start (`skip` 0; the next pages skip the
    // records read at their instant): three walks after the first one have had the
    // chance to read the late activity.
    let walks = || {
        server
            .calls()
            .iter()
            .filter(|call| call.body.contains(r#""skip":0"#))
            .count()
    };
    let expected: HashSet<(String, String)> = std::iter::once("late".to_string())
        .chain((0..120).map(|i| format!("batch-{i}")))
        .chain((1..=90).map(|m| format!("new-{m}")))
        .map(|id| (id, String::new()))
        .collect();
    let mut seen = Received::default();
    let ended = deliver_while(&mut running, &mut seen, |seen| {
        !expected.is_subset(&seen.of("activities")) && walks() < 4
    })
    .await;
    assert!(ended, "{} walks in {PATIENCE:?}", walks());
    // A walk emits its pages before its next request: what the walks read is here.
    while let Some(batch) = running.rx.try_recv() {
        seen.add(&batch);
        siemflow_core::event::resolve_batch(batch, siemflow_core::BatchStatus::Delivered);
    }
    running.stop(PATIENCE, |_| {}).await;
    let lost = missing(&seen.of("activities"), &expected);
    assert!(
        lost.is_empty(),
        "the batch, the 90 minutes and the activity indexed late behind the walk, in {} walks: missing {lost:?}",
        walks()
    );
}
