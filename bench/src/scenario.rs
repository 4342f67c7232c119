//! The pipelines measured, and how: start the release binary on a prepared input, watch
//! its /metrics until the last record is through, read its peak RSS (VmHWM).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::dataset::Dataset;
use crate::peers::Peer;

/// One pipeline to measure.
pub struct Scenario {
    /// Name in the report.
    pub name: &'static str,
    /// What it stands for.
    pub description: &'static str,
    /// Config; `{input}` is replaced by the input path.
    pub config: String,
    /// The sink whose `component_sent_events_total` counts completion.
    pub sink: &'static str,
    /// The target from the issues, for the report.
    pub target: &'static str,
    /// The sink sees only unique records (the pipeline deduplicates).
    pub deduplicates: bool,
    /// The receiver the sink sends to; its address replaces `{peer}` in the config.
    pub peer: Peer,
    /// How the process is started: the input on its standard input, its worker threads.
    pub launch: Launch,
}

/// How `siemflow run` is started besides its config.
#[derive(Clone, Copy, Default)]
pub struct Launch {
    /// The input file is the process's standard input (for a `stdin` source).
    pub stdin: bool,
    /// `--threads N`; the runtime's default (one per core) when `None`.
    pub threads: Option<usize>,
}

/// The canonical job of issue 16: drop repeats by `Id`, render CEF, write lines.
const CANONICAL_JOB: &str = r#"
[transforms.unique]
type = "dedup"
inputs = ["in"]
key = ["Id"]
[transforms.to_cef]
type = "cef"
inputs = ["unique"]
[sinks.out]
type = "file"
inputs = ["to_cef"]
path = "out/cef.log"
encoding = "text"
"#;

/// A file source reading the input.
const FILE_SOURCE: &str = r#"
[sources.in]
type = "file"
include = ["{input}"]
"#;

/// A stdin source (the input is the process's standard input).
const STDIN_SOURCE: &str = r#"
[sources.in]
type = "stdin"
"#;

/// file → `tag` → blackhole, where `tag` (a transform's options below its `type`) adds
/// `tagged = true` and `tag = "m365"`: compiled in, or as an external plugin. `{root}` is the
/// checkout the harness runs from (`.venv-test` holds the Python plugin's grpcio).
fn tagging(
    name: &'static str,
    description: &'static str,
    transform: &str,
    target: &'static str,
) -> Scenario {
    Scenario {
        name,
        description,
        config: format!(
            r#"
[sources.in]
type = "file"
include = ["{{input}}"]
[transforms.tag]
inputs = ["in"]
{transform}
[sinks.out]
type = "blackhole"
inputs = ["tag"]
"#
        ),
        sink: "out",
        target,
        deduplicates: false,
        peer: Peer::None,
        launch: Launch::default(),
    }
}

/// Every scenario, cheapest first.
pub fn all() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "file → blackhole",
            description: "NDJSON records parsed into events, then discarded",
            config: r#"
