//! A stand-in for the Kafka endpoint of an Azure Event Hubs namespace: a TLS-terminating
//! front before a local Kafka-compatible broker (tansu in the tests) that authenticates
//! clients the way Event Hubs does with a connection string, and a generator of Defender
//! XDR streaming messages ([`xdr`]).
//!
//! The front serves what the broker lacks and Event Hubs requires (kafka-eventhubs.md §5):
//! TLS only (a first byte that is not a TLS handshake closes the connection); SASL PLAIN
//! with the user name `$ConnectionString` and the namespace's connection string as the
//! password, answered by the front itself (error 58 SASL_AUTHENTICATION_FAILED and a
//! closed connection otherwise); nothing but ApiVersions and the SASL exchange before
//! authentication; and requests of at most [`MAX_REQUEST_BYTES`] (Event Hubs closes the
//! connection on a larger one). ApiVersions is answered by the broker, with SaslHandshake
//! and SaslAuthenticate added to its list. After authentication every byte passes
//! through unchanged, so the broker must advertise the front's address (tansu's
//! `--advertised-listener-url`) for clients to come back through it.

mod tls;
mod wire;
pub mod xdr;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

pub use tls::{FrontTls, GeneratedCertificate};
pub use wire::{SASL_AUTHENTICATION_FAILED, add_sasl_apis, api_versions};

/// The connection string the front accepts unless told another: the simulator's own,
/// never a real key.
pub const DEFAULT_CONNECTION_STRING: &str = "Endpoint=sb://siemflow-sim.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=c2llbWZsb3ctc2ltdWxhdG9yLWtleQ==";

/// The largest request Event Hubs takes: its clients must keep `max.request.size` below
/// 1,046,528 bytes, and a larger request closes the connection (Microsoft's Kafka
/// configuration page). Counted as the frame's length prefix.
pub const MAX_REQUEST_BYTES: usize = 1_046_528;

/// The largest request before authentication: Apache Kafka's default
/// `sasl.server.max.receive.size` (512 KiB); ApiVersions and SASL requests are tiny.
pub const MAX_REQUEST_BYTES_BEFORE_AUTH: usize = 524_288;

/// The largest broker answer the front reads whole (ApiVersions); far above any real one.
const MAX_BROKER_ANSWER_BYTES: usize = 16 << 20;

/// What Event Hubs answers a wrong connection string with (the simulator's wording).
const AUTHENTICATION_FAILED: &str = "Authentication failed: the user name must be $ConnectionString and the password the namespace's connection string (SAS key name and key)";

/// The front's settings.
#[derive(Debug, Clone)]
pub struct EventHubsFrontConfig {
    /// The broker behind the front, `host:port`.
    pub broker: String,
    /// The one connection string accepted as the SASL PLAIN password.
    pub connection_string: String,
    /// The largest request after authentication (default [`MAX_REQUEST_BYTES`]).
    pub max_request_bytes: usize,
}

impl EventHubsFrontConfig {
    /// A front before `broker` with the simulator's connection string.
    pub fn new(broker: impl Into<String>) -> Self {
        EventHubsFrontConfig {
            broker: broker.into(),
            connection_string: DEFAULT_CONNECTION_STRING.to_string(),
            max_request_bytes: MAX_REQUEST_BYTES,
        }
    }
}

/// What the front has seen, for tests and the log.
#[derive(Debug, Default)]
pub struct FrontStats {
    /// TCP connections accepted.
    pub connections: AtomicU64,
    /// Connections closed because they did not start with a TLS handshake.
    pub plaintext_refused: AtomicU64,
    /// Connections that authenticated.
    pub authenticated: AtomicU64,
    /// SASL exchanges refused (wrong user, password or mechanism).
    pub authentication_failed: AtomicU64,
    /// Connections closed for a request other than ApiVersions or SASL before authentication.
    pub refused_before_authentication: AtomicU64,
    /// Connections closed for a request above the size limit.
    pub oversized_requests: AtomicU64,
    /// Requests passed to the broker after authentication.
    pub requests_forwarded: AtomicU64,
}

