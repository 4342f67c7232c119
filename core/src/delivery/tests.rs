//! The delivery loop against small scripted HTTP peers on loopback.

use std::io::Read as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::adaptive::AdaptiveConcurrency;
use super::*;
use crate::api::HealthRegistry;
use crate::buffer::{self, BufferConfig, BufferReceiver, BufferSender};
use crate::event::attach_ack;
use crate::fanout::Output;
use crate::http::TlsConfig;
use crate::metrics::{ComponentKind, ComponentLabels, ComponentMetrics};
use crate::plugin::ComponentContext;
use crate::testing::eventually;
use crate::{AckReceipt, BatchStatus, SinkContext, Value};

// ---------- the scripted peer ----------

#[derive(Clone, Default)]
struct Reply {
    status: u16,
    retry_after: Option<&'static str>,
    body: String,
    /// Hold the answer until the test opens the gate.
    hold: bool,
}

fn ok() -> Reply {
    Reply {
        status: 200,
        ..Reply::default()
    }
}

fn status(code: u16) -> Reply {
    Reply {
        status: code,
        body: format!("status {code}"),
        ..Reply::default()
    }
}

type Responder = dyn Fn(usize, &[String]) -> Reply + Send + Sync;

struct Peer {
    respond: Box<Responder>,
    requests: Mutex<Vec<(Vec<String>, bool)>>,
    count: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    gate: Semaphore,
}

impl Peer {
    fn lines(&self) -> Vec<String> {
        let requests = self.requests.lock().expect("lock");
        requests
            .iter()
            .flat_map(|(lines, _)| lines.clone())
            .collect()
    }

    fn request_count(&self) -> usize {
        self.requests.lock().expect("lock").len()
    }
}

async fn handle(
    State(peer): State<Arc<Peer>>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let gzip = headers
        .get("content-encoding")
        .is_some_and(|v| v.as_bytes() == b"gzip");
    let text = if gzip {
        let mut out = String::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_string(&mut out)
            .expect("valid gzip");
        out
    } else {
        String::from_utf8(body.to_vec()).expect("utf-8")
    };
    let lines: Vec<String> = text.split('\n').map(str::to_string).collect();
    let n = peer.count.fetch_add(1, Ordering::SeqCst);
    let now = peer.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    peer.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let reply = (peer.respond)(n, &lines);
    peer.requests.lock().expect("lock").push((lines, gzip));
    if reply.hold {
        peer.gate.acquire().await.expect("gate").forget();
    }
    peer.in_flight.fetch_sub(1, Ordering::SeqCst);
    let mut response_headers = HeaderMap::new();
    if let Some(wait) = reply.retry_after {
        response_headers.insert("retry-after", wait.parse().expect("header"));
    }
    (
        StatusCode::from_u16(reply.status).expect("status"),
        response_headers,
        reply.body,
    )
}

async fn peer(
    respond: impl Fn(usize, &[String]) -> Reply + Send + Sync + 'static,
) -> (Arc<Peer>, String) {
    let peer = Arc::new(Peer {
        respond: Box::new(respond),
        requests: Mutex::new(Vec::new()),
        count: AtomicUsize::new(0),
        in_flight: AtomicUsize::new(0),
        max_in_flight: AtomicUsize::new(0),
        gate: Semaphore::new(0),
    });
    let app = Router::new()
        .route("/", post(handle))
        .with_state(Arc::clone(&peer));
    let url = format!("http://{}/", crate::testing::serve(app).await);
    (peer, url)
}

// ---------- a line protocol over the shared machinery ----------

struct Lines {
    http: HttpClient,
    url: String,
    compression: Compression,
    /// Accepted requests whose confirmation fails, before confirmations succeed.
    unconfirmed: AtomicUsize,
}

impl Protocol for Lines {
    fn encode(&self, event: &Event, out: &mut Vec<u8>) -> Result<String, Rejection> {
        let message = event
            .value
            .as_object()
            .and_then(|o| o.get("message"))
            .map(|v| v.to_string_lossy().into_owned())
            .unwrap_or_default();
        if message == "unencodable" {
            return Err(Rejection::new("encoding_failed", "cannot encode this one"));
        }
        out.extend_from_slice(message.as_bytes());
        Ok(event
            .value
            .as_object()
            .and_then(|o| o.get("p"))
            .map(|v| v.to_string_lossy().into_owned())
            .unwrap_or_default())
    }

