//! The `syslog` sink's options and what serde cannot check about them.

use std::time::Duration;

use serde::Deserialize;
use siemflow_core::delivery::RetryConfig;
use siemflow_core::http::TlsConfig;
use siemflow_core::{ConfigIssue, Value};

use crate::duration;

/// Options of the `syslog` sink.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SyslogSinkConfig {
    /// Required. The receiver as `host:port` (IPv6 as `[::1]:514`).
    pub address: String,
    /// `"tcp"`, `"tls"` or `"udp"`. Default: `"tls"` when a `tls` table is given, else `"tcp"`.
    #[serde(default)]
    pub mode: Option<Mode>,
    /// TLS options (`ca_file`, `crt_file`, `key_file`, `verify_certificate`); setting the
    /// table selects `mode = "tls"`. The server certificate is verified by default.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// The name the server certificate must carry, when it differs from the host in
    /// `address` (default: that host).
    #[serde(default)]
    pub tls_server_name: Option<String>,
    /// `"rfc5424"` (default) or `"rfc3164"` (BSD syslog).
    #[serde(default)]
    pub format: Format,
    /// TCP/TLS framing: `"octet_counting"` (RFC 6587/5425, default for `rfc5424`) or
    /// `"newline"` (LF after each message; default for `rfc3164`). Not used with UDP.
    #[serde(default)]
    pub framing: Option<Framing>,
    /// `"message"` (default): the event's `message` field, e.g. a CEF or LEEF line from the
    /// `cef`/`leef` transforms (events without one are sent as JSON, counted); `"json"`:
    /// the whole event as compact JSON.
    #[serde(default)]
    pub encoding: Payload,
    /// Syslog facility by name (default `"user"`): kern, user, mail, daemon, auth, syslog,
    /// lpr, news, uucp, cron, authpriv, ftp, ntp, security, console, solaris_cron, local0–local7.
    #[serde(default)]
    pub facility: Facility,
    /// Syslog severity by name (default `"informational"`): emergency, alert, critical,
    /// error, warning, notice, informational, debug.
    #[serde(default)]
    pub severity: Severity,
    /// A field (VRL path, e.g. `".syslog_facility"`) whose value — a name or a number —
    /// sets the facility per event; the fixed `facility` is used when it is unusable (counted).
    #[serde(default)]
    pub facility_field: Option<String>,
    /// A field whose value — a name (`"warning"`, `"err"`) or a number 0–7 — sets the
    /// severity per event; the fixed `severity` is used when it is unusable (counted).
    #[serde(default)]
    pub severity_field: Option<String>,
    /// APP-NAME (RFC 5424, at most 48 printable ASCII characters) and TAG (RFC 3164, at
    /// most 32 letters and digits). Default `"siemflow"`. Empty: `-`, and no TAG in RFC 3164.
    #[serde(default = "default_app_name")]
    pub app_name: String,
    /// HOSTNAME; default the machine's host name. SIEMs use it to identify the log source
    /// (QRadar's Log Source Identifier), so keep it stable.
    #[serde(default)]
    pub hostname: Option<String>,
    /// PROCID; default this process's id. Empty: `-` (and no `[pid]` in RFC 3164).
    #[serde(default)]
    pub proc_id: Option<String>,
    /// MSGID (RFC 5424 only, at most 32 characters); default `-`.
    #[serde(default)]
    pub msg_id: Option<String>,
    /// Escape control characters inside the payload (CR, LF, NUL as `\r`, `\n`, `\0`, the
    /// rest as `\uHHHH`; default `true`), so a value cannot end the message and start a
    /// forged one, nor drive a terminal. Required with `newline` framing.
    #[serde(default = "yes")]
    pub escape_newlines: bool,
    /// UDP: a message longer than this is fragmented by IP and easily lost; it is counted
    /// and warned about (once). Default 1432 bytes (fits a 1500-byte Ethernet MTU over IPv4
    /// or IPv6 with room for a tunnel header).
    #[serde(default = "default_max_datagram_bytes")]
    pub max_datagram_bytes: usize,
    /// UDP: what to do with such a message: `"send"` (default; sent whole) or `"truncate"`
    /// (cut to `max_datagram_bytes`, counted).
    #[serde(default)]
    pub oversize: Oversize,
    /// Connecting (TCP handshake plus TLS handshake) gives up after this long (default `"10s"`).
    #[serde(
        default = "default_connect_timeout",
        deserialize_with = "siemflow_core::units::duration",
        serialize_with = "duration::serialize"
    )]
    #[schemars(with = "String")]
    pub connect_timeout: Duration,
    /// Writing one batch gives up after this long (a receiver that stopped reading);
    /// the connection is then dropped and the batch retried (default `"30s"`).
    #[serde(
        default = "default_write_timeout",
        deserialize_with = "siemflow_core::units::duration",
        serialize_with = "duration::serialize"
    )]
    #[schemars(with = "String")]
    pub write_timeout: Duration,
    /// How a batch whose send failed is retried, the same table as the HTTP sinks':
    /// `initial_backoff` (default `"1s"`, doubling with jitter), `max_backoff` (`"30s"`)
    /// and `max_duration` (`"15m"`): after that long the batch's events are failed (their
    /// source reads them again) and counted, never dropped.
    #[serde(default)]
    pub retry: RetryConfig,
}

