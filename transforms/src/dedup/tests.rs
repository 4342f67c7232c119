use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use siemflow_core::event::attach_ack;
use siemflow_core::{BatchStatus, Event, Transform, TransformConfig, TransformOutputs};

use super::seen::{Key, SeenSet};
use super::{Clock, Dedup, DedupConfig, MissingKey};
use crate::test_support::{bodies, config, context, deliver_all, event};

const T0: u64 = 1_800_000_000;

/// A clock tests move by hand.
fn clock() -> (Arc<AtomicU64>, Clock) {
    let now = Arc::new(AtomicU64::new(T0));
    let read = Arc::clone(&now);
    (now, Arc::new(move || read.load(Ordering::SeqCst)))
}

fn dedup(dir: &Path, options: &str, clock: Clock) -> Dedup {
    let config: DedupConfig = config(options);
    assert_eq!(config.check(), Vec::new());
    let mut cx = context("unique", "dedup");
    cx.component.state_dir = dir.to_path_buf();
    config.build_with_clock(&cx, clock).expect("builds")
}

fn run(dedup: &mut Dedup, batch: Vec<Event>) -> Vec<Event> {
    let mut out = TransformOutputs::new(&[]);
    dedup.transform(batch, &mut out);
    out.drain().0
}

fn ids(ids: &[&str]) -> Vec<Event> {
    ids.iter()
        .map(|id| event(&format!(r#"{{"Id":"{id}"}}"#)))
        .collect()
}

fn out_ids(events: &[Event]) -> Vec<String> {
    bodies(events)
        .iter()
        .map(|b| b["Id"].as_str().unwrap_or("?").to_string())
        .collect()
}

/// Feeds one acknowledged batch, delivers what passes, and returns what passed.
async fn feed_delivered(dedup: &mut Dedup, names: &[&str]) -> Vec<String> {
    let mut batch = ids(names);
    let receipt = attach_ack(&mut batch);
    let out = run(dedup, batch);
    let passed = out_ids(&out);
    deliver_all(out);
    assert_eq!(receipt.await, BatchStatus::Delivered);
    passed
}

#[tokio::test]
async fn duplicates_are_dropped_and_settled_delivered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, clock) = clock();
    let mut d = dedup(dir.path(), "key = ['Id']", clock);
    assert_eq!(feed_delivered(&mut d, &["a", "b"]).await, ["a", "b"]);
    // `a` is now delivered: its repeat is dropped, and its batch still resolves delivered.
    assert_eq!(feed_delivered(&mut d, &["a", "c", "b"]).await, ["c"]);
}

#[tokio::test]
async fn a_pending_duplicate_is_delivered_with_its_original() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, clock) = clock();
    let mut d = dedup(dir.path(), "key = ['Id']", clock);
    let mut first = ids(&["a"]);
    let first_receipt = attach_ack(&mut first);
    let in_flight = run(&mut d, first);
    let mut second = ids(&["a", "a"]);
    let second_receipt = attach_ack(&mut second);
    assert!(
        run(&mut d, second).is_empty(),
        "repeats of a pending key are held"
    );
    deliver_all(in_flight);
    assert_eq!(first_receipt.await, BatchStatus::Delivered);
    assert_eq!(second_receipt.await, BatchStatus::Delivered);
    assert!(feed_delivered(&mut d, &["a"]).await.is_empty());
}

#[tokio::test]
async fn a_pending_duplicate_fails_with_its_original_and_the_key_stays_unseen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, clock) = clock();
    let mut d = dedup(dir.path(), "key = ['Id']", clock);
    let mut first = ids(&["a", "b"]);
    let first_receipt = attach_ack(&mut first);
    let in_flight = run(&mut d, first);
    let mut second = ids(&["a"]);
    let second_receipt = attach_ack(&mut second);
    assert!(run(&mut d, second).is_empty());
    // A sink fails the batch: dropping events unresolved fails them.
    drop(in_flight);
    assert_eq!(first_receipt.await, BatchStatus::Failed);
    assert_eq!(second_receipt.await, BatchStatus::Failed);
    // The source re-reads: nothing is dropped as a duplicate.
    assert_eq!(feed_delivered(&mut d, &["a", "b"]).await, ["a", "b"]);
}

#[tokio::test]
async fn a_restart_keeps_the_seen_set() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, clock) = clock();
    let mut d = dedup(dir.path(), "key = ['Id']", Arc::clone(&clock));
    assert_eq!(feed_delivered(&mut d, &["a", "b"]).await, ["a", "b"]);
    d.finish(&mut TransformOutputs::new(&[]));
    drop(d);
    let mut d = dedup(dir.path(), "key = ['Id']", clock);
    assert_eq!(feed_delivered(&mut d, &["a", "c", "b"]).await, ["c"]);
}

