//! The token provider against a tiny in-test token endpoint and API.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::*;
use crate::Secret;
use crate::auth::certificate::tests::{SHA1, SHA256, fixture};

const TENANT: &str = "0b6f0c1e-5a3d-4c2b-9e8f-1a2b3c4d5e6f";
const CLIENT: &str = "6f1a2b3c-0d4e-4f5a-8b6c-7d8e9f0a1b2c";
const SECRET: &str = "Abc8Q~s3cr3t-value-never-shown";
const SCOPE: &str = "https://manage.office.com/.default";

/// What the token endpoint answers next.
#[derive(Clone)]
enum Reply {
    /// A token named `token-<n>` (n counts token requests) living `expires_in` (a JSON number or string).
    Token(serde_json::Value),
    Error {
        status: u16,
        body: String,
        retry_after: Option<&'static str>,
    },
}

#[derive(Default)]
struct Endpoint {
    token_requests: AtomicUsize,
    api_requests: AtomicUsize,
    forms: Mutex<Vec<HashMap<String, String>>>,
    script: Mutex<VecDeque<Reply>>,
    /// Answered once the script is used up.
    fallback: Mutex<Option<Reply>>,
    delay: Mutex<Duration>,
    /// Bearer tokens the API answers 401 to.
    rejected: Mutex<Vec<String>>,
}

impl Endpoint {
    fn tokens(&self) -> usize {
        self.token_requests.load(Ordering::SeqCst)
    }
    fn api(&self) -> usize {
        self.api_requests.load(Ordering::SeqCst)
    }
    fn then(&self, reply: Reply) {
        self.script.lock().unwrap().push_back(reply);
    }
    fn always(&self, reply: Reply) {
        *self.fallback.lock().unwrap() = Some(reply);
    }
    fn last_form(&self) -> HashMap<String, String> {
        self.forms.lock().unwrap().last().cloned().unwrap()
    }
}

async fn token_endpoint(State(endpoint): State<Arc<Endpoint>>, body: String) -> Response {
    let n = endpoint.token_requests.fetch_add(1, Ordering::SeqCst) + 1;
    endpoint
        .forms
        .lock()
        .unwrap()
        .push(serde_urlencoded::from_str(&body).unwrap());
    let delay = *endpoint.delay.lock().unwrap();
    tokio::time::sleep(delay).await;
    let reply = endpoint
        .script
        .lock()
        .unwrap()
        .pop_front()
        .or_else(|| endpoint.fallback.lock().unwrap().clone())
        .unwrap_or(Reply::Token(serde_json::json!(3599)));
    match reply {
        Reply::Token(expires_in) => (
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::json!({
                "token_type": "Bearer",
                "expires_in": expires_in,
                "ext_expires_in": expires_in,
                "access_token": format!("token-{n}"),
            })
            .to_string(),
        )
            .into_response(),
        Reply::Error {
            status,
            body,
            retry_after,
        } => {
            let mut response = (StatusCode::from_u16(status).unwrap(), body).into_response();
            if let Some(wait) = retry_after {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, wait.parse().unwrap());
            }
            response
        }
    }
}

async fn api(State(endpoint): State<Arc<Endpoint>>, headers: HeaderMap) -> Response {
    endpoint.api_requests.fetch_add(1, Ordering::SeqCst);
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_string();
    if bearer.is_empty() || endpoint.rejected.lock().unwrap().contains(&bearer) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    format!("hello {bearer}").into_response()
}

async fn start() -> (Arc<Endpoint>, String) {
    let endpoint = Arc::new(Endpoint::default());
    let router = Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(token_endpoint))
        .route("/api", get(api))
        .with_state(endpoint.clone());
    let base = format!("http://{}", crate::testing::serve(router).await);
    (endpoint, base)
}

fn secret_config(base: &str) -> EntraConfig {
    EntraConfig {
        tenant_id: TENANT.to_string(),
        client_id: CLIENT.to_string(),
        client_secret: Some(Secret::new(SECRET)),
        certificate: None,
        cloud: Cloud::Commercial,
        login_url: Some(base.to_string()),
    }
}

fn http() -> reqwest::Client {
    crate::http::client(
        &crate::http::TlsConfig::default(),
        Duration::from_secs(5),
        None,
    )
    .unwrap()
}

fn provider(base: &str) -> TokenProvider {
    TokenProvider::new(&secret_config(base), SCOPE, http()).unwrap()
}

