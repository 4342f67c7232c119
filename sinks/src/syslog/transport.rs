//! Connections to the receiver: TCP, TLS (rustls) and UDP.

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use anyhow::{Context as _, bail};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use siemflow_core::http::TlsConfig;
use siemflow_core::tls;
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpStream, UdpSocket};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Where and how to connect, resolved once at start.
#[derive(Clone)]
pub(crate) enum Target {
    /// Plain TCP to `host:port`.
    Tcp { address: String },
    /// TLS over TCP, checking the certificate against `server_name`.
    Tls {
        address: String,
        connector: TlsConnector,
        server_name: ServerName<'static>,
    },
    /// UDP datagrams to `host:port`.
    Udp { address: String },
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Tcp { address } => write!(f, "tcp://{address}"),
            Target::Tls {
                address,
                server_name,
                ..
            } => write!(f, "tls://{address} (server name {server_name:?})"),
            Target::Udp { address } => write!(f, "udp://{address}"),
        }
    }
}

/// An open connection.
pub(crate) enum Connection {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsStream<TcpStream>>),
    /// A connected UDP socket.
    Udp(UdpSocket),
}

impl Target {
    /// Opens a connection (for UDP: binds and connects a socket), within `timeout`.
    pub async fn connect(&self, timeout: Duration) -> io::Result<Connection> {
        let opening = async {
            match self {
                Target::Tcp { address } => {
                    let stream = TcpStream::connect(address.as_str()).await?;
                    stream.set_nodelay(true)?;
                    Ok(Connection::Tcp(stream))
                }
                Target::Tls {
                    address,
                    connector,
                    server_name,
                } => {
                    let stream = TcpStream::connect(address.as_str()).await?;
                    stream.set_nodelay(true)?;
                    let tls = connector.connect(server_name.clone(), stream).await?;
                    Ok(Connection::Tls(Box::new(tls)))
                }
                Target::Udp { address } => {
                    let peer = resolve(address).await?;
                    let local: SocketAddr = if peer.is_ipv4() {
                        ([0, 0, 0, 0], 0).into()
                    } else {
                        ([0u16; 8], 0).into()
                    };
                    let socket = UdpSocket::bind(local).await?;
                    socket.connect(peer).await?;
                    Ok(Connection::Udp(socket))
                }
            }
        };
        tokio::time::timeout(timeout, opening)
            .await
            .unwrap_or_else(|_| {
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("connecting took longer than {timeout:?}"),
                ))
            })
    }
}

async fn resolve(address: &str) -> io::Result<SocketAddr> {
    tokio::net::lookup_host(address)
        .await?
        .next()
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{address} resolves to no address"),
            )
        })
}

/// What a look at the stream before writing found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Liveness {
    /// Nothing to read: the peer is (as far as we can tell) still there.
    Open,
    /// The peer closed its side or reset: what we write now would be lost.
    Closed(String),
}

impl Connection {
    /// Checks, without waiting, whether the peer closed the connection, the way Vector's
    /// socket sinks and rsyslog's omfwd do: a syslog receiver never sends anything, so a
    /// readable socket means end-of-file (or a reset). The socket itself is asked
    /// (`MSG_PEEK`), not the runtime's cached readiness, which can lag behind a FIN that
    /// already arrived. Bytes the receiver did send are read and discarded.
    pub async fn liveness(&mut self) -> Liveness {
        let tcp = match self {
            Connection::Tcp(stream) => &*stream,
            Connection::Tls(stream) => stream.get_ref().0,
            Connection::Udp(_) => return Liveness::Open,
        };
        let mut peeked = [std::mem::MaybeUninit::<u8>::uninit(); 1];
        match socket2::SockRef::from(tcp).peek(&mut peeked) {
            Ok(0) => return Liveness::Closed("the receiver closed the connection".into()),
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Liveness::Open,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => return Liveness::Open,
            Err(error) => return Liveness::Closed(error.to_string()),
        }
        // Something is waiting: read it through the stream (TLS turns a close_notify
        // into end-of-file), discarding data, until nothing more is ready.
        let mut scratch = [0u8; 512];
        let reader: &mut (dyn AsyncRead + Send + Unpin) = match self {
            Connection::Tcp(stream) => stream,
            Connection::Tls(stream) => stream.as_mut(),
            Connection::Udp(_) => return Liveness::Open,
        };
        let mut reader = Pin::new(reader);
        poll_fn(|cx| {
            loop {
                let mut buf = ReadBuf::new(&mut scratch);
                return match reader.as_mut().poll_read(cx, &mut buf) {
                    Poll::Pending => Poll::Ready(Liveness::Open),
                    Poll::Ready(Ok(())) if buf.filled().is_empty() => Poll::Ready(
                        Liveness::Closed("the receiver closed the connection".into()),
                    ),
                    Poll::Ready(Ok(())) => continue,
                    Poll::Ready(Err(error)) => Poll::Ready(Liveness::Closed(error.to_string())),
                };
            }
        })
        .await
    }

