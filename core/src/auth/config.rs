//! The `auth` table of a plugin's config and the checks serde cannot make.

use std::path::PathBuf;

use serde::Deserialize;

use super::cloud::Cloud;
use super::error::looks_like_guid;
use crate::{ConfigIssue, Secret};

/// Entra app credentials as they appear in a plugin's config (a nested table, e.g. `[sources.x.auth]` or per tenant).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EntraConfig {
    /// Directory (tenant) ID: a GUID, or a verified domain such as `contoso.onmicrosoft.com`.
    pub tenant_id: String,
    /// Application (client) ID of the app registration (a GUID).
    pub client_id: String,
    /// The client secret's Value; exactly one of `client_secret` and `certificate`.
    pub client_secret: Option<Secret>,
    /// A certificate whose public part is uploaded to the app registration; exactly one of `client_secret` and `certificate`.
    pub certificate: Option<CertificateConfig>,
    /// The national cloud the tenant lives in; picks the login and API hosts.
    #[serde(default)]
    pub cloud: Cloud,
    /// Overrides the authority host (e.g. `http://127.0.0.1:8089` for the simulator); default from `cloud`.
    pub login_url: Option<String>,
}

/// A certificate credential: the private key signs a short-lived JWT instead of sending a secret.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    /// PEM with the certificate (and the key, unless `key_path`) — or a PKCS#12 (`.p12`/`.pfx`) file.
    pub path: PathBuf,
    /// PEM private key (PKCS#8 or PKCS#1) when it is not in `path`.
    pub key_path: Option<PathBuf>,
    /// The PKCS#12 file's password (none means empty).
    pub password: Option<Secret>,
    /// How the assertion is signed and which thumbprint it names.
    #[serde(default)]
    pub signature: SignatureStyle,
}

/// The JWT signature algorithm and certificate thumbprint header of a client assertion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum SignatureStyle {
    /// RSASSA-PSS with SHA-256 and an `x5t#S256` (SHA-256 thumbprint) header: what Microsoft documents today.
    #[default]
    Ps256,
    /// RSASSA-PKCS1-v1_5 with SHA-256 and an `x5t` (SHA-1 thumbprint) header: what older clients send.
    Rs256,
}

impl EntraConfig {
    /// Problems serde cannot see (neither or both credentials, tenant id not a GUID or domain, ...), keys prefixed with `prefix`.
    pub fn check(&self, prefix: &str) -> Vec<ConfigIssue> {
        let mut issues = self.check_fields(prefix);
        if let (None, Some(certificate)) = (&self.client_secret, &self.certificate) {
            issues.extend(certificate.check(&join_key(prefix, "certificate")));
        }
        issues
    }

    /// The checks that read no file (the token provider loads the certificate itself, once).
    pub(crate) fn check_fields(&self, prefix: &str) -> Vec<ConfigIssue> {
        let key = |name: &str| join_key(prefix, name);
        let mut issues = Vec::new();
        if let Some(problem) = tenant_problem(&self.tenant_id) {
            issues.push(ConfigIssue::new(&key("tenant_id"), problem).hint(
                "the Directory (tenant) ID GUID from the app registration's Overview page, or a verified domain such as contoso.onmicrosoft.com",
            ));
        }
        if !looks_like_guid(self.client_id.trim()) {
            issues.push(
                ConfigIssue::new(
                    &key("client_id"),
                    format!("`{}` is not an application (client) ID", self.client_id),
                )
                .hint("the Application (client) ID GUID from the app registration's Overview page"),
            );
        }
        match (&self.client_secret, &self.certificate) {
            (None, None) => issues.push(
                ConfigIssue::new(&key("client_secret"), "no credential: set client_secret or certificate")
                    .hint("client_secret = \"${M365_CLIENT_SECRET}\", or certificate = { path = \"app.pem\" }"),
            ),
            (Some(_), Some(_)) => issues.push(
                ConfigIssue::new(&key("certificate"), "both client_secret and certificate are set")
                    .hint("keep exactly one of them"),
            ),
            (Some(secret), None) if secret.expose().trim().is_empty() => issues.push(
                ConfigIssue::new(&key("client_secret"), "client_secret is empty")
                    .hint("the secret's Value from the app registration's \"Certificates & secrets\" page (is the environment variable set?)"),
            ),
            _ => {}
        }
        if let Some(url) = &self.login_url
            && let Some(problem) = url_problem(url)
        {
            issues.push(
                ConfigIssue::new(&key("login_url"), problem)
                    .hint(format!("an http(s) URL such as {}", self.cloud.login_url())),
            );
        }
        issues
    }

    /// The authority this config gets tokens from: `login_url` if set, else the cloud's.
    pub fn authority(&self) -> &str {
        self.login_url
            .as_deref()
            .map(|url| url.trim().trim_end_matches('/'))
            .unwrap_or(self.cloud.login_url())
    }

    /// The token URL (v2): {login}/{tenant}/oauth2/v2.0/token
    pub fn token_url(&self) -> String {
        format!(
            "{}/{}/oauth2/v2.0/token",
            self.authority(),
            self.tenant_id.trim()
        )
    }
}

impl CertificateConfig {
    /// Problems with the files, found by loading them the way the token provider will.
    pub fn check(&self, prefix: &str) -> Vec<ConfigIssue> {
        match super::certificate::SigningCertificate::load(self) {
            Ok(_) => Vec::new(),
            Err(error) => vec![ConfigIssue::new(
                &join_key(prefix, "path"),
                error.to_string(),
            )],
        }
    }
}

/// `prefix` may be given with or without its trailing dot.
fn join_key(prefix: &str, name: &str) -> String {
    match prefix.trim_end_matches('.') {
        "" => name.to_string(),
        prefix => format!("{prefix}.{name}"),
    }
}

