//! The UDP listener: one message per datagram (RFC 5426). UDP has no flow control:
//! while the pipeline is full the kernel's receive buffer fills and then drops
//! datagrams; Linux counts those drops per socket, and so does this source.

use std::time::Duration;

use siemflow_core::event::Batch;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::config::MAX_DATAGRAM_BYTES;
use super::{Shared, admit};

/// How often the kernel's drop count of the socket is read.
const DROPS_PERIOD: Duration = Duration::from_secs(1);

/// Receives datagrams until `shutdown`.
pub async fn receive(
    socket: UdpSocket,
    shared: Shared,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let config = &shared.config;
    if let Ok(address) = socket.local_addr() {
        tracing::info!(component = %shared.component, %address, "syslog listening on udp");
    }
    let max =
        usize::try_from(config.max_message_bytes.min(MAX_DATAGRAM_BYTES)).unwrap_or(usize::MAX);
    // One byte more than allowed: a datagram that fills it is too long.
    let mut datagram = vec![0u8; max + 1];
    let mut decoder = shared.decoder.clone();
    let mut batch = Batch::new();
    // The last sender written out: senders are few, so a datagram rarely needs a new text.
    let mut last_peer: Option<(std::net::SocketAddr, String)> = None;
    let mut drops = KernelDrops::of(&socket);
    let mut tick = tokio::time::interval(DROPS_PERIOD);
    loop {
        let received = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {
                drops.count(&shared);
                continue;
            }
            received = socket.recv_from(&mut datagram) => received,
        };
        let mut next = Some(received);
        // Everything already queued goes into this batch, without waiting.
        while let Some(received) = next.take() {
            match received {
                Ok((size, peer)) if size > max => {
                    shared.counters.too_long.increment(1);
                    if let Some(suppressed) = admit(&shared.complaints.message) {
                        tracing::warn!(component = %shared.component, %peer, max_message_bytes = max, suppressed, "syslog datagram longer than max_message_bytes discarded (counted as message_too_long)");
                    }
                }
                Ok((size, peer)) => {
                    let peer_text: &str = match &mut last_peer {
                        Some((last, text)) if *last == peer => text,
                        slot => &slot.insert((peer, peer.to_string())).1,
                    };
                    let outcome = decoder.push(&datagram[..size], peer_text, &mut batch);
                    if let Some(error) = outcome.parse_error
                        && let Some(suppressed) = admit(&shared.complaints.message)
                    {
                        tracing::warn!(component = %shared.component, %peer, error, suppressed, "syslog message kept whole in `message` with `parse_error` (counted as parse_failed)");
                    }
                }
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(error) => {
                    shared.counters.read_failed.increment(1);
                    if let Some(suppressed) = admit(&shared.complaints.connection) {
                        tracing::warn!(component = %shared.component, %error, suppressed, "syslog UDP receive failed (counted as read_failed)");
                    }
                }
            }
            if batch.len() < config.batch_max_events {
                next = Some(socket.try_recv_from(&mut datagram));
            }
        }
        shared.send(&mut batch).await;
    }
    shared.send(&mut batch).await;
    drops.count(&shared);
    Ok(())
}

/// The kernel's count of datagrams dropped on this socket (the `drops` column of
/// `/proc/net/udp` and `udp6`, found by the socket's inode); Linux only.
struct KernelDrops {
    inode: Option<u64>,
    seen: u64,
}

impl KernelDrops {
    fn of(socket: &UdpSocket) -> Self {
        use std::os::fd::AsRawFd as _;
        let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: fstat writes a `stat` for a descriptor this socket owns.
        let inode = (unsafe { libc::fstat(socket.as_raw_fd(), stat.as_mut_ptr()) } == 0)
            // SAFETY: fstat returned 0, so it initialised `stat`.
            .then(|| unsafe { stat.assume_init() }.st_ino);
        KernelDrops { inode, seen: 0 }
    }

    /// Adds the drops since the last look to `udp_dropped`.
    fn count(&mut self, shared: &Shared) {
        let Some(total) = self.inode.and_then(socket_drops) else {
            return;
        };
        if total > self.seen {
            let new = total - self.seen;
            self.seen = total;
            shared.counters.udp_dropped.increment(new);
            tracing::warn!(component = %shared.component, dropped = new, "the kernel dropped syslog datagrams: the receive buffer was full (counted as udp_dropped)");
        }
    }
}

/// The drops of the UDP socket with this inode, if the kernel lists it.
fn socket_drops(inode: u64) -> Option<u64> {
    ["/proc/net/udp", "/proc/net/udp6"]
        .iter()
        .find_map(|table| {
            let text = std::fs::read_to_string(table).ok()?;
            text.lines().skip(1).find_map(|line| {
                let columns: Vec<&str> = line.split_whitespace().collect();
                // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops
                (columns.get(9)?.parse::<u64>().ok()? == inode)
                    .then(|| columns.last()?.parse().ok())
                    .flatten()
            })
        })
}
