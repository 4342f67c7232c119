//! A `_bulk` answer read item by item: `"errors": true` never hides anything, and only
//! numeric statuses decide (OpenSearch renamed the error types; ES 8.8 renamed some).

use std::collections::{BTreeMap, HashMap};

use metrics::Counter;
use serde::Deserialize;
use serde_json::Value;
use siemflow_core::delivery::{DroppedResponse, EventOutcome, Failure, Rejection};
use siemflow_core::metrics::ComponentLabels;

use super::config::BulkAction;

/// What a bulk answer said, one outcome per event in request order.
#[derive(Debug)]
pub(super) struct Read {
    pub outcomes: Vec<EventOutcome>,
    /// Items per status.
    pub statuses: BTreeMap<u16, u64>,
    /// `create` items answered 409: already indexed, counted as delivered.
    pub duplicates: u64,
}

#[derive(Deserialize)]
struct Answer {
    errors: Option<bool>,
    items: Option<Vec<HashMap<String, Item>>>,
}

#[derive(Deserialize)]
struct Item {
    status: Option<u16>,
    error: Option<Value>,
}

/// Reads a 2xx answer to a request of `events` events; `Err` says why it cannot be
/// trusted (the whole request is then sent again).
pub(super) fn read(body: &[u8], events: usize, action: BulkAction) -> Result<Read, String> {
    let answer: Answer =
        serde_json::from_slice(body).map_err(|e| format!("not a bulk answer: {e}"))?;
    let mut read = Read {
        outcomes: Vec::with_capacity(events),
        statuses: BTreeMap::new(),
        duplicates: 0,
    };
    let items = match (answer.items, answer.errors) {
        (Some(items), _) => items,
        // Nothing failed, and item details were filtered away (by a proxy, say).
        (None, Some(false)) => {
            read.outcomes = vec![EventOutcome::Delivered; events];
            return Ok(read);
        }
        (None, _) => return Err("no `items`".into()),
    };
    if items.len() != events {
        return Err(format!("{} items for {events} events", items.len()));
    }
    for item in items {
        // Keyed by the action's name; there is exactly one.
        let Some(item) = item.into_values().next() else {
            return Err("an empty item".into());
        };
        let Some(status) = item.status else {
            return Err("an item without a status".into());
        };
        *read.statuses.entry(status).or_default() += 1;
        if status == 409 && action == BulkAction::Create {
            read.duplicates += 1;
        }
        read.outcomes
            .push(outcome(status, item.error.as_ref(), action));
    }
    Ok(read)
}

/// One item's fate: 2xx delivered; 409 on `create` already there (delivered); 429 and
/// 5xx retried; 401/403 a configuration problem (retried slowly, the sink unhealthy);
/// any other 4xx dead-lettered with the error attached.
fn outcome(status: u16, error: Option<&Value>, action: BulkAction) -> EventOutcome {
    let describe = || format!("item HTTP {status}: {}", describe_error(error));
    match status {
        200..=299 => EventOutcome::Delivered,
        409 if action == BulkAction::Create => EventOutcome::Delivered,
        429 | 500..=599 => EventOutcome::Retry(Failure::retry(describe())),
        401 | 403 => EventOutcome::Retry(Failure::config(format!(
            "{}: the credentials lack a privilege on this index",
            describe()
        ))),
        400..=499 => {
            let body = error.map(Value::to_string).unwrap_or_default();
            EventOutcome::Rejected(Rejection {
                reason: match status {
                    400 => "invalid_document",
                    404 => "not_found",
                    _ => "rejected",
                }
                .into(),
                message: describe(),
                response: Some(DroppedResponse::new(status, body.as_bytes())),
            })
        }
        _ => EventOutcome::Retry(Failure::retry(format!(
            "{}: an unexpected item status",
            describe()
        ))),
    }
}

/// `type: reason (caused by type: reason)` of an Elasticsearch error object, or its text.
fn describe_error(error: Option<&Value>) -> String {
    let Some(error) = error else {
        return "no error given".into();
    };
    let one = |e: &Value| -> Option<String> {
        let kind = e.get("type")?.as_str()?;
        let reason = e.get("reason").and_then(Value::as_str).unwrap_or("");
        Some(format!("{kind}: {reason}"))
    };
    match (one(error), error.get("caused_by").and_then(one)) {
        (Some(main), Some(cause)) => format!("{main} (caused by {cause})"),
        (Some(main), None) => main,
        _ => bounded(&error.to_string()),
    }
}

/// The error of a request refused as a whole, for logs: `{"error":{type, reason}}`,
/// `{"error":"text"}`, or the body itself (cut).
pub(super) fn error_summary(body: &[u8]) -> String {
    match serde_json::from_slice::<Value>(body) {
        Ok(value) => match value.get("error") {
            Some(Value::String(text)) => bounded(text),
            Some(error) => bounded(&describe_error(Some(error))),
            None => bounded(&value.to_string()),
        },
        Err(_) if body.is_empty() => "no body".into(),
        Err(_) => bounded(&String::from_utf8_lossy(body)),
    }
}

