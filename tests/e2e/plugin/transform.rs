//! The Python transform SDK and example (`plugins/python/examples/enrich_http.py`) as a
//! `plugin` transform: file → plugin → file.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::Duration;

use super::{children, python, python_dir, users_api};
use crate::harness::{Workspace, ids, records, wait_for};

fn enrich_config(url: &str) -> String {
    format!(
        r#"
data_dir = "data"
[api]
address = "127.0.0.1:0"
[sources.in]
type = "file"
include = ["in/*.ndjson"]
[transforms.owner]
type = "plugin"
inputs = ["in"]
command = "{python}"
args = ["{example}"]
config = {{ url = "{url}", field = "Id", target = "owner" }}
[sinks.out]
type = "file"
inputs = ["owner"]
path = "out.ndjson"
[sinks.failed]
type = "file"
inputs = ["owner.dropped"]
path = "dropped.ndjson"
"#,
        python = python(),
        example = python_dir().join("examples/enrich_http.py").display(),
    )
}

/// Every input id ends in exactly one of the two files, each line as the function says.
fn assert_transformed(ws: &Workspace, total: usize) {
    let mut seen = BTreeSet::new();
    for line in ws.json_lines("out.ndjson") {
        let id = line["Id"].as_str().expect("Id").to_string();
        assert!(!id.ends_with('7'), "{id} should have failed its lookup");
        assert_eq!(line["owner"]["team"], format!("team-{id}"), "{line}");
        seen.insert(id);
    }
    for line in ws.json_lines("dropped.ndjson") {
        let id = line["Id"].as_str().expect("Id").to_string();
        assert!(id.ends_with('7'), "{id} should have been enriched: {line}");
        let dropped = &line["metadata"]["dropped"];
        assert_eq!(dropped["component_id"], "owner", "{line}");
        assert_eq!(dropped["component_type"], "plugin", "{line}");
        let message = dropped["message"].as_str().unwrap_or_default();
        assert!(message.contains("HTTP Error 404"), "{line}");
        assert!(line.get("owner").is_none(), "the original event: {line}");
        seen.insert(id);
    }
    let expected: BTreeSet<String> = (0..total).map(|i| format!("rec-{i:08}")).collect();
    let missing: Vec<&String> = expected.difference(&seen).take(5).collect();
    assert!(
        missing.is_empty(),
        "missing from both outputs, e.g. {missing:?}"
    );
}

fn all_ids_arrived(ws: &Workspace, total: usize) -> Option<()> {
    let mut lines = ws.lines("out.ndjson");
    lines.extend(ws.lines("dropped.ndjson"));
    (ids(&lines).into_iter().collect::<BTreeSet<_>>().len() >= total).then_some(())
}

