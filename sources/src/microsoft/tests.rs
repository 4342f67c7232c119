//! The client and the pager against a small HTTP server on loopback that answers as the
//! test says (and a token endpoint), recording every request it sees. The server is also
//! what the Microsoft sources' own client tests use.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use reqwest::Url;
use reqwest::header::{HeaderName, HeaderValue};
use siemflow_core::Secret;
use siemflow_core::auth::{Cloud, EntraConfig, TokenProvider};
use siemflow_core::http::TlsConfig;
use siemflow_core::metrics::{ComponentKind, ComponentLabels};
use siemflow_core::retry::RetryRule;
use siemflow_core::testing::eventually;
use tokio_util::sync::CancellationToken;

use super::api::{ApiProfile, GRAPH_SECURITY};
use super::budget::Window;
use super::client::{ApiClient, ApiRequest, ClientSettings, RetryRules};
use super::errors::{ApiError, ErrorClass};
use super::paging::{ODataPager, PagesAhead, PagingError};

pub(crate) const TENANT: &str = "41463f53-8812-40f4-890f-865bf6e35190";
const CLIENT: &str = "5e1f3a9c-6b2d-4c8e-9f01-365d0c0a5e1f";

/// One API request the server saw.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    /// Path and query, exactly as sent.
    pub target: String,
    /// The Authorization header.
    pub authorization: String,
    /// The Prefer header.
    pub prefer: Option<String>,
    /// The request body (a Cloud Apps list's JSON filters).
    pub body: String,
    /// When it arrived.
    pub at: Instant,
}

