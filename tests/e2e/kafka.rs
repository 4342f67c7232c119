//! The `kafka` sink against a real broker (tansu), read back with a real client
//! (confluent-kafka): everything arrives, in order per key, through broker restarts and
//! SIGKILLs of siemflow.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::process::Stdio;
use std::time::Duration;

use crate::harness::{Pipeline, Workspace, checkpointed, random_below, wait_for};
use crate::tansu::{Broker, committed, produce, read_topics};

/// Distinct audit-like records, one per line: `Seq` numbers them, `UserId` is the key
/// (97 users, so every partition holds many keys), `Workload` picks the topic.
fn records(from: usize, n: usize) -> String {
    let mut out = String::new();
    for i in from..from + n {
        let workload = ["AzureActiveDirectory", "Exchange", "SharePoint"][i % 3];
        out.push_str(&format!(
            r#"{{"Seq":{i},"UserId":"user-{:02}@contoso.example","Workload":"{workload}","Operation":"UserLoggedIn","Pad":"{}"}}"#,
            i % 97,
            "x".repeat(120)
        ));
        out.push('\n');
    }
    out
}

fn config(bootstrap: &str) -> String {
    format!(
        r#"
data_dir = "data"
[sources.in]
type = "file"
include = ["in/*.ndjson"]
checkpoint_interval = "100ms"
[sinks.out]
type = "kafka"
inputs = ["in"]
bootstrap_servers = "{bootstrap}"
topic = "m365.{{{{ .Workload }}}}"
key_field = "UserId"
headers = {{ workload = "Workload" }}
compression = "zstd"
message_timeout = "5s"
retry = {{ initial_backoff = "100ms", max_backoff = "1s", max_duration = "1h" }}
"#
    )
}

/// What the test does at one moment of the run.
#[derive(Debug, Clone, Copy)]
enum Disruption {
    /// SIGKILL siemflow and start it again.
    KillSiemflow,
    /// Freeze the broker (SIGSTOP) with messages in flight until siemflow gave up on
    /// them (its producer's messages timed out and it built a new one), then thaw it.
    FreezeBroker,
    /// Restart the broker, which comes back empty (memory only): once siemflow has
    /// delivered what was appended, what the broker holds is read out and the broker is
    /// replaced by a new one; siemflow goes on against it with the producer it has.
    /// (With messages in flight the test could not tell a record siemflow lost from one
    /// the broker acknowledged after the read-out and then lost itself.)
    RestartBroker,
}