#[tokio::test]
async fn a_restart_keeps_keys_that_spilled_to_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, clock) = clock();
    let options = "key = ['Id']\nmemory_budget = '1MiB'";
    let names: Vec<String> = (0..60_000).map(|i| format!("k{i}")).collect();
    let mut d = dedup(dir.path(), options, Arc::clone(&clock));
    for chunk in names.chunks(2000) {
        let chunk: Vec<&str> = chunk.iter().map(String::as_str).collect();
        assert_eq!(feed_delivered(&mut d, &chunk).await.len(), chunk.len());
    }
    {
        let state = d.shared.lock();
        assert!(state.seen.keys_in_memory() < names.len(), "keys spilled");
        assert!(state.seen.memory_bytes() <= 1 << 20);
    }
    drop(d);
    let mut d = dedup(dir.path(), options, clock);
    let sample: Vec<&str> = names.iter().step_by(97).map(String::as_str).collect();
    assert!(feed_delivered(&mut d, &sample).await.is_empty());
    assert_eq!(feed_delivered(&mut d, &["new"]).await, ["new"]);
}

#[tokio::test]
async fn the_window_expires_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (now, clock) = clock();
    let mut d = dedup(dir.path(), "key = ['Id']\nwindow = '1h'", clock);
    assert_eq!(feed_delivered(&mut d, &["a"]).await, ["a"]);
    now.store(T0 + 3599, Ordering::SeqCst);
    assert!(feed_delivered(&mut d, &["a"]).await.is_empty());
    now.store(T0 + 3600, Ordering::SeqCst);
    assert_eq!(feed_delivered(&mut d, &["a"]).await, ["a"]);
    // The re-delivered key counts from its new first sighting.
    now.store(T0 + 3600 + 3599, Ordering::SeqCst);
    assert!(feed_delivered(&mut d, &["a"]).await.is_empty());
}

#[test]
fn sweeping_removes_expired_keys_from_both_tiers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let day = 24 * 3600;
    let mut seen =
        SeenSet::open(dir.path(), 1 << 20, std::time::Duration::from_secs(day), T0).expect("opens");
    for i in 0..1000u128 {
        seen.insert(i, T0 + (i as u64 % 2) * day).expect("inserts");
    }
    seen.flush().expect("flushes");
    assert_eq!(seen.keys_on_disk(), 1000);
    seen.sweep(T0 + day).expect("sweeps");
    assert_eq!(seen.keys_on_disk(), 500);
    assert_eq!(seen.keys_in_memory(), 500);
    let found = seen
        .lookup(&[Some(0), Some(1)], T0 + day)
        .expect("looks up");
    assert_eq!(found, [false, true]);
}

