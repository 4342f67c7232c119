//! The `[simulator]` configuration: everything that defines a simulated Microsoft 365 world.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::defender_cloud_apps::CloudAppsConfig;
use crate::defender_endpoint::EndpointConfig;
use crate::graph::GraphConfig;

/// Tenant id of the default tenant (the id Microsoft's own documentation examples use).
pub const DEFAULT_TENANT_ID: &str = "41463f53-8812-40f4-890f-865bf6e35190";
/// Application (client) id of the default tenant's app registration.
pub const DEFAULT_CLIENT_ID: &str = "5e1f3a9c-6b2d-4c8e-9f01-365d0c0a5e1f";
/// Client secret of the default tenant's app registration.
pub const DEFAULT_CLIENT_SECRET: &str = "simulator-secret";
/// The app roles a registration gets unless configured otherwise: the Management API's,
/// Graph's, Defender for Cloud Apps' and Defender for Endpoint's (tokens carry those of the
/// resource they are issued for).
pub const DEFAULT_ROLES: [&str; 8] = [
    "ActivityFeed.Read",
    "ActivityFeed.ReadDlp",
    "SecurityAlert.Read.All",
    "SecurityIncident.Read.All",
    "AuditLog.Read.All",
    "Directory.Read.All",
    "Investigation.read",
    "Alert.Read.All",
];

/// The content types of the Management Activity API, in a fixed order.
pub const CONTENT_TYPES: [&str; 5] = [
    "Audit.AzureActiveDirectory",
    "Audit.Exchange",
    "Audit.SharePoint",
    "Audit.General",
    "DLP.All",
];

/// Longest history the real service keeps: content is retrievable for 7 days.
pub const MAX_HISTORY: Duration = Duration::from_secs(7 * 24 * 3600);

/// Everything that defines a simulated Microsoft 365 world.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct M365Config {
    /// Same seed ⇒ same tenant, same records, same blobs. Default 1.
    pub seed: u64,
    /// App registrations (several may share a tenant id). Default: one well-known tenant.
    pub tenants: Vec<TenantConfig>,
    /// How far back (from the simulator's start) content exists. Default "3d", at most "7d".
    #[serde(deserialize_with = "de_duration")]
    pub history: Duration,
    /// Average records per hour per tenant across content types on a weekday (daily rhythm applied). Default 600.
    pub records_per_hour: u32,
    /// Typical delay between a record's CreationTime and its blob's contentCreated (jittered ×0.5–1.5). Default "30m".
    #[serde(deserialize_with = "de_duration")]
    pub publish_delay: Duration,
    /// Injected failures. Default: all off.
    pub faults: Faults,
    /// Keep publishing new blobs as real time passes (false: the world is frozen at start). Default true.
    pub live: bool,
    /// Lifetime of issued access tokens. Default "3599s".
    #[serde(deserialize_with = "de_duration")]
    pub token_lifetime: Duration,
    /// Management API requests per minute per tenant (with PublisherIdentifier) before AF429. Default 2000.
    pub requests_per_minute: u32,
    /// Requests per minute of the pool shared by every call without PublisherIdentifier. Default 60.
    pub unidentified_requests_per_minute: u32,
    /// The Microsoft Graph side: volumes, delays, limits, licences, clouds, faults.
    pub graph: GraphConfig,
    /// The Defender for Cloud Apps side: volumes, ingestion, limits, API tokens, faults.
    pub defender_cloud_apps: CloudAppsConfig,
    /// Defender for Endpoint (`/api/alerts`): limits and faults.
    pub defender_endpoint: EndpointConfig,
}

impl Default for M365Config {
    fn default() -> Self {
        Self {
            seed: 1,
            tenants: vec![TenantConfig::default()],
            history: Duration::from_secs(3 * 24 * 3600),
            records_per_hour: 600,
            publish_delay: Duration::from_secs(30 * 60),
            faults: Faults::default(),
            live: true,
            token_lifetime: Duration::from_secs(3599),
            requests_per_minute: 2000,
            unidentified_requests_per_minute: 60,
            graph: GraphConfig::default(),
            defender_cloud_apps: CloudAppsConfig::default(),
            defender_endpoint: EndpointConfig::default(),
        }
    }
}

/// One app registration in one tenant.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// Directory (tenant) id, a GUID.
    pub tenant_id: String,
    /// Application (client) id, a GUID.
    pub client_id: String,
    /// Client secret accepted for this app; none ⇒ only certificate assertions work.
    #[serde(default)]
    pub client_secret: Option<String>,
    /// PEM file with the public certificate whose private key may sign client assertions.
    #[serde(default)]
    pub certificate_pem: Option<PathBuf>,
    /// App roles granted to the app (each token carries those of its resource). Default
    /// [`DEFAULT_ROLES`].
    #[serde(default = "default_roles")]
    pub roles: Vec<String>,
}

