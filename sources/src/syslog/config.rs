//! Options of the `syslog` source.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use siemflow_core::ConfigIssue;
use siemflow_core::units;

use crate::file::{MAX_BATCH_EVENTS, default_batch_max_events};
use crate::schema;

/// Receives syslog messages over TCP, TLS or UDP.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SyslogSourceConfig {
    /// Required. The address to listen on, `host:port` (`0.0.0.0:514`, `[::]:6514`).
    pub address: String,

    /// `"tcp"`, `"tls"` or `"udp"`. Default: `"tls"` when a `tls` table is given, else `"tcp"`.
    #[serde(default)]
    pub mode: Option<Mode>,

    /// The TLS listener's certificate: `crt_file` and `key_file` (PEM, required), and
    /// `ca_file`: when set, every client must present a certificate signed by it.
    #[serde(default)]
    pub tls: Option<ServerTls>,

    /// TCP/TLS framing (RFC 6587): `"auto"` (default: a message starting with a digit is
    /// octet-counted, anything else ends at LF), `"octet_counting"` or `"newline"`.
    #[serde(default)]
    pub framing: Framing,

    /// The syslog header: `"auto"` (default: RFC 5424, else RFC 3164, else none),
    /// `"rfc5424"`, `"rfc3164"` or `"none"` (the whole message is the payload).
    #[serde(default)]
    pub format: Format,

    /// How the message part (MSG) becomes fields: `"text"` (default: in `message`),
    /// `"cef"` (VRL's `parse_cef`), `"leef"` (LEEF 1.0/2.0) or `"json"` (an object).
    /// A message that does not decode is kept whole in `message`, with `parse_error`.
    #[serde(default)]
    pub decoding: SyslogDecoding,

    /// The largest message; a longer one is discarded and counted
    /// (`component_errors_total{error_type="message_too_long"}`). Default: `64KiB`
    /// (with UDP at most 65507 bytes, the most a datagram carries).
    #[serde(
        default = "default_max_message_bytes",
        deserialize_with = "units::size",
        serialize_with = "schema::size"
    )]
    #[schemars(with = "String")]
    pub max_message_bytes: u64,

    /// Most TCP/TLS connections open at once; one more is closed at once and counted
    /// (`error_type="connection_refused"`). Default: `256`.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,

    /// A TCP/TLS connection that sends nothing for this long is closed (a TLS handshake
    /// must finish within it too). Default: `5m`.
    #[serde(
        default = "default_read_timeout",
        deserialize_with = "units::duration",
        serialize_with = "schema::duration"
    )]
    #[schemars(with = "String")]
    pub read_timeout: Duration,

    /// Most events in one batch. Default: `500`.
    #[serde(default = "default_batch_max_events")]
    pub batch_max_events: usize,
}

/// The transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Plain TCP.
    Tcp,
    /// TCP with TLS (RFC 5425).
    Tls,
    /// UDP (RFC 5426): one message per datagram, no delivery guarantee.
    Udp,
}

/// The TLS listener's certificate and, for mutual TLS, the clients' CA.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerTls {
    /// PEM certificate chain the listener presents.
    pub crt_file: PathBuf,
    /// PEM private key of `crt_file`.
    pub key_file: PathBuf,
    /// PEM CA certificates; when set, clients must present a certificate signed by one.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

impl ServerTls {
    /// The files that are not there (keys `tls.crt_file`, `tls.key_file`, `tls.ca_file`).
    pub(crate) fn file_issues(&self) -> Vec<ConfigIssue> {
        [
            ("tls.crt_file", Some(&self.crt_file)),
            ("tls.key_file", Some(&self.key_file)),
            ("tls.ca_file", self.ca_file.as_ref()),
        ]
        .into_iter()
        .filter_map(|(key, path)| {
            let path = path?;
            (!path.is_file()).then(|| {
                ConfigIssue::new(key, format!("{} is not a readable file", path.display()))
            })
        })
        .collect()
    }
}

/// How messages are delimited on a TCP or TLS stream.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Framing {
    /// Each message by its first byte: a digit means octet counting, else newline.
    #[default]
    Auto,
    /// `LEN SP MSG` (RFC 6587 3.4.1, RFC 5425).
    OctetCounting,
    /// `MSG LF` (RFC 6587 3.4.2); a trailing CR or NUL is removed.
    Newline,
}

/// Which syslog header to expect.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// RFC 5424, else RFC 3164, else no header.
    #[default]
    Auto,
    /// `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD MSG`.
    Rfc5424,
    /// `<PRI>Mmm dd hh:mm:ss HOSTNAME TAG[PID]: MSG`.
    Rfc3164,
    /// No header: the whole message is the payload.
    None,
}

/// How the payload becomes fields.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum SyslogDecoding {
    /// The payload in `message`.
    #[default]
    Text,
    /// CEF as VRL's `parse_cef` reads it (custom fields left as `cs1Label`/`cs1`).
    Cef,
    /// LEEF 1.0 or 2.0 (`siemflow_core::leef`).
    Leef,
    /// One JSON object.
    Json,
}

