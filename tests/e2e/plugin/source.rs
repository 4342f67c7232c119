//! The Python source SDK and example (`plugins/python/examples/rest_cursor.py`): a REST
//! API read with a cursor saved only on delivery, through a SIGKILL of siemflow.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpListener;
use std::process::Stdio;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::{python, python_dir};
use crate::harness::{Workspace, ids, wait_for};

const TOTAL: usize = 3000;
const PAGE: usize = 100;

/// A gate the API holds requests at once `held_from` pages were served, until opened.
#[derive(Default)]
struct Gate {
    state: Mutex<(usize, bool)>,
    changed: Condvar,
}

impl Gate {
    fn pass(&self, held_from: usize) {
        let mut state = self.state.lock().expect("lock");
        state.0 += 1;
        self.changed.notify_all();
        while state.0 > held_from && !state.1 {
            state = self.changed.wait(state).expect("wait");
        }
    }

    fn served(&self) -> usize {
        self.state.lock().expect("lock").0
    }

    fn open(&self) {
        self.state.lock().expect("lock").1 = true;
        self.changed.notify_all();
    }
}

/// `GET /records?after=N&limit=M`: records N.. of TOTAL and the next cursor.
fn records_api(gate: Arc<Gate>, held_from: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/records", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let gate = Arc::clone(&gate);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    return;
                }
                let mut header = String::new();
                while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                    header.clear();
                }
                let query: BTreeMap<String, String> = line
                    .split_whitespace()
                    .nth(1)
                    .and_then(|path| path.split_once('?'))
                    .map(|(_, q)| {
                        q.split('&')
                            .filter_map(|kv| kv.split_once('='))
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect()
                    })
                    .unwrap_or_default();
                let after: usize = query.get("after").and_then(|a| a.parse().ok()).unwrap_or(0);
                let limit: usize = query
                    .get("limit")
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(PAGE);
                let end = (after + limit).min(TOTAL);
                if after < TOTAL {
                    gate.pass(held_from);
                }
                let records: Vec<String> = (after..end)
                    .map(|i| format!(r#"{{"Id":"rec-{i:08}","n":{i}}}"#))
                    .collect();
                let body = format!(r#"{{"records":[{}],"next":"{end}"}}"#, records.join(","));
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    url
}

#[test]
fn python_source_saves_its_cursor_only_after_delivery_across_a_crash() {
    let ws = Workspace::new();
    let gate = Arc::new(Gate::default());
    let url = records_api(Arc::clone(&gate), 10);
    let config = ws.write(
        "pipeline.toml",
        &format!(
            r#"
data_dir = "data"
[sources.api]
type = "plugin"
command = "{python}"
args = ["{example}"]
config = {{ url = "{url}", page_size = {PAGE}, poll_interval = 0.2 }}
[sinks.out]
type = "file"
inputs = ["api"]
path = "out.ndjson"
"#,
            python = python(),
            example = python_dir().join("examples/rest_cursor.py").display(),
        ),
    );
    let config = config.to_str().expect("utf-8");
    let mut first = ws.run(config, Stdio::null());
    // The 11th page is being asked for and held: the first ten were emitted.
    wait_for("the API held at page 11", Duration::from_secs(60), || {
        (gate.served() > 10).then_some(())
    });
    let cursor_path = ws.path("data/api/cursor");
    let cursor: usize = wait_for("a saved cursor", Duration::from_secs(60), || {
        std::fs::read_to_string(&cursor_path)
            .ok()?
            .trim()
            .parse()
            .ok()
    });
    first.signal(libc::SIGKILL);
    first.wait_exit(Duration::from_secs(30));
    // Every record before the saved cursor was in the output before it was saved.
    let delivered: BTreeSet<String> = ids(&ws.lines("out.ndjson")).into_iter().collect();
    let ahead: Vec<usize> = (0..cursor)
        .filter(|i| !delivered.contains(&format!("rec-{i:08}")))
        .take(5)
        .collect();
    assert!(
        ahead.is_empty(),
        "cursor {cursor} saved before records {ahead:?} were delivered"
    );
    assert!(cursor <= 10 * PAGE, "cursor {cursor} past what was read");

    gate.open();
    let _second = ws.run(config, Stdio::null());
    wait_for(
        "every record after the restart",
        Duration::from_secs(120),
        || {
            let seen: BTreeSet<String> = ids(&ws.lines("out.ndjson")).into_iter().collect();
            (seen.len() == TOTAL).then_some(())
        },
    );
    wait_for("the cursor at the end", Duration::from_secs(60), || {
        let text = std::fs::read_to_string(&cursor_path).ok()?;
        (text.trim() == TOTAL.to_string()).then_some(())
    });
}

/// The SDK's source stream driven with scripted acks (tests/plugin/source_sdk_order.py):
/// a batch siemflow fails is sent again and keeps its place, so `on_ack` (where authors
/// save their cursor) never runs for a later batch first.
#[test]
fn a_failed_batch_keeps_its_place_in_the_python_sdks_ack_order() {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/plugin/source_sdk_order.py");
    let output = std::process::Command::new(python())
        .arg(&script)
        .output()
        .expect("run the SDK driver");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.trim() == "ok",
        "{}: {stdout}{stderr}",
        output.status
    );
}
