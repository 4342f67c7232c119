//! One run of a plugin executable: spawned with a clean environment in its own process
//! group, listening on a Unix socket in a private 0700 directory, reached with a per-run
//! token, its stderr re-logged under the component id, and stopped within bounds.

use std::collections::VecDeque;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader};
use tokio::net::UnixStream;
use tokio::process::{Child, Command};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use super::ExternalConfig;
use super::proto::plugin_client::PluginClient;
use super::proto::{ShutdownRequest, sink_client, source_client, transform_client};

/// Environment variable: the socket the plugin must listen on (`unix:///…/plugin.sock`).
pub const SOCKET_ENV: &str = "SIEMFLOW_PLUGIN_SOCKET";
/// Environment variable: the token every call carries as `authorization: Bearer <token>`.
pub const TOKEN_ENV: &str = "SIEMFLOW_PLUGIN_TOKEN";
/// Environment variable: the component id, for the plugin's own logs.
pub const COMPONENT_ENV: &str = "SIEMFLOW_COMPONENT_ID";
/// Environment variable: the component's state folder (`data_dir/<id>`), where a
/// plugin keeps its cursor.
pub const STATE_DIR_ENV: &str = "SIEMFLOW_STATE_DIR";

/// After SIGTERM, how long the plugin gets before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(2);
/// How many of the last stderr lines an error message quotes.
const STDERR_TAIL: usize = 20;

/// Adds the per-run token to every call.
#[derive(Clone)]
pub struct Auth(MetadataValue<Ascii>);

impl tonic::service::Interceptor for Auth {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// The channel every client of one plugin run shares.
pub type AuthChannel = InterceptedService<Channel, Auth>;

/// Why a plugin could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The executable could not be read or started.
    #[error("cannot start `{command}`: {source}")]
    Exec {
        /// The command as configured.
        command: String,
        /// Why.
        source: std::io::Error,
    },
    /// The executable is not the pinned one.
    #[error("`{command}` has sha256 {actual}, not the pinned {expected}")]
    Checksum {
        /// The resolved executable.
        command: String,
        /// The pin from the config.
        expected: String,
        /// What the file hashes to.
        actual: String,
    },
    /// The private directory for the socket could not be made.
    #[error("cannot create a private directory for the plugin's socket: {0}")]
    Dir(std::io::Error),
}

/// The last lines a plugin wrote to stderr, for error messages.
#[derive(Clone, Default)]
pub struct StderrTail(Arc<Mutex<VecDeque<String>>>);

impl StderrTail {
    fn push(&self, line: &str) {
        if let Ok(mut lines) = self.0.lock() {
            if lines.len() == STDERR_TAIL {
                lines.pop_front();
            }
            lines.push_back(line.to_string());
        }
    }

    /// The kept lines joined, or a note that there were none.
    pub fn text(&self) -> String {
        let lines = self.0.lock().map(|l| l.clone()).unwrap_or_default();
        if lines.is_empty() {
            "(nothing on stderr)".to_string()
        } else {
            Vec::from(lines).join("\n")
        }
    }
}

/// A running plugin process and the channel to it.
pub struct PluginProcess {
    child: Child,
    /// The process group (the child's pid): signals reach whatever it started too.
    pgid: i32,
    dir: PrivateDir,
    channel: AuthChannel,
    /// The last stderr lines.
    pub stderr: StderrTail,
    /// The task re-logging stderr; it ends at the pipe's end.
    stderr_task: Option<tokio::task::JoinHandle<()>>,
}

/// A private directory removed when dropped.
struct PrivateDir(PathBuf);

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The executable `command` names: a path as given, a bare name looked up in the host's
/// `PATH` (the plugin's own environment may not have one).
pub fn resolve(command: &str) -> PathBuf {
    if command.contains('/') {
        return PathBuf::from(command);
    }
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(command))
                .find(|candidate| candidate.is_file())
        })
        .unwrap_or_else(|| PathBuf::from(command))
}