fn tenant_problem(tenant: &str) -> Option<String> {
    let tenant = tenant.trim();
    if tenant.is_empty() {
        return Some("tenant_id is empty (is the environment variable set?)".to_string());
    }
    if ["common", "organizations", "consumers"].contains(&tenant.to_ascii_lowercase().as_str()) {
        return Some(format!(
            "`{tenant}` is not a tenant: app-only (client credentials) tokens need a specific tenant"
        ));
    }
    if looks_like_guid(tenant) || is_domain(tenant) {
        return None;
    }
    Some(format!(
        "`{tenant}` is neither a tenant ID (GUID) nor a domain"
    ))
}

fn is_domain(text: &str) -> bool {
    let labels: Vec<&str> = text.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        && labels
            .last()
            .is_some_and(|tld| tld.chars().all(|c| c.is_ascii_alphabetic()))
}

fn url_problem(url: &str) -> Option<String> {
    crate::http::endpoint_url_problem(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TENANT: &str = "0b6f0c1e-5a3d-4c2b-9e8f-1a2b3c4d5e6f";
    const CLIENT: &str = "6f1a2b3c-0d4e-4f5a-8b6c-7d8e9f0a1b2c";

    fn parse(text: &str) -> EntraConfig {
        toml::from_str(text).unwrap()
    }

    fn with_secret() -> EntraConfig {
        parse(&format!(
            "tenant_id = \"{TENANT}\"\nclient_id = \"{CLIENT}\"\nclient_secret = \"abc~def\""
        ))
    }

    fn keys(issues: &[ConfigIssue]) -> Vec<String> {
        issues.iter().filter_map(|i| i.key.clone()).collect()
    }

    #[test]
    fn a_good_config_has_no_issues_and_derives_the_token_url() {
        let config = with_secret();
        assert!(config.check("auth").is_empty());
        assert_eq!(config.cloud, Cloud::Commercial);
        assert_eq!(
            config.token_url(),
            format!("https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token")
        );
    }

    #[test]
    fn cloud_and_override_pick_the_authority() {
        let mut config = with_secret();
        config.cloud = Cloud::GccHigh;
        assert_eq!(
            config.token_url(),
            format!("https://login.microsoftonline.us/{TENANT}/oauth2/v2.0/token")
        );
        config.login_url = Some("http://127.0.0.1:8089/".to_string());
        assert_eq!(
            config.token_url(),
            format!("http://127.0.0.1:8089/{TENANT}/oauth2/v2.0/token")
        );
        assert!(config.check("").is_empty());
    }

    #[test]
    fn credentials_exactly_one() {
        let neither = parse(&format!(
            "tenant_id = \"{TENANT}\"\nclient_id = \"{CLIENT}\""
        ));
        assert_eq!(keys(&neither.check("auth.")), ["auth.client_secret"]);
        let both = parse(&format!(
            "tenant_id = \"{TENANT}\"\nclient_id = \"{CLIENT}\"\nclient_secret = \"x\"\ncertificate = {{ path = \"/nonexistent.pem\" }}"
        ));
        assert!(keys(&both.check("auth")).contains(&"auth.certificate".to_string()));
        let empty = parse(&format!(
            "tenant_id = \"{TENANT}\"\nclient_id = \"{CLIENT}\"\nclient_secret = \"  \""
        ));
        assert_eq!(keys(&empty.check("")), ["client_secret"]);
    }

    #[test]
    fn tenant_and_client_ids() {
        let mut config = with_secret();
        for good in [TENANT, "contoso.onmicrosoft.com", "contoso.com"] {
            config.tenant_id = good.to_string();
            assert!(config.check("").is_empty(), "{good}");
        }
        for bad in [
            "",
            "common",
            "organizations",
            "not a tenant",
            "contoso",
            "https://contoso.com",
        ] {
            config.tenant_id = bad.to_string();
            assert_eq!(keys(&config.check("x")), ["x.tenant_id"], "{bad}");
        }
        config.tenant_id = TENANT.to_string();
        config.client_id = "my-app".to_string();
        assert_eq!(keys(&config.check("")), ["client_id"]);
    }

    #[test]
    fn login_url_must_be_http() {
        let mut config = with_secret();
        config.login_url = Some("login.microsoftonline.com".to_string());
        assert_eq!(keys(&config.check("")), ["login_url"]);
        config.login_url = Some("ftp://example.com".to_string());
        assert_eq!(keys(&config.check("")), ["login_url"]);
    }

    #[test]
    fn unknown_keys_are_refused_and_secrets_not_shown() {
        assert!(
            toml::from_str::<EntraConfig>(&format!(
                "tenant_id = \"{TENANT}\"\nclient_id = \"{CLIENT}\"\nclient_secrets = \"x\""
            ))
            .is_err()
        );
        let debug = format!("{:?}", with_secret());
        assert!(!debug.contains("abc~def"), "{debug}");
    }

    #[test]
    fn certificate_table() {
        let config = parse(&format!(
            "tenant_id = \"{TENANT}\"\nclient_id = \"{CLIENT}\"\ncloud = \"dod\"\n[certificate]\npath = \"app.p12\"\npassword = \"pw\"\nsignature = \"rs256\""
        ));
        let certificate = config.certificate.as_ref().unwrap();
        assert_eq!(certificate.signature, SignatureStyle::Rs256);
        assert_eq!(config.cloud, Cloud::Dod);
        // The file does not exist: reported against the certificate's path.
        assert_eq!(keys(&config.check("auth")), ["auth.certificate.path"]);
        let default_style: CertificateConfig = toml::from_str("path = \"a.pem\"").unwrap();
        assert_eq!(default_style.signature, SignatureStyle::Ps256);
    }
}
