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

/// A mock cluster with a topic `audit` of 2 partitions holding `total` records; the
/// cluster lives as long as the returned handle.
async fn audit_topic(
    total: usize,
) -> (
    rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    String,
) {
    let cluster = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("audit", 2, 1).expect("topic");
    let bootstrap = cluster.bootstrap_servers();
    let producing = bootstrap.clone();
    tokio::task::spawn_blocking(move || produce(&producing, "audit", total))
        .await
        .expect("producer task");
    (cluster, bootstrap)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pipeline_pauses_the_partitions_and_nothing_is_lost_or_reordered() {
    use std::collections::BTreeMap;

    use siemflow_core::BatchStatus;
    use siemflow_core::event::resolve_batch;

    use crate::testing::{RunningSource, counter_value, eventually};

    let total = 3000;
    let (_cluster, bootstrap) = audit_topic(total).await;
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

/// A plain consumer of group `group` on its own thread (the second member a rebalance
/// needs): it reports the first message it reads of each partition, and leaves the
/// group when the returned flag is set.
fn second_member(
    bootstrap: &str,
    group: &str,
    topic: &str,
) -> (
    tokio::sync::mpsc::UnboundedReceiver<(i32, i64)>,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    std::thread::JoinHandle<()>,
) {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    use std::sync::atomic::Ordering;

    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "500")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("second consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let (firsts, first_rx) = tokio::sync::mpsc::unbounded_channel();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopping = std::sync::Arc::clone(&stop);
    let thread = std::thread::spawn(move || {
        let mut seen = std::collections::HashSet::new();
        while !stopping.load(Ordering::SeqCst) {
            if let Some(Ok(message)) = consumer.poll(std::time::Duration::from_millis(100))
                && seen.insert(message.partition())
            {
                let _ = firsts.send((message.partition(), message.offset()));
            }
        }
    });
    (first_rx, stop, thread)
}

/// The offsets `group` committed for `topic`'s partitions `0..partitions`.
fn committed(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> Vec<Option<i64>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .expect("offsets reader");
    let mut list = rdkafka::TopicPartitionList::new();
    for partition in 0..partitions {
        list.add_partition(topic, partition);
    }
    let offsets = consumer
        .committed_offsets(list, std::time::Duration::from_secs(10))
        .expect("committed offsets");
    (0..partitions)
        .map(
            |partition| match offsets.find_partition(topic, partition).map(|p| p.offset()) {
                Some(rdkafka::Offset::Offset(offset)) => Some(offset),
                _ => None,
            },
        )
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_waits_for_acknowledgements_and_commits_exactly_the_delivered_prefix() {
    use siemflow_core::BatchStatus;
    use siemflow_core::event::{Batch, resolve_batch};

    use crate::testing::{PATIENCE, RunningSource, counter_value, eventually};

    let total = 400;
    let (_cluster, bootstrap) = audit_topic(total).await;
    let config = parse(&format!(
        r#"bootstrap_servers = "{bootstrap}"
group_id = "g-revoke"
topics = ["audit"]
batch_max_events = 50
drain_timeout = "2s"
librdkafka_options = {{ "session.timeout.ms" = "10000", "heartbeat.interval.ms" = "500" }}"#
    ));
    assert_eq!(config.check(), Vec::new());
    let state = tempfile::tempdir().expect("tempdir");
    let mut source = RunningSource::start("kafka_revoke", "kafka", state.path(), 10_000, |cx| {
        config.build(cx)
    });

    // Everything is read and held: nothing is acknowledged yet.
    let mut held: [Vec<Batch>; 2] = [Vec::new(), Vec::new()];
    let mut received = 0;
    while received < total {
        let batch = crate::testing::next_batch(&mut source.rx).await;
        let partition =
            serde_json::to_value(&batch[0].value).expect("json")["metadata"]["kafka"]["partition"]
                .as_u64()
                .expect("partition") as usize;
        received += batch.len();
        held[partition].push(batch);
    }
    assert!(
        held.iter().all(|batches| batches.len() >= 3),
        "at least three batches per partition: {:?}",
        held.iter().map(Vec::len).collect::<Vec<_>>()
    );
    let offset_after = |batch: &Batch| {
        serde_json::to_value(&batch[batch.len() - 1].value).expect("json")["metadata"]["kafka"]
            ["offset"]
            .as_i64()
            .expect("offset")
            + 1
    };
    let first_ends: Vec<i64> = held.iter().map(|b| offset_after(&b[0])).collect();
    let sizes: Vec<usize> = held
        .iter()
        .map(|batches| batches.iter().map(|b| b.len()).sum())
        .collect();

    // A second member joins: one partition is revoked from the source, which waits.
    // (librdkafka's mock cluster refuses commits while its group collects joins, where
    // Kafka accepts them from the current generation. The source commits a draining
    // partition's prefix as soon as it advances, before such a join is likely; should
    // the mock refuse it anyway, the source warns and this test fails.)
    let (mut firsts, stop, member) = second_member(&bootstrap, "g-revoke", "audit");
    eventually("the source to drain a revoked partition", || {
        counter_value("kafka_consumer_draining_partitions", "kafka_revoke", "") == 1
    })
    .await;
    // While it waits, the first and third batch of each partition are delivered; the
    // second is not, so only the first may be committed.
    let mut rest: [Vec<Batch>; 2] = [Vec::new(), Vec::new()];
    for (partition, batches) in held.into_iter().enumerate() {
        for (i, batch) in batches.into_iter().enumerate() {
            if i == 0 || i == 2 {
                resolve_batch(batch, BatchStatus::Delivered);
            } else {
                rest[partition].push(batch);
            }
        }
    }
    let (moved, first_offset) = tokio::time::timeout(4 * PATIENCE, firsts.recv())
        .await
        .expect("the second member reads the revoked partition")
        .expect("a first message");
    let moved = moved as usize;
    assert_eq!(
        first_offset, first_ends[moved],
        "the next owner starts right after the delivered prefix"
    );
    assert_eq!(
        committed(&bootstrap, "g-revoke", "audit", 2)[moved],
        Some(first_ends[moved])
    );
    let abandoned = source.counter("kafka_drain_abandoned_events_total", "during=\"revoke\"");
    assert_eq!(
        abandoned as usize,
        sizes[moved] - first_ends[moved] as usize,
        "every event emitted past the committed prefix is counted (one event per message from offset 0)"
    );

    // Late acknowledgements of the revoked partition change nothing; the kept one
    // commits its end on shutdown.
    let kept = 1 - moved;
    for batch in rest.into_iter().flatten() {
        resolve_batch(batch, BatchStatus::Delivered);
    }
    source.stop(PATIENCE, |_| {}).await;
    let offsets = committed(&bootstrap, "g-revoke", "audit", 2);
    assert_eq!(offsets[moved], Some(first_ends[moved]));
    assert_eq!(offsets[kept], Some(sizes[kept] as i64));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    member.join().expect("second member");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_oauthbearer_the_consumer_gets_its_tokens_from_entra_id() {
    use rdkafka::ClientContext as _;
    use siemflow_simulator::sentinel::{SentinelConfig, SentinelSimulator};

    let sim = SentinelSimulator::start(
        SentinelConfig::default(),
        "127.0.0.1:0".parse().expect("address"),
    )
    .await
    .expect("simulator");
    let entra = sim.config();
    // The simulator issues tokens for the Azure Monitor audience only, hence the scope.
    let config = parse(&format!(
        "bootstrap_servers = \"mynamespace.servicebus.windows.net:9093\"\ngroup_id = \"g\"\n\
         topics = [\"xdr\"]\ntls = {{}}\n\
         sasl = {{ mechanism = \"oauthbearer\", scope = \"https://monitor.azure.com//.default\", \
         auth = {{ tenant_id = \"{}\", client_id = \"{}\", client_secret = \"{}\", login_url = \"{}\" }} }}",
        entra.tenant_id,
        entra.client_id,
        entra.client_secret,
        sim.url()
    ));
    assert_eq!(config.check(), Vec::new());
    let client = config.client_config();
    assert_eq!(client.get("sasl.mechanism"), Some("OAUTHBEARER"));
    assert_eq!(client.get("sasl.password"), None);

    let (revokes, _revoked) = tokio::sync::mpsc::unbounded_channel();
    let context = config.consumer_context("k", revokes).expect("context");
    // librdkafka calls this from its own thread.
    let token = tokio::task::spawn_blocking(move || {
        context
            .generate_oauth_token(None)
            .map_err(|e| e.to_string())
    })
    .await
    .expect("token task")
    .expect("a token");
    assert!(!token.token.is_empty());
    assert_eq!(token.principal_name, entra.client_id.to_string());
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    assert!(
        token.lifetime_ms > now_ms,
        "the token expires in the future"
    );

    // Without OAUTHBEARER options there is no token to give.
    let plain = parse("bootstrap_servers = \"k:9092\"\ngroup_id = \"g\"\ntopics = [\"t\"]");
    let (revokes, _revoked) = tokio::sync::mpsc::unbounded_channel();
    let context = plain.consumer_context("k", revokes).expect("context");
    assert!(context.generate_oauth_token(None).is_err());
}
