//! HTTP to one Microsoft API for one tenant: the bearer token from core's token provider
//! (a 401 refreshes it once and tries again, in a slot of its own) or a static API token
//! ([`Authorization::ApiToken`], Defender for Cloud Apps' legacy `Token`), the shared
//! request budget, the one retry rule, and every failure classified ([`super::errors`]).
//!
//! Every request sent takes a budget slot, and the token is fetched before the slot is
//! waited for, so nothing but the request itself stands between the slot and the send.
//!
//! What the client retries itself: throttling (the whole budget pauses, never given up
//! on), and timeouts, 5xx, 408 and network errors (a few times, `Retry-After` honoured);
//! then it returns [`ApiError`] for the caller to judge by its [class](ApiError::class).

use bytes::{Bytes, BytesMut};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};
use siemflow_core::Secret;
use siemflow_core::auth::{AccessToken, AuthError, TokenProvider};
use siemflow_core::metrics::ComponentLabels;
use siemflow_core::retry::RetryRule;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use super::api::ApiProfile;
use super::budget::{BudgetKey, RequestBudget, Window};
use super::errors::{ApiError, ErrorClass, classify, parse_error_body};

/// Error bodies are small; reading more of one only wastes memory.
const MAX_ERROR_BODY: u64 = 64 * 1024;

/// The largest answer accepted unless a request says otherwise.
const DEFAULT_MAX_BYTES: u64 = 64 << 20;

/// The two series of retries the client runs, both under core's one retry rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryRules {
    /// Timeouts, 5xx, 408, network errors: a few retries, then the request fails (and
    /// the source tries again at its next poll).
    pub transient: RetryRule,
    /// Throttling: the quota's, so every caller of the budget pauses; never given up on.
    pub throttle: RetryRule,
}

impl Default for RetryRules {
    fn default() -> Self {
        RetryRules {
            transient: RetryRule::new(Duration::from_secs(1), Duration::from_secs(60)).at_most(6),
            throttle: RetryRule::new(Duration::from_secs(2), Duration::from_secs(300)),
        }
    }
}

/// Whom a throttled answer to a request holds back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThrottleScope {
    /// Every caller of the budget: the quota is spent (the usual case).
    Budget,
    /// This request only: its throttling says nothing about the quota (the Management
    /// API's `/start`, throttled within 15 minutes of the last).
    Request,
}

/// One request, as the client sends (and re-sends) it.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    /// The operation's name in metrics and logs (`alerts`, `content`, `blob`).
    pub endpoint: &'static str,
    /// GET, POST…
    pub method: Method,
    /// Where.
    pub url: Url,
    /// Headers besides `Authorization` and `Accept` (e.g. Graph's `Prefer`).
    pub headers: HeaderMap,
    /// A body (JSON, set by [`ApiRequest::json`]).
    pub body: Option<Bytes>,
    /// The largest answer accepted; a larger one is [`ApiError::TooLarge`].
    pub max_bytes: u64,
    /// Whom a throttled answer holds back.
    pub throttle: ThrottleScope,
}

impl ApiRequest {
    /// A GET of `url`.
    pub fn get(endpoint: &'static str, url: Url) -> Self {
        ApiRequest {
            endpoint,
            method: Method::GET,
            url,
            headers: HeaderMap::new(),
            body: None,
            max_bytes: DEFAULT_MAX_BYTES,
            throttle: ThrottleScope::Budget,
        }
    }

    /// A POST to `url` (add a body with [`ApiRequest::json`]).
    pub fn post(endpoint: &'static str, url: Url) -> Self {
        ApiRequest {
            method: Method::POST,
            ..ApiRequest::get(endpoint, url)
        }
    }

    /// With a JSON body.
    pub fn json(mut self, body: &serde_json::Value) -> Self {
        self.body = Some(Bytes::from(body.to_string()));
        self.headers
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        self
    }

    /// With a header.
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// Accepting answers up to `max_bytes`.
    pub fn max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Whose requests a throttled answer holds back.
    pub fn throttle(mut self, scope: ThrottleScope) -> Self {
        self.throttle = scope;
        self
    }

    /// The same request to another URL (the next page).
    pub fn to(&self, url: Url) -> Self {
        ApiRequest {
            url,
            ..self.clone()
        }
    }
}

/// A successful (2xx) answer.
#[derive(Debug)]
pub struct ApiResponse {
    /// The status.
    pub status: u16,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body, whole.
    pub body: Bytes,
}

