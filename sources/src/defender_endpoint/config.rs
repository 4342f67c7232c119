//! Options of the `defender_endpoint` source.

use std::time::Duration;

use serde::Deserialize;
use siemflow_core::ConfigIssue;
use siemflow_core::auth::{Cloud, EntraConfig};
use siemflow_core::http::TlsConfig;
use siemflow_core::units;

use crate::microsoft::api::DEFENDER_ENDPOINT;
use crate::microsoft::tenants::{self, tenant_issues};
use crate::schema;

/// The geographic API hosts of the commercial cloud (`{region}.api.security.microsoft.com`),
/// as Microsoft lists them for better performance.
pub const REGIONS: [&str; 7] = ["us", "eu", "uk", "au", "swa", "ina", "aea"];

/// The largest `$top` the alerts API takes (§3.2).
pub const MAX_PAGE_SIZE: u32 = 10_000;

/// Reads Microsoft Defender for Endpoint alerts (`/api/alerts`, with their evidence) of one
/// or more tenants, every new version once, with cursors that advance only over delivered
/// pages.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DefenderEndpointConfig {
    /// The tenants to read, each with its app registration's credentials
    /// (`tenant_id`, `client_id`, `client_secret` or `certificate`, `cloud`, `login_url`).
    /// Required, at least one.
    pub tenants: Vec<EntraConfig>,

    /// A geographic host of the commercial cloud: `us`, `eu`, `uk`, `au`, `swa`, `ina` or
    /// `aea` reads `https://{region}.api.security.microsoft.com`. Default: none
    /// (`https://api.security.microsoft.com`; the GCC and GCC High/DoD hosts by `cloud`).
    #[serde(default)]
    pub region: Option<String>,

    /// Overrides the API root (e.g. the simulator's `http://127.0.0.1:8365`). Default: from
    /// `region` and each tenant's `cloud`. Tokens are still requested for the cloud's
    /// audience (`https://api.securitycenter.microsoft.com` in the commercial cloud).
    #[serde(default)]
    pub api_url: Option<String>,

    /// Ask for each alert's evidence (`$expand=evidence`): files, processes, users, IPs,
    /// URLs, registry values. Default: `true`.
    #[serde(default = "yes")]
    pub expand_evidence: bool,

    /// Alerts per request (`$top`), 1 to 10,000. A time window holding more is split
    /// into narrower ones. Default: `10000`.
    #[serde(default = "default_page_size")]
    pub page_size: u32,

    /// How far back to start when there is no saved cursor. Default: `24h`.
    #[serde(
        default = "crate::microsoft::tenants::default_start_from",
        deserialize_with = "units::duration",
        serialize_with = "schema::duration"
    )]
    #[schemars(with = "String")]
    pub start_from: Duration,

    /// How far behind its cursor each query starts (`lastUpdateTime ge cursor − overlap`),
    /// for versions indexed late; versions already emitted are dropped. Default: `5m`.
    #[serde(
        default = "default_overlap",
        deserialize_with = "units::duration",
        serialize_with = "schema::duration"
    )]
    #[schemars(with = "String")]
    pub overlap: Duration,

    /// How long to wait between queries once caught up. Default: `1m`.
    #[serde(
        default = "crate::microsoft::tenants::default_poll_interval",
        deserialize_with = "units::duration",
        serialize_with = "schema::duration"
    )]
    #[schemars(with = "String")]
    pub poll_interval: Duration,

    /// Requests per minute per (tenant, API host) the source allows itself, shared with
    /// every other Defender for Endpoint source of the process. Default: `100` (documented;
    /// more only draws 429s from the service).
    #[serde(default = "default_requests_per_minute")]
    pub requests_per_minute: u32,

    /// Requests per hour per (tenant, API host), counted with `requests_per_minute`.
    /// Default: `1500` (documented; more only draws 429s from the service).
    #[serde(default = "default_requests_per_hour")]
    pub requests_per_hour: u32,

    /// Longest a single HTTP request may take. Default: `60s`.
    #[serde(
        default = "crate::microsoft::tenants::default_request_timeout",
        deserialize_with = "units::duration",
        serialize_with = "schema::duration"
    )]
    #[schemars(with = "String")]
    pub request_timeout: Duration,

    /// TLS options for the login and API hosts. Default: system roots, verification on.
    #[serde(
        default,
        serialize_with = "crate::microsoft::tenants::tls_schema_default"
    )]
    pub tls: TlsConfig,
}

fn yes() -> bool {
    true
}

fn default_page_size() -> u32 {
    MAX_PAGE_SIZE
}

fn default_overlap() -> Duration {
    Duration::from_secs(5 * 60)
}

fn default_requests_per_minute() -> u32 {
    DEFENDER_ENDPOINT.windows[0].limit
}

fn default_requests_per_hour() -> u32 {
    DEFENDER_ENDPOINT.windows[1].limit
}

impl DefenderEndpointConfig {
    /// A config with every default for these tenants.
    pub fn with_tenants(tenants: Vec<EntraConfig>) -> Self {
        DefenderEndpointConfig {
            tenants,
            region: None,
            api_url: None,
            expand_evidence: true,
            page_size: default_page_size(),
            start_from: tenants::default_start_from(),
            overlap: default_overlap(),
            poll_interval: tenants::default_poll_interval(),
            requests_per_minute: default_requests_per_minute(),
            requests_per_hour: default_requests_per_hour(),
            request_timeout: tenants::default_request_timeout(),
            tls: TlsConfig::default(),
        }
    }

