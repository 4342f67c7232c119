//! The `splunk_hec` sink in the real binary against the HEC simulator (run in this test
//! process, so the test sees what Splunk indexed): events Splunk can never take reach the
//! `dead_letter` output and a file sink wired to it with the reason, every other event is
//! indexed exactly once, and the source checkpoints the whole input (dead-lettered events
//! are settled by the file sink that wrote them).

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use siemflow_simulator::splunk_hec::{HecToken, SplunkHecConfig, SplunkHecSimulator};

use crate::harness::{Workspace, checkpointed, ids, records, wait_for};

const TOKEN: &str = "6f1d7f0e-8a4b-4c59-9a3e-2b1c0d9e8f7a";
const MARKER: &str = "POISON";

fn pipeline(url: &str) -> String {
    format!(
        r#"
data_dir = "data"
[sources.in]
type = "file"
include = ["in/*.ndjson"]
checkpoint_interval = "100ms"
[sinks.hec]
type = "splunk_hec"
inputs = ["in"]
endpoint = "{url}"
token = "{TOKEN}"
index = "main"
batch = {{ max_events = 50, timeout = "50ms" }}
acknowledgements = {{ enabled = true, ack_poll_interval = "50ms", ack_timeout = "2s" }}
retry = {{ initial_backoff = "10ms", max_backoff = "100ms" }}
[sinks.rejects]
type = "file"
inputs = ["hec.dead_letter"]
path = "rejects.ndjson"
"#
    )
}

#[test]
fn rejected_events_reach_the_dead_letter_file_and_the_rest_is_indexed_once() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut config = SplunkHecConfig {
        tokens: vec![HecToken {
            token: TOKEN.into(),
            ack: true,
            ..HecToken::default()
        }],
        ..SplunkHecConfig::default()
    };
    config.faults.reject_marker = Some(MARKER.into());
    config.faults.busy_rate = 0.05;
    config.faults.lost_ack_rate = 0.05;
    let splunk = runtime
        .block_on(SplunkHecSimulator::start(
            config,
            "127.0.0.1:0".parse().expect("address"),
        ))
        .expect("HEC simulator");

    let ws = Workspace::new();
    let total = 1_000;
    let poisoned: Vec<usize> = vec![3, 250, 251, 777, 999];
    let input: String = records(0, total, 300)
        .lines()
        .enumerate()
        .map(|(i, line)| {
            if poisoned.contains(&i) {
                format!("{},\"Note\":\"{MARKER}\"}}\n", line.trim_end_matches('}'))
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    ws.write("in/a.ndjson", &input);
    ws.write("p.toml", &pipeline(&splunk.url()));

    let mut run = ws.run("p.toml", Stdio::null());
    let indexed_ids = || -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for event in splunk.indexed() {
            if let Some(id) = event.event.get("Id").and_then(|v| v.as_str()) {
                *counts.entry(id.to_string()).or_insert(0) += 1;
            }
        }
        counts
    };
    wait_for(
        "every clean event indexed and every poisoned one dead-lettered",
        Duration::from_secs(120),
        || {
            (indexed_ids().len() == total - poisoned.len()
                && ws.lines("rejects.ndjson").len() >= poisoned.len())
            .then_some(())
        },
    );
    run.signal(libc::SIGTERM);
    assert!(run.wait_exit(Duration::from_secs(30)).success());

    let indexed = indexed_ids();
    let repeated: Vec<_> = indexed.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "indexed more than once: {repeated:?}");
    assert!(
        poisoned
            .iter()
            .all(|i| !indexed.contains_key(&format!("rec-{i:08}"))),
        "a poisoned event was indexed"
    );

    let rejects = ws.lines("rejects.ndjson");
    let mut rejected_ids = ids(&rejects);
    rejected_ids.sort();
    let expected: Vec<String> = poisoned.iter().map(|i| format!("rec-{i:08}")).collect();
    assert_eq!(
        rejected_ids, expected,
        "each poisoned event dead-lettered once"
    );
    for line in &rejects {
        let event: serde_json::Value = serde_json::from_str(line).expect("JSON");
        let dropped = &event["metadata"]["dropped"];
        assert_eq!(dropped["component_id"], "hec", "{line}");
        assert_eq!(dropped["component_kind"], "sink", "{line}");
        assert!(
            dropped["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "a reason: {line}"
        );
        assert_eq!(
            dropped["response"]["status"], 400,
            "Splunk's answer: {line}"
        );
        assert!(
            dropped["response"]["body"]
                .as_str()
                .is_some_and(|b| b.contains("invalid-event-number")),
            "Splunk's body: {line}"
        );
    }

    // Every event was settled — indexed, or dead-lettered and written by the rejects
    // sink — so the source checkpointed the whole input: a restart re-sends nothing.
    assert_eq!(checkpointed(&ws), input.len() as u64);
    runtime.block_on(splunk.stop());
}