/// A clock the test moves by hand, so token lifetimes pass without waiting.
#[derive(Clone)]
struct ManualClock(std::sync::Arc<std::sync::Mutex<std::time::Instant>>);

impl ManualClock {
    fn new() -> Self {
        ManualClock(std::sync::Arc::new(std::sync::Mutex::new(
            std::time::Instant::now(),
        )))
    }

    fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += by;
    }

    fn reader(&self) -> impl Fn() -> std::time::Instant + Send + Sync + 'static {
        let now = self.0.clone();
        move || *now.lock().unwrap()
    }
}

fn aadsts(error: &str, code: u32, description: &str) -> String {
    serde_json::json!({
        "error": error,
        "error_description": format!("AADSTS{code}: {description}\r\nTrace ID: 7d1f0000-0000-0000-0000-000000000000\r\nCorrelation ID: 11111111-2222-3333-4444-555555555555\r\nTimestamp: 2026-09-01 10:00:00Z"),
        "error_codes": [code],
        "timestamp": "2026-09-01 10:00:00Z",
        "trace_id": "7d1f0000-0000-0000-0000-000000000000",
        "correlation_id": "11111111-2222-3333-4444-555555555555",
    })
    .to_string()
}

#[tokio::test]
async fn secret_request_and_cache() {
    let (endpoint, base) = start().await;
    let provider = provider(&base);
    assert_eq!(
        provider.token_url(),
        format!("{base}/{TENANT}/oauth2/v2.0/token")
    );
    let first = provider.token().await.unwrap();
    let second = provider.token().await.unwrap();
    assert_eq!(first.bearer(), "token-1");
    assert_eq!(second.bearer(), "token-1");
    assert_eq!(
        endpoint.tokens(),
        1,
        "the second call is served from the cache"
    );
    let form = endpoint.last_form();
    assert_eq!(form["grant_type"], "client_credentials");
    assert_eq!(form["client_id"], CLIENT);
    assert_eq!(form["scope"], SCOPE);
    assert_eq!(form["client_secret"], SECRET);
    assert!(!form.contains_key("client_assertion"));
    let shown = format!("{provider:?} {first:?} {first}");
    assert!(
        !shown.contains(SECRET) && !shown.contains("token-1"),
        "{shown}"
    );
}

#[tokio::test]
async fn v1_style_string_lifetimes_are_understood() {
    let (endpoint, base) = start().await;
    endpoint.then(Reply::Token(serde_json::json!("3599")));
    let provider = provider(&base);
    let token = provider.token().await.unwrap();
    let left = token
        .expires_at()
        .duration_since(std::time::SystemTime::now())
        .unwrap();
    assert!(left > Duration::from_secs(3590), "{left:?}");
    provider.token().await.unwrap();
    assert_eq!(endpoint.tokens(), 1);
}

async fn certificate_flow(style: SignatureStyle) -> (serde_json::Value, serde_json::Value) {
    let (endpoint, base) = start().await;
    let mut config = secret_config(&base);
    config.client_secret = None;
    config.certificate = Some(CertificateConfig {
        path: fixture("cert-aes.p12"),
        key_path: None,
        password: Some(Secret::new("test-password")),
        signature: style,
    });
    let provider = TokenProvider::new(&config, SCOPE, http()).unwrap();
    provider.token().await.unwrap();
    let form = endpoint.last_form();
    assert_eq!(form["client_assertion_type"], ASSERTION_TYPE);
    assert!(!form.contains_key("client_secret"));
    let jwt = &form["client_assertion"];
    let mut parts = jwt.split('.');
    let mut decode = || -> serde_json::Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap()).unwrap()
    };
    let (header, claims) = (decode(), decode());
    assert_eq!(
        claims["aud"],
        provider.token_url(),
        "aud is the exact token URL"
    );
    assert_eq!(claims["iss"], CLIENT);
    assert_eq!(claims["sub"], CLIENT);
    (header, claims)
}

#[tokio::test]
async fn certificate_assertion_ps256() {
    let (header, _) = certificate_flow(SignatureStyle::Ps256).await;
    assert_eq!(header["alg"], "PS256");
    assert_eq!(header["x5t#S256"], SHA256);
}

#[tokio::test]
async fn certificate_assertion_rs256() {
    let (header, _) = certificate_flow(SignatureStyle::Rs256).await;
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["x5t"], SHA1);
}

