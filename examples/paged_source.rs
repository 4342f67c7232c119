//! A pull source of your own: pages an HTTP API by a sequence cursor, and moves its
//! checkpoint only over pages every sink delivered.
//!
//! The API lists records in `seq` order: `GET <url>?after=<seq>&limit=<n>` answers
//! `{"records": [{"seq": 7, …}, …], "more": true}`. Each page is one batch with an
//! acknowledgement; core's ordered settlement (`siemflow_core::settlement`) turns
//! acknowledgements that arrive in any order into the highest `seq` safe to save, and
//! the checkpoint is written crash-safely with `siemflow_core::state` (write, fsync,
//! rename) under the component's state folder. A failed page rewinds: the source reads
//! again from before it. So a crash or a refused batch re-delivers, never loses.
//! docs/plugin-authoring.md walks through it.
//!
//! ```sh
//! cargo run --example paged_source -- list paged_api   # its options
//! cargo test --example paged_source                    # against a local API
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use siemflow_core::config::checks;
use siemflow_core::event::attach_ack;
use siemflow_core::http::TlsConfig;
use siemflow_core::retry::RetryRule;
use siemflow_core::settlement::{AfterFailure, OrderedSettlement, Settled, Ticket};
use siemflow_core::{BatchStatus, BoxFuture, ConfigIssue, Event, SourceConfig, SourceContext};
use tokio::task::JoinSet;

/// Reads an HTTP API page by page with a `seq` cursor saved after delivery.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PagedApiConfig {
    /// The list endpoint, called as `<url>?after=<seq>&limit=<page_size>`. Required.
    pub url: String,
    /// Records per page (default 100).
    #[serde(default = "default_page_size")]
    pub page_size: usize,
    /// How long to wait after the last page before asking again (default `"30s"`).
    #[serde(
        default = "default_poll_interval",
        deserialize_with = "siemflow_core::units::positive_duration",
        serialize_with = "siemflow_core::units::serialize_duration"
    )]
    #[schemars(with = "String")]
    pub poll_interval: Duration,
    /// Pages emitted but not yet acknowledged, at most (default 4); past it the source
    /// waits, so a slow sink slows the reading.
    #[serde(default = "default_max_unsettled_pages")]
    pub max_unsettled_pages: usize,
    /// CA, client certificate, verification.
    #[serde(default)]
    pub tls: TlsConfig,
}

fn default_page_size() -> usize {
    100
}

fn default_poll_interval() -> Duration {
    Duration::from_secs(30)
}

fn default_max_unsettled_pages() -> usize {
    4
}

impl SourceConfig for PagedApiConfig {
    fn check(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        if let Err(problem) = checks::endpoint_url(&self.url) {
            issues.push(ConfigIssue::new("url", problem));
        }
        if self.page_size == 0 {
            issues.push(ConfigIssue::new("page_size", "must be at least 1"));
        }
        if self.max_unsettled_pages == 0 {
            issues.push(ConfigIssue::new(
                "max_unsettled_pages",
                "must be at least 1",
            ));
        }
        issues.extend(self.tls.check("tls"));
        issues
    }

    fn build(&self, cx: SourceContext) -> anyhow::Result<BoxFuture<anyhow::Result<()>>> {
        // The shared client: rustls, TLS verified, a User-Agent, a timeout per request.
        let http = siemflow_core::http::client(&self.tls, Duration::from_secs(60), None)?;
        let checkpoint = cx.component.ensure_state_dir()?.join("checkpoint.json");
        Ok(Box::pin(
            PagedApi::new(self.clone(), http, checkpoint)?.run(cx),
        ))
    }
}

/// What the checkpoint file holds.
#[derive(Debug, Serialize, Deserialize)]
struct Checkpoint {
    /// The highest `seq` whose page, and every page before it, was delivered.
    after: u64,
}

/// One page as the API answers it.
#[derive(Debug, Deserialize)]
struct Page {
    records: Vec<serde_json::Value>,
    #[serde(default)]
    more: bool,
}

