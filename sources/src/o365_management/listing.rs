//! Listing windows and blob descriptors (reference 1.3): windows of at most 24 hours,
//! never older than 7 days, and the descriptors a page holds.

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use reqwest::header::HeaderMap;
use serde_json::Value;

/// The longest window the API accepts.
pub(crate) const MAX_WINDOW: TimeDelta = TimeDelta::hours(24);

/// The oldest a window may start: 7 days, less a margin for clocks and slow requests
/// (Elastic uses 167h55m).
pub(crate) const MAX_AGE: TimeDelta = TimeDelta::minutes(7 * 24 * 60 - 5);

/// One listed blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Descriptor {
    /// Opaque id; the key of "already processed".
    pub content_id: String,
    /// Where to GET the blob.
    pub content_uri: String,
    /// When the blob became available: the cursor's axis.
    pub content_created: DateTime<Utc>,
    /// After this the blob cannot be fetched.
    pub content_expiration: DateTime<Utc>,
}

/// A page of descriptors and how many entries of it were unusable.
#[derive(Debug, Default)]
pub(crate) struct Page {
    /// The usable descriptors, in the order listed.
    pub descriptors: Vec<Descriptor>,
    /// Entries without an id, URI or creation time.
    pub malformed: usize,
}

/// Parses a listing page; `Err` when the body is not a JSON array at all.
pub(crate) fn parse_page(body: &[u8]) -> Result<Page, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Page::default());
    }
    let items: Vec<Value> = serde_json::from_slice(body)
        .map_err(|e| format!("the listing is not a JSON array of descriptors: {e}"))?;
    let mut page = Page::default();
    for item in &items {
        match descriptor(item) {
            Some(d) => page.descriptors.push(d),
            None => page.malformed += 1,
        }
    }
    Ok(page)
}

fn descriptor(item: &Value) -> Option<Descriptor> {
    let text = |name: &str| item.get(name).and_then(Value::as_str).map(str::trim);
    let content_id = text("contentId").filter(|s| !s.is_empty())?.to_string();
    let content_uri = text("contentUri").filter(|s| !s.is_empty())?.to_string();
    let content_created = parse_time(text("contentCreated")?)?;
    // Documented as ≈ created + 7 days; assume that when it is missing or odd.
    let content_expiration = text("contentExpiration")
        .and_then(parse_time)
        .unwrap_or(content_created + TimeDelta::days(7));
    Some(Descriptor {
        content_id,
        content_uri,
        content_created,
        content_expiration,
    })
}

/// RFC 3339, or the naive forms the API documents (read as UTC).
pub(crate) fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    let naive = text.strip_suffix('Z').unwrap_or(text);
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"]
        .iter()
        .find_map(|format| chrono::NaiveDateTime::parse_from_str(naive, format).ok())
        .map(|n| n.and_utc())
}

/// The `NextPageUri` header, whatever its casing.
pub(crate) fn next_page_uri(headers: &HeaderMap) -> Option<String> {
    // HeaderMap names are case-insensitive already; the loop guards against odd spellings
    // that a proxy might have turned into separate names.
    headers
        .iter()
        .find(|(name, _)| name.as_str().eq_ignore_ascii_case("NextPageUri"))
        .and_then(|(_, value)| value.to_str().ok())
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// A time as the API documents it: `YYYY-MM-DDTHH:MM:SS`, UTC.
pub(crate) fn format_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S").to_string()
}

/// `t` without its fraction of a second (windows are sent in whole seconds).
pub(crate) fn whole_seconds(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::seconds(1)).unwrap_or(t)
}

/// The oldest start a window may have at `now`.
pub(crate) fn oldest_start(now: DateTime<Utc>) -> DateTime<Utc> {
    // Rounded up so that sending whole seconds never makes it older.
    whole_seconds(now - MAX_AGE) + TimeDelta::seconds(1)
}

/// Where a listing pass starts: `overlap` before the cursor, or `start_from` back on a
/// first start; never older than the API allows. The second value is the gap that had
/// to be skipped (content that expired before it could be read), if any.
pub(crate) fn pass_start(
    cursor: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    start_from: TimeDelta,
    overlap: TimeDelta,
) -> (DateTime<Utc>, Option<TimeDelta>) {
    let oldest = oldest_start(now);
    let (wanted, from_cursor) = match cursor {
        Some(cursor) => (cursor - overlap, true),
        None => (now - start_from, false),
    };
    let wanted = whole_seconds(wanted);
    if wanted >= oldest {
        return (wanted, None);
    }
    // Only a cursor that fell behind the 7 days loses data; the overlap part was read.
    let gap = cursor
        .filter(|_| from_cursor)
        .map(|c| oldest - c)
        .filter(|gap| *gap > TimeDelta::zero());
    (oldest, gap)
}

