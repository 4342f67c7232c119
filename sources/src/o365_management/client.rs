//! The Management Activity API of one tenant, on the shared Microsoft client
//! ([`crate::microsoft::client`]: token, budget, retries, error classes). What is the
//! Management API's own lives here: `PublisherIdentifier` on every call, the operations
//! and their names in metrics, `/start`'s throttling that says nothing about the quota,
//! and the warning when the server's clock and ours differ.

use std::sync::atomic::{AtomicI64, Ordering};

use reqwest::Url;
use reqwest::header::HeaderMap;
use siemflow_core::auth::TokenProvider;
use siemflow_core::metrics::ComponentLabels;
use tokio_util::sync::CancellationToken;

use super::Tuning;
use crate::microsoft::api::O365_MANAGEMENT;
use crate::microsoft::{
    ApiClient, ApiError, ApiRequest, ApiResponse, ClientSettings, RetryRules, ThrottleScope, Window,
};

/// Error bodies and `/start` answers are small.
const MAX_SMALL_ANSWER: u64 = 64 * 1024;

/// Warn when the server's clock and ours differ by more than this (windows go wrong).
const CLOCK_SKEW_WARNING: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// Which API operation a request is, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// `POST subscriptions/start`.
    Start,
    /// `GET subscriptions/content`.
    Content,
    /// `GET {contentUri}`.
    Blob,
}

impl Endpoint {
    fn label(self) -> &'static str {
        match self {
            Endpoint::Start => "start",
            Endpoint::Content => "content",
            Endpoint::Blob => "blob",
        }
    }
}

/// The Management Activity API of one tenant.
pub(crate) struct TenantClient {
    /// The tenant id, as in URLs and labels.
    pub tenant_id: String,
    /// `{api}/api/v1.0/{tenant}/activity/feed`.
    pub feed_root: String,
    publisher: String,
    api: ApiClient,
    tuning: Tuning,
    /// Unix seconds of the last clock-skew warning, so it is said once an hour.
    skew_warned_at: AtomicI64,
}

/// What a tenant's client is built from.
pub(crate) struct TenantSettings<'a> {
    pub tenant_id: &'a str,
    /// The API root (`https://manage.office.com`, or `api_url`).
    pub api_root: &'a Url,
    pub publisher: String,
    pub http: reqwest::Client,
    pub tokens: TokenProvider,
    pub requests_per_minute: u32,
    pub tuning: Tuning,
    pub labels: &'a ComponentLabels,
}

impl TenantClient {
    /// A client for one tenant; joins the tenant's request budget on the API host.
    pub(crate) fn new(settings: TenantSettings<'_>) -> Self {
        let TenantSettings {
            tenant_id,
            api_root,
            publisher,
            http,
            tokens,
            requests_per_minute,
            tuning,
            labels,
        } = settings;
        let tenant_id = tenant_id.trim().to_string();
        // The configured budget, under the name it always had.
        labels
            .gauge(
                "o365_request_budget_per_minute",
                &[("tenant_id", &tenant_id)],
            )
            .set(f64::from(requests_per_minute));
        let api = ApiClient::new(ClientSettings {
            profile: O365_MANAGEMENT,
            tenant_id: &tenant_id,
            api_root,
            http,
            tokens,
            windows: &[Window::per_minute(requests_per_minute)],
            retries: RetryRules {
                transient: tuning.transient,
                throttle: tuning.throttle,
            },
            labels,
        });
        let root = api_root.as_str().trim_end_matches('/');
        TenantClient {
            feed_root: format!("{root}/api/v1.0/{tenant_id}/activity/feed"),
            tenant_id,
            publisher,
            api,
            tuning,
            skew_warned_at: AtomicI64::new(i64::MIN),
        }
    }