    /// Writes a whole buffer of framed messages and flushes it (TCP, TLS).
    pub async fn write_stream(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Connection::Tcp(stream) => {
                stream.write_all(bytes).await?;
                stream.flush().await
            }
            Connection::Tls(stream) => {
                stream.write_all(bytes).await?;
                stream.flush().await
            }
            Connection::Udp(_) => Err(io::Error::other("a datagram socket has no stream")),
        }
    }

    /// Sends one datagram (UDP).
    pub async fn send_datagram(&mut self, datagram: &[u8]) -> io::Result<()> {
        match self {
            Connection::Udp(socket) => {
                let sent = socket.send(datagram).await?;
                if sent != datagram.len() {
                    return Err(io::Error::other(format!(
                        "only {sent} of {} bytes of a datagram were sent",
                        datagram.len()
                    )));
                }
                Ok(())
            }
            _ => Err(io::Error::other("a stream has no datagrams")),
        }
    }

    /// Flushes and closes the connection (TLS sends its close_notify).
    pub async fn close(self) {
        match self {
            Connection::Tcp(mut stream) => {
                let _ = stream.shutdown().await;
            }
            Connection::Tls(mut stream) => {
                let _ = stream.shutdown().await;
            }
            Connection::Udp(_) => {}
        }
    }
}

/// The rustls client configuration for `tls`: the system's roots plus `ca_file`, an
/// optional client certificate, verification on unless explicitly turned off.
pub(crate) fn client_config(tls: &TlsConfig) -> anyhow::Result<ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .context("the TLS provider supports no safe protocol version")?;
    let builder = if tls.verify_certificate {
        builder.with_root_certificates(root_store(tls)?)
    } else {
        tracing::warn!(
            "tls.verify_certificate = false: the syslog receiver's certificate is not checked, so anyone on the path can read and change this traffic"
        );
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(
                provider.signature_verification_algorithms,
            )))
    };
    let config = match (&tls.crt_file, &tls.key_file) {
        (Some(crt_file), key_file) => {
            let certs = tls::certificates(crt_file, "tls.crt_file")?;
            let (key_path, key_option) = match key_file {
                Some(key_file) => (key_file.as_path(), "tls.key_file"),
                None => (crt_file.as_path(), "tls.crt_file"),
            };
            let key = tls::private_key(key_path, key_option)?;
            builder
                .with_client_auth_cert(certs, key)
                .context("the client certificate and key do not form a usable identity")?
        }
        (None, Some(_)) => bail!("tls.key_file is set without tls.crt_file"),
        (None, None) => builder.with_no_client_auth(),
    };
    Ok(config)
}

fn root_store(tls: &TlsConfig) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    if let Some(error) = native.errors.first() {
        tracing::debug!(%error, "some system CA certificates could not be loaded");
    }
    let (_, ignored) = roots.add_parsable_certificates(native.certs);
    if ignored > 0 {
        tracing::debug!(
            ignored,
            "system CA certificates rustls cannot use were skipped"
        );
    }
    if let Some(ca_file) = &tls.ca_file {
        for cert in tls::certificates(ca_file, "tls.ca_file")? {
            roots.add(cert).with_context(|| {
                format!("tls.ca_file {}: unusable CA certificate", ca_file.display())
            })?;
        }
    }
    if roots.is_empty() {
        bail!(
            "no CA certificate to verify the receiver with: the system has none; set tls.ca_file"
        );
    }
    Ok(roots)
}

/// `verify_certificate = false`: any certificate is accepted, but handshake signatures are
/// still checked (so the session keys belong to whoever presented the certificate).
#[derive(Debug)]
struct AcceptAnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}
