//! A whole pipeline delivers exactly its input, and a route splits as configured.

use std::collections::BTreeSet;
use std::io::Read;
use std::process::Stdio;
use std::time::Duration;

use crate::harness::{Workspace, ids, records, wait_for};

#[test]
fn file_filter_route_to_file_and_console_delivers_exactly_its_input() {
    let ws = Workspace::new();
    let total = 3_000;
    ws.write("in/audit.ndjson", &records(0, total, 400));
    // Lines that the filter must drop: they are not audit records.
    ws.append(
        "in/audit.ndjson",
        "{\"heartbeat\":true}\n{\"heartbeat\":true}\n",
    );
    ws.write(
        "p.toml",
        r#"
data_dir = "data"
[api]
address = "127.0.0.1:0"

[sources.in]
type = "file"
include = ["in/*.ndjson"]

[transforms.only_audit]
type = "filter"
inputs = ["in"]
condition = 'exists(.Id)'

[transforms.split]
type = "route"
inputs = ["only_audit"]
route.identity = '.Workload == "AzureActiveDirectory"'
route.mail = '.Workload == "Exchange"'

[sinks.identity]
type = "file"
inputs = ["split.identity"]
path = "out/identity.ndjson"

[sinks.mail]
type = "file"
inputs = ["split.mail"]
path = "out/{{ .Workload }}.ndjson"

[sinks.rest]
type = "file"
inputs = ["split._unmatched"]
path = "out/rest.ndjson"

[sinks.screen]
type = "console"
inputs = ["split.identity"]
"#,
    );
    let mut pipeline = ws.run("p.toml", Stdio::piped());
    let mut stdout = pipeline.child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    wait_for(
        "every record in the outputs",
        Duration::from_secs(60),
        || {
            let n = ws.lines("out/identity.ndjson").len()
                + ws.lines("out/Exchange.ndjson").len()
                + ws.lines("out/rest.ndjson").len();
            (n >= total).then_some(())
        },
    );
    assert_eq!(
        pipeline.metric(
            "component_discarded_events_total",
            &["component_id=\"only_audit\""]
        ),
        2.0
    );
    pipeline.signal(libc::SIGTERM);
    assert!(pipeline.wait_exit(Duration::from_secs(30)).success());
    let console = reader.join().expect("reader");

    let identity = ids(&ws.lines("out/identity.ndjson"));
    let mail = ids(&ws.lines("out/Exchange.ndjson"));
    let rest = ids(&ws.lines("out/rest.ndjson"));
    assert_eq!(identity.len(), total / 3);
    assert_eq!(mail.len(), total / 3);
    assert_eq!(rest.len(), total / 3);
    let console_ids = ids(&console.lines().map(str::to_string).collect::<Vec<_>>());
    assert_eq!(
        console_ids, identity,
        "console gets the identity route, in order"
    );

    let mut all: Vec<String> = identity.iter().chain(&mail).chain(&rest).cloned().collect();
    let unique: BTreeSet<&String> = all.iter().collect();
    assert_eq!(unique.len(), total, "no duplicates");
    all.sort();
    let expected: Vec<String> = (0..total).map(|i| format!("rec-{i:08}")).collect();
    assert_eq!(all, expected, "exactly the input, nothing lost");
    for id in &identity {
        let n: usize = id[4..].parse().expect("number");
        assert_eq!(
            n % 3,
            0,
            "{id} routed to identity but is not AzureActiveDirectory"
        );
    }
}
