//! The Logs Ingestion request: a JSON array of at most 1 MiB uncompressed, gzip, a bearer
//! token, and what each answer means (reference §0 and §2.4).

use std::collections::HashSet;
use std::ops::Range;
use std::sync::Mutex;

use bytes::Bytes;
use chrono::Utc;
use metrics::Counter;
use serde::Deserialize;
use siemflow_core::auth::{AuthError, TokenProvider};
use siemflow_core::delivery::{
    Compression, DroppedResponse, EventOutcome, Failure, HttpClient, HttpResponse, Item, Outcome,
    Protocol, Rejection, Request,
};
use siemflow_core::metrics::ComponentLabels;
use siemflow_core::{Event, Value};

use super::config::MAX_REQUEST_BYTES;
use super::record::{RecordWriter, Shaped};

/// At most this many distinct renamed field names are logged (each once); the counter
/// counts them all.
const MAX_LOGGED_RENAMES: usize = 100;

/// The `sentinel` sink's side of the delivery machinery.
pub(crate) struct Sentinel {
    pub(crate) http: HttpClient,
    pub(crate) tokens: TokenProvider,
    /// `{endpoint}/dataCollectionRules/{id}/streams/{stream}?api-version=…`
    pub(crate) url: String,
    pub(crate) compression: Compression,
    pub(crate) records: RecordWriter,
    pub(crate) counters: Counters,
}

/// The sink's own counters, beside the shared delivery ones.
pub(crate) struct Counters {
    id: String,
    /// `sentinel_renamed_fields_total`: top-level fields written under another name.
    renamed: Counter,
    /// `sentinel_time_generated_defaulted_total`: records with no time in any
    /// `timestamp_field`, whose `TimeGenerated` is the send time.
    time_defaulted: Counter,
    /// `sentinel_bisected_requests_total`: requests answered 400 that were split to find
    /// the records at fault.
    bisected: Counter,
    logged: Mutex<HashSet<String>>,
}

impl Counters {
    pub(crate) fn new(labels: &ComponentLabels) -> Self {
        Counters {
            id: labels.id.clone(),
            renamed: labels.counter("sentinel_renamed_fields_total", &[]),
            time_defaulted: labels.counter("sentinel_time_generated_defaulted_total", &[]),
            bisected: labels.counter("sentinel_bisected_requests_total", &[]),
            logged: Mutex::default(),
        }
    }

    fn note(&self, shaped: &Shaped) {
        if shaped.time_defaulted {
            self.time_defaulted.increment(1);
        }
        if shaped.renamed.is_empty() {
            return;
        }
        self.renamed.increment(shaped.renamed.len() as u64);
        let mut logged = self.logged.lock().unwrap_or_else(|p| p.into_inner());
        for (field, column) in &shaped.renamed {
            if logged.len() < MAX_LOGGED_RENAMES && logged.insert(field.clone()) {
                // A field name comes from the data: only its start is logged.
                let shown: String = field.chars().take(100).collect();
                tracing::info!(
                    component = %self.id,
                    field = %shown,
                    column = %column,
                    "a field name is not a valid Log Analytics column; sent under another name (declare that name in the DCR stream)"
                );
            }
        }
    }
}

/// What one POST came to.
enum Answer {
    Delivered,
    /// 400: some record of the request is refused, and the API does not say which.
    BadRecords(Rejection),
    Failed(Failure),
}

impl Protocol for Sentinel {
    fn encode(&self, event: &Event, out: &mut Vec<u8>) -> Result<String, Rejection> {
        let Value::Object(record) = &event.value else {
            return Err(Rejection::new(
                "not_an_object",
                format!(
                    "the Logs Ingestion API takes JSON objects; this event is {}",
                    event.value.kind_str()
                ),
            ));
        };
        let shaped = self.records.write(record, Utc::now, out);
        self.counters.note(&shaped);
        // Alone in a request it is wrapped in brackets: `[record]`.
        let alone = out.len() as u64 + 2;
        if alone > MAX_REQUEST_BYTES {
            return Err(Rejection::new(
                "too_large",
                format!(
                    "the record is {} bytes of JSON; the Logs Ingestion API takes at most {MAX_REQUEST_BYTES} bytes per call, before or after compression, so it can never be sent",
                    out.len()
                ),
            ));
        }
        Ok(String::new())
    }

