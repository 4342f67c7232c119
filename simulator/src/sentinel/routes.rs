//! `POST /dataCollectionRules/{immutableId}/streams/{stream}?api-version=…` and the Entra
//! token endpoint beside it. Checks run in this order: token, api-version, DCR, role,
//! stream, content type, faults, request rate, body size, JSON, records, data rate.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Ingestion;
use super::config::Dcr;
use super::records::check_records;
use crate::state::lock;
use crate::tokens;
use crate::wire::{self, BodyError, query_get, query_pairs};

/// API versions the Logs Ingestion API answers.
const API_VERSIONS: [&str; 2] = ["2023-01-01", "2021-11-01-preview"];

/// The token endpoint plus the ingestion path.
pub(crate) fn router(ing: Arc<Ingestion>) -> Router {
    tokens::router(ing.entra.clone()).fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: Body| {
            let ing = ing.clone();
            async move { ingest(ing, method, uri, headers, body).await }
        },
    )
}

/// An error answer: `{"error":{"code","message"}}` plus `x-ms-error-code`.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}}).to_string();
        let mut r = (self.status, body).into_response();
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        h.insert("x-ms-error-code", HeaderValue::from_static(self.code));
        if self.status == StatusCode::UNAUTHORIZED {
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(s) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

async fn ingest(
    ing: Arc<Ingestion>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let f = &ing.cfg.faults;
    if ing.dice.chance(f.slow_rate) {
        tokio::time::sleep(f.slow_delay).await;
    }
    let result = handle(&ing, &method, &uri, &headers, body).await;
    ing.finish(result)
}

/// What an accepted request did.
#[derive(Debug, Default)]
pub(crate) struct Accepted {
    pub(crate) stream: String,
    pub(crate) records: Vec<Value>,
    /// The body was JSON but not an array: 204, and nothing ingested (the real trap).
    pub(crate) not_an_array: bool,
    pub(crate) truncated: u64,
}

async fn handle(
    ing: &Ingestion,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Result<Accepted, ApiError> {
    let Some((dcr_id, stream)) = parse_path(uri.path()) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("The requested path '{}' does not exist.", uri.path()),
        ));
    };
    if method != Method::POST {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("The method '{method}' is not allowed; use POST."),
        ));
    }
    let client_id = authorize(ing, headers)?;
    let q = query_pairs(uri.query());
    match query_get(&q, "api-version") {
        None => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            ));
        }
        Some(v) if !API_VERSIONS.contains(&v) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "InvalidApiVersionParameter",
                format!(
                    "The api-version '{v}' is invalid. The supported versions are '{}'.",
                    API_VERSIONS.join(",")
                ),
            ));
        }
        Some(_) => {}
    }
    let dcr = find_dcr(&ing.cfg.dcrs, &dcr_id)?;
    let allowed = match &dcr.publishers {
        Some(list) => list.iter().any(|c| c.eq_ignore_ascii_case(&client_id)),
        None => ing.cfg.client_id.eq_ignore_ascii_case(&client_id),
    };
    if !allowed {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "OperationFailed",
            format!(
                "The authentication token provided does not have access to ingest data for the data collection rule with immutable Id '{}'.",
                dcr.immutable_id
            ),
        ));
    }
    let Some(stream) = dcr.streams.iter().find(|s| **s == stream).cloned() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "InvalidStream",
            format!(
                "Stream '{stream}' is not declared in the data collection rule with immutable Id '{}'.",
                dcr.immutable_id
            ),
        ));
    };
    let json_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
    if !json_type {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            "The request Content-Type must be 'application/json'.",
        ));
    }
    let f = &ing.cfg.faults;
    let retry = f.retry_after.as_secs();
    if ing.dice.chance(f.throttle_rate) {
        return Err(throttled().retry_after(retry));
    }
    if ing.dice.chance(f.unavailable_rate) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "The service is temporarily unavailable. Retry the request after the time in the Retry-After header.",
        )
        .retry_after(retry));
    }
    if ing.dice.chance(f.server_error_rate) {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            "An internal error occurred. Retry the request.",
        ));
    }
    ing.admit(&dcr.immutable_id, 1, 0)?;
    let limit = ing.cfg.max_body_bytes;
    let (bytes, wire_len) = wire::read_body(headers, body, limit, limit)
        .await
        .map_err(|e| body_error(ing, e))?;
    ing.note_body(wire_len, bytes.len() as u64);
    let parsed: Value = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "InvalidJson",
            format!("The request body is not valid JSON: {e}."),
        )
    })?;
    ing.admit(&dcr.immutable_id, 0, bytes.len() as u64)?;
    let Value::Array(mut records) = parsed else {
        return Ok(Accepted {
            stream,
            not_an_array: true,
            ..Accepted::default()
        });
    };
    let truncated = check_records(&mut records, &dcr.required_columns, ing.cfg.max_field_bytes)
        .map_err(|r| ApiError::new(StatusCode::BAD_REQUEST, r.code, r.message))?;
    Ok(Accepted {
        stream,
        records,
        not_an_array: false,
        truncated,
    })
}

