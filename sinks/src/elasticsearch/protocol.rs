//! The `_bulk` wire protocol over the shared delivery machinery.

use std::sync::atomic::{AtomicUsize, Ordering};

use metrics::Counter;
use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HeaderValue};
use siemflow_core::delivery::{
    Compression, EventOutcome, Failure, HttpClient, HttpResponse, Outcome, Protocol, Rejection,
    Request,
};
use siemflow_core::metrics::ComponentLabels;
use siemflow_core::{Event, Secret};

use super::config::{Auth, BulkAction, ElasticsearchSinkConfig};
use super::encode::Encoder;
use super::items::{self, ItemCounters};
use super::root::{self, Product};

/// Only what the sink reads of a bulk answer (item order is kept): a smaller response
/// to download and parse.
const FILTER_PATH: &str = "errors,items.*.status,items.*.error";

/// One sink's connection to a cluster.
pub(super) struct Bulk {
    http: HttpClient,
    endpoints: Vec<Endpoint>,
    next: AtomicUsize,
    auth: Option<Credentials>,
    encoder: Encoder,
    action: BulkAction,
    compression: Compression,
    counters: ItemCounters,
    id_missing: Counter,
    component: String,
}

/// One node: its base URL (for logs) and its `_bulk` URL.
struct Endpoint {
    base: String,
    bulk: reqwest::Url,
}

/// The `Authorization` of every request.
enum Credentials {
    Basic { user: String, password: Secret },
    ApiKey(HeaderValue),
}

impl Bulk {
    pub fn new(config: &ElasticsearchSinkConfig, labels: &ComponentLabels) -> anyhow::Result<Self> {
        let http = HttpClient::new(
            &config.tls,
            config.request.timeout,
            config.proxy.as_ref(),
            labels,
        )?;
        let mut endpoints = Vec::with_capacity(config.endpoints.len());
        for text in &config.endpoints {
            let base = text.trim().trim_end_matches('/').to_string();
            let mut bulk = reqwest::Url::parse(&format!("{base}/_bulk"))
                .map_err(|e| anyhow::anyhow!("endpoint `{base}` is not a URL: {e}"))?;
            {
                let mut query = bulk.query_pairs_mut();
                query.append_pair("filter_path", FILTER_PATH);
                if let Some(pipeline) = &config.pipeline {
                    query.append_pair("pipeline", pipeline.trim());
                }
            }
            endpoints.push(Endpoint { base, bulk });
        }
        anyhow::ensure!(!endpoints.is_empty(), "no endpoint given");
        let auth = match &config.auth {
            None => None,
            Some(Auth::Basic { user, password }) => Some(Credentials::Basic {
                user: user.clone(),
                password: password.clone(),
            }),
            Some(Auth::ApiKey { api_key }) => {
                let mut value =
                    HeaderValue::from_str(&format!("ApiKey {}", api_key.expose().trim()))
                        // The value is not echoed: it is a secret.
                        .map_err(|_| {
                            anyhow::anyhow!("auth.api_key holds characters a header cannot carry")
                        })?;
                value.set_sensitive(true);
                Some(Credentials::ApiKey(value))
            }
        };
        Ok(Bulk {
            http,
            endpoints,
            next: AtomicUsize::new(0),
            auth,
            encoder: Encoder::new(config)?,
            action: config.bulk_action(),
            compression: config.compression,
            counters: ItemCounters::new(labels),
            id_missing: labels.counter(
                "component_errors_total",
                &[("error_type", "id_field_missing"), ("stage", "processing")],
            ),
            component: labels.id.clone(),
        })
    }

    /// The next endpoint in turn: requests rotate, so a retry goes to another node.
    fn endpoint(&self) -> &Endpoint {
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        &self.endpoints[turn % self.endpoints.len()]
    }

    fn authorize(&self, builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.auth {
            None => builder,
            Some(Credentials::Basic { user, password }) => {
                builder.basic_auth(user, Some(password.expose()))
            }
            Some(Credentials::ApiKey(value)) => builder.header(AUTHORIZATION, value.clone()),
        }
    }

    /// Reads the cluster's answer to a request of `events` events.
    fn judge(&self, events: usize, response: HttpResponse) -> Outcome {
        let status = response.status;
        if !status.is_success() {
            return Outcome::Failed(request_failure(&response));
        }
        match items::read(&response.body, events, self.action) {
            Ok(read) => {
                self.counters.count(&read);
                if read.outcomes.iter().all(|o| *o == EventOutcome::Delivered) {
                    Outcome::Delivered
                } else {
                    Outcome::PerEvent(read.outcomes)
                }
            }
            Err(problem) => Outcome::Failed(Failure::retry(format!(
                "HTTP {status} with an answer that cannot be read item by item ({problem}); sending again"
            ))),
        }
    }
}

