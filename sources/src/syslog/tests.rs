//! The syslog source against loopback peers: the MDA SIEM-agent emulator, hostile input,
//! a connection flood, a blocked sink, TLS with client certificates. What a real rsyslog
//! forwards to it is tested in `sources/tests/syslog_rsyslog.rs`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use siemflow_core::event::{Batch, resolve_batch};
use siemflow_core::metrics::{ComponentKind, ComponentLabels, ComponentMetrics};
use siemflow_core::{BatchStatus, SourceConfig};
use siemflow_simulator::mda_agent::{self, Transport};
use tokio::io::AsyncWriteExt as _;
use vrl::value::{ObjectMap, Value};

use super::SyslogSourceConfig;
use super::config::{Format, SyslogDecoding};
use super::message::MessageDecoder;
use crate::testing::{PATIENCE, RunningSource, eventually};

fn config(text: &str) -> SyslogSourceConfig {
    let config: SyslogSourceConfig = toml::from_str(text).expect("valid syslog config");
    assert!(config.check().is_empty(), "{:?}", config.check());
    config
}

/// A loopback port nobody listens on now (the source binds it right after).
pub(super) fn free_port(udp: bool) -> SocketAddr {
    if udp {
        std::net::UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr())
    } else {
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|s| s.local_addr())
    }
    .expect("a free port")
}

/// Starts a source listening on a fresh loopback port, with `extra` options.
pub(super) async fn start(
    id: &str,
    extra: &str,
    udp: bool,
    buffer_events: usize,
) -> (RunningSource, SocketAddr) {
    start_mode(id, if udp { "udp" } else { "tcp" }, extra, buffer_events).await
}

/// Starts a source in `mode`; for TCP, returns once it accepts connections.
pub(super) async fn start_mode(
    id: &str,
    mode: &str,
    extra: &str,
    buffer_events: usize,
) -> (RunningSource, SocketAddr) {
    let address = free_port(mode == "udp");
    let config = config(&format!(
        "address = \"{address}\"\nmode = \"{mode}\"\n{extra}"
    ));
    let state = std::env::temp_dir();
    let source = RunningSource::start(id, "syslog", &state, buffer_events, |cx| config.build(cx));
    if mode == "tcp" {
        // The listener is up once a connection is accepted (it sends nothing, so no event).
        eventually("the syslog listener", || {
            std::net::TcpStream::connect(address).is_ok()
        })
        .await;
    }
    (source, address)
}

/// Receives until `count` events arrived, settling each batch as delivered.
pub(super) async fn collect(source: &mut RunningSource, count: usize) -> Vec<ObjectMap> {
    let mut events = Vec::new();
    while events.len() < count {
        let batch = tokio::time::timeout(PATIENCE, source.rx.recv())
            .await
            .unwrap_or_else(|_| panic!("{} of {count} events within {PATIENCE:?}", events.len()))
            .expect("open");
        events.extend(objects(&batch));
        resolve_batch(batch, BatchStatus::Delivered);
    }
    events
}

pub(super) fn objects(batch: &Batch) -> Vec<ObjectMap> {
    batch
        .iter()
        .map(|e| e.value.as_object().expect("object event").clone())
        .collect()
}

pub(super) fn text(object: &ObjectMap, key: &str) -> String {
    object
        .get(key)
        .map(|v| v.to_string_lossy().into_owned())
        .unwrap_or_default()
}

pub(super) fn syslog(object: &ObjectMap) -> &ObjectMap {
    object
        .get("syslog")
        .and_then(Value::as_object)
        .expect("a syslog object")
}

/// VRL's `parse_cef`, run apart from the source: the oracle the source must agree with.
pub(super) fn vrl_parse_cef(line: &str) -> ObjectMap {
    let functions = vrl::stdlib::all();
    let program = vrl::compiler::compile("parse_cef!(.message)", &functions)
        .expect("compiles")
        .program;
    let mut object = ObjectMap::new();
    object.insert("message".into(), Value::from(line));
    let mut target = vrl::compiler::TargetValue {
        value: Value::Object(object),
        metadata: Value::Object(ObjectMap::new()),
        secrets: vrl::value::Secrets::default(),
    };
    let tz = vrl::compiler::TimeZone::parse("UTC").expect("utc");
    match vrl::compiler::runtime::Runtime::default().resolve(&mut target, &program, &tz) {
        Ok(Value::Object(object)) => object,
        other => panic!("parse_cef on {line:?}: {other:?}"),
    }
}

