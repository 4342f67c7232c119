//! Disk buffer behaviour: durability, restarts, redelivery, bounds, damage, handover.

use std::fs::{self, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use super::*;
use crate::ack::AckReceipt;
use crate::api::HealthRegistry;
use crate::event::resolve_batch;
use crate::metrics::ComponentKind;

fn labels(id: &str) -> ComponentLabels {
    ComponentLabels {
        id: id.into(),
        kind: ComponentKind::Sink,
        type_name: "test".into(),
    }
}

fn options(max_size: u64, segment_bytes: u64) -> Options {
    Options {
        max_size,
        when_full: WhenFull::Block,
        segment_bytes,
        redeliver_after: Duration::ZERO,
        write_retry: RetryRule::new(Duration::from_millis(5), Duration::from_millis(20)),
    }
}

/// A buffer with its metrics recorded in `metrics` (not the process-wide recorder).
struct Opened {
    tx: Sender,
    rx: Receiver,
    metrics: PrometheusHandle,
    /// The sink's health as `/ready` shows it.
    health: HealthRegistry,
}

fn open_recorded(dir: &Path, options: Options) -> Opened {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let health = HealthRegistry::default();
    let sink = health.register("disk", ComponentKind::Sink);
    let (tx, rx) = metrics::with_local_recorder(&recorder, || {
        open(dir, options, &labels("disk"), &sink).expect("opens")
    });
    Opened {
        tx,
        rx,
        metrics: handle,
        health,
    }
}

fn metric(handle: &PrometheusHandle, name: &str) -> f64 {
    handle
        .render()
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

fn batch(from: usize, n: usize) -> Batch {
    (from..from + n)
        .map(|i| Event::from_message(format!("event-{i}")))
        .collect()
}

fn big_batch(i: usize, bytes: usize) -> Batch {
    vec![Event::from_message(format!("{i}:{}", "x".repeat(bytes)))]
}

fn messages(batch: &Batch) -> Vec<String> {
    batch
        .iter()
        .map(|e| match &e.value {
            Value::Object(map) => map
                .get("message")
                .and_then(|v| v.to_str_lossy())
                .map(|s| s.into_owned())
                .unwrap_or_default(),
            other => format!("{other:?}"),
        })
        .collect()
}

/// Sends a batch with a fresh acknowledgement; returns its receipt.
async fn send(tx: &Sender, mut batch: Batch) -> AckReceipt {
    let receipt = attach_ack(&mut batch);
    tx.send(batch).await.expect("buffer open");
    receipt
}

/// Waits until every handle on the buffer in `dir` is gone (acknowledgement watchers
/// finish on their own), so the next open recovers from disk like a new process would.
async fn closed(dir: &Path) {
    let key = dir.canonicalize().expect("buffer folder exists");
    loop {
        let alive = lock(registry())
            .get(&key)
            .is_some_and(|weak| weak.strong_count() > 0);
        if !alive {
            return;
        }
        tokio::task::yield_now().await;
    }
}

fn shared_of(rx: &Receiver) -> Arc<Shared> {
    Arc::clone(&rx.shared)
}

#[tokio::test]
async fn round_trip_acknowledges_upstream_once_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Opened { tx, mut rx, .. } = open_recorded(dir.path(), options(1 << 20, 1 << 16));
    let mut receipts = Vec::new();
    for i in 0..3 {
        receipts.push(send(&tx, batch(i * 10, 10)).await);
    }
    // Upstream is settled by the durable write alone: nothing was read yet.
    for receipt in receipts {
        assert_eq!(receipt.await, BatchStatus::Delivered);
    }
    for i in 0..3 {
        let got = rx.recv().await.expect("a batch");
        let expected: Vec<String> = (i * 10..i * 10 + 10)
            .map(|n| format!("event-{n}"))
            .collect();
        assert_eq!(messages(&got), expected);
        resolve_batch(got, BatchStatus::Delivered);
    }
    drop(tx);
    assert!(rx.recv().await.is_none(), "input closed and nothing left");
}

#[tokio::test]
async fn failing_writes_make_the_sink_unready_until_a_write_succeeds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Opened {
        tx,
        mut rx,
        metrics,
        health,
    } = open_recorded(dir.path(), options(1 << 20, 1 << 16));
    let shared = shared_of(&rx);
    send(&tx, batch(0, 5)).await.await;
    assert!(health.ready().is_ok());

    // The disk fills up.
    *lock(&shared.failing_writes) = Some(libc::ENOSPC);
    let mut receipt = send(&tx, batch(5, 5)).await;
    let mut failed_writes = 0.0;
    while failed_writes < 2.0 {
        tokio::task::yield_now().await;
        failed_writes = metric(&metrics, "component_errors_total");
    }
    let problems = health.ready().expect_err("unready while writes fail");
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("sink disk: disk buffer cannot write to ")
            && problems[0].contains("No space left on device"),
        "{problems:?}"
    );
    assert!(
        metrics
            .render()
            .contains("error_type=\"buffer_write_failed\""),
        "counted as buffer_write_failed"
    );
    let early = std::pin::Pin::new(&mut receipt)
        .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()));
    assert!(early.is_pending(), "acknowledged although not on disk");

    // Space again: the same batch is written, acknowledged, and the sink is ready.
    *lock(&shared.failing_writes) = None;
    assert_eq!(receipt.await, BatchStatus::Delivered);
    assert!(health.ready().is_ok(), "ready once a write succeeded");
    let mut got = Vec::new();
    while got.len() < 10 {
        let batch = rx.recv().await.expect("a batch");
        got.extend(messages(&batch));
        resolve_batch(batch, BatchStatus::Delivered);
    }
    let expected: Vec<String> = (0..10).map(|i| format!("event-{i}")).collect();
    assert_eq!(got, expected, "nothing lost, nothing twice");
}

