//! The `opentelemetry` source in the real binary, fed by OpenTelemetry's own Python SDK
//! (tests/otlp/send_logs.py): 50,000 records over gRPC, HTTP/protobuf and OTLP/JSON, gzip
//! on, all arrive in the file sink with their attributes; with the sink stalled the
//! sender is told to retry and nothing is lost once the sink moves again; malformed and
//! oversized requests get OTLP's non-retryable answers and the process serves on; over
//! TLS (rcgen certificates) the SDK delivers with the CA file, mutual TLS refuses a client
//! without a certificate, and a wrong or missing bearer token is refused for good.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::{Pipeline, Workspace, free_port, kill_at_random_points, venv, wait_for};

#[path = "../../support/rsyslogd.rs"]
#[allow(dead_code)] // only its test certificates are used here
mod rsyslogd;

const RECORDS: usize = 50_000;
/// The Python sender's own resource attribute `test.run` names the transport.
const SENDER: &str = "tests/otlp/send_logs.py";

/// Runs the sender; its summary line (`exports` by result, `retries` by status).
fn send(transport: &str, endpoint: &str, count: usize) -> serde_json::Value {
    send_with(transport, endpoint, count, &[])
}

/// Runs the sender with options (`--ca`, `--cert`, `--key`, `--token`, `--timeout`); its
/// summary line (`exports` by result, `retries` and `failures` by status).
fn send_with(transport: &str, endpoint: &str, count: usize, options: &[&str]) -> serde_json::Value {
    let output = Command::new(venv().join("bin/python"))
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join(SENDER))
        .args([transport, endpoint, &count.to_string()])
        .args(options)
        // requests lets these override the exporter's own certificate_file (its session's
        // `verify`), so a sender in an environment that sets them would not trust --ca.
        .env_remove("REQUESTS_CA_BUNDLE")
        .env_remove("CURL_CA_BUNDLE")
        .output()
        .expect("run send_logs.py");
    assert!(
        output.status.success(),
        "send_logs.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("summary {stdout:?}: {e}"))
}

fn config(grpc: u16, http: u16, sink: &str, extra: &str) -> String {
    format!(
        r#"
data_dir = "data"
[api]
address = "127.0.0.1:0"
[sources.otlp]
type = "opentelemetry"
grpc = {{ address = "127.0.0.1:{grpc}" }}
http = {{ address = "127.0.0.1:{http}" }}
{extra}
{sink}
"#
    )
}

/// Starts siemflow with the source on free gRPC and HTTP ports (`extra` among its options)
/// before `sink`, and waits until both listen.
fn start(ws: &Workspace, sink: &str, extra: &str, stdout: Stdio) -> (Pipeline, u16, u16) {
    let (grpc, http) = (free_port(), free_port());
    ws.write("p.toml", &config(grpc, http, sink, extra));
    let pipeline = ws.run("p.toml", stdout);
    listening(grpc, http);
    (pipeline, grpc, http)
}

/// Waits until both of the source's ports take connections.
fn listening(grpc: u16, http: u16) {
    for port in [grpc, http] {
        wait_for("the listener", Duration::from_secs(30), || {
            TcpStream::connect(("127.0.0.1", port)).ok()
        });
    }
}

const FILE_SINK: &str = r#"
[sinks.out]
type = "file"
inputs = ["otlp"]
path = "out/logs.ndjson"
"#;

/// Checks every field of record `seq` as the mapping documents it.
fn check_record(event: &serde_json::Value, run: &str) {
    let seq = event["attributes"]["seq"].as_u64().expect("seq") as usize;
    let want_time = chrono::DateTime::from_timestamp(1_767_225_600, (seq * 1000) as u32)
        .expect("time")
        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    assert_eq!(event["timestamp"], want_time.as_str(), "{event}");
    assert!(event["observed_timestamp"].is_string(), "{event}");
    assert_eq!(event["severity_number"], 9, "{event}");
    assert_eq!(event["severity_text"], "INFO", "{event}");
    assert_eq!(event["event_name"], "siemflow.test", "{event}");
    assert_eq!(
        event["body"],
        serde_json::json!({"Operation": format!("op-{seq}"), "n": seq}),
        "{event}"
    );
    assert_eq!(
        event["attributes"],
        serde_json::json!({
            "seq": seq,
            "tenant": format!("t{}", seq % 3),
            "ratio": seq as f64 / 8.0,
            "even": seq.is_multiple_of(2),
            "tags": ["a", seq.to_string()],
        }),
        "{event}"
    );
    assert_eq!(
        event["resource"]["attributes"]["service.name"], "send_logs",
        "{event}"
    );
    assert_eq!(event["resource"]["attributes"]["test.run"], run, "{event}");
    assert_eq!(event["scope"]["name"], "siemflow.tests", "{event}");
    assert_eq!(event["scope"]["version"], "1.2.3", "{event}");
    assert!(event.get("message").is_none(), "{event}");
}

