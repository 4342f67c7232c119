//! The `defender_endpoint` source in the real binary against the Microsoft 365 simulator's
//! Defender for Endpoint API (run in this test process, so the test knows the ground
//! truth), faults on, through `dedup` on (id, lastUpdateTime) into a file. SIGKILL at random
//! moments during the backfill, restart each time; at the end every alert is there in its
//! final version and no version is invented. The simulator's clock is not moved: the
//! source closes its windows at its own clock (a minute before now), so versions stamped
//! ahead of it would only come later. Later versions are the source tests' subject. Repeats of a version across kills (a kill between the file's write
//! and dedup's record of it) are counted and printed.

use std::collections::{BTreeSet, HashMap};
use std::process::Stdio;
use std::time::Duration;

use chrono::{DateTime, Utc};
use siemflow_simulator::{
    DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TENANT_ID, EndpointFaults, M365Config,
    RateLimit, Simulator, endpoint_alert_versions, endpoint_alerts,
};

use crate::harness::{Workspace, cef_and_leef_files, kill_at_random_points, start_m365, wait_for};

/// A live world with a day of alerts behind it and the faults a client must ride through.
/// The documented 100 a minute and 1,500 an hour would make each restart's walk take
/// minutes: the simulator and the source both allow more here (the source's own budget
/// still keeps under the simulator's limits).
fn world() -> M365Config {
    let mut config = M365Config {
        seed: 23,
        live: true,
        history: Duration::from_secs(24 * 3600),
        ..M365Config::default()
    };
    config.graph.alerts_per_hour = 160;
    config.defender_endpoint.limits = vec![
        RateLimit {
            requests: 600,
            per: Duration::from_secs(60),
        },
        RateLimit {
            requests: 20_000,
            per: Duration::from_secs(3600),
        },
    ];
    config.defender_endpoint.faults = EndpointFaults {
        throttle_rate: 0.03,
        server_error_rate: 0.05,
        slow_rate: 0.05,
        slow_latency: Duration::from_millis(500),
    };
    config
}

fn pipeline(base_url: &str) -> String {
    format!(
        r#"
data_dir = "data"

[sources.mde]
type = "defender_endpoint"
api_url = "{base_url}"
start_from = "2d"
poll_interval = "1s"
page_size = 50
requests_per_minute = 600
requests_per_hour = 20000
tenants = [{{ tenant_id = "{DEFAULT_TENANT_ID}", client_id = "{DEFAULT_CLIENT_ID}", client_secret = "{DEFAULT_CLIENT_SECRET}", login_url = "{base_url}" }}]

[transforms.unique]
type = "dedup"
inputs = ["mde"]
key = ["id", "lastUpdateTime"]

[sinks.out]
type = "file"
inputs = ["unique"]
path = "out.ndjson"
"#
    )
}

/// (id, lastUpdateTime as written) of each delivered line, and how often it came.
fn delivered(ws: &Workspace) -> HashMap<(String, String), usize> {
    let mut pairs = HashMap::new();
    for event in ws.json_lines("out.ndjson") {
        let (Some(id), Some(at)) = (event["id"].as_str(), event["lastUpdateTime"].as_str()) else {
            panic!("a line without id or lastUpdateTime: {event}");
        };
        *pairs.entry((id.to_string(), at.to_string())).or_default() += 1;
    }
    pairs
}

fn parse(at: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(at)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|e| panic!("`{at}` is not a time: {e}"))
}

/// (id, time) of each alert in its latest version visible now on the simulator's clock.
fn truth(sim: &Simulator) -> BTreeSet<(String, DateTime<Utc>)> {
    endpoint_alerts(
        sim.config(),
        DEFAULT_TENANT_ID,
        sim.history_start(),
        sim.now(),
    )
    .iter()
    .map(|a| {
        (
            a["id"].as_str().expect("id").to_string(),
            parse(a["lastUpdateTime"].as_str().expect("time")),
        )
    })
    .collect()
}

