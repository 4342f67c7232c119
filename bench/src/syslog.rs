//! The `syslog` benchmark: senders in this harness write RFC 5424 messages carrying the
//! Defender for Cloud Apps agent's CEF lines, octet-counted over TCP, to the release
//! binary's `syslog` source (`decoding = "cef"`: `siemflow_core::cef`, which yields what
//! VRL's parse_cef does, on every message), whose events go to a file sink. Events per
//! second from process start to the last event written, and peak RSS.

use std::io::Write as _;
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::scenario::{free_port, measure};

/// What the syslog run measured.
pub struct SyslogRun {
    /// Messages sent (and events written).
    pub events: u64,
    /// TCP connections the messages were spread over.
    pub connections: u64,
    /// Bytes sent, framing included.
    pub bytes: u64,
    /// Process start to the last event written.
    pub seconds: f64,
    /// Peak resident memory of siemflow.
    pub peak_rss_mib: f64,
    /// CPU time siemflow used (user + system) until the last event was written: on a
    /// shared machine, events per CPU second say more than events per wall second.
    pub cpu_seconds: f64,
    /// The source's `decoding`.
    pub decoding: &'static str,
}

impl SyslogRun {
    /// Events per second.
    pub fn events_per_second(&self) -> f64 {
        self.events as f64 / self.seconds
    }

    /// Events per second of siemflow's CPU time.
    pub fn events_per_cpu_second(&self) -> f64 {
        self.events as f64 / self.cpu_seconds
    }
}

/// Messages per block a sender writes again and again (made once, so the senders cost
/// little CPU next to siemflow on a small machine).
const BLOCK: u64 = 1_200;

/// One block of octet-counted RFC 5424 messages, the agent's 12 lines in turn.
fn block() -> Vec<u8> {
    let lines = siemflow_simulator::mda_agent::agent_lines();
    let mut out = Vec::new();
    for i in 0..BLOCK as usize {
        let cef = siemflow_simulator::mda_agent::cef_part(lines[i % lines.len()]);
        let message = format!(
            "<165>1 2026-11-02T10:15:30.{:03}Z mda-agent MCAS 4711 SIEM - {cef}",
            i % 1000
        );
        out.extend_from_slice(format!("{} {message}", message.len()).as_bytes());
    }
    out
}

/// Sends `events` messages (a multiple of the block) over `connections` connections to
/// the source at `port`, once it listens.
fn send(port: u16, events: u64, connections: u64) -> std::thread::JoinHandle<anyhow::Result<()>> {
    std::thread::spawn(move || {
        let block = block();
        let blocks = events / BLOCK / connections;
        let senders: Vec<_> = (0..connections)
            .map(|_| {
                let block = block.clone();
                std::thread::spawn(move || -> anyhow::Result<()> {
                    let started = Instant::now();
                    let mut stream = loop {
                        match TcpStream::connect(("127.0.0.1", port)) {
                            Ok(stream) => break stream,
                            Err(_) if started.elapsed() < Duration::from_secs(30) => {
                                std::thread::sleep(Duration::from_millis(20))
                            }
                            Err(e) => return Err(e.into()),
                        }
                    };
                    for _ in 0..blocks {
                        stream.write_all(&block)?;
                    }
                    Ok(())
                })
            })
            .collect();
        for sender in senders {
            sender
                .join()
                .map_err(|_| anyhow::anyhow!("sender panicked"))??;
        }
        Ok(())
    })
}

/// Runs the scenario with about `events` messages (rounded to whole blocks per sender).
pub fn run(
    binary: &Path,
    work: &Path,
    events: u64,
    connections: u64,
    decoding: &'static str,
) -> anyhow::Result<SyslogRun> {
    let connections = connections.max(1);
    let events = (events / BLOCK / connections).max(1) * BLOCK * connections;
    let bytes = block().len() as u64 * events / BLOCK;
    let dir = tempfile::tempdir_in(work)?;
    let api = format!("127.0.0.1:{}", free_port()?);
    let port = free_port()?;
    let config = format!(
        r#"data_dir = "data"
[api]
address = "{api}"
[sources.in]
type = "syslog"
address = "127.0.0.1:{port}"
decoding = "{decoding}"
framing = "octet_counting"
[sinks.out]
type = "file"
inputs = ["in"]
path = "out/out.ndjson"
"#
    );
    std::fs::write(dir.path().join("bench.toml"), config)?;
    let sender = send(port, events, connections);
    let run = measure(
        binary,
        dir.path(),
        &api,
        &[("out", events)],
        Duration::from_secs(600),
        None,
    )?;
    sender
        .join()
        .map_err(|_| anyhow::anyhow!("sender panicked"))??;
    Ok(SyslogRun {
        events,
        connections,
        bytes,
        seconds: run.seconds,
        peak_rss_mib: run.peak_rss_mib,
        cpu_seconds: run.cpu_seconds,
        decoding,
    })
}

/// The report section: one row per decoding.
pub fn report(results: &[SyslogRun]) -> String {
    let mut out = format!(
        "\n## syslog\n\n\
         {connections} TCP connections from this harness send RFC 5424 messages carrying the\n\
         Defender for Cloud Apps agent's CEF lines (about 690 bytes each), octet-counted, to the\n\
         `syslog` source, written by a file sink as NDJSON. `cef`: siemflow_core::cef (the fields\n\
         VRL's parse_cef yields) per message;\n\
         `text`: the header only. Timed from process start to the last event written; CPU is\n\
         siemflow's user + system time (on a shared machine events per CPU second compare better).\n\n\
         | decoding | events | MB sent | seconds | events/s | CPU s | events per CPU s | peak RSS | target |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---|\n",
        connections = results.first().map_or(0, |r| r.connections),
    );
    for r in results {
        out.push_str(&format!(
            "| {decoding} | {events} | {mb:.1} | {seconds:.1} | {rate:.0} | {cpu:.1} | {per_cpu:.0} | {rss:.1} MiB | ≥ 150,000 events/s |\n",
            decoding = r.decoding,
            events = r.events,
            mb = r.bytes as f64 / 1e6,
            seconds = r.seconds,
            rate = r.events_per_second(),
            cpu = r.cpu_seconds,
            per_cpu = r.events_per_cpu_second(),
            rss = r.peak_rss_mib,
        ));
    }
    out
}