#[tokio::test]
async fn restart_reads_exactly_what_the_sink_did_not_deliver() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let Opened { tx, mut rx, .. } = open_recorded(dir.path(), options(1 << 20, 1 << 16));
        for i in 0..5 {
            send(&tx, batch(i, 1)).await.await;
        }
        let mut read = Vec::new();
        for _ in 0..5 {
            read.push(rx.recv().await.expect("a batch"));
        }
        // Delivered: 0, 1 and 3. Failed (dropped unsettled): 2 and 4.
        for (i, batch) in read.into_iter().enumerate() {
            if [0, 1, 3].contains(&i) {
                resolve_batch(batch, BatchStatus::Delivered);
            }
        }
        drop((tx, rx));
    }
    closed(dir.path()).await;
    let Opened { tx, mut rx, .. } = open_recorded(dir.path(), options(1 << 20, 1 << 16));
    drop(tx);
    let mut again = Vec::new();
    while let Some(batch) = rx.recv().await {
        again.extend(messages(&batch));
        resolve_batch(batch, BatchStatus::Delivered);
    }
    assert_eq!(again, ["event-2", "event-4"]);
}

#[tokio::test]
async fn a_failed_batch_is_delivered_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Opened {
        tx,
        mut rx,
        metrics,
        ..
    } = open_recorded(dir.path(), options(1 << 20, 1 << 16));
    send(&tx, batch(0, 3)).await.await;
    send(&tx, batch(3, 1)).await.await;
    let first = rx.recv().await.expect("first");
    assert_eq!(messages(&first).len(), 3);
    resolve_batch(first, BatchStatus::Failed);
    let mut seen = Vec::new();
    drop(tx);
    while let Some(batch) = rx.recv().await {
        seen.push(messages(&batch));
        resolve_batch(batch, BatchStatus::Delivered);
    }
    assert!(
        seen.contains(&vec!["event-0".into(), "event-1".into(), "event-2".into()]),
        "the failed batch came back: {seen:?}"
    );
    assert!(seen.contains(&vec!["event-3".to_string()]));
    assert_eq!(metric(&metrics, "buffer_redelivered_events_total"), 3.0);
}

