//! Tests of the file sink, driven without the engine.

use std::future::Future as _;
use std::path::Path;
use std::time::Duration;

use serde_json::json;
use siemflow_core::retry::RetryRule;
use siemflow_core::{BatchStatus, ConfigIssue, SinkConfig, SinkContext};
use tokio::task::JoinHandle;

use super::FileSinkConfig;
use super::run;
use crate::test_support::{
    acked, assert_standard_metrics, eventually, harness, labels, start_sink,
};

fn config(value: serde_json::Value) -> FileSinkConfig {
    serde_json::from_value(value).expect("valid file sink config")
}

/// Starts the sink with fast retries, so tests of failures run in milliseconds.
fn start(config: &FileSinkConfig, cx: SinkContext) -> JoinHandle<anyhow::Result<()>> {
    let mut settings = config.settings().expect("settings");
    settings.retry = RetryRule::new(Duration::from_millis(5), Duration::from_millis(20));
    tokio::spawn(run::append_batches(settings, cx))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn path_in(dir: &Path, template: &str) -> String {
    format!("{}/{template}", dir.display())
}

#[tokio::test]
async fn file_path_template_renders_time_and_fields() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (h, cx) = harness("file-template", "file", dir.path());
    let sink = config(json!({ "path": path_in(dir.path(), "out/%Y-%m-%d/{{ .Workload }}.log") }));
    let day = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let task = start(&sink, cx);
    let (batch, receipt) = acked(vec![
        json!({"Id": "1", "Workload": "Exchange"}),
        json!({"Id": "2", "Workload": "SharePoint"}),
        json!({"Id": "3", "Workload": "Exchange"}),
    ]);
    h.sender.send(batch).await.expect("open");
    drop(h.sender);
    task.await.expect("no panic").expect("clean exit");
    assert_eq!(receipt.await, BatchStatus::Delivered);
    let folder = dir.path().join("out").join(&day);
    assert_eq!(
        read(&folder.join("Exchange.log")),
        "{\"Id\":\"1\",\"Workload\":\"Exchange\"}\n{\"Id\":\"3\",\"Workload\":\"Exchange\"}\n"
    );
    assert_eq!(
        read(&folder.join("SharePoint.log")),
        "{\"Id\":\"2\",\"Workload\":\"SharePoint\"}\n"
    );
}

#[tokio::test]
async fn file_missing_field_goes_to_the_missing_path_and_is_counted() {
    let metrics = siemflow_core::metrics::prometheus();
    let dir = tempfile::tempdir().expect("tempdir");
    let (h, cx) = harness("file-missing-field", "file", dir.path());
    let sink = config(json!({ "path": path_in(dir.path(), "{{ .Workload }}.log") }));
    let task = start(&sink, cx);
    let (batch, receipt) = acked(vec![
        json!({"Id": "1"}),
        json!({"Id": "2", "Workload": null}),
    ]);
    h.sender.send(batch).await.expect("open");
    drop(h.sender);
    task.await.expect("no panic").expect("clean exit");
    assert_eq!(receipt.await, BatchStatus::Delivered);
    assert_eq!(
        read(&dir.path().join("_missing.log")),
        "{\"Id\":\"1\"}\n{\"Id\":\"2\",\"Workload\":null}\n"
    );
    let rendered = metrics.render();
    let counted = rendered.lines().any(|line| {
        line.starts_with("component_errors_total")
            && line.contains("component_id=\"file-missing-field\"")
            && line.contains("error_type=\"template_field_missing\"")
            && line.ends_with(" 2")
    });
    assert!(counted, "missing fields not counted:\n{rendered}");
    let sent = rendered.lines().any(|line| {
        line.starts_with("component_sent_events_total")
            && line.contains("component_id=\"file-missing-field\"")
            && line.ends_with(" 2")
    });
    assert!(sent, "sent events not counted:\n{rendered}");
}

