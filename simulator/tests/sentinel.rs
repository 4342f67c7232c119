//! The Logs Ingestion (Sentinel) simulator through a real HTTP client: tokens and audiences,
//! DCR/stream/role checks, the array body, the 1 MiB rule, column rules, limits and faults.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use siemflow_simulator::sentinel::{DEFAULT_DCR_ID, DEFAULT_STREAM, Dcr, SentinelFaults};
use siemflow_simulator::{
    DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TENANT_ID, SentinelConfig, SentinelSimulator,
};

const MONITOR_SCOPE: &str = "https://monitor.azure.com//.default";

async fn start(cfg: SentinelConfig) -> SentinelSimulator {
    let addr: SocketAddr = "127.0.0.1:0".parse().expect("address");
    SentinelSimulator::start(cfg, addr)
        .await
        .expect("simulator starts")
}

/// A client-credentials token for `scope`.
async fn token(sim: &SentinelSimulator, scope: &str) -> String {
    let r = reqwest::Client::new()
        .post(sim.token_url())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", DEFAULT_CLIENT_ID),
            ("client_secret", DEFAULT_CLIENT_SECRET),
            ("scope", scope),
        ])
        .send()
        .await
        .expect("token request");
    assert_eq!(r.status().as_u16(), 200);
    let body: Value = r.json().await.expect("token JSON");
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_string()
}

fn ingest_url(sim: &SentinelSimulator, dcr: &str, stream: &str) -> String {
    format!(
        "{}/dataCollectionRules/{dcr}/streams/{stream}?api-version=2023-01-01",
        sim.url()
    )
}

struct Answer {
    status: u16,
    body: Value,
    error_header: Option<String>,
    retry_after: Option<String>,
}

async fn send(
    url: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: impl Into<reqwest::Body>,
) -> Answer {
    let mut req = reqwest::Client::new().post(url).body(body);
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        req = req.header("content-type", "application/json");
    }
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.expect("request");
    let header = |name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let error_header = header("x-ms-error-code");
    let retry_after = header("retry-after");
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    Answer {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        error_header,
        retry_after,
    }
}

fn record(n: usize) -> Value {
    json!({"TimeGenerated": "2026-11-02T10:15:30.123Z", "TenantId_s": "t1", "Operation": format!("op{n}"), "Raw": {"errorCode": 50126}})
}

fn code(a: &Answer) -> &str {
    a.body["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn records_in_a_gzipped_array_are_accepted_in_order() {
    let sim = start(SentinelConfig::default()).await;
    let t = token(&sim, MONITOR_SCOPE).await;
    let url = ingest_url(&sim, DEFAULT_DCR_ID, DEFAULT_STREAM);
    let first: Vec<Value> = (0..3).map(record).collect();
    let first_text = Value::Array(first.clone()).to_string();
    let a = send(&url, Some(&t), &[], first_text.clone()).await;
    assert_eq!(a.status, 204);
    let second: Vec<Value> = (3..5).map(record).collect();
    let text = Value::Array(second.clone()).to_string();
    let gz = common::gzip(text.as_bytes());
    let a = send(&url, Some(&t), &[("content-encoding", "gzip")], gz).await;
    assert_eq!(a.status, 204);
    let expected: Vec<Value> = first.into_iter().chain(second).collect();
    assert_eq!(sim.received(DEFAULT_STREAM), expected);
    let stats = sim.stats();
    assert_eq!(stats.records_accepted, 5);
    assert_eq!(
        stats.largest_decoded_body,
        first_text.len().max(text.len()) as u64
    );
    assert_eq!(sim.token_requests(), 1);
    // The single-slash scope Vector uses is accepted by Entra too.
    let t = token(&sim, "https://monitor.azure.com/.default").await;
    assert_eq!(send(&url, Some(&t), &[], "[]").await.status, 204);
    sim.stop().await;
}

#[tokio::test]
async fn tokens_must_be_valid_and_for_azure_monitor() {
    let sim = start(SentinelConfig::default()).await;
    let url = ingest_url(&sim, DEFAULT_DCR_ID, DEFAULT_STREAM);
    let body = Value::Array(vec![record(0)]).to_string();
    let a = send(&url, None, &[], body.clone()).await;
    assert_eq!((a.status, code(&a)), (401, "AuthenticationFailed"));
    let a = send(&url, Some("made.up.token"), &[], body.clone()).await;
    assert_eq!((a.status, code(&a)), (401, "InvalidToken"));
    // A token for the Management Activity API is refused here.
    let manage = token(&sim, "https://manage.office.com/.default").await;
    let a = send(&url, Some(&manage), &[], body.clone()).await;
    assert_eq!((a.status, code(&a)), (401, "InvalidAudience"));
    assert_eq!(a.error_header.as_deref(), Some("InvalidAudience"));
    // A wrong secret never gets a token.
    let r = reqwest::Client::new()
        .post(sim.token_url())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", DEFAULT_CLIENT_ID),
            ("client_secret", "wrong"),
            ("scope", MONITOR_SCOPE),
        ])
        .send()
        .await
        .expect("token request");
    assert_eq!(r.status().as_u16(), 401);
    assert!(sim.received(DEFAULT_STREAM).is_empty());
    sim.stop().await;
}

