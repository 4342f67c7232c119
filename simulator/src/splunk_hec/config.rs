//! Configuration of the Splunk HEC simulator: tokens, limits and faults.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use crate::config::is_guid;
use crate::wire;

/// The token of the default configuration (a GUID, like every HEC token).
pub const DEFAULT_HEC_TOKEN: &str = "00000000-0000-0000-0000-000000000000";

/// `limits.conf [http_input] max_content_length` of current Splunk Enterprise releases.
pub const DEFAULT_MAX_CONTENT_LENGTH: u64 = 838_860_800;

/// Everything that defines a simulated HTTP Event Collector.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SplunkHecConfig {
    /// Same seed and same request order ⇒ same injected faults. Default 1.
    pub seed: u64,
    /// The HEC tokens the collector knows. Default: one token, [`DEFAULT_HEC_TOKEN`], ack off,
    /// any index, default index `main`.
    pub tokens: Vec<HecToken>,
    /// Largest request body accepted, as sent and after gunzip (bytes, or e.g. `"1MB"`);
    /// larger ⇒ 413. Default 838860800 (Splunk's current default).
    #[serde(deserialize_with = "wire::size")]
    pub max_content_length: u64,
    /// Keep every indexed event for [`crate::SplunkHecSimulator::indexed`]; `false` only
    /// counts them (benchmarks). Default true.
    pub keep_events: bool,
    /// Pending (not yet reported) acknowledgements a channel may hold before requests on it
    /// are refused with HTTP 429, code 27. Default 1000000.
    pub max_pending_acks_per_channel: usize,
    /// Injected failures. Default: all off.
    pub faults: HecFaults,
}

impl Default for SplunkHecConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            tokens: vec![HecToken::default()],
            max_content_length: DEFAULT_MAX_CONTENT_LENGTH,
            keep_events: true,
            max_pending_acks_per_channel: 1_000_000,
            faults: HecFaults::default(),
        }
    }
}

/// One HEC token (an HTTP Event Collector data input).
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HecToken {
    /// The token value, a GUID.
    pub token: String,
    /// Indexer acknowledgement (`useACK`): requests need a channel and get an `ackId`.
    /// Default false.
    #[serde(default)]
    pub ack: bool,
    /// Indexes events may name (`indexes` of inputs.conf); empty = any. Default empty.
    #[serde(default)]
    pub indexes: Vec<String>,
    /// Index of events that name none. Default `main`.
    #[serde(default = "default_index")]
    pub default_index: String,
    /// A disabled token is refused (403, code 1). Default false.
    #[serde(default)]
    pub disabled: bool,
    /// Accept the token in the `?token=` query string (`allowQueryStringAuth`). Default false.
    #[serde(default)]
    pub allow_query_string: bool,
}

fn default_index() -> String {
    "main".into()
}

impl Default for HecToken {
    fn default() -> Self {
        Self {
            token: DEFAULT_HEC_TOKEN.into(),
            ack: false,
            indexes: Vec::new(),
            default_index: default_index(),
            disabled: false,
            allow_query_string: false,
        }
    }
}

impl fmt::Debug for HecToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HecToken")
            .field("token", &"<redacted>")
            .field("ack", &self.ack)
            .field("indexes", &self.indexes)
            .field("default_index", &self.default_index)
            .field("disabled", &self.disabled)
            .field("allow_query_string", &self.allow_query_string)
            .finish()
    }
}

/// Injected failures; every rate is a share in [0, 1], drawn per request.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HecFaults {
    /// Share of data requests answered 503, code 9 "Server is busy" (nothing indexed).
    pub busy_rate: f64,
    /// Share of data requests answered 500, code 8 "Internal server error" (nothing indexed).
    pub server_error_rate: f64,
    /// Share of data requests answered 429, code 26 "HEC queue is at capacity…" (nothing
    /// indexed).
    pub queue_full_rate: f64,
    /// Share of accepted data requests answered 200 with code 24 "HEC queue is approaching its
    /// capacity limit" instead of code 0 (still a success: the events are indexed).
    pub near_capacity_rate: f64,
    /// Share of requests that wait `slow_delay` before being processed.
    pub slow_rate: f64,
    /// The wait of a slow request. Default "2s".
    #[serde(deserialize_with = "wire::duration")]
    pub slow_delay: Duration,
    /// An `/event` envelope whose JSON text contains this string is invalid data: code 6 with
    /// `invalid-event-number` at that event. Default none.
    pub reject_marker: Option<String>,
    /// How long after the request an acknowledgement turns true. Default "0s".
    #[serde(deserialize_with = "wire::duration")]
    pub ack_delay: Duration,
    /// Share of acknowledged requests that are lost: answered with an `ackId` but never
    /// indexed, and their ack never turns true.
    pub lost_ack_rate: f64,
    /// Share of health checks answered 503, code 18 "HEC is unhealthy, queues are full".
    pub unhealthy_rate: f64,
}

impl Default for HecFaults {
    fn default() -> Self {
        Self {
            busy_rate: 0.0,
            server_error_rate: 0.0,
            queue_full_rate: 0.0,
            near_capacity_rate: 0.0,
            slow_rate: 0.0,
            slow_delay: Duration::from_secs(2),
            reject_marker: None,
            ack_delay: Duration::ZERO,
            lost_ack_rate: 0.0,
            unhealthy_rate: 0.0,
        }
    }
}

impl SplunkHecConfig {
    /// Checks what serde cannot; the message names the offending key.
    pub fn validate(&self) -> anyhow::Result<()> {
        use anyhow::bail;
        if self.tokens.is_empty() {
            bail!("splunk_hec.tokens must name at least one token");
        }
        for (i, t) in self.tokens.iter().enumerate() {
            if !is_guid(&t.token) {
                bail!("splunk_hec.tokens[{i}].token must be a GUID");
            }
            if self.tokens[..i]
                .iter()
                .any(|o| o.token.eq_ignore_ascii_case(&t.token))
            {
                bail!("splunk_hec.tokens[{i}] repeats an earlier token");
            }
            if t.default_index.is_empty() {
                bail!("splunk_hec.tokens[{i}].default_index must not be empty");
            }
            if !t.indexes.is_empty() && !t.indexes.contains(&t.default_index) {
                bail!(
                    "splunk_hec.tokens[{i}].default_index {:?} must be one of its indexes {:?}",
                    t.default_index,
                    t.indexes
                );
            }
        }
        if self.max_content_length == 0 {
            bail!("splunk_hec.max_content_length must be positive");
        }
        if self.max_pending_acks_per_channel == 0 {
            bail!("splunk_hec.max_pending_acks_per_channel must be positive");
        }
        let f = &self.faults;
        for (name, v) in [
            ("busy_rate", f.busy_rate),
            ("server_error_rate", f.server_error_rate),
            ("queue_full_rate", f.queue_full_rate),
            ("near_capacity_rate", f.near_capacity_rate),
            ("slow_rate", f.slow_rate),
            ("lost_ack_rate", f.lost_ack_rate),
            ("unhealthy_rate", f.unhealthy_rate),
        ] {
            wire::check_rate(&format!("splunk_hec.faults.{name}"), v)?;
        }
        if f.reject_marker.as_deref() == Some("") {
            bail!("splunk_hec.faults.reject_marker must not be empty (it would match every event)");
        }
        Ok(())
    }
}
