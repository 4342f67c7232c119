//! What can go wrong with a request, classified as the design's table says: retry, data,
//! configuration, or too large.

use std::io;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;

use crate::dropped::DroppedResponse;
use crate::io_error::{self, IoContext};

/// The three ways the design handles a failure ("Errors and retries").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// Transient: back off and try again.
    Retry,
    /// These events can never succeed: dead-letter them with the reason, never loop.
    Data,
    /// Only an operator can fix it: unhealthy, retried slowly.
    Config,
}

/// Why a request (or some of its events) did not get through.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// Transient (timeout, 429, 5xx, a busy peer): back off and send again.
    Retry {
        /// What happened, for logs.
        reason: String,
        /// The wait the peer asked for (`Retry-After`), which replaces the backoff.
        retry_after: Option<Duration>,
    },
    /// The configuration is wrong (bad credentials, missing permission, wrong path): the
    /// sink is unhealthy and retries slowly, as an operator may fix it.
    Config {
        /// What is wrong and, where known, how to fix it.
        reason: String,
    },
    /// The events themselves can never be accepted: they are dead-lettered.
    Data(Rejection),
    /// The request body was too large: it is split in two and each half sent; a single
    /// event that is too large is dead-lettered.
    TooLarge {
        /// What the peer said.
        reason: String,
        /// The peer's response, kept for the dead letter of a single event.
        response: Option<DroppedResponse>,
    },
}

impl Failure {
    /// A transient failure without a requested wait.
    pub fn retry(reason: impl Into<String>) -> Self {
        Failure::Retry {
            reason: reason.into(),
            retry_after: None,
        }
    }

    /// A configuration failure.
    pub fn config(reason: impl Into<String>) -> Self {
        Failure::Config {
            reason: reason.into(),
        }
    }

    /// An I/O error, classified by [`io_error::classify`]; `message` says what failed
    /// for people (the operation and the file), a data failure's reason is the error's
    /// short word ([`io_error::reason`]).
    pub fn from_io(error: &io::Error, context: IoContext, message: impl Into<String>) -> Self {
        let message = message.into();
        match io_error::classify(error, context) {
            FailureClass::Retry => Failure::retry(message),
            FailureClass::Config => Failure::config(message),
            FailureClass::Data => Failure::Data(Rejection::new(io_error::reason(error), message)),
        }
    }

    /// Its class; a request too large is data (it is split, and a single event that is
    /// still too large is dead-lettered).
    pub fn class(&self) -> FailureClass {
        match self {
            Failure::Retry { .. } => FailureClass::Retry,
            Failure::Config { .. } => FailureClass::Config,
            Failure::Data(_) | Failure::TooLarge { .. } => FailureClass::Data,
        }
    }