/// A running front; stops when [`EventHubsFront::stop`] is called or it is dropped.
pub struct EventHubsFront {
    addr: SocketAddr,
    stats: Arc<FrontStats>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl EventHubsFront {
    /// Binds `listen` and serves.
    pub async fn start(
        config: EventHubsFrontConfig,
        tls: FrontTls,
        listen: SocketAddr,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        Self::serve(config, tls, listener)
    }

    /// Serves on a listener already bound (its port can then be advertised by the broker
    /// before the front starts).
    pub fn serve(
        config: EventHubsFrontConfig,
        tls: FrontTls,
        listener: TcpListener,
    ) -> anyhow::Result<Self> {
        let addr = listener.local_addr().context("the listener's address")?;
        let stats = Arc::new(FrontStats::default());
        let shutdown = CancellationToken::new();
        let acceptor = TlsAcceptor::from(tls.server_config());
        let config = Arc::new(config);
        let task = tokio::spawn(accept_loop(
            listener,
            acceptor,
            config,
            Arc::clone(&stats),
            shutdown.clone(),
        ));
        Ok(EventHubsFront {
            addr,
            stats,
            shutdown,
            task: Some(task),
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The counters.
    pub fn stats(&self) -> &FrontStats {
        &self.stats
    }

    /// Stops accepting and closes every connection.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for EventHubsFront {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    config: Arc<EventHubsFrontConfig>,
    stats: Arc<FrontStats>,
    shutdown: CancellationToken,
) {
    let connections = tokio_util::task::TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "event hubs front: accept failed");
                continue;
            }
        };
        stats.connections.fetch_add(1, Ordering::Relaxed);
        let acceptor = acceptor.clone();
        let config = Arc::clone(&config);
        let stats = Arc::clone(&stats);
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                result = connection(tcp, acceptor, &config, &stats) => {
                    if let Err(error) = result {
                        tracing::info!(%peer, %error, "event hubs front: connection closed");
                    }
                }
            }
        });
    }
    connections.close();
    connections.wait().await;
}

