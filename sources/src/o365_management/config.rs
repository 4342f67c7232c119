//! Options of the `o365_management` source.

use std::time::Duration;

use serde::Deserialize;
use siemflow_core::ConfigIssue;
use siemflow_core::auth::EntraConfig;
use siemflow_core::http::TlsConfig;
use siemflow_core::units;

use crate::microsoft::tenants;
use crate::schema;

/// The five content types of the Management Activity API, in the API's spelling.
pub const CONTENT_TYPES: [&str; 5] = [
    "Audit.AzureActiveDirectory",
    "Audit.Exchange",
    "Audit.SharePoint",
    "Audit.General",
    "DLP.All",
];

/// Content older than this cannot be listed or fetched (reference 1.3).
pub const MAX_HISTORY: Duration = Duration::from_secs(7 * 24 * 3600);

/// Reads the Office 365 Management Activity API (the unified audit log) of one or more
/// tenants, with cursors that advance only over delivered blobs.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct O365ManagementConfig {
    /// The tenants to read, each with its app registration's credentials
    /// (`tenant_id`, `client_id`, `client_secret` or `certificate`, `cloud`, `login_url`).
    /// Several tenants make one MSSP source. Required, at least one.
    pub tenants: Vec<EntraConfig>,

    /// Content types to read. Default: all five (`Audit.AzureActiveDirectory`,
    /// `Audit.Exchange`, `Audit.SharePoint`, `Audit.General`, `DLP.All`).
    #[serde(default = "default_content_types")]
    pub content_types: Vec<String>,

    /// The `PublisherIdentifier` GUID sent on every call, which gives the calls their own
    /// throttling quota. Default: each tenant's own tenant id.
    #[serde(default)]
    pub publisher_identifier: Option<String>,

    /// Overrides the Management API root (e.g. the simulator's `http://127.0.0.1:8089`).
    /// Default: from each tenant's `cloud` (`https://manage.office.com` for commercial).
    /// Tokens are still requested for the cloud's audience.
    #[serde(default)]
    pub api_url: Option<String>,

    /// How far back to start when there is no saved cursor. At most `7d`. Default: `24h`.
    #[serde(
        default = "crate::microsoft::tenants::default_start_from",
        deserialize_with = "units::duration",
        serialize_with = "schema::duration"
    )]
    #[schemars(with = "String")]
    pub start_from: Duration,

    /// How far behind its cursor each listing starts again, to catch blobs that become
    /// listable late. Default: `4h`.
    #[serde(
        default = "default_overlap",
        deserialize_with = "units::duration",
        serialize_with = "schema::duration"
    )]
    #[schemars(with = "String")]
    pub overlap: Duration,

    /// How long to wait between listings once caught up. Default: `1m`.
    #[serde(
        default = "crate::microsoft::tenants::default_poll_interval",
        deserialize_with = "units::duration",
        serialize_with = "schema::duration"
    )]
    #[schemars(with = "String")]
    pub poll_interval: Duration,

    /// Most blobs fetched at once, per tenant. Default: `8`.
    #[serde(default = "default_max_concurrent_fetches")]
    pub max_concurrent_fetches: usize,

    /// API requests per minute per tenant the source allows itself (the documented
    /// baseline quota). Default: `2000`.
    #[serde(default = "default_requests_per_minute")]
    pub requests_per_minute: u32,

    /// Longest a single HTTP request may take. Default: `60s`.
    #[serde(
        default = "crate::microsoft::tenants::default_request_timeout",
        deserialize_with = "units::duration",
        serialize_with = "schema::duration"
    )]
    #[schemars(with = "String")]
    pub request_timeout: Duration,

    /// Largest blob accepted; a larger one is skipped, logged as an error and counted.
    /// Bounds memory. Default: `256MiB`.
    #[serde(
        default = "default_max_blob_bytes",
        deserialize_with = "units::size",
        serialize_with = "schema::size"
    )]
    #[schemars(with = "String")]
    pub max_blob_bytes: u64,

    /// TLS options for the login and API hosts. Default: system roots, verification on.
    #[serde(
        default,
        serialize_with = "crate::microsoft::tenants::tls_schema_default"
    )]
    pub tls: TlsConfig,
}

fn default_content_types() -> Vec<String> {
    CONTENT_TYPES.iter().map(|c| c.to_string()).collect()
}

