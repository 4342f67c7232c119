//! Tests of the syslog sink against in-process loopback peers: connection handling,
//! retries and acknowledgements. What a real receiver makes of the messages is tested
//! against rsyslog in `sinks/tests/syslog.rs`.

use serde_json::json;
use siemflow_core::{BatchStatus, SinkConfig};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;

use super::SyslogSinkConfig;
use crate::test_support::{Harness, acked, eventually, harness};

fn config(value: serde_json::Value) -> SyslogSinkConfig {
    serde_json::from_value(value).expect("valid syslog sink config")
}

/// Fast retries, so failure tests run in milliseconds.
fn fast(mut value: serde_json::Value) -> SyslogSinkConfig {
    value["retry"] = json!({ "initial_backoff": "5ms", "max_backoff": "20ms" });
    config(value)
}

fn start(id: &str, sink: &SyslogSinkConfig) -> (Harness, JoinHandle<anyhow::Result<()>>) {
    let dir = std::env::temp_dir();
    let (h, cx) = harness(id, "syslog", &dir);
    assert!(sink.check().is_empty(), "{:?}", sink.check());
    let task = tokio::spawn(sink.build(cx).expect("builds"));
    (h, task)
}

/// Reads octet-counted frames until `count` messages arrived or the peer closed.
async fn read_frames(stream: &mut tokio::net::TcpStream, count: usize) -> Vec<String> {
    let mut buf = Vec::new();
    let mut frames = Vec::new();
    let mut chunk = [0u8; 4096];
    while frames.len() < count {
        let n = stream.read(&mut chunk).await.expect("read");
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        while let Some(space) = buf.iter().position(|b| *b == b' ') {
            let len: usize = std::str::from_utf8(&buf[..space])
                .expect("ascii length")
                .parse()
                .expect("octet count");
            if buf.len() < space + 1 + len {
                break;
            }
            let frame = buf[space + 1..space + 1 + len].to_vec();
            buf.drain(..space + 1 + len);
            frames.push(String::from_utf8(frame).expect("utf-8"));
        }
    }
    frames
}

fn messages(n: usize, tag: &str) -> Vec<serde_json::Value> {
    (0..n)
        .map(|i| json!({ "message": format!("{tag}-{i}") }))
        .collect()
}

#[tokio::test]
async fn tcp_sends_octet_counted_messages_and_acks_after_the_write() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("addr").to_string();
    let sink = fast(json!({ "address": address, "hostname": "h", "app_name": "a", "proc_id": "" }));
    let (h, task) = start("syslog-tcp", &sink);
    let (mut stream, _) = listener.accept().await.expect("the sink connects at start");
    let (batch, receipt) = acked(messages(3, "m"));
    h.sender.send(batch).await.expect("open");
    let frames = read_frames(&mut stream, 3).await;
    assert_eq!(receipt.await, BatchStatus::Delivered);
    assert_eq!(frames.len(), 3);
    for (i, frame) in frames.iter().enumerate() {
        assert!(frame.starts_with("<14>1 "), "{frame}");
        assert!(frame.ends_with(&format!(" h a - - - m-{i}")), "{frame}");
    }
    drop(h.sender);
    task.await.expect("no panic").expect("clean exit");
    // Closed on shutdown: the peer reads end-of-file.
    assert!(read_frames(&mut stream, 1).await.is_empty());
}

#[tokio::test]
async fn a_connection_the_receiver_closed_is_not_written_into() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("addr").to_string();
    let sink = fast(json!({ "address": address }));
    let (h, task) = start("syslog-closed-peer", &sink);
    let (mut first, _) = listener.accept().await.expect("connects");
    let (batch, receipt) = acked(messages(2, "before"));
    h.sender.send(batch).await.expect("open");
    assert_eq!(read_frames(&mut first, 2).await.len(), 2);
    assert_eq!(receipt.await, BatchStatus::Delivered);
    // The receiver goes away between batches (a restart, an idle timeout).
    drop(first);
    let (batch, receipt) = acked(messages(2, "after"));
    h.sender.send(batch).await.expect("open");
    let (mut second, _) = listener.accept().await.expect("reconnects");
    let frames = read_frames(&mut second, 2).await;
    assert_eq!(receipt.await, BatchStatus::Delivered);
    assert_eq!(frames.len(), 2, "the batch went to the new connection");
    assert!(frames[1].ends_with("after-1"));
    drop(h.sender);
    task.await.expect("no panic").expect("clean exit");
}

#[tokio::test]
async fn retries_until_the_receiver_listens_and_reports_health() {
    // A port nobody listens on (yet).
    let probe = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = probe.local_addr().expect("addr");
    drop(probe);
    let sink = fast(json!({ "address": address.to_string() }));
    let (h, task) = start("syslog-retry", &sink);
    let (batch, receipt) = acked(messages(1, "late"));
    h.sender.send(batch).await.expect("open");
    eventually("the sink to report itself unhealthy", || {
        h.health.ready().is_err()
    })
    .await;
    let listener = TcpListener::bind(address).await.expect("rebind the port");
    let (mut stream, _) = listener.accept().await.expect("connects");
    let frames = read_frames(&mut stream, 1).await;
    assert_eq!(receipt.await, BatchStatus::Delivered);
    assert!(frames[0].ends_with("late-0"));
    eventually("healthy again", || h.health.ready().is_ok()).await;
    drop(h.sender);
    task.await.expect("no panic").expect("clean exit");
}

