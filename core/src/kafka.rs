//! How a Kafka client connects: the options the `kafka` sink and source share
//! (`bootstrap_servers`, `tls`, `sasl`, `event_hubs`), their checks, the librdkafka
//! properties they make and the OAUTHBEARER tokens from Entra ID.
//!
//! Properties are plain `(name, value)` pairs so core needs no librdkafka; each plugin
//! sets them on its own `ClientConfig`, then its own settings and `librdkafka_options`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::auth::{Cloud, EntraConfig, TokenProvider};
use crate::http::TlsConfig;
use crate::{ConfigIssue, Secret};

/// The Kafka port of an Event Hubs namespace.
pub const EVENT_HUBS_PORT: u16 = 9093;

/// The SASL PLAIN user name Event Hubs expects with a connection string as password.
pub const CONNECTION_STRING_USER: &str = "$ConnectionString";

/// Which client the properties are for: some of Microsoft's Event Hubs settings apply to
/// one of them only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KafkaClient {
    /// A producer (the `kafka` sink).
    Producer,
    /// A consumer in a group (the `kafka` source).
    Consumer,
}

/// `sasl`: how the client authenticates to the brokers.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(tag = "mechanism", deny_unknown_fields)]
pub enum SaslConfig {
    /// PLAIN: a user name and password (send only over TLS).
    #[serde(rename = "plain")]
    Plain {
        /// The user name.
        username: String,
        /// The password; never logged.
        password: Secret,
    },
    /// SCRAM-SHA-256.
    #[serde(rename = "scram-sha-256")]
    ScramSha256 {
        /// The user name.
        username: String,
        /// The password; never logged.
        password: Secret,
    },
    /// SCRAM-SHA-512.
    #[serde(rename = "scram-sha-512")]
    ScramSha512 {
        /// The user name.
        username: String,
        /// The password; never logged.
        password: Secret,
    },
    /// OAUTHBEARER with an Entra ID token of the app in `auth` (client credentials),
    /// fetched and refreshed by siemflow's own token provider.
    #[serde(rename = "oauthbearer")]
    Oauthbearer {
        /// The Entra app (tenant, client id, secret or certificate).
        auth: EntraConfig,
        /// The token's scope; default `https://<host of the first bootstrap server>/.default`.
        scope: Option<String>,
    },
}

impl SaslConfig {
    /// librdkafka's `sasl.mechanism` value.
    pub fn mechanism(&self) -> &'static str {
        match self {
            SaslConfig::Plain { .. } => "PLAIN",
            SaslConfig::ScramSha256 { .. } => "SCRAM-SHA-256",
            SaslConfig::ScramSha512 { .. } => "SCRAM-SHA-512",
            SaslConfig::Oauthbearer { .. } => "OAUTHBEARER",
        }
    }

    /// The user name and password, for the mechanisms that have them.
    pub fn credentials(&self) -> Option<(&str, &Secret)> {
        match self {
            SaslConfig::Plain { username, password }
            | SaslConfig::ScramSha256 { username, password }
            | SaslConfig::ScramSha512 { username, password } => Some((username, password)),
            SaslConfig::Oauthbearer { .. } => None,
        }
    }
}

/// `event_hubs`: the Kafka endpoint of an Azure Event Hubs namespace, with a connection
/// string (SASL PLAIN) or an Entra ID app (OAUTHBEARER); sets the address, TLS, SASL and
/// Microsoft's recommended client settings.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventHubsConfig {
    /// A shared access connection string, `Endpoint=sb://<namespace>.servicebus.windows.net/;
    /// SharedAccessKeyName=...;SharedAccessKey=...` (e.g. `"${EH_CONN}"`); never logged.
    /// Exactly one of `connection_string` and `namespace`.
    pub connection_string: Option<Secret>,
    /// The namespace for Entra ID: `"mynamespace"` (the host follows `auth.cloud`) or its
    /// host name `"mynamespace.servicebus.windows.net"`. Needs `auth`.
    pub namespace: Option<String>,
    /// The Entra app whose token (scope `https://<namespace host>/.default`) authenticates;
    /// it needs an "Azure Event Hubs Data Sender/Receiver" role.
    pub auth: Option<EntraConfig>,
    /// Connect here instead of `<namespace host>:9093`, e.g. a local stand-in such as
    /// `siemflow simulate event-hubs`; TLS and authentication stay as they are.
    pub bootstrap_servers: Option<String>,
}

