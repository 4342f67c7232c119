//! The `kafka` benchmark (issue 12): a tansu broker from the test venv beside the release
//! binary, then (a) file → kafka: the dataset file into the kafka sink, timed from process
//! start until the sink's delivery reports cover every record (then the topic is counted
//! with confluent-kafka), and (b) kafka → blackhole: a new consumer group reads that topic
//! into a blackhole, timed until every record was delivered. Each run starts a new broker
//! (memory only), so its CPU time and memory belong to that run.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, ensure};

use crate::dataset::Dataset;
use crate::peers::{Tansu, Venv};
use crate::scenario::{Run, cpu_seconds, load_average, measure, peak_rss_mib, write_config};

/// The topic both directions use.
const TOPIC: &str = "bench";

/// Creates a topic: `BOOTSTRAP TOPIC PARTITIONS`.
const CREATE_TOPIC: &str = r#"
import sys
from confluent_kafka.admin import AdminClient, NewTopic
bootstrap, topic, partitions = sys.argv[1], sys.argv[2], int(sys.argv[3])
admin = AdminClient({"bootstrap.servers": bootstrap})
topics = [NewTopic(topic, num_partitions=partitions, replication_factor=1)]
for future in admin.create_topics(topics).values():
    future.result(30)
"#;

/// Prints how many messages a topic holds: `BOOTSTRAP TOPIC`. A partition's end is where
/// a fetch reports end of partition: tansu answers ListOffsets with the last record
/// batch's base offset + 1, so its high watermark would undercount.
const COUNT_TOPIC: &str = r#"
import sys, time
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
bootstrap, topic = sys.argv[1], sys.argv[2]
consumer = Consumer({
    "bootstrap.servers": bootstrap,
    "group.id": "siemflow-bench-count",
    "enable.auto.commit": False,
    "enable.partition.eof": True,
})
metadata = consumer.list_topics(topic, timeout=30)
partitions = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in metadata.topics[topic].partitions]
consumer.assign(partitions)
count, ended, heard = 0, set(), time.monotonic()
while len(ended) < len(partitions):
    messages = consumer.consume(10000, 1)
    if messages:
        heard = time.monotonic()
    elif time.monotonic() - heard > 30:
        sys.exit(f"nothing from the broker for 30 s after {count} messages; ended: {sorted(ended)}")
    for message in messages:
        if message.error():
            if message.error().code() == KafkaError._PARTITION_EOF:
                ended.add(message.partition())
                continue
            sys.exit(str(message.error()))
        count += 1
consumer.close()
print(count)
"#;

/// How the scenario runs.
pub struct Options<'a> {
    /// The test venv holding tansu and confluent-kafka.
    pub venv: &'a Path,
    /// Runs per compression codec.
    pub runs: usize,
    /// The sink's `compression` values to run.
    pub compressions: &'a [String],
    /// Partitions of the topic.
    pub partitions: u32,
}

/// One direction of one run.
pub struct Measured {
    /// `file → kafka` or `kafka → blackhole`.
    pub direction: &'static str,
    /// The sink's compression (for kafka → blackhole: of the topic it reads).
    pub compression: String,
    /// 1, 2, 3, ...
    pub run: usize,
    /// Records through.
    pub events: u64,
    /// Input bytes of those records.
    pub bytes: u64,
    /// Process start to the last record delivered.
    pub seconds: f64,
    /// Process start to the first record delivered (for the source: after the group join).
    pub first_seconds: Option<f64>,
    /// siemflow's CPU time until the last delivery.
    pub cpu_seconds: f64,
    /// The broker's CPU time over the same span.
    pub broker_cpu_seconds: f64,
    /// siemflow's peak resident memory.
    pub peak_rss_mib: f64,
    /// The broker's peak resident memory so far.
    pub broker_rss_mib: f64,
    /// The machine's load averages (1, 5, 15 min) when the direction started.
    pub load: String,
}

impl Measured {
    /// One line for the console.
    fn print(&self) {
        eprintln!(
            "  {} ({}, run {}): {:.0} events/s ({} steady), siemflow {:.2} CPU s, tansu {:.2} CPU s, peak RSS {:.1} MiB, load {}",
            self.direction,
            self.compression,
            self.run,
            self.events_per_second(),
            self.steady_events_per_second()
                .map_or_else(|| "-".to_string(), |r| format!("{r:.0}")),
            self.cpu_seconds,
            self.broker_cpu_seconds,
            self.peak_rss_mib,
            self.load
        );
    }

    /// Records per second, process start to the last delivery.
    pub fn events_per_second(&self) -> f64 {
        self.events as f64 / self.seconds
    }

    /// Records per second from the first delivery to the last.
    pub fn steady_events_per_second(&self) -> Option<f64> {
        let first = self.first_seconds?;
        (self.seconds > first).then(|| self.events as f64 / (self.seconds - first))
    }
}

