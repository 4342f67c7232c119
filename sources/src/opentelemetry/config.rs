//! Options of the `opentelemetry` source.

use std::time::Duration;

use serde::Deserialize;
use siemflow_core::{ConfigIssue, Secret, units};

use crate::schema;
use crate::syslog::ServerTls;

/// Receives OTLP logs over gRPC and HTTP.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenTelemetrySourceConfig {
    /// The OTLP/gRPC listener (`LogsService/Export`). Default: on, at `127.0.0.1:4317`.
    #[serde(default)]
    pub grpc: Listener,

    /// The OTLP/HTTP listener (`POST /v1/logs`, protobuf or JSON). Default: on, at
    /// `127.0.0.1:4318`.
    #[serde(default)]
    pub http: Listener,

    /// TLS for both listeners: `crt_file` and `key_file` (PEM), and `ca_file`: when set,
    /// every client must present a certificate signed by it. Default: plain text.
    #[serde(default)]
    pub tls: Option<ServerTls>,

    /// When set, every request must carry `authorization: Bearer <token>`; others get
    /// 401 / UNAUTHENTICATED. Default: none.
    #[serde(default)]
    pub bearer_token: Option<Secret>,

    /// The largest request, both as sent and once decompressed; a larger one is refused
    /// (HTTP 413, gRPC RESOURCE_EXHAUSTED) and never retried by a compliant sender.
    /// Default: `4MiB` (gRPC's usual receive limit).
    #[serde(
        default = "default_max_request_bytes",
        deserialize_with = "units::size",
        serialize_with = "schema::size"
    )]
    #[schemars(with = "String")]
    pub max_request_bytes: u64,

    /// Most events received but not yet delivered by every sink; a request that would go
    /// past it is answered "retry later" (HTTP 503 with `Retry-After`, gRPC UNAVAILABLE
    /// with `RetryInfo`) without being taken in. Default: `20000`.
    #[serde(default = "default_max_pending_events")]
    pub max_pending_events: usize,

    /// How long a request waits for its events to be delivered before it is answered
    /// "retry later" all the same (the events stay in the pipeline and are delivered;
    /// the sender's retry may bring them twice). Keep it below the senders' own timeout
    /// (the Collector's OTLP exporter: 5s; the Python and Go SDKs: 10s), so that a slow
    /// pipeline is told apart from a dead receiver. Default: `4s`.
    #[serde(
        default = "default_delivery_timeout",
        deserialize_with = "units::duration",
        serialize_with = "schema::duration"
    )]
    #[schemars(with = "String")]
    pub delivery_timeout: Duration,

    /// The delay a "retry later" answer asks for. Default: `1s`.
    #[serde(
        default = "default_retry_delay",
        deserialize_with = "units::duration",
        serialize_with = "schema::duration"
    )]
    #[schemars(with = "String")]
    pub retry_delay: Duration,

    /// Most connections open at once over both listeners; more wait in the kernel's
    /// listen queue. Default: `256`.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

/// One listener.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    /// Listen at all. Default: `true`.
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// `host:port` to listen on. Default: `127.0.0.1:4317` (gRPC), `127.0.0.1:4318` (HTTP).
    #[serde(default)]
    pub address: Option<String>,
}

impl Default for Listener {
    fn default() -> Self {
        Listener {
            enabled: true,
            address: None,
        }
    }
}

fn enabled() -> bool {
    true
}

/// The OTLP/gRPC default port (OTLP specification).
pub(crate) const GRPC_DEFAULT_ADDRESS: &str = "127.0.0.1:4317";
/// The OTLP/HTTP default port (OTLP specification).
pub(crate) const HTTP_DEFAULT_ADDRESS: &str = "127.0.0.1:4318";

fn default_max_request_bytes() -> u64 {
    4 << 20
}

fn default_max_pending_events() -> usize {
    20_000
}

fn default_delivery_timeout() -> Duration {
    Duration::from_secs(4)
}

fn default_retry_delay() -> Duration {
    Duration::from_secs(1)
}

fn default_max_connections() -> usize {
    256
}

/// A bound on `max_request_bytes`: a request is held whole in memory, decompressed.
const MAX_REQUEST_BYTES: u64 = 256 << 20;
/// A bound on `max_pending_events`.
const MAX_PENDING_EVENTS: usize = 10_000_000;
/// A bound on `max_connections`.
const MAX_CONNECTIONS: usize = 1_000_000;