    async fn send(&self, request: Request<'_>) -> Outcome {
        let items = request.items;
        match self.post(items).await {
            Answer::Delivered => Outcome::Delivered,
            Answer::Failed(failure) => Outcome::Failed(failure),
            Answer::BadRecords(rejection) if items.len() == 1 => {
                Outcome::Failed(Failure::Data(rejection))
            }
            Answer::BadRecords(rejection) => {
                self.counters.bisected.increment(1);
                tracing::warn!(
                    component = %self.counters.id,
                    events = items.len(),
                    reason = %rejection.message,
                    "the API refused a request for its data without naming the record; sending it in halves to find the records at fault"
                );
                Outcome::PerEvent(self.bisect(items).await)
            }
        }
    }

    /// Gets a token, then posts an empty array: it carries no data, but is checked for
    /// the token's audience, the DCR, the app's role and the stream like any request.
    /// A 400 about the (empty) body means everything before it passed.
    async fn healthcheck(&self) -> Result<(), Failure> {
        let (response, request_id) = self.exchange(Bytes::from_static(b"[]"), false).await?;
        match classify(&response, &request_id) {
            Answer::Delivered | Answer::BadRecords(_) => Ok(()),
            Answer::Failed(failure) => Err(failure),
        }
    }
}

impl Sentinel {
    /// Posts `items` as one JSON array and classifies the answer.
    async fn post(&self, items: &[Item]) -> Answer {
        let request = Request {
            partition: "",
            items,
        };
        let body = request.body(b"[", b",", b"]");
        if body.len() as u64 > MAX_REQUEST_BYTES {
            // The batcher and `encode` keep requests within the limit; should one pass it,
            // it is split rather than sent to be refused.
            let reason = format!(
                "the request would be {} bytes, over the {MAX_REQUEST_BYTES}-byte limit",
                body.len()
            );
            return Answer::Failed(Failure::TooLarge {
                reason,
                response: None,
            });
        }
        let (body, gzip) = match self.compression {
            Compression::None => (body, false),
            Compression::Gzip => {
                let packed = Compression::Gzip.compress(body);
                if packed.len() as u64 <= MAX_REQUEST_BYTES {
                    (packed, true)
                } else {
                    // Incompressible data grows a little under gzip; the limit holds for
                    // the compressed size too, and the plain body is within it.
                    (request.body(b"[", b",", b"]"), false)
                }
            }
        };
        match self.exchange(Bytes::from(body), gzip).await {
            Ok((response, request_id)) => classify(&response, &request_id),
            Err(failure) => Answer::Failed(failure),
        }
    }

    /// Sends a body with a bearer token; on a 401 gets a new token and sends once more.
    /// Returns the answer and the `x-ms-client-request-id` it was sent with (a fresh GUID
    /// per attempt, which Microsoft support can trace).
    async fn exchange(&self, body: Bytes, gzip: bool) -> Result<(HttpResponse, String), Failure> {
        let mut refreshed = false;
        loop {
            let token = self
                .tokens
                .token()
                .await
                .map_err(|e| self.auth_failure(e))?;
            let request_id = uuid::Uuid::new_v4().to_string();
            let mut builder = self
                .http
                .inner()
                .post(&self.url)
                .header("content-type", "application/json")
                .header("x-ms-client-request-id", &request_id)
                .bearer_auth(token.bearer())
                .body(body.clone());
            if gzip {
                builder = builder.header("content-encoding", "gzip");
            }
            let response = self.http.send(builder).await?;
            if response.status.as_u16() != 401 || refreshed {
                return Ok((response, request_id));
            }
            tracing::debug!(component = %self.counters.id, "401: fetching a new token and sending once more");
            self.tokens.invalidate(&token);
            refreshed = true;
        }
    }

    fn auth_failure(&self, error: AuthError) -> Failure {
        let reason = format!(
            "cannot get an Entra ID token for {}: {error}",
            self.tokens.scope()
        );
        match error {
            AuthError::Config { .. } => Failure::Config { reason },
            AuthError::Transient { retry_after, .. } => Failure::Retry {
                reason,
                retry_after,
            },
        }
    }