#[tokio::test]
async fn api_version_dcr_role_and_stream_are_checked() {
    let other_dcr = "dcr-11111111111111111111111111111111";
    let cfg = SentinelConfig {
        dcrs: vec![
            Dcr::default(),
            Dcr {
                immutable_id: other_dcr.into(),
                streams: vec!["Custom-Other_CL".into()],
                required_columns: vec![],
                publishers: Some(vec![]),
            },
        ],
        ..SentinelConfig::default()
    };
    let sim = start(cfg).await;
    let t = token(&sim, MONITOR_SCOPE).await;
    let body = Value::Array(vec![record(0)]).to_string();
    let base = sim.url();
    let cases = [
        (
            format!("{base}/dataCollectionRules/{DEFAULT_DCR_ID}/streams/{DEFAULT_STREAM}"),
            400,
            "MissingApiVersionParameter",
        ),
        (
            format!(
                "{base}/dataCollectionRules/{DEFAULT_DCR_ID}/streams/{DEFAULT_STREAM}?api-version=2016-04-01"
            ),
            400,
            "InvalidApiVersionParameter",
        ),
        (
            ingest_url(&sim, "dcr-22222222222222222222222222222222", DEFAULT_STREAM),
            404,
            "NotFound",
        ),
        (
            ingest_url(&sim, DEFAULT_DCR_ID, "Custom-Unknown_CL"),
            404,
            "InvalidStream",
        ),
        (
            ingest_url(&sim, other_dcr, "Custom-Other_CL"),
            403,
            "OperationFailed",
        ),
        (
            format!("{base}/api/logs?api-version=2016-04-01"),
            404,
            "NotFound",
        ),
    ];
    for (url, status, expected) in cases {
        let a = send(&url, Some(&t), &[], body.clone()).await;
        assert_eq!((a.status, code(&a)), (status, expected), "{url}");
    }
    let a = send(
        &ingest_url(&sim, DEFAULT_DCR_ID, DEFAULT_STREAM),
        Some(&t),
        &[("content-type", "text/plain")],
        body,
    )
    .await;
    assert_eq!((a.status, code(&a)), (415, "UnsupportedMediaType"));
    assert!(sim.received("Custom-Other_CL").is_empty());
    sim.stop().await;
}

