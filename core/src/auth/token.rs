//! Access tokens, the token endpoint's success body (v1 and v2 shapes), and when to refresh.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use super::error::AuthError;

/// A bearer token; Debug/Display never show it.
#[derive(Clone)]
pub struct AccessToken {
    value: Arc<str>,
    expires_at: SystemTime,
    /// Monotonic twins of the times above, immune to wall-clock jumps.
    pub(crate) refresh_at: Instant,
    pub(crate) usable_until: Instant,
    /// Tells two fetches apart even if Entra returned the same string.
    pub(crate) serial: u64,
}

impl AccessToken {
    /// The token, for an `Authorization: Bearer` header.
    pub fn bearer(&self) -> &str {
        &self.value
    }

    /// When Entra ID stops accepting it.
    pub fn expires_at(&self) -> SystemTime {
        self.expires_at
    }

    /// Wraps a token valid for `lifetime` from `received`.
    pub(crate) fn new(value: String, lifetime: Duration, received: Instant, serial: u64) -> Self {
        AccessToken {
            value: value.into(),
            expires_at: SystemTime::now() + lifetime,
            refresh_at: received + refresh_after(lifetime),
            usable_until: received + lifetime.saturating_sub(safety_margin(lifetime)),
            serial,
        }
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken")
            .field("bearer", &"**redacted**")
            .field(
                "expires_at",
                &humantime::format_rfc3339_seconds(self.expires_at),
            )
            .finish()
    }
}

impl std::fmt::Display for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "access token (expires {})",
            humantime::format_rfc3339_seconds(self.expires_at)
        )
    }
}

/// When to fetch a new token: at 80 % of its lifetime or 5 min before expiry, whichever is earlier —
/// but never before half its lifetime, so a short-lived token is still used rather than refetched on every call.
pub(crate) fn refresh_after(lifetime: Duration) -> Duration {
    let at_80_percent = lifetime.mul_f64(0.8);
    let five_minutes_before = lifetime.saturating_sub(Duration::from_secs(300));
    at_80_percent.min(five_minutes_before).max(lifetime / 2)
}

/// Stop handing out a token a little before it expires: it must survive the request it is used for.
fn safety_margin(lifetime: Duration) -> Duration {
    (lifetime / 10).min(Duration::from_secs(60))
}

/// The lifetime assumed when a response names none: short, so a wrong guess costs only an early refresh.
const ASSUMED_LIFETIME: Duration = Duration::from_secs(300);

/// v2 sends numbers; v1 sends the same fields as strings.
#[derive(Deserialize)]
#[serde(untagged)]
enum Seconds {
    Number(u64),
    Text(String),
}

impl Seconds {
    fn value(&self) -> Option<u64> {
        match self {
            Seconds::Number(n) => Some(*n),
            Seconds::Text(text) => text.trim().parse().ok(),
        }
    }
}

#[derive(Deserialize)]
struct TokenBody {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<Seconds>,
    #[serde(default)]
    expires_on: Option<Seconds>,
}

/// A parsed success body: the token and how long it lives.
pub(crate) struct Granted {
    pub(crate) access_token: String,
    pub(crate) lifetime: Duration,
}

/// Parses a 2xx token response (v2: numeric `expires_in`; v1: string `expires_in`/`expires_on`).
pub(crate) fn parse_success(body: &[u8]) -> Result<Granted, AuthError> {
    let parsed: TokenBody = serde_json::from_slice(body).map_err(|e| {
        // serde's message names the field, never the value of a string it could not place.
        AuthError::transient(format!(
            "the token endpoint answered 2xx without a usable token ({e})"
        ))
    })?;
    if parsed.access_token.is_empty() {
        return Err(AuthError::transient(
            "the token endpoint answered 2xx with an empty access_token",
        ));
    }
    if let Some(kind) = &parsed.token_type
        && !kind.eq_ignore_ascii_case("bearer")
    {
        return Err(AuthError::config(format!(
            "the token endpoint issued a `{kind}` token, not a Bearer token: check login_url"
        )));
    }
    let from_expires_in = parsed.expires_in.as_ref().and_then(Seconds::value);
    let from_expires_on = parsed
        .expires_on
        .as_ref()
        .and_then(Seconds::value)
        .map(|on| {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            on.saturating_sub(now)
        });
    let lifetime = from_expires_in
        .or(from_expires_on)
        .map_or(ASSUMED_LIFETIME, Duration::from_secs);
    Ok(Granted {
        access_token: parsed.access_token,
        lifetime,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_points() {
        let hour = Duration::from_secs(3600);
        assert_eq!(refresh_after(hour), Duration::from_secs(2880), "80 % wins");
        let thirty_min = Duration::from_secs(1800);
        assert_eq!(
            refresh_after(thirty_min),
            Duration::from_secs(1440),
            "80 % wins"
        );
        let twenty_min = Duration::from_secs(1200);
        assert_eq!(
            refresh_after(twenty_min),
            Duration::from_secs(900),
            "5 min before wins"
        );
        let four_min = Duration::from_secs(240);
        assert_eq!(
            refresh_after(four_min),
            Duration::from_secs(120),
            "never before half"
        );
    }

    #[test]
    fn v2_body() {
        let granted = parse_success(
            br#"{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"eyJ0eXAi.a.b"}"#,
        )
        .unwrap();
        assert_eq!(granted.access_token, "eyJ0eXAi.a.b");
        assert_eq!(granted.lifetime, Duration::from_secs(3599));
    }

    #[test]
    fn v1_body_with_strings() {
        let granted = parse_success(
            br#"{"token_type":"Bearer","expires_in":"3599","ext_expires_in":"3599","expires_on":"1788000000","not_before":"1787996100","resource":"https://manage.office.com","access_token":"tok"}"#,
        )
        .unwrap();
        assert_eq!(granted.lifetime, Duration::from_secs(3599));
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let only_expires_on = format!(
            r#"{{"token_type":"Bearer","expires_on":"{}","access_token":"tok"}}"#,
            now + 1000
        );
        let granted = parse_success(only_expires_on.as_bytes()).unwrap();
        assert!(granted.lifetime.as_secs().abs_diff(1000) <= 2);
    }

    #[test]
    fn bad_bodies() {
        assert!(parse_success(b"{}").is_err());
        assert!(parse_success(br#"{"access_token":""}"#).is_err());
        assert!(
            parse_success(br#"{"access_token":"x","token_type":"pop"}"#)
                .err()
                .unwrap()
                .is_permanent()
        );
        let assumed = parse_success(br#"{"access_token":"x"}"#).unwrap();
        assert_eq!(assumed.lifetime, ASSUMED_LIFETIME);
    }

    #[test]
    fn never_shown() {
        let token = AccessToken::new(
            "eyJsecret".into(),
            Duration::from_secs(3600),
            Instant::now(),
            1,
        );
        let shown = format!("{token:?} {token}");
        assert!(!shown.contains("eyJsecret"), "{shown}");
        assert_eq!(token.bearer(), "eyJsecret");
        assert!(token.expires_at() > SystemTime::now() + Duration::from_secs(3500));
    }
}