    /// Finds the records a 400 was about by sending halves of the request, recursively:
    /// a half that goes through is delivered, a single record refused is dead-lettered.
    /// A transient or configuration failure on the way stops the search, and what is
    /// left is retried. At most 2n−1 requests for n records.
    async fn bisect(&self, items: &[Item]) -> Vec<EventOutcome> {
        let mut outcomes = vec![EventOutcome::Resend; items.len()];
        let mut work: Vec<Range<usize>> = halves(0..items.len());
        let mut stopped: Option<Failure> = None;
        while let Some(range) = work.pop() {
            if let Some(failure) = &stopped {
                fill(&mut outcomes, range, EventOutcome::Retry(failure.clone()));
                continue;
            }
            match self.post(&items[range.clone()]).await {
                Answer::Delivered => fill(&mut outcomes, range, EventOutcome::Delivered),
                Answer::BadRecords(rejection) if range.len() == 1 => {
                    outcomes[range.start] = EventOutcome::Rejected(rejection);
                }
                Answer::BadRecords(_) => work.extend(halves(range)),
                Answer::Failed(Failure::TooLarge { .. }) if range.len() > 1 => {
                    work.extend(halves(range))
                }
                Answer::Failed(Failure::TooLarge { reason, response }) => {
                    outcomes[range.start] = EventOutcome::Rejected(Rejection {
                        reason: "too_large".into(),
                        message: reason,
                        response,
                    });
                }
                Answer::Failed(Failure::Data(rejection)) => {
                    fill(&mut outcomes, range, EventOutcome::Rejected(rejection))
                }
                Answer::Failed(failure) => {
                    fill(&mut outcomes, range, EventOutcome::Retry(failure.clone()));
                    stopped = Some(failure);
                }
            }
        }
        outcomes
    }
}

/// The two halves of a range of at least two, the first last (so it is taken first from
/// a stack).
fn halves(range: Range<usize>) -> Vec<Range<usize>> {
    let middle = range.start + range.len() / 2;
    vec![middle..range.end, range.start..middle]
}

fn fill(outcomes: &mut [EventOutcome], range: Range<usize>, outcome: EventOutcome) {
    for slot in &mut outcomes[range] {
        *slot = outcome.clone();
    }
}

/// `{"error":{"code":…,"message":…}}`, the API's error body.
#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    error: ErrorDetail,
}