/// The parts of an Event Hubs connection string siemflow reads.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionString {
    /// The namespace's host name, from `Endpoint=sb://<host>/`.
    pub host: String,
    /// `EntityPath`: the one event hub the string grants, if it is limited to one.
    pub entity_path: Option<String>,
}

impl std::fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionString")
            .field("host", &self.host)
            .field("entity_path", &self.entity_path)
            .finish_non_exhaustive()
    }
}

/// Why a connection string cannot be used; names the part, never shows a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConnectionStringError(String);

/// Reads an Event Hubs connection string (`Key=Value` parts separated by `;`, keys in
/// any case, as Azure's SDKs read them).
pub fn parse_connection_string(text: &str) -> Result<ConnectionString, ConnectionStringError> {
    let error = |message: String| Err(ConnectionStringError(message));
    let text = text.trim();
    if text.is_empty() {
        return error("is empty".into());
    }
    let mut parts: BTreeMap<String, &str> = BTreeMap::new();
    let pieces: Vec<&str> = text.split(';').filter(|p| !p.trim().is_empty()).collect();
    for (index, piece) in pieces.iter().enumerate() {
        // Only the key is ever named: the value may be the key itself.
        let Some((key, value)) = piece.split_once('=') else {
            return error(format!(
                "part {} of {} has no `=` (every part is Key=Value, separated by `;`)",
                index + 1,
                pieces.len()
            ));
        };
        let key = key.trim();
        if parts
            .insert(key.to_ascii_lowercase(), value.trim())
            .is_some()
        {
            return error(format!("`{key}` appears twice"));
        }
    }
    let Some(endpoint) = parts.get("endpoint") else {
        return error(
            "has no Endpoint part (Endpoint=sb://<namespace>.servicebus.windows.net/)".into(),
        );
    };
    let Some(rest) = endpoint
        .get(..5)
        .filter(|scheme| scheme.eq_ignore_ascii_case("sb://"))
        .map(|_| &endpoint[5..])
    else {
        return error(format!(
            "Endpoint `{endpoint}` does not start with sb:// (e.g. sb://mynamespace.servicebus.windows.net/)"
        ));
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host = authority
        .rsplit_once(':')
        .map_or(authority, |(host, _)| host);
    if host.is_empty() {
        return error(format!("Endpoint `{endpoint}` names no host"));
    }
    let key_name = parts.get("sharedaccesskeyname");
    let key = parts.get("sharedaccesskey");
    let signature = parts.get("sharedaccesssignature");
    match (key_name, key, signature) {
        (Some(_), Some(_), None) | (None, None, Some(_)) => {}
        (Some(_), None, None) => {
            return error("has SharedAccessKeyName but no SharedAccessKey".into());
        }
        (None, Some(_), None) => {
            return error("has SharedAccessKey but no SharedAccessKeyName".into());
        }
        (None, None, None) => {
            return error(
                "has no SharedAccessKeyName and SharedAccessKey (nor SharedAccessSignature)".into(),
            );
        }
        _ => {
            return error(
                "has both SharedAccessSignature and SharedAccessKeyName/SharedAccessKey".into(),
            );
        }
    }
    if [key_name, key, signature]
        .into_iter()
        .flatten()
        .any(|value| value.is_empty())
    {
        return error(
            "has an empty SharedAccessKeyName, SharedAccessKey or SharedAccessSignature".into(),
        );
    }
    let entity_path = match parts.get("entitypath") {
        Some(&"") => return error("has an empty EntityPath".into()),
        Some(path) => Some(path.to_string()),
        None => None,
    };
    Ok(ConnectionString {
        host: host.to_ascii_lowercase(),
        entity_path,
    })
}

/// The Event Hubs namespace host for `namespace` (a short name or a host name).
fn namespace_host(namespace: &str, cloud: Cloud) -> String {
    let namespace = namespace.trim().trim_end_matches('/');
    if namespace.contains('.') {
        return namespace.to_ascii_lowercase();
    }
    let suffix = match cloud {
        Cloud::Commercial | Cloud::Gcc => "servicebus.windows.net",
        Cloud::GccHigh | Cloud::Dod => "servicebus.usgovcloudapi.net",
    };
    format!("{}.{suffix}", namespace.to_ascii_lowercase())
}

/// librdkafka properties that `event_hubs` decides; `librdkafka_options` may not set them
/// beside it.
const EVENT_HUBS_PROPERTIES: &[&str] = &[
    "bootstrap.servers",
    "metadata.broker.list",
    "security.protocol",
    "sasl.mechanism",
    "sasl.mechanisms",
];

/// The codecs the Event Hubs Kafka endpoint takes.
const EVENT_HUBS_CODECS: &[&str] = &["none", "gzip"];

/// A kafka plugin's connection options, borrowed from its config.
#[derive(Clone, Copy)]
pub struct KafkaConnection<'a> {
    /// `bootstrap_servers`.
    pub bootstrap_servers: Option<&'a str>,
    /// `tls`.
    pub tls: Option<&'a TlsConfig>,
    /// `sasl`.
    pub sasl: Option<&'a SaslConfig>,
    /// `event_hubs`.
    pub event_hubs: Option<&'a EventHubsConfig>,
    /// The producer's compression codec (librdkafka's name), checked against Event Hubs'.
    pub compression: Option<&'a str>,
    /// `librdkafka_options`, checked for settings that contradict `event_hubs`.
    pub librdkafka_options: &'a BTreeMap<String, String>,
}

