//! SIGHUP replaces what changed, keeps what did not, and rejects a broken config.

use std::process::Stdio;
use std::time::Duration;

use crate::harness::{Workspace, checkpointed, ids, records, wait_for};

fn config(sink_path: &str) -> String {
    format!(
        r#"
data_dir = "data"
[api]
address = "127.0.0.1:0"
[sources.in]
type = "file"
include = ["in/*.ndjson"]
[sinks.out]
type = "file"
inputs = ["in"]
path = "{sink_path}"
"#
    )
}

fn expected(from: usize, n: usize) -> Vec<String> {
    (from..from + n).map(|i| format!("rec-{i:08}")).collect()
}

#[test]
fn sighup_replaces_changed_components_and_rejects_broken_configs() {
    let ws = Workspace::new();
    ws.write("p.toml", &config("first.ndjson"));
    ws.write("in/a.ndjson", &records(0, 100, 200));
    let mut pipeline = ws.run("p.toml", Stdio::null());
    wait_for("the first batch", Duration::from_secs(60), || {
        (ws.lines("first.ndjson").len() >= 100).then_some(())
    });

    // Only the sink changes: it is replaced, the source keeps its place in the file.
    ws.write("p.toml", &config("second.ndjson"));
    pipeline.signal(libc::SIGHUP);
    wait_for("the reload", Duration::from_secs(30), || {
        (pipeline.metric("config_reloads_total", &["result=\"applied\""]) >= 1.0).then_some(())
    });
    ws.append("in/a.ndjson", &records(100, 50, 200));
    wait_for("the second batch", Duration::from_secs(60), || {
        (ws.lines("second.ndjson").len() >= 50).then_some(())
    });
    assert_eq!(ids(&ws.lines("first.ndjson")), expected(0, 100));
    assert_eq!(
        ids(&ws.lines("second.ndjson")),
        expected(100, 50),
        "the unchanged source must not start over"
    );

    // A broken config is rejected with its errors; the pipeline keeps running.
    ws.write(
        "p.toml",
        "[sinks.out]\ntype = \"nope\"\ninputs = [\"in\"]\n",
    );
    pipeline.signal(libc::SIGHUP);
    wait_for("the rejection", Duration::from_secs(30), || {
        (pipeline.metric("config_reloads_total", &["result=\"rejected\""]) >= 1.0).then_some(())
    });
    assert!(
        pipeline.logs().contains("unknown sink type `nope`"),
        "{}",
        pipeline.logs()
    );
    ws.append("in/a.ndjson", &records(150, 50, 200));
    wait_for("the third batch", Duration::from_secs(60), || {
        (ws.lines("second.ndjson").len() >= 100).then_some(())
    });
    assert_eq!(ids(&ws.lines("second.ndjson")), expected(100, 100));
    pipeline.signal(libc::SIGTERM);
    assert!(pipeline.wait_exit(Duration::from_secs(30)).success());
}

#[test]
fn watch_config_reloads_on_change() {
    let ws = Workspace::new();
    ws.write("p.toml", &config("first.ndjson"));
    ws.write("in/a.ndjson", &records(0, 10, 200));
    let mut pipeline = ws.spawn("p.toml", &["--watch-config"], Stdio::null(), Stdio::null());
    wait_for("the first batch", Duration::from_secs(60), || {
        (ws.lines("first.ndjson").len() >= 10).then_some(())
    });
    let path = ws.write("p.toml", &config("second.ndjson"));
    // File systems with coarse timestamps could hide the edit; move the mtime forward.
    let later = std::time::SystemTime::now() + Duration::from_secs(5);
    std::fs::File::options()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_modified(later))
        .expect("set mtime");
    wait_for("the watched reload", Duration::from_secs(30), || {
        (pipeline.metric("config_reloads_total", &["result=\"applied\""]) >= 1.0).then_some(())
    });
    ws.append("in/a.ndjson", &records(10, 10, 200));
    wait_for("the second batch", Duration::from_secs(60), || {
        (ws.lines("second.ndjson").len() >= 10).then_some(())
    });
    assert_eq!(ids(&ws.lines("second.ndjson")), expected(10, 10));
}

// --- Reloads while data is in flight -------------------------------------------------
//
// Each test below feeds the file source continuously while SIGHUP replaces part of the
// pipeline, and checks the promise that matters: every record the source checkpointed
// reached the receiver, and once the input is checkpointed to its end, every record did.

/// The API and the fed file source `in` that every pipeline below starts with (after its
/// global keys).
const FED_SOURCE: &str = r#"[api]
address = "127.0.0.1:0"
[sources.in]
type = "file"
include = ["in/*.ndjson"]
checkpoint_interval = "50ms"
"#;

