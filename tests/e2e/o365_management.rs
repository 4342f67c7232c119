//! The `o365_management` source in the real binary against the Microsoft 365 simulator
//! (run in this test process, so the test knows the ground truth): SIGKILL at random
//! moments during a backfill, restart, and nothing is missing at the end.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::Duration;

use siemflow_simulator::{
    CONTENT_TYPES, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TENANT_ID, M365Config,
    published_records,
};

use crate::harness::{Workspace, ids, kill_at_random_points, start_m365, wait_for};

fn world() -> M365Config {
    let mut config = M365Config {
        seed: 7,
        live: false,
        records_per_hour: 400,
        ..M365Config::default()
    };
    config.history = Duration::from_secs(2 * 24 * 3600);
    config.faults.throttle_rate = 0.005;
    config.faults.server_error_rate = 0.01;
    config.faults.duplicate_rate = 0.02;
    config.faults.late_blob_rate = 0.05;
    config.faults.truncated_page_rate = 0.1;
    config.faults.page_size = 20;
    config
}

fn pipeline(base_url: &str) -> String {
    format!(
        r#"
data_dir = "data"
[sources.audit]
type = "o365_management"
api_url = "{base_url}"
start_from = "3d"
poll_interval = "1s"
[[sources.audit.tenants]]
tenant_id = "{DEFAULT_TENANT_ID}"
client_id = "{DEFAULT_CLIENT_ID}"
client_secret = "{DEFAULT_CLIENT_SECRET}"
login_url = "{base_url}"
[sinks.out]
type = "file"
inputs = ["audit"]
path = "out.ndjson"
"#
    )
}

fn delivered_ids(ws: &Workspace) -> BTreeSet<String> {
    ids(&ws.lines("out.ndjson")).into_iter().collect()
}

#[test]
fn sigkill_during_backfill_five_times_loses_no_record() {
    let config = world();
    let (runtime, simulator) = start_m365(config.clone());
    let now = simulator.now();
    let start = now - chrono::Duration::from_std(config.history).expect("history");
    let expected: BTreeSet<String> = CONTENT_TYPES
        .iter()
        .flat_map(|ct| published_records(&config, DEFAULT_TENANT_ID, ct, start, now))
        .filter_map(|r| Some(r.get("Id")?.as_str()?.to_string()))
        .collect();
    assert!(
        expected.len() > 5_000,
        "the world is too small: {}",
        expected.len()
    );

    let ws = Workspace::new();
    ws.write("p.toml", &pipeline(&simulator.base_url()));
    println!("{} records expected", expected.len());
    let kills = kill_at_random_points(
        &ws,
        "p.toml",
        5,
        expected.len() / 12,
        Duration::from_secs(120),
        || ws.lines("out.ndjson").len(),
        || delivered_ids(&ws).len() >= expected.len(),
    );

    let mut pipeline = ws.run("p.toml", Stdio::null());
    wait_for(
        "every record after the restarts",
        Duration::from_secs(300),
        || expected.is_subset(&delivered_ids(&ws)).then_some(()),
    );
    pipeline.signal(libc::SIGTERM);
    assert!(
        pipeline.wait_exit(Duration::from_secs(30)).success(),
        "{}",
        pipeline.logs()
    );
    let lines = ws.lines("out.ndjson");
    let delivered = delivered_ids(&ws);
    let extra: Vec<&String> = delivered.difference(&expected).collect();
    assert!(
        extra.is_empty(),
        "records the simulator never published: {:?}",
        &extra[..extra.len().min(5)]
    );
    println!(
        "{} lines for {} records ({:.1} % repeats) after {kills} kills",
        lines.len(),
        expected.len(),
        100.0 * (lines.len() - expected.len()) as f64 / expected.len() as f64
    );
    runtime.block_on(simulator.stop());
}
