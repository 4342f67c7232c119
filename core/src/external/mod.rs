//! External plugins: executables in any language that siemflow runs as a source, a
//! transform or a sink, over the gRPC protocol of `proto/plugin.proto`.
//!
//! This module is the one mechanism the three `plugin` components share: the options
//! ([`ExternalConfig`]), the process ([`process`]: clean environment, private socket
//! directory, per-run token, own process group, stderr re-logged, bounded stop), the
//! start and restart rule ([`Supervisor`]: handshake within `start_timeout`, restart with
//! exponential backoff and jitter from [`crate::retry`]), the batches awaiting an answer
//! ([`InFlight`]: hang detection after `batch_timeout`), the value codec ([`value`]) and
//! the plugin side for plugins written in Rust ([`sdk`]). Core knows no specific plugin.
//!
//! The generated code is checked in (`proto/siemflow.plugin.v1.rs`, made by
//! `scripts/gen-plugin-proto.sh` with protox and tonic-prost-build) rather than built by
//! a build script: a fresh machine then needs neither a protoc binary nor the ~25 crates
//! of the code generator, and a unit test below fails when the .proto changed without a
//! regeneration.

mod fields;
pub mod process;
pub mod schema;
pub mod sdk;

pub mod value;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Gauge};
use schemars::JsonSchema;
use serde::Deserialize;
use tokio::time::Instant;

use crate::metrics::{ComponentKind, ComponentLabels};
use crate::plugin::ConfigIssue;
use crate::retry::{Retries, RetryRule};
use process::{PluginProcess, SpawnError};

/// The code generated from `proto/plugin.proto` (package `siemflow.plugin.v1`).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    include!("proto/siemflow.plugin.v1.rs");
}

/// Protocol versions this host speaks, highest first.
pub const PROTOCOL_VERSIONS: &[u32] = &[1];
/// The largest message either side accepts (gRPC's default is 4 MiB, less than a batch
/// of large events can be).
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;
/// HTTP/2 flow-control windows of the plugin socket: h2's default (64 KiB) would make a
/// 1 MB batch wait for sixteen window updates.
pub const STREAM_WINDOW_BYTES: u32 = 8 << 20;
/// The connection's window: room for several batches in flight.
pub const CONNECTION_WINDOW_BYTES: u32 = 32 << 20;

/// The first wait before restarting a plugin that died; it doubles (with jitter).
pub const RESTART_INITIAL: Duration = Duration::from_millis(200);
/// The longest wait before a restart.
pub const RESTART_MAX: Duration = Duration::from_secs(30);

/// The options every `plugin` component takes.
#[derive(Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
// Inlined, so each `plugin` component's schema lists these options at its top level
// (`siemflow list`), not behind a reference.
#[schemars(inline)]
pub struct ExternalConfig {
    /// The plugin executable: a path, or a name looked up in siemflow's `PATH`.
    pub command: String,
    /// Its arguments (never secrets: they show in `ps`; put those in `config`).
    #[serde(default)]
    pub args: Vec<String>,
    /// The plugin's whole environment: `NAME` passes siemflow's value of `NAME` through,
    /// `NAME=value` sets it. Nothing else is inherited (not even `PATH`).
    #[serde(default)]
    pub env: Vec<String>,
    /// The plugin's own options, sent in the handshake and checked against the schema it
    /// publishes. Secrets belong here (with `${VAR}`); they are never logged.
    #[serde(default)]
    pub config: serde_json::Map<String, serde_json::Value>,
    /// Named outputs beside the default one (transforms only), addressed `<id>.<name>`.
    #[serde(default)]
    pub outputs: Vec<String>,
    /// How long a start may take, from spawn to the handshake's answer (default `"30s"`).
    #[serde(
        default = "default_start_timeout",
        deserialize_with = "crate::units::positive_duration",
        serialize_with = "crate::units::serialize_duration"
    )]
    #[schemars(with = "String")]
    pub start_timeout: Duration,
    /// A batch not answered within this is a hang: the plugin is killed and restarted
    /// (default `"30s"`). A ping unanswered within it is one too.
    #[serde(
        default = "default_batch_timeout",
        deserialize_with = "crate::units::positive_duration",
        serialize_with = "crate::units::serialize_duration"
    )]
    #[schemars(with = "String")]
    pub batch_timeout: Duration,
    /// How often an idle plugin is pinged (default `"10s"`).
    #[serde(
        default = "default_health_interval",
        deserialize_with = "crate::units::positive_duration",
        serialize_with = "crate::units::serialize_duration"
    )]
    #[schemars(with = "String")]
    pub health_interval: Duration,
    /// At stop, how long the plugin gets to finish after the Shutdown call before SIGTERM
    /// (then 2 s more before SIGKILL) (default `"5s"`).
    #[serde(
        default = "default_stop_timeout",
        deserialize_with = "crate::units::duration",
        serialize_with = "crate::units::serialize_duration"
    )]
    #[schemars(with = "String")]
    pub stop_timeout: Duration,
    /// The executable's SHA-256 (hex): a different file is refused.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Sinks only: how events are grouped into the batches sent to the plugin (as for
    /// the HTTP sinks, docs/delivery.md).
    #[serde(default)]
    pub batch: Option<crate::delivery::BatchConfig>,
    /// Sinks only: backoff after a `Retry` answer or a plugin failure, and how long a
    /// batch is tried before it is failed back to its source (docs/delivery.md).
    #[serde(default)]
    pub retry: Option<crate::delivery::RetryConfig>,
}

