//! Options of the `kafka` sink, and the librdkafka producer configuration they make.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use serde::Deserialize;
use siemflow_core::ConfigIssue;
use siemflow_core::delivery::{self, BatchConfig, HealthcheckConfig, RequestConfig, RetryConfig};
use siemflow_core::event::field_path;
use siemflow_core::http::TlsConfig;
pub use siemflow_core::kafka::SaslConfig;
use siemflow_core::kafka::{EventHubsConfig, KafkaClient, KafkaConnection};
use siemflow_core::template::Template;

use crate::encoding::Encoding;

/// Options of the `kafka` sink.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// Required unless `event_hubs`. The brokers to bootstrap from, `"host:port,host:port"`
    /// (librdkafka's `bootstrap.servers`).
    pub bootstrap_servers: Option<String>,
    /// Required. The topic, a template such as `"m365.{{ .Workload }}"`. A rendered name
    /// that Kafka would refuse (a missing field, characters other than `a-z A-Z 0-9 . _ -`,
    /// longer than 249) is dead-lettered.
    pub topic: String,
    /// The field whose value is the message key, e.g. `"UserId"`: every event of one
    /// user (or tenant) goes to one partition, in order. Default none (no key: librdkafka
    /// spreads events over partitions). An event without the field is sent without a key.
    pub key_field: Option<String>,
    /// Message headers from event fields: header name to field path, e.g.
    /// `{ tenant = "OrganizationId" }`. A missing field sends no such header.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `"json"` (default): the event as compact JSON; `"text"`: its `message` field.
    #[serde(default)]
    pub encoding: Encoding,
    /// `"none"` (default), `"gzip"`, `"snappy"`, `"lz4"` or `"zstd"` (with `event_hubs`
    /// only `none` and `gzip`, the codecs it takes).
    #[serde(default)]
    pub compression: KafkaCompression,
    /// The idempotent producer (default true): `acks=all`, no duplicate or reordering from
    /// librdkafka's own retries. Turn off only for a broker without it.
    #[serde(default = "yes")]
    pub idempotence: bool,
    /// How long librdkafka retries one message before it reports it failed (default
    /// `"60s"`, librdkafka's `message.timeout.ms`); the batch is then retried under
    /// `retry` with a new producer.
    #[serde(
        default = "default_message_timeout",
        deserialize_with = "siemflow_core::units::duration",
        serialize_with = "siemflow_core::units::serialize_duration"
    )]
    #[schemars(with = "String")]
    pub message_timeout: Duration,
    /// How many events are handed to librdkafka and awaited together (defaults 1000
    /// events, `"1MiB"`, `"1s"`); librdkafka packs them into requests itself.
    #[serde(default)]
    pub batch: BatchConfig,
    /// Backoff and the retry time limit of a batch whose messages timed out.
    #[serde(default)]
    pub retry: RetryConfig,
    /// TLS to the brokers: `tls = {}` turns it on with the system's CAs (verification on).
    /// `ca_file` replaces the system's CAs (librdkafka cannot add to them).
    pub tls: Option<TlsConfig>,
    /// SASL authentication: `{ mechanism = "plain" | "scram-sha-256" | "scram-sha-512",
    /// username, password }`, or `{ mechanism = "oauthbearer", auth = { tenant_id,
    /// client_id, client_secret } }` (an Entra ID token). For Event Hubs use `event_hubs`.
    pub sasl: Option<SaslConfig>,
    /// Azure Event Hubs' Kafka endpoint: `{ connection_string = "${EH_CONN}" }`, or
    /// `{ namespace, auth = { tenant_id, client_id, client_secret } }` (Entra ID); sets the
    /// address, TLS, SASL and Microsoft's recommended client settings.
    pub event_hubs: Option<EventHubsConfig>,
    /// Extra librdkafka properties, e.g. `{ "linger.ms" = "10" }`; they override the
    /// sink's own settings (as in Vector).
    #[serde(default)]
    pub librdkafka_options: BTreeMap<String, String>,
    /// Fetch the cluster's metadata at start (`/ready` shows a failure).
    #[serde(default)]
    pub healthcheck: HealthcheckConfig,
}

/// `compression`: librdkafka's `compression.codec`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum KafkaCompression {
    /// Uncompressed.
    #[default]
    None,
    /// gzip (the one codec Event Hubs takes).
    Gzip,
    /// Snappy.
    Snappy,
    /// LZ4.
    Lz4,
    /// Zstandard.
    Zstd,
}

impl KafkaCompression {
    /// librdkafka's name of the codec.
    pub fn codec(self) -> &'static str {
        match self {
            KafkaCompression::None => "none",
            KafkaCompression::Gzip => "gzip",
            KafkaCompression::Snappy => "snappy",
            KafkaCompression::Lz4 => "lz4",
            KafkaCompression::Zstd => "zstd",
        }
    }
}

fn yes() -> bool {
    true
}

fn default_message_timeout() -> Duration {
    Duration::from_secs(60)
}

/// librdkafka properties the sink sets itself; `librdkafka_options` may not set them
/// (they carry secrets or decide how deliveries are acknowledged).
const OWN_PROPERTIES: &[&str] = &[
    "sasl.password",
    "sasl.username",
    "delivery.report.only.error",
    "dr_msg_cb",
    "dr_cb",
];

