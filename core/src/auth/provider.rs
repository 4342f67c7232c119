//! Fetches, caches and refreshes access tokens for one (tenant, client, scope).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use super::assertion;
use super::certificate::SigningCertificate;
use super::config::{EntraConfig, SignatureStyle};
use super::error::{AuthError, from_token_response, with_causes};
use super::token::{AccessToken, parse_success};
use crate::Secret;

/// After a permanent failure, answer with it for this long instead of asking Entra again:
/// a caller that loops on errors must not turn into a flood of failing sign-ins.
const PERMANENT_HOLD: Duration = Duration::from_secs(30);

/// After a transient failure while the old token still works, wait this long (or Retry-After) before trying again.
const TRANSIENT_PAUSE: Duration = Duration::from_secs(10);

/// Gets and caches access tokens for one (tenant, client, scope).
#[derive(Clone)]
pub struct TokenProvider {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TokenProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenProvider")
            .field("token_url", &self.inner.token_url)
            .field("client_id", &self.inner.client_id)
            .field("scope", &self.inner.scope)
            .finish_non_exhaustive()
    }
}

struct Inner {
    token_url: String,
    client_id: String,
    scope: String,
    credential: Credential,
    http: reqwest::Client,
    cache: Mutex<Cache>,
    /// Held while fetching, so concurrent callers wait for one request instead of each sending their own.
    refresh: tokio::sync::Mutex<()>,
    /// Where "now" comes from: the monotonic clock, or a test's hand-moved one.
    clock: Clock,
}

/// A source of the current instant.
type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

enum Credential {
    Secret(Secret),
    Certificate(Box<SigningCertificate>, SignatureStyle),
}

#[derive(Default)]
struct Cache {
    token: Option<AccessToken>,
    /// Counts finished fetches, so a caller that waited can tell one happened and share its outcome.
    attempts: u64,
    last_failure: Option<Failure>,
}

struct Failure {
    error: AuthError,
    /// Until then, answer from the cache (old token or this error) rather than asking Entra again.
    quiet_until: Instant,
}

impl Cache {
    /// What a caller gets without fetching, if anything.
    fn answer(&self, now: Instant) -> Option<Result<AccessToken, AuthError>> {
        let usable = self.token.as_ref().filter(|t| now < t.usable_until);
        if let Some(token) = usable.filter(|t| now < t.refresh_at) {
            return Some(Ok(token.clone()));
        }
        let failure = self.last_failure.as_ref().filter(|f| now < f.quiet_until)?;
        match usable {
            Some(token) if !failure.error.is_permanent() => Some(Ok(token.clone())),
            _ => Some(Err(failure.error.clone())),
        }
    }
}

impl TokenProvider {
    /// Loads the certificate/key now, so a bad file is a startup error, not a runtime loop.
    pub fn new(
        config: &EntraConfig,
        scope: &str,
        http: reqwest::Client,
    ) -> Result<TokenProvider, AuthError> {
        if !scope.ends_with("/.default") {
            return Err(AuthError::Config {
                code: Some(1002012),
                message: format!(
                    "the scope `{scope}` does not end with /.default, which client-credentials tokens require (e.g. https://manage.office.com/.default)"
                ),
            });
        }
        let issues = config.check_fields("");
        if !issues.is_empty() {
            let listed: Vec<String> = issues
                .iter()
                .map(|issue| match &issue.key {
                    Some(key) => format!("{key}: {}", issue.message),
                    None => issue.message.clone(),
                })
                .collect();
            return Err(AuthError::config(listed.join("; ")));
        }
        let credential = match (&config.client_secret, &config.certificate) {
            (Some(secret), None) => Credential::Secret(secret.clone()),
            (None, Some(certificate)) => Credential::Certificate(
                Box::new(SigningCertificate::load(certificate)?),
                certificate.signature,
            ),
            // check() above refused both and neither.
            _ => {
                return Err(AuthError::config(
                    "set exactly one of client_secret and certificate",
                ));
            }
        };
        Ok(TokenProvider {
            inner: Arc::new(Inner {
                token_url: config.token_url(),
                client_id: config.client_id.trim().to_string(),
                scope: scope.to_string(),
                credential,
                http,
                cache: Mutex::default(),
                refresh: tokio::sync::Mutex::new(()),
                clock: Arc::new(Instant::now),
            }),
        })
    }

    /// The same provider reading time from `clock` (tests move time by hand instead of sleeping).
    #[cfg(test)]
    pub(crate) fn with_clock(self, clock: impl Fn() -> Instant + Send + Sync + 'static) -> Self {
        let inner = Arc::into_inner(self.inner).expect("with_clock on a fresh provider");
        TokenProvider {
            inner: Arc::new(Inner {
                clock: Arc::new(clock),
                ..inner
            }),
        }
    }

    fn now(&self) -> Instant {
        (self.inner.clock)()
    }

    /// The URL tokens come from.
    pub fn token_url(&self) -> &str {
        &self.inner.token_url
    }

    /// The scope tokens are requested for.
    pub fn scope(&self) -> &str {
        &self.inner.scope
    }

