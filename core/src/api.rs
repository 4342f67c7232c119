//! `/health`, `/ready` and `/metrics`, and the health state behind `/ready`.
//!
//! The server is bounded so that no client can starve the pipeline: at most
//! `max_connections` connections are open (more wait in the kernel's listen queue,
//! costing no descriptor), a request's line and headers must arrive within
//! `header_read_timeout` and fit [`MAX_REQUEST_HEAD_BYTES`], and a connection on which
//! nothing moves for `idle_timeout` is closed.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde::{Deserialize, Deserializer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::checks;
use crate::metrics::ComponentKind;

/// The most a request's line and headers may take: hyper's read buffer, which is all
/// a connection holds of a request (the API reads no body; hyper discards one). The
/// API's requests are a few hundred bytes; hyper accepts no less than 8 KiB. A larger
/// head is answered with 431 and the connection closed.
pub const MAX_REQUEST_HEAD_BYTES: usize = 16 << 10;

/// How long accepting pauses after an error such as running out of descriptors, so the
/// loop does not spin while the condition lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// The `[api]` table: health, readiness and metrics over HTTP, and the server's limits.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Serve the API at all (default true).
    pub enabled: bool,
    /// Address to listen on (default `"127.0.0.1:8686"`).
    pub address: String,
    /// At most this many connections are open at once (default 256); further ones wait
    /// in the listen queue until one closes.
    #[serde(deserialize_with = "connection_count")]
    pub max_connections: usize,
    /// A connection must deliver a complete request line and headers within this time of
    /// opening, or of the previous response, or it is closed (default `"10s"`).
    #[serde(deserialize_with = "crate::units::positive_duration")]
    #[schemars(with = "String")]
    pub header_read_timeout: Duration,
    /// A connection on which no byte moves either way for this long is closed (default
    /// `"60s"`): a client that stops reading a response, or stalls mid-request.
    #[serde(deserialize_with = "crate::units::positive_duration")]
    #[schemars(with = "String")]
    pub idle_timeout: Duration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            enabled: true,
            address: "127.0.0.1:8686".into(),
            max_connections: 256,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// A connection count [`checks::count`] allows: zero connections would make the API
/// unreachable, and more than a semaphore holds would panic the server as it starts.
fn connection_count<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let connections = usize::deserialize(d)?;
    checks::count(connections, checks::MAX_COUNT).map_err(|problem| {
        let off = if connections == 0 {
            " (set `enabled = false` to turn the API off)"
        } else {
            ""
        };
        serde::de::Error::custom(format!("{problem}{off}"))
    })?;
    Ok(connections)
}

/// What is wrong with one component, by the part that reported it ([`Health::part`];
/// `""` for the component itself). Healthy when empty. Shared by the component's handles
/// and, once it is activated, by the registry: a problem reported before activation (a
/// sink's healthcheck still pending) shows from the first moment `/ready` sees it.
type Problems = Arc<Mutex<BTreeMap<&'static str, String>>>;

#[derive(Debug, Clone)]
struct ComponentHealth {
    serial: u64,
    kind: ComponentKind,
    problems: Problems,
}

/// Where the whole process is, for `/ready`: nothing but [`Phase::Running`] is ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The pipeline's components are being built and started.
    Starting = 0,
    /// Components report for themselves.
    Running = 1,
    /// SIGTERM: draining before exit.
    Draining = 2,
}

/// The health of every running component.
#[derive(Debug, Clone)]
pub struct HealthRegistry {
    components: Arc<Mutex<BTreeMap<String, ComponentHealth>>>,
    serials: Arc<AtomicU64>,
    phase: Arc<AtomicU8>,
}

impl Default for HealthRegistry {
    /// A registry whose readiness is its components' alone (tests, embedders).
    fn default() -> Self {
        HealthRegistry {
            components: Arc::default(),
            serials: Arc::default(),
            phase: Arc::new(AtomicU8::new(Phase::Running as u8)),
        }
    }
}

