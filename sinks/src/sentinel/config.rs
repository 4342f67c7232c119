//! Options of the `sentinel` sink and the checks serde cannot make.

use serde::{Deserialize, Deserializer};
use siemflow_core::ConfigIssue;
use siemflow_core::Secret;
use siemflow_core::auth::EntraConfig;
use siemflow_core::delivery::{
    BatchConfig, Compression, Concurrency, HealthcheckConfig, RequestConfig, RetryConfig,
};
use siemflow_core::http::TlsConfig;

use super::cloud::AzureCloud;
use super::record::{MAX_COLUMN_NAME, column_problem};

/// The Logs Ingestion API refuses a call larger than this, compressed or not (reference
/// §2.3; the service's 413 states the limit as 1048576 bytes).
pub const MAX_REQUEST_BYTES: u64 = 1_048_576;

/// The API version sent by default (reference §2.1).
pub const DEFAULT_API_VERSION: &str = "2023-01-01";

/// Sends events to Microsoft Sentinel (a Log Analytics workspace) through the Azure
/// Monitor Logs Ingestion API: a data collection rule (DCR) and one of its streams.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SentinelSinkConfig {
    /// Required. The Data Collection Endpoint (`https://<dce>.<region>-1.ingest.monitor.azure.com`)
    /// or the DCR's own `logsIngestion` endpoint. Plain `http://` only to this machine.
    pub endpoint: String,
    /// Required. The DCR's immutable id, `dcr-` and 32 hex digits.
    pub dcr_immutable_id: String,
    /// Required. The DCR input stream: `Custom-<Name>` or `Microsoft-<Table>`.
    pub stream_name: String,
    /// The `api-version` query parameter (default `"2023-01-01"`).
    #[serde(default = "default_api_version")]
    pub api_version: String,
    /// Required. The Entra ID app that holds "Monitoring Metrics Publisher" on the DCR
    /// (`tenant_id`, `client_id`, `client_secret` or `certificate`, `cloud`, `login_url`).
    pub auth: EntraConfig,
    /// The token scope. Default: from the endpoint's host (`.azure.com`, `.azure.us`,
    /// `.azure.cn`), else from `auth.cloud`: `https://monitor.azure.com//.default`
    /// (public), `https://monitor.azure.us//.default` (US Government),
    /// `https://monitor.azure.cn//.default` (China).
    #[serde(default)]
    pub scope: Option<String>,
    /// Where each record's time is read from for `TimeGenerated`: a field name or a list
    /// tried in order; the first that holds a date and time wins, else the send time.
    /// Default `["TimeGenerated", "CreationTime", "createdDateTime", "activityDateTime",
    /// "time"]`.
    #[serde(default = "default_timestamp_fields", deserialize_with = "one_or_many")]
    pub timestamp_field: Vec<String>,
    /// Put before a top-level field name that is not a valid column (reserved such as
    /// `TenantId`, or not starting with a letter) after invalid characters became `_`
    /// (default `"x_"`: `TenantId` → `x_TenantId`).
    #[serde(default = "default_rename_prefix")]
    pub rename_prefix: String,
    /// Batch limits; `max_bytes` (default and most `"1MiB"`) counts the uncompressed JSON
    /// array, brackets and commas included.
    #[serde(default)]
    pub batch: BatchConfig,
    /// `"gzip"` (default) or `"none"`. The 1 MiB limit applies before compression anyway.
    #[serde(default = "default_compression")]
    pub compression: Compression,
    /// Requests in flight at most (default 4).
    #[serde(default)]
    pub concurrency: Concurrency,
    /// Per-request options (`timeout`, default `"60s"`).
    #[serde(default)]
    pub request: RequestConfig,
    /// Backoff and the retry time limit.
    #[serde(default)]
    pub retry: RetryConfig,
    /// TLS options (custom CA, client certificate); certificates are verified by default.
    #[serde(default)]
    pub tls: TlsConfig,
    /// An HTTP(S) proxy URL for the ingestion and token requests (may hold credentials).
    #[serde(default)]
    pub proxy: Option<Secret>,
    /// Get a token and probe the stream with an empty array at start (default on).
    #[serde(default)]
    pub healthcheck: HealthcheckConfig,
}

fn default_api_version() -> String {
    DEFAULT_API_VERSION.to_string()
}

fn default_timestamp_fields() -> Vec<String> {
    [
        "TimeGenerated",
        "CreationTime",
        "createdDateTime",
        "activityDateTime",
        "time",
    ]
    .map(String::from)
    .to_vec()
}

