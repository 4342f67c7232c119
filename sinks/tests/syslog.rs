//! The `syslog` sink against a real rsyslogd (Debian's `rsyslog` and `rsyslog-gnutls`,
//! installed by `scripts/test-deps.sh`).
//!
//! Each test starts its own rsyslogd with a private work directory, listening on loopback:
//! imtcp on a port the kernel picks (rsyslog writes it to a file: that file appearing is
//! the readiness signal), imtcp with the gtls driver for TLS (certificates made by the
//! test), and imudp. rsyslog writes every message it received as one JSON object per line
//! (PRI, HOSTNAME, APP-NAME, PROCID, MSGID, MSG and the raw message), which the tests
//! compare field for field with what the sink was given.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use siemflow_core::api::HealthRegistry;
use siemflow_core::buffer::{self, BufferConfig, BufferSender};
use siemflow_core::event::attach_ack;
use siemflow_core::metrics::{ComponentKind, ComponentLabels, ComponentMetrics};
use siemflow_core::plugin::ComponentContext;
use siemflow_core::{AckReceipt, BatchStatus, Event, SinkConfig, SinkContext, Value};
use siemflow_sinks::syslog::SyslogSinkConfig;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

#[path = "../../tests/support/rsyslogd.rs"]
mod rsyslogd;

use rsyslogd::{PATIENCE, Rsyslogd, write_certificates};

/// One line rsyslog wrote: the properties it parsed from a message.
#[derive(Debug, Clone, Deserialize, PartialEq)]
struct Received {
    pri: String,
    hostname: String,
    app_name: String,
    procid: String,
    msgid: String,
    timestamp: String,
    msg: String,
    rawmsg: String,
}

/// Ports of a running rsyslogd.
#[derive(Debug, Clone, Copy)]
struct Ports {
    tcp: u16,
    tls: u16,
    udp: u16,
}

/// A private rsyslogd (the shared launcher, `tests/support/rsyslogd.rs`), killed when
/// dropped, with the inputs these tests send to.
struct Rsyslog {
    dir: PathBuf,
    daemon: Rsyslogd,
    ports: Ports,
    ca_file: PathBuf,
}

impl Rsyslog {
    /// Starts rsyslogd in `dir`: new ports, or the given ones (a restart).
    fn start(dir: &Path, ports: Option<Ports>) -> Rsyslog {
        let ca_file = dir.join("ca.pem");
        if !ca_file.exists() {
            write_certificates(dir);
        }
        let tcp_port_file = dir.join("tcp.port");
        let tls_port_file = dir.join("tls.port");
        let _ = std::fs::remove_file(&tcp_port_file);
        let _ = std::fs::remove_file(&tls_port_file);
        let (tcp, tls, udp) = match ports {
            Some(p) => (p.tcp, p.tls, p.udp),
            None => (0, 0, free_udp_port()),
        };
        let d = dir.display();
        let config = format!(
            r#"global(workDirectory="{d}/work" maxMessageSize="256k"
  defaultNetstreamDriverCAFile="{d}/ca.pem"
  defaultNetstreamDriverCertFile="{d}/server.pem"
  defaultNetstreamDriverKeyFile="{d}/server.key")
module(load="imtcp" maxSessions="64")
module(load="imudp")
template(name="fields" type="list" option.jsonf="on") {{
  property(outname="pri" name="pri" format="jsonf")
  property(outname="hostname" name="hostname" format="jsonf")
  property(outname="app_name" name="app-name" format="jsonf")
  property(outname="procid" name="procid" format="jsonf")
  property(outname="msgid" name="msgid" format="jsonf")
  property(outname="timestamp" name="timereported" dateFormat="rfc3339" format="jsonf")
  property(outname="msg" name="msg" format="jsonf")
  property(outname="rawmsg" name="rawmsg" format="jsonf")
}}
ruleset(name="out") {{ action(type="omfile" file="{d}/received.jsonl" template="fields") }}
input(type="imtcp" address="127.0.0.1" port="{tcp}" listenPortFileName="{d}/tcp.port" ruleset="out")
input(type="imtcp" address="127.0.0.1" port="{tls}" listenPortFileName="{d}/tls.port" ruleset="out"
  streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
input(type="imudp" address="127.0.0.1" port="{udp}" ruleset="out")
"#
        );
        let daemon = Rsyslogd::start(dir, &config);
        let mut rsyslog = Rsyslog {
            dir: dir.to_path_buf(),
            daemon,
            ports: Ports { tcp, tls, udp },
            ca_file,
        };
        if ports.is_some() {
            // rsyslog writes the port file only for port 0: probe the fixed ports instead.
            rsyslog.wait_for_listener(tcp);
            rsyslog.wait_for_listener(tls);
        } else {
            rsyslog.ports.tcp = rsyslog.wait_for_port(&tcp_port_file);
            rsyslog.ports.tls = rsyslog.wait_for_port(&tls_port_file);
        }
        rsyslog
    }

