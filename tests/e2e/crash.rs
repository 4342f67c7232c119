//! SIGKILL in the middle of a run loses nothing: after restarts every line is delivered.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::Duration;

use crate::harness::{Workspace, ids, random_below, records, wait_for};

const CONFIG: &str = r#"
data_dir = "data"
[sources.in]
type = "file"
include = ["in/*.ndjson"]
checkpoint_interval = "100ms"
[sinks.out]
type = "file"
inputs = ["in"]
path = "out.ndjson"
"#;

#[test]
fn sigkill_mid_run_then_restart_loses_nothing() {
    let ws = Workspace::new();
    let total = 60_000;
    ws.write("in/a.ndjson", &records(0, total / 2, 300));
    ws.write("in/b.ndjson", &records(total / 2, total / 2, 300));
    ws.write("p.toml", CONFIG);
    let mut next = random_below();

    let mut kills = 0;
    let mut seen = 0;
    while kills < 3 {
        let mut pipeline = ws.run("p.toml", Stdio::null());
        // Kill somewhere after the output grew by a random amount, i.e. mid-stream.
        let target = seen + 1 + next(total / 8);
        let reached = wait_for("output to grow", Duration::from_secs(120), || {
            let n = ws.lines("out.ndjson").len();
            (n >= target || n >= total).then_some(n)
        });
        if reached >= total {
            break;
        }
        pipeline.signal(libc::SIGKILL);
        pipeline.wait_exit(Duration::from_secs(10));
        kills += 1;
        seen = reached;
    }
    assert!(
        kills > 0,
        "the pipeline finished before it could be killed once"
    );

    let mut pipeline = ws.run("p.toml", Stdio::null());
    let expected: BTreeSet<String> = (0..total).map(|i| format!("rec-{i:08}")).collect();
    wait_for(
        "every record after the restarts",
        Duration::from_secs(180),
        || {
            let delivered: BTreeSet<String> = ids(&ws.lines("out.ndjson")).into_iter().collect();
            (delivered == expected).then_some(())
        },
    );
    pipeline.signal(libc::SIGTERM);
    assert!(pipeline.wait_exit(Duration::from_secs(30)).success());
    let lines = ws.lines("out.ndjson");
    assert!(
        lines
            .iter()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()),
        "no torn line in the output"
    );
    println!("{kills} kills, {} lines for {total} records", lines.len());
}
