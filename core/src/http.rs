//! The HTTP client every Microsoft source and HTTP sink shares: rustls, gzip, our User-Agent, TLS options.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde::Deserialize;

use crate::ConfigIssue;

/// What siemflow calls itself on the wire.
pub const USER_AGENT: &str = concat!("siemflow/", env!("CARGO_PKG_VERSION"));

/// Connecting should never take as long as a whole slow response may.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS options of an HTTP client (`tls = { ... }` in a plugin's config).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of extra CA certificates to trust, besides the system's.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate for mutual TLS.
    pub crt_file: Option<PathBuf>,
    /// PEM private key of `crt_file` (if not in `crt_file` itself).
    pub key_file: Option<PathBuf>,
    /// Verify the server's certificate and host name; turn off only for a test peer (logged as a warning).
    #[serde(default = "yes")]
    pub verify_certificate: bool,
}

/// Verification is on unless a config turns it off explicitly, including for `TlsConfig::default()`.
impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            ca_file: None,
            crt_file: None,
            key_file: None,
            verify_certificate: true,
        }
    }
}

fn yes() -> bool {
    true
}

impl TlsConfig {
    /// Problems serde cannot see (missing files, a key without a certificate), keys prefixed with `prefix`.
    pub fn check(&self, prefix: &str) -> Vec<ConfigIssue> {
        let key = |name: &str| match prefix.trim_end_matches('.') {
            "" => name.to_string(),
            prefix => format!("{prefix}.{name}"),
        };
        let mut issues = Vec::new();
        for (name, path) in [
            ("ca_file", &self.ca_file),
            ("crt_file", &self.crt_file),
            ("key_file", &self.key_file),
        ] {
            if let Some(path) = path
                && !path.is_file()
            {
                issues.push(ConfigIssue::new(
                    &key(name),
                    format!("{} is not a readable file", path.display()),
                ));
            }
        }
        if self.key_file.is_some() && self.crt_file.is_none() {
            issues.push(
                ConfigIssue::new(&key("key_file"), "key_file is set without crt_file")
                    .hint("set crt_file to the client certificate the key belongs to"),
            );
        }
        issues
    }
}

/// Builds a client: rustls, gzip, a User-Agent "siemflow/<version>", `timeout` per request, an optional proxy URL.
pub fn client(
    tls: &TlsConfig,
    timeout: Duration,
    proxy: Option<&str>,
) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .gzip(true)
        .timeout(timeout)
        .connect_timeout(timeout.min(MAX_CONNECT_TIMEOUT));
    if let Some(ca_file) = &tls.ca_file {
        builder = builder.tls_certs_merge(ca_certificates(ca_file)?);
    }
    match (&tls.crt_file, &tls.key_file) {
        (Some(crt_file), key_file) => {
            let mut pem = read(crt_file, "tls.crt_file")?;
            if let Some(key_file) = key_file {
                pem.push(b'\n');
                pem.extend(read(key_file, "tls.key_file")?);
            }
            let identity = reqwest::Identity::from_pem(&pem).with_context(|| {
                format!(
                    "tls.crt_file {} (with its key) is not a PEM certificate and private key",
                    crt_file.display()
                )
            })?;
            builder = builder.identity(identity);
        }
        (None, Some(_)) => bail!("tls.key_file is set without tls.crt_file"),
        (None, None) => {}
    }
    if !tls.verify_certificate {
        tracing::warn!(
            "tls.verify_certificate = false: server certificates are not checked, so anyone on the path can read and change this traffic"
        );
        builder = builder.tls_danger_accept_invalid_certs(true);
    }
    if let Some(proxy) = proxy {
        // The URL may carry proxy credentials: keep it out of the error.
        let proxy = reqwest::Proxy::all(proxy)
            .map_err(|e| anyhow::anyhow!("the proxy is not a valid URL: {}", e.without_url()))?;
        builder = builder.proxy(proxy);
    }
    builder.build().context("cannot build the HTTP client")
}

fn read(path: &Path, what: &'static str) -> anyhow::Result<Vec<u8>> {
    Ok(crate::fs::read_bounded(
        path,
        crate::fs::CERTIFICATE_FILE_LIMIT,
        what,
    )?)
}

