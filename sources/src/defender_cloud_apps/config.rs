//! Options of the `defender_cloud_apps` source.

use std::time::Duration;

use serde::Deserialize;
use siemflow_core::auth::{CertificateConfig, Cloud, EntraConfig};
use siemflow_core::http::TlsConfig;
use siemflow_core::{ConfigIssue, Secret, units};

use crate::microsoft::api::DEFENDER_CLOUD_APPS;
use crate::microsoft::tenants::{self, is_guid, name_list_issues};
use crate::schema;

/// The lists the source reads, as `resources` names them.
pub const RESOURCES: [&str; 2] = ["activities", "alerts"];

/// Reads Defender for Cloud Apps activities and alerts of one or more tenants through the
/// portal's REST API, each activity once and each alert state change once, with cursors
/// that advance only over delivered pages.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CloudAppsConfig {
    /// The tenants to read: each its portal URL and either a legacy API token or an Entra
    /// app registration. Required, at least one.
    pub tenants: Vec<CloudAppsTenant>,

    /// What to read: `activities` (`/api/v1/activities/`), `alerts` (`/api/v1/alerts/`).
    /// Default: both.
    #[serde(default = "default_resources")]
    pub resources: Vec<String>,

    /// How far back to start when there is no saved cursor. Default: `24h`.
    #[serde(
        default = "crate::microsoft::tenants::default_start_from",
        deserialize_with = "units::duration",
        serialize_with = "schema::duration"
    )]
    #[schemars(with = "String")]
    pub start_from: Duration,

    /// How far behind its cursor each activities query starts (`created gte cursor −
    /// overlap`), for activities indexed after later ones: one that appears in the API
    /// within this of its `created` is read, a later one may be missed; those already
    /// emitted are dropped by `_id`. Default: `5m`.
    #[serde(
        default = "default_overlap",
        deserialize_with = "units::duration",
        serialize_with = "schema::duration"
    )]
    #[schemars(with = "String")]
    pub overlap: Duration,

    /// How far back every alerts query reads (`date gte cursor − alert_reread_window`):
    /// alerts raised within it are read again at each poll, so a change of their state
    /// (read, resolved, dismissed) is emitted as a new version. Default: `7d`.
    #[serde(
        default = "default_alert_reread_window",
        deserialize_with = "units::duration",
        serialize_with = "schema::duration"
    )]
    #[schemars(with = "String")]
    pub alert_reread_window: Duration,

    /// How long to wait between queries once caught up. Default: `1m`.
    #[serde(
        default = "crate::microsoft::tenants::default_poll_interval",
        deserialize_with = "units::duration",
        serialize_with = "schema::duration"
    )]
    #[schemars(with = "String")]
    pub poll_interval: Duration,

    /// Requests per minute per tenant portal the source allows itself, both lists
    /// together, shared with every other `defender_cloud_apps` source of the process.
    /// Default: `30` (documented).
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

    /// TLS options for the login and portal hosts. Default: system roots, verification on.
    #[serde(
        default,
        serialize_with = "crate::microsoft::tenants::tls_schema_default"
    )]
    pub tls: TlsConfig,
}

/// One tenant's portal and credentials.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CloudAppsTenant {
    /// The tenant's portal URL, from Settings → Cloud Apps → About (e.g.
    /// `https://contoso.us2.portal.cloudappsecurity.com`); `/api/v1/…` is added. Required.
    pub portal_url: String,
    /// A legacy API token (`Authorization: Token …`; a secret, e.g.
    /// `"${MDA_API_TOKEN}"`). Exactly one of `api_token` and `client_id`.
    #[serde(default)]
    pub api_token: Option<Secret>,
    /// Directory (tenant) ID GUID: required with `client_id`; with `api_token` optional,
    /// it names the tenant in metrics and the cursor file (default: the portal's host).
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// Application (client) ID of an Entra app with the `Investigation.read` application
    /// permission of "Microsoft Cloud App Security".
    #[serde(default)]
    pub client_id: Option<String>,
    /// The app's client secret; exactly one of `client_secret` and `certificate`.
    #[serde(default)]
    pub client_secret: Option<Secret>,
    /// A certificate of the app, instead of `client_secret`.
    #[serde(default)]
    pub certificate: Option<CertificateConfig>,
    /// The national cloud the tenant lives in (picks the login host). Default: `commercial`.
    #[serde(default)]
    pub cloud: Cloud,
    /// Overrides the login host (e.g. the simulator's). Default: from `cloud`.
    #[serde(default)]
    pub login_url: Option<String>,
}

