//! The TCP and TLS listener: at most `max_connections` connections, each read by its own
//! task that stops reading while its batch waits for room downstream (backpressure).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use siemflow_core::event::Batch;
use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::frames::{Frame, Framer};
use super::message::MessageDecoder;
use super::{Shared, admit};
use crate::lines::LineBuffer;

/// How long accepting pauses after an error (out of descriptors, say) before it tries
/// again: a busy loop would not free any.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Accepts connections until `shutdown`, then waits for each to send what it read.
pub async fn serve(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    shared: Shared,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let slots = Arc::new(Semaphore::new(shared.config.max_connections));
    let mut connections = JoinSet::new();
    if let Ok(address) = listener.local_addr() {
        tracing::info!(component = %shared.component, %address, tls = acceptor.is_some(), "syslog listening");
    }
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                if let Some(suppressed) = admit(&shared.complaints.accept) {
                    tracing::warn!(component = %shared.component, %error, suppressed, "cannot accept a syslog connection; pausing accepts briefly");
                }
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            shared.counters.connection_refused.increment(1);
            if let Some(suppressed) = admit(&shared.complaints.refused) {
                tracing::warn!(
                    component = %shared.component,
                    %peer,
                    max_connections = shared.config.max_connections,
                    suppressed,
                    "syslog connection refused: max_connections are open (counted as connection_refused)"
                );
            }
            drop(stream);
            continue;
        };
        connections.spawn(connection(
            stream,
            peer,
            acceptor.clone(),
            shared.clone(),
            shutdown.clone(),
            slot,
        ));
    }
    drop(listener);
    // Each connection stops reading and hands over the batch it holds; the engine's drain
    // deadline bounds this wait.
    while connections.join_next().await.is_some() {}
    Ok(())
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: Option<TlsAcceptor>,
    shared: Shared,
    shutdown: CancellationToken,
    _slot: OwnedSemaphorePermit,
) {
    shared.counters.connections.increment(1.0);
    match acceptor {
        None => read_messages(stream, peer, &shared, &shutdown).await,
        Some(acceptor) => {
            let handshake = tokio::select! {
                _ = shutdown.cancelled() => None,
                done = tokio::time::timeout(shared.config.read_timeout, acceptor.accept(stream)) => Some(done),
            };
            match handshake {
                None => {}
                Some(Ok(Ok(stream))) => read_messages(stream, peer, &shared, &shutdown).await,
                Some(failed) => {
                    shared.counters.tls_handshake_failed.increment(1);
                    let error = match failed {
                        Ok(Err(error)) => error.to_string(),
                        _ => "handshake did not finish within read_timeout".to_string(),
                    };
                    if let Some(suppressed) = admit(&shared.complaints.connection) {
                        tracing::warn!(component = %shared.component, %peer, error, suppressed, "syslog TLS handshake failed (counted as tls_handshake_failed)");
                    }
                }
            }
        }
    }
    shared.counters.connections.decrement(1.0);
}

/// Reads one connection to its end (or `read_timeout` of silence, or `shutdown`),
/// sending what each read completed before reading again.
async fn read_messages<S: AsyncRead + Unpin>(
    mut stream: S,
    peer: SocketAddr,
    shared: &Shared,
    shutdown: &CancellationToken,
) {
    let config = &shared.config;
    let max = usize::try_from(config.max_message_bytes).unwrap_or(usize::MAX);
    let mut buffer = LineBuffer::new(max);
    let mut framer = Framer::new(config.framing, config.max_message_bytes);
    let mut decoder = shared.decoder.clone();
    let peer_text = peer.to_string();
    let mut batch = Batch::new();
    loop {
        let read = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            read = tokio::time::timeout(config.read_timeout, stream.read(buffer.spare())) => read,
        };
        let at_end = match read {
            Err(_) => {
                shared.counters.read_timeout.increment(1);
                tracing::debug!(component = %shared.component, %peer, "syslog connection idle past read_timeout; closed");
                true
            }
            Ok(Ok(0)) => true,
            Ok(Ok(read)) => {
                buffer.commit(read);
                while let Some(frame) = framer.next(&mut buffer) {
                    take(frame, &buffer, &mut decoder, &peer_text, shared, &mut batch);
                    if batch.len() >= config.batch_max_events {
                        shared.send(&mut batch).await;
                    }
                }
                false
            }
            Ok(Err(error)) if error.kind() == std::io::ErrorKind::Interrupted => false,
            // A TLS peer that closes without close_notify: the end, nothing lost.
            Ok(Err(error)) if error.kind() == std::io::ErrorKind::UnexpectedEof => true,
            Ok(Err(error)) => {
                shared.counters.read_failed.increment(1);
                if let Some(suppressed) = admit(&shared.complaints.connection) {
                    tracing::warn!(component = %shared.component, %peer, %error, suppressed, "syslog connection failed (counted as read_failed)");
                }
                true
            }
        };
        if at_end {
            while let Some(frame) = framer.finish(&mut buffer) {
                take(frame, &buffer, &mut decoder, &peer_text, shared, &mut batch);
            }
        }
        // What this read completed goes now: a trickle of messages is not held back
        // waiting for a full batch. While this waits, the socket is not read.
        shared.send(&mut batch).await;
        if at_end {
            return;
        }
    }
    // Shutdown: what was read is handed over; bytes the sender wrote that were not read
    // yet are lost with the connection (syslog has no acknowledgement to resend them).
    shared.send(&mut batch).await;
}

fn take(
    frame: Frame,
    buffer: &LineBuffer,
    decoder: &mut MessageDecoder,
    peer: &str,
    shared: &Shared,
    batch: &mut Batch,
) {
    let outcome = match frame {
        Frame::Message(range) => decoder.push(buffer.slice(range), peer, batch),
        Frame::Unframed(range) => decoder.push_flagged(
            buffer.slice(range),
            peer,
            batch,
            "no octet count before the message (framing = \"octet_counting\"); read up to LF",
        ),
        Frame::Truncated(range) => decoder.push_flagged(
            buffer.slice(range),
            peer,
            batch,
            "the connection ended inside an octet-counted message; this is what arrived",
        ),
        Frame::TooLong(bytes) => {
            shared.counters.too_long.increment(1);
            if let Some(suppressed) = admit(&shared.complaints.message) {
                tracing::warn!(
                    component = %shared.component,
                    %peer,
                    bytes,
                    max_message_bytes = shared.config.max_message_bytes,
                    suppressed,
                    "syslog message longer than max_message_bytes discarded (counted as message_too_long)"
                );
            }
            return;
        }
    };
    if let Some(error) = outcome.parse_error
        && let Some(suppressed) = admit(&shared.complaints.message)
    {
        tracing::warn!(component = %shared.component, %peer, error, suppressed, "syslog message kept whole in `message` with `parse_error` (counted as parse_failed)");
    }
}
