//! Options of the `elasticsearch` sink.

use std::time::Duration;

use serde::Deserialize;
use siemflow_core::config::checks;
use siemflow_core::delivery::{
    self, BatchConfig, Compression, Concurrency, HealthcheckConfig, RequestConfig, RetryConfig,
};
use siemflow_core::event::field_path;
use siemflow_core::http::{TlsConfig, endpoint_url_problem};
use siemflow_core::template::Template;
use siemflow_core::{ConfigIssue, Secret};
use vrl::path::OwnedValuePath;

use super::encode::index_name_problem;

/// Options of the `elasticsearch` sink.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ElasticsearchSinkConfig {
    /// Required. Base URLs of the cluster's nodes, e.g. `["https://es1.example:9200"]`
    /// (a path prefix such as `https://proxy.example/es` is kept). Requests rotate over
    /// them; a failed request is retried on the next one. Plain `http` only to this
    /// machine; credentials go in `auth`, never in the URL.
    pub endpoints: Vec<String>,
    /// `"index"` (default): plain indices; `"data_stream"`: a data stream, written with
    /// `create` only, every document with an `@timestamp`.
    #[serde(default)]
    pub mode: Mode,
    /// The index or data stream, a template such as `"m365-{{ .Workload }}-%Y.%m.%d"`
    /// (dates from the event's `timestamp_field`); rendered names are lower-cased and
    /// checked against Elasticsearch's rules, an invalid one is dead-lettered. Default
    /// `"m365-%Y.%m.%d"`, or `"logs-m365-default"` in data stream mode.
    pub index: Option<String>,
    /// `"create"` (fails with 409 when the `_id` exists, which counts as delivered) or
    /// `"index"` (create or overwrite). Default `create` when `id_fields` is set or in
    /// data stream mode, else `index`.
    pub action: Option<BulkAction>,
    /// Fields whose values make a deterministic `_id` (xxh3-128 of their JSON, 32 hex
    /// digits), e.g. `["Id"]`: a re-delivered event lands on its own document again.
    /// Default none: Elasticsearch generates ids, and a re-delivery is a second document.
    #[serde(default)]
    pub id_fields: Vec<String>,
    /// What to do with an event lacking one of `id_fields`: `"auto"` (default) sends it
    /// without `_id` (counted, logged), `"dead_letter"` dead-letters it.
    #[serde(default)]
    pub missing_id: MissingId,
    /// An ingest pipeline every document goes through (`?pipeline=`). Default none.
    pub pipeline: Option<String>,
    /// The event field holding its time (RFC 3339 text or epoch seconds/milliseconds):
    /// the dates of `index`, and `@timestamp` in data stream mode when the event has
    /// none. Default `"CreationTime"` (Office 365 audit records); else the send time.
    #[serde(default = "default_timestamp_field")]
    pub timestamp_field: String,
    /// Credentials: `{ strategy = "basic", user, password }` or
    /// `{ strategy = "api_key", api_key }`. Default none.
    pub auth: Option<Auth>,
    /// Batch limits (defaults 5000 events, `"10MiB"`, `"1s"`).
    #[serde(default)]
    pub batch: Batch,
    /// `"none"` (default) or `"gzip"`.
    #[serde(default)]
    pub compression: Compression,
    /// Requests in flight at most (default 4).
    #[serde(default)]
    pub concurrency: Concurrency,
    /// Per-request options (`timeout`, default `"60s"`).
    #[serde(default)]
    pub request: RequestConfig,
    /// Backoff and the retry time limit of a batch.
    #[serde(default)]
    pub retry: RetryConfig,
    /// TLS options (custom CA, client certificate, `verify_certificate`).
    #[serde(default)]
    pub tls: TlsConfig,
    /// An HTTP(S) proxy URL (may hold credentials; never logged).
    pub proxy: Option<Secret>,
    /// Probe `GET /` of each endpoint at start (version and product logged).
    #[serde(default)]
    pub healthcheck: HealthcheckConfig,
}

/// Where documents go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Plain indices.
    #[default]
    Index,
    /// A data stream (append-only: `create` only, `@timestamp` required).
    DataStream,
}