    /// `POST subscriptions/start?contentType=…`. An AF429 here is retried with a back-off
    /// of its own: it may be the 15-minute rule, which says nothing about other requests.
    pub(crate) async fn start_subscription(
        &self,
        content_type: &str,
        cancel: &CancellationToken,
    ) -> Result<ApiResponse, ApiError> {
        let url = self.url(
            Endpoint::Start,
            &format!(
                "{}/subscriptions/start?contentType={content_type}",
                self.feed_root
            ),
        )?;
        let request = ApiRequest::post(Endpoint::Start.label(), self.with_publisher(url))
            .max_bytes(MAX_SMALL_ANSWER)
            .throttle(ThrottleScope::Request);
        self.api.send(&request, cancel).await
    }

    /// `GET` of a listing page or a blob, with every retry the shared client owns.
    pub(crate) async fn get(
        &self,
        endpoint: Endpoint,
        url: Url,
        max_bytes: u64,
        cancel: &CancellationToken,
    ) -> Result<ApiResponse, ApiError> {
        let request =
            ApiRequest::get(endpoint.label(), self.with_publisher(url)).max_bytes(max_bytes);
        let answer = self.api.send(&request, cancel).await?;
        self.check_clock(&answer.headers);
        Ok(answer)
    }

    /// Parses a URL the client built or the API handed out (a NextPageUri, a
    /// contentUri); one on another origin than the API root is refused
    /// ([`ApiError::ForeignOrigin`]), since the bearer token would go with it.
    pub(crate) fn url(&self, endpoint: Endpoint, text: &str) -> Result<Url, ApiError> {
        let url = Url::parse(text).map_err(|e| ApiError::Malformed {
            endpoint: endpoint.label(),
            detail: format!("`{text}` is not a URL: {e}"),
        })?;
        self.api.check_origin(endpoint.label(), &url)?;
        Ok(url)
    }

    fn with_publisher(&self, url: Url) -> Url {
        with_publisher(url, &self.publisher)
    }

    /// Windows are computed from our clock; a server far off means AF20055/AF20030 later.
    fn check_clock(&self, headers: &HeaderMap) {
        let Some(server) = headers
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| chrono::DateTime::parse_from_rfc2822(v).ok())
        else {
            return;
        };
        let ours = (self.tuning.clock)();
        let skew = ours - server.with_timezone(&chrono::Utc);
        if skew.abs() <= CLOCK_SKEW_WARNING {
            return;
        }
        let now = ours.timestamp();
        let last = self.skew_warned_at.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 3600
            && self
                .skew_warned_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                tenant_id = %self.tenant_id,
                skew_seconds = skew.num_seconds(),
                "this machine's clock differs from the Management API's by more than 5 minutes; listing windows may be refused (AF20030/AF20055): synchronise the clock (NTP)"
            );
        }
    }
}

/// Adds `PublisherIdentifier` unless the URL carries it already (in any casing): the
/// service leaves it out of NextPageUri, and calls without it share a global quota.
pub(crate) fn with_publisher(mut url: Url, publisher: &str) -> Url {
    let present = url
        .query_pairs()
        .any(|(name, _)| name.eq_ignore_ascii_case("PublisherIdentifier"));
    if !present {
        url.query_pairs_mut()
            .append_pair("PublisherIdentifier", publisher);
    }
    url
}

