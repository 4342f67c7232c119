//! Options of the `kafka` source, and the librdkafka consumer configuration they make.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use serde::{Deserialize, Deserializer};
use siemflow_core::ConfigIssue;
use siemflow_core::auth::EntraConfig;
use siemflow_core::decoding::Decoding;
use siemflow_core::http::TlsConfig;
use siemflow_core::kafka::{EventHubsConfig, KafkaClient, KafkaConnection, SaslConfig};

use crate::file::{MAX_BATCH_EVENTS, default_batch_max_events};
use crate::schema;

/// Consumes topics of a Kafka cluster in a consumer group.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// Required unless `event_hubs`. The brokers to bootstrap from, `"host:port,host:port"`.
    pub bootstrap_servers: Option<String>,
    /// Required. The consumer group: processes with the same group share the partitions,
    /// and its committed offsets say where to go on after a restart.
    pub group_id: String,
    /// Required. Topic names, or regular expressions starting with `^`
    /// (`"^m365\\..*"`): every matching topic, including ones created later.
    pub topics: Vec<String>,
    /// Where a partition without a committed offset starts: `"earliest"` (default: a new
    /// group reads everything the topic still holds) or `"latest"` (only what comes next).
    #[serde(default)]
    pub auto_offset_reset: OffsetReset,
    /// How each message's value is read: `json` (one JSON object; anything else is kept
    /// whole in `message` and counted) or `text` (the value in `message`). Default `json`.
    #[serde(default, serialize_with = "schema::decoding")]
    #[schemars(with = "String")]
    pub decoding: Decoding,
    /// The field under `metadata` that receives the message's topic, partition, offset,
    /// key, timestamp and headers (default `"kafka"`: `metadata.kafka.topic`, ...).
    #[serde(default = "default_metadata_key")]
    pub metadata_key: String,
    /// Unpack Azure's `{"records": [...]}` envelopes (Defender XDR streaming, diagnostic
    /// settings into Event Hubs): one event per record. Default `false`.
    #[serde(default)]
    pub unpack_records: bool,
    /// Most events in one batch. Default: `500`.
    #[serde(default = "default_batch_max_events")]
    pub batch_max_events: usize,
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
    /// Extra librdkafka properties, e.g. `{ "session.timeout.ms" = "30000" }`, applied
    /// over the source's own (as in Vector).
    #[serde(default)]
    pub librdkafka_options: BTreeMap<String, String>,
    /// How long a revoke (or a shutdown) waits for the acknowledgements of the partitions'
    /// events in flight before it commits what was delivered and lets them go; what is
    /// acknowledged later is re-read by the next owner. Default: half of
    /// `session.timeout.ms`; must be shorter than it.
    #[serde(default, deserialize_with = "optional_duration")]
    #[schemars(with = "Option<String>")]
    pub drain_timeout: Option<Duration>,
}

fn optional_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    siemflow_core::units::duration(d).map(Some)
}

/// librdkafka's default `session.timeout.ms`.
const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_millis(45_000);

/// `auto_offset_reset`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OffsetReset {
    /// The oldest message the partition still holds.
    #[default]
    Earliest,
    /// The next message written.
    Latest,
}

fn default_metadata_key() -> String {
    "kafka".to_string()
}

/// librdkafka properties the source sets itself: they carry secrets or decide when offsets
/// are committed.
const OWN_PROPERTIES: &[&str] = &[
    "sasl.password",
    "sasl.username",
    "enable.auto.offset.store",
    "enable.auto.commit",
    "group.id",
    "partition.assignment.strategy",
    "group.protocol",
];

