//! The sink against the HEC simulator, with faults on.

use std::collections::BTreeMap;
use std::time::Duration;

use siemflow_core::{AckReceipt, BatchStatus, SinkConfig};
use siemflow_simulator::splunk_hec::{HecFaults, HecToken, SplunkHecConfig, SplunkHecSimulator};

use super::SplunkHecSinkConfig;
use crate::test_support::{RunningSink, start_sink};

const TOKEN: &str = "00000000-0000-0000-0000-000000000000";
const MARKER: &str = "POISON";

type Running = RunningSink;

fn sink_config(url: &str, extra: &str) -> SplunkHecSinkConfig {
    let text = format!(
        "endpoint = \"{url}\"\ntoken = \"{TOKEN}\"\nindex = \"main\"\nsourcetype = \"o365:management:activity\"\n\
         concurrency = 4\nbatch = {{ max_events = 20, timeout = \"10ms\" }}\n\
         request = {{ timeout = \"1s\" }}\n\
         retry = {{ initial_backoff = \"5ms\", max_backoff = \"50ms\", max_duration = \"10m\" }}\n{extra}"
    );
    let config: SplunkHecSinkConfig = toml::from_str(&text).expect("sink config");
    assert_eq!(config.check(), Vec::new());
    config
}

fn start(config: &SplunkHecSinkConfig) -> Running {
    start_sink("splunk", "splunk_hec", config)
}

fn record(i: usize, poison_every: usize) -> serde_json::Value {
    let note = if i % poison_every == poison_every - 1 {
        MARKER
    } else {
        "fine"
    };
    serde_json::json!({
        "Id": i.to_string(),
        "CreationTime": "2026-11-02T10:15:30",
        "Workload": "Exchange",
        "Note": note,
    })
}

/// `count` events with ids `0..count`, in batches of 50, every `poison_every`-th marked.
async fn send(running: &Running, count: usize, poison_every: usize) -> Vec<AckReceipt> {
    running
        .send((0..count).map(|i| record(i, poison_every)))
        .await
}

fn counts(hec: &SplunkHecSimulator) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for event in hec.indexed() {
        let id = event.event["Id"].as_str().expect("id").to_string();
        *counts.entry(id).or_default() += 1;
    }
    counts
}

