//! Drives the real `siemflow` binary: temp folders, config files, signals, metrics.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_siemflow")
}

/// The project's test virtualenv (`.venv-test/`, or `SIEMFLOW_TEST_VENV`), where
/// `scripts/test-deps.sh` installs the Python peers (tansu, confluent-kafka, the
/// OpenTelemetry SDK). Without it a test fails: CI must never pass by skipping a peer.
pub fn venv() -> PathBuf {
    let venv = std::env::var_os("SIEMFLOW_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-test"));
    assert!(
        venv.join("bin/python").exists(),
        "{} has no Python: run scripts/test-deps.sh, which installs the test peers there",
        venv.display()
    );
    venv
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Polls `check` until it returns Some or the deadline passes.
pub fn wait_for<T>(what: &str, deadline: Duration, check: impl FnMut() -> Option<T>) -> T {
    poll(deadline, check).unwrap_or_else(|| panic!("timed out waiting for {what}"))
}

/// Polls `check` until it returns Some, or None once the deadline passes: for a caller
/// that says itself what is missing.
pub fn poll<T>(deadline: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let until = Instant::now() + deadline;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= until {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A tokio runtime and the Microsoft 365 simulator started on it on a free loopback
/// port (the runtime must outlive the simulator: bind them in this order).
pub fn start_m365(
    config: siemflow_simulator::M365Config,
) -> (tokio::runtime::Runtime, siemflow_simulator::Simulator) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let simulator = runtime
        .block_on(siemflow_simulator::Simulator::start(
            config,
            "127.0.0.1:0".parse().expect("addr"),
        ))
        .expect("simulator");
    (runtime, simulator)
}

/// Runs `config` in `ws` and SIGKILLs it `kills` times, each time once `progress()` (the
/// output's size, read from the files) has gone past where that run began by a random
/// 1 to `span` ([`random_below`], seed printed), then restarts it. Stops early once
/// `done()`: the run finished before its kill. Each kill is printed with the progress it
/// came at. Asserts that all `kills` came before the end (else the world is too small to
/// kill it mid-run) and returns how many there were.
pub fn kill_at_random_points(
    ws: &Workspace,
    config: &str,
    kills: usize,
    span: usize,
    deadline: Duration,
    mut progress: impl FnMut() -> usize,
    mut done: impl FnMut() -> bool,
) -> usize {
    let mut next = random_below();
    let mut killed = 0;
    while killed < kills {
        let seen = progress();
        let mut pipeline = ws.run(config, Stdio::null());
        let target = seen + 1 + next(span);
        let reached = wait_for("the backfill to progress", deadline, || {
            let n = progress();
            (n >= target || done()).then_some(n)
        });
        if done() {
            break;
        }
        pipeline.signal(libc::SIGKILL);
        pipeline.wait_exit(Duration::from_secs(10));
        killed += 1;
        println!("kill {killed} at {reached} lines");
    }
    assert!(
        killed >= kills,
        "the backfill finished after {killed} kills; make the world larger"
    );
    killed
}

/// The `to_cef` and `to_leef` transforms of `input` (`leef` adds options to the latter)
/// written by the text file sinks `cef` to cef.log and `leef` to leef.log: a pipeline's
/// tail, after its source.
pub fn cef_and_leef_files(input: &str, leef: &str) -> String {
    format!(
        r#"
[transforms.to_cef]
type = "cef"
inputs = ["{input}"]

[transforms.to_leef]
type = "leef"
inputs = ["{input}"]
{leef}
[sinks.cef]
type = "file"
inputs = ["to_cef"]
path = "cef.log"
encoding = "text"

[sinks.leef]
type = "file"
inputs = ["to_leef"]
path = "leef.log"
encoding = "text"
"#
    )
}

/// A scratch folder with a config file in it.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Self {
        Workspace {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes a file, creating folders; returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&path, text).expect("write");
        path
    }

    /// Appends to a file.
    pub fn append(&self, name: &str, text: &str) {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path(name))
            .expect("open for append");
        file.write_all(text.as_bytes()).expect("append");
    }

    /// Lines of a file (empty when it does not exist yet).
    pub fn lines(&self, name: &str) -> Vec<String> {
        read_lines(&self.path(name))
    }

    /// The JSON value of each line of a file that is one (a line torn by a kill is not).
    pub fn json_lines(&self, name: &str) -> Vec<serde_json::Value> {
        self.lines(name)
            .iter()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// `siemflow validate -c <files>`: exit code and stderr.
    pub fn validate(&self, configs: &[&str]) -> (i32, String) {
        let mut command = Command::new(binary());
        command.arg("validate").current_dir(self.dir.path());
        for config in configs {
            command.arg("-c").arg(config);
        }
        let output = command.output().expect("run validate");
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// Starts `siemflow run -c config.toml` in this folder.
    pub fn run(&self, config: &str, stdout: Stdio) -> Pipeline {
        self.run_with(config, stdout, Stdio::null())
    }

    /// Starts it with the given stdin too.
    pub fn run_with(&self, config: &str, stdout: Stdio, stdin: Stdio) -> Pipeline {
        self.spawn(config, &[], stdout, stdin)
    }

    /// Starts `siemflow run` with extra arguments.
    pub fn spawn(&self, config: &str, extra: &[&str], stdout: Stdio, stdin: Stdio) -> Pipeline {
        self.spawn_command(Command::new(binary()), config, extra, stdout, stdin)
    }

    /// Starts `siemflow run` allowed at most `files` open descriptors (`RLIMIT_NOFILE`),
    /// as on a host with a low limit.
    pub fn run_with_file_limit(&self, config: &str, files: u64) -> Pipeline {
        let command = limited(libc::RLIMIT_NOFILE, files, files, false);
        self.spawn_command(command, config, &[], Stdio::null(), Stdio::null())
    }

    /// Starts `siemflow run` with every file it writes limited to `bytes`
    /// (`RLIMIT_FSIZE`): a write past the limit fails with EFBIG, as a full disk fails
    /// with ENOSPC (SIGXFSZ, which would kill the process instead, is ignored). Needs no
    /// privilege, unlike filling a small mounted file system;
    /// [`Pipeline::lift_file_size_limit`] ends it.
    pub fn run_with_file_size_limit(&self, config: &str, bytes: u64) -> Pipeline {
        let command = limited(libc::RLIMIT_FSIZE, bytes, libc::RLIM_INFINITY, true);
        self.spawn_command(command, config, &[], Stdio::null(), Stdio::null())
    }

    fn spawn_command(
        &self,
        mut command: Command,
        config: &str,
        extra: &[&str],
        stdout: Stdio,
        stdin: Stdio,
    ) -> Pipeline {
        let stderr_path = self.path(&format!("stderr-{}.log", unique()));
        let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
        let child = command
            .args(["run", "--log-format", "json", "-c", config])
            .args(extra)
            .current_dir(self.dir.path())
            .env("RUST_LOG", "info")
            .stdin(stdin)
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("spawn siemflow");
        Pipeline {
            child,
            stderr: stderr_path,
            api: None,
        }
    }
}

/// The binary's command with one resource limit set in the child before exec, and
/// SIGXFSZ ignored when `ignore_sigxfsz` (an ignored signal stays ignored across exec).
fn limited(
    resource: libc::__rlimit_resource_t,
    soft: u64,
    hard: u64,
    ignore_sigxfsz: bool,
) -> Command {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new(binary());
    // SAFETY: the closure runs in the forked child before exec and only calls signal(2)
    // and setrlimit(2), which are async-signal-safe.
    unsafe {
        command.pre_exec(move || {
            if ignore_sigxfsz && libc::signal(libc::SIGXFSZ, libc::SIG_IGN) == libc::SIG_ERR {
                return Err(std::io::Error::last_os_error());
            }
            let limit = libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            };
            if libc::setrlimit(resource, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Lines of a file, or none when it does not exist.
pub fn read_lines(path: &Path) -> Vec<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => text.lines().map(str::to_string).collect(),
        Err(_) => Vec::new(),
    }
}

/// A running siemflow process.
pub struct Pipeline {
    pub child: Child,
    pub stderr: PathBuf,
    api: Option<String>,
}

impl Pipeline {
    /// A siemflow process started by the caller, its stderr (JSON logs) going to `stderr`.
    pub fn spawned(child: Child, stderr: PathBuf) -> Pipeline {
        Pipeline {
            child,
            stderr,
            api: None,
        }
    }

    /// Everything it logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The API address it logged once listening.
    pub fn api(&mut self) -> String {
        if let Some(api) = &self.api {
            return api.clone();
        }
        let address = wait_for(
            "the API address in the logs",
            Duration::from_secs(60),
            || {
                self.logs().lines().find_map(|line| {
                    let value: serde_json::Value = serde_json::from_str(line).ok()?;
                    if value.get("message")?.as_str()?.starts_with("API listening") {
                        Some(value.get("address")?.as_str()?.to_string())
                    } else {
                        None
                    }
                })
            },
        );
        self.api = Some(address.clone());
        address
    }

    /// The Prometheus text from /metrics.
    pub fn metrics(&mut self) -> String {
        let address = self.api();
        http_get(&address, "/metrics").unwrap_or_default()
    }

    /// The sum of a metric's samples whose labels contain every `label="value"` given.
    pub fn metric(&mut self, name: &str, labels: &[&str]) -> f64 {
        metric_sum(&self.metrics(), name, labels)
    }

    /// Sends a signal.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) with a pid we spawned and still own.
        let rc = unsafe { libc::kill(self.child.id() as i32, signal) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Waits for the process to exit, up to `deadline`.
    pub fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        wait_for("the process to exit", deadline, || {
            self.child.try_wait().expect("try_wait")
        })
    }

    /// Lifts the limit [`Workspace::run_with_file_size_limit`] set: its writes succeed
    /// again, as after space was freed on a full disk.
    pub fn lift_file_size_limit(&self) {
        let unlimited = libc::rlimit {
            rlim_cur: libc::RLIM_INFINITY,
            rlim_max: libc::RLIM_INFINITY,
        };
        // SAFETY: prlimit(2) on a process we spawned and still own, with a valid limit and
        // no old value asked for.
        let rc = unsafe {
            libc::prlimit(
                self.child.id() as libc::pid_t,
                libc::RLIMIT_FSIZE,
                &unlimited,
                std::ptr::null_mut(),
            )
        };
        assert_eq!(rc, 0, "prlimit failed: {}", std::io::Error::last_os_error());
    }

    /// `/ready`: the HTTP status and the body.
    pub fn ready(&mut self) -> Option<(u16, String)> {
        let address = self.api();
        http_status(&address, "/ready")
    }

    /// Resident memory of the process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tiny HTTP/1.0 GET over loopback, enough for /metrics: the body.
pub fn http_get(address: &str, path: &str) -> Option<String> {
    let response = http_response(address, path)?;
    let (_, body) = response.split_once("\r\n\r\n")?;
    Some(body.to_string())
}

/// The HTTP status and the body of a GET over loopback; None while nothing answers.
pub fn http_status(address: &str, path: &str) -> Option<(u16, String)> {
    let response = http_response(address, path)?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let (_, body) = response.split_once("\r\n\r\n")?;
    Some((status, body.to_string()))
}

/// The whole response (status line, headers, body) to an HTTP/1.0 GET over loopback.
fn http_response(address: &str, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(address).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

/// Sums the samples of `name` whose label set contains every given `key="value"`.
pub fn metric_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = match series.split_once('{') {
                Some((m, rest)) => (m, rest),
                None => (series, ""),
            };
            if metric != name || !labels.iter().all(|l| rest.contains(l)) {
                return None;
            }
            value.parse::<f64>().ok()
        })
        .sum()
}

/// `n` distinct audit-like JSON records of roughly `size` bytes, one per line.
pub fn records(from: usize, n: usize, size: usize) -> String {
    let mut out = String::with_capacity(n * (size + 1));
    for i in from..from + n {
        let workload = ["AzureActiveDirectory", "Exchange", "SharePoint"][i % 3];
        let head = format!(
            r#"{{"Id":"rec-{i:08}","Workload":"{workload}","Operation":"UserLoggedIn","RecordType":15,"CreationTime":"2026-11-24T10:00:00","#
        );
        let pad = size.saturating_sub(head.len() + 12);
        out.push_str(&head);
        out.push_str(&format!(r#""Pad":"{}"}}"#, "x".repeat(pad)));
        out.push('\n');
    }
    out
}

/// The `Id` of every JSON line.
pub fn ids(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            Some(v.get("Id")?.as_str()?.to_string())
        })
        .collect()
}

/// Waits until the source `source` has sent something and then nothing more between two
/// reads of its counter half a second apart (a stalled pipeline holds it back); returns
/// how many events it had sent.
pub fn wait_until_stalled(pipeline: &mut Pipeline, source: &str) -> f64 {
    let label = [format!("component_id=\"{source}\"")];
    let label: Vec<&str> = label.iter().map(String::as_str).collect();
    wait_for(
        "the source to stop reading",
        Duration::from_secs(60),
        || {
            let before = pipeline.metric("component_sent_events_total", &label);
            std::thread::sleep(Duration::from_millis(500));
            let after = pipeline.metric("component_sent_events_total", &label);
            (after > 0.0 && after == before).then_some(after)
        },
    )
}

/// Bytes of its input the file source `in` has checkpointed as delivered (0 before its
/// first checkpoint).
pub fn checkpointed(ws: &Workspace) -> u64 {
    let text = std::fs::read_to_string(ws.path("data/in/checkpoints.json")).unwrap_or_default();
    let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    value["files"]
        .as_array()
        .map(|files| files.iter().filter_map(|f| f["offset"].as_u64()).sum())
        .unwrap_or(0)
}

/// The environment variable that fixes the seed of [`random_below`], to replay a run.
pub const SEED_VARIABLE: &str = "SIEMFLOW_TEST_SEED";

/// A seeded generator of numbers below a bound (an LCG: enough to pick kill moments).
///
/// The seed comes from `SIEMFLOW_TEST_SEED` when it is set (a failing run is replayed
/// with the seed it printed), else from the clock. It is printed at the start, so the
/// output of a failed test says how to replay it.
pub fn random_below() -> impl FnMut(usize) -> usize {
    let seed = seed_from(std::env::var(SEED_VARIABLE).ok().as_deref());
    println!("seed {seed} (replay with {SEED_VARIABLE}={seed})");
    seeded_below(seed)
}

/// The generator of [`random_below`] from a given seed: the same seed, the same numbers.
fn seeded_below(seed: u64) -> impl FnMut(usize) -> usize {
    let mut state = seed;
    move |bound: usize| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as usize % bound.max(1)
    }
}

/// The seed a `SIEMFLOW_TEST_SEED` value names, or one from the clock when it is unset.
/// A value that is not a number stops the test: ignoring it would replay nothing.
fn seed_from(variable: Option<&str>) -> u64 {
    match variable.map(str::trim) {
        Some(text) => text.parse().unwrap_or_else(|_| {
            panic!("{SEED_VARIABLE}={text:?} is not a seed (a whole number such as 12345)")
        }),
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(7),
    }
}

#[test]
fn a_seed_from_the_environment_replays_the_same_kill_moments() {
    assert_eq!(seed_from(Some("12345")), 12345);
    assert_eq!(seed_from(Some(" 42 ")), 42);
    let (mut first, mut again) = (seeded_below(12345), seeded_below(12345));
    let moments: Vec<usize> = (0..5).map(|_| first(7500)).collect();
    let replayed: Vec<usize> = (0..5).map(|_| again(7500)).collect();
    assert_eq!(moments, replayed);
}