/// The transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Plain TCP.
    Tcp,
    /// TCP with TLS (RFC 5425), certificates verified by default.
    Tls,
    /// UDP (RFC 5426), one message per datagram, no delivery guarantee.
    Udp,
}

/// The message format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - MSG`.
    #[default]
    Rfc5424,
    /// `<PRI>Mmm dd hh:mm:ss HOSTNAME TAG[PID]: MSG`.
    Rfc3164,
}

/// How messages are delimited on a TCP or TLS stream (RFC 6587).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Framing {
    /// `LEN SP MSG`: safe for any payload; what RFC 5425 (TLS) requires.
    OctetCounting,
    /// `MSG LF`: what most CEF/LEEF collectors (ArcSight, QRadar) read on plain TCP.
    Newline,
}

/// What the message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Payload {
    /// The `message` field as it is.
    #[default]
    Message,
    /// The whole event as compact JSON.
    Json,
}

/// What UDP does with a message longer than `max_datagram_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Oversize {
    /// Send it whole; IP fragments it.
    #[default]
    Send,
    /// Cut it to `max_datagram_bytes`.
    Truncate,
}

/// Syslog facilities (RFC 5424 table 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum Facility {
    Kern,
    #[default]
    User,
    Mail,
    Daemon,
    Auth,
    Syslog,
    Lpr,
    News,
    Uucp,
    Cron,
    Authpriv,
    Ftp,
    Ntp,
    /// log audit (13)
    Security,
    /// log alert (14)
    Console,
    SolarisCron,
    Local0,
    Local1,
    Local2,
    Local3,
    Local4,
    Local5,
    Local6,
    Local7,
}

const FACILITIES: [Facility; 24] = [
    Facility::Kern,
    Facility::User,
    Facility::Mail,
    Facility::Daemon,
    Facility::Auth,
    Facility::Syslog,
    Facility::Lpr,
    Facility::News,
    Facility::Uucp,
    Facility::Cron,
    Facility::Authpriv,
    Facility::Ftp,
    Facility::Ntp,
    Facility::Security,
    Facility::Console,
    Facility::SolarisCron,
    Facility::Local0,
    Facility::Local1,
    Facility::Local2,
    Facility::Local3,
    Facility::Local4,
    Facility::Local5,
    Facility::Local6,
    Facility::Local7,
];

