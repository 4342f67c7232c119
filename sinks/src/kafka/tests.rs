//! The sink's options and error classes, and deliveries to librdkafka's mock cluster (an
//! in-process broker with error injection; the real broker is in tests/e2e/kafka.rs).

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use siemflow_core::SinkConfig;
use siemflow_core::delivery::{EventOutcome, Rejection};

use super::KafkaSinkConfig;
use super::errors::classify;
use crate::test_support::start_sink;

fn parse(text: &str) -> KafkaSinkConfig {
    toml::from_str(text).expect("sink config")
}

fn keys(config: &KafkaSinkConfig) -> Vec<String> {
    config
        .check()
        .into_iter()
        .filter_map(|issue| issue.key)
        .collect()
}

#[test]
fn a_plain_config_has_no_issue_and_the_safe_defaults() {
    let config = parse(
        "bootstrap_servers = \"k1:9092,k2:9092\"\ntopic = \"m365.{{ .Workload }}\"\nkey_field = \"UserId\"",
    );
    assert_eq!(config.check(), Vec::new());
    let client = config.client_config();
    assert_eq!(client.get("enable.idempotence"), Some("true"));
    assert_eq!(client.get("acks"), Some("all"));
    assert_eq!(client.get("security.protocol"), Some("plaintext"));
    assert_eq!(client.get("message.timeout.ms"), Some("60000"));
    assert_eq!(client.get("compression.codec"), Some("none"));
}

#[test]
fn config_problems_name_their_keys() {
    let config = parse(
        r#"
bootstrap_servers = " , "
topic = "bad topic"
key_field = ".["
headers = { tenant = "" }
librdkafka_options = { "sasl.password" = "x", acks = "1" }
"#,
    );
    assert_eq!(
        keys(&config),
        [
            "bootstrap_servers",
            "topic",
            "key_field",
            "headers.tenant",
            "librdkafka_options.sasl.password",
            "librdkafka_options.acks"
        ]
    );
    let unclosed = parse("bootstrap_servers = \"k:9092\"\ntopic = \"m365.{{ .Workload\"");
    assert_eq!(keys(&unclosed), ["topic"]);
}

#[test]
fn tls_and_sasl_become_librdkafka_settings_and_the_password_is_never_shown() {
    // Parsed without the loader's `${VAR}` expansion, so `$` needs no `$$` here.
    let config = parse(
        r#"
bootstrap_servers = "ns.servicebus.windows.net:9093"
topic = "m365"
compression = "gzip"
tls = {}
sasl = { mechanism = "plain", username = "$ConnectionString", password = "Endpoint=sb://ns/;SharedAccessKey=TOPSECRET" }
librdkafka_options = { "linger.ms" = "20" }
"#,
    );
    assert_eq!(config.check(), Vec::new());
    let client = config.client_config();
    assert_eq!(client.get("security.protocol"), Some("sasl_ssl"));
    assert_eq!(client.get("sasl.mechanism"), Some("PLAIN"));
    assert_eq!(client.get("sasl.username"), Some("$ConnectionString"));
    assert_eq!(client.get("ssl.ca.location"), Some("probe"));
    assert_eq!(
        client.get("enable.ssl.certificate.verification"),
        Some("true")
    );
    assert_eq!(
        client.get("ssl.endpoint.identification.algorithm"),
        Some("https")
    );
    assert_eq!(client.get("compression.codec"), Some("gzip"));
    assert_eq!(client.get("linger.ms"), Some("20"));
    assert!(!format!("{config:?}").contains("TOPSECRET"));
}

#[test]
fn event_hubs_refuses_other_codecs_and_topics_its_connection_string_does_not_grant() {
    let conn = "Endpoint=sb://contoso-eh.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=TOPSECRET;EntityPath=m365";
    let config = parse(&format!(
        "event_hubs = {{ connection_string = \"{conn}\" }}\ntopic = \"m365\"\ncompression = \"gzip\""
    ));
    assert_eq!(config.check(), Vec::new());
    let client = config.client_config();
    assert_eq!(
        client.get("bootstrap.servers"),
        Some("contoso-eh.servicebus.windows.net:9093")
    );
    assert_eq!(client.get("security.protocol"), Some("sasl_ssl"));
    assert_eq!(client.get("sasl.mechanism"), Some("PLAIN"));
    assert_eq!(client.get("request.timeout.ms"), Some("60000"));
    assert_eq!(client.get("metadata.max.age.ms"), Some("180000"));
    assert_eq!(client.get("enable.idempotence"), Some("true"));
    let wrong = parse(&format!(
        "event_hubs = {{ connection_string = \"{conn}\" }}\ntopic = \"other\"\ncompression = \"zstd\""
    ));
    assert_eq!(keys(&wrong), ["topic", "compression"]);
    assert!(!format!("{:?}", wrong.check()).contains("TOPSECRET"));
}