#[tokio::test]
async fn refreshed_early() {
    let (endpoint, base) = start().await;
    // Two seconds of life: refreshed after one (half its life; see token::refresh_after).
    endpoint.then(Reply::Token(serde_json::json!(2)));
    let clock = ManualClock::new();
    let provider = provider(&base).with_clock(clock.reader());
    assert_eq!(provider.token().await.unwrap().bearer(), "token-1");
    assert_eq!(provider.token().await.unwrap().bearer(), "token-1");
    clock.advance(Duration::from_millis(1100));
    assert_eq!(provider.token().await.unwrap().bearer(), "token-2");
    assert_eq!(endpoint.tokens(), 2);
}

#[tokio::test]
async fn concurrent_callers_share_one_refresh() {
    let (endpoint, base) = start().await;
    *endpoint.delay.lock().unwrap() = Duration::from_millis(300);
    let provider = provider(&base);
    let calls: Vec<_> = (0..16)
        .map(|_| {
            let provider = provider.clone();
            tokio::spawn(async move { provider.token().await })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap().bearer(), "token-1");
    }
    assert_eq!(endpoint.tokens(), 1);
}

#[tokio::test]
async fn concurrent_callers_share_one_failure_and_it_is_not_hammered() {
    let (endpoint, base) = start().await;
    *endpoint.delay.lock().unwrap() = Duration::from_millis(300);
    endpoint.always(Reply::Error {
        status: 401,
        body: aadsts("invalid_client", 7000215, "Invalid client secret provided."),
        retry_after: None,
    });
    let provider = provider(&base);
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let provider = provider.clone();
            tokio::spawn(async move { provider.token().await })
        })
        .collect();
    for call in calls {
        let error = call.await.unwrap().unwrap_err();
        assert_eq!(error.code(), Some(7000215));
    }
    // A caller looping on the error is answered from memory for a while.
    assert!(provider.token().await.is_err());
    assert_eq!(endpoint.tokens(), 1);
}

#[tokio::test]
async fn send_refreshes_once_after_401() {
    let (endpoint, base) = start().await;
    endpoint
        .rejected
        .lock()
        .unwrap()
        .push("token-1".to_string());
    let provider = provider(&base);
    let url = format!("{base}/api");
    let http = http();
    let response = provider.send(|| http.get(&url)).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "hello token-2");
    assert_eq!(endpoint.tokens(), 2);
    assert_eq!(endpoint.api(), 2);
    // The new token is cached: the next request needs no token request.
    let response = provider.send(|| http.get(&url)).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(endpoint.tokens(), 2);
}

#[tokio::test]
async fn send_retries_exactly_once() {
    let (endpoint, base) = start().await;
    endpoint.rejected.lock().unwrap().extend([
        "token-1".to_string(),
        "token-2".to_string(),
        "token-3".to_string(),
    ]);
    let provider = provider(&base);
    let url = format!("{base}/api");
    let http = http();
    let response = provider.send(|| http.get(&url)).await.unwrap();
    assert_eq!(
        response.status(),
        401,
        "the second 401 is the caller's to judge"
    );
    assert_eq!(endpoint.api(), 2);
    assert_eq!(endpoint.tokens(), 2);
}

#[tokio::test]
async fn invalidate_forgets_only_the_cached_token() {
    let (endpoint, base) = start().await;
    let provider = provider(&base);
    let old = provider.token().await.unwrap();
    provider.invalidate(&old);
    let new = provider.token().await.unwrap();
    assert_eq!(new.bearer(), "token-2");
    // A late 401 for the old token must not throw away the new one.
    provider.invalidate(&old);
    assert_eq!(provider.token().await.unwrap().bearer(), "token-2");
    assert_eq!(endpoint.tokens(), 2);
}

