//! OData paging (Graph, Defender for Endpoint), reference §2.2 and §6.2:
//!
//! - `@odata.nextLink` is followed exactly as given, never edited; it must stay on the
//!   query's scheme, host and port (the bearer token goes with it), else the walk stops
//!   with [`PagingError::ForeignNextLink`].
//! - A query sorted ascending by a field it filters with `ge` (`$orderby=
//!   lastUpdateDateTime asc`, `$filter=lastUpdateDateTime ge …`) goes on **from the last
//!   key read** instead of a `$skip` offset: the same query with `ge` the last record's
//!   value, past the records at that value already read less half a page, so that records
//!   that moved on (a new version) meanwhile cannot make an unchanged one slip below the
//!   offset; the repeats are the caller's to drop (by id and version). It does so after a
//!   full page without a nextLink and in place of a nextLink that pages by `$skip` (the
//!   security collections' links, reference §2.2); a link with a `$skiptoken` is followed.
//! - Without a nextLink, a full page (`len == $top`) goes on (the service sometimes omits
//!   the link when `$top` is set); a short page ends the walk. A query not sorted as
//!   above goes on with plain `$skip` paging.
//! - A continuation refused because its skip token expired (or is invalid) is reported as
//!   [`PagingError::SkipTokenExpired`]: the caller queries again from its cursor (or
//!   [restarts](ODataPager::restart) the same query).
//! - [`PagesAhead`] walks with one request ahead: the next page is asked for as soon as a
//!   page has come, while the caller hands that page on.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use reqwest::Url;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::client::{ApiClient, ApiRequest, check_origin};
use super::errors::{ApiError, ErrorClass};

/// One page of items.
#[derive(Debug)]
pub struct Page<T> {
    /// The page's `value` array.
    pub items: Vec<T>,
    /// True when the walk ends with this page.
    pub last: bool,
}

/// Why a walk stopped early.
#[derive(Debug, thiserror::Error)]
pub enum PagingError {
    /// The request failed (after the client's own retries).
    #[error(transparent)]
    Api(#[from] ApiError),
    /// A nextLink to another host, refused: the token must not leave the API's host.
    #[error(
        "refused to follow a nextLink to another host: `{link}` (the query went to `{origin}`)"
    )]
    ForeignNextLink {
        /// The link given.
        link: String,
        /// Scheme, host and port of the query.
        origin: String,
    },
    /// The continuation was refused: its skip token expired or is invalid. Query again
    /// from the cursor.
    #[error(
        "the service refused the page's continuation (skip token expired or invalid): {detail}"
    )]
    SkipTokenExpired {
        /// The service's message.
        detail: String,
    },
    /// The page is not an OData collection.
    #[error("the {endpoint} page is malformed: {detail}")]
    Malformed {
        /// Which operation.
        endpoint: &'static str,
        /// What is wrong.
        detail: String,
    },
}

#[derive(Deserialize)]
struct Collection<T> {
    value: Vec<T>,
    #[serde(rename = "@odata.nextLink")]
    next_link: Option<String>,
}

/// Where the walk goes next.
#[derive(Debug, Clone)]
enum Next {
    First,
    Link(Url),
    Skip(u64),
    /// The sorted query again from the key `at` (its text as the service wrote it), past
    /// `skip` records.
    From {
        at: String,
        skip: u64,
    },
    Done,
}

/// The sort key of a query that can go on from its last key: `$orderby` is one field,
/// ascending, which `$filter` bounds below with `ge`.
fn ascending_key(url: &Url) -> Option<String> {
    let order = query_value(url, "$orderby")?;
    let mut words = order.split_whitespace();
    let field = words.next()?;
    let ascending = match words.next() {
        None => true,
        Some(direction) => direction.eq_ignore_ascii_case("asc"),
    };
    let filter = query_value(url, "$filter")?;
    (ascending
        && words.next().is_none()
        && !field.contains(',')
        && lower_bound(&filter, field).is_some())
    .then(|| field.to_string())
}

/// Where the literal of the `{field} ge <literal>` clause of `filter` lies.
fn lower_bound(filter: &str, field: &str) -> Option<std::ops::Range<usize>> {
    let clause = format!("{field} ge ");
    let start = filter.find(&clause)? + clause.len();
    let end = filter[start..]
        .find(char::is_whitespace)
        .map_or(filter.len(), |n| start + n);
    (end > start).then_some(start..end)
}

