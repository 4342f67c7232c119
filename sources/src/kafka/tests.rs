//! The source's options and the consumer configuration they make (the consumer itself
//! runs against a real broker in tests/e2e/kafka.rs).

use siemflow_core::SourceConfig;

use super::KafkaSourceConfig;

fn parse(text: &str) -> KafkaSourceConfig {
    toml::from_str(text).expect("source config")
}

#[test]
fn offsets_are_stored_by_the_source_and_committed_in_the_background() {
    let config =
        parse("bootstrap_servers = \"k:9092\"\ngroup_id = \"g\"\ntopics = [\"m365.audit\"]");
    assert_eq!(config.check(), Vec::new());
    let client = config.client_config();
    assert_eq!(client.get("enable.auto.offset.store"), Some("false"));
    assert_eq!(client.get("enable.auto.commit"), Some("true"));
    assert_eq!(client.get("auto.offset.reset"), Some("earliest"));
    assert_eq!(
        client.get("partition.assignment.strategy"),
        Some("cooperative-sticky")
    );
    assert_eq!(config.metadata_key, "kafka");
}

#[test]
fn config_problems_name_their_keys() {
    let config = parse(
        r#"
bootstrap_servers = ""
group_id = " "
topics = []
metadata_key = ""
batch_max_events = 0
librdkafka_options = { "enable.auto.offset.store" = "true", "fetch.min.bytes" = "1" }
"#,
    );
    let keys: Vec<String> = config.check().into_iter().filter_map(|i| i.key).collect();
    assert_eq!(
        keys,
        [
            "bootstrap_servers",
            "group_id",
            "topics",
            "metadata_key",
            "batch_max_events",
            "librdkafka_options.enable.auto.offset.store"
        ]
    );
    let latest = parse(
        "bootstrap_servers = \"k:9092\"\ngroup_id = \"g\"\ntopics = [\"^m365\\\\..*\"]\nauto_offset_reset = \"latest\"\nlibrdkafka_options = { \"fetch.min.bytes\" = \"1\" }",
    );
    assert_eq!(latest.check(), Vec::new());
    let client = latest.client_config();
    assert_eq!(client.get("auto.offset.reset"), Some("latest"));
    assert_eq!(client.get("fetch.min.bytes"), Some("1"));
}

/// Produces `count` JSON records `{"n": i}` to `topic` (keys spread over partitions).
fn produce(bootstrap: &str, topic: &str, count: usize) {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("producer");
    for i in 0..count {
        let value = format!("{{\"n\":{i}}}");
        let key = format!("k{}", i % 7);
        let mut record = BaseRecord::to(topic).key(&key).payload(&value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    record = back;
                    producer.poll(std::time::Duration::from_millis(10));
                }
            }
        }
    }
    producer
        .flush(std::time::Duration::from_secs(30))
        .expect("flush");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pipeline_pauses_the_partitions_and_nothing_is_lost_or_reordered() {
    use std::collections::BTreeMap;

    use rdkafka::mocking::MockCluster;
    use siemflow_core::BatchStatus;
    use siemflow_core::event::resolve_batch;

    use crate::testing::{RunningSource, counter_value, eventually};

    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("audit", 2, 1).expect("topic");
    let total = 3000;
    let bootstrap = cluster.bootstrap_servers();
    let producing = bootstrap.clone();
    tokio::task::spawn_blocking(move || produce(&producing, "audit", total))
        .await
        .expect("producer task");
    let config = parse(&format!(
        "bootstrap_servers = \"{bootstrap}\"\ngroup_id = \"g\"\ntopics = [\"audit\"]\nbatch_max_events = 50"
    ));
    let state = tempfile::tempdir().expect("tempdir");
    let mut source = RunningSource::start("kafka_paused", "kafka", state.path(), 100, |cx| {
        config.build(cx)
    });
    // Nothing is read yet: the buffer fills and the source pauses its partitions.
    eventually("the partitions to be paused", || {
        counter_value("kafka_consumer_paused", "kafka_paused", "") == 1
    })
    .await;
    let mut seen: BTreeMap<i64, Vec<(i64, u64)>> = BTreeMap::new();
    let mut received = 0;
    while received < total {
        let batch = crate::testing::next_batch(&mut source.rx).await;
        for event in batch.iter() {
            let value = serde_json::to_value(&event.value).expect("json");
            let kafka = &value["metadata"]["kafka"];
            seen.entry(kafka["partition"].as_i64().expect("partition"))
                .or_default()
                .push((
                    kafka["offset"].as_i64().expect("offset"),
                    value["n"].as_u64().expect("n"),
                ));
            received += 1;
        }
        resolve_batch(batch, BatchStatus::Delivered);
    }
    assert_eq!(
        counter_value("kafka_consumer_paused", "kafka_paused", ""),
        0
    );
    let mut all: Vec<u64> = Vec::new();
    for (partition, messages) in &seen {
        let offsets: Vec<i64> = messages.iter().map(|(o, _)| *o).collect();
        let expected: Vec<i64> = (0..offsets.len() as i64).collect();
        assert_eq!(
            offsets, expected,
            "partition {partition} in offset order, no gap or repeat"
        );
        all.extend(messages.iter().map(|(_, n)| *n));
    }
    all.sort_unstable();
    assert_eq!(all, (0..total as u64).collect::<Vec<_>>());
    source
        .stop(std::time::Duration::from_secs(30), |_| {})
        .await;
}

#[test]
fn an_azure_records_envelope_becomes_one_event_per_record() {
    use siemflow_core::Event;
    use siemflow_core::decoding::Decoding;

    let fixture = include_str!(
        "../../../tests/fixtures/eventhubs/panther_defender_xdr_advancedhunting.ndjson"
    );
    let records: Vec<serde_json::Value> = fixture
        .lines()
        .map(|line| serde_json::from_str(line).expect("a fixture record"))
        .collect();
    assert_eq!(records.len(), 2);
    let body = serde_json::json!({ "records": records }).to_string();
    let (event, issues) = Decoding::Json.decode(body.as_bytes());
    assert_eq!(issues.parse_error, None);
    let events = super::consume::unpack_records(event);
    let values: Vec<serde_json::Value> = events
        .iter()
        .map(|e| serde_json::to_value(&e.value).expect("json"))
        .collect();
    assert_eq!(values, records);
    assert!(
        values[0]["category"]
            .as_str()
            .expect("category")
            .starts_with("AdvancedHunting-")
    );

    // Anything else stays one event, as it was.
    for other in [
        serde_json::json!({"records": [], "x": 1}),
        serde_json::json!({"records": [1], "other": true}),
        serde_json::json!({"Id": "1"}),
    ] {
        let events = super::consume::unpack_records(Event::new(other.clone().into()));
        assert_eq!(events.len(), 1);
        assert_eq!(serde_json::to_value(&events[0].value).expect("json"), other);
    }
}
