//! OTLP/gRPC: `LogsService/Export` over a tonic channel (HTTP/2, optional gzip), with
//! TLS from the sinks' one rustls client configuration.
//!
//! gzip is the sink's own, not tonic's: tonic compresses at zlib level 6 and offers no
//! other (a FIXME in its `codec/compression.rs`), which made compression a tenth of a
//! siemflow → siemflow round trip's CPU for half the size of level 1's output. The
//! request is compressed by the delivery engine's one body compressor (level 1, as over
//! OTLP/HTTP) and sent through [`Precompressed`], which says so on the wire as tonic
//! would have.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut as _, Bytes};
use http_body_util::BodyExt as _;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use prost::Message as _;
use rustls_pki_types::ServerName;
use siemflow_core::Secret;
use siemflow_core::delivery::{Compression, DeliveryMetrics, Failure};
use siemflow_core::http::TlsConfig;
use siemflow_core::metrics::ComponentLabels;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::header::HeaderValue;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::codegen::http::{self, Uri};
use tonic::codegen::{BoxFuture, Service};
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue, MetadataMap};
use tonic::transport::{Channel, Endpoint};

use super::status::code_name;

/// The method every OTLP logs receiver serves.
const EXPORT: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

/// Connecting should never take as long as a whole slow answer may.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest answer read: an `ExportLogsServiceResponse` is a count and a message.
const MAX_RESPONSE_BYTES: usize = 4 << 20;

/// One sink's gRPC channel to its receiver.
pub(super) struct GrpcClient {
    channel: Precompressed,
    metadata: MetadataMap,
    compression: Compression,
    timeout: Duration,
    metrics: DeliveryMetrics,
    labels: ComponentLabels,
}

/// What an Export call came to.
pub(super) enum Answer {
    /// Status OK with this response (`None`: it could not be decoded).
    Ok(Option<ExportLogsServiceResponse>),
    /// Anything else.
    Failed(Failure),
}

