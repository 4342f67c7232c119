//! The `syslog` source in the real binary, run with a descriptor limit far below a flood
//! of connections: it refuses what `max_connections` does not allow, counts each refusal,
//! keeps serving, and delivers what the connections it holds send.

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use crate::harness::{Workspace, free_port, wait_for};

/// Descriptors the siemflow process may open: a few dozen for itself, the held
/// connections, room for the one being refused — far fewer than the flood.
const FILE_LIMIT: u64 = 256;
const FLOOD: usize = 1_000;
const MAX_CONNECTIONS: usize = 100;

/// The test process holds the flood's client ends: it needs more than the usual 1024.
fn raise_own_descriptor_limit(wanted: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write a plain struct we own.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        if limit.rlim_cur < wanted {
            assert!(
                limit.rlim_max >= wanted,
                "this test needs {wanted} descriptors; the hard limit is {}",
                limit.rlim_max
            );
            limit.rlim_cur = wanted;
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        }
    }
}

#[test]
fn a_thousand_connections_are_refused_beyond_max_connections_under_a_256_descriptor_limit() {
    raise_own_descriptor_limit(FLOOD as u64 + 500);
    let ws = Workspace::new();
    let port = free_port();
    ws.write(
        "p.toml",
        &format!(
            r#"
data_dir = "data"
[api]
address = "127.0.0.1:0"

[sources.in]
type = "syslog"
address = "127.0.0.1:{port}"
max_connections = {MAX_CONNECTIONS}

[sinks.out]
type = "file"
inputs = ["in"]
path = "out/out.ndjson"
"#
        ),
    );
    let mut pipeline = ws.run_with_file_limit("p.toml", FILE_LIMIT);
    let api = pipeline.api();
    // Each flood connection sends one message and stays open: the first MAX_CONNECTIONS
    // hold every slot; each later one is accepted and closed at once, its message unread
    // (syslog has no way to say "later"), and counted.
    let mut flood = Vec::with_capacity(FLOOD);
    for i in 0..FLOOD {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        // A refused connection may already be closed: its write can fail, as for any sender.
        let _ = stream.write_all(format!("<14>1 - flood app - - - message {i:04}\n").as_bytes());
        flood.push(stream);
    }
    wait_for(
        "every connection accepted or refused",
        Duration::from_secs(60),
        || {
            let refused = pipeline.metric(
                "component_errors_total",
                &["component_id=\"in\"", "error_type=\"connection_refused\""],
            );
            (refused >= (FLOOD - MAX_CONNECTIONS) as f64).then_some(())
        },
    );
    assert!(
        pipeline.child.try_wait().expect("try_wait").is_none(),
        "still running"
    );
    assert!(crate::harness::http_get(&api, "/health").is_some_and(|b| b == "ok\n"));
    let held = wait_for(
        "the held connections' messages",
        Duration::from_secs(60),
        || {
            let lines = ws.lines("out/out.ndjson");
            (lines.len() >= MAX_CONNECTIONS).then_some(lines)
        },
    );
    // The flood ends: the slots free up (the source sees each end) and a new sender is
    // served.
    drop(flood);
    wait_for(
        "the held connections closed",
        Duration::from_secs(60),
        || {
            let open = pipeline.metric("syslog_connections", &["component_id=\"in\""]);
            (open == 0.0).then_some(())
        },
    );
    let mut late = TcpStream::connect(("127.0.0.1", port)).expect("connect after");
    late.write_all(b"<14>1 - late app - - - after the flood\n")
        .expect("write");
    drop(late);
    let lines = wait_for("the late message", Duration::from_secs(60), || {
        let lines = ws.lines("out/out.ndjson");
        lines
            .iter()
            .any(|l| l.contains("after the flood"))
            .then_some(lines)
    });
    assert_eq!(
        held.len(),
        MAX_CONNECTIONS,
        "one message per held connection"
    );
    assert_eq!(lines.len(), MAX_CONNECTIONS + 1, "nothing else: {lines:?}");
    let refused = pipeline.metric(
        "component_errors_total",
        &["component_id=\"in\"", "error_type=\"connection_refused\""],
    );
    assert_eq!(
        refused as usize + MAX_CONNECTIONS,
        FLOOD,
        "every connection was either served or refused and counted"
    );
}

/// `siemflow simulate mda-agent` sends the agent's documented lines, as written, to a
/// receiver: over TCP each followed by LF, `--repeat` times; over UDP one datagram each.
#[test]
fn simulate_mda_agent_sends_the_documented_lines() {
    use std::io::Read;
    use std::process::Command;

    let agent = siemflow_simulator::mda_agent::agent_lines();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let to = listener.local_addr().expect("address").to_string();
    let sender = Command::new(crate::harness::binary())
        .args(["simulate", "mda-agent", "--to", &to, "--repeat", "2"])
        .output();
    let (mut stream, _) = listener.accept().expect("the agent connects");
    let mut received = String::new();
    stream.read_to_string(&mut received).expect("read");
    let output = sender.expect("run siemflow");
    assert!(output.status.success(), "{output:?}");
    let want: Vec<&str> = agent.iter().chain(agent.iter()).copied().collect();
    assert_eq!(received, format!("{}\n", want.join("\n")));

    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    let to = socket.local_addr().expect("address").to_string();
    let output = Command::new(crate::harness::binary())
        .args(["simulate", "mda-agent", "--udp", "--to", &to])
        .output()
        .expect("run siemflow");
    assert!(output.status.success(), "{output:?}");
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut buf = vec![0u8; 65_536];
    for line in &agent {
        let n = socket.recv(&mut buf).expect("a datagram per line");
        assert_eq!(&buf[..n], line.as_bytes());
    }

    // Options of the servers are refused, as is a missing receiver.
    for args in [
        &["simulate", "mda-agent"][..],
        &[
            "simulate",
            "mda-agent",
            "--to",
            &to,
            "--listen",
            "127.0.0.1:1",
        ],
        &["simulate", "splunk", "--to", &to],
    ] {
        let output = Command::new(crate::harness::binary())
            .args(args)
            .output()
            .expect("run siemflow");
        assert_eq!(output.status.code(), Some(78), "{args:?}: {output:?}");
    }
}
