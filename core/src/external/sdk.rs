//! The plugin side of the protocol, for plugins written in Rust: a transform is a
//! function over one event, a sink an async function over a batch, a source a blocking
//! `read` closure returning batches and an `acked` closure told of their delivery. The SDK listens on
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
//!
//! A step that reads or sets a few top-level fields is several times cheaper as a fields
//! transform: a field is parsed only when read, and only the changes go back.
//!
//! ```no_run
//! use siemflow_core::external::sdk::{self, Emit, Fields, Options};
//! use siemflow_core::Value;
//!
//! fn main() -> std::process::ExitCode {
//!     sdk::serve_fields_transform(Options::new("tagger"), |mut event: Fields, _: &Value| {
//!         if event.get("Workload")?.is_some_and(|w| w == Value::from("Exchange")) {
//!             event.insert("mailbox", Value::Boolean(true));
//!         }
//!         Ok(vec![Emit::default_output(event)])
//!     })
//! }
//! ```

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::process::ExitCode;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc};
use tokio_stream::wrappers::{ReceiverStream, UnixListenerStream};
use tonic::{Request, Response, Status, Streaming};

pub use super::fields::Fields;
use super::process::{SOCKET_ENV, TOKEN_ENV};
use super::proto::{
    self, ComponentKind, HandshakeRequest, HandshakeResponse, PingRequest, PingResponse,
    ShutdownRequest, ShutdownResponse, plugin_server, sink_server, source_server, transform_server,
};
use super::{CONNECTION_WINDOW_BYTES, MAX_MESSAGE_BYTES, STREAM_WINDOW_BYTES, value};
use crate::Value;
use tonic::service::interceptor::InterceptedService;

/// The protocol version this SDK speaks.
const PROTOCOL_VERSION: u32 = 1;

/// What a plugin tells siemflow about itself.
#[derive(Debug, Clone)]
pub struct Options {
    /// The plugin's name, for logs.
    pub name: &'static str,
    /// The JSON Schema of its `config` table (siemflow checks the table against it).
    pub schema: Option<serde_json::Value>,
    /// Batches siemflow may send before an answer (a source: batches unacknowledged).
    pub credit: u32,
    /// A source's wait before it sends again a batch siemflow could not deliver.
    pub replay_after: Duration,
}