    async fn send(&self, request: Request<'_>) -> Outcome {
        let body = self.compression.compress(request.body(b"", b"\n", b""));
        let mut builder = self.http.inner().post(&self.url).body(body);
        if let Some(encoding) = self.compression.content_encoding() {
            builder = builder.header("content-encoding", encoding);
        }
        let response = match self.http.send(builder).await {
            Ok(response) => response,
            Err(failure) => return Outcome::Failed(failure),
        };
        if let Some(failure) =
            Failure::from_status(response.status, &response.headers, &response.body)
        {
            return Outcome::Failed(failure);
        }
        if let Some(list) = std::str::from_utf8(&response.body)
            .ok()
            .and_then(|b| b.strip_prefix("per-event:"))
        {
            return Outcome::PerEvent(
                list.split(',')
                    .map(|word| match word {
                        "ok" => EventOutcome::Delivered,
                        "resend" => EventOutcome::Resend,
                        "retry" => EventOutcome::Retry(Failure::retry("item busy")),
                        _ => EventOutcome::Rejected(Rejection::new("rejected", word.to_string())),
                    })
                    .collect(),
            );
        }
        let unconfirmed = self
            .unconfirmed
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if unconfirmed {
            return Outcome::Accepted(Box::pin(async { Err(Failure::retry("not confirmed")) }));
        }
        Outcome::Accepted(Box::pin(async { Ok(()) }))
    }

    async fn healthcheck(&self) -> Result<(), Failure> {
        Ok(())
    }
}

// ---------- driving a sink ----------

struct Sink {
    input: BufferSender,
    health: HealthRegistry,
    dead: BufferReceiver,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    abort: CancellationToken,
}

fn labels() -> ComponentLabels {
    ComponentLabels {
        id: "lines".into(),
        kind: ComponentKind::Sink,
        type_name: "lines".into(),
    }
}

fn settings(tweak: impl FnOnce(&mut Settings)) -> Settings {
    let mut settings = Settings::new(
        &BatchConfig {
            max_events: 100,
            max_bytes: 1 << 20,
            timeout: Duration::from_millis(20),
        },
        Concurrency::Fixed(2),
        &RetryConfig {
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
            max_duration: Duration::from_secs(600),
        },
        &HealthcheckConfig {
            enabled: false,
            ..HealthcheckConfig::default()
        },
    );
    tweak(&mut settings);
    settings
}

fn start(url: &str, settings: Settings, compression: Compression, unconfirmed: usize) -> Sink {
    start_with(url, settings, compression, unconfirmed, None)
}

/// A sink whose metrics go to `recorder` (when given) rather than the process's.
fn start_with(
    url: &str,
    settings: Settings,
    compression: Compression,
    unconfirmed: usize,
    recorder: Option<&metrics_exporter_prometheus::PrometheusRecorder>,
) -> Sink {
    let labels = labels();
    let (input, receiver) = buffer::channel(&BufferConfig::default(), &labels);
    let (dead_tx, dead) = buffer::channel(&BufferConfig::default(), &labels);
    let targets = crate::fanout::Targets::new(vec![("dead".to_string(), dead_tx)]);
    let health = HealthRegistry::default();
    let abort = CancellationToken::new();
    let cx = SinkContext {
        component: ComponentContext {
            id: "lines".into(),
            state_dir: std::env::temp_dir(),
            metrics: ComponentMetrics::new(labels.clone()),
        },
        input: receiver,
        outputs: vec![Output::new(Some(DEAD_LETTER.into()), targets, &labels)],
        health: health.register("lines", ComponentKind::Sink),
        abort: abort.clone(),
    };
    let protocol = Lines {
        http: HttpClient::new(
            &TlsConfig::default(),
            Duration::from_secs(30),
            None,
            &labels,
        )
        .expect("client"),
        url: url.to_string(),
        compression,
        unconfirmed: AtomicUsize::new(unconfirmed),
    };
    Sink {
        input,
        health,
        dead,
        task: match recorder {
            Some(recorder) => {
                let metrics =
                    ::metrics::with_local_recorder(recorder, || DeliveryMetrics::new(&labels));
                tokio::spawn(run::run_with(protocol, settings, cx, metrics))
            }
            None => tokio::spawn(run(protocol, settings, cx)),
        },
        abort,
    }
}