impl KafkaSourceConfig {
    pub(super) fn issues(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        let connection = self.connection();
        let (connection_issues, later): (Vec<_>, Vec<_>) = connection
            .issues()
            .into_iter()
            .partition(|issue| issue.key.as_deref() == Some("bootstrap_servers"));
        issues.extend(connection_issues);
        if self.group_id.trim().is_empty() {
            issues.push(ConfigIssue::new("group_id", "is empty").hint("e.g. \"siemflow-m365\""));
        }
        if self.topics.is_empty() || self.topics.iter().any(|t| t.trim().is_empty()) {
            issues.push(
                ConfigIssue::new("topics", "needs at least one topic, none of them empty")
                    .hint("e.g. [\"m365.Exchange\"] or [\"^m365\\\\..*\"]"),
            );
        }
        if let Some(hub) = connection.entity_path()
            && let Some(other) = self
                .topics
                .iter()
                .map(|topic| topic.trim())
                .find(|topic| !topic.starts_with('^') && *topic != hub)
        {
            issues.push(
                ConfigIssue::new(
                    "topics",
                    format!(
                        "`{other}`: the connection string's EntityPath grants only the event hub `{hub}`"
                    ),
                )
                .hint(format!("topics = [\"{hub}\"], or a namespace-wide connection string")),
            );
        }
        if self.metadata_key.trim().is_empty() {
            issues.push(ConfigIssue::new("metadata_key", "is empty"));
        }
        if let Err(problem) =
            siemflow_core::config::checks::count(self.batch_max_events, MAX_BATCH_EVENTS)
        {
            issues.push(ConfigIssue::new("batch_max_events", problem));
        }
        match self.session_timeout() {
            Err(problem) => issues.push(ConfigIssue::new(
                "librdkafka_options.session.timeout.ms",
                problem,
            )),
            Ok(session) => {
                let drain = self.drain_timeout.unwrap_or(session / 2);
                if drain.is_zero() || drain >= session {
                    issues.push(
                        ConfigIssue::new(
                            "drain_timeout",
                            format!(
                                "must be above zero and shorter than session.timeout.ms ({} ms)",
                                session.as_millis()
                            ),
                        )
                        .hint("the group gives a member's partitions away after the session timeout; a revoke must finish before"),
                    );
                }
            }
        }
        for key in self.librdkafka_options.keys() {
            if OWN_PROPERTIES.contains(&key.as_str()) {
                issues.push(
                    ConfigIssue::new(
                        &format!("librdkafka_options.{key}"),
                        "is set by the source itself",
                    )
                    .hint(
                        "credentials go in `sasl` or `event_hubs`; offsets are stored only for delivered events and committed by the source",
                    ),
                );
            }
        }
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
            compression: None,
            librdkafka_options: &self.librdkafka_options,
        }
    }

    /// The Entra app and token scope when the consumer authenticates with OAUTHBEARER
    /// (`sasl` or `event_hubs`): its context's token callback needs them
    /// (`siemflow_core::kafka::OAuthTokens`).
    pub fn oauth(&self) -> Option<(&EntraConfig, String)> {
        self.connection().oauth()
    }

    /// `session.timeout.ms` as librdkafka will use it.
    fn session_timeout(&self) -> Result<Duration, String> {
        // librdkafka_options over the connection's (Event Hubs sets its own) over the default.
        let connection = self.connection().properties(KafkaClient::Consumer);
        let set = self
            .librdkafka_options
            .get("session.timeout.ms")
            .or(connection
                .iter()
                .find(|(key, _)| *key == "session.timeout.ms")
                .map(|(_, value)| value));
        match set {
            None => Ok(DEFAULT_SESSION_TIMEOUT),
            Some(text) => text
                .trim()
                .parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|_| format!("{text:?} is not a number of milliseconds")),
        }
    }

    /// How long a revoke or a shutdown waits for in-flight acknowledgements.
    pub(super) fn drain_timeout(&self) -> Duration {
        let session = self.session_timeout().unwrap_or(DEFAULT_SESSION_TIMEOUT);
        self.drain_timeout.unwrap_or(session / 2)
    }

    /// The consumer's librdkafka configuration: at-least-once (offsets stored only once
    /// delivered, then committed in the background), cooperative rebalancing.
    pub(super) fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        for (key, value) in self.connection().properties(KafkaClient::Consumer) {
            config.set(key, value);
        }
        config
            .set("group.id", self.group_id.trim())
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set(
                "auto.offset.reset",
                match self.auto_offset_reset {
                    OffsetReset::Earliest => "earliest",
                    OffsetReset::Latest => "latest",
                },
            );
        for (key, value) in &self.librdkafka_options {
            config.set(key, value);
        }
        config
    }
}