#[tokio::test]
async fn a_batch_is_failed_after_max_retry_duration_and_the_sink_goes_on() {
    let probe = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = probe.local_addr().expect("addr");
    drop(probe);
    let sink = config(json!({
        "address": address.to_string(),
        "retry": { "initial_backoff": "5ms", "max_backoff": "10ms", "max_duration": "50ms" },
    }));
    let (h, task) = start("syslog-give-up", &sink);
    let (batch, receipt) = acked(messages(2, "doomed"));
    h.sender.send(batch).await.expect("open");
    assert_eq!(receipt.await, BatchStatus::Failed);
    // The sink keeps running: the next batch goes out once the receiver is there.
    let listener = TcpListener::bind(address).await.expect("rebind the port");
    let (batch, receipt) = acked(messages(1, "next"));
    h.sender.send(batch).await.expect("open");
    let (mut stream, _) = listener.accept().await.expect("connects");
    assert!(read_frames(&mut stream, 1).await[0].ends_with("next-0"));
    assert_eq!(receipt.await, BatchStatus::Delivered);
    drop(h.sender);
    task.await.expect("no panic").expect("clean exit");
}

#[tokio::test]
async fn abort_while_retrying_fails_the_batch_and_stops() {
    let probe = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = probe.local_addr().expect("addr");
    drop(probe);
    let sink = fast(json!({ "address": address.to_string() }));
    let (h, task) = start("syslog-abort", &sink);
    let (batch, receipt) = acked(messages(1, "stuck"));
    h.sender.send(batch).await.expect("open");
    eventually("the sink to be retrying", || h.health.ready().is_err()).await;
    h.abort.cancel();
    assert_eq!(receipt.await, BatchStatus::Failed);
    assert!(task.await.expect("no panic").is_err());
}

#[tokio::test]
async fn udp_sends_one_datagram_per_message_and_truncates_when_asked() {
    let receiver = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let address = receiver.local_addr().expect("addr").to_string();
    let sink = fast(json!({
        "address": address, "mode": "udp", "hostname": "h", "app_name": "a", "proc_id": "",
        "max_datagram_bytes": 600, "oversize": "truncate",
    }));
    let (h, task) = start("syslog-udp", &sink);
    let long = "x".repeat(1000);
    let (batch, receipt) = acked(vec![
        json!({"message": "short"}),
        json!({ "message": long }),
    ]);
    h.sender.send(batch).await.expect("open");
    assert_eq!(receipt.await, BatchStatus::Delivered);
    let mut buf = vec![0u8; 70_000];
    let n = receiver.recv(&mut buf).await.expect("first datagram");
    assert!(
        std::str::from_utf8(&buf[..n])
            .expect("utf-8")
            .ends_with(" h a - - - short")
    );
    let n = receiver.recv(&mut buf).await.expect("second datagram");
    assert_eq!(n, 600, "cut to max_datagram_bytes");
    drop(h.sender);
    task.await.expect("no panic").expect("clean exit");
}

#[tokio::test]
async fn udp_sends_oversize_messages_whole_by_default() {
    let receiver = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let address = receiver.local_addr().expect("addr").to_string();
    let sink = fast(json!({ "address": address, "mode": "udp" }));
    let (h, task) = start("syslog-udp-oversize", &sink);
    let long = "y".repeat(3000);
    let (batch, receipt) = acked(vec![json!({ "message": long })]);
    h.sender.send(batch).await.expect("open");
    assert_eq!(receipt.await, BatchStatus::Delivered);
    let mut buf = vec![0u8; 70_000];
    let n = receiver.recv(&mut buf).await.expect("datagram");
    assert!(n > 3000);
    assert!(buf[..n].ends_with(long.as_bytes()));
    drop(h.sender);
    task.await.expect("no panic").expect("clean exit");
}

#[tokio::test]
async fn tls_without_a_trusted_certificate_does_not_connect() {
    // A TCP peer that is not TLS at all: the handshake must fail, never fall back to plain.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("addr").to_string();
    let sink = config(json!({
        "address": address, "tls": {},
        "retry": { "initial_backoff": "5ms", "max_backoff": "10ms", "max_duration": "30ms" },
    }));
    let (h, task) = start("syslog-tls-untrusted", &sink);
    let peer = tokio::spawn(async move {
        // Answer every ClientHello with something that is not TLS.
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = tokio::io::AsyncWriteExt::write_all(&mut stream, b"not tls\n").await;
        }
    });
    let (batch, receipt) = acked(vec![json!({"message": "secret"})]);
    h.sender.send(batch).await.expect("open");
    assert_eq!(receipt.await, BatchStatus::Failed);
    drop(h.sender);
    task.await.expect("no panic").expect("clean exit");
    peer.abort();
    let _ = peer.await;
}