/// Appends `total` records to `in/a.ndjson` in chunks from a thread.
struct Feeder {
    thread: Option<std::thread::JoinHandle<()>>,
    /// Each record's id and the file offset where it ends.
    records: Vec<(String, u64)>,
}

impl Feeder {
    const RECORD_BYTES: usize = 300;

    fn start(ws: &Workspace, file: &str, total: usize, chunks: usize) -> Feeder {
        let text = records(0, total, Self::RECORD_BYTES);
        let path = ws.path(file);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        let lines: Vec<String> = text.lines().map(|l| format!("{l}\n")).collect();
        let mut end = 0u64;
        let records = lines
            .iter()
            .zip(ids(&lines))
            .map(|(line, id)| {
                end += line.len() as u64;
                (id, end)
            })
            .collect();
        let per_chunk = total.div_ceil(chunks);
        let thread = std::thread::spawn(move || {
            use std::io::Write as _;
            let mut out = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .expect("open input");
            for chunk in lines.chunks(per_chunk) {
                out.write_all(chunk.concat().as_bytes()).expect("append");
                // Paces the input so reloads land while data is arriving.
                std::thread::sleep(Duration::from_millis(40));
            }
        });
        Feeder {
            thread: Some(thread),
            records,
        }
    }

    fn finish(&mut self) {
        if let Some(thread) = self.thread.take() {
            thread.join().expect("feeder thread");
        }
    }

    fn bytes(&self) -> u64 {
        self.records.last().map_or(0, |(_, end)| *end)
    }

    /// Ids of the records that end at or before `offset`.
    fn ids_before(&self, offset: u64) -> Vec<String> {
        self.records
            .iter()
            .take_while(|(_, end)| *end <= offset)
            .map(|(id, _)| id.clone())
            .collect()
    }

    fn all_ids(&self) -> Vec<String> {
        self.ids_before(u64::MAX)
    }
}

/// Fails when the source checkpointed a record the receiver does not have. `delivered`
/// is read after the checkpoint, so a record delivered in between does no harm.
fn assert_checkpoint_covered(ws: &Workspace, feeder: &Feeder, delivered: impl Fn() -> Vec<String>) {
    let checkpoint = checkpointed(ws);
    let have: std::collections::HashSet<String> = delivered().into_iter().collect();
    let missing: Vec<String> = feeder
        .ids_before(checkpoint)
        .into_iter()
        .filter(|id| !have.contains(id))
        .collect();
    assert!(
        missing.is_empty(),
        "the source checkpointed {checkpoint} bytes but {} of those records never reached the \
         receiver (first: {:?})",
        missing.len(),
        missing.first()
    );
}

/// Waits until the input is checkpointed to its end, then checks every record arrived.
fn assert_all_delivered(ws: &Workspace, feeder: &Feeder, delivered: impl Fn() -> Vec<String>) {
    wait_for(
        "the whole input checkpointed",
        Duration::from_secs(120),
        || (checkpointed(ws) >= feeder.bytes()).then_some(()),
    );
    assert_checkpoint_covered(ws, feeder, &delivered);
    let have: std::collections::HashSet<String> = delivered().into_iter().collect();
    let all = feeder.all_ids();
    assert_eq!(all.len(), have.len(), "every record, once per id");
}

fn reloads(pipeline: &mut crate::harness::Pipeline) -> f64 {
    pipeline.metric("config_reloads_total", &["result=\"applied\""])
}

/// Rewrites the config and sends SIGHUP, then waits for the reload to be applied.
/// Replaces `p.toml` in one rename, so a reload never reads it half written.
fn write_config(ws: &Workspace, config: &str) {
    ws.write("p.toml.new", config);
    std::fs::rename(ws.path("p.toml.new"), ws.path("p.toml")).expect("rename the config");
}

fn reload_to(ws: &Workspace, pipeline: &mut crate::harness::Pipeline, config: &str) {
    let before = reloads(pipeline);
    write_config(ws, config);
    pipeline.signal(libc::SIGHUP);
    wait_for("the reload", Duration::from_secs(60), || {
        (reloads(pipeline) > before).then_some(())
    });
}

fn chain_config(generation: usize) -> String {
    format!(
        r#"
data_dir = "data"
{FED_SOURCE}[transforms.stamp]
type = "remap"
inputs = ["in"]
source = '.generation = {generation}'
[sinks.out]
type = "file"
inputs = ["stamp"]
path = "out.ndjson"
"#
    )
}

