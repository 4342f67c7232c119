//! A sink of your own on siemflow's delivery machinery: NDJSON over HTTP POST.
//!
//! The sink says only how an event is encoded and what the peer's answer means
//! ([`Protocol`]); `siemflow_core::delivery::run` does the rest, as for the built-in
//! `splunk_hec`, `elasticsearch` and `sentinel` sinks: batching, concurrency, retries under
//! the one retry rule (`Retry-After` honoured), dead-lettering what can never be
//! delivered, acknowledgements, health and metrics. docs/plugin-authoring.md walks
//! through it.
//!
//! ```sh
//! cargo run --example http_sink -- list ndjson_http          # its options
//! cargo test --example http_sink                             # against a local server
//! ```

use serde::Deserialize;
use siemflow_core::config::checks;
use siemflow_core::delivery::{
    self, BatchConfig, Compression, Concurrency, Failure, HealthcheckConfig, HttpClient, Outcome,
    Protocol, Rejection, Request, RequestConfig, RetryConfig, Settings,
};
use siemflow_core::http::TlsConfig;
use siemflow_core::{BoxFuture, ConfigIssue, Event, Secret, SinkConfig, SinkContext};

/// Posts events as NDJSON (one JSON object per line) to an HTTP endpoint.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NdjsonHttpConfig {
    /// Where to POST, e.g. `https://collector.example/ingest`. Required.
    pub url: String,
    /// Sent as `Authorization: Bearer <token>` when set (a secret: never logged).
    pub token: Option<Secret>,
    /// Events and bytes per request, and how long a batch may wait.
    #[serde(default)]
    pub batch: BatchConfig,
    /// `none` (default) or `gzip`.
    #[serde(default)]
    pub compression: Compression,
    /// Requests in flight: a number, or `adaptive`.
    #[serde(default)]
    pub concurrency: Concurrency,
    /// The timeout of one request.
    #[serde(default)]
    pub request: RequestConfig,
    /// How failed requests are retried, and for how long.
    #[serde(default)]
    pub retry: RetryConfig,
    /// CA, client certificate, verification.
    #[serde(default)]
    pub tls: TlsConfig,
    /// Probe the endpoint with an empty POST at start and then every `interval`.
    #[serde(default)]
    pub healthcheck: HealthcheckConfig,
}

impl SinkConfig for NdjsonHttpConfig {
    fn outputs(&self) -> Vec<String> {
        // Events the endpoint refuses for good go here, with the reason.
        vec![delivery::DEAD_LETTER.to_string()]
    }

    fn check(&self) -> Vec<ConfigIssue> {
        let mut issues = delivery::config::check(&self.batch, &self.request, &self.retry);
        if let Err(problem) = checks::endpoint_url(&self.url) {
            issues.push(ConfigIssue::new("url", problem));
        }
        issues.extend(self.tls.check("tls"));
        issues
    }

    fn build(&self, cx: SinkContext) -> anyhow::Result<BoxFuture<anyhow::Result<()>>> {
        let http = HttpClient::new(
            &self.tls,
            self.request.timeout,
            None,
            &cx.component.metrics.labels,
        )?;
        let protocol = NdjsonHttp {
            http,
            url: self.url.clone(),
            token: self.token.clone(),
            compression: self.compression,
        };
        let settings = Settings::new(
            &self.batch,
            self.concurrency,
            &self.retry,
            &self.healthcheck,
        );
        Ok(Box::pin(delivery::run(protocol, settings, cx)))
    }
}

/// The wire protocol: what `delivery::run` calls.
struct NdjsonHttp {
    http: HttpClient,
    url: String,
    token: Option<Secret>,
    compression: Compression,
}

impl NdjsonHttp {
    fn post(&self, body: Vec<u8>) -> reqwest::RequestBuilder {
        let mut request = self
            .http
            .inner()
            .post(&self.url)
            .header("content-type", "application/x-ndjson")
            .body(self.compression.compress(body));
        if let Some(encoding) = self.compression.content_encoding() {
            request = request.header("content-encoding", encoding);
        }
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.expose());
        }
        request
    }
}

impl Protocol for NdjsonHttp {
    fn encode(&self, event: &Event, out: &mut Vec<u8>) -> Result<String, Rejection> {
        // Compact JSON escapes line breaks inside strings: one event, one line. A sink
        // whose format cannot hold some event returns a Rejection (dead-lettered).
        event.write_json(out);
        // One partition: every event may share a request.
        Ok(String::new())
    }

    async fn send(&self, request: Request<'_>) -> Outcome {
        let response = match self
            .http
            .send(self.post(request.body(b"", b"\n", b"\n")))
            .await
        {
            Ok(response) => response,
            Err(failure) => return Outcome::Failed(failure),
        };
        // The generic classification: 408, 429 and 5xx are retried (Retry-After
        // honoured), 413 splits the request, 401/403/404 are configuration failures (the
        // sink unhealthy, retried slowly), any other 4xx dead-letters its events.
        match Failure::from_status(response.status, &response.headers, &response.body) {
            Some(failure) => Outcome::Failed(failure),
            None => Outcome::Delivered,
        }
    }

