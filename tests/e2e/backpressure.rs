//! A sink that stops accepting stops the source; memory and the buffer stay bounded;
//! everything flows again when the sink accepts.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use crate::harness::{Workspace, records, wait_for, wait_until_stalled};

#[test]
fn a_stalled_sink_stops_the_source_and_memory_stays_bounded() {
    let ws = Workspace::new();
    let total = 150_000;
    // About 150 MB of input: far more than the bound below if it were all read.
    ws.write("in/a.ndjson", &records(0, total, 1_000));
    ws.write(
        "p.toml",
        r#"
data_dir = "data"
[api]
address = "127.0.0.1:0"
[sources.in]
type = "file"
include = ["in/*.ndjson"]
[sinks.screen]
type = "console"
inputs = ["in"]
buffer.max_events = 500
"#,
    );
    // stdout is a pipe nobody reads yet: the console sink blocks once it is full.
    let mut pipeline = ws.run("p.toml", Stdio::piped());
    let stalled_at = wait_until_stalled(&mut pipeline, "in");
    assert!(
        stalled_at < (total / 10) as f64,
        "the source read {stalled_at} events into a stalled pipeline"
    );
    let buffered = pipeline.metric("buffer_events", &["component_id=\"screen\""]);
    assert!(
        buffered <= 500.0,
        "sink buffer holds {buffered} > max_events"
    );
    let rss_mib = pipeline.rss_kib() / 1024;
    assert!(rss_mib < 150, "RSS {rss_mib} MiB while stalled");

    // The sink accepts again: every record arrives.
    let stdout = pipeline.child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || BufReader::new(stdout).lines().count());
    wait_for(
        "everything to be delivered",
        Duration::from_secs(180),
        || {
            let sent = pipeline.metric("component_sent_events_total", &["component_id=\"screen\""]);
            (sent >= total as f64).then_some(())
        },
    );
    pipeline.signal(libc::SIGTERM);
    assert!(pipeline.wait_exit(Duration::from_secs(30)).success());
    assert_eq!(reader.join().expect("reader"), total);
}
