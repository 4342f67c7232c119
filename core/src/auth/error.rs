//! Authentication failures, split into the ones to fix in the config and the ones to retry.

use std::time::Duration;

use serde::Deserialize;

/// Why a token could not be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthError {
    /// Permanent: bad or expired secret, app not in tenant, tenant not found, bad assertion signature,
    /// scope without `/.default`, unreadable certificate... Retrying without a config change will not help.
    #[error("{message}")]
    Config {
        /// The AADSTS code Entra ID answered with, if it did.
        code: Option<u32>,
        /// Microsoft's description (first line, no trace ids) and what to do.
        message: String,
    },
    /// Worth retrying: network error, timeout, 5xx, 429.
    #[error("{message}{}", retry_after.map(|d| format!(" (retry after {}s)", d.as_secs())).unwrap_or_default())]
    Transient {
        /// What failed.
        message: String,
        /// How long the server asked us to wait, if it said.
        retry_after: Option<Duration>,
    },
}

impl AuthError {
    /// True for errors that only a config change fixes.
    pub fn is_permanent(&self) -> bool {
        matches!(self, AuthError::Config { .. })
    }

    /// The AADSTS code, when Entra ID gave one.
    pub fn code(&self) -> Option<u32> {
        match self {
            AuthError::Config { code, .. } => *code,
            AuthError::Transient { .. } => None,
        }
    }

    /// How long to wait before retrying, when the server said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            AuthError::Config { .. } => None,
            AuthError::Transient { retry_after, .. } => *retry_after,
        }
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        AuthError::Config {
            code: None,
            message: message.into(),
        }
    }

    pub(crate) fn transient(message: impl Into<String>) -> Self {
        AuthError::Transient {
            message: message.into(),
            retry_after: None,
        }
    }
}

/// An error and its causes on one line; reqwest hides the useful part ("connection refused") in the chain.
pub(crate) fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The body of an Entra ID token error (reference 0.3).
#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
    #[serde(default)]
    error_codes: Vec<u32>,
}

/// AADSTS codes that mean "try again later" although they come as 4xx.
const TRANSIENT_CODES: &[u32] = &[
    50196, // client request loop: back off
    90033, // "a transient error has occurred"
];

/// What a user should do about a code, in the words of someone who has seen it before.
fn advice(code: u32) -> Option<&'static str> {
    Some(match code {
        7000215 => {
            "the client secret is wrong: copy the secret's Value (not its Secret ID) from the app registration's \"Certificates & secrets\" page into client_secret"
        }
        7000222 => {
            "the client secret has expired: create a new one under the app registration's \"Certificates & secrets\" and update client_secret"
        }
        700016 => {
            "no app with this client_id exists in this tenant: check client_id and tenant_id, that the app is registered in (or consented to by) this tenant, and cloud"
        }
        90002 | 900023 => {
            "the tenant was not found: check tenant_id (the Directory (tenant) ID GUID or a verified domain) and that cloud matches where the tenant lives"
        }
        700027 => {
            "the client assertion signature could not be verified: upload this certificate (its public part) to the app registration, or point certificate.path at the certificate that is uploaded"
        }
        700024 => {
            "the client assertion is outside its valid time range: check this machine's clock"
        }
        1002012 => "the scope must end with /.default for client credentials",
        7000218 => {
            "the request carried no client secret or assertion: set client_secret or certificate"
        }
        7000112 => "the application is disabled in this tenant: ask an administrator to enable it",
        500011 => {
            "the API's service principal is not in this tenant (or the API belongs to another cloud): check cloud, and that an admin consented to the app's API permissions"
        }
        _ => return None,
    })
}

/// Turns a non-2xx token response into an error: permanent for Entra's verdicts on the credentials, transient otherwise.
pub(crate) fn from_token_response(
    status: reqwest::StatusCode,
    retry_after: Option<Duration>,
    body: &[u8],
    secret: Option<&str>,
) -> AuthError {
    let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
    if status.as_u16() == 429 || status.is_server_error() || status.as_u16() == 408 {
        let detail = parsed
            .as_ref()
            .and_then(|b| b.error_description.as_deref())
            .map(|d| format!(": {}", redact(first_line(d), secret)))
            .unwrap_or_default();
        return AuthError::Transient {
            message: format!("Entra ID token endpoint answered HTTP {status}{detail}"),
            retry_after,
        };
    }
    let Some(body) = parsed.filter(|b| b.error.is_some() || b.error_description.is_some()) else {
        return AuthError::config(format!(
            "the token endpoint answered HTTP {status} without an Entra ID error: check login_url, cloud and tenant_id"
        ));
    };
    let description = body
        .error_description
        .as_deref()
        .map(|d| redact(first_line(d), secret))
        .unwrap_or_default();
    let code = body
        .error_codes
        .first()
        .copied()
        .or_else(|| code_in(&description));
    let error = body.error.as_deref().unwrap_or("error");
    if error == "temporarily_unavailable" || code.is_some_and(|c| TRANSIENT_CODES.contains(&c)) {
        return AuthError::Transient {
            message: format!("Entra ID is temporarily unavailable ({error}): {description}"),
            retry_after,
        };
    }
    let mut what_to_do = code.and_then(advice).map(str::to_string).unwrap_or_else(|| {
        format!("Entra ID refused the credentials ({error}): check tenant_id, client_id, the secret or certificate, and cloud")
    });
    if code == Some(7000215) && secret.is_some_and(looks_like_guid) {
        what_to_do.push_str(
            " — the configured secret looks like a GUID, which is what a Secret ID looks like",
        );
    }
    let shown = if description.is_empty() {
        error.to_string()
    } else {
        description
    };
    AuthError::Config {
        code,
        message: format!("Entra ID rejected the token request: {shown} — {what_to_do}"),
    }
}