fn fifty_thousand_arrive(transport: &str, path: &str, use_http_port: bool) {
    let ws = Workspace::new();
    let (mut pipeline, grpc, http) = start(&ws, FILE_SINK, "", Stdio::null());
    let port = if use_http_port { http } else { grpc };
    let summary = send(
        transport,
        &format!("http://127.0.0.1:{port}{path}"),
        RECORDS,
    );
    // Every export answered success: the sender dropped nothing.
    let exports = summary["exports"].as_object().expect("exports");
    assert_eq!(exports.keys().collect::<Vec<_>>(), ["SUCCESS"], "{summary}");
    // The sender was answered only after delivery: the file holds everything now.
    let events = ws.json_lines("out/logs.ndjson");
    let seqs: BTreeSet<u64> = events
        .iter()
        .map(|e| e["attributes"]["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(events.len(), RECORDS, "{summary}");
    assert_eq!(seqs.len(), RECORDS);
    assert_eq!(seqs.last().copied(), Some(RECORDS as u64 - 1));
    for event in events.iter().step_by(997).chain(events.last()) {
        check_record(event, transport);
    }
    assert_eq!(
        pipeline.metric(
            "component_received_events_total",
            &["component_id=\"otlp\""]
        ),
        RECORDS as f64
    );
    // Bodies as sent, gzip on: counted for every transport, gRPC's as its frames arrive.
    let received_bytes =
        pipeline.metric("component_received_bytes_total", &["component_id=\"otlp\""]);
    assert!(received_bytes > RECORDS as f64, "{received_bytes} bytes");
    pipeline.signal(libc::SIGTERM);
    assert!(pipeline.wait_exit(Duration::from_secs(30)).success());
    println!(
        "{transport}: {RECORDS} records, {} exports, all delivered",
        exports["SUCCESS"]
    );
}

#[test]
fn fifty_thousand_records_over_grpc_arrive_intact() {
    fifty_thousand_arrive("grpc", "", false);
}

#[test]
fn fifty_thousand_records_over_http_protobuf_arrive_intact() {
    fifty_thousand_arrive("http", "/v1/logs", true);
}

#[test]
fn fifty_thousand_records_over_otlp_json_arrive_intact() {
    fifty_thousand_arrive("json", "/v1/logs", true);
}

#[test]
fn a_stalled_sink_makes_the_sender_retry_and_loses_nothing() {
    let ws = Workspace::new();
    let total = 20_000;
    // The console sink writes to a pipe nobody reads yet: it blocks once the pipe is full.
    let sink = r#"
[sinks.screen]
type = "console"
inputs = ["otlp"]
buffer.max_events = 500
"#;
    let (mut pipeline, grpc, _) = start(
        &ws,
        sink,
        "max_pending_events = 2000\nretry_delay = \"2s\"",
        Stdio::piped(),
    );
    let endpoint = format!("http://127.0.0.1:{grpc}");
    let sender = std::thread::spawn(move || send("grpc", &endpoint, total));
    // The pipeline is stalled: the source answers UNAVAILABLE, for a request whose
    // events wait past delivery_timeout ("slow") or one it cannot take in ("busy").
    wait_for("a retry-later answer", Duration::from_secs(120), || {
        let slow = pipeline.metric("otlp_requests_total", &["status=\"slow\""]);
        let busy = pipeline.metric("otlp_requests_total", &["status=\"busy\""]);
        (slow + busy > 0.0).then_some(())
    });
    // The sink moves again.
    let stdout = pipeline.child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map(|line| {
                let event: serde_json::Value =
                    serde_json::from_str(&line.expect("a line")).expect("JSON");
                event["attributes"]["seq"].as_u64().expect("seq")
            })
            .collect::<Vec<_>>()
    });
    let summary = sender.join().expect("sender");
    let exports = summary["exports"].as_object().expect("exports");
    assert_eq!(exports.keys().collect::<Vec<_>>(), ["SUCCESS"], "{summary}");
    let unavailable = summary["retries"]["StatusCode.UNAVAILABLE"]
        .as_u64()
        .unwrap_or(0);
    assert!(unavailable > 0, "the sender saw no UNAVAILABLE: {summary}");
    pipeline.signal(libc::SIGTERM);
    assert!(pipeline.wait_exit(Duration::from_secs(30)).success());
    let seqs = reader.join().expect("reader");
    let unique: BTreeSet<u64> = seqs.iter().copied().collect();
    assert_eq!(unique.len(), total, "records lost");
    println!(
        "stalled sink: {total} records, sender retried {unavailable} times on UNAVAILABLE, {} duplicates",
        seqs.len() - unique.len()
    );
}

