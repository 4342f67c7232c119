//! The sink against the Elasticsearch / OpenSearch simulator, with faults on.

use std::time::Duration;

use siemflow_core::{AckReceipt, BatchStatus, SinkConfig};
use siemflow_simulator::elasticsearch::{
    ElasticsearchConfig, ElasticsearchSimulator, EsApiKey, EsFaults, EsUser, Flavour,
};

use super::ElasticsearchSinkConfig;
use crate::test_support::{RunningSink, start_sink};

const MARKER: &str = "POISON";
const INDEX: &str = "m365-exchange";

type Running = RunningSink;

/// The test sink's options; `index` is `m365-{{ .Workload }}` unless `extra` sets it.
fn sink_config(url: &str, extra: &str) -> ElasticsearchSinkConfig {
    let index = if extra.contains("index =") {
        ""
    } else {
        "index = \"m365-{{ .Workload }}\"\n"
    };
    let text = format!(
        "endpoints = [\"{url}\"]\n{index}id_fields = [\"Id\"]\n\
         concurrency = 4\nbatch = {{ max_events = 20, timeout = \"10ms\" }}\n\
         request = {{ timeout = \"1s\" }}\n\
         retry = {{ initial_backoff = \"5ms\", max_backoff = \"50ms\", max_duration = \"10m\" }}\n{extra}"
    );
    let config: ElasticsearchSinkConfig = toml::from_str(&text).expect("sink config");
    assert_eq!(config.check(), Vec::new());
    config
}

async fn simulator(config: ElasticsearchConfig) -> ElasticsearchSimulator {
    ElasticsearchSimulator::start(config, "127.0.0.1:0".parse().expect("address"))
        .await
        .expect("simulator")
}

fn start(config: &ElasticsearchSinkConfig) -> Running {
    start_sink("es", "elasticsearch", config)
}

fn record(i: usize, poison_every: usize) -> serde_json::Value {
    let note = if i % poison_every == poison_every - 1 {
        MARKER
    } else {
        "fine"
    };
    serde_json::json!({
        "Id": format!("id-{i}"),
        "CreationTime": "2026-11-02T10:15:30",
        "Workload": "Exchange",
        "Note": note,
    })
}

/// Events with ids `range`, in batches of 50, every `poison_every`-th marked.
async fn send(
    running: &Running,
    range: std::ops::Range<usize>,
    poison_every: usize,
) -> Vec<AckReceipt> {
    running.send(range.map(|i| record(i, poison_every))).await
}

fn faults() -> EsFaults {
    EsFaults {
        request_throttle_rate: 0.1,
        request_unavailable_rate: 0.1,
        item_throttle_rate: 0.1,
        item_unavailable_rate: 0.1,
        slow_rate: 0.05,
        // Far past the sink's 1s request timeout: those requests time out and are resent.
        slow_delay: Duration::from_secs(30),
        reject_marker: Some(MARKER.into()),
    }
}