#[tokio::test]
async fn mda_agent_lines_over_tcp_and_udp_are_read_as_vrl_parse_cef_reads_them() {
    let lines = mda_agent::agent_lines();
    for transport in [Transport::Tcp, Transport::Udp] {
        let udp = transport == Transport::Udp;
        let id = format!("syslog_mda_{}", if udp { "udp" } else { "tcp" });
        let (mut source, address) = start(&id, "decoding = \"cef\"", udp, 1000).await;
        if udp {
            // No listener signal for UDP: send until the first line arrives.
            let mut first = Vec::new();
            while first.is_empty() {
                mda_agent::send(address, transport, &lines[..1])
                    .await
                    .expect("send");
                if let Ok(Some(batch)) =
                    tokio::time::timeout(std::time::Duration::from_millis(50), source.rx.recv())
                        .await
                {
                    first = objects(&batch);
                    resolve_batch(batch, BatchStatus::Delivered);
                }
            }
        }
        mda_agent::send(address, transport, &lines)
            .await
            .expect("send");
        let events = collect(&mut source, lines.len()).await;
        for (line, event) in lines.iter().zip(&events) {
            let mut fields = event.clone();
            let header = fields.remove("syslog").expect("syslog object");
            assert_eq!(
                fields,
                vrl_parse_cef(mda_agent::cef_part(line)),
                "{transport:?}: {line}"
            );
            assert!(!fields.contains_key("parse_error"));
            // The agent's ISO timestamp prefix is the header; one line also names a host.
            let header = header.as_object().expect("object");
            assert!(header.contains_key("timestamp"), "{header:?}");
            if line.contains(" LAB-EUW-ARCTEST ") {
                assert_eq!(text(header, "hostname"), "LAB-EUW-ARCTEST");
            }
        }
        assert_eq!(
            text(&events[0], "deviceEventClassId"),
            "EVENT_CATEGORY_LOGOUT"
        );
        assert_eq!(text(&events[0], "c6a1Label"), "Device IPv6 Address");
        assert_eq!(source.counter("component_errors_total", "parse_failed"), 0);
        source.stop(PATIENCE, |_| {}).await;
    }
}

fn decoder(id: &str, format: Format, decoding: SyslogDecoding) -> MessageDecoder {
    siemflow_core::metrics::prometheus();
    let metrics = ComponentMetrics::new(ComponentLabels {
        id: id.to_string(),
        kind: ComponentKind::Source,
        type_name: "syslog".to_string(),
    });
    MessageDecoder::new(format, decoding, &metrics).expect("decoder")
}

fn decode(decoder: &mut MessageDecoder, raw: &[u8]) -> ObjectMap {
    assert!(!raw.is_empty());
    let mut batch = Vec::new();
    decoder.push(raw, "127.0.0.1:9", &mut batch);
    assert_eq!(batch.len(), 1, "one event per message, always");
    batch[0].value.as_object().expect("object").clone()
}