impl CloudAppsTenant {
    /// The Entra app registration, when the tenant uses one.
    pub fn entra(&self) -> Option<EntraConfig> {
        let client_id = self.client_id.clone()?;
        Some(EntraConfig {
            tenant_id: self.tenant_id.clone().unwrap_or_default(),
            client_id,
            client_secret: self.client_secret.clone(),
            certificate: self.certificate.clone(),
            cloud: self.cloud,
            login_url: self.login_url.clone(),
        })
    }

    /// The tenant's name in metrics and cursor keys: its id, else the portal's host.
    pub fn key(&self) -> String {
        match &self.tenant_id {
            Some(id) if !id.trim().is_empty() => id.trim().to_ascii_lowercase(),
            _ => reqwest::Url::parse(self.portal_url.trim())
                .ok()
                .and_then(|url| url.host_str().map(str::to_ascii_lowercase))
                .unwrap_or_else(|| self.portal_url.trim().to_string()),
        }
    }

    fn issues(&self, prefix: &str) -> Vec<ConfigIssue> {
        let key = |name: &str| format!("{prefix}.{name}");
        let mut issues = Vec::new();
        if let Some(problem) = siemflow_core::http::endpoint_url_problem(&self.portal_url) {
            issues.push(
                ConfigIssue::new(&key("portal_url"), problem)
                    .hint("the portal URL from Settings → Cloud Apps → About, e.g. https://contoso.us2.portal.cloudappsecurity.com"),
            );
        }
        match (&self.api_token, self.entra()) {
            (Some(_), Some(_)) => issues.push(
                ConfigIssue::new(&key("api_token"), "both api_token and client_id are set")
                    .hint("keep one: the legacy API token, or the Entra app (client_id with client_secret or certificate)"),
            ),
            (None, None) => issues.push(
                ConfigIssue::new(&key("api_token"), "no credential: set api_token, or client_id with client_secret or certificate")
                    .hint("api_token = \"${MDA_API_TOKEN}\""),
            ),
            (Some(token), None) => {
                if token.expose().trim().is_empty() {
                    issues.push(
                        ConfigIssue::new(&key("api_token"), "api_token is empty")
                            .hint("is the environment variable set?"),
                    );
                }
                let entra_only = [
                    ("client_secret", self.client_secret.is_some()),
                    ("certificate", self.certificate.is_some()),
                    ("login_url", self.login_url.is_some()),
                ];
                for (name, set) in entra_only {
                    if set {
                        issues.push(
                            ConfigIssue::new(&key(name), format!("{name} is for an Entra app; this tenant uses api_token"))
                                .hint("remove it, or replace api_token with client_id"),
                        );
                    }
                }
            }
            (None, Some(entra)) => {
                if self.tenant_id.is_none() {
                    issues.push(
                        ConfigIssue::new(&key("tenant_id"), "an Entra app needs the tenant id")
                            .hint("the Directory (tenant) ID GUID"),
                    );
                } else {
                    issues.extend(entra.check(prefix));
                }
            }
        }
        if let Some(id) = &self.tenant_id
            && !id.trim().is_empty()
            && !is_guid(id.trim())
        {
            issues.push(
                ConfigIssue::new(&key("tenant_id"), format!("`{id}` is not a tenant ID GUID"))
                    .hint("the Directory (tenant) ID from the app registration's Overview page"),
            );
        }
        issues
    }
}

fn default_resources() -> Vec<String> {
    RESOURCES.iter().map(|r| r.to_string()).collect()
}

fn default_overlap() -> Duration {
    Duration::from_secs(5 * 60)
}

fn default_alert_reread_window() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}

fn default_requests_per_minute() -> u32 {
    DEFENDER_CLOUD_APPS.windows[0].limit
}

impl CloudAppsConfig {
    /// A config with every default for these tenants.
    pub fn with_tenants(tenants: Vec<CloudAppsTenant>) -> Self {
        CloudAppsConfig {
            tenants,
            resources: default_resources(),
            start_from: tenants::default_start_from(),
            overlap: default_overlap(),
            alert_reread_window: default_alert_reread_window(),
            poll_interval: tenants::default_poll_interval(),
            requests_per_minute: default_requests_per_minute(),
            request_timeout: tenants::default_request_timeout(),
            tls: TlsConfig::default(),
        }
    }

