//! SIGTERM drains what is in flight and exits 0 within the deadline; a restart then
//! continues exactly where the drained run stopped.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::harness::{Workspace, ids, records, wait_for};

#[test]
fn sigterm_drains_in_flight_events_and_exits_zero() {
    let ws = Workspace::new();
    let total = 60_000;
    ws.write("in/a.ndjson", &records(0, total, 300));
    ws.write(
        "p.toml",
        r#"
data_dir = "data"
shutdown_timeout = "20s"
[sources.in]
type = "file"
include = ["in/*.ndjson"]
[transforms.tag]
type = "remap"
inputs = ["in"]
source = '.drained = true'
[sinks.out]
type = "file"
inputs = ["tag"]
path = "out.ndjson"
"#,
    );
    let mut pipeline = ws.run("p.toml", Stdio::null());
    wait_for("the first records", Duration::from_secs(60), || {
        (!ws.lines("out.ndjson").is_empty()).then_some(())
    });
    let asked = Instant::now();
    pipeline.signal(libc::SIGTERM);
    let status = pipeline.wait_exit(Duration::from_secs(25));
    assert!(
        status.success(),
        "exit {status:?}; logs:\n{}",
        pipeline.logs()
    );
    assert!(
        asked.elapsed() < Duration::from_secs(20),
        "exited after the deadline"
    );
    let first = ids(&ws.lines("out.ndjson"));
    assert!(
        first.len() < total,
        "the run was not interrupted; make the input larger"
    );

    // Everything read before SIGTERM was delivered and checkpointed: the next run
    // delivers exactly the rest, with no duplicate and no gap.
    let mut pipeline = ws.run("p.toml", Stdio::null());
    wait_for("the rest of the records", Duration::from_secs(120), || {
        (ws.lines("out.ndjson").len() >= total).then_some(())
    });
    pipeline.signal(libc::SIGTERM);
    assert!(pipeline.wait_exit(Duration::from_secs(25)).success());
    let all = ids(&ws.lines("out.ndjson"));
    let expected: Vec<String> = (0..total).map(|i| format!("rec-{i:08}")).collect();
    assert_eq!(
        all, expected,
        "exactly once, in order, across the drained restart"
    );
}

#[test]
fn a_second_signal_exits_at_once() {
    let ws = Workspace::new();
    ws.write("in/a.ndjson", &records(0, 10, 100));
    ws.write(
        "p.toml",
        r#"
data_dir = "data"
shutdown_timeout = "60s"
[api]
address = "127.0.0.1:0"
[sources.in]
type = "file"
include = ["in/*.ndjson"]
[sinks.out]
type = "console"
inputs = ["in"]
"#,
    );
    // Nobody reads stdout, so the console sink blocks and the drain cannot finish.
    let mut pipeline = ws.run("p.toml", Stdio::piped());
    ws.write("in/b.ndjson", &records(10, 20_000, 300));
    wait_for("the console sink to block", Duration::from_secs(60), || {
        (pipeline.metric("buffer_events", &["component_id=\"out\""]) > 0.0).then_some(())
    });
    pipeline.signal(libc::SIGTERM);
    wait_for("the drain to start", Duration::from_secs(10), || {
        pipeline.logs().contains("SIGTERM").then_some(())
    });
    pipeline.signal(libc::SIGTERM);
    let status = pipeline.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(130), "logs:\n{}", pipeline.logs());
}