#[tokio::test]
async fn file_json_encoding_writes_one_object_per_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (h, cx) = harness("file-json", "file", dir.path());
    let out = dir.path().join("out.log");
    let sink = config(json!({ "path": out.display().to_string(), "encoding": "json" }));
    let task = start(&sink, cx);
    for i in 0..3 {
        let (batch, _) = acked(vec![json!({"n": i, "message": "a\nb"})]);
        h.sender.send(batch).await.expect("open");
    }
    drop(h.sender);
    task.await.expect("no panic").expect("clean exit");
    assert_eq!(
        read(&out),
        "{\"message\":\"a\\nb\",\"n\":0}\n{\"message\":\"a\\nb\",\"n\":1}\n{\"message\":\"a\\nb\",\"n\":2}\n"
    );
    // The compliance check: 3 received and 3 written, with the standard labels.
    assert_standard_metrics(&labels("file-json", "file"), 3);
}

#[tokio::test]
async fn file_text_encoding_writes_messages_and_falls_back_to_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (h, cx) = harness("file-text", "file", dir.path());
    let out = dir.path().join("out.log");
    let sink = config(json!({ "path": out.display().to_string(), "encoding": "text" }));
    let task = start(&sink, cx);
    let (batch, receipt) = acked(vec![
        json!({"message": "<13>Jan 1 host app: hello"}),
        json!({"Id": "no message"}),
    ]);
    h.sender.send(batch).await.expect("open");
    drop(h.sender);
    task.await.expect("no panic").expect("clean exit");
    assert_eq!(receipt.await, BatchStatus::Delivered);
    assert_eq!(
        read(&out),
        "<13>Jan 1 host app: hello\n{\"Id\":\"no message\"}\n"
    );
}

#[tokio::test]
async fn file_ack_is_delivered_only_once_the_data_is_in_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (h, cx) = harness("file-ack", "file", dir.path());
    let out = dir.path().join("appended.log");
    std::fs::write(&out, "existing\n").expect("seed");
    let sink = config(json!({ "path": out.display().to_string(), "fsync": true }));
    let task = start(&sink, cx);
    for i in 0..5 {
        let (batch, receipt) = acked(vec![json!({"n": i}); 2]);
        h.sender.send(batch).await.expect("open");
        // The sink is still running: whatever is acknowledged must already be readable.
        assert_eq!(receipt.await, BatchStatus::Delivered);
        assert_eq!(read(&out).lines().count(), 1 + 2 * (i + 1));
    }
    drop(h.sender);
    task.await.expect("no panic").expect("clean exit");
    assert!(
        read(&out).starts_with("existing\n"),
        "appends, never truncates"
    );
}

#[tokio::test]
async fn file_retries_an_unwritable_path_until_it_becomes_writable_without_loss() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (h, cx) = harness("file-retry", "file", dir.path());
    let blocker = dir.path().join("blocked");
    std::fs::write(&blocker, "a file where a folder should be").expect("blocker");
    let sink = config(json!({ "path": path_in(dir.path(), "blocked/{{ .Workload }}.log") }));
    let task = start(&sink, cx);
    let (batch, mut receipt) = acked(vec![
        json!({"Id": "1", "Workload": "Exchange"}),
        json!({"Id": "2", "Workload": "Exchange"}),
    ]);
    h.sender.send(batch).await.expect("open");
    eventually("the sink to report unhealthy", || h.health.ready().is_err()).await;
    let reasons = h.health.ready().expect_err("unhealthy");
    assert!(
        reasons[0].contains("blocked"),
        "reason names the path: {reasons:?}"
    );
    // Unhealthy means a write failed: the batch must not be acknowledged yet.
    let early = std::pin::Pin::new(&mut receipt)
        .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()));
    assert!(
        early.is_pending(),
        "acknowledged although nothing was written"
    );

    std::fs::remove_file(&blocker).expect("remove blocker");
    std::fs::create_dir(&blocker).expect("folder instead");
    assert_eq!(receipt.await, BatchStatus::Delivered);
    assert!(
        h.health.ready().is_ok(),
        "healthy again after a successful write"
    );

    let (batch, receipt) = acked(vec![json!({"Id": "3", "Workload": "Exchange"})]);
    h.sender.send(batch).await.expect("open");
    drop(h.sender);
    task.await.expect("no panic").expect("clean exit");
    assert_eq!(receipt.await, BatchStatus::Delivered);
    let written = read(&blocker.join("Exchange.log"));
    let ids: Vec<&str> = written.lines().collect();
    assert_eq!(
        ids,
        [
            "{\"Id\":\"1\",\"Workload\":\"Exchange\"}",
            "{\"Id\":\"2\",\"Workload\":\"Exchange\"}",
            "{\"Id\":\"3\",\"Workload\":\"Exchange\"}",
        ],
        "every event exactly once, in order"
    );
}

