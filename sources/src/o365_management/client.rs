//! HTTP to the Management Activity API for one tenant: the request budget,
//! `PublisherIdentifier` on every call, retries, and the classification of every failure
//! (reference 1.6 and 1.7).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::header::{ACCEPT, HeaderMap};
use reqwest::{Method, Url};
use serde::Deserialize;
use siemflow_core::auth::{AuthError, TokenProvider};
use siemflow_core::metrics::ComponentLabels;
use tokio_util::sync::CancellationToken;

use super::Tuning;
use super::budget::RequestBudget;

/// Error bodies are small; reading more of one only wastes memory.
const MAX_ERROR_BODY: u64 = 64 * 1024;

/// Warn when the server's clock and ours differ by more than this (windows go wrong).
const CLOCK_SKEW_WARNING: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// Which API operation a request is, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// `POST subscriptions/start`.
    Start,
    /// `GET subscriptions/content`.
    Content,
    /// `GET {contentUri}`.
    Blob,
}

impl Endpoint {
    fn label(self) -> &'static str {
        match self {
            Endpoint::Start => "start",
            Endpoint::Content => "content",
            Endpoint::Blob => "blob",
        }
    }
}

/// Why a request did not succeed, after the retries this client does itself.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// The API refused with an error code the caller must judge (AF20022, AF20050, ...).
    #[error("the {endpoint} request was refused with {code} (HTTP {status}): {message}")]
    Api {
        endpoint: &'static str,
        status: u16,
        code: String,
        message: String,
    },
    /// No token could be had (permanent: a credential or consent problem).
    #[error("cannot get an access token: {0}")]
    Auth(#[source] AuthError),
    /// Timeouts, 5xx or network errors that outlasted the retries.
    #[error("the {endpoint} request still failed after {attempts} attempts: {last}")]
    Exhausted {
        endpoint: &'static str,
        attempts: usize,
        last: String,
    },
    /// The blob is bigger than `max_blob_bytes`.
    #[error("the blob is larger than max_blob_bytes ({limit} bytes){}", size.map(|s| format!(": {s} bytes")).unwrap_or_default())]
    TooLarge { limit: u64, size: Option<u64> },
    /// The answer was not what the API documents (a listing that is not an array).
    #[error("the {endpoint} answer is malformed: {detail}")]
    Malformed {
        endpoint: &'static str,
        detail: String,
    },
    /// The source is stopping.
    #[error("stopped")]
    Cancelled,
}