/// The running source.
struct PagedApi {
    config: PagedApiConfig,
    url: reqwest::Url,
    http: reqwest::Client,
    checkpoint: PathBuf,
    /// One key (the API's one list); the checkpoint value is a `seq`.
    settlement: OrderedSettlement<(), u64>,
    /// Where the next page starts.
    next_after: u64,
    /// Receipts of the pages in flight.
    receipts: JoinSet<(Ticket<()>, BatchStatus)>,
}

impl PagedApi {
    fn new(
        config: PagedApiConfig,
        http: reqwest::Client,
        checkpoint: PathBuf,
    ) -> anyhow::Result<Self> {
        let saved: Option<Checkpoint> = siemflow_core::state::load_json(&checkpoint)
            .with_context(|| format!("cannot read the checkpoint {}", checkpoint.display()))?;
        let after = saved.map(|c| c.after);
        // A failed page voids the later ones: read again from before it.
        let mut settlement = OrderedSettlement::new(AfterFailure::Rewind);
        settlement.track((), after);
        let url = reqwest::Url::parse(&config.url)
            .with_context(|| format!("`{}` is not a URL", config.url))?;
        Ok(PagedApi {
            config,
            url,
            http,
            checkpoint,
            settlement,
            next_after: after.unwrap_or(0),
            receipts: JoinSet::new(),
        })
    }

    async fn run(mut self, cx: SourceContext) -> anyhow::Result<()> {
        // Transient failures (network, 5xx, 429) are retried under the one retry rule.
        let mut retries = RetryRule::new(Duration::from_secs(1), Duration::from_secs(60)).start();
        while !cx.shutdown.is_cancelled() {
            // Backpressure: no more than max_unsettled_pages without an acknowledgement.
            while self.receipts.len() >= self.config.max_unsettled_pages {
                self.settle_next().await?;
            }
            let page = match self.fetch(&cx).await {
                Ok(page) => {
                    retries =
                        RetryRule::new(Duration::from_secs(1), Duration::from_secs(60)).start();
                    page
                }
                Err(error) => {
                    cx.component
                        .metrics
                        .labels
                        .error("request_failed", "receiving");
                    let wait = retries
                        .after_failure(None)
                        .unwrap_or(self.config.poll_interval);
                    tracing::warn!(component = %cx.component.id, "reading the API failed: {error:#}; again in {wait:?}");
                    self.idle(&cx, wait).await?;
                    continue;
                }
            };
            let more = page.more;
            self.emit(&cx, page).await;
            if !more {
                self.idle(&cx, self.config.poll_interval).await?;
            }
        }
        // Stopping: wait for what is in flight, so the saved checkpoint is as far as it can be.
        while !self.receipts.is_empty() {
            self.settle_next().await?;
        }
        Ok(())
    }

    /// One page from `next_after`.
    async fn fetch(&self, cx: &SourceContext) -> anyhow::Result<Page> {
        let mut url = self.url.clone();
        url.query_pairs_mut()
            .append_pair("after", &self.next_after.to_string())
            .append_pair("limit", &self.config.page_size.to_string());
        let response = self.http.get(url).send().await?.error_for_status()?;
        let body = response.bytes().await?;
        cx.component
            .metrics
            .received_bytes
            .increment(body.len() as u64);
        serde_json::from_slice(&body).context("the page is not {\"records\": [...]}")
    }

    /// Emits a page as one acknowledged batch registered with the `seq` it reaches.
    async fn emit(&mut self, cx: &SourceContext, page: Page) {
        let reach = page
            .records
            .iter()
            .filter_map(|r| r.get("seq").and_then(serde_json::Value::as_u64))
            .max();
        let Some(reach) = reach else {
            return; // an empty page
        };
        let mut events: Vec<Event> = page
            .records
            .into_iter()
            .map(|r| Event::new(r.into()))
            .collect();
        cx.component
            .metrics
            .received_events
            .increment(events.len() as u64);
        let ticket = self.settlement.register((), reach);
        let receipt = attach_ack(&mut events);
        // Waits while downstream is full.
        cx.out.send(events).await;
        self.receipts.spawn(async move { (ticket, receipt.await) });
        self.next_after = reach;
    }

