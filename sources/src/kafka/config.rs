//! Options of the `kafka` source, and the librdkafka consumer configuration they make.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use serde::{Deserialize, Deserializer};
use siemflow_core::ConfigIssue;
use siemflow_core::decoding::Decoding;

use crate::file::{MAX_BATCH_EVENTS, default_batch_max_events};
use crate::schema;

/// Consumes topics of a Kafka cluster in a consumer group.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// Required. The brokers to bootstrap from, `"host:port,host:port"`.
    pub bootstrap_servers: String,
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

/// librdkafka properties the source sets itself: they decide when offsets are committed.
const OWN_PROPERTIES: &[&str] = &[
    "enable.auto.offset.store",
    "enable.auto.commit",
    "group.id",
    "partition.assignment.strategy",
    "group.protocol",
];

impl KafkaSourceConfig {
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
        if self.group_id.trim().is_empty() {
            issues.push(ConfigIssue::new("group_id", "is empty").hint("e.g. \"siemflow-m365\""));
        }
        if self.topics.is_empty() || self.topics.iter().any(|t| t.trim().is_empty()) {
            issues.push(
                ConfigIssue::new("topics", "needs at least one topic, none of them empty")
                    .hint("e.g. [\"m365.Exchange\"] or [\"^m365\\\\..*\"]"),
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
                        "offsets are stored only for delivered events and committed by the source",
                    ),
                );
            }
        }
        issues
    }

    /// `session.timeout.ms` as librdkafka will use it.
    fn session_timeout(&self) -> Result<Duration, String> {
        match self.librdkafka_options.get("session.timeout.ms") {
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
        config
            .set("bootstrap.servers", self.bootstrap_servers.trim())
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
            )
            .set("socket.keepalive.enable", "true");
        for (key, value) in &self.librdkafka_options {
            config.set(key, value);
        }
        config
    }
}