#[tokio::test]
async fn a_full_buffer_blocks_the_writer_until_the_sink_catches_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let max_size = 64 << 10;
    let Opened {
        tx,
        mut rx,
        metrics,
        ..
    } = open_recorded(dir.path(), options(max_size, 8 << 10));
    let shared = shared_of(&rx);
    let total = 40;
    let producer = tokio::spawn(async move {
        let mut receipts = Vec::new();
        for i in 0..total {
            receipts.push(send(&tx, big_batch(i, 4000)).await);
        }
        receipts
    });
    // Wait until the writer found the buffer full.
    while shared.full_waits.load(Ordering::Relaxed) == 0 {
        tokio::task::yield_now().await;
    }
    let on_disk = shared.ledger().disk_bytes();
    assert!(on_disk <= max_size, "{on_disk} bytes on disk > {max_size}");
    assert!(!producer.is_finished(), "the producer must be held back");
    assert_eq!(metric(&metrics, "buffer_max_byte_size"), max_size as f64);
    let written = metric(&metrics, "buffer_received_events_total");
    assert!(written < total as f64, "{written} written while full");
    // The sink reads and delivers: room frees up and every batch gets through, in order.
    let mut got = Vec::new();
    while got.len() < total {
        let Some(batch) = rx.recv().await else {
            panic!("none after {}: {}", got.len(), metrics.render())
        };
        got.extend(messages(&batch));
        resolve_batch(batch, BatchStatus::Delivered);
        let on_disk = shared.ledger().disk_bytes();
        assert!(on_disk <= max_size, "{on_disk} bytes on disk > {max_size}");
    }
    let receipts = producer.await.expect("producer");
    for receipt in receipts {
        assert_eq!(receipt.await, BatchStatus::Delivered);
    }
    let order: Vec<usize> = got
        .iter()
        .filter_map(|m| m.split(':').next()?.parse().ok())
        .collect();
    assert_eq!(order, (0..total).collect::<Vec<_>>());
}

#[tokio::test]
async fn drop_newest_discards_when_full_and_settles() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = options(16 << 10, 8 << 10);
    opts.when_full = WhenFull::DropNewest;
    let Opened {
        tx, rx, metrics, ..
    } = open_recorded(dir.path(), opts);
    let mut statuses = Vec::new();
    for i in 0..10 {
        statuses.push(send(&tx, big_batch(i, 4000)).await.await);
    }
    assert!(statuses.iter().all(|s| *s == BatchStatus::Delivered));
    let discarded = metric(&metrics, "buffer_discarded_events_total");
    let written = metric(&metrics, "buffer_received_events_total");
    assert!(discarded > 0.0, "a 16 KiB buffer cannot take 40 KB");
    assert_eq!(discarded + written, 10.0);
    assert!(shared_of(&rx).ledger().disk_bytes() <= 16 << 10);
}

/// Writes `n` single-event batches and closes the buffer without reading them.
async fn fill_and_close(dir: &Path, n: usize, segment_bytes: u64) {
    let Opened { tx, rx, .. } = open_recorded(dir, options(1 << 20, segment_bytes));
    for i in 0..n {
        send(&tx, batch(i, 1)).await.await;
    }
    drop((tx, rx));
    closed(dir).await;
}

/// Record offsets of a segment, from a scan.
fn record_offsets(dir: &Path, id: u64) -> Vec<u64> {
    segment::scan(dir, id, 0)
        .expect("scan")
        .records
        .iter()
        .map(|r| r.pos.offset)
        .collect()
}

async fn drain(dir: &Path) -> (Vec<String>, PrometheusHandle) {
    let Opened {
        tx,
        mut rx,
        metrics,
        ..
    } = open_recorded(dir, options(1 << 20, 1 << 16));
    drop(tx);
    let mut got = Vec::new();
    while let Some(batch) = rx.recv().await {
        got.extend(messages(&batch));
        resolve_batch(batch, BatchStatus::Delivered);
    }
    (got, metrics)
}