    /// Waits `wait` (or until shutdown), settling acknowledgements as they come.
    async fn idle(&mut self, cx: &SourceContext, wait: Duration) -> anyhow::Result<()> {
        let until = tokio::time::Instant::now() + wait;
        loop {
            tokio::select! {
                _ = cx.shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep_until(until) => return Ok(()),
                Some(joined) = self.receipts.join_next() => {
                    let (ticket, status) = joined.context("a receipt task failed")?;
                    self.settle(&ticket, status).await?;
                }
            }
        }
    }

    async fn settle_next(&mut self) -> anyhow::Result<()> {
        if let Some(joined) = self.receipts.join_next().await {
            let (ticket, status) = joined.context("a receipt task failed")?;
            self.settle(&ticket, status).await?;
        }
        Ok(())
    }

    /// Applies one acknowledgement: save the checkpoint when it moved, rewind on failure.
    async fn settle(&mut self, ticket: &Ticket<()>, status: BatchStatus) -> anyhow::Result<()> {
        match self.settlement.settle(ticket, status) {
            Settled::Delivered { advanced: true } => {
                if let Some(after) = self.settlement.checkpoint(&()) {
                    save(&self.checkpoint, after).await?;
                }
            }
            Settled::Failed(failure) => {
                // The later pages are void; read again from before the failed one.
                self.next_after = failure.resume_from.unwrap_or(0);
                tracing::warn!(
                    after = self.next_after,
                    "a page was not delivered; reading again"
                );
            }
            Settled::Delivered { advanced: false } | Settled::Stale => {}
        }
        Ok(())
    }
}

/// Writes the checkpoint crash-safely, off the async workers (it fsyncs).
async fn save(path: &Path, after: u64) -> anyhow::Result<()> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        siemflow_core::state::save_json(&path, &Checkpoint { after })
    })
    .await
    .context("the checkpoint writer failed")?
    .context("cannot save the checkpoint")
}

