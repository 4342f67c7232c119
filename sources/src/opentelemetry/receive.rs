//! From a request's bytes to delivered events, and the answer both transports give.
//!
//! A request is answered only once every sink has its events (or a disk buffer holds
//! them): the sender keeps its copy until then, which is how OTLP's at-least-once
//! delivery reaches end to end.

use std::io::Read as _;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use flate2::read::GzDecoder;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message as _;
use serde::Deserialize;
use siemflow_core::event::attach_ack;
use siemflow_core::otlp::{self, Envelope, ExportLogsServiceRequest, Notes};
use siemflow_core::{BatchStatus, Event, Secret};
use tokio::sync::Semaphore;

use super::Shared;

/// How a request body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// `application/x-protobuf`, and every gRPC request.
    Protobuf,
    /// `application/json`: OTLP/JSON.
    Json,
}

/// Why a request is refused; each kind tells the sender what to do (retry or not).
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refusal {
    /// The body is not an OTLP logs request: never worth sending again.
    #[error("{0}")]
    Malformed(String),
    /// The body, as sent or decompressed, is over `max_request_bytes`: never worth
    /// sending again as it is.
    #[error("the request is larger than max_request_bytes ({limit} bytes){how}")]
    TooLarge {
        /// `max_request_bytes`.
        limit: u64,
        /// ", once decompressed" when the compressed body was within the limit.
        how: &'static str,
    },
    /// Events wait for delivery up to `max_pending_events`: send again after the delay.
    #[error(
        "the pipeline is full ({limit} events wait for delivery); retry after {delay:?}",
        delay = .retry_after
    )]
    Busy {
        /// `max_pending_events`.
        limit: usize,
        /// `retry_delay`.
        retry_after: Duration,
    },
    /// The events were not delivered within `delivery_timeout`; they stay in the
    /// pipeline, and the sender, sending again, may bring them twice.
    #[error(
        "the events were not delivered within delivery_timeout ({timeout:?}); retry after {delay:?}",
        delay = .retry_after
    )]
    Slow {
        /// `delivery_timeout`.
        timeout: Duration,
        /// `retry_delay`.
        retry_after: Duration,
    },
    /// A sink could not deliver the events: send them again.
    #[error("the events were not delivered by every sink; retry after {delay:?}", delay = .retry_after)]
    Undelivered {
        /// `retry_delay`.
        retry_after: Duration,
    },
    /// A `Content-Encoding` other than gzip or identity: not worth sending again as it is.
    #[error("Content-Encoding {0:?} is not supported: send gzip or none")]
    UnsupportedEncoding(String),
    /// No bearer token, or the wrong one.
    #[error("missing or wrong bearer token")]
    Unauthenticated,
}

impl Refusal {
    /// The label of `otlp_requests_total{status=…}`.
    pub(crate) fn status_label(&self) -> &'static str {
        match self {
            Refusal::Malformed(_) => "malformed",
            Refusal::TooLarge { .. } => "too_large",
            Refusal::Busy { .. } => "busy",
            Refusal::Undelivered { .. } => "undelivered",
            Refusal::Slow { .. } => "slow",
            Refusal::UnsupportedEncoding(_) => "unsupported_encoding",
            Refusal::Unauthenticated => "unauthenticated",
        }
    }

    /// The delay to ask for, when the sender should retry.
    pub(crate) fn retry_after(&self) -> Option<Duration> {
        match self {
            Refusal::Busy { retry_after, .. }
            | Refusal::Undelivered { retry_after }
            | Refusal::Slow { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }
}

/// A request taken in and delivered; `rejected` records of it were not (OTLP's
/// `partial_success`), for the reason in `message`.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Accepted {
    /// Records refused one by one (an undecodable OTLP/JSON record).
    pub rejected: u64,
    /// Why, for `partial_success.error_message`.
    pub message: String,
}

/// A decoded request: its events, and the records that could not be read.
#[derive(Debug, Default)]
pub(crate) struct Decoded {
    /// One event per log record.
    pub events: Vec<Event>,
    /// Records refused one by one.
    pub rejected: u64,
    /// The first refused record's reason.
    pub message: String,
    /// What the mapping worked around.
    pub notes: Notes,
}