#[cfg(test)]
impl TenantClient {
    /// The shared budget this tenant counts against.
    fn budget(&self) -> &crate::microsoft::RequestBudget {
        self.api.budget()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use siemflow_core::metrics::{ComponentKind, ComponentLabels};
    use siemflow_core::retry::RetryRule;

    use super::*;
    use crate::microsoft::ErrorClass;
    use crate::microsoft::tests::{TENANT, TestServer, http_and_tokens, json, serve};

    fn tenant(server: &TestServer, requests_per_minute: u32) -> TenantClient {
        let (http, tokens) = http_and_tokens(server, "https://manage.office.com/.default");
        let labels = ComponentLabels {
            id: format!("o365_client_test_{}", server.port),
            kind: ComponentKind::Source,
            type_name: "o365_management".into(),
        };
        TenantClient::new(TenantSettings {
            tenant_id: TENANT,
            api_root: &server.url("/"),
            publisher: TENANT.into(),
            http,
            tokens,
            requests_per_minute,
            tuning: Tuning {
                transient: RetryRule::new(Duration::from_millis(5), Duration::from_millis(20))
                    .at_most(2),
                throttle: RetryRule::new(Duration::from_millis(5), Duration::from_millis(20)),
                ..Tuning::default()
            },
            labels: &labels,
        })
    }

    /// Pauses of the tenant's budget on the server's host, from the metrics.
    fn pauses(server: &TestServer) -> u64 {
        siemflow_core::metrics::prometheus()
            .render()
            .lines()
            .filter(|line| line.starts_with("o365_request_budget_pauses_total"))
            .filter(|line| line.contains(&format!("host=\"127.0.0.1:{}\"", server.port)))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }

    #[tokio::test]
    async fn the_management_api_refusals_reach_the_feed_with_their_code_and_class() {
        let server = serve(|call, _| {
            let path = call.target.split('?').next().unwrap_or_default();
            match path.rsplit('/').next().unwrap_or_default() {
                "content" => json(
                    400,
                    r#"{"error":{"code":"AF20022","message":"No subscription found for the specified content type"}}"#,
                ),
                "start" => json(
                    401,
                    r#"{"error":{"code":"AF10001","message":"The permission set () sent in the request does not include the expected permission."}}"#,
                ),
                "missing" => json(
                    400,
                    r#"{"error":{"code":"AF20050","message":"The specified content does not exist."}}"#,
                ),
                _ => (404, Vec::new(), String::new()),
            }
        })
        .await;
        let client = tenant(&server, 2000);
        let cancel = CancellationToken::new();
        let listing = client
            .get(
                Endpoint::Content,
                client
                    .url(
                        Endpoint::Content,
                        &format!(
                            "{}/subscriptions/content?contentType=Audit.Exchange",
                            client.feed_root
                        ),
                    )
                    .expect("url"),
                1024,
                &cancel,
            )
            .await
            .expect_err("not subscribed");
        assert!(listing.code_is(&["AF20022"]) && listing.class() == ErrorClass::Data);
        let start = client
            .start_subscription("Audit.Exchange", &cancel)
            .await
            .expect_err("no permission");
        assert!(start.is_config());
        assert!(
            start
                .advice(O365_MANAGEMENT.permission)
                .contains("ActivityFeed.Read"),
            "{}",
            start.advice(O365_MANAGEMENT.permission)
        );
        let missing = client
            .get(
                Endpoint::Blob,
                server.url("/api/v1.0/t/activity/feed/audit/missing"),
                1024,
                &cancel,
            )
            .await
            .expect_err("missing");
        assert!(missing.code_is(&["AF20050"]) && !missing.is_config());
        let wrong_root = client
            .get(Endpoint::Blob, server.url("/elsewhere"), 1024, &cancel)
            .await
            .expect_err("wrong root");
        assert!(wrong_root.is_config());
        assert!(
            wrong_root
                .advice(O365_MANAGEMENT.permission)
                .contains("api_url")
        );
        let calls = server.calls();
        assert!(
            calls
                .iter()
                .all(|c| c.target.contains(&format!("PublisherIdentifier={TENANT}"))),
            "{calls:?}"
        );
    }

    #[tokio::test]
    async fn a_throttled_start_holds_back_only_itself_and_a_throttled_listing_the_whole_tenant() {
        let (starts, listings) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (s, l) = (Arc::clone(&starts), Arc::clone(&listings));
        let server = serve(move |call, _| {
            let seen = if call.target.contains("/start") { &s } else { &l };
            // Each operation is throttled (AF429, as 403) twice, then answered.
            if seen.fetch_add(1, Ordering::SeqCst) < 2 {
                return json(
                    403,
                    r#"{"error":{"code":"AF429","message":"Too many requests. Method=x, PublisherId=y"}}"#,
                );
            }
            json(200, "[]")
        })
        .await;
        let client = tenant(&server, 2000);
        let cancel = CancellationToken::new();
        client
            .start_subscription("Audit.Exchange", &cancel)
            .await
            .expect("started on the third try");
        assert_eq!(starts.load(Ordering::SeqCst), 3);
        assert_eq!(
            pauses(&server),
            0,
            "/start's throttling says nothing about the quota"
        );
        let url = client
            .url(
                Endpoint::Content,
                &format!(
                    "{}/subscriptions/content?contentType=Audit.Exchange",
                    client.feed_root
                ),
            )
            .expect("url");
        client
            .get(Endpoint::Content, url, 1024, &cancel)
            .await
            .expect("listed on the third try");
        assert_eq!(listings.load(Ordering::SeqCst), 3);
        assert_eq!(
            pauses(&server),
            2,
            "each throttled listing paused the tenant"
        );
    }

    #[tokio::test]
    async fn requests_and_the_budget_are_measured_per_tenant_and_host() {
        let server = serve(|_, _| json(200, "[]")).await;
        let client = tenant(&server, 1200);
        let cancel = CancellationToken::new();
        for _ in 0..3 {
            let url = client
                .url(
                    Endpoint::Content,
                    &format!(
                        "{}/subscriptions/content?contentType=DLP.All",
                        client.feed_root
                    ),
                )
                .expect("url");
            client
                .get(Endpoint::Content, url, 1024, &cancel)
                .await
                .expect("listed");
        }
        let host = format!("host=\"127.0.0.1:{}\"", server.port);
        let rendered = siemflow_core::metrics::prometheus().render();
        let value = |name: &str, label: &str| -> f64 {
            rendered
                .lines()
                .filter(|line| {
                    line.starts_with(name) && line.contains(&host) && line.contains(label)
                })
                .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        };
        assert_eq!(
            value("o365_requests_total", "endpoint=\"content\",status=\"200\""),
            3.0,
            "{rendered}"
        );
        assert_eq!(value("o365_request_budget_limit", "window=\"1m\""), 1200.0);
        assert_eq!(value("o365_request_budget_used", "window=\"1m\""), 3.0);
        assert_eq!(value("o365_config_error", ""), 0.0);
    }

    #[tokio::test]
    async fn sources_reading_one_tenant_share_its_budget() {
        let server = serve(|_, _| json(200, "[]")).await;
        let first = Arc::new(tenant(&server, 2000));
        let second = tenant(&server, 600);
        assert_eq!(first.budget().key(), second.budget().key());
        assert_eq!(first.budget().windows(), [Window::per_minute(600)]);
        drop(second);
        assert_eq!(first.budget().windows(), [Window::per_minute(2000)]);
    }

    #[test]
    fn publisher_is_added_once_and_the_url_kept_verbatim() {
        let next = "http://h/api/v1/t/activity/feed/subscriptions/content?contentType=Audit.Exchange&starttime=2026-09-01T10:00:00&endTime=2026-09-01T11:00:00&nextPage=20260901105500R000123";
        let url = with_publisher(Url::parse(next).expect("url"), "p-1");
        assert_eq!(url.as_str(), format!("{next}&PublisherIdentifier=p-1"));
        let again = with_publisher(url.clone(), "other");
        assert_eq!(again, url);
        let lower = Url::parse("http://h/x?publisheridentifier=a").expect("url");
        assert_eq!(with_publisher(lower.clone(), "b"), lower);
        let blob = "http://h/api/v1.0/t/activity/feed/audit/20260901101502113001234$20260901101744123004567$audit_exchange$Audit_Exchange$emea0036";
        let url = with_publisher(Url::parse(blob).expect("url"), "p");
        assert_eq!(url.as_str(), format!("{blob}?PublisherIdentifier=p"));
    }
}