/// Microsoft's descriptions end in "\r\nTrace ID: …\r\nCorrelation ID: …": those help nobody reading a log.
fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default().trim()
}

/// Never let a secret through, even if an endpoint echoes it.
fn redact(text: &str, secret: Option<&str>) -> String {
    match secret {
        Some(secret) if !secret.is_empty() => text.replace(secret, "**redacted**"),
        _ => text.to_string(),
    }
}

/// The number in "AADSTS7000215: …".
fn code_in(description: &str) -> Option<u32> {
    let rest = &description[description.find("AADSTS")? + "AADSTS".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, hex digits.
pub(crate) fn looks_like_guid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(group, len)| group.len() == len && group.chars().all(|c| c.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;

    fn body(error: &str, description: &str, code: u32) -> Vec<u8> {
        serde_json::json!({
            "error": error,
            "error_description": description,
            "error_codes": [code],
            "timestamp": "2026-09-01 10:00:00Z",
            "trace_id": "0b6f0c1e-0000-4000-8000-000000000001",
            "correlation_id": "0b6f0c1e-0000-4000-8000-000000000002",
            "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn bad_secret_is_permanent_with_advice_and_no_trace_ids() {
        let error = from_token_response(
            StatusCode::UNAUTHORIZED,
            None,
            &body(
                "invalid_client",
                "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value.\r\nTrace ID: 0b6f0c1e\r\nCorrelation ID: 1234\r\nTimestamp: 2026-09-01 10:00:00Z",
                7000215,
            ),
            Some("not-the-secret"),
        );
        assert!(error.is_permanent());
        assert_eq!(error.code(), Some(7000215));
        let text = error.to_string();
        assert!(
            text.contains("AADSTS7000215: Invalid client secret provided"),
            "{text}"
        );
        assert!(text.contains("not its Secret ID"), "{text}");
        assert!(!text.contains("Trace ID"), "{text}");
    }

    #[test]
    fn guid_shaped_secret_gets_a_pointed_hint() {
        let error = from_token_response(
            StatusCode::UNAUTHORIZED,
            None,
            &body(
                "invalid_client",
                "AADSTS7000215: Invalid client secret provided.",
                7000215,
            ),
            Some("6f1a2b3c-0d4e-4f5a-8b6c-7d8e9f0a1b2c"),
        );
        assert!(error.to_string().contains("looks like a GUID"));
    }

    #[test]
    fn codes_map_to_advice() {
        for (code, status, needle) in [
            (7000222, 401, "expired"),
            (700016, 400, "client_id"),
            (90002, 400, "tenant was not found"),
            (700027, 401, "upload this certificate"),
            (1002012, 400, "/.default"),
        ] {
            let error = from_token_response(
                StatusCode::from_u16(status).unwrap(),
                None,
                &body(
                    "invalid_request",
                    &format!("AADSTS{code}: something."),
                    code,
                ),
                None,
            );
            assert!(error.is_permanent(), "{code}");
            assert_eq!(error.code(), Some(code));
            assert!(error.to_string().contains(needle), "{code}: {error}");
        }
    }

    #[test]
    fn code_is_read_from_the_description_when_the_list_is_missing() {
        let raw = br#"{"error":"invalid_client","error_description":"AADSTS700016: Application not found.\r\nTrace ID: x"}"#;
        let error = from_token_response(StatusCode::BAD_REQUEST, None, raw, None);
        assert_eq!(error.code(), Some(700016));
    }

    #[test]
    fn throttling_and_outages_are_transient() {
        let throttled = from_token_response(
            StatusCode::TOO_MANY_REQUESTS,
            Some(Duration::from_secs(7)),
            b"",
            None,
        );
        assert!(!throttled.is_permanent());
        assert_eq!(throttled.retry_after(), Some(Duration::from_secs(7)));
        assert!(throttled.to_string().contains("retry after 7s"));
        let outage = from_token_response(StatusCode::SERVICE_UNAVAILABLE, None, b"<html>", None);
        assert!(!outage.is_permanent());
        let unavailable = from_token_response(
            StatusCode::BAD_REQUEST,
            None,
            &body(
                "temporarily_unavailable",
                "AADSTS90033: A transient error has occurred.",
                90033,
            ),
            None,
        );
        assert!(!unavailable.is_permanent());
    }

    #[test]
    fn a_non_entra_404_points_at_the_url() {
        let error = from_token_response(StatusCode::NOT_FOUND, None, b"Not Found", None);
        assert!(error.is_permanent());
        assert!(error.to_string().contains("login_url"));
    }

    #[test]
    fn an_echoed_secret_is_redacted() {
        let error = from_token_response(
            StatusCode::UNAUTHORIZED,
            None,
            &body(
                "invalid_client",
                "AADSTS7000215: secret s3cr3t~value is wrong",
                7000215,
            ),
            Some("s3cr3t~value"),
        );
        assert!(!error.to_string().contains("s3cr3t~value"));
    }

    #[test]
    fn guids() {
        assert!(looks_like_guid("6f1a2b3c-0d4e-4f5a-8b6c-7d8e9f0a1b2c"));
        assert!(!looks_like_guid("contoso.onmicrosoft.com"));
        assert!(!looks_like_guid("6f1a2b3c-0d4e-4f5a-8b6c-7d8e9f0a1b2"));
    }
}