/// Checks an `authorization` header's value against the configured token.
pub(crate) fn authorized(token: Option<&Secret>, header: Option<&[u8]>) -> bool {
    let Some(token) = token else {
        return true;
    };
    // RFC 6750: the scheme is case-insensitive, one space follows it.
    header
        .and_then(|value| {
            let (scheme, credentials) = value.split_at_checked(7)?;
            scheme
                .eq_ignore_ascii_case(b"bearer ")
                .then_some(credentials)
        })
        .is_some_and(|credentials| token.matches(credentials))
}

/// The body of a gzip request, refused once it grows past `limit` (a small request can
/// inflate a thousandfold: it is never decompressed whole first).
pub(crate) fn gunzip(body: &[u8], limit: u64) -> Result<Vec<u8>, Refusal> {
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit as usize));
    GzDecoder::new(body)
        .take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| Refusal::Malformed(format!("the gzip body does not decompress: {e}")))?;
    if out.len() as u64 > limit {
        return Err(Refusal::TooLarge {
            limit,
            how: ", once decompressed",
        });
    }
    Ok(out)
}

/// The events of a request body; `received` stands in for unset observed times.
pub(crate) fn decode(
    body: &[u8],
    encoding: Encoding,
    received: DateTime<Utc>,
) -> Result<Decoded, Refusal> {
    match encoding {
        Encoding::Protobuf => {
            let request = ExportLogsServiceRequest::decode(body).map_err(|e| {
                Refusal::Malformed(format!(
                    "the body is not a protobuf ExportLogsServiceRequest: {e}"
                ))
            })?;
            Ok(events_of(request, received))
        }
        Encoding::Json => decode_json(body, received),
    }
}

/// One event per record of a decoded request, taken by value so that its strings become
/// the events' without a copy.
pub(crate) fn events_of(request: ExportLogsServiceRequest, received: DateTime<Utc>) -> Decoded {
    let mut decoded = Decoded::default();
    for resource_logs in request.resource_logs {
        for scope_logs in resource_logs.scope_logs {
            let envelope = Envelope::new(
                resource_logs.resource.as_ref(),
                &resource_logs.schema_url,
                scope_logs.scope.as_ref(),
                &scope_logs.schema_url,
                &mut decoded.notes,
            );
            decoded
                .events
                .extend(scope_logs.log_records.into_iter().map(|record| {
                    Event::from_object(otlp::event_from_owned_record(
                        record,
                        &envelope,
                        received,
                        &mut decoded.notes,
                    ))
                }));
        }
    }
    decoded
}

