//! Configuration of the Logs Ingestion (Sentinel) simulator: the app, the DCRs, limits, faults.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use crate::config::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TENANT_ID, is_guid};
use crate::wire;

/// Immutable id of the default DCR.
pub const DEFAULT_DCR_ID: &str = "dcr-00000000000000000000000000000000";
/// Stream of the default DCR.
pub const DEFAULT_STREAM: &str = "Custom-SiemflowEvents_CL";
/// The Logs Ingestion API's per-call limit, as its 413 states it: 1048576 bytes.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1_048_576;
/// The token audience of the public cloud (scope `https://monitor.azure.com//.default`).
pub const MONITOR_AUDIENCE: &str = "https://monitor.azure.com";

/// Everything that defines a simulated Logs Ingestion endpoint and its Entra tenant.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SentinelConfig {
    /// Same seed and same request order ⇒ same injected faults. Default 1.
    pub seed: u64,
    /// Directory (tenant) id of the token endpoint. Default: the M365 simulator's tenant.
    pub tenant_id: String,
    /// Application (client) id allowed to get tokens. Default: the M365 simulator's app.
    pub client_id: String,
    /// Its client secret. Default `simulator-secret`.
    pub client_secret: String,
    /// Audience tokens must carry (`https://monitor.azure.us` for US Government, …).
    /// Default `https://monitor.azure.com`.
    pub audience: String,
    /// Lifetime of issued tokens. Default "3599s".
    #[serde(deserialize_with = "wire::duration")]
    pub token_lifetime: Duration,
    /// The data collection rules. Default: one DCR [`DEFAULT_DCR_ID`] with stream
    /// [`DEFAULT_STREAM`].
    pub dcrs: Vec<Dcr>,
    /// Largest request body, checked as sent and after gunzip (bytes or e.g. `"1MiB"`).
    /// Default 1048576.
    #[serde(deserialize_with = "wire::size")]
    pub max_body_bytes: u64,
    /// String values longer than this many bytes are truncated, as the service does
    /// (64 KB per field value). Default 65536.
    pub max_field_bytes: usize,
    /// Requests per minute per DCR before 429. Default 12000.
    pub requests_per_minute: u32,
    /// Bytes (uncompressed) per minute per DCR before 429 (bytes or e.g. `"2GB"`).
    /// Default 2000000000.
    #[serde(deserialize_with = "wire::size")]
    pub bytes_per_minute: u64,
    /// Keep every accepted record for [`crate::SentinelSimulator::received`]; `false` only
    /// counts them (benchmarks). Default true.
    pub keep_records: bool,
    /// Injected failures. Default: all off.
    pub faults: SentinelFaults,
}

impl Default for SentinelConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            tenant_id: DEFAULT_TENANT_ID.into(),
            client_id: DEFAULT_CLIENT_ID.into(),
            client_secret: DEFAULT_CLIENT_SECRET.into(),
            audience: MONITOR_AUDIENCE.into(),
            token_lifetime: Duration::from_secs(3599),
            dcrs: vec![Dcr::default()],
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_field_bytes: 65_536,
            requests_per_minute: 12_000,
            bytes_per_minute: 2_000_000_000,
            keep_records: true,
            faults: SentinelFaults::default(),
        }
    }
}

impl fmt::Debug for SentinelConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SentinelConfig")
            .field("seed", &self.seed)
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("audience", &self.audience)
            .field("token_lifetime", &self.token_lifetime)
            .field("dcrs", &self.dcrs)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_field_bytes", &self.max_field_bytes)
            .field("requests_per_minute", &self.requests_per_minute)
            .field("bytes_per_minute", &self.bytes_per_minute)
            .field("keep_records", &self.keep_records)
            .field("faults", &self.faults)
            .finish()
    }
}

/// One data collection rule.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Dcr {
    /// The immutable id, `dcr-` and 32 hex digits.
    pub immutable_id: String,
    /// Its input streams (`Custom-…` or `Microsoft-…`).
    pub streams: Vec<String>,
    /// Columns every record must carry. Default `["TimeGenerated"]`.
    #[serde(default = "default_required")]
    pub required_columns: Vec<String>,
    /// Client ids holding "Monitoring Metrics Publisher" on this DCR; others get 403.
    /// Default: the configured `client_id`.
    #[serde(default)]
    pub publishers: Option<Vec<String>>,
}