/// A request refused as a whole. 429/5xx retry (with `Retry-After`), 413 splits, 401/403
/// and 404 are configuration. A request-level 400 is treated as configuration too, not
/// as bad data: document problems are per-item answers, so a whole-request 400 means the
/// request itself is wrong (a parameter, a path, a proxy) and would hit every batch —
/// dead-lettering would empty the pipeline into the dead letter.
fn request_failure(response: &HttpResponse) -> Failure {
    let status = response.status;
    let summary = items::error_summary(&response.body);
    let reason = format!("HTTP {status}: {summary}");
    match status.as_u16() {
        401 => Failure::config(format!(
            "{reason}: the cluster did not accept the credentials; check `auth`"
        )),
        403 => Failure::config(format!(
            "{reason}: the credentials lack a privilege (`create_doc`/`index` on the target, `auto_configure` to create it)"
        )),
        404 => Failure::config(format!(
            "{reason}: no `_bulk` here; `endpoints` must be the cluster's base URL"
        )),
        400..=499 if !matches!(status.as_u16(), 408 | 413 | 429) => Failure::config(format!(
            "{reason}: the cluster refused the request as a whole; nothing of it was indexed"
        )),
        _ => match Failure::from_status(status, &response.headers, &response.body) {
            Some(Failure::Retry { retry_after, .. }) => Failure::Retry {
                reason,
                retry_after,
            },
            Some(Failure::TooLarge { response, .. }) => Failure::TooLarge { reason, response },
            Some(other) => other,
            None => Failure::retry(reason),
        },
    }
}

impl Protocol for Bulk {
    fn encode(&self, event: &Event, out: &mut Vec<u8>) -> Result<String, Rejection> {
        let encoded = self.encoder.encode(event, out, chrono::Utc::now())?;
        if encoded.id_missing {
            self.id_missing.increment(1);
            tracing::debug!(component = %self.component, "event without its id_fields: sent without _id");
        }
        // One partition: a bulk request may mix indices.
        Ok(String::new())
    }

    async fn send(&self, request: Request<'_>) -> Outcome {
        let body = request.body(b"", b"\n", b"\n");
        let endpoint = self.endpoint();
        let mut builder = self
            .http
            .inner()
            .post(endpoint.bulk.clone())
            .header(CONTENT_TYPE, "application/x-ndjson");
        if let Some(encoding) = self.compression.content_encoding() {
            builder = builder.header(CONTENT_ENCODING, encoding);
        }
        let builder = self
            .authorize(builder)
            .body(self.compression.compress(body));
        match self.http.send(builder).await {
            Ok(response) => self.judge(request.len(), response),
            Err(failure) => Outcome::Failed(failure),
        }
    }

    /// `GET /` of every endpoint: logs the product and version of each; passes when one
    /// answers, fails with the first failure otherwise (a configuration failure when
    /// credentials are refused or an API key meets OpenSearch).
    async fn healthcheck(&self) -> Result<(), Failure> {
        let mut first_failure = None;
        let mut passed = 0;
        for endpoint in &self.endpoints {
            let request = self.authorize(self.http.inner().get(format!("{}/", endpoint.base)));
            let outcome = match self.http.send(request).await {
                Ok(response) => self.probe(endpoint, &response),
                Err(failure) => Err(failure),
            };
            match outcome {
                Ok(()) => passed += 1,
                Err(failure) => {
                    tracing::warn!(component = %self.component, endpoint = %endpoint.base, reason = %failure, "endpoint healthcheck failed");
                    first_failure.get_or_insert(failure);
                }
            }
        }
        match first_failure {
            Some(failure) if passed == 0 => Err(failure),
            _ => Ok(()),
        }
    }
}

impl Bulk {
    fn probe(&self, endpoint: &Endpoint, response: &HttpResponse) -> Result<(), Failure> {
        if !response.status.is_success() {
            return Err(request_failure(response));
        }
        let product = root::Product::read(&response.headers, &response.body);
        tracing::info!(
            component = %self.component,
            endpoint = %endpoint.base,
            product = product.name(),
            version = %product.version(),
            "connected"
        );
        if let (Product::OpenSearch { .. }, Some(Credentials::ApiKey(_))) = (&product, &self.auth) {
            return Err(Failure::config(format!(
                "{} is OpenSearch, which has no ApiKey authentication; use auth = {{ strategy = \"basic\", ... }}",
                endpoint.base
            )));
        }
        if let Product::Unknown = product {
            // A proxy may answer `/` itself; `_bulk` is what matters.
            tracing::warn!(component = %self.component, endpoint = %endpoint.base, "`GET /` answered, but not as Elasticsearch or OpenSearch would");
        }
        Ok(())
    }
}