fn default_overlap() -> Duration {
    Duration::from_secs(4 * 3600)
}

fn default_max_concurrent_fetches() -> usize {
    8
}

fn default_requests_per_minute() -> u32 {
    2000
}

fn default_max_blob_bytes() -> u64 {
    256 << 20
}

impl O365ManagementConfig {
    /// A config with every default for these tenants.
    pub fn with_tenants(tenants: Vec<EntraConfig>) -> Self {
        O365ManagementConfig {
            tenants,
            content_types: default_content_types(),
            publisher_identifier: None,
            api_url: None,
            start_from: tenants::default_start_from(),
            overlap: default_overlap(),
            poll_interval: tenants::default_poll_interval(),
            max_concurrent_fetches: default_max_concurrent_fetches(),
            requests_per_minute: default_requests_per_minute(),
            request_timeout: tenants::default_request_timeout(),
            max_blob_bytes: default_max_blob_bytes(),
            tls: TlsConfig::default(),
        }
    }

    /// The Management API root for a tenant: `api_url` if set, else its cloud's.
    pub(crate) fn api_root(&self, tenant: &EntraConfig) -> String {
        self.api_url
            .as_deref()
            .map(|url| url.trim().trim_end_matches('/').to_string())
            .unwrap_or_else(|| tenant.cloud.management_url().to_string())
    }

    /// The PublisherIdentifier for a tenant.
    pub(crate) fn publisher_for(&self, tenant: &EntraConfig) -> String {
        self.publisher_identifier
            .as_deref()
            .map(str::trim)
            .unwrap_or(tenant.tenant_id.trim())
            .to_string()
    }

    /// The problems serde cannot see, each at its key.
    pub(crate) fn issues(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        issues.extend(tenants::tenant_issues(
            &self.tenants,
            "the Management Activity API",
        ));
        if self.content_types.is_empty() {
            issues.push(
                ConfigIssue::new("content_types", "no content type given")
                    .hint(format!("any of {}", CONTENT_TYPES.join(", "))),
            );
        }
        for (i, name) in self.content_types.iter().enumerate() {
            let key = format!("content_types[{i}]");
            if !CONTENT_TYPES.contains(&name.as_str()) {
                let hint = match CONTENT_TYPES.iter().find(|c| c.eq_ignore_ascii_case(name)) {
                    Some(exact) => format!("write it `{exact}`: the API compares names exactly"),
                    None => format!("one of {}", CONTENT_TYPES.join(", ")),
                };
                issues.push(
                    ConfigIssue::new(&key, format!("`{name}` is not a content type")).hint(hint),
                );
            } else if self.content_types[..i].contains(name) {
                issues.push(ConfigIssue::new(&key, format!("`{name}` is listed twice")));
            }
        }
        if let Some(publisher) = &self.publisher_identifier
            && !is_guid(publisher.trim())
        {
            issues.push(
                ConfigIssue::new(
                    "publisher_identifier",
                    format!("`{publisher}` is not a GUID"),
                )
                .hint("the tenant ID (GUID) of the organisation operating this collector, or leave it out to use each tenant's own id"),
            );
        }
        issues.extend(tenants::api_url_issue(
            self.api_url.as_deref(),
            "https://manage.office.com",
        ));
        if self.start_from > MAX_HISTORY {
            issues.push(
                ConfigIssue::new(
                    "start_from",
                    "the API keeps content for 7 days; it cannot start further back",
                )
                .hint("at most \"7d\""),
            );
        }
        if self.start_from.is_zero() {
            issues.push(ConfigIssue::new("start_from", "must be greater than zero"));
        }
        if self.overlap > MAX_HISTORY {
            issues.push(ConfigIssue::new("overlap", "must be at most \"7d\"").hint("\"4h\""));
        }
        let positive = [
            ("poll_interval", self.poll_interval.is_zero()),
            ("request_timeout", self.request_timeout.is_zero()),
            ("max_concurrent_fetches", self.max_concurrent_fetches == 0),
            ("requests_per_minute", self.requests_per_minute == 0),
            ("max_blob_bytes", self.max_blob_bytes == 0),
        ];
        issues.extend(tenants::zero_issues(&positive));
        if self.max_concurrent_fetches > 256 {
            issues.push(
                ConfigIssue::new("max_concurrent_fetches", "at most 256")
                    .hint("the request budget, not concurrency, limits throughput; 8 is plenty"),
            );
        }
        issues.extend(self.tls.check("tls"));
        issues
    }
}

