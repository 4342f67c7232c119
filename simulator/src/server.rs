//! The HTTP server: routes, the latency fault, and an accept loop that varies header casing.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::activity::{blobs, content, subscriptions};
use crate::defender_cloud_apps::routes as cloud_apps;
use crate::defender_endpoint::routes as defender_endpoint;
use crate::graph::routes as graph;
use crate::state::Sim;
use crate::tokens;

/// Request bodies are small form posts or JSON; anything bigger is refused (413).
const MAX_BODY: usize = 64 * 1024;

/// All routes of the login, management and Graph roots.
pub(crate) fn router(sim: Arc<Sim>) -> Router {
    let feed = "/api/{version}/{tenant}/activity/feed";
    Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(tokens::token_v2))
        .route("/{tenant}/oauth2/token", post(tokens::token_v1))
        .route(
            &format!("{feed}/subscriptions/start"),
            post(subscriptions::start),
        )
        .route(
            &format!("{feed}/subscriptions/stop"),
            post(subscriptions::stop),
        )
        .route(
            &format!("{feed}/subscriptions/list"),
            get(subscriptions::list),
        )
        .route(
            &format!("{feed}/subscriptions/content"),
            get(content::content),
        )
        .route(
            &format!("{feed}/subscriptions/notifications"),
            get(content::notifications),
        )
        .route(
            &format!("{feed}/resources/dlpSensitiveTypes"),
            get(subscriptions::dlp_sensitive_types),
        )
        .route(&format!("{feed}/audit/{{content_id}}"), get(blobs::blob))
        // Defender for Cloud Apps: the documented paths end with a slash; both are served.
        .route(
            "/api/v1/activities/",
            get(cloud_apps::activities).post(cloud_apps::activities),
        )
        .route(
            "/api/v1/activities",
            get(cloud_apps::activities).post(cloud_apps::activities),
        )
        .route(
            "/api/v1/alerts/",
            get(cloud_apps::alerts).post(cloud_apps::alerts),
        )
        .route(
            "/api/v1/alerts",
            get(cloud_apps::alerts).post(cloud_apps::alerts),
        )
        // Defender for Endpoint.
        .route("/api/alerts", get(defender_endpoint::alerts))
        // Graph compares paths case-insensitively: one route per version, dispatched inside.
        .route("/v1.0/{*path}", get(graph::v1))
        .route("/beta/{*path}", get(graph::beta))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(sim.clone(), latency))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(sim)
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "").into_response()
}

/// When a request reached the server (simulator clock, ms): request limits count it then,
/// not after the latency fault's sleep, whose wake-up jitters with the machine's load.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Arrived(pub(crate) i64);

/// The configured latency fault, added before every response.
async fn latency(State(sim): State<Arc<Sim>>, mut req: Request, next: Next) -> Response {
    req.extensions_mut().insert(Arrived(sim.now_ms()));
    let d = sim.cfg.faults.latency;
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
    next.run(req).await
}

/// Serves connections until cancelled. Every other connection title-cases its header names
/// (`Nextpageuri`), the rest send them lower-case (`nextpageuri`): clients must not depend
/// on the casing, as the real service's varies.
pub(crate) async fn serve(listener: TcpListener, app: Router, cancel: CancellationToken) {
    let mut connections = 0u64;
    let tracker = tokio_util::task::TaskTracker::new();
    loop {
        let stream = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "simulator: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        connections += 1;
        let title_case = connections.is_multiple_of(2);
        let service = TowerToHyperService::new(app.clone());
        let cancel = cancel.clone();
        tracker.spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.title_case_headers(title_case);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "simulator: connection ended with an error");
                    }
                }
                _ = cancel.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    tracker.close();
    tracker.wait().await;
}

/// A simulator's accept loop once bound: its address and how to stop it.
#[derive(Debug)]
pub(crate) struct Serving {
    address: SocketAddr,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl Serving {
    /// Binds `listen` (port 0 picks a free one); the state built next may need the address.
    pub(crate) async fn bind(
        listen: SocketAddr,
        name: &str,
    ) -> anyhow::Result<(TcpListener, SocketAddr)> {
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("{name} simulator: cannot listen on {listen}"))?;
        let address = listener
            .local_addr()
            .with_context(|| format!("{name} simulator: no local address"))?;
        Ok((listener, address))
    }

    /// Serves `app` on `listener` until [`Serving::stop`].
    pub(crate) fn spawn(listener: TcpListener, address: SocketAddr, app: Router) -> Serving {
        let cancel = CancellationToken::new();
        let task = tokio::spawn(serve(listener, app, cancel.clone()));
        Serving {
            address,
            cancel,
            task,
        }
    }

    /// The bound address.
    pub(crate) fn address(&self) -> SocketAddr {
        self.address
    }

    /// Stops accepting, lets in-flight requests finish, and returns when the server is gone.
    pub(crate) async fn stop(self, name: &str) {
        self.cancel.cancel();
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "{name} simulator task ended abnormally");
        }
    }
}
