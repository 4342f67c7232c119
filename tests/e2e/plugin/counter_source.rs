//! The Rust source SDK and example (`examples/plugin_counter_source.rs`): numbered events
//! in batches, a cursor saved only once siemflow delivered them, through a SIGKILL.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::Duration;

use super::example;
use crate::harness::{Workspace, ids, wait_for};

const TOTAL: u64 = 20_000;
const BATCH: u64 = 100;

/// The saved cursor, then the ids in the output: every event before the cursor must be
/// there (the output only grows, so reading it second never blames the cursor wrongly).
fn check_cursor(ws: &Workspace) -> Option<(u64, BTreeSet<String>)> {
    let cursor: u64 = std::fs::read_to_string(ws.path("data/counter/cursor"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let delivered: BTreeSet<String> = ids(&ws.lines("out.ndjson")).into_iter().collect();
    let ahead: Vec<u64> = (0..cursor)
        .filter(|n| !delivered.contains(&format!("evt-{n:08}")))
        .take(5)
        .collect();
    assert!(
        ahead.is_empty(),
        "cursor {cursor} saved before events {ahead:?} were delivered"
    );
    assert!(
        cursor.is_multiple_of(BATCH) && cursor <= TOTAL,
        "cursor {cursor} is not the end of a batch"
    );
    Some((cursor, delivered))
}

#[test]
fn rust_source_saves_its_cursor_only_after_delivery_across_a_crash() {
    let ws = Workspace::new();
    let config = ws.write(
        "pipeline.toml",
        &format!(
            r#"
data_dir = "data"
[sources.counter]
type = "plugin"
command = "{command}"
stop_timeout = "60s"
config = {{ total = {TOTAL}, batch_size = {BATCH}, pace_ms = 20 }}
[sinks.out]
type = "file"
inputs = ["counter"]
path = "out.ndjson"
"#,
            command = example("plugin_counter_source").display(),
        ),
    );
    let config = config.to_str().expect("utf-8");
    let mut first = ws.run(config, Stdio::null());
    // Ten batches delivered (of 200, 20 ms apart): the cursor is checked at each poll.
    wait_for("a cursor past ten batches", Duration::from_secs(60), || {
        check_cursor(&ws).filter(|(cursor, _)| *cursor >= 10 * BATCH)
    });
    first.signal(libc::SIGKILL);
    first.wait_exit(Duration::from_secs(30));
    let (killed_at, _) = check_cursor(&ws).expect("a cursor after the crash");
    assert!(killed_at < TOTAL, "the crash came after the last batch");

    let mut second = ws.run(config, Stdio::null());
    let (cursor, delivered) = wait_for(
        "every event and the cursor at the end",
        Duration::from_secs(120),
        || {
            check_cursor(&ws)
                .filter(|(cursor, seen)| *cursor == TOTAL && seen.len() == TOTAL as usize)
        },
    );
    let expected: BTreeSet<String> = (0..TOTAL).map(|n| format!("evt-{n:08}")).collect();
    assert_eq!(delivered, expected, "events other than the numbered ones");
    assert!(killed_at <= cursor);

    // Stopping closes the stream: the idle `read` sees it and the plugin exits, well
    // before siemflow's 60 s `stop_timeout` would kill it.
    let asked = std::time::Instant::now();
    second.signal(libc::SIGTERM);
    let status = second.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "siemflow exited with {status}");
    assert!(
        asked.elapsed() < Duration::from_secs(20),
        "the plugin took {:?} to stop",
        asked.elapsed()
    );
}
