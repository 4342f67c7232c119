//! The `sentinel` sink in the real binary against the Logs Ingestion simulator (run in
//! this test process, so the test sees what was ingested), with throttling and 5xx on:
//! every record arrives at least once with `TimeGenerated` and its reserved `Id` renamed,
//! no request passes 1 MiB, a record over 1 MiB and one the DCR refuses reach the
//! `dead_letter` file with their reasons, and the source checkpoints the whole input.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use siemflow_simulator::sentinel::{
    DEFAULT_DCR_ID, DEFAULT_STREAM, Dcr, SentinelConfig, SentinelFaults, SentinelSimulator,
};

use crate::harness::{Workspace, checkpointed, ids, records, wait_for};

fn pipeline(sim: &SentinelSimulator) -> String {
    let cfg = sim.config();
    format!(
        r#"
data_dir = "data"
[api]
address = "127.0.0.1:0"
[sources.in]
type = "file"
include = ["in/*.ndjson"]
max_line_bytes = "4MiB"
checkpoint_interval = "100ms"
[sinks.sentinel]
type = "sentinel"
inputs = ["in"]
endpoint = "{url}"
dcr_immutable_id = "{DEFAULT_DCR_ID}"
stream_name = "{DEFAULT_STREAM}"
timestamp_field = "CreationTime"
batch = {{ max_events = 200, timeout = "50ms" }}
retry = {{ initial_backoff = "10ms", max_backoff = "100ms" }}
[sinks.sentinel.auth]
tenant_id = "{tenant}"
client_id = "{client}"
client_secret = "{secret}"
login_url = "{url}"
[sinks.rejects]
type = "file"
inputs = ["sentinel.dead_letter"]
path = "rejects.ndjson"
"#,
        url = sim.url(),
        tenant = cfg.tenant_id,
        client = cfg.client_id,
        secret = cfg.client_secret,
    )
}

#[test]
fn every_record_arrives_and_the_undeliverable_ones_reach_the_dead_letter_file() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let sim = runtime
        .block_on(SentinelSimulator::start(
            SentinelConfig {
                dcrs: vec![Dcr {
                    required_columns: vec!["TimeGenerated".into(), "Workload".into()],
                    ..Dcr::default()
                }],
                faults: SentinelFaults {
                    throttle_rate: 0.1,
                    unavailable_rate: 0.05,
                    server_error_rate: 0.05,
                    ..SentinelFaults::default()
                },
                ..SentinelConfig::default()
            },
            "127.0.0.1:0".parse().expect("address"),
        ))
        .expect("Logs Ingestion simulator");

    let ws = Workspace::new();
    let total = 2_000;
    let oversized = 500;
    let no_workload = 1_234;
    let input: String = records(0, total, 2_000)
        .lines()
        .enumerate()
        .map(|(i, line)| {
            if i == oversized {
                // Alone it is more than a request may carry: it can never be sent.
                format!(
                    "{},\"Blob\":\"{}\"}}\n",
                    line.trim_end_matches('}'),
                    "z".repeat(1_100_000)
                )
            } else if i == no_workload {
                // The DCR requires a Workload column: the API refuses this record.
                format!("{}\n", line.replace("\"Workload\"", "\"Workplace\""))
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    ws.write("in/a.ndjson", &input);
    ws.write("p.toml", &pipeline(&sim));

    let mut run = ws.run("p.toml", Stdio::null());
    let received = || -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for record in sim.received(DEFAULT_STREAM) {
            if let Some(id) = record.get("x_Id").and_then(|v| v.as_str()) {
                *counts.entry(id.to_string()).or_insert(0) += 1;
            }
        }
        counts
    };
    wait_for(
        "every deliverable record ingested and the two others dead-lettered",
        Duration::from_secs(120),
        || (received().len() == total - 2 && ws.lines("rejects.ndjson").len() >= 2).then_some(()),
    );
    let renamed = run.metric(
        "sentinel_renamed_fields_total",
        &["component_id=\"sentinel\""],
    );
    run.signal(libc::SIGTERM);
    assert!(run.wait_exit(Duration::from_secs(30)).success());

    let counts = received();
    for i in (0..total).filter(|i| *i != oversized && *i != no_workload) {
        assert!(
            counts.contains_key(&format!("rec-{i:08}")),
            "record {i} missing"
        );
    }
    let sample = sim
        .received(DEFAULT_STREAM)
        .into_iter()
        .next()
        .expect("records");
    assert_eq!(sample["TimeGenerated"], "2026-11-24T10:00:00.000Z");
    assert!(sample.get("Id").is_none(), "Id is reserved: sent as x_Id");
    assert!(renamed >= (total - 2) as f64, "renames counted: {renamed}");

    let stats = sim.stats();
    assert_eq!(stats.too_large, 0, "{stats:?}");
    assert!(stats.largest_decoded_body <= 1_048_576, "{stats:?}");
    assert!(stats.throttled > 0, "faults were on: {stats:?}");

    let rejects = ws.lines("rejects.ndjson");
    let mut rejected = ids(&rejects);
    rejected.sort();
    assert_eq!(
        rejected,
        [
            format!("rec-{oversized:08}"),
            format!("rec-{no_workload:08}")
        ]
    );
    for line in &rejects {
        let event: serde_json::Value = serde_json::from_str(line).expect("JSON");
        let dropped = &event["metadata"]["dropped"];
        assert_eq!(dropped["component_id"], "sentinel", "{}", &line[..200]);
        let expected = if event["Id"] == format!("rec-{oversized:08}") {
            "too_large"
        } else {
            "invalid_data"
        };
        assert_eq!(dropped["reason"], expected, "{dropped}");
    }

    // Every record was settled — ingested, or dead-lettered and written by the rejects
    // sink — so the source checkpointed the whole input.
    assert_eq!(checkpointed(&ws), input.len() as u64);
    runtime.block_on(sim.stop());
}