#[cfg(test)]
mod event_hubs_tests {
    use super::KafkaSourceConfig;

    const CONN: &str = "Endpoint=sb://contoso-eh.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey=TOPSECRET";

    fn parse(text: &str) -> KafkaSourceConfig {
        toml::from_str(text).expect("source config")
    }

    #[test]
    fn a_connection_string_makes_the_consumer_connect_to_event_hubs() {
        let config = parse(&format!(
            "event_hubs = {{ connection_string = \"{CONN};EntityPath=xdr\" }}\ngroup_id = \"g\"\ntopics = [\"xdr\"]"
        ));
        assert_eq!(config.issues(), Vec::new());
        let client = config.client_config();
        assert_eq!(
            client.get("bootstrap.servers"),
            Some("contoso-eh.servicebus.windows.net:9093")
        );
        assert_eq!(client.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(client.get("sasl.username"), Some("$ConnectionString"));
        assert_eq!(client.get("session.timeout.ms"), Some("30000"));
        assert_eq!(client.get("metadata.max.age.ms"), Some("180000"));
        assert_eq!(client.get("group.id"), Some("g"));
        // The revoke drain follows Event Hubs' session timeout.
        assert_eq!(config.drain_timeout(), std::time::Duration::from_secs(15));
        assert!(!format!("{config:?}").contains("TOPSECRET"));
        assert!(config.oauth().is_none());
    }

    #[test]
    fn a_topic_the_connection_string_does_not_grant_is_a_config_error() {
        let config = parse(&format!(
            "event_hubs = {{ connection_string = \"{CONN};EntityPath=xdr\" }}\ngroup_id = \"g\"\ntopics = [\"xdr\", \"other\"]\n\
             bootstrap_servers = \"k:9092\"\nlibrdkafka_options = {{ \"sasl.password\" = \"x\" }}"
        ));
        let issues = config.issues();
        let keys: Vec<_> = issues.iter().filter_map(|i| i.key.as_deref()).collect();
        assert_eq!(
            keys,
            [
                "bootstrap_servers",
                "topics",
                "librdkafka_options.sasl.password"
            ]
        );
        assert!(
            issues[1]
                .message
                .contains("grants only the event hub `xdr`")
        );
        // A pattern may well match the one hub.
        let pattern = parse(&format!(
            "event_hubs = {{ connection_string = \"{CONN};EntityPath=xdr\" }}\ngroup_id = \"g\"\ntopics = [\"^x.*\"]"
        ));
        assert_eq!(pattern.issues(), Vec::new());
    }

    #[test]
    fn entra_gives_the_consumer_oauthbearer_with_the_namespace_scope() {
        let config = parse(
            "group_id = \"g\"\ntopics = [\"xdr\"]\nevent_hubs = { namespace = \"contoso-eh\", auth = { tenant_id = \"contoso.onmicrosoft.com\", client_id = \"00000000-0000-0000-0000-000000000001\", client_secret = \"TOPSECRET\" } }",
        );
        assert_eq!(config.issues(), Vec::new());
        assert_eq!(
            config.client_config().get("sasl.mechanism"),
            Some("OAUTHBEARER")
        );
        assert_eq!(
            config.oauth().map(|(_, scope)| scope).as_deref(),
            Some("https://contoso-eh.servicebus.windows.net/.default")
        );
    }
}