fn events(messages: &[&str]) -> (crate::Batch, AckReceipt) {
    let mut batch: crate::Batch = messages.iter().map(|m| Event::from_message(*m)).collect();
    let receipt = attach_ack(&mut batch);
    (batch, receipt)
}

impl Sink {
    async fn finish(self) -> BufferReceiver {
        drop(self.input);
        self.task.await.expect("task").expect("sink");
        self.dead
    }
}

// ---------- tests ----------

#[tokio::test]
async fn delivers_once_and_acknowledges() {
    let (peer, url) = peer(|_, _| ok()).await;
    let sink = start(&url, settings(|_| {}), Compression::None, 0);
    let (batch, receipt) = events(&["a", "b", "c"]);
    sink.input.send(batch).await.expect("open");
    assert_eq!(
        receipt.await,
        BatchStatus::Delivered,
        "the partial batch goes out on its timeout"
    );
    sink.finish().await;
    assert_eq!(peer.lines(), ["a", "b", "c"]);
}

#[tokio::test]
async fn gzip_bodies() {
    let (peer, url) = peer(|_, _| ok()).await;
    let sink = start(&url, settings(|_| {}), Compression::Gzip, 0);
    let (batch, receipt) = events(&["one", "two"]);
    sink.input.send(batch).await.expect("open");
    assert_eq!(receipt.await, BatchStatus::Delivered);
    sink.finish().await;
    let requests = peer.requests.lock().expect("lock").clone();
    assert_eq!(
        requests,
        [(vec!["one".to_string(), "two".to_string()], true)]
    );
}

#[tokio::test]
async fn batches_by_events_and_partition() {
    let (peer, url) = peer(|_, _| ok()).await;
    let sink = start(
        &url,
        settings(|s| {
            s.batch.max_events = 2;
            s.batch.timeout = Duration::from_secs(3600);
        }),
        Compression::None,
        0,
    );
    let mut batch = Vec::new();
    for (message, p) in [("a1", "a"), ("b1", "b"), ("a2", "a"), ("a3", "a")] {
        let mut event = Event::from_message(message);
        if let Value::Object(object) = &mut event.value {
            object.insert("p".into(), p.into());
        }
        batch.push(event);
    }
    let receipt = attach_ack(&mut batch);
    sink.input.send(batch).await.expect("open");
    // The first two of partition `a` fill a batch at once; the rest wait for the end.
    eventually("a full batch", || peer.request_count() == 1).await;
    assert_eq!(peer.lines(), ["a1", "a2"]);
    sink.finish().await;
    assert_eq!(receipt.await, BatchStatus::Delivered);
    let mut requests: Vec<Vec<String>> = peer
        .requests
        .lock()
        .expect("lock")
        .iter()
        .map(|(lines, _)| lines.clone())
        .collect();
    requests.sort();
    assert_eq!(requests, [vec!["a1", "a2"], vec!["a3"], vec!["b1"]]);
}

#[tokio::test]
async fn retry_after_replaces_the_backoff() {
    // The backoff is an hour: only honouring `Retry-After: 1` lets the test finish.
    let (peer, url) = peer(|n, _| match n {
        0 => Reply {
            retry_after: Some("1"),
            ..status(503)
        },
        _ => ok(),
    })
    .await;
    let sink = start(
        &url,
        settings(|s| {
            s.retry.initial_backoff = Duration::from_secs(3600);
            s.retry.max_backoff = Duration::from_secs(3600);
            s.retry.max_duration = Duration::from_secs(7200);
        }),
        Compression::None,
        0,
    );
    let (batch, receipt) = events(&["x"]);
    sink.input.send(batch).await.expect("open");
    assert_eq!(receipt.await, BatchStatus::Delivered);
    sink.finish().await;
    assert_eq!(peer.request_count(), 2);
    assert_eq!(peer.lines(), ["x", "x"]);
}