fn default_start_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_batch_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_health_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_stop_timeout() -> Duration {
    Duration::from_secs(5)
}

impl std::fmt::Debug for ExternalConfig {
    /// Names of `config` keys and `env` entries only: their values may be secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let env: Vec<&str> = self
            .env
            .iter()
            .map(|e| e.split_once('=').map_or(e.as_str(), |(name, _)| name))
            .collect();
        f.debug_struct("ExternalConfig")
            .field("command", &self.command)
            .field("args", &self.args)
            .field("env", &env)
            .field("config", &self.config.keys().collect::<Vec<_>>())
            .field("outputs", &self.outputs)
            .field("start_timeout", &self.start_timeout)
            .field("batch_timeout", &self.batch_timeout)
            .field("health_interval", &self.health_interval)
            .field("stop_timeout", &self.stop_timeout)
            .field("sha256", &self.sha256)
            .field("batch", &self.batch)
            .field("retry", &self.retry)
            .finish()
    }
}

impl ExternalConfig {
    /// The plugin's environment: the allowlisted names siemflow has, and the literals.
    pub fn environment(&self) -> Vec<(String, String)> {
        self.env
            .iter()
            .filter_map(|entry| match entry.split_once('=') {
                Some((name, value)) => Some((name.to_string(), value.to_string())),
                None => std::env::var(entry)
                    .ok()
                    .map(|value| (entry.clone(), value)),
            })
            .collect()
    }

    /// Problems serde cannot see; `kind` says whether `outputs` may be set.
    pub fn check(&self, kind: ComponentKind) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        if self.command.trim().is_empty() {
            issues.push(ConfigIssue::new("command", "is empty").hint("the plugin executable"));
        }
        for entry in &self.env {
            let name = entry.split_once('=').map_or(entry.as_str(), |(n, _)| n);
            let valid =
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid || name.starts_with("SIEMFLOW_PLUGIN_") {
                issues.push(
                    ConfigIssue::new("env", format!("`{name}` is not a variable name a plugin may be given"))
                        .hint("`NAME` to pass siemflow's value through, `NAME=value` to set one; SIEMFLOW_PLUGIN_* are siemflow's"),
                );
            }
        }
        if kind != ComponentKind::Transform && !self.outputs.is_empty() {
            issues.push(
                ConfigIssue::new("outputs", "only a transform has named outputs")
                    .hint("remove `outputs`"),
            );
        }
        if kind != ComponentKind::Sink {
            for (key, set) in [
                ("batch", self.batch.is_some()),
                ("retry", self.retry.is_some()),
            ] {
                if set {
                    issues.push(
                        ConfigIssue::new(key, "only a sink batches and retries")
                            .hint(format!("remove `{key}`")),
                    );
                }
            }
        }
        for name in &self.outputs {
            if name.is_empty() || name.contains('.') || name == "dropped" {
                issues.push(
                    ConfigIssue::new("outputs", format!("`{name}` cannot be an output name"))
                        .hint("a non-empty name without dots; `dropped` is always there"),
                );
            }
        }
        if let Some(pin) = &self.sha256 {
            let pin = pin.trim();
            if pin.len() != 64 || !pin.chars().all(|c| c.is_ascii_hexdigit()) {
                issues.push(
                    ConfigIssue::new("sha256", "is not a SHA-256 in hex")
                        .hint("64 hex digits, as `sha256sum` prints them"),
                );
            }
        }
        issues
    }

    /// The `config` table as a wire value.
    pub fn config_value(&self) -> proto::Value {
        let json = serde_json::Value::Object(self.config.clone());
        value::to_wire(&crate::Value::from(json))
    }
}