    /// The word used in metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::Retry { .. } => "retry",
            Failure::Config { .. } => "config",
            Failure::Data(_) => "data",
            Failure::TooLarge { .. } => "too_large",
        }
    }

    /// A short description for logs.
    pub fn reason(&self) -> &str {
        match self {
            Failure::Retry { reason, .. }
            | Failure::Config { reason }
            | Failure::TooLarge { reason, .. } => reason,
            Failure::Data(rejection) => &rejection.message,
        }
    }

    /// The generic classification of an HTTP status a sink has no better knowledge of:
    /// 408, 429 and 5xx retry (with `Retry-After`), 413 is too large, 401, 403, 404,
    /// 405 and 407 are configuration, any other 4xx is data. `None` for a success.
    pub fn from_status(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Option<Self> {
        if status.is_success() {
            return None;
        }
        let response = DroppedResponse::new(status.as_u16(), body);
        let reason = format!("HTTP {status}: {}", response.body);
        Some(match status.as_u16() {
            408 | 429 | 500..=599 => Failure::Retry {
                reason,
                retry_after: crate::http::retry_after(headers),
            },
            413 => Failure::TooLarge {
                reason,
                response: Some(response),
            },
            401 | 403 | 404 | 405 | 407 => Failure::Config { reason },
            400..=499 => Failure::Data(Rejection {
                reason: "rejected".into(),
                message: reason,
                response: Some(response),
            }),
            // 1xx and 3xx are not answers to a POST we can act on (redirects are not followed
            // with a body): most likely a wrong endpoint.
            _ => Failure::Config { reason },
        })
    }

    /// A transport error (connect, TLS, timeout, a reset connection): always retried.
    /// The URL is left out, as it may carry a credential in its query.
    pub fn from_transport(error: reqwest::Error) -> Self {
        let what = if error.is_timeout() {
            "request timed out"
        } else if error.is_connect() {
            "cannot connect"
        } else {
            "request failed"
        };
        let error = error.without_url();
        let mut reason = format!("{what}: {error}");
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            reason.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        Failure::retry(reason)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

/// Why an event was refused for good, as the dead letter records it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// A short machine-friendly word (`invalid_data`, `too_large`, `encoding_failed`...).
    pub reason: String,
    /// What the peer or the sink said, for people.
    pub message: String,
    /// The peer's response, if one caused it.
    pub response: Option<DroppedResponse>,
}

impl Rejection {
    /// A rejection found by the sink itself, before sending.
    pub fn new(reason: impl Into<String>, message: impl Into<String>) -> Self {
        Rejection {
            reason: reason.into(),
            message: message.into(),
            response: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(status: u16) -> Failure {
        Failure::from_status(
            StatusCode::from_u16(status).expect("status"),
            &HeaderMap::new(),
            b"{\"error\":\"x\"}",
        )
        .expect("a failure")
    }

    #[test]
    fn generic_status_classes() {
        assert!(Failure::from_status(StatusCode::OK, &HeaderMap::new(), b"").is_none());
        assert!(Failure::from_status(StatusCode::NO_CONTENT, &HeaderMap::new(), b"").is_none());
        for status in [408, 429, 500, 502, 503, 504] {
            assert_eq!(classify(status).kind(), "retry", "{status}");
        }
        for status in [401, 403, 404, 407] {
            assert_eq!(classify(status).kind(), "config", "{status}");
        }
        assert_eq!(classify(413).kind(), "too_large");
        match classify(400) {
            Failure::Data(rejection) => {
                let response = rejection.response.expect("response kept");
                assert_eq!(response.status, 400);
                assert_eq!(response.body, "{\"error\":\"x\"}");
            }
            other => panic!("400 is a data error, not {other:?}"),
        }
    }

    #[test]
    fn io_errors_take_the_class_of_the_one_io_classification() {
        let long = io::Error::from_raw_os_error(libc::ENAMETOOLONG);
        match Failure::from_io(&long, IoContext::EventPath, "cannot open `x`") {
            Failure::Data(rejection) => {
                assert_eq!(rejection.reason, "name_too_long");
                assert_eq!(rejection.message, "cannot open `x`");
            }
            other => panic!("a data failure, not {other:?}"),
        }
        let configured = Failure::from_io(&long, IoContext::Configured, "x");
        assert_eq!(configured.class(), FailureClass::Config);
        let full = io::Error::from_raw_os_error(libc::ENOSPC);
        assert_eq!(
            Failure::from_io(&full, IoContext::EventPath, "x").class(),
            FailureClass::Retry
        );
    }

    #[test]
    fn retry_after_is_read() {
        let mut headers = HeaderMap::new();
        headers.insert(reqwest::header::RETRY_AFTER, "7".parse().expect("header"));
        match Failure::from_status(StatusCode::TOO_MANY_REQUESTS, &headers, b"") {
            Some(Failure::Retry { retry_after, .. }) => {
                assert_eq!(retry_after, Some(Duration::from_secs(7)))
            }
            other => panic!("{other:?}"),
        }
    }
}
