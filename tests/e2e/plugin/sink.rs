//! The Rust sink example (`examples/plugin_ndjson_sink.rs`, credit 1) as a `plugin` sink:
//! a destination that stops accepting stops the source; memory and the buffer stay
//! bounded; everything arrives once it accepts again.

use std::ffi::CString;
use std::io::{BufRead as _, BufReader};
use std::os::unix::ffi::OsStrExt as _;
use std::process::Stdio;
use std::time::Duration;

use super::example;
use crate::harness::{Workspace, records, wait_for, wait_until_stalled};

#[test]
fn rust_sink_with_credit_one_holds_the_source_back_while_its_destination_is_stalled() {
    let ws = Workspace::new();
    let total = 30_000;
    ws.write("in/a.ndjson", &records(0, total, 1_000));
    // A FIFO nobody reads yet: the plugin's write blocks, as on a stalled destination.
    let fifo = ws.path("destination.fifo");
    let c_path = CString::new(fifo.as_os_str().as_bytes()).expect("path");
    // SAFETY: mkfifo(3) with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    let config = format!(
        r#"
data_dir = "data"
[api]
address = "127.0.0.1:0"
[sources.in]
type = "file"
include = ["in/*.ndjson"]
[sinks.archive]
type = "plugin"
inputs = ["in"]
command = "{command}"
batch_timeout = "10m"
config = {{ path = "{fifo}" }}
batch.max_events = 100
buffer.max_events = 500
"#,
        command = example("plugin_ndjson_sink").display(),
        fifo = fifo.display(),
    );
    ws.write("p.toml", &config);
    let mut pipeline = ws.run("p.toml", Stdio::null());
    let stalled_at = wait_until_stalled(&mut pipeline, "in");
    assert!(
        stalled_at < (total / 10) as f64,
        "the source read {stalled_at} events into a stalled pipeline"
    );
    let sink = ["component_id=\"archive\""];
    let buffered = pipeline.metric("buffer_events", &sink);
    assert!(
        buffered <= 500.0,
        "sink buffer holds {buffered} > max_events"
    );
    let in_flight = pipeline.metric("delivery_in_flight_requests", &sink);
    assert!(
        in_flight <= 1.0,
        "{in_flight} batches sent to a plugin of credit 1"
    );
    let rss_mib = pipeline.rss_kib() / 1024;
    assert!(rss_mib < 150, "RSS {rss_mib} MiB while stalled");

    // The destination accepts again: every record arrives, once.
    let reader = std::thread::spawn(move || {
        // Read-write, so the end of one batch's writer is not an end of file.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&fifo)
            .expect("open fifo");
        BufReader::new(file)
            .lines()
            .take(total)
            .map(|line| line.expect("line"))
            .collect::<Vec<String>>()
    });
    wait_for("everything delivered", Duration::from_secs(180), || {
        let sent = pipeline.metric("component_sent_events_total", &sink);
        (sent >= total as f64).then_some(())
    });
    let lines = reader.join().expect("reader");
    let ids = crate::harness::ids(&lines);
    let unique: std::collections::BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), total);
    pipeline.signal(libc::SIGTERM);
    assert!(pipeline.wait_exit(Duration::from_secs(30)).success());
}