#[test]
fn every_record_arrives_in_key_order_through_broker_restarts_and_sigkills() {
    let ws = Workspace::new();
    let mut broker = Broker::start(ws.dir.path());
    let total = 100_000;
    let chunks = 100;
    let per_chunk = total / chunks;
    ws.write("in/a.ndjson", "");
    ws.write("p.toml", &config(&broker.bootstrap()));
    let mut next = random_below();
    // The input is appended chunk by chunk while siemflow runs, at most two chunks ahead
    // of what it checkpointed as delivered; each disruption comes right after a chunk was
    // appended, so it always lands with data in flight. One in each fifth of the run.
    let plan: HashMap<usize, Disruption> = [
        Disruption::KillSiemflow,
        Disruption::RestartBroker,
        Disruption::KillSiemflow,
        Disruption::FreezeBroker,
        Disruption::KillSiemflow,
    ]
    .into_iter()
    .enumerate()
    .map(|(i, disruption)| (5 + 18 * i + next(12), disruption))
    .collect();

    // What earlier brokers held, read out before each restart.
    let mut collected: Vec<serde_json::Value> = Vec::new();
    let mut chunk_ends: Vec<u64> = Vec::new();
    let mut pipeline = ws.run("p.toml", Stdio::null());
    for chunk in 0..chunks {
        if chunk >= 2 {
            let behind = chunk_ends[chunk - 2];
            wait_for("siemflow to catch up", Duration::from_secs(300), || {
                (checkpointed(&ws) >= behind).then_some(())
            });
        }
        let text = records(chunk * per_chunk, per_chunk);
        ws.append("in/a.ndjson", &text);
        chunk_ends.push(chunk_ends.last().copied().unwrap_or(0) + text.len() as u64);
        match plan.get(&chunk) {
            Some(Disruption::KillSiemflow) => {
                pipeline.signal(libc::SIGKILL);
                pipeline.wait_exit(Duration::from_secs(10));
                pipeline = ws.run("p.toml", Stdio::null());
            }
            Some(Disruption::FreezeBroker) => {
                let replaced = pipeline.logs().matches(REPLACED).count();
                broker.signal(libc::SIGSTOP);
                wait_for(
                    "siemflow to give up on the frozen broker",
                    Duration::from_secs(120),
                    || (pipeline.logs().matches(REPLACED).count() > replaced).then_some(()),
                );
                broker.signal(libc::SIGCONT);
            }
            Some(Disruption::RestartBroker) => {
                let appended = chunk_ends[chunk];
                wait_for(
                    "siemflow to deliver what was appended",
                    Duration::from_secs(300),
                    || (checkpointed(&ws) == appended).then_some(()),
                );
                collected.extend(read_topics(&broker.bootstrap()));
                broker.restart();
            }
            None => continue,
        }
        println!(
            "{:?} after chunk {chunk}: {} of {} bytes checkpointed",
            plan[&chunk],
            checkpointed(&ws),
            chunk_ends[chunk]
        );
    }

    let input_bytes = *chunk_ends.last().expect("chunks");
    wait_for(
        "every record to be checkpointed as delivered",
        Duration::from_secs(600),
        || (checkpointed(&ws) == input_bytes).then_some(()),
    );
    pipeline.signal(libc::SIGTERM);
    let status = pipeline.wait_exit(Duration::from_secs(60));
    assert!(
        status.success(),
        "siemflow exited with {status}: {}",
        logs(&pipeline)
    );
    collected.extend(read_topics(&broker.bootstrap()));

    if let Ok(path) = std::env::var("SIEMFLOW_TEST_DUMP") {
        let lines: Vec<String> = collected.iter().map(|m| m.to_string()).collect();
        std::fs::write(path, lines.join("\n")).expect("dump");
    }
    let report = check(&collected, total);
    println!(
        "{} messages for {total} records: {} duplicates; {} producers replaced in the last run",
        collected.len(),
        report.duplicates,
        pipeline.logs().matches(REPLACED).count()
    );
}

/// What siemflow logs when it builds a new producer in place of one that failed.
const REPLACED: &str = "replaced the Kafka producer";

fn logs(pipeline: &Pipeline) -> String {
    pipeline
        .logs()
        .lines()
        .rev()
        .take(30)
        .collect::<Vec<_>>()
        .join("\n")
}

struct Report {
    duplicates: usize,
}

/// Every record is present; in each key's sequence of first arrivals in a topic the
/// records come in input order (a re-delivery after a crash repeats what was already there); topic, key
/// and header are the record's own.
fn check(messages: &[serde_json::Value], total: usize) -> Report {
    let mut seen = HashSet::new();
    let mut last_of_key: HashMap<String, u64> = HashMap::new();
    let mut duplicates = 0;
    for message in messages {
        let record: serde_json::Value =
            serde_json::from_str(message["value"].as_str().expect("a value")).expect("JSON value");
        let seq = record["Seq"].as_u64().expect("Seq");
        let user = record["UserId"].as_str().expect("UserId");
        let workload = record["Workload"].as_str().expect("Workload");
        assert_eq!(message["key"], user, "the key is the UserId: {message}");
        assert_eq!(message["topic"], format!("m365.{workload}"), "{message}");
        assert_eq!(message["headers"]["workload"], workload, "{message}");
        if !seen.insert(seq) {
            duplicates += 1;
            continue;
        }
        if let Some(last) = last_of_key.insert(format!("{workload}/{user}"), seq) {
            assert!(
                last < seq,
                "record {seq} of {user} in {workload} arrived after record {last}: out of order"
            );
        }
    }
    let missing: BTreeSet<u64> = (0..total as u64).filter(|s| !seen.contains(s)).collect();
    assert!(
        missing.is_empty(),
        "{} of {total} records missing, e.g. {:?}",
        missing.len(),
        missing.iter().take(10).collect::<Vec<_>>()
    );
    Report { duplicates }
}

