//! Defender for Cloud Apps list paging (reference §5.1): not OData. A list is a POST whose
//! JSON body holds epoch-millisecond `filters`, `sortField`, `sortDirection`, `skip` and
//! `limit` (at most 100); the answer is `{"total", "hasNext", "data"}`, `total` approximate.
//!
//! A walk reads a collection sorted by its cursor field ascending from `field gte from` and
//! moves by the field, not by `skip` over the whole window (keyset paging): after a page
//! whose last record has time `t`, the next asks `field gte t` and skips only the records
//! at `t` it already has. So records that arrive while the walk runs (they sort after
//! everything read) never shift the rest of the window, and `skip` stays small. A page of
//! records all at one instant goes on with `skip` within that instant.
//!
//! Records at the page boundary's instant are asked with the same filter and sort again,
//! so one missed (an unstable order among equal times) is at most one poll late: the next
//! poll starts `overlap` before the mark and reads it again, and the cursor's pairs drop
//! what was already emitted.

use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};
use siemflow_core::Value;
use tokio_util::sync::CancellationToken;

use super::client::{ApiClient, ApiRequest};
use super::paging::{Page, PagingError};

/// Most records one answer holds.
pub const MAX_LIMIT: u32 = 100;

/// How a Cloud Apps collection is listed.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudAppsQuery {
    /// The filter and sort field the cursor follows (`created` for activities, `date` for
    /// alerts).
    pub filter_field: &'static str,
    /// The same instant's field in a record (`created`; alerts' `timestamp`).
    pub record_field: &'static str,
    /// Filters always added (`{"alertOpen": {"eq": true}}`).
    pub fixed_filters: Map<String, Json>,
    /// For records that change: the fields whose values make a version (an alert's
    /// `statusValue` and `resolutionStatusValue`); empty: one emission per `_id`.
    pub version_fields: &'static [&'static str],
    /// This collection's own overlap, when not the source's (alerts: the re-read window).
    pub overlap: Option<TimeDelta>,
    /// `limit`: records asked per page (at most [`MAX_LIMIT`]).
    pub limit: u32,
}

impl CloudAppsQuery {
    /// Records followed by ingest time (`created`), each `_id` emitted once: the activities
    /// list's query.
    pub fn by_created(limit: u32) -> Self {
        CloudAppsQuery {
            filter_field: "created",
            record_field: "created",
            fixed_filters: Map::new(),
            version_fields: &[],
            overlap: None,
            limit,
        }
    }
}

/// Epoch milliseconds (an integer, a float or a numeric string) as a time.
pub fn epoch_ms(value: &Value) -> Option<DateTime<Utc>> {
    let ms = match value {
        Value::Integer(ms) => *ms,
        Value::Float(ms) => ms.into_inner() as i64,
        other => other.to_str_lossy()?.trim().parse::<i64>().ok()?,
    };
    DateTime::from_timestamp_millis(ms)
}

impl CloudAppsQuery {
    /// The record's `_id` and its version (empty unless versioned).
    pub fn identity(&self, record: &siemflow_core::ObjectMap) -> Option<(String, String)> {
        let id = match record.get("_id")? {
            Value::Integer(id) => id.to_string(),
            other => other.to_str_lossy()?.into_owned(),
        };
        let version = self
            .version_fields
            .iter()
            .map(|field| match record.get(*field) {
                Some(Value::Null) | None => String::new(),
                Some(value) => value.to_string_lossy().into_owned(),
            })
            .collect::<Vec<_>>()
            .join("/");
        Some((id, version))
    }

    /// The body of the page at `skip` of `field gte from`.
    fn body(&self, from: DateTime<Utc>, skip: u64) -> Json {
        let mut filters = self.fixed_filters.clone();
        filters.insert(
            self.filter_field.to_string(),
            json!({"gte": from.timestamp_millis()}),
        );
        json!({
            "filters": filters,
            "sortField": self.filter_field,
            "sortDirection": "asc",
            "skip": skip,
            "limit": self.limit.min(MAX_LIMIT),
        })
    }
}

#[derive(Deserialize)]
struct Answer {
    data: Vec<Value>,
    #[serde(rename = "hasNext")]
    has_next: Option<bool>,
}

/// Walks one Cloud Apps collection from an instant on.
#[derive(Debug)]
pub struct CloudAppsPager {
    query: CloudAppsQuery,
    endpoint: &'static str,
    url: reqwest::Url,
    from: DateTime<Utc>,
    skip: u64,
    done: bool,
}

