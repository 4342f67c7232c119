//! The `file` source at the process's limits, through the real binary: more matching
//! files than the process may open, listings that fail for lack of descriptors, and a
//! followed file replaced by a symlink to a file outside the include folder.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::harness::{Pipeline, Workspace, http_get, ids, records, wait_for};

/// The open-file limit the tests give the process (`ulimit -n 256`).
const FILE_LIMIT: u64 = 256;
/// The source's default `max_open_files` under that limit: a quarter of it.
const DEFAULT_MAX_OPEN: f64 = (FILE_LIMIT / 4) as f64;

fn config(extra: &str) -> String {
    format!(
        r#"
data_dir = "data"
[api]
address = "127.0.0.1:0"

[sources.in]
type = "file"
include = ["in/*.ndjson"]
glob_interval = "200ms"
{extra}

[sinks.out]
type = "file"
inputs = ["in"]
path = "out/out.ndjson"
"#
    )
}

/// Writes `files` files of `per_file` records each; returns the total.
fn write_files(ws: &Workspace, files: usize, per_file: usize) -> usize {
    for file in 0..files {
        ws.write(
            &format!("in/f{file:05}.ndjson"),
            &records(file * per_file, per_file, 150),
        );
    }
    files * per_file
}

/// What a run looked like from outside.
struct Observed {
    most_open: f64,
    health_checks: usize,
}

/// Waits until `total` lines were written, checking `/health` and `source_files_open`
/// all along; then stops the process with SIGTERM and checks every record arrived once.
fn deliver_all_then_stop(ws: &Workspace, pipeline: &mut Pipeline, total: usize) -> Observed {
    let api = pipeline.api();
    let mut observed = Observed {
        most_open: 0.0,
        health_checks: 0,
    };
    wait_for("every record delivered", Duration::from_secs(90), || {
        let health = http_get(&api, "/health");
        assert_eq!(health.as_deref(), Some("ok\n"), "/health during the run");
        observed.health_checks += 1;
        let open = pipeline.metric("source_files_open", &["component_id=\"in\""]);
        observed.most_open = observed.most_open.max(open);
        (ws.lines("out/out.ndjson").len() >= total).then_some(())
    });
    pipeline.signal(libc::SIGTERM);
    assert!(
        pipeline.wait_exit(Duration::from_secs(30)).success(),
        "exit 0 on SIGTERM"
    );
    let delivered = ids(&ws.lines("out/out.ndjson"));
    let distinct: BTreeSet<&String> = delivered.iter().collect();
    let expected: BTreeSet<String> = (0..total).map(|i| format!("rec-{i:08}")).collect();
    assert_eq!(
        (delivered.len(), distinct.len()),
        (total, total),
        "every record exactly once"
    );
    assert!(
        distinct.into_iter().eq(expected.iter()),
        "the records written"
    );
    observed
}

#[test]
fn more_files_than_descriptors_are_all_delivered_once() {
    let ws = Workspace::new();
    let total = write_files(&ws, 2_000, 2);
    ws.write("p.toml", &config(""));
    let mut pipeline = ws.run_with_file_limit("p.toml", FILE_LIMIT);
    // Lines are added while the files take turns: to files read to their end and closed
    // for others (opened again at their offset), and to files not opened yet.
    wait_for(
        "half the records delivered",
        Duration::from_secs(90),
        || (ws.lines("out/out.ndjson").len() >= total / 2).then_some(()),
    );
    let mut appended = 0;
    for file in (0..2_000).step_by(10) {
        ws.append(
            &format!("in/f{file:05}.ndjson"),
            &records(total + appended, 1, 150),
        );
        appended += 1;
    }
    let total = total + appended;
    let observed = deliver_all_then_stop(&ws, &mut pipeline, total);
    assert!(
        observed.most_open <= DEFAULT_MAX_OPEN,
        "{} files open, the default bound is {DEFAULT_MAX_OPEN}",
        observed.most_open
    );
    println!(
        "{total} records from 2000 files (200 of them appended to during the run) under ulimit -n {FILE_LIMIT}: at most {} open, {} health checks",
        observed.most_open, observed.health_checks
    );
}

#[test]
fn files_beyond_the_descriptor_limit_are_not_read_twice() {
    let ws = Workspace::new();
    let total = write_files(&ws, 400, 1);
    ws.write("p.toml", &config(""));
    let mut pipeline = ws.run_with_file_limit("p.toml", FILE_LIMIT);
    let observed = deliver_all_then_stop(&ws, &mut pipeline, total);
    println!(
        "{total} records from 400 files under ulimit -n {FILE_LIMIT}: at most {} open",
        observed.most_open
    );
}

