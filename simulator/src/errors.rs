//! Error bodies of the two services: Entra ID's AADSTS form and the Management API's AF form.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::json;

/// A Management Activity API error: `{"error":{"code":"AFxxxxx","message":"…"}}`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub(crate) struct AfError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

impl AfError {
    /// An error with the given status, code and message.
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// HTTP 400 with a code, the status most AF errors come with.
    pub(crate) fn bad(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
}

impl IntoResponse for AfError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}}).to_string();
        let mut r = (self.status, body).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        r
    }
}

/// The Management API's answer to a missing, unknown or expired bearer token (ASP.NET style).
pub(crate) fn unauthorized() -> Response {
    let mut r = (
        StatusCode::UNAUTHORIZED,
        json!({"Message": "Authorization has been denied for this request."}).to_string(),
    )
        .into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

/// An Entra ID token endpoint error (AADSTS code, OAuth2 error string, HTTP status).
#[derive(Debug, Clone, thiserror::Error)]
#[error("AADSTS{number}: {description}")]
pub(crate) struct AadError {
    pub(crate) status: StatusCode,
    pub(crate) error: &'static str,
    pub(crate) number: u32,
    pub(crate) description: String,
}

impl AadError {
    /// HTTP 400 with the given OAuth2 error string.
    pub(crate) fn bad(error: &'static str, number: u32, description: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            error,
            number,
            description: description.into(),
        }
    }

    /// HTTP 401 `invalid_client`, as Entra answers failed client authentication.
    pub(crate) fn client(number: u32, description: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            error: "invalid_client",
            number,
            description: description.into(),
        }
    }
}

impl IntoResponse for AadError {
    fn into_response(self) -> Response {
        let now = Utc::now();
        let trace = uuid::Uuid::new_v4().to_string();
        let correlation = uuid::Uuid::new_v4().to_string();
        let stamp = now.format("%Y-%m-%d %H:%M:%SZ").to_string();
        let body = json!({
            "error": self.error,
            "error_description": format!(
                "AADSTS{}: {}\r\nTrace ID: {trace}\r\nCorrelation ID: {correlation}\r\nTimestamp: {stamp}",
                self.number, self.description
            ),
            "error_codes": [self.number],
            "timestamp": stamp,
            "trace_id": trace,
            "correlation_id": correlation,
            "error_uri": format!("https://login.microsoftonline.com/error?code={}", self.number),
        })
        .to_string();
        let mut r = (self.status, body).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        r
    }
}
