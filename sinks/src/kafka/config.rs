//! Options of the `kafka` sink, and the librdkafka producer configuration they make.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use serde::Deserialize;
use siemflow_core::auth::EntraConfig;
use siemflow_core::delivery::{self, BatchConfig, HealthcheckConfig, RequestConfig, RetryConfig};
use siemflow_core::event::field_path;
use siemflow_core::http::TlsConfig;
use siemflow_core::template::Template;
use siemflow_core::{ConfigIssue, Secret};

use crate::encoding::Encoding;

/// Options of the `kafka` sink.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// Required. The brokers to bootstrap from, `"host:port,host:port"` (librdkafka's
    /// `bootstrap.servers`).
    pub bootstrap_servers: String,
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
    /// `"none"` (default), `"gzip"`, `"snappy"`, `"lz4"` or `"zstd"` (Event Hubs takes
    /// only `none` and `gzip`).
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
    /// client_id, client_secret } }` (an Entra ID token). For Event Hubs with a connection
    /// string: `plain`, username `"$$ConnectionString"` (a literal `$ConnectionString`),
    /// password the connection string.
    pub sasl: Option<SaslConfig>,
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

/// `sasl`: how the sink authenticates to the brokers.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(tag = "mechanism", deny_unknown_fields)]
pub enum SaslConfig {
    /// PLAIN: a user name and password (send only over TLS).
    #[serde(rename = "plain")]
    Plain {
        /// The user name.
        username: String,
        /// The password (for Event Hubs the connection string); never logged.
        password: Secret,
    },
    /// SCRAM-SHA-256.
    #[serde(rename = "scram-sha-256")]
    ScramSha256 {
        /// The user name.
        username: String,
        /// The password; never logged.
        password: Secret,
    },
    /// SCRAM-SHA-512.
    #[serde(rename = "scram-sha-512")]
    ScramSha512 {
        /// The user name.
        username: String,
        /// The password; never logged.
        password: Secret,
    },
    /// OAUTHBEARER with an Entra ID token of the app in `auth` (client credentials),
    /// fetched and refreshed by siemflow's own token provider.
    #[serde(rename = "oauthbearer")]
    Oauthbearer {
        /// The Entra app (tenant, client id, secret or certificate).
        auth: EntraConfig,
        /// The token's scope; default `https://<host of the first bootstrap server>/.default`
        /// (for Event Hubs `https://<namespace>.servicebus.windows.net/.default`).
        scope: Option<String>,
    },
}

impl SaslConfig {
    /// librdkafka's `sasl.mechanism` value.
    pub fn mechanism(&self) -> &'static str {
        match self {
            SaslConfig::Plain { .. } => "PLAIN",
            SaslConfig::ScramSha256 { .. } => "SCRAM-SHA-256",
            SaslConfig::ScramSha512 { .. } => "SCRAM-SHA-512",
            SaslConfig::Oauthbearer { .. } => "OAUTHBEARER",
        }
    }

    /// The user name and password, for the mechanisms that have them.
    fn credentials(&self) -> Option<(&str, &Secret)> {
        match self {
            SaslConfig::Plain { username, password }
            | SaslConfig::ScramSha256 { username, password }
            | SaslConfig::ScramSha512 { username, password } => Some((username, password)),
            SaslConfig::Oauthbearer { .. } => None,
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
        if self
            .bootstrap_servers
            .split(',')
            .all(|server| server.trim().is_empty())
        {
            issues.push(
                ConfigIssue::new("bootstrap_servers", "is empty")
                    .hint("e.g. \"kafka1.example:9092,kafka2.example:9092\""),
            );
        }
        match Template::parse(&self.topic) {
            Ok(template) if !template.has_fields() => {
                if let Err(problem) = topic_problem(&template.fixed_prefix(chrono::Utc::now())) {
                    issues.push(ConfigIssue::new("topic", problem));
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
        if let Some(tls) = &self.tls {
            issues.extend(tls.check("tls"));
        }
        match &self.sasl {
            Some(SaslConfig::Oauthbearer { auth, scope }) => {
                issues.extend(auth.check("sasl.auth"));
                if let Some(scope) = scope
                    && !scope.trim().ends_with("/.default")
                {
                    issues.push(
                        ConfigIssue::new("sasl.scope", "does not end with /.default")
                            .hint("e.g. \"https://mynamespace.servicebus.windows.net/.default\""),
                    );
                }
            }
            Some(sasl)
                if sasl
                    .credentials()
                    .is_some_and(|(user, _)| user.trim().is_empty()) =>
            {
                issues.push(ConfigIssue::new("sasl.username", "is empty"));
            }
            Some(_) | None => {}
        }
        issues
    }

    /// The producer's librdkafka configuration: the sink's settings, then
    /// `librdkafka_options` over them.
    pub(super) fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", self.bootstrap_servers.trim())
            .set("enable.idempotence", self.idempotence.to_string())
            .set("compression.codec", self.compression.codec())
            .set(
                "message.timeout.ms",
                self.message_timeout.as_millis().to_string(),
            )
            // The producer's counters reach /metrics (kafka_queue_messages, ...) from these.
            .set("statistics.interval.ms", "1000")
            // Keep idle connections alive: Event Hubs closes them after 240 s.
            .set("socket.keepalive.enable", "true");
        if self.idempotence {
            config.set("acks", "all");
        }
        let protocol = match (self.tls.is_some(), self.sasl.is_some()) {
            (false, false) => "plaintext",
            (true, false) => "ssl",
            (false, true) => "sasl_plaintext",
            (true, true) => "sasl_ssl",
        };
        config.set("security.protocol", protocol);
        if let Some(tls) = &self.tls {
            match &tls.ca_file {
                Some(path) => config.set("ssl.ca.location", path.display().to_string()),
                // OpenSSL is built into the binary with no CA folder of its own: let
                // librdkafka find the system's.
                None => config.set("ssl.ca.location", "probe"),
            };
            if let Some(path) = &tls.crt_file {
                config.set("ssl.certificate.location", path.display().to_string());
            }
            if let Some(path) = &tls.key_file {
                config.set("ssl.key.location", path.display().to_string());
            }
            config.set(
                "enable.ssl.certificate.verification",
                tls.verify_certificate.to_string(),
            );
            config.set(
                "ssl.endpoint.identification.algorithm",
                if tls.verify_certificate {
                    "https"
                } else {
                    "none"
                },
            );
        }
        if let Some(sasl) = &self.sasl {
            config.set("sasl.mechanism", sasl.mechanism());
            if let Some((username, password)) = sasl.credentials() {
                config
                    .set("sasl.username", username)
                    .set("sasl.password", password.expose());
            }
        }
        for (key, value) in &self.librdkafka_options {
            config.set(key, value);
        }
        config
    }
}

impl KafkaSinkConfig {
    /// The scope of OAUTHBEARER tokens: `sasl.scope`, else
    /// `https://<host of the first bootstrap server>/.default`.
    pub(super) fn oauth_scope(&self) -> Option<String> {
        let Some(SaslConfig::Oauthbearer { scope, .. }) = &self.sasl else {
            return None;
        };
        Some(match scope {
            Some(scope) => scope.trim().to_string(),
            None => {
                let first = self.bootstrap_servers.split(',').next().unwrap_or_default();
                let host = first
                    .trim()
                    .rsplit_once(':')
                    .map_or(first.trim(), |(host, _)| host);
                format!("https://{host}/.default")
            }
        })
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