    fn wait_for_port(&mut self, file: &Path) -> u16 {
        self.daemon.wait_for_port(file)
    }

    /// Waits until `port` accepts connections (the probe connection is closed at once,
    /// without sending anything).
    fn wait_for_listener(&mut self, port: u16) {
        for _ in 0..(PATIENCE.as_millis() / 10) {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return;
            }
            if let Some(status) = self.daemon.exited() {
                panic!("rsyslogd exited ({status}): {}", self.diagnostics());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!(
            "rsyslogd did not listen on port {port} again: {}",
            self.diagnostics()
        );
    }

    fn diagnostics(&self) -> String {
        self.daemon.diagnostics()
    }

    fn address(&self, port: u16) -> String {
        format!("127.0.0.1:{port}")
    }

    /// Every whole line rsyslog wrote so far (the last one may still be half written).
    fn received(&self) -> Vec<Received> {
        let text = std::fs::read_to_string(self.dir.join("received.jsonl")).unwrap_or_default();
        let written = text.rfind('\n').map_or("", |end| &text[..end]);
        written
            .lines()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|e| panic!("rsyslog line {line}: {e}"))
            })
            .collect()
    }

    /// Waits until rsyslog wrote at least `count` messages (probes excluded).
    async fn wait_for(&self, count: usize) -> Vec<Received> {
        for _ in 0..(PATIENCE.as_millis() / 10) {
            let received: Vec<Received> = self
                .received()
                .into_iter()
                .filter(|r| r.hostname != "probe")
                .collect();
            if received.len() >= count {
                return received;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "rsyslog wrote {} messages, expected {count}: {:#?}\n{}",
            self.received().len(),
            self.received(),
            self.diagnostics()
        );
    }

    /// UDP has no listener file: send probes until one is written, so the input is up
    /// (and the port really is this rsyslog's).
    async fn wait_for_udp(&self) {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        for i in 0..(PATIENCE.as_millis() / 20) {
            let probe = format!("<14>1 - probe - - - probe-{i}");
            let _ = socket
                .send_to(probe.as_bytes(), self.address(self.ports.udp))
                .await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            if self.received().iter().any(|r| r.hostname == "probe") {
                return;
            }
        }
        panic!(
            "rsyslog's UDP input on port {} never answered a probe: {}",
            self.ports.udp,
            self.diagnostics()
        );
    }

    /// SIGKILL, then reap: the listener and every connection are gone when this returns.
    fn kill(&mut self) {
        self.daemon.kill();
    }
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free UDP port")
        .port()
}

