//! Options of the `graph_security` source.

use std::time::Duration;

use serde::Deserialize;
use siemflow_core::ConfigIssue;
use siemflow_core::auth::EntraConfig;
use siemflow_core::http::TlsConfig;
use siemflow_core::units;

use crate::microsoft::api::GRAPH_SECURITY;
use crate::microsoft::tenants::{self, name_list_issues, tenant_issues};
use crate::schema;

/// The collections the source reads, as `resources` names them.
pub const RESOURCES: [&str; 2] = ["alerts", "incidents"];

/// Reads Microsoft Graph security alerts (`alerts_v2`) and incidents of one or more
/// tenants, every new version once, with cursors that advance only over delivered pages.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GraphSecurityConfig {
    /// The tenants to read, each with its app registration's credentials
    /// (`tenant_id`, `client_id`, `client_secret` or `certificate`, `cloud`, `login_url`).
    /// Required, at least one.
    pub tenants: Vec<EntraConfig>,

    /// What to read: `alerts` (`/security/alerts_v2`), `incidents`
    /// (`/security/incidents`). Default: both.
    #[serde(default = "default_resources")]
    pub resources: Vec<String>,

    /// Overrides the Graph root (e.g. the simulator's `http://127.0.0.1:8365`). Default:
    /// from each tenant's `cloud`. Tokens are still requested for the cloud's audience.
    #[serde(default)]
    pub api_url: Option<String>,

    /// How far back to start when there is no saved cursor. Default: `24h`.
    #[serde(
        default = "crate::microsoft::tenants::default_start_from",
        deserialize_with = "units::duration",
        serialize_with = "schema::duration"
    )]
    #[schemars(with = "String")]
    pub start_from: Duration,

    /// How far behind its cursor each query starts (`lastUpdateDateTime ge cursor −
    /// overlap`), for versions indexed late; versions already emitted are dropped.
    /// Default: `5m`.
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

    /// Requests per minute per (tenant, Graph host) the source allows itself, shared with
    /// every other Graph security source of the process. Default: `150` (documented).
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

    /// TLS options for the login and Graph hosts. Default: system roots, verification on.
    #[serde(
        default,
        serialize_with = "crate::microsoft::tenants::tls_schema_default"
    )]
    pub tls: TlsConfig,
}

fn default_resources() -> Vec<String> {
    RESOURCES.iter().map(|r| r.to_string()).collect()
}

fn default_overlap() -> Duration {
    Duration::from_secs(5 * 60)
}

fn default_requests_per_minute() -> u32 {
    GRAPH_SECURITY.windows[0].limit
}

impl GraphSecurityConfig {
    /// A config with every default for these tenants.
    pub fn with_tenants(tenants: Vec<EntraConfig>) -> Self {
        GraphSecurityConfig {
            tenants,
            resources: default_resources(),
            api_url: None,
            start_from: tenants::default_start_from(),
            overlap: default_overlap(),
            poll_interval: tenants::default_poll_interval(),
            requests_per_minute: default_requests_per_minute(),
            request_timeout: tenants::default_request_timeout(),
            tls: TlsConfig::default(),
        }
    }

    /// The problems serde cannot see, each at its key.
    pub(crate) fn issues(&self) -> Vec<ConfigIssue> {
        let mut issues = tenant_issues(&self.tenants, "the source");
        issues.extend(name_list_issues("resources", &self.resources, &RESOURCES));
        issues.extend(tenants::api_url_issue(
            self.api_url.as_deref(),
            "https://graph.microsoft.com",
        ));
        issues.extend(tenants::overlap_issue(self.overlap));
        let positive = [
            ("start_from", self.start_from.is_zero()),
            ("poll_interval", self.poll_interval.is_zero()),
            ("request_timeout", self.request_timeout.is_zero()),
            ("requests_per_minute", self.requests_per_minute == 0),
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

    fn one_tenant() -> String {
        format!(
            "[[tenants]]\ntenant_id = \"{TENANT}\"\nclient_id = \"{CLIENT}\"\nclient_secret = \"s\"\n"
        )
    }

    fn keys(config: &GraphSecurityConfig) -> Vec<String> {
        config.issues().into_iter().filter_map(|i| i.key).collect()
    }

    #[test]
    fn defaults() {
        let config: GraphSecurityConfig = toml::from_str(&one_tenant()).expect("parses");
        assert!(config.issues().is_empty(), "{:?}", config.issues());
        assert_eq!(config.resources, ["alerts", "incidents"]);
        assert_eq!(config.start_from, Duration::from_secs(86_400));
        assert_eq!(config.overlap, Duration::from_secs(300));
        assert_eq!(config.poll_interval, Duration::from_secs(60));
        assert_eq!(config.requests_per_minute, 150);
        assert_eq!(config.request_timeout, Duration::from_secs(60));
    }

    #[test]
    fn unknown_keys_are_refused() {
        let text = format!("page_size = 10\n{}", one_tenant());
        assert!(toml::from_str::<GraphSecurityConfig>(&text).is_err());
    }

    #[test]
    fn every_problem_at_its_key() {
        let text = format!(
            "resources = [\"alerts\", \"alerts_v2\", \"alerts\"]\napi_url = \"graph.microsoft.com\"\n\
             poll_interval = \"0s\"\nrequests_per_minute = 0\noverlap = \"2d\"\n{}\
             [[tenants]]\ntenant_id = \"contoso.onmicrosoft.com\"\nclient_id = \"{CLIENT}\"\nclient_secret = \"s\"\n",
            one_tenant()
        );
        let config: GraphSecurityConfig = toml::from_str(&text).expect("parses");
        let keys = keys(&config);
        for expected in [
            "resources[1]",
            "resources[2]",
            "api_url",
            "poll_interval",
            "requests_per_minute",
            "overlap",
            "tenants[1].tenant_id",
        ] {
            assert!(
                keys.contains(&expected.to_string()),
                "{expected} in {keys:?}"
            );
        }
        assert!(!keys.contains(&"resources[0]".to_string()));
        let empty: GraphSecurityConfig =
            toml::from_str(&format!("resources = []\n{}", one_tenant())).expect("parses");
        assert_eq!(empty.issues().len(), 1);
    }
}