#[test]
fn delivery_errors_are_dead_lettered_or_retried_by_their_code() {
    let reason = |code| match classify(&KafkaError::MessageProduction(code)).outcome {
        EventOutcome::Rejected(Rejection { reason, .. }) => reason,
        EventOutcome::Retry(_) => "retry".to_string(),
        other => panic!("{other:?}"),
    };
    assert_eq!(reason(RDKafkaErrorCode::MessageSizeTooLarge), "too_large");
    assert_eq!(reason(RDKafkaErrorCode::InvalidTopic), "invalid_topic");
    assert_eq!(
        reason(RDKafkaErrorCode::TopicAuthorizationFailed),
        "not_authorized"
    );
    assert_eq!(reason(RDKafkaErrorCode::InvalidRecord), "invalid_record");
    assert_eq!(reason(RDKafkaErrorCode::BrokerTransportFailure), "retry");
    assert_eq!(reason(RDKafkaErrorCode::MessageTimedOut), "retry");
    for code in [
        RDKafkaErrorCode::MessageTimedOut,
        RDKafkaErrorCode::Fatal,
        RDKafkaErrorCode::UnknownProducerId,
    ] {
        assert!(
            classify(&KafkaError::MessageProduction(code)).replace_producer,
            "{code:?}"
        );
    }
    assert!(
        !classify(&KafkaError::MessageProduction(
            RDKafkaErrorCode::BrokerTransportFailure
        ))
        .replace_producer
    );
}

fn mock_sink<C: rdkafka::client::ClientContext>(
    cluster: &MockCluster<'_, C>,
    extra: &str,
) -> KafkaSinkConfig {
    let config = parse(&format!(
        r#"
bootstrap_servers = "{}"
topic = "m365.{{{{ .Workload }}}}"
key_field = "UserId"
headers = {{ workload = "Workload" }}
message_timeout = "10s"
batch = {{ max_events = 7, timeout = "10ms" }}
retry = {{ initial_backoff = "10ms", max_backoff = "50ms", max_duration = "10m" }}
healthcheck = {{ enabled = false }}
{extra}
"#,
        cluster.bootstrap_servers()
    ));
    assert_eq!(config.check(), Vec::new());
    config
}

fn record(i: usize) -> serde_json::Value {
    serde_json::json!({"Seq": i, "UserId": format!("user-{}", i % 5), "Workload": "Exchange"})
}