/// The wire kind of a component kind.
pub fn wire_kind(kind: ComponentKind) -> proto::ComponentKind {
    match kind {
        ComponentKind::Source => proto::ComponentKind::Source,
        ComponentKind::Transform => proto::ComponentKind::Transform,
        ComponentKind::Sink => proto::ComponentKind::Sink,
    }
}

/// Why a plugin did not start (each names the component and the command).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Spawning failed (missing executable, checksum mismatch).
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    /// It exited before answering the handshake.
    #[error("exited during its handshake ({status}); its stderr ends with:\n{stderr}")]
    Exited {
        /// How it ended.
        status: String,
        /// Its last stderr lines.
        stderr: String,
    },
    /// It did not answer the handshake within `start_timeout`.
    #[error("did not answer the handshake within {timeout:?}; its stderr ends with:\n{stderr}")]
    Deadline {
        /// The start timeout.
        timeout: Duration,
        /// Its last stderr lines.
        stderr: String,
    },
    /// It answered with a gRPC error.
    #[error("refused the handshake call: {status}; its stderr ends with:\n{stderr}")]
    Call {
        /// The call's status.
        status: tonic::Status,
        /// Its last stderr lines.
        stderr: String,
    },
    /// It speaks none of our protocol versions.
    #[error("speaks protocol version {chosen}, this siemflow speaks {supported:?}")]
    Version {
        /// What it chose.
        chosen: u32,
        /// What we offered.
        supported: &'static [u32],
    },
    /// It refused its configuration (its words), or the configuration does not match the
    /// schema it publishes.
    #[error("refused its configuration: {0}")]
    Config(String),
}

impl StartError {
    /// True when starting again cannot help (a configuration or version problem).
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            StartError::Version { .. }
                | StartError::Config(_)
                | StartError::Spawn(SpawnError::Checksum { .. })
        )
    }
}

/// A started plugin: the process and what it said in the handshake.
pub struct Session {
    /// The process.
    pub process: PluginProcess,
    /// Its handshake answer.
    pub handshake: proto::HandshakeResponse,
}

impl Session {
    /// Most batches the plugin accepts unanswered (at least 1).
    pub fn credit(&self) -> usize {
        (self.handshake.credit as usize).max(1)
    }

    /// How events go to this plugin: as JSON when it said it reads them so.
    pub fn event_form(&self) -> value::EventForm {
        value::EventForm::agreed(&self.handshake.capabilities)
    }
}

/// Metrics of a plugin component beyond the standard ones.
#[derive(Clone)]
pub struct PluginMetrics {
    /// `plugin_restarts_total`.
    pub restarts: Counter,
    /// `plugin_in_flight_batches`: batches sent and not answered (or, for a source,
    /// emitted and not acknowledged).
    pub in_flight: Gauge,
    /// `plugin_resent_batches_total`: batches sent again to a restarted plugin.
    pub resent: Counter,
    labels: ComponentLabels,
}