/// Runs both directions `runs` times per compression, a new broker each time.
pub fn run(
    binary: &Path,
    input: &Path,
    data: &Dataset,
    work: &Path,
    options: &Options<'_>,
) -> anyhow::Result<Vec<Measured>> {
    let venv = Venv::at(options.venv)?;
    let mut results = Vec::new();
    for compression in options.compressions {
        for run in 1..=options.runs {
            let dir = tempfile::tempdir_in(work)?;
            let broker = Tansu::start(&venv, &dir.path().join("tansu.log"))?;
            let bootstrap = broker.bootstrap();
            venv.python(
                CREATE_TOPIC,
                &[&bootstrap, TOPIC, &options.partitions.to_string()],
            )
            .context("creating the topic")?;
            let sink = format!(
                r#"[sources.in]
type = "file"
include = ["{input}"]
[sinks.out]
type = "kafka"
inputs = ["in"]
bootstrap_servers = "{bootstrap}"
topic = "{TOPIC}"
key_field = "UserId"
compression = "{compression}"
"#,
                input = input.display()
            );
            let produced = direction(&dir.path().join("sink"), binary, &sink, &broker, data)
                .with_context(|| format!("file → kafka ({compression}, run {run})"))?;
            let count: u64 = venv
                .python(COUNT_TOPIC, &[&bootstrap, TOPIC])
                .context("counting the topic")?
                .trim()
                .parse()
                .context("the count of the topic")?;
            ensure!(
                count >= data.events,
                "the topic holds {count} records of the {} the sink reported delivered",
                data.events
            );
            if count > data.events {
                eprintln!("  the topic holds {} duplicates", count - data.events);
            }
            let produced = produced.named("file → kafka", compression, run);
            produced.print();
            results.push(produced);
            // The group join: tansu completes it after about half the session timeout,
            // so the tests' short one (kafka-eventhubs.md §7.1).
            let source = format!(
                r#"[sources.in]
type = "kafka"
bootstrap_servers = "{bootstrap}"
group_id = "bench-{run}"
topics = ["{TOPIC}"]
librdkafka_options = {{ "session.timeout.ms" = "6000", "heartbeat.interval.ms" = "500" }}
[sinks.out]
type = "blackhole"
inputs = ["in"]
"#
            );
            let consumed = direction(&dir.path().join("source"), binary, &source, &broker, data)
                .with_context(|| format!("kafka → blackhole ({compression}, run {run})"))?;
            let consumed = consumed.named("kafka → blackhole", compression, run);
            consumed.print();
            results.push(consumed);
        }
    }
    Ok(results)
}

/// A direction's figures before they are named.
struct Timed {
    run: Run,
    broker_cpu_seconds: f64,
    broker_rss_mib: f64,
    load: String,
    events: u64,
    bytes: u64,
}

impl Timed {
    fn named(self, direction: &'static str, compression: &str, run: usize) -> Measured {
        Measured {
            direction,
            compression: compression.to_string(),
            run,
            events: self.events,
            bytes: self.bytes,
            seconds: self.run.seconds,
            first_seconds: self.run.first_seconds,
            cpu_seconds: self.run.cpu_seconds,
            broker_cpu_seconds: self.broker_cpu_seconds,
            peak_rss_mib: self.run.peak_rss_mib,
            broker_rss_mib: self.broker_rss_mib,
            load: self.load,
        }
    }
}

/// Runs siemflow with `config` (sink `out`) in `dir` until it delivered every record.
fn direction(
    dir: &Path,
    binary: &Path,
    config: &str,
    broker: &Tansu,
    data: &Dataset,
) -> anyhow::Result<Timed> {
    std::fs::create_dir_all(dir)?;
    let api = write_config(dir, config)?;
    let load = load_average();
    let broker_cpu = cpu_seconds(broker.pid())?;
    let run = measure(
        binary,
        dir,
        &api,
        &[("out", data.events)],
        Duration::from_secs(600),
        None,
    )?;
    Ok(Timed {
        broker_cpu_seconds: cpu_seconds(broker.pid())? - broker_cpu,
        broker_rss_mib: peak_rss_mib(broker.pid())?,
        run,
        load,
        events: data.events,
        bytes: data.bytes,
    })
}

/// The report section.
pub fn report(results: &[Measured], partitions: u32) -> String {
    let mut out = format!(
        "\n## Kafka\n\n\
         A tansu broker (memory storage, from `.venv-test`, started anew for each run) on the\n\
         same two cores, one topic of {partitions} partitions. **file → kafka**: the dataset file\n\
         into the `kafka` sink (JSON, key `UserId`, idempotent producer, `acks=all`, otherwise\n\
         the sink's defaults), timed from process start until its delivery reports cover every\n\
         record; the topic is then counted with confluent-kafka. **kafka → blackhole**: a new\n\
         consumer group reads that topic with the `kafka` source (JSON decoding,\n\
         `session.timeout.ms` 6000 because tansu completes a join after about half of it)\n\
         into a blackhole, timed until every record was delivered; \"steady\" leaves out the\n\
         time before the first delivery (start-up and the group join). CPU: siemflow's and\n\
         tansu's own user + system time over the run, from /proc. Load: the machine's load\n\
         averages when the run started (other work shares the cores).\n\n\
         | direction | compression | run | events | MB | seconds | first at | events/s | steady events/s | MB/s | siemflow CPU s | tansu CPU s | peak RSS | tansu RSS | load | target |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|\n"
    );
    for m in results {
        out.push_str(&format!(
            "| {direction} | {compression} | {run} | {events} | {mb:.1} | {seconds:.2} | {first} | {rate:.0} | {steady} | {mbs:.1} | {cpu:.2} | {broker_cpu:.2} | {rss:.1} MiB | {broker_rss:.0} MiB | {load} | ≥ 100,000 events/s |\n",
            direction = m.direction,
            compression = m.compression,
            run = m.run,
            events = m.events,
            mb = m.bytes as f64 / 1e6,
            seconds = m.seconds,
            first = m
                .first_seconds
                .map_or_else(|| "-".to_string(), |f| format!("{f:.2}")),
            rate = m.events_per_second(),
            steady = m
                .steady_events_per_second()
                .map_or_else(|| "-".to_string(), |r| format!("{r:.0}")),
            mbs = m.bytes as f64 / 1e6 / m.seconds,
            cpu = m.cpu_seconds,
            broker_cpu = m.broker_cpu_seconds,
            rss = m.peak_rss_mib,
            broker_rss = m.broker_rss_mib,
            load = m.load,
        ));
    }
    out
}
