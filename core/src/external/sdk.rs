//! The plugin side of the protocol, for plugins written in Rust: a transform is a
//! function over one event, a sink an async function over a batch. The SDK listens on
//! the socket siemflow gives (`SIEMFLOW_PLUGIN_SOCKET`), refuses calls without the
//! per-run token, answers the handshake with the schema and credit, logs JSON lines to
//! stderr (siemflow re-logs them under the component id) and returns when siemflow
//! calls Shutdown or sends SIGTERM.
//!
//! ```no_run
//! use siemflow_core::external::sdk::{self, Options};
//! use siemflow_core::Value;
//!
//! fn main() -> std::process::ExitCode {
//!     sdk::serve_transform(Options::new("tagger"), |mut event: Value, _config: &Value| {
//!         if let Value::Object(fields) = &mut event {
//!             fields.insert("tagged".into(), Value::Boolean(true));
//!         }
//!         Ok(vec![sdk::Emit::default_output(event)])
//!     })
//! }
//! ```

use std::future::Future;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio_stream::wrappers::{ReceiverStream, UnixListenerStream};
use tonic::{Request, Response, Status, Streaming};

use super::process::{SOCKET_ENV, TOKEN_ENV};
use super::proto::{
    self, ComponentKind, HandshakeRequest, HandshakeResponse, PingRequest, PingResponse,
    ShutdownRequest, ShutdownResponse, plugin_server, sink_server, transform_server,
};
use super::value;
use crate::Value;

/// The protocol version this SDK speaks.
const PROTOCOL_VERSION: u32 = 1;

/// What a plugin tells siemflow about itself.
#[derive(Debug, Clone)]
pub struct Options {
    /// The plugin's name, for logs.
    pub name: &'static str,
    /// The JSON Schema of its `config` table (siemflow checks the table against it).
    pub schema: Option<serde_json::Value>,
    /// Batches siemflow may send before an answer.
    pub credit: u32,
}

impl Options {
    /// A plugin with no schema and a credit of 4.
    pub fn new(name: &'static str) -> Self {
        Options {
            name,
            schema: None,
            credit: 4,
        }
    }

    /// With this config schema.
    pub fn schema(mut self, schema: serde_json::Value) -> Self {
        self.schema = Some(schema);
        self
    }

    /// With this credit (at least 1).
    pub fn credit(mut self, credit: u32) -> Self {
        self.credit = credit.max(1);
        self
    }
}

/// One event a transform emits.
#[derive(Debug, Clone)]
pub struct Emit {
    /// A declared named output; `None`: the default output.
    pub output: Option<String>,
    /// The event.
    pub value: Value,
}

impl Emit {
    /// An event for the default output.
    pub fn default_output(value: Value) -> Self {
        Emit {
            output: None,
            value,
        }
    }

    /// An event for a named output.
    pub fn to(output: &str, value: Value) -> Self {
        Emit {
            output: Some(output.to_string()),
            value,
        }
    }
}

/// What a sink did with a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum SinkOutcome {
    /// Every event is safely out.
    Delivered,
    /// Nothing is out: send the batch again (after `after`, or siemflow's backoff).
    Retry {
        /// Why, for siemflow's logs.
        reason: String,
        /// The wait the destination asked for.
        after: Option<Duration>,
    },
    /// These events (indices into the batch) can never be delivered; the rest were.
    Rejected {
        /// Their indices.
        indices: Vec<u32>,
        /// Why.
        reason: String,
    },
}

/// A sink: delivers one batch at a time.
pub trait Sink: Send + Sync + 'static {
    /// Delivers `events`; `config` is the component's `config` table.
    fn deliver(
        &self,
        events: Vec<Value>,
        config: &Value,
    ) -> impl Future<Output = SinkOutcome> + Send;
}

/// Serves `transform` as a transform plugin until siemflow stops it: it maps one event
/// (and the `config` table) to the events it becomes, or an error that fails only it.
pub fn serve_transform<F>(options: Options, transform: F) -> ExitCode
where
    F: Fn(Value, &Value) -> Result<Vec<Emit>, String> + Send + Sync + 'static,
{
    serve(options, ComponentKind::Transform, move |server, config| {
        server.add_service(transform_server::TransformServer::with_interceptor(
            TransformService {
                transform: Arc::new(transform),
                config,
            },
            server_auth(),
        ))
    })
}

/// Serves `sink` as a sink plugin until siemflow stops it.
pub fn serve_sink<S: Sink>(options: Options, sink: S) -> ExitCode {
    serve(options, ComponentKind::Sink, move |server, config| {
        server.add_service(sink_server::SinkServer::with_interceptor(
            SinkService {
                sink: Arc::new(sink),
                config,
            },
            server_auth(),
        ))
    })
}