[sources.in]
type = "file"
include = ["{input}"]
[sinks.out]
type = "blackhole"
inputs = ["in"]
"#
            .into(),
            sink: "out",
            target: "≥ 150,000 events/s, RSS < 100 MiB",
            deduplicates: false,
            peer: Peer::None,
            launch: Launch::default(),
        },
        Scenario {
            name: "file → remap → file",
            description: "parse, a typical VRL program, write NDJSON",
            config: r#"
[sources.in]
type = "file"
include = ["{input}"]
[transforms.shape]
type = "remap"
inputs = ["in"]
source = '''
.siemflow.vendor = "Microsoft"
.siemflow.product = "Office 365"
if exists(.Workload) { .siemflow.workload = .Workload }
del(.UserKey)
'''
[sinks.out]
type = "file"
inputs = ["shape"]
path = "out/result.ndjson"
"#
            .into(),
            sink: "out",
            target: "≥ 80,000 events/s, RSS < 100 MiB",
            deduplicates: false,
            peer: Peer::None,
            launch: Launch::default(),
        },
        canonical("file → dedup → cef → file", FILE_SOURCE, Launch::default()),
        canonical(
            "file → dedup → cef → file, --threads 1",
            FILE_SOURCE,
            Launch {
                stdin: false,
                threads: Some(1),
            },
        ),
        canonical(
            "stdin → dedup → cef → file",
            STDIN_SOURCE,
            Launch {
                stdin: true,
                threads: None,
            },
        ),
        canonical(
            "stdin → dedup → cef → file, --threads 1",
            STDIN_SOURCE,
            Launch {
                stdin: true,
                threads: Some(1),
            },
        ),
        tagging(
            "file → tag (remap) → blackhole",
            "the plugin scenarios' step compiled in: a VRL program adding two fields",
            r#"
type = "remap"
source = ".tagged = true\n.tag = \"m365\""
"#,
            "the yardstick of the plugin paths",
        ),
        tagging(
            "file → tag (Rust plugin) → blackhole",
            "the same step as an external plugin in Rust (examples/plugin_tagger.rs) over gRPC on a Unix socket",
            r#"
type = "plugin"
command = "{root}/target/release/examples/plugin_tagger"
config = { tag = "m365" }
"#,
            "≥ 50 % of the step compiled in (issue 14)",
        ),
        tagging(
            "file → tag (Rust plugin, whole values) → blackhole",
            "the same Rust plugin taking each event whole as values (`sdk::serve_transform`) instead of its fields read lazily",
            r#"
type = "plugin"
command = "{root}/target/release/examples/plugin_tagger"
args = ["--values"]
config = { tag = "m365" }
"#,
            "reported as it is",
        ),
        tagging(
            "file → tag (Python plugin) → blackhole",
            "the same step as an external plugin in Python (plugins/python/examples/tagger.py, grpcio)",
            r#"
type = "plugin"
command = "{root}/.venv-test/bin/python"
args = ["{root}/plugins/python/examples/tagger.py"]
config = { tag = "m365" }
"#,
            "reported as it is (issue 14)",
        ),
        Scenario {
            name: "file → splunk_hec",
            description: "parse, HEC /event envelopes (uncompressed), to the HEC simulator in the harness, indexer acknowledgements off",
            config: r#"
[sources.in]
type = "file"
include = ["{input}"]
[sinks.out]
type = "splunk_hec"
inputs = ["in"]
endpoint = "{peer}"
token = "00000000-0000-0000-0000-000000000000"
index = "main"
sourcetype = "o365:management:activity"
timestamp_field = "CreationTime"
"#
            .into(),
            sink: "out",
            target: "≥ 50,000 events/s (receiver included)",
            deduplicates: false,
            peer: Peer::SplunkHec,
            launch: Launch::default(),
        },
        Scenario {
            name: "file → syslog (TCP)",
            description: "parse, RFC 5424 with octet counting, each record as JSON, to a receiver in the harness",
            config: r#"
[sources.in]
type = "file"
include = ["{input}"]
[sinks.out]
type = "syslog"
inputs = ["in"]
mode = "tcp"
address = "{peer}"
format = "rfc5424"
framing = "octet_counting"
encoding = "json"
"#
            .into(),
            sink: "out",
            target: "≥ 50,000 events/s (receiver included)",
            deduplicates: false,
            peer: Peer::SyslogTcp,
            launch: Launch::default(),
        },
    ]
}

/// The canonical job read by `source`, started as `launch` says.
fn canonical(name: &'static str, source: &str, launch: Launch) -> Scenario {
    Scenario {
        name,
        description: "parse, drop exact repeats by Id, render CEF with the Microsoft 365 presets, write lines",
        config: format!("{source}{CANONICAL_JOB}"),
        sink: "out",
        target: "≥ 1.7× speedlimit (--threads 1: ≥ 1.0×), RSS ≤ 100 MiB",
        deduplicates: true,
        peer: Peer::None,
        launch,
    }
}

/// The measured figures of one run.
pub struct Measured {
    /// Records per second, start of the process to the last record delivered.
    pub events_per_second: f64,
    /// Input megabytes (10^6) per second.
    pub megabytes_per_second: f64,
    /// Peak resident memory.
    pub peak_rss_mib: f64,
    /// Wall time.
    pub seconds: f64,
    /// The speedlimit program's events/s on the same input, timed just before.
    pub speedlimit_events_per_second: f64,
}

/// A tiny HTTP/1.0 GET, enough for /metrics.
pub fn http_get(address: &str, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(address).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response.split_once("\r\n\r\n")?.1.to_string())
}

/// Events a sink delivered, from the Prometheus text.
pub fn sent(metrics: &str, sink: &str) -> f64 {
    let label = format!("component_id=\"{sink}\"");
    metrics
        .lines()
        .filter(|l| l.starts_with("component_sent_events_total{") && l.contains(&label))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// A free loopback port.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Peak resident memory (VmHWM) of a running process.
pub fn peak_rss_mib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let peak_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    Ok(peak_kib / 1024.0)
}

/// CPU time (user + system) a running process has used so far, from /proc/PID/stat.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces; the fields after its `)` are fixed.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| -> anyhow::Result<f64> {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .with_context(|| format!("/proc/{pid}/stat has no field {}", i + 3))
    };
    // utime and stime are fields 14 and 15, the 12th and 13th after the name.
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok((ticks(11)? + ticks(12)?) / hz)
}