fn source_config(bootstrap: &str) -> String {
    format!(
        r#"
data_dir = "data"
[sources.in]
type = "kafka"
bootstrap_servers = "{bootstrap}"
group_id = "siemflow-e2e"
topics = ["m365.audit"]
batch_max_events = 200
# tansu takes about session.timeout.ms / 2 to settle a group join.
librdkafka_options = {{ "session.timeout.ms" = "6000", "heartbeat.interval.ms" = "500", "auto.commit.interval.ms" = "200" }}
[sinks.out]
type = "file"
inputs = ["in"]
path = "out.ndjson"
"#
    )
}

/// The `Seq` of every JSON line of the file sink's output.
fn seqs(lines: &[String]) -> Vec<u64> {
    lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["Seq"].as_u64())
        .collect()
}

#[test]
fn the_source_delivers_every_message_through_sigkills_and_commits_only_delivered_offsets() {
    let ws = Workspace::new();
    let broker = Broker::start(ws.dir.path());
    let total = 20_000;
    produce(&broker.bootstrap(), "m365.audit", 0, total / 2);
    ws.write("p.toml", &source_config(&broker.bootstrap()));
    let mut next = random_below();

    // SIGKILL three times, each after the output grew by a random amount, while the
    // second half is produced meanwhile (live consumption).
    let mut kills = 0;
    let mut pipeline = ws.run("p.toml", Stdio::null());
    while kills < 3 {
        let seen = ws.lines("out.ndjson").len();
        let target = seen + 1 + next(total / 8);
        wait_for("output to grow", Duration::from_secs(120), || {
            (ws.lines("out.ndjson").len() >= target).then_some(())
        });
        pipeline.signal(libc::SIGKILL);
        pipeline.wait_exit(Duration::from_secs(10));
        kills += 1;
        if kills == 1 {
            produce(&broker.bootstrap(), "m365.audit", total / 2, total / 2);
        }
        pipeline = ws.run("p.toml", Stdio::null());
    }
    let expected: BTreeSet<u64> = (0..total as u64).collect();
    wait_for(
        "every message after the restarts",
        Duration::from_secs(300),
        || {
            let delivered: BTreeSet<u64> = seqs(&ws.lines("out.ndjson")).into_iter().collect();
            (delivered == expected).then_some(())
        },
    );
    pipeline.signal(libc::SIGTERM);
    let status = pipeline.wait_exit(Duration::from_secs(60));
    assert!(
        status.success(),
        "siemflow exited with {status}: {}",
        logs(&pipeline)
    );

    let lines = ws.lines("out.ndjson");
    let mut ends: std::collections::BTreeMap<u64, u64> = std::collections::BTreeMap::new();
    for line in &lines {
        let event: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        let kafka = &event["metadata"]["kafka"];
        assert_eq!(kafka["topic"], "m365.audit", "{line}");
        assert_eq!(kafka["key"], event["UserId"], "{line}");
        assert_eq!(kafka["headers"]["source"], "produce.py", "{line}");
        assert!(kafka["timestamp"].is_string(), "{line}");
        let offset = kafka["offset"].as_u64().expect("offset");
        let end = ends
            .entry(kafka["partition"].as_u64().expect("partition"))
            .or_default();
        *end = (*end).max(offset + 1);
    }
    assert!(ends.len() > 1, "messages of several partitions: {ends:?}");
    // Everything was delivered before SIGTERM: the shutdown committed every partition's end.
    assert_eq!(
        committed(&broker.bootstrap(), "siemflow-e2e", "m365.audit"),
        ends,
        "committed offsets = the end of what was delivered, per partition"
    );
    println!(
        "{kills} kills, {} lines for {total} messages ({} repeats)",
        lines.len(),
        lines.len() - total
    );
}