fn default_rename_prefix() -> String {
    "x_".to_string()
}

fn default_compression() -> Compression {
    Compression::Gzip
}

/// A string or a list of strings.
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Raw::deserialize(d)? {
        Raw::One(one) => vec![one],
        Raw::Many(many) => many,
    })
}

impl SentinelSinkConfig {
    /// The Azure cloud tokens are for: the endpoint's, else the one `auth.cloud` implies.
    pub(crate) fn azure_cloud(&self) -> AzureCloud {
        AzureCloud::of_endpoint(&self.endpoint).unwrap_or(AzureCloud::of_m365(self.auth.cloud))
    }

    /// The token scope in force.
    pub(crate) fn effective_scope(&self) -> String {
        match &self.scope {
            Some(scope) => scope.trim().to_string(),
            None => self.azure_cloud().scope().to_string(),
        }
    }

    /// The Entra settings tokens come from: `auth`, with the China authority filled in
    /// for a `.azure.cn` endpoint (no Microsoft 365 `cloud` names it).
    pub(crate) fn effective_auth(&self) -> EntraConfig {
        let mut auth = self.auth.clone();
        if auth.login_url.is_none() && self.azure_cloud() == AzureCloud::China {
            auth.login_url = Some(AzureCloud::China.login_url().to_string());
        }
        auth
    }

    /// `{endpoint}/dataCollectionRules/{id}/streams/{stream}?api-version=…`.
    pub(crate) fn ingestion_url(&self) -> String {
        format!(
            "{}/dataCollectionRules/{}/streams/{}?api-version={}",
            self.endpoint.trim().trim_end_matches('/'),
            self.dcr_immutable_id.trim(),
            self.stream_name.trim(),
            self.api_version.trim()
        )
    }

    /// Every problem serde cannot see.
    pub(crate) fn issues(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        let endpoint = self.endpoint.trim();
        if endpoint.is_empty() {
            issues.push(
                ConfigIssue::new("endpoint", "must name the ingestion endpoint").hint(
                    "the DCE's or the DCR's logsIngestion URL, e.g. https://my-dce-a1b2.eastus-1.ingest.monitor.azure.com",
                ),
            );
        } else if let Some(problem) = siemflow_core::http::endpoint_url_problem(endpoint) {
            issues.push(
                ConfigIssue::new("endpoint", problem)
                    .hint("e.g. https://my-dce-a1b2.eastus-1.ingest.monitor.azure.com"),
            );
        } else if endpoint.contains('?') || endpoint.contains("/dataCollectionRules") {
            issues.push(
                ConfigIssue::new(
                    "endpoint",
                    "must be the endpoint alone; the sink adds /dataCollectionRules/… and the api-version",
                )
                .hint("set dcr_immutable_id, stream_name and api_version separately"),
            );
        } else if endpoint.contains(".ods.opinsights.azure.") {
            issues.push(
                ConfigIssue::new(
                    "endpoint",
                    "is an HTTP Data Collector API (`*.ods.opinsights.azure.*`) URL: that API is retired",
                )
                .hint("create a data collection rule and use its Logs Ingestion endpoint (docs/sinks/sentinel.md)"),
            );
        } else if let Err(problem) = siemflow_core::config::checks::base_url(endpoint) {
            issues.push(
                ConfigIssue::new("endpoint", problem)
                    .hint("e.g. https://my-dce-a1b2.eastus-1.ingest.monitor.azure.com"),
            );
        }
        if !is_dcr_id(self.dcr_immutable_id.trim()) {
            issues.push(
                ConfigIssue::new(
                    "dcr_immutable_id",
                    format!(
                        "`{}` is not a DCR immutable id (\"dcr-\" and 32 hex digits)",
                        self.dcr_immutable_id
                    ),
                )
                .hint("the immutableId on the DCR's JSON view, e.g. dcr-0123456789abcdef0123456789abcdef"),
            );
        }
        if let Some(problem) = stream_problem(self.stream_name.trim()) {
            issues.push(
                ConfigIssue::new("stream_name", problem)
                    .hint("the input stream declared in the DCR, e.g. Custom-M365Audit_CL"),
            );
        }
        if !is_api_version(self.api_version.trim()) {
            issues.push(
                ConfigIssue::new(
                    "api_version",
                    format!("`{}` is not an api-version", self.api_version),
                )
                .hint(format!("e.g. \"{DEFAULT_API_VERSION}\"")),
            );
        }
        issues.extend(self.auth.check("auth"));
        if let Some(scope) = &self.scope
            && !scope.trim().ends_with("/.default")
        {
            issues.push(
                ConfigIssue::new(
                    "scope",
                    "must end with /.default (client-credentials tokens)",
                )
                .hint(format!("e.g. \"{}\"", self.azure_cloud().scope())),
            );
        }
        if self.scope.is_none()
            && self.auth.login_url.is_none()
            && let Some(endpoint_cloud) = AzureCloud::of_endpoint(endpoint)
            && endpoint_cloud != AzureCloud::China
            && endpoint_cloud != AzureCloud::of_m365(self.auth.cloud)
        {
            issues.push(
                ConfigIssue::new(
                    "auth.cloud",
                    format!(
                        "the endpoint is in the {} but auth.cloud = \"{}\" signs in at {}",
                        endpoint_cloud.name(),
                        self.auth.cloud.name(),
                        self.auth.cloud.login_url()
                    ),
                )
                .hint(match endpoint_cloud {
                    AzureCloud::UsGovernment => "auth.cloud = \"gcc_high\" (or set auth.login_url = \"https://login.microsoftonline.us\")",
                    _ => "auth.cloud = \"commercial\" (or set auth.login_url = \"https://login.microsoftonline.com\")",
                }),
            );
        }
        if let Some(problem) = prefix_problem(&self.rename_prefix) {
            issues.push(ConfigIssue::new("rename_prefix", problem).hint("e.g. \"x_\""));
        }
        if self.timestamp_field.iter().any(|f| f.trim().is_empty()) {
            issues.push(
                ConfigIssue::new("timestamp_field", "names an empty field")
                    .hint("e.g. [\"CreationTime\", \"createdDateTime\"]"),
            );
        }
        if self.batch.max_bytes > MAX_REQUEST_BYTES {
            issues.push(
                ConfigIssue::new(
                    "batch.max_bytes",
                    format!(
                        "{} bytes is more than the Logs Ingestion API takes in one call ({MAX_REQUEST_BYTES} bytes, before compression)",
                        self.batch.max_bytes
                    ),
                )
                .hint("at most \"1MiB\" (the default)"),
            );
        }
        issues.extend(siemflow_core::delivery::config::check(
            &self.batch,
            &self.request,
            &self.retry,
        ));
        issues.extend(self.tls.check("tls"));
        if let Some(proxy) = &self.proxy
            && let Err(problem) = siemflow_core::config::checks::proxy_url(proxy.expose())
        {
            issues.push(
                ConfigIssue::new("proxy", problem).hint("e.g. \"http://proxy.example:3128\""),
            );
        }
        issues
    }
}

