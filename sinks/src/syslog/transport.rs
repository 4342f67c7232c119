//! Connections to the receiver: TCP, TLS (rustls) and UDP.

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use rustls_pki_types::ServerName;
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
