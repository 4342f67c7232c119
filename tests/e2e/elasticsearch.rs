//! The `elasticsearch` sink in the real binary against the `_bulk` simulator (run in this
//! test process, so the test sees the stored documents): with faults on and SIGKILL at
//! random moments, re-deliveries after each restart land as 409s on `create` of the same
//! deterministic `_id`, so the index ends with every record exactly once.

use std::process::Stdio;
use std::time::Duration;

use siemflow_simulator::elasticsearch::{ElasticsearchConfig, ElasticsearchSimulator};

use crate::harness::{Workspace, random_below, records, wait_for};

const INDEX: &str = "m365-audit";

fn pipeline(url: &str) -> String {
    format!(
        r#"
data_dir = "data"
[sources.in]
type = "file"
include = ["in/*.ndjson"]
checkpoint_interval = "200ms"
[sinks.elastic]
type = "elasticsearch"
inputs = ["in"]
endpoints = ["{url}"]
index = "{INDEX}"
id_fields = ["Id"]
action = "create"
concurrency = 4
batch = {{ max_events = 200, timeout = "50ms" }}
retry = {{ initial_backoff = "10ms", max_backoff = "200ms" }}
"#
    )
}

#[test]
fn sigkill_and_faults_leave_every_record_exactly_once_by_id() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut config = ElasticsearchConfig::default();
    config.faults.request_unavailable_rate = 0.03;
    config.faults.item_throttle_rate = 0.03;
    config.faults.item_unavailable_rate = 0.02;
    let elastic = runtime
        .block_on(ElasticsearchSimulator::start(
            config,
            "127.0.0.1:0".parse().expect("address"),
        ))
        .expect("Elasticsearch simulator");

    let ws = Workspace::new();
    let total = 20_000;
    ws.write("in/a.ndjson", &records(0, total, 300));
    ws.write("p.toml", &pipeline(&elastic.url()));
    let mut next = random_below();
    let stored = || elastic.documents(INDEX).len();

    let mut kills = 0;
    while kills < 3 {
        let mut run = ws.run("p.toml", Stdio::null());
        let target = stored() + 1 + next(total / 6);
        let reached = wait_for("documents to grow", Duration::from_secs(120), || {
            let n = stored();
            (n >= target || n >= total).then_some(n)
        });
        if reached >= total {
            break;
        }
        run.signal(libc::SIGKILL);
        run.wait_exit(Duration::from_secs(10));
        kills += 1;
    }
    assert!(kills > 0, "the pipeline finished before it could be killed");

    let mut run = ws.run("p.toml", Stdio::null());
    wait_for("every record stored", Duration::from_secs(180), || {
        (stored() == total).then_some(())
    });
    run.signal(libc::SIGTERM);
    assert!(run.wait_exit(Duration::from_secs(30)).success());

    let documents = elastic.documents(INDEX);
    assert_eq!(documents.len(), total);
    let mut record_ids: Vec<String> = documents
        .iter()
        .filter_map(|(_, source)| Some(source.get("Id")?.as_str()?.to_string()))
        .collect();
    record_ids.sort();
    record_ids.dedup();
    assert_eq!(record_ids.len(), total, "one document per record");
    let attempts = elastic.indexing_attempts(INDEX);
    let written_twice: Vec<_> = attempts.iter().filter(|(_, c)| c.writes != 1).collect();
    assert!(written_twice.is_empty(), "{written_twice:?}");
    let conflicts: u64 = attempts.values().map(|c| c.conflicts).sum();
    let failures: u64 = attempts.values().map(|c| c.failures).sum();
    println!(
        "{kills} kills: {conflicts} re-deliveries absorbed as 409, {failures} item faults retried"
    );
    runtime.block_on(elastic.stop());
}
