//! The `defender_cloud_apps` source in the real binary against the Microsoft 365
//! simulator (run in this test process, so the test knows the ground truth): SIGKILL at
//! random moments during a backfill with faults on, restart, and at the end every
//! activity and every alert in its final state is in the output, nothing invented; the
//! pipeline's dedup (by `_id`, and by alert state) takes out what a restart re-reads.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::time::Duration;

use siemflow_simulator::{
    DEFAULT_TENANT_ID, M365Config, Simulator, cloud_apps_activities, cloud_apps_alerts,
};

use crate::harness::{Workspace, random_below, wait_for};

/// The simulator's legacy API token of the default tenant.
const API_TOKEN: &str = siemflow_simulator::defender_cloud_apps::DEFAULT_API_TOKEN;

/// Requests a minute on both sides: the documented 30 scaled up so the backfill takes
/// seconds; the pacing is the same.
const PER_MINUTE: u32 = 600;

fn world() -> M365Config {
    let mut config = M365Config {
        seed: 17,
        live: false,
        ..M365Config::default()
    };
    config.history = Duration::from_secs(24 * 3600);
    let mda = &mut config.defender_cloud_apps;
    mda.activities_per_hour = 400;
    mda.alerts_per_hour = 6;
    mda.requests_per_minute = PER_MINUTE;
    mda.faults.throttle_rate = 0.03;
    mda.faults.server_error_rate = 0.03;
    mda.faults.late_index_rate = 0.1;
    config
}

fn pipeline(base_url: &str, token_file: &str) -> String {
    format!(
        r#"
data_dir = "data"
[sources.mda]
type = "defender_cloud_apps"
start_from = "2d"
poll_interval = "2s"
requests_per_minute = {PER_MINUTE}
[[sources.mda.tenants]]
portal_url = "{base_url}"
api_token = "${{file:{token_file}}}"
tenant_id = "{DEFAULT_TENANT_ID}"

[transforms.by_kind]
type = "route"
inputs = ["mda"]
[transforms.by_kind.route]
activities = '.siemflow.resource == "activities"'
alerts = '.siemflow.resource == "alerts"'

[transforms.unique_activities]
type = "dedup"
inputs = ["by_kind.activities"]
key = ["_id"]

[transforms.unique_alerts]
type = "dedup"
inputs = ["by_kind.alerts"]
key = ["_id", "statusValue", "resolutionStatusValue"]

[sinks.out]
type = "file"
inputs = ["unique_activities", "unique_alerts"]
path = "out.ndjson"
"#
    )
}

/// (`_id`, alert state or "") of a record.
fn identity(record: &serde_json::Value) -> Option<(String, String)> {
    let id = record.get("_id")?.as_str()?.to_string();
    let state = match record.get("resolutionStatusValue") {
        Some(resolution) => format!("{}/{resolution}", record.get("statusValue")?),
        None => String::new(),
    };
    Some((id, state))
}

/// Each delivered (`_id`, state) and how often.
fn delivered(ws: &Workspace) -> BTreeMap<(String, String), usize> {
    let mut out = BTreeMap::new();
    for line in ws.lines("out.ndjson") {
        let Ok(record) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if let Some(key) = identity(&record) {
            *out.entry(key).or_default() += 1;
        }
    }
    out
}

fn truth(config: &M365Config, simulator: &Simulator) -> BTreeSet<(String, String)> {
    let (from, now) = (simulator.history_start(), simulator.now());
    cloud_apps_activities(config, DEFAULT_TENANT_ID, from, now)
        .into_iter()
        .chain(cloud_apps_alerts(config, DEFAULT_TENANT_ID, from, now))
        .filter_map(|r| identity(&r))
        .collect()
}