#[derive(Deserialize, Default)]
struct ErrorDetail {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// What an answer means, by status (never by message text); the error code only picks
/// out 400s that are about the request rather than the records. Reasons name the
/// request's `x-ms-client-request-id`.
fn classify(response: &HttpResponse, request_id: &str) -> Answer {
    if response.status.is_success() {
        return Answer::Delivered;
    }
    let status = response.status.as_u16();
    let detail = serde_json::from_slice::<ErrorBody>(&response.body)
        .unwrap_or_default()
        .error;
    let code = response
        .headers
        .get("x-ms-error-code")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or(detail.code);
    let dropped = DroppedResponse::new(status, &response.body);
    let said = match (code.is_empty(), detail.message.is_empty()) {
        (false, false) => format!("{code}: {}", detail.message),
        (false, true) => code.clone(),
        (true, _) => dropped.body.clone(),
    };
    let reason = format!("HTTP {status} {said} [x-ms-client-request-id {request_id}]");
    let retry_after = siemflow_core::http::retry_after(&response.headers);
    match status {
        400 => match code.as_str() {
            "MissingApiVersionParameter" | "InvalidApiVersionParameter" => {
                Answer::Failed(Failure::config(format!("{reason} (check api_version)")))
            }
            // A body the service could not read or unzip was damaged on the way.
            "InvalidContentEncoding" | "InvalidRequest" => Answer::Failed(Failure::Retry {
                reason,
                retry_after,
            }),
            _ => Answer::BadRecords(Rejection {
                reason: "invalid_data".into(),
                message: reason,
                response: Some(dropped),
            }),
        },
        401 => Answer::Failed(Failure::config(format!(
            "{reason} (a fresh token was refused too: check the auth tenant, the scope and that the endpoint is in the token's cloud)"
        ))),
        403 => Answer::Failed(Failure::config(format!(
            "{reason} (the app needs the Monitoring Metrics Publisher role on the DCR; a new role assignment can take 30 minutes to apply)"
        ))),
        404 => Answer::Failed(Failure::config(format!(
            "{reason} (check endpoint, dcr_immutable_id and stream_name)"
        ))),
        413 => Answer::Failed(Failure::TooLarge {
            reason,
            response: Some(dropped),
        }),
        408 | 429 | 500..=599 => Answer::Failed(Failure::Retry {
            reason,
            retry_after,
        }),
        // 405, 415, a redirect…: the request does not reach the API the way it should
        // (a wrong endpoint or a proxy in the way), whatever the records hold.
        _ => Answer::Failed(Failure::config(format!(
            "{reason} (is endpoint the DCE or DCR ingestion URL?)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, code: &str, retry_after: Option<&str>) -> Answer {
        let mut headers = reqwest::header::HeaderMap::new();
        if !code.is_empty() {
            headers.insert("x-ms-error-code", code.parse().expect("header"));
        }
        if let Some(wait) = retry_after {
            headers.insert("retry-after", wait.parse().expect("header"));
        }
        let body = format!("{{\"error\":{{\"code\":\"{code}\",\"message\":\"said so\"}}}}");
        classify(
            &HttpResponse {
                status: reqwest::StatusCode::from_u16(status).expect("status"),
                headers,
                body: Bytes::from(body),
            },
            "7e57",
        )
    }

    fn kind(answer: Answer) -> String {
        match answer {
            Answer::Delivered => "delivered".into(),
            Answer::BadRecords(_) => "bad_records".into(),
            Answer::Failed(failure) => failure.kind().into(),
        }
    }

    #[test]
    fn statuses_are_classified_as_the_reference_says() {
        let cases = [
            (204, "", "delivered"),
            (200, "", "delivered"),
            (400, "InvalidColumnName", "bad_records"),
            (400, "", "bad_records"),
            (400, "InvalidApiVersionParameter", "config"),
            (400, "MissingApiVersionParameter", "config"),
            (400, "InvalidContentEncoding", "retry"),
            (401, "InvalidAudience", "config"),
            (403, "OperationFailed", "config"),
            (404, "NotFound", "config"),
            (405, "MethodNotAllowed", "config"),
            (415, "UnsupportedMediaType", "config"),
            (413, "ContentLengthLimitExceeded", "too_large"),
            (408, "", "retry"),
            (429, "TooManyRequests", "retry"),
            (500, "InternalServerError", "retry"),
            (503, "ServiceUnavailable", "retry"),
        ];
        for (status, code, expected) in cases {
            assert_eq!(
                kind(answer(status, code, None)),
                expected,
                "{status} {code}"
            );
        }
    }

    #[test]
    fn throttling_keeps_retry_after_and_reasons_name_the_code() {
        match answer(429, "TooManyRequests", Some("7")) {
            Answer::Failed(Failure::Retry {
                retry_after,
                reason,
            }) => {
                assert_eq!(retry_after, Some(std::time::Duration::from_secs(7)));
                assert!(
                    reason.contains("429 TooManyRequests: said so [x-ms-client-request-id 7e57]"),
                    "{reason}"
                );
            }
            _ => panic!("429 is a retry"),
        }
        match answer(400, "InvalidColumnName", None) {
            Answer::BadRecords(rejection) => {
                assert_eq!(rejection.reason, "invalid_data");
                assert_eq!(rejection.response.map(|r| r.status), Some(400));
            }
            _ => panic!("400 is about the records"),
        }
    }

    #[test]
    fn halves_cover_the_range_first_half_first() {
        let mut stack = halves(3..10);
        assert_eq!(stack.pop(), Some(3..6));
        assert_eq!(stack.pop(), Some(6..10));
        // Only ranges of two or more are halved: both halves are never empty.
        assert_eq!(halves(4..6), [5..6, 4..5]);
    }
}