/// `url` with its `{field} ge` bound set to `at` and `$skip` to `skip`; every other
/// parameter kept as written.
fn from_key(url: &Url, field: &str, at: &str, skip: u64) -> Url {
    let filter = query_value(url, "$filter").unwrap_or_default();
    let filter = match lower_bound(&filter, field) {
        Some(range) => format!("{}{at}{}", &filter[..range.start], &filter[range.end..]),
        None => filter,
    };
    let kept = pairs_without(url, &["$filter", "$skip"]);
    let mut query = format!(
        "$filter={}",
        form_urlencoded::byte_serialize(filter.as_bytes()).collect::<String>()
    );
    for pair in kept {
        query.push('&');
        query.push_str(pair);
    }
    let mut next = url.clone();
    next.set_query(Some(&query));
    with_skip(&next, skip)
}

/// The text of `field` in each item of a page's `value` (`None` where absent or not a
/// string), read from the body without building the items: a page of 2,000 alerts is
/// megabytes of JSON, and its records are already being built once.
fn item_keys(body: &[u8], field: &str) -> Option<Vec<Option<String>>> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let keys = serde::de::DeserializeSeed::deserialize(PageKeys { field }, &mut deserializer);
    deserializer.end().ok()?;
    keys.ok()
}

/// Reads a page object, keeping only the `field` text of each item of `value`.
struct PageKeys<'a> {
    field: &'a str,
}

impl<'de> serde::de::DeserializeSeed<'de> for PageKeys<'_> {
    type Value = Vec<Option<String>>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for PageKeys<'_> {
    type Value = Vec<Option<String>>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an OData collection")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut keys = None;
        while let Some(name) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if name == "value" {
                keys = Some(map.next_value_seed(ItemKeys { field: self.field })?);
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        keys.ok_or_else(|| serde::de::Error::missing_field("value"))
    }
}

/// Reads the `value` array, keeping only each item's `field` text.
struct ItemKeys<'a> {
    field: &'a str,
}

impl<'de> serde::de::DeserializeSeed<'de> for ItemKeys<'_> {
    type Value = Vec<Option<String>>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for ItemKeys<'_> {
    type Value = Vec<Option<String>>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of records")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut keys = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(key) = seq.next_element_seed(ItemKey { field: self.field })? {
            keys.push(key);
        }
        Ok(keys)
    }
}

/// Reads one item, keeping only its `field` text.
struct ItemKey<'a> {
    field: &'a str,
}

impl<'de> serde::de::DeserializeSeed<'de> for ItemKey<'_> {
    type Value = Option<String>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for ItemKey<'_> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a record")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut key = None;
        while let Some(name) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if name == self.field {
                let value: serde_json::Value = map.next_value()?;
                key = value.as_str().map(str::to_string);
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok(key)
    }

    // Anything but an object has no key; its content is skipped.
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// Walks the pages of one OData query.
#[derive(Debug)]
pub struct ODataPager {
    first: ApiRequest,
    /// The query's `$top`: a page this long may be followed by `$skip` paging.
    top: Option<u64>,
    /// The query's own `$skip` (usually none).
    skip: u64,
    /// Items received so far in this walk.
    received: u64,
    /// The field a sorted query goes on from (see [`ascending_key`]).
    sort_key: Option<String>,
    /// The key the current query starts at, when it went on from one.
    from: Option<chrono::DateTime<chrono::FixedOffset>>,
    next: Next,
}

/// The value of a query parameter (the name compared decoded, as a server reads it).
fn query_value(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(key, _)| key.as_ref() == name)
        .map(|(_, value)| value.into_owned())
}

/// `url` with `$skip` set to `skip`; every other parameter kept as written.
fn with_skip(url: &Url, skip: u64) -> Url {
    let kept = pairs_without(url, &["$skip"]);
    let mut query = kept.join("&");
    if !query.is_empty() {
        query.push('&');
    }
    query.push_str(&format!("$skip={skip}"));
    let mut next = url.clone();
    next.set_query(Some(&query));
    next
}

/// The query's `name=value` pairs as written, but those whose name (compared decoded, as a
/// server reads it) is one of `dropped`.
fn pairs_without<'a>(url: &'a Url, dropped: &[&str]) -> Vec<&'a str> {
    url.query()
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty())
        .filter(|pair| {
            let name = pair.split('=').next().unwrap_or_default();
            let decoded: String = form_urlencoded::parse(name.as_bytes())
                .map(|(key, _)| key.into_owned())
                .collect();
            !dropped.contains(&decoded.as_str())
        })
        .collect()
}