impl Facility {
    /// The facility number 0–23.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// A facility from an event value: a number 0–23 or a name (any case).
    pub fn from_value(value: &Value) -> Option<Facility> {
        match value {
            Value::Integer(n) => usize::try_from(*n)
                .ok()
                .and_then(|n| FACILITIES.get(n))
                .copied(),
            Value::String(_) | Value::Bytes(_) => {
                let name = value_text(value)?.trim().to_ascii_lowercase();
                let name = name.replace('-', "_");
                FACILITIES
                    .iter()
                    .copied()
                    .find(|f| serde_name(f).is_some_and(|n| n == name))
            }
            _ => None,
        }
    }
}

/// Syslog severities (RFC 5424 table 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum Severity {
    #[serde(alias = "emerg", alias = "panic")]
    Emergency,
    Alert,
    #[serde(alias = "crit")]
    Critical,
    #[serde(alias = "err")]
    Error,
    #[serde(alias = "warn")]
    Warning,
    Notice,
    #[default]
    #[serde(alias = "info")]
    Informational,
    Debug,
}

const SEVERITIES: [Severity; 8] = [
    Severity::Emergency,
    Severity::Alert,
    Severity::Critical,
    Severity::Error,
    Severity::Warning,
    Severity::Notice,
    Severity::Informational,
    Severity::Debug,
];

impl Severity {
    /// The severity number 0–7.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// A severity from an event value: a number 0–7 or a name or alias (any case).
    pub fn from_value(value: &Value) -> Option<Severity> {
        match value {
            Value::Integer(n) => usize::try_from(*n)
                .ok()
                .and_then(|n| SEVERITIES.get(n))
                .copied(),
            Value::String(_) | Value::Bytes(_) => {
                let name = value_text(value)?.trim().to_ascii_lowercase();
                serde_json::from_value(serde_json::Value::String(name)).ok()
            }
            _ => None,
        }
    }
}

/// The text of a string (or UTF-8 bytes) value.
fn value_text(value: &Value) -> Option<&str> {
    match value {
        Value::String(text) => Some(&**text),
        Value::Bytes(bytes) => std::str::from_utf8(bytes).ok(),
        _ => None,
    }
}

/// The snake_case name serde gives a unit variant.
fn serde_name<T: serde::Serialize + ?Sized>(value: &T) -> Option<String> {
    match serde_json::to_value(value).ok()? {
        serde_json::Value::String(name) => Some(name),
        _ => None,
    }
}

impl serde::Serialize for Facility {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let name = match self {
            Facility::Kern => "kern",
            Facility::User => "user",
            Facility::Mail => "mail",
            Facility::Daemon => "daemon",
            Facility::Auth => "auth",
            Facility::Syslog => "syslog",
            Facility::Lpr => "lpr",
            Facility::News => "news",
            Facility::Uucp => "uucp",
            Facility::Cron => "cron",
            Facility::Authpriv => "authpriv",
            Facility::Ftp => "ftp",
            Facility::Ntp => "ntp",
            Facility::Security => "security",
            Facility::Console => "console",
            Facility::SolarisCron => "solaris_cron",
            Facility::Local0 => "local0",
            Facility::Local1 => "local1",
            Facility::Local2 => "local2",
            Facility::Local3 => "local3",
            Facility::Local4 => "local4",
            Facility::Local5 => "local5",
            Facility::Local6 => "local6",
            Facility::Local7 => "local7",
        };
        s.serialize_str(name)
    }
}

fn yes() -> bool {
    true
}

fn default_app_name() -> String {
    "siemflow".to_string()
}