#[tokio::test]
async fn file_a_name_too_long_for_one_event_is_dead_lettered_and_the_rest_is_written() {
    let metrics = siemflow_core::metrics::prometheus();
    let dir = tempfile::tempdir().expect("tempdir");
    // The folder does not exist yet when the bad event, first of its batch, is written.
    let folder = dir.path().join("new/out");
    let sink = config(json!({ "path": format!("{}/{{{{ .Workload }}}}.log", folder.display()) }));
    let mut running = start_sink("file-name-too-long", "file", &sink);
    let long = "W".repeat(10_000);
    let receipts = running
        .send([
            json!({"Id": "bad", "Workload": long}),
            json!({"Id": "1", "Workload": "Exchange"}),
            json!({"Id": "2", "Workload": "SharePoint"}),
        ])
        .await;
    let mut dead = running.settle(receipts).await;
    dead.extend(running.finish().await);
    assert_eq!(dead.len(), 1, "exactly the bad event: {dead:?}");
    assert_eq!(dead[0]["Id"], "bad");
    let dropped = &dead[0]["metadata"]["dropped"];
    assert_eq!(dropped["reason"], "name_too_long");
    assert_eq!(dropped["component_id"], "file-name-too-long");
    assert_eq!(dropped["component_type"], "file");
    let message = dropped["message"].as_str().expect("a message");
    assert!(message.contains("File name too long"), "{message}");
    assert!(
        message.len() < 1_000,
        "the path is quoted cut short: {message}"
    );
    assert_eq!(
        read(&folder.join("Exchange.log")),
        "{\"Id\":\"1\",\"Workload\":\"Exchange\"}\n"
    );
    assert_eq!(
        read(&folder.join("SharePoint.log")),
        "{\"Id\":\"2\",\"Workload\":\"SharePoint\"}\n"
    );
    let rendered = metrics.render();
    let counted = |name: &str, extra: &str, value: &str| {
        rendered.lines().any(|line| {
            line.starts_with(name)
                && line.contains("component_id=\"file-name-too-long\"")
                && line.contains(extra)
                && line.ends_with(value)
        })
    };
    assert!(
        counted("delivery_dead_lettered_events_total", "", " 1"),
        "{rendered}"
    );
    assert!(
        counted(
            "component_discarded_events_total",
            "reason=\"name_too_long\"",
            " 1"
        ),
        "{rendered}"
    );
    assert!(
        counted("component_sent_events_total", "", " 2"),
        "{rendered}"
    );
    assert!(
        counted("component_errors_total", "write_failed", " 0"),
        "a bad name is not retried: {rendered}"
    );
}

#[tokio::test]
async fn file_a_file_where_a_rendered_folder_should_be_is_dead_lettered() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("Exchange"), "a file, not a folder").expect("file");
    let sink = config(json!({ "path": path_in(dir.path(), "{{ .Workload }}/audit.log") }));
    let mut running = start_sink("file-not-a-folder", "file", &sink);
    let receipts = running
        .send([
            json!({"Id": "1", "Workload": "Exchange"}),
            json!({"Id": "2", "Workload": "SharePoint"}),
            json!({"Id": "3", "Workload": "Exchange"}),
        ])
        .await;
    let mut dead = running.settle(receipts).await;
    dead.extend(running.finish().await);
    let ids: Vec<&str> = dead.iter().filter_map(|d| d["Id"].as_str()).collect();
    assert_eq!(ids, ["1", "3"], "both events bound for the blocked name");
    assert_eq!(dead[0]["metadata"]["dropped"]["reason"], "not_a_directory");
    assert_eq!(
        read(&dir.path().join("SharePoint/audit.log")),
        "{\"Id\":\"2\",\"Workload\":\"SharePoint\"}\n"
    );
}