fn default_max_message_bytes() -> u64 {
    64 * 1024
}

fn default_max_connections() -> usize {
    256
}

fn default_read_timeout() -> Duration {
    Duration::from_secs(300)
}

/// The largest UDP payload: a datagram cannot carry more.
pub(crate) const MAX_DATAGRAM_BYTES: u64 = 65_507;

/// A bound on `max_message_bytes`: each connection may hold one message this large.
const MAX_MESSAGE_BYTES: u64 = 64 * 1024 * 1024;

/// A bound on `max_connections`: each takes a descriptor and a read buffer.
const MAX_CONNECTIONS: usize = 1_000_000;

impl SyslogSourceConfig {
    /// The transport in effect: `mode`, or TLS when a `tls` table is given, else TCP.
    pub fn effective_mode(&self) -> Mode {
        match (self.mode, &self.tls) {
            (Some(mode), _) => mode,
            (None, Some(_)) => Mode::Tls,
            (None, None) => Mode::Tcp,
        }
    }

    /// The problems serde cannot see.
    pub(crate) fn issues(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        if self.address.trim().is_empty() {
            issues.push(
                ConfigIssue::new("address", "must not be empty")
                    .hint("e.g. address = \"0.0.0.0:514\""),
            );
        }
        if self.max_message_bytes == 0 || self.max_message_bytes > MAX_MESSAGE_BYTES {
            issues.push(ConfigIssue::new(
                "max_message_bytes",
                format!(
                    "must be between 1 and {}",
                    units::format_size(MAX_MESSAGE_BYTES)
                ),
            ));
        }
        if let Err(problem) =
            siemflow_core::config::checks::count(self.max_connections, MAX_CONNECTIONS)
        {
            issues.push(ConfigIssue::new("max_connections", problem));
        }
        if self.read_timeout.is_zero() {
            issues.push(ConfigIssue::new(
                "read_timeout",
                "must be greater than zero",
            ));
        }
        if let Err(problem) =
            siemflow_core::config::checks::count(self.batch_max_events, MAX_BATCH_EVENTS)
        {
            issues.push(ConfigIssue::new("batch_max_events", problem));
        }
        match (self.effective_mode(), &self.tls) {
            (Mode::Tls, None) => issues.push(
                ConfigIssue::new("tls", "mode = \"tls\" needs the listener's certificate")
                    .hint("tls = { crt_file = \"server.pem\", key_file = \"server.key\" }"),
            ),
            (Mode::Tls, Some(tls)) => issues.extend(tls.file_issues()),
            (_, Some(_)) => issues.push(
                ConfigIssue::new("tls", "is set but `mode` is not \"tls\"")
                    .hint("set mode = \"tls\", or remove the tls table"),
            ),
            (_, None) => {}
        }
        if self.effective_mode() == Mode::Udp && self.framing != Framing::Auto {
            issues.push(
                ConfigIssue::new("framing", "is not used with mode = \"udp\"")
                    .hint("one message per datagram; remove `framing`"),
            );
        }
        issues
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> SyslogSourceConfig {
        toml::from_str(text).expect("valid")
    }

    fn keys(config: &SyslogSourceConfig) -> Vec<String> {
        config.issues().into_iter().filter_map(|i| i.key).collect()
    }

    #[test]
    fn defaults_and_mode_from_the_tls_table() {
        let c = parse("address = \"127.0.0.1:514\"");
        assert_eq!(c.effective_mode(), Mode::Tcp);
        assert_eq!(c.max_message_bytes, 64 * 1024);
        assert_eq!(c.max_connections, 256);
        assert_eq!(c.read_timeout, Duration::from_secs(300));
        assert_eq!(c.decoding, SyslogDecoding::Text);
        assert!(c.issues().is_empty());
        let c = parse(
            "address = \"h:6514\"\ntls = { crt_file = \"/nope.pem\", key_file = \"/nope.key\" }",
        );
        assert_eq!(c.effective_mode(), Mode::Tls);
        assert_eq!(keys(&c), ["tls.crt_file", "tls.key_file"]);
    }

    #[test]
    fn refuses_what_cannot_work() {
        let c = parse("address = \"h:514\"\nmode = \"tls\"");
        assert_eq!(keys(&c), ["tls"]);
        let c = parse(
            "address = \"h:514\"\nmode = \"udp\"\nframing = \"newline\"\nmax_message_bytes = \"1MiB\"",
        );
        assert_eq!(keys(&c), ["framing"]);
        let c = parse(
            "address = \"\"\nmax_connections = 0\nread_timeout = \"0s\"\nmax_message_bytes = 0",
        );
        assert_eq!(
            keys(&c),
            [
                "address",
                "max_message_bytes",
                "max_connections",
                "read_timeout"
            ]
        );
        assert!(toml::from_str::<SyslogSourceConfig>("address = \"h:1\"\nport = 1").is_err());
    }
}