fn default_required() -> Vec<String> {
    vec!["TimeGenerated".into()]
}

impl Default for Dcr {
    fn default() -> Self {
        Self {
            immutable_id: DEFAULT_DCR_ID.into(),
            streams: vec![DEFAULT_STREAM.into()],
            required_columns: default_required(),
            publishers: None,
        }
    }
}

/// Injected failures; every rate is a share in [0, 1], drawn per ingestion request.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SentinelFaults {
    /// Share answered 429 with `Retry-After`.
    pub throttle_rate: f64,
    /// Share answered 503 with `Retry-After`.
    pub unavailable_rate: f64,
    /// Share answered 500.
    pub server_error_rate: f64,
    /// Share that wait `slow_delay` before being processed.
    pub slow_rate: f64,
    /// The wait of a slow request. Default "2s".
    #[serde(deserialize_with = "wire::duration")]
    pub slow_delay: Duration,
    /// `Retry-After` of injected 429s and 503s (whole seconds, at least 1). Default "1s".
    #[serde(deserialize_with = "wire::duration")]
    pub retry_after: Duration,
}

impl Default for SentinelFaults {
    fn default() -> Self {
        Self {
            throttle_rate: 0.0,
            unavailable_rate: 0.0,
            server_error_rate: 0.0,
            slow_rate: 0.0,
            slow_delay: Duration::from_secs(2),
            retry_after: Duration::from_secs(1),
        }
    }
}

impl SentinelConfig {
    /// Checks what serde cannot; the message names the offending key.
    pub fn validate(&self) -> anyhow::Result<()> {
        use anyhow::bail;
        if !is_guid(&self.tenant_id) {
            bail!("sentinel.tenant_id must be a GUID");
        }
        if !is_guid(&self.client_id) {
            bail!("sentinel.client_id must be a GUID");
        }
        if self.client_secret.is_empty() {
            bail!("sentinel.client_secret must not be empty");
        }
        if !self.audience.starts_with("https://") {
            bail!("sentinel.audience must be an https:// resource URI");
        }
        if self.token_lifetime.is_zero() {
            bail!("sentinel.token_lifetime must be positive");
        }
        if self.dcrs.is_empty() {
            bail!("sentinel.dcrs must name at least one DCR");
        }
        for (i, d) in self.dcrs.iter().enumerate() {
            let hex = d.immutable_id.strip_prefix("dcr-").unwrap_or("");
            if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                bail!(
                    "sentinel.dcrs[{i}].immutable_id must be \"dcr-\" and 32 hex digits, got {:?}",
                    d.immutable_id
                );
            }
            if self.dcrs[..i]
                .iter()
                .any(|o| o.immutable_id.eq_ignore_ascii_case(&d.immutable_id))
            {
                bail!("sentinel.dcrs[{i}] repeats {}", d.immutable_id);
            }
            if d.streams.is_empty() {
                bail!("sentinel.dcrs[{i}].streams must name at least one stream");
            }
            for s in &d.streams {
                if !(s.starts_with("Custom-") || s.starts_with("Microsoft-")) {
                    bail!(
                        "sentinel.dcrs[{i}].streams: {s:?} must start with \"Custom-\" or \"Microsoft-\""
                    );
                }
            }
        }
        if self.max_body_bytes == 0 || self.max_field_bytes == 0 {
            bail!("sentinel.max_body_bytes and sentinel.max_field_bytes must be positive");
        }
        if self.requests_per_minute == 0 || self.bytes_per_minute == 0 {
            bail!("sentinel.requests_per_minute and sentinel.bytes_per_minute must be positive");
        }
        let f = &self.faults;
        for (name, v) in [
            ("throttle_rate", f.throttle_rate),
            ("unavailable_rate", f.unavailable_rate),
            ("server_error_rate", f.server_error_rate),
            ("slow_rate", f.slow_rate),
        ] {
            wire::check_rate(&format!("sentinel.faults.{name}"), v)?;
        }
        if f.retry_after.as_secs() == 0 {
            bail!(
                "sentinel.faults.retry_after must be at least \"1s\" (Retry-After is in seconds)"
            );
        }
        Ok(())
    }
}