#[test]
fn python_transform_enriches_every_event_and_survives_five_kills() {
    let ws = Workspace::new();
    let total = 4000;
    let (url, served) = users_api();
    ws.write("in/a.ndjson", &records(0, total, 150));
    let config = ws.write("pipeline.toml", &enrich_config(&url));
    let mut pipeline = ws.run(config.to_str().expect("utf-8"), Stdio::null());
    let siemflow = pipeline.child.id();

    let mut killed = Vec::new();
    for round in 1..=5 {
        // Mid-run: once this share of the lookups was served, kill the plugin running now.
        let pid = wait_for("a running plugin", Duration::from_secs(60), || {
            let pids = children(siemflow, "enrich_http.py");
            let running = pids.into_iter().find(|pid| !killed.contains(pid))?;
            (served.load(std::sync::atomic::Ordering::SeqCst) >= round * total / 7)
                .then_some(running)
        });
        // SAFETY: kill(2) on a process of this test's own siemflow.
        let rc = unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        assert_eq!(rc, 0, "kill {pid}");
        killed.push(pid);
    }
    assert!(
        all_ids_arrived(&ws, total).is_none(),
        "the run ended before the 5th kill: make it longer"
    );
    wait_for("every event in an output", Duration::from_secs(120), || {
        all_ids_arrived(&ws, total)
    });
    assert!(
        pipeline.child.try_wait().expect("try_wait").is_none(),
        "siemflow kept running"
    );
    assert_transformed(&ws, total);
    let restarts = pipeline.metric("plugin_restarts_total", &[r#"component_id="owner""#]);
    assert!(restarts >= 5.0, "restarts counted: {restarts}");
    let logs = pipeline.logs();
    assert!(logs.contains("restarting the plugin"), "{logs}");
}

#[test]
fn a_hanging_plugin_is_killed_after_batch_timeout_and_its_event_dead_lettered() {
    let ws = Workspace::new();
    let script = ws.write(
        "hang.py",
        &format!(
            r#"
import sys, threading
sys.path.insert(0, "{sdk}")
from siemflow_plugin import serve_transform
def fn(event, config):
    if event.get("hang"):
        threading.Event().wait()
    event["seen"] = True
    return event
serve_transform(fn)
"#,
            sdk = python_dir().display()
        ),
    );
    ws.write("in/a.ndjson", "{\"Id\":\"h\",\"hang\":true}\n");
    let config = ws.write(
        "pipeline.toml",
        &format!(
            r#"
data_dir = "data"
[api]
address = "127.0.0.1:0"
[sources.in]
type = "file"
include = ["in/*.ndjson"]
[transforms.t]
type = "plugin"
inputs = ["in"]
command = "{python}"
args = ["{script}"]
batch_timeout = "1s"
[sinks.out]
type = "file"
inputs = ["t"]
path = "out.ndjson"
[sinks.failed]
type = "file"
inputs = ["t.dropped"]
path = "dropped.ndjson"
"#,
            python = python(),
            script = script.display()
        ),
    );
    let mut pipeline = ws.run(config.to_str().expect("utf-8"), Stdio::null());
    let dropped = wait_for(
        "the hung batch dead-lettered",
        Duration::from_secs(60),
        || ws.json_lines("dropped.ndjson").into_iter().next(),
    );
    let message = dropped["metadata"]["dropped"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains("died or hung on this event 3 times")
            && message.contains("not answered within 1s (hung)"),
        "{dropped}"
    );
    // The plugin that replaced the killed ones still works.
    ws.append("in/a.ndjson", "{\"Id\":\"ok\"}\n");
    let out = wait_for("the next event", Duration::from_secs(60), || {
        ws.json_lines("out.ndjson").into_iter().next()
    });
    assert_eq!(out["Id"], "ok");
    assert_eq!(out["seen"], true);
    let restarts = pipeline.metric("plugin_restarts_total", &[r#"component_id="t""#]);
    assert!(restarts >= 3.0, "{restarts}");
}

#[test]
fn a_plugin_that_fails_its_handshake_is_named_with_its_stderr() {
    let ws = Workspace::new();
    ws.write("in/a.ndjson", "{\"Id\":\"x\"}\n");
    let config = ws.write(
        "pipeline.toml",
        r#"
data_dir = "data"
[sources.in]
type = "file"
include = ["in/*.ndjson"]
[transforms.broken]
type = "plugin"
inputs = ["in"]
command = "/bin/sh"
args = ["-c", "echo 'ModuleNotFoundError: No module named requests' >&2; exit 3"]
[sinks.out]
type = "file"
inputs = ["broken"]
path = "out.ndjson"
"#,
    );
    let mut pipeline = ws.run(config.to_str().expect("utf-8"), Stdio::null());
    let status = pipeline.wait_exit(Duration::from_secs(60));
    assert!(!status.success(), "{status}");
    let logs = pipeline.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("exited during its handshake"))
        .unwrap_or_else(|| panic!("no handshake error in:\n{logs}"));
    assert!(line.contains("transform `broken`"), "{line}");
    assert!(line.contains("/bin/sh"), "{line}");
    assert!(line.contains("exit status: 3"), "{line}");
    assert!(line.contains("No module named requests"), "{line}");
}

#[test]
fn validate_starts_the_plugin_and_checks_config_against_its_schema() {
    let ws = Workspace::new();
    let good = enrich_config("http://127.0.0.1:9/users/");
    ws.write("good.toml", &good);
    let output = std::process::Command::new(crate::harness::binary())
        .args(["validate", "-c", "good.toml"])
        .current_dir(ws.dir.path())
        .output()
        .expect("validate");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains("transform `owner`: plugin")
            && stdout.contains("siemflow-plugin-python")
            && stdout.contains("config.url: string (required)"),
        "{stdout}"
    );
    ws.write(
        "bad.toml",
        &good.replace(r#"target = "owner""#, r#"target = 3, colour = "red""#),
    );
    let (code, stderr) = ws.validate(&["bad.toml"]);
    assert_eq!(code, 78, "{stderr}");
    assert!(stderr.contains("transform `owner`"), "{stderr}");
    assert!(
        stderr.contains("`config.colour` is not an option"),
        "{stderr}"
    );
    assert!(
        stderr.contains("`config.target` must be of type string"),
        "{stderr}"
    );
}

/// Events cross to a plugin as JSON text with their timestamps and raw bytes beside it
/// (`json-events`): both SDKs hand them to the author as timestamps and bytes, and what
/// the plugins send back holds them exactly again.
#[test]
fn timestamps_and_raw_bytes_cross_python_and_rust_plugins_exactly() {
    let ws = Workspace::new();
    let total = 50;
    ws.write("in/a.ndjson", &records(0, total, 100));
    let check = |input: &str| {
        format!(
            r#"
[transforms.check_{input}]
type = "remap"
inputs = ["{input}"]
source = '''
.at_is_timestamp = is_timestamp(.at)
.at = to_string!(.at)
.raw = encode_base64!(.raw)
'''
[sinks.out_{input}]
type = "file"
inputs = ["check_{input}"]
path = "out_{input}.ndjson"
"#
        )
    };
    let config = format!(
        r#"
data_dir = "data"
[sources.in]
type = "file"
include = ["in/*.ndjson"]
[transforms.stamp]
type = "remap"
inputs = ["in"]
source = '''
.at = t'2026-12-07T10:00:00.123456789Z'
.raw = decode_base64!("/w8=")
'''
[transforms.py]
type = "plugin"
inputs = ["stamp"]
command = "{python}"
args = ["{tagger}"]
config = {{ tag = "py" }}
[transforms.rs]
type = "plugin"
inputs = ["stamp"]
command = "{rust}"
config = {{ tag = "rs" }}
{check_py}
{check_rs}
"#,
        python = python(),
        tagger = python_dir().join("examples/tagger.py").display(),
        rust = super::example("plugin_tagger").display(),
        check_py = check("py"),
        check_rs = check("rs"),
    );
    let config = ws.write("pipeline.toml", &config);
    let _pipeline = ws.run(config.to_str().expect("utf-8"), Stdio::null());
    // Python's datetime holds microseconds (docs/plugin-authoring.md says so).
    for (file, tag, at) in [
        ("out_py.ndjson", "py", "2026-12-07T10:00:00.123456Z"),
        ("out_rs.ndjson", "rs", "2026-12-07T10:00:00.123456789Z"),
    ] {
        wait_for(file, Duration::from_secs(60), || {
            (ws.lines(file).len() >= total).then_some(())
        });
        for line in ws.json_lines(file) {
            assert_eq!(line["tag"], tag, "{line}");
            assert_eq!(line["at_is_timestamp"], true, "{line}");
            assert_eq!(line["at"], at, "{line}");
            assert_eq!(line["raw"], "/w8=", "bytes 0xff 0x0f unchanged: {line}");
        }
    }
}

/// The Rust SDK's patches under fire: the tagger is SIGKILLed three times while batches
/// are in flight, and one 5 MB record (beyond gRPC's default 4 MiB message) sits among
/// small ones. Every record comes out tagged with its own fields whole.
#[test]
fn rust_patches_survive_kills_in_flight_and_a_record_beyond_four_mib() {
    let ws = Workspace::new();
    let chunk = 2000;
    let big = 5_000_000;
    let config = format!(
        r#"
data_dir = "data"
[api]
address = "127.0.0.1:0"
[sources.in]
type = "file"
include = ["in/*.ndjson"]
max_line_bytes = 6291456
[transforms.tag]
type = "plugin"
inputs = ["in"]
command = "{rust}"
config = {{ tag = "rs" }}
[sinks.out]
type = "file"
inputs = ["tag"]
path = "out.ndjson"
"#,
        rust = super::example("plugin_tagger").display(),
    );
    ws.write("in/a.ndjson", &records(0, chunk, 300));
    ws.append("in/a.ndjson", &records(chunk, 1, big));
    let config = ws.write("pipeline.toml", &config);
    let mut pipeline = ws.run(config.to_str().expect("utf-8"), Stdio::null());
    let siemflow = pipeline.child.id();
    let mut killed = Vec::new();
    for round in 1..=3 {
        // Kill once this chunk has begun to come out: the rest of it is in flight.
        let first = format!("rec-{:08}", (round - 1) * chunk + 1);
        let pid = wait_for("a chunk in flight", Duration::from_secs(60), || {
            let pids = children(siemflow, "plugin_tagger");
            let running = pids.into_iter().find(|pid| !killed.contains(pid))?;
            ids(&ws.lines("out.ndjson"))
                .contains(&first)
                .then_some(running)
        });
        // SAFETY: kill(2) on a process of this test's own siemflow.
        let rc = unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        assert_eq!(rc, 0, "kill {pid}");
        killed.push(pid);
        ws.append("in/a.ndjson", &records(round * chunk + 1, chunk, 300));
    }
    let total = 4 * chunk + 1;
    wait_for("every record out", Duration::from_secs(120), || {
        let seen: BTreeSet<String> = ids(&ws.lines("out.ndjson")).into_iter().collect();
        (seen.len() >= total).then_some(())
    });
    for line in ws.json_lines("out.ndjson") {
        let id = line["Id"].as_str().expect("Id");
        assert_eq!(line["tag"], "rs", "{id}");
        assert_eq!(line["tagged"], true, "{id}");
        assert!(
            line["Workload"].as_str().is_some_and(|w| !w.is_empty()),
            "{id}"
        );
        let pad = line["Pad"].as_str().map_or(0, str::len);
        let expected = if id == format!("rec-{chunk:08}") {
            big - 120
        } else {
            300 - 120
        };
        assert!(pad.abs_diff(expected) < 40, "{id}: Pad of {pad} bytes");
    }
    let restarts = pipeline.metric("plugin_restarts_total", &[r#"component_id="tag""#]);
    assert!(restarts >= 3.0, "restarts counted: {restarts}");
}
