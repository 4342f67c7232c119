//! Scale-out through a consumer group: siemflow processes with the `kafka` source share
//! a 6-partition topic of 100,000 records (tansu, produced with confluent-kafka); one is
//! SIGKILLed mid-run and a third joins later. Every record is delivered at least once
//! (the union of the processes' file outputs), the group's committed offsets never cover
//! a record missing from the outputs (checked during the run and after the final stop),
//! and the duplicates are counted.

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Seek, SeekFrom};
use std::process::Stdio;
use std::time::Duration;

use crate::harness::{Pipeline, Workspace, poll, random_below, wait_for};
use crate::tansu::{Broker, committed, create_topic, produce};

const TOPIC: &str = "m365.audit";
const GROUP: &str = "siemflow-scale-out";
const PARTITIONS: usize = 6;

/// Member `n`'s config: its own data_dir and output file, the shared group.
fn member_config(bootstrap: &str, n: usize) -> String {
    format!(
        r#"
data_dir = "data{n}"
[sources.in]
type = "kafka"
bootstrap_servers = "{bootstrap}"
group_id = "{GROUP}"
topics = ["{TOPIC}"]
batch_max_events = 200
# tansu takes about session.timeout.ms / 2 to settle a group join; drain_timeout is
# half of it by default.
librdkafka_options = {{ "session.timeout.ms" = "6000", "heartbeat.interval.ms" = "500", "auto.commit.interval.ms" = "200" }}
[sinks.out]
type = "file"
inputs = ["in"]
path = "out{n}.ndjson"
"#
    )
}

/// One member's output file, read incrementally.
struct Tail {
    path: std::path::PathBuf,
    /// Bytes read so far.
    read: u64,
    /// Read and not parsed yet.
    unparsed: Vec<u8>,
    /// Complete lines read.
    lines: usize,
}

/// What the members' output files hold. Counting lines is cheap and done often; parsing
/// them (slow in a debug build) only for the checks.
struct Outputs {
    tails: Vec<Tail>,
    /// Every `Seq` delivered, by any member.
    seqs: HashSet<u64>,
    /// Per partition, every offset delivered.
    offsets: BTreeMap<u64, HashSet<u64>>,
}

impl Outputs {
    fn new(ws: &Workspace, members: usize) -> Outputs {
        Outputs {
            tails: (1..=members)
                .map(|n| Tail {
                    path: ws.path(&format!("out{n}.ndjson")),
                    read: 0,
                    unparsed: Vec::new(),
                    lines: 0,
                })
                .collect(),
            seqs: HashSet::new(),
            offsets: BTreeMap::new(),
        }
    }

    /// Reads what was appended and counts its lines.
    fn count(&mut self) -> &mut Self {
        for tail in &mut self.tails {
            let Ok(mut file) = std::fs::File::open(&tail.path) else {
                continue;
            };
            file.seek(SeekFrom::Start(tail.read)).expect("seek output");
            let before = tail.unparsed.len();
            let fresh = file.read_to_end(&mut tail.unparsed).expect("read output");
            tail.read += fresh as u64;
            tail.lines += tail.unparsed[before..]
                .iter()
                .filter(|b| **b == b'\n')
                .count();
        }
        self
    }

    /// Reads what was appended and takes in every complete line.
    fn parse(&mut self) -> &mut Self {
        self.count();
        for tail in &mut self.tails {
            let Some(end) = tail.unparsed.iter().rposition(|b| *b == b'\n') else {
                continue;
            };
            let complete: Vec<u8> = tail.unparsed.drain(..=end).collect();
            for line in complete.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                let event: serde_json::Value =
                    serde_json::from_slice(line).expect("a JSON line from the file sink");
                let kafka = &event["metadata"]["kafka"];
                assert_eq!(kafka["topic"], TOPIC, "{event}");
                self.seqs.insert(event["Seq"].as_u64().expect("Seq"));
                self.offsets
                    .entry(kafka["partition"].as_u64().expect("partition"))
                    .or_default()
                    .insert(kafka["offset"].as_u64().expect("offset"));
            }
        }
        self
    }

    fn lines(&self) -> Vec<usize> {
        self.tails.iter().map(|t| t.lines).collect()
    }

    fn total_lines(&self) -> usize {
        self.tails.iter().map(|t| t.lines).sum()
    }
}