/// Every id of `0..total` written exactly once, except the poisoned ones (never);
/// returns the ids dead-lettered, sorted.
fn assert_exactly_once(
    es: &ElasticsearchSimulator,
    total: usize,
    poison_every: usize,
    dead: &[serde_json::Value],
) -> Vec<String> {
    let attempts = es.indexing_attempts(INDEX);
    let poisoned: Vec<String> = (0..total)
        .filter(|i| i % poison_every == poison_every - 1)
        .map(|i| format!("id-{i}"))
        .collect();
    let documents = es.documents(INDEX);
    assert_eq!(
        documents.len(),
        total - poisoned.len(),
        "one document per event"
    );
    let mut stored: Vec<String> = documents
        .iter()
        .map(|(_, doc)| doc["Id"].as_str().expect("Id").to_string())
        .collect();
    stored.sort();
    stored.dedup();
    assert_eq!(
        stored.len(),
        total - poisoned.len(),
        "no event stored twice"
    );
    for (id, counts) in &attempts {
        assert!(
            counts.writes <= 1,
            "_id {id} written {} times",
            counts.writes
        );
    }
    let writes: u64 = attempts.values().map(|c| c.writes).sum();
    assert_eq!(writes as usize, total - poisoned.len());
    let mut dead_ids: Vec<String> = dead
        .iter()
        .map(|e| e["Id"].as_str().expect("Id").to_string())
        .collect();
    dead_ids.sort();
    let mut expected = poisoned.clone();
    expected.sort();
    assert_eq!(dead_ids, expected, "each marked event dead-lettered once");
    assert_eq!(
        documents.len() + dead.len(),
        total,
        "delivered + dead-lettered = input"
    );
    dead_ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_per_id_under_faults() {
    let es = simulator(ElasticsearchConfig {
        seed: 7,
        faults: faults(),
        ..ElasticsearchConfig::default()
    })
    .await;
    let config = sink_config(&es.url(), "compression = \"gzip\"");
    let mut running = start(&config);
    let total = 600;
    let receipts = send(&running, 0..total, 97).await;
    let mut dead = running.settle(receipts).await;
    // The source reads the first 100 again (a restart before its checkpoint): they land
    // as 409 on `create` and count as delivered.
    let receipts = send(&running, 0..100, 97).await;
    dead.extend(running.settle(receipts).await);
    dead.extend(running.finish().await);

    // id-96, the one marked event among the first 100, was refused on each delivery.
    let refused_twice = dead.iter().filter(|e| e["Id"] == "id-96").count();
    assert_eq!(refused_twice, 2);
    let mut first = dead.clone();
    if let Some(at) = first.iter().rposition(|e| e["Id"] == "id-96") {
        first.remove(at);
    }
    assert_exactly_once(&es, total, 97, &first);

    for event in &dead {
        let dropped = &event["metadata"]["dropped"];
        assert_eq!(dropped["reason"], "invalid_document");
        assert_eq!(dropped["component_type"], "elasticsearch");
        assert_eq!(dropped["response"]["status"], 400);
        let error: serde_json::Value =
            serde_json::from_str(dropped["response"]["body"].as_str().expect("body"))
                .expect("the item's error as JSON");
        assert_eq!(error["type"], "document_parsing_exception");
        assert!(
            dropped["message"]
                .as_str()
                .expect("message")
                .contains("document_parsing_exception"),
            "{dropped}"
        );
    }
    let attempts = es.indexing_attempts(INDEX);
    let conflicts: u64 = attempts.values().map(|c| c.conflicts).sum();
    assert!(conflicts >= 98, "re-deliveries answered 409: {conflicts}");
    let stats = es.stats();
    for status in [429, 503] {
        assert!(
            stats.by_status.get(&status).copied().unwrap_or(0) > 0,
            "request-level {status} seen: {stats:?}"
        );
        assert!(
            stats.items_by_status.get(&status).copied().unwrap_or(0) > 0,
            "item-level {status} seen: {stats:?}"
        );
    }
    assert!(
        stats.largest_decoded_body > stats.largest_body,
        "bodies were gzipped: {stats:?}"
    );
    es.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opensearch_with_basic_auth_under_faults() {
    let es = simulator(ElasticsearchConfig {
        seed: 11,
        flavour: Flavour::Opensearch,
        users: vec![EsUser {
            username: "shipper".into(),
            password: "s3cret".into(),
        }],
        faults: faults(),
        ..ElasticsearchConfig::default()
    })
    .await;
    let config = sink_config(
        &es.url(),
        "auth = { strategy = \"basic\", user = \"shipper\", password = \"s3cret\" }",
    );
    let mut running = start(&config);
    let total = 300;
    let receipts = send(&running, 0..total, 61).await;
    let mut dead = running.settle(receipts).await;
    dead.extend(running.finish().await);
    assert_exactly_once(&es, total, 61, &dead);
    for event in &dead {
        let dropped = &event["metadata"]["dropped"];
        assert_eq!(dropped["reason"], "invalid_document");
        // OpenSearch's name for it: the status decided, not the name.
        assert!(
            dropped["message"]
                .as_str()
                .expect("message")
                .contains("mapper_parsing_exception"),
            "{dropped}"
        );
    }
    let stats = es.stats();
    assert!(
        stats
            .items_by_error
            .contains_key("opensearch_rejected_execution_exception"),
        "{stats:?}"
    );
    assert_eq!(stats.by_status.get(&401), None, "{stats:?}");
    es.stop().await;
}

#[tokio::test]
async fn data_stream_with_api_key() {
    let es = simulator(ElasticsearchConfig {
        data_streams: vec!["logs-*-*".into()],
        api_keys: vec![EsApiKey {
            id: "VuaCfGcBCdbkQm-e5aOx".into(),
            key: "ui2lp2axTNmsyakw9tvNnw".into(),
        }],
        ..ElasticsearchConfig::default()
    })
    .await;
    // base64("VuaCfGcBCdbkQm-e5aOx:ui2lp2axTNmsyakw9tvNnw"), the `encoded` field.
    let config = sink_config(
        &es.url(),
        "mode = \"data_stream\"\nindex = \"logs-m365.{{ .Workload }}-default\"\n\
         auth = { strategy = \"api_key\", api_key = \"VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==\" }",
    );
    let mut running = start(&config);
    let receipts = send(&running, 0..120, 1000).await;
    let dead = running.settle(receipts).await;
    assert!(dead.is_empty(), "{dead:?}");
    assert!(running.finish().await.is_empty());
    let documents = es.documents("logs-m365.exchange-default");
    assert_eq!(documents.len(), 120);
    for (_, doc) in &documents {
        assert_eq!(doc["@timestamp"], "2026-11-02T10:15:30.000Z");
    }
    let stats = es.stats();
    assert_eq!(stats.items_by_status.get(&201), Some(&120), "{stats:?}");
    es.stop().await;
}

#[tokio::test]
async fn a_too_large_request_is_split() {
    let es = simulator(ElasticsearchConfig {
        max_content_length: 4096,
        ..ElasticsearchConfig::default()
    })
    .await;
    let mut config = sink_config(&es.url(), "");
    // Batches of ~50 events, some 10 KB: each is refused until split small enough.
    config.batch.max_events = 100;
    let mut running = start(&config);
    let receipts = send(&running, 0..100, 1000).await;
    assert!(running.settle(receipts).await.is_empty());
    assert!(running.finish().await.is_empty());
    assert_eq!(es.documents(INDEX).len(), 100);
    let stats = es.stats();
    assert!(
        stats.by_status.get(&413).copied().unwrap_or(0) > 0,
        "{stats:?}"
    );
    es.stop().await;
}

#[tokio::test]
async fn wrong_credentials_make_the_sink_unhealthy_and_keep_the_events() {
    let es = simulator(ElasticsearchConfig {
        users: vec![EsUser {
            username: "shipper".into(),
            password: "right".into(),
        }],
        ..ElasticsearchConfig::default()
    })
    .await;
    let config = sink_config(
        &es.url(),
        "auth = { strategy = \"basic\", user = \"shipper\", password = \"wrong\" }\nhealthcheck = { enabled = false }",
    );
    let running = start(&config);
    let receipts = send(&running, 0..1, 1000).await;
    crate::test_support::eventually("unhealthy", || running.health.ready().is_err()).await;
    let problems = running.health.ready().expect_err("unhealthy");
    assert!(problems[0].contains("HTTP 401"), "{problems:?}");
    assert!(problems[0].contains("check `auth`"), "{problems:?}");
    assert!(
        !problems[0].contains("wrong"),
        "password not shown: {problems:?}"
    );
    assert!(es.documents(INDEX).is_empty());
    running.abort.cancel();
    for receipt in receipts {
        assert_eq!(
            receipt.await,
            BatchStatus::Failed,
            "kept for the source to re-read"
        );
    }
    running.task.await.expect("task").expect("sink");
    es.stop().await;
}

#[tokio::test]
async fn healthcheck_refuses_an_api_key_for_opensearch() {
    let es = simulator(ElasticsearchConfig {
        flavour: Flavour::Opensearch,
        ..ElasticsearchConfig::default()
    })
    .await;
    let config = sink_config(
        &es.url(),
        "auth = { strategy = \"api_key\", api_key = \"a2V5OnNlY3JldA==\" }",
    );
    let running = start(&config);
    // Unhealthy from the start (healthcheck pending): wait for the probe's verdict.
    crate::test_support::eventually("the healthcheck's verdict", || {
        running
            .health
            .ready()
            .is_err_and(|problems| !problems.join("\n").contains("pending"))
    })
    .await;
    let problems = running.health.ready().expect_err("unhealthy");
    assert!(problems[0].contains("OpenSearch"), "{problems:?}");
    running.abort.cancel();
    running.task.await.expect("task").expect("sink");
    es.stop().await;
}