impl PluginMetrics {
    /// The handles of one component.
    pub fn new(labels: &ComponentLabels) -> Self {
        PluginMetrics {
            restarts: labels.counter("plugin_restarts_total", &[]),
            in_flight: labels.gauge("plugin_in_flight_batches", &[]),
            resent: labels.counter("plugin_resent_batches_total", &[]),
            labels: labels.clone(),
        }
    }

    /// Counts one error (`component_errors_total`).
    pub fn error(&self, error_type: &str, stage: &str) {
        self.labels.error(error_type, stage);
    }
}

/// Starts a plugin and restarts it when it dies or hangs.
pub struct Supervisor {
    id: String,
    kind: ComponentKind,
    config: Arc<ExternalConfig>,
    restarts: Retries,
    state_dir: Option<PathBuf>,
    /// The metrics of the component.
    pub metrics: PluginMetrics,
}

impl Supervisor {
    /// The supervisor of component `id`.
    pub fn new(
        id: &str,
        kind: ComponentKind,
        config: ExternalConfig,
        labels: &ComponentLabels,
    ) -> Self {
        Supervisor {
            id: id.to_string(),
            kind,
            config: Arc::new(config),
            restarts: RetryRule::new(RESTART_INITIAL, RESTART_MAX).start(),
            state_dir: None,
            metrics: PluginMetrics::new(labels),
        }
    }

    /// Gives the plugin this state folder (`SIEMFLOW_STATE_DIR`).
    pub fn with_state_dir(mut self, dir: PathBuf) -> Self {
        self.state_dir = Some(dir);
        self
    }

    /// The component's options.
    pub fn config(&self) -> &ExternalConfig {
        &self.config
    }

    /// The component id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Starts the plugin once: spawn, then the handshake within `start_timeout`.
    pub async fn start(&self) -> Result<Session, StartError> {
        start(
            &self.id,
            self.kind,
            &self.config,
            self.state_dir.as_deref(),
            false,
        )
        .await
    }

    /// Restarts after the plugin died or hung: waits the next backoff step, then starts;
    /// a failed start is logged and tried again (backoff growing to 30 s) until one
    /// succeeds or the failure is permanent.
    pub async fn restart(&mut self, why: &str) -> Result<Session, StartError> {
        loop {
            self.metrics.restarts.increment(1);
            // The backoff has no budget, so a wait is always granted.
            let wait = self.restarts.after_failure(None).unwrap_or(RESTART_MAX);
            tracing::warn!(component = %self.id, reason = why, wait = ?wait, "restarting the plugin");
            tokio::time::sleep(wait).await;
            match self.start().await {
                Ok(session) => return Ok(session),
                Err(e) if e.is_permanent() => return Err(e),
                Err(e) => {
                    tracing::error!(component = %self.id, command = %self.config.command, "plugin did not start: {e}");
                }
            }
        }
    }

    /// Called once a restarted plugin answered: the next failure starts the backoff over.
    pub fn healthy(&mut self) {
        if self.restarts.retries() > 0 {
            self.restarts = RetryRule::new(RESTART_INITIAL, RESTART_MAX).start();
        }
    }
}

/// Spawns the plugin and handshakes with it within `start_timeout`; with `describe_only`
/// the plugin only answers (`siemflow validate`).
pub async fn start(
    id: &str,
    kind: ComponentKind,
    config: &ExternalConfig,
    state_dir: Option<&Path>,
    describe_only: bool,
) -> Result<Session, StartError> {
    let mut process = PluginProcess::spawn(id, config, state_dir)?;
    let request = proto::HandshakeRequest {
        protocol_versions: PROTOCOL_VERSIONS.to_vec(),
        host_version: format!("siemflow {}", env!("CARGO_PKG_VERSION")),
        component_id: id.to_string(),
        kind: wire_kind(kind) as i32,
        config: Some(config.config_value()),
        outputs: config.outputs.clone(),
        describe_only,
        capabilities: vec![
            value::JSON_EVENTS.to_string(),
            value::EVENT_PATCHES.to_string(),
        ],
    };
    let deadline = Instant::now() + config.start_timeout;
    let handshake = handshake(&mut process, request, deadline, config.start_timeout).await?;
    if !PROTOCOL_VERSIONS.contains(&handshake.protocol_version) {
        return Err(StartError::Version {
            chosen: handshake.protocol_version,
            supported: PROTOCOL_VERSIONS,
        });
    }
    if !handshake.error.is_empty() {
        return Err(StartError::Config(handshake.error.clone()));
    }
    if !handshake.config_schema.is_empty() {
        let problems = schema::check_text(&handshake.config_schema, &config.config);
        if !problems.is_empty() {
            return Err(StartError::Config(problems.join("; ")));
        }
    }
    Ok(Session { process, handshake })
}