/// The end of the window starting at `start`: at most 24 hours later, and not past now.
pub(crate) fn window_end(start: DateTime<Utc>, now: DateTime<Utc>) -> DateTime<Utc> {
    (start + MAX_WINDOW).min(whole_seconds(now))
}

/// How many windows cover [start, now): for progress lines.
pub(crate) fn window_count(start: DateTime<Utc>, now: DateTime<Utc>) -> u64 {
    let span = (now - start).num_seconds().max(0) as u64;
    span.div_ceil(MAX_WINDOW.num_seconds() as u64).max(1)
}

/// The listing URL of one window (times unencoded, as the API documents them).
pub(crate) fn content_url(
    feed_root: &str,
    content_type: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> String {
    format!(
        "{feed_root}/subscriptions/content?contentType={content_type}&startTime={}&endTime={}",
        format_time(start),
        format_time(end)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        parse_time(text).expect("time")
    }

    #[test]
    fn a_page_of_descriptors() {
        let body = br#"[{"contentType":"Audit.Exchange",
          "contentId":"20260901101502113001234$20260901101744123004567$audit_exchange$Audit_Exchange$emea0036",
          "contentUri":"https://manage.office.com/api/v1.0/t/activity/feed/audit/20260901101502113001234$20260901101744123004567$audit_exchange$Audit_Exchange$emea0036",
          "contentCreated":"2026-09-01T10:17:44.123Z","contentExpiration":"2026-09-08T10:17:44.123Z"},
          {"contentId":"x","contentUri":"u","contentCreated":"2026-09-01T10:18:00"},
          {"contentId":"broken"}, 42]"#;
        let page = parse_page(body).expect("page");
        assert_eq!(page.descriptors.len(), 2);
        assert_eq!(page.malformed, 2);
        let first = &page.descriptors[0];
        assert_eq!(first.content_created, at("2026-09-01T10:17:44.123Z"));
        assert_eq!(first.content_expiration, at("2026-09-08T10:17:44.123Z"));
        assert!(first.content_id.contains("$audit_exchange$"));
        assert_eq!(
            page.descriptors[1].content_expiration,
            at("2026-09-08T10:18:00Z")
        );
        assert!(parse_page(b"").expect("empty").descriptors.is_empty());
        assert!(parse_page(b"{\"error\":1}").is_err());
    }

    #[test]
    fn next_page_uri_in_any_casing() {
        for name in ["NextPageUri", "nextpageuri", "Nextpageuri"] {
            let mut headers = HeaderMap::new();
            headers.insert(
                reqwest::header::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                "https://x/next".parse().expect("value"),
            );
            assert_eq!(next_page_uri(&headers).as_deref(), Some("https://x/next"));
        }
        assert_eq!(next_page_uri(&HeaderMap::new()), None);
    }

    #[test]
    fn passes_start_behind_the_cursor_within_seven_days() {
        let now = at("2026-09-10T12:00:00.500Z");
        let hours = TimeDelta::hours;
        let (start, gap) = pass_start(None, now, hours(24), hours(4));
        assert_eq!(start, at("2026-09-09T12:00:00Z"));
        assert_eq!(gap, None);
        let (start, gap) = pass_start(Some(at("2026-09-10T11:00:00Z")), now, hours(24), hours(4));
        assert_eq!(start, at("2026-09-10T07:00:00Z"));
        assert_eq!(gap, None);
        // A first start of 7 days is clamped without calling it a gap.
        let (start, gap) = pass_start(None, now, hours(7 * 24), hours(4));
        assert_eq!(start, oldest_start(now));
        assert!(start > now - TimeDelta::days(7));
        assert_eq!(gap, None);
        // A cursor 8 days old: the day before the oldest start is lost.
        let (start, gap) = pass_start(Some(now - TimeDelta::days(8)), now, hours(24), hours(4));
        assert_eq!(start, oldest_start(now));
        assert!(gap.expect("gap") > TimeDelta::hours(24));
    }

    #[test]
    fn windows_are_at_most_a_day_and_end_now() {
        let now = at("2026-09-10T12:00:00.500Z");
        let start = at("2026-09-08T00:00:00Z");
        assert_eq!(window_end(start, now), at("2026-09-09T00:00:00Z"));
        assert_eq!(
            window_end(at("2026-09-10T00:00:00Z"), now),
            at("2026-09-10T12:00:00Z")
        );
        assert_eq!(window_count(start, now), 3);
        assert_eq!(
            content_url("http://h/api/v1.0/t/activity/feed", "DLP.All", start, now),
            "http://h/api/v1.0/t/activity/feed/subscriptions/content?contentType=DLP.All&startTime=2026-09-08T00:00:00&endTime=2026-09-10T12:00:00"
        );
    }
}
