//! The `otlp` benchmark (issue 13): the dataset file → `opentelemetry` sink → loopback →
//! `opentelemetry` source → blackhole, both ends in one siemflow process (two pipelines
//! in one config), over gRPC and over HTTP/protobuf. Timed from process start to the
//! blackhole's last delivery. One process, because then one /metrics, one CPU figure and
//! one peak RSS cover the whole round trip, and the source's answers (sent only once the
//! blackhole has the events) pace the sink exactly as a remote receiver would.

use std::cell::RefCell;
use std::path::Path;
use std::time::Duration;

use crate::dataset::Dataset;
use crate::scenario::{free_port, http_get, load_average, measure, sent, write_config};

/// The OTLP transports measured.
pub const PROTOCOLS: [&str; 2] = ["grpc", "http"];

/// One run.
pub struct Measured {
    /// `grpc` or `http`.
    pub protocol: &'static str,
    /// 1, 2, 3, ...
    pub run: usize,
    /// Records in the file.
    pub events: u64,
    /// Input bytes of those records.
    pub bytes: u64,
    /// Process start to the blackhole's last delivery.
    pub seconds: f64,
    /// Process start to the blackhole's first delivery seen.
    pub first_seconds: Option<f64>,
    /// siemflow's CPU time (user + system), both ends, until the last delivery.
    pub cpu_seconds: f64,
    /// siemflow's peak resident memory.
    pub peak_rss_mib: f64,
    /// Events the blackhole received beyond the file's (the sink sent a request again).
    pub duplicates: u64,
    /// The source's answers other than `ok`, by status, at the last poll.
    pub refusals: String,
    /// The machine's load averages (1, 5, 15 min) when the run started.
    pub load: String,
}

impl Measured {
    /// Records per second, process start to the last delivery.
    pub fn events_per_second(&self) -> f64 {
        self.events as f64 / self.seconds
    }

    /// Records per CPU second (both ends).
    pub fn events_per_cpu_second(&self) -> f64 {
        self.events as f64 / self.cpu_seconds
    }
}

/// The two pipelines: file → sink → (loopback) → source → blackhole.
fn config(input: &Path, protocol: &str, grpc: u16, http: u16) -> String {
    let port = if protocol == "grpc" { grpc } else { http };
    format!(
        r#"[sources.file]
type = "file"
include = ["{input}"]
[sinks.otlp_out]
type = "opentelemetry"
inputs = ["file"]
endpoint = "http://127.0.0.1:{port}"
protocol = "{protocol}"
[sources.otlp_in]
type = "opentelemetry"
grpc = {{ address = "127.0.0.1:{grpc}" }}
http = {{ address = "127.0.0.1:{http}" }}
[sinks.out]
type = "blackhole"
inputs = ["otlp_in"]
"#,
        input = input.display()
    )
}

/// The source's `otlp_requests_total` other than `ok`, as `status=count` pairs.
fn refusals(metrics: &str) -> String {
    let mut out = Vec::new();
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("otlp_requests_total{"))
    {
        let status = line
            .split_once("status=\"")
            .and_then(|(_, rest)| rest.split_once('"'))
            .map(|(status, _)| status);
        let count = line.rsplit_once(' ').map(|(_, n)| n);
        if let (Some(status), Some(count)) = (status, count)
            && status != "ok"
        {
            out.push(format!("{status}={count}"));
        }
    }
    if out.is_empty() {
        "none".into()
    } else {
        out.join(", ")
    }
}

/// Runs each protocol `runs` times.
pub fn run(
    binary: &Path,
    input: &Path,
    data: &Dataset,
    work: &Path,
    runs: usize,
) -> anyhow::Result<Vec<Measured>> {
    let mut results = Vec::new();
    for protocol in PROTOCOLS {
        for run in 1..=runs {
            let dir = tempfile::tempdir_in(work)?;
            let (grpc, http) = (free_port()?, free_port()?);
            let api = write_config(dir.path(), &config(input, protocol, grpc, http))?;
            let load = load_average();
            // measure() stops the process as soon as the blackhole has every record, so
            // the counters are read at each of its polls and the last reading kept.
            let last = RefCell::new(String::new());
            let poll = || {
                if let Some(text) = http_get(&api, "/metrics") {
                    *last.borrow_mut() = text;
                }
                u64::MAX
            };
            let timed = measure(
                binary,
                dir.path(),
                &api,
                &[("out", data.events)],
                Duration::from_secs(600),
                Some(&poll),
            )?;
            let metrics = last.into_inner();
            let measured = Measured {
                protocol,
                run,
                events: data.events,
                bytes: data.bytes,
                seconds: timed.seconds,
                first_seconds: timed.first_seconds,
                cpu_seconds: timed.cpu_seconds,
                peak_rss_mib: timed.peak_rss_mib,
                duplicates: (sent(&metrics, "out") as u64).saturating_sub(data.events),
                refusals: refusals(&metrics),
                load,
            };
            eprintln!(
                "  {protocol} run {run}: {:.0} events/s, {:.2} CPU s ({:.0} events per CPU s), peak RSS {:.1} MiB, {} duplicates, refusals {}, load {}",
                measured.events_per_second(),
                measured.cpu_seconds,
                measured.events_per_cpu_second(),
                measured.peak_rss_mib,
                measured.duplicates,
                measured.refusals,
                measured.load
            );
            results.push(measured);
        }
    }
    Ok(results)
}

/// The report section.
pub fn report(results: &[Measured]) -> String {
    let mut out = String::from(
        "\n## OpenTelemetry\n\n\
         The dataset file → `opentelemetry` sink (its defaults: gzip, batches of 1000) →\n\
         loopback → `opentelemetry` source (its defaults) → blackhole, both ends in one\n\
         siemflow process, over gRPC and over HTTP/protobuf. Timed from process start to the\n\
         blackhole's last delivery; the source answers each request only once the blackhole\n\
         has its events, so the sink is paced end to end. CPU: siemflow's user + system time\n\
         (both ends) from /proc. Duplicates: records the sink sent again after a retryable\n\
         answer; refusals: the source's non-`ok` answers. Load: the machine's load averages\n\
         when the run started (other work shares the cores).\n\n\
         | protocol | run | events | MB | seconds | first at | events/s | MB/s | CPU s | events per CPU s | peak RSS | duplicates | refusals | load | target |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|\n",
    );
    for m in results {
        out.push_str(&format!(
            "| {protocol} | {run} | {events} | {mb:.1} | {seconds:.2} | {first} | {rate:.0} | {mbs:.1} | {cpu:.2} | {per_cpu:.0} | {rss:.1} MiB | {duplicates} | {refusals} | {load} | ≥ 100,000 events/s |\n",
            protocol = m.protocol,
            run = m.run,
            events = m.events,
            mb = m.bytes as f64 / 1e6,
            seconds = m.seconds,
            first = m
                .first_seconds
                .map_or_else(|| "-".to_string(), |f| format!("{f:.2}")),
            rate = m.events_per_second(),
            mbs = m.bytes as f64 / 1e6 / m.seconds,
            cpu = m.cpu_seconds,
            per_cpu = m.events_per_cpu_second(),
            rss = m.peak_rss_mib,
            duplicates = m.duplicates,
            refusals = m.refusals,
            load = m.load,
        ));
    }
    out
}