fn sha256_hex(path: &Path) -> std::io::Result<String> {
    let bytes = std::fs::read(path)?;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes);
    Ok(digest.as_ref().iter().map(|b| format!("{b:02x}")).collect())
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // The system RNG does not fail on Linux; a zero token would still be per-run unique
    // enough only by the directory, so a failure falls back to a v4 UUID's randomness.
    if aws_lc_rs::rand::fill(&mut buf).is_err() {
        buf = uuid::Uuid::new_v4().as_bytes().to_vec();
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn private_dir() -> std::io::Result<PrivateDir> {
    let path = std::env::temp_dir().join(format!("siemflow-plugin-{}", random_hex(8)));
    std::fs::DirBuilder::new().mode(0o700).create(&path)?;
    Ok(PrivateDir(path))
}

impl PluginProcess {
    /// Starts the plugin of `config` for component `id`; the caller handshakes next.
    pub fn spawn(
        id: &str,
        config: &ExternalConfig,
        state_dir: Option<&Path>,
    ) -> Result<PluginProcess, SpawnError> {
        let executable = resolve(&config.command);
        let exec_error = |source| SpawnError::Exec {
            command: config.command.clone(),
            source,
        };
        if let Some(expected) = &config.sha256 {
            let actual = sha256_hex(&executable).map_err(exec_error)?;
            if !actual.eq_ignore_ascii_case(expected.trim()) {
                return Err(SpawnError::Checksum {
                    command: executable.display().to_string(),
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        let dir = private_dir().map_err(SpawnError::Dir)?;
        let socket = dir.0.join("plugin.sock");
        let token = random_hex(32);
        let mut command = Command::new(&executable);
        command
            .args(&config.args)
            .env_clear()
            .envs(config.environment())
            .env(SOCKET_ENV, format!("unix://{}", socket.display()))
            .env(TOKEN_ENV, &token)
            .env(COMPONENT_ENV, id)
            .envs(state_dir.map(|dir| (STATE_DIR_ENV, dir)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group: a Ctrl-C to siemflow's group does not reach it first, and a
            // kill reaches whatever it started.
            .process_group(0)
            .kill_on_drop(true);
        // SAFETY: prctl(2) is async-signal-safe and touches no memory of ours. If siemflow
        // dies (even by SIGKILL) the kernel kills the plugin, so no orphan keeps running.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = command.spawn().map_err(exec_error)?;
        let pgid = child
            .id()
            .and_then(|pid| i32::try_from(pid).ok())
            .unwrap_or(0);
        let stderr = StderrTail::default();
        let stderr_task = child
            .stderr
            .take()
            .map(|err| tokio::spawn(relog(id.to_string(), err, Some(stderr.clone()))));
        // stdout is not part of the protocol, but a full pipe would block the plugin.
        if let Some(out) = child.stdout.take() {
            tokio::spawn(relog(id.to_string(), out, None));
        }
        let channel = connect(socket, &token);
        tracing::info!(
            component = id,
            command = %executable.display(),
            pid = pgid,
            "plugin started"
        );
        Ok(PluginProcess {
            child,
            pgid,
            dir,
            channel,
            stderr,
            stderr_task,
        })
    }

    /// The last stderr lines; once the process exited, after reading what it left in the
    /// pipe (at most a second).
    pub async fn stderr_text(&mut self) -> String {
        if self.exited().is_some()
            && let Some(task) = self.stderr_task.take()
        {
            let _ = tokio::time::timeout(Duration::from_secs(1), task).await;
        }
        self.stderr.text()
    }

    /// The channel to the plugin (every call carries the token).
    pub fn channel(&self) -> AuthChannel {
        self.channel.clone()
    }

    /// The lifecycle client.
    pub fn plugin(&self) -> PluginClient<AuthChannel> {
        PluginClient::new(self.channel.clone())
            .max_decoding_message_size(super::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(super::MAX_MESSAGE_BYTES)
    }

    /// The transform client.
    pub fn transform(&self) -> transform_client::TransformClient<AuthChannel> {
        transform_client::TransformClient::new(self.channel.clone())
            .max_decoding_message_size(super::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(super::MAX_MESSAGE_BYTES)
    }

    /// The sink client.
    pub fn sink(&self) -> sink_client::SinkClient<AuthChannel> {
        sink_client::SinkClient::new(self.channel.clone())
            .max_decoding_message_size(super::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(super::MAX_MESSAGE_BYTES)
    }

    /// The source client.
    pub fn source(&self) -> source_client::SourceClient<AuthChannel> {
        source_client::SourceClient::new(self.channel.clone())
            .max_decoding_message_size(super::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(super::MAX_MESSAGE_BYTES)
    }

    /// The process id (also its process group).
    pub fn pid(&self) -> i32 {
        self.pgid
    }

    /// Its exit status if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits until it exits.
    pub async fn wait(&mut self) -> Option<ExitStatus> {
        self.child.wait().await.ok()
    }

    fn signal_group(&self, signal: i32) {
        if self.pgid > 0 {
            // SAFETY: kill(2) with a negative pid signals the process group the child
            // leads; it touches no memory of ours.
            unsafe {
                libc::kill(-self.pgid, signal);
            }
        }
    }

    /// Kills it at once (a hung plugin) and reaps it.
    pub async fn kill(&mut self) -> Option<ExitStatus> {
        self.signal_group(libc::SIGKILL);
        self.wait().await
    }

    /// Stops it within bounds: the Shutdown call, `grace` to exit, then SIGTERM, then
    /// SIGKILL after two more seconds.
    pub async fn stop(mut self, grace: Duration) -> Option<ExitStatus> {
        let deadline = tokio::time::Instant::now() + grace;
        if self.exited().is_none() {
            let mut client = self.plugin();
            let _ = tokio::time::timeout_at(deadline, client.shutdown(ShutdownRequest {})).await;
        }
        if let Ok(status) = tokio::time::timeout_at(deadline, self.wait()).await {
            return status;
        }
        self.signal_group(libc::SIGTERM);
        if let Ok(status) = tokio::time::timeout(TERM_GRACE, self.wait()).await {
            return status;
        }
        tracing::warn!(pid = self.pgid, "plugin ignored SIGTERM; killed");
        self.kill().await
    }

    /// The private directory (for tests).
    pub fn dir(&self) -> &Path {
        &self.dir.0
    }
}

impl Drop for PluginProcess {
    fn drop(&mut self) {
        // kill_on_drop reaches the child only; the group may hold its children.
        if self.child.try_wait().ok().flatten().is_none() {
            self.signal_group(libc::SIGKILL);
        }
    }
}

fn connect(socket: PathBuf, token: &str) -> AuthChannel {
    // The URI is required by the API but unused: every connection goes to the socket.
    let endpoint = Endpoint::from_static("http://plugin.invalid")
        .initial_stream_window_size(super::STREAM_WINDOW_BYTES)
        .initial_connection_window_size(super::CONNECTION_WINDOW_BYTES);
    let channel = endpoint.connect_with_connector_lazy(tower::service_fn(move |_| {
        let socket = socket.clone();
        async move { UnixStream::connect(socket).await.map(TokioIo::new) }
    }));
    let header = MetadataValue::try_from(format!("Bearer {token}"))
        // A hex token is always a valid header value.
        .unwrap_or_else(|_| MetadataValue::from_static("Bearer invalid"));
    InterceptedService::new(channel, Auth(header))
}

/// Re-logs each line of a plugin's output under its component id: a JSON object with a
/// `level` and `message` (also `@level`/`@message`, go-plugin's spelling) at its level,
/// anything else at debug.
async fn relog(id: String, stream: impl AsyncRead + Unpin, tail: Option<StderrTail>) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(tail) = &tail {
            tail.push(&line);
        }
        log_line(&id, &line);
    }
}

fn log_line(id: &str, line: &str) {
    match parse_line(line) {
        (tracing::Level::ERROR, message) => tracing::error!(component = id, "{message}"),
        (tracing::Level::WARN, message) => tracing::warn!(component = id, "{message}"),
        (tracing::Level::INFO, message) => tracing::info!(component = id, "{message}"),
        (tracing::Level::TRACE, message) => tracing::trace!(component = id, "{message}"),
        (_, message) => tracing::debug!(component = id, plugin_output = true, "{message}"),
    }
}

/// The level and message of one output line: a JSON object's `level` and `message`
/// (also `@level`/`@message`, go-plugin's spelling, and Python's `levelname`/`msg`);
/// any other line is itself, at debug.
fn parse_line(line: &str) -> (tracing::Level, String) {
    let parsed: Option<serde_json::Map<String, serde_json::Value>> =
        serde_json::from_str(line).ok();
    let Some(object) = parsed else {
        return (tracing::Level::DEBUG, line.to_string());
    };
    let text = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| object.get(*k).and_then(|v| v.as_str()))
            .unwrap_or("")
            .to_string()
    };
    let message = text(&["message", "@message", "msg"]);
    let level = match text(&["level", "@level", "levelname"])
        .to_ascii_lowercase()
        .as_str()
    {
        "error" | "critical" | "fatal" => tracing::Level::ERROR,
        "warn" | "warning" => tracing::Level::WARN,
        "info" => tracing::Level::INFO,
        "trace" => tracing::Level::TRACE,
        _ => tracing::Level::DEBUG,
    };
    (level, message)
}

#[cfg(test)]
mod tests {
    use tracing::Level;

    use super::parse_line;

    #[test]
    fn json_lines_keep_their_level_and_other_lines_are_debug() {
        let line = |l: &str| parse_line(l);
        assert_eq!(
            line(r#"{"level":"warning","message":"slow API","ts":"x"}"#),
            (Level::WARN, "slow API".into())
        );
        assert_eq!(
            line(r#"{"@level":"ERROR","@message":"boom"}"#),
            (Level::ERROR, "boom".into())
        );
        assert_eq!(
            line(r#"{"level":"info","message":"up"}"#),
            (Level::INFO, "up".into())
        );
        assert_eq!(
            line("Traceback (most recent call last):"),
            (Level::DEBUG, "Traceback (most recent call last):".into())
        );
        assert_eq!(
            line(r#"{"message":"no level"}"#),
            (Level::DEBUG, "no level".into())
        );
    }
}