#[test]
fn rfc5424_and_rfc3164_headers_become_fields() {
    let mut d = decoder("syslog_headers", Format::Auto, SyslogDecoding::Text);
    let e = decode(
        &mut d,
        br#"<165>1 2026-11-02T10:15:30.123Z shipper01 m365-shipper 4711 AUDIT [m365@32473 tenant="t\"1"][x@1 a="b"] hello world"#,
    );
    let s = syslog(&e);
    assert_eq!(text(&e, "message"), "hello world");
    assert_eq!(
        [
            text(s, "facility"),
            text(s, "severity"),
            text(s, "hostname"),
            text(s, "appname"),
            text(s, "msgid"),
            text(s, "peer")
        ],
        [
            "local4",
            "notice",
            "shipper01",
            "m365-shipper",
            "AUDIT",
            "127.0.0.1:9"
        ]
    );
    assert_eq!(s.get("procid"), Some(&Value::from(4711)));
    assert_eq!(s.get("version"), Some(&Value::from(1)));
    assert_eq!(
        s.get("timestamp")
            .and_then(Value::as_timestamp)
            .map(|t| t.to_rfc3339()),
        Some("2026-11-02T10:15:30.123+00:00".to_string())
    );
    let sd = s
        .get("structured_data")
        .and_then(Value::as_object)
        .expect("sd");
    assert_eq!(
        text(sd["m365@32473"].as_object().expect("element"), "tenant"),
        "t\"1"
    );
    assert_eq!(text(sd["x@1"].as_object().expect("element"), "a"), "b");

    let e = decode(
        &mut d,
        b"<34>Oct 11 22:14:15 mymachine su[12]: 'su root' failed\r",
    );
    let s = syslog(&e);
    assert_eq!(text(&e, "message"), "'su root' failed");
    assert_eq!(
        [
            text(s, "facility"),
            text(s, "severity"),
            text(s, "hostname"),
            text(s, "appname")
        ],
        ["auth", "crit", "mymachine", "su"]
    );
    assert_eq!(s.get("procid"), Some(&Value::from(12)));
    assert!(!e.contains_key("parse_error"));
}

#[test]
fn cef_and_leef_payloads_behind_either_header() {
    let mut cef = decoder("syslog_cef", Format::Auto, SyslogDecoding::Cef);
    let e = decode(&mut cef, br"<86>Nov  2 10:15:30 shipper01 CEF:0|Contoso|M365 \| Shipper|1.4.0|AAD-50126|Sign-in failure|5|msg=a\=b suser=zo\u00eb cs1Label=Tenant cs1=x");
    assert_eq!(text(&e, "deviceProduct"), "M365 | Shipper");
    assert_eq!(text(&e, "msg"), "a=b");
    assert_eq!(text(syslog(&e), "hostname"), "shipper01");
    assert_eq!(text(syslog(&e), "facility"), "authpriv");
    let e = decode(
        &mut cef,
        b"<14>1 2026-11-02T10:15:30Z h app - - [a@1 k=\"CEF:0|no\"] CEF:0|V|P|1|E|N|3|k=v",
    );
    assert_eq!(text(&e, "deviceVendor"), "V");
    assert_eq!(text(&e, "k"), "v");

    let mut leef = decoder("syslog_leef", Format::Auto, SyslogDecoding::Leef);
    let e = decode(&mut leef, b"<86>Nov  2 10:15:30 shipper01 LEEF:2.0|Contoso|M365 Shipper|1.4.0|AAD-SignIn-Failure|^|devTime=1793614530123^cat=AzureActiveDirectory^sev=5^usrName=zo\xc3\xab@contoso.example");
    assert_eq!(text(&e, "eventId"), "AAD-SignIn-Failure");
    assert_eq!(text(&e, "usrName"), "zoë@contoso.example");
    assert_eq!(text(&e, "delimiter"), "^");
    assert_eq!(text(syslog(&e), "hostname"), "shipper01");
}