/// Why the front closed a connection.
#[derive(Debug, thiserror::Error)]
enum Closed {
    #[error("not TLS: the first byte was {0:#04x}, not a TLS handshake")]
    Plaintext(u8),
    #[error("authentication failed: {0}")]
    Authentication(String),
    #[error("{0} (API key {1}) before authentication")]
    BeforeAuthentication(&'static str, i16),
    #[error("a request of {0} bytes, above the limit of {1}")]
    Oversized(usize, usize),
    #[error(transparent)]
    Malformed(#[from] wire::Malformed),
    #[error("{context}: {source}")]
    Io {
        context: &'static str,
        source: std::io::Error,
    },
}

fn io(context: &'static str) -> impl FnOnce(std::io::Error) -> Closed {
    move |source| Closed::Io { context, source }
}

/// Reads one frame (without its length) into `buffer`; false at a clean end of the
/// stream. A frame above `limit` is counted (before the connection closes) and an error.
async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    limit: usize,
    buffer: &mut Vec<u8>,
    stats: &FrontStats,
) -> Result<bool, Closed> {
    let mut length = [0u8; 4];
    match reader.read_exact(&mut length).await {
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(false),
        Err(error) => return Err(io("reading a frame")(error)),
    }
    let length = i32::from_be_bytes(length);
    let length =
        usize::try_from(length).map_err(|_| Closed::Malformed(wire::Malformed("length")))?;
    if length > limit {
        stats.oversized_requests.fetch_add(1, Ordering::Relaxed);
        return Err(Closed::Oversized(length, limit));
    }
    buffer.resize(length, 0);
    reader
        .read_exact(buffer)
        .await
        .map_err(io("reading a frame"))?;
    Ok(true)
}

async fn write_frame<W: AsyncWrite + Unpin>(writer: &mut W, frame: &[u8]) -> Result<(), Closed> {
    writer
        .write_all(&(frame.len() as i32).to_be_bytes())
        .await
        .map_err(io("writing a frame"))?;
    writer.write_all(frame).await.map_err(io("writing a frame"))
}

async fn connection(
    tcp: TcpStream,
    acceptor: TlsAcceptor,
    config: &EventHubsFrontConfig,
    stats: &FrontStats,
) -> Result<(), Closed> {
    let mut first = [0u8; 1];
    if tcp.peek(&mut first).await.map_err(io("first byte"))? == 0 {
        return Ok(());
    }
    // A TLS record of type handshake (22); a plaintext Kafka request starts with its length.
    if first[0] != 0x16 {
        stats.plaintext_refused.fetch_add(1, Ordering::Relaxed);
        return Err(Closed::Plaintext(first[0]));
    }
    let _ = tcp.set_nodelay(true);
    let client = acceptor.accept(tcp).await.map_err(io("TLS handshake"))?;
    let upstream = TcpStream::connect(&config.broker)
        .await
        .map_err(io("connecting to the broker"))?;
    let _ = upstream.set_nodelay(true);
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut broker_read, mut broker_write) = upstream.into_split();
    let mut frame = Vec::new();
    let mut mechanism_accepted = false;
    loop {
        if !read_frame(
            &mut client_read,
            MAX_REQUEST_BYTES_BEFORE_AUTH,
            &mut frame,
            stats,
        )
        .await?
        {
            return Ok(());
        }
        let header = wire::request_header(&frame)?;
        let body = &frame[header.body_offset..];
        match header.api_key {
            wire::API_VERSIONS => {
                write_frame(&mut broker_write, &frame).await?;
                let mut answer = Vec::new();
                if !read_frame(
                    &mut broker_read,
                    MAX_BROKER_ANSWER_BYTES,
                    &mut answer,
                    stats,
                )
                .await?
                {
                    return Err(io("the broker's ApiVersions answer")(
                        std::io::ErrorKind::UnexpectedEof.into(),
                    ));
                }
                let answer = wire::add_sasl_apis(&answer, header.api_version)?;
                write_frame(&mut client_write, &answer).await?;
            }
            wire::SASL_HANDSHAKE => {
                let mechanism = wire::handshake_mechanism(body)?;
                let supported = mechanism == "PLAIN";
                let error = if supported {
                    0
                } else {
                    wire::UNSUPPORTED_SASL_MECHANISM
                };
                client_write
                    .write_all(&wire::handshake_response(
                        header.correlation_id,
                        error,
                        &["PLAIN"],
                    ))
                    .await
                    .map_err(io("answering SaslHandshake"))?;
                if !supported {
                    stats.authentication_failed.fetch_add(1, Ordering::Relaxed);
                    let _ = client_write.shutdown().await;
                    return Err(Closed::Authentication(format!(
                        "mechanism {mechanism}: the simulator serves PLAIN only"
                    )));
                }
                mechanism_accepted = true;
            }
            wire::SASL_AUTHENTICATE if mechanism_accepted => {
                let token = wire::authenticate_bytes(body)?;
                let accepted = wire::plain_credentials(token).is_some_and(|(user, password)| {
                    user == b"$ConnectionString" && password == config.connection_string.as_bytes()
                });
                let (error, message) = if accepted {
                    (0, None)
                } else {
                    (
                        wire::SASL_AUTHENTICATION_FAILED,
                        Some(AUTHENTICATION_FAILED),
                    )
                };
                client_write
                    .write_all(&wire::authenticate_response(
                        header.correlation_id,
                        header.api_version,
                        error,
                        message,
                    ))
                    .await
                    .map_err(io("answering SaslAuthenticate"))?;
                client_write
                    .flush()
                    .await
                    .map_err(io("answering SaslAuthenticate"))?;
                if !accepted {
                    stats.authentication_failed.fetch_add(1, Ordering::Relaxed);
                    let _ = client_write.shutdown().await;
                    return Err(Closed::Authentication(
                        "wrong user name or connection string".into(),
                    ));
                }
                stats.authenticated.fetch_add(1, Ordering::Relaxed);
                break;
            }
            wire::SASL_AUTHENTICATE => {
                stats
                    .refused_before_authentication
                    .fetch_add(1, Ordering::Relaxed);
                return Err(Closed::BeforeAuthentication(
                    "SaslAuthenticate without SaslHandshake",
                    header.api_key,
                ));
            }
            other => {
                stats
                    .refused_before_authentication
                    .fetch_add(1, Ordering::Relaxed);
                return Err(Closed::BeforeAuthentication("a request", other));
            }
        }
        client_write.flush().await.map_err(io("flushing"))?;
    }
    let to_broker = async {
        while read_frame(
            &mut client_read,
            config.max_request_bytes,
            &mut frame,
            stats,
        )
        .await?
        {
            write_frame(&mut broker_write, &frame).await?;
            stats.requests_forwarded.fetch_add(1, Ordering::Relaxed);
        }
        Ok::<(), Closed>(())
    };
    let to_client = async {
        tokio::io::copy(&mut broker_read, &mut client_write)
            .await
            .map_err(io("passing the broker's answers"))?;
        Ok::<(), Closed>(())
    };
    tokio::select! {
        result = to_broker => result,
        result = to_client => result,
    }
}

#[cfg(test)]
mod tests;
