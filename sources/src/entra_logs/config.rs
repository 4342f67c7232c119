//! Options of the `entra_logs` source.

use std::time::Duration;

use serde::Deserialize;
use siemflow_core::ConfigIssue;
use siemflow_core::auth::EntraConfig;
use siemflow_core::http::TlsConfig;
use siemflow_core::units;

use crate::microsoft::api::ENTRA_REPORTS;
use crate::microsoft::tenants::{self, name_list_issues, tenant_issues};
use crate::schema;

/// The logs the source reads, as `resources` names them.
pub const RESOURCES: [&str; 3] = ["sign_ins", "directory_audits", "provisioning"];

/// The kinds of sign-in, as `sign_in_types` names them.
pub const SIGN_IN_TYPES: [&str; 4] = [
    "interactive",
    "non_interactive",
    "service_principal",
    "managed_identity",
];

/// The sign-in and audit logs keep 30 days with P1/P2 (7 on Entra ID Free).
pub const MAX_HISTORY: Duration = Duration::from_secs(30 * 24 * 3600);

/// Reads the Entra ID sign-in, directory audit and provisioning logs of one or more
/// tenants through Microsoft Graph, each record once, with cursors that advance only over
/// delivered windows.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EntraLogsConfig {
    /// The tenants to read, each with its app registration's credentials
    /// (`tenant_id`, `client_id`, `client_secret` or `certificate`, `cloud`, `login_url`).
    /// Required, at least one.
    pub tenants: Vec<EntraConfig>,

    /// What to read: `sign_ins`, `directory_audits`, `provisioning`. Default:
    /// `sign_ins` and `directory_audits`.
    #[serde(default = "default_resources")]
    pub resources: Vec<String>,

    /// Which sign-ins `sign_ins` reads: `interactive` (v1.0), `non_interactive`,
    /// `service_principal`, `managed_identity` (beta). Default: `interactive`.
    #[serde(default = "default_sign_in_types")]
    pub sign_in_types: Vec<String>,

    /// Overrides the Graph root (e.g. the simulator's `http://127.0.0.1:8365`). Default:
    /// from each tenant's `cloud`. Tokens are still requested for the cloud's audience.
    #[serde(default)]
    pub api_url: Option<String>,

    /// How far back to start when there is no saved cursor. At most `30d`. Default: `24h`.
    #[serde(
        default = "crate::microsoft::tenants::default_start_from",
        deserialize_with = "units::duration",
        serialize_with = "schema::duration"
    )]
    #[schemars(with = "String")]
    pub start_from: Duration,

    /// How far behind its cursor each query starts again, for records that appear late;
    /// records already emitted are dropped by `id`. Default: `15m`.
    #[serde(
        default = "default_lateness",
        deserialize_with = "units::duration",
        serialize_with = "schema::duration"
    )]
    #[schemars(with = "String")]
    pub lateness: Duration,

    /// How long to wait between queries once caught up. Default: `1m`.
    #[serde(
        default = "crate::microsoft::tenants::default_poll_interval",
        deserialize_with = "units::duration",
        serialize_with = "schema::duration"
    )]
    #[schemars(with = "String")]
    pub poll_interval: Duration,

    /// Requests per 10 seconds per (tenant, Graph host) the source allows itself, shared
    /// with every other identity-reports source of the process. Default: `5` (documented).
    #[serde(default = "default_requests_per_10s")]
    pub requests_per_10s: u32,

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
    vec!["sign_ins".into(), "directory_audits".into()]
}

fn default_sign_in_types() -> Vec<String> {
    vec!["interactive".into()]
}

fn default_lateness() -> Duration {
    Duration::from_secs(15 * 60)
}

fn default_requests_per_10s() -> u32 {
    ENTRA_REPORTS.windows[0].limit
}

impl EntraLogsConfig {
    /// A config with every default for these tenants.
    pub fn with_tenants(tenants: Vec<EntraConfig>) -> Self {
        EntraLogsConfig {
            tenants,
            resources: default_resources(),
            sign_in_types: default_sign_in_types(),
            api_url: None,
            start_from: tenants::default_start_from(),
            lateness: default_lateness(),
            poll_interval: tenants::default_poll_interval(),
            requests_per_10s: default_requests_per_10s(),
            request_timeout: tenants::default_request_timeout(),
            tls: TlsConfig::default(),
        }
    }

    /// The problems serde cannot see, each at its key.
    pub(crate) fn issues(&self) -> Vec<ConfigIssue> {
        let mut issues = tenant_issues(&self.tenants, "the source");
        issues.extend(name_list_issues("resources", &self.resources, &RESOURCES));
        if self.resources.iter().any(|r| r == "sign_ins") {
            issues.extend(name_list_issues(
                "sign_in_types",
                &self.sign_in_types,
                &SIGN_IN_TYPES,
            ));
        }
        issues.extend(tenants::api_url_issue(
            self.api_url.as_deref(),
            "https://graph.microsoft.com",
        ));
        if self.start_from > MAX_HISTORY {
            issues.push(
                ConfigIssue::new(
                    "start_from",
                    "the logs are kept 30 days at most; it cannot start further back",
                )
                .hint("at most \"30d\""),
            );
        }
        if self.lateness > Duration::from_secs(24 * 3600) {
            issues.push(
                ConfigIssue::new("lateness", "must be at most \"24h\"").hint(
                    "\"15m\", or \"2h30m\" to catch sign-ins that surface up to 2 hours late",
                ),
            );
        }
        let positive = [
            ("start_from", self.start_from.is_zero()),
            ("poll_interval", self.poll_interval.is_zero()),
            ("request_timeout", self.request_timeout.is_zero()),
            ("requests_per_10s", self.requests_per_10s == 0),
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

    #[test]
    fn defaults() {
        let config: EntraLogsConfig = toml::from_str(&one_tenant()).expect("parses");
        assert!(config.issues().is_empty(), "{:?}", config.issues());
        assert_eq!(config.resources, ["sign_ins", "directory_audits"]);
        assert_eq!(config.sign_in_types, ["interactive"]);
        assert_eq!(config.start_from, Duration::from_secs(86_400));
        assert_eq!(config.lateness, Duration::from_secs(900));
        assert_eq!(config.poll_interval, Duration::from_secs(60));
        assert_eq!(config.requests_per_10s, 5);
    }

    #[test]
    fn every_problem_at_its_key() {
        let text = format!(
            "resources = [\"sign_ins\", \"signIns\"]\nsign_in_types = [\"interactive\", \"nonInteractiveUser\"]\n\
             start_from = \"31d\"\nlateness = \"2d\"\nrequests_per_10s = 0\nwindow = \"1h\"\n{}",
            one_tenant()
        );
        assert!(
            toml::from_str::<EntraLogsConfig>(&text).is_err(),
            "unknown keys are refused"
        );
        let config: EntraLogsConfig =
            toml::from_str(&text.replace("window = \"1h\"\n", "")).expect("parses");
        let keys: Vec<String> = config.issues().into_iter().filter_map(|i| i.key).collect();
        for expected in [
            "resources[1]",
            "sign_in_types[1]",
            "start_from",
            "lateness",
            "requests_per_10s",
        ] {
            assert!(
                keys.contains(&expected.to_string()),
                "{expected} in {keys:?}"
            );
        }
    }
}
