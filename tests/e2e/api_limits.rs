//! The API's limits through the real binary: a flood of idle and half-sent connections,
//! more than the process has descriptors for, neither starves the pipeline nor stops
//! `/health` from answering, and every such connection is closed by the server.

use std::collections::BTreeSet;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::harness::{Workspace, http_get, ids, records, wait_for};

/// Descriptors the process may open: enough for the pipeline and the API's
/// `max_connections`, far fewer than the connections the test opens.
const FILE_LIMIT: u64 = 64;
/// Connections the test opens and leaves idle or half-sent.
const FLOOD: usize = 100;
/// A generous bound on resident memory while the flood lasts (the process starts near
/// 25 MiB).
const MAX_RSS_KIB: u64 = 128 << 10;

const CONFIG: &str = r#"
data_dir = "data"
[api]
address = "127.0.0.1:0"
max_connections = 16
header_read_timeout = "1s"
idle_timeout = "2s"

[sources.in]
type = "file"
include = ["in/*.ndjson"]
glob_interval = "100ms"

[sinks.out]
type = "file"
inputs = ["in"]
path = "out/out.ndjson"
"#;

#[test]
fn a_connection_flood_neither_starves_the_pipeline_nor_the_health_check() {
    let ws = Workspace::new();
    ws.write("p.toml", CONFIG);
    let mut pipeline = ws.run_with_file_limit("p.toml", FILE_LIMIT);
    let api = pipeline.api();
    wait_for("/health before the flood", Duration::from_secs(30), || {
        http_get(&api, "/health").filter(|body| body == "ok\n")
    });

    // Half the flood sends nothing; the other half starts a request and never ends it.
    let flood: Vec<TcpStream> = (0..FLOOD)
        .map(|i| {
            let mut stream = TcpStream::connect(&api).expect("connect");
            if i % 2 == 1 {
                stream
                    .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
                    .expect("half a request");
            }
            stream
        })
        .collect();

    // The pipeline needs new descriptors meanwhile: the file appears only now.
    let total = 2_000;
    ws.write("in/a.ndjson", &records(0, total, 200));

    wait_for("/health during the flood", Duration::from_secs(60), || {
        http_get(&api, "/health").filter(|body| body == "ok\n")
    });
    let rss = pipeline.rss_kib();
    assert!(
        rss < MAX_RSS_KIB,
        "resident memory {rss} KiB during the flood"
    );

    let delivered = wait_for("every record delivered", Duration::from_secs(60), || {
        let lines = ws.lines("out/out.ndjson");
        (lines.len() >= total).then_some(lines)
    });
    let distinct: BTreeSet<String> = ids(&delivered).into_iter().collect();
    assert_eq!(
        (delivered.len(), distinct.len()),
        (total, total),
        "exactly the input"
    );

    // Every flood connection was closed by the server: a read ends instead of waiting.
    let deadline = Instant::now() + Duration::from_secs(60);
    for (i, mut stream) in flood.into_iter().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .expect("read timeout");
        let mut rest = Vec::new();
        match stream.read_to_end(&mut rest) {
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("flood connection {i} is still open after the timeouts")
            }
            // Reset by the server: closed as well.
            Err(_) => {}
        }
    }
    assert!(
        pipeline.child.try_wait().expect("try_wait").is_none(),
        "still running"
    );
}