#[test]
fn reloading_a_sink_with_a_retrying_backlog_loses_nothing() {
    use siemflow_simulator::elasticsearch::{ElasticsearchConfig, ElasticsearchSimulator};
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut simulated = ElasticsearchConfig::default();
    simulated.faults.item_throttle_rate = 0.2;
    simulated.faults.request_unavailable_rate = 0.05;
    let elastic = runtime
        .block_on(ElasticsearchSimulator::start(
            simulated,
            "127.0.0.1:0".parse().expect("address"),
        ))
        .expect("Elasticsearch simulator");
    let config = |max_events: usize| {
        format!(
            r#"
data_dir = "data"
{FED_SOURCE}[sinks.elastic]
type = "elasticsearch"
inputs = ["in"]
endpoints = ["{}"]
index = "audit"
id_fields = ["Id"]
action = "create"
batch = {{ max_events = {max_events}, timeout = "20ms" }}
retry = {{ initial_backoff = "20ms", max_backoff = "200ms" }}
"#,
            elastic.url()
        )
    };
    let stored = || -> Vec<String> {
        elastic
            .documents("audit")
            .iter()
            .filter_map(|(_, source)| Some(source.get("Id")?.as_str()?.to_string()))
            .collect()
    };

    let ws = Workspace::new();
    ws.write("p.toml", &config(100));
    let mut pipeline = ws.run("p.toml", Stdio::null());
    let mut feeder = Feeder::start(&ws, "in/a.ndjson", 30_000, 60);
    for (round, max_events) in [50, 300, 20, 500, 80, 150].into_iter().enumerate() {
        let target = (round + 1) * 2_000;
        wait_for("documents to grow", Duration::from_secs(60), || {
            (stored().len() >= target).then_some(())
        });
        reload_to(&ws, &mut pipeline, &config(max_events));
        assert_checkpoint_covered(&ws, &feeder, stored);
    }
    feeder.finish();
    assert_all_delivered(&ws, &feeder, stored);
    pipeline.signal(libc::SIGTERM);
    assert!(pipeline.wait_exit(Duration::from_secs(60)).success());
    runtime.block_on(elastic.stop());
}

#[test]
fn replacing_a_transform_in_a_chain_loses_nothing() {
    let ws = Workspace::new();
    ws.write("p.toml", &chain_config(0));
    let mut pipeline = ws.run("p.toml", Stdio::null());
    let mut feeder = Feeder::start(&ws, "in/a.ndjson", 20_000, 50);
    let delivered = || ids(&ws.lines("out.ndjson"));
    for generation in 1..=6 {
        wait_for("output to grow", Duration::from_secs(60), || {
            (delivered().len() >= generation * 1_500).then_some(())
        });
        reload_to(&ws, &mut pipeline, &chain_config(generation));
        assert_checkpoint_covered(&ws, &feeder, delivered);
    }
    feeder.finish();
    assert_all_delivered(&ws, &feeder, delivered);
    let generations: std::collections::BTreeSet<String> = ws
        .lines("out.ndjson")
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.get("generation").map(|g| g.to_string()))
        .collect();
    assert!(
        generations.len() >= 2,
        "the program was replaced while data flowed: {generations:?}"
    );
    pipeline.signal(libc::SIGTERM);
    assert!(pipeline.wait_exit(Duration::from_secs(60)).success());
}