    async fn healthcheck(&self) -> Result<(), Failure> {
        let response = self.http.send(self.post(Vec::new())).await?;
        match Failure::from_status(response.status, &response.headers, &response.body) {
            Some(failure) => Err(failure),
            None => Ok(()),
        }
    }
}

fn main() -> std::process::ExitCode {
    let mut registry = siemflow::standard_registry();
    registry.sink::<NdjsonHttpConfig>("ndjson_http", "Posts events as NDJSON over HTTP");
    siemflow::main_with(registry)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;
    use siemflow_core::testing::{RunningSink, assert_standard_metrics, eventually, serve};

    use super::*;

    /// What the endpoint received: each request's lines and Authorization header.
    type Received = Arc<Mutex<Vec<(Vec<String>, Option<String>)>>>;

    /// A local endpoint that answers 503 to its first `busy` requests with data, then 200.
    async fn endpoint(busy: usize) -> (String, Received) {
        let received: Received = Arc::default();
        let state = (Arc::clone(&received), Arc::new(Mutex::new(busy)));
        let app = Router::new()
            .route(
                "/ingest",
                post(
                    |State((received, busy)): State<(Received, Arc<Mutex<usize>>)>,
                     headers: HeaderMap,
                     body: String| async move {
                        let lines: Vec<String> = body.lines().map(str::to_string).collect();
                        let mut busy = busy.lock().expect("lock");
                        if *busy > 0 && !lines.is_empty() {
                            *busy -= 1;
                            return (StatusCode::SERVICE_UNAVAILABLE, "busy");
                        }
                        let auth = headers
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string);
                        received.lock().expect("lock").push((lines, auth));
                        (StatusCode::OK, "ok")
                    },
                ),
            )
            .with_state(state);
        let url = format!("http://{}/ingest", serve(app).await);
        (url, received)
    }

    fn config(url: &str) -> NdjsonHttpConfig {
        let config: NdjsonHttpConfig = toml::from_str(&format!(
            r#"
            url = "{url}"
            token = "s3cret"
            batch = {{ max_events = 10, timeout = "10ms" }}
            retry = {{ initial_backoff = "10ms", max_backoff = "50ms" }}
            "#
        ))
        .expect("config parses");
        assert_eq!(config.check(), Vec::new());
        config
    }

    #[tokio::test]
    async fn delivers_every_event_once_through_a_busy_endpoint() {
        let (url, received) = endpoint(2).await;
        let mut sink = RunningSink::start("example_ndjson_http", "ndjson_http", &config(&url));
        let records = (0..25).map(|n| serde_json::json!({ "n": n, "text": "line\nbreak" }));
        let receipts = sink.send(records).await;
        // Each receipt resolves Delivered only once the endpoint took its events.
        let dead = sink.settle(receipts).await;
        assert!(dead.is_empty(), "{dead:?}");
        let requests = received.lock().expect("lock").clone();
        let mut seen: Vec<i64> = requests
            .iter()
            .flat_map(|(lines, _)| lines.iter())
            .filter(|line| !line.is_empty())
            .map(|line| {
                let value: serde_json::Value = serde_json::from_str(line).expect("JSON line");
                value["n"].as_i64().expect("n")
            })
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..25).collect::<Vec<_>>(), "every event once");
        assert!(
            requests
                .iter()
                .all(|(_, auth)| auth.as_deref() == Some("Bearer s3cret"))
        );
        let labels = sink.labels.clone();
        assert!(sink.finish().await.is_empty());
        // The compliance check: 25 received and 25 delivered, with the standard labels.
        assert_standard_metrics(&labels, 25);
    }

    #[tokio::test]
    async fn a_refused_token_makes_the_sink_unhealthy() {
        let app = Router::new().route("/ingest", post(|| async { StatusCode::UNAUTHORIZED }));
        let url = format!("http://{}/ingest", serve(app).await);
        let sink = RunningSink::start("example_ndjson_http_401", "ndjson_http", &config(&url));
        eventually("the sink reports the refused token", || {
            sink.health
                .ready()
                .err()
                .is_some_and(|problems| problems.iter().any(|p| p.contains("401")))
        })
        .await;
        sink.abort.cancel();
        sink.task
            .await
            .expect("task")
            .expect("sink ends when aborted");
    }

    #[test]
    fn the_plugin_authoring_page_quotes_this_code() {
        let page = include_str!("../docs/plugin-authoring.md");
        let quoted = siemflow_core::testing::assert_quoted(
            page,
            "## A sink in your own crate: `delivery::Protocol`",
            include_str!("http_sink.rs"),
        );
        assert_eq!(quoted, 1);
    }
}