/// Where the client goes and how it proves who it is, resolved from the options.
enum Auth<'a> {
    None,
    Password {
        mechanism: &'static str,
        username: &'a str,
        password: &'a str,
    },
    Entra {
        auth: &'a EntraConfig,
        scope: String,
    },
}

impl<'a> KafkaConnection<'a> {
    /// Problems serde cannot see, keyed by the option at fault.
    pub fn issues(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        match self.event_hubs {
            None => match self.bootstrap_servers {
                None => issues.push(
                    ConfigIssue::new("bootstrap_servers", "is required (or set event_hubs)")
                        .hint("e.g. \"kafka1.example:9092,kafka2.example:9092\""),
                ),
                Some(servers) if servers.split(',').all(|s| s.trim().is_empty()) => issues.push(
                    ConfigIssue::new("bootstrap_servers", "is empty")
                        .hint("e.g. \"kafka1.example:9092,kafka2.example:9092\""),
                ),
                Some(_) => {}
            },
            Some(event_hubs) => issues.extend(self.event_hubs_issues(event_hubs)),
        }
        if let Some(tls) = self.tls {
            issues.extend(tls.check("tls"));
        }
        match self.sasl {
            Some(SaslConfig::Oauthbearer { auth, scope }) => {
                issues.extend(auth.check("sasl.auth"));
                if let Some(scope) = scope
                    && !scope.trim().ends_with("/.default")
                {
                    issues.push(
                        ConfigIssue::new("sasl.scope", "does not end with /.default")
                            .hint("e.g. \"https://mynamespace.servicebus.windows.net/.default\""),
                    );
                }
            }
            Some(sasl)
                if sasl
                    .credentials()
                    .is_some_and(|(user, _)| user.trim().is_empty()) =>
            {
                issues.push(ConfigIssue::new("sasl.username", "is empty"));
            }
            Some(_) | None => {}
        }
        issues
    }

