//! In-process tests of the opentelemetry source: a tonic client and an HTTP client
//! against the real listeners, a test buffer standing for the sinks.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use prost::Message as _;
use siemflow_core::event::resolve_batch;
use siemflow_core::otlp::ExportLogsServiceRequest;
use siemflow_core::{BatchStatus, SourceConfig as _};
use tonic::codec::CompressionEncoding;
use tonic_types::StatusExt as _;

use super::OpenTelemetrySourceConfig;
use crate::testing::{PATIENCE, RunningSource, eventually, next_batch};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

struct Running {
    source: RunningSource,
    grpc: String,
    http: String,
    _dir: tempfile::TempDir,
}

/// The source on two fresh ports, with `extra` options.
async fn start(id: &str, extra: &str) -> Running {
    let (grpc, http) = (free_port(), free_port());
    let config: OpenTelemetrySourceConfig = toml::from_str(&format!(
        "grpc = {{ address = \"127.0.0.1:{grpc}\" }}\nhttp = {{ address = \"127.0.0.1:{http}\" }}\n{extra}"
    ))
    .expect("config");
    assert!(config.check().is_empty());
    let dir = tempfile::tempdir().expect("tempdir");
    let source = RunningSource::start(id, "opentelemetry", dir.path(), 10_000, |cx| {
        config.build(cx)
    });
    let running = Running {
        source,
        grpc: format!("http://127.0.0.1:{grpc}"),
        http: format!("http://127.0.0.1:{http}/v1/logs"),
        _dir: dir,
    };
    // Listening once a connection is accepted.
    eventually("the OTLP listeners", || {
        [grpc, http]
            .iter()
            .all(|&port| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok())
    })
    .await;
    running
}