/// OTLP/JSON read record by record: a record that does not decode is refused alone
/// (counted in `partial_success`), the others are taken.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", default)]
#[derive(Default)]
struct JsonRequest {
    resource_logs: Vec<JsonResourceLogs>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct JsonResourceLogs {
    resource: Option<Resource>,
    scope_logs: Vec<JsonScopeLogs>,
    schema_url: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct JsonScopeLogs {
    scope: Option<InstrumentationScope>,
    log_records: Vec<serde_json::Value>,
    schema_url: String,
}

fn decode_json(body: &[u8], received: DateTime<Utc>) -> Result<Decoded, Refusal> {
    let request: JsonRequest = serde_json::from_slice(body).map_err(|e| {
        Refusal::Malformed(format!(
            "the body is not an OTLP/JSON ExportLogsServiceRequest: {e}"
        ))
    })?;
    let mut decoded = Decoded::default();
    for resource_logs in request.resource_logs {
        for scope_logs in resource_logs.scope_logs {
            let envelope = Envelope::new(
                resource_logs.resource.as_ref(),
                &resource_logs.schema_url,
                scope_logs.scope.as_ref(),
                &scope_logs.schema_url,
                &mut decoded.notes,
            );
            for (index, record) in scope_logs.log_records.into_iter().enumerate() {
                match opentelemetry_proto::tonic::logs::v1::LogRecord::deserialize(record) {
                    Ok(record) => {
                        decoded
                            .events
                            .push(Event::from_object(otlp::event_from_owned_record(
                                record,
                                &envelope,
                                received,
                                &mut decoded.notes,
                            )))
                    }
                    Err(e) => {
                        if decoded.rejected == 0 {
                            decoded.message = format!(
                                "log record {index} of its scopeLogs is not an OTLP/JSON LogRecord: {e}"
                            );
                        }
                        decoded.rejected += 1;
                    }
                }
            }
        }
    }
    if decoded.rejected > 1 {
        decoded.message = format!(
            "{} log records are not OTLP/JSON LogRecords; the first: {}",
            decoded.rejected, decoded.message
        );
    }
    Ok(decoded)
}

/// Sends the events into the pipeline and waits until every sink has them.
pub(crate) async fn deliver(shared: &Shared, decoded: Decoded) -> Result<Accepted, Refusal> {
    let Decoded {
        mut events,
        rejected,
        message,
        notes,
    } = decoded;
    shared.count_notes(&notes);
    shared.counters.rejected.increment(rejected);
    let count = events.len();
    let accepted = Accepted { rejected, message };
    if count == 0 {
        return Ok(accepted);
    }
    let limit = shared.config.max_pending_events;
    let retry_after = shared.config.retry_delay;
    // A request larger than the whole allowance waits for all of it rather than never
    // fitting; anything smaller takes its share or is refused at once, before it is
    // taken in, so a retry cannot duplicate it.
    let wanted = u32::try_from(count.min(limit)).unwrap_or(u32::MAX);
    let permits = Arc::clone(&shared.pending)
        .try_acquire_many_owned(wanted)
        .map_err(|_| Refusal::Busy { limit, retry_after })?;
    shared.counters.received_events.increment(count as u64);
    let receipt = attach_ack(&mut events);
    // The events hold their permits until delivered, even once the request was
    // answered: a pipeline still holding them turns retries away instead of taking
    // them in twice.
    let out = shared.out.clone();
    let undelivered = shared.counters.undelivered.clone();
    let delivery = tokio::spawn(async move {
        out.send(events).await;
        let status = receipt.await;
        drop(permits);
        if status == BatchStatus::Failed {
            undelivered.increment(count as u64);
        }
        status
    });
    let timeout = shared.config.delivery_timeout;
    match tokio::time::timeout(timeout, delivery).await {
        Ok(Ok(BatchStatus::Delivered)) => Ok(accepted),
        Ok(Ok(BatchStatus::Failed) | Err(_)) => Err(Refusal::Undelivered { retry_after }),
        Err(_) => Err(Refusal::Slow {
            timeout,
            retry_after,
        }),
    }
}

/// The permits of `max_pending_events`.
pub(crate) fn pending_permits(limit: usize) -> Arc<Semaphore> {
    Arc::new(Semaphore::new(limit.min(Semaphore::MAX_PERMITS)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).expect("valid")
    }

    #[test]
    fn json_records_that_do_not_decode_are_refused_alone() {
        let body = br#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"svc"}}]},
            "scopeLogs":[{"scope":{"name":"s"},"logRecords":[
              {"timeUnixNano":"1767225600123000000","severityNumber":9,"body":{"stringValue":"one"},
               "traceId":"0102030405060708090a0b0c0d0e0f10","attributes":[{"key":"n","value":{"intValue":"7"}}]},
              {"timeUnixNano":{"not":"a number"}},
              {"body":{"kvlistValue":{"values":[{"key":"k","value":{"boolValue":true}}]}},"unknownField":1}
            ]}]}]}"#;
        let decoded = decode(body, Encoding::Json, now()).expect("decodes");
        assert_eq!(decoded.events.len(), 2);
        assert_eq!(decoded.rejected, 1);
        assert!(
            decoded.message.contains("log record 1"),
            "{}",
            decoded.message
        );
        let first = serde_json::to_value(&decoded.events[0].value).expect("json");
        assert_eq!(first["message"], "one");
        assert_eq!(first["attributes"]["n"], 7);
        assert_eq!(first["trace_id"], "0102030405060708090a0b0c0d0e0f10");
        assert_eq!(first["resource"]["attributes"]["service.name"], "svc");
        assert_eq!(first["scope"]["name"], "s");
        assert_eq!(first["timestamp"], "2026-01-01T00:00:00.123Z");
        let second = serde_json::to_value(&decoded.events[1].value).expect("json");
        assert_eq!(second["body"]["k"], true);
    }

    #[test]
    fn what_is_not_a_request_is_malformed() {
        for (body, encoding) in [
            (&b"\xff\xff\xff"[..], Encoding::Protobuf),
            (&b"[1,2]"[..], Encoding::Json),
            (&b"{\"resourceLogs\": 5}"[..], Encoding::Json),
        ] {
            assert!(
                matches!(decode(body, encoding, now()), Err(Refusal::Malformed(_))),
                "{body:?}"
            );
        }
        // Empty bodies are empty requests: a success with nothing in it.
        assert!(
            decode(b"", Encoding::Protobuf, now())
                .expect("empty")
                .events
                .is_empty()
        );
    }

    #[test]
    fn a_gzip_bomb_stops_at_the_limit() {
        use flate2::write::GzEncoder;
        use std::io::Write as _;
        let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(&vec![0u8; 64 << 20]).expect("compress");
        let bomb = encoder.finish().expect("compress");
        assert!(bomb.len() < 1 << 20);
        assert!(matches!(
            gunzip(&bomb, 1 << 20),
            Err(Refusal::TooLarge {
                how: ", once decompressed",
                ..
            })
        ));
        assert!(matches!(
            gunzip(b"not gzip", 1 << 20),
            Err(Refusal::Malformed(_))
        ));
    }

    #[test]
    fn the_bearer_token_is_checked() {
        let token = Secret::new("t0ken");
        assert!(authorized(None, None));
        assert!(authorized(Some(&token), Some(b"Bearer t0ken")));
        assert!(authorized(Some(&token), Some(b"bearer t0ken")));
        for wrong in [&b"Bearer t0ke"[..], b"Basic t0ken", b"t0ken", b"Bearer"] {
            assert!(!authorized(Some(&token), Some(wrong)), "{wrong:?}");
        }
        assert!(!authorized(Some(&token), None));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// Whatever bytes arrive, decoding answers (events or a refusal) and never panics.
        #[test]
        fn any_body_decodes_or_is_refused(body in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&body, Encoding::Protobuf, now());
            let _ = decode(&body, Encoding::Json, now());
            let _ = gunzip(&body, 4096);
        }

        /// Valid requests with a byte changed: still no panic, and a decoded request
        /// maps every record it holds.
        #[test]
        fn mutated_requests_never_panic(records in 1..20usize, at in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let request = sample_request(records);
            let mut body = request.encode_to_vec();
            let i = at.index(body.len());
            body[i] = byte;
            if let Ok(decoded) = decode(&body, Encoding::Protobuf, now()) {
                prop_assert!(decoded.events.len() <= records);
            }
            let json = serde_json::to_vec(&request).expect("json");
            let mut json = json;
            let i = at.index(json.len());
            json[i] = byte;
            let _ = decode(&json, Encoding::Json, now());
        }
    }

    fn sample_request(records: usize) -> ExportLogsServiceRequest {
        use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
        use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
        let text = |t: &str| AnyValue {
            value: Some(any_value::Value::StringValue(t.into())),
        };
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![KeyValue {
                        key: "service.name".into(),
                        value: Some(text("svc")),
                        key_strindex: 0,
                    }],
                    ..Resource::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope: None,
                    log_records: (0..records)
                        .map(|i| LogRecord {
                            time_unix_nano: 1_767_225_600_000_000_000 + i as u64,
                            body: Some(text(&format!("record {i}"))),
                            trace_id: vec![7; 16],
                            ..LogRecord::default()
                        })
                        .collect(),
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
    }

    #[test]
    fn protobuf_and_json_give_the_same_events() {
        let request = sample_request(3);
        let from_protobuf =
            decode(&request.encode_to_vec(), Encoding::Protobuf, now()).expect("protobuf");
        let json = serde_json::to_vec(&request).expect("json");
        let from_json = decode(&json, Encoding::Json, now()).expect("json");
        let values = |d: &Decoded| d.events.iter().map(|e| e.value.clone()).collect::<Vec<_>>();
        assert_eq!(values(&from_protobuf), values(&from_json));
        assert_eq!(from_protobuf.events.len(), 3);
    }
}
