//! What an OTLP receiver's answer means, as the OTLP specification's tables say
//! (`opentelemetry-proto/docs/specification.md`, "Failures" and "Throttling"): retry,
//! dead-letter, configuration, or a request too large.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use prost::Message as _;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap};
use siemflow_core::delivery::{DroppedResponse, EventOutcome, Failure, Outcome, Rejection};
use tonic::Code;
use tonic_types::{RpcStatusExt as _, StatusExt as _};

/// The dead-letter reason of records a receiver refused in a partial success.
pub(super) const PARTIAL_SUCCESS: &str = "partial_success";

/// What a successful Export answer says about a request of `events` records.
///
/// `partial_success.rejected_log_records = n > 0`: the request must never be sent again
/// (the receiver kept the rest), and OTLP does not say which records were refused — so
/// the last `n` of the request are dead-lettered, with the receiver's message and that
/// caveat, and the others count as delivered. `n = 0` with a message is a warning.
pub(super) fn partial_success(
    response: &ExportLogsServiceResponse,
    events: usize,
    component: &str,
) -> Outcome {
    let Some(partial) = &response.partial_success else {
        return Outcome::Delivered;
    };
    let rejected = partial.rejected_log_records;
    let said = partial.error_message.trim();
    if rejected <= 0 {
        if !said.is_empty() {
            tracing::warn!(component, message = %said, "the receiver took every record with a warning");
        }
        return Outcome::Delivered;
    }
    let dead = usize::try_from(rejected).unwrap_or(usize::MAX).min(events);
    let said = if said.is_empty() {
        "(no error_message)"
    } else {
        said
    };
    let mut message =
        format!("the receiver rejected {rejected} of the request's {events} log records: {said}");
    if dead < events {
        message.push_str(&format!(
            " (OTLP does not say which; the request's last {dead} were dead-lettered)"
        ));
    }
    let rejection = Rejection::new(PARTIAL_SUCCESS, message);
    let mut outcomes = vec![EventOutcome::Delivered; events - dead];
    outcomes.resize(events, EventOutcome::Rejected(rejection));
    Outcome::PerEvent(outcomes)
}

/// The failure a gRPC status stands for (never called with `Ok`).
///
/// Retried: CANCELLED, DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE, UNAVAILABLE, DATA_LOSS,
/// and RESOURCE_EXHAUSTED only with a `RetryInfo`, whose delay replaces the backoff. A
/// message-size refusal (tonic answers OUT_OF_RANGE, grpc-core and grpc-go
/// RESOURCE_EXHAUSTED) is a request too large: split, never resent as it is.
/// UNAUTHENTICATED, PERMISSION_DENIED, UNIMPLEMENTED and NOT_FOUND are configuration (a
/// wrong key or endpoint); every other code is final for the request's records.
pub(super) fn grpc_failure(status: &tonic::Status) -> Failure {
    let code = status.code();
    let reason = format!(
        "gRPC {}: {}",
        code_name(code),
        bounded(status.message().trim())
    );
    let retry_after = status
        .get_details_retry_info()
        .and_then(|info| info.retry_delay);
    match code {
        Code::OutOfRange | Code::ResourceExhausted if says_too_large(status.message()) => {
            Failure::TooLarge {
                reason,
                response: None,
            }
        }
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => Failure::Retry {
            reason,
            retry_after,
        },
        Code::ResourceExhausted if retry_after.is_some() => Failure::Retry {
            reason,
            retry_after,
        },
        // tonic answers a compression it does not take with UNIMPLEMENTED.
        Code::Unimplemented if status.message().contains("compressed") => Failure::config(format!(
            "{reason} (the receiver takes no gzip: set compression = \"none\")"
        )),
        Code::Unauthenticated | Code::PermissionDenied | Code::Unimplemented | Code::NotFound => {
            Failure::config(reason)
        }
        _ => Failure::Data(Rejection::new(word(code), reason)),
    }
}

/// The failure an OTLP/HTTP error answer stands for: 429, 502, 503 and 504 are retried
/// (with `Retry-After`), 413 is a request too large, 401, 403, 404, 405 and 407 are
/// configuration, every other status is final for the request's records (the
/// specification: "all other 4xx or 5xx response status codes MUST NOT be retried").
pub(super) fn http_failure(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Failure {
    let said = error_message(headers, body);
    let reason = format!("HTTP {status}: {said}");
    match status.as_u16() {
        429 | 502 | 503 | 504 => Failure::Retry {
            reason,
            retry_after: siemflow_core::http::retry_after(headers),
        },
        413 => Failure::TooLarge {
            reason,
            response: Some(DroppedResponse::new(413, said.as_bytes())),
        },
        401 | 403 | 404 | 405 | 407 => Failure::config(reason),
        400..=599 => Failure::Data(Rejection {
            reason: if status.as_u16() == 400 {
                "invalid_argument".into()
            } else {
                "rejected".into()
            },
            message: reason,
            response: Some(DroppedResponse::new(status.as_u16(), said.as_bytes())),
        }),
        // Not an answer to a POST (a redirect is not followed with a body): most likely a
        // wrong endpoint.
        _ => Failure::config(reason),
    }
}

/// The message of an OTLP/HTTP error body: a `google.rpc.Status` (protobuf, or JSON when
/// the receiver answers in JSON), else the body's text.
fn error_message(headers: &HeaderMap, body: &[u8]) -> String {
    let json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if json {
        if let Ok(serde_json::Value::Object(object)) = serde_json::from_slice(body)
            && let Some(serde_json::Value::String(message)) = object.get("message")
        {
            return bounded(message);
        }
    } else if let Ok(status) = tonic_types::pb::Status::decode(body)
        && !status.message.is_empty()
    {
        let mut message = bounded(&status.message);
        if let Some(delay) = status.get_details_retry_info().and_then(|i| i.retry_delay) {
            message.push_str(&format!(" (RetryInfo {delay:?})"));
        }
        return message;
    }
    bounded(&String::from_utf8_lossy(body))
}

/// Receivers' words for a message over their size limit (tonic: "decoded message length
/// too large"; grpc-core and grpc-go: "received message larger than max").
fn says_too_large(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    [
        "larger than max",
        "too large",
        "exceeds the maximum",
        "exceeds maximum",
    ]
    .iter()
    .any(|words| message.contains(words))
}

/// At most 1 KiB of a peer's text in a reason: enough to tell what happened.
fn bounded(text: &str) -> String {
    const MAX: usize = 1024;
    if text.len() <= MAX {
        return text.to_string();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// The code as the specification writes it (`UNAVAILABLE`).
pub(super) fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The dead-letter reason of a final gRPC code (`invalid_argument`).
fn word(code: Code) -> String {
    code_name(code).to_ascii_lowercase()
}
