//! The receivers a sink scenario sends to, running in this harness process (on the same
//! two cores as siemflow, so their cost is part of the figure).

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use siemflow_simulator::splunk_hec::{SplunkHecConfig, SplunkHecSimulator};

/// Who a scenario's sink talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// Nobody: the sink writes files or discards.
    None,
    /// A syslog receiver over TCP with octet-counting framing (RFC 6587).
    SyslogTcp,
    /// The Splunk HEC simulator (indexer acknowledgements off, events counted not kept).
    SplunkHec,
}

/// A started peer: the address to put in the config, and how many messages it received.
pub struct Started {
    /// `host:port` (or a URL) replacing `{peer}` in the scenario's config.
    pub address: String,
    /// Messages received so far.
    pub received: Box<dyn Fn() -> u64>,
    /// Keeps an async peer's runtime (and so the peer) alive.
    _runtime: Option<tokio::runtime::Runtime>,
}

impl Peer {
    /// Starts the peer; `None` for [`Peer::None`].
    pub fn start(self) -> anyhow::Result<Option<Started>> {
        match self {
            Peer::None => Ok(None),
            Peer::SyslogTcp => syslog_tcp().map(Some),
            Peer::SplunkHec => splunk_hec().map(Some),
        }
    }
}

/// Accepts connections and counts octet-counted frames on each, one thread per connection.
fn syslog_tcp() -> anyhow::Result<Started> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?.to_string();
    let received = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&received);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let counter = Arc::clone(&counter);
            std::thread::spawn(move || {
                count_frames(BufReader::with_capacity(1 << 20, stream), &counter)
            });
        }
    });
    Ok(Started {
        address,
        received: Box::new(move || received.load(Ordering::Relaxed)),
        _runtime: None,
    })
}

/// The HEC simulator on two worker threads, with the default token and acks off.
fn splunk_hec() -> anyhow::Result<Started> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let config = SplunkHecConfig {
        keep_events: false,
        ..SplunkHecConfig::default()
    };
    let simulator =
        Arc::new(runtime.block_on(SplunkHecSimulator::start(config, "127.0.0.1:0".parse()?))?);
    let address = simulator.url();
    Ok(Started {
        address,
        received: Box::new(move || simulator.stats().events_indexed),
        _runtime: Some(runtime),
    })
}

/// Reads `LEN SP MSG` frames until the connection ends or a frame is malformed.
fn count_frames(mut reader: impl BufRead, counter: &AtomicU64) {
    let mut length = Vec::with_capacity(8);
    let mut message = Vec::new();
    loop {
        length.clear();
        match reader.read_until(b' ', &mut length) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let Some(size) = std::str::from_utf8(&length[..length.len() - 1])
            .ok()
            .and_then(|digits| digits.parse::<usize>().ok())
        else {
            eprintln!("syslog receiver: a frame without an octet count; closing the connection");
            return;
        };
        message.resize(size, 0);
        if reader.read_exact(&mut message).is_err() {
            return;
        }
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_octet_counted_frames_including_ones_with_spaces_and_newlines() {
        let counter = AtomicU64::new(0);
        let stream = b"5 hello11 a b\nc d e f3 xyz".as_slice();
        count_frames(stream, &counter);
        assert_eq!(counter.load(Ordering::Relaxed), 3);
    }
}