/// Everything in `topic` (one partition), as (key, header `workload`, value) in order.
fn read_back(bootstrap: &str, topic: &str) -> Vec<(String, String, serde_json::Value)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "test")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Beginning)
        .expect("partition");
    consumer.assign(&assignment).expect("assign");
    let (_, high) = consumer
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .expect("watermarks");
    let mut out = Vec::new();
    while (out.len() as i64) < high {
        let message = consumer
            .poll(Duration::from_secs(10))
            .expect("a message within 10 s")
            .expect("no error");
        let header = message
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == "workload"))
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        out.push((
            String::from_utf8_lossy(message.key().expect("key")).into_owned(),
            header,
            serde_json::from_slice(message.payload().expect("payload")).expect("JSON"),
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_acknowledged_from_delivery_reports_with_key_and_headers() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("m365.Exchange", 1, 1).expect("topic");
    // Two produce requests fail with a retriable error first: librdkafka retries them.
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
        ],
    );
    let mut sink = start_sink("k", "kafka", &mock_sink(&cluster, ""));
    let receipts = sink.send((0..100).map(record)).await;
    let dead = sink.settle(receipts).await;
    assert_eq!(dead, Vec::<serde_json::Value>::new());
    assert!(sink.finish().await.is_empty());

    let bootstrap = cluster.bootstrap_servers();
    let messages = tokio::task::spawn_blocking(move || read_back(&bootstrap, "m365.Exchange"))
        .await
        .expect("reader");
    assert_eq!(
        messages.len(),
        100,
        "idempotence: no duplicate from the retries"
    );
    for (i, (key, header, value)) in messages.iter().enumerate() {
        assert_eq!(value, &record(i));
        assert_eq!(key, &format!("user-{}", i % 5));
        assert_eq!(header, "Exchange");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_kafka_can_never_take_is_dead_lettered_with_the_reason() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("m365.Exchange", 1, 1).expect("topic");
    let config = mock_sink(
        &cluster,
        "librdkafka_options = { \"message.max.bytes\" = \"2000\" }",
    );
    let mut sink = start_sink("k", "kafka", &config);
    let records = vec![
        record(0),
        serde_json::json!({"Seq": 1, "Workload": "Exchange", "Pad": "x".repeat(5000)}),
        serde_json::json!({"Seq": 2, "Workload": "Ex change"}),
        serde_json::json!({"Seq": 3}),
        record(4),
    ];
    let receipts = sink.send(records).await;
    let dead = sink.settle(receipts).await;
    let reasons: Vec<(u64, String)> = dead
        .iter()
        .map(|event| {
            (
                event["Seq"].as_u64().expect("Seq"),
                event["metadata"]["dropped"]["reason"]
                    .as_str()
                    .expect("reason")
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(
        reasons,
        [
            (2, "invalid_topic".to_string()),
            (3, "topic_field_missing".to_string()),
            (1, "too_large".to_string()),
        ]
    );
    assert!(sink.finish().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_without_write_permission_is_dead_lettered_as_not_authorized() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("m365.Exchange", 1, 1).expect("topic");
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED],
    );
    let mut sink = start_sink("k", "kafka", &mock_sink(&cluster, ""));
    let receipts = sink.send([record(0)]).await;
    let dead = sink.settle(receipts).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["metadata"]["dropped"]["reason"], "not_authorized");
    assert!(sink.finish().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauthbearer_tokens_come_from_entra_id_and_no_password_is_set() {
    use siemflow_simulator::sentinel::{SentinelConfig, SentinelSimulator};
    let sim = SentinelSimulator::start(
        SentinelConfig::default(),
        "127.0.0.1:0".parse().expect("address"),
    )
    .await
    .expect("simulator");
    let entra = sim.config();
    let auth = format!(
        "auth = {{ tenant_id = \"{}\", client_id = \"{}\", client_secret = \"{}\", login_url = \"{}\" }}",
        entra.tenant_id,
        entra.client_id,
        entra.client_secret,
        sim.url()
    );
    let event_hubs = parse(&format!(
        "bootstrap_servers = \"mynamespace.servicebus.windows.net:9093\"\ntopic = \"m365\"\ntls = {{}}\n\
         sasl = {{ mechanism = \"oauthbearer\", {auth} }}"
    ));
    assert_eq!(event_hubs.check(), Vec::new());
    assert_eq!(
        event_hubs.oauth_scope().as_deref(),
        Some("https://mynamespace.servicebus.windows.net/.default")
    );
    let client = event_hubs.client_config();
    assert_eq!(client.get("sasl.mechanism"), Some("OAUTHBEARER"));
    assert_eq!(client.get("security.protocol"), Some("sasl_ssl"));
    assert_eq!(client.get("sasl.password"), None);
    assert!(!format!("{event_hubs:?}").contains(&entra.client_secret.to_string()));

    // The simulator issues tokens for the Azure Monitor audience.
    let scope = "https://monitor.azure.com//.default";
    let super::config::SaslConfig::Oauthbearer { auth, .. } =
        event_hubs.sasl.as_ref().expect("sasl")
    else {
        panic!("oauthbearer");
    };
    let oauth = super::protocol::OAuth::new(auth, scope).expect("token provider");
    let token = tokio::task::spawn_blocking(move || oauth.token().map_err(|e| e.to_string()))
        .await
        .expect("token task")
        .expect("a token");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    assert!(!token.token.is_empty());
    assert_eq!(token.principal_name, entra.client_id.to_string());
    assert!(
        token.lifetime_ms > now_ms,
        "the token expires in the future"
    );
}
