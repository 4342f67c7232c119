//! The sink against the Logs Ingestion simulator: faults, the 1 MiB rule, column rules,
//! `TimeGenerated`, configuration errors.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value as Json, json};
use siemflow_core::{BatchStatus, SinkConfig};
use siemflow_simulator::sentinel::{
    DEFAULT_DCR_ID, DEFAULT_STREAM, Dcr, SentinelConfig, SentinelFaults, SentinelSimulator,
};

use super::{MAX_REQUEST_BYTES, SentinelSinkConfig};
use crate::test_support::{RunningSink, eventually, start_sink};

type Running = RunningSink;

async fn simulator(config: SentinelConfig) -> SentinelSimulator {
    SentinelSimulator::start(config, "127.0.0.1:0".parse().expect("address"))
        .await
        .expect("simulator")
}

/// A sink config for the simulator: its URL is both the endpoint and the authority.
/// `extra` adds options or replaces the test defaults of `batch`, `request` and `retry`.
fn sink_config(sim: &SentinelSimulator, extra: &str) -> SentinelSinkConfig {
    let cfg = sim.config();
    let mut defaults = String::new();
    for (key, value) in [
        ("batch", "{ max_events = 25, timeout = \"10ms\" }"),
        ("request", "{ timeout = \"2s\" }"),
        (
            "retry",
            "{ initial_backoff = \"5ms\", max_backoff = \"100ms\", max_duration = \"10m\" }",
        ),
    ] {
        if !extra.contains(&format!("{key} =")) {
            defaults.push_str(&format!("{key} = {value}\n"));
        }
    }
    let text = format!(
        "endpoint = \"{url}\"\ndcr_immutable_id = \"{DEFAULT_DCR_ID}\"\nstream_name = \"{DEFAULT_STREAM}\"\n\
         concurrency = 4\n{defaults}{extra}\n\
         [auth]\ntenant_id = \"{tenant}\"\nclient_id = \"{client}\"\nclient_secret = \"{secret}\"\nlogin_url = \"{url}\"\n",
        url = sim.url(),
        tenant = cfg.tenant_id,
        client = cfg.client_id,
        secret = cfg.client_secret,
    );
    let config: SentinelSinkConfig = toml::from_str(&text).expect("sink config");
    assert_eq!(config.check(), Vec::new());
    config
}

fn start(config: &SentinelSinkConfig) -> Running {
    start_sink("sentinel", "sentinel", config)
}

/// How often each `Seq` arrived.
fn counts(sim: &SentinelSimulator) -> BTreeMap<u64, usize> {
    let mut counts = BTreeMap::new();
    for record in sim.received(DEFAULT_STREAM) {
        *counts
            .entry(record["Seq"].as_u64().expect("Seq"))
            .or_default() += 1;
    }
    counts
}

fn audit_record(seq: u64) -> Json {
    json!({
        "Seq": seq,
        "CreationTime": "2026-11-02T10:15:30",
        "Workload": "AzureActiveDirectory",
        "Operation": "UserLoggedIn",
    })
}

