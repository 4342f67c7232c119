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