fn ca_certificates(path: &Path) -> anyhow::Result<Vec<reqwest::Certificate>> {
    let bytes = read(path, "tls.ca_file")?;
    let certificates = if bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        reqwest::Certificate::from_pem_bundle(&bytes)
    } else {
        reqwest::Certificate::from_der(&bytes).map(|c| vec![c])
    }
    .with_context(|| {
        format!(
            "tls.ca_file {} is not a PEM or DER certificate",
            path.display()
        )
    })?;
    if certificates.is_empty() {
        bail!("tls.ca_file {} holds no certificate", path.display());
    }
    Ok(certificates)
}

/// Why `url` cannot be an endpoint we send credentials or data to, if it cannot (see
/// [`crate::config::checks::endpoint_url`], which holds the rules).
pub fn endpoint_url_problem(url: &str) -> Option<String> {
    crate::config::checks::endpoint_url(url).err()
}

/// The wait a `Retry-After` header asks for: delay-seconds or an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = chrono::DateTime::parse_from_rfc2822(text).ok()?;
    let when = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(when.timestamp()).ok()?);
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/auth")).join(name)
    }

    #[test]
    fn verification_is_on_by_default() {
        assert!(TlsConfig::default().verify_certificate);
        let parsed: TlsConfig = toml::from_str("").unwrap();
        assert!(parsed.verify_certificate);
        let off: TlsConfig = toml::from_str("verify_certificate = false").unwrap();
        assert!(!off.verify_certificate);
        assert!(toml::from_str::<TlsConfig>("verify = false").is_err());
    }

    #[test]
    fn builds_with_every_option() {
        let tls = TlsConfig {
            ca_file: Some(fixture("cert.pem")),
            crt_file: Some(fixture("cert.pem")),
            key_file: Some(fixture("key.pem")),
            verify_certificate: false,
        };
        assert!(tls.check("tls").is_empty());
        client(
            &tls,
            Duration::from_secs(30),
            Some("http://user:pw@127.0.0.1:3128"),
        )
        .unwrap();
        client(&TlsConfig::default(), Duration::from_secs(30), None).unwrap();
    }

    #[test]
    fn bad_options_are_errors() {
        let missing = TlsConfig {
            ca_file: Some(fixture("missing.pem")),
            ..TlsConfig::default()
        };
        assert_eq!(missing.check("tls")[0].key.as_deref(), Some("tls.ca_file"));
        assert!(client(&missing, Duration::from_secs(1), None).is_err());
        let key_only = TlsConfig {
            key_file: Some(fixture("key.pem")),
            ..TlsConfig::default()
        };
        assert_eq!(key_only.check("")[0].key.as_deref(), Some("key_file"));
        assert!(client(&key_only, Duration::from_secs(1), None).is_err());
        let not_a_cert = TlsConfig {
            ca_file: Some(fixture("README.md")),
            ..TlsConfig::default()
        };
        assert!(client(&not_a_cert, Duration::from_secs(1), None).is_err());
        let proxy_error = client(
            &TlsConfig::default(),
            Duration::from_secs(1),
            Some("::user:s3cret@"),
        )
        .unwrap_err();
        assert!(!format!("{proxy_error:#}").contains("s3cret"));
    }

    #[test]
    fn retry_after_forms() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, "120".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(120)));
        headers.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(
            retry_after(&headers),
            Some(Duration::ZERO),
            "a past date means now"
        );
        let future = chrono::Utc::now() + chrono::Duration::seconds(90);
        headers.insert(RETRY_AFTER, future.to_rfc2822().parse().unwrap());
        let wait = retry_after(&headers).unwrap();
        assert!(
            wait <= Duration::from_secs(90) && wait >= Duration::from_secs(85),
            "{wait:?}"
        );
        headers.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn user_agent_names_the_version() {
        assert!(USER_AGENT.starts_with("siemflow/"));
        assert!(USER_AGENT.len() > "siemflow/".len());
    }
}

#[cfg(test)]
mod endpoint_tests {
    use super::endpoint_url_problem;

    #[test]
    fn plain_http_only_to_loopback() {
        assert_eq!(endpoint_url_problem("https://manage.office.com"), None);
        assert_eq!(endpoint_url_problem("http://127.0.0.1:8365"), None);
        assert_eq!(endpoint_url_problem("http://[::1]:8365"), None);
        assert_eq!(endpoint_url_problem("http://localhost:8365/x"), None);
        assert!(endpoint_url_problem("http://manage.office.com").is_some());
        assert!(endpoint_url_problem("http://10.0.0.5").is_some());
        assert!(endpoint_url_problem("ftp://example.com").is_some());
        assert!(endpoint_url_problem("not a url").is_some());
    }
}