#[tokio::test]
async fn aadsts_errors_are_permanent_and_explained() {
    for (status, error, code, description, advice) in [
        (
            401,
            "invalid_client",
            7000215,
            "Invalid client secret provided.",
            "Secret ID",
        ),
        (
            401,
            "invalid_client",
            7000222,
            "The provided client secret keys for app are expired.",
            "expired",
        ),
        (
            400,
            "unauthorized_client",
            700016,
            "Application with identifier was not found in the directory.",
            "client_id",
        ),
        (
            400,
            "invalid_request",
            90002,
            "Tenant not found.",
            "tenant_id",
        ),
        (
            401,
            "invalid_client",
            700027,
            "Client assertion failed signature validation.",
            "certificate",
        ),
        (
            400,
            "invalid_scope",
            1002012,
            "The provided value for scope is not valid.",
            "/.default",
        ),
    ] {
        let (endpoint, base) = start().await;
        endpoint.always(Reply::Error {
            status,
            body: aadsts(error, code, description),
            retry_after: None,
        });
        let failure = provider(&base).token().await.unwrap_err();
        assert!(failure.is_permanent(), "{code}");
        assert_eq!(failure.code(), Some(code));
        let text = failure.to_string();
        assert!(
            text.contains(&format!("AADSTS{code}: {description}")),
            "{text}"
        );
        assert!(text.contains(advice), "{code}: {text}");
        assert!(
            !text.contains("Trace ID") && !text.contains("Correlation"),
            "{text}"
        );
        assert!(!text.contains(SECRET) && !format!("{failure:?}").contains(SECRET));
    }
}

#[tokio::test]
async fn throttling_outages_and_network_errors_are_transient() {
    let (endpoint, base) = start().await;
    endpoint.then(Reply::Error {
        status: 429,
        body: String::new(),
        retry_after: Some("7"),
    });
    let failure = provider(&base).token().await.unwrap_err();
    assert!(!failure.is_permanent());
    assert_eq!(failure.retry_after(), Some(Duration::from_secs(7)));

    endpoint.then(Reply::Error {
        status: 503,
        body: "<html>unavailable</html>".to_string(),
        retry_after: None,
    });
    let failure = provider(&base).token().await.unwrap_err();
    assert!(!failure.is_permanent(), "{failure}");

    // Nobody listens on a port we just freed.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let failure = provider(&closed).token().await.unwrap_err();
    assert!(!failure.is_permanent(), "{failure}");
    assert!(failure.to_string().contains("cannot reach"), "{failure}");
}

#[tokio::test]
async fn a_failed_refresh_keeps_the_working_token() {
    let (endpoint, base) = start().await;
    endpoint.then(Reply::Token(serde_json::json!(4)));
    endpoint.always(Reply::Error {
        status: 503,
        body: String::new(),
        retry_after: None,
    });
    let clock = ManualClock::new();
    let provider = provider(&base).with_clock(clock.reader());
    assert_eq!(provider.token().await.unwrap().bearer(), "token-1");
    clock.advance(Duration::from_millis(2100));
    // Due for refresh, the refresh fails, the token still has ~2 s: keep using it, and don't ask again at once.
    assert_eq!(provider.token().await.unwrap().bearer(), "token-1");
    assert_eq!(provider.token().await.unwrap().bearer(), "token-1");
    assert_eq!(endpoint.tokens(), 2);
}

#[tokio::test]
async fn startup_errors() {
    let base = "http://127.0.0.1:9";
    let scope_error =
        TokenProvider::new(&secret_config(base), "https://manage.office.com", http()).unwrap_err();
    assert!(scope_error.is_permanent());
    assert!(scope_error.to_string().contains("/.default"));

    let mut config = secret_config(base);
    config.client_secret = None;
    config.certificate = Some(CertificateConfig {
        path: fixture("cert.pem"),
        key_path: Some(fixture("other-key.pem")),
        password: None,
        signature: SignatureStyle::Ps256,
    });
    let key_error = TokenProvider::new(&config, SCOPE, http()).unwrap_err();
    assert!(
        key_error.to_string().contains("does not belong"),
        "{key_error}"
    );

    let mut config = secret_config(base);
    config.tenant_id = "common".to_string();
    let tenant_error = TokenProvider::new(&config, SCOPE, http()).unwrap_err();
    assert!(
        tenant_error.to_string().contains("tenant_id"),
        "{tenant_error}"
    );
}