#[tokio::test]
async fn max_duration_fails_the_batch_back() {
    let (peer, url) = peer(|_, _| status(503)).await;
    let sink = start(
        &url,
        settings(|s| s.retry.max_duration = Duration::from_millis(100)),
        Compression::None,
        0,
    );
    let (batch, receipt) = events(&["x", "y"]);
    sink.input.send(batch).await.expect("open");
    assert_eq!(receipt.await, BatchStatus::Failed);
    let mut dead = sink.finish().await;
    assert!(peer.request_count() >= 1);
    assert!(
        dead.try_recv().is_none(),
        "a failed batch is not dead-lettered"
    );
}

#[tokio::test]
async fn config_errors_make_the_sink_unhealthy_until_fixed() {
    let (peer, url) = peer(|n, _| match n {
        0 => status(401),
        _ => Reply { hold: true, ..ok() },
    })
    .await;
    let sink = start(&url, settings(|_| {}), Compression::None, 0);
    let (batch, receipt) = events(&["x"]);
    sink.input.send(batch).await.expect("open");
    // The retry is held by the peer: the sink must have reported the 401 before it.
    eventually("the retry", || peer.request_count() == 2).await;
    let problems = sink.health.ready().expect_err("unhealthy");
    assert!(problems[0].contains("401"), "{problems:?}");
    peer.gate.add_permits(1);
    assert_eq!(receipt.await, BatchStatus::Delivered);
    assert!(
        sink.health.ready().is_ok(),
        "a delivery makes it healthy again"
    );
    sink.finish().await;
}

#[tokio::test]
async fn data_errors_are_dead_lettered_with_the_response() {
    let (peer, url) = peer(|_, _| Reply {
        body: "{\"error\":\"bad record\"}".into(),
        ..status(400)
    })
    .await;
    let sink = start(&url, settings(|_| {}), Compression::None, 0);
    let (batch, receipt) = events(&["bad", "unencodable"]);
    sink.input.send(batch).await.expect("open");
    let mut dead = sink.finish().await;
    assert_eq!(peer.lines(), ["bad"], "sent once, never retried");
    let mut dropped = Vec::new();
    while let Some(batch) = dead.try_recv() {
        dropped.extend(batch);
    }
    assert_eq!(dropped.len(), 2);
    let annotations: Vec<serde_json::Value> = dropped
        .iter()
        .map(|e| serde_json::to_value(&e.value).expect("json")["metadata"]["dropped"].clone())
        .collect();
    let encoding = annotations
        .iter()
        .find(|a| a["reason"] == "encoding_failed")
        .expect("the unencodable event");
    assert_eq!(encoding["component_kind"], "sink");
    let rejected = annotations
        .iter()
        .find(|a| a["reason"] == "rejected")
        .expect("the rejected event");
    assert_eq!(rejected["response"]["status"], 400);
    assert_eq!(rejected["response"]["body"], "{\"error\":\"bad record\"}");
    // The dead letters keep their acks: their consumer settles them.
    crate::event::resolve_batch(dropped, BatchStatus::Delivered);
    assert_eq!(receipt.await, BatchStatus::Delivered);
}