/// Text gzip cannot shrink much: a simple generator's hex digits.
fn noise(len: usize, seed: u64) -> String {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    let mut text = String::with_capacity(len);
    while text.len() < len {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        text.push_str(&format!("{:016x}", state));
    }
    text.truncate(len);
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_carry_time_generated_and_valid_column_names() {
    let sim = simulator(SentinelConfig::default()).await;
    let mut running = start(&sink_config(&sim, ""));
    let receipts = running
        .send(vec![
            json!({
                "Seq": 1,
                "CreationTime": "2026-11-02T10:15:30",
                "Id": "9f0c2a7e-1b3d-4e5f-8a9b-0c1d2e3f4a5b",
                "TenantId": "00000000-0000-0000-0000-000000000001",
                "Type": "audit",
                "user.name": "alice@contoso.example",
                "_ResourceId": "/subscriptions/x",
                "Raw": {"id": 7, "Type": "nested"},
            }),
            json!({"Seq": 2, "createdDateTime": "2026-11-02T11:00:00.1234567+02:00"}),
            json!({"Seq": 3, "Note": "no time at all"}),
            json!("a bare string is not a record"),
        ])
        .await;
    let dead = running.settle(receipts).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(
        dead[0]["metadata"]["dropped"]["reason"],
        json!("not_an_object"),
        "{dead:?}"
    );
    assert!(running.finish().await.is_empty());

    let received = sim.received(DEFAULT_STREAM);
    assert_eq!(received.len(), 3);
    let by_seq = |seq: u64| {
        received
            .iter()
            .find(|r| r["Seq"] == json!(seq))
            .expect("record")
            .clone()
    };
    assert_eq!(
        by_seq(1),
        json!({
            "TimeGenerated": "2026-11-02T10:15:30.000Z",
            "Seq": 1,
            "CreationTime": "2026-11-02T10:15:30",
            "x_Id": "9f0c2a7e-1b3d-4e5f-8a9b-0c1d2e3f4a5b",
            "x_TenantId": "00000000-0000-0000-0000-000000000001",
            "x_Type": "audit",
            "user_name": "alice@contoso.example",
            "x__ResourceId": "/subscriptions/x",
            "Raw": {"id": 7, "Type": "nested"},
        })
    );
    assert_eq!(
        by_seq(2)["TimeGenerated"],
        json!("2026-11-02T09:00:00.1234567Z")
    );
    let defaulted = by_seq(3)["TimeGenerated"]
        .as_str()
        .expect("set")
        .to_string();
    let parsed = chrono::DateTime::parse_from_rfc3339(&defaulted).expect("ISO 8601");
    assert!(defaulted.ends_with('Z') && parsed.timestamp() > 1_700_000_000);
    let stats = sim.stats();
    assert_eq!(stats.non_array_bodies, 0);
    assert_eq!(stats.by_status.get(&400), None, "{stats:?}");
    // One token for the healthcheck and every request: it is cached.
    assert_eq!(sim.token_requests(), 1);
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_arrives_at_least_once_under_faults() {
    let sim = simulator(SentinelConfig {
        seed: 11,
        faults: SentinelFaults {
            throttle_rate: 0.15,
            unavailable_rate: 0.1,
            server_error_rate: 0.1,
            slow_rate: 0.1,
            // Far past the sink's request timeout: those requests time out and are sent
            // again, though the simulator may still take the first copy (repeats).
            slow_delay: Duration::from_secs(3),
            retry_after: Duration::from_secs(1),
        },
        ..SentinelConfig::default()
    })
    .await;
    let config = sink_config(&sim, "request = { timeout = \"500ms\" }");
    let mut running = start(&config);
    let total = 600;
    let receipts = running.send((0..total).map(audit_record)).await;
    let dead = running.settle(receipts).await;
    assert!(dead.is_empty(), "nothing here is undeliverable: {dead:?}");
    assert!(running.finish().await.is_empty());

    let counts = counts(&sim);
    let missing: Vec<u64> = (0..total).filter(|s| !counts.contains_key(s)).collect();
    assert!(missing.is_empty(), "missing: {missing:?}");
    assert_eq!(counts.len() as u64, total, "nothing but the events sent");
    let repeats: usize = counts.values().map(|n| n - 1).sum();
    let stats = sim.stats();
    eprintln!("repeats: {repeats}; simulator: {stats:?}");
    // The faults really happened.
    assert!(stats.throttled > 0, "{stats:?}");
    assert!(
        stats.by_status.get(&503).copied().unwrap_or(0) > 0,
        "{stats:?}"
    );
    assert!(
        stats.by_status.get(&500).copied().unwrap_or(0) > 0,
        "{stats:?}"
    );
    assert_eq!(stats.too_large, 0);
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_exceeds_one_mebibyte_and_an_oversized_record_is_dead_lettered() {
    let sim = simulator(SentinelConfig {
        // Only counted: the test looks at sizes and sequence numbers.
        max_field_bytes: 1 << 20,
        ..SentinelConfig::default()
    })
    .await;
    let config = sink_config(&sim, "batch = { max_events = 1000, timeout = \"50ms\" }");
    let mut running = start(&config);
    // Records of up to 900 KB, mixed with small ones, plus one that can never fit.
    let sizes: Vec<usize> = vec![
        900_000, 120, 450_000, 450_000, 899_000, 300_000, 300_000, 300_000, 50_000, 700_000,
        1_100_000, 200_000, 64_000, 900_000, 10, 10, 10, 600_000, 500_000,
    ];
    let mut records: Vec<Json> = sizes
        .iter()
        .enumerate()
        .map(|(seq, &size)| {
            json!({
                "Seq": seq,
                "CreationTime": "2026-11-02T10:15:30",
                "Blob": noise(size, seq as u64),
            })
        })
        .collect();
    // Many small records too, so batches fill by bytes and by count.
    records.extend((100..400).map(
        |seq| json!({"Seq": seq, "CreationTime": "2026-11-02T10:15:30", "Blob": noise(5_000, seq)}),
    ));
    let receipts = running.send(records).await;
    let dead = running.settle(receipts).await;
    let mut dead_too = running.finish().await;
    let mut dead = dead;
    dead.append(&mut dead_too);

    let stats = sim.stats();
    assert_eq!(stats.too_large, 0, "{stats:?}");
    assert!(
        stats.largest_decoded_body <= MAX_REQUEST_BYTES,
        "{}",
        stats.largest_decoded_body
    );
    assert!(stats.largest_body <= MAX_REQUEST_BYTES);
    // Bodies really came close to the limit.
    assert!(stats.largest_decoded_body > 900_000, "{stats:?}");

    let counts = counts(&sim);
    let oversized = 10u64;
    for seq in (0..sizes.len() as u64).chain(100..400) {
        let expected = usize::from(seq != oversized);
        assert_eq!(
            counts.get(&seq).copied().unwrap_or(0),
            expected,
            "Seq {seq}"
        );
    }
    assert_eq!(dead.len(), 1, "only the oversized record");
    assert_eq!(dead[0]["Seq"], json!(oversized));
    let dropped = &dead[0]["metadata"]["dropped"];
    assert_eq!(dropped["reason"], json!("too_large"), "{dropped}");
    assert!(
        dropped["message"]
            .as_str()
            .is_some_and(|m| m.contains("1048576")),
        "{dropped}"
    );
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_at_the_limit_go_and_one_byte_more_is_dead_lettered() {
    let sim = simulator(SentinelConfig {
        max_field_bytes: 1 << 20,
        ..SentinelConfig::default()
    })
    .await;
    let config = sink_config(&sim, "compression = \"none\"");
    let writer = super::record::RecordWriter {
        timestamp_fields: config.timestamp_field.clone(),
        rename_prefix: config.rename_prefix.clone(),
    };
    // A record whose JSON is exactly `size` bytes.
    let record_of = |seq: u64, size: usize| {
        let base = json!({"Seq": seq, "CreationTime": "2026-11-02T10:15:30", "Blob": ""});
        let value: siemflow_core::Value = base.clone().into();
        let mut out = Vec::new();
        writer.write(
            value.as_object().expect("object"),
            chrono::Utc::now,
            &mut out,
        );
        let mut record = base;
        record["Blob"] = json!("b".repeat(size - out.len()));
        record
    };
    let limit = MAX_REQUEST_BYTES as usize;
    let mut running = start(&config);
    let receipts = running
        .send(vec![record_of(1, limit - 2), record_of(2, limit - 1)])
        .await;
    let mut dead = running.settle(receipts).await;
    dead.extend(running.finish().await);
    assert_eq!(counts(&sim), BTreeMap::from([(1, 1)]));
    assert_eq!(sim.stats().largest_decoded_body, MAX_REQUEST_BYTES);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["Seq"], json!(2));
    assert_eq!(dead[0]["metadata"]["dropped"]["reason"], json!("too_large"));
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_record_is_found_by_bisection_and_dead_lettered_alone() {
    let sim = simulator(SentinelConfig {
        dcrs: vec![Dcr {
            required_columns: vec!["TimeGenerated".into(), "Workload".into()],
            ..Dcr::default()
        }],
        ..SentinelConfig::default()
    })
    .await;
    let mut running = start(&sink_config(&sim, ""));
    let bad = [7u64, 8, 31];
    let records: Vec<Json> = (0..40)
        .map(|seq| {
            let mut record = audit_record(seq);
            if bad.contains(&seq) {
                record.as_object_mut().expect("object").remove("Workload");
            }
            record
        })
        .collect();
    let receipts = running.send(records).await;
    let mut dead = running.settle(receipts).await;
    dead.extend(running.finish().await);

    let counts = counts(&sim);
    for seq in 0..40 {
        let expected = usize::from(!bad.contains(&seq));
        assert_eq!(
            counts.get(&seq).copied().unwrap_or(0),
            expected,
            "Seq {seq}"
        );
    }
    let mut dead_seqs: Vec<u64> = dead
        .iter()
        .map(|d| d["Seq"].as_u64().expect("Seq"))
        .collect();
    dead_seqs.sort_unstable();
    assert_eq!(dead_seqs, bad);
    for letter in &dead {
        let dropped = &letter["metadata"]["dropped"];
        assert_eq!(dropped["reason"], json!("invalid_data"), "{dropped}");
        assert_eq!(dropped["response"]["status"], json!(400), "{dropped}");
        assert!(
            dropped["message"]
                .as_str()
                .is_some_and(|m| m.contains("MissingRequiredColumn")),
            "{dropped}"
        );
    }
    sim.stop().await;
}

/// A misconfigured sink: the healthcheck fails with a configuration error, `/ready`
/// says why, nothing is delivered, and the events are failed back when aborted.
async fn config_error(sim_config: SentinelConfig, extra: &str, expect: &[&str]) {
    let sim = simulator(sim_config).await;
    let config = sink_config(
        &sim,
        &format!("{extra}\nhealthcheck = {{ enabled = true }}"),
    );
    let running = start(&config);
    let receipts = running.send((0..5).map(audit_record)).await;
    // Unhealthy from the start (healthcheck pending): wait for the probe's verdict.
    eventually("the sink to report why it is unhealthy", || {
        running
            .health
            .ready()
            .is_err_and(|problems| !problems.join("\n").contains("pending"))
    })
    .await;
    let text = running.health.ready().expect_err("unhealthy").join("\n");
    for word in expect {
        assert!(text.contains(word), "`{word}` missing from: {text}");
    }
    assert!(sim.received(DEFAULT_STREAM).is_empty());
    running.abort.cancel();
    for receipt in receipts {
        assert_eq!(receipt.await, BatchStatus::Failed, "re-read by the source");
    }
    running.task.await.expect("task").expect("sink");
    assert!(sim.stats().records_accepted == 0);
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_for_the_wrong_cloud_is_a_configuration_error() {
    // The endpoint wants US Government tokens; the sink asks for public-cloud ones.
    config_error(
        SentinelConfig {
            audience: "https://monitor.azure.us".into(),
            ..SentinelConfig::default()
        },
        "",
        &["401", "InvalidAudience", "scope"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_dcr_is_a_configuration_error() {
    config_error(
        SentinelConfig {
            dcrs: vec![Dcr {
                immutable_id: "dcr-ffffffffffffffffffffffffffffffff".into(),
                ..Dcr::default()
            }],
            ..SentinelConfig::default()
        },
        "",
        &["404", "dcr_immutable_id"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_role_is_a_configuration_error() {
    config_error(
        SentinelConfig {
            dcrs: vec![Dcr {
                publishers: Some(vec!["11111111-1111-1111-1111-111111111111".into()]),
                ..Dcr::default()
            }],
            ..SentinelConfig::default()
        },
        "",
        &["403", "Monitoring Metrics Publisher"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_healthcheck_sends_no_data() {
    let sim = simulator(SentinelConfig::default()).await;
    let running = start(&sink_config(&sim, ""));
    let health = running.health.clone();
    // Not ready until the probe passed (it repeats every 30 s; a drain does not wait for it).
    crate::test_support::eventually("the healthcheck to pass", || health.ready().is_ok()).await;
    assert!(running.finish().await.is_empty());
    // The probe is one request with an empty array.
    let stats = sim.stats();
    assert_eq!(stats.requests, 1);
    assert_eq!(stats.by_status.get(&204), Some(&1));
    assert_eq!(stats.records_accepted, 0);
    assert_eq!(sim.token_requests(), 1);
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_always_times_out_fails_back_to_the_source_not_dropped() {
    let sim = simulator(SentinelConfig {
        faults: SentinelFaults {
            slow_rate: 1.0,
            slow_delay: Duration::from_secs(2),
            ..SentinelFaults::default()
        },
        ..SentinelConfig::default()
    })
    .await;
    let config = sink_config(
        &sim,
        "request = { timeout = \"100ms\" }\nhealthcheck = { enabled = false }\n\
         retry = { initial_backoff = \"5ms\", max_backoff = \"20ms\", max_duration = \"300ms\" }",
    );
    let running = start(&config);
    let receipts = running.send((0..3).map(audit_record)).await;
    for receipt in receipts {
        assert_eq!(
            receipt.await,
            BatchStatus::Failed,
            "the source reads it again"
        );
    }
    assert!(
        running.finish().await.is_empty(),
        "a timeout is not a data error"
    );
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_api_version_is_a_configuration_error() {
    config_error(
        SentinelConfig::default(),
        "api_version = \"2099-01-01\"",
        &["400", "InvalidApiVersionParameter", "api_version"],
    )
    .await;
}
