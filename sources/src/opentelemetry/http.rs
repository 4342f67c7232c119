//! OTLP/HTTP: `POST /v1/logs` with a protobuf or JSON `ExportLogsServiceRequest`,
//! gzip or not; the answer in the request's own encoding.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use prost::Message as _;

use super::Shared;
use super::grpc;
use super::receive::{self, Accepted, Encoding, Refusal};

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

/// Handles one export request.
pub(crate) async fn export(
    State(shared): State<Shared>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let encoding = match content_type(&headers) {
        Some(encoding) => encoding,
        None => {
            shared.counters.request("http", "unsupported_media_type");
            return (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("Content-Type must be {PROTOBUF} or {JSON}"),
            )
                .into_response();
        }
    };
    let outcome = answer(&shared, &headers, encoding, body).await;
    let status = match &outcome {
        Ok(accepted) if accepted.rejected > 0 => "partial",
        Ok(_) => "ok",
        Err(refusal) => refusal.status_label(),
    };
    shared.counters.request("http", status);
    match outcome {
        Ok(accepted) => success(accepted, encoding),
        Err(refusal) => failure(refusal, encoding),
    }
}

/// The request's encoding, from its `Content-Type` (parameters such as `charset` aside).
fn content_type(headers: &HeaderMap) -> Option<Encoding> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let media = value.split(';').next()?.trim();
    if media.eq_ignore_ascii_case(PROTOBUF) {
        Some(Encoding::Protobuf)
    } else if media.eq_ignore_ascii_case(JSON) {
        Some(Encoding::Json)
    } else {
        None
    }
}

async fn answer(
    shared: &Shared,
    headers: &HeaderMap,
    encoding: Encoding,
    body: Body,
) -> Result<Accepted, Refusal> {
    let token = headers
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    if !receive::authorized(shared.config.bearer_token.as_ref(), token) {
        return Err(Refusal::Unauthenticated);
    }
    let gzip = match headers
        .get(header::CONTENT_ENCODING)
        .map(HeaderValue::to_str)
    {
        None => false,
        Some(Ok(value)) if value.eq_ignore_ascii_case("identity") => false,
        Some(Ok(value)) if value.eq_ignore_ascii_case("gzip") => true,
        Some(other) => {
            return Err(Refusal::UnsupportedEncoding(
                other.unwrap_or("(not text)").to_string(),
            ));
        }
    };
    let limit = shared.config.max_request_bytes;
    let raw = Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX))
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<LengthLimitError>().is_some() {
                Refusal::TooLarge { limit, how: "" }
            } else {
                Refusal::Malformed(format!("the request body could not be read: {e}"))
            }
        })?
        .to_bytes();
    shared.counters.received_bytes.increment(raw.len() as u64);
    let decoded = if gzip {
        receive::decode(&receive::gunzip(&raw, limit)?, encoding, Utc::now())?
    } else {
        receive::decode(&raw, encoding, Utc::now())?
    };
    receive::deliver(shared, decoded).await
}

fn success(accepted: Accepted, encoding: Encoding) -> Response {
    let response = grpc::response(accepted).into_inner();
    match encoding {
        Encoding::Protobuf => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, PROTOBUF)],
            response.encode_to_vec(),
        )
            .into_response(),
        Encoding::Json => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, JSON)],
            // A response of plain numbers and text always serializes.
            serde_json::to_vec(&response).unwrap_or_default(),
        )
            .into_response(),
    }
}

/// A refusal: the HTTP status OTLP/HTTP gives its kind (retry only on 503, with
/// `Retry-After`), and a `google.rpc.Status` body in the request's encoding.
fn failure(refusal: Refusal, encoding: Encoding) -> Response {
    let status = grpc::status_of(refusal);
    let http_status = match status.code() {
        tonic::Code::InvalidArgument => StatusCode::BAD_REQUEST,
        tonic::Code::ResourceExhausted => StatusCode::PAYLOAD_TOO_LARGE,
        tonic::Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        // RFC 9110 §15.5.16: a content coding the server does not take is 415, with
        // Accept-Encoding naming those it does; OTLP/HTTP senders retry only 429/502/503/504.
        tonic::Code::Unimplemented => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    let code = status.code() as i32;
    let message = status.message().to_string();
    let mut response = match encoding {
        Encoding::Protobuf => (
            http_status,
            [(header::CONTENT_TYPE, PROTOBUF)],
            tonic_types::pb::Status {
                code,
                message,
                details: Vec::new(),
            }
            .encode_to_vec(),
        )
            .into_response(),
        Encoding::Json => (
            http_status,
            [(header::CONTENT_TYPE, JSON)],
            serde_json::json!({ "code": code, "message": message }).to_string(),
        )
            .into_response(),
    };
    if http_status == StatusCode::SERVICE_UNAVAILABLE
        && let Some(delay) = retry_after_seconds(&status)
    {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(delay));
    }
    if http_status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
        response.headers_mut().insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("gzip, identity"),
        );
    }
    if http_status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

/// `Retry-After` in whole seconds (at least 1: 0 would invite an immediate retry).
fn retry_after_seconds(status: &tonic::Status) -> Option<u64> {
    use tonic_types::StatusExt as _;
    let delay = status.get_details_retry_info()?.retry_delay?;
    Some(delay.as_secs_f64().ceil().max(1.0) as u64)
}