impl Options {
    /// A plugin with no schema and a credit of 4.
    pub fn new(name: &'static str) -> Self {
        Options {
            name,
            schema: None,
            credit: 4,
            replay_after: Duration::from_secs(1),
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

    /// With this wait before a source sends an undelivered batch again.
    pub fn replay_after(mut self, wait: Duration) -> Self {
        self.replay_after = wait;
        self
    }
}

/// One event a transform emits.
#[derive(Debug, Clone)]
pub struct Emit {
    /// A declared named output; `None`: the default output.
    pub output: Option<String>,
    /// The event.
    pub body: Body,
}

/// An emitted event: whole values, or an input's [`Fields`] with their changes.
#[derive(Debug, Clone)]
pub enum Body {
    /// The event as values.
    Value(Value),
    /// The input event with the changes made to its fields.
    Fields(Fields),
}

impl From<Value> for Body {
    fn from(value: Value) -> Self {
        Body::Value(value)
    }
}

impl From<Fields> for Body {
    fn from(fields: Fields) -> Self {
        Body::Fields(fields)
    }
}

impl Emit {
    /// An event for the default output.
    pub fn default_output(body: impl Into<Body>) -> Self {
        Emit {
            output: None,
            body: body.into(),
        }
    }

    /// An event for a named output.
    pub fn to(output: &str, body: impl Into<Body>) -> Self {
        Emit {
            output: Some(output.to_string()),
            body: body.into(),
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
    serve_transform_with(options, TransformFn::Value(Box::new(transform)))
}

/// Serves `transform` as a transform plugin over object events read lazily: a field is
/// parsed only when `transform` reads it, and only what it sets or removes goes back.
/// For a step that reads or adds a few fields this is several times cheaper than
/// [`serve_transform`]; an event that is not an object fails with an error.
pub fn serve_fields_transform<F>(options: Options, transform: F) -> ExitCode
where
    F: Fn(Fields, &Value) -> Result<Vec<Emit>, String> + Send + Sync + 'static,
{
    serve_transform_with(options, TransformFn::Fields(Box::new(transform)))
}

fn serve_transform_with(options: Options, transform: TransformFn) -> ExitCode {
    let transform = Arc::new(transform);
    serve(
        options,
        ComponentKind::Transform,
        move |server, handshake| {
            server.add_service(InterceptedService::new(
                transform_server::TransformServer::new(TransformService {
                    transform,
                    handshake,
                })
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
                server_auth(),
            ))
        },
    )
}

/// Serves `sink` as a sink plugin until siemflow stops it.
pub fn serve_sink<S: Sink>(options: Options, sink: S) -> ExitCode {
    serve(options, ComponentKind::Sink, move |server, handshake| {
        server.add_service(InterceptedService::new(
            sink_server::SinkServer::new(SinkService {
                sink: Arc::new(sink),
                handshake,
            })
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
            server_auth(),
        ))
    })
}

/// Serves a source plugin until siemflow stops it. `read(config, stopping)` blocks until
/// it has the next batch and returns it with a token (anything the plugin wants back), or
/// `None` once the source has nothing more (the stream ends when every batch is
/// acknowledged); it should return `None` soon after `stopping` is set. `acked(token)` is
/// called once siemflow delivered the batch to every sink, in the order `read` returned
/// the batches, on its own thread (also while `read` waits for data): a cursor saved there
/// never passes undelivered data. A batch siemflow could not deliver is sent again after
/// [`Options::replay_after`]; at most [`Options::credit`] batches are unacknowledged
/// (`read` is not called again until an ack frees one). An empty batch is not sent.
pub fn serve_source<T, R, A>(options: Options, read: R, acked: A) -> ExitCode
where
    T: Send + 'static,
    R: FnMut(&Value, &Stopping) -> Option<(Vec<Value>, T)> + Send + 'static,
    A: FnMut(T) + Send + 'static,
{
    let credit = options.credit.max(1) as usize;
    let replay_after = options.replay_after;
    serve(options, ComponentKind::Source, move |server, handshake| {
        server.add_service(InterceptedService::new(
            source_server::SourceServer::new(SourceService {
                read: Arc::new(Mutex::new(read)),
                acked: Arc::new(Mutex::new(acked)),
                handshake,
                credit,
                replay_after,
                _token: std::marker::PhantomData,
            })
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
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
    add: impl FnOnce(&mut tonic::transport::Server, Arc<OnceLock<Agreed>>) -> Router,
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
    add: impl FnOnce(&mut tonic::transport::Server, Arc<OnceLock<Agreed>>) -> Router,
) -> Result<(), String> {
    let path = address.strip_prefix("unix://").unwrap_or(address);
    let listener = tokio::net::UnixListener::bind(path)
        .map_err(|e| format!("cannot listen on {path}: {e}"))?;
    let handshake = Arc::new(OnceLock::new());
    let stop = Arc::new(Notify::new());
    let lifecycle = Lifecycle {
        options,
        kind,
        handshake: Arc::clone(&handshake),
        stop: Arc::clone(&stop),
    };
    let mut server = tonic::transport::Server::builder()
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES);
    let router = add(&mut server, handshake).add_service(
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
    handshake: Arc<OnceLock<Agreed>>,
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
        // Events go as JSON when siemflow reads them so: far cheaper for both sides.
        let form = value::EventForm::agreed(&request.capabilities);
        if form == value::EventForm::Json {
            answer.capabilities.push(value::JSON_EVENTS.to_string());
        }
        // A transform answers with what it changed: an enriching step sends a few fields.
        let patches = self.kind == ComponentKind::Transform
            && request
                .capabilities
                .iter()
                .any(|c| c == value::EVENT_PATCHES);
        if patches {
            answer.capabilities.push(value::EVENT_PATCHES.to_string());
        }
        let _ = self.handshake.set(Agreed {
            config,
            form,
            patches,
        });
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

/// What the handshake settled: the plugin's config and how it sends events.
#[derive(Clone)]
struct Agreed {
    config: Value,
    form: value::EventForm,
    /// A transform may answer with patches.
    patches: bool,
}

fn agreed(handshake: &OnceLock<Agreed>) -> Agreed {
    handshake.get().cloned().unwrap_or(Agreed {
        config: Value::Null,
        form: value::EventForm::Value,
        patches: false,
    })
}

/// A transform's function over one input (and the config table).
type Step<Input> = Box<dyn Fn(Input, &Value) -> Result<Vec<Emit>, String> + Send + Sync>;

/// A transform's function, over values or over lazily read fields.
enum TransformFn {
    Value(Step<Value>),
    Fields(Step<Fields>),
}

struct TransformService {
    transform: Arc<TransformFn>,
    handshake: Arc<OnceLock<Agreed>>,
}

fn transform_batch(
    transform: &TransformFn,
    agreed: &Agreed,
    batch: proto::TransformBatch,
) -> proto::TransformResult {
    let mut encoder = value::EventEncoder::new(agreed.form);
    let results = batch
        .events
        .into_iter()
        .map(|event| {
            // A value transform's input is kept to answer with patches against it (a copy
            // costs less than encoding and reading back the fields left alone); fields
            // know their changes themselves.
            let (emitted, original) = match transform {
                TransformFn::Value(transform) => {
                    let input = value::event_from_wire(event).map_err(|e| e.to_string());
                    let original = match &input {
                        Ok(Value::Object(fields)) if agreed.patches => Some(fields.clone()),
                        _ => None,
                    };
                    (input.and_then(|v| transform(v, &agreed.config)), original)
                }
                TransformFn::Fields(transform) => (
                    Fields::from_wire(event).and_then(|f| transform(f, &agreed.config)),
                    None,
                ),
            };
            let emitted = emitted.and_then(|emitted| {
                emitted
                    .into_iter()
                    .map(|e| emit(&mut encoder, agreed.patches, original.as_ref(), e))
                    .collect::<Result<Vec<_>, String>>()
            });
            match emitted {
                Ok(emitted) => proto::EventResult {
                    emitted,
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

/// One emitted event on the wire: as a patch of the input when that saves something.
fn emit(
    encoder: &mut value::EventEncoder,
    patches: bool,
    original: Option<&crate::ObjectMap>,
    emit: Emit,
) -> Result<proto::Emitted, String> {
    let (whole, patch) = match (emit.body, original) {
        (Body::Fields(fields), _) if patches => (None, Some(fields.into_patch())),
        (Body::Fields(fields), _) => (Some(Value::Object(fields.into_object()?)), None),
        (Body::Value(Value::Object(fields)), Some(original)) => {
            match value::diff(original, fields) {
                Ok(changes) => (None, Some(changes)),
                Err(fields) => (Some(Value::Object(fields)), None),
            }
        }
        (Body::Value(value), _) => (Some(value), None),
    };
    Ok(proto::Emitted {
        event: whole.map(|value| encoder.encode(&value)),
        output: emit.output.unwrap_or_default(),
        patch: patch.map(|(set, removed)| proto::Patch {
            set: Some(encoder.encode(&Value::Object(set))),
            removed,
        }),
    })
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
        let agreed = agreed(&self.handshake);
        tokio::spawn(async move {
            while let Ok(Some(batch)) = inbound.message().await {
                let result = transform_batch(transform.as_ref(), &agreed, batch);
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
    handshake: Arc<OnceLock<Agreed>>,
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
        let config = agreed(&self.handshake).config;
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

/// Set when siemflow closes a source's stream (it stops, or goes away): the source's
/// `read` should then return `None`.
#[derive(Debug, Clone, Default)]
pub struct Stopping(Arc<(Mutex<bool>, Condvar)>);

impl Stopping {
    /// Whether the source should stop reading.
    pub fn is_set(&self) -> bool {
        self.0.0.lock().map(|stop| *stop).unwrap_or(true)
    }

    /// Waits up to `timeout`, returning early when stopping; true when stopping.
    pub fn wait(&self, timeout: Duration) -> bool {
        let (lock, changed) = &*self.0;
        let Ok(stop) = lock.lock() else { return true };
        match changed.wait_timeout_while(stop, timeout, |stop| !*stop) {
            Ok((stop, _)) => *stop,
            Err(_) => true,
        }
    }

    fn set(&self) {
        if let Ok(mut stop) = self.0.0.lock() {
            *stop = true;
        }
        self.0.1.notify_all();
    }
}

/// A batch `read` returned and whose token is not yet handed back.
struct Slot<T> {
    token: T,
    events: Vec<Value>,
    delivered: bool,
}

/// A source stream's books: the batches read and not yet acknowledged, in read order
/// (their tokens are handed back in that order), the batch ids in flight, and the
/// undelivered batches waiting to be sent again (they keep their place in the order).
struct Ledger<T> {
    next_slot: u64,
    next_batch_id: u64,
    slots: BTreeMap<u64, Slot<T>>,
    /// Batch id sent → its slot.
    in_flight: HashMap<u64, u64>,
    /// Slots to send again, and when.
    replays: VecDeque<(Instant, u64)>,
    /// How batches are put on the wire.
    form: value::EventForm,
}

impl<T> Ledger<T> {
    fn new(form: value::EventForm) -> Self {
        Ledger {
            form,
            next_slot: 0,
            next_batch_id: 1,
            slots: BTreeMap::new(),
            in_flight: HashMap::new(),
            replays: VecDeque::new(),
        }
    }

    /// Books a batch `read` returned and returns it as sent.
    fn send(&mut self, events: Vec<Value>, token: T) -> proto::SourceBatch {
        let slot = self.next_slot;
        self.next_slot += 1;
        self.slots.insert(
            slot,
            Slot {
                token,
                events,
                delivered: false,
            },
        );
        self.send_slot(slot)
    }

    /// Sends (again) the batch of `slot`, under a new batch id.
    fn send_slot(&mut self, slot: u64) -> proto::SourceBatch {
        let batch_id = self.next_batch_id;
        self.next_batch_id += 1;
        self.in_flight.insert(batch_id, slot);
        proto::SourceBatch {
            batch_id,
            events: self
                .slots
                .get(&slot)
                .map(|s| value::events_to_wire(&s.events, self.form))
                .unwrap_or_default(),
        }
    }

    /// Settles an ack: returns the tokens now acknowledged, in read order. An
    /// undelivered batch is booked to be sent again at `replay_at`; the batches read
    /// after it are handed back only once it is delivered.
    fn settle(&mut self, ack: &proto::SourceAck, replay_at: Instant) -> Vec<T> {
        let Some(slot) = self.in_flight.remove(&ack.batch_id) else {
            return Vec::new();
        };
        if !ack.delivered {
            self.replays.push_back((replay_at, slot));
            return Vec::new();
        }
        if let Some(s) = self.slots.get_mut(&slot) {
            s.delivered = true;
        }
        let mut tokens = Vec::new();
        while let Some(first) = self.slots.first_entry() {
            if !first.get().delivered {
                break;
            }
            tokens.push(first.remove().token);
        }
        tokens
    }

    /// Batches read and not yet handed back (what the credit bounds).
    fn unacknowledged(&self) -> usize {
        self.slots.len()
    }

    /// Sends again an undelivered batch whose wait is over.
    fn due_replay(&mut self, now: Instant) -> Option<proto::SourceBatch> {
        let index = self.replays.iter().position(|(at, _)| *at <= now)?;
        let (_, slot) = self.replays.remove(index)?;
        Some(self.send_slot(slot))
    }

    /// When the next undelivered batch is due.
    fn next_replay(&self) -> Option<Instant> {
        self.replays.iter().map(|(at, _)| *at).min()
    }
}

/// A ledger shared by a stream's reader and acker threads, with its change signal.
struct Books<T> {
    ledger: Mutex<Ledger<T>>,
    changed: Condvar,
}

impl<T> Books<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Ledger<T>> {
        // A panic in the plugin's own closures is outside the ledger's lock.
        self.ledger
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

type BatchSender = mpsc::Sender<Result<proto::SourceBatch, Status>>;

/// The reader thread of one stream: sends the undelivered batches that are due and,
/// within the credit, what `read` returns, until `read` is done and everything is
/// acknowledged, or the stream closes.
fn read_loop<T, R>(
    read: &mut R,
    config: &Value,
    books: &Books<T>,
    stopping: &Stopping,
    credit: usize,
    tx: &BatchSender,
) where
    R: FnMut(&Value, &Stopping) -> Option<(Vec<Value>, T)>,
{
    let mut exhausted = false;
    loop {
        let replay = {
            let mut ledger = books.lock();
            if stopping.is_set() {
                return;
            }
            let now = Instant::now();
            match ledger.due_replay(now) {
                Some(batch) => Some(batch),
                None if !exhausted && ledger.unacknowledged() < credit => None,
                None if exhausted && ledger.unacknowledged() == 0 => return,
                None => {
                    // Full credit, or done reading: wait for an ack or a replay's time.
                    let wait = ledger
                        .next_replay()
                        .map_or(Duration::from_millis(500), |at| {
                            at.saturating_duration_since(now)
                        });
                    let _ = books.changed.wait_timeout(ledger, wait);
                    continue;
                }
            }
        };
        let batch = match replay {
            Some(batch) => batch,
            None => match read(config, stopping) {
                None => {
                    exhausted = true;
                    continue;
                }
                Some((events, _)) if events.is_empty() => continue,
                Some((events, token)) => books.lock().send(events, token),
            },
        };
        if tx.blocking_send(Ok(batch)).is_err() {
            return;
        }
    }
}

struct SourceService<T, R, A> {
    read: Arc<Mutex<R>>,
    acked: Arc<Mutex<A>>,
    handshake: Arc<OnceLock<Agreed>>,
    credit: usize,
    replay_after: Duration,
    _token: std::marker::PhantomData<fn() -> T>,
}

#[tonic::async_trait]
impl<T, R, A> source_server::Source for SourceService<T, R, A>
where
    T: Send + 'static,
    R: FnMut(&Value, &Stopping) -> Option<(Vec<Value>, T)> + Send + 'static,
    A: FnMut(T) + Send + 'static,
{
    type ReadStream = ReceiverStream<Result<proto::SourceBatch, Status>>;

    async fn read(
        &self,
        request: Request<Streaming<proto::SourceAck>>,
    ) -> Result<Response<Self::ReadStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(1);
        let (ack_tx, mut ack_rx) = mpsc::channel::<proto::SourceAck>(self.credit.max(16));
        let Agreed { config, form, .. } = agreed(&self.handshake);
        let books = Arc::new(Books {
            ledger: Mutex::new(Ledger::<T>::new(form)),
            changed: Condvar::new(),
        });
        let stopping = Stopping::default();
        // Acks arrive on the async side and are settled on a thread of their own, so the
        // plugin's `acked` runs even while its `read` waits for data.
        tokio::spawn(async move {
            while let Ok(Some(ack)) = inbound.message().await {
                if ack_tx.send(ack).await.is_err() {
                    break;
                }
            }
        });
        let acker = {
            let books = Arc::clone(&books);
            let stopping = stopping.clone();
            let acked = Arc::clone(&self.acked);
            let replay_after = self.replay_after;
            move || {
                while let Some(ack) = ack_rx.blocking_recv() {
                    let tokens = books.lock().settle(&ack, Instant::now() + replay_after);
                    books.changed.notify_all();
                    if !tokens.is_empty() {
                        let mut acked = acked.lock().unwrap_or_else(|p| p.into_inner());
                        tokens.into_iter().for_each(&mut *acked);
                    }
                }
                // The stream is closed: the reader ends.
                stopping.set();
                let _guard = books.lock();
                books.changed.notify_all();
            }
        };
        let reader = {
            let read = Arc::clone(&self.read);
            let credit = self.credit;
            move || {
                let Ok(mut read) = read.try_lock() else {
                    let _ = tx.blocking_send(Err(Status::failed_precondition(
                        "this source serves one Read stream at a time",
                    )));
                    return;
                };
                read_loop(&mut *read, &config, &books, &stopping, credit, &tx);
            }
        };
        std::thread::Builder::new()
            .name("siemflow-source-acks".into())
            .spawn(acker)
            .map_err(|e| Status::internal(format!("cannot start the ack thread: {e}")))?;
        std::thread::Builder::new()
            .name("siemflow-source-read".into())
            .spawn(reader)
            .map_err(|e| Status::internal(format!("cannot start the reader thread: {e}")))?;
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

#[cfg(test)]
mod source_tests {
    use super::*;

    fn ack(batch_id: u64, delivered: bool) -> proto::SourceAck {
        proto::SourceAck {
            batch_id,
            delivered,
        }
    }

    fn batch(n: i64) -> Vec<Value> {
        vec![Value::Integer(n)]
    }

    #[test]
    fn acks_are_released_in_read_order() {
        let mut ledger = Ledger::new(value::EventForm::Value);
        let now = Instant::now();
        let ids: Vec<u64> = (1..=3).map(|n| ledger.send(batch(n), n).batch_id).collect();
        assert_eq!(ledger.unacknowledged(), 3);
        assert!(ledger.settle(&ack(ids[2], true), now).is_empty());
        assert!(ledger.settle(&ack(ids[1], true), now).is_empty());
        assert_eq!(ledger.settle(&ack(ids[0], true), now), vec![1, 2, 3]);
        assert_eq!(ledger.unacknowledged(), 0);
        // An ack for an unknown or settled batch changes nothing.
        assert!(ledger.settle(&ack(ids[0], true), now).is_empty());
    }

    #[test]
    fn an_undelivered_batch_is_sent_again_after_its_wait_and_keeps_its_place() {
        let mut ledger = Ledger::new(value::EventForm::Value);
        let now = Instant::now();
        let first = ledger.send(batch(1), "a").batch_id;
        let second = ledger.send(batch(2), "b").batch_id;
        let later = now + Duration::from_secs(1);
        assert!(ledger.settle(&ack(first, false), later).is_empty());
        assert!(
            ledger.due_replay(now).is_none(),
            "sent again before its wait"
        );
        assert_eq!(ledger.next_replay(), Some(later));
        // The later batch is delivered, but its token waits for the first.
        assert!(ledger.settle(&ack(second, true), now).is_empty());
        assert_eq!(ledger.unacknowledged(), 2);
        let again = ledger.due_replay(later).expect("due");
        assert_ne!(again.batch_id, first, "a replay is a new batch");
        assert_eq!(
            again.events,
            vec![value::event_to_wire(
                &Value::Integer(1),
                value::EventForm::Value
            )]
        );
        assert_eq!(
            ledger.settle(&ack(again.batch_id, true), later),
            vec!["a", "b"]
        );
        assert_eq!(ledger.unacknowledged(), 0);
    }

    #[test]
    fn the_reader_stays_within_the_credit_and_ends_once_everything_is_acknowledged() {
        let books = Arc::new(Books {
            ledger: Mutex::new(Ledger::new(value::EventForm::Value)),
            changed: Condvar::new(),
        });
        let stopping = Stopping::default();
        let (tx, mut rx) = mpsc::channel(16);
        let reader = {
            let books = Arc::clone(&books);
            let stopping = stopping.clone();
            std::thread::spawn(move || {
                let mut next = 0;
                let mut read = |_: &Value, _: &Stopping| {
                    next += 1;
                    (next <= 5).then(|| (batch(next), next))
                };
                read_loop(&mut read, &Value::Null, &books, &stopping, 2, &tx);
            })
        };
        let mut acked = Vec::new();
        let mut received = 0;
        while let Some(Ok(sent)) = rx.blocking_recv() {
            received += 1;
            // Two unacknowledged at most: the reader waits for this ack.
            assert!(books.lock().unacknowledged() <= 2);
            let delivered = sent.batch_id != 2;
            acked.extend(
                books
                    .lock()
                    .settle(&ack(sent.batch_id, delivered), Instant::now()),
            );
            books.changed.notify_all();
        }
        reader.join().expect("reader");
        assert_eq!(acked, vec![1, 2, 3, 4, 5], "every token, in order");
        assert_eq!(received, 6, "five batches and one replay");
        assert!(!stopping.is_set());
    }

    #[test]
    fn stopping_wakes_a_read_that_waits_on_it() {
        let stopping = Stopping::default();
        assert!(!stopping.wait(Duration::from_millis(1)));
        let waiter = {
            let stopping = stopping.clone();
            std::thread::spawn(move || stopping.wait(Duration::from_secs(600)))
        };
        stopping.set();
        assert!(waiter.join().expect("waiter"), "woken by the stop");
        assert!(stopping.is_set());
    }
}

#[cfg(test)]
mod transform_tests {
    use super::*;

    fn agreed(form: value::EventForm, patches: bool) -> Agreed {
        Agreed {
            config: Value::Null,
            form,
            patches,
        }
    }

    fn input() -> Value {
        let at = chrono::DateTime::from_timestamp(1_765_100_000, 123_456_789).expect("time");
        Value::Object(
            [
                ("Id".into(), "a".into()),
                ("Old".into(), 1.into()),
                ("At".into(), Value::Timestamp(at)),
            ]
            .into_iter()
            .collect(),
        )
    }

    /// What the host makes of an answer to `input`, as the `plugin` transform reads it.
    fn host_reads(input: &Value, emitted: proto::Emitted) -> Value {
        match emitted.patch {
            Some(patch) => {
                let set = value::event_from_wire(patch.set.expect("set")).expect("set reads");
                let (Value::Object(mut fields), Value::Object(set)) = (input.clone(), set) else {
                    panic!("objects");
                };
                value::apply_patch(&mut fields, set, &patch.removed);
                Value::Object(fields)
            }
            None => value::event_from_wire(emitted.event.expect("event")).expect("reads"),
        }
    }

    fn run(transform: &TransformFn, agreed: &Agreed, event: &Value) -> Vec<proto::Emitted> {
        let batch = proto::TransformBatch {
            batch_id: 7,
            events: vec![value::event_to_wire(event, agreed.form)],
        };
        let result = transform_batch(transform, agreed, batch);
        assert_eq!(result.batch_id, 7);
        let [one] = <[_; 1]>::try_from(result.results).expect("one result");
        assert_eq!(one.error, "");
        one.emitted
    }

    /// Both kinds of transform make the same event in every form, with patches or not;
    /// a fields transform answers with a patch whenever the host takes one.
    #[test]
    fn value_and_fields_transforms_make_the_same_events() {
        let by_value = TransformFn::Value(Box::new(|mut event: Value, _: &Value| {
            let fields = event.as_object_mut().ok_or("not an object")?;
            fields.insert("New".into(), Value::Boolean(true));
            fields.remove("Old");
            Ok(vec![
                Emit::default_output(event.clone()),
                Emit::to("copy", event),
            ])
        }));
        let by_fields = TransformFn::Fields(Box::new(|mut event: Fields, _: &Value| {
            assert_eq!(event.get("Id")?, Some(Value::from("a")));
            event.insert("New", Value::Boolean(true));
            event.remove("Old");
            Ok(vec![
                Emit::default_output(event.clone()),
                Emit::to("copy", event),
            ])
        }));
        let mut expected = input();
        let fields = expected.as_object_mut().expect("object");
        fields.insert("New".into(), Value::Boolean(true));
        fields.remove("Old");
        for form in [value::EventForm::Json, value::EventForm::Value] {
            for patches in [false, true] {
                let agreed = agreed(form, patches);
                for transform in [&by_value, &by_fields] {
                    let emitted = run(transform, &agreed, &input());
                    assert_eq!(emitted.len(), 2);
                    assert_eq!(emitted[1].output, "copy");
                    for one in emitted {
                        assert_eq!(one.patch.is_some(), patches, "{form:?}");
                        assert_eq!(host_reads(&input(), one), expected, "{form:?} {patches}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_fields_transform_fails_an_event_that_is_not_an_object() {
        let transform = TransformFn::Fields(Box::new(|event: Fields, _: &Value| {
            Ok(vec![Emit::default_output(event)])
        }));
        let batch = proto::TransformBatch {
            batch_id: 1,
            events: vec![value::event_to_wire(
                &Value::from("text"),
                value::EventForm::Json,
            )],
        };
        let result = transform_batch(&transform, &agreed(value::EventForm::Json, true), batch);
        assert!(result.results[0].emitted.is_empty());
        assert!(result.results[0].error.contains("not an object"));
    }
}