#[test]
fn sigkill_during_backfill_five_times_loses_no_activity_or_alert_state() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let config = world();
    let simulator = runtime
        .block_on(Simulator::start(
            config.clone(),
            "127.0.0.1:0".parse().expect("addr"),
        ))
        .expect("simulator");
    let expected = truth(&config, &simulator);
    assert!(
        expected.len() > 5_000,
        "the world is too small: {}",
        expected.len()
    );
    let ws = Workspace::new();
    // The token comes from a secret file, as from a Kubernetes secret volume.
    let token_file = ws.write("mda-token", &format!("{API_TOKEN}\n"));
    let token_file = token_file.to_str().expect("utf-8 path");
    ws.write("p.toml", &pipeline(&simulator.base_url(), token_file));
    println!("{} records expected", expected.len());
    let mut next = random_below();
    let run = |ws: &Workspace| ws.run("p.toml", Stdio::null());

    let mut kills = 0;
    while kills < 5 {
        let seen = ws.lines("out.ndjson").len();
        let mut pipeline = run(&ws);
        let target = seen + 1 + next(expected.len() / 12);
        let reached = wait_for("the backfill to progress", Duration::from_secs(120), || {
            let n = ws.lines("out.ndjson").len();
            (n >= target || delivered(&ws).len() >= expected.len()).then_some(n)
        });
        if delivered(&ws).len() >= expected.len() {
            break;
        }
        pipeline.signal(libc::SIGKILL);
        pipeline.wait_exit(Duration::from_secs(10));
        kills += 1;
        println!("kill {kills} at {reached} lines");
    }
    assert!(
        kills >= 5,
        "the backfill finished after {kills} kills; make the world larger"
    );

    let mut pipeline = run(&ws);
    // The world's clock runs on: what exists at the end, in its state at the end.
    let final_truth = wait_for(
        "every record in its final state after the restarts",
        Duration::from_secs(300),
        || {
            let want = truth(&config, &simulator);
            let got = delivered(&ws);
            (expected
                .iter()
                .all(|(id, _)| got.keys().any(|(g, _)| g == id))
                && want.iter().all(|key| got.contains_key(key)))
            .then_some(want)
        },
    );
    pipeline.signal(libc::SIGTERM);
    assert!(
        pipeline.wait_exit(Duration::from_secs(30)).success(),
        "{}",
        pipeline.logs()
    );
    let got = delivered(&ws);
    let ids: BTreeSet<&String> = final_truth.iter().map(|(id, _)| id).collect();
    let invented: Vec<_> = got
        .keys()
        .filter(|(id, _)| !ids.contains(id))
        .take(5)
        .collect();
    assert!(
        invented.is_empty(),
        "records the simulator never had: {invented:?}"
    );
    let repeated: usize = got.values().map(|n| n - 1).sum();
    let stats = simulator.stats().tenant(DEFAULT_TENANT_ID).cloud_apps;
    println!(
        "{} lines for {} (id, state) pairs, {repeated} repeats after dedup, after {kills} kills; \
         simulator: {} requests, {} refused by its limit (restarts do not know the last minute's requests), \
         at most {} in 60 s; faults {:?}",
        ws.lines("out.ndjson").len(),
        got.len(),
        stats.requests.values().sum::<u64>(),
        stats.throttled,
        stats.max_in_window(Duration::from_secs(60)),
        stats.faults
    );
    assert_eq!(stats.bad_requests, 0);

    // A clean restart repeats nothing: the saved cursors (and dedup's keys) hold; what
    // comes now is only what the world added or changed meanwhile.
    let before = ws.lines("out.ndjson").len();
    let requests = |s: &Simulator| {
        let stats = s.stats().tenant(DEFAULT_TENANT_ID).cloud_apps;
        stats.requests.values().sum::<u64>()
    };
    let asked = requests(&simulator);
    let mut pipeline = run(&ws);
    wait_for("two polls of both lists", Duration::from_secs(60), || {
        (requests(&simulator) >= asked + 4).then_some(())
    });
    pipeline.signal(libc::SIGTERM);
    assert!(
        pipeline.wait_exit(Duration::from_secs(30)).success(),
        "{}",
        pipeline.logs()
    );
    let lines = ws.lines("out.ndjson");
    let again: Vec<(String, String)> = lines[before..]
        .iter()
        .filter_map(|l| identity(&serde_json::from_str(l).ok()?))
        .filter(|key| got.contains_key(key))
        .take(5)
        .collect();
    assert!(
        again.is_empty(),
        "repeated after a clean restart: {again:?}"
    );
    runtime.block_on(simulator.stop());
}