/// The bulk action of every document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BulkAction {
    /// Create or overwrite.
    Index,
    /// Create only; an existing `_id` answers 409.
    Create,
}

impl BulkAction {
    /// The key of the action line.
    pub fn name(self) -> &'static str {
        match self {
            BulkAction::Index => "index",
            BulkAction::Create => "create",
        }
    }
}

/// What happens to an event lacking an `id_fields` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum MissingId {
    /// Sent without `_id`: Elasticsearch generates one (a re-delivery may duplicate it).
    #[default]
    Auto,
    /// Dead-lettered with reason `id_field_missing`.
    DeadLetter,
}

/// `auth`: how requests authenticate.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(tag = "strategy", rename_all = "snake_case", deny_unknown_fields)]
pub enum Auth {
    /// HTTP Basic (`Authorization: Basic base64(user:password)`).
    Basic {
        /// The user name.
        user: String,
        /// The password; never logged.
        password: Secret,
    },
    /// An Elasticsearch API key (`Authorization: ApiKey <encoded>`): the `encoded` field
    /// of the create-API-key answer, i.e. base64 of `id:api_key`. Not in OpenSearch.
    ApiKey {
        /// The encoded key; never logged.
        api_key: Secret,
    },
}

/// `batch`: the shared batch options with Elasticsearch's defaults (Elastic advises
/// requests of a few MB to a few tens of MB; Vector's default is 10 MB).
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Batch {
    /// At most this many events per request (default 5000).
    pub max_events: usize,
    /// At most this many bytes of NDJSON per request, before compression (default
    /// `"10MiB"`); a single larger event is sent alone.
    #[serde(
        deserialize_with = "siemflow_core::units::size",
        serialize_with = "siemflow_core::units::serialize_size"
    )]
    #[schemars(with = "String")]
    pub max_bytes: u64,
    /// Send a partial batch once its first event waited this long (default `"1s"`).
    #[serde(
        deserialize_with = "siemflow_core::units::duration",
        serialize_with = "siemflow_core::units::serialize_duration"
    )]
    #[schemars(with = "String")]
    pub timeout: Duration,
}

impl Default for Batch {
    fn default() -> Self {
        Batch {
            max_events: 5000,
            max_bytes: 10 << 20,
            timeout: Duration::from_secs(1),
        }
    }
}

impl From<&Batch> for BatchConfig {
    fn from(batch: &Batch) -> Self {
        BatchConfig {
            max_events: batch.max_events,
            max_bytes: batch.max_bytes,
            timeout: batch.timeout,
        }
    }
}

fn default_timestamp_field() -> String {
    "CreationTime".to_string()
}

impl ElasticsearchSinkConfig {
    /// The bulk action in force.
    pub fn bulk_action(&self) -> BulkAction {
        match (self.action, self.mode) {
            (Some(action), _) => action,
            (None, Mode::DataStream) => BulkAction::Create,
            (None, Mode::Index) if !self.id_fields.is_empty() => BulkAction::Create,
            (None, Mode::Index) => BulkAction::Index,
        }
    }

    /// The index template as written, or the mode's default.
    pub fn index_template(&self) -> &str {
        match (&self.index, self.mode) {
            (Some(index), _) => index,
            (None, Mode::Index) => "m365-%Y.%m.%d",
            (None, Mode::DataStream) => "logs-m365-default",
        }
    }

    /// The parsed `id_fields`, or every problem with them.
    pub(super) fn id_paths(&self) -> Result<Vec<OwnedValuePath>, Vec<ConfigIssue>> {
        let mut paths = Vec::new();
        let mut issues = Vec::new();
        for (i, text) in self.id_fields.iter().enumerate() {
            match field_path(&format!("id_fields[{i}]"), text) {
                Ok(path) => paths.push(path),
                Err(issue) => issues.push(issue),
            }
        }
        if issues.is_empty() {
            Ok(paths)
        } else {
            Err(issues)
        }
    }

