//! The stdin reader driven with in-memory inputs.

use siemflow_core::decoding::Decoding;
use siemflow_core::event::resolve_batch;
use siemflow_core::{BatchStatus, SourceConfig};
use tokio::io::AsyncWriteExt as _;

use super::{LineSettings, StdinConfig, Summary, read_lines};
use crate::lines::LineDecoder;
use crate::testing::{PATIENCE, counter_value, lines_of, next_batch, wire};

fn settings(
    wired: &crate::testing::Wired,
    decoding: Decoding,
    max_line_bytes: usize,
    batch: usize,
) -> LineSettings {
    LineSettings {
        max_line_bytes,
        batch_max_events: batch,
        decoder: LineDecoder::new(decoding, &wired.cx.component.metrics),
    }
}

#[tokio::test]
async fn reads_to_the_end_and_returns_after_every_ack() {
    let state = tempfile::tempdir().expect("tempdir");
    let mut wired = wire("stdin_eof", "stdin", state.path());
    let settings = settings(&wired, Decoding::Json, 1024, 2);
    let input: &[u8] = b"{\"n\":1}\n{\"n\":2}\n\n{\"n\":3}\nlast without newline";
    let out = wired.cx.out.clone();
    let shutdown = wired.shutdown.clone();
    let reading = tokio::spawn(async move { read_lines(input, &settings, &out, &shutdown).await });

    let mut lines = Vec::new();
    let mut batches = Vec::new();
    while lines.len() < 4 {
        let batch = next_batch(&mut wired.rx).await;
        lines.extend(lines_of(&batch));
        batches.push(batch);
    }
    assert_eq!(lines, ["1", "2", "3", "last without newline"]);
    assert!(!reading.is_finished(), "must wait for the acknowledgements");
    let last = batches.pop().expect("a batch");
    for batch in batches {
        resolve_batch(batch, BatchStatus::Delivered);
    }
    resolve_batch(last, BatchStatus::Failed);
    let summary = tokio::time::timeout(PATIENCE, reading)
        .await
        .expect("ends")
        .expect("task")
        .expect("reads");
    assert_eq!(
        summary,
        Summary {
            delivered: 2,
            failed: 1,
            reached_end: true
        }
    );
    assert_eq!(
        counter_value("component_errors_total", "stdin_eof", "parse_failed"),
        1
    );
}

#[tokio::test]
async fn oversized_lines_are_discarded_and_counted() {
    let state = tempfile::tempdir().expect("tempdir");
    let mut wired = wire("stdin_long", "stdin", state.path());
    let settings = settings(&wired, Decoding::Text, 8, 100);
    let input = format!("ok\n{}\nfine\n", "y".repeat(50));
    let out = wired.cx.out.clone();
    let shutdown = wired.shutdown.clone();
    let reading =
        tokio::spawn(async move { read_lines(input.as_bytes(), &settings, &out, &shutdown).await });
    let batch = next_batch(&mut wired.rx).await;
    assert_eq!(lines_of(&batch), ["ok", "fine"]);
    resolve_batch(batch, BatchStatus::Delivered);
    let summary = reading.await.expect("task").expect("reads");
    assert_eq!(summary.delivered, 1);
    assert_eq!(
        counter_value("component_errors_total", "stdin_long", "line_too_long"),
        1
    );
}

#[tokio::test]
async fn lines_are_sent_as_they_arrive_and_shutdown_stops_reading() {
    let state = tempfile::tempdir().expect("tempdir");
    let mut wired = wire("stdin_stream", "stdin", state.path());
    let settings = settings(&wired, Decoding::Text, 1024, 1000);
    let (mut writer, reader) = tokio::io::duplex(1024);
    let out = wired.cx.out.clone();
    let shutdown = wired.shutdown.clone();
    let reading = tokio::spawn(async move { read_lines(reader, &settings, &out, &shutdown).await });

    writer.write_all(b"one\ntw").await.expect("write");
    let batch = next_batch(&mut wired.rx).await;
    assert_eq!(
        lines_of(&batch),
        ["one"],
        "a partial batch is sent without waiting for more"
    );
    resolve_batch(batch, BatchStatus::Delivered);
    writer.write_all(b"o\n").await.expect("write");
    let batch = next_batch(&mut wired.rx).await;
    assert_eq!(lines_of(&batch), ["two"]);
    resolve_batch(batch, BatchStatus::Delivered);

    wired.shutdown.cancel();
    let summary = tokio::time::timeout(PATIENCE, reading)
        .await
        .expect("stops")
        .expect("task")
        .expect("reads");
    assert_eq!(summary.delivered, 2);
    assert!(!summary.reached_end);
}

#[test]
fn config_defaults_and_checks() {
    let config: StdinConfig = toml::from_str("").expect("all defaults");
    assert_eq!(config.batch_max_events, 500);
    assert_eq!(config.max_line_bytes, 1 << 20);
    assert!(config.check().is_empty());
    let config: StdinConfig = toml::from_str("batch_max_events = 0").expect("parses");
    assert_eq!(config.check().len(), 1);
    assert!(toml::from_str::<StdinConfig>("nope = 1").is_err());
}
