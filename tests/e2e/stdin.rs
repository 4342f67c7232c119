//! `siemflow run < records.ndjson` is a batch job: it drains and exits 0.

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use crate::harness::{Workspace, ids, records};

#[test]
fn stdin_batch_job_delivers_everything_and_exits_zero() {
    let ws = Workspace::new();
    ws.write(
        "p.toml",
        r#"
data_dir = "data"
[sources.in]
type = "stdin"
[transforms.tag]
type = "remap"
inputs = ["in"]
source = '.tagged = true'
[sinks.out]
type = "file"
inputs = ["tag"]
path = "out.ndjson"
"#,
    );
    let mut pipeline = ws.run_with("p.toml", Stdio::null(), Stdio::piped());
    let mut stdin = pipeline.child.stdin.take().expect("stdin");
    stdin
        .write_all(records(0, 5_000, 300).as_bytes())
        .expect("feed stdin");
    drop(stdin);
    let status = pipeline.wait_exit(Duration::from_secs(60));
    assert!(
        status.success(),
        "exit status {status:?}; logs:\n{}",
        pipeline.logs()
    );
    let lines = ws.lines("out.ndjson");
    assert_eq!(
        ids(&lines),
        (0..5_000)
            .map(|i| format!("rec-{i:08}"))
            .collect::<Vec<_>>()
    );
    assert!(lines.iter().all(|l| l.contains("\"tagged\":true")));
}
