//! Shared server state: the world, issued tokens, subscriptions, limits and counters.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Context;
use aws_lc_rs::digest;

use crate::config::M365Config;
use crate::defender_cloud_apps::CloudAppsState;
use crate::defender_endpoint::EndpointState;
use crate::graph::GraphState;
use crate::stats::{Stats, TenantStats};
use crate::world::World;

/// A certificate registered on an app: its thumbprints and RSA public key.
#[derive(Debug, Clone)]
pub(crate) struct Cert {
    pub(crate) sha1: Vec<u8>,
    pub(crate) sha256: Vec<u8>,
    /// PKCS#1 RSAPublicKey DER, the form the verifier takes.
    pub(crate) rsa_public_key: Vec<u8>,
}

/// One app registration.
#[derive(Debug, Clone)]
pub(crate) struct App {
    pub(crate) tenant: usize,
    pub(crate) client_id: String,
    pub(crate) secret: Option<String>,
    pub(crate) certs: Vec<Cert>,
    pub(crate) roles: Vec<String>,
}

/// What the simulator remembers about an access token it issued.
#[derive(Debug, Clone)]
pub(crate) struct TokenInfo {
    pub(crate) tenant: usize,
    pub(crate) roles: Vec<String>,
    /// The audience is the Management API (rather than e.g. Graph).
    pub(crate) management: bool,
    /// The resource the token was issued for, without a trailing slash
    /// (e.g. `https://monitor.azure.com`).
    pub(crate) audience: String,
    /// The app (client id, lower-case) the token was issued to.
    pub(crate) client_id: String,
    pub(crate) expires_ms: i64,
}

/// A (tenant, content type) subscription.
#[derive(Debug, Clone, Default)]
pub(crate) struct Subscription {
    pub(crate) enabled: bool,
    pub(crate) last_start_ms: Option<i64>,
    /// Periods [stopped, restarted) whose content is lost for good.
    pub(crate) gaps: Vec<(i64, Option<i64>)>,
}

impl Subscription {
    /// Whether content published at `ms` fell into a period the subscription was stopped.
    pub(crate) fn lost(&self, ms: i64) -> bool {
        self.gaps
            .iter()
            .any(|(from, to)| ms >= *from && to.is_none_or(|to| ms < to))
    }
}

/// Fixed one-minute windows of request counts.
#[derive(Debug, Default)]
pub(crate) struct Limiter {
    pub(crate) per_tenant: HashMap<usize, (i64, u32)>,
    pub(crate) shared: (i64, u32),
}

/// Everything the handlers share.
#[derive(Debug)]
pub(crate) struct Sim {
    pub(crate) cfg: Arc<M365Config>,
    pub(crate) world: World,
    pub(crate) apps: Vec<App>,
    /// The simulator's start, on its own clock: content before origin − history does not exist.
    pub(crate) origin_ms: i64,
    /// Added to the wall clock (tests move time forward).
    pub(crate) offset_ms: AtomicI64,
    pub(crate) local_addr: SocketAddr,
    pub(crate) tokens: Mutex<HashMap<String, TokenInfo>>,
    pub(crate) subs: Mutex<HashMap<(usize, usize), Subscription>>,
    pub(crate) limiter: Mutex<Limiter>,
    pub(crate) stats: Mutex<Stats>,
    /// Counts fault decisions so the injected sequence is reproducible from the seed.
    pub(crate) fault_counter: AtomicU64,
    /// Microsoft Graph: limits, fault dice, skiptoken secret.
    pub(crate) graph: GraphState,
    /// Defender for Cloud Apps: request windows, fault dice.
    pub(crate) cloud_apps: CloudAppsState,
    /// Defender for Endpoint: request logs, fault dice.
    pub(crate) defender_endpoint: EndpointState,
}

/// Locks a mutex even if a panicking thread poisoned it: the data stay usable counters.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Sim {
    /// Builds the state, loading every registered certificate.
    pub(crate) fn new(cfg: M365Config, local_addr: SocketAddr) -> anyhow::Result<Self> {
        cfg.validate()?;
        let cfg = Arc::new(cfg);
        let world = World::new(cfg.clone());
        let mut apps = Vec::new();
        for (i, t) in cfg.tenants.iter().enumerate() {
            let tenant = world
                .tenants
                .iter()
                .position(|p| p.id.eq_ignore_ascii_case(&t.tenant_id))
                .context("tenant profile missing")?;
            let certs = match &t.certificate_pem {
                Some(path) => load_certs(path).with_context(|| {
                    format!("simulator.tenants[{i}].certificate_pem {}", path.display())
                })?,
                None => Vec::new(),
            };
            apps.push(App {
                tenant,
                client_id: t.client_id.to_ascii_lowercase(),
                secret: t.client_secret.clone(),
                certs,
                roles: t.roles.clone(),
            });
        }
        let origin_ms = chrono::Utc::now().timestamp_millis();
        Ok(Self {
            graph: GraphState::new(cfg.seed, origin_ms),
            cloud_apps: CloudAppsState::new(cfg.seed),
            defender_endpoint: EndpointState::new(cfg.seed),
            cfg,
            world,
            apps,
            origin_ms,
            offset_ms: AtomicI64::new(0),
            local_addr,
            tokens: Mutex::default(),
            subs: Mutex::default(),
            limiter: Mutex::default(),
            stats: Mutex::default(),
            fault_counter: AtomicU64::new(0),
        })
    }

    /// The simulator's clock: wall clock plus any test offset, in Unix milliseconds.
    pub(crate) fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis() + self.offset_ms.load(Ordering::Relaxed)
    }

    /// Newest contentCreated that is published by now (frozen at start unless live).
    pub(crate) fn published_until_ms(&self) -> i64 {
        if self.cfg.live {
            self.now_ms()
        } else {
            self.origin_ms
        }
    }

    /// Oldest contentCreated that exists at all.
    pub(crate) fn history_start_ms(&self) -> i64 {
        self.origin_ms - self.cfg.history.as_millis() as i64
    }

    /// Applies `f` to the counters of `tenant`.
    pub(crate) fn count(&self, tenant: &str, f: impl FnOnce(&mut TenantStats)) {
        let mut s = lock(&self.stats);
        f(s.tenants.entry(tenant.to_ascii_lowercase()).or_default());
    }
}

fn load_certs(path: &std::path::Path) -> anyhow::Result<Vec<Cert>> {
    let bytes = std::fs::read(path).context("cannot read the file")?;
    let mut certs = Vec::new();
    for pem in x509_parser::pem::Pem::iter_from_buffer(&bytes) {
        let pem = pem.context("not a PEM file")?;
        if pem.label != "CERTIFICATE" {
            continue;
        }
        let x509 = pem.parse_x509().context("not an X.509 certificate")?;
        let spki = x509.public_key();
        if spki.algorithm.algorithm != x509_parser::oid_registry::OID_PKCS1_RSAENCRYPTION {
            anyhow::bail!("the certificate's key is not RSA (Entra ID assertions are RS256/PS256)");
        }
        certs.push(Cert {
            sha1: digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, &pem.contents)
                .as_ref()
                .to_vec(),
            sha256: digest::digest(&digest::SHA256, &pem.contents)
                .as_ref()
                .to_vec(),
            rsa_public_key: spki.subject_public_key.data.to_vec(),
        });
    }
    if certs.is_empty() {
        anyhow::bail!("no CERTIFICATE block found");
    }
    Ok(certs)
}