#[tokio::test]
async fn missing_keys_pass_by_default_and_drop_on_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, clock) = clock();
    let options = "key = ['id', '.lastUpdateDateTime']";
    let mut d = dedup(dir.path(), options, Arc::clone(&clock));
    let batch = || {
        vec![
            event(r#"{"id":"x","lastUpdateDateTime":"2024-01-01"}"#),
            event(r#"{"id":"x"}"#),
            event(r#"{"id":"x","lastUpdateDateTime":null}"#),
            event(r#"{"id":"x","lastUpdateDateTime":"2024-01-02"}"#),
        ]
    };
    let mut first = batch();
    let receipt = attach_ack(&mut first);
    let out = run(&mut d, first);
    assert_eq!(out.len(), 4);
    deliver_all(out);
    assert_eq!(receipt.await, BatchStatus::Delivered);
    // Keyed events are now seen; key-less ones keep passing.
    assert_eq!(run(&mut d, batch()).len(), 2);

    let dir = tempfile::tempdir().expect("tempdir");
    let mut d = dedup(
        dir.path(),
        &format!("{options}\nmissing_key = 'drop'"),
        clock,
    );
    let mut first = batch();
    let receipt = attach_ack(&mut first);
    let out = run(&mut d, first);
    assert_eq!(out.len(), 2);
    deliver_all(out);
    assert_eq!(
        receipt.await,
        BatchStatus::Delivered,
        "dropped as delivered"
    );
}

#[tokio::test]
async fn key_fields_of_any_type_and_nesting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, clock) = clock();
    let mut d = dedup(dir.path(), "key = ['siemflow.tenant_id', 'n']", clock);
    let events = |json: &[&str]| json.iter().map(|j| event(j)).collect::<Vec<_>>();
    let mut batch = events(&[
        r#"{"siemflow":{"tenant_id":"t1"},"n":1}"#,
        r#"{"siemflow":{"tenant_id":"t1"},"n":"1"}"#,
        r#"{"siemflow":{"tenant_id":"t2"},"n":1}"#,
        r#"{"siemflow":{"tenant_id":"t1"},"n":1,"other":true}"#,
    ]);
    let receipt = attach_ack(&mut batch);
    let out = run(&mut d, batch);
    assert_eq!(
        out.len(),
        3,
        "a number and a string differ; other fields do not count"
    );
    deliver_all(out);
    assert_eq!(receipt.await, BatchStatus::Delivered);
}

#[test]
fn config_defaults_and_checks() {
    let c: DedupConfig = config("key = ['Id']");
    assert_eq!(c.window, std::time::Duration::from_secs(7 * 24 * 3600));
    assert_eq!(c.memory_budget, 64 << 20);
    assert_eq!(c.missing_key, MissingKey::Pass);
    assert!(c.check().is_empty());
    let c: DedupConfig = config("key = ['.Id', 'Actor[0].ID']\nmissing_key = 'drop'");
    assert!(c.check().is_empty());
    let c: DedupConfig = config("key = ['a b', '']\nmemory_budget = 0");
    let keys: Vec<_> = c.check().into_iter().filter_map(|i| i.key).collect();
    assert_eq!(keys, ["key[0]", "key[1]", "memory_budget"]);
    let c: DedupConfig = config("key = []");
    assert_eq!(c.check()[0].key.as_deref(), Some("key"));
    assert!(toml::from_str::<DedupConfig>("key = ['Id']\nwindows = '1d'").is_err());
}

/// Distinct keys through the seen-set alone, checking its own memory accounting.
fn distinct_keys_stay_inside_the_budget(count: u64, budget: u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let week = std::time::Duration::from_secs(7 * 24 * 3600);
    let mut seen = SeenSet::open(dir.path(), budget, week, T0).expect("opens");
    let key = |i: u64| xxhash_rust::xxh3::xxh3_128(&i.to_le_bytes());
    let chunk = 10_000u64;
    let mut start = 0;
    while start < count {
        let keys: Vec<Option<Key>> = (start..(start + chunk).min(count))
            .map(|i| Some(key(i)))
            .collect();
        let now = T0 + start / 1000;
        assert!(
            seen.lookup(&keys, now)
                .expect("looks up")
                .iter()
                .all(|f| !f)
        );
        for k in keys.into_iter().flatten() {
            seen.insert(k, now).expect("inserts");
        }
        assert!(seen.memory_bytes() as u64 <= budget);
        start += chunk;
    }
    seen.flush().expect("flushes");
    assert!(
        seen.peak_memory_bytes() as u64 <= budget,
        "{}",
        seen.peak_memory_bytes()
    );
    assert_eq!(seen.keys_on_disk(), count);
    let sample: Vec<Option<Key>> = (0..count).step_by(9973).map(|i| Some(key(i))).collect();
    let now = T0 + count / 1000;
    assert!(
        seen.lookup(&sample, now)
            .expect("looks up")
            .iter()
            .all(|f| *f)
    );
    eprintln!(
        "{count} keys: {} in memory, {} bytes of memory (budget {budget}), {} bytes on disk",
        seen.keys_in_memory(),
        seen.memory_bytes(),
        seen.disk_bytes()
    );
}

#[test]
fn many_distinct_keys_stay_inside_a_small_budget() {
    distinct_keys_stay_inside_the_budget(200_000, 1 << 20);
}

/// `cargo test --release -p siemflow-transforms ten_million -- --ignored --nocapture`
#[test]
#[ignore = "10 million keys: run in release"]
fn ten_million_distinct_keys_stay_inside_the_default_budget() {
    distinct_keys_stay_inside_the_budget(10_000_000, 64 << 20);
}

/// `cargo test --release -p siemflow-transforms dedup_lookups_per_second -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "micro-benchmark: run in release"]
async fn dedup_lookups_per_second() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, clock) = clock();
    let mut d = dedup(dir.path(), "key = ['Id']", clock);
    let names: Vec<String> = (0..500_000).map(|i| format!("{i:032x}")).collect();
    for chunk in names.chunks(10_000) {
        let chunk: Vec<&str> = chunk.iter().map(String::as_str).collect();
        feed_delivered(&mut d, &chunk).await;
    }
    // Written to disk, as the once-a-second flush would have by now.
    d.shared.maintain(false);
    // Every key is now seen and in memory: each event is one key extraction, hash and lookup.
    let batches: Vec<Vec<Event>> = names
        .chunks(1000)
        .map(|c| {
            let c: Vec<&str> = c.iter().map(String::as_str).collect();
            ids(&c)
        })
        .collect();
    let started = std::time::Instant::now();
    let mut passed = 0;
    for batch in batches {
        passed += run(&mut d, batch).len();
    }
    let elapsed = started.elapsed();
    assert_eq!(passed, 0);
    eprintln!(
        "dedup: {} lookups in {elapsed:?} = {:.0} lookups/s",
        names.len(),
        names.len() as f64 / elapsed.as_secs_f64()
    );
    let mut seen = d.shared.lock();
    let keys: Vec<Option<Key>> = (0..500_000u64)
        .map(|i| Some(xxhash_rust::xxh3::xxh3_128(&i.to_le_bytes())))
        .collect();
    let started = std::time::Instant::now();
    let found = seen.seen.lookup(&keys, T0).expect("looks up");
    let elapsed = started.elapsed();
    assert_eq!(found.len(), keys.len());
    eprintln!(
        "seen-set alone: {:.0} lookups/s",
        keys.len() as f64 / elapsed.as_secs_f64()
    );
    drop(seen);
}
