//! `[simulator.m365.defender_cloud_apps]`: volumes, ingestion, limits, legacy API tokens and
//! injected failures of the Defender for Cloud Apps side of the world (reference §5.1).

use std::time::Duration;

use serde::Deserialize;

use crate::config::is_guid;
use crate::wire::{check_rate, duration};

/// The legacy API token of the first tenant's portal unless `api_tokens` lists others.
pub const DEFAULT_API_TOKEN: &str = "simulator-mda-api-token";

/// The Defender for Cloud Apps part of the simulated world (same seed and tenants).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CloudAppsConfig {
    /// Activities per hour per tenant on a weekday (daily rhythm applied). Default 300.
    pub activities_per_hour: u32,
    /// Alerts per hour per tenant on a weekday (daily rhythm applied). Default 4.
    pub alerts_per_hour: u32,
    /// Activities are ingested in batches: every activity of one batch has the same
    /// `created` (ingest time, epoch ms), one batch per period. Default "30s".
    #[serde(deserialize_with = "duration")]
    pub ingest_interval: Duration,
    /// Typical lag between an activity's event time and its ingestion (×0.2–1.8). Default "3m".
    #[serde(deserialize_with = "duration")]
    pub ingest_delay: Duration,
    /// Requests per tenant in any 60 s, both lists together, before 429. Default 30.
    pub requests_per_minute: u32,
    /// Legacy API tokens (`Authorization: Token …`), each of one tenant's portal. Default:
    /// [`DEFAULT_API_TOKEN`] for the first configured tenant.
    pub api_tokens: Vec<ApiTokenConfig>,
    /// Injected failures. Default: all off.
    pub faults: CloudAppsFaults,
}

impl Default for CloudAppsConfig {
    fn default() -> Self {
        Self {
            activities_per_hour: 300,
            alerts_per_hour: 4,
            ingest_interval: Duration::from_secs(30),
            ingest_delay: Duration::from_secs(180),
            requests_per_minute: 30,
            api_tokens: Vec::new(),
            faults: CloudAppsFaults::default(),
        }
    }
}

/// One legacy API token and the tenant whose portal issued it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApiTokenConfig {
    /// The tenant (one of the configured tenant ids).
    pub tenant_id: String,
    /// The token's value.
    pub token: String,
}

/// Injected failures; every rate is a share in [0, 1].
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CloudAppsFaults {
    /// Share of requests answered 429 with `Retry-After` (besides the real limit). Default 0.
    pub throttle_rate: f64,
    /// Share of requests answered 500, 502 or 503. Default 0.
    pub server_error_rate: f64,
    /// Share of activities that become visible up to `late_index_delay` after their
    /// `created` (indexing lag: a walk that passed their `created` did not see them). Default 0.
    pub late_index_rate: f64,
    /// Longest indexing lag of a late activity. Default "45s".
    #[serde(deserialize_with = "duration")]
    pub late_index_delay: Duration,
}

impl Default for CloudAppsFaults {
    fn default() -> Self {
        Self {
            throttle_rate: 0.0,
            server_error_rate: 0.0,
            late_index_rate: 0.0,
            late_index_delay: Duration::from_secs(45),
        }
    }
}

impl CloudAppsConfig {
    /// The tenant id a legacy token belongs to, if it is one (`tenant_ids`: the
    /// configured tenants, the first of which has [`DEFAULT_API_TOKEN`] when `api_tokens`
    /// is empty).
    pub(crate) fn token_tenant(&self, token: &str, tenant_ids: &[String]) -> Option<String> {
        if self.api_tokens.is_empty() {
            return (token == DEFAULT_API_TOKEN)
                .then(|| tenant_ids.first().cloned())
                .flatten();
        }
        self.api_tokens
            .iter()
            .find(|t| t.token == token)
            .map(|t| t.tenant_id.clone())
    }

    /// Checks what serde cannot; `tenant_ids` are the configured tenants.
    pub(crate) fn validate(&self, tenant_ids: &[String]) -> anyhow::Result<()> {
        let f = &self.faults;
        check_rate("defender_cloud_apps.faults.throttle_rate", f.throttle_rate)?;
        check_rate(
            "defender_cloud_apps.faults.server_error_rate",
            f.server_error_rate,
        )?;
        check_rate(
            "defender_cloud_apps.faults.late_index_rate",
            f.late_index_rate,
        )?;
        if self.requests_per_minute == 0 {
            anyhow::bail!("simulator.defender_cloud_apps.requests_per_minute must be at least 1");
        }
        if self.ingest_interval < Duration::from_millis(1) {
            anyhow::bail!("simulator.defender_cloud_apps.ingest_interval must be at least 1ms");
        }
        for (i, t) in self.api_tokens.iter().enumerate() {
            if !is_guid(&t.tenant_id)
                || !tenant_ids
                    .iter()
                    .any(|id| id.eq_ignore_ascii_case(&t.tenant_id))
            {
                anyhow::bail!(
                    "simulator.defender_cloud_apps.api_tokens[{i}].tenant_id {:?} is not a configured tenant",
                    t.tenant_id
                );
            }
            if t.token.trim().is_empty() {
                anyhow::bail!("simulator.defender_cloud_apps.api_tokens[{i}].token is empty");
            }
        }
        Ok(())
    }
}
