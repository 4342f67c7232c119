//! The options every Microsoft pull source shares, checked the same way everywhere: the
//! `tenants` list, one table per tenant with its app registration (core's [`EntraConfig`]:
//! `tenant_id`, `client_id`, a secret or a certificate, `cloud`, `login_url`), and lists
//! of names such as `resources`.

use std::time::Duration;

use serde::Serializer;
use siemflow_core::ConfigIssue;
use siemflow_core::auth::EntraConfig;
use siemflow_core::http::TlsConfig;

/// `start_from`'s default: a day.
pub fn default_start_from() -> Duration {
    Duration::from_secs(24 * 3600)
}

/// `poll_interval`'s default: a minute.
pub fn default_poll_interval() -> Duration {
    Duration::from_secs(60)
}

/// `request_timeout`'s default: a minute.
pub fn default_request_timeout() -> Duration {
    Duration::from_secs(60)
}

/// `tls` in the schema: `TlsConfig` has no serialized form; its default is documented in
/// words.
pub fn tls_schema_default<S: Serializer>(_: &TlsConfig, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str("{}")
}

/// The problem of an `api_url` override, if any; `example` is the API's own root.
pub fn api_url_issue(api_url: Option<&str>, example: &str) -> Option<ConfigIssue> {
    let problem = siemflow_core::http::endpoint_url_problem(api_url?)?;
    Some(ConfigIssue::new("api_url", problem).hint(format!(
        "e.g. {example}, or leave it out to derive it from each tenant's cloud"
    )))
}

/// The problem of an `overlap` longer than a day, if so.
pub fn overlap_issue(overlap: Duration) -> Option<ConfigIssue> {
    (overlap > Duration::from_secs(24 * 3600))
        .then(|| ConfigIssue::new("overlap", "must be at most \"24h\"").hint("\"5m\""))
}

/// "must be greater than zero" at each option that is zero.
pub fn zero_issues(options: &[(&str, bool)]) -> impl Iterator<Item = ConfigIssue> {
    options
        .iter()
        .filter(|(_, is_zero)| *is_zero)
        .map(|(key, _)| ConfigIssue::new(key, "must be greater than zero"))
}

/// The problems of a pull source's `tenants` list, each at its key: every tenant's Entra
/// settings, a tenant id that is not a GUID (`api` names the API that needs it), a
/// tenant listed twice.
pub fn tenant_issues(tenants: &[EntraConfig], api: &str) -> Vec<ConfigIssue> {
    let mut issues = Vec::new();
    if tenants.is_empty() {
        issues.push(
            ConfigIssue::new("tenants", "no tenant given").hint(
                "tenants = [{ tenant_id = \"…\", client_id = \"…\", client_secret = \"${M365_CLIENT_SECRET}\" }]",
            ),
        );
    }
    for (i, tenant) in tenants.iter().enumerate() {
        let prefix = format!("tenants[{i}]");
        let entra = tenant.check(&prefix);
        let tenant_id_reported = entra
            .iter()
            .any(|issue| issue.key.as_deref() == Some(&format!("{prefix}.tenant_id")));
        issues.extend(entra);
        let id = tenant.tenant_id.trim();
        if !tenant_id_reported && !is_guid(id) {
            issues.push(
                ConfigIssue::new(
                    &format!("{prefix}.tenant_id"),
                    format!("`{id}` is a domain; {api} needs the tenant ID GUID"),
                )
                .hint("the Directory (tenant) ID from the app registration's Overview page"),
            );
        }
        let repeated = tenants[..i]
            .iter()
            .any(|other| other.tenant_id.trim().eq_ignore_ascii_case(id));
        if repeated && !id.is_empty() {
            issues.push(
                ConfigIssue::new(
                    &format!("{prefix}.tenant_id"),
                    format!("tenant `{id}` is listed twice"),
                )
                .hint("list each tenant once; one app registration per tenant is enough"),
            );
        }
    }
    issues
}

/// The problems of a list of names (`resources`), each at its key: empty, unknown or
/// repeated names.
pub fn name_list_issues(option: &str, names: &[String], known: &[&str]) -> Vec<ConfigIssue> {
    let mut issues = Vec::new();
    if names.is_empty() {
        issues.push(
            ConfigIssue::new(option, "nothing to read")
                .hint(format!("any of {}", known.join(", "))),
        );
    }
    for (i, name) in names.iter().enumerate() {
        let key = format!("{option}[{i}]");
        if !known.contains(&name.as_str()) {
            issues.push(
                ConfigIssue::new(&key, format!("`{name}` is not known"))
                    .hint(format!("one of {}", known.join(", "))),
            );
        } else if names[..i].contains(name) {
            issues.push(ConfigIssue::new(&key, format!("`{name}` is listed twice")));
        }
    }
    issues
}

/// Refuses to build a source with configuration issues: the first, at its key (`source`
/// when it has none).
pub fn refuse_issues(issues: &[ConfigIssue], source: &str) -> anyhow::Result<()> {
    match issues.first() {
        Some(issue) => anyhow::bail!(
            "{}: {}",
            issue.key.as_deref().unwrap_or(source),
            issue.message
        ),
        None => Ok(()),
    }
}

/// True for the 8-4-4-4-12 hexadecimal GUID form.
pub fn is_guid(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}