fn request(records: usize) -> ExportLogsServiceRequest {
    let text = |t: &str| AnyValue {
        value: Some(any_value::Value::StringValue(t.into())),
    };
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: None,
            scope_logs: vec![ScopeLogs {
                scope: None,
                log_records: (0..records)
                    .map(|i| LogRecord {
                        observed_time_unix_nano: 1_767_225_600_000_000_000,
                        body: Some(text(&format!("record {i}"))),
                        attributes: vec![KeyValue {
                            key: "i".into(),
                            value: Some(AnyValue {
                                value: Some(any_value::Value::IntValue(i as i64)),
                            }),
                            key_strindex: 0,
                        }],
                        ..LogRecord::default()
                    })
                    .collect(),
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

async fn client(running: &Running) -> LogsServiceClient<tonic::transport::Channel> {
    LogsServiceClient::connect(running.grpc.clone())
        .await
        .expect("connect")
        .send_compressed(CompressionEncoding::Gzip)
}

#[tokio::test]
async fn grpc_answers_only_once_the_sinks_delivered() {
    let mut running = start("otlp_grpc_ack", "").await;
    let mut client = client(&running).await;
    let export = tokio::spawn(async move { client.export(request(3)).await });
    let batch = next_batch(&mut running.source.rx).await;
    assert_eq!(batch.len(), 3);
    let first = serde_json::to_value(&batch[0].value).expect("json");
    assert_eq!(first["message"], "record 0");
    assert_eq!(first["attributes"]["i"], 0);
    assert_eq!(first["timestamp"], "2026-01-01T00:00:00Z");
    // The events are in the pipeline, not yet delivered: no answer can have been given.
    assert!(!export.is_finished());
    resolve_batch(batch, BatchStatus::Delivered);
    let response = export.await.expect("task").expect("ok").into_inner();
    assert_eq!(response.partial_success, None);

    // Delivery failed: UNAVAILABLE with RetryInfo, in both places senders look for it.
    let mut client = self::client(&running).await;
    let export = tokio::spawn(async move { client.export(request(2)).await });
    let batch = next_batch(&mut running.source.rx).await;
    resolve_batch(batch, BatchStatus::Failed);
    let status = export.await.expect("task").expect_err("failed");
    assert_eq!(status.code(), tonic::Code::Unavailable);
    let retry = status.get_details_retry_info().expect("RetryInfo");
    assert_eq!(retry.retry_delay, Some(Duration::from_secs(1)));
    assert!(
        status
            .metadata()
            .get_bin("google.rpc.retryinfo-bin")
            .is_some()
    );
    assert_eq!(
        running
            .source
            .counter("otlp_requests_total", "status=\"undelivered\""),
        1
    );
    running
        .source
        .stop(PATIENCE, |_| panic!("nothing more"))
        .await;
}

#[tokio::test]
async fn a_full_pipeline_is_answered_retry_later_without_taking_the_request() {
    let mut running = start("otlp_busy", "max_pending_events = 5\nretry_delay = \"3s\"").await;
    let mut first = client(&running).await;
    let pending = tokio::spawn(async move { first.export(request(5)).await });
    let batch = next_batch(&mut running.source.rx).await;
    // Five events wait for delivery: the next request is refused at once.
    let status = client(&running)
        .await
        .export(request(1))
        .await
        .expect_err("busy");
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(
        status.get_details_retry_info().and_then(|r| r.retry_delay),
        Some(Duration::from_secs(3))
    );
    let http = reqwest::Client::new()
        .post(&running.http)
        .header("content-type", "application/x-protobuf")
        .body(request(1).encode_to_vec())
        .send()
        .await
        .expect("http");
    assert_eq!(http.status(), 503);
    assert_eq!(http.headers()["retry-after"], "3");
    resolve_batch(batch, BatchStatus::Delivered);
    pending.await.expect("task").expect("delivered");
    // Room again.
    let mut client = client(&running).await;
    let export = tokio::spawn(async move { client.export(request(1)).await });
    resolve_batch(
        next_batch(&mut running.source.rx).await,
        BatchStatus::Delivered,
    );
    export.await.expect("task").expect("delivered");
    running
        .source
        .stop(PATIENCE, |_| panic!("nothing more"))
        .await;
}

#[tokio::test]
async fn grpc_refuses_bad_and_oversized_data_as_not_retryable() {
    let running = start("otlp_grpc_bad", "max_request_bytes = \"64KiB\"").await;
    // Larger than the limit as sent (uncompressed).
    let status = client(&running)
        .await
        .send_compressed(CompressionEncoding::Gzip)
        .export(request(5_000))
        .await
        .expect_err("too large once decompressed");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    let mut plain = LogsServiceClient::connect(running.grpc.clone())
        .await
        .expect("connect");
    let status = plain.export(request(5_000)).await.expect_err("too large");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");

    // Not protobuf: a raw gRPC frame of garbage over HTTP/2.
    let mut frame = vec![0u8];
    let garbage = [0xffu8; 16];
    frame.extend_from_slice(&(garbage.len() as u32).to_be_bytes());
    frame.extend_from_slice(&garbage);
    let response = raw_export(&running.grpc, None, frame).await;
    assert_eq!(response.headers()["grpc-status"], "3", "{response:?}");

    // A compression tonic does not take: UNIMPLEMENTED, as tonic answers it.
    let response = raw_export(&running.grpc, Some("snappy"), vec![1, 0, 0, 0, 0]).await;
    assert_eq!(response.headers()["grpc-status"], "12", "{response:?}");

    // Refused before the service ran, and counted all the same.
    for (status, count) in [
        ("too_large", 2),
        ("malformed", 1),
        ("unsupported_encoding", 1),
    ] {
        assert_eq!(
            running
                .source
                .counter("otlp_requests_total", &format!("status=\"{status}\"")),
            count,
            "{status}"
        );
    }
    running.source.stop(PATIENCE, |_| {}).await;
}

/// An Export call written by hand over HTTP/2 (what tonic's client would not send): `frame`
/// as the body, with `grpc-encoding` when given.
async fn raw_export(grpc: &str, encoding: Option<&str>, frame: Vec<u8>) -> reqwest::Response {
    let mut request = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("client")
        .post(format!(
            "{grpc}/opentelemetry.proto.collector.logs.v1.LogsService/Export"
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(encoding) = encoding {
        request = request.header("grpc-encoding", encoding);
    }
    request.body(frame).send().await.expect("sent")
}

#[tokio::test]
async fn http_takes_protobuf_and_json_with_gzip_and_checks_what_it_is_sent() {
    let mut running = start("otlp_http", "bearer_token = \"t0ken\"").await;
    let http = reqwest::Client::new();
    let post = |content_type: &'static str, body: Vec<u8>| {
        http.post(&running.http)
            .header("content-type", content_type)
            .header("authorization", "Bearer t0ken")
            .body(body)
    };
    // Protobuf, gzip: taken, answered in protobuf once delivered.
    let gzipped = {
        use std::io::Write as _;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder
            .write_all(&request(4).encode_to_vec())
            .expect("gzip");
        encoder.finish().expect("gzip")
    };
    let sent = tokio::spawn(
        post("application/x-protobuf", gzipped)
            .header("content-encoding", "gzip")
            .send(),
    );
    let batch = next_batch(&mut running.source.rx).await;
    assert_eq!(batch.len(), 4);
    resolve_batch(batch, BatchStatus::Delivered);
    let response = sent.await.expect("task").expect("sent");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-protobuf");
    let body = response.bytes().await.expect("body");
    let decoded =
        siemflow_core::otlp::ExportLogsServiceResponse::decode(body.as_ref()).expect("response");
    assert_eq!(decoded.partial_success, None);

    // JSON with one undecodable record: the others are taken, the sender told of one.
    let json = br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[
        {"body":{"stringValue":"fine"}},{"severityNumber":"not a number"}]}]}]}"#;
    let sent = tokio::spawn(post("application/json; charset=utf-8", json.to_vec()).send());
    let batch = next_batch(&mut running.source.rx).await;
    assert_eq!(batch.len(), 1);
    resolve_batch(batch, BatchStatus::Delivered);
    let response = sent.await.expect("task").expect("sent");
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("json");
    // opentelemetry-proto writes this int64 as a JSON number (OTLP/JSON readers take
    // numbers or strings).
    assert_eq!(body["partialSuccess"]["rejectedLogRecords"], 1, "{body}");

    // What is refused, and how.
    let refused = |request: reqwest::RequestBuilder| async move {
        request.send().await.expect("sent").status().as_u16()
    };
    assert_eq!(
        refused(post("application/x-protobuf", vec![0xff, 0xff])).await,
        400
    );
    assert_eq!(refused(post("text/plain", b"hello".to_vec())).await, 415);
    // A content coding it does not take: 415 naming those it does (RFC 9110 §15.5.16),
    // which OTLP/HTTP senders do not retry.
    let response = post("application/x-protobuf", request(1).encode_to_vec())
        .header("content-encoding", "br")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 415);
    assert_eq!(response.headers()["accept-encoding"], "gzip, identity");
    assert_eq!(
        running
            .source
            .counter("otlp_requests_total", "status=\"unsupported_encoding\""),
        1
    );
    assert_eq!(
        refused(
            http.post(&running.http)
                .header("content-type", "application/json")
                .header("authorization", "Bearer wrong")
                .body("{}")
        )
        .await,
        401
    );
    assert_eq!(
        refused(post("application/json", vec![b' '; 5 << 20])).await,
        413
    );
    // An empty request (a sender's health check) succeeds with nothing sent on.
    assert_eq!(refused(post("application/json", b"{}".to_vec())).await, 200);
    running
        .source
        .stop(PATIENCE, |_| panic!("nothing more"))
        .await;
}

#[tokio::test]
async fn a_slow_delivery_is_answered_retry_later_and_holds_its_place() {
    let mut running = start(
        "otlp_slow",
        "delivery_timeout = \"200ms\"\nmax_pending_events = 3",
    )
    .await;
    let status = {
        let mut client = client(&running).await;
        let export = tokio::spawn(async move { client.export(request(3)).await });
        let batch = next_batch(&mut running.source.rx).await;
        let status = export
            .await
            .expect("task")
            .expect_err("not delivered in time");
        (status, batch)
    };
    let (status, batch) = status;
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert!(status.message().contains("delivery_timeout"), "{status:?}");
    // Its events still wait in the pipeline: a retry is turned away, not taken twice.
    let retry = client(&running)
        .await
        .export(request(3))
        .await
        .expect_err("busy");
    assert!(retry.message().contains("pipeline is full"), "{retry:?}");
    resolve_batch(batch, BatchStatus::Delivered);
    running
        .source
        .stop(PATIENCE, |_| panic!("nothing more"))
        .await;
}
