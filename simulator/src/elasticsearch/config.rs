//! Configuration of the Elasticsearch / OpenSearch `_bulk` simulator.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use crate::wire;

/// `http.max_content_length` default: 100mb (100 MiB).
pub const DEFAULT_MAX_CONTENT_LENGTH: u64 = 100 * 1024 * 1024;

/// Which product the simulator imitates.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Flavour {
    /// Elasticsearch 8 (`document_parsing_exception`, `X-Elastic-Product`, API keys).
    #[default]
    Elasticsearch,
    /// OpenSearch 2 (`mapper_parsing_exception`, `opensearch_*` exceptions, no API keys).
    Opensearch,
}

/// Everything that defines a simulated cluster.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ElasticsearchConfig {
    /// Same seed and same request order ⇒ same faults and same generated ids. Default 1.
    pub seed: u64,
    /// `elasticsearch` (8.x) or `opensearch` (2.x). Default `elasticsearch`.
    pub flavour: Flavour,
    /// Basic-auth users. With no users and no API keys, security is off. Default none.
    pub users: Vec<EsUser>,
    /// API keys (`Authorization: ApiKey base64(id:key)`; Elasticsearch only). Default none.
    pub api_keys: Vec<EsApiKey>,
    /// Name patterns (`*` wildcards) that are data streams, e.g. `"logs-*-*"`: only `create`,
    /// and every document needs `@timestamp`. Default none.
    pub data_streams: Vec<String>,
    /// `http.max_content_length`: larger bodies (as sent or inflated) get 413
    /// (bytes or e.g. `"100MiB"`). Default 104857600.
    #[serde(deserialize_with = "wire::size")]
    pub max_content_length: u64,
    /// Keep documents for [`crate::ElasticsearchSimulator::documents`]; `false` keeps only
    /// ids and counters (benchmarks). Default true.
    pub keep_documents: bool,
    /// Injected failures. Default: all off.
    pub faults: EsFaults,
}

impl Default for ElasticsearchConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            flavour: Flavour::Elasticsearch,
            users: Vec::new(),
            api_keys: Vec::new(),
            data_streams: Vec::new(),
            max_content_length: DEFAULT_MAX_CONTENT_LENGTH,
            keep_documents: true,
            faults: EsFaults::default(),
        }
    }
}

/// A user of the native realm.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EsUser {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

impl fmt::Debug for EsUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EsUser")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// An API key: clients send `ApiKey base64(id:key)` (the create-API-key `encoded` field).
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EsApiKey {
    /// The key's id.
    pub id: String,
    /// The key's secret part.
    pub key: String,
}

impl fmt::Debug for EsApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EsApiKey")
            .field("id", &self.id)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// Injected failures; rates are shares in [0, 1].
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EsFaults {
    /// Share of `_bulk` requests answered 429 `es_rejected_execution_exception` as a whole.
    pub request_throttle_rate: f64,
    /// Share of `_bulk` requests answered 503 as a whole.
    pub request_unavailable_rate: f64,
    /// Share of items failing with 429 `es_rejected_execution_exception`
    /// (`opensearch_rejected_execution_exception`).
    pub item_throttle_rate: f64,
    /// Share of items failing with 503 `unavailable_shards_exception`.
    pub item_unavailable_rate: f64,
    /// A document whose source contains this string fails with 400
    /// `document_parsing_exception` (`mapper_parsing_exception`). Default none.
    pub reject_marker: Option<String>,
    /// Share of requests that wait `slow_delay` before being processed.
    pub slow_rate: f64,
    /// The wait of a slow request. Default "2s".
    #[serde(deserialize_with = "wire::duration")]
    pub slow_delay: Duration,
}

impl Default for EsFaults {
    fn default() -> Self {
        Self {
            request_throttle_rate: 0.0,
            request_unavailable_rate: 0.0,
            item_throttle_rate: 0.0,
            item_unavailable_rate: 0.0,
            reject_marker: None,
            slow_rate: 0.0,
            slow_delay: Duration::from_secs(2),
        }
    }
}

impl ElasticsearchConfig {
    /// Checks what serde cannot; the message names the offending key.
    pub fn validate(&self) -> anyhow::Result<()> {
        use anyhow::bail;
        if self.max_content_length == 0 {
            bail!("elasticsearch.max_content_length must be positive");
        }
        if self.flavour == Flavour::Opensearch && !self.api_keys.is_empty() {
            bail!("elasticsearch.api_keys: OpenSearch has no ApiKey authentication");
        }
        for (i, u) in self.users.iter().enumerate() {
            if u.username.is_empty() || u.username.contains(':') {
                bail!("elasticsearch.users[{i}].username must be non-empty without ':'");
            }
        }
        for (i, k) in self.api_keys.iter().enumerate() {
            if k.id.is_empty() || k.id.contains(':') || k.key.is_empty() {
                bail!("elasticsearch.api_keys[{i}] needs an id (without ':') and a key");
            }
        }
        for (i, p) in self.data_streams.iter().enumerate() {
            if p.is_empty() || p.to_lowercase() != *p {
                bail!("elasticsearch.data_streams[{i}] must be a non-empty lower-case pattern");
            }
        }
        let f = &self.faults;
        for (name, v) in [
            ("request_throttle_rate", f.request_throttle_rate),
            ("request_unavailable_rate", f.request_unavailable_rate),
            ("item_throttle_rate", f.item_throttle_rate),
            ("item_unavailable_rate", f.item_unavailable_rate),
            ("slow_rate", f.slow_rate),
        ] {
            wire::check_rate(&format!("elasticsearch.faults.{name}"), v)?;
        }
        if f.reject_marker.as_deref() == Some("") {
            bail!("elasticsearch.faults.reject_marker must not be empty");
        }
        Ok(())
    }

    /// Whether `name` is a data stream (matches one of the patterns).
    pub(crate) fn is_data_stream(&self, name: &str) -> bool {
        self.data_streams.iter().any(|p| wildcard(p, name))
    }
}

/// `*` matches any run of characters; everything else matches itself.
fn wildcard(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::wildcard;

    #[test]
    fn wildcards() {
        assert!(wildcard("logs-*", "logs-m365-default"));
        assert!(wildcard("logs-*-*", "logs-m365-default"));
        assert!(!wildcard("logs-*-*", "logs-m365"));
        assert!(wildcard("exact", "exact"));
        assert!(!wildcard("exact", "exactly"));
        assert!(wildcard("*", "anything"));
        assert!(!wildcard("a*b", "ab-c"));
    }
}
