//! HEC status codes and the JSON replies that carry them (reference §1.4–1.5).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// A HEC reply code with its HTTP status and text, as Splunk sends them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Code {
    Success,
    TokenDisabled,
    TokenRequired,
    InvalidAuthorization,
    InvalidToken,
    NoData,
    InvalidDataFormat,
    IncorrectIndex,
    InternalError,
    ServerBusy,
    ChannelMissing,
    InvalidChannel,
    EventRequired,
    EventBlank,
    AckDisabled,
    IndexedFields,
    QueryStringAuthDisabled,
    Healthy,
    QueuesFull,
    HealthInvalidToken,
    HealthTokenDisabled,
    QueueNearCapacity,
    QueueFull,
    AckChannelFull,
}

impl Code {
    /// The numeric HEC code.
    pub(crate) fn number(self) -> u32 {
        match self {
            Code::Success => 0,
            Code::TokenDisabled => 1,
            Code::TokenRequired => 2,
            Code::InvalidAuthorization => 3,
            Code::InvalidToken => 4,
            Code::NoData => 5,
            Code::InvalidDataFormat => 6,
            Code::IncorrectIndex => 7,
            Code::InternalError => 8,
            Code::ServerBusy => 9,
            Code::ChannelMissing => 10,
            Code::InvalidChannel => 11,
            Code::EventRequired => 12,
            Code::EventBlank => 13,
            Code::AckDisabled => 14,
            Code::IndexedFields => 15,
            Code::QueryStringAuthDisabled => 16,
            Code::Healthy => 17,
            Code::QueuesFull => 18,
            Code::HealthInvalidToken => 21,
            Code::HealthTokenDisabled => 22,
            Code::QueueNearCapacity => 24,
            Code::QueueFull => 26,
            Code::AckChannelFull => 27,
        }
    }

    /// The HTTP status Splunk pairs with the code.
    pub(crate) fn status(self) -> StatusCode {
        match self {
            Code::Success | Code::Healthy | Code::QueueNearCapacity => StatusCode::OK,
            Code::TokenRequired | Code::InvalidAuthorization => StatusCode::UNAUTHORIZED,
            Code::TokenDisabled | Code::InvalidToken => StatusCode::FORBIDDEN,
            Code::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
            Code::ServerBusy | Code::QueuesFull => StatusCode::SERVICE_UNAVAILABLE,
            Code::QueueFull | Code::AckChannelFull => StatusCode::TOO_MANY_REQUESTS,
            Code::NoData
            | Code::InvalidDataFormat
            | Code::IncorrectIndex
            | Code::ChannelMissing
            | Code::InvalidChannel
            | Code::EventRequired
            | Code::EventBlank
            | Code::AckDisabled
            | Code::IndexedFields
            | Code::QueryStringAuthDisabled
            | Code::HealthInvalidToken
            | Code::HealthTokenDisabled => StatusCode::BAD_REQUEST,
        }
    }

    /// The reply text.
    pub(crate) fn text(self) -> &'static str {
        match self {
            Code::Success => "Success",
            Code::TokenDisabled | Code::HealthTokenDisabled => "Token disabled",
            Code::TokenRequired => "Token is required",
            Code::InvalidAuthorization => "Invalid authorization",
            Code::InvalidToken | Code::HealthInvalidToken => "Invalid token",
            Code::NoData => "No data",
            Code::InvalidDataFormat => "Invalid data format",
            Code::IncorrectIndex => "Incorrect index",
            Code::InternalError => "Internal server error",
            Code::ServerBusy => "Server is busy",
            Code::ChannelMissing => "Data channel is missing",
            Code::InvalidChannel => "Invalid data channel",
            Code::EventRequired => "Event field is required",
            Code::EventBlank => "Event field cannot be blank",
            Code::AckDisabled => "ACK is disabled",
            Code::IndexedFields => "Error in handling indexed fields",
            Code::QueryStringAuthDisabled => "Query string authorization is not enabled",
            Code::Healthy => "HEC is healthy",
            Code::QueuesFull => "HEC is unhealthy, queues are full",
            Code::QueueNearCapacity => "HEC queue is approaching its capacity limit",
            Code::QueueFull => "HEC queue is at capacity and cannot process any more requests",
            Code::AckChannelFull => {
                "HEC ACK channel is at capacity and cannot process any more requests"
            }
        }
    }
}

/// One reply: a HEC code, or the HTTP-level 413 that carries none.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Reply {
    /// `{"text":…,"code":…}` plus the optional partial-failure position and ackId.
    Hec {
        code: Code,
        invalid_event: Option<usize>,
        ack_id: Option<u64>,
    },
    /// The ack query answer `{"acks":{"id":bool,…}}`.
    Acks(Vec<(u64, bool)>),
    /// Body over `max_content_length` (splunkd's HTTP layer, not HEC, answers this).
    TooLarge { length: u64, limit: u64 },
}

impl From<Code> for Reply {
    fn from(code: Code) -> Self {
        Reply::Hec {
            code,
            invalid_event: None,
            ack_id: None,
        }
    }
}

impl Reply {
    /// The HTTP status of the reply.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Reply::Hec { code, .. } => code.status(),
            Reply::Acks(_) => StatusCode::OK,
            Reply::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }

    /// The HEC code, when the reply carries one.
    pub(crate) fn code(&self) -> Option<u32> {
        match self {
            Reply::Hec { code, .. } => Some(code.number()),
            Reply::Acks(_) | Reply::TooLarge { .. } => None,
        }
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let status = self.status();
        let (body, json) = match self {
            // Keys in Splunk's order: text, code, invalid-event-number, ackId.
            Reply::Hec {
                code,
                invalid_event,
                ack_id,
            } => {
                let mut s = format!(r#"{{"text":"{}","code":{}"#, code.text(), code.number());
                if let Some(k) = invalid_event {
                    s.push_str(&format!(r#","invalid-event-number":{k}"#));
                }
                if let Some(id) = ack_id {
                    s.push_str(&format!(r#","ackId":{id}"#));
                }
                s.push('}');
                (s, true)
            }
            Reply::Acks(acks) => {
                let map: serde_json::Map<String, serde_json::Value> = acks
                    .into_iter()
                    .map(|(id, done)| (id.to_string(), serde_json::Value::Bool(done)))
                    .collect();
                (serde_json::json!({ "acks": map }).to_string(), true)
            }
            Reply::TooLarge { length, limit } => (
                format!("Content-Length of {length} too large (maximum is {limit})"),
                false,
            ),
        };
        let mut r = (status, body).into_response();
        let content_type = if json {
            "application/json; charset=UTF-8"
        } else {
            "text/plain; charset=UTF-8"
        };
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        r
    }
}