#[test]
fn what_cannot_be_read_is_kept_whole_and_counted() {
    let id = "syslog_hostile";
    let mut d = decoder(id, Format::Auto, SyslogDecoding::Cef);
    let before = crate::testing::counter_value("component_errors_total", id, "parse_failed");
    let e = decode(
        &mut d,
        b"<14>1 2026-11-02T10:15:30Z h a - - - not cef at all",
    );
    assert_eq!(text(&e, "message"), "not cef at all");
    assert!(text(&e, "parse_error").contains("CEF"), "{e:?}");
    let e = decode(&mut d, b"\xff\xfe\0garbage\0");
    assert_eq!(text(&e, "message"), "\u{fffd}\u{fffd}\0garbage");
    assert!(e.contains_key("parse_error"));
    let mut t = decoder(id, Format::Auto, SyslogDecoding::Text);
    let e = decode(&mut t, b"no header here");
    assert_eq!(text(&e, "message"), "no header here");
    assert!(text(&e, "parse_error").contains("not a syslog message"));
    let mut j = decoder(id, Format::None, SyslogDecoding::Json);
    assert_eq!(text(&decode(&mut j, br#"{"a":"b"}"#), "a"), "b");
    assert!(decode(&mut j, b"[1]").contains_key("parse_error"));
    assert_eq!(
        crate::testing::counter_value("component_errors_total", id, "parse_failed") - before,
        4
    );
    assert!(crate::testing::counter_value("component_errors_total", id, "invalid_utf8") >= 1);
}

#[tokio::test]
async fn fuzz_corpus_over_tcp_yields_events_and_counted_errors_and_no_panic() {
    let (mut source, address) = start(
        "syslog_fuzz",
        "decoding = \"cef\"\nmax_message_bytes = 64",
        false,
        1000,
    )
    .await;
    let corpus: Vec<&[u8]> = vec![
        b"<14>1 - - - - - - CEF:0|a|b|c|d|e|1|k=v\n",
        b"\n",
        b"\0\0\0\n",
        b"99999999999 no count\n",
        b"5 ab\ncd",
        b"garbage without cef\n",
        b"\xff\xfe\xfd\n",
        &[b'x'; 200],
        b"\n",
        b"60 short",
    ];
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    for piece in &corpus {
        stream.write_all(piece).await.expect("write");
    }
    stream.shutdown().await.expect("shutdown");
    drop(stream);
    // Events: the CEF line, the line whose count is too long to be one, the 5-octet
    // frame, the garbage, the invalid UTF-8 and the truncated 60-octet frame. Blank and
    // NUL-only lines carry nothing (no event); too long: the 200 x's up to their LF.
    let events = collect(&mut source, 6).await;
    let ok: Vec<&ObjectMap> = events
        .iter()
        .filter(|e| !e.contains_key("parse_error"))
        .collect();
    assert_eq!(ok.len(), 1, "{events:#?}");
    assert_eq!(text(ok[0], "deviceVendor"), "a");
    assert!(events.iter().any(|e| text(e, "message") == "ab\ncd"));
    assert_eq!(source.counter("component_errors_total", "parse_failed"), 5);
    assert_eq!(
        source.counter("component_errors_total", "message_too_long"),
        1
    );
    source.stop(PATIENCE, |_| {}).await;
}

#[tokio::test]
async fn a_connection_flood_is_refused_beyond_max_connections_and_service_goes_on() {
    // 1,000 connections need 1,000 descriptors here and up to 50 in the source.
    raise_descriptor_limit(2_500);
    let (mut source, address) = start("syslog_flood", "max_connections = 50", false, 1000).await;
    let mut open = Vec::new();
    for _ in 0..1000 {
        match tokio::net::TcpStream::connect(address).await {
            Ok(stream) => open.push(stream),
            Err(error) => panic!("connect: {error}"),
        }
    }
    eventually("950 refusals counted", || {
        source.counter("component_errors_total", "connection_refused") >= 950
    })
    .await;
    // A refused connection is closed by the source: reading it ends.
    let mut closed = 0;
    for stream in &mut open {
        let mut byte = [0u8; 1];
        if let Ok(Ok(0)) = tokio::time::timeout(
            std::time::Duration::from_millis(1),
            tokio::io::AsyncReadExt::read(stream, &mut byte),
        )
        .await
        {
            closed += 1;
        }
    }
    assert!(closed >= 1, "refused connections are closed");
    drop(open);
    // Once the flood is gone a new sender is served.
    let mut sender = loop {
        let mut stream = tokio::net::TcpStream::connect(address)
            .await
            .expect("connect");
        if stream
            .write_all(b"<14>1 - h a - - - after the flood\n")
            .await
            .is_ok()
        {
            break stream;
        }
    };
    sender.shutdown().await.expect("shutdown");
    let events = collect(&mut source, 1).await;
    assert_eq!(text(&events[0], "message"), "after the flood");
    source.stop(PATIENCE, |_| {}).await;
}

fn raise_descriptor_limit(wanted: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write and read a plain struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < wanted {
            assert!(
                limit.rlim_max >= wanted,
                "this test needs {wanted} descriptors; the hard limit is {}",
                limit.rlim_max
            );
            limit.rlim_cur = wanted;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

#[tokio::test]
async fn a_blocked_sink_slows_the_sender_bounds_memory_and_loses_nothing() {
    let (mut source, address) = start("syslog_blocked", "batch_max_events = 50", false, 100).await;
    // 15 MB: far more than the kernel's socket buffers and the source's bounds hold.
    const MESSAGES: usize = 50_000;
    fn line(i: usize) -> String {
        format!("<14>1 - h a - - - message {i:08} {}\n", "p".repeat(256))
    }
    let total_bytes: u64 = (0..MESSAGES).map(|i| line(i).len() as u64).sum();
    let written = Arc::new(AtomicU64::new(0));
    let finished = Arc::new(AtomicBool::new(false));
    let sender = {
        let (written, finished) = (Arc::clone(&written), Arc::clone(&finished));
        tokio::spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(address)
                .await
                .expect("connect");
            let mut chunk = Vec::new();
            for i in 0..MESSAGES {
                chunk.extend_from_slice(line(i).as_bytes());
                if chunk.len() >= 64 * 1024 || i + 1 == MESSAGES {
                    stream.write_all(&chunk).await.expect("write");
                    written.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    chunk.clear();
                }
            }
            stream.shutdown().await.expect("shutdown");
            finished.store(true, Ordering::Relaxed);
        })
    };
    // Nobody reads: the 100-event buffer fills, the source waits with its batch and stops
    // reading, the socket buffers fill and the sender's writes block. Stalled: neither the
    // source's reading nor the sender's writing moves over a quiet spell (as the e2e
    // backpressure test decides it).
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let before = (
            source.counter("component_received_events_total", ""),
            written.load(Ordering::Relaxed),
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let after = (
            source.counter("component_received_events_total", ""),
            written.load(Ordering::Relaxed),
        );
        if after.0 > 100 && before == after {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never stalled: {after:?}"
        );
    }
    let read_bytes = source.counter("component_received_bytes_total", "");
    let read_events = source.counter("component_received_events_total", "");
    // Memory: the buffer's 100 events, one batch of 50 and what one read completed (a
    // read takes at most 256 KiB: about 900 of these messages).
    assert!(
        read_events <= 100 + 50 + 1_000,
        "read {read_events} events while blocked"
    );
    assert!(
        read_bytes < total_bytes / 10,
        "read {read_bytes} of {total_bytes} bytes while blocked"
    );
    assert!(
        !finished.load(Ordering::Relaxed),
        "the sender is slowed, not served"
    );
    // Unblock: every message arrives, in order, none lost.
    let events = collect(&mut source, MESSAGES).await;
    for (i, event) in events.iter().enumerate() {
        let message = text(event, "message");
        assert!(
            message.starts_with(&format!("message {i:08} ")),
            "event {i}: {message}"
        );
    }
    sender.await.expect("sender");
    assert!(written.load(Ordering::Relaxed) >= total_bytes);
    assert_eq!(source.counter("component_errors_total", ""), 0);
    source.stop(PATIENCE, |_| {}).await;
}

/// A TLS client trusting the test CA, with the client certificate or without one.
fn tls_connector(dir: &std::path::Path, with_certificate: bool) -> tokio_rustls::TlsConnector {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(dir.join("ca.pem")).expect("ca") {
        roots.add(cert.expect("cert")).expect("add");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let config = if with_certificate {
        let certs = CertificateDer::pem_file_iter(dir.join("client.pem"))
            .expect("client.pem")
            .collect::<Result<Vec<_>, _>>()
            .expect("certs");
        let key = PrivateKeyDer::from_pem_file(dir.join("client.key")).expect("key");
        builder.with_client_auth_cert(certs, key).expect("identity")
    } else {
        builder.with_no_client_auth()
    };
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

#[tokio::test]
async fn tls_with_client_certificates_admits_only_clients_the_ca_signed() {
    let dir = tempfile::tempdir().expect("tempdir");
    super::rsyslogd::write_certificates(dir.path());
    let d = dir.path().display();
    let (mut source, address) = start_mode(
        "syslog_mtls",
        "tls",
        &format!("tls = {{ crt_file = \"{d}/server.pem\", key_file = \"{d}/server.key\", ca_file = \"{d}/ca.pem\" }}"),
        100,
    )
    .await;
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").expect("name");
    // The listener is up once a connection is accepted (probing with plain TCP would
    // count as a failed handshake).
    let connector = tls_connector(dir.path(), true);
    let mut tls = loop {
        if let Ok(tcp) = tokio::net::TcpStream::connect(address).await {
            break connector
                .connect(name.clone(), tcp)
                .await
                .expect("handshake with a client certificate");
        }
        tokio::task::yield_now().await;
    };
    tls.write_all(b"26 <14>1 - h a - - - over tls")
        .await
        .expect("write");
    tls.shutdown().await.expect("close_notify");
    let events = collect(&mut source, 1).await;
    assert_eq!(text(&events[0], "message"), "over tls");

    // Without a client certificate the handshake fails, nothing is read, and it is counted.
    let tcp = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    let refused = async {
        let mut tls = tls_connector(dir.path(), false).connect(name, tcp).await?;
        tls.write_all(b"31 <14>1 - h a - - - must not arrive")
            .await?;
        tls.flush().await?;
        let mut byte = [0u8; 1];
        tokio::io::AsyncReadExt::read(&mut tls, &mut byte).await
    };
    assert!(
        refused.await.is_err(),
        "a client without a certificate is refused"
    );
    eventually("the refusal counted", || {
        source.counter("component_errors_total", "tls_handshake_failed") >= 1
    })
    .await;
    assert!(
        source.rx.try_recv().is_none(),
        "nothing from the refused client"
    );
    source.stop(PATIENCE, |_| {}).await;
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    fn formats() -> impl Strategy<Value = Format> {
        prop_oneof![
            Just(Format::Auto),
            Just(Format::Rfc5424),
            Just(Format::Rfc3164),
            Just(Format::None)
        ]
    }

    fn decodings() -> impl Strategy<Value = SyslogDecoding> {
        prop_oneof![
            Just(SyslogDecoding::Text),
            Just(SyslogDecoding::Cef),
            Just(SyslogDecoding::Leef),
            Just(SyslogDecoding::Json)
        ]
    }

    /// Bytes that look like syslog often enough to reach every branch.
    fn messages() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(b"<14>1 ".to_vec()),
            Just(b"<13>Oct 11 22:14:15 host app[1]: ".to_vec()),
            Just(b"2017-11-22T17:50:04.000Z ".to_vec()),
            Just(b"CEF:0|V|P|1|E|N|5|".to_vec()),
            Just(b"LEEF:2.0|V|P|1|E|^|".to_vec()),
            Just(b"k=v ".to_vec()),
            Just(b"[id a=\"b\"] ".to_vec()),
            Just(b"- ".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..20),
        ];
        proptest::collection::vec(piece, 0..8).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Any message: no panic, one event unless it is blank, and an unreadable one is
        /// kept whole with a parse error.
        #[test]
        fn any_message_is_one_event_or_blank(raw in messages(), format in formats(), decoding in decodings()) {
            let mut d = decoder("syslog_props", format, decoding);
            let mut batch = Vec::new();
            let outcome = d.push(&raw, "192.0.2.1:514", &mut batch);
            let blank = String::from_utf8_lossy(&raw).trim_end_matches(['\r', '\n', '\0']).is_empty();
            prop_assert_eq!(batch.len(), usize::from(!blank));
            if let Some(event) = batch.first() {
                let object = event.value.as_object().expect("object");
                prop_assert_eq!(text(syslog(object), "peer"), "192.0.2.1:514");
                prop_assert_eq!(object.contains_key("parse_error"), outcome.parse_error.is_some());
                if outcome.parse_error.is_some() {
                    prop_assert!(object.contains_key("message"));
                }
            }
        }

        /// A CEF extension value of any text reads as VRL's parse_cef reads it.
        #[test]
        fn cef_payloads_agree_with_vrl(value in "[ -~\u{e9}\u{6771}]{0,40}", header in prop_oneof![
            Just("<165>1 2026-11-02T10:15:30Z h a 1 M - "),
            Just("<86>Nov  2 10:15:30 shipper01 "),
            Just("2017-11-22T17:50:04.000Z "),
            Just(""),
        ]) {
            let payload = format!("CEF:0|Contoso|M365|1|E1|Name|5|msg={value} suser=u");
            let mut d = decoder("syslog_props_cef", Format::Auto, SyslogDecoding::Cef);
            let mut batch = Vec::new();
            d.push(format!("{header}{payload}").as_bytes(), "p", &mut batch);
            let mut fields = batch[0].value.as_object().expect("object").clone();
            fields.remove("syslog");
            let payload = payload.trim_end_matches(['\r', '\n', '\0']);
            let oracle = std::panic::catch_unwind(|| vrl_parse_cef(payload));
            match oracle {
                Ok(expected) => prop_assert_eq!(fields, expected),
                Err(_) => prop_assert!(fields.contains_key("parse_error")),
            }
        }
    }
}

#[tokio::test]
async fn udp_datagrams_the_kernel_drops_while_the_sink_is_blocked_are_all_counted() {
    let (mut source, address) = start("syslog_udp_drops", "batch_max_events = 50", true, 100).await;
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    // The source is up once a probe arrives; every probe sent counts below.
    let mut probes = 0usize;
    let mut received = 0usize;
    while received == 0 {
        socket
            .send_to(b"<14>1 - probe a - - - probe", address)
            .await
            .expect("probe");
        probes += 1;
        if let Ok(Some(batch)) =
            tokio::time::timeout(std::time::Duration::from_millis(50), source.rx.recv()).await
        {
            received += batch.len();
            resolve_batch(batch, BatchStatus::Delivered);
        }
    }
    // Nobody reads the buffer now: the source blocks, its socket's receive buffer fills
    // and the kernel drops the rest. Loopback loses nothing else.
    const SENT: usize = 20_000;
    for i in 0..SENT {
        let message = format!("<14>1 - h a - - - datagram {i:05}");
        socket
            .send_to(message.as_bytes(), address)
            .await
            .expect("send");
    }
    // Unblock and drain: what was not delivered was dropped by the kernel, and counted.
    let mut dropped = 0;
    let deadline = tokio::time::Instant::now() + PATIENCE * 3;
    while received + dropped < SENT + probes {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{received} received + {dropped} counted as dropped of {} sent",
            SENT + probes
        );
        match tokio::time::timeout(std::time::Duration::from_millis(100), source.rx.recv()).await {
            Ok(Some(batch)) => {
                received += batch.len();
                resolve_batch(batch, BatchStatus::Delivered);
            }
            Ok(None) => panic!("the source closed its output"),
            Err(_) => {}
        }
        dropped = source.counter("component_errors_total", "udp_dropped") as usize;
    }
    assert_eq!(
        received + dropped,
        SENT + probes,
        "each datagram delivered or counted"
    );
    assert!(
        dropped > 0,
        "the blocked sink made the kernel drop datagrams"
    );
    source.stop(PATIENCE, |_| {}).await;
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_read_timeout_and_counted() {
    let (mut source, address) = start("syslog_idle", "read_timeout = \"200ms\"", false, 100).await;
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    // A message without its newline, then silence: the source closes the connection and
    // still delivers what it had (the stream ended for it).
    stream
        .write_all(b"<14>1 - h a - - - unfinished")
        .await
        .expect("write");
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(
        PATIENCE,
        tokio::io::AsyncReadExt::read(&mut stream, &mut byte),
    )
    .await
    .expect("the source closes the idle connection");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let events = collect(&mut source, 1).await;
    assert_eq!(text(&events[0], "message"), "unfinished");
    eventually("the timeout counted", || {
        source.counter("component_errors_total", "read_timeout") >= 1
    })
    .await;
    source.stop(PATIENCE, |_| {}).await;
}