impl ApiError {
    /// The AF code, when the API gave one.
    pub(crate) fn code(&self) -> Option<&str> {
        match self {
            ApiError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// True for failures only a config or tenant change fixes: bad credentials, missing
    /// permission or consent, unknown tenant, wrong host.
    pub(crate) fn is_config(&self) -> bool {
        match self {
            ApiError::Auth(error) => error.is_permanent(),
            ApiError::Api { code, status, .. } => {
                is_config_code(code) || matches!(status, 401 | 404)
            }
            _ => false,
        }
    }
}

/// AF codes of reference 1.7 marked fatal.
fn is_config_code(code: &str) -> bool {
    matches!(
        code,
        "AF10001"
            | "AF20001"
            | "AF20002"
            | "AF20003"
            | "AF20010"
            | "AF20011"
            | "AF20012"
            | "AF20013"
            | "AF20020"
            | "AF20021"
            | "AF20053"
            | "AF20054"
    )
}

/// What one HTTP answer means.
#[derive(Debug, PartialEq)]
pub(crate) enum Verdict {
    /// 2xx.
    Success,
    /// AF429 under any status, or HTTP 429: back off the whole tenant.
    Throttled(String),
    /// 5xx, 408, AF5xxxx: retry this request after a back-off.
    Transient(String),
    /// Anything else: the caller decides (skip a blob, start a subscription, give up).
    Refused { code: String, message: String },
}

#[derive(Deserialize)]
struct ErrorBody {
    error: Option<ErrorDetail>,
    /// The ASP.NET form of a 401: `{"Message": "Authorization has been denied ..."}`.
    #[serde(rename = "Message")]
    message: Option<String>,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: Option<String>,
    message: Option<String>,
}

/// Classifies an answer by its status and `{"error":{"code","message"}}` body; the code
/// wins over the status, as throttling comes as 403 (reference 1.6).
pub(crate) fn classify(status: u16, body: &[u8]) -> Verdict {
    if (200..300).contains(&status) {
        return Verdict::Success;
    }
    let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
    let code = parsed
        .as_ref()
        .and_then(|b| b.error.as_ref())
        .and_then(|e| e.code.clone())
        .filter(|c| !c.is_empty());
    let message = parsed
        .as_ref()
        .and_then(|b| {
            b.error
                .as_ref()
                .and_then(|e| e.message.clone())
                .or_else(|| b.message.clone())
        })
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned());
    let detail = || match &code {
        Some(code) => format!("{code} (HTTP {status}): {message}"),
        None => format!("HTTP {status}: {message}"),
    };
    if code.as_deref() == Some("AF429") || status == 429 {
        return Verdict::Throttled(detail());
    }
    if status >= 500 || status == 408 || code.as_deref().is_some_and(|c| c.starts_with("AF5")) {
        return Verdict::Transient(detail());
    }
    Verdict::Refused {
        code: code.unwrap_or_else(|| format!("HTTP{status}")),
        message,
    }
}

/// A successful answer.
#[derive(Debug)]
pub(crate) struct Answer {
    /// Its headers (NextPageUri lives here).
    pub headers: HeaderMap,
    /// Its body.
    pub body: Bytes,
}

/// Metric handles of one tenant.
#[derive(Debug, Clone)]
struct TenantMetrics {
    labels: ComponentLabels,
    tenant_id: String,
    throttled: metrics::Counter,
}

impl TenantMetrics {
    fn request(&self, endpoint: Endpoint, status: &str) {
        self.labels
            .counter(
                "o365_requests_total",
                &[
                    ("tenant_id", &self.tenant_id),
                    ("endpoint", endpoint.label()),
                    ("status", status),
                ],
            )
            .increment(1);
    }
}

/// One attempt's outcome.
enum Attempt {
    Done(Answer),
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

/// The Management Activity API of one tenant.
pub(crate) struct TenantClient {
    /// The tenant id, as in URLs and labels.
    pub tenant_id: String,
    /// `{api}/api/v1.0/{tenant}/activity/feed`.
    pub feed_root: String,
    publisher: String,
    http: reqwest::Client,
    tokens: TokenProvider,
    budget: Arc<RequestBudget>,
    tuning: Tuning,
    metrics: TenantMetrics,
    /// Unix seconds of the last clock-skew warning, so it is said once an hour.
    skew_warned_at: AtomicI64,
}

impl TenantClient {
    /// A client for one tenant.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        tenant_id: String,
        api_root: &str,
        publisher: String,
        http: reqwest::Client,
        tokens: TokenProvider,
        budget: Arc<RequestBudget>,
        tuning: Tuning,
        labels: &ComponentLabels,
    ) -> Self {
        let metrics = TenantMetrics {
            throttled: labels.counter("o365_throttled_total", &[("tenant_id", &tenant_id)]),
            labels: labels.clone(),
            tenant_id: tenant_id.clone(),
        };
        labels
            .gauge(
                "o365_request_budget_per_minute",
                &[("tenant_id", &tenant_id)],
            )
            .set(f64::from(budget.requests_per_minute()));
        TenantClient {
            feed_root: format!("{api_root}/api/v1.0/{tenant_id}/activity/feed"),
            tenant_id,
            publisher,
            http,
            tokens,
            budget,
            tuning,
            metrics,
            skew_warned_at: AtomicI64::new(i64::MIN),
        }
    }

    /// `POST subscriptions/start?contentType=…`. An AF429 here is retried with a back-off
    /// of its own: it may be the 15-minute rule, which says nothing about other requests.
    pub(crate) async fn start_subscription(
        &self,
        content_type: &str,
        cancel: &CancellationToken,
    ) -> Result<Answer, ApiError> {
        let url = self.url(&format!(
            "{}/subscriptions/start?contentType={content_type}",
            self.feed_root
        ))?;
        self.call(Method::POST, Endpoint::Start, url, MAX_ERROR_BODY, cancel)
            .await
    }

    /// `GET` of a listing page or a blob, with every retry this client owns.
    pub(crate) async fn get(
        &self,
        endpoint: Endpoint,
        url: Url,
        max_bytes: u64,
        cancel: &CancellationToken,
    ) -> Result<Answer, ApiError> {
        self.call(Method::GET, endpoint, url, max_bytes, cancel)
            .await
    }

    /// Parses a URL the client built or the API handed out.
    pub(crate) fn url(&self, text: &str) -> Result<Url, ApiError> {
        Url::parse(text).map_err(|e| ApiError::Api {
            endpoint: "url",
            status: 0,
            code: "InvalidUrl".into(),
            message: format!("`{text}` is not a URL: {e}"),
        })
    }

