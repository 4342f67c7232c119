//! The listeners: TCP (or TLS, with ALPN `h2` and `http/1.1`) connections served by
//! hyper's auto builder (HTTP/1.1 or HTTP/2, gRPC needing the latter), each routing
//! both the gRPC service and `/v1/logs`.

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::response::Response;
use http_body_util::BodyExt as _;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::SERVICE_NAME;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::grpc::Export;
use super::{Shared, http};
use crate::syslog::ServerTls;

/// A connection must finish its TLS handshake, and send a request's head, within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The most a request's line and headers may take (HTTP/1.1) or a header list (HTTP/2).
const MAX_HEADER_BYTES: usize = 64 << 10;
/// How long accepting pauses after an error such as running out of descriptors.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// The TLS acceptor of both listeners: the syslog source's rustls configuration, with
/// ALPN so gRPC clients get HTTP/2.
pub(crate) fn tls_acceptor(tls: &ServerTls) -> anyhow::Result<TlsAcceptor> {
    let mut config = crate::syslog::tls::server_config(tls)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The routes both listeners serve.
pub(crate) fn router(shared: &Shared) -> Router {
    let limit = usize::try_from(shared.config.max_request_bytes).unwrap_or(usize::MAX);
    let grpc = Router::new()
        .route_service(
            &format!("/{SERVICE_NAME}/Export"),
            Export::new(shared.clone(), limit),
        )
        .layer(axum::middleware::map_response_with_state(
            shared.clone(),
            otlp_codes_for_tonic_refusals,
        ))
        .layer(axum::middleware::map_request_with_state(
            shared.clone(),
            count_grpc_bytes,
        ));
    Router::new()
        .route("/v1/logs", axum::routing::post(http::export))
        .with_state(shared.clone())
        .merge(grpc)
}

/// Counts a gRPC request's body as it arrives (its length-prefixed messages, compressed
/// or not), as `/v1/logs` counts its body: sizing the decoded request instead walked all
/// of it once more, a cost of its own on every request.
async fn count_grpc_bytes(State(shared): State<Shared>, request: Request) -> Request {
    let received = shared.counters.received_bytes.clone();
    request.map(|body| {
        Body::new(body.map_frame(move |frame| {
            if let Some(data) = frame.data_ref() {
                received.increment(data.len() as u64);
            }
            frame
        }))
    })
}

/// tonic answers for this service before it runs, with codes OTLP reads wrongly or that
/// the service never gets to count: a message over the size limit as sent gets
/// OUT_OF_RANGE, which OTLP lists as retryable (a compliant sender would resend the same
/// request forever), so it becomes RESOURCE_EXHAUSTED without RetryInfo, not retryable
/// (what gRPC's own servers answer, and what tonic answers a message over the limit once
/// decompressed); a body that does not decode (bad protobuf, bad gzip) gets INTERNAL, so
/// it becomes INVALID_ARGUMENT, OTLP's "bad data, do not retry"; a `grpc-encoding` other
/// than gzip gets UNIMPLEMENTED, kept. The service itself answers none of these four
/// codes (its refusals are UNAUTHENTICATED and UNAVAILABLE), so whatever carries them
/// here is tonic's refusal and is counted here.
async fn otlp_codes_for_tonic_refusals(
    State(shared): State<Shared>,
    mut response: Response,
) -> Response {
    let headers = response.headers_mut();
    let (rewritten, status) = match headers.get("grpc-status").map(HeaderValue::as_bytes) {
        Some(b"11") => (Some(HeaderValue::from_static("8")), "too_large"),
        Some(b"13") => (Some(HeaderValue::from_static("3")), "malformed"),
        Some(b"8") => (None, "too_large"),
        Some(b"12") => (None, "unsupported_encoding"),
        _ => return response,
    };
    if let Some(rewritten) = rewritten {
        headers.insert("grpc-status", rewritten);
    }
    shared.counters.request("grpc", status);
    response
}

/// Accepts connections while fewer than `max_connections` are open, until `stop`; then
/// lets the requests in progress finish (their events delivered and answered).
pub(crate) async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    slots: Arc<Semaphore>,
    shared: Shared,
    stop: CancellationToken,
) {
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        // At the cap nothing is accepted: further connections wait in the kernel's
        // listen queue, costing this process neither a descriptor nor memory.
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break, // never closed
            },
            () = stop.cancelled() => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(component = shared.counters.component, error = %e, "OTLP: cannot accept a connection");
                    tokio::select! {
                        () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => {}
                        () = stop.cancelled() => break,
                    }
                    continue;
                }
            },
            () = stop.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let stop = stop.clone();
        match &tls {
            None => {
                connections.spawn(serve_connection(stream, app, stop, slot));
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let failed = shared.counters.tls_handshake_failed.clone();
                connections.spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => serve_connection(stream, app, stop, slot).await,
                        Ok(Err(e)) => {
                            failed.increment(1);
                            tracing::debug!(error = %e, "OTLP: TLS handshake failed");
                        }
                        Err(_) => {
                            failed.increment(1);
                            tracing::debug!("OTLP: TLS handshake timed out");
                        }
                    }
                });
            }
        }
    }
    while connections.join_next().await.is_some() {}
}

/// Serves one connection until it closes, or until `stop` lets its requests in progress
/// finish; `_slot` frees its place when it closes.
async fn serve_connection<S>(
    stream: S,
    app: Router,
    stop: CancellationToken,
    _slot: OwnedSemaphorePermit,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HANDSHAKE_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEADER_BYTES as u32);
    let mut connection =
        pin!(builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app)));
    tokio::select! {
        served = connection.as_mut() => {
            if let Err(e) = served {
                tracing::debug!(error = %e, "OTLP connection closed");
            }
            return;
        }
        () = stop.cancelled() => connection.as_mut().graceful_shutdown(),
    }
    if let Err(e) = connection.await {
        tracing::debug!(error = %e, "OTLP connection closed");
    }
}