/// True when a refused continuation blames its skip token.
fn is_expired_continuation(error: &ApiError) -> bool {
    let ApiError::Refused {
        status,
        code,
        message,
        class: ErrorClass::Data,
        ..
    } = error
    else {
        return false;
    };
    let mentions = |text: &str| {
        let text = text.to_ascii_lowercase();
        text.contains("skiptoken") || text.contains("skip token")
    };
    *status == 410 || mentions(message) || code.as_deref().is_some_and(mentions)
}

impl ODataPager {
    /// A walk starting with `first` (its URL's `$top` enables the `$skip` fallback).
    pub fn new(first: ApiRequest) -> Self {
        let top = query_value(&first.url, "$top").and_then(|t| t.trim().parse().ok());
        let skip = query_value(&first.url, "$skip")
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        ODataPager {
            sort_key: ascending_key(&first.url),
            first,
            top: top.filter(|t| *t > 0),
            skip,
            received: 0,
            from: None,
            next: Next::First,
        }
    }

    /// Goes back to the first page (after [`PagingError::SkipTokenExpired`], when the
    /// query itself is still right).
    pub fn restart(&mut self) {
        self.skip = query_value(&self.first.url, "$skip")
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        self.received = 0;
        self.from = None;
        self.next = Next::First;
    }

    /// The next page; `None` once the walk is over.
    pub async fn next_page<T: DeserializeOwned>(
        &mut self,
        client: &ApiClient,
        cancel: &CancellationToken,
    ) -> Result<Option<Page<T>>, PagingError> {
        let (url, continuation) = match &self.next {
            Next::Done => return Ok(None),
            Next::First => (self.first.url.clone(), false),
            Next::Link(url) => (url.clone(), true),
            Next::Skip(skip) => (with_skip(&self.first.url, *skip), false),
            Next::From { at, skip } => match &self.sort_key {
                Some(field) => (from_key(&self.first.url, field, at, *skip), false),
                None => (with_skip(&self.first.url, *skip), false),
            },
        };
        let request = self.first.to(url.clone());
        let response = match client.send(&request, cancel).await {
            Ok(response) => response,
            Err(error) if continuation && is_expired_continuation(&error) => {
                self.next = Next::Done;
                return Err(PagingError::SkipTokenExpired {
                    detail: error.to_string(),
                });
            }
            Err(error) => return Err(error.into()),
        };
        let page: Collection<T> =
            serde_json::from_slice(&response.body).map_err(|e| PagingError::Malformed {
                endpoint: self.first.endpoint,
                detail: format!("not an OData collection: {e}"),
            })?;
        let count = page.value.len() as u64;
        if let Next::From { at, skip } = &self.next {
            self.from = parse_key(at);
            self.skip = *skip;
            self.received = 0;
        }
        // A nextLink's own `$skip` is where its page starts (a link may point back, to
        // repeat a record): a `$skip` fallback after it counts from there.
        if continuation
            && let Some(skip) = query_value(&url, "$skip").and_then(|s| s.trim().parse().ok())
        {
            self.skip = skip;
            self.received = 0;
        }
        self.received += count;
        self.next = match page.next_link.as_deref().map(str::trim) {
            Some(link) if !link.is_empty() => {
                let next = Url::parse(link).map_err(|e| PagingError::Malformed {
                    endpoint: self.first.endpoint,
                    detail: format!("the nextLink `{link}` is not a URL: {e}"),
                })?;
                if let Err(ApiError::ForeignOrigin { origin, .. }) =
                    check_origin(self.first.endpoint, &next, &self.first.url)
                {
                    self.next = Next::Done;
                    return Err(PagingError::ForeignNextLink {
                        link: link.to_string(),
                        origin,
                    });
                }
                if next == url {
                    self.next = Next::Done;
                    return Err(PagingError::Malformed {
                        endpoint: self.first.endpoint,
                        detail: format!("the nextLink `{link}` is the page just read"),
                    });
                }
                // An offset into a collection sorted by a field that changes skips a
                // record whenever one read before moves on between two pages.
                let by_offset = query_value(&next, "$skip").is_some()
                    && query_value(&next, "$skiptoken").is_none();
                match self.next_from_last_key(&response.body, count) {
                    Some(from) if by_offset => from,
                    _ => Next::Link(next),
                }
            }
            _ => match self.top {
                // A full page without a link: the service may have left it out (§2.2).
                Some(top) if count == top => self.after_full_page(&response.body, top),
                _ => Next::Done,
            },
        };
        Ok(Some(Page {
            items: page.value,
            last: matches!(self.next, Next::Done),
        }))
    }
}

impl ODataPager {
    /// The sort key the next query goes on from, when the walk goes on from its last key.
    pub fn goes_on_from(&self) -> Option<DateTime<Utc>> {
        match &self.next {
            Next::From { at, .. } => parse_key(at).map(|at| at.with_timezone(&Utc)),
            _ => None,
        }
    }

