//! The Splunk HEC simulator through a real HTTP client: every refusal with its code, partial
//! failures, acknowledgements (delayed and lost), limits, gzip and faults.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use siemflow_simulator::splunk_hec::{DEFAULT_HEC_TOKEN, HecFaults, HecToken};
use siemflow_simulator::{SplunkHecConfig, SplunkHecSimulator};

const ACK_TOKEN: &str = "11111111-2222-3333-4444-555555555555";
const CHANNEL: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";

async fn start(cfg: SplunkHecConfig) -> SplunkHecSimulator {
    let addr: SocketAddr = "127.0.0.1:0".parse().expect("address");
    SplunkHecSimulator::start(cfg, addr)
        .await
        .expect("simulator starts")
}

fn with_ack_token(mut cfg: SplunkHecConfig) -> SplunkHecConfig {
    cfg.tokens.push(HecToken {
        token: ACK_TOKEN.into(),
        ack: true,
        ..HecToken::default()
    });
    cfg
}

/// POSTs `body` to `path` with the given headers; returns (status, JSON body).
async fn post(
    sim: &SplunkHecSimulator,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<reqwest::Body>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{}{path}", sim.url()))
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// (path, headers, expected status, expected body).
type Case<'a> = (String, Vec<(&'a str, String)>, u16, Value);

fn splunk(token: &str) -> String {
    format!("Splunk {token}")
}

async fn send_events(sim: &SplunkHecSimulator, body: &str) -> (u16, Value) {
    post(
        sim,
        "/services/collector/event",
        &[("authorization", &splunk(DEFAULT_HEC_TOKEN))],
        body.to_string(),
    )
    .await
}

async fn send_acked(sim: &SplunkHecSimulator, body: &str) -> (u16, Value) {
    post(
        sim,
        "/services/collector/event",
        &[
            ("authorization", &splunk(ACK_TOKEN)),
            ("x-splunk-request-channel", CHANNEL),
        ],
        body.to_string(),
    )
    .await
}

async fn query_acks(sim: &SplunkHecSimulator, ids: &[u64]) -> (u16, Value) {
    post(
        sim,
        &format!("/services/collector/ack?channel={CHANNEL}"),
        &[("authorization", &splunk(ACK_TOKEN))],
        json!({ "acks": ids }).to_string(),
    )
    .await
}

fn reply(code: u64, text: &str) -> Value {
    json!({"text": text, "code": code})
}

#[tokio::test]
async fn authentication_refusals_carry_their_codes() {
    let mut cfg = SplunkHecConfig::default();
    cfg.tokens.push(HecToken {
        token: "22222222-0000-0000-0000-000000000000".into(),
        disabled: true,
        ..HecToken::default()
    });
    cfg.tokens.push(HecToken {
        token: "33333333-0000-0000-0000-000000000000".into(),
        allow_query_string: true,
        ..HecToken::default()
    });
    let sim = start(cfg).await;
    let body = r#"{"event":"x"}"#;
    let path = "/services/collector/event";
    let cases: Vec<Case> = vec![
        (path.into(), vec![], 401, reply(2, "Token is required")),
        (
            path.into(),
            vec![("authorization", format!("Bearer {DEFAULT_HEC_TOKEN}"))],
            401,
            reply(3, "Invalid authorization"),
        ),
        (
            path.into(),
            vec![("authorization", DEFAULT_HEC_TOKEN.to_string())],
            401,
            reply(3, "Invalid authorization"),
        ),
        (
            path.into(),
            vec![(
                "authorization",
                splunk("99999999-0000-0000-0000-000000000000"),
            )],
            403,
            reply(4, "Invalid token"),
        ),
        (
            path.into(),
            vec![(
                "authorization",
                splunk("22222222-0000-0000-0000-000000000000"),
            )],
            403,
            reply(1, "Token disabled"),
        ),
        (
            format!("{path}?token={DEFAULT_HEC_TOKEN}"),
            vec![],
            400,
            reply(16, "Query string authorization is not enabled"),
        ),
        (
            format!("{path}?token=33333333-0000-0000-0000-000000000000"),
            vec![],
            200,
            reply(0, "Success"),
        ),
        (
            path.into(),
            vec![(
                "authorization",
                format!(
                    "Basic {}",
                    base64_encode(&format!("anyone:{DEFAULT_HEC_TOKEN}"))
                ),
            )],
            200,
            reply(0, "Success"),
        ),
    ];
    for (path, headers, status, expected) in cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let got = post(&sim, &path, &headers, body).await;
        assert_eq!(got, (status, expected), "{path} {headers:?}");
    }
    assert_eq!(sim.indexed().len(), 2);
    let stats = sim.stats();
    assert_eq!(stats.by_code.get(&0), Some(&2));
    assert_eq!(stats.by_status.get(&401), Some(&3));
    sim.stop().await;
}