#[tokio::test]
async fn too_large_requests_are_split_and_a_lone_giant_dead_lettered() {
    let (peer, url) = peer(|_, lines| {
        if lines.len() > 2 || lines.iter().any(|l| l == "giant") {
            status(413)
        } else {
            ok()
        }
    })
    .await;
    let sink = start(&url, settings(|_| {}), Compression::None, 0);
    let (batch, receipt) = events(&["1", "2", "giant", "4", "5"]);
    sink.input.send(batch).await.expect("open");
    let mut dead = sink.finish().await;
    let dropped = dead.try_recv().expect("the giant");
    assert_eq!(dropped.len(), 1);
    let annotation = serde_json::to_value(&dropped[0].value).expect("json");
    assert_eq!(annotation["message"], "giant");
    assert_eq!(annotation["metadata"]["dropped"]["reason"], "too_large");
    crate::event::resolve_batch(dropped, BatchStatus::Delivered);
    assert_eq!(receipt.await, BatchStatus::Delivered);
    let delivered: Vec<String> = peer
        .requests
        .lock()
        .expect("lock")
        .iter()
        .filter(|(lines, _)| lines.len() <= 2 && !lines.contains(&"giant".to_string()))
        .flat_map(|(lines, _)| lines.clone())
        .collect();
    assert_eq!(
        delivered,
        ["1", "2", "4", "5"],
        "each delivered exactly once, in order"
    );
}

#[tokio::test]
async fn per_event_results_resend_retry_and_reject() {
    let (peer, url) = peer(|n, _| match n {
        0 => Reply {
            body: "per-event:ok,poison,resend,retry".into(),
            ..ok()
        },
        _ => ok(),
    })
    .await;
    let sink = start(&url, settings(|_| {}), Compression::None, 0);
    let (batch, receipt) = events(&["a", "b", "c", "d"]);
    sink.input.send(batch).await.expect("open");
    let mut dead = sink.finish().await;
    let requests: Vec<Vec<String>> = peer
        .requests
        .lock()
        .expect("lock")
        .iter()
        .map(|(lines, _)| lines.clone())
        .collect();
    assert_eq!(requests, [vec!["a", "b", "c", "d"], vec!["c", "d"]]);
    let dropped = dead.try_recv().expect("b");
    assert_eq!(
        serde_json::to_value(&dropped[0].value).expect("json")["message"],
        "b"
    );
    crate::event::resolve_batch(dropped, BatchStatus::Delivered);
    assert_eq!(receipt.await, BatchStatus::Delivered);
}

#[tokio::test]
async fn an_unconfirmed_request_is_sent_again() {
    let (peer, url) = peer(|_, _| ok()).await;
    let sink = start(&url, settings(|_| {}), Compression::None, 1);
    let (batch, receipt) = events(&["x"]);
    sink.input.send(batch).await.expect("open");
    assert_eq!(receipt.await, BatchStatus::Delivered);
    sink.finish().await;
    assert_eq!(peer.lines(), ["x", "x"]);
}

#[tokio::test]
async fn concurrency_is_bounded() {
    let (peer, url) = peer(|_, _| Reply { hold: true, ..ok() }).await;
    let sink = start(
        &url,
        settings(|s| {
            s.concurrency = Concurrency::Fixed(3);
            s.batch.max_events = 1;
        }),
        Compression::None,
        0,
    );
    let names: Vec<String> = (0..10).map(|i| i.to_string()).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let (batch, receipt) = events(&names);
    sink.input.send(batch).await.expect("open");
    eventually("three requests in flight", || {
        peer.in_flight.load(Ordering::SeqCst) == 3
    })
    .await;
    peer.gate.add_permits(1000);
    assert_eq!(receipt.await, BatchStatus::Delivered);
    sink.finish().await;
    assert_eq!(peer.max_in_flight.load(Ordering::SeqCst), 3);
    let mut lines = peer.lines();
    lines.sort_by_key(|l| l.parse::<u32>().expect("number"));
    assert_eq!(lines, names);
}

#[tokio::test]
async fn abort_fails_what_is_unfinished() {
    let (_peer, url) = peer(|_, _| Reply { hold: true, ..ok() }).await;
    let sink = start(&url, settings(|_| {}), Compression::None, 0);
    let (batch, receipt) = events(&["x"]);
    sink.input.send(batch).await.expect("open");
    sink.abort.cancel();
    assert_eq!(receipt.await, BatchStatus::Failed);
    sink.task.await.expect("task").expect("sink");
}

// ---------- adaptive concurrency ----------

/// A peer with a fixed capacity: `workers` requests at once, 10 ms each, the rest queue
/// (their round trip grows); above `busy_above` in flight it answers 503 at once.
struct Capacity {
    workers: Semaphore,
    busy_above: Option<usize>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    lines: AtomicUsize,
}

