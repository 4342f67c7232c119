//! Options of the `opentelemetry` sink.

use std::collections::BTreeMap;

use serde::Deserialize;
use siemflow_core::config::checks;
use siemflow_core::delivery::{
    self, BatchConfig, Compression, Concurrency, HealthcheckConfig, RequestConfig, RetryConfig,
};
use siemflow_core::event::field_path;
use siemflow_core::http::TlsConfig;
use siemflow_core::template::FieldTemplate;
use siemflow_core::{ConfigIssue, Secret};

/// Options of the `opentelemetry` sink.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OpentelemetrySinkConfig {
    /// Required. The receiver. gRPC: `"https://collector.example:4317"` (no path). HTTP:
    /// the base URL, e.g. `"https://collector.example:4318"` or
    /// `"https://otlp.example/otlp"`; `/v1/logs` is appended, as OpenTelemetry's
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` does. Plain `http` only to this machine.
    pub endpoint: String,
    /// `"grpc"` (default): `LogsService/Export` over HTTP/2; `"http"`: OTLP/HTTP, binary
    /// protobuf `POST`s.
    #[serde(default)]
    pub protocol: Transport,
    /// Extra request headers (gRPC metadata), e.g. `{ "x-api-key" = "${OTLP_API_KEY}" }`;
    /// the values are secrets, never logged.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// The event field holding the record's `body`; the event's other fields map by the
    /// opentelemetry source's field names or become attributes. Unset (default): an event
    /// in the source's shape (with `message` or `body`, or no other fields than the
    /// source's) maps back to the record it came from; any other event (a Microsoft 365
    /// record) is the body as a whole.
    pub body_field: Option<String>,
    /// Record attributes from event fields: attribute key = field path, e.g.
    /// `{ "m365.workload" = "Workload" }`. Added to the event's own `attributes`; they
    /// win over it on a repeated key. Missing fields are left out.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// Resource attributes: key = a value, or a template such as
    /// `"{{ .OrganizationId }}"`, e.g. `{ "service.name" = "siemflow" }`. They fill in
    /// what the event's own `resource.attributes` lack (an event relayed from another
    /// OTLP sender keeps its resource). Requests are cut per distinct resource.
    #[serde(default)]
    pub resource: BTreeMap<String, serde_json::Value>,
    /// The instrumentation scope of events that carry no `scope` of their own.
    pub scope: Option<ScopeConfig>,
    /// The event field holding the record's time (`time_unix_nano`): RFC 3339 text,
    /// epoch seconds/milliseconds/..., or a timestamp. Unset (default): `timestamp`;
    /// none: 0, OTLP's "unknown" (receivers then use the observed time).
    pub timestamp_field: Option<String>,
    /// The event field holding the severity: a number 1–24 is `severity_number`; text is
    /// `severity_text`, and its word gives the number (see the docs). Unset (default):
    /// `severity_number` and `severity_text`.
    pub severity_field: Option<String>,
    /// The record's `event_name`, or a template such as `"o365.audit.{{ .Workload }}"`.
    /// Unset (default): the event's `event_name` field.
    pub event_name: Option<String>,
    /// Batch limits (defaults 1000 events, `"1MiB"` of encoded records, `"1s"`).
    #[serde(default)]
    pub batch: BatchConfig,
    /// `"gzip"` (default, as the OpenTelemetry Collector's exporters) or `"none"`.
    #[serde(default = "gzip")]
    pub compression: Compression,
    /// Requests in flight at most (default 4), or `"adaptive"`.
    #[serde(default)]
    pub concurrency: Concurrency,
    /// Per-request options (`timeout`, default `"60s"`).
    #[serde(default)]
    pub request: RequestConfig,
    /// Backoff and the retry time limit of a batch.
    #[serde(default)]
    pub retry: RetryConfig,
    /// TLS options for `https` endpoints (custom CA, client certificate,
    /// `verify_certificate`).
    #[serde(default)]
    pub tls: TlsConfig,
    /// An HTTP(S) proxy URL for `protocol = "http"` (may hold credentials; never logged).
    pub proxy: Option<Secret>,
    /// Send an empty Export at start (the specification asks receivers to answer it
    /// with success) and report the result in `/ready`.
    #[serde(default)]
    pub healthcheck: HealthcheckConfig,
}

/// How requests travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// OTLP/gRPC: `opentelemetry.proto.collector.logs.v1.LogsService/Export`.
    #[default]
    Grpc,
    /// OTLP/HTTP: `POST /v1/logs` with `Content-Type: application/x-protobuf`.
    Http,
}

/// `scope`: the instrumentation scope records are sent under.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScopeConfig {
    /// Its name, e.g. `"siemflow.o365_management"`.
    pub name: String,
    /// Its version (default none).
    #[serde(default)]
    pub version: String,
}

fn gzip() -> Compression {
    Compression::Gzip
}

/// Request headers a sink must not set: the transport's own.
const RESERVED_HEADERS: [&str; 7] = [
    "content-type",
    "content-encoding",
    "content-length",
    "te",
    "host",
    "user-agent",
    "connection",
];

impl OpentelemetrySinkConfig {
    pub(super) fn issues(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        let endpoint = match self.protocol {
            Transport::Grpc => checks::base_url(&self.endpoint).map(|_| ()),
            Transport::Http => checks::endpoint_url(&self.endpoint).map(|url| {
                if url.query().is_some() || url.fragment().is_some() {
                    issues.push(ConfigIssue::new(
                        "endpoint",
                        "has a query or fragment: give the base URL; /v1/logs is appended",
                    ));
                }
            }),
        };
        if let Err(problem) = endpoint {
            let hint = match self.protocol {
                Transport::Grpc => "e.g. \"https://collector.example:4317\"",
                Transport::Http => "e.g. \"https://collector.example:4318\"; /v1/logs is appended",
            };
            issues.push(ConfigIssue::new("endpoint", problem).hint(hint));
        }
        if let Some(proxy) = &self.proxy {
            if self.protocol == Transport::Grpc {
                issues.push(
                    ConfigIssue::new("proxy", "is only used with protocol = \"http\"")
                        .hint("remove `proxy`, or set protocol = \"http\""),
                );
            } else if let Err(problem) = checks::proxy_url(proxy.expose()) {
                issues.push(
                    ConfigIssue::new("proxy", problem).hint("e.g. \"http://proxy.example:3128\""),
                );
            }
        }
        for (name, value) in &self.headers {
            let key = format!("headers.{name}");
            let lower = name.to_ascii_lowercase();
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                issues.push(
                    ConfigIssue::new(&key, "is not a header name")
                        .hint("letters, digits, `-`, `_` and `.`, e.g. \"x-api-key\""),
                );
            } else if RESERVED_HEADERS.contains(&lower.as_str())
                || lower.starts_with("grpc-")
                || lower.ends_with("-bin")
            {
                issues.push(ConfigIssue::new(
                    &key,
                    "is set by the transport itself (or a binary gRPC header) and cannot be configured",
                ));
            }
            if value.expose().is_empty()
                || !value.expose().bytes().all(|b| (0x20..0x7f).contains(&b))
            {
                issues.push(
                    ConfigIssue::new(&key, "must be visible ASCII text, and not empty")
                        .hint("e.g. \"${OTLP_API_KEY}\""),
                );
            }
        }
        for (key, field) in [
            ("body_field", &self.body_field),
            ("timestamp_field", &self.timestamp_field),
            ("severity_field", &self.severity_field),
        ] {
            if let Some(field) = field
                && let Err(issue) = field_path(key, field)
            {
                issues.push(issue);
            }
        }
        for (name, field) in &self.attributes {
            if name.is_empty() {
                issues.push(ConfigIssue::new("attributes", "has an empty attribute key"));
            }
            if let Err(issue) = field_path(&format!("attributes.{name}"), field) {
                issues.push(issue);
            }
        }
        for (name, value) in &self.resource {
            if name.is_empty() {
                issues.push(ConfigIssue::new("resource", "has an empty attribute key"));
            }
            if let Some(text) = value.as_str()
                && let Err(message) = FieldTemplate::parse(text)
            {
                issues.push(
                    ConfigIssue::new(&format!("resource.{name}"), message)
                        .hint("a value, or a template such as \"{{ .OrganizationId }}\""),
                );
            }
            if value.is_null() {
                issues.push(ConfigIssue::new(
                    &format!("resource.{name}"),
                    "is empty: give a value",
                ));
            }
        }
        if let Some(name) = &self.event_name
            && let Err(message) = FieldTemplate::parse(name)
        {
            issues.push(
                ConfigIssue::new("event_name", message)
                    .hint("e.g. \"o365.audit\" or \"o365.audit.{{ .Workload }}\""),
            );
        }
        if let Some(scope) = &self.scope
            && scope.name.trim().is_empty()
        {
            issues.push(ConfigIssue::new("scope.name", "is empty").hint("e.g. \"siemflow.o365\""));
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