#[test]
fn a_budget_above_the_process_limit_runs_out_yet_reads_each_line_once() {
    let ws = Workspace::new();
    let total = write_files(&ws, 400, 1);
    // More than the process may open: the source itself meets EMFILE, in opens and in
    // listings, and must take neither for a deletion.
    ws.write("p.toml", &config("max_open_files = 1000"));
    let mut pipeline = ws.run_with_file_limit("p.toml", FILE_LIMIT);
    let api = pipeline.api();
    wait_for("the source to run out", Duration::from_secs(60), || {
        let failed = pipeline.metric(
            "component_errors_total",
            &["component_id=\"in\"", "error_type=\"open_failed\""],
        );
        (failed > 0.0).then_some(())
    });
    wait_for("/health after running out", Duration::from_secs(30), || {
        http_get(&api, "/health").filter(|body| body == "ok\n")
    });
    let listing_failed = pipeline.metric(
        "component_errors_total",
        &["component_id=\"in\"", "error_type=\"listing_failed\""],
    );
    let observed = deliver_all_then_stop(&ws, &mut pipeline, total);
    println!(
        "{total} records with max_open_files = 1000 under ulimit -n {FILE_LIMIT}: at most {} open, {listing_failed} failed listings when it ran out",
        observed.most_open
    );
}

/// A pipeline reading `in/app.ndjson`, which is then replaced by a symlink to
/// `secret/secret.ndjson`, outside `in/`. Returns once the first record was delivered
/// and the symlink is in place.
fn replace_followed_file_with_symlink(ws: &Workspace, extra: &str) -> Pipeline {
    ws.write("in/app.ndjson", "{\"Id\":\"first\"}\n");
    let secret = ws.write("secret/secret.ndjson", "{\"Id\":\"secret\"}\n");
    ws.write("p.toml", &config(extra));
    let pipeline = ws.run("p.toml", std::process::Stdio::null());
    wait_for("the first record", Duration::from_secs(30), || {
        (ids(&ws.lines("out/out.ndjson")) == ["first"]).then_some(())
    });
    std::os::unix::fs::symlink(&secret, ws.path("in/app.tmp")).expect("symlink");
    std::fs::rename(ws.path("in/app.tmp"), ws.path("in/app.ndjson")).expect("replace");
    pipeline
}

#[test]
fn a_followed_file_replaced_by_a_symlink_to_a_secret_is_not_read() {
    let ws = Workspace::new();
    let mut pipeline = replace_followed_file_with_symlink(&ws, "");
    let refused = ["component_id=\"in\"", "error_type=\"symlink_refused\""];
    wait_for("the symlink refused", Duration::from_secs(30), || {
        (pipeline.metric("component_errors_total", &refused) >= 1.0).then_some(())
    });
    // Written after the refusal, read after it: had the secret been followed, it would
    // have come first.
    ws.write("in/after.ndjson", "{\"Id\":\"after\"}\n");
    wait_for("the later file", Duration::from_secs(30), || {
        ids(&ws.lines("out/out.ndjson"))
            .contains(&"after".to_string())
            .then_some(())
    });
    assert_eq!(ids(&ws.lines("out/out.ndjson")), ["first", "after"]);
    assert_eq!(
        pipeline.metric("component_errors_total", &refused),
        1.0,
        "counted once per path"
    );
    let warnings = pipeline
        .logs()
        .lines()
        .filter(|l| l.contains("not reading a symlink") && l.contains("app.ndjson"))
        .count();
    assert_eq!(warnings, 1, "warned once:\n{}", pipeline.logs());
    pipeline.signal(libc::SIGTERM);
    assert!(pipeline.wait_exit(Duration::from_secs(30)).success());
}

#[test]
fn a_symlink_to_a_file_outside_is_read_when_always_followed() {
    let ws = Workspace::new();
    let mut pipeline = replace_followed_file_with_symlink(&ws, "follow_symlinks = \"always\"");
    wait_for("the secret read", Duration::from_secs(30), || {
        (ids(&ws.lines("out/out.ndjson")) == ["first", "secret"]).then_some(())
    });
    pipeline.signal(libc::SIGTERM);
    assert!(pipeline.wait_exit(Duration::from_secs(30)).success());
}