#[tokio::test]
async fn file_abort_ends_the_retry_with_failed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (h, cx) = harness("file-abort", "file", dir.path());
    let blocker = dir.path().join("blocked");
    std::fs::write(&blocker, "not a folder").expect("blocker");
    let sink = config(json!({ "path": path_in(dir.path(), "blocked/out.log") }));
    let task = start(&sink, cx);
    let (batch, receipt) = acked(vec![json!({"Id": "1"})]);
    h.sender.send(batch).await.expect("open");
    eventually("the sink to report unhealthy", || h.health.ready().is_err()).await;
    h.abort.cancel();
    assert_eq!(receipt.await, BatchStatus::Failed);
    let result = task.await.expect("no panic");
    assert!(
        result.is_err(),
        "an aborted sink reports that it did not finish"
    );
}

#[tokio::test]
async fn file_with_one_open_file_still_writes_every_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (h, cx) = harness("file-lru", "file", dir.path());
    let sink = config(json!({
        "path": path_in(dir.path(), "{{ .Workload }}.log"),
        "max_open_files": 1,
        "idle_timeout": "20ms",
        "fsync": true,
    }));
    let task = start(&sink, cx);
    for round in 0..3 {
        let (batch, _) = acked(vec![
            json!({"Workload": "A", "n": round}),
            json!({"Workload": "B", "n": round}),
            json!({"Workload": "C", "n": round}),
        ]);
        h.sender.send(batch).await.expect("open");
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    drop(h.sender);
    task.await.expect("no panic").expect("clean exit");
    for workload in ["A", "B", "C"] {
        let expected: String = (0..3)
            .map(|n| format!("{{\"Workload\":\"{workload}\",\"n\":{n}}}\n"))
            .collect();
        assert_eq!(read(&dir.path().join(format!("{workload}.log"))), expected);
    }
}

#[test]
fn file_config_defaults_and_unknown_keys() {
    let sink = config(json!({ "path": "out.log" }));
    assert_eq!(sink.idle_timeout, Duration::from_secs(30));
    assert!(!sink.fsync);
    assert_eq!(sink.max_open_files, 256);
    assert_eq!(sink.encoding, crate::encoding::Encoding::Json);
    assert!(sink.check().is_empty());
    let unknown = serde_json::from_value::<FileSinkConfig>(json!({ "path": "x", "paht": "y" }));
    assert!(unknown.is_err(), "unknown keys are rejected");
    let missing = serde_json::from_value::<FileSinkConfig>(json!({}));
    assert!(missing.is_err(), "path is required");
}

#[test]
fn file_check_reports_an_invalid_path_template_on_key_path() {
    let issues = config(json!({ "path": "out/{{ .Workload.log" })).check();
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].key.as_deref(), Some("path"));
    let issues = config(json!({ "path": "out/%Q.log", "max_open_files": 0 })).check();
    let keys: Vec<Option<&str>> = issues
        .iter()
        .map(|i: &ConfigIssue| i.key.as_deref())
        .collect();
    assert_eq!(keys, [Some("path"), Some("max_open_files")]);
    let issues = config(json!({ "path": "out/%Y/" })).check();
    assert_eq!(issues[0].key.as_deref(), Some("path"));
}

#[test]
fn file_schema_shows_defaults_as_written() {
    let schema = schemars::schema_for!(FileSinkConfig);
    let json = serde_json::to_value(&schema).expect("schema");
    let idle = &json["properties"]["idle_timeout"];
    assert_eq!(idle["default"], json!("30s"), "{idle}");
    assert_eq!(json["properties"]["max_open_files"]["default"], json!(256));
    assert_eq!(json["required"], json!(["path"]));
}
