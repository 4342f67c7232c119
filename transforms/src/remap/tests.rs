use serde_json::json;
use siemflow_core::event::attach_ack;
use siemflow_core::{BatchStatus, Event, TransformConfig};

use super::RemapConfig;
use crate::test_support::{Built, bodies, build, config, deliver_all, event};

const AUDIT: &str = r#"{"Id":"e15273c7","RecordType":15,"CreationTime":"2022-12-06T20:51:58","Operation":"UserLoggedIn","Workload":"AzureActiveDirectory","UserKey":"981d11ea"}"#;

fn remap(toml_text: &str) -> Built {
    build::<RemapConfig>("normalize", "remap", toml_text)
}

fn body(events: &[Event]) -> serde_json::Value {
    assert_eq!(events.len(), 1, "one event");
    bodies(events).remove(0)
}

#[test]
fn rewrites_events() {
    let mut r = remap(
        r#"source = '''
.vendor = "microsoft"
.ts = parse_timestamp(.CreationTime, "%Y-%m-%dT%H:%M:%S") ?? now()
del(.UserKey)
'''"#,
    );
    let mut emitted = r.run(vec![event(AUDIT)]);
    assert!(emitted.named("dropped").is_empty());
    let out = body(&emitted.default);
    assert_eq!(out["vendor"], "microsoft");
    assert_eq!(out["ts"], "2022-12-06T20:51:58Z");
    assert!(out.get("UserKey").is_none());
    assert_eq!(out["Id"], "e15273c7");
}

#[test]
fn the_timezone_applies_to_timestamps_without_one() {
    let mut r = remap(
        r#"
timezone = "Europe/Paris"
source = '.ts = parse_timestamp!(.CreationTime, "%Y-%m-%dT%H:%M:%S")'
"#,
    );
    let emitted = r.run(vec![event(AUDIT)]);
    assert_eq!(body(&emitted.default)["ts"], "2022-12-06T19:51:58Z");
}

const FAILING: &str = r#"source = '''
.vendor = "microsoft"
.ts = parse_timestamp!(.CreationTime, "%Y-%m-%dT%H:%M:%S")
'''"#;

#[test]
fn a_runtime_error_sends_the_original_event_to_dropped() {
    let mut r = remap(&format!("drop_on_error = true\n{FAILING}"));
    let mut emitted = r.run(vec![
        event(r#"{"Id":"x","CreationTime":"yesterday"}"#),
        event(AUDIT),
    ]);
    assert_eq!(body(&emitted.default)["vendor"], "microsoft");
    let dropped = emitted.named("dropped");
    let out = body(&dropped);
    assert_eq!(out["Id"], "x");
    assert_eq!(out["CreationTime"], "yesterday");
    assert!(
        out.get("vendor").is_none(),
        "the original body, not the half-modified one"
    );
    let annotation = &out["metadata"]["dropped"];
    assert_eq!(annotation["reason"], "error");
    assert_eq!(annotation["component_id"], "normalize");
    assert_eq!(annotation["component_type"], "remap");
    assert_eq!(annotation["component_kind"], "transform");
    assert!(
        annotation["message"]
            .as_str()
            .expect("message")
            .contains("parse"),
        "{annotation}"
    );
}

#[test]
fn by_default_an_erroring_event_continues_unmodified() {
    let mut r = remap(FAILING);
    let mut emitted = r.run(vec![event(r#"{"Id":"x","CreationTime":"yesterday"}"#)]);
    assert!(emitted.named("dropped").is_empty());
    assert_eq!(
        body(&emitted.default),
        json!({"Id":"x","CreationTime":"yesterday"})
    );
}

#[test]
fn an_abort_goes_to_dropped_by_default() {
    let mut r = remap(
        r#"source = '''
.seen = true
if .Operation == "MailItemsAccessed" { abort "too noisy" }
'''"#,
    );
    let mut emitted = r.run(vec![event(r#"{"Operation":"MailItemsAccessed"}"#)]);
    assert!(emitted.default.is_empty());
    let out = body(&emitted.named("dropped"));
    assert!(out.get("seen").is_none());
    assert_eq!(out["metadata"]["dropped"]["reason"], "abort");
    assert_eq!(out["metadata"]["dropped"]["message"], "too noisy");
}

#[test]
fn an_abort_continues_unmodified_when_not_dropped() {
    let mut r = remap(
        r#"
drop_on_abort = false
source = '.seen = true; abort'
"#,
    );
    let emitted = r.run(vec![event(r#"{"Operation":"Send"}"#)]);
    assert_eq!(body(&emitted.default), json!({"Operation":"Send"}));
}

#[tokio::test]
async fn dropped_events_settle_as_delivered_when_not_rerouted() {
    let config: RemapConfig = config(&format!(
        "drop_on_error = true\nreroute_dropped = false\n{FAILING}"
    ));
    assert!(config.outputs().is_empty());
    let mut r = Built {
        transform: config
            .build(&crate::test_support::context("r", "remap"))
            .expect("builds"),
        outputs: config.outputs(),
    };
    let mut batch = vec![event(r#"{"CreationTime":"bad"}"#), event(AUDIT)];
    let receipt = attach_ack(&mut batch);
    let emitted = r.run(batch);
    assert!(emitted.named.is_empty());
    assert_eq!(emitted.default.len(), 1);
    deliver_all(emitted.default);
    assert_eq!(receipt.await, BatchStatus::Delivered);
}

#[tokio::test]
async fn an_array_root_becomes_one_event_per_object_each_with_an_ack_share() {
    let mut r = remap(
        r#"source = '''
. = map_values(array!(.Members)) -> |m| { {"member": m, "Operation": .Operation} }
'''"#,
    );
    let mut batch = vec![event(
        r#"{"Operation":"AddMember","Members":["a","b","c"]}"#,
    )];
    let receipt = attach_ack(&mut batch);
    let mut emitted = r.run(batch);
    assert!(emitted.named("dropped").is_empty());
    let members: Vec<_> = bodies(&emitted.default)
        .iter()
        .map(|b| b["member"].clone())
        .collect();
    assert_eq!(members, vec![json!("a"), json!("b"), json!("c")]);
    let last = emitted.default.pop().expect("three events");
    deliver_all(emitted.default);
    // Two of three delivered: the source must not see the batch as done.
    drop(last);
    assert_eq!(receipt.await, BatchStatus::Failed);
}

#[tokio::test]
async fn an_array_root_delivers_when_every_event_is() {
    let mut r = remap(r#"source = '. = [{"a": 1}, {"a": 2}]'"#);
    let mut batch = vec![event(AUDIT)];
    let receipt = attach_ack(&mut batch);
    let emitted = r.run(batch);
    assert_eq!(
        bodies(&emitted.default),
        vec![json!({"a":1}), json!({"a":2})]
    );
    deliver_all(emitted.default);
    assert_eq!(receipt.await, BatchStatus::Delivered);
}

#[test]
fn a_non_object_root_is_an_error() {
    let mut r = remap("drop_on_error = true\nsource = '. = .RecordType'");
    let mut emitted = r.run(vec![event(AUDIT), event(r#"{"RecordType":[1, {"a":2}]}"#)]);
    assert!(emitted.default.is_empty());
    let dropped = emitted.named("dropped");
    assert_eq!(dropped.len(), 2);
    let out = bodies(&dropped);
    assert_eq!(out[0]["Id"], "e15273c7");
    assert_eq!(out[0]["metadata"]["dropped"]["reason"], "error");
    assert!(
        out[0]["metadata"]["dropped"]["message"]
            .as_str()
            .expect("message")
            .contains("integer"),
        "{}",
        out[0]
    );
    assert_eq!(out[1]["RecordType"], json!([1, {"a":2}]));
}

#[test]
fn an_existing_metadata_object_keeps_its_fields() {
    let mut r = remap(&format!("drop_on_error = true\n{FAILING}"));
    let mut emitted = r.run(vec![
        event(r#"{"metadata":{"tenant":"t1"}}"#),
        event(r#"{"metadata":"opaque"}"#),
    ]);
    let out = bodies(&emitted.named("dropped"));
    assert_eq!(out[0]["metadata"]["tenant"], "t1");
    assert_eq!(out[0]["metadata"]["dropped"]["reason"], "error");
    assert_eq!(out[1]["metadata"], "opaque");
    assert_eq!(out[1]["siemflow_metadata"]["dropped"]["reason"], "error");
}

#[test]
fn the_program_can_be_loaded_from_a_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("normalize.vrl");
    std::fs::write(&path, ".vendor = \"microsoft\"\ndel(.UserKey)\n").expect("write program");
    let mut r = remap(&format!("file = {:?}", path.display().to_string()));
    let emitted = r.run(vec![event(AUDIT)]);
    let out = body(&emitted.default);
    assert_eq!(out["vendor"], "microsoft");
    assert!(out.get("UserKey").is_none());
}

#[test]
fn compile_errors_name_the_option_and_the_location() {
    let config: RemapConfig = config("source = '.vendor = '");
    let issues = config.check();
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].key.as_deref(), Some("source"));
    assert!(
        issues[0].message.contains("source:1:"),
        "{}",
        issues[0].message
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bad.vrl");
    std::fs::write(&path, ".ts = parse_timestamp(.CreationTime, \"%Y\")\n").expect("write program");
    let config: RemapConfig = config_at(&path);
    let issues = config.check();
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].key.as_deref(), Some("file"));
    assert!(issues[0].message.contains("E103"), "{}", issues[0].message);
    let at = format!("{}:1:7", path.display());
    assert!(issues[0].message.contains(&at), "{}", issues[0].message);
}

fn config_at(path: &std::path::Path) -> RemapConfig {
    config(&format!("file = {:?}", path.display().to_string()))
}

#[test]
fn exactly_one_of_source_and_file_is_required() {
    let neither: RemapConfig = config("drop_on_error = true");
    assert_eq!(neither.check()[0].key.as_deref(), Some("source"));
    let both: RemapConfig = config("source = '.a = 1'\nfile = 'x.vrl'");
    assert_eq!(both.check()[0].key.as_deref(), Some("source"));
    let missing = config_at(std::path::Path::new("/nonexistent/siemflow/program.vrl"));
    let issues = missing.check();
    assert_eq!(issues[0].key.as_deref(), Some("file"));
    assert!(
        issues[0]
            .message
            .contains("/nonexistent/siemflow/program.vrl")
    );
}

#[test]
fn an_unknown_timezone_is_reported() {
    let config: RemapConfig = config("timezone = 'Mars/Olympus'\nsource = '.a = 1'");
    let issues = config.check();
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].key.as_deref(), Some("timezone"));
}

#[tokio::test]
async fn remapped_events_keep_their_acknowledgement() {
    let mut r = remap("source = '.vendor = \"microsoft\"'");
    let mut batch = vec![event(AUDIT), event(AUDIT)];
    let receipt = attach_ack(&mut batch);
    let emitted = r.run(batch);
    deliver_all(emitted.default);
    assert_eq!(receipt.await, BatchStatus::Delivered);
}

/// Measures remap throughput on real Office 365 audit records; run with
/// `cargo test -p siemflow-transforms --release --lib -- --ignored --nocapture remap_throughput`.
#[test]
#[ignore]
fn remap_throughput() {
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/fixtures/microsoftdocs-office-365-management-api/o365_management_activity_examples.ndjson"
    );
    let text = std::fs::read_to_string(fixture).expect("fixture readable");
    let records: Vec<siemflow_core::Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("valid record"))
        .collect();
    let mean_size = text.len() / records.len();
    let programs = [
        (
            "typical (fallible: keeps a copy)",
            r#"
.vendor = "microsoft"
if is_string(.CreationTime) {
  .ts = parse_timestamp!(.CreationTime, "%Y-%m-%dT%H:%M:%S")
}
del(.UserKey)
"#,
        ),
        (
            "typical, errors handled (no copy)",
            r#"
.vendor = "microsoft"
.ts = parse_timestamp(.CreationTime, "%Y-%m-%dT%H:%M:%S") ?? null
del(.UserKey)
"#,
        ),
        ("trivial", r#".vendor = "microsoft""#),
    ];
    for (name, program) in programs {
        let mut r = remap(&format!("source = '''{program}'''"));
        const BATCH: usize = 1000;
        const BATCHES: usize = 200;
        let batches: Vec<Vec<Event>> = (0..BATCHES)
            .map(|b| {
                (0..BATCH)
                    .map(|i| Event::new(records[(b * BATCH + i) % records.len()].clone()))
                    .collect()
            })
            .collect();
        let started = std::time::Instant::now();
        let mut emitted_total = 0;
        for batch in batches {
            let emitted = r.run(batch);
            emitted_total += emitted.default.len();
        }
        let elapsed = started.elapsed();
        let events = BATCH * BATCHES;
        assert_eq!(emitted_total, events);
        println!(
            "remap {name}: {events} events (mean {mean_size} B JSON) in {elapsed:?}: {:.0} events/s",
            events as f64 / elapsed.as_secs_f64()
        );
    }
}