/// How a client's requests are authorised.
#[derive(Debug, Clone)]
pub enum Authorization {
    /// `Authorization: Bearer` with Entra ID tokens (a 401 fetches a new one, once).
    Entra(TokenProvider),
    /// `Authorization: Token <token>`: a static API token (Defender for Cloud Apps' legacy
    /// token, §5.1); a 401 is final.
    ApiToken(Secret),
}

impl From<TokenProvider> for Authorization {
    fn from(tokens: TokenProvider) -> Self {
        Authorization::Entra(tokens)
    }
}

/// The credential one attempt sends.
enum Credential {
    Bearer(AccessToken),
    Token(Secret),
}

/// What a client is built from.
pub struct ClientSettings<'a, A: Into<Authorization> = TokenProvider> {
    /// The API.
    pub profile: ApiProfile,
    /// The tenant, as in URLs and labels.
    pub tenant_id: &'a str,
    /// The API root: its host keys the budget.
    pub api_root: &'a Url,
    /// From `siemflow_core::http::client` (rustls, TLS verified).
    pub http: reqwest::Client,
    /// Tokens for this tenant and the API's audience (a [`TokenProvider`]), or an
    /// [`Authorization`].
    pub tokens: A,
    /// This source's limits (usually `profile.windows`, or from its config).
    pub windows: &'a [Window],
    /// Retry pacing (tests shorten it).
    pub retries: RetryRules,
    /// The source's metric labels.
    pub labels: &'a ComponentLabels,
}

/// One Microsoft API of one tenant.
pub struct ApiClient {
    profile: ApiProfile,
    tenant_id: String,
    host: String,
    /// The API root: no request goes to another origin.
    root: Url,
    http: reqwest::Client,
    auth: Authorization,
    budget: RequestBudget,
    retries: RetryRules,
    labels: ComponentLabels,
    throttled: metrics::Counter,
    config_error: metrics::Gauge,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("api", &self.profile.name)
            .field("tenant_id", &self.tenant_id)
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

/// Refuses `url` unless its origin (scheme, host, port) is `root`'s: the one check that
/// keeps the bearer token on the configured API, for every URL an API hands out.
pub fn check_origin(endpoint: &'static str, url: &Url, root: &Url) -> Result<(), ApiError> {
    if url.origin() == root.origin() {
        return Ok(());
    }
    Err(ApiError::ForeignOrigin {
        endpoint,
        url: url.as_str().to_string(),
        origin: root.origin().ascii_serialization(),
    })
}

/// `host[:port]` of a URL, lower-cased: what a budget is keyed by.
pub fn authority(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host,
    }
}

/// One attempt's outcome.
enum Attempt {
    Done(ApiResponse),
    /// A 401 to this Entra token: a new one gets one more try.
    Unauthorized(AccessToken),
    Throttled {
        detail: String,
        retry_after: Option<Duration>,
    },
    Transient {
        detail: String,
        retry_after: Option<Duration>,
    },
    Failed(ApiError),
}

impl ApiClient {
    /// A client; joins the budget of (tenant, the root's host, the API's quota).
    pub fn new<A: Into<Authorization>>(settings: ClientSettings<'_, A>) -> Self {
        let ClientSettings {
            profile,
            tenant_id,
            api_root,
            http,
            tokens,
            windows,
            retries,
            labels,
        } = settings;
        let tenant_id = tenant_id.trim().to_string();
        let host = authority(api_root);
        let budget = RequestBudget::join(
            BudgetKey {
                tenant: tenant_id.clone(),
                host: host.clone(),
                quota: profile.quota,
            },
            windows,
            profile.metric_prefix,
        );
        let extra = [("tenant_id", tenant_id.as_str()), ("host", host.as_str())];
        ApiClient {
            throttled: metrics::counter!(
                format!("{}_throttled_total", profile.metric_prefix),
                &labels.with(&extra)
            ),
            config_error: metrics::gauge!(
                format!("{}_config_error", profile.metric_prefix),
                &labels.with(&extra)
            ),
            profile,
            tenant_id,
            host,
            root: api_root.clone(),
            http,
            auth: tokens.into(),
            budget,
            retries,
            labels: labels.clone(),
        }
    }

    /// The tenant.
    pub fn tenant_id(&self) -> &str {
        &self.tenant_id
    }

    /// The API host (`host[:port]`).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The API.
    pub fn profile(&self) -> &ApiProfile {
        &self.profile
    }

    /// The shared budget this client counts against.
    pub fn budget(&self) -> &RequestBudget {
        &self.budget
    }