fn is_dcr_id(id: &str) -> bool {
    id.strip_prefix("dcr-")
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn stream_problem(stream: &str) -> Option<String> {
    let name = stream
        .strip_prefix("Custom-")
        .or_else(|| stream.strip_prefix("Microsoft-"));
    match name {
        None => Some(format!(
            "`{stream}` must start with \"Custom-\" (custom streams) or \"Microsoft-\" (built-in tables)"
        )),
        Some(name)
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') =>
        {
            Some(format!(
                "`{stream}`: a stream name holds only letters, digits, '_' and '-'"
            ))
        }
        Some(_) => None,
    }
}

/// `YYYY-MM-DD` with an optional `-preview` (or other lower-case suffix).
fn is_api_version(version: &str) -> bool {
    let bytes = version.as_bytes();
    bytes.len() >= 10
        && bytes[..10].iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            _ => b.is_ascii_digit(),
        })
        && version[10..]
            .strip_prefix('-')
            .map_or(version.len() == 10, |suffix| {
                !suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_lowercase())
            })
}

fn prefix_problem(prefix: &str) -> Option<String> {
    if !prefix.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Some(format!(
            "`{prefix}` must start with a letter, as column names do"
        ));
    }
    if let Some(problem) = column_problem(prefix) {
        return Some(format!("`{prefix}` {problem}"));
    }
    if prefix.len() > MAX_COLUMN_NAME / 3 {
        return Some(format!(
            "`{prefix}` is too long: renamed columns must stay within {MAX_COLUMN_NAME} characters"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const TENANT: &str = "0b6f0c1e-5a3d-4c2b-9e8f-1a2b3c4d5e6f";
    const CLIENT: &str = "6f1a2b3c-0d4e-4f5a-8b6c-7d8e9f0a1b2c";

    fn parse(extra: &str) -> SentinelSinkConfig {
        toml::from_str(&format!(
            "endpoint = \"https://my-dce-a1b2.eastus-1.ingest.monitor.azure.com\"\n\
             dcr_immutable_id = \"dcr-0123456789abcdef0123456789abcdef\"\n\
             stream_name = \"Custom-M365Audit_CL\"\n\
             {extra}\n\
             [auth]\ntenant_id = \"{TENANT}\"\nclient_id = \"{CLIENT}\"\nclient_secret = \"s3cr3t\"\n"
        ))
        .expect("valid config")
    }

    fn keys(config: &SentinelSinkConfig) -> Vec<String> {
        config.issues().into_iter().filter_map(|i| i.key).collect()
    }

    #[test]
    fn defaults() {
        let config = parse("");
        assert!(config.issues().is_empty(), "{:?}", config.issues());
        assert_eq!(config.api_version, "2023-01-01");
        assert_eq!(config.compression, Compression::Gzip);
        assert_eq!(
            config.effective_scope(),
            "https://monitor.azure.com//.default"
        );
        assert_eq!(config.timestamp_field[0], "TimeGenerated");
        assert_eq!(
            config.ingestion_url(),
            "https://my-dce-a1b2.eastus-1.ingest.monitor.azure.com/dataCollectionRules/dcr-0123456789abcdef0123456789abcdef/streams/Custom-M365Audit_CL?api-version=2023-01-01"
        );
        assert!(!format!("{config:?}").contains("s3cr3t"));
    }

    #[test]
    fn timestamp_field_takes_one_or_many() {
        assert_eq!(
            parse("timestamp_field = \"When\"").timestamp_field,
            ["When"]
        );
        assert_eq!(
            parse("timestamp_field = [\"A\", \"B\"]").timestamp_field,
            ["A", "B"]
        );
    }

    #[test]
    fn national_clouds() {
        let mut config = parse("");
        config.endpoint = "https://dce.usgovvirginia-1.ingest.monitor.azure.us".into();
        // The endpoint is in Azure Government while auth signs in at the public authority.
        assert_eq!(keys(&config), ["auth.cloud"]);
        config.auth.cloud = siemflow_core::auth::Cloud::GccHigh;
        assert!(config.issues().is_empty());
        assert_eq!(
            config.effective_scope(),
            "https://monitor.azure.us//.default"
        );
        config.endpoint = "https://dce.chinanorth3-1.ingest.monitor.azure.cn".into();
        assert_eq!(
            config.effective_scope(),
            "https://monitor.azure.cn//.default"
        );
        assert_eq!(
            config.effective_auth().token_url(),
            format!("https://login.chinacloudapi.cn/{TENANT}/oauth2/v2.0/token")
        );
        // Loopback (the simulator): the scope follows auth.cloud.
        let mut config = parse("scope = \"https://monitor.azure.com/.default\"");
        config.endpoint = "http://127.0.0.1:9000".into();
        assert!(config.issues().is_empty());
        assert_eq!(
            config.effective_scope(),
            "https://monitor.azure.com/.default"
        );
    }

    #[test]
    fn refusals_name_their_key() {
        let cases = [
            ("endpoint", "http://dce.example.com"),
            ("endpoint", "https://ws.ods.opinsights.azure.com"),
            ("endpoint", "https://dce.example/dataCollectionRules/x"),
            ("dcr_immutable_id", "dcr-123"),
            ("stream_name", "M365Audit_CL"),
            ("stream_name", "Custom-bad name"),
            ("api_version", "latest"),
            ("rename_prefix", "_x"),
            ("rename_prefix", "x.y"),
            ("scope", "https://monitor.azure.com"),
        ];
        for (key, value) in cases {
            let mut config = parse("");
            match key {
                "endpoint" => config.endpoint = value.into(),
                "dcr_immutable_id" => config.dcr_immutable_id = value.into(),
                "stream_name" => config.stream_name = value.into(),
                "api_version" => config.api_version = value.into(),
                "rename_prefix" => config.rename_prefix = value.into(),
                _ => config.scope = Some(value.into()),
            }
            assert_eq!(keys(&config), [key], "{key} = {value}");
        }
        let config = parse("batch = { max_bytes = \"2MiB\" }");
        assert_eq!(keys(&config), ["batch.max_bytes"]);
        assert!(is_api_version("2021-11-01-preview"));
        assert!(!is_api_version("2023-1-01"));
        assert!(
            toml::from_str::<SentinelSinkConfig>("endpoint = \"x\"\nshared_key = \"k\"").is_err()
        );
    }
}