/// What a plugin says about itself at `siemflow validate`: it is started in describe
/// mode, answers the handshake (its schema checked against `config`), and is stopped.
pub async fn describe(
    id: &str,
    kind: ComponentKind,
    config: &ExternalConfig,
) -> Result<proto::HandshakeResponse, StartError> {
    let Session { process, handshake } = start(id, kind, config, None, true).await?;
    process.stop(config.stop_timeout).await;
    Ok(handshake)
}

/// Calls Handshake until it is answered: while the plugin is not listening yet the call
/// fails as unavailable and is tried again shortly, until `deadline`.
async fn handshake(
    process: &mut PluginProcess,
    request: proto::HandshakeRequest,
    deadline: Instant,
    timeout: Duration,
) -> Result<proto::HandshakeResponse, StartError> {
    let mut client = process.plugin();
    let mut waits = RetryRule::new(Duration::from_millis(10), Duration::from_millis(200)).start();
    loop {
        if let Some(status) = process.exited() {
            return Err(StartError::Exited {
                status: status.to_string(),
                stderr: process.stderr_text().await,
            });
        }
        match tokio::time::timeout_at(deadline, client.handshake(request.clone())).await {
            Err(_) => {
                return Err(StartError::Deadline {
                    timeout,
                    stderr: process.stderr_text().await,
                });
            }
            Ok(Ok(answer)) => return Ok(answer.into_inner()),
            Ok(Err(status)) if status.code() == tonic::Code::Unavailable => {
                let wait = waits
                    .after_failure(None)
                    .unwrap_or(Duration::from_millis(200));
                // Wakes early if the process exits meanwhile.
                let _ =
                    tokio::time::timeout_at(deadline.min(Instant::now() + wait), process.wait())
                        .await;
            }
            Ok(Err(status)) => {
                return Err(StartError::Call {
                    status,
                    stderr: process.stderr_text().await,
                });
            }
        }
    }
}

/// Batches sent to a plugin and not answered yet, by id, with when each was sent: the
/// oldest one's age is what hang detection looks at.
pub struct InFlight<T> {
    next_id: u64,
    batches: BTreeMap<u64, (Instant, T)>,
    gauge: Gauge,
}

impl<T> InFlight<T> {
    /// An empty table reporting its size on `gauge`.
    pub fn new(gauge: Gauge) -> Self {
        InFlight {
            next_id: 1,
            batches: BTreeMap::new(),
            gauge,
        }
    }

    /// Records a batch sent now; returns its id.
    pub fn insert(&mut self, batch: T) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.batches.insert(id, (Instant::now(), batch));
        self.gauge.set(self.batches.len() as f64);
        id
    }

    /// Takes the batch of an answer.
    pub fn take(&mut self, id: u64) -> Option<T> {
        let batch = self.batches.remove(&id).map(|(_, batch)| batch);
        self.gauge.set(self.batches.len() as f64);
        batch
    }

    /// When the oldest batch passes `timeout` unanswered; `None` when nothing is in flight.
    pub fn deadline(&self, timeout: Duration) -> Option<Instant> {
        self.batches.values().map(|(sent, _)| *sent + timeout).min()
    }

    /// Batches in flight.
    pub fn len(&self) -> usize {
        self.batches.len()
    }

    /// True when nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// Takes every batch, oldest first (the plugin died: resend or fail them).
    pub fn drain(&mut self) -> Vec<T> {
        let all = std::mem::take(&mut self.batches);
        self.gauge.set(0.0);
        all.into_values().map(|(_, batch)| batch).collect()
    }
}

#[cfg(test)]
mod tests;