    /// Where a full page without a nextLink goes on: from its last key when the query is
    /// sorted by one, else by `$skip`.
    fn after_full_page(&self, body: &[u8], top: u64) -> Next {
        self.next_from_last_key(body, top)
            .unwrap_or(Next::Skip(self.skip + self.received))
    }

    /// The query again from the last key of a page of `count` records (`body`), when the
    /// query is sorted by one and the page is sorted by it; `None` otherwise.
    fn next_from_last_key(&self, body: &[u8], count: u64) -> Option<Next> {
        let field = self.sort_key.as_ref()?;
        let keys = item_keys(body, field)?;
        let texts: Vec<&str> = keys
            .iter()
            .map(|key| key.as_deref().unwrap_or_default())
            .collect();
        let at = texts.last()?;
        let keys: Option<Vec<_>> = texts.iter().map(|t| parse_key(t)).collect();
        // Going on from the last key is right only for a page sorted ascending; `$orderby`
        // on these collections is not documented, and a service that ignored it must not
        // end the walk after one page (nor have its links replaced).
        let sorted = keys
            .as_ref()
            .is_some_and(|keys| keys.windows(2).all(|pair| pair[0] <= pair[1]));
        let (Some(keys), true) = (keys, sorted) else {
            tracing::warn!(
                endpoint = self.first.endpoint,
                field = %field,
                "a page is not sorted by {field} or lacks it; going on by the service's offset"
            );
            return None;
        };
        let &last = keys.last()?;
        // Records at `last` already read: all of this query's when it started there (the
        // query asks `ge last` and is sorted), else this page's.
        let at_last = if self.from == Some(last) {
            self.skip + self.received
        } else {
            keys.iter().filter(|k| **k == last).count() as u64
        };
        // Half a page read again absorbs that many records at `last` moving on between two
        // requests; the rest of the page is progress, so a run of equal keys longer than a
        // page still ends.
        Some(Next::From {
            at: at.to_string(),
            skip: at_last.saturating_sub(count / 2),
        })
    }
}

/// A page and the pager that fetched it.
type Fetched<T> = (ODataPager, Result<Option<Page<T>>, PagingError>);

/// A walk that keeps one request ahead: as soon as a page has come, the next page's
/// request goes out (in a task of its own) while the caller hands the page on. A walk paced
/// by its budget then costs a page the longer of the pacing and the request's latency,
/// rather than the latency and the page's handling in series, which on a busy machine held
/// each request back past its slot (the security backfill used 87 % of its budget).
///
/// Never more than one request ahead, and never two at once: the next request is only
/// known from the page before it — its nextLink, or, for a sorted walk going on from its
/// last key, that key — so pages are still fetched one after another, in order; what
/// overlaps is one page's handling with the next one's request, budget wait included. The
/// caller still settles pages in order: a page ahead is only returned after the one before.
/// Dropping the walk (a rewind, an error, shutdown) cancels the request ahead; its budget
/// slot is given back if it had not started.
pub struct PagesAhead<T> {
    first: ApiRequest,
    client: Arc<ApiClient>,
    cancel: CancellationToken,
    /// `None` while the request ahead holds it.
    pager: Option<ODataPager>,
    ahead: Option<JoinHandle<Fetched<T>>>,
    /// No request ahead once the walk goes on from this key or later: the caller ends the
    /// walk there, and a page fetched ahead would cost a request for nothing.
    stop_ahead_at: Option<DateTime<Utc>>,
}