    /// A valid token: cached; refreshed early (at 80 % of its lifetime, or 5 min before expiry, whichever is earlier);
    /// concurrent callers share one refresh.
    ///
    /// If a refresh fails transiently while the cached token still works, the cached token is returned
    /// (and the refresh retried after a pause). A permanent failure is repeated for 30 s without asking Entra again.
    pub async fn token(&self) -> Result<AccessToken, AuthError> {
        let seen_attempts = {
            let cache = self.cache();
            if let Some(answer) = cache.answer(self.now()) {
                return answer;
            }
            cache.attempts
        };
        let _fetching = self.inner.refresh.lock().await;
        {
            let cache = self.cache();
            if cache.attempts != seen_attempts
                && let Some(answer) = cache.answer(self.now())
            {
                // Someone else fetched while we waited: theirs is our answer.
                return answer;
            }
        }
        let outcome = self.fetch().await;
        let mut cache = self.cache();
        cache.attempts += 1;
        match outcome {
            Ok(token) => {
                cache.token = Some(token.clone());
                cache.last_failure = None;
                Ok(token)
            }
            Err(error) => {
                let pause = if error.is_permanent() {
                    PERMANENT_HOLD
                } else {
                    error.retry_after().unwrap_or(TRANSIENT_PAUSE)
                };
                let now = self.now();
                cache.last_failure = Some(Failure {
                    error: error.clone(),
                    quiet_until: now + pause,
                });
                match cache.token.as_ref().filter(|t| now < t.usable_until) {
                    Some(old) if !error.is_permanent() => {
                        tracing::warn!(scope = %self.inner.scope, %error, "refreshing the Entra ID token failed; using the current one until it expires");
                        Ok(old.clone())
                    }
                    _ => Err(error),
                }
            }
        }
    }

    /// After a 401: forget this token (only if it is still the cached one) so the next call fetches a new one.
    pub fn invalidate(&self, token: &AccessToken) {
        let mut cache = self.cache();
        if cache
            .token
            .as_ref()
            .is_some_and(|t| t.serial == token.serial)
        {
            cache.token = None;
            cache.last_failure = None;
        }
    }

    /// Sends a request built by `make` with `Authorization: Bearer`; on 401 invalidates and retries exactly once.
    ///
    /// Any other status, and a second 401, is returned for the caller to judge.
    pub async fn send(
        &self,
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, AuthError> {
        let token = self.token().await?;
        let response = Self::send_with(&make, &token).await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        tracing::debug!(scope = %self.inner.scope, "401 with a cached token: fetching a new one and retrying once");
        self.invalidate(&token);
        let token = self.token().await?;
        Self::send_with(&make, &token).await
    }

    /// Sends a request built by `make` once with `token`, without the 401 retry: for a caller that
    /// must count every request it sends (a request budget) and so retries a 401 itself, after
    /// [`invalidate`](Self::invalidate).
    pub async fn send_with(
        make: &impl Fn() -> reqwest::RequestBuilder,
        token: &AccessToken,
    ) -> Result<reqwest::Response, AuthError> {
        make()
            .bearer_auth(token.bearer())
            .send()
            .await
            .map_err(|e| AuthError::transient(format!("request failed: {}", with_causes(&e))))
    }

    fn cache(&self) -> MutexGuard<'_, Cache> {
        // A panic while holding this lock cannot leave the cache half-written: every update is one assignment.
        self.inner
            .cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// One request to the token endpoint.
    async fn fetch(&self) -> Result<AccessToken, AuthError> {
        let inner = &*self.inner;
        let mut form: Vec<(&str, String)> = vec![
            ("grant_type", "client_credentials".to_string()),
            ("client_id", inner.client_id.clone()),
            ("scope", inner.scope.clone()),
        ];
        let secret = match &inner.credential {
            Credential::Secret(secret) => {
                form.push(("client_secret", secret.expose().to_string()));
                Some(secret.expose())
            }
            Credential::Certificate(certificate, style) => {
                let jwt = assertion::sign(certificate, *style, &inner.client_id, &inner.token_url)?;
                form.push((
                    "client_assertion_type",
                    assertion::ASSERTION_TYPE.to_string(),
                ));
                form.push(("client_assertion", jwt));
                None
            }
        };
        let sent = (inner.clock)();
        let response = inner
            .http
            .post(&inner.token_url)
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|e| {
                AuthError::transient(format!(
                    "cannot reach the Entra ID token endpoint {}: {}",
                    inner.token_url,
                    with_causes(&e.without_url())
                ))
            })?;
        let status = response.status();
        let retry_after = crate::http::retry_after(response.headers());
        let body = response.bytes().await.map_err(|e| {
            AuthError::transient(format!(
                "reading the Entra ID token response failed: {}",
                with_causes(&e.without_url())
            ))
        })?;
        if !status.is_success() {
            let error = from_token_response(status, retry_after, &body, secret);
            tracing::debug!(token_url = %inner.token_url, %status, %error, "token request refused");
            return Err(error);
        }
        let granted = parse_success(&body)?;
        let serial = {
            // Serials only need to differ between fetches of this provider.
            let cache = self.cache();
            cache.attempts + 1
        };
        tracing::debug!(scope = %inner.scope, lifetime_secs = granted.lifetime.as_secs(), "fetched an Entra ID access token");
        Ok(AccessToken::new(
            granted.access_token,
            granted.lifetime,
            sent,
            serial,
        ))
    }
}