    async fn call(
        &self,
        method: Method,
        endpoint: Endpoint,
        url: Url,
        max_bytes: u64,
        cancel: &CancellationToken,
    ) -> Result<Answer, ApiError> {
        let url = with_publisher(url, &self.publisher);
        // Two series under the one retry rule (siemflow_core::retry): throttling is the
        // tenant's quota and never given up on; other transient failures have a few retries,
        // after which the pass or blob is tried again at a later poll.
        let mut transient = self.tuning.transient.start();
        let mut throttle = self.tuning.throttle.start();
        let mut attempts = 0;
        loop {
            attempts += 1;
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return Err(ApiError::Cancelled),
                _ = self.budget.acquire() => {}
            }
            let attempt = tokio::select! {
                biased;
                _ = cancel.cancelled() => return Err(ApiError::Cancelled),
                attempt = self.attempt(&method, endpoint, &url, max_bytes) => attempt,
            };
            let wait = match attempt {
                Attempt::Done(answer) => return Ok(answer),
                Attempt::Failed(error) => return Err(error),
                Attempt::Throttled {
                    detail,
                    retry_after,
                } => {
                    self.metrics.throttled.increment(1);
                    // The throttle rule has no budget, so it always grants a wait.
                    let wait = throttle
                        .after_failure(retry_after)
                        .unwrap_or(self.tuning.throttle.max);
                    if endpoint == Endpoint::Start {
                        tracing::warn!(
                            tenant_id = %self.tenant_id,
                            wait_ms = wait.as_millis() as u64,
                            "/start throttled ({detail}); trying again after a back-off"
                        );
                        wait
                    } else {
                        tracing::warn!(
                            tenant_id = %self.tenant_id,
                            endpoint = endpoint.label(),
                            wait_ms = wait.as_millis() as u64,
                            "throttled by the Management Activity API ({detail}); pausing this tenant's requests"
                        );
                        // Throttling is the tenant's quota, not this request's: every request waits.
                        self.budget.pause(wait);
                        continue;
                    }
                }
                Attempt::Transient {
                    detail,
                    retry_after,
                } => match transient.after_failure(retry_after) {
                    Some(wait) => {
                        tracing::debug!(
                            tenant_id = %self.tenant_id,
                            endpoint = endpoint.label(),
                            attempts,
                            wait_ms = wait.as_millis() as u64,
                            "retrying after a transient failure: {detail}"
                        );
                        wait
                    }
                    None => {
                        return Err(ApiError::Exhausted {
                            endpoint: endpoint.label(),
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

    async fn attempt(
        &self,
        method: &Method,
        endpoint: Endpoint,
        url: &Url,
        max_bytes: u64,
    ) -> Attempt {
        let sent = self
            .tokens
            .send(|| {
                self.http
                    .request(method.clone(), url.clone())
                    .header(ACCEPT, "application/json")
            })
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(error) if error.is_permanent() => {
                self.metrics.request(endpoint, "auth_error");
                return Attempt::Failed(ApiError::Auth(error));
            }
            Err(error) => {
                self.metrics.request(endpoint, "error");
                return Attempt::Transient {
                    retry_after: error.retry_after(),
                    detail: error.to_string(),
                };
            }
        };
        let status = response.status();
        self.metrics.request(endpoint, status.as_str());
        let retry_after = siemflow_core::http::retry_after(response.headers());
        let headers = response.headers().clone();
        if status.is_success() {
            self.check_clock(&headers);
        }
        let limit = if status.is_success() {
            max_bytes
        } else {
            MAX_ERROR_BODY
        };
        let body = match read_limited(response, limit).await {
            Ok(body) => body,
            Err(BodyError::TooLarge(size)) if status.is_success() => {
                return Attempt::Failed(ApiError::TooLarge {
                    limit: max_bytes,
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
        match classify(status.as_u16(), &body) {
            Verdict::Success => Attempt::Done(Answer { headers, body }),
            Verdict::Throttled(detail) => Attempt::Throttled {
                detail,
                retry_after,
            },
            Verdict::Transient(detail) => Attempt::Transient {
                detail,
                retry_after,
            },
            Verdict::Refused { code, message } => Attempt::Failed(ApiError::Api {
                endpoint: endpoint.label(),
                status: status.as_u16(),
                code,
                message,
            }),
        }
    }

    /// Windows are computed from our clock; a server far off means AF20055/AF20030 later.
    fn check_clock(&self, headers: &HeaderMap) {
        let Some(server) = headers
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| chrono::DateTime::parse_from_rfc2822(v).ok())
        else {
            return;
        };
        let ours = (self.tuning.clock)();
        let skew = ours - server.with_timezone(&chrono::Utc);
        if skew.abs() <= CLOCK_SKEW_WARNING {
            return;
        }
        let now = ours.timestamp();
        let last = self.skew_warned_at.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 3600
            && self
                .skew_warned_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                tenant_id = %self.tenant_id,
                skew_seconds = skew.num_seconds(),
                "this machine's clock differs from the Management API's by more than 5 minutes; listing windows may be refused (AF20030/AF20055): synchronise the clock (NTP)"
            );
        }
    }
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

/// Adds `PublisherIdentifier` unless the URL carries it already (in any casing): the
/// service leaves it out of NextPageUri, and calls without it share a global quota.
pub(crate) fn with_publisher(mut url: Url, publisher: &str) -> Url {
    let present = url
        .query_pairs()
        .any(|(name, _)| name.eq_ignore_ascii_case("PublisherIdentifier"));
    if !present {
        url.query_pairs_mut()
            .append_pair("PublisherIdentifier", publisher);
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_is_recognised_by_code_under_any_status() {
        let body = br#"{"error":{"code":"AF429","message":"Too many requests. Method=GetBlob, PublisherId=x"}}"#;
        assert!(matches!(classify(403, body), Verdict::Throttled(_)));
        assert!(matches!(classify(429, body), Verdict::Throttled(_)));
        assert!(matches!(classify(429, b""), Verdict::Throttled(_)));
    }

    #[test]
    fn server_errors_and_timeouts_are_transient() {
        let body = br#"{"error":{"code":"AF50000","message":"An internal error occurred."}}"#;
        assert!(matches!(classify(500, body), Verdict::Transient(_)));
        assert!(matches!(classify(503, b"<html>"), Verdict::Transient(_)));
        assert!(matches!(classify(408, b""), Verdict::Transient(_)));
        assert!(matches!(
            classify(400, br#"{"error":{"code":"AF50005","message":"x"}}"#),
            Verdict::Transient(_)
        ));
    }

    #[test]
    fn other_refusals_carry_their_code() {
        let body = br#"{"error":{"code":"AF20022","message":"No subscription found."}}"#;
        assert_eq!(
            classify(400, body),
            Verdict::Refused {
                code: "AF20022".into(),
                message: "No subscription found.".into()
            }
        );
        let unauthorized = br#"{"Message":"Authorization has been denied for this request."}"#;
        match classify(401, unauthorized) {
            Verdict::Refused { code, message } => {
                assert_eq!(code, "HTTP401");
                assert!(message.contains("denied"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(classify(200, b"[]"), Verdict::Success);
    }

    #[test]
    fn config_errors_are_told_apart() {
        let api = |code: &str, status| ApiError::Api {
            endpoint: "content",
            status,
            code: code.into(),
            message: String::new(),
        };
        assert!(api("AF10001", 401).is_config());
        assert!(api("AF20010", 401).is_config());
        assert!(api("HTTP404", 404).is_config());
        assert!(!api("AF20022", 400).is_config());
        assert!(!api("AF20050", 400).is_config());
    }

    #[test]
    fn publisher_is_added_once_and_the_url_kept_verbatim() {
        let next = "http://h/api/v1/t/activity/feed/subscriptions/content?contentType=Audit.Exchange&starttime=2026-09-01T10:00:00&endTime=2026-09-01T11:00:00&nextPage=20260901105500R000123";
        let url = with_publisher(Url::parse(next).expect("url"), "p-1");
        assert_eq!(url.as_str(), format!("{next}&PublisherIdentifier=p-1"));
        let again = with_publisher(url.clone(), "other");
        assert_eq!(again, url);
        let lower = Url::parse("http://h/x?publisheridentifier=a").expect("url");
        assert_eq!(with_publisher(lower.clone(), "b"), lower);
        let blob = "http://h/api/v1.0/t/activity/feed/audit/20260901101502113001234$20260901101744123004567$audit_exchange$Audit_Exchange$emea0036";
        let url = with_publisher(Url::parse(blob).expect("url"), "p");
        assert_eq!(url.as_str(), format!("{blob}?PublisherIdentifier=p"));
    }
}
