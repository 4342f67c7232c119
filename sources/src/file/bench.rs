//! Throughput of the file source: `cargo test -p siemflow-sources --release -- --ignored
//! --nocapture file_source_throughput`. It reports, never asserts on, timings.

use std::io::Write;
use std::time::{Duration, Instant};

use siemflow_core::decoding::Decoding;
use siemflow_core::event::resolve_batch;
use siemflow_core::{BatchStatus, SourceConfig};

use super::config::FileConfig;
use crate::testing::{next_batch, wire};

const RECORDS: usize = 200_000;

/// One Office 365 audit-like record of about 1 KB; `i` makes each unique.
fn record(i: usize) -> String {
    format!(
        concat!(
            r#"{{"CreationTime":"2024-05-{day:02}T10:{min:02}:{sec:02}","Id":"{i:08x}-3c8d-4a7d-832b-029040e7db99","#,
            r#""Operation":"FileAccessed","OrganizationId":"c8085975-d882-42d2-9193-d82d752a5de9","RecordType":6,"#,
            r#""UserKey":"i:0h.f|membership|10033fff8a5b2c6f@live.com","UserType":0,"Version":1,"Workload":"SharePoint","#,
            r#""ClientIP":"104.190.163.{ip}","ObjectId":"https://contoso.sharepoint.com/sites/finance/Shared Documents/Q{q} report {i}.xlsx","#,
            r#""UserId":"user{user}@contoso.onmicrosoft.com","CorrelationId":"{i:08x}-a0c2-5000-1c6e-6b1d5f3a6c2e","#,
            r#""EventSource":"SharePoint","ItemType":"File","ListId":"a2b4c6d8-0000-4e5f-9a8b-7c6d5e4f3a2b","#,
            r#""ListItemUniqueId":"{i:08x}-1111-2222-3333-444455556666","Site":"d9b6a1c2-7e8f-4a5b-9c0d-1e2f3a4b5c6d","#,
            r#""UserAgent":"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36","#,
            r#""WebId":"f0e1d2c3-b4a5-4968-8776-655443322110","SourceFileExtension":"xlsx","SiteUrl":"https://contoso.sharepoint.com/sites/finance/","#,
            r#""SourceFileName":"Q{q} report {i}.xlsx","SourceRelativeUrl":"Shared Documents","AppAccessContext":{{"AADSessionId":"{i:08x}-9f8e-7d6c-5b4a-39281706f5e4","#,
            r#""CorrelationId":"{i:08x}-a0c2-5000-1c6e-6b1d5f3a6c2e","UniqueTokenId":"AbCdEfGhIjKlMnOpQrStUv{i}"}},"IsManagedDevice":false,"Platform":"WinDesktop"}}"#
        ),
        i = i,
        day = 1 + i % 28,
        min = i % 60,
        sec = (i / 60) % 60,
        ip = i % 250,
        q = 1 + i % 4,
        user = i % 5000,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run in release mode by hand"]
async fn file_source_throughput() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.ndjson");
    let mut bytes = 0usize;
    {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
        for i in 0..RECORDS {
            let line = record(i);
            bytes += line.len() + 1;
            writeln!(out, "{line}").expect("write");
        }
        out.flush().expect("flush");
    }

    // Baseline: decoding alone on one thread, no reading, no channels.
    let text = std::fs::read(&path).expect("read back");
    let started = Instant::now();
    let mut decoded = 0usize;
    for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let (event, issues) = Decoding::Json.decode(line);
        assert!(issues.parse_error.is_none());
        decoded += 1;
        drop(event);
    }
    report("decode only (1 thread)", decoded, bytes, started.elapsed());

    let mut config = FileConfig::with_include(vec![path.display().to_string()]);
    config.poll_interval = Duration::from_millis(10);
    let wired = wire("file_bench", "file", &dir.path().join("state"));
    let mut rx = wired.rx;
    let shutdown = wired.shutdown.clone();
    let started = Instant::now();
    let task = tokio::spawn(config.build(wired.cx).expect("build"));
    let mut received = 0usize;
    while received < RECORDS {
        let batch = next_batch(&mut rx).await;
        received += batch.len();
        // A blackhole: acknowledge and drop.
        resolve_batch(batch, BatchStatus::Delivered);
    }
    report(
        "file source -> acknowledging consumer",
        received,
        bytes,
        started.elapsed(),
    );
    shutdown.cancel();
    task.await.expect("task").expect("source");
}

fn report(what: &str, events: usize, bytes: usize, took: Duration) {
    let seconds = took.as_secs_f64();
    println!(
        "{what}: {events} events ({:.0} bytes each) in {seconds:.2}s = {:.0} events/s, {:.1} MiB/s",
        bytes as f64 / events as f64,
        events as f64 / seconds,
        bytes as f64 / seconds / (1 << 20) as f64,
    );
}
