//! `[simulator.m365.graph]`: volumes, delays, limits, tenant licences and clouds, and the
//! injected failures of the Microsoft Graph side of the world.

use std::time::Duration;

use serde::Deserialize;

use crate::config::is_guid;
use crate::wire::{check_rate, duration};

/// The Microsoft Graph part of the simulated world (same seed and tenants as the rest).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GraphConfig {
    /// Alerts per hour per tenant on a weekday (daily rhythm applied); incidents group 1–4
    /// of them. Default 6.
    pub alerts_per_hour: u32,
    /// Sign-ins per hour per tenant across interactive (30 %), non-interactive (50 %),
    /// service-principal (12 %) and managed-identity (8 %) sign-ins. Default 240.
    pub sign_ins_per_hour: u32,
    /// Directory audit records per hour per tenant. Default 40.
    pub directory_audits_per_hour: u32,
    /// Provisioning records per hour per tenant. Default 10.
    pub provisioning_per_hour: u32,
    /// Typical lag between an alert or incident version's lastUpdateDateTime and the moment
    /// queries return it (×0–2). Default "1m".
    #[serde(deserialize_with = "duration")]
    pub index_delay: Duration,
    /// Typical lag between a sign-in or audit record's time and its visibility (×0.2–1.8).
    /// Default "4m".
    #[serde(deserialize_with = "duration")]
    pub log_delay: Duration,
    /// Share of sign-ins that become visible 30 min – 2 h after their createdDateTime (MFA
    /// details aggregating into the original sign-in). Default 0.05.
    pub late_sign_in_rate: f64,
    /// Requests per app per tenant in any 60 s under `/security`. Default 150.
    pub security_requests_per_minute: u32,
    /// Requests per app per tenant in any 10 s under `/auditLogs`. Default 5.
    pub identity_requests_per_10s: u32,
    /// How long a `$skiptoken` pagination stays usable, counted from its first page. Default "15m".
    #[serde(deserialize_with = "duration")]
    pub skiptoken_lifetime: Duration,
    /// Licence and cloud per tenant id; tenants not listed are premium and commercial.
    pub tenants: Vec<GraphTenantConfig>,
    /// Injected failures. Default: all off.
    pub faults: GraphFaults,
}

impl Default for GraphConfig {
    fn default() -> Self {
        Self {
            alerts_per_hour: 6,
            sign_ins_per_hour: 240,
            directory_audits_per_hour: 40,
            provisioning_per_hour: 10,
            index_delay: Duration::from_secs(60),
            log_delay: Duration::from_secs(4 * 60),
            late_sign_in_rate: 0.05,
            security_requests_per_minute: 150,
            identity_requests_per_10s: 5,
            skiptoken_lifetime: Duration::from_secs(15 * 60),
            tenants: Vec::new(),
            faults: GraphFaults::default(),
        }
    }
}

/// Tenant-wide facts Graph cares about (app registrations stay in `[[simulator.m365.tenants]]`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GraphTenantConfig {
    /// The tenant these settings apply to (one of the configured tenant ids).
    pub tenant_id: String,
    /// Entra ID P1/P2: without it `auditLogs/signIns` and `auditLogs/provisioning` answer
    /// 403 `Authentication_RequestFromNonPremiumTenantOrB2CTenant`. Default true.
    #[serde(default = "yes")]
    pub premium: bool,
    /// The national cloud: which Graph audience its tokens must carry. Default commercial.
    #[serde(default)]
    pub cloud: Cloud,
}

fn yes() -> bool {
    true
}

/// A Microsoft cloud, spelled as in siemflow's own `cloud` setting.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Cloud {
    /// Worldwide: `https://graph.microsoft.com`.
    #[default]
    Commercial,
    /// GCC keeps the worldwide Graph: `https://graph.microsoft.com`.
    Gcc,
    /// GCC High (US Gov L4): `https://graph.microsoft.us`.
    GccHigh,
    /// DoD (US Gov L5): `https://dod-graph.microsoft.us`.
    Dod,
}

impl Cloud {
    /// The Graph resource (token audience) of this cloud.
    pub fn graph_audience(self) -> &'static str {
        match self {
            Cloud::Commercial | Cloud::Gcc => "https://graph.microsoft.com",
            Cloud::GccHigh => "https://graph.microsoft.us",
            Cloud::Dod => "https://dod-graph.microsoft.us",
        }
    }
}