#[tokio::test]
async fn a_torn_tail_and_a_corrupted_record_are_skipped_and_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let buffer = dir.path().join("buffer");
    fill_and_close(&buffer, 6, 1 << 16).await;
    let ids = segment::list(&buffer).expect("list");
    assert_eq!(ids.len(), 1);
    let path = segment::path(&buffer, ids[0]);
    let offsets = record_offsets(&buffer, ids[0]);
    assert_eq!(offsets.len(), 6);
    // Flip payload bytes in the middle of record 2.
    let mut file = OpenOptions::new().write(true).open(&path).expect("open");
    file.seek(SeekFrom::Start(offsets[2] + 14)).expect("seek");
    file.write_all(b"\xde\xad\xbe\xef").expect("flip");
    // Cut record 5 in half, as a crash mid-write would.
    let len = fs::metadata(&path).expect("stat").len();
    file.set_len(offsets[5] + (len - offsets[5]) / 2)
        .expect("truncate");
    drop(file);

    let (got, metrics) = drain(&buffer).await;
    assert_eq!(got, ["event-0", "event-1", "event-3", "event-4"]);
    assert_eq!(metric(&metrics, "buffer_corrupted_records_total"), 2.0);
}

#[tokio::test]
async fn a_garbage_length_skips_to_the_next_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let buffer = dir.path().join("buffer");
    // Tiny segments: two records each.
    let one_record = segment::HEADER_LEN + record_len_of_one_event();
    fill_and_close(&buffer, 6, one_record * 2 + segment::HEADER_LEN).await;
    let ids = segment::list(&buffer).expect("list");
    assert_eq!(ids.len(), 3, "two records per segment");
    let offsets = record_offsets(&buffer, ids[1]);
    let mut file = OpenOptions::new()
        .write(true)
        .open(segment::path(&buffer, ids[1]))
        .expect("open");
    file.seek(SeekFrom::Start(offsets[0])).expect("seek");
    file.write_all(&u32::MAX.to_le_bytes()).expect("garble");
    drop(file);

    let (got, metrics) = drain(&buffer).await;
    assert_eq!(got, ["event-0", "event-1", "event-4", "event-5"]);
    assert_eq!(metric(&metrics, "buffer_corrupted_records_total"), 1.0);
}

fn record_len_of_one_event() -> u64 {
    let mut record = Pending::new();
    codec::encode(&Event::from_message("event-0").value, &mut record.bytes);
    record.bytes.len() as u64
}

#[tokio::test]
async fn delivered_segments_are_deleted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let buffer = dir.path().join("buffer");
    let Opened { tx, mut rx, .. } = open_recorded(&buffer, options(1 << 20, 2 << 10));
    for i in 0..20 {
        send(&tx, big_batch(i, 1000)).await.await;
    }
    assert!(segment::list(&buffer).expect("list").len() >= 10);
    for _ in 0..20 {
        let batch = rx.recv().await.expect("a batch");
        resolve_batch(batch, BatchStatus::Delivered);
    }
    // Only the segment still open for writing may stay.
    while segment::list(&buffer).expect("list").len() > 1 {
        tokio::task::yield_now().await;
    }
    drop((tx, rx));
    closed(&buffer).await;
    // Reopening finds nothing to deliver and drops the last, delivered segment.
    let (got, _) = drain(&buffer).await;
    assert!(got.is_empty());
    closed(&buffer).await;
    assert!(segment::list(&buffer).expect("list").is_empty());
}

#[tokio::test]
async fn a_second_owner_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let buffer = dir.path().join("buffer");
    let Opened {
        tx: _tx, rx: _rx, ..
    } = open_recorded(&buffer, options(1 << 20, 1 << 16));
    // Another process opening the folder gets its own lock: refused.
    let error = Shared::open(
        buffer.canonicalize().expect("exists"),
        &options(1 << 20, 1 << 16),
        &labels("other"),
        false,
    )
    .err()
    .expect("the lock is held");
    assert!(
        error.to_string().contains("in use by another process"),
        "{error}"
    );
}