    /// Refuses a URL off this client's API origin (see [`check_origin`]).
    pub fn check_origin(&self, endpoint: &'static str, url: &Url) -> Result<(), ApiError> {
        check_origin(endpoint, url, &self.root)
    }

    /// Sends a request with every retry this client owns; a refusal it does not retry is
    /// returned as [`ApiError::Refused`] with its class.
    pub async fn send(
        &self,
        request: &ApiRequest,
        cancel: &CancellationToken,
    ) -> Result<ApiResponse, ApiError> {
        self.check_origin(request.endpoint, &request.url)?;
        let mut transient = self.retries.transient.start();
        let mut throttle = self.retries.throttle.start();
        let mut attempts = 0;
        let mut reauthorized = false;
        loop {
            attempts += 1;
            let token = match &self.auth {
                Authorization::Entra(tokens) => tokio::select! {
                    biased;
                    _ = cancel.cancelled() => return Err(ApiError::Cancelled),
                    token = tokens.token() => token.map(Credential::Bearer),
                },
                Authorization::ApiToken(token) => Ok(Credential::Token(token.clone())),
            };
            let attempt = match token {
                Ok(token) => {
                    let _grant = tokio::select! {
                        biased;
                        _ = cancel.cancelled() => return Err(ApiError::Cancelled),
                        grant = self.budget.acquire() => grant,
                    };
                    tokio::select! {
                        biased;
                        _ = cancel.cancelled() => return Err(ApiError::Cancelled),
                        attempt = self.attempt(request, token, !reauthorized) => attempt,
                    }
                }
                Err(error) => self.auth_failed(request.endpoint, error),
            };
            let wait = match attempt {
                Attempt::Done(response) => {
                    self.config_error.set(0.0);
                    return Ok(response);
                }
                Attempt::Unauthorized(token) => {
                    tracing::debug!(
                        api = self.profile.name,
                        tenant_id = %self.tenant_id,
                        endpoint = request.endpoint,
                        "401 with a cached token: fetching a new one and trying once more"
                    );
                    if let Authorization::Entra(tokens) = &self.auth {
                        tokens.invalidate(&token);
                    }
                    reauthorized = true;
                    continue;
                }
                Attempt::Failed(error) => {
                    if error.is_config() {
                        self.config_error.set(1.0);
                    }
                    return Err(error);
                }
                Attempt::Throttled {
                    detail,
                    retry_after,
                } => {
                    self.throttled.increment(1);
                    // The throttle rule has no budget, so it always grants a wait.
                    let wait = throttle
                        .after_failure(retry_after)
                        .unwrap_or(self.retries.throttle.max);
                    tracing::warn!(
                        api = self.profile.name,
                        tenant_id = %self.tenant_id,
                        host = %self.host,
                        endpoint = request.endpoint,
                        wait_ms = wait.as_millis() as u64,
                        "throttled ({detail}); {}",
                        match request.throttle {
                            ThrottleScope::Budget => "pausing every request to this tenant and API",
                            ThrottleScope::Request => "trying this request again after a back-off",
                        }
                    );
                    if request.throttle == ThrottleScope::Budget {
                        self.budget.pause(wait);
                        continue;
                    }
                    wait
                }
                Attempt::Transient {
                    detail,
                    retry_after,
                } => match transient.after_failure(retry_after) {
                    Some(wait) => {
                        tracing::debug!(
                            api = self.profile.name,
                            tenant_id = %self.tenant_id,
                            endpoint = request.endpoint,
                            attempts,
                            wait_ms = wait.as_millis() as u64,
                            "retrying after a transient failure: {detail}"
                        );
                        wait
                    }
                    None => {
                        return Err(ApiError::Exhausted {
                            endpoint: request.endpoint,
                            attempts,
                            last: detail,
                        });
                    }
                },
            };
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return Err(ApiError::Cancelled),
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    fn count(&self, endpoint: &'static str, status: &str) {
        metrics::counter!(
            format!("{}_requests_total", self.profile.metric_prefix),
            &self.labels.with(&[
                ("tenant_id", &self.tenant_id),
                ("host", &self.host),
                ("endpoint", endpoint),
                ("status", status),
            ])
        )
        .increment(1);
    }

    /// A failure to get a token, or to send: permanent (refused credentials) or transient.
    fn auth_failed(&self, endpoint: &'static str, error: AuthError) -> Attempt {
        if error.is_permanent() {
            self.count(endpoint, "auth_error");
            return Attempt::Failed(ApiError::Auth(error));
        }
        self.count(endpoint, "error");
        Attempt::Transient {
            retry_after: error.retry_after(),
            detail: error.to_string(),
        }
    }

    /// One send with `credential`; a 401 to an Entra token is [`Attempt::Unauthorized`]
    /// while `may_reauthorize`.
    async fn attempt(
        &self,
        request: &ApiRequest,
        credential: Credential,
        may_reauthorize: bool,
    ) -> Attempt {
        let make = || {
            let mut builder = self
                .http
                .request(request.method.clone(), request.url.clone())
                .header(ACCEPT, "application/json")
                .headers(request.headers.clone());
            if let Some(body) = &request.body {
                builder = builder.body(body.clone());
            }
            builder
        };
        let (sent, bearer) = match credential {
            Credential::Bearer(token) => {
                (TokenProvider::send_with(&make, &token).await, Some(token))
            }
            Credential::Token(token) => (send_with_api_token(&make, &token).await, None),
        };
        let response = match sent {
            Ok(response) => response,
            Err(error) => return self.auth_failed(request.endpoint, error),
        };
        let status = response.status();
        self.count(request.endpoint, status.as_str());
        if status == reqwest::StatusCode::UNAUTHORIZED
            && may_reauthorize
            && let Some(token) = bearer
        {
            return Attempt::Unauthorized(token);
        }
        let retry_after = siemflow_core::http::retry_after(response.headers());
        let headers = response.headers().clone();
        let limit = if status.is_success() {
            request.max_bytes
        } else {
            MAX_ERROR_BODY
        };
        let body = match read_limited(response, limit).await {
            Ok(body) => body,
            Err(BodyError::TooLarge(size)) if status.is_success() => {
                return Attempt::Failed(ApiError::TooLarge {
                    endpoint: request.endpoint,
                    limit: request.max_bytes,
                    size,
                });
            }
            // An error body cut short is still an error: classify by the status alone.
            Err(BodyError::TooLarge(_)) => Bytes::new(),
            Err(BodyError::Read(detail)) => {
                return Attempt::Transient {
                    detail: format!("reading the response failed: {detail}"),
                    retry_after,
                };
            }
        };
        if status.is_success() {
            return Attempt::Done(ApiResponse {
                status: status.as_u16(),
                headers,
                body,
            });
        }
        let envelope = parse_error_body(&body);
        let class = classify(status.as_u16(), &envelope);
        let detail = || match &envelope.code {
            Some(code) => format!("{code} (HTTP {status}): {}", envelope.message),
            None => format!("HTTP {status}: {}", envelope.message),
        };
        match class {
            ErrorClass::Throttled => Attempt::Throttled {
                detail: detail(),
                retry_after,
            },
            ErrorClass::Retry => Attempt::Transient {
                detail: detail(),
                retry_after,
            },
            ErrorClass::Config | ErrorClass::Data => Attempt::Failed(ApiError::Refused {
                endpoint: request.endpoint,
                status: status.as_u16(),
                code: envelope.code,
                message: envelope.message,
                request_id: envelope.request_id,
                class,
            }),
        }
    }
}

/// Sends once with `Authorization: Token <token>`, the header marked sensitive.
async fn send_with_api_token(
    make: &impl Fn() -> reqwest::RequestBuilder,
    token: &Secret,
) -> Result<reqwest::Response, AuthError> {
    let mut value = HeaderValue::from_str(&format!("Token {}", token.expose())).map_err(|_| {
        AuthError::Config {
            code: None,
            message: "the API token holds characters a header cannot carry".into(),
        }
    })?;
    value.set_sensitive(true);
    make()
        .header(AUTHORIZATION, value)
        .send()
        .await
        .map_err(|e| AuthError::Transient {
            message: format!("request failed: {}", e.without_url()),
            retry_after: None,
        })
}

enum BodyError {
    TooLarge(Option<u64>),
    Read(String),
}

/// Reads a body, giving up (without buffering the rest) once it passes `limit`.
async fn read_limited(mut response: reqwest::Response, limit: u64) -> Result<Bytes, BodyError> {
    if let Some(length) = response.content_length()
        && length > limit
    {
        return Err(BodyError::TooLarge(Some(length)));
    }
    let mut body = BytesMut::with_capacity(
        response
            .content_length()
            .map_or(16 * 1024, |l| l as usize)
            .min(limit as usize),
    );
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() as u64 + chunk.len() as u64 > limit {
                    return Err(BodyError::TooLarge(None));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body.freeze()),
            Err(e) => return Err(BodyError::Read(e.without_url().to_string())),
        }
    }
}