/// One component's handle on its own health.
#[derive(Debug, Clone)]
pub struct Health {
    id: String,
    kind: ComponentKind,
    serial: u64,
    registry: HealthRegistry,
    problems: Problems,
    /// The part of the component this handle reports for (`""`: the component itself).
    part: &'static str,
}

impl HealthRegistry {
    /// A registry that is not ready until [`HealthRegistry::started`]: `siemflow run`'s,
    /// whose API answers while the pipeline is still being built.
    pub fn starting() -> Self {
        let registry = HealthRegistry::default();
        registry.set_phase(Phase::Starting);
        registry
    }

    /// Every component has been started: from now on each reports for itself.
    pub fn started(&self) {
        self.set_phase(Phase::Running);
    }

    /// Shutting down: not ready again, whatever the components say, so no new work is
    /// routed here while the pipeline drains.
    pub fn draining(&self) {
        self.set_phase(Phase::Draining);
    }

    fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Release);
    }

    /// A health handle for a component about to start; it counts once activated.
    pub fn handle(&self, id: &str, kind: ComponentKind) -> Health {
        let serial = self.serials.fetch_add(1, Ordering::Relaxed);
        Health {
            id: id.to_string(),
            kind,
            serial,
            registry: self.clone(),
            problems: Problems::default(),
            part: "",
        }
    }

    /// Registers a component as healthy and returns its handle.
    pub fn register(&self, id: &str, kind: ComponentKind) -> Health {
        let health = self.handle(id, kind);
        health.activate();
        health
    }

    /// Ready when every registered component is healthy; otherwise the reasons.
    pub fn ready(&self) -> Result<(), Vec<String>> {
        match self.phase.load(Ordering::Acquire) {
            p if p == Phase::Starting as u8 => {
                return Err(vec![
                    "starting: the pipeline's components are being started".into(),
                ]);
            }
            p if p == Phase::Draining as u8 => {
                return Err(vec!["draining: shutting down".into()]);
            }
            _ => {}
        }
        let map = match self.components.lock() {
            Ok(map) => map,
            Err(_) => return Err(vec!["health state unavailable".into()]),
        };
        let problems: Vec<String> = map
            .iter()
            .filter_map(|(id, h)| {
                let problems = match h.problems.lock() {
                    Ok(problems) => problems,
                    Err(_) => return Some(format!("{} {id}: health state unavailable", h.kind)),
                };
                if problems.is_empty() {
                    return None;
                }
                let reasons: Vec<&str> = problems.values().map(String::as_str).collect();
                Some(format!("{} {id}: {}", h.kind, reasons.join("; ")))
            })
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

impl Health {
    /// Marks the component (or this handle's part of it) healthy.
    pub fn healthy(&self) {
        self.set(None);
    }

    /// Marks the component (or this handle's part of it) unhealthy with a reason shown
    /// by `/ready`.
    pub fn unhealthy(&self, reason: impl Into<String>) {
        self.set(Some(reason.into()));
    }

    /// A handle for one part of the component (a sink's disk buffer, say) whose health is
    /// kept apart: the component is healthy only when it and every part are, so neither
    /// clears the other's problem.
    pub fn part(&self, part: &'static str) -> Health {
        Health {
            part,
            ..self.clone()
        }
    }

    /// Makes this instance the one `/ready` reports for its id: healthy, unless it
    /// reported a problem already (before it started).
    pub fn activate(&self) {
        if let Ok(mut map) = self.registry.components.lock() {
            map.insert(
                self.id.clone(),
                ComponentHealth {
                    serial: self.serial,
                    kind: self.kind,
                    problems: Arc::clone(&self.problems),
                },
            );
        }
    }

    /// Forgets the component once it stopped (unless a newer instance took its id).
    pub fn deregister(&self) {
        if let Ok(mut map) = self.registry.components.lock()
            && map.get(&self.id).is_some_and(|e| e.serial == self.serial)
        {
            map.remove(&self.id);
        }
    }

    fn set(&self, problem: Option<String>) {
        // A deregistered instance's problems are no longer shared with the registry, so
        // an old instance cannot touch its successor's.
        if let Ok(mut problems) = self.problems.lock() {
            match problem {
                Some(reason) => problems.insert(self.part, reason),
                None => problems.remove(self.part),
            };
        }
    }
}

async fn health() -> &'static str {
    "ok\n"
}