fn base64_encode(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test]
async fn concatenated_gzipped_events_are_indexed_with_their_metadata() {
    let mut cfg = SplunkHecConfig::default();
    cfg.tokens[0].indexes = vec!["main".into(), "m365".into()];
    let sim = start(cfg).await;
    let body = concat!(
        r#"{"time":1767225600.123,"host":"shipper","source":"graph:alerts","sourcetype":"ms:defender:alert","index":"m365","event":{"id":"a1"},"fields":{"tenant_id":"t1","tags":["x","y"]}}"#,
        "\n\n  ",
        r#"{"time":"1767225601.5","event":"plain text"}"#,
        "\n"
    );
    let gz = common::gzip(body.as_bytes());
    let got = post(
        &sim,
        "/services/collector",
        &[
            ("authorization", &splunk(DEFAULT_HEC_TOKEN)),
            ("content-encoding", "gzip"),
            ("x-splunk-request-channel", CHANNEL),
        ],
        gz.clone(),
    )
    .await;
    assert_eq!(got, (200, reply(0, "Success")));
    let events = sim.indexed();
    assert_eq!(events.len(), 2);
    let a = &events[0];
    assert_eq!(a.index, "m365");
    assert_eq!(a.host.as_deref(), Some("shipper"));
    assert_eq!(a.source.as_deref(), Some("graph:alerts"));
    assert_eq!(a.sourcetype.as_deref(), Some("ms:defender:alert"));
    assert_eq!(a.time, Some(1_767_225_600.123));
    assert_eq!(a.event, json!({"id": "a1"}));
    assert_eq!(a.fields.get("tags"), Some(&json!(["x", "y"])));
    assert_eq!(a.channel.as_deref(), Some(CHANNEL));
    assert!(!a.raw);
    let b = &events[1];
    assert_eq!(b.index, "main");
    assert_eq!(b.time, Some(1_767_225_601.5));
    assert_eq!(b.event, json!("plain text"));
    let stats = sim.stats();
    assert_eq!(stats.largest_body, gz.len() as u64);
    assert_eq!(stats.largest_decoded_body, body.len() as u64);
    assert_eq!(stats.events_indexed, 2);
    sim.stop().await;
}