/// True for the 8-4-4-4-12 hexadecimal GUID form.
pub(crate) fn is_guid(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TENANT: &str = "41463f53-8812-40f4-890f-865bf6e35190";
    const CLIENT: &str = "5e1f3a9c-6b2d-4c8e-9f01-365d0c0a5e1f";

    fn parse(text: &str) -> O365ManagementConfig {
        toml::from_str(text).expect("parses")
    }

    fn keys(config: &O365ManagementConfig) -> Vec<String> {
        config.issues().into_iter().filter_map(|i| i.key).collect()
    }

    fn one_tenant() -> String {
        format!(
            "[[tenants]]\ntenant_id = \"{TENANT}\"\nclient_id = \"{CLIENT}\"\nclient_secret = \"s\"\n"
        )
    }

    #[test]
    fn defaults() {
        let config = parse(&one_tenant());
        assert!(config.issues().is_empty(), "{:?}", config.issues());
        assert_eq!(config.content_types, CONTENT_TYPES);
        assert_eq!(config.start_from, Duration::from_secs(86_400));
        assert_eq!(config.overlap, Duration::from_secs(4 * 3600));
        assert_eq!(config.poll_interval, Duration::from_secs(60));
        assert_eq!(config.max_concurrent_fetches, 8);
        assert_eq!(config.requests_per_minute, 2000);
        assert_eq!(config.request_timeout, Duration::from_secs(60));
        assert_eq!(config.max_blob_bytes, 256 << 20);
        assert_eq!(config.publisher_for(&config.tenants[0]), TENANT);
        assert_eq!(
            config.api_root(&config.tenants[0]),
            "https://manage.office.com"
        );
    }

    #[test]
    fn national_cloud_and_override_pick_the_root() {
        let mut config = parse(&format!("{}cloud = \"gcc_high\"\n", one_tenant()));
        assert_eq!(
            config.api_root(&config.tenants[0]),
            "https://manage.office365.us"
        );
        config.api_url = Some("http://127.0.0.1:8089/".into());
        assert_eq!(config.api_root(&config.tenants[0]), "http://127.0.0.1:8089");
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<O365ManagementConfig>(&format!("{}\n", one_tenant())).is_ok());
        assert!(
            toml::from_str::<O365ManagementConfig>(&format!("polling = \"1m\"\n{}", one_tenant()))
                .is_err()
        );
    }

    #[test]
    fn every_problem_at_its_key() {
        let config = parse(&format!(
            "content_types = [\"audit.exchange\", \"Audit.Teams\", \"DLP.All\", \"DLP.All\"]\n\
             publisher_identifier = \"me\"\napi_url = \"manage.office.com\"\nstart_from = \"8d\"\n\
             poll_interval = \"0s\"\nmax_concurrent_fetches = 0\nrequests_per_minute = 0\n\
             {}\
             [[tenants]]\ntenant_id = \"contoso.onmicrosoft.com\"\nclient_id = \"x\"\n\
             [[tenants]]\ntenant_id = \"{TENANT}\"\nclient_id = \"{CLIENT}\"\nclient_secret = \"s\"\n",
            one_tenant()
        ));
        let keys = keys(&config);
        for expected in [
            "content_types[0]",
            "content_types[1]",
            "content_types[3]",
            "publisher_identifier",
            "api_url",
            "start_from",
            "poll_interval",
            "max_concurrent_fetches",
            "requests_per_minute",
            "tenants[1].tenant_id",
            "tenants[1].client_id",
            "tenants[1].client_secret",
            "tenants[2].tenant_id",
        ] {
            assert!(
                keys.contains(&expected.to_string()),
                "{expected} in {keys:?}"
            );
        }
        assert!(!keys.contains(&"content_types[2]".to_string()));
        let hint = config
            .issues()
            .into_iter()
            .find(|i| i.key.as_deref() == Some("content_types[0]"))
            .and_then(|i| i.hint)
            .unwrap_or_default();
        assert!(hint.contains("Audit.Exchange"), "{hint}");
    }

    #[test]
    fn no_tenant_is_an_issue() {
        let config = parse("tenants = []");
        assert_eq!(keys(&config), ["tenants"]);
    }
}