impl OpenTelemetrySourceConfig {
    /// The gRPC listener's address, if it is on.
    pub fn grpc_address(&self) -> Option<&str> {
        self.grpc.enabled.then(|| {
            self.grpc
                .address
                .as_deref()
                .unwrap_or(GRPC_DEFAULT_ADDRESS)
                .trim()
        })
    }

    /// The HTTP listener's address, if it is on.
    pub fn http_address(&self) -> Option<&str> {
        self.http.enabled.then(|| {
            self.http
                .address
                .as_deref()
                .unwrap_or(HTTP_DEFAULT_ADDRESS)
                .trim()
        })
    }

    /// The problems serde cannot see.
    pub(crate) fn issues(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        if self.grpc_address().is_none() && self.http_address().is_none() {
            issues.push(
                ConfigIssue::new("grpc.enabled", "both listeners are off: nothing can send")
                    .hint("remove `enabled = false` from `grpc` or `http`"),
            );
        }
        for (key, address) in [
            ("grpc.address", self.grpc_address()),
            ("http.address", self.http_address()),
        ] {
            if address.is_some_and(str::is_empty) {
                issues
                    .push(ConfigIssue::new(key, "must not be empty").hint("e.g. \"0.0.0.0:4317\""));
            }
        }
        if self.grpc_address().is_some() && self.grpc_address() == self.http_address() {
            issues.push(
                ConfigIssue::new("http.address", "is the gRPC listener's address too")
                    .hint("each listener serves both gRPC and HTTP: turn one off instead"),
            );
        }
        if self.max_request_bytes == 0 || self.max_request_bytes > MAX_REQUEST_BYTES {
            issues.push(ConfigIssue::new(
                "max_request_bytes",
                format!(
                    "must be between 1 and {}",
                    units::format_size(MAX_REQUEST_BYTES)
                ),
            ));
        }
        if let Err(problem) =
            siemflow_core::config::checks::count(self.max_pending_events, MAX_PENDING_EVENTS)
        {
            issues.push(ConfigIssue::new("max_pending_events", problem));
        }
        if let Err(problem) =
            siemflow_core::config::checks::count(self.max_connections, MAX_CONNECTIONS)
        {
            issues.push(ConfigIssue::new("max_connections", problem));
        }
        if self.retry_delay.is_zero() {
            issues.push(ConfigIssue::new("retry_delay", "must be greater than zero"));
        }
        if self.delivery_timeout.is_zero() {
            issues.push(ConfigIssue::new(
                "delivery_timeout",
                "must be greater than zero",
            ));
        }
        if let Some(tls) = &self.tls {
            issues.extend(tls.file_issues());
        }
        if self
            .bearer_token
            .as_ref()
            .is_some_and(|t| t.expose().is_empty())
        {
            issues.push(
                ConfigIssue::new("bearer_token", "must not be empty")
                    .hint("remove it to accept requests without a token"),
            );
        }
        issues
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> OpenTelemetrySourceConfig {
        toml::from_str(text).expect("valid")
    }

    fn keys(config: &OpenTelemetrySourceConfig) -> Vec<String> {
        config.issues().into_iter().filter_map(|i| i.key).collect()
    }

    #[test]
    fn defaults_are_the_otlp_ports_on_loopback() {
        let c = parse("");
        assert_eq!(c.grpc_address(), Some("127.0.0.1:4317"));
        assert_eq!(c.http_address(), Some("127.0.0.1:4318"));
        assert_eq!(c.max_request_bytes, 4 << 20);
        assert_eq!(c.retry_delay, Duration::from_secs(1));
        assert!(c.issues().is_empty());
        let c = parse("http = { enabled = false }\ngrpc = { address = \"0.0.0.0:1\" }");
        assert_eq!(c.grpc_address(), Some("0.0.0.0:1"));
        assert_eq!(c.http_address(), None);
        assert!(format!("{:?}", parse("bearer_token = \"s3cret\"")).contains("redacted"));
    }

    #[test]
    fn refuses_what_cannot_work() {
        let c = parse(
            "grpc = { enabled = false }\nhttp = { enabled = false }\nmax_request_bytes = 0\nretry_delay = \"0s\"\nbearer_token = \"\"",
        );
        assert_eq!(
            keys(&c),
            [
                "grpc.enabled",
                "max_request_bytes",
                "retry_delay",
                "bearer_token"
            ]
        );
        let c = parse("grpc = { address = \"h:1\" }\nhttp = { address = \"h:1\" }");
        assert_eq!(keys(&c), ["http.address"]);
        assert!(toml::from_str::<OpenTelemetrySourceConfig>("port = 1").is_err());
    }
}