fn faults() -> HecFaults {
    HecFaults {
        busy_rate: 0.1,
        server_error_rate: 0.1,
        slow_rate: 0.05,
        // Far past the sink's 1s request timeout: those requests time out and are resent.
        slow_delay: Duration::from_secs(30),
        reject_marker: Some(MARKER.into()),
        ..HecFaults::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_with_indexer_acknowledgements_under_faults() {
    let hec = SplunkHecSimulator::start(
        SplunkHecConfig {
            seed: 7,
            tokens: vec![HecToken {
                ack: true,
                ..HecToken::default()
            }],
            faults: HecFaults {
                ack_delay: Duration::from_millis(30),
                lost_ack_rate: 0.15,
                ..faults()
            },
            ..SplunkHecConfig::default()
        },
        "127.0.0.1:0".parse().expect("address"),
    )
    .await
    .expect("simulator");
    let config = sink_config(
        &hec.url(),
        "compression = \"gzip\"\nacknowledgements = { ack_poll_interval = \"20ms\", ack_timeout = \"500ms\" }",
    );
    let mut running = start(&config);
    let total = 600;
    let receipts = send(&running, total, 97).await;
    let mut dead = running.settle(receipts).await;
    dead.extend(running.finish().await);

    let poisoned: Vec<String> = (0..total)
        .filter(|i| i % 97 == 96)
        .map(|i| i.to_string())
        .collect();
    let counts = counts(&hec);
    for i in 0..total {
        let id = i.to_string();
        let expected = usize::from(!poisoned.contains(&id));
        assert_eq!(
            counts.get(&id).copied().unwrap_or(0),
            expected,
            "event {id}"
        );
    }
    let mut dead_ids: Vec<String> = dead
        .iter()
        .map(|e| e["Id"].as_str().expect("id").to_string())
        .collect();
    dead_ids.sort_by_key(|id| id.parse::<usize>().expect("number"));
    assert_eq!(dead_ids, poisoned, "each marked event dead-lettered once");
    for event in &dead {
        let dropped = &event["metadata"]["dropped"];
        assert_eq!(dropped["reason"], "invalid_data_format");
        assert_eq!(dropped["component_type"], "splunk_hec");
        assert_eq!(dropped["response"]["status"], 400);
        assert!(
            dropped["response"]["body"]
                .as_str()
                .expect("body")
                .contains("\"code\":6")
        );
    }
    let stats = hec.stats();
    assert!(
        stats.by_code.get(&9).copied().unwrap_or(0) > 0,
        "busy answers seen: {stats:?}"
    );
    assert!(
        stats.by_code.get(&8).copied().unwrap_or(0) > 0,
        "5xx answers seen: {stats:?}"
    );
    assert!(stats.acks_lost > 0, "lost acks seen: {stats:?}");
    let indexed = hec.indexed();
    assert!(
        indexed
            .iter()
            .all(|e| e.index == "main" && e.time == Some(1793614530.0))
    );
    assert!(indexed.iter().all(|e| e.channel.is_some()));
    hec.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_least_once_without_acknowledgements() {
    let hec = SplunkHecSimulator::start(
        SplunkHecConfig {
            seed: 11,
            faults: faults(),
            ..SplunkHecConfig::default()
        },
        "127.0.0.1:0".parse().expect("address"),
    )
    .await
    .expect("simulator");
    let config = sink_config(&hec.url(), "acknowledgements = { enabled = false }");
    let running = start(&config);
    let total = 400;
    let receipts = send(&running, total, 1000).await;
    for receipt in receipts {
        assert_eq!(receipt.await, BatchStatus::Delivered);
    }
    assert!(running.finish().await.is_empty());
    let counts = counts(&hec);
    let repeats: usize = counts.values().map(|n| n - 1).sum();
    for i in 0..total {
        assert!(
            counts.get(&i.to_string()).is_some_and(|n| *n >= 1),
            "event {i} missing"
        );
    }
    eprintln!("acks off: {total} events, {repeats} repeats");
    let stats = hec.stats();
    assert!(stats.by_code.get(&9).copied().unwrap_or(0) > 0, "{stats:?}");
    hec.stop().await;
}

#[tokio::test]
async fn a_wrong_token_makes_the_sink_unhealthy_and_keeps_the_events() {
    let hec = SplunkHecSimulator::start(
        SplunkHecConfig::default(),
        "127.0.0.1:0".parse().expect("address"),
    )
    .await
    .expect("simulator");
    let mut config = sink_config(&hec.url(), "healthcheck = { enabled = false }");
    config.token = siemflow_core::Secret::new("11111111-1111-1111-1111-111111111111");
    let running = start(&config);
    let receipts = send(&running, 1, 1000).await;
    crate::test_support::eventually("unhealthy", || running.health.ready().is_err()).await;
    let problems = running.health.ready().expect_err("unhealthy");
    assert!(problems[0].contains("HEC code 4"), "{problems:?}");
    assert!(hec.indexed().is_empty());
    running.abort.cancel();
    for receipt in receipts {
        assert_eq!(
            receipt.await,
            BatchStatus::Failed,
            "kept for the source to re-read"
        );
    }
    running.task.await.expect("task").expect("sink");
    hec.stop().await;
}

#[tokio::test]
async fn an_index_rendered_from_an_event_that_splunk_refuses_is_dead_lettered() {
    let hec = SplunkHecSimulator::start(
        SplunkHecConfig {
            tokens: vec![HecToken {
                token: TOKEN.into(),
                indexes: vec!["main".into(), "m365_Exchange".into()],
                ..HecToken::default()
            }],
            ..SplunkHecConfig::default()
        },
        "127.0.0.1:0".parse().expect("address"),
    )
    .await
    .expect("simulator");
    let mut config = sink_config(&hec.url(), "acknowledgements = { enabled = false }");
    config.index = Some("m365_{{ .Workload }}".into());
    let mut running = start(&config);
    let records = (0..40).map(|i| {
        let workload = if i % 10 == 3 { "Bogus" } else { "Exchange" };
        serde_json::json!({"Id": i.to_string(), "Workload": workload})
    });
    let receipts = running.send(records).await;
    let mut dead = running.settle(receipts).await;
    assert!(
        running.health.ready().is_ok(),
        "not a configuration problem"
    );
    dead.extend(running.finish().await);
    let mut dead_ids: Vec<&str> = dead.iter().filter_map(|d| d["Id"].as_str()).collect();
    dead_ids.sort_unstable();
    assert_eq!(dead_ids, ["13", "23", "3", "33"]);
    let dropped = &dead[0]["metadata"]["dropped"];
    assert_eq!(dropped["reason"], "incorrect_index");
    assert_eq!(dropped["response"]["status"], 400);
    assert!(
        dropped["message"]
            .as_str()
            .is_some_and(|m| m.contains("HEC code 7") && m.contains("m365_Bogus")),
        "{dropped}"
    );
    let counts = counts(&hec);
    assert_eq!(counts.len(), 36, "every other event indexed");
    assert!(hec.indexed().iter().all(|e| e.index == "m365_Exchange"));
    assert_eq!(
        hec.stats().by_code.get(&7).copied(),
        Some(1),
        "the request is dead-lettered whole (one index), not one event per request"
    );
    hec.stop().await;
}

#[tokio::test]
async fn a_fixed_index_splunk_refuses_is_a_configuration_problem_and_keeps_the_events() {
    let hec = SplunkHecSimulator::start(
        SplunkHecConfig {
            tokens: vec![HecToken {
                token: TOKEN.into(),
                indexes: vec!["m365".into()],
                default_index: "m365".into(),
                ..HecToken::default()
            }],
            ..SplunkHecConfig::default()
        },
        "127.0.0.1:0".parse().expect("address"),
    )
    .await
    .expect("simulator");
    let config = sink_config(
        &hec.url(),
        "healthcheck = { enabled = false }\nacknowledgements = { enabled = false }",
    );
    let mut running = start(&config);
    let receipts = send(&running, 30, 1000).await;
    crate::test_support::eventually("unhealthy", || running.health.ready().is_err()).await;
    let problems = running.health.ready().expect_err("unhealthy");
    assert!(
        problems[0].contains("HEC code 7") && problems[0].contains("allowed indexes"),
        "the configured index is the operator's to fix: {problems:?}"
    );
    running.abort.cancel();
    for receipt in receipts {
        assert_eq!(
            receipt.await,
            BatchStatus::Failed,
            "kept for the source to re-read"
        );
    }
    assert!(running.drain_dead().is_empty(), "nothing dead-lettered");
    assert!(hec.indexed().is_empty());
    running.task.await.expect("task").expect("sink");
    hec.stop().await;
}
