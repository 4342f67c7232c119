//! A strict Elasticsearch 8 / OpenSearch 2 `_bulk` endpoint: NDJSON parsing, per-item
//! results (409 on `create` of an existing `_id`, data streams accept only `create`),
//! per-item and request-level faults, Basic and ApiKey authentication, `http.max_content_length`
//! (reference `siem-sinks.md` §3). Keeps ground truth of every stored document and of how
//! often each `_id` was written.

mod bulk;
mod config;
mod reply;
mod routes;
mod store;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::Value;

pub use config::{
    DEFAULT_MAX_CONTENT_LENGTH, ElasticsearchConfig, EsApiKey, EsFaults, EsUser, Flavour,
};
pub use store::IdCounts;

use crate::server::Serving;
use crate::state::lock;
use crate::wire::Dice;

/// Request and item counters of the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ElasticsearchStats {
    /// Every request, whatever the endpoint and answer.
    pub requests: u64,
    /// Requests per HTTP status of the answer.
    pub by_status: BTreeMap<u16, u64>,
    /// `_bulk` requests whose items were executed (answered 200).
    pub bulk_requests: u64,
    /// Items executed.
    pub items: u64,
    /// Items per status (201, 200, 409, 429, 503, 400, 404).
    pub items_by_status: BTreeMap<u16, u64>,
    /// Failed items per error type.
    pub items_by_error: BTreeMap<String, u64>,
    /// Documents created.
    pub documents_created: u64,
    /// Documents overwritten (`index` of an existing `_id`) or updated.
    pub documents_updated: u64,
    /// Documents deleted.
    pub documents_deleted: u64,
    /// Largest request body as sent.
    pub largest_body: u64,
    /// Largest request body after decompression.
    pub largest_decoded_body: u64,
}

/// State shared by the handlers.
#[derive(Debug)]
pub(crate) struct Es {
    cfg: ElasticsearchConfig,
    dice: Dice,
    cluster_uuid: String,
    /// The date in data stream backing index names (`yyyy.MM.dd`, at start).
    today: String,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    store: store::Store,
    stats: ElasticsearchStats,
}

/// A running Elasticsearch / OpenSearch simulator.
#[derive(Debug)]
pub struct ElasticsearchSimulator {
    es: Arc<Es>,
    serving: Serving,
}

impl ElasticsearchSimulator {
    /// Validates the configuration, binds `listen` (port 0 picks a free one) and serves.
    pub async fn start(
        config: ElasticsearchConfig,
        listen: SocketAddr,
    ) -> anyhow::Result<ElasticsearchSimulator> {
        config.validate()?;
        let (listener, address) = Serving::bind(listen, "elasticsearch").await?;
        let mut rng = crate::world::rng::Rng::new(config.seed ^ 0xe5e5);
        let es = Arc::new(Es {
            dice: Dice::new(config.seed, 0xe5),
            cluster_uuid: rng.hex(22),
            today: chrono::Utc::now().format("%Y.%m.%d").to_string(),
            cfg: config,
            inner: Mutex::default(),
        });
        let serving = Serving::spawn(listener, address, routes::router(es.clone()));
        tracing::info!(%address, flavour = ?es.cfg.flavour, "Elasticsearch simulator listening");
        Ok(ElasticsearchSimulator { es, serving })
    }

    /// The bound address.
    pub fn address(&self) -> SocketAddr {
        self.serving.address()
    }

    /// `http://127.0.0.1:PORT`, the cluster's base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.address())
    }

    /// The configuration in force.
    pub fn config(&self) -> &ElasticsearchConfig {
        &self.es.cfg
    }

    /// The stored documents of an index or data stream (by its name, not the backing
    /// index), one per `_id`, sorted by `_id`. Empty when `keep_documents` is off.
    pub fn documents(&self, index: &str) -> Vec<(String, Value)> {
        lock(&self.es.inner).store.documents(index)
    }

    /// For every `_id` ever named in `index`: attempts, writes, 409 conflicts, failures.
    /// Exactly-once delivery shows as `writes == 1` for every id.
    pub fn indexing_attempts(&self, index: &str) -> BTreeMap<String, IdCounts> {
        lock(&self.es.inner).store.counts(index)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> ElasticsearchStats {
        lock(&self.es.inner).stats.clone()
    }

    /// Stops accepting, lets in-flight requests finish, and returns when the server is gone.
    pub async fn stop(self) {
        self.serving.stop("elasticsearch").await;
    }
}