#[test]
fn sigkills_mid_export_lose_nothing_the_sender_was_told_was_taken() {
    let ws = Workspace::new();
    let total = 50_000;
    let (grpc, http) = (free_port(), free_port());
    ws.write("p.toml", &config(grpc, http, FILE_SINK, ""));
    // The SDK exports one batch of 1,000 at a time; one cut by a kill is never answered, so
    // it retries it (UNAVAILABLE) into the restarted process within its timeout.
    let endpoint = format!("http://127.0.0.1:{grpc}");
    let sender =
        std::thread::spawn(move || send_with("grpc", &endpoint, total, &["--timeout", "120"]));
    let seqs = || -> Vec<u64> {
        ws.json_lines("out/logs.ndjson")
            .iter()
            .filter_map(|event| event["attributes"]["seq"].as_u64())
            .collect()
    };
    // Lines are counted, not parsed, between kills: the sender is quick.
    let lines = || ws.lines("out/logs.ndjson").len();
    let kills = kill_at_random_points(
        &ws,
        "p.toml",
        3,
        5_000,
        Duration::from_secs(120),
        lines,
        || lines() >= total,
    );
    let mut pipeline = ws.run("p.toml", Stdio::null());
    listening(grpc, http);
    let summary = sender.join().expect("sender");
    exports_only(&summary, "SUCCESS", (total / 1000) as u64);
    pipeline.signal(libc::SIGTERM);
    assert!(pipeline.wait_exit(Duration::from_secs(30)).success());
    let seqs = seqs();
    let unique: BTreeSet<u64> = seqs.iter().copied().collect();
    assert_eq!(
        unique,
        (0..total as u64).collect(),
        "a record the source answered for is missing"
    );
    println!(
        "{kills} SIGKILLs: {total} records, {} duplicates, sender retries {}",
        seqs.len() - unique.len(),
        summary["retries"]
    );
}