    /// The API root `region` names, if any.
    pub(crate) fn region_url(&self) -> Option<String> {
        self.region
            .as_deref()
            .map(|region| format!("https://{}.api.security.microsoft.com", region.trim()))
    }

    /// The problems serde cannot see, each at its key.
    pub(crate) fn issues(&self) -> Vec<ConfigIssue> {
        let mut issues = tenant_issues(&self.tenants, "the source");
        issues.extend(tenants::api_url_issue(
            self.api_url.as_deref(),
            "https://api.security.microsoft.com",
        ));
        if let Some(region) = &self.region {
            if !REGIONS.contains(&region.trim()) {
                issues.push(
                    ConfigIssue::new(
                        "region",
                        format!("unknown region `{region}`; one of {}", REGIONS.join(", ")),
                    )
                    .hint("\"eu\""),
                );
            } else if self.api_url.is_some() {
                issues.push(ConfigIssue::new(
                    "region",
                    "set either `region` or `api_url`, not both",
                ));
            }
            for (i, tenant) in self.tenants.iter().enumerate() {
                if tenant.cloud != Cloud::Commercial {
                    issues.push(ConfigIssue::new(
                        &format!("tenants[{i}].cloud"),
                        format!(
                            "`region` picks a commercial host; a `{}` tenant reads its cloud's own host (leave `region` unset)",
                            tenant.cloud.name()
                        ),
                    ));
                }
            }
        }
        if !(1..=MAX_PAGE_SIZE).contains(&self.page_size) {
            issues.push(ConfigIssue::new("page_size", "must be between 1 and 10000").hint("10000"));
        }
        issues.extend(tenants::overlap_issue(self.overlap));
        let positive = [
            ("start_from", self.start_from.is_zero()),
            ("poll_interval", self.poll_interval.is_zero()),
            ("request_timeout", self.request_timeout.is_zero()),
            ("requests_per_minute", self.requests_per_minute == 0),
            ("requests_per_hour", self.requests_per_hour == 0),
        ];
        issues.extend(tenants::zero_issues(&positive));
        issues.extend(self.tls.check("tls"));
        issues
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TENANT: &str = "41463f53-8812-40f4-890f-865bf6e35190";
    const CLIENT: &str = "5e1f3a9c-6b2d-4c8e-9f01-365d0c0a5e1f";

    fn one_tenant(cloud: &str) -> String {
        format!(
            "[[tenants]]\ntenant_id = \"{TENANT}\"\nclient_id = \"{CLIENT}\"\nclient_secret = \"s\"\ncloud = \"{cloud}\"\n"
        )
    }

    fn keys(config: &DefenderEndpointConfig) -> Vec<String> {
        config.issues().into_iter().filter_map(|i| i.key).collect()
    }

    #[test]
    fn defaults() {
        let config: DefenderEndpointConfig =
            toml::from_str(&one_tenant("commercial")).expect("parses");
        assert!(config.issues().is_empty(), "{:?}", config.issues());
        assert_eq!(config.region, None);
        assert!(config.expand_evidence);
        assert_eq!(config.page_size, 10_000);
        assert_eq!(config.start_from, Duration::from_secs(86_400));
        assert_eq!(config.overlap, Duration::from_secs(300));
        assert_eq!(config.poll_interval, Duration::from_secs(60));
        assert_eq!(config.requests_per_minute, 100);
        assert_eq!(config.requests_per_hour, 1500);
        assert_eq!(config.request_timeout, Duration::from_secs(60));
    }

    #[test]
    fn unknown_keys_are_refused() {
        let text = format!("resources = [\"alerts\"]\n{}", one_tenant("commercial"));
        assert!(toml::from_str::<DefenderEndpointConfig>(&text).is_err());
    }

    #[test]
    fn every_problem_at_its_key() {
        let text = format!(
            "region = \"fr\"\npage_size = 20000\nrequests_per_minute = 0\nrequests_per_hour = 0\n\
             overlap = \"2d\"\n{}",
            one_tenant("commercial")
        );
        let config: DefenderEndpointConfig = toml::from_str(&text).expect("parses");
        let keys = keys(&config);
        for expected in [
            "region",
            "page_size",
            "requests_per_minute",
            "requests_per_hour",
            "overlap",
        ] {
            assert!(
                keys.contains(&expected.to_string()),
                "{expected} in {keys:?}"
            );
        }
        let gov: DefenderEndpointConfig =
            toml::from_str(&format!("region = \"us\"\n{}", one_tenant("gcc_high")))
                .expect("parses");
        assert_eq!(keys_of(&gov), ["tenants[0].cloud"]);
        let both: DefenderEndpointConfig = toml::from_str(&format!(
            "region = \"eu\"\napi_url = \"https://proxy.example\"\n{}",
            one_tenant("commercial")
        ))
        .expect("parses");
        assert_eq!(keys_of(&both), ["region"]);
        let eu: DefenderEndpointConfig =
            toml::from_str(&format!("region = \"eu\"\n{}", one_tenant("commercial")))
                .expect("parses");
        assert!(eu.issues().is_empty());
        assert_eq!(
            eu.region_url().as_deref(),
            Some("https://eu.api.security.microsoft.com")
        );
    }

    fn keys_of(config: &DefenderEndpointConfig) -> Vec<String> {
        keys(config)
    }
}