impl CloudAppsPager {
    /// A walk of `url` (the list's URL) from `from` on.
    pub fn new(
        query: CloudAppsQuery,
        endpoint: &'static str,
        url: reqwest::Url,
        from: DateTime<Utc>,
    ) -> Self {
        CloudAppsPager {
            query,
            endpoint,
            url,
            from,
            skip: 0,
            done: false,
        }
    }

    /// The next page, `None` once the walk is over.
    pub async fn next_page(
        &mut self,
        client: &ApiClient,
        cancel: &CancellationToken,
    ) -> Result<Option<Page<Value>>, PagingError> {
        if self.done {
            return Ok(None);
        }
        let request = ApiRequest::post(self.endpoint, self.url.clone())
            .json(&self.query.body(self.from, self.skip));
        let response = client.send(&request, cancel).await?;
        let answer: Answer =
            serde_json::from_slice(&response.body).map_err(|e| PagingError::Malformed {
                endpoint: self.endpoint,
                detail: format!("not a {{\"data\": […], \"hasNext\": …}} answer: {e}"),
            })?;
        let has_next = answer.has_next.unwrap_or(false) && !answer.data.is_empty();
        self.advance(&answer.data);
        self.done = !has_next;
        Ok(Some(Page {
            items: answer.data,
            last: self.done,
        }))
    }

    /// Moves past `page`: to its latest instant, skipping the records there already read.
    fn advance(&mut self, page: &[Value]) {
        let times: Vec<DateTime<Utc>> = page
            .iter()
            .filter_map(|item| match item {
                Value::Object(record) => record.get(self.query.record_field).and_then(epoch_ms),
                _ => None,
            })
            .collect();
        match times.iter().max() {
            Some(latest) if *latest > self.from => {
                self.from = *latest;
                self.skip = times.iter().filter(|t| *t == latest).count() as u64;
            }
            // Every record at the instant the walk is at (or none readable): skip on.
            _ => self.skip += page.len() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query() -> CloudAppsQuery {
        CloudAppsQuery::by_created(100)
    }

    fn record(created: i64) -> Value {
        let mut record = siemflow_core::ObjectMap::new();
        record.insert("created".into(), Value::Integer(created));
        Value::Object(record)
    }

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(ms).expect("time")
    }

    #[test]
    fn the_body_is_the_documented_one() {
        let mut alerts = query();
        alerts.filter_field = "date";
        alerts
            .fixed_filters
            .insert("alertOpen".into(), json!({"eq": true}));
        assert_eq!(
            alerts.body(at(1_756_720_800_000), 3),
            json!({"filters": {"alertOpen": {"eq": true}, "date": {"gte": 1_756_720_800_000_i64}}, "sortField": "date", "sortDirection": "asc", "skip": 3, "limit": 100})
        );
    }

    #[test]
    fn keyset_moves_to_the_latest_instant_and_skips_its_records_read() {
        let url = reqwest::Url::parse("https://x.portal.cloudappsecurity.com/api/v1/activities/")
            .expect("url");
        let mut pager = CloudAppsPager::new(query(), "activities", url, at(10));
        pager.advance(&[record(10), record(12), record(15), record(15)]);
        assert_eq!((pager.from, pager.skip), (at(15), 2));
        // A page all at the walk's instant: skip on within it.
        pager.advance(&[record(15), record(15)]);
        assert_eq!((pager.from, pager.skip), (at(15), 4));
        pager.advance(&[record(15), record(16)]);
        assert_eq!((pager.from, pager.skip), (at(16), 1));
    }

    #[test]
    fn times_and_versions() {
        assert_eq!(
            epoch_ms(&Value::Integer(1_511_373_015_679)),
            Some(at(1_511_373_015_679))
        );
        assert_eq!(
            epoch_ms(&Value::from("1511373015679")),
            Some(at(1_511_373_015_679))
        );
        assert_eq!(epoch_ms(&Value::from("yesterday")), None);
        let mut alerts = query();
        alerts.version_fields = &["statusValue", "resolutionStatusValue"];
        let mut record = siemflow_core::ObjectMap::new();
        record.insert("_id".into(), Value::from("66d43a1e9b7f2c0012ab34cd"));
        record.insert("statusValue".into(), Value::Integer(1));
        record.insert("resolutionStatusValue".into(), Value::Integer(2));
        assert_eq!(
            alerts.identity(&record),
            Some(("66d43a1e9b7f2c0012ab34cd".into(), "1/2".into()))
        );
        assert_eq!(
            query().identity(&record).map(|(_, v)| v),
            Some(String::new())
        );
    }
}
