//! A Microsoft Defender for Cloud Apps SIEM-agent emulator: sends the agent's CEF lines,
//! exactly as Microsoft documents them (`tests/fixtures/siem-mapping/microsoftdocs-cloudappsecurity/`, 6 activities and 6
//! alerts), to a syslog receiver over TCP (one line per message, LF-terminated) or UDP
//! (one line per datagram).
//!
//! The documented lines start with an ISO 8601 timestamp and, on one of them, a host name
//! — no `<PRI>` — then `CEF:0|MCAS|SIEM_Agent|…`; the emulator sends them as written.
//! The agent was deprecated in November 2025; this keeps its wire shape testable.

use std::net::SocketAddr;

use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpStream, UdpSocket};

/// The agent's documented output, one CEF line per line.
const AGENT_LOG: &str = include_str!(
    "../../../tests/fixtures/siem-mapping/microsoftdocs-cloudappsecurity/mcas_siem_agent_cef.log"
);

/// Every line the agent sample holds (activities first, then alerts), as sent.
pub fn agent_lines() -> Vec<&'static str> {
    AGENT_LOG
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect()
}

/// The CEF part of an agent line (from `CEF:` on), what a SIEM parses.
pub fn cef_part(line: &str) -> &str {
    line.find("CEF:").map_or(line, |at| &line[at..])
}

/// How the emulated agent sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// One TCP connection, each line followed by LF.
    Tcp,
    /// One datagram per line.
    Udp,
}

/// Sends `lines` to a syslog receiver at `address` and returns once all are written (TCP:
/// the connection is shut down cleanly afterwards).
pub async fn send(
    address: SocketAddr,
    transport: Transport,
    lines: &[&str],
) -> std::io::Result<()> {
    match transport {
        Transport::Tcp => {
            let mut stream = TcpStream::connect(address).await?;
            let mut bytes = Vec::new();
            for line in lines {
                bytes.extend_from_slice(line.as_bytes());
                bytes.push(b'\n');
            }
            stream.write_all(&bytes).await?;
            stream.shutdown().await
        }
        Transport::Udp => {
            let bind: SocketAddr = if address.is_ipv4() {
                ([127, 0, 0, 1], 0).into()
            } else {
                (std::net::Ipv6Addr::LOCALHOST, 0).into()
            };
            let socket = UdpSocket::bind(bind).await?;
            for line in lines {
                socket.send_to(line.as_bytes(), address).await?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_holds_six_activities_and_six_alerts() {
        let lines = agent_lines();
        assert_eq!(lines.len(), 12);
        let activities = lines
            .iter()
            .filter(|l| cef_part(l).contains("|EVENT_CATEGORY_"))
            .count();
        let alerts = lines
            .iter()
            .filter(|l| cef_part(l).contains("|ALERT_"))
            .count();
        assert_eq!((activities, alerts), (6, 6));
        assert!(
            lines
                .iter()
                .all(|l| cef_part(l).starts_with("CEF:0|MCAS|SIEM_Agent|"))
        );
    }

    #[tokio::test]
    async fn tcp_sends_each_line_with_a_newline() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("addr");
        let lines = agent_lines();
        let sender =
            tokio::spawn(async move { send(address, Transport::Tcp, &agent_lines()).await });
        let (mut stream, _) = listener.accept().await.expect("accept");
        let mut got = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut got)
            .await
            .expect("read");
        sender.await.expect("task").expect("sent");
        assert_eq!(got, format!("{}\n", lines.join("\n")));
    }
}