impl<T: DeserializeOwned + Send + 'static> PagesAhead<T> {
    /// The walk of `first`, read by `client` until `cancel`.
    pub fn new(first: ApiRequest, client: Arc<ApiClient>, cancel: CancellationToken) -> Self {
        PagesAhead {
            pager: Some(ODataPager::new(first.clone())),
            first,
            client,
            cancel,
            ahead: None,
            stop_ahead_at: None,
        }
    }

    /// Asks for no page ahead once the walk [goes on from](ODataPager::goes_on_from) `key`
    /// or later (`None`: always ahead).
    pub fn stop_ahead_at(mut self, key: Option<DateTime<Utc>>) -> Self {
        self.stop_ahead_at = key;
        self
    }

    /// The next page (the one asked for ahead, if any); `None` once the walk is over. A
    /// page that is not the last sends the next request before it is returned.
    pub async fn next_page(&mut self) -> Result<Option<Page<T>>, PagingError> {
        let (pager, page) = match self.ahead.as_mut() {
            // Awaited in place: a caller that stops waiting leaves it running, still ahead.
            Some(ahead) => {
                let fetched = ahead.await;
                self.ahead = None;
                match fetched {
                    Ok(fetched) => fetched,
                    Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
                    // Aborted only when dropped; the runtime is shutting down.
                    Err(_) => return Err(PagingError::Api(ApiError::Cancelled)),
                }
            }
            None => {
                let Some(pager) = self.pager.as_mut() else {
                    return Ok(None);
                };
                let page = pager.next_page(&self.client, &self.cancel).await;
                let Some(pager) = self.pager.take() else {
                    return Ok(None);
                };
                (pager, page)
            }
        };
        let more = matches!(&page, Ok(Some(page)) if !page.last);
        let wanted = match (self.stop_ahead_at, pager.goes_on_from()) {
            (Some(stop), Some(key)) => key < stop,
            _ => true,
        };
        if more && wanted {
            let (client, cancel) = (Arc::clone(&self.client), self.cancel.clone());
            self.ahead = Some(tokio::spawn(async move {
                let mut pager = pager;
                let page = pager.next_page(&client, &cancel).await;
                (pager, page)
            }));
        } else {
            self.pager = Some(pager);
        }
        page
    }

    /// True while the next page's request is out (or waiting for its budget slot).
    #[cfg(test)]
    pub(crate) fn has_request_ahead(&self) -> bool {
        self.ahead.is_some()
    }

    /// Goes back to the first page (after [`PagingError::SkipTokenExpired`], when the
    /// query itself is still right), dropping any request ahead.
    pub fn restart(&mut self) {
        if let Some(ahead) = self.ahead.take() {
            ahead.abort();
        }
        self.pager = Some(ODataPager::new(self.first.clone()));
    }
}

impl<T> Drop for PagesAhead<T> {
    fn drop(&mut self) {
        if let Some(ahead) = &self.ahead {
            ahead.abort();
        }
    }
}

/// A sort key's time (an OData DateTimeOffset as Graph writes it).
fn parse_key(text: &str) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    chrono::DateTime::parse_from_rfc3339(text.trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_keys_read_one_field_of_each_item() {
        let body = br#"{"@odata.context":"x","value":[
            {"id":"a","lastUpdateDateTime":"2026-09-01T10:00:00Z","evidence":[{"lastUpdateDateTime":"no"}]},
            {"lastUpdateDateTime":7,"id":"b"},
            {"id":"c"},
            "text",
            [1,{"lastUpdateDateTime":"no"}]
        ],"@odata.nextLink":"https://h/next"}"#;
        assert_eq!(
            item_keys(body, "lastUpdateDateTime"),
            Some(vec![
                Some("2026-09-01T10:00:00Z".to_string()),
                None,
                None,
                None,
                None
            ])
        );
        assert_eq!(item_keys(br#"{"error":{}}"#, "id"), None);
        assert_eq!(item_keys(b"not json", "id"), None);
    }

    #[test]
    fn skip_replaces_only_skip_and_keeps_the_rest_as_written() {
        let url = Url::parse(
            "https://graph.microsoft.com/v1.0/security/alerts_v2?$filter=lastUpdateDateTime+ge+2026-09-01T10:00:00Z&$top=2&%24skip=4",
        )
        .expect("url");
        assert_eq!(
            with_skip(&url, 6).as_str(),
            "https://graph.microsoft.com/v1.0/security/alerts_v2?$filter=lastUpdateDateTime+ge+2026-09-01T10:00:00Z&$top=2&$skip=6"
        );
        let bare = Url::parse("https://h/api/alerts").expect("url");
        assert_eq!(
            with_skip(&bare, 10).as_str(),
            "https://h/api/alerts?$skip=10"
        );
    }

    #[test]
    fn expired_continuations_are_told_apart() {
        let refused = |status, message: &str, class| ApiError::Refused {
            endpoint: "signIns",
            status,
            code: Some("BadRequest".into()),
            message: message.into(),
            request_id: None,
            class,
        };
        assert!(is_expired_continuation(&refused(
            400,
            "Skip token has expired. Restart pagination from the first page.",
            ErrorClass::Data
        )));
        assert!(is_expired_continuation(&refused(
            400,
            "Invalid Skip Token",
            ErrorClass::Data
        )));
        assert!(is_expired_continuation(&refused(
            410,
            "Gone",
            ErrorClass::Data
        )));
        assert!(!is_expired_continuation(&refused(
            400,
            "Invalid filter clause",
            ErrorClass::Data
        )));
        assert!(!is_expired_continuation(&refused(
            403,
            "skiptoken",
            ErrorClass::Config
        )));
    }
}