fn main() -> std::process::ExitCode {
    let mut registry = siemflow::standard_registry();
    registry.source::<PagedApiConfig>(
        "paged_api",
        "Reads an HTTP API page by page by a seq cursor",
    );
    siemflow::main_with(registry)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::extract::State;
    use axum::http::Uri;
    use axum::routing::get;
    use siemflow_core::Batch;
    use siemflow_core::event::resolve_batch;
    use siemflow_core::testing::{RunningSource, assert_standard_metrics, eventually, serve};

    use super::*;

    /// The records a local API serves, `seq` 1, 2, …
    type Records = Arc<Mutex<Vec<serde_json::Value>>>;

    fn add(records: &Records, n: u64) {
        let mut records = records.lock().expect("lock");
        for _ in 0..n {
            let seq = records.len() as u64 + 1;
            records.push(serde_json::json!({ "seq": seq, "message": format!("record {seq}") }));
        }
    }

    /// A local API answering `?after=&limit=` from `records`.
    async fn api(records: Records) -> String {
        let app = Router::new()
            .route(
                "/records",
                get(|State(records): State<Records>, uri: Uri| async move {
                    let query: Vec<(String, u64)> = uri
                        .query()
                        .unwrap_or_default()
                        .split('&')
                        .filter_map(|pair| {
                            let (k, v) = pair.split_once('=')?;
                            Some((k.to_string(), v.parse().ok()?))
                        })
                        .collect();
                    let get = |name: &str| query.iter().find(|(k, _)| k == name).map(|(_, v)| *v);
                    let (after, limit) = (get("after").unwrap_or(0), get("limit").unwrap_or(100));
                    let records = records.lock().expect("lock");
                    let page: Vec<_> = records
                        .iter()
                        .filter(|r| r["seq"].as_u64().unwrap_or(0) > after)
                        .take(limit as usize)
                        .cloned()
                        .collect();
                    let more = records
                        .iter()
                        .filter(|r| r["seq"].as_u64().unwrap_or(0) > after)
                        .count()
                        > page.len();
                    let body = serde_json::json!({ "records": page, "more": more }).to_string();
                    ([("content-type", "application/json")], body)
                }),
            )
            .with_state(records);
        let url = format!("http://{}/records", serve(app).await);
        url
    }

    fn start(id: &str, url: &str, state: &Path) -> RunningSource {
        let config: PagedApiConfig = toml::from_str(&format!(
            "url = \"{url}\"\npage_size = 10\npoll_interval = \"10ms\"\nmax_unsettled_pages = 2"
        ))
        .expect("config parses");
        assert_eq!(config.check(), Vec::new());
        RunningSource::start(id, "paged_api", state, 100, |cx| config.build(cx))
    }

    fn seqs(batch: &Batch) -> Vec<u64> {
        batch
            .iter()
            .map(|e| {
                let seq = e.value.as_object().and_then(|o| o.get("seq"));
                seq.and_then(|v| v.as_integer()).expect("seq") as u64
            })
            .collect()
    }

    fn saved(state: &Path) -> Option<u64> {
        siemflow_core::state::load_json::<Checkpoint>(&state.join("checkpoint.json"))
            .expect("readable")
            .map(|c| c.after)
    }

    #[tokio::test]
    async fn reads_every_page_and_resumes_after_the_delivered_ones() {
        let records: Records = Arc::default();
        add(&records, 25);
        let url = api(Arc::clone(&records)).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut source = start("example_paged_api", &url, dir.path());
        let mut seen = Vec::new();
        while seen.len() < 25 {
            let batch = source.next_batch().await;
            seen.extend(seqs(&batch));
            resolve_batch(batch, BatchStatus::Delivered);
        }
        assert_eq!(seen, (1..=25).collect::<Vec<_>>(), "in order, each once");
        eventually("the checkpoint reaches 25", || {
            saved(dir.path()) == Some(25)
        })
        .await;
        let labels = source.labels.clone();
        source
            .stop(Duration::from_secs(10), |batch| {
                panic!("nothing more to read: {:?}", seqs(batch))
            })
            .await;
        // The compliance check: 25 read and 25 passed on, with the standard labels.
        assert_standard_metrics(&labels, 25);

        // Restarted on the same state, it reads only what came after.
        add(&records, 3);
        let mut source = start("example_paged_api_again", &url, dir.path());
        let batch = source.next_batch().await;
        assert_eq!(seqs(&batch), vec![26, 27, 28]);
        resolve_batch(batch, BatchStatus::Delivered);
        eventually("the checkpoint reaches 28", || {
            saved(dir.path()) == Some(28)
        })
        .await;
        source.stop(Duration::from_secs(10), |_| {}).await;
    }

    #[tokio::test]
    async fn a_page_that_was_not_delivered_is_read_again() {
        let records: Records = Arc::default();
        add(&records, 15);
        let url = api(records).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut source = start("example_paged_api_failed", &url, dir.path());
        let first = source.next_batch().await;
        assert_eq!(seqs(&first), (1..=10).collect::<Vec<_>>());
        // The sink could not deliver the first page: it fails back to the source.
        resolve_batch(first, BatchStatus::Failed);
        let mut again = Vec::new();
        while !again.contains(&1) {
            let batch = source.next_batch().await;
            again.extend(seqs(&batch));
            resolve_batch(batch, BatchStatus::Delivered);
        }
        // Nothing is saved past the failed page until it is delivered.
        let mut all = Vec::new();
        while !all.contains(&15) {
            let batch = source.next_batch().await;
            all.extend(seqs(&batch));
            resolve_batch(batch, BatchStatus::Delivered);
        }
        eventually("the checkpoint reaches 15", || {
            saved(dir.path()) == Some(15)
        })
        .await;
        source.stop(Duration::from_secs(10), |_| {}).await;
    }

    #[test]
    fn the_plugin_authoring_page_quotes_this_code() {
        let page = include_str!("../docs/plugin-authoring.md");
        let quoted = siemflow_core::testing::assert_quoted(
            page,
            "## A pull source in your own crate",
            include_str!("paged_source.rs"),
        );
        assert_eq!(quoted, 2);
    }
}