    pub(super) fn issues(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        if self.endpoints.is_empty() {
            issues.push(
                ConfigIssue::new("endpoints", "no endpoint given")
                    .hint("e.g. endpoints = [\"https://es.example:9200\"]"),
            );
        }
        for (i, endpoint) in self.endpoints.iter().enumerate() {
            let key = format!("endpoints[{i}]");
            if let Some(problem) = endpoint_url_problem(endpoint) {
                issues
                    .push(ConfigIssue::new(&key, problem).hint("e.g. \"https://es.example:9200\""));
                continue;
            }
            let Ok(url) = reqwest::Url::parse(endpoint.trim()) else {
                continue;
            };
            if url.path().trim_end_matches('/').ends_with("/_bulk") {
                issues.push(
                    ConfigIssue::new(&key, "is the cluster's base URL, without `/_bulk`")
                        .hint("e.g. \"https://es.example:9200\""),
                );
            } else if url.query().is_some() {
                issues.push(
                    ConfigIssue::new(&key, "must not carry a query string")
                        .hint("set pipeline with the `pipeline` option"),
                );
            }
        }
        if let Some(proxy) = &self.proxy
            && let Err(problem) = checks::proxy_url(proxy.expose())
        {
            issues.push(
                ConfigIssue::new("proxy", problem).hint("e.g. \"http://proxy.example:3128\""),
            );
        }
        let action = self.bulk_action();
        if self.mode == Mode::DataStream && action != BulkAction::Create {
            issues.push(
                ConfigIssue::new(
                    "action",
                    "data streams accept only `create`: Elasticsearch refuses every `index` item with 400",
                )
                .hint("remove `action` or set action = \"create\""),
            );
        }
        let template = self.index_template();
        match Template::parse(template) {
            Err(message) => issues.push(
                ConfigIssue::new("index", message).hint("e.g. \"m365-{{ .Workload }}-%Y.%m.%d\""),
            ),
            Ok(parsed) if !parsed.has_fields() && !template.contains('%') => {
                // A fixed name can be checked now rather than dead-lettering everything.
                if let Some(why) = index_name_problem(&template.to_lowercase(), self.mode) {
                    issues.push(
                        ConfigIssue::new(
                            "index",
                            format!("`{template}` is not a valid name: {why}"),
                        )
                        .hint("lower-case letters, digits, `-`, `_`, `.`; e.g. \"m365-audit\""),
                    );
                }
            }
            Ok(_) => {}
        }
        if let Err(found) = self.id_paths() {
            issues.extend(found);
        }
        if self.missing_id == MissingId::DeadLetter && self.id_fields.is_empty() {
            issues.push(
                ConfigIssue::new("missing_id", "has no effect without id_fields")
                    .hint("set id_fields = [\"Id\"], or remove missing_id"),
            );
        }
        if let Some(pipeline) = &self.pipeline
            && pipeline.trim().is_empty()
        {
            issues.push(
                ConfigIssue::new("pipeline", "is empty")
                    .hint("remove it or name an ingest pipeline"),
            );
        }
        if self.timestamp_field.trim().is_empty() {
            issues.push(
                ConfigIssue::new("timestamp_field", "is empty").hint("e.g. \"CreationTime\""),
            );
        }
        match &self.auth {
            Some(Auth::Basic { user, password }) => {
                if user.is_empty() || user.contains(':') {
                    issues.push(ConfigIssue::new(
                        "auth.user",
                        "must be a non-empty user name without `:`",
                    ));
                }
                if password.expose().is_empty() {
                    issues.push(
                        ConfigIssue::new("auth.password", "is empty")
                            .hint("e.g. password = \"${ES_PASSWORD}\""),
                    );
                }
            }
            Some(Auth::ApiKey { api_key }) => {
                let key = api_key.expose().trim();
                if key.is_empty() {
                    issues.push(
                        ConfigIssue::new("auth.api_key", "is empty")
                            .hint("the `encoded` field of the create-API-key answer, e.g. api_key = \"${ES_API_KEY}\""),
                    );
                } else if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    issues.push(ConfigIssue::new(
                        "auth.api_key",
                        "holds spaces or control characters; it is one base64 word (the `encoded` field)",
                    ));
                }
            }
            None => {}
        }
        let batch = BatchConfig::from(&self.batch);
        issues.extend(delivery::config::check(&batch, &self.request, &self.retry));
        issues.extend(self.tls.check("tls"));
        issues
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &str) -> ElasticsearchSinkConfig {
        toml::from_str(&format!("endpoints = [\"http://127.0.0.1:9200\"]\n{extra}"))
            .expect("config")
    }

    fn keys(config: &ElasticsearchSinkConfig) -> Vec<String> {
        config.issues().into_iter().filter_map(|i| i.key).collect()
    }

    #[test]
    fn defaults() {
        let config = parse("");
        assert!(config.issues().is_empty(), "{:?}", config.issues());
        assert_eq!(config.mode, Mode::Index);
        assert_eq!(config.bulk_action(), BulkAction::Index);
        assert_eq!(config.index_template(), "m365-%Y.%m.%d");
        assert_eq!(config.batch.max_bytes, 10 << 20);
        assert_eq!(config.timestamp_field, "CreationTime");
        let config = parse("id_fields = [\"Id\"]");
        assert_eq!(config.bulk_action(), BulkAction::Create);
        let config = parse("mode = \"data_stream\"");
        assert_eq!(config.bulk_action(), BulkAction::Create);
        assert_eq!(config.index_template(), "logs-m365-default");
        // A partial batch table keeps this sink's defaults for the rest.
        let config = parse("batch = { max_events = 10 }");
        assert_eq!(
            (config.batch.max_events, config.batch.max_bytes),
            (10, 10 << 20)
        );
    }

    #[test]
    fn data_streams_take_create_only() {
        let config = parse("mode = \"data_stream\"\naction = \"index\"");
        assert_eq!(keys(&config), ["action"]);
        let issue = &config.issues()[0];
        assert!(issue.message.contains("only `create`"), "{issue:?}");
        assert!(
            parse("mode = \"data_stream\"\naction = \"create\"")
                .issues()
                .is_empty()
        );
    }

    #[test]
    fn refusals() {
        let config: ElasticsearchSinkConfig = toml::from_str(
            "endpoints = [\"http://es.example:9200\", \"https://u:pw@es.example\", \"https://es.example/_bulk\"]",
        )
        .expect("config");
        assert_eq!(
            keys(&config),
            ["endpoints[0]", "endpoints[1]", "endpoints[2]"]
        );
        assert!(
            config.issues().iter().all(|i| !i.message.contains("pw")),
            "credentials not echoed"
        );
        let config: ElasticsearchSinkConfig = toml::from_str("endpoints = []").expect("config");
        assert_eq!(keys(&config), ["endpoints"]);
        assert_eq!(keys(&parse("index = \"M365 Audit\"")), ["index"]);
        assert_eq!(keys(&parse("index = \"{{ .Workload\"")), ["index"]);
        assert!(
            parse("index = \"M365-{{ .Workload }}-%Y\"")
                .issues()
                .is_empty()
        );
        assert_eq!(
            keys(&parse("id_fields = [\"not a path\"]")),
            ["id_fields[0]"]
        );
        assert_eq!(keys(&parse("missing_id = \"dead_letter\"")), ["missing_id"]);
        assert_eq!(
            keys(&parse(
                "auth = { strategy = \"basic\", user = \"\", password = \"\" }"
            )),
            ["auth.user", "auth.password"]
        );
        assert_eq!(
            keys(&parse(
                "auth = { strategy = \"api_key\", api_key = \"a b\" }"
            )),
            ["auth.api_key"]
        );
        assert!(toml::from_str::<ElasticsearchSinkConfig>(
            "endpoints = [\"http://127.0.0.1:9200\"]\nauth = { strategy = \"api_key\", api_key = \"k\", user = \"x\" }"
        )
        .is_err());
        assert!(toml::from_str::<ElasticsearchSinkConfig>(
            "endpoints = [\"http://127.0.0.1:9200\"]\nauth = { strategy = \"bearer\", token = \"k\" }"
        )
        .is_err());
    }

    #[test]
    fn secrets_never_shown() {
        let config =
            parse("auth = { strategy = \"basic\", user = \"elastic\", password = \"hunter2\" }");
        assert!(!format!("{config:?}").contains("hunter2"));
        let config = parse("auth = { strategy = \"api_key\", api_key = \"c2VjcmV0\" }");
        assert!(!format!("{config:?}").contains("c2VjcmV0"));
    }
}
