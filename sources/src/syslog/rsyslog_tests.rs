//! The syslog source fed by a real rsyslogd (`tests/support/rsyslogd.rs`): the test
//! writes RFC 5424 messages carrying the MDA SIEM agent's CEF lines to rsyslog's imtcp,
//! and rsyslog forwards each with omfwd to three sources — TCP with octet counting, TLS
//! with a test CA and a client certificate (mutual TLS), and UDP. Each source must read
//! rsyslog's header field for field and every CEF line as VRL's `parse_cef` reads it.

use std::time::Duration;

use siemflow_core::BatchStatus;
use siemflow_core::event::resolve_batch;
use siemflow_simulator::mda_agent;
use tokio::io::AsyncWriteExt as _;

use super::rsyslogd::{Rsyslogd, write_certificates};
use super::tests::{collect, objects, start_mode, syslog, text, vrl_parse_cef};

#[tokio::test]
async fn rsyslog_forwards_over_tcp_octet_counting_tls_and_udp() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().display().to_string();
    write_certificates(dir.path());
    let (mut tcp, tcp_address) = start_mode(
        "syslog_rsyslog_tcp",
        "tcp",
        "decoding = \"cef\"\nframing = \"octet_counting\"",
        1000,
    )
    .await;
    let tls_options = format!(
        "decoding = \"cef\"\ntls = {{ crt_file = \"{d}/server.pem\", key_file = \"{d}/server.key\", ca_file = \"{d}/ca.pem\" }}"
    );
    let (mut tls, tls_address) = start_mode("syslog_rsyslog_tls", "tls", &tls_options, 1000).await;
    let (mut udp, udp_address) =
        start_mode("syslog_rsyslog_udp", "udp", "decoding = \"cef\"", 1000).await;
    // The UDP source is up once a datagram sent to it arrives.
    let probe = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    loop {
        probe
            .send_to(
                b"<14>1 - probe - - - CEF:0|probe|probe|1|probe|probe|1|",
                udp_address,
            )
            .await
            .expect("probe");
        if let Ok(Some(batch)) =
            tokio::time::timeout(Duration::from_millis(50), udp.rx.recv()).await
        {
            resolve_batch(batch, BatchStatus::Delivered);
            break;
        }
    }
    let forward = |port: u16, extra: &str| {
        format!(
            r#"action(type="omfwd" target="127.0.0.1" port="{port}" template="RSYSLOG_SyslogProtocol23Format" action.resumeRetryCount="-1" action.resumeInterval="1" {extra})"#
        )
    };
    let config = format!(
        r#"global(workDirectory="{{dir}}/work" maxMessageSize="64k"
  defaultNetstreamDriverCAFile="{{dir}}/ca.pem"
  defaultNetstreamDriverCertFile="{{dir}}/client.pem"
  defaultNetstreamDriverKeyFile="{{dir}}/client.key")
module(load="imtcp")
ruleset(name="relay") {{
  {}
  {}
  {}
}}
input(type="imtcp" address="127.0.0.1" port="0" listenPortFileName="{{dir}}/in.port" ruleset="relay")
"#,
        forward(
            tcp_address.port(),
            r#"protocol="tcp" TCP_Framing="octet-counted""#
        ),
        forward(
            tls_address.port(),
            r#"protocol="tcp" TCP_Framing="octet-counted" StreamDriver="gtls" StreamDriverMode="1" StreamDriverAuthMode="x509/certvalid""#
        ),
        forward(udp_address.port(), r#"protocol="udp""#),
    );
    let mut rsyslog = Rsyslogd::start(dir.path(), &config);
    let input = rsyslog.wait_for_port(&dir.path().join("in.port"));

    let lines = mda_agent::agent_lines();
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", input))
        .await
        .expect("connect");
    let mut bytes = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let cef = mda_agent::cef_part(line);
        let message = format!(
            "<165>1 2026-11-02T10:15:30.{i:03}Z mda-agent-host MCAS 4711 SIEM [mda@32473 line=\"{i}\"] {cef}"
        );
        bytes.extend_from_slice(format!("{} {message}", message.len()).as_bytes());
    }
    stream.write_all(&bytes).await.expect("write to rsyslog");
    stream.shutdown().await.expect("shutdown");

    for (name, source) in [("tcp", &mut tcp), ("tls", &mut tls), ("udp", &mut udp)] {
        let events = tokio::time::timeout(
            super::super::testing::PATIENCE,
            collect(source, lines.len()),
        )
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{name}: rsyslog forwarded too little: {}",
                rsyslog.diagnostics()
            )
        });
        for (i, (line, event)) in lines.iter().zip(&events).enumerate() {
            let mut fields = event.clone();
            let header = fields.remove("syslog").expect("header");
            let header = header.as_object().expect("object");
            assert_eq!(
                fields,
                vrl_parse_cef(mda_agent::cef_part(line)),
                "{name}: {line}"
            );
            assert_eq!(
                [
                    text(header, "facility"),
                    text(header, "severity"),
                    text(header, "hostname"),
                    text(header, "appname"),
                    text(header, "msgid"),
                ],
                ["local4", "notice", "mda-agent-host", "MCAS", "SIEM"],
                "{name}"
            );
            assert_eq!(text(header, "procid"), "4711");
            let sd = syslog(event)
                .get("structured_data")
                .and_then(|v| v.as_object())
                .expect("sd");
            let element = sd
                .get("mda@32473")
                .and_then(|v| v.as_object())
                .expect("element");
            assert_eq!(text(element, "line"), i.to_string());
            let timestamp = header
                .get("timestamp")
                .and_then(|v| v.as_timestamp())
                .expect("timestamp");
            let sent =
                chrono::DateTime::parse_from_rfc3339(&format!("2026-11-02T10:15:30.{i:03}Z"))
                    .expect("time");
            assert_eq!(*timestamp, sent, "{name}");
        }
        assert_eq!(source.counter("component_errors_total", ""), 0, "{name}");
        assert!(
            source.rx.try_recv().map(|b| objects(&b)).is_none(),
            "{name}: nothing more"
        );
    }
    rsyslog.kill();
    for source in [tcp, tls, udp] {
        source.stop(super::super::testing::PATIENCE, |_| {}).await;
    }
}
