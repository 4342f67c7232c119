//! A strict Azure Monitor Logs Ingestion API (the way into Microsoft Sentinel) with its Entra
//! token endpoint: token audience and role, DCR and stream, the JSON-array body, the 1 MiB
//! rule on compressed and uncompressed bodies, column rules, rate limits and faults
//! (reference `siem-sinks.md` §2). Keeps ground truth of every record it accepted.

mod config;
mod records;
mod routes;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use serde::Serialize;
use serde_json::Value;

pub use config::{
    DEFAULT_DCR_ID, DEFAULT_MAX_BODY_BYTES, DEFAULT_STREAM, Dcr, MONITOR_AUDIENCE, SentinelConfig,
    SentinelFaults,
};

use crate::config::{M365Config, TenantConfig};
use crate::server::Serving;
use crate::state::{Sim, lock};
use crate::wire::Dice;

/// Request and record counters of the Logs Ingestion simulator (token requests excluded).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SentinelStats {
    /// Every request to the ingestion path.
    pub requests: u64,
    /// Requests per HTTP status of the answer (204 for accepted).
    pub by_status: BTreeMap<u16, u64>,
    /// Refusals per error code (`ContentLengthLimitExceeded`, `TooManyRequests`, …).
    pub by_error: BTreeMap<String, u64>,
    /// Records accepted.
    pub records_accepted: u64,
    /// Largest request body as sent (compressed size for gzip).
    pub largest_body: u64,
    /// Largest request body after decompression (the size the 1 MiB rule is about).
    pub largest_decoded_body: u64,
    /// Requests answered 413.
    pub too_large: u64,
    /// Requests answered 429 (injected or over a rate limit).
    pub throttled: u64,
    /// Bodies that were JSON but not an array: answered 204 and silently not ingested.
    pub non_array_bodies: u64,
    /// String values cut to `max_field_bytes`.
    pub values_truncated: u64,
}

/// State shared by the handlers.
#[derive(Debug)]
pub(crate) struct Ingestion {
    cfg: SentinelConfig,
    dice: Dice,
    /// The Entra token endpoint's state (the M365 simulator's, with this one app).
    entra: Arc<Sim>,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    received: HashMap<String, Vec<Value>>,
    stats: SentinelStats,
    /// Per DCR (lower-case id): (minute, requests, bytes) of the current window.
    windows: HashMap<String, (u64, u32, u64)>,
}

/// A running Logs Ingestion simulator.
#[derive(Debug)]
pub struct SentinelSimulator {
    ing: Arc<Ingestion>,
    serving: Serving,
}

impl SentinelSimulator {
    /// Validates the configuration, binds `listen` (port 0 picks a free one) and serves.
    pub async fn start(
        config: SentinelConfig,
        listen: SocketAddr,
    ) -> anyhow::Result<SentinelSimulator> {
        config.validate()?;
        let (listener, address) = Serving::bind(listen, "sentinel").await?;
        let entra = M365Config {
            seed: config.seed,
            tenants: vec![TenantConfig {
                tenant_id: config.tenant_id.clone(),
                client_id: config.client_id.clone(),
                client_secret: Some(config.client_secret.clone()),
                certificate_pem: None,
                roles: Vec::new(),
            }],
            token_lifetime: config.token_lifetime,
            ..M365Config::default()
        };
        let entra =
            Arc::new(Sim::new(entra, address).context("sentinel simulator: token endpoint")?);
        let ing = Arc::new(Ingestion {
            dice: Dice::new(config.seed, 0x5e47),
            cfg: config,
            entra,
            inner: Mutex::default(),
        });
        let serving = Serving::spawn(listener, address, routes::router(ing.clone()));
        tracing::info!(%address, "Logs Ingestion (Sentinel) simulator listening");
        Ok(SentinelSimulator { ing, serving })
    }

    /// The bound address.
    pub fn address(&self) -> SocketAddr {
        self.serving.address()
    }

    /// `http://127.0.0.1:PORT`: both the ingestion endpoint (use it as the DCE/DCR endpoint)
    /// and the Entra authority (use it as `login_url`; tokens come from
    /// `{url}/{tenant_id}/oauth2/v2.0/token`).
    pub fn url(&self) -> String {
        format!("http://{}", self.address())
    }

    /// The v2 token URL of the configured tenant.
    pub fn token_url(&self) -> String {
        format!(
            "{}/{}/oauth2/v2.0/token",
            self.url(),
            self.ing.cfg.tenant_id
        )
    }

    /// The configuration in force.
    pub fn config(&self) -> &SentinelConfig {
        &self.ing.cfg
    }

    /// Every record accepted into `stream`, in order (after truncation of long values).
    pub fn received(&self, stream: &str) -> Vec<Value> {
        lock(&self.ing.inner)
            .received
            .get(stream)
            .cloned()
            .unwrap_or_default()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> SentinelStats {
        lock(&self.ing.inner).stats.clone()
    }

    /// Token requests the Entra endpoint answered (issued or refused).
    pub fn token_requests(&self) -> u64 {
        lock(&self.ing.entra.stats)
            .tenant(&self.ing.cfg.tenant_id)
            .requests
    }

    /// Stops accepting, lets in-flight requests finish, and returns when the server is gone.
    pub async fn stop(self) {
        self.serving.stop("sentinel").await;
    }
}
