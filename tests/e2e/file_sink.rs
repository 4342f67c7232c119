//! The `file` sink through the real binary: an event whose rendered file name the file
//! system refuses (a 10,000-character `Workload` in `{{ .Workload }}.log`) goes to the
//! `dead_letter` output with the reason, and everything else flows — before, the sink
//! retried ENAMETOOLONG forever and the pipeline stopped for good (again after every
//! restart, as the record was re-read).

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use crate::harness::{Workspace, checkpointed, ids, records, wait_for};

const CONFIG: &str = r#"
data_dir = "data"
[api]
address = "127.0.0.1:0"
[sources.in]
type = "file"
include = ["in/*.ndjson"]
checkpoint_interval = "100ms"
[sinks.archive]
type = "file"
inputs = ["in"]
path = "out/{{ .Workload }}.log"
[sinks.rejects]
type = "file"
inputs = ["archive.dead_letter"]
path = "dead/letters.ndjson"
"#;

const WORKLOADS: [&str; 3] = ["AzureActiveDirectory", "Exchange", "SharePoint"];

fn delivered(ws: &Workspace) -> Vec<String> {
    WORKLOADS
        .iter()
        .flat_map(|w| ids(&ws.lines(&format!("out/{w}.log"))))
        .collect()
}

#[test]
fn a_file_name_too_long_for_one_event_is_dead_lettered_and_the_rest_flows() {
    let ws = Workspace::new();
    let total = 10_000;
    let bad = 5_000;
    let long_workload = "W".repeat(10_000);
    let input: String = records(0, total, 300)
        .lines()
        .enumerate()
        .map(|(i, line)| {
            if i == bad {
                let workload = WORKLOADS[i % 3];
                line.replace(
                    &format!("\"Workload\":\"{workload}\""),
                    &format!("\"Workload\":\"{long_workload}\""),
                )
            } else {
                line.to_string()
            }
        })
        .map(|line| line + "\n")
        .collect();
    let size = input.len() as u64;
    ws.write("in/a.ndjson", &input);
    ws.write("p.toml", CONFIG);

    let mut pipeline = ws.run("p.toml", Stdio::null());
    wait_for(
        "every good record written, the bad one dead-lettered, the input checkpointed",
        Duration::from_secs(120),
        || {
            (delivered(&ws).len() == total - 1
                && ws.lines("dead/letters.ndjson").len() == 1
                && checkpointed(&ws) == size)
                .then_some(())
        },
    );
    let sink = "component_id=\"archive\"";
    assert_eq!(
        pipeline.metric("delivery_dead_lettered_events_total", &[sink]),
        1.0
    );
    assert_eq!(
        pipeline.metric(
            "component_discarded_events_total",
            &[sink, "reason=\"name_too_long\""]
        ),
        1.0
    );
    assert_eq!(
        pipeline.metric(
            "component_errors_total",
            &[sink, "error_type=\"write_failed\""]
        ),
        0.0,
        "a name that can never be used is not retried"
    );
    assert_eq!(
        pipeline.metric(
            "component_sent_events_total",
            &[sink, "output=\"dead_letter\""]
        ),
        1.0
    );
    assert_eq!(
        pipeline.metric("component_sent_events_total", &[sink]),
        // The written records plus the one emitted on `dead_letter`.
        total as f64
    );
    pipeline.signal(libc::SIGTERM);
    assert!(pipeline.wait_exit(Duration::from_secs(30)).success());

    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for id in delivered(&ws) {
        *counts.entry(id).or_insert(0) += 1;
    }
    let expected: Vec<String> = (0..total)
        .filter(|i| *i != bad)
        .map(|i| format!("rec-{i:08}"))
        .collect();
    assert_eq!(
        counts.keys().cloned().collect::<Vec<_>>(),
        expected,
        "every good record, and only those"
    );
    assert!(counts.values().all(|n| *n == 1), "each exactly once");

    let dead = ws.lines("dead/letters.ndjson");
    let letter: serde_json::Value = serde_json::from_str(&dead[0]).expect("JSON");
    assert_eq!(letter["Id"], format!("rec-{bad:08}"));
    assert_eq!(
        letter["Workload"],
        long_workload.as_str(),
        "the event as it was"
    );
    let dropped = &letter["metadata"]["dropped"];
    assert_eq!(dropped["reason"], "name_too_long");
    assert_eq!(dropped["component_id"], "archive");
    assert_eq!(dropped["component_type"], "file");
    assert_eq!(dropped["component_kind"], "sink");
    let message = dropped["message"].as_str().expect("a message");
    assert!(
        message.contains("File name too long"),
        "the OS error: {message}"
    );
}