/// The truth pairs that did not arrive, nor any later version of their alert.
fn missing(
    got: &HashMap<(String, String), usize>,
    want: &BTreeSet<(String, DateTime<Utc>)>,
) -> Vec<(String, DateTime<Utc>)> {
    let mut latest: HashMap<&str, DateTime<Utc>> = HashMap::new();
    for (id, at) in got.keys() {
        let at = parse(at);
        let entry = latest.entry(id.as_str()).or_insert(at);
        *entry = (*entry).max(at);
    }
    want.iter()
        .filter(|(id, at)| latest.get(id.as_str()).is_none_or(|l| l < at))
        .cloned()
        .collect()
}

#[test]
fn sigkill_during_backfill_five_times_loses_no_alert_version() {
    let (runtime, simulator) = start_m365(world());
    let first = truth(&simulator);
    assert!(first.len() > 300, "the world is too small: {}", first.len());

    let ws = Workspace::new();
    ws.write("p.toml", &pipeline(&simulator.base_url()));
    let kills = kill_at_random_points(
        &ws,
        "p.toml",
        5,
        first.len() / 10,
        Duration::from_secs(180),
        || ws.lines("out.ndjson").len(),
        || missing(&delivered(&ws), &first).is_empty(),
    );

    let mut pipeline = ws.run("p.toml", Stdio::null());
    let want = truth(&simulator);
    wait_for(
        "every alert in its final version after the restarts",
        Duration::from_secs(300),
        || missing(&delivered(&ws), &want).is_empty().then_some(()),
    );
    pipeline.signal(libc::SIGTERM);
    assert!(
        pipeline.wait_exit(Duration::from_secs(30)).success(),
        "{}",
        pipeline.logs()
    );

    let got = delivered(&ws);
    let published: BTreeSet<(String, DateTime<Utc>)> = endpoint_alert_versions(
        simulator.config(),
        DEFAULT_TENANT_ID,
        simulator.history_start(),
        simulator.now(),
    )
    .into_iter()
    .collect();
    let invented: Vec<_> = got
        .keys()
        .filter(|(id, at)| !published.contains(&(id.clone(), parse(at))))
        .take(5)
        .collect();
    assert!(
        invented.is_empty(),
        "versions never published: {invented:?}"
    );
    let updated = got.len() - got.keys().map(|(id, _)| id).collect::<BTreeSet<_>>().len();
    let repeats: usize = got.values().map(|n| n - 1).sum();
    println!(
        "{} versions of {} alerts delivered ({updated} later versions), {repeats} repeated line(s) past dedup, after {kills} kills",
        got.len(),
        want.len()
    );
    runtime.block_on(simulator.stop());
}