async fn capacity_handle(State(peer): State<Arc<Capacity>>, body: Bytes) -> StatusCode {
    let now = peer.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    peer.max_in_flight.fetch_max(now, Ordering::SeqCst);
    if peer.busy_above.is_some_and(|limit| now > limit) {
        peer.in_flight.fetch_sub(1, Ordering::SeqCst);
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    {
        let _worker = peer.workers.acquire().await.expect("workers");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let lines = body.split(|b| *b == b'\n').count();
    peer.lines.fetch_add(lines, Ordering::SeqCst);
    peer.in_flight.fetch_sub(1, Ordering::SeqCst);
    StatusCode::OK
}

async fn capacity_peer(workers: usize, busy_above: Option<usize>) -> (Arc<Capacity>, String) {
    let peer = Arc::new(Capacity {
        workers: Semaphore::new(workers),
        busy_above,
        in_flight: AtomicUsize::new(0),
        max_in_flight: AtomicUsize::new(0),
        lines: AtomicUsize::new(0),
    });
    let app = Router::new()
        .route("/", post(capacity_handle))
        .with_state(Arc::clone(&peer));
    let url = format!("http://{}/", crate::testing::serve(app).await);
    (peer, url)
}

/// Sends `total` one-event requests through an adaptive sink and waits until every
/// event is delivered; returns the final `adaptive_concurrency_limit`.
async fn drive_adaptive(url: &str, adaptive: AdaptiveConcurrency, total: usize) -> f64 {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let sink = start_with(
        url,
        settings(|s| {
            s.concurrency = Concurrency::Adaptive(adaptive);
            s.batch.max_events = 1;
        }),
        Compression::None,
        0,
        Some(&recorder),
    );
    let mut receipts = Vec::new();
    let names: Vec<String> = (0..100).map(|i| i.to_string()).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    for _ in 0..total / 100 {
        let (batch, receipt) = events(&names);
        sink.input.send(batch).await.expect("open");
        receipts.push(receipt);
    }
    for receipt in receipts {
        assert_eq!(receipt.await, BatchStatus::Delivered);
    }
    sink.finish().await;
    gauge(&handle, "adaptive_concurrency_limit")
}

fn gauge(handle: &metrics_exporter_prometheus::PrometheusHandle, name: &str) -> f64 {
    handle
        .render()
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .and_then(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no {name} in the metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adaptive_settles_near_the_peer_capacity() {
    let total = 1500;
    let (peer, url) = capacity_peer(6, None).await;
    let limit = drive_adaptive(&url, AdaptiveConcurrency::default(), total).await;
    assert_eq!(
        peer.lines.load(Ordering::SeqCst),
        total,
        "every event delivered"
    );
    assert!(
        (3.0..=12.0).contains(&limit),
        "the limit settles near the six the peer serves at once, not {limit}"
    );
    let seen = peer.max_in_flight.load(Ordering::SeqCst);
    assert!(seen > 1, "the limit grew from 1: {seen} at once at most");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adaptive_never_passes_its_max() {
    let total = 800;
    let (peer, url) = capacity_peer(1000, None).await;
    let adaptive = AdaptiveConcurrency {
        max: 5,
        ..AdaptiveConcurrency::default()
    };
    let limit = drive_adaptive(&url, adaptive, total).await;
    assert!(limit <= 5.0, "{limit}");
    let seen = peer.max_in_flight.load(Ordering::SeqCst);
    assert!(
        (2..=5).contains(&seen),
        "it grew, and never past max = 5: {seen} at once at most"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adaptive_backs_off_a_peer_that_answers_503() {
    let total = 1500;
    let (peer, url) = capacity_peer(1000, Some(4)).await;
    let limit = drive_adaptive(&url, AdaptiveConcurrency::default(), total).await;
    assert_eq!(
        peer.lines.load(Ordering::SeqCst),
        total,
        "every event delivered"
    );
    assert!(
        limit <= 6.0,
        "the limit ends at the peer's 4, or a probe or two above: {limit}"
    );
}