impl KafkaSinkConfig {
    pub(super) fn issues(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        let connection = self.connection();
        let (connection_issues, later): (Vec<_>, Vec<_>) = connection
            .issues()
            .into_iter()
            .partition(|issue| issue.key.as_deref() == Some("bootstrap_servers"));
        issues.extend(connection_issues);
        match Template::parse(&self.topic) {
            Ok(template) if !template.has_fields() => {
                let topic = template.fixed_prefix(chrono::Utc::now());
                if let Err(problem) = topic_problem(&topic) {
                    issues.push(ConfigIssue::new("topic", problem));
                }
                if let Some(hub) = connection.entity_path()
                    && topic != hub
                {
                    issues.push(ConfigIssue::new(
                        "topic",
                        format!("the connection string's EntityPath grants only the event hub `{hub}`"),
                    ).hint(format!("topic = \"{hub}\", or a namespace-wide connection string")));
                }
            }
            Ok(_) => {}
            Err(problem) => issues
                .push(ConfigIssue::new("topic", problem).hint("e.g. \"m365.{{ .Workload }}\"")),
        }
        if let Some(key) = &self.key_field
            && let Err(issue) = field_path("key_field", key)
        {
            issues.push(issue);
        }
        for (name, field) in &self.headers {
            if let Err(issue) = field_path(&format!("headers.{name}"), field) {
                issues.push(issue);
            }
        }
        if self.message_timeout < Duration::from_millis(1)
            || self.message_timeout > Duration::from_millis(i32::MAX as u64)
        {
            issues.push(ConfigIssue::new(
                "message_timeout",
                "must be between 1ms and about 24 days",
            ));
        }
        for key in self.librdkafka_options.keys() {
            if OWN_PROPERTIES.contains(&key.as_str()) {
                issues.push(
                    ConfigIssue::new(
                        &format!("librdkafka_options.{key}"),
                        "is set by the sink itself",
                    )
                    .hint("credentials go in `sasl`; delivery reports are always on"),
                );
            }
        }
        if self.idempotence
            && let Some(acks) = self
                .librdkafka_options
                .get("acks")
                .or(self.librdkafka_options.get("request.required.acks"))
            && !matches!(acks.trim(), "all" | "-1")
        {
            issues.push(
                ConfigIssue::new(
                    "librdkafka_options.acks",
                    format!("`{acks}` contradicts the idempotent producer, which needs acks=all"),
                )
                .hint("remove it, or set idempotence = false"),
            );
        }
        issues.extend(delivery::config::check(
            &self.batch,
            &RequestConfig::default(),
            &self.retry,
        ));
        issues.extend(later);
        issues
    }

    /// The connection options, as the shared Kafka connection code reads them.
    pub(super) fn connection(&self) -> KafkaConnection<'_> {
        KafkaConnection {
            bootstrap_servers: self.bootstrap_servers.as_deref(),
            tls: self.tls.as_ref(),
            sasl: self.sasl.as_ref(),
            event_hubs: self.event_hubs.as_ref(),
            compression: Some(self.compression.codec()),
            librdkafka_options: &self.librdkafka_options,
        }
    }

    /// The producer's librdkafka configuration: the sink's settings, then
    /// `librdkafka_options` over them.
    pub(super) fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        for (key, value) in self.connection().properties(KafkaClient::Producer) {
            config.set(key, value);
        }
        config
            .set("enable.idempotence", self.idempotence.to_string())
            .set("compression.codec", self.compression.codec())
            .set(
                "message.timeout.ms",
                self.message_timeout.as_millis().to_string(),
            )
            // The producer's counters reach /metrics (kafka_queue_messages, ...) from these.
            .set("statistics.interval.ms", "1000")
            // A batch's messages are enqueued together and the next batch waits for all
            // their delivery reports (per-key order), so librdkafka's default 5 ms linger
            // only delays each batch's last messages: 70,000 → 87,000 events/s into the
            // local broker (bench/RESULTS.md, Kafka). Still batched: messages queue up
            // while earlier requests are in flight.
            .set("linger.ms", "0");
        if self.idempotence {
            config.set("acks", "all");
        }
        for (key, value) in &self.librdkafka_options {
            config.set(key, value);
        }
        config
    }
}

impl KafkaSinkConfig {
    /// The scope of OAUTHBEARER tokens: `sasl.scope`, else
    /// `https://<host of the first bootstrap server>/.default`; with `event_hubs` the
    /// namespace's.
    #[cfg(test)]
    pub(super) fn oauth_scope(&self) -> Option<String> {
        self.connection().oauth().map(|(_, scope)| scope)
    }
}

/// Why Kafka would refuse this topic name, if it would (Kafka's `Topic.validate`).
pub(super) fn topic_problem(topic: &str) -> Result<(), String> {
    if topic.is_empty() || topic == "." || topic == ".." {
        return Err(format!("`{topic}` is not a topic name"));
    }
    if topic.len() > 249 {
        return Err(format!(
            "the topic name is {} characters long; Kafka allows 249",
            topic.len()
        ));
    }
    if let Some(bad) = topic
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "the topic name `{topic}` holds `{bad}`; Kafka allows only a-z A-Z 0-9 . _ -"
        ));
    }
    Ok(())
}