/// Logs one JSON line to stderr at `level` (error, warn, info, debug).
pub fn log(level: &str, message: &str) {
    let line = serde_json::json!({ "level": level, "message": message });
    eprintln!("{line}");
}

type Auth = fn(Request<()>) -> Result<Request<()>, Status>;

static TOKEN: OnceLock<String> = OnceLock::new();

fn check_token(request: Request<()>) -> Result<Request<()>, Status> {
    let expected = TOKEN.get().map(String::as_str).unwrap_or_default();
    match request.metadata().get("authorization").map(|v| v.to_str()) {
        Some(Ok(value)) if !expected.is_empty() && value == expected => Ok(request),
        _ => Err(Status::unauthenticated("missing or wrong plugin token")),
    }
}

fn server_auth() -> Auth {
    check_token
}

type Router = tonic::transport::server::Router;

fn serve(
    options: Options,
    kind: ComponentKind,
    add: impl FnOnce(&mut tonic::transport::Server, Arc<OnceLock<Value>>) -> Router,
) -> ExitCode {
    let (Ok(address), Ok(token)) = (std::env::var(SOCKET_ENV), std::env::var(TOKEN_ENV)) else {
        eprintln!(
            "{}: this is a siemflow plugin: siemflow starts it (type = \"plugin\"), giving it {SOCKET_ENV} and {TOKEN_ENV}",
            options.name
        );
        return ExitCode::from(2);
    };
    let _ = TOKEN.set(format!("Bearer {token}"));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            log("error", &format!("cannot start the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let name = options.name;
    match runtime.block_on(listen(options, kind, &address, add)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log("error", &format!("{name}: {e}"));
            ExitCode::FAILURE
        }
    }
}

async fn listen(
    options: Options,
    kind: ComponentKind,
    address: &str,
    add: impl FnOnce(&mut tonic::transport::Server, Arc<OnceLock<Value>>) -> Router,
) -> Result<(), String> {
    let path = address.strip_prefix("unix://").unwrap_or(address);
    let listener = tokio::net::UnixListener::bind(path)
        .map_err(|e| format!("cannot listen on {path}: {e}"))?;
    let config = Arc::new(OnceLock::new());
    let stop = Arc::new(Notify::new());
    let lifecycle = Lifecycle {
        options,
        kind,
        config: Arc::clone(&config),
        stop: Arc::clone(&stop),
    };
    let mut server = tonic::transport::Server::builder();
    let router = add(&mut server, config).add_service(
        plugin_server::PluginServer::with_interceptor(lifecycle, server_auth()),
    );
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("cannot watch SIGTERM: {e}"))?;
    let stopped = async move {
        tokio::select! {
            _ = stop.notified() => {}
            _ = terminate.recv() => {}
        }
    };
    router
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), stopped)
        .await
        .map_err(|e| format!("serving failed: {e}"))
}

struct Lifecycle {
    options: Options,
    kind: ComponentKind,
    config: Arc<OnceLock<Value>>,
    stop: Arc<Notify>,
}

#[tonic::async_trait]
impl plugin_server::Plugin for Lifecycle {
    async fn handshake(
        &self,
        request: Request<HandshakeRequest>,
    ) -> Result<Response<HandshakeResponse>, Status> {
        let request = request.into_inner();
        let mut answer = HandshakeResponse {
            sdk_name: "siemflow-plugin-rust".into(),
            sdk_version: env!("CARGO_PKG_VERSION").into(),
            credit: self.options.credit,
            config_schema: self
                .options
                .schema
                .as_ref()
                .map(|s| s.to_string())
                .unwrap_or_default(),
            ..HandshakeResponse::default()
        };
        if !request.protocol_versions.contains(&PROTOCOL_VERSION) {
            answer.error = format!("this plugin speaks protocol version {PROTOCOL_VERSION} only");
            return Ok(Response::new(answer));
        }
        answer.protocol_version = PROTOCOL_VERSION;
        if request.kind != self.kind as i32 {
            answer.error = format!(
                "{} is a {}, configured as {:?}",
                self.options.name,
                self.kind.as_str_name(),
                ComponentKind::try_from(request.kind).unwrap_or_default()
            );
            return Ok(Response::new(answer));
        }
        let config = match request.config.map(value::from_wire) {
            Some(Ok(config)) => config,
            None => Value::Object(Default::default()),
            Some(Err(e)) => {
                answer.error = format!("unreadable config: {e}");
                return Ok(Response::new(answer));
            }
        };
        let _ = self.config.set(config);
        Ok(Response::new(answer))
    }

