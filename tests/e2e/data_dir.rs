//! One process per data_dir: a second `siemflow run` on the same folder refuses to start
//! and names the first, which keeps running, reloads without tripping over its own lock,
//! and can still be validated against; once it is killed, the next run starts.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::Duration;

use crate::harness::{Workspace, ids, records, wait_for};

const CONFIG: &str = r#"
data_dir = "data"
[api]
address = "127.0.0.1:0"

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
fn a_second_process_on_the_same_data_dir_refuses_to_start() {
    let ws = Workspace::new();
    ws.write("p.toml", CONFIG);
    ws.write("in/a.ndjson", &records(0, 100, 200));
    let mut first = ws.run("p.toml", Stdio::null());
    // The API listens only once the data_dir is locked.
    first.api();
    wait_for(
        "the first process to deliver",
        Duration::from_secs(60),
        || (ws.lines("out/out.ndjson").len() == 100).then_some(()),
    );

    let mut second = ws.run("p.toml", Stdio::null());
    let status = second.wait_exit(Duration::from_secs(30));
    assert!(!status.success(), "the second process must not run");
    let logs = second.logs();
    let data_dir = ws.path("data").canonicalize().expect("data_dir exists");
    assert!(
        logs.contains("is in use by another siemflow process")
            && logs.contains(&data_dir.display().to_string())
            && logs.contains(&format!("pid {}", first.child.id())),
        "the refusal names the data_dir and the other process: {logs}"
    );

    // `validate` takes no lock.
    let (code, stderr) = ws.validate(&["p.toml"]);
    assert_eq!(code, 0, "{stderr}");

    // The first one keeps running, delivering, and reloads with its data_dir locked.
    assert!(
        first.child.try_wait().expect("try_wait").is_none(),
        "still running"
    );
    first.signal(libc::SIGHUP);
    wait_for("the reload to apply", Duration::from_secs(30), || {
        (first.metric("config_reloads_total", &["result=\"applied\""]) == 1.0).then_some(())
    });
    ws.append("in/a.ndjson", &records(100, 100, 200));
    wait_for(
        "the first process to deliver more",
        Duration::from_secs(60),
        || (ws.lines("out/out.ndjson").len() == 200).then_some(()),
    );
    assert_eq!(
        std::fs::read_to_string(ws.path("data/.lock")).expect("lock file"),
        first.child.id().to_string()
    );

    // Killed, the owner leaves its pid in the lock file but no lock: the next run starts,
    // delivers what came meanwhile (a record twice at worst) and writes its own pid.
    first.signal(libc::SIGKILL);
    first.wait_exit(Duration::from_secs(30));
    ws.append("in/a.ndjson", &records(200, 100, 200));
    let mut next = ws.run("p.toml", Stdio::null());
    next.api();
    wait_for(
        "the next process to deliver",
        Duration::from_secs(60),
        || {
            let ids: BTreeSet<String> = ids(&ws.lines("out/out.ndjson")).into_iter().collect();
            (ids.len() == 300).then_some(())
        },
    );
    assert_eq!(
        std::fs::read_to_string(ws.path("data/.lock")).expect("lock file"),
        next.child.id().to_string()
    );
    assert!(
        next.child.try_wait().expect("try_wait").is_none(),
        "the next process runs: {}",
        next.logs()
    );
}