#[test]
fn changing_the_inputs_of_a_sink_loses_nothing() {
    let config = |inputs: &str| {
        format!(
            r#"
data_dir = "data"
{FED_SOURCE}[sources.side]
type = "file"
include = ["side/*.ndjson"]
[sinks.out]
type = "file"
inputs = {inputs}
path = "out.ndjson"
"#
        )
    };
    let ws = Workspace::new();
    ws.write("side/a.ndjson", &records(900_000, 100, 100));
    ws.write("p.toml", &config(r#"["in"]"#));
    let mut pipeline = ws.run("p.toml", Stdio::null());
    let mut feeder = Feeder::start(&ws, "in/a.ndjson", 20_000, 50);
    let delivered = || ids(&ws.lines("out.ndjson"));
    let inputs = [
        r#"["in", "side"]"#,
        r#"["in"]"#,
        r#"["side", "in"]"#,
        r#"["in"]"#,
    ];
    for (round, inputs) in inputs.into_iter().enumerate() {
        wait_for("output to grow", Duration::from_secs(60), || {
            (delivered().len() >= (round + 1) * 2_500).then_some(())
        });
        reload_to(&ws, &mut pipeline, &config(inputs));
        assert_checkpoint_covered(&ws, &feeder, delivered);
    }
    feeder.finish();
    let from_in = || {
        delivered()
            .into_iter()
            .filter(|id| id.as_str() < "rec-00900000")
            .collect()
    };
    assert_all_delivered(&ws, &feeder, from_in);
    pipeline.signal(libc::SIGTERM);
    assert!(pipeline.wait_exit(Duration::from_secs(60)).success());
}

#[test]
fn a_burst_of_reloads_loses_nothing() {
    let ws = Workspace::new();
    ws.write("p.toml", &chain_config(0));
    let mut pipeline = ws.run("p.toml", Stdio::null());
    let mut feeder = Feeder::start(&ws, "in/a.ndjson", 20_000, 50);
    let delivered = || ids(&ws.lines("out.ndjson"));
    wait_for("output to start", Duration::from_secs(60), || {
        (delivered().len() >= 1_000).then_some(())
    });
    // Signals sent back to back may coalesce; each reload reads the file as it is then.
    for generation in 1..=8 {
        write_config(&ws, &chain_config(generation));
        pipeline.signal(libc::SIGHUP);
        // Paces the signals so some land while an earlier reload is still draining.
        std::thread::sleep(Duration::from_millis(5 * generation as u64));
    }
    let until = std::time::Instant::now() + Duration::from_secs(60);
    while reloads(&mut pipeline) < 1.0 {
        assert!(
            std::time::Instant::now() < until,
            "no reload applied within 60 s: {}",
            pipeline.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        pipeline.metric("config_reloads_total", &["result=\"rejected\""]),
        0.0,
        "every reload read a whole config: {}",
        pipeline.logs()
    );
    assert_checkpoint_covered(&ws, &feeder, delivered);
    feeder.finish();
    assert_all_delivered(&ws, &feeder, delivered);
    pipeline.signal(libc::SIGTERM);
    assert!(pipeline.wait_exit(Duration::from_secs(60)).success());
}

#[test]
fn a_reload_racing_sigterm_loses_nothing() {
    let ws = Workspace::new();
    ws.write("p.toml", &chain_config(0));
    let mut pipeline = ws.run("p.toml", Stdio::null());
    let mut feeder = Feeder::start(&ws, "in/a.ndjson", 20_000, 50);
    let delivered = || ids(&ws.lines("out.ndjson"));
    wait_for("output to grow", Duration::from_secs(60), || {
        (delivered().len() >= 3_000).then_some(())
    });
    ws.write("p.toml", &chain_config(1));
    pipeline.signal(libc::SIGHUP);
    pipeline.signal(libc::SIGTERM);
    assert!(
        pipeline.wait_exit(Duration::from_secs(60)).success(),
        "{}",
        pipeline.logs()
    );
    assert_checkpoint_covered(&ws, &feeder, delivered);
    feeder.finish();

    let mut restarted = ws.run("p.toml", Stdio::null());
    assert_all_delivered(&ws, &feeder, delivered);
    restarted.signal(libc::SIGTERM);
    assert!(restarted.wait_exit(Duration::from_secs(60)).success());
}

#[test]
fn replacing_both_ends_around_a_kept_transform_drains_without_a_stall() {
    // `first` and `out` are replaced, `middle` between them stays: the old `first` can
    // only drain once `middle` flows again, which needs the new `out` wired first.
    let config = |generation: usize| {
        format!(
            r#"
data_dir = "data"
shutdown_timeout = "120s"
{FED_SOURCE}[transforms.first]
type = "remap"
inputs = ["in"]
source = '.first = {generation}'
[transforms.middle]
type = "remap"
inputs = ["first"]
source = '.middle = true'
[sinks.out]
type = "file"
inputs = ["middle"]
path = "out-{generation}.ndjson"
"#
        )
    };
    let ws = Workspace::new();
    ws.write("p.toml", &config(0));
    let mut pipeline = ws.run("p.toml", Stdio::null());
    let mut feeder = Feeder::start(&ws, "in/a.ndjson", 20_000, 50);
    let delivered = || {
        (0..=3)
            .flat_map(|g| ids(&ws.lines(&format!("out-{g}.ndjson"))))
            .collect::<Vec<_>>()
    };
    for generation in 1..=3 {
        wait_for("output to grow", Duration::from_secs(60), || {
            (delivered().len() >= generation * 2_000).then_some(())
        });
        reload_to(&ws, &mut pipeline, &config(generation));
        assert_checkpoint_covered(&ws, &feeder, delivered);
    }
    feeder.finish();
    assert_all_delivered(&ws, &feeder, delivered);
    assert!(
        !pipeline.logs().contains("did not drain in time"),
        "a replaced component had to be aborted: {}",
        pipeline.logs()
    );
    pipeline.signal(libc::SIGTERM);
    assert!(pipeline.wait_exit(Duration::from_secs(60)).success());
}