    /// The problems serde cannot see, each at its key.
    pub(crate) fn issues(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        if self.tenants.is_empty() {
            issues.push(ConfigIssue::new("tenants", "no tenant given").hint(
                "tenants = [{ portal_url = \"https://contoso.us2.portal.cloudappsecurity.com\", api_token = \"${MDA_API_TOKEN}\" }]",
            ));
        }
        for (i, tenant) in self.tenants.iter().enumerate() {
            let prefix = format!("tenants[{i}]");
            issues.extend(tenant.issues(&prefix));
            if self.tenants[..i]
                .iter()
                .any(|other| other.key() == tenant.key())
            {
                issues.push(
                    ConfigIssue::new(&format!("{prefix}.portal_url"), format!("tenant `{}` is listed twice", tenant.key()))
                        .hint("list each tenant once; give tenant_id to tell apart tenants that share a portal host"),
                );
            }
        }
        issues.extend(name_list_issues("resources", &self.resources, &RESOURCES));
        issues.extend(tenants::overlap_issue(self.overlap));
        if self.alert_reread_window > Duration::from_secs(30 * 24 * 3600) {
            issues.push(
                ConfigIssue::new("alert_reread_window", "must be at most \"30d\"")
                    .hint("\"7d\"; every poll reads every alert raised within it"),
            );
        }
        let positive = [
            ("start_from", self.start_from.is_zero()),
            ("poll_interval", self.poll_interval.is_zero()),
            ("request_timeout", self.request_timeout.is_zero()),
            ("requests_per_minute", self.requests_per_minute == 0),
            ("alert_reread_window", self.alert_reread_window.is_zero()),
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
    const PORTAL: &str = "https://contoso.us2.portal.cloudappsecurity.com";

    fn keys(config: &CloudAppsConfig) -> Vec<String> {
        config.issues().into_iter().filter_map(|i| i.key).collect()
    }

    #[test]
    fn defaults_and_both_auth_modes() {
        let text = format!(
            "[[tenants]]\nportal_url = \"{PORTAL}\"\napi_token = \"t0ken\"\n\
             [[tenants]]\nportal_url = \"https://fabrikam.eu2.portal.cloudappsecurity.com\"\ntenant_id = \"{TENANT}\"\nclient_id = \"{CLIENT}\"\nclient_secret = \"s\"\n"
        );
        let config: CloudAppsConfig = toml::from_str(&text).expect("parses");
        assert!(config.issues().is_empty(), "{:?}", config.issues());
        assert_eq!(config.resources, ["activities", "alerts"]);
        assert_eq!(config.start_from, Duration::from_secs(86_400));
        assert_eq!(config.overlap, Duration::from_secs(300));
        assert_eq!(config.alert_reread_window, Duration::from_secs(7 * 86_400));
        assert_eq!(config.poll_interval, Duration::from_secs(60));
        assert_eq!(config.requests_per_minute, 30);
        assert_eq!(
            config.tenants[0].key(),
            "contoso.us2.portal.cloudappsecurity.com"
        );
        assert!(config.tenants[0].entra().is_none());
        assert_eq!(config.tenants[1].key(), TENANT);
        assert!(
            !format!("{:?}", config.tenants[0]).contains("t0ken"),
            "the token is a secret"
        );
    }

    #[test]
    fn every_problem_at_its_key() {
        let text = format!(
            "resources = [\"activities\", \"files\"]\nrequests_per_minute = 0\nalert_reread_window = \"60d\"\n\
             [[tenants]]\nportal_url = \"http://contoso.portal.cloudappsecurity.com\"\napi_token = \"t\"\nclient_secret = \"s\"\n\
             [[tenants]]\nportal_url = \"{PORTAL}\"\n\
             [[tenants]]\nportal_url = \"{PORTAL}\"\napi_token = \"t\"\nclient_id = \"{CLIENT}\"\n\
             [[tenants]]\nportal_url = \"{PORTAL}\"\nclient_id = \"{CLIENT}\"\nclient_secret = \"s\"\n"
        );
        let config: CloudAppsConfig = toml::from_str(&text).expect("parses");
        let keys = keys(&config);
        for expected in [
            "resources[1]",
            "requests_per_minute",
            "alert_reread_window",
            "tenants[0].portal_url",
            "tenants[0].client_secret",
            "tenants[1].api_token",
            "tenants[2].api_token",
            "tenants[3].tenant_id",
        ] {
            assert!(
                keys.contains(&expected.to_string()),
                "{expected} in {keys:?}"
            );
        }
        assert!(
            toml::from_str::<CloudAppsConfig>(&format!(
                "page_size = 1\n[[tenants]]\nportal_url = \"{PORTAL}\"\napi_token = \"t\"\n"
            ))
            .is_err()
        );
    }
}