/// `/dataCollectionRules/{id}/streams/{stream}` (the fixed segments in any letter case).
fn parse_path(path: &str) -> Option<(String, String)> {
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    match parts[..] {
        ["", rules, id, streams, stream]
            if rules.eq_ignore_ascii_case("dataCollectionRules")
                && streams.eq_ignore_ascii_case("streams") =>
        {
            Some((decode(id), decode(stream)))
        }
        _ => None,
    }
}

fn decode(segment: &str) -> String {
    form_urlencoded::parse(format!("x={segment}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn find_dcr<'a>(dcrs: &'a [Dcr], id: &str) -> Result<&'a Dcr, ApiError> {
    dcrs.iter()
        .find(|d| d.immutable_id.eq_ignore_ascii_case(id))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("Data collection rule with immutable Id '{id}' not found."),
            )
        })
}

/// Checks the bearer token: issued here, unexpired, for the configured audience.
/// Returns the client id it was issued to.
fn authorize(ing: &Ingestion, headers: &HeaderMap) -> Result<String, ApiError> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("Bearer")
                .then(|| token.trim().to_string())
        });
    let Some(token) = bearer else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing or is not a Bearer token.",
        ));
    };
    let info = lock(&ing.entra.tokens).get(&token).cloned();
    let Some(info) = info.filter(|i| i.expires_ms > ing.entra.now_ms()) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "InvalidToken",
            "The access token is invalid or has expired.",
        ));
    };
    let wanted = ing.cfg.audience.trim_end_matches('/');
    if !info.audience.eq_ignore_ascii_case(wanted) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "InvalidAudience",
            format!(
                "The access token audience '{}' is not valid for this endpoint; request a token with the scope '{wanted}//.default'.",
                info.audience
            ),
        ));
    }
    Ok(info.client_id)
}

fn throttled() -> ApiError {
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "TooManyRequests",
        "The request rate or data volume of the data collection rule exceeded its limit. Retry after the time in the Retry-After header.",
    )
}

fn body_error(ing: &Ingestion, e: BodyError) -> ApiError {
    match e {
        BodyError::TooLarge { length, limit, .. } => {
            ing.note_body(length, 0);
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "ContentLengthLimitExceeded",
                format!(
                    "Maximum allowed content length: {limit} bytes ({} MB). Provided content length: {length} bytes.",
                    limit / 1_048_576
                ),
            )
        }
        BodyError::UnsupportedEncoding(enc) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedContentEncoding",
            format!("Content-Encoding '{enc}' is not supported; use gzip."),
        ),
        BodyError::Corrupt(why) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "InvalidContentEncoding",
            format!("The gzip request body could not be decompressed: {why}."),
        ),
        BodyError::Io(why) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            format!("The request body could not be read: {why}."),
        ),
    }
}

impl Ingestion {
    /// Counts a request and `bytes` against the DCR's one-minute windows; 429 past a limit.
    fn admit(&self, dcr: &str, requests: u32, bytes: u64) -> Result<(), ApiError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let minute = now / 60;
        let mut inner = lock(&self.inner);
        let w = inner
            .windows
            .entry(dcr.to_ascii_lowercase())
            .or_insert((minute, 0, 0));
        if w.0 != minute {
            *w = (minute, 0, 0);
        }
        w.1 = w.1.saturating_add(requests);
        w.2 = w.2.saturating_add(bytes);
        if w.1 > self.cfg.requests_per_minute || w.2 > self.cfg.bytes_per_minute {
            return Err(throttled().retry_after((minute + 1) * 60 - now));
        }
        Ok(())
    }

    fn note_body(&self, wire: u64, decoded: u64) {
        let mut inner = lock(&self.inner);
        inner.stats.largest_body = inner.stats.largest_body.max(wire);
        inner.stats.largest_decoded_body = inner.stats.largest_decoded_body.max(decoded);
    }

    /// Stores what was accepted, counts the answer and turns it into the response.
    fn finish(&self, result: Result<Accepted, ApiError>) -> Response {
        let mut inner = lock(&self.inner);
        inner.stats.requests += 1;
        match result {
            Ok(accepted) => {
                let s = &mut inner.stats;
                *s.by_status.entry(204).or_default() += 1;
                s.values_truncated += accepted.truncated;
                if accepted.not_an_array {
                    s.non_array_bodies += 1;
                }
                s.records_accepted += accepted.records.len() as u64;
                if self.cfg.keep_records && !accepted.records.is_empty() {
                    inner
                        .received
                        .entry(accepted.stream)
                        .or_default()
                        .extend(accepted.records);
                }
                StatusCode::NO_CONTENT.into_response()
            }
            Err(e) => {
                let s = &mut inner.stats;
                *s.by_status.entry(e.status.as_u16()).or_default() += 1;
                *s.by_error.entry(e.code.to_string()).or_default() += 1;
                match e.status {
                    StatusCode::PAYLOAD_TOO_LARGE => s.too_large += 1,
                    StatusCode::TOO_MANY_REQUESTS => s.throttled += 1,
                    _ => {}
                }
                tracing::debug!(status = %e.status, code = e.code, "sentinel simulator: refused");
                e.into_response()
            }
        }
    }
}