impl GrpcClient {
    /// A lazily connecting channel to `endpoint` (`http://` or `https://`); it reconnects
    /// by itself after a lost connection.
    pub fn new(
        endpoint: &str,
        tls: &TlsConfig,
        headers: &[(String, Secret)],
        compression: Compression,
        timeout: Duration,
        labels: &ComponentLabels,
    ) -> anyhow::Result<Self> {
        let uri: Uri = endpoint
            .trim()
            .parse()
            .map_err(|e| anyhow::anyhow!("endpoint `{endpoint}` is not a URL: {e}"))?;
        let host = uri
            .host()
            .ok_or_else(|| anyhow::anyhow!("endpoint `{endpoint}` names no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let https = uri.scheme_str() == Some("https");
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tls = if https {
            let mut config = crate::tls::client_config(tls)?;
            // gRPC is HTTP/2 only: ask for it, or a server may pick HTTP/1.1.
            config.alpn_protocols = vec![b"h2".to_vec()];
            let server_name = ServerName::try_from(host.clone())
                .map_err(|e| anyhow::anyhow!("endpoint host `{host}`: {e}"))?;
            Some((TlsConnector::from(Arc::new(config)), server_name))
        } else {
            None
        };
        let connector = Connector(Arc::new(Target {
            address: format!("{host}:{port}"),
            tls,
        }));
        let channel = Endpoint::from_shared(uri.to_string())
            .map_err(|e| anyhow::anyhow!("endpoint `{endpoint}`: {e}"))?
            .user_agent(siemflow_core::http::USER_AGENT)
            .map_err(|e| anyhow::anyhow!("user agent: {e}"))?
            .timeout(timeout)
            .connect_timeout(timeout.min(MAX_CONNECT_TIMEOUT))
            .http2_keep_alive_interval(Duration::from_secs(30))
            .connect_with_connector_lazy(connector);
        let mut metadata = MetadataMap::new();
        for (name, value) in headers {
            let key = AsciiMetadataKey::from_bytes(name.to_ascii_lowercase().as_bytes())
                .map_err(|_| anyhow::anyhow!("headers: `{name}` is not a gRPC metadata key"))?;
            // The value is a secret: keep it out of the error.
            let mut value = AsciiMetadataValue::try_from(value.expose()).map_err(|_| {
                anyhow::anyhow!("headers.{name}: the value is not visible ASCII text")
            })?;
            value.set_sensitive(true);
            metadata.insert(key, value);
        }
        Ok(GrpcClient {
            channel: Precompressed {
                channel,
                encoding: compression.content_encoding().map(HeaderValue::from_static),
            },
            metadata,
            compression,
            timeout,
            metrics: DeliveryMetrics::new(labels),
            labels: labels.clone(),
        })
    }

    /// Sends one encoded `ExportLogsServiceRequest`.
    pub async fn export(&self, body: Vec<u8>) -> Answer {
        let body = Bytes::from(self.compression.compress(body));
        let mut grpc = tonic::client::Grpc::new(self.channel.clone())
            .max_decoding_message_size(MAX_RESPONSE_BYTES)
            .accept_compressed(CompressionEncoding::Gzip);
        let started = Instant::now();
        self.metrics.requests.increment(1);
        if let Err(error) = grpc.ready().await {
            self.count("transport");
            return Answer::Failed(Failure::retry(format!("cannot connect: {}", chain(&error))));
        }
        let mut request = tonic::Request::new(body);
        *request.metadata_mut() = self.metadata.clone();
        request.set_timeout(self.timeout);
        let answer = grpc
            .unary(request, PathAndQuery::from_static(EXPORT), ExportCodec)
            .await;
        self.metrics.rtt.record(started.elapsed().as_secs_f64());
        match answer {
            Ok(response) => {
                self.count("OK");
                Answer::Ok(response.into_inner())
            }
            Err(status) => {
                self.count(code_name(status.code()));
                Answer::Failed(super::status::grpc_failure(&status))
            }
        }
    }

    /// Counts one answer by gRPC code (`grpc_client_responses_total{code}`), or
    /// `transport` when none came.
    fn count(&self, code: &str) {
        self.labels
            .counter("grpc_client_responses_total", &[("code", code)])
            .increment(1);
    }
}

/// An error and its causes, for logs.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// Where the channel connects, and how.
struct Target {
    address: String,
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

/// The channel's connector: TCP, then TLS (ALPN h2) for `https`.
#[derive(Clone)]
struct Connector(Arc<Target>);

impl Service<Uri> for Connector {
    type Response = TokioIo<Box<dyn Io>>;
    type Error = std::io::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let target = Arc::clone(&self.0);
        Box::pin(async move {
            let tcp = TcpStream::connect(&target.address).await?;
            tcp.set_nodelay(true)?;
            let io: Box<dyn Io> = match &target.tls {
                None => Box::new(tcp),
                Some((connector, name)) => Box::new(connector.connect(name.clone(), tcp).await?),
            };
            Ok(TokioIo::new(io))
        })
    }
}

/// A byte stream tokio can drive, plain or TLS.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> Io for T {}

/// The channel, sending messages compressed before tonic framed them: it names the
/// encoding in `grpc-encoding` and sets the message's compressed flag, the body's first
/// byte (gRPC's length-prefixed message: flag, length, message; an Export call sends
/// one), which tonic wrote as 0 since it compressed nothing itself.
#[derive(Clone)]
struct Precompressed {
    channel: Channel,
    /// `gzip`, or `None` when messages go uncompressed.
    encoding: Option<HeaderValue>,
}

impl Service<http::Request<tonic::body::Body>> for Precompressed {
    type Response = <Channel as Service<http::Request<tonic::body::Body>>>::Response;
    type Error = <Channel as Service<http::Request<tonic::body::Body>>>::Error;
    type Future = <Channel as Service<http::Request<tonic::body::Body>>>::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.channel.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let Some(encoding) = &self.encoding else {
            return self.channel.call(request);
        };
        let (mut parts, body) = request.into_parts();
        parts.headers.insert("grpc-encoding", encoding.clone());
        let mut first = true;
        let body = body.map_frame(move |frame| {
            frame.map_data(|data| {
                if data.is_empty() || !std::mem::take(&mut first) {
                    return data;
                }
                let mut flagged = bytes::BytesMut::from(data);
                if let Some(flag) = flagged.first_mut() {
                    *flag = 1;
                }
                flagged.freeze()
            })
        });
        self.channel.call(http::Request::from_parts(
            parts,
            tonic::body::Body::new(body),
        ))
    }
}

/// Sends an `ExportLogsServiceRequest` already encoded (the records were encoded one by
/// one as events arrived) and decodes the `ExportLogsServiceResponse`.
#[derive(Clone, Copy)]
struct ExportCodec;

impl Codec for ExportCodec {
    type Encode = Bytes;
    type Decode = Option<ExportLogsServiceResponse>;
    type Encoder = ExportCodec;
    type Decoder = ExportCodec;

    fn encoder(&mut self) -> Self::Encoder {
        ExportCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        ExportCodec
    }
}

impl Encoder for ExportCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for ExportCodec {
    type Item = Option<ExportLogsServiceResponse>;
    type Error = tonic::Status;

    /// An undecodable answer with status OK is still a success: the status is what OTLP
    /// acknowledges with (`None` lets the caller say so in its log).
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, tonic::Status> {
        Ok(Some(ExportLogsServiceResponse::decode(src).ok()))
    }
}