fn default_roles() -> Vec<String> {
    DEFAULT_ROLES.iter().map(|r| r.to_string()).collect()
}

impl Default for TenantConfig {
    fn default() -> Self {
        Self {
            tenant_id: DEFAULT_TENANT_ID.into(),
            client_id: DEFAULT_CLIENT_ID.into(),
            client_secret: Some(DEFAULT_CLIENT_SECRET.into()),
            certificate_pem: None,
            roles: default_roles(),
        }
    }
}

/// Injected failures; every rate is a share in [0, 1].
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Faults {
    /// Share of Management API requests answered AF429 (mostly HTTP 403, sometimes 429). Default 0.
    pub throttle_rate: f64,
    /// Share of Management API requests answered 500/503 with an AF50000 body. Default 0.
    pub server_error_rate: f64,
    /// Added to every response. Default "0s".
    #[serde(deserialize_with = "de_duration")]
    pub latency: Duration,
    /// Share of blobs published 2–12 hours after their records' time. Default 0.
    pub late_blob_rate: f64,
    /// Share of records that also appear in a later blob. Default 0.
    pub duplicate_rate: f64,
    /// Share of listing pages cut short (fewer descriptors, still with NextPageUri). Default 0.
    pub truncated_page_rate: f64,
    /// Descriptors per listing page. Default 100.
    pub page_size: usize,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            throttle_rate: 0.0,
            server_error_rate: 0.0,
            latency: Duration::ZERO,
            late_blob_rate: 0.0,
            duplicate_rate: 0.0,
            truncated_page_rate: 0.0,
            page_size: 100,
        }
    }
}

impl M365Config {
    /// Checks the limits serde cannot express; the message names the offending key.
    pub fn validate(&self) -> anyhow::Result<()> {
        use anyhow::bail;
        if self.history > MAX_HISTORY {
            bail!("simulator.history must be at most \"7d\" (the service keeps content 7 days)");
        }
        if self.tenants.is_empty() {
            bail!("simulator.tenants must name at least one tenant");
        }
        for (i, t) in self.tenants.iter().enumerate() {
            if !is_guid(&t.tenant_id) {
                bail!(
                    "simulator.tenants[{i}].tenant_id must be a GUID, got {:?}",
                    t.tenant_id
                );
            }
            if !is_guid(&t.client_id) {
                bail!(
                    "simulator.tenants[{i}].client_id must be a GUID, got {:?}",
                    t.client_id
                );
            }
            if t.client_secret.is_none() && t.certificate_pem.is_none() {
                bail!("simulator.tenants[{i}] needs a client_secret or a certificate_pem");
            }
            let dup = self.tenants[..i].iter().any(|o| {
                o.tenant_id.eq_ignore_ascii_case(&t.tenant_id)
                    && o.client_id.eq_ignore_ascii_case(&t.client_id)
            });
            if dup {
                bail!(
                    "simulator.tenants[{i}] repeats the app {} of tenant {}",
                    t.client_id,
                    t.tenant_id
                );
            }
        }
        let f = &self.faults;
        for (name, v) in [
            ("throttle_rate", f.throttle_rate),
            ("server_error_rate", f.server_error_rate),
            ("late_blob_rate", f.late_blob_rate),
            ("duplicate_rate", f.duplicate_rate),
            ("truncated_page_rate", f.truncated_page_rate),
        ] {
            if !(0.0..=1.0).contains(&v) {
                bail!("simulator.faults.{name} must be between 0 and 1, got {v}");
            }
        }
        if f.page_size == 0 {
            bail!("simulator.faults.page_size must be at least 1");
        }
        if self.token_lifetime.is_zero() {
            bail!("simulator.token_lifetime must be positive");
        }
        if self.publish_delay > Duration::from_secs(24 * 3600) {
            bail!("simulator.publish_delay must be at most \"24h\"");
        }
        self.defender_cloud_apps.validate(&self.tenant_ids())?;
        self.defender_endpoint.validate()?;
        self.graph.validate(&self.tenant_ids())
    }

    /// Distinct tenant ids, in configuration order.
    pub fn tenant_ids(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for t in &self.tenants {
            if !out.iter().any(|o| o.eq_ignore_ascii_case(&t.tenant_id)) {
                out.push(t.tenant_id.to_ascii_lowercase());
            }
        }
        out
    }
}

/// True for the 8-4-4-4-12 hexadecimal GUID form.
pub fn is_guid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s).map_err(|e| {
        serde::de::Error::custom(format!(
            "invalid duration {s:?} ({e}); use e.g. \"30s\", \"30m\", \"3d\""
        ))
    })
}
