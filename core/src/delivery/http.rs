//! Sending one HTTP request for a sink: the shared client, bounded response bodies,
//! per-status counters and round-trip times.

use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;

use super::failure::Failure;
use super::metrics::DeliveryMetrics;
use crate::Secret;
use crate::http::TlsConfig;
use crate::metrics::ComponentLabels;

/// At most this much of a response body is read; a longer one is cut (and the request
/// judged by its status).
pub const MAX_RESPONSE_BYTES: usize = 16 << 20;

/// An answer from the peer.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Its status.
    pub status: StatusCode,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body, at most [`MAX_RESPONSE_BYTES`].
    pub body: Bytes,
}

/// The HTTP client of one sink, with its metrics.
#[derive(Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    metrics: DeliveryMetrics,
}

impl HttpClient {
    /// A client with the sink's TLS options, request timeout and proxy (which may hold
    /// credentials, hence a secret). Logs a warning when certificate checks are off.
    pub fn new(
        tls: &TlsConfig,
        timeout: Duration,
        proxy: Option<&Secret>,
        labels: &ComponentLabels,
    ) -> anyhow::Result<Self> {
        let client = crate::http::client(tls, timeout, proxy.map(Secret::expose))?;
        Ok(HttpClient {
            client,
            metrics: DeliveryMetrics::new(labels),
        })
    }

    /// The reqwest client, to build requests with.
    pub fn inner(&self) -> &reqwest::Client {
        &self.client
    }

    /// Sends a request and reads its answer; a transport error or timeout is a
    /// [`Failure::Retry`]. The status is not judged here: the sink knows its protocol.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Result<HttpResponse, Failure> {
        let started = Instant::now();
        self.metrics.requests.increment(1);
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                self.metrics.error("transport");
                return Err(Failure::from_transport(error));
            }
        };
        let status = response.status();
        let headers = std::mem::take(response.headers_mut());
        let body = match read_bounded(response).await {
            Ok(body) => body,
            Err(error) => {
                self.metrics.error("transport");
                return Err(Failure::from_transport(error));
            }
        };
        self.metrics.response(status.as_u16(), started.elapsed());
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }
}

async fn read_bounded(mut response: reqwest::Response) -> Result<Bytes, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = MAX_RESPONSE_BYTES - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_RESPONSE_BYTES {
            break;
        }
    }
    Ok(Bytes::from(body))
}