    fn event_hubs_issues(&self, event_hubs: &EventHubsConfig) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        if self.bootstrap_servers.is_some() {
            issues.push(
                ConfigIssue::new(
                    "bootstrap_servers",
                    "contradicts event_hubs, which sets the address",
                )
                .hint("remove it; to connect to a local stand-in set event_hubs.bootstrap_servers"),
            );
        }
        if self.sasl.is_some() {
            issues.push(
                ConfigIssue::new("sasl", "contradicts event_hubs, which sets SASL")
                    .hint("use event_hubs.connection_string, or event_hubs.namespace with event_hubs.auth"),
            );
        }
        if let Some(tls) = self.tls
            && !tls.verify_certificate
            && event_hubs.bootstrap_servers.is_none()
        {
            issues.push(
                ConfigIssue::new(
                    "tls.verify_certificate",
                    "is false for Azure itself: the credentials would go to whoever answers",
                )
                .hint("turn it off only with event_hubs.bootstrap_servers pointing at a test stand-in"),
            );
        }
        match (&event_hubs.connection_string, &event_hubs.namespace, &event_hubs.auth) {
            (Some(connection), None, None) => {
                if let Err(error) = parse_connection_string(connection.expose()) {
                    issues.push(
                        ConfigIssue::new("event_hubs.connection_string", error.0).hint(
                            "copy it from the portal: Event Hubs namespace (or hub) > Shared access policies > a policy > Connection string-primary key",
                        ),
                    );
                }
            }
            (None, Some(namespace), Some(auth)) => {
                if namespace.trim().is_empty() {
                    issues.push(ConfigIssue::new("event_hubs.namespace", "is empty"));
                }
                issues.extend(auth.check("event_hubs.auth"));
            }
            (None, Some(_), None) => issues.push(
                ConfigIssue::new("event_hubs.auth", "is required with event_hubs.namespace")
                    .hint("{ tenant_id, client_id, client_secret } of an app with an Azure Event Hubs Data role"),
            ),
            (None, None, Some(_)) => issues.push(
                ConfigIssue::new("event_hubs.namespace", "is required with event_hubs.auth")
                    .hint("e.g. \"mynamespace\" or \"mynamespace.servicebus.windows.net\""),
            ),
            (None, None, None) => issues.push(
                ConfigIssue::new("event_hubs", "needs connection_string, or namespace with auth")
                    .hint("e.g. event_hubs = { connection_string = \"${EH_CONN}\" }"),
            ),
            (Some(_), _, _) => issues.push(
                ConfigIssue::new(
                    "event_hubs",
                    "has connection_string and namespace/auth: set one way to authenticate",
                )
                .hint("a connection string names its namespace itself"),
            ),
        }
        if let Some(servers) = &event_hubs.bootstrap_servers
            && servers.split(',').all(|s| s.trim().is_empty())
        {
            issues.push(ConfigIssue::new("event_hubs.bootstrap_servers", "is empty"));
        }
        let codecs = [
            ("compression", self.compression),
            (
                "librdkafka_options.compression.codec",
                self.librdkafka_options
                    .get("compression.codec")
                    .map(String::as_str),
            ),
            (
                "librdkafka_options.compression.type",
                self.librdkafka_options
                    .get("compression.type")
                    .map(String::as_str),
            ),
        ];
        for (key, codec) in codecs {
            if let Some(codec) = codec
                && !EVENT_HUBS_CODECS.contains(&codec.trim())
            {
                issues.push(
                    ConfigIssue::new(
                        key,
                        format!("`{codec}`: Event Hubs takes only none and gzip"),
                    )
                    .hint("compression = \"gzip\""),
                );
            }
        }
        for key in self.librdkafka_options.keys() {
            if EVENT_HUBS_PROPERTIES.contains(&key.as_str()) {
                issues.push(ConfigIssue::new(
                    &format!("librdkafka_options.{key}"),
                    "contradicts event_hubs, which sets it",
                ));
            }
        }
        issues
    }

    /// The connection string's `EntityPath`, the one event hub (topic) it grants.
    pub fn entity_path(&self) -> Option<String> {
        let connection = self.event_hubs?.connection_string.as_ref()?;
        parse_connection_string(connection.expose())
            .ok()?
            .entity_path
    }

    /// The Entra app and token scope, when the client authenticates with OAUTHBEARER.
    pub fn oauth(&self) -> Option<(&'a EntraConfig, String)> {
        match self.auth() {
            Auth::Entra { auth, scope } => Some((auth, scope)),
            Auth::None | Auth::Password { .. } => None,
        }
    }

    fn auth(&self) -> Auth<'a> {
        if let Some(event_hubs) = self.event_hubs {
            if let Some(connection) = &event_hubs.connection_string {
                return Auth::Password {
                    mechanism: "PLAIN",
                    username: CONNECTION_STRING_USER,
                    password: connection.expose(),
                };
            }
            if let (Some(namespace), Some(auth)) = (&event_hubs.namespace, &event_hubs.auth) {
                return Auth::Entra {
                    auth,
                    scope: format!("https://{}/.default", namespace_host(namespace, auth.cloud)),
                };
            }
            return Auth::None;
        }
        match self.sasl {
            None => Auth::None,
            Some(SaslConfig::Oauthbearer { auth, scope }) => Auth::Entra {
                auth,
                scope: match scope {
                    Some(scope) => scope.trim().to_string(),
                    None => format!("https://{}/.default", self.first_host()),
                },
            },
            Some(sasl) => match sasl.credentials() {
                Some((username, password)) => Auth::Password {
                    mechanism: sasl.mechanism(),
                    username,
                    password: password.expose(),
                },
                None => Auth::None,
            },
        }
    }

    fn first_host(&self) -> &'a str {
        let first = self
            .bootstrap_servers
            .unwrap_or_default()
            .split(',')
            .next()
            .unwrap_or_default()
            .trim();
        first.rsplit_once(':').map_or(first, |(host, _)| host)
    }

    /// `bootstrap.servers`: the option, or the Event Hubs namespace's Kafka endpoint (or
    /// its override).
    pub fn bootstrap(&self) -> String {
        let Some(event_hubs) = self.event_hubs else {
            return self
                .bootstrap_servers
                .unwrap_or_default()
                .trim()
                .to_string();
        };
        if let Some(servers) = &event_hubs.bootstrap_servers {
            return servers.trim().to_string();
        }
        let host = match (
            &event_hubs.connection_string,
            &event_hubs.namespace,
            &event_hubs.auth,
        ) {
            (Some(connection), _, _) => parse_connection_string(connection.expose())
                .map(|parsed| parsed.host)
                .unwrap_or_default(),
            (None, Some(namespace), auth) => namespace_host(
                namespace,
                auth.as_ref().map(|a| a.cloud).unwrap_or_default(),
            ),
            (None, None, _) => String::new(),
        };
        format!("{host}:{EVENT_HUBS_PORT}")
    }

    /// The librdkafka properties of the connection (address, TLS, SASL and, for Event Hubs,
    /// Microsoft's recommended client settings). Holds the password: never log it.
    pub fn properties(&self, client: KafkaClient) -> Vec<(&'static str, String)> {
        let mut properties = vec![
            ("bootstrap.servers", self.bootstrap()),
            // Keep idle connections alive: Event Hubs closes them after 240 s.
            ("socket.keepalive.enable", "true".to_string()),
        ];
        let auth = self.auth();
        let tls = match (self.tls, self.event_hubs) {
            (Some(tls), _) => Some(tls.clone()),
            // Event Hubs is TLS only, verified against the system's CAs.
            (None, Some(_)) => Some(TlsConfig::default()),
            (None, None) => None,
        };
        let protocol = match (tls.is_some(), matches!(auth, Auth::None)) {
            (false, true) => "plaintext",
            (true, true) => "ssl",
            (false, false) => "sasl_plaintext",
            (true, false) => "sasl_ssl",
        };
        properties.push(("security.protocol", protocol.to_string()));
        if let Some(tls) = &tls {
            properties.push((
                "ssl.ca.location",
                match &tls.ca_file {
                    Some(path) => path.display().to_string(),
                    // OpenSSL is built into the binary with no CA folder of its own: let
                    // librdkafka find the system's.
                    None => "probe".to_string(),
                },
            ));
            if let Some(path) = &tls.crt_file {
                properties.push(("ssl.certificate.location", path.display().to_string()));
            }
            if let Some(path) = &tls.key_file {
                properties.push(("ssl.key.location", path.display().to_string()));
            }
            properties.push((
                "enable.ssl.certificate.verification",
                tls.verify_certificate.to_string(),
            ));
            properties.push((
                "ssl.endpoint.identification.algorithm",
                if tls.verify_certificate {
                    "https"
                } else {
                    "none"
                }
                .to_string(),
            ));
        }
        match auth {
            Auth::None => {}
            Auth::Password {
                mechanism,
                username,
                password,
            } => {
                properties.push(("sasl.mechanism", mechanism.to_string()));
                properties.push(("sasl.username", username.to_string()));
                properties.push(("sasl.password", password.to_string()));
            }
            Auth::Entra { .. } => properties.push(("sasl.mechanism", "OAUTHBEARER".to_string())),
        }
        if self.event_hubs.is_some() {
            // Microsoft's recommended librdkafka settings for the Kafka endpoint: Azure
            // closes connections idle for 240 s, and enforces a 20 s request minimum.
            properties.push(("metadata.max.age.ms", "180000".to_string()));
            match client {
                KafkaClient::Producer => {
                    properties.push(("request.timeout.ms", "60000".to_string()))
                }
                KafkaClient::Consumer => {
                    properties.push(("session.timeout.ms", "30000".to_string()))
                }
            }
        }
        properties
    }
}