/// The group's committed offsets, read first, never cover an offset the outputs (read
/// after, so they hold at least what was delivered when the offsets were read) lack.
/// Returns the sum of the committed offsets.
fn check_commits_behind_delivery(outputs: &mut Outputs, bootstrap: &str, when: &str) -> u64 {
    let commits = committed(bootstrap, GROUP, TOPIC);
    outputs.parse();
    for (partition, &next) in &commits {
        let delivered = outputs.offsets.get(partition);
        let missing: Vec<u64> = (0..next)
            .filter(|offset| !delivered.is_some_and(|d| d.contains(offset)))
            .take(5)
            .collect();
        assert!(
            missing.is_empty(),
            "{when}: partition {partition} is committed up to {next}, but offsets {missing:?} were never delivered"
        );
    }
    let sum = commits.values().sum();
    let delivered: BTreeMap<u64, usize> = outputs
        .offsets
        .iter()
        .map(|(partition, offsets)| (*partition, offsets.len()))
        .collect();
    println!(
        "{when}: committed {sum} offsets {commits:?}; delivered {} records {delivered:?} in {} lines {:?}",
        outputs.seqs.len(),
        outputs.total_lines(),
        outputs.lines(),
    );
    sum
}

fn stop(pipeline: &mut Pipeline, name: &str) {
    pipeline.signal(libc::SIGTERM);
    let status = pipeline.wait_exit(Duration::from_secs(60));
    assert!(
        status.success(),
        "{name} exited with {status}: {}",
        pipeline
            .logs()
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// How often a member's log says `what`.
fn logged(pipeline: &Pipeline, what: &str) -> usize {
    pipeline.logs().matches(what).count()
}

/// A member's log lines about its partitions.
fn rebalances(pipeline: &Pipeline) -> String {
    pipeline
        .logs()
        .lines()
        .filter(|l| l.contains("partitions"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// How many assignments of partitions of the topic a member logged.
fn assignments(pipeline: &Pipeline) -> usize {
    pipeline
        .logs()
        .lines()
        .filter(|l| l.contains(ASSIGNED) && l.contains(TOPIC))
        .count()
}

/// What the source logs when partitions were assigned to it.
const ASSIGNED: &str = "partitions assigned";
/// What the source logs when a revoke begins, and when a drain's deadline gave up events.
const REVOKED: &str = "partitions revoked; waiting for their events in flight";
const GAVE_UP: &str = "not acknowledged within drain_timeout";

#[test]
fn a_consumer_group_delivers_every_record_through_a_sigkill_and_a_join() {
    let ws = Workspace::new();
    let broker = Broker::start(ws.dir.path());
    let bootstrap = broker.bootstrap();
    let total = 100_000;
    create_topic(&bootstrap, TOPIC, PARTITIONS);
    // Nine tenths produced first: the members then always have a backlog, so the
    // SIGKILL and the join land with events in flight. The last tenth comes once the
    // third member has partitions, so that it has records to deliver whichever
    // partitions it got.
    let upfront = total * 9 / 10;
    produce(&bootstrap, TOPIC, 0, upfront);
    for n in 1..=3 {
        ws.write(&format!("m{n}.toml"), &member_config(&bootstrap, n));
    }
    let mut outputs = Outputs::new(&ws, 3);
    let mut next = random_below();

    // Two members share the partitions: both deliver.
    let mut first = ws.run("m1.toml", Stdio::null());
    let mut second = ws.run("m2.toml", Stdio::null());
    wait_for("both members to deliver", Duration::from_secs(120), || {
        (outputs.count().tails[..2].iter().all(|t| t.lines > 0)).then_some(())
    });

    // The second member is SIGKILLed mid-run, between 30 and 50 % of the records.
    let target = (total * 3 / 10 + next(total / 5)).max(outputs.total_lines() + 1);
    wait_for("the SIGKILL's point", Duration::from_secs(300), || {
        (outputs.count().total_lines() >= target).then_some(())
    });
    let assigned_before = assignments(&first);
    second.signal(libc::SIGKILL);
    second.wait_exit(Duration::from_secs(10));
    println!(
        "SIGKILLed the second member at {} lines",
        outputs.count().total_lines()
    );
    check_commits_behind_delivery(&mut outputs, &bootstrap, "right after the SIGKILL");

    // The first member takes the dead one's partitions once its session timed out; then
    // a third joins, between 60 and 80 % of the backlog, and takes some of them over.
    wait_for(
        "the first member to take the dead one's partitions",
        Duration::from_secs(120),
        || (assignments(&first) > assigned_before).then_some(()),
    );
    let target = (upfront * 6 / 10 + next(upfront / 5)).max(outputs.total_lines() + 1);
    wait_for("the third member's start", Duration::from_secs(300), || {
        (outputs.count().total_lines() >= target).then_some(())
    });
    println!("the third member starts at {} lines", outputs.total_lines());
    let revoked_before = logged(&first, REVOKED);
    let mut third = ws.run("m3.toml", Stdio::null());
    let assigned = poll(Duration::from_secs(120), || {
        (assignments(&third) > 0).then_some(())
    });
    assert!(
        assigned.is_some(),
        "the third member got no partitions; its log:\n{}\nthe first's:\n{}",
        rebalances(&third),
        rebalances(&first)
    );
    assert!(
        logged(&first, REVOKED) > revoked_before,
        "the third member's partitions came from the first by a revoke; its log:\n{}",
        rebalances(&first)
    );
    produce(&bootstrap, TOPIC, upfront, total - upfront);
    let delivered = poll(Duration::from_secs(120), || {
        (outputs.count().tails[2].lines > 0).then_some(())
    });
    assert!(
        delivered.is_some(),
        "the third member delivered nothing; its log:\n{}\nthe first's:\n{}",
        rebalances(&third),
        rebalances(&first)
    );
    check_commits_behind_delivery(&mut outputs, &bootstrap, "the third member joined");

    let complete = poll(Duration::from_secs(600), || {
        (outputs.count().total_lines() >= total && outputs.parse().seqs.len() == total)
            .then_some(())
    });
    if complete.is_none() {
        let missing: Vec<u64> = (0..total as u64)
            .filter(|seq| !outputs.seqs.contains(seq))
            .take(10)
            .collect();
        panic!(
            "{} of {total} records delivered, e.g. missing {missing:?}; the first's log:\n{}\nthe third's:\n{}",
            outputs.seqs.len(),
            rebalances(&first),
            rebalances(&third)
        );
    }
    stop(&mut first, "the first member");
    stop(&mut third, "the third member");

    // After the final stop: the commits are behind delivery, and since everything was
    // delivered before the stop, each partition is committed to its end.
    let sum = check_commits_behind_delivery(&mut outputs, &bootstrap, "after the final stop");
    let ends: BTreeMap<u64, u64> = outputs
        .offsets
        .iter()
        .map(|(partition, offsets)| (*partition, offsets.len() as u64))
        .collect();
    assert_eq!(
        ends.len(),
        PARTITIONS,
        "records in every partition: {ends:?}"
    );
    for (partition, offsets) in &outputs.offsets {
        let end = offsets.len() as u64;
        assert!(
            (0..end).all(|o| offsets.contains(&o)),
            "partition {partition}: the offsets delivered are not 0..{end}"
        );
    }
    assert_eq!(sum, total as u64, "offsets of all {total} records");
    assert_eq!(
        committed(&bootstrap, GROUP, TOPIC),
        ends,
        "every partition committed to its end after the final stop"
    );
    assert!(
        outputs.seqs.iter().all(|&seq| seq < total as u64),
        "only the records produced"
    );
    println!(
        "{} lines for {total} records: {} duplicates; lines per member {:?}; revokes (incl. the final stop's) first {}, third {}; drains that gave up events first {}, third {}",
        outputs.total_lines(),
        outputs.total_lines() - total,
        outputs.lines(),
        logged(&first, REVOKED),
        logged(&third, REVOKED),
        logged(&first, GAVE_UP),
        logged(&third, GAVE_UP),
    );
}