/// A running sink and the handles to drive it.
struct Sink {
    sender: BufferSender,
    health: HealthRegistry,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Sink {
    fn start(id: &str, config: serde_json::Value) -> Sink {
        let config: SyslogSinkConfig =
            serde_json::from_value(config).expect("valid syslog sink config");
        assert!(config.check().is_empty(), "{:?}", config.check());
        let labels = ComponentLabels {
            id: id.to_string(),
            kind: ComponentKind::Sink,
            type_name: "syslog".to_string(),
        };
        let (sender, input) = buffer::channel(&BufferConfig::default(), &labels);
        let health = HealthRegistry::default();
        let cx = SinkContext {
            component: ComponentContext {
                id: id.to_string(),
                state_dir: std::env::temp_dir().join(id),
                metrics: ComponentMetrics::new(labels),
            },
            input,
            outputs: vec![],
            health: health.register(id, ComponentKind::Sink),
            abort: CancellationToken::new(),
        };
        let task = tokio::spawn(config.build(cx).expect("the sink builds"));
        Sink {
            sender,
            health,
            task,
        }
    }

    /// Sends these `message` values as one acknowledged batch.
    async fn send(&self, messages: &[String]) -> AckReceipt {
        let mut batch: Vec<Event> = messages
            .iter()
            .map(|m| Event::from_message(m.as_str()))
            .collect();
        let receipt = attach_ack(&mut batch);
        self.sender.send(batch).await.expect("sink running");
        receipt
    }

    async fn stop(self) {
        drop(self.sender);
        self.task
            .await
            .expect("no panic")
            .expect("the sink stops cleanly");
    }
}

/// Real CEF lines: the `cef` transform run over the Microsoft 365 fixture records, plus
/// one with every character CEF escapes and some that are not ASCII.
fn cef_lines() -> Vec<String> {
    let config = toml::from_str("").expect("default cef config");
    let mut encoder =
        siemflow_transforms::cef::CefEncoder::new(&config).expect("cef encoder builds");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/o365");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&fixtures)
        .expect("fixture folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "ndjson"))
        .collect();
    files.sort();
    let mut lines = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("fixture");
        for record in text.lines().filter(|l| !l.trim().is_empty()) {
            let json: serde_json::Value = serde_json::from_str(record).expect("fixture JSON");
            let mut line = String::new();
            encoder.encode(&Value::from(json), &mut line);
            lines.push(line);
        }
    }
    assert!(lines.len() >= 30, "fixture records: {}", lines.len());
    lines.push(
        r"CEF:0|Contoso|M365 \| Shipper|1.4.0|AAD-50126|Sign-in failure: a\\b|5|msg=a\=b path C:\\Temp\nsecond line suser=zoë@contoso.example cs1Label=Tenant cs1=Zürich|東京 cat=x|y"
            .to_string(),
    );
    lines
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

#[tokio::test]
async fn tcp_octet_counting_rfc5424_carries_cef_lines_field_for_field() {
    let dir = temp_dir();
    let rsyslog = Rsyslog::start(dir.path(), None);
    let sink = Sink::start(
        "rsyslog-tcp-5424",
        serde_json::json!({
            "address": rsyslog.address(rsyslog.ports.tcp),
            "mode": "tcp",
            "framing": "octet_counting",
            "facility": "local4",
            "severity": "notice",
            "hostname": "shipper01",
            "app_name": "m365-shipper",
            "proc_id": "4711",
            "msg_id": "AUDIT",
        }),
    );
    let lines = cef_lines();
    let before = chrono::Utc::now();
    let receipt = sink.send(&lines).await;
    assert_eq!(receipt.await, BatchStatus::Delivered);
    let received = rsyslog.wait_for(lines.len()).await;
    let after = chrono::Utc::now();
    assert_eq!(received.len(), lines.len());
    for (line, got) in lines.iter().zip(&received) {
        assert_eq!(got.pri, "165", "local4 (20) × 8 + notice (5)");
        assert_eq!(got.hostname, "shipper01");
        assert_eq!(got.app_name, "m365-shipper");
        assert_eq!(got.procid, "4711");
        assert_eq!(got.msgid, "AUDIT");
        assert_eq!(&got.msg, line, "the CEF line arrived intact");
        assert!(got.rawmsg.starts_with("<165>1 "), "{}", got.rawmsg);
        let time = chrono::DateTime::parse_from_rfc3339(&got.timestamp).expect("RFC 3339");
        assert!(got.timestamp.ends_with('Z') && got.timestamp.contains('.'));
        let time = time.with_timezone(&chrono::Utc);
        assert!(
            time >= before - chrono::Duration::milliseconds(1) && time <= after,
            "{time} not within the send"
        );
    }
    sink.stop().await;
}

#[tokio::test]
async fn tls_with_a_test_ca_delivers_and_an_untrusted_receiver_gets_nothing() {
    let dir = temp_dir();
    let rsyslog = Rsyslog::start(dir.path(), None);
    let lines = cef_lines();
    let sink = Sink::start(
        "rsyslog-tls",
        serde_json::json!({
            "address": rsyslog.address(rsyslog.ports.tls),
            "tls": { "ca_file": rsyslog.ca_file },
            "hostname": "shipper01",
            "app_name": "m365-shipper",
        }),
    );
    let receipt = sink.send(&lines).await;
    assert_eq!(receipt.await, BatchStatus::Delivered);
    let received = rsyslog.wait_for(lines.len()).await;
    let msgs: Vec<&String> = received.iter().map(|r| &r.msg).collect();
    assert_eq!(msgs, lines.iter().collect::<Vec<_>>());
    assert!(
        received
            .iter()
            .all(|r| r.pri == "14" && r.hostname == "shipper01")
    );
    sink.stop().await;

    // Without the test CA the certificate is not trusted: nothing is sent, the batch fails.
    let untrusted = Sink::start(
        "rsyslog-tls-untrusted",
        serde_json::json!({
            "address": rsyslog.address(rsyslog.ports.tls),
            "tls": {},
            "retry": { "initial_backoff": "10ms", "max_backoff": "50ms", "max_duration": "200ms" },
        }),
    );
    let receipt = untrusted
        .send(&["CEF:0|must|not|arrive|1|x|1|".to_string()])
        .await;
    assert_eq!(receipt.await, BatchStatus::Failed);
    assert!(
        untrusted.health.ready().is_err(),
        "unhealthy while it cannot connect"
    );
    untrusted.stop().await;
    assert_eq!(
        rsyslog.received().len(),
        lines.len(),
        "nothing more arrived"
    );
}

#[tokio::test]
async fn udp_rfc3164_and_rfc5424() {
    let dir = temp_dir();
    let rsyslog = Rsyslog::start(dir.path(), None);
    rsyslog.wait_for_udp().await;
    let leef = "LEEF:2.0|Contoso|M365 Shipper|1.4.0|AAD-SignIn-Failure|^|devTime=1793614530123^cat=AzureActiveDirectory^sev=5^usrName=zoë@contoso.example^src=203.0.113.7".to_string();
    let bsd = Sink::start(
        "rsyslog-udp-3164",
        serde_json::json!({
            "address": rsyslog.address(rsyslog.ports.udp),
            "mode": "udp",
            "format": "rfc3164",
            "facility": "local1",
            "severity": "warning",
            "hostname": "shipper01",
            "app_name": "m365-shipper",
            "proc_id": "4711",
        }),
    );
    let receipt = bsd.send(std::slice::from_ref(&leef)).await;
    assert_eq!(receipt.await, BatchStatus::Delivered);
    let received = rsyslog.wait_for(1).await;
    let got = &received[0];
    assert_eq!(got.pri, "140", "local1 (17) × 8 + warning (4)");
    assert_eq!(got.hostname, "shipper01");
    assert_eq!(got.app_name, "m365-shipper");
    assert_eq!(got.procid, "4711");
    // RFC 3164 keeps the space after `TAG:` in MSG.
    assert_eq!(got.msg.trim_start(), leef);
    assert!(got.rawmsg.starts_with("<140>"));
    bsd.stop().await;

    let modern = Sink::start(
        "rsyslog-udp-5424",
        serde_json::json!({
            "address": rsyslog.address(rsyslog.ports.udp),
            "mode": "udp",
            "hostname": "shipper02",
            "app_name": "m365-shipper",
            "proc_id": "",
        }),
    );
    let cef = cef_lines();
    let small: Vec<String> = cef.into_iter().filter(|l| l.len() < 1300).take(5).collect();
    assert!(!small.is_empty());
    let receipt = modern.send(&small).await;
    assert_eq!(receipt.await, BatchStatus::Delivered);
    let received = rsyslog.wait_for(1 + small.len()).await;
    let msgs: HashSet<&String> = received[1..].iter().map(|r| &r.msg).collect();
    assert_eq!(msgs, small.iter().collect());
    assert!(
        received[1..]
            .iter()
            .all(|r| r.hostname == "shipper02" && r.procid == "-")
    );
    modern.stop().await;
}

#[tokio::test]
async fn tcp_newline_framing_rfc3164_for_cef_collectors() {
    let dir = temp_dir();
    let rsyslog = Rsyslog::start(dir.path(), None);
    let lines = cef_lines();
    let sink = Sink::start(
        "rsyslog-tcp-3164",
        serde_json::json!({
            "address": rsyslog.address(rsyslog.ports.tcp),
            "format": "rfc3164",
            "framing": "newline",
            "facility": "authpriv",
            "hostname": "shipper01",
            "app_name": "",
        }),
    );
    let receipt = sink.send(&lines).await;
    assert_eq!(receipt.await, BatchStatus::Delivered);
    let received = rsyslog.wait_for(lines.len()).await;
    assert_eq!(received.len(), lines.len());
    for (line, got) in lines.iter().zip(&received) {
        assert_eq!(got.pri, "86", "authpriv (10) × 8 + informational (6)");
        assert_eq!(got.hostname, "shipper01");
        // No TAG: the CEF spec's own shape, `Mmm dd hh:mm:ss host CEF:0|…`.
        assert!(
            got.rawmsg.ends_with(&format!(" shipper01 {line}")),
            "{}",
            got.rawmsg
        );
    }
    sink.stop().await;
}

#[tokio::test]
async fn a_newline_in_a_value_cannot_forge_a_second_message() {
    let metrics = siemflow_core::metrics::prometheus();
    let dir = temp_dir();
    let rsyslog = Rsyslog::start(dir.path(), None);
    let forged = "CEF:0|Contoso|Shipper|1|x|y|5|msg=innocent\n<13>1 2026-01-01T00:00:00Z evil forged - - - forged\r\nmore".to_string();
    let sink = Sink::start(
        "rsyslog-injection",
        serde_json::json!({
            "address": rsyslog.address(rsyslog.ports.tcp),
            "framing": "newline",
            "hostname": "shipper01",
        }),
    );
    let receipt = sink
        .send(&[
            forged.clone(),
            "CEF:0|Contoso|Shipper|1|x|y|5|msg=after".to_string(),
        ])
        .await;
    assert_eq!(receipt.await, BatchStatus::Delivered);
    let received = rsyslog.wait_for(2).await;
    assert!(received[1].msg.ends_with("msg=after"), "{received:#?}");
    assert_eq!(received.len(), 2, "no forged message: {received:#?}");
    assert!(received.iter().all(|r| r.hostname == "shipper01"));
    assert_eq!(
        received[0].msg,
        "CEF:0|Contoso|Shipper|1|x|y|5|msg=innocent\\n<13>1 2026-01-01T00:00:00Z evil forged - - - forged\\r\\nmore"
    );
    sink.stop().await;
    let rendered = metrics.render();
    assert!(
        rendered
            .lines()
            .any(|l| l.starts_with("syslog_escaped_newlines_total")
                && l.contains("component_id=\"rsyslog-injection\"")
                && l.ends_with(" 1")),
        "escaped newlines are counted:\n{rendered}"
    );

    // Octet counting without escaping: the length prefix keeps it one message too
    // (rsyslog itself then shows the line break as #012).
    let counted = Sink::start(
        "rsyslog-injection-counted",
        serde_json::json!({
            "address": rsyslog.address(rsyslog.ports.tcp),
            "framing": "octet_counting",
            "escape_newlines": false,
            "hostname": "shipper01",
        }),
    );
    let receipt = counted.send(std::slice::from_ref(&forged)).await;
    assert_eq!(receipt.await, BatchStatus::Delivered);
    let received = rsyslog.wait_for(3).await;
    assert_eq!(received.len(), 3, "{received:#?}");
    assert!(
        received[2]
            .msg
            .starts_with("CEF:0|Contoso|Shipper|1|x|y|5|msg=innocent#012<13>1")
    );
    assert_eq!(received[2].hostname, "shipper01");
    counted.stop().await;
}

#[tokio::test]
async fn rsyslog_killed_and_restarted_on_the_same_port_gets_every_message() {
    let dir = temp_dir();
    let mut rsyslog = Rsyslog::start(dir.path(), None);
    let sink = Sink::start(
        "rsyslog-restart",
        serde_json::json!({
            "address": rsyslog.address(rsyslog.ports.tcp),
            "hostname": "shipper01",
            "retry": { "initial_backoff": "20ms", "max_backoff": "200ms" },
        }),
    );
    let batch = |name: &str| -> Vec<String> {
        (0..50)
            .map(|i| format!("CEF:0|Contoso|Shipper|1|{name}|{name}-{i}|3|"))
            .collect()
    };
    let first = batch("first");
    assert_eq!(sink.send(&first).await.await, BatchStatus::Delivered);
    rsyslog.wait_for(50).await;

    // SIGKILL: no goodbye, the listener and the connection vanish.
    rsyslog.kill();
    let second = batch("second");
    let receipt = sink.send(&second).await;
    for _ in 0..(PATIENCE.as_millis() / 10) {
        if sink.health.ready().is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        sink.health.ready().is_err(),
        "unhealthy while rsyslog is down"
    );
    let ports = rsyslog.ports;
    drop(rsyslog);
    let rsyslog = Rsyslog::start(dir.path(), Some(ports));
    assert_eq!(rsyslog.ports.tcp, ports.tcp, "restarted on the same port");
    assert_eq!(receipt.await, BatchStatus::Delivered);
    let third = batch("third");
    assert_eq!(sink.send(&third).await.await, BatchStatus::Delivered);
    let received = rsyslog.wait_for(150).await;
    let got: HashSet<&str> = received.iter().map(|r| r.msg.as_str()).collect();
    for line in first.iter().chain(&second).chain(&third) {
        assert!(got.contains(line.as_str()), "{line} was lost");
    }
    assert!(sink.health.ready().is_ok(), "healthy again");
    sink.stop().await;
}