/// The alerts as the source emits them, mapped by the `cef` and `leef` transforms' preset
/// for Defender for Endpoint alerts (picked per record, unchanged): each alert's id, device,
/// user, evidence and times land in their keys.
#[test]
fn alerts_map_to_cef_and_leef_with_the_defender_endpoint_preset() {
    let mut config = M365Config {
        seed: 29,
        live: true,
        history: Duration::from_secs(6 * 3600),
        ..M365Config::default()
    };
    config.graph.alerts_per_hour = 60;
    let (runtime, simulator) = start_m365(config);
    let base_url = simulator.base_url();
    let ws = Workspace::new();
    ws.write(
        "p.toml",
        &format!(
            r#"
data_dir = "data"

[sources.mde]
type = "defender_endpoint"
api_url = "{base_url}"
start_from = "1d"
tenants = [{{ tenant_id = "{DEFAULT_TENANT_ID}", client_id = "{DEFAULT_CLIENT_ID}", client_secret = "{DEFAULT_CLIENT_SECRET}", login_url = "{base_url}" }}]
{}"#,
            cef_and_leef_files("mde", "delimiter = \"^\"\n")
        ),
    );
    let alerts = endpoint_alerts(
        simulator.config(),
        DEFAULT_TENANT_ID,
        simulator.history_start(),
        simulator.now(),
    );
    assert!(alerts.len() > 20, "{} alerts", alerts.len());
    let mut pipeline = ws.run("p.toml", Stdio::null());
    wait_for("every alert mapped", Duration::from_secs(120), || {
        (ws.lines("cef.log").len() >= alerts.len() && ws.lines("leef.log").len() >= alerts.len())
            .then_some(())
    });
    pipeline.signal(libc::SIGTERM);
    assert!(
        pipeline.wait_exit(Duration::from_secs(30)).success(),
        "{}",
        pipeline.logs()
    );
    // Stable across an alert's versions: its device, user and evidence; the time is one of
    // its published versions'.
    let by_id: HashMap<String, &serde_json::Value> = alerts
        .iter()
        .map(|a| (a["id"].as_str().expect("id").to_string(), a))
        .collect();
    let versions: BTreeSet<(String, i64)> = endpoint_alert_versions(
        simulator.config(),
        DEFAULT_TENANT_ID,
        simulator.history_start(),
        simulator.now(),
    )
    .into_iter()
    .map(|(id, at)| (id, at.timestamp_millis()))
    .collect();
    let value_after = |line: &str, key: &str, end: char| -> Option<String> {
        let start = line.find(key)? + key.len();
        Some(
            line[start..]
                .split(end)
                .next()
                .unwrap_or_default()
                .to_string(),
        )
    };
    let first_evidence = |alert: &serde_json::Value, kind: &str, field: &str| {
        alert["evidence"]
            .as_array()
            .and_then(|e| e.iter().find(|e| e["entityType"] == kind))
            .and_then(|e| e[field].as_str())
            .map(str::to_string)
    };
    let (mut with_user, mut with_file) = (0, 0);
    for (file, header, sep, keys) in [
        (
            "cef.log",
            "CEF:0|Microsoft|Defender for Endpoint|",
            ' ',
            [
                "externalId=",
                " cs2=",
                " dhost=",
                " deviceCustomDate1=",
                " suser=",
                " fileHash=",
            ],
        ),
        (
            "leef.log",
            "LEEF:2.0|Microsoft|Defender for Endpoint|",
            '^',
            [
                "^externalId=",
                "^MachineId=",
                "^dhost=",
                "^LastUpdateTime=",
                "^usrName=",
                "^fileHash=",
            ],
        ),
    ] {
        let lines = ws.lines(file);
        for line in &lines {
            assert!(line.starts_with(header), "{file}: {line}");
            let id = value_after(line, keys[0], sep).expect("externalId");
            let Some(alert) = by_id.get(&id) else {
                continue; // raised after the truth was taken
            };
            let text = |field: &str| alert[field].as_str().map(str::to_string);
            assert_eq!(value_after(line, keys[1], sep), text("machineId"), "{line}");
            assert_eq!(
                value_after(line, keys[2], sep),
                text("computerDnsName"),
                "{line}"
            );
            let at: i64 = value_after(line, keys[3], sep)
                .and_then(|t| t.parse().ok())
                .expect("LastUpdateTime in epoch ms");
            assert!(
                versions.contains(&(id.clone(), at)),
                "{id} at {at}: not a published version"
            );
            let user = alert["relatedUser"]["userName"]
                .as_str()
                .map(str::to_string);
            with_user += usize::from(user.is_some());
            assert_eq!(value_after(line, keys[4], sep), user, "{line}");
            let sha256 = first_evidence(alert, "File", "sha256");
            with_file += usize::from(sha256.is_some());
            assert_eq!(value_after(line, keys[5], sep), sha256, "{line}");
        }
    }
    assert!(
        with_user > 0 && with_file > 0,
        "users {with_user}, files {with_file}: the mapping was put to the test"
    );
    runtime.block_on(simulator.stop());
}
