//! OData paging (Graph, Defender for Endpoint), reference §2.2 and §6.2:
//!
//! - `@odata.nextLink` is followed exactly as given, never edited; it must stay on the
//!   query's scheme, host and port (the bearer token goes with it), else the walk stops
//!   with [`PagingError::ForeignNextLink`].
//! - Without a nextLink, a full page (`len == $top`) goes on with `$skip` paging (the
//!   service sometimes omits the link when `$top` is set); a short page ends the walk.
//! - A continuation refused because its skip token expired (or is invalid) is reported as
//!   [`PagingError::SkipTokenExpired`]: the caller queries again from its cursor (or
//!   [restarts](ODataPager::restart) the same query).

use reqwest::Url;
use serde::Deserialize;
use serde::de::DeserializeOwned;
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
    Done,
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
    let kept: Vec<&str> = url
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty())
        .filter(|pair| {
            let name = pair.split('=').next().unwrap_or_default();
            let decoded: String = form_urlencoded::parse(name.as_bytes())
                .map(|(key, _)| key.into_owned())
                .collect();
            decoded != "$skip"
        })
        .collect();
    let mut query = kept.join("&");
    if !query.is_empty() {
        query.push('&');
    }
    query.push_str(&format!("$skip={skip}"));
    let mut next = url.clone();
    next.set_query(Some(&query));
    next
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
            first,
            top: top.filter(|t| *t > 0),
            skip,
            received: 0,
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
                Next::Link(next)
            }
            _ => match self.top {
                // A full page without a link: the service may have left it out (§2.2).
                Some(top) if count == top => Next::Skip(self.skip + self.received),
                _ => Next::Done,
            },
        };
        Ok(Some(Page {
            items: page.value,
            last: matches!(self.next, Next::Done),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