async fn ready(State(registry): State<HealthRegistry>) -> (StatusCode, String) {
    match registry.ready() {
        Ok(()) => (StatusCode::OK, "ready\n".into()),
        Err(problems) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready\n{}\n", problems.join("\n")),
        ),
    }
}

async fn metrics() -> String {
    crate::metrics::prometheus().render()
}

/// Serves the API until `stop` is cancelled; returns the bound address.
pub async fn serve(
    config: &ApiConfig,
    registry: HealthRegistry,
    stop: CancellationToken,
) -> anyhow::Result<SocketAddr> {
    let address = &config.address;
    let listener = TcpListener::bind(address)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for the API on {address}: {e}"))?;
    let bound = listener.local_addr()?;
    tokio::spawn(accept_loop(
        listener,
        router(registry),
        config.clone(),
        stop,
    ));
    Ok(bound)
}

fn router(registry: HealthRegistry) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(registry)
}

/// hyper's HTTP/1 settings for every connection.
fn http(config: &ApiConfig) -> http1::Builder {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_buf_size(MAX_REQUEST_HEAD_BYTES);
    http
}

/// Accepts a connection whenever one of `max_connections` slots is free.
async fn accept_loop(
    listener: TcpListener,
    app: Router,
    config: ApiConfig,
    stop: CancellationToken,
) {
    let http = Arc::new(http(&config));
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let mut warned_full = false;
    loop {
        // At the cap nothing is accepted: further connections wait in the kernel's listen
        // queue, costing this process neither a descriptor nor memory.
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => return, // never closed
            },
            () = stop.cancelled() => return,
        };
        let full = slots.available_permits() == 0;
        if full && !warned_full {
            tracing::warn!(
                max_connections = config.max_connections,
                "API connection limit reached: further connections wait until one closes"
            );
        }
        warned_full = full;
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "API: cannot accept a connection");
                    // A refused or aborted connection is that client's affair; anything
                    // else (out of descriptors) lasts a while: do not spin on it.
                    if !is_connection_error(&e) {
                        tokio::select! {
                            () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => {}
                            () = stop.cancelled() => return,
                        }
                    }
                    continue;
                }
            },
            () = stop.cancelled() => return,
        };
        tokio::spawn(serve_connection(
            stream,
            app.clone(),
            Arc::clone(&http),
            config.idle_timeout,
            stop.clone(),
            slot,
        ));
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Serves one connection until it ends, idles for `idle_timeout` or `stop` lets its
/// request in progress finish; `_slot` frees its place when it closes.
async fn serve_connection<S>(
    stream: S,
    app: Router,
    http: Arc<http1::Builder>,
    idle_timeout: Duration,
    stop: CancellationToken,
    _slot: OwnedSemaphorePermit,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let stream = Tracked {
        stream,
        activity: Arc::clone(&activity),
    };
    let mut connection =
        pin!(http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app)));
    let mut stopping = false;
    loop {
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!(error = %e, "API connection closed");
                }
                return;
            }
            () = activity.idle(idle_timeout) => {
                tracing::debug!(?idle_timeout, "API connection idle: closed");
                return;
            }
            () = stop.cancelled(), if !stopping => {
                stopping = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

/// When a connection last moved a byte: hyper has no idle timeout of its own (its header
/// read timeout covers only the wait for a request).
struct Activity {
    opened: Instant,
    /// Milliseconds from `opened` to the last byte read or written.
    last_millis: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            opened: Instant::now(),
            last_millis: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let millis = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_millis.store(millis, Ordering::Relaxed);
    }

    /// Resolves once no byte moved for `limit`.
    async fn idle(&self, limit: Duration) {
        loop {
            let last = Duration::from_millis(self.last_millis.load(Ordering::Relaxed));
            let deadline = self.opened + last + limit;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// A connection's stream that records its [`Activity`].
struct Tracked<S> {
    stream: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Serves one connection over an in-memory stream whose buffers hold `buffer` bytes;
    /// returns the client's end and the serving task.
    fn serve_in_memory(
        config: &ApiConfig,
        buffer: usize,
    ) -> (tokio::io::DuplexStream, tokio::task::JoinHandle<()>) {
        let (client, server) = tokio::io::duplex(buffer);
        let slot = Arc::new(Semaphore::new(1))
            .try_acquire_owned()
            .expect("a free slot");
        let task = tokio::spawn(serve_connection(
            server,
            router(HealthRegistry::default()),
            Arc::new(http(config)),
            config.idle_timeout,
            CancellationToken::new(),
            slot,
        ));
        (client, task)
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_sends_nothing_is_closed_after_the_header_read_timeout() {
        let config = ApiConfig::default();
        let opened = Instant::now();
        let (_client, task) = serve_in_memory(&config, 4096);
        task.await.expect("served");
        assert_eq!(opened.elapsed(), config.header_read_timeout);
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_stops_reading_is_closed_after_the_idle_timeout() {
        let config = ApiConfig::default();
        // The response does not fit the 64-byte buffer: the server's write waits on a
        // client that never reads, and only the idle timeout ends that.
        let (mut client, task) = serve_in_memory(&config, 64);
        client
            .write_all(b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("request");
        let opened = Instant::now();
        task.await.expect("served");
        assert_eq!(opened.elapsed(), config.idle_timeout);
    }

    #[tokio::test(start_paused = true)]
    async fn an_oversize_request_head_is_refused() {
        let (mut client, task) = serve_in_memory(&ApiConfig::default(), 1 << 20);
        let padding = "x".repeat(MAX_REQUEST_HEAD_BYTES);
        let request = format!("GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: {padding}\r\n\r\n");
        client.write_all(request.as_bytes()).await.expect("request");
        let mut response = String::new();
        client
            .read_to_string(&mut response)
            .await
            .expect("response");
        assert!(response.starts_with("HTTP/1.1 431"), "{response}");
        task.await.expect("served");
    }

    #[tokio::test]
    async fn a_connection_over_the_cap_waits_for_a_free_slot() {
        let config = ApiConfig {
            address: "127.0.0.1:0".into(),
            max_connections: 1,
            header_read_timeout: Duration::from_millis(200),
            ..ApiConfig::default()
        };
        let stop = CancellationToken::new();
        let address = serve(&config, HealthRegistry::default(), stop.clone())
            .await
            .expect("serve");
        // The first connection takes the only slot and sends nothing.
        let started = Instant::now();
        let mut idle = tokio::net::TcpStream::connect(address)
            .await
            .expect("connect");
        let mut probe = tokio::net::TcpStream::connect(address)
            .await
            .expect("connect");
        probe
            .write_all(b"GET /health HTTP/1.0\r\n\r\n")
            .await
            .expect("request");
        let mut response = String::new();
        probe.read_to_string(&mut response).await.expect("response");
        assert!(response.ends_with("\r\n\r\nok\n"), "{response}");
        // The probe was answered only once the idle connection had been closed, which
        // the header read timeout does no sooner than its length after the idle one came.
        let waited = started.elapsed();
        assert!(
            waited >= config.header_read_timeout,
            "answered after {waited:?}, while the only slot was taken"
        );
        let mut byte = [0u8; 1];
        let closed = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut byte)).await;
        assert!(matches!(closed, Ok(Ok(0))), "closed by then: {closed:?}");
        stop.cancel();
    }

    #[test]
    fn limits_have_defaults_and_refuse_zero() {
        let config: ApiConfig = toml::from_str("").expect("defaults");
        assert_eq!(config, ApiConfig::default());
        let config: ApiConfig = toml::from_str(
            "max_connections = 8\nheader_read_timeout = \"2s\"\nidle_timeout = \"5s\"",
        )
        .expect("set");
        assert_eq!(
            (
                config.max_connections,
                config.header_read_timeout,
                config.idle_timeout
            ),
            (8, Duration::from_secs(2), Duration::from_secs(5))
        );
        let error = toml::from_str::<ApiConfig>("max_connections = 0")
            .expect_err("no connection")
            .to_string();
        assert!(
            error.contains("must be between 1 and 4294967295, not 0")
                && error.contains("set `enabled = false`"),
            "{error}"
        );
        // More than a semaphore holds: refused here rather than panicking the server.
        let error = toml::from_str::<ApiConfig>("max_connections = 2305843009213693952")
            .expect_err("too many")
            .to_string();
        assert!(
            error.contains("must be between 1 and 4294967295, not 2305843009213693952"),
            "{error}"
        );
        for zero in [
            "max_connections = 0",
            "header_read_timeout = \"0s\"",
            "idle_timeout = \"0s\"",
        ] {
            let error = toml::from_str::<ApiConfig>(zero)
                .expect_err(zero)
                .to_string();
            assert!(error.contains("must be"), "{zero}: {error}");
        }
    }

    #[test]
    fn a_replaced_component_keeps_the_new_health() {
        let registry = HealthRegistry::default();
        let old = registry.register("out", ComponentKind::Sink);
        let new = registry.register("out", ComponentKind::Sink);
        old.deregister();
        old.unhealthy("stale");
        assert!(
            registry.ready().is_ok(),
            "the old instance must not touch the new one"
        );
        new.unhealthy("disk full");
        let problems = registry.ready().expect_err("unhealthy");
        assert!(problems[0].contains("disk full"));
        new.deregister();
        assert!(registry.ready().is_ok());
    }

    #[test]
    fn a_problem_reported_before_activation_shows_from_activation_on() {
        let registry = HealthRegistry::default();
        let sink = registry.handle("out", ComponentKind::Sink);
        sink.part("healthcheck")
            .unhealthy("healthcheck pending: the peer has not answered yet");
        assert!(registry.ready().is_ok(), "not counted before activation");
        sink.activate();
        let problems = registry.ready().expect_err("pending");
        assert_eq!(
            problems,
            ["sink out: healthcheck pending: the peer has not answered yet"]
        );
        sink.part("healthcheck").healthy();
        assert!(registry.ready().is_ok());
    }

    #[test]
    fn not_ready_while_starting_or_draining_whatever_the_components_say() {
        let registry = HealthRegistry::starting();
        registry.register("out", ComponentKind::Sink);
        let problems = registry.ready().expect_err("starting");
        assert!(problems[0].starts_with("starting"), "{problems:?}");
        registry.started();
        assert!(registry.ready().is_ok());
        registry.draining();
        let problems = registry.ready().expect_err("draining");
        assert!(problems[0].starts_with("draining"), "{problems:?}");
    }

    #[test]
    fn a_part_and_its_component_do_not_clear_each_others_problems() {
        let registry = HealthRegistry::default();
        let sink = registry.register("out", ComponentKind::Sink);
        let buffer = sink.part("buffer");
        buffer.unhealthy("disk buffer cannot write: No space left on device");
        sink.unhealthy("cannot open out.log");
        sink.healthy();
        let problems = registry.ready().expect_err("the buffer still fails");
        assert_eq!(
            problems,
            ["sink out: disk buffer cannot write: No space left on device"]
        );
        sink.unhealthy("cannot open out.log");
        buffer.healthy();
        let problems = registry.ready().expect_err("the sink still fails");
        assert_eq!(problems, ["sink out: cannot open out.log"]);
        sink.healthy();
        assert!(registry.ready().is_ok());
    }
}
