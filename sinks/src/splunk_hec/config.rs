//! Options of the `splunk_hec` sink.

use std::time::Duration;

use serde::Deserialize;
use siemflow_core::config::checks;
use siemflow_core::delivery::{
    self, BatchConfig, Compression, Concurrency, HealthcheckConfig, RequestConfig, RetryConfig,
};
use siemflow_core::http::TlsConfig;
use siemflow_core::template::Template;
use siemflow_core::{ConfigIssue, Secret};

use crate::duration;

/// Options of the `splunk_hec` sink.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SplunkHecSinkConfig {
    /// Required. The collector's base URL, e.g. `"https://splunk.example:8088"` (Splunk
    /// Cloud: `"https://http-inputs-<stack>.splunkcloud.com"`). Plain `http` only to
    /// this machine.
    pub endpoint: String,
    /// Required. The HEC token (a GUID), sent as `Authorization: Splunk <token>`; never
    /// logged. Use `"${SPLUNK_HEC_TOKEN}"` to read it from the environment.
    pub token: Secret,
    /// `"event"` (default): JSON envelopes to `/services/collector/event`; `"raw"`: the
    /// `message` field (or the event as JSON) as lines to `/services/collector/raw`.
    #[serde(default)]
    pub endpoint_target: EndpointTarget,
    /// The index, or a template such as `"m365_{{ .Workload }}"`: requests are split per
    /// rendered index. Unset: the token's default index.
    pub index: Option<String>,
    /// `host` of every event. Unset: the token's default.
    pub host: Option<String>,
    /// `source` of every event. Unset: the token's default.
    pub source: Option<String>,
    /// `sourcetype` of every event. Unset: the token's default.
    pub sourcetype: Option<String>,
    /// The event field holding its time (RFC 3339 text, or epoch seconds/milliseconds):
    /// sent as `time` in epoch seconds with a fraction. Default `"CreationTime"` (Office
    /// 365 audit records); events without it get the send time.
    #[serde(default = "default_timestamp_field")]
    pub timestamp_field: String,
    /// Top-level event fields sent as index-time `fields` (`/event` only); objects
    /// become JSON text, as HEC accepts only flat values. Default none.
    #[serde(default)]
    pub fields: Vec<String>,
    /// Indexer acknowledgements.
    #[serde(default)]
    pub acknowledgements: AcknowledgementsConfig,
    /// Batch limits (defaults 1000 events, `"1MiB"`, `"1s"`).
    #[serde(default)]
    pub batch: BatchConfig,
    /// `"none"` (default) or `"gzip"`.
    #[serde(default)]
    pub compression: Compression,
    /// Requests in flight at most (default 4).
    #[serde(default)]
    pub concurrency: Concurrency,
    /// Per-request options (`timeout`, default `"60s"`).
    #[serde(default)]
    pub request: RequestConfig,
    /// Backoff and the retry time limit of a batch.
    #[serde(default)]
    pub retry: RetryConfig,
    /// TLS options (custom CA, client certificate, `verify_certificate`).
    #[serde(default)]
    pub tls: TlsConfig,
    /// An HTTP(S) proxy URL (may hold credentials; never logged).
    pub proxy: Option<Secret>,
    /// Probe `/services/collector/health` at start.
    #[serde(default)]
    pub healthcheck: HealthcheckConfig,
}

/// Which HEC endpoint events go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum EndpointTarget {
    /// `/services/collector/event`: JSON envelopes with time, host, source, fields.
    #[default]
    Event,
    /// `/services/collector/raw`: lines Splunk breaks by the sourcetype's rules.
    Raw,
}

/// `acknowledgements`: Splunk's indexer acknowledgement.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AcknowledgementsConfig {
    /// Wait for `/services/collector/ack` before acknowledging upstream (default true).
    /// Needs a token with indexer acknowledgement on; with a token without it, responses
    /// carry no `ackId` and a 200 counts as delivered.
    pub enabled: bool,
    /// How often pending acks are asked for (default `"10s"`, Splunk's guidance).
    #[serde(
        deserialize_with = "siemflow_core::units::duration",
        serialize_with = "duration::serialize"
    )]
    #[schemars(with = "String")]
    pub ack_poll_interval: Duration,
    /// A request still unacknowledged after this long is sent again (default `"5m"`).
    #[serde(
        deserialize_with = "siemflow_core::units::duration",
        serialize_with = "duration::serialize"
    )]
    #[schemars(with = "String")]
    pub ack_timeout: Duration,
    /// Requests awaiting an ack at most; more wait before being sent (default 10000).
    pub max_pending_acks: usize,
}

impl Default for AcknowledgementsConfig {
    fn default() -> Self {
        AcknowledgementsConfig {
            enabled: true,
            ack_poll_interval: Duration::from_secs(10),
            ack_timeout: Duration::from_secs(300),
            max_pending_acks: 10_000,
        }
    }
}

fn default_timestamp_field() -> String {
    "CreationTime".to_string()
}

impl SplunkHecSinkConfig {
    pub(super) fn issues(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        if let Err(problem) = checks::base_url(&self.endpoint) {
            issues.push(ConfigIssue::new("endpoint", problem).hint(
                "the collector's base URL, e.g. \"https://splunk.example:8088\"; endpoint_target picks /event or /raw",
            ));
        }
        if let Some(proxy) = &self.proxy
            && let Err(problem) = checks::proxy_url(proxy.expose())
        {
            issues.push(
                ConfigIssue::new("proxy", problem).hint("e.g. \"http://proxy.example:3128\""),
            );
        }
        if self.token.expose().trim().is_empty() {
            issues.push(
                ConfigIssue::new("token", "is empty").hint("e.g. token = \"${SPLUNK_HEC_TOKEN}\""),
            );
        }
        if let Some(index) = &self.index
            && let Err(message) = Template::parse(index)
        {
            issues.push(
                ConfigIssue::new("index", message).hint("e.g. \"m365\" or \"{{ .Workload }}\""),
            );
        }
        if self.endpoint_target == EndpointTarget::Raw && !self.fields.is_empty() {
            issues.push(
                ConfigIssue::new(
                    "fields",
                    "index-time fields are only sent to the event endpoint",
                )
                .hint("remove `fields` or set endpoint_target = \"event\""),
            );
        }
        let acks = &self.acknowledgements;
        if acks.enabled {
            if acks.ack_poll_interval.is_zero() {
                issues.push(ConfigIssue::new(
                    "acknowledgements.ack_poll_interval",
                    "must be longer than 0s",
                ));
            }
            if acks.ack_timeout < acks.ack_poll_interval {
                issues.push(
                    ConfigIssue::new(
                        "acknowledgements.ack_timeout",
                        "is shorter than ack_poll_interval: no ack could ever arrive in time",
                    )
                    .hint("e.g. ack_poll_interval = \"10s\", ack_timeout = \"5m\""),
                );
            }
            if let Err(problem) = checks::count(acks.max_pending_acks, checks::MAX_COUNT) {
                issues.push(ConfigIssue::new(
                    "acknowledgements.max_pending_acks",
                    problem,
                ));
            }
        }
        issues.extend(delivery::config::check(
            &self.batch,
            &self.request,
            &self.retry,
        ));
        issues.extend(self.tls.check("tls"));
        issues
    }
}
