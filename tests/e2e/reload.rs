//! SIGHUP replaces what changed, keeps what did not, and rejects a broken config.

use std::process::Stdio;
use std::time::Duration;

use crate::harness::{Workspace, ids, records, wait_for};

fn config(sink_path: &str) -> String {
    format!(
        r#"
data_dir = "data"
[api]
address = "127.0.0.1:0"
[sources.in]
type = "file"
include = ["in/*.ndjson"]
[sinks.out]
type = "file"
inputs = ["in"]
path = "{sink_path}"
"#
    )
}

fn expected(from: usize, n: usize) -> Vec<String> {
    (from..from + n).map(|i| format!("rec-{i:08}")).collect()
}

#[test]
fn sighup_replaces_changed_components_and_rejects_broken_configs() {
    let ws = Workspace::new();
    ws.write("p.toml", &config("first.ndjson"));
    ws.write("in/a.ndjson", &records(0, 100, 200));
    let mut pipeline = ws.run("p.toml", Stdio::null());
    wait_for("the first batch", Duration::from_secs(60), || {
        (ws.lines("first.ndjson").len() >= 100).then_some(())
    });

    // Only the sink changes: it is replaced, the source keeps its place in the file.
    ws.write("p.toml", &config("second.ndjson"));
    pipeline.signal(libc::SIGHUP);
    wait_for("the reload", Duration::from_secs(30), || {
        (pipeline.metric("config_reloads_total", &["result=\"applied\""]) >= 1.0).then_some(())
    });
    ws.append("in/a.ndjson", &records(100, 50, 200));
    wait_for("the second batch", Duration::from_secs(60), || {
        (ws.lines("second.ndjson").len() >= 50).then_some(())
    });
    assert_eq!(ids(&ws.lines("first.ndjson")), expected(0, 100));
    assert_eq!(
        ids(&ws.lines("second.ndjson")),
        expected(100, 50),
        "the unchanged source must not start over"
    );

    // A broken config is rejected with its errors; the pipeline keeps running.
    ws.write(
        "p.toml",
        "[sinks.out]\ntype = \"nope\"\ninputs = [\"in\"]\n",
    );
    pipeline.signal(libc::SIGHUP);
    wait_for("the rejection", Duration::from_secs(30), || {
        (pipeline.metric("config_reloads_total", &["result=\"rejected\""]) >= 1.0).then_some(())
    });
    assert!(
        pipeline.logs().contains("unknown sink type `nope`"),
        "{}",
        pipeline.logs()
    );
    ws.append("in/a.ndjson", &records(150, 50, 200));
    wait_for("the third batch", Duration::from_secs(60), || {
        (ws.lines("second.ndjson").len() >= 100).then_some(())
    });
    assert_eq!(ids(&ws.lines("second.ndjson")), expected(100, 100));
    pipeline.signal(libc::SIGTERM);
    assert!(pipeline.wait_exit(Duration::from_secs(30)).success());
}

#[test]
fn watch_config_reloads_on_change() {
    let ws = Workspace::new();
    ws.write("p.toml", &config("first.ndjson"));
    ws.write("in/a.ndjson", &records(0, 10, 200));
    let mut pipeline = ws.spawn("p.toml", &["--watch-config"], Stdio::null(), Stdio::null());
    wait_for("the first batch", Duration::from_secs(60), || {
        (ws.lines("first.ndjson").len() >= 10).then_some(())
    });
    let path = ws.write("p.toml", &config("second.ndjson"));
    // File systems with coarse timestamps could hide the edit; move the mtime forward.
    let later = std::time::SystemTime::now() + Duration::from_secs(5);
    std::fs::File::options()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_modified(later))
        .expect("set mtime");
    wait_for("the watched reload", Duration::from_secs(30), || {
        (pipeline.metric("config_reloads_total", &["result=\"applied\""]) >= 1.0).then_some(())
    });
    ws.append("in/a.ndjson", &records(10, 10, 200));
    wait_for("the second batch", Duration::from_secs(60), || {
        (ws.lines("second.ndjson").len() >= 10).then_some(())
    });
    assert_eq!(ids(&ws.lines("second.ndjson")), expected(10, 10));
}