/// An OAUTHBEARER token for librdkafka (the fields of rdkafka's `OAuthToken`).
pub struct BearerToken {
    /// The access token.
    pub token: String,
    /// Who the token is for, for librdkafka's logs: the app's client id.
    pub principal_name: String,
    /// When it expires, in milliseconds since the Unix epoch.
    pub lifetime_ms: i64,
}

/// How long one token request may take.
const TOKEN_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// OAUTHBEARER tokens from siemflow's Entra token provider, for librdkafka's token
/// callback.
pub struct OAuthTokens {
    tokens: TokenProvider,
    /// The runtime the provider's requests run on (librdkafka asks from its own thread).
    runtime: tokio::runtime::Handle,
    principal: String,
}

impl OAuthTokens {
    /// A provider for `auth`'s tokens of `scope`; must be called inside a Tokio runtime.
    pub fn new(auth: &EntraConfig, scope: &str) -> anyhow::Result<Self> {
        let http = crate::http::client(&TlsConfig::default(), TOKEN_REQUEST_TIMEOUT, None)?;
        let tokens = TokenProvider::new(auth, scope, http)
            .map_err(|error| anyhow::anyhow!("OAUTHBEARER auth: {error}"))?;
        Ok(OAuthTokens {
            tokens,
            runtime: tokio::runtime::Handle::try_current().map_err(|_| {
                anyhow::anyhow!("the Kafka client is built outside a Tokio runtime")
            })?,
            principal: auth.client_id.trim().to_string(),
        })
    }

    /// A token (fetched, or taken from the cache) on a thread of its own, so librdkafka's
    /// thread can wait for it whatever thread it is.
    pub fn token(&self) -> Result<BearerToken, String> {
        let tokens = self.tokens.clone();
        let runtime = self.runtime.clone();
        let token = std::thread::spawn(move || runtime.block_on(tokens.token()))
            .join()
            .map_err(|_| "the token request panicked".to_string())?
            .map_err(|error| format!("Entra token for OAUTHBEARER: {error}"))?;
        let lifetime_ms = token
            .expires_at()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        Ok(BearerToken {
            token: token.bearer().to_string(),
            principal_name: self.principal.clone(),
            lifetime_ms,
        })
    }
}

#[cfg(test)]
mod tests;