#[tokio::test]
async fn a_bad_event_stops_the_request_after_indexing_the_ones_before_it() {
    let mut cfg = SplunkHecConfig::default();
    cfg.tokens[0].indexes = vec!["main".into()];
    cfg.faults.reject_marker = Some("POISON".into());
    let sim = start(cfg).await;
    let cases = [
        (r#"{"time":1}"#, 12, "Event field is required"),
        (r#"{"event":""}"#, 13, "Event field cannot be blank"),
        (r#"{"event":"x","index":"secret"}"#, 7, "Incorrect index"),
        (
            r#"{"event":"x","fields":{"n":{"deep":1}}}"#,
            15,
            "Error in handling indexed fields",
        ),
        (r#"{"event":"POISON"}"#, 6, "Invalid data format"),
        (r#"{"event":"x""#, 6, "Invalid data format"),
    ];
    for (n, (bad, code, text)) in cases.into_iter().enumerate() {
        let body = format!(
            r#"{{"event":"case{n}-0"}}{{"event":"case{n}-1"}}{bad}{{"event":"case{n}-3"}}"#
        );
        let got = send_events(&sim, &body).await;
        assert_eq!(
            got,
            (
                400,
                json!({"text": text, "code": code, "invalid-event-number": 2})
            ),
            "{bad}"
        );
    }
    let indexed: Vec<Value> = sim.indexed().into_iter().map(|e| e.event).collect();
    let expected: Vec<Value> = (0..6)
        .flat_map(|n| [json!(format!("case{n}-0")), json!(format!("case{n}-1"))])
        .collect();
    assert_eq!(indexed, expected);
    assert_eq!(sim.stats().events_rejected, 6);

    // The first event bad: nothing indexed, position 0.
    let got = send_events(&sim, r#"{"event":""}{"event":"after"}"#).await;
    assert_eq!(
        got,
        (
            400,
            json!({"text": "Event field cannot be blank", "code": 13, "invalid-event-number": 0})
        )
    );
    assert_eq!(sim.indexed().len(), 12);
    sim.stop().await;
}

#[tokio::test]
async fn empty_bodies_encodings_and_limits() {
    let cfg = SplunkHecConfig {
        max_content_length: 1000,
        ..SplunkHecConfig::default()
    };
    let sim = start(cfg).await;
    assert_eq!(send_events(&sim, "").await, (400, reply(5, "No data")));
    assert_eq!(send_events(&sim, " \n ").await, (400, reply(5, "No data")));
    let auth = splunk(DEFAULT_HEC_TOKEN);
    let got = post(
        &sim,
        "/services/collector/event",
        &[("authorization", &auth), ("content-encoding", "deflate")],
        r#"{"event":"x"}"#,
    )
    .await;
    assert_eq!(got, (400, reply(6, "Invalid data format")));
    let got = post(
        &sim,
        "/services/collector/event",
        &[("authorization", &auth), ("content-encoding", "gzip")],
        "not gzip at all",
    )
    .await;
    assert_eq!(got, (400, reply(6, "Invalid data format")));

    // Over max_content_length as sent.
    let big = format!(r#"{{"event":"{}"}}"#, "a".repeat(1000));
    let (status, _) = send_events(&sim, &big).await;
    assert_eq!(status, 413);
    // Small when compressed, over the limit once inflated.
    let gz = common::gzip(big.as_bytes());
    assert!(gz.len() < 1000);
    let (status, _) = post(
        &sim,
        "/services/collector/event",
        &[("authorization", &auth), ("content-encoding", "gzip")],
        gz,
    )
    .await;
    assert_eq!(status, 413);
    assert!(sim.indexed().is_empty());
    assert_eq!(sim.stats().by_status.get(&413), Some(&2));
    sim.stop().await;
}

#[tokio::test]
async fn raw_endpoint_breaks_lines_and_takes_metadata_from_the_query() {
    let sim = start(SplunkHecConfig::default()).await;
    let got = post(
        &sim,
        &format!("/services/collector/raw?channel={CHANNEL}&sourcetype=cef&host=h1&index=main"),
        &[("authorization", &splunk(DEFAULT_HEC_TOKEN))],
        "CEF:0|a|b|1|x|y|5|\r\nCEF:0|a|b|1|x|z|5|\n\n",
    )
    .await;
    assert_eq!(got, (200, reply(0, "Success")));
    let events = sim.indexed();
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| e.raw));
    assert_eq!(events[1].event, json!("CEF:0|a|b|1|x|z|5|"));
    assert_eq!(events[0].sourcetype.as_deref(), Some("cef"));
    assert_eq!(events[0].host.as_deref(), Some("h1"));
    assert_eq!(events[0].channel.as_deref(), Some(CHANNEL));
    sim.stop().await;
}

#[tokio::test]
async fn acknowledgement_needs_a_channel_and_reports_each_ack_once() {
    let sim = start(with_ack_token(SplunkHecConfig::default())).await;
    let auth = splunk(ACK_TOKEN);
    let body = r#"{"event":"x"}"#;
    let path = "/services/collector/event";
    assert_eq!(
        post(&sim, path, &[("authorization", &auth)], body).await,
        (400, reply(10, "Data channel is missing"))
    );
    assert_eq!(
        post(
            &sim,
            path,
            &[
                ("authorization", &auth),
                ("x-splunk-request-channel", "not-a-guid")
            ],
            body
        )
        .await,
        (400, reply(11, "Invalid data channel"))
    );
    assert_eq!(
        send_acked(&sim, body).await,
        (200, json!({"text": "Success", "code": 0, "ackId": 0}))
    );
    // The channel may also come as a query parameter; ids keep increasing per channel.
    assert_eq!(
        post(
            &sim,
            &format!("{path}?channel={CHANNEL}"),
            &[("authorization", &auth)],
            body
        )
        .await,
        (200, json!({"text": "Success", "code": 0, "ackId": 1}))
    );
    assert_eq!(
        query_acks(&sim, &[0, 1, 7]).await,
        (200, json!({"acks": {"0": true, "1": true, "7": false}}))
    );
    // Reported once, then forgotten.
    assert_eq!(
        query_acks(&sim, &[0]).await,
        (200, json!({"acks": {"0": false}}))
    );
    // A token without ack: code 14 on the ack endpoint.
    assert_eq!(
        post(
            &sim,
            &format!("/services/collector/ack?channel={CHANNEL}"),
            &[("authorization", &splunk(DEFAULT_HEC_TOKEN))],
            r#"{"acks":[0]}"#
        )
        .await,
        (400, reply(14, "ACK is disabled"))
    );
    assert_eq!(
        post(
            &sim,
            "/services/collector/ack",
            &[("authorization", &auth)],
            r#"{"acks":[0]}"#
        )
        .await,
        (400, reply(10, "Data channel is missing"))
    );
    assert_eq!(
        post(
            &sim,
            &format!("/services/collector/ack?channel={CHANNEL}"),
            &[("authorization", &auth)],
            r#"{"acks":"all"}"#
        )
        .await,
        (400, reply(6, "Invalid data format"))
    );
    // A partial failure on an ack token still gets an ackId for the indexed prefix.
    assert_eq!(
        send_acked(&sim, r#"{"event":"a"}{"event":""}"#).await,
        (
            400,
            json!({"text": "Event field cannot be blank", "code": 13, "invalid-event-number": 1, "ackId": 2})
        )
    );
    let stats = sim.stats();
    assert_eq!(stats.acks_issued, 3);
    assert_eq!(stats.acks_acknowledged, 2);
    assert_eq!(sim.indexed().len(), 3);
    sim.stop().await;
}

#[tokio::test]
async fn delayed_acks_stay_false_until_due() {
    let cfg = with_ack_token(SplunkHecConfig {
        faults: HecFaults {
            ack_delay: Duration::from_secs(3600),
            ..HecFaults::default()
        },
        ..SplunkHecConfig::default()
    });
    let sim = start(cfg).await;
    let (status, body) = send_acked(&sim, r#"{"event":"x"}"#).await;
    assert_eq!(status, 200);
    assert_eq!(body["ackId"], json!(0));
    assert_eq!(
        query_acks(&sim, &[0]).await,
        (200, json!({"acks": {"0": false}}))
    );
    // Indexed already; only the acknowledgement is late.
    assert_eq!(sim.indexed().len(), 1);
    sim.stop().await;
}

#[tokio::test]
async fn lost_acks_never_turn_true_and_their_events_are_not_indexed() {
    let cfg = with_ack_token(SplunkHecConfig {
        seed: 42,
        faults: HecFaults {
            lost_ack_rate: 0.5,
            ..HecFaults::default()
        },
        ..SplunkHecConfig::default()
    });
    let sim = start(cfg).await;
    let mut ids = Vec::new();
    for n in 0..20 {
        let (status, body) = send_acked(&sim, &format!(r#"{{"event":"e{n}"}}"#)).await;
        assert_eq!(status, 200);
        ids.push(body["ackId"].as_u64().expect("ackId"));
    }
    assert_eq!(ids, (0..20).collect::<Vec<u64>>());
    let (_, answer) = query_acks(&sim, &ids).await;
    let acked: Vec<Value> = ids
        .iter()
        .filter(|id| answer["acks"][id.to_string()] == json!(true))
        .map(|id| json!(format!("e{id}")))
        .collect();
    let indexed: Vec<Value> = sim.indexed().into_iter().map(|e| e.event).collect();
    // Ground truth: exactly the acknowledged requests were indexed.
    assert_eq!(indexed, acked);
    let stats = sim.stats();
    assert!(stats.acks_lost > 0 && stats.acks_lost < 20, "{stats:?}");
    assert_eq!(stats.acks_lost + stats.acks_acknowledged, 20);
    assert_eq!(stats.events_lost, stats.acks_lost);
    sim.stop().await;
}

#[tokio::test]
async fn busy_and_server_errors_index_nothing() {
    let busy = start(SplunkHecConfig {
        faults: HecFaults {
            busy_rate: 1.0,
            ..HecFaults::default()
        },
        ..SplunkHecConfig::default()
    })
    .await;
    assert_eq!(
        send_events(&busy, r#"{"event":"x"}"#).await,
        (503, reply(9, "Server is busy"))
    );
    assert!(busy.indexed().is_empty());
    busy.stop().await;
    let broken = start(SplunkHecConfig {
        faults: HecFaults {
            server_error_rate: 1.0,
            ..HecFaults::default()
        },
        ..SplunkHecConfig::default()
    })
    .await;
    assert_eq!(
        send_events(&broken, r#"{"event":"x"}"#).await,
        (500, reply(8, "Internal server error"))
    );
    assert!(broken.indexed().is_empty());
    broken.stop().await;
    let full = start(SplunkHecConfig {
        faults: HecFaults {
            queue_full_rate: 1.0,
            ..HecFaults::default()
        },
        ..SplunkHecConfig::default()
    })
    .await;
    assert_eq!(
        send_events(&full, r#"{"event":"x"}"#).await,
        (
            429,
            reply(
                26,
                "HEC queue is at capacity and cannot process any more requests"
            )
        )
    );
    assert!(full.indexed().is_empty());
    full.stop().await;
}

#[tokio::test]
async fn near_capacity_is_a_success_with_code_24() {
    let sim = start(SplunkHecConfig {
        faults: HecFaults {
            near_capacity_rate: 1.0,
            ..HecFaults::default()
        },
        ..SplunkHecConfig::default()
    })
    .await;
    assert_eq!(
        send_events(&sim, r#"{"event":"x"}"#).await,
        (
            200,
            reply(24, "HEC queue is approaching its capacity limit")
        )
    );
    assert_eq!(sim.indexed().len(), 1);
    sim.stop().await;
}

#[tokio::test]
async fn faults_repeat_with_the_seed() {
    async fn statuses(seed: u64) -> Vec<u16> {
        let sim = start(SplunkHecConfig {
            seed,
            faults: HecFaults {
                busy_rate: 0.5,
                ..HecFaults::default()
            },
            ..SplunkHecConfig::default()
        })
        .await;
        let mut out = Vec::new();
        for _ in 0..16 {
            out.push(send_events(&sim, r#"{"event":"x"}"#).await.0);
        }
        sim.stop().await;
        out
    }
    let a = statuses(3).await;
    assert_eq!(a, statuses(3).await);
    assert!(a.contains(&200) && a.contains(&503), "{a:?}");
}

#[tokio::test]
async fn health_endpoint() {
    let mut cfg = SplunkHecConfig::default();
    cfg.tokens[0].disabled = true;
    let sim = start(cfg).await;
    let get = |path: String| async move {
        let r = reqwest::get(path).await.expect("request");
        let status = r.status().as_u16();
        (status, r.json::<Value>().await.expect("json"))
    };
    let base = sim.url();
    assert_eq!(
        get(format!("{base}/services/collector/health")).await,
        (200, reply(17, "HEC is healthy"))
    );
    assert_eq!(
        get(format!("{base}/services/collector/health/1.0")).await,
        (200, reply(17, "HEC is healthy"))
    );
    assert_eq!(
        get(format!(
            "{base}/services/collector/health?token=99999999-0000-0000-0000-000000000000"
        ))
        .await,
        (400, reply(21, "Invalid token"))
    );
    assert_eq!(
        get(format!(
            "{base}/services/collector/health?token={DEFAULT_HEC_TOKEN}"
        ))
        .await,
        (400, reply(22, "Token disabled"))
    );
    sim.stop().await;
    let sick = start(SplunkHecConfig {
        faults: HecFaults {
            unhealthy_rate: 1.0,
            ..HecFaults::default()
        },
        ..SplunkHecConfig::default()
    })
    .await;
    assert_eq!(
        get(format!("{}/services/collector/health", sick.url())).await,
        (503, reply(18, "HEC is unhealthy, queues are full"))
    );
    sick.stop().await;
}

#[tokio::test]
async fn configuration_is_checked() {
    let parsed: SplunkHecConfig = toml::from_str(
        r#"
        seed = 5
        max_content_length = "1MB"
        [[tokens]]
        token = "11111111-2222-3333-4444-555555555555"
        ack = true
        indexes = ["m365", "main"]
        default_index = "m365"
        [faults]
        ack_delay = "2s"
        lost_ack_rate = 0.1
        "#,
    )
    .expect("config parses");
    assert_eq!(parsed.max_content_length, 1_000_000);
    assert_eq!(parsed.faults.ack_delay, Duration::from_secs(2));
    parsed.validate().expect("valid");
    assert!(toml::from_str::<SplunkHecConfig>("colour = 1").is_err());
    let bad = [
        SplunkHecConfig {
            tokens: vec![],
            ..SplunkHecConfig::default()
        },
        SplunkHecConfig {
            tokens: vec![HecToken {
                token: "not-a-guid".into(),
                ..HecToken::default()
            }],
            ..SplunkHecConfig::default()
        },
        SplunkHecConfig {
            tokens: vec![HecToken {
                indexes: vec!["a".into()],
                ..HecToken::default()
            }],
            ..SplunkHecConfig::default()
        },
        SplunkHecConfig {
            faults: HecFaults {
                busy_rate: 1.5,
                ..HecFaults::default()
            },
            ..SplunkHecConfig::default()
        },
    ];
    for cfg in bad {
        assert!(cfg.validate().is_err(), "{cfg:?}");
        let addr: SocketAddr = "127.0.0.1:0".parse().expect("address");
        assert!(SplunkHecSimulator::start(cfg, addr).await.is_err());
    }
    // Tokens never show in Debug output.
    let shown = format!("{:?}", SplunkHecConfig::default());
    assert!(!shown.contains(DEFAULT_HEC_TOKEN), "{shown}");
}

/// A slow request waits before anything is checked; a client that gives up meanwhile (closes
/// the connection) gets nothing indexed, so its resend is not a duplicate.
#[tokio::test]
async fn a_slow_request_abandoned_by_its_client_is_not_indexed() {
    let sim = start(SplunkHecConfig {
        faults: HecFaults {
            slow_rate: 1.0,
            // Long enough that, were the request still processed, stop() would wait for it
            // and the event would show up below.
            slow_delay: Duration::from_secs(60),
            ..HecFaults::default()
        },
        ..SplunkHecConfig::default()
    })
    .await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .expect("client");
    let sent = client
        .post(format!("{}/services/collector/event", sim.url()))
        .header("authorization", splunk(DEFAULT_HEC_TOKEN))
        .body(r#"{"event":"x"}"#)
        .send()
        .await;
    assert!(sent.is_err_and(|e| e.is_timeout()));
    drop(client);
    // Were the abandoned request still running, this would wait for it to be processed.
    sim.wait_idle().await;
    assert!(sim.indexed().is_empty());
    assert_eq!(sim.stats().requests, 0);
    sim.stop().await;
}

#[tokio::test]
async fn without_keeping_events_the_answers_and_counts_are_the_same() {
    let mut cfg = with_ack_token(SplunkHecConfig {
        keep_events: false,
        ..SplunkHecConfig::default()
    });
    cfg.tokens[0].indexes = vec!["main".into()];
    let sim = start(cfg).await;
    assert_eq!(
        send_events(
            &sim,
            r#"{"event":"a"}{"event":{"b":1}}{"event":"c","index":"x"}{"event":"d"}"#
        )
        .await,
        (
            400,
            json!({"text": "Incorrect index", "code": 7, "invalid-event-number": 2})
        )
    );
    assert_eq!(
        send_acked(&sim, r#"{"event":"a"} {"event":"b","fields":{"f":["x"]}}"#).await,
        (200, json!({"text": "Success", "code": 0, "ackId": 0}))
    );
    let got = post(
        &sim,
        "/services/collector/raw",
        &[("authorization", &splunk(DEFAULT_HEC_TOKEN))],
        "one\ntwo\n\nthree\n",
    )
    .await;
    assert_eq!(got, (200, reply(0, "Success")));
    assert!(sim.indexed().is_empty());
    let stats = sim.stats();
    assert_eq!(stats.events_indexed, 2 + 2 + 3);
    assert_eq!(stats.events_rejected, 1);
    sim.stop().await;
}