    async fn ping(&self, _: Request<PingRequest>) -> Result<Response<PingResponse>, Status> {
        Ok(Response::new(PingResponse {}))
    }

    async fn shutdown(
        &self,
        _: Request<ShutdownRequest>,
    ) -> Result<Response<ShutdownResponse>, Status> {
        self.stop.notify_one();
        Ok(Response::new(ShutdownResponse {}))
    }
}

fn config_of(config: &OnceLock<Value>) -> Value {
    config.get().cloned().unwrap_or(Value::Null)
}

type TransformFn = dyn Fn(Value, &Value) -> Result<Vec<Emit>, String> + Send + Sync;

struct TransformService {
    transform: Arc<TransformFn>,
    config: Arc<OnceLock<Value>>,
}

fn transform_batch(
    transform: &TransformFn,
    config: &Value,
    batch: proto::TransformBatch,
) -> proto::TransformResult {
    let results = batch
        .events
        .into_iter()
        .map(|event| {
            let outcome = value::event_from_wire(event)
                .map_err(|e| e.to_string())
                .and_then(|v| transform(v, config));
            match outcome {
                Ok(emitted) => proto::EventResult {
                    emitted: emitted
                        .into_iter()
                        .map(|e| proto::Emitted {
                            event: Some(value::event_to_wire(&e.value)),
                            output: e.output.unwrap_or_default(),
                        })
                        .collect(),
                    error: String::new(),
                },
                Err(error) => proto::EventResult {
                    emitted: Vec::new(),
                    error,
                },
            }
        })
        .collect();
    proto::TransformResult {
        batch_id: batch.batch_id,
        results,
    }
}

#[tonic::async_trait]
impl transform_server::Transform for TransformService {
    type ProcessStream = ReceiverStream<Result<proto::TransformResult, Status>>;

    async fn process(
        &self,
        request: Request<Streaming<proto::TransformBatch>>,
    ) -> Result<Response<Self::ProcessStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(4);
        let transform = Arc::clone(&self.transform);
        let config = config_of(&self.config);
        tokio::spawn(async move {
            while let Ok(Some(batch)) = inbound.message().await {
                let result = transform_batch(transform.as_ref(), &config, batch);
                if tx.send(Ok(result)).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

struct SinkService<S> {
    sink: Arc<S>,
    config: Arc<OnceLock<Value>>,
}

fn sink_result(batch_id: u64, outcome: SinkOutcome) -> proto::SinkResult {
    use proto::sink_result::Outcome;
    let outcome = match outcome {
        SinkOutcome::Delivered => Outcome::Delivered(proto::Delivered {}),
        SinkOutcome::Retry { reason, after } => Outcome::Retry(proto::Retry {
            after_ms: after.map_or(0, |a| a.as_millis() as u64),
            reason,
        }),
        SinkOutcome::Rejected { indices, reason } => {
            Outcome::Rejected(proto::Rejected { indices, reason })
        }
    };
    proto::SinkResult {
        batch_id,
        outcome: Some(outcome),
    }
}

#[tonic::async_trait]
impl<S: Sink> sink_server::Sink for SinkService<S> {
    type WriteStream = ReceiverStream<Result<proto::SinkResult, Status>>;

    async fn write(
        &self,
        request: Request<Streaming<proto::SinkBatch>>,
    ) -> Result<Response<Self::WriteStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(4);
        let sink = Arc::clone(&self.sink);
        let config = config_of(&self.config);
        tokio::spawn(async move {
            while let Ok(Some(batch)) = inbound.message().await {
                let mut events = Vec::with_capacity(batch.events.len());
                // Where each delivered event sits in the batch, and what cannot be read
                // (never the case with siemflow as the host).
                let mut positions = Vec::with_capacity(batch.events.len());
                let mut invalid = Vec::new();
                for (i, event) in (0u32..).zip(batch.events) {
                    match value::event_from_wire(event) {
                        Ok(v) => {
                            events.push(v);
                            positions.push(i);
                        }
                        Err(_) => invalid.push(i),
                    }
                }
                let outcome = match sink.deliver(events, &config).await {
                    outcome if invalid.is_empty() => outcome,
                    SinkOutcome::Delivered => SinkOutcome::Rejected {
                        indices: invalid,
                        reason: "unreadable event value".into(),
                    },
                    SinkOutcome::Rejected { indices, reason } => SinkOutcome::Rejected {
                        indices: indices
                            .iter()
                            .filter_map(|i| positions.get(*i as usize).copied())
                            .chain(invalid)
                            .collect(),
                        reason,
                    },
                    retry => retry,
                };
                if tx
                    .send(Ok(sink_result(batch.batch_id, outcome)))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