fn bounded(text: &str) -> String {
    const MAX: usize = 512;
    if text.len() <= MAX {
        return text.to_string();
    }
    let mut cut = MAX;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &text[..cut])
}

/// The sink's item counters.
pub(super) struct ItemCounters {
    labels: ComponentLabels,
    duplicates: Counter,
}

impl ItemCounters {
    pub fn new(labels: &ComponentLabels) -> Self {
        ItemCounters {
            labels: labels.clone(),
            duplicates: labels.counter("elasticsearch_duplicate_events_total", &[]),
        }
    }

    /// `elasticsearch_item_responses_total{status}` and
    /// `elasticsearch_duplicate_events_total`.
    pub fn count(&self, read: &Read) {
        for (status, count) in &read.statuses {
            self.labels
                .counter(
                    "elasticsearch_item_responses_total",
                    &[("status", &status.to_string())],
                )
                .increment(*count);
        }
        self.duplicates.increment(read.duplicates);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(action: &str, status: u16, error: Option<(&str, &str)>) -> Value {
        let mut inner = serde_json::json!({"status": status});
        if let Some((kind, reason)) = error {
            inner["error"] = serde_json::json!({"type": kind, "reason": reason, "index": "x"});
        }
        serde_json::json!({ action: inner })
    }

    fn answer(items: Vec<Value>) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({"errors": true, "took": 3, "items": items}))
            .expect("json")
    }

    #[test]
    fn every_item_is_read_by_status() {
        let body = answer(vec![
            item("create", 201, None),
            item(
                "create",
                409,
                Some(("version_conflict_engine_exception", "exists")),
            ),
            item(
                "create",
                429,
                Some(("es_rejected_execution_exception", "queue full")),
            ),
            // OpenSearch's name for the same thing: the status decides, not the name.
            item(
                "create",
                429,
                Some(("opensearch_rejected_execution_exception", "full")),
            ),
            item(
                "create",
                503,
                Some(("unavailable_shards_exception", "no primary")),
            ),
            item(
                "create",
                400,
                Some(("document_parsing_exception", "bad field")),
            ),
            item(
                "create",
                404,
                Some(("index_not_found_exception", "no such index")),
            ),
            item("create", 403, Some(("security_exception", "unauthorized"))),
        ]);
        let read = read(&body, 8, BulkAction::Create).expect("read");
        let kinds: Vec<&str> = read
            .outcomes
            .iter()
            .map(|o| match o {
                EventOutcome::Delivered => "delivered",
                EventOutcome::Retry(Failure::Config { .. }) => "config",
                EventOutcome::Retry(_) => "retry",
                EventOutcome::Rejected(_) => "rejected",
                EventOutcome::Resend => "resend",
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "delivered",
                "delivered",
                "retry",
                "retry",
                "retry",
                "rejected",
                "rejected",
                "config"
            ]
        );
        assert_eq!(read.duplicates, 1);
        assert_eq!(read.statuses.get(&429), Some(&2));
        let EventOutcome::Rejected(rejection) = &read.outcomes[5] else {
            panic!("rejected");
        };
        assert_eq!(rejection.reason, "invalid_document");
        assert!(
            rejection
                .message
                .contains("document_parsing_exception: bad field")
        );
        let response = rejection.response.as_ref().expect("error attached");
        assert_eq!(response.status, 400);
        let error: Value = serde_json::from_str(&response.body).expect("json");
        assert_eq!(error["type"], "document_parsing_exception");
        assert_eq!(error["reason"], "bad field");
    }

    #[test]
    fn a_conflict_on_index_is_not_a_duplicate() {
        let body = answer(vec![item(
            "index",
            409,
            Some(("version_conflict_engine_exception", "x")),
        )]);
        let read = read(&body, 1, BulkAction::Index).expect("read");
        assert!(matches!(read.outcomes[0], EventOutcome::Rejected(_)));
        assert_eq!(read.duplicates, 0);
    }

    #[test]
    fn answers_that_cannot_be_trusted() {
        assert!(read(b"<html>", 1, BulkAction::Create).is_err());
        assert!(
            read(
                &answer(vec![item("create", 201, None)]),
                2,
                BulkAction::Create
            )
            .is_err()
        );
        assert!(read(b"{\"errors\":true}", 1, BulkAction::Create).is_err());
        assert!(read(b"{\"items\":[{\"create\":{}}]}", 1, BulkAction::Create).is_err());
        let read = read(b"{\"errors\":false}", 2, BulkAction::Create).expect("read");
        assert_eq!(read.outcomes, vec![EventOutcome::Delivered; 2]);
    }

    #[test]
    fn request_errors_summarised() {
        assert_eq!(
            error_summary(
                br#"{"error":{"type":"cluster_block_exception","reason":"blocked"},"status":503}"#
            ),
            "cluster_block_exception: blocked"
        );
        assert_eq!(
            error_summary(br#"{"error":"no handler found","status":400}"#),
            "no handler found"
        );
        assert_eq!(error_summary(b""), "no body");
        assert!(error_summary(&vec![b'x'; 4000]).len() < 600);
    }
}