/// Injected Graph failures; every rate is a share of requests in [0, 1].
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GraphFaults {
    /// Requests answered 429 `TooManyRequests` with `Retry-After`. Default 0.
    pub throttle_rate: f64,
    /// Requests answered 503 `ServiceNotAvailable` or 504 `GatewayTimeout`. Default 0.
    pub server_error_rate: f64,
    /// Requests answered only after `slow_latency`. Default 0.
    pub slow_rate: f64,
    /// The delay of a slow response. Default "3s".
    #[serde(deserialize_with = "duration")]
    pub slow_latency: Duration,
    /// Pages whose nextLink points one record back, so the next page repeats the last
    /// record of this one. Default 0.
    pub repeat_rate: f64,
    /// Full pages of a `$top` request under `/security` sent without `@odata.nextLink`
    /// although more records remain (clients must go on with `$skip`). Default 0.
    pub missing_next_link_rate: f64,
    /// Requests with a `$skiptoken` refused as expired although the token is fresh. Default 0.
    pub expired_skiptoken_rate: f64,
}

impl Default for GraphFaults {
    fn default() -> Self {
        Self {
            throttle_rate: 0.0,
            server_error_rate: 0.0,
            slow_rate: 0.0,
            slow_latency: Duration::from_secs(3),
            repeat_rate: 0.0,
            missing_next_link_rate: 0.0,
            expired_skiptoken_rate: 0.0,
        }
    }
}

impl GraphConfig {
    /// Checks what serde cannot; `tenant_ids` are the configured tenants (lower-case).
    pub(crate) fn validate(&self, tenant_ids: &[String]) -> anyhow::Result<()> {
        use anyhow::bail;
        let key = "simulator.graph";
        check_rate(&format!("{key}.late_sign_in_rate"), self.late_sign_in_rate)?;
        if self.security_requests_per_minute == 0 || self.identity_requests_per_10s == 0 {
            bail!(
                "{key}.security_requests_per_minute and identity_requests_per_10s must be at least 1"
            );
        }
        if self.skiptoken_lifetime.is_zero() {
            bail!("{key}.skiptoken_lifetime must be positive");
        }
        if self.index_delay > Duration::from_secs(3600)
            || self.log_delay > Duration::from_secs(3600)
        {
            bail!("{key}.index_delay and log_delay must be at most \"1h\"");
        }
        for (i, t) in self.tenants.iter().enumerate() {
            if !is_guid(&t.tenant_id) {
                bail!(
                    "{key}.tenants[{i}].tenant_id must be a GUID, got {:?}",
                    t.tenant_id
                );
            }
            if !tenant_ids
                .iter()
                .any(|id| id.eq_ignore_ascii_case(&t.tenant_id))
            {
                bail!(
                    "{key}.tenants[{i}].tenant_id {} is not one of simulator.tenants",
                    t.tenant_id
                );
            }
            if self.tenants[..i]
                .iter()
                .any(|o| o.tenant_id.eq_ignore_ascii_case(&t.tenant_id))
            {
                bail!("{key}.tenants[{i}] repeats tenant {}", t.tenant_id);
            }
        }
        let f = &self.faults;
        for (name, v) in [
            ("throttle_rate", f.throttle_rate),
            ("server_error_rate", f.server_error_rate),
            ("slow_rate", f.slow_rate),
            ("repeat_rate", f.repeat_rate),
            ("missing_next_link_rate", f.missing_next_link_rate),
            ("expired_skiptoken_rate", f.expired_skiptoken_rate),
        ] {
            check_rate(&format!("{key}.faults.{name}"), v)?;
        }
        Ok(())
    }

    /// The settings of one tenant (defaults when it is not listed).
    pub(crate) fn tenant(&self, tenant_id: &str) -> GraphTenantConfig {
        self.tenants
            .iter()
            .find(|t| t.tenant_id.eq_ignore_ascii_case(tenant_id))
            .cloned()
            .unwrap_or_else(|| GraphTenantConfig {
                tenant_id: tenant_id.to_string(),
                premium: true,
                cloud: Cloud::Commercial,
            })
    }
}