/// Writes `dir/bench.toml`: `pipeline` with `data_dir` and the API on a free loopback
/// port, whose address it returns.
pub fn write_config(dir: &Path, pipeline: &str) -> anyhow::Result<String> {
    let address = format!("127.0.0.1:{}", free_port()?);
    std::fs::write(
        dir.join("bench.toml"),
        format!("data_dir = \"data\"\n[api]\naddress = \"{address}\"\n{pipeline}"),
    )?;
    Ok(address)
}

/// The machine's load averages (1, 5, 15 min), as `/proc/loadavg` gives them; the 2 cores
/// are often shared, so every result says how busy they were.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Runs one scenario to completion.
pub fn run(
    scenario: &Scenario,
    binary: &Path,
    input: &Path,
    data: &Dataset,
    work: &Path,
) -> anyhow::Result<Measured> {
    let dir = tempfile::tempdir_in(work)?;
    let peer = scenario.peer.start()?;
    let peer_address = peer.as_ref().map(|p| p.address.clone()).unwrap_or_default();
    let address = write_config(
        dir.path(),
        &scenario
            .config
            .replace("{input}", &input.display().to_string())
            .replace("{peer}", &peer_address)
            .replace("{root}", &std::env::current_dir()?.display().to_string()),
    )?;
    let expected = if scenario.deduplicates {
        data.unique
    } else {
        data.events
    };
    let process = Process {
        stdin: scenario.launch.stdin.then_some(input),
        threads: scenario.launch.threads,
    };
    let run = measure_as(
        binary,
        dir.path(),
        &address,
        &[(scenario.sink, expected)],
        Duration::from_secs(600),
        peer.as_ref().map(|p| p.received.as_ref()),
        process,
    )?;
    if scenario.launch.stdin {
        // No /metrics after the exit: the lines written say what was delivered (every
        // stdin scenario is the canonical job, whose sink writes out/cef.log).
        let out = dir.path().join("out/cef.log");
        let text = std::fs::read(&out).with_context(|| format!("reading {}", out.display()))?;
        let lines = text.iter().filter(|&&b| b == b'\n').count() as u64;
        anyhow::ensure!(
            lines == expected,
            "{}: {lines} lines written, {expected} expected",
            scenario.name
        );
    }
    let seconds = run.seconds;
    Ok(Measured {
        events_per_second: data.events as f64 / seconds,
        megabytes_per_second: data.bytes as f64 / 1e6 / seconds,
        peak_rss_mib: run.peak_rss_mib,
        seconds,
        speedlimit_events_per_second: f64::NAN,
    })
}

/// How one process run went.
pub struct Run {
    /// Process start to the last event delivered (by every sink).
    pub seconds: f64,
    /// Process start to the moment each sink had delivered its events, in the order given.
    pub sink_seconds: Vec<f64>,
    /// Process start to the first poll that saw any sink's first event delivered.
    pub first_seconds: Option<f64>,
    /// Peak resident memory.
    pub peak_rss_mib: f64,
    /// CPU time (user + system) the process used until the last event was delivered.
    pub cpu_seconds: f64,
}

/// Runs `siemflow run -c bench.toml` in `dir` until each `(sink, events)` delivered its
/// events (and, with a `received` counter, the receiver has them all), then stops it;
/// `address` is the API address written in that config.
pub fn measure(
    binary: &Path,
    dir: &Path,
    address: &str,
    sinks: &[(&str, u64)],
    limit: Duration,
    received: Option<&dyn Fn() -> u64>,
) -> anyhow::Result<Run> {
    let process = Process {
        stdin: None,
        threads: None,
    };
    measure_as(binary, dir, address, sinks, limit, received, process)
}

/// How [`measure_as`] starts the process.
pub struct Process<'a> {
    /// A file given to the process as its standard input.
    pub stdin: Option<&'a Path>,
    /// `--threads N`.
    pub threads: Option<usize>,
}