fn default_max_datagram_bytes() -> usize {
    1432
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_write_timeout() -> Duration {
    Duration::from_secs(30)
}

/// RFC 5426: what every IPv4 receiver must accept.
pub(crate) const MIN_DATAGRAM_BYTES: usize = 480;
/// The largest UDP payload over IPv4 (65,535 − 20 − 8).
pub(crate) const MAX_UDP_PAYLOAD: usize = 65_507;

impl SyslogSinkConfig {
    /// The transport in effect: `mode`, or TLS when a `tls` table is given, else TCP.
    pub fn effective_mode(&self) -> Mode {
        match (self.mode, &self.tls) {
            (Some(mode), _) => mode,
            (None, Some(_)) => Mode::Tls,
            (None, None) => Mode::Tcp,
        }
    }

    /// The framing in effect on a stream; `None` for UDP.
    pub fn effective_framing(&self) -> Option<Framing> {
        if self.effective_mode() == Mode::Udp {
            return None;
        }
        Some(self.framing.unwrap_or(match self.format {
            Format::Rfc5424 => Framing::OctetCounting,
            Format::Rfc3164 => Framing::Newline,
        }))
    }

    /// Everything serde cannot see.
    pub fn issues(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        if let Err(message) = split_address(&self.address) {
            issues.push(ConfigIssue::new("address", message).hint("e.g. \"siem.example:6514\""));
        }
        let mode = self.effective_mode();
        match (mode, &self.tls) {
            (Mode::Tls, Some(tls)) => issues.extend(tls.check("tls")),
            (Mode::Tls, None) => {}
            (_, Some(_)) => issues.push(
                ConfigIssue::new("tls", "is set but `mode` is not \"tls\"")
                    .hint("set mode = \"tls\", or remove the tls table"),
            ),
            (_, None) => {}
        }
        if self.tls_server_name.is_some() && mode != Mode::Tls {
            issues.push(ConfigIssue::new(
                "tls_server_name",
                "is only used with mode = \"tls\"",
            ));
        }
        if let Some(name) = &self.tls_server_name
            && rustls_pki_types::ServerName::try_from(name.as_str()).is_err()
        {
            issues.push(ConfigIssue::new(
                "tls_server_name",
                format!("`{name}` is not a DNS name or IP address"),
            ));
        }
        if mode == Mode::Udp && self.framing.is_some() {
            issues.push(
                ConfigIssue::new(
                    "framing",
                    "does not apply to UDP (one message per datagram)",
                )
                .hint("remove it, or use mode = \"tcp\" or \"tls\""),
            );
        }
        if self.effective_framing() == Some(Framing::Newline) && !self.escape_newlines {
            issues.push(
                ConfigIssue::new(
                    "escape_newlines",
                    "must be true with newline framing: a line break inside a message would start a new one",
                )
                .hint("remove escape_newlines, or use framing = \"octet_counting\""),
            );
        }
        for (key, path) in [
            ("facility_field", &self.facility_field),
            ("severity_field", &self.severity_field),
        ] {
            if let Some(path) = path
                && let Err(error) = vrl::path::parse_value_path(path)
            {
                issues.push(
                    ConfigIssue::new(key, format!("`{path}` is not a field path ({error})"))
                        .hint("e.g. \".severity\""),
                );
            }
        }
        if !(MIN_DATAGRAM_BYTES..=MAX_UDP_PAYLOAD).contains(&self.max_datagram_bytes) {
            issues.push(ConfigIssue::new(
                "max_datagram_bytes",
                format!(
                    "must be between {MIN_DATAGRAM_BYTES} (what every receiver accepts) and {MAX_UDP_PAYLOAD} (the largest UDP payload)"
                ),
            ));
        }
        for (key, value) in [
            ("connect_timeout", self.connect_timeout),
            ("write_timeout", self.write_timeout),
        ] {
            if value.is_zero() {
                issues.push(ConfigIssue::new(key, "must be longer than 0s"));
            }
        }
        issues.extend(self.retry.check());
        issues
    }
}

/// Splits `host:port`; the host keeps no brackets.
pub(crate) fn split_address(address: &str) -> Result<(String, u16), String> {
    siemflow_core::config::checks::connect_address(address)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> SyslogSinkConfig {
        toml::from_str(toml_text).expect("valid syslog config")
    }

    fn keys(config: &SyslogSinkConfig) -> Vec<String> {
        config.issues().into_iter().filter_map(|i| i.key).collect()
    }

    #[test]
    fn defaults() {
        let c = parse(r#"address = "siem.example:514""#);
        assert_eq!(c.effective_mode(), Mode::Tcp);
        assert_eq!(c.format, Format::Rfc5424);
        assert_eq!(c.effective_framing(), Some(Framing::OctetCounting));
        assert_eq!(c.facility, Facility::User);
        assert_eq!(c.severity, Severity::Informational);
        assert!(c.escape_newlines);
        assert_eq!(c.max_datagram_bytes, 1432);
        assert_eq!(c.retry.max_duration, Duration::from_secs(900));
        assert!(c.issues().is_empty());
        let c = parse("address = \"h:514\"\nformat = \"rfc3164\"");
        assert_eq!(c.effective_framing(), Some(Framing::Newline));
        let c = parse("address = \"h:6514\"\ntls = {}");
        assert_eq!(c.effective_mode(), Mode::Tls);
        assert!(c.tls.as_ref().is_some_and(|t| t.verify_certificate));
        let c = parse("address = \"h:514\"\nmode = \"udp\"");
        assert_eq!(c.effective_framing(), None);
    }

    #[test]
    fn names_and_aliases() {
        let c = parse(
            "address = \"h:514\"\nfacility = \"local7\"\nseverity = \"warn\"\nretry = { max_duration = \"5m\" }",
        );
        assert_eq!(c.facility.code(), 23);
        assert_eq!(c.severity.code(), 4);
        assert_eq!(c.retry.max_duration, Duration::from_secs(300));
        assert!(
            toml::from_str::<SyslogSinkConfig>("address = \"h:1\"\nfacility = \"nope\"").is_err()
        );
        assert!(toml::from_str::<SyslogSinkConfig>("address = \"h:1\"\nport = 1").is_err());
        assert_eq!(Facility::from_value(&Value::from("LOG-AUDIT")), None);
        assert_eq!(
            Facility::from_value(&Value::from("Solaris-Cron")),
            Some(Facility::SolarisCron)
        );
        assert_eq!(
            Severity::from_value(&Value::from("CRIT")),
            Some(Severity::Critical)
        );
        assert_eq!(Severity::from_value(&Value::from(8)), None);
    }

    #[test]
    fn conflicting_options_are_reported_at_their_key() {
        assert_eq!(keys(&parse(r#"address = "nohost""#)), ["address"]);
        assert_eq!(keys(&parse(r#"address = "::1:514""#)), ["address"]);
        assert!(keys(&parse(r#"address = "[::1]:514""#)).is_empty());
        assert_eq!(
            keys(&parse(
                "address = \"h:514\"\nmode = \"udp\"\ntls = {}\nframing = \"newline\""
            )),
            ["tls", "framing"]
        );
        assert_eq!(
            keys(&parse(
                "address = \"h:514\"\nframing = \"newline\"\nescape_newlines = false"
            )),
            ["escape_newlines"]
        );
        assert!(
            keys(&parse(
                "address = \"h:514\"\nframing = \"octet_counting\"\nescape_newlines = false"
            ))
            .is_empty()
        );
        assert_eq!(
            keys(&parse(
                "address = \"h:514\"\nseverity_field = \".a[\"\nmax_datagram_bytes = 100"
            )),
            ["severity_field", "max_datagram_bytes"]
        );
        assert_eq!(
            keys(&parse(
                "address = \"h:514\"\ntls_server_name = \"x\"\nretry = { max_backoff = \"1ms\" }"
            )),
            ["tls_server_name", "retry.max_backoff"]
        );
        assert_eq!(
            keys(&parse(
                "address = \"h:514\"\ntls = { ca_file = \"/nonexistent/ca.pem\" }"
            )),
            ["tls.ca_file"]
        );
    }
}