/// Every cloud's Defender for Endpoint scope (reference §0.1 and §3.1; Microsoft's "Defender
/// for Endpoint for US Government customers" API table): commercial tokens are for the
/// legacy `api.securitycenter` resource although the API (and its geo hosts us./eu./uk./
/// au.api.security.microsoft.com, which share it) answers on `api.security`; GCC and GCC
/// High/DoD for their own hosts, signed in at their cloud's authority.
#[tokio::test]
async fn each_cloud_asks_for_its_defender_for_endpoint_scope() {
    let (endpoint, base) = start().await;
    for (cloud, scope, authority) in [
        (
            Cloud::Commercial,
            "https://api.securitycenter.microsoft.com/.default",
            "https://login.microsoftonline.com",
        ),
        (
            Cloud::Gcc,
            "https://api-gcc.securitycenter.microsoft.us/.default",
            "https://login.microsoftonline.com",
        ),
        (
            Cloud::GccHigh,
            "https://api-gov.securitycenter.microsoft.us/.default",
            "https://login.microsoftonline.us",
        ),
        (
            Cloud::Dod,
            "https://api-gov.securitycenter.microsoft.us/.default",
            "https://login.microsoftonline.us",
        ),
    ] {
        let mut config = secret_config(&base);
        config.cloud = cloud;
        let asked = default_scope(cloud.defender_audience());
        let provider = TokenProvider::new(&config, &asked, http()).unwrap();
        provider.token().await.unwrap();
        assert_eq!(endpoint.last_form()["scope"], scope, "{cloud:?}");
        config.login_url = None;
        let own = TokenProvider::new(&config, &asked, http()).unwrap();
        assert_eq!(
            own.token_url(),
            format!("{authority}/{TENANT}/oauth2/v2.0/token"),
            "{cloud:?}"
        );
    }
}

/// Graph, Defender for Endpoint and the Management API in every cloud, by secret and by
/// certificate: a token is fetched again once it expires and once a request with it is
/// answered 401, each time for the same scope; a certificate signs a new assertion (own
/// `jti`, `aud` the token URL) each time.
#[tokio::test]
async fn refreshed_on_expiry_and_after_a_401_in_every_cloud_with_either_credential() {
    let http = http();
    for cloud in [Cloud::Commercial, Cloud::Gcc, Cloud::GccHigh, Cloud::Dod] {
        for audience in [
            cloud.graph_url(),
            cloud.defender_audience(),
            cloud.management_url(),
        ] {
            for by_certificate in [false, true] {
                let what = format!("{cloud:?} {audience} certificate={by_certificate}");
                let (endpoint, base) = start().await;
                let mut config = secret_config(&base);
                config.cloud = cloud;
                if by_certificate {
                    config.client_secret = None;
                    config.certificate = Some(CertificateConfig {
                        path: fixture("cert-aes.p12"),
                        key_path: None,
                        password: Some(Secret::new("test-password")),
                        signature: SignatureStyle::Ps256,
                    });
                }
                let clock = ManualClock::new();
                let scope = default_scope(audience);
                let provider = TokenProvider::new(&config, &scope, http.clone())
                    .unwrap()
                    .with_clock(clock.reader());
                assert_eq!(provider.token().await.unwrap().bearer(), "token-1");
                // Past its 3599 s: expired, so fetched again.
                clock.advance(Duration::from_secs(3600));
                assert_eq!(
                    provider.token().await.unwrap().bearer(),
                    "token-2",
                    "{what}"
                );
                // The API refuses the token it holds: fetched again, the request re-sent.
                endpoint
                    .rejected
                    .lock()
                    .unwrap()
                    .push("token-2".to_string());
                let url = format!("{base}/api");
                let response = provider.send(|| http.get(&url)).await.unwrap();
                assert_eq!(response.text().await.unwrap(), "hello token-3", "{what}");
                let forms = endpoint.forms.lock().unwrap().clone();
                assert_eq!(forms.len(), 3, "{what}");
                assert!(forms.iter().all(|f| f["scope"] == scope), "{what}");
                if by_certificate {
                    let claims: Vec<serde_json::Value> = forms
                        .iter()
                        .map(|f| {
                            assert!(!f.contains_key("client_secret"), "{what}");
                            let payload = f["client_assertion"].split('.').nth(1).unwrap();
                            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap())
                                .unwrap()
                        })
                        .collect();
                    assert!(
                        claims.iter().all(|c| c["aud"] == provider.token_url()),
                        "{what}"
                    );
                    let ids: std::collections::HashSet<String> =
                        claims.iter().map(|c| c["jti"].to_string()).collect();
                    assert_eq!(ids.len(), 3, "a new assertion each time: {what}");
                } else {
                    assert!(forms.iter().all(|f| f["client_secret"] == SECRET), "{what}");
                }
            }
        }
    }
}
