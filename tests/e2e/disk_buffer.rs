//! The disk buffer through the real binary: a source checkpoints on the disk buffer's
//! acknowledgement while the sink is down, a SIGKILL loses nothing, and a damaged buffer
//! record is skipped and counted instead of stopping the pipeline.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::harness::{Pipeline, Workspace, checkpointed, ids, records, wait_for};

/// The sink writes under `blocked/`: while `blocked` is a regular file the folder cannot
/// be created (not even by root), so the sink retries and delivers nothing.
const CONFIG: &str = r#"
data_dir = "data"
[api]
address = "127.0.0.1:0"
[sources.in]
type = "file"
include = ["in/*.ndjson"]
checkpoint_interval = "100ms"
[sinks.out]
type = "file"
inputs = ["in"]
path = "blocked/out.ndjson"
buffer.type = "disk"
buffer.max_size = "64MiB"
"#;

const SINK: &str = "component_id=\"out\"";

/// Runs with the sink blocked until the source checkpointed all of `input`, then kills.
fn buffer_everything_then_kill(ws: &Workspace, total: usize) -> Pipeline {
    ws.write("blocked", "not a folder");
    let input = records(0, total, 300);
    let size = input.len() as u64;
    ws.write("in/a.ndjson", &input);
    ws.write("p.toml", CONFIG);
    let mut pipeline = ws.run("p.toml", Stdio::null());
    // The checkpoint can only reach the end if the disk buffer acknowledged every batch:
    // the sink delivered nothing.
    wait_for(
        "the source to checkpoint everything",
        Duration::from_secs(120),
        || (checkpointed(ws) == size).then_some(()),
    );
    assert!(ws.lines("blocked/out.ndjson").is_empty());
    assert_eq!(pipeline.metric("buffer_events", &[SINK]), total as f64);
    assert_eq!(
        pipeline.metric("buffer_received_events_total", &[SINK]),
        total as f64
    );
    assert!(pipeline.metric("buffer_byte_size", &[SINK]) > 0.0);
    pipeline.signal(libc::SIGKILL);
    pipeline.wait_exit(Duration::from_secs(10));
    pipeline
}

fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found: Vec<_> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| Some(e.ok()?.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "seg"))
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

#[test]
fn sigkill_while_the_sink_is_down_loses_nothing() {
    let ws = Workspace::new();
    let total = 20_000;
    buffer_everything_then_kill(&ws, total);
    assert!(!segments(&ws.path("data/out/buffer")).is_empty());

    // The sink comes back with the next start; the source has nothing left to read.
    std::fs::remove_file(ws.path("blocked")).expect("unblock");
    let mut pipeline = ws.run("p.toml", Stdio::null());
    let expected: BTreeSet<String> = (0..total).map(|i| format!("rec-{i:08}")).collect();
    wait_for(
        "every record from the disk buffer",
        Duration::from_secs(120),
        || {
            let delivered: BTreeSet<String> =
                ids(&ws.lines("blocked/out.ndjson")).into_iter().collect();
            (delivered == expected).then_some(())
        },
    );
    wait_for("the buffer to drain", Duration::from_secs(30), || {
        (pipeline.metric("buffer_events", &[SINK]) == 0.0).then_some(())
    });
    pipeline.signal(libc::SIGTERM);
    assert!(pipeline.wait_exit(Duration::from_secs(30)).success());
    let lines = ws.lines("blocked/out.ndjson");
    assert!(
        lines
            .iter()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()),
        "no torn line in the output"
    );
    assert_eq!(lines.len(), total, "each record exactly once");
    // Delivered segments are deleted (at most the last, emptied one is left for the
    // next start to drop).
    assert!(segments(&ws.path("data/out/buffer")).len() <= 1);
}

