//! `/health`, `/ready` and `/metrics`, and the health state behind `/ready`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::metrics::ComponentKind;

#[derive(Debug, Clone)]
struct ComponentHealth {
    serial: u64,
    kind: ComponentKind,
    healthy: bool,
    reason: Option<String>,
}

/// The health of every running component.
#[derive(Debug, Clone, Default)]
pub struct HealthRegistry {
    components: Arc<Mutex<BTreeMap<String, ComponentHealth>>>,
    serials: Arc<std::sync::atomic::AtomicU64>,
}

/// One component's handle on its own health.
#[derive(Debug, Clone)]
pub struct Health {
    id: String,
    kind: ComponentKind,
    serial: u64,
    registry: HealthRegistry,
}

impl HealthRegistry {
    /// A health handle for a component about to start; it counts once activated.
    pub fn handle(&self, id: &str, kind: ComponentKind) -> Health {
        let serial = self
            .serials
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Health {
            id: id.to_string(),
            kind,
            serial,
            registry: self.clone(),
        }
    }

    /// Registers a component as healthy and returns its handle.
    pub fn register(&self, id: &str, kind: ComponentKind) -> Health {
        let health = self.handle(id, kind);
        health.activate();
        health
    }

    /// Ready when every registered component is healthy; otherwise the reasons.
    pub fn ready(&self) -> Result<(), Vec<String>> {
        let map = match self.components.lock() {
            Ok(map) => map,
            Err(_) => return Err(vec!["health state unavailable".into()]),
        };
        let problems: Vec<String> = map
            .iter()
            .filter(|(_, h)| !h.healthy)
            .map(|(id, h)| {
                format!(
                    "{} {id}: {}",
                    h.kind,
                    h.reason.as_deref().unwrap_or("unhealthy")
                )
            })
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

impl Health {
    /// Marks the component healthy.
    pub fn healthy(&self) {
        self.set(true, None);
    }

    /// Marks the component unhealthy with a reason shown by `/ready`.
    pub fn unhealthy(&self, reason: impl Into<String>) {
        self.set(false, Some(reason.into()));
    }

    /// Makes this instance the one `/ready` reports for its id, healthy.
    pub fn activate(&self) {
        if let Ok(mut map) = self.registry.components.lock() {
            map.insert(
                self.id.clone(),
                ComponentHealth {
                    serial: self.serial,
                    kind: self.kind,
                    healthy: true,
                    reason: None,
                },
            );
        }
    }

    /// Forgets the component once it stopped (unless a newer instance took its id).
    pub fn deregister(&self) {
        if let Ok(mut map) = self.registry.components.lock()
            && map.get(&self.id).is_some_and(|e| e.serial == self.serial)
        {
            map.remove(&self.id);
        }
    }

    fn set(&self, healthy: bool, reason: Option<String>) {
        if let Ok(mut map) = self.registry.components.lock()
            && let Some(entry) = map.get_mut(&self.id)
            && entry.serial == self.serial
        {
            entry.healthy = healthy;
            entry.reason = reason;
        }
    }
}

async fn health() -> &'static str {
    "ok\n"
}

async fn ready(State(registry): State<HealthRegistry>) -> (StatusCode, String) {
    match registry.ready() {
        Ok(()) => (StatusCode::OK, "ready\n".into()),
        Err(problems) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready\n{}\n", problems.join("\n")),
        ),
    }
}

async fn metrics() -> String {
    crate::metrics::prometheus().render()
}

/// Serves the API until `stop` is cancelled; returns the bound address.
pub async fn serve(
    address: &str,
    registry: HealthRegistry,
    stop: CancellationToken,
) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for the API on {address}: {e}"))?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(registry);
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "API server stopped");
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaced_component_keeps_the_new_health() {
        let registry = HealthRegistry::default();
        let old = registry.register("out", ComponentKind::Sink);
        let new = registry.register("out", ComponentKind::Sink);
        old.deregister();
        old.unhealthy("stale");
        assert!(
            registry.ready().is_ok(),
            "the old instance must not touch the new one"
        );
        new.unhealthy("disk full");
        let problems = registry.ready().expect_err("unhealthy");
        assert!(problems[0].contains("disk full"));
        new.deregister();
        assert!(registry.ready().is_ok());
    }
}