/// Sends one raw HTTP/1.1 request (`extra` header lines end in CRLF); the status code
/// of the answer.
fn post(port: u16, content_type: &str, extra: &str, body: &[u8]) -> u16 {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(
        stream,
        "POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .expect("head");
    stream.write_all(body).expect("body");
    // The body is a protobuf google.rpc.Status: bytes, not text.
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {answer:?}"))
}

#[test]
fn malformed_and_oversized_requests_are_refused_for_good_and_the_source_serves_on() {
    let ws = Workspace::new();
    let (mut pipeline, grpc, http) = start(
        &ws,
        FILE_SINK,
        "max_request_bytes = \"1MiB\"",
        Stdio::null(),
    );
    assert_eq!(
        post(http, "application/x-protobuf", "", b"\x0a\xff\xff\xff"),
        400
    );
    assert_eq!(
        post(http, "application/json", "", b"{\"resourceLogs\":7}"),
        400
    );
    // A gzip bomb: 64 KiB that inflate to 64 MiB, refused at 1 MiB decompressed.
    let bomb = {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(&vec![b' '; 64 << 20]).expect("gzip");
        encoder.finish().expect("gzip")
    };
    assert!(bomb.len() < 1 << 20);
    let rss_before = pipeline.rss_kib();
    assert_eq!(
        post(
            http,
            "application/json",
            "Content-Encoding: gzip\r\n",
            &bomb
        ),
        413
    );
    println!(
        "gzip bomb of {} bytes refused; RSS {} -> {} KiB",
        bomb.len(),
        rss_before,
        pipeline.rss_kib()
    );
    // The SDK, sending after all that, is served.
    let summary = send("grpc", &format!("http://127.0.0.1:{grpc}"), 10);
    assert_eq!(summary["exports"]["SUCCESS"], 1, "{summary}");
    assert_eq!(ws.json_lines("out/logs.ndjson").len(), 10);
    for (status, count) in [("malformed", 2.0), ("too_large", 1.0), ("ok", 1.0)] {
        assert_eq!(
            pipeline.metric("otlp_requests_total", &[&format!("status=\"{status}\"")]),
            count,
            "{status}"
        );
    }
    pipeline.signal(libc::SIGTERM);
    assert!(pipeline.wait_exit(Duration::from_secs(30)).success());
}

/// The test CA, a server certificate for 127.0.0.1 and a client certificate in `ws/tls`;
/// the source's `tls` option (with `ca_file` when `mutual`) and the sender's `--ca` file.
fn tls(ws: &Workspace, mutual: bool) -> (String, String) {
    let dir = ws.path("tls");
    std::fs::create_dir_all(&dir).expect("tls dir");
    rsyslogd::write_certificates(&dir);
    let file = |name: &str| dir.join(name).display().to_string();
    let ca_file = if mutual {
        format!(", ca_file = \"{}\"", file("ca.pem"))
    } else {
        String::new()
    };
    (
        format!(
            "tls = {{ crt_file = \"{}\", key_file = \"{}\"{ca_file} }}",
            file("server.pem"),
            file("server.key")
        ),
        file("ca.pem"),
    )
}

/// Events in the file sink by the sender's `test.run` (its transport).
fn runs(ws: &Workspace) -> std::collections::BTreeMap<String, usize> {
    let mut runs = std::collections::BTreeMap::new();
    if !ws.path("out/logs.ndjson").exists() {
        return runs;
    }
    for event in ws.json_lines("out/logs.ndjson") {
        let run = event["resource"]["attributes"]["test.run"]
            .as_str()
            .expect("test.run")
            .to_string();
        *runs.entry(run).or_insert(0) += 1;
    }
    runs
}

fn exports_only(summary: &serde_json::Value, result: &str, count: u64) {
    assert_eq!(
        summary["exports"],
        serde_json::json!({ result: count }),
        "{summary}"
    );
}

#[test]
fn the_sdk_delivers_over_tls_trusting_the_ca_file() {
    let ws = Workspace::new();
    let (tls, ca) = tls(&ws, false);
    let (mut pipeline, grpc, http) = start(&ws, FILE_SINK, &tls, Stdio::null());
    // 2,000 records each: two exports of 1,000.
    let summary = send_with(
        "grpc",
        &format!("https://127.0.0.1:{grpc}"),
        2000,
        &["--ca", &ca],
    );
    exports_only(&summary, "SUCCESS", 2);
    let summary = send_with(
        "http",
        &format!("https://127.0.0.1:{http}/v1/logs"),
        2000,
        &["--ca", &ca],
    );
    exports_only(&summary, "SUCCESS", 2);
    let events = ws.json_lines("out/logs.ndjson");
    for event in events.iter().step_by(397) {
        let run = event["resource"]["attributes"]["test.run"]
            .as_str()
            .expect("run");
        check_record(event, run);
    }
    assert_eq!(
        runs(&ws),
        [("grpc".to_string(), 2000), ("http".to_string(), 2000)].into()
    );
    pipeline.signal(libc::SIGTERM);
    assert!(pipeline.wait_exit(Duration::from_secs(30)).success());
}

#[test]
fn mutual_tls_refuses_a_client_without_a_certificate_and_takes_the_right_one() {
    let ws = Workspace::new();
    let (tls, ca) = tls(&ws, true);
    let (mut pipeline, grpc, http) = start(&ws, FILE_SINK, &tls, Stdio::null());
    let grpc_endpoint = format!("https://127.0.0.1:{grpc}");
    let http_endpoint = format!("https://127.0.0.1:{http}/v1/logs");
    // Without a client certificate the handshake fails: the SDK sees a connection error,
    // retries it until its timeout, and gives the export up.
    for (transport, endpoint) in [("grpc", &grpc_endpoint), ("http", &http_endpoint)] {
        let summary = send_with(transport, endpoint, 10, &["--ca", &ca, "--timeout", "3"]);
        exports_only(&summary, "FAILURE", 1);
        println!("{transport} without a client certificate: {summary}");
    }
    assert_eq!(runs(&ws), Default::default(), "nothing may arrive");
    // Two senders' handshakes at least (the readiness probe's plain connection is one more).
    let failed = pipeline.metric(
        "component_errors_total",
        &["error_type=\"tls_handshake_failed\""],
    );
    assert!(failed >= 2.0, "handshakes failed: {failed}");
    assert_eq!(pipeline.metric("otlp_requests_total", &[]), 0.0);
    // With the certificate the CA signed: delivered.
    let dir = ws.path("tls");
    let (cert, key) = (
        dir.join("client.pem").display().to_string(),
        dir.join("client.key").display().to_string(),
    );
    for (transport, endpoint) in [("grpc", &grpc_endpoint), ("http", &http_endpoint)] {
        let summary = send_with(
            transport,
            endpoint,
            10,
            &["--ca", &ca, "--cert", &cert, "--key", &key],
        );
        exports_only(&summary, "SUCCESS", 1);
    }
    assert_eq!(
        runs(&ws),
        [("grpc".to_string(), 10), ("http".to_string(), 10)].into()
    );
    pipeline.signal(libc::SIGTERM);
    assert!(pipeline.wait_exit(Duration::from_secs(30)).success());
}

#[test]
fn a_wrong_or_missing_bearer_token_is_refused_for_good_and_the_right_one_delivers() {
    const TOKEN: &str = "s3cret-otlp-token";
    let ws = Workspace::new();
    let (mut pipeline, grpc, http) = start(
        &ws,
        FILE_SINK,
        &format!("bearer_token = \"{TOKEN}\""),
        Stdio::null(),
    );
    let grpc_endpoint = format!("http://127.0.0.1:{grpc}");
    let http_endpoint = format!("http://127.0.0.1:{http}/v1/logs");
    // Not retryable: the SDK gives the export up at the first answer.
    for (transport, endpoint, token, refusal) in [
        ("grpc", &grpc_endpoint, None, "StatusCode.UNAUTHENTICATED"),
        (
            "grpc",
            &grpc_endpoint,
            Some("wrong"),
            "StatusCode.UNAUTHENTICATED",
        ),
        ("http", &http_endpoint, None, "HTTP 401"),
        ("http", &http_endpoint, Some("wrong"), "HTTP 401"),
    ] {
        let options: Vec<&str> = token.map(|t| vec!["--token", t]).unwrap_or_default();
        let summary = send_with(transport, endpoint, 10, &options);
        exports_only(&summary, "FAILURE", 1);
        assert_eq!(
            summary["failures"],
            serde_json::json!({ refusal: 1 }),
            "{summary}"
        );
        assert_eq!(summary["retries"], serde_json::json!({}), "{summary}");
    }
    // Each refused export was one request: nothing was sent again.
    assert_eq!(
        pipeline.metric("otlp_requests_total", &["status=\"unauthenticated\""]),
        4.0
    );
    assert_eq!(runs(&ws), Default::default(), "nothing may arrive");
    for (transport, endpoint) in [("grpc", &grpc_endpoint), ("http", &http_endpoint)] {
        let summary = send_with(transport, endpoint, 10, &["--token", TOKEN]);
        exports_only(&summary, "SUCCESS", 1);
    }
    assert_eq!(
        runs(&ws),
        [("grpc".to_string(), 10), ("http".to_string(), 10)].into()
    );
    pipeline.signal(libc::SIGTERM);
    assert!(pipeline.wait_exit(Duration::from_secs(30)).success());
    assert!(!pipeline.logs().contains(TOKEN), "the token was logged");
}