/// Status, headers, body.
pub(crate) type Reply = (u16, Vec<(&'static str, String)>, String);

type Handler = dyn Fn(&Call, usize) -> Reply + Send + Sync;

struct Inner {
    handler: Box<Handler>,
    calls: Mutex<Vec<Call>>,
    tokens: AtomicUsize,
}

pub(crate) struct TestServer {
    pub base: String,
    pub port: u16,
    inner: Arc<Inner>,
}

impl TestServer {
    pub(crate) fn calls(&self) -> Vec<Call> {
        self.inner.calls.lock().expect("calls").clone()
    }

    /// The path and query of every API request, in order.
    pub(crate) fn targets(&self) -> Vec<String> {
        self.calls().into_iter().map(|c| c.target).collect()
    }

    pub(crate) fn tokens(&self) -> usize {
        self.inner.tokens.load(Ordering::SeqCst)
    }

    pub(crate) fn url(&self, target: &str) -> Url {
        Url::parse(&format!("{}{target}", self.base)).expect("url")
    }
}

async fn handle(
    State(inner): State<Arc<Inner>>,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let target = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let (status, reply_headers, body) = if target.ends_with("/oauth2/v2.0/token") {
        let n = inner.tokens.fetch_add(1, Ordering::SeqCst) + 1;
        (
            200,
            vec![("content-type", "application/json".to_string())],
            format!(r#"{{"token_type":"Bearer","expires_in":3599,"access_token":"tok-{n}"}}"#),
        )
    } else {
        let call = Call {
            target,
            authorization: header("authorization").unwrap_or_default(),
            prefer: header("prefer"),
            body: String::from_utf8_lossy(&body).into_owned(),
            at: Instant::now(),
        };
        let index = {
            let mut calls = inner.calls.lock().expect("calls");
            calls.push(call.clone());
            calls.len() - 1
        };
        (inner.handler)(&call, index)
    };
    let mut response = Response::builder().status(status);
    for (name, value) in reply_headers {
        response = response.header(name, value);
    }
    response.body(Body::from(body)).expect("response")
}

/// A server on 127.0.0.1 answering API requests with `handler(call, index)`.
pub(crate) async fn serve(
    handler: impl Fn(&Call, usize) -> Reply + Send + Sync + 'static,
) -> TestServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    let inner = Arc::new(Inner {
        handler: Box::new(handler),
        calls: Mutex::new(Vec::new()),
        tokens: AtomicUsize::new(0),
    });
    let app = axum::Router::new()
        .fallback(handle)
        .with_state(Arc::clone(&inner));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    TestServer {
        base: format!("http://127.0.0.1:{port}"),
        port,
        inner,
    }
}

pub(crate) fn json(status: u16, body: &str) -> Reply {
    (
        status,
        vec![("content-type", "application/json".to_string())],
        body.to_string(),
    )
}

/// Graph's 401 for a token past its expiry.
fn token_expired() -> Reply {
    json(
        401,
        r#"{"error":{"code":"InvalidAuthenticationToken","message":"Access token has expired."}}"#,
    )
}

/// An HTTP client and a token provider signing in at `server` (`TENANT`, `CLIENT`).
pub(crate) fn http_and_tokens(
    server: &TestServer,
    scope: &str,
) -> (reqwest::Client, TokenProvider) {
    siemflow_core::metrics::prometheus();
    let http = siemflow_core::http::client(&TlsConfig::default(), Duration::from_secs(10), None)
        .expect("http client");
    let entra = EntraConfig {
        tenant_id: TENANT.into(),
        client_id: CLIENT.into(),
        client_secret: Some(Secret::new("secret")),
        certificate: None,
        cloud: Cloud::Commercial,
        login_url: Some(server.base.clone()),
    };
    let tokens = TokenProvider::new(&entra, scope, http.clone()).expect("token provider");
    (http, tokens)
}

/// A client of `server` for `profile`, with `windows` and short retries.
fn client(server: &TestServer, profile: ApiProfile, windows: &[Window]) -> ApiClient {
    let (http, tokens) = http_and_tokens(server, "https://graph.microsoft.com/.default");
    let labels = ComponentLabels {
        id: format!("microsoft_test_{}", server.port),
        kind: ComponentKind::Source,
        type_name: "test".into(),
    };
    ApiClient::new(ClientSettings {
        profile,
        tenant_id: TENANT,
        api_root: &server.url("/"),
        http,
        tokens,
        windows,
        retries: RetryRules {
            transient: RetryRule::new(Duration::from_millis(5), Duration::from_millis(20))
                .at_most(2),
            throttle: RetryRule::new(Duration::from_millis(5), Duration::from_millis(20)),
        },
        labels: &labels,
    })
}

fn graph(server: &TestServer) -> ApiClient {
    client(server, GRAPH_SECURITY, &[Window::per_minute(100_000)])
}

#[tokio::test]
async fn a_401_gets_a_fresh_token_and_one_more_try_then_is_a_config_error() {
    let server = serve(|call, _| {
        if call.authorization == "Bearer tok-1" || call.target.starts_with("/always401") {
            token_expired()
        } else {
            json(200, r#"{"value":[]}"#)
        }
    })
    .await;
    let client = graph(&server);
    let cancel = CancellationToken::new();
    let answer = client
        .send(
            &ApiRequest::get("alerts", server.url("/v1.0/security/alerts_v2")),
            &cancel,
        )
        .await
        .expect("the second token works");
    assert_eq!(answer.status, 200);
    assert_eq!(server.tokens(), 2);
    assert_eq!(server.calls().len(), 2);
    let error = client
        .send(
            &ApiRequest::get("alerts", server.url("/always401")),
            &cancel,
        )
        .await
        .expect_err("refused twice");
    assert_eq!(error.class(), ErrorClass::Config);
    assert_eq!(error.status(), Some(401));
    assert!(
        error
            .advice(client.profile().permission)
            .contains("SecurityAlert.Read.All")
    );
    assert_eq!(
        server.calls().len(),
        4,
        "one refresh, one more try, no loop"
    );
}

#[tokio::test]
async fn the_try_after_a_401_takes_a_budget_slot_of_its_own() {
    let server = serve(|call, _| {
        if call.authorization == "Bearer tok-1" {
            token_expired()
        } else {
            json(200, r#"{"value":[]}"#)
        }
    })
    .await;
    let period = Duration::from_millis(500);
    let client = client(&server, GRAPH_SECURITY, &[Window::new(1, period)]);
    client
        .send(
            &ApiRequest::get("alerts", server.url("/v1.0/security/alerts_v2")),
            &CancellationToken::new(),
        )
        .await
        .expect("the second token works");
    let calls = server.calls();
    assert_eq!(calls.len(), 2);
    let apart = calls[1].at - calls[0].at;
    assert!(
        apart >= period,
        "two requests arrived {apart:?} apart with a budget of one in {period:?}"
    );
}

#[tokio::test]
async fn each_envelope_over_http() {
    let server = serve(|call, _| match call.target.as_str() {
        "/graph-denied" => json(
            403,
            r#"{"error":{"code":"Authorization_RequestDenied","message":"Insufficient privileges to complete the operation.","innerError":{"request-id":"req-7"}}}"#,
        ),
        "/entra-licence" => json(
            403,
            r#"{"error":{"code":"Authentication_RequestFromNonPremiumTenantOrB2CTenant","message":"Neither tenant is B2C or tenant doesn't have premium license","innererror":{"request-id":"req-8"}}}"#,
        ),
        "/mde-input" => json(
            400,
            r#"{"error":{"code":"InvalidInput","message":"Invalid $filter","target":"c0ffee"}}"#,
        ),
        "/o365-missing" => json(
            400,
            r#"{"error":{"code":"AF20050","message":"The specified content does not exist."}}"#,
        ),
        "/mda-forbidden" => json(403, r#"{"detail":"You do not have permission to perform this action."}"#),
        "/wrong-root" => (404, Vec::new(), "<html>Not Found</html>".into()),
        _ => json(200, "{}"),
    })
    .await;
    let client = graph(&server);
    let cancel = CancellationToken::new();
    let cases: &[(&str, ErrorClass, Option<&str>, Option<&str>)] = &[
        (
            "/graph-denied",
            ErrorClass::Config,
            Some("Authorization_RequestDenied"),
            Some("req-7"),
        ),
        (
            "/entra-licence",
            ErrorClass::Config,
            Some("Authentication_RequestFromNonPremiumTenantOrB2CTenant"),
            Some("req-8"),
        ),
        (
            "/mde-input",
            ErrorClass::Data,
            Some("InvalidInput"),
            Some("c0ffee"),
        ),
        ("/o365-missing", ErrorClass::Data, Some("AF20050"), None),
        ("/mda-forbidden", ErrorClass::Config, None, None),
        ("/wrong-root", ErrorClass::Config, None, None),
    ];
    for (path, class, code, request_id) in cases {
        let error = client
            .send(&ApiRequest::get("x", server.url(path)), &cancel)
            .await
            .expect_err(path);
        assert_eq!(error.class(), *class, "{path}");
        assert_eq!(error.code(), *code, "{path}");
        match &error {
            ApiError::Refused {
                request_id: got, ..
            } => assert_eq!(got.as_deref(), *request_id, "{path}"),
            other => panic!("{path}: {other:?}"),
        }
    }
    assert_eq!(
        server.calls().len(),
        cases.len(),
        "none of these is retried"
    );
}

#[tokio::test]
async fn transient_failures_are_retried_then_given_up() {
    let server = serve(|call, index| match call.target.as_str() {
        "/flaky" if index == 0 => (503, vec![("retry-after", "0".into())], String::new()),
        "/flaky" if index == 1 => json(504, r#"{"error":{"code":"GatewayTimeout","message":"x"}}"#),
        "/flaky" => json(200, r#"{"value":[1]}"#),
        "/big" => json(200, &format!(r#"{{"value":"{}"}}"#, "x".repeat(4096))),
        _ => json(
            500,
            r#"{"error":{"code":"InternalServerError","message":"boom","target":"t"}}"#,
        ),
    })
    .await;
    let client = graph(&server);
    let cancel = CancellationToken::new();
    let answer = client
        .send(&ApiRequest::get("flaky", server.url("/flaky")), &cancel)
        .await
        .expect("third time lucky");
    assert_eq!(&answer.body[..], br#"{"value":[1]}"#);
    let error = client
        .send(&ApiRequest::get("broken", server.url("/broken")), &cancel)
        .await
        .expect_err("always 500");
    assert!(
        matches!(error, ApiError::Exhausted { attempts: 3, .. }),
        "{error:?}"
    );
    let too_large = client
        .send(
            &ApiRequest::get("big", server.url("/big")).max_bytes(1024),
            &cancel,
        )
        .await
        .expect_err("too large");
    assert!(
        matches!(too_large, ApiError::TooLarge { limit: 1024, .. }),
        "{too_large:?}"
    );
}

#[tokio::test]
async fn a_429_pauses_every_client_of_the_tenant_and_host_for_its_retry_after() {
    let server = serve(|call, index| {
        if index == 0 {
            json(
                429,
                r#"{"error":{"code":"TooManyRequests","message":"Too many requests."}}"#,
            )
            .with_header("retry-after", "1")
        } else {
            json(200, &format!(r#"{{"target":"{}"}}"#, call.target))
        }
    })
    .await;
    // Two sources on the same tenant and host; a window that orders their first requests:
    // the second's slot comes after the 429 to the first has arrived (which goes first is
    // up to whose token comes first).
    let window = [Window::new(1, Duration::from_millis(500))];
    let a = client(&server, GRAPH_SECURITY, &window);
    let b = client(&server, GRAPH_SECURITY, &window);
    let cancel = CancellationToken::new();
    let (to_a, to_b) = (
        ApiRequest::get("alerts", server.url("/a")),
        ApiRequest::get("alerts", server.url("/b")),
    );
    let (ra, rb) = tokio::join!(a.send(&to_a, &cancel), b.send(&to_b, &cancel));
    ra.expect("a after the pause");
    rb.expect("b after the pause");
    let calls = server.calls();
    let throttled_at = calls[0].at;
    for call in &calls[1..] {
        assert!(
            call.at - throttled_at >= Duration::from_secs(1),
            "{} came {:?} after the 429",
            call.target,
            call.at - throttled_at
        );
    }
    assert_eq!(calls.len(), 3);
}

pub(crate) trait WithHeader {
    fn with_header(self, name: &'static str, value: &str) -> Self;
}

impl WithHeader for Reply {
    fn with_header(mut self, name: &'static str, value: &str) -> Self {
        self.1.push((name, value.to_string()));
        self
    }
}

/// A collection page.
fn page(items: &[u32], next: Option<&str>) -> Reply {
    let value: Vec<String> = items.iter().map(|i| format!(r#"{{"id":"{i}"}}"#)).collect();
    let link = next
        .map(|l| format!(r#","@odata.nextLink":"{l}""#))
        .unwrap_or_default();
    json(
        200,
        &format!(
            r#"{{"@odata.context":"x","value":[{}]{link}}}"#,
            value.join(",")
        ),
    )
}

/// Every id of a walk, page by page.
async fn walk(pager: &mut ODataPager, client: &ApiClient) -> Result<Vec<Vec<String>>, PagingError> {
    let cancel = CancellationToken::new();
    let mut pages = Vec::new();
    while let Some(page) = pager
        .next_page::<serde_json::Value>(client, &cancel)
        .await?
    {
        pages.push(
            page.items
                .iter()
                .map(|item| item["id"].as_str().unwrap_or_default().to_string())
                .collect(),
        );
        if page.last {
            assert!(
                pager
                    .next_page::<serde_json::Value>(client, &cancel)
                    .await?
                    .is_none()
            );
            break;
        }
    }
    Ok(pages)
}

#[tokio::test]
async fn next_links_are_followed_verbatim_with_the_request_headers() {
    let links: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = Arc::clone(&links);
    let server = serve(move |_, index| {
        let link = |n: u32| {
            // Lower-case escapes, '+' and an escaped '+' in the token: sent back untouched.
            format!(
                "{}/v1.0/security/alerts_v2?$filter=lastUpdateDateTime+ge+2026-09-01T10%3a00%3a00Z&$top=2&$skiptoken=p{n}%2Bq",
                seen.lock().expect("links")[0]
            )
        };
        match index {
            0 => page(&[1, 2], Some(&link(1))),
            1 => page(&[3, 4], Some(&link(2))),
            _ => page(&[5], None),
        }
    })
    .await;
    links.lock().expect("links").push(server.base.clone());
    let client = graph(&server);
    let first = ApiRequest::get(
        "alerts",
        server.url("/v1.0/security/alerts_v2?$filter=lastUpdateDateTime%20ge%202026-09-01T10:00:00Z&$top=2"),
    )
    .header(
        HeaderName::from_static("prefer"),
        HeaderValue::from_static("include-unknown-enum-members"),
    );
    let mut pager = ODataPager::new(first);
    let pages = walk(&mut pager, &client).await.expect("walk");
    assert_eq!(pages, [vec!["1", "2"], vec!["3", "4"], vec!["5"]]);
    let calls = server.calls();
    assert_eq!(
        calls.iter().map(|c| c.target.as_str()).collect::<Vec<_>>(),
        [
            "/v1.0/security/alerts_v2?$filter=lastUpdateDateTime%20ge%202026-09-01T10:00:00Z&$top=2",
            "/v1.0/security/alerts_v2?$filter=lastUpdateDateTime+ge+2026-09-01T10%3a00%3a00Z&$top=2&$skiptoken=p1%2Bq",
            "/v1.0/security/alerts_v2?$filter=lastUpdateDateTime+ge+2026-09-01T10%3a00%3a00Z&$top=2&$skiptoken=p2%2Bq",
        ]
    );
    assert!(
        calls
            .iter()
            .all(|c| c.prefer.as_deref() == Some("include-unknown-enum-members")),
        "{calls:?}"
    );
}

#[tokio::test]
async fn a_next_link_to_another_host_is_refused() {
    let server = serve(|_, _| {
        page(
            &[1, 2],
            Some("http://evil.example:443/v1.0/security/alerts_v2?$skiptoken=x"),
        )
    })
    .await;
    let client = graph(&server);
    let mut pager = ODataPager::new(ApiRequest::get(
        "alerts",
        server.url("/v1.0/security/alerts_v2?$top=2"),
    ));
    let error = walk(&mut pager, &client).await.expect_err("refused");
    assert!(
        matches!(error, PagingError::ForeignNextLink { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("evil.example"), "{error}");
    assert_eq!(server.calls().len(), 1);
    // The same host under another name, or another port, is another origin too.
    let other_port = format!("http://127.0.0.1:{}/x", server.port.wrapping_add(1));
    let server2 = serve(move |_, _| page(&[1], Some(&other_port))).await;
    let client2 = graph(&server2);
    let mut pager = ODataPager::new(ApiRequest::get("alerts", server2.url("/x")));
    assert!(matches!(
        walk(&mut pager, &client2).await,
        Err(PagingError::ForeignNextLink { .. })
    ));
}

#[tokio::test]
async fn the_client_sends_nothing_off_its_api_origin() {
    let api = serve(|_, _| json(200, "{}")).await;
    let other = serve(|_, _| json(200, "{}")).await;
    let client = graph(&api);
    let cancel = CancellationToken::new();
    let error = client
        .send(&ApiRequest::get("alerts", other.url("/v1.0/x")), &cancel)
        .await
        .expect_err("refused");
    assert!(
        matches!(error, ApiError::ForeignOrigin { .. }) && error.is_config(),
        "{error}"
    );
    assert!(error.to_string().contains(&other.base), "{error}");
    assert!(other.calls().is_empty() && api.calls().is_empty());
    assert_eq!(api.tokens(), 0, "not even a token is asked for");
    client
        .send(&ApiRequest::get("alerts", api.url("/v1.0/x")), &cancel)
        .await
        .expect("its own origin");
}

/// The requests of a walk of [`skip_paging`]`(5)` from `/api/alerts?$filter=x&$top=2`.
const FIVE_BY_SKIP: [&str; 3] = [
    "/api/alerts?$filter=x&$top=2",
    "/api/alerts?$filter=x&$top=2&$skip=2",
    "/api/alerts?$filter=x&$top=2&$skip=4",
];

/// Serves `total` items by `$top`/`$skip`, never with a nextLink.
fn skip_paging(total: u32) -> impl Fn(&Call, usize) -> Reply + Send + Sync + 'static {
    move |call, _| {
        let url = Url::parse(&format!("http://h{}", call.target)).expect("url");
        let param = |name: &str| {
            url.query_pairs()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| v.parse::<u32>().ok())
        };
        let top = param("$top").unwrap_or(100);
        let skip = param("$skip").unwrap_or(0);
        let items: Vec<u32> = (skip..total).take(top as usize).map(|i| i + 1).collect();
        page(&items, None)
    }
}

#[tokio::test]
async fn without_next_links_full_pages_go_on_with_skip_and_a_short_page_stops() {
    let server = serve(skip_paging(5)).await;
    let client = graph(&server);
    let mut pager = ODataPager::new(ApiRequest::get(
        "alerts",
        server.url("/api/alerts?$filter=x&$top=2"),
    ));
    let pages = walk(&mut pager, &client).await.expect("walk");
    assert_eq!(pages, [vec!["1", "2"], vec!["3", "4"], vec!["5"]]);
    assert_eq!(server.targets(), FIVE_BY_SKIP);
    // An exact multiple ends on an empty page; without $top a page is the last.
    let server = serve(skip_paging(4)).await;
    let client = graph(&server);
    let mut pager = ODataPager::new(ApiRequest::get("alerts", server.url("/api/alerts?$top=2")));
    let pages = walk(&mut pager, &client).await.expect("walk");
    assert_eq!(pages, [vec!["1", "2"], vec!["3", "4"], vec![]]);
    let server = serve(skip_paging(4)).await;
    let client = graph(&server);
    let mut pager = ODataPager::new(ApiRequest::get("alerts", server.url("/api/alerts")));
    assert_eq!(walk(&mut pager, &client).await.expect("walk").len(), 1);
}

/// A collection sorted by `t` and filtered `t ge …`, paged by `$top`/`$skip` without
/// nextLinks; `change(index, records)` edits it before each request.
fn sorted_by_time(
    records: Vec<(&'static str, &'static str)>,
    change: impl Fn(usize, &mut Vec<(&'static str, &'static str)>) + Send + Sync + 'static,
) -> impl Fn(&Call, usize) -> Reply + Send + Sync + 'static {
    let records = Mutex::new(records);
    move |call, index| {
        let mut records = records.lock().expect("records");
        change(index, &mut records);
        let url = Url::parse(&format!("http://h{}", call.target)).expect("url");
        let param = |name: &str| {
            url.query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        let filter = param("$filter").unwrap_or_default();
        let from = filter.strip_prefix("t ge ").unwrap_or_default().to_string();
        let top: usize = param("$top").and_then(|t| t.parse().ok()).unwrap_or(100);
        let skip: usize = param("$skip").and_then(|t| t.parse().ok()).unwrap_or(0);
        let mut rows: Vec<_> = records
            .iter()
            .filter(|(_, t)| *t >= from.as_str())
            .collect();
        rows.sort_by_key(|(id, t)| (*t, *id));
        let value: Vec<String> = rows
            .iter()
            .skip(skip)
            .take(top)
            .map(|(id, t)| format!(r#"{{"id":"{id}","t":"{t}"}}"#))
            .collect();
        json(200, &format!(r#"{{"value":[{}]}}"#, value.join(",")))
    }
}

/// A walk of `target` with one request ahead.
fn walk_ahead(server: &TestServer, target: &str) -> PagesAhead<serde_json::Value> {
    PagesAhead::new(
        ApiRequest::get("alerts", server.url(target)),
        Arc::new(graph(server)),
        CancellationToken::new(),
    )
}

/// The ids of the walk's next page, and whether it is the last.
async fn next_ids(pages: &mut PagesAhead<serde_json::Value>) -> (Vec<String>, bool) {
    let page = pages.next_page().await.expect("page").expect("a page");
    let ids = page.items.iter();
    let ids = ids.map(|item| item["id"].as_str().unwrap_or_default().to_string());
    (ids.collect(), page.last)
}

#[tokio::test]
async fn the_next_page_is_asked_for_while_the_caller_still_holds_this_one() {
    let server = serve(skip_paging(5)).await;
    let mut pages = walk_ahead(&server, "/api/alerts?$filter=x&$top=2");
    assert_eq!(
        next_ids(&mut pages).await,
        (vec!["1".into(), "2".into()], false)
    );
    // The caller has not asked for page 2 yet: its request is out already.
    assert!(pages.has_request_ahead());
    eventually("page 2 asked for ahead", || server.calls().len() == 2).await;
    assert_eq!(
        next_ids(&mut pages).await,
        (vec!["3".into(), "4".into()], false)
    );
    eventually("page 3 asked for ahead", || server.calls().len() == 3).await;
    assert_eq!(next_ids(&mut pages).await, (vec!["5".into()], true));
    assert!(!pages.has_request_ahead(), "nothing after the last page");
    assert!(pages.next_page().await.expect("end").is_none());
    assert_eq!(
        server.targets(),
        FIVE_BY_SKIP,
        "one request a page, in order"
    );
    // Going back to the first page drops the request ahead: page 1 comes again.
    let mut pages = walk_ahead(&server, "/api/alerts?$filter=x&$top=2");
    next_ids(&mut pages).await;
    assert!(pages.has_request_ahead());
    pages.restart();
    assert!(!pages.has_request_ahead());
    assert_eq!(next_ids(&mut pages).await.0, ["1", "2"]);
}

#[tokio::test]
async fn no_page_is_asked_for_ahead_past_where_the_walk_stops() {
    let t = |s: u32| format!("2026-09-01T10:00:0{s}.0000000Z");
    let times: Vec<&'static str> = (0..5).map(|s| &*t(s).leak()).collect();
    let records = ["a", "b", "c", "d", "e"].into_iter().zip(times).collect();
    let server = serve(sorted_by_time(records, |_, _| {})).await;
    let target = "/a?$filter=t%20ge%202026-09-01T09:00:00Z&$orderby=t%20asc&$top=2";
    let stop = t(3).parse().expect("time");
    let mut pages = walk_ahead(&server, target).stop_ahead_at(Some(stop));
    // Each page goes on from its last key: ahead while that key is before the stop.
    for expected in [["a", "b"], ["b", "c"]] {
        assert_eq!(next_ids(&mut pages).await.0, expected);
        assert!(pages.has_request_ahead(), "after {expected:?}");
    }
    assert_eq!(next_ids(&mut pages).await.0, ["c", "d"]);
    assert!(
        !pages.has_request_ahead(),
        "the walk goes on from {}, the stop: no request ahead",
        t(3)
    );
    assert_eq!(server.calls().len(), 3);
    // Asked for anyway, the walk goes on.
    assert_eq!(next_ids(&mut pages).await.0, ["d", "e"]);
}

#[tokio::test]
async fn a_sorted_query_goes_on_from_its_last_key_through_runs_of_equal_keys() {
    const T0: &str = "2026-09-01T10:00:00.0000000Z";
    const T1: &str = "2026-09-01T10:00:01.0000000Z";
    const T2: &str = "2026-09-01T10:00:02.0000000Z";
    let mut records = vec![("a0", T0)];
    // Nine records share one time, more than a page of four holds.
    records.extend([
        ("b1", T1),
        ("b2", T1),
        ("b3", T1),
        ("b4", T1),
        ("b5", T1),
        ("b6", T1),
        ("b7", T1),
        ("b8", T1),
        ("b9", T1),
    ]);
    records.push(("c0", T2));
    // After the second page two records read at T1 move on to a later time (new
    // versions): as many as the half page read again absorbs.
    let server = serve(sorted_by_time(records, |index, records| {
        if index == 2 {
            for record in records
                .iter_mut()
                .filter(|(id, _)| ["b1", "b2"].contains(id))
            {
                record.1 = "2026-09-01T10:00:09.0000000Z";
            }
        }
    }))
    .await;
    let client = graph(&server);
    let mut pager = ODataPager::new(ApiRequest::get(
        "alerts",
        server.url("/a?$filter=t%20ge%202026-09-01T09:00:00Z&$orderby=t%20asc&$top=4"),
    ));
    let pages = walk(&mut pager, &client).await.expect("walk");
    let seen: std::collections::HashSet<&str> =
        pages.iter().flatten().map(String::as_str).collect();
    for id in [
        "a0", "b1", "b2", "b3", "b4", "b5", "b6", "b7", "b8", "b9", "c0",
    ] {
        assert!(seen.contains(id), "{id} missed: {pages:?}");
    }
    let targets: Vec<String> = server.calls().iter().map(|c| c.target.clone()).collect();
    // Each page goes on from the last key read, half a page back into its run.
    assert_eq!(
        targets[1],
        format!(
            "/a?$filter=t+ge+{}&$orderby=t%20asc&$top=4&$skip=1",
            T1.replace(':', "%3A")
        ),
        "{targets:#?}"
    );
    assert!(targets.len() < 20, "the walk ends: {targets:#?}");
}

#[tokio::test]
async fn a_service_that_ignores_the_orderby_is_walked_with_skip_to_the_end() {
    const T: [&str; 5] = [
        "2026-09-01T10:00:05Z",
        "2026-09-01T10:00:04Z",
        "2026-09-01T10:00:03Z",
        "2026-09-01T10:00:02Z",
        "2026-09-01T10:00:01Z",
    ];
    // Newest first whatever the query asks, paged by $top/$skip, no nextLinks.
    let server = serve(|call, _| {
        let url = Url::parse(&format!("http://h{}", call.target)).expect("url");
        let param = |name: &str| {
            url.query_pairs()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| v.parse::<usize>().ok())
        };
        let (top, skip) = (param("$top").unwrap_or(100), param("$skip").unwrap_or(0));
        let value: Vec<String> = T
            .iter()
            .enumerate()
            .skip(skip)
            .take(top)
            .map(|(i, t)| format!(r#"{{"id":"{i}","t":"{t}"}}"#))
            .collect();
        json(200, &format!(r#"{{"value":[{}]}}"#, value.join(",")))
    })
    .await;
    let client = graph(&server);
    let mut pager = ODataPager::new(ApiRequest::get(
        "alerts",
        server.url("/a?$filter=t%20ge%202026-09-01T09:00:00Z&$orderby=t%20asc&$top=2"),
    ));
    let pages = walk(&mut pager, &client).await.expect("walk");
    assert_eq!(pages, [vec!["0", "1"], vec!["2", "3"], vec!["4"]]);
}

#[tokio::test]
async fn an_unsorted_query_without_next_links_still_goes_on_with_skip() {
    let server = serve(skip_paging(3)).await;
    let client = graph(&server);
    // Sorted descending: no lower bound to go on from.
    let mut pager = ODataPager::new(ApiRequest::get(
        "alerts",
        server.url("/a?$filter=t%20ge%20x&$orderby=t%20desc&$top=2"),
    ));
    walk(&mut pager, &client).await.expect("walk");
    assert!(server.calls()[1].target.ends_with("&$skip=2"));
}

#[tokio::test]
async fn an_expired_skip_token_is_reported_and_the_query_starts_again() {
    let expired_once = Arc::new(AtomicUsize::new(0));
    let base: Arc<Mutex<String>> = Arc::default();
    let (expired, link_base) = (Arc::clone(&expired_once), Arc::clone(&base));
    let server = serve(move |call, _| {
        let base = link_base.lock().expect("base").clone();
        if call.target.contains("$skiptoken=t1") {
            if expired.fetch_add(1, Ordering::SeqCst) == 0 {
                return json(
                    400,
                    r#"{"error":{"code":"BadRequest","message":"Skip token has expired. Restart pagination from the first page.","innerError":{"request-id":"r"}}}"#,
                );
            }
            return page(&[3], None);
        }
        page(&[1, 2], Some(&format!("{base}/v1.0/auditLogs/signIns?$skiptoken=t1")))
    })
    .await;
    *base.lock().expect("base") = server.base.clone();
    let client = client(
        &server,
        super::api::ENTRA_REPORTS,
        &[Window::per_minute(100_000)],
    );
    let mut pager = ODataPager::new(ApiRequest::get(
        "signIns",
        server.url("/v1.0/auditLogs/signIns?$filter=createdDateTime%20ge%202026-09-01T10:00:00Z"),
    ));
    let cancel = CancellationToken::new();
    let first = pager
        .next_page::<serde_json::Value>(&client, &cancel)
        .await
        .expect("first page")
        .expect("a page");
    assert_eq!(first.items.len(), 2);
    let error = pager
        .next_page::<serde_json::Value>(&client, &cancel)
        .await
        .expect_err("expired");
    assert!(
        matches!(error, PagingError::SkipTokenExpired { .. }),
        "{error}"
    );
    // The caller queries again from its cursor: here the same query.
    pager.restart();
    let pages = walk(&mut pager, &client).await.expect("walk again");
    assert_eq!(pages, [vec!["1", "2"], vec!["3"]]);
    assert_eq!(server.calls().len(), 4);
}