#[tokio::test]
async fn a_replaced_sink_hands_the_buffer_to_its_successor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let buffer = dir.path().join("buffer");
    let Opened {
        tx: old_tx,
        rx: mut old_rx,
        ..
    } = open_recorded(&buffer, options(1 << 20, 1 << 16));
    for i in 0..4 {
        send(&old_tx, batch(i, 1)).await.await;
    }
    let first = old_rx.recv().await.expect("a batch");
    // Reload: the new instance opens the same folder while the old one still runs.
    let Opened {
        tx: new_tx,
        rx: mut new_rx,
        ..
    } = open_recorded(&buffer, options(1 << 20, 1 << 16));
    assert!(Arc::ptr_eq(&old_rx.shared, &new_rx.shared), "one owner");
    drop(old_tx);
    old_rx
        .input_done
        .clone()
        .wait_for(|done| *done)
        .await
        .expect("the old writer finished");
    assert!(
        old_rx.recv().await.is_none(),
        "the old instance stops once its input closed"
    );
    resolve_batch(first, BatchStatus::Delivered);
    drop(old_rx);
    send(&new_tx, batch(4, 1)).await.await;
    drop(new_tx);
    let mut got = Vec::new();
    while let Some(batch) = new_rx.recv().await {
        got.extend(messages(&batch));
        resolve_batch(batch, BatchStatus::Delivered);
    }
    assert_eq!(got, ["event-1", "event-2", "event-3", "event-4"]);
}

/// The cost of the fsync policy: run with
/// `cargo test -p siemflow-core --release --lib -- --ignored --nocapture fsync_cost`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a test"]
async fn fsync_cost() {
    let template = crate::event::Event::from_message("x".repeat(600)).value;
    let make = |n: usize| -> Batch { (0..n).map(|_| Event::new(template.clone())).collect() };
    // (mode, events per batch, batches)
    for (mode, per_batch, batches) in [
        ("pipelined batches, group commit", 500, 400),
        ("one batch per sync", 500, 400),
        ("one small batch per sync", 10, 2000),
        ("no sync (encode and append only)", 500, 400),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let Opened { tx, rx, .. } = open_recorded(dir.path(), options(4 << 30, 32 << 20));
        let shared = shared_of(&rx);
        let started = Instant::now();
        let bytes = match mode {
            "pipelined batches, group commit" => {
                let mut receipts = Vec::new();
                for _ in 0..batches {
                    receipts.push(send(&tx, make(per_batch)).await);
                }
                for receipt in receipts {
                    receipt.await;
                }
                shared.ledger().disk_bytes()
            }
            "no sync (encode and append only)" => {
                let mut writer = SegmentWriter::create(dir.path(), 999).expect("segment");
                for _ in 0..batches {
                    for record in shared.encode(make(per_batch)) {
                        writer.append(&record.bytes).expect("append");
                    }
                }
                writer.len
            }
            _ => {
                for _ in 0..batches {
                    send(&tx, make(per_batch)).await.await;
                }
                shared.ledger().disk_bytes()
            }
        };
        let elapsed = started.elapsed().as_secs_f64();
        let events = per_batch * batches;
        println!(
            "{mode}: {:.0} events/s, {:.1} MB/s, {:.0} batches/s ({events} events of ~600 B, {per_batch} per batch)",
            events as f64 / elapsed,
            bytes as f64 / elapsed / 1e6,
            batches as f64 / elapsed,
        );
        drop((tx, rx));
    }
}

#[tokio::test]
async fn recv_is_cancel_safe() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Opened { tx, mut rx, .. } = open_recorded(dir.path(), options(1 << 20, 1 << 16));
    for i in 0..20 {
        send(&tx, batch(i, 1)).await.await;
    }
    drop(tx);
    let mut got = Vec::new();
    loop {
        // A sink's `select!` may drop `recv` half-way (a timer firing, say).
        let first = tokio::select! {
            biased;
            batch = rx.recv() => Some(batch),
            () = std::future::ready(()) => None,
        };
        let batch = match first {
            Some(batch) => batch,
            None => rx.recv().await,
        };
        let Some(batch) = batch else { break };
        got.extend(messages(&batch));
        resolve_batch(batch, BatchStatus::Delivered);
    }
    let expected: Vec<String> = (0..20).map(|i| format!("event-{i}")).collect();
    assert_eq!(got, expected);
}