#[test]
fn a_corrupted_buffer_record_is_skipped_and_counted() {
    let ws = Workspace::new();
    let total = 5_000;
    buffer_everything_then_kill(&ws, total);
    let segment = segments(&ws.path("data/out/buffer"))
        .into_iter()
        .next()
        .expect("a segment");
    // Flip bytes in the middle of the first segment.
    let mut bytes = std::fs::read(&segment).expect("read segment");
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 8] {
        *b ^= 0x5a;
    }
    std::fs::write(&segment, bytes).expect("write segment");

    std::fs::remove_file(ws.path("blocked")).expect("unblock");
    let mut pipeline = ws.run("p.toml", Stdio::null());
    wait_for("the buffer to drain", Duration::from_secs(120), || {
        let written = ws.lines("blocked/out.ndjson").len();
        (written > 0
            && pipeline.metric("buffer_events", &[SINK]) == 0.0
            && pipeline.metric("buffer_sent_events_total", &[SINK]) == written as f64)
            .then_some(())
    });
    assert!(pipeline.metric("buffer_corrupted_records_total", &[SINK]) >= 1.0);
    let lines = ws.lines("blocked/out.ndjson");
    let delivered = ids(&lines);
    assert_eq!(
        delivered.len(),
        lines.len(),
        "every delivered line is whole"
    );
    assert!(
        !delivered.is_empty() && delivered.len() < total,
        "the records before the damage arrive, the damaged one does not ({} of {total})",
        delivered.len()
    );
    assert!(
        pipeline.logs().contains("disk buffer: skipped"),
        "the damage is logged"
    );
    pipeline.signal(libc::SIGTERM);
    assert!(pipeline.wait_exit(Duration::from_secs(30)).success());
}

/// The sink delivers at once (a blackhole), so only the buffer's own writes can fail.
const WRITE_FAILURE_CONFIG: &str = r#"
data_dir = "data"
[api]
address = "127.0.0.1:0"
[sources.in]
type = "file"
include = ["in/*.ndjson"]
checkpoint_interval = "100ms"
[sinks.out]
type = "blackhole"
inputs = ["in"]
buffer.type = "disk"
buffer.max_size = "64MiB"
"#;

#[test]
fn a_buffer_that_cannot_write_makes_its_sink_unready_until_it_can() {
    let ws = Workspace::new();
    let total = 5_000;
    let input = records(0, total, 300);
    let size = input.len() as u64;
    ws.write("in/a.ndjson", &input);
    ws.write("p.toml", WRITE_FAILURE_CONFIG);
    // Segments of 8 MiB (an eighth of max_size) reach the limit after a few hundred
    // records, while every other file the process writes stays far below it.
    let mut pipeline = ws.run_with_file_size_limit("p.toml", 256 << 10);

    let reasons = wait_for(
        "/ready to report the buffer",
        Duration::from_secs(60),
        || match pipeline.ready() {
            Some((503, body)) => Some(body),
            _ => None,
        },
    );
    assert!(
        reasons.starts_with("not ready\n")
            && reasons.contains("sink out: disk buffer cannot write to ")
            && reasons.contains("File too large"),
        "{reasons}"
    );
    assert!(
        pipeline.metric(
            "component_errors_total",
            &[SINK, "error_type=\"buffer_write_failed\""]
        ) >= 1.0
    );
    assert!(
        checkpointed(&ws) < size,
        "the source waits for the buffer (backpressure)"
    );
    assert!(
        pipeline.logs().contains("cannot write to the disk buffer"),
        "the failure is logged"
    );

    // Room again: the same writes succeed, the sink is ready, and everything flows.
    pipeline.lift_file_size_limit();
    wait_for(
        "/ready to recover and the input to drain",
        Duration::from_secs(120),
        || {
            (pipeline.ready() == Some((200, "ready\n".to_string()))
                && checkpointed(&ws) == size
                && pipeline.metric("component_sent_events_total", &[SINK]) == total as f64)
                .then_some(())
        },
    );
    assert!(
        pipeline.logs().contains("disk buffer writes again"),
        "the recovery is logged"
    );
    assert_eq!(
        pipeline.metric("buffer_received_events_total", &[SINK]),
        total as f64,
        "each event written to the buffer once"
    );
    pipeline.signal(libc::SIGTERM);
    assert!(pipeline.wait_exit(Duration::from_secs(30)).success());
}