#[tokio::test]
async fn body_shape_and_records_are_checked() {
    let sim = start(SentinelConfig {
        max_field_bytes: 24,
        ..SentinelConfig::default()
    })
    .await;
    let t = token(&sim, MONITOR_SCOPE).await;
    let url = ingest_url(&sim, DEFAULT_DCR_ID, DEFAULT_STREAM);
    // The documented trap: a bare object is answered 204 and silently dropped.
    let a = send(&url, Some(&t), &[], record(0).to_string()).await;
    assert_eq!(a.status, 204);
    assert!(sim.received(DEFAULT_STREAM).is_empty());
    assert_eq!(sim.stats().non_array_bodies, 1);
    let bad = [
        ("[{\"TimeGenerated\":", "InvalidJson"),
        (r#"[{"Operation":"x"}]"#, "MissingRequiredColumn"),
        (r#"[{"TimeGenerated":"now"}]"#, "InvalidTimeGenerated"),
        (
            r#"[{"TimeGenerated":"2026-11-02T10:15:30Z","TenantId":"t"}]"#,
            "InvalidColumnName",
        ),
        (
            r#"[{"TimeGenerated":"2026-11-02T10:15:30Z","user.name":"u"}]"#,
            "InvalidColumnName",
        ),
        (
            r#"[{"TimeGenerated":"2026-11-02T10:15:30Z"}, 5]"#,
            "InvalidRecord",
        ),
    ];
    for (body, expected) in bad {
        let a = send(&url, Some(&t), &[], body).await;
        assert_eq!((a.status, code(&a)), (400, expected), "{body}");
    }
    assert!(sim.received(DEFAULT_STREAM).is_empty());
    // Long string values are truncated, not refused.
    let a = send(
        &url,
        Some(&t),
        &[],
        r#"[{"TimeGenerated":"2026-11-02T10:15:30Z","Msg":"0123456789abcdefghijklmnopqrstuvwxyz"}]"#,
    )
    .await;
    assert_eq!(a.status, 204);
    assert_eq!(
        sim.received(DEFAULT_STREAM)[0]["Msg"],
        json!("0123456789abcdefghijklmn")
    );
    assert_eq!(sim.stats().values_truncated, 1);
    sim.stop().await;
}

/// A JSON array of one record padded to exactly `len` bytes.
fn body_of(len: usize) -> String {
    let head = r#"[{"TimeGenerated":"2026-11-02T10:15:30Z","Pad":""#;
    let tail = r#""}]"#;
    format!("{head}{}{tail}", "x".repeat(len - head.len() - tail.len()))
}

#[tokio::test]
async fn the_one_mebibyte_rule_applies_before_and_after_gzip() {
    let sim = start(SentinelConfig {
        max_field_bytes: 2 << 20,
        ..SentinelConfig::default()
    })
    .await;
    let t = token(&sim, MONITOR_SCOPE).await;
    let url = ingest_url(&sim, DEFAULT_DCR_ID, DEFAULT_STREAM);
    assert_eq!(
        send(&url, Some(&t), &[], body_of(1_048_576)).await.status,
        204
    );
    let a = send(&url, Some(&t), &[], body_of(1_048_577)).await;
    assert_eq!(a.status, 413);
    assert_eq!(
        a.body,
        json!({"error": {"code": "ContentLengthLimitExceeded", "message": "Maximum allowed content length: 1048576 bytes (1 MB). Provided content length: 1048577 bytes."}})
    );
    assert_eq!(
        a.error_header.as_deref(),
        Some("ContentLengthLimitExceeded")
    );
    // Tiny once compressed, still over the limit uncompressed.
    let gz = common::gzip(body_of(2_000_000).as_bytes());
    assert!(gz.len() < 100_000);
    let a = send(&url, Some(&t), &[("content-encoding", "gzip")], gz).await;
    assert_eq!((a.status, code(&a)), (413, "ContentLengthLimitExceeded"));
    let stats = sim.stats();
    assert_eq!(stats.too_large, 2);
    assert_eq!(stats.records_accepted, 1);
    assert_eq!(stats.largest_decoded_body, 1_048_576);
    sim.stop().await;
}

#[tokio::test]
async fn injected_faults_carry_retry_after() {
    let faults = [
        (
            SentinelFaults {
                throttle_rate: 1.0,
                retry_after: Duration::from_secs(3),
                ..SentinelFaults::default()
            },
            429,
            Some("3"),
        ),
        (
            SentinelFaults {
                unavailable_rate: 1.0,
                ..SentinelFaults::default()
            },
            503,
            Some("1"),
        ),
        (
            SentinelFaults {
                server_error_rate: 1.0,
                ..SentinelFaults::default()
            },
            500,
            None,
        ),
    ];
    for (faults, status, retry_after) in faults {
        let sim = start(SentinelConfig {
            faults,
            ..SentinelConfig::default()
        })
        .await;
        let t = token(&sim, MONITOR_SCOPE).await;
        let url = ingest_url(&sim, DEFAULT_DCR_ID, DEFAULT_STREAM);
        let a = send(
            &url,
            Some(&t),
            &[],
            Value::Array(vec![record(0)]).to_string(),
        )
        .await;
        assert_eq!(a.status, status);
        assert_eq!(a.retry_after.as_deref(), retry_after);
        assert!(sim.received(DEFAULT_STREAM).is_empty());
        sim.stop().await;
    }
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after() {
    let sim = start(SentinelConfig {
        requests_per_minute: 2,
        ..SentinelConfig::default()
    })
    .await;
    let t = token(&sim, MONITOR_SCOPE).await;
    let url = ingest_url(&sim, DEFAULT_DCR_ID, DEFAULT_STREAM);
    // Five requests span at most one minute boundary, so some window holds three.
    let mut throttled = None;
    for n in 0..5 {
        let a = send(
            &url,
            Some(&t),
            &[],
            Value::Array(vec![record(n)]).to_string(),
        )
        .await;
        if a.status == 429 {
            throttled = Some(a);
            break;
        }
        assert_eq!(a.status, 204);
    }
    let a = throttled.expect("a request over the limit is throttled");
    assert_eq!(code(&a), "TooManyRequests");
    let wait: u64 = a
        .retry_after
        .as_deref()
        .and_then(|s| s.parse().ok())
        .expect("Retry-After seconds");
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(sim.stats().throttled, 1);
    sim.stop().await;
}

#[tokio::test]
async fn configuration_is_checked() {
    let parsed: SentinelConfig = toml::from_str(
        r#"
        seed = 3
        max_body_bytes = "1MiB"
        [[dcrs]]
        immutable_id = "dcr-0123456789abcdef0123456789abcdef"
        streams = ["Custom-M365_CL"]
        [faults]
        throttle_rate = 0.1
        retry_after = "2s"
        "#,
    )
    .expect("config parses");
    parsed.validate().expect("valid");
    assert_eq!(parsed.dcrs[0].required_columns, vec!["TimeGenerated"]);
    assert!(toml::from_str::<SentinelConfig>("colour = 1").is_err());
    let bad = [
        SentinelConfig {
            dcrs: vec![Dcr {
                immutable_id: "dcr-xyz".into(),
                ..Dcr::default()
            }],
            ..SentinelConfig::default()
        },
        SentinelConfig {
            dcrs: vec![Dcr {
                streams: vec!["Events".into()],
                ..Dcr::default()
            }],
            ..SentinelConfig::default()
        },
        SentinelConfig {
            tenant_id: "contoso".into(),
            ..SentinelConfig::default()
        },
    ];
    for cfg in bad {
        assert!(cfg.validate().is_err(), "{cfg:?}");
    }
    let shown = format!("{:?}", SentinelConfig::default());
    assert!(!shown.contains(DEFAULT_CLIENT_SECRET), "{shown}");
    assert!(shown.contains(DEFAULT_TENANT_ID));
}
