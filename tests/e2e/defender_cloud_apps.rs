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

use crate::harness::{
    Workspace, cef_and_leef_files, kill_at_random_points, poll, start_m365, wait_for,
};

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

/// The source `mda` reading the simulator with `api_token`; `tenant` adds lines to its
/// tenant.
fn source(base_url: &str, poll_interval: &str, api_token: &str, tenant: &str) -> String {
    format!(
        r#"
data_dir = "data"
[sources.mda]
type = "defender_cloud_apps"
start_from = "2d"
poll_interval = "{poll_interval}"
requests_per_minute = {PER_MINUTE}
[[sources.mda.tenants]]
portal_url = "{base_url}"
api_token = "{api_token}"
{tenant}"#
    )
}

fn pipeline(base_url: &str, token_file: &str) -> String {
    let source = source(
        base_url,
        "2s",
        &format!("${{file:{token_file}}}"),
        &format!("tenant_id = \"{DEFAULT_TENANT_ID}\"\n"),
    );
    format!(
        r#"{source}
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
    for record in ws.json_lines("out.ndjson") {
        if let Some(key) = identity(&record) {
            *out.entry(key).or_default() += 1;
        }
    }
    out
}

fn truth(config: &M365Config, simulator: &Simulator) -> BTreeSet<(String, String)> {
    let (from, now) = (simulator.history_start(), simulator.visible_until());
    cloud_apps_activities(config, DEFAULT_TENANT_ID, from, now)
        .into_iter()
        .chain(cloud_apps_alerts(config, DEFAULT_TENANT_ID, from, now))
        .filter_map(|r| identity(&r))
        .collect()
}

#[test]
fn sigkill_during_backfill_five_times_loses_no_activity_or_alert_state() {
    let config = world();
    let (runtime, simulator) = start_m365(config.clone());
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
    let run = |ws: &Workspace| ws.run("p.toml", Stdio::null());

    let kills = kill_at_random_points(
        &ws,
        "p.toml",
        5,
        expected.len() / 12,
        Duration::from_secs(120),
        || ws.lines("out.ndjson").len(),
        || delivered(&ws).len() >= expected.len(),
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

fn mapping_pipeline(base_url: &str) -> String {
    source(base_url, "1s", API_TOKEN, "") + &cef_and_leef_files("mda", "")
}

/// The value of `key` in a CEF extension or a LEEF attribute list (`sep` between pairs).
fn value_of<'a>(line: &'a str, key: &str, sep: char) -> Option<&'a str> {
    // The first key follows the header's last `|`.
    let at = line
        .find(&format!("{sep}{key}="))
        .or_else(|| line.find(&format!("|{key}=")))?
        + key.len()
        + 2;
    let rest = &line[at..];
    Some(match sep {
        // A CEF value runs to the next ` key=`.
        ' ' => {
            let end = rest
                .match_indices(' ')
                .find(|(i, _)| {
                    let next = &rest[i + 1..];
                    next.split('=').next().is_some_and(|k| {
                        !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric())
                    })
                })
                .map_or(rest.len(), |(i, _)| i);
            &rest[..end]
        }
        _ => rest.split(sep).next().unwrap_or_default(),
    })
}

/// The `mda_activity` and `mda_alert` presets, picked by `preset = "auto"`, render what
/// the source emits, unchanged: every activity and alert state becomes one CEF and one
/// LEEF line with the SIEM agent's header, its id, time, user and service.
#[test]
fn cef_and_leef_presets_render_what_the_source_emits() {
    let mut config = world();
    config.history = Duration::from_secs(3 * 3600);
    config.defender_cloud_apps.faults = Default::default();
    config.defender_cloud_apps.alerts_per_hour = 30;
    let (runtime, simulator) = start_m365(config.clone());
    let (from, now) = (simulator.history_start(), simulator.visible_until());
    let activities = cloud_apps_activities(&config, DEFAULT_TENANT_ID, from, now);
    let alerts = cloud_apps_alerts(&config, DEFAULT_TENANT_ID, from, now);
    assert!(activities.len() > 300 && alerts.len() > 30);
    let cut = |id: &str| id.chars().take(40).collect::<String>();
    let ws = Workspace::new();
    ws.write("p.toml", &mapping_pipeline(&simulator.base_url()));
    let mut pipeline = ws.run("p.toml", Stdio::null());
    let ids_in = |file: &str, key: &str, sep: char| -> BTreeSet<String> {
        ws.lines(file)
            .iter()
            .filter_map(|l| value_of(l, key, sep).map(str::to_string))
            .collect()
    };
    // CEF's externalId holds at most 40 characters (the cef transform cuts, counted);
    // LEEF has no such limit.
    let full: BTreeSet<String> = activities
        .iter()
        .chain(&alerts)
        .map(|r| r["_id"].as_str().expect("_id").to_string())
        .collect();
    let want: BTreeSet<String> = full.iter().map(|id| cut(id)).collect();
    let missing = |file: &str, want: &BTreeSet<String>, sep: char| {
        want.difference(&ids_in(file, "externalId", sep)).count()
    };
    let left = || {
        (
            missing("cef.log", &want, ' '),
            missing("leef.log", &full, '\t'),
        )
    };
    let left = poll(Duration::from_secs(120), || {
        let left = left();
        (left == (0, 0)).then_some(left)
    })
    .unwrap_or_else(left);
    assert!(
        left == (0, 0),
        "records not in (CEF, LEEF): {left:?}; first lines: {:?}",
        ws.lines("cef.log").first()
    );
    pipeline.signal(libc::SIGTERM);
    assert!(
        pipeline.wait_exit(Duration::from_secs(30)).success(),
        "{}",
        pipeline.logs()
    );
    let activity_ids: BTreeSet<String> = activities
        .iter()
        .map(|r| cut(r["_id"].as_str().expect("_id")))
        .collect();
    for line in ws.lines("cef.log") {
        let header: Vec<&str> = line.splitn(8, '|').collect();
        assert_eq!(
            &header[..4],
            ["CEF:0", "MCAS", "SIEM_Agent", "1.0"],
            "{line}"
        );
        let id = value_of(&line, "externalId", ' ').expect("externalId");
        let activity = activity_ids.contains(id);
        let class = header[4];
        if activity {
            assert!(class.starts_with("EVENT_CATEGORY_"), "{line}");
            assert_eq!(header[6], "0", "activities have severity 0: {line}");
            assert!(value_of(&line, "dvc", ' ').is_some(), "{line}");
        } else {
            assert!(class.starts_with("ALERT_"), "{line}");
            assert!(
                value_of(&line, "cs4", ' ').is_some_and(|p| !p.is_empty()),
                "policy id: {line}"
            );
        }
        let rt: i64 = value_of(&line, "rt", ' ')
            .expect("rt")
            .parse()
            .expect("epoch ms");
        assert!(rt > 1_000_000_000_000, "{line}");
        for key in ["suser", "destinationServiceName", "msg", "cs1"] {
            assert!(
                value_of(&line, key, ' ').is_some_and(|v| !v.is_empty()),
                "{key}: {line}"
            );
        }
    }
    for line in ws.lines("leef.log") {
        assert!(line.starts_with("LEEF:2.0|MCAS|SIEM_Agent|1.0|"), "{line}");
        for key in ["devTime", "usrName", "externalId"] {
            assert!(
                value_of(&line, key, '\t').is_some_and(|v| !v.is_empty()),
                "{key}: {line}"
            );
        }
    }
    runtime.block_on(simulator.stop());
}