/// [`measure`], the process started as `process` says.
pub fn measure_as(
    binary: &Path,
    dir: &Path,
    address: &str,
    sinks: &[(&str, u64)],
    limit: Duration,
    received: Option<&dyn Fn() -> u64>,
    process: Process<'_>,
) -> anyhow::Result<Run> {
    let stdin = match process.stdin {
        Some(path) => Stdio::from(
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?,
        ),
        None => Stdio::null(),
    };
    let mut command = Command::new(binary);
    if let Some(threads) = process.threads {
        command.args(["--threads", &threads.to_string()]);
    }
    let started = Instant::now();
    let mut child = command
        .args(["run", "-c", "bench.toml", "--log-level", "warn"])
        .current_dir(dir)
        .stdin(stdin)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let pid = child.id();
    if process.stdin.is_some() {
        // A stdin pipeline drains and exits at the end of its input: the exit is the end.
        return wait_for_exit(pid, started);
    }
    let total: u64 = sinks.iter().map(|(_, events)| events).sum();
    let mut sink_seconds: Vec<Option<f64>> = vec![None; sinks.len()];
    let mut first_seconds = None;
    let finished = loop {
        if let Some(status) = child.try_wait()? {
            bail!("siemflow exited early: {status}");
        }
        if received.is_none_or(|r| r() >= total)
            && let Some(text) = http_get(address, "/metrics")
        {
            let now = started.elapsed().as_secs_f64();
            if first_seconds.is_none() && sinks.iter().any(|(sink, _)| sent(&text, sink) > 0.0) {
                first_seconds = Some(now);
            }
            for ((sink, events), done) in sinks.iter().zip(&mut sink_seconds) {
                if done.is_none() && sent(&text, sink) >= *events as f64 {
                    *done = Some(now);
                }
            }
            if sink_seconds.iter().all(Option::is_some) {
                break started.elapsed();
            }
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let waiting: Vec<String> = sinks
                .iter()
                .zip(&sink_seconds)
                .filter(|(_, done)| done.is_none())
                .map(|((sink, events), _)| format!("{sink} ({events} events)"))
                .collect();
            bail!(
                "not finished within {limit:?}: still waiting for {}",
                waiting.join(", ")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let peak_rss_mib = peak_rss_mib(pid)?;
    let cpu_seconds = cpu_seconds(pid)?;
    // SAFETY: kill(2) on the child we spawned.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let _ = child.wait();
    Ok(Run {
        seconds: finished.as_secs_f64(),
        sink_seconds: sink_seconds.into_iter().flatten().collect(),
        first_seconds,
        peak_rss_mib,
        cpu_seconds,
    })
}

/// Waits for the process to exit on its own; its peak RSS and CPU time then come from
/// wait4's resource usage (/proc no longer has them).
fn wait_for_exit(pid: u32, started: Instant) -> anyhow::Result<Run> {
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 on our own child, with valid pointers to the status and usage.
    let waited = unsafe { libc::wait4(pid as i32, &mut status, 0, &mut usage) };
    let seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        waited == pid as i32,
        "waiting for siemflow: {}",
        std::io::Error::last_os_error()
    );
    anyhow::ensure!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "siemflow did not exit 0 at the end of its input (wait status {status})"
    );
    let time = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(Run {
        seconds,
        sink_seconds: vec![seconds],
        first_seconds: None,
        // ru_maxrss is in KiB on Linux.
        peak_rss_mib: usage.ru_maxrss as f64 / 1024.0,
        cpu_seconds: time(usage.ru_utime) + time(usage.ru_stime),
    })
}

fn command(args: &[&str]) -> String {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// The Markdown report.
pub fn report(results: &[(Scenario, Measured)], data: &Dataset) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_string())
        })
        .and_then(|kib| kib.parse::<f64>().ok())
        .map(|kib| format!("{:.0} GiB", kib / 1024.0 / 1024.0))
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mut out = String::new();
    out.push_str("# Benchmark results\n\n");
    out.push_str(
        "Written by `bench/run.sh` (see bench/README.md). Each figure is one run of the release\n",
    );
    out.push_str(
        "binary from process start to the last record delivered, so start-up is included.\n\n",
    );
    out.push_str(&format!(
        "- date: {}\n",
        command(&["date", "-u", "+%Y-%m-%d %H:%M UTC"])
    ));
    out.push_str(&format!(
        "- commit: {}\n",
        command(&["git", "rev-parse", "--short", "HEAD"])
    ));
    out.push_str(&format!(
        "- machine: {cores} cores ({cpu}), {memory}, {}\n",
        command(&["uname", "-sr"])
    ));
    out.push_str(&format!(
        "- input: {} Office 365 audit records, {:.1} MB, {:.0} bytes per record on average, {} exact duplicates\n\n",
        data.events,
        data.bytes as f64 / 1e6,
        data.bytes as f64 / data.events as f64,
        data.events - data.unique
    ));
    out.push_str(
        "Before each pipeline, `bench/speedlimit` (the canonical job by hand on one thread, \
         bench/speedlimit/PROVENANCE.md) ran on the same input; the ratio is the pipeline's \
         events/s to that run's.\n\n",
    );
    out.push_str("| pipeline | events/s | speedlimit events/s | ratio | MB/s | peak RSS | seconds | target |\n|---|---:|---:|---:|---:|---:|---:|---|\n");
    for (scenario, m) in results {
        out.push_str(&format!(
            "| {} ({}) | {:.0} | {:.0} | {:.2}× | {:.1} | {:.1} MiB | {:.2} | {} |\n",
            scenario.name,
            scenario.description,
            m.events_per_second,
            m.speedlimit_events_per_second,
            m.events_per_second / m.speedlimit_events_per_second,
            m.megabytes_per_second,
            m.peak_rss_mib,
            m.seconds,
            scenario.target
        ));
    }
    out
}
