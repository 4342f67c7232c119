//! The durable disk buffer (`buffer.type = "disk"`).
//!
//! Batches arrive through a bounded queue at a writer task, which encodes them into
//! checksummed records ([`segment`]), appends them to the current segment file, syncs a
//! whole group of records with one `fdatasync`, and only then resolves the upstream
//! acknowledgements as delivered: from that moment the data is the buffer's to keep, so
//! the source may checkpoint. The sink reads the records back with acknowledgements of
//! the buffer's own; a record counts as done when the sink delivered it, a failed one is
//! handed out again. The position up to which everything was delivered is persisted
//! crash-safely (`position.json`), and segments wholly behind it are deleted.
//!
//! One process owns a buffer folder: an exclusive `flock` on `buffer/lock` makes a second
//! process fail at start. Within the process, a sink instance replaced on reload opens the
//! same folder and shares the live buffer with its predecessor ([`open`] finds it in a
//! registry), so there is never a second owner and nothing is read twice.

mod codec;
mod ledger;
mod segment;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::future::Future as _;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use metrics::{Counter, Gauge};
use tokio::sync::{mpsc, watch};
use vrl::value::Value;

use self::ledger::{Claim, Ledger, Position};
use self::segment::{ReadError, RecordMeta, SegmentWriter};
use super::{Closed, WhenFull};
use crate::ack::{AckSet, BatchStatus};
use crate::api::Health;
use crate::delivery::FailureClass;
use crate::event::{Batch, Event, attach_ack};
use crate::io_error::{self, IoContext};
use crate::metrics::ComponentLabels;
use crate::retry::RetryRule;
use crate::state;

/// The buffer's folder inside the sink's state folder.
pub const FOLDER: &str = "buffer";
const POSITION_FILE: &str = "position.json";
const LOCK_FILE: &str = "lock";

/// A record is cut once its payload passes this, so reads stay small.
const RECORD_TARGET_BYTES: usize = 1 << 20;
/// One sync covers at most this many bytes ...
const GROUP_BYTES: usize = 8 << 20;
/// ... or batches waiting in the queue.
const GROUP_BATCHES: usize = 64;
/// Batches queued between the senders and the writer.
const QUEUE_BATCHES: usize = 8;
/// Segment size bounds; between them a segment is an eighth of `max_size`.
const MIN_SEGMENT_BYTES: u64 = 64 << 10;
const MAX_SEGMENT_BYTES: u64 = 32 << 20;
/// How a failing disk write is retried: from 100 ms, doubling with jitter, up to 30 s (the
/// pace of a configuration error, such as a folder made read-only). No budget: the sources
/// wait for the disk rather than lose data.
const WRITE_RETRY: RetryRule = RetryRule::new(Duration::from_millis(100), Duration::from_secs(30));
/// The part of the sink's health the buffer reports on (`/ready`).
const HEALTH_PART: &str = "buffer";

/// How a disk buffer is sized and behaves.
#[derive(Debug, Clone)]
pub struct Options {
    /// Bytes of segment files the buffer may hold (plus at most one record).
    pub max_size: u64,
    /// What a full buffer does with the next batch.
    pub when_full: WhenFull,
    /// Size at which the writer starts a new segment file.
    pub segment_bytes: u64,
    /// Pause before a batch the sink failed is handed out again.
    pub redeliver_after: Duration,
    /// How a failing write is retried.
    pub write_retry: RetryRule,
}

impl Options {
    /// The options of a `buffer` table: segments of an eighth of `max_size` (64 KiB to
    /// 32 MiB), failed batches handed out again after a second.
    pub fn new(max_size: u64, when_full: WhenFull) -> Options {
        Options {
            max_size,
            when_full,
            segment_bytes: (max_size / 8).clamp(MIN_SEGMENT_BYTES, MAX_SEGMENT_BYTES),
            redeliver_after: Duration::from_secs(1),
            write_retry: WRITE_RETRY,
        }
    }
}

/// The sending half of a disk buffer; cheap to clone.
#[derive(Clone)]
pub struct Sender {
    tx: mpsc::Sender<Batch>,
}

/// A sender that does not keep the buffer's input open.
#[derive(Clone)]
pub struct WeakSender {
    tx: mpsc::WeakSender<Batch>,
}

/// The receiving half: what the sink reads.
pub struct Receiver {
    shared: Arc<Shared>,
    reader: u64,
    input_done: watch::Receiver<bool>,
    readable: watch::Receiver<u64>,
    file: Option<(u64, Arc<File>)>,
    /// A record claimed and being read.
    reading: Option<(RecordMeta, ReadJob)>,
}

type ReadJob = tokio::task::JoinHandle<Result<Vec<Value>, Unreadable>>;

/// Opens (or, within this process, joins) the disk buffer in `dir` and starts a writer
/// for a new sender/receiver pair. While the writer cannot write, the sink's `health`
/// (its `buffer` part) is unhealthy.
pub fn open(
    dir: &Path,
    options: Options,
    labels: &ComponentLabels,
    health: &Health,
) -> anyhow::Result<(Sender, Receiver)> {
    let shared = Shared::get_or_open(dir, &options, labels)?;
    shared.max_size.store(options.max_size, Ordering::Relaxed);
    shared.metrics.max_bytes.set(options.max_size as f64);
    let (tx, rx) = mpsc::channel(QUEUE_BATCHES);
    let (done_tx, done_rx) = watch::channel(false);
    let writer = Writer {
        shared: Arc::clone(&shared),
        retry: options.write_retry,
        health: health.part(HEALTH_PART),
        failing: false,
    };
    tokio::spawn(write_loop(writer, rx, options.when_full, done_tx));
    let reader = shared.next_reader.fetch_add(1, Ordering::Relaxed);
    lock(&shared.readers).insert(reader);
    let receiver = Receiver {
        readable: shared.readable.subscribe(),
        shared,
        reader,
        input_done: done_rx,
        file: None,
        reading: None,
    };
    Ok((Sender { tx }, receiver))
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves consistent data behind: every
    // update is a handful of plain assignments.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Metrics {
    labels: ComponentLabels,
    events: Gauge,
    bytes: Gauge,
    max_bytes: Gauge,
    received: Counter,
    sent: Counter,
    discarded: Counter,
    corrupted: Counter,
    redelivered: Counter,
    component_received: Counter,
    write_failed: Counter,
}

impl Metrics {
    fn new(labels: &ComponentLabels) -> Metrics {
        Metrics {
            labels: labels.clone(),
            events: labels.gauge("buffer_events", &[]),
            bytes: labels.gauge("buffer_byte_size", &[]),
            max_bytes: labels.gauge("buffer_max_byte_size", &[]),
            received: labels.counter("buffer_received_events_total", &[]),
            sent: labels.counter("buffer_sent_events_total", &[]),
            discarded: labels.counter("buffer_discarded_events_total", &[]),
            corrupted: labels.counter("buffer_corrupted_records_total", &[]),
            redelivered: labels.counter("buffer_redelivered_events_total", &[]),
            component_received: labels.counter("component_received_events_total", &[]),
            write_failed: labels.counter(
                "component_errors_total",
                &[
                    ("error_type", "buffer_write_failed"),
                    ("stage", "processing"),
                ],
            ),
        }
    }
}

/// One buffer folder, shared by the writers and readers of this process.
struct Shared {
    dir: PathBuf,
    ledger: Mutex<Ledger>,
    /// The segment being appended to; `None` until the first write after a seal.
    writer: Mutex<Option<SegmentWriter>>,
    max_size: AtomicU64,
    segment_bytes: u64,
    redeliver_after: Duration,
    /// Bumped when records become readable (written, or failed and due again).
    readable: watch::Sender<u64>,
    /// Bumped when segments were deleted.
    room: watch::Sender<u64>,
    /// Bumped when the persistable position moved.
    dirty: watch::Sender<u64>,
    /// Attached receivers; the newest one inherits the buffer on reload.
    readers: Mutex<BTreeSet<u64>>,
    next_reader: AtomicU64,
    /// Times a writer waited for room (tests watch it to know the buffer is full).
    full_waits: AtomicU64,
    metrics: Metrics,
    /// Holds the `flock` for as long as the buffer is open.
    _lock: File,
    /// Tests: every write fails with this errno while set.
    #[cfg(test)]
    failing_writes: Mutex<Option<i32>>,
}

/// Buffers open in this process, by canonical folder.
fn registry() -> &'static Mutex<HashMap<PathBuf, Weak<Shared>>> {
    static OPEN: OnceLock<Mutex<HashMap<PathBuf, Weak<Shared>>>> = OnceLock::new();
    OPEN.get_or_init(Default::default)
}

impl Shared {
    fn get_or_open(
        dir: &Path,
        options: &Options,
        labels: &ComponentLabels,
    ) -> anyhow::Result<Arc<Shared>> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the disk buffer folder {}", dir.display()))?;
        let dir = dir
            .canonicalize()
            .with_context(|| format!("cannot resolve {}", dir.display()))?;
        let mut open = lock(registry());
        if let Some(live) = open.get(&dir).and_then(Weak::upgrade) {
            return Ok(live);
        }
        // An earlier instance of this buffer in this process may still be closing.
        let closing = open.contains_key(&dir);
        open.retain(|_, weak| weak.strong_count() > 0);
        let shared = Arc::new(Shared::open(dir.clone(), options, labels, closing)?);
        tokio::spawn(persist_loop(
            Arc::downgrade(&shared),
            shared.dirty.subscribe(),
        ));
        open.insert(dir, Arc::downgrade(&shared));
        Ok(shared)
    }

    /// Takes the folder's lock and recovers what is on disk.
    fn open(
        dir: PathBuf,
        options: &Options,
        labels: &ComponentLabels,
        closing: bool,
    ) -> anyhow::Result<Shared> {
        let lock_file = take_lock(&dir.join(LOCK_FILE), closing)?;
        let metrics = Metrics::new(labels);
        let ledger = recover(&dir, &metrics)
            .with_context(|| format!("cannot open the disk buffer in {}", dir.display()))?;
        let events = ledger.events();
        if events > 0 {
            tracing::info!(
                component = %labels.id,
                events,
                bytes = ledger.disk_bytes(),
                "disk buffer holds undelivered events from an earlier run"
            );
        }
        let shared = Shared {
            dir,
            ledger: Mutex::new(ledger),
            writer: Mutex::new(None),
            max_size: AtomicU64::new(options.max_size),
            segment_bytes: options.segment_bytes,
            redeliver_after: options.redeliver_after,
            readable: watch::channel(0).0,
            room: watch::channel(0).0,
            dirty: watch::channel(0).0,
            readers: Mutex::new(BTreeSet::new()),
            next_reader: AtomicU64::new(0),
            full_waits: AtomicU64::new(0),
            metrics,
            _lock: lock_file,
            #[cfg(test)]
            failing_writes: Mutex::new(None),
        };
        shared.update_gauges(&lock(&shared.ledger));
        Ok(shared)
    }

    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        lock(&self.ledger)
    }

    fn update_gauges(&self, ledger: &Ledger) {
        self.metrics.events.set(ledger.events() as f64);
        self.metrics.bytes.set(ledger.disk_bytes() as f64);
    }

    fn id(&self) -> &str {
        &self.metrics.labels.id
    }

    /// Turns a batch into records ready to append, taking the events' acknowledgements.
    fn encode(&self, batch: Batch) -> Vec<Pending> {
        let mut records = Vec::new();
        let mut current = Pending::new();
        for mut event in batch {
            let start = current.bytes.len();
            codec::encode(&event.value, &mut current.bytes);
            let event_len = current.bytes.len() - start;
            if event_len + 4 > segment::MAX_PAYLOAD as usize {
                current.bytes.truncate(start);
                self.metrics
                    .labels
                    .discarded("too_large_for_disk_buffer", 1);
                tracing::error!(
                    component = %self.id(),
                    bytes = event_len,
                    limit = segment::MAX_PAYLOAD,
                    "event too large for a disk buffer record; discarded"
                );
                event.deliver();
                continue;
            }
            current.events += 1;
            if let Some(ack) = event.ack.take() {
                current.acks.push(ack);
            }
            if current.bytes.len() >= RECORD_TARGET_BYTES {
                records.push(std::mem::replace(&mut current, Pending::new()).seal());
            }
        }
        if current.events > 0 {
            records.push(current.seal());
        }
        records
    }

    /// Appends records, syncs them and makes them readable (blocking). Returns the
    /// events written.
    fn append(&self, records: &[Pending]) -> io::Result<u64> {
        #[cfg(test)]
        if let Some(errno) = *lock(&self.failing_writes) {
            return Err(io::Error::from_raw_os_error(errno));
        }
        let mut writer = lock(&self.writer);
        self.ledger().begin_write(writer.as_ref().map(|w| w.id));
        match self.append_locked(&mut writer, records) {
            Ok(placed) => {
                let reserved = records.iter().map(|r| r.reserved).sum();
                let mut ledger = self.ledger();
                ledger.publish(&placed, reserved);
                self.update_gauges(&ledger);
                Ok(placed.iter().map(|r| u64::from(r.events)).sum())
            }
            Err(e) => {
                let mut ledger = self.ledger();
                ledger.abandon_write();
                if let Some(current) = writer.as_mut()
                    && !current.roll_back()
                {
                    // The torn tail stays on disk, behind the last record readers know
                    // of; a later run detects and skips it. Continue in a fresh segment.
                    *writer = None;
                    ledger.seal_all();
                }
                Err(e)
            }
        }
    }

    fn append_locked(
        &self,
        writer: &mut Option<SegmentWriter>,
        records: &[Pending],
    ) -> io::Result<Vec<RecordMeta>> {
        let mut placed = Vec::with_capacity(records.len());
        for record in records {
            let size = record.bytes.len() as u64;
            let full = writer
                .as_ref()
                .is_none_or(|w| w.len > segment::HEADER_LEN && w.len + size > self.segment_bytes);
            if full {
                if let Some(old) = writer.as_mut() {
                    old.sync()?;
                }
                let id = self.ledger().next_segment_id();
                let created = SegmentWriter::create(&self.dir, id)?;
                self.ledger().add_segment(id, segment::HEADER_LEN);
                *writer = Some(created);
            }
            let Some(current) = writer.as_mut() else {
                return Err(io::Error::other("no segment to write to"));
            };
            placed.push(RecordMeta {
                pos: segment::Pos {
                    segment: current.id,
                    offset: current.len,
                },
                len: record.payload_len,
                events: record.events,
            });
            current.append(&record.bytes)?;
        }
        if let Some(current) = writer.as_mut() {
            current.sync()?;
        }
        Ok(placed)
    }

    /// When everything on disk was delivered, seals the open segment and has every
    /// segment deleted, so even a record larger than the buffer finds it empty.
    fn seal_if_idle(&self) {
        let mut writer = lock(&self.writer);
        let mut ledger = self.ledger();
        if ledger.idle() && ledger.has_segments() {
            ledger.seal_all();
            *writer = None;
            drop(ledger);
            self.dirty.send_modify(|v| *v += 1);
        }
    }

    /// Persists the position, then deletes segments wholly behind it (blocking).
    fn persist(&self) -> io::Result<()> {
        let (position, deletable) = {
            let ledger = self.ledger();
            (ledger.position(), ledger.deletable())
        };
        state::save_json(&self.dir.join(POSITION_FILE), &position)?;
        let mut deleted = Vec::new();
        for id in deletable {
            match std::fs::remove_file(segment::path(&self.dir, id)) {
                Ok(()) => deleted.push(id),
                Err(e) if e.kind() == io::ErrorKind::NotFound => deleted.push(id),
                Err(e) => {
                    tracing::warn!(component = %self.id(), segment = id, error = %e, "cannot delete a delivered buffer segment; will retry")
                }
            }
        }
        if !deleted.is_empty() {
            let mut ledger = self.ledger();
            ledger.deleted(&deleted);
            self.update_gauges(&ledger);
            drop(ledger);
            self.room.send_modify(|v| *v += 1);
        }
        Ok(())
    }

    /// The sink settled a record it was handed.
    fn settle(&self, record: RecordMeta, status: BatchStatus) {
        let mut ledger = self.ledger();
        match status {
            BatchStatus::Delivered => {
                let moved = ledger.delivered(&record);
                self.update_gauges(&ledger);
                drop(ledger);
                if moved {
                    self.dirty.send_modify(|v| *v += 1);
                }
            }
            BatchStatus::Failed => {
                ledger.failed(record, Instant::now() + self.redeliver_after);
                drop(ledger);
                self.metrics.redelivered.increment(u64::from(record.events));
                tracing::warn!(
                    component = %self.id(),
                    events = record.events,
                    retry_in = ?self.redeliver_after,
                    "the sink failed a batch from the disk buffer; it will be handed out again"
                );
                self.readable.send_modify(|v| *v += 1);
            }
        }
    }

    /// A record that cannot be read back is skipped, counted and logged.
    fn corrupted(&self, record: RecordMeta, reason: &str) {
        self.metrics.corrupted.increment(1);
        tracing::warn!(
            component = %self.id(),
            segment = %segment::path(&self.dir, record.pos.segment).display(),
            offset = record.pos.offset,
            events = record.events,
            reason,
            "disk buffer: skipped a corrupted record"
        );
        let mut ledger = self.ledger();
        let moved = ledger.skipped(&record);
        self.update_gauges(&ledger);
        drop(ledger);
        if moved {
            self.dirty.send_modify(|v| *v += 1);
        }
    }

    /// True when a newer receiver is attached: it takes over what is left.
    fn superseded(&self, reader: u64) -> bool {
        lock(&self.readers)
            .last()
            .is_some_and(|newest| *newest > reader)
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Last chance to record what the sink delivered since the persister last ran.
        if let Err(e) = self.persist() {
            tracing::warn!(component = %self.id(), error = %e, "cannot save the disk buffer position; delivered events may be delivered again");
        }
    }
}

/// Takes the buffer folder's lock (see [`crate::fs::try_lock`]); the open file holds it.
fn take_lock(path: &Path, closing: bool) -> anyhow::Result<File> {
    // An instance of this process that is closing releases the lock within moments.
    let attempts = if closing { 100 } else { 1 };
    for attempt in 1..=attempts {
        let taken =
            crate::fs::try_lock(path).with_context(|| format!("cannot lock {}", path.display()))?;
        match taken {
            Some(file) => return Ok(file),
            None if attempt < attempts => std::thread::sleep(Duration::from_millis(50)),
            None => break,
        }
    }
    anyhow::bail!(
        "the disk buffer is in use by another process (lock {} is held): is a second siemflow running with the same data_dir?",
        path.display()
    )
}

/// Rebuilds the ledger from `position.json` and the segment files.
fn recover(dir: &Path, metrics: &Metrics) -> anyhow::Result<Ledger> {
    let position: Option<Position> = state::load_json(&dir.join(POSITION_FILE))?;
    let next = position.as_ref().map(|p| p.next);
    let delivered: BTreeSet<segment::Pos> = position
        .map(|p| p.delivered.into_iter().collect())
        .unwrap_or_default();
    let mut ledger = Ledger::new(next.map_or(0, |p| p.segment));
    for id in segment::list(dir)? {
        let path = segment::path(dir, id);
        if next.is_some_and(|n| id < n.segment) {
            // Delivered; the run that persisted the position did not get to delete it.
            std::fs::remove_file(&path)
                .with_context(|| format!("cannot delete {}", path.display()))?;
            continue;
        }
        let from = next.filter(|n| n.segment == id).map_or(0, |n| n.offset);
        let scan = segment::scan(dir, id, from)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if let Some(damage) = &scan.damage {
            metrics.corrupted.increment(1);
            tracing::warn!(
                component = %metrics.labels.id,
                segment = %path.display(),
                offset = damage.offset,
                reason = %damage.what,
                "disk buffer: skipped a torn or corrupted end of a segment"
            );
        }
        let records = scan
            .records
            .into_iter()
            .filter(|r| !delivered.contains(&r.pos))
            .collect();
        ledger.recover_segment(id, scan.file_len, records);
    }
    Ok(ledger)
}

/// Saves the position whenever it moved, one save at a time (so saves coalesce).
async fn persist_loop(shared: Weak<Shared>, mut dirty: watch::Receiver<u64>) {
    while dirty.changed().await.is_ok() {
        let Some(strong) = shared.upgrade() else {
            break;
        };
        let saved = tokio::task::spawn_blocking(move || strong.persist()).await;
        match saved {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                if let Some(strong) = shared.upgrade() {
                    strong
                        .metrics
                        .labels
                        .error("buffer_position_write_failed", "processing");
                    tracing::warn!(component = %strong.id(), error = %e, "cannot save the disk buffer position; retrying on the next delivery");
                }
            }
            Err(e) => tracing::error!(error = %e, "disk buffer position writer panicked"),
        }
    }
}

/// Records of one batch on their way to disk.
struct Pending {
    /// Header and payload.
    bytes: Vec<u8>,
    payload_len: u32,
    events: u32,
    acks: AckSet,
    reserved: u64,
}

impl Pending {
    fn new() -> Pending {
        let mut bytes = Vec::new();
        segment::begin_record(&mut bytes);
        codec::begin(&mut bytes);
        Pending {
            bytes,
            payload_len: 0,
            events: 0,
            acks: AckSet::default(),
            reserved: 0,
        }
    }

    fn seal(mut self) -> Pending {
        let start = segment::RECORD_HEADER_LEN as usize;
        codec::finish(&mut self.bytes, start, self.events);
        self.payload_len = segment::seal_record(&mut self.bytes);
        self
    }
}

/// One sender/receiver pair's writer: the buffer, and the sink's health it reports to.
struct Writer {
    shared: Arc<Shared>,
    retry: RetryRule,
    /// The sink's `buffer` part: unhealthy while writes fail.
    health: Health,
    /// The last write failed.
    failing: bool,
}

/// Takes batches from the queue, writes them in groups and acknowledges them upstream.
async fn write_loop(
    mut writer: Writer,
    mut rx: mpsc::Receiver<Batch>,
    when_full: WhenFull,
    done: watch::Sender<bool>,
) {
    let shared = Arc::clone(&writer.shared);
    let mut room = shared.room.subscribe();
    let mut group: Vec<Pending> = Vec::new();
    let mut group_bytes = 0usize;
    while let Some(first) = rx.recv().await {
        let mut batches = vec![first];
        while batches.len() < GROUP_BATCHES
            && let Ok(batch) = rx.try_recv()
        {
            batches.push(batch);
        }
        for batch in batches {
            for mut record in shared.encode(batch) {
                // Room for the record, and for a segment header should it start one.
                let need = record.bytes.len() as u64 + segment::HEADER_LEN;
                loop {
                    room.borrow_and_update();
                    let max_size = shared.max_size.load(Ordering::Relaxed);
                    if shared.ledger().try_reserve(need, max_size) {
                        record.reserved = need;
                        group_bytes += record.bytes.len();
                        group.push(record);
                        break;
                    }
                    if when_full == WhenFull::DropNewest {
                        shared.metrics.discarded.increment(u64::from(record.events));
                        // Discarding was the user's explicit choice: settle so sources move on.
                        record.acks.resolve(BatchStatus::Delivered);
                        break;
                    }
                    if !group.is_empty() {
                        // Acknowledge what is reserved before waiting, or nothing moves.
                        writer.flush(&mut group).await;
                        group_bytes = 0;
                        continue;
                    }
                    shared.seal_if_idle();
                    shared.full_waits.fetch_add(1, Ordering::Relaxed);
                    if room.changed().await.is_err() {
                        return;
                    }
                }
                if group_bytes >= GROUP_BYTES {
                    writer.flush(&mut group).await;
                    group_bytes = 0;
                }
            }
        }
        writer.flush(&mut group).await;
        group_bytes = 0;
    }
    let _ = done.send(true);
}

impl Writer {
    /// Writes and syncs a group, retrying a failing disk under `retry`, then makes the
    /// records readable and acknowledges them upstream.
    ///
    /// A failure is classified by [`io_error::classify`] (every name here is the
    /// buffer's own, so a bad name is a configuration problem, never the events'):
    /// retried with backoff, or at the slow pace of a configuration error. While writes
    /// fail the sink is unhealthy in `/ready`; the first write that succeeds clears it.
    async fn flush(&mut self, group: &mut Vec<Pending>) {
        if group.is_empty() {
            return;
        }
        let shared = Arc::clone(&self.shared);
        let mut records = std::mem::take(group);
        let mut retries = self.retry.start();
        let mut attempt = 0u32;
        loop {
            let writer = Arc::clone(&shared);
            let job = tokio::task::spawn_blocking(move || {
                let result = writer.append(&records);
                (records, result)
            });
            let (returned, result) = match job.await {
                Ok(done) => done,
                Err(e) => {
                    // The records (and their acknowledgements, now failed) went with the
                    // thread.
                    tracing::error!(component = %shared.id(), error = %e, "disk buffer writer panicked");
                    return;
                }
            };
            records = returned;
            let error = match result {
                Ok(events) => {
                    shared.metrics.received.increment(events);
                    shared.readable.send_modify(|v| *v += 1);
                    for record in records {
                        record.acks.resolve(BatchStatus::Delivered);
                    }
                    if std::mem::take(&mut self.failing) {
                        self.health.healthy();
                        tracing::info!(component = %shared.id(), folder = %shared.dir.display(), "disk buffer writes again");
                    }
                    return;
                }
                Err(error) => error,
            };
            attempt += 1;
            let class = io_error::classify(&error, IoContext::Configured);
            // The rule has no budget, so it always grants a wait.
            let pause = match class {
                FailureClass::Config => retries.after_config_failure(),
                FailureClass::Retry | FailureClass::Data => retries.after_failure(None),
            }
            .unwrap_or(self.retry.max);
            shared.metrics.write_failed.increment(1);
            self.failing = true;
            self.health.unhealthy(format!(
                "disk buffer cannot write to {}: {error}",
                shared.dir.display()
            ));
            let problem = match class {
                FailureClass::Config => {
                    "cannot write to the disk buffer: a configuration problem (permissions, a read-only file system, a path that cannot be); retrying slowly until it is fixed (sources wait meanwhile)"
                }
                FailureClass::Retry | FailureClass::Data => {
                    "cannot write to the disk buffer; retrying (sources wait meanwhile)"
                }
            };
            tracing::error!(
                component = %shared.id(),
                folder = %shared.dir.display(),
                error = %error,
                attempt,
                retry_in = ?pause,
                "{problem}"
            );
            tokio::time::sleep(pause).await;
        }
    }
}

impl Sender {
    /// Queues a batch for the writer; it is acknowledged upstream once on disk.
    pub async fn send(&self, batch: Batch) -> Result<(), Closed> {
        if batch.is_empty() {
            return Ok(());
        }
        self.tx
            .send(batch)
            .await
            .map_err(|mpsc::error::SendError(batch)| Closed(batch))
    }

    /// A handle that lets the input close when every strong sender is gone.
    pub fn downgrade(&self) -> WeakSender {
        WeakSender {
            tx: self.tx.downgrade(),
        }
    }

    /// True once the writer is gone.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

impl WeakSender {
    /// A strong sender, unless the input already closed.
    pub fn upgrade(&self) -> Option<Sender> {
        Some(Sender {
            tx: self.tx.upgrade()?,
        })
    }
}

/// Why a claimed record yields no batch.
enum Unreadable {
    Corrupted(String),
    Failed(io::Error),
}

fn read_values(file: &File, record: &RecordMeta) -> Result<Vec<Value>, Unreadable> {
    let payload = segment::read_record(file, record).map_err(|e| match e {
        ReadError::Corrupted(reason) => Unreadable::Corrupted(reason),
        ReadError::Io(e) => Unreadable::Failed(e),
    })?;
    codec::decode(payload).map_err(|e| Unreadable::Corrupted(e.to_string()))
}

impl Receiver {
    /// The next batch; `None` once this instance's input closed and either nothing is
    /// left to read or a newer instance of the sink took the buffer over.
    pub async fn recv(&mut self) -> Option<Batch> {
        loop {
            // A read a cancelled call started is finished first (this keeps `recv`
            // cancel-safe, as `select!` loops need).
            if self.reading.is_some() {
                if let Some(batch) = self.finish_read().await {
                    return Some(batch);
                }
                continue;
            }
            self.readable.borrow_and_update();
            if self.input_closed() && self.shared.superseded(self.reader) {
                return None;
            }
            let claim = self.shared.ledger().claim(Instant::now());
            let due = match claim {
                Claim::Record(record) => {
                    let file = match self.segment_file(record.pos.segment) {
                        Ok(file) => file,
                        Err(e) => {
                            // Settled as corrupted or failed; never a batch.
                            self.handle(record, Err(e));
                            continue;
                        }
                    };
                    let read = tokio::task::spawn_blocking(move || read_values(&file, &record));
                    self.reading = Some((record, read));
                    if let Some(batch) = self.finish_read().await {
                        return Some(batch);
                    }
                    continue;
                }
                Claim::Later(due) => Some(due),
                Claim::Empty => None,
            };
            let closed = self.input_closed();
            if closed
                && (self.shared.superseded(self.reader) || self.shared.ledger().nothing_to_read())
            {
                return None;
            }
            let wake = tokio::time::Instant::from_std(due.unwrap_or_else(Instant::now));
            tokio::select! {
                _ = self.readable.changed() => {}
                _ = self.input_done.changed(), if !closed => {}
                _ = tokio::time::sleep_until(wake), if due.is_some() => {}
            }
        }
    }

    /// Awaits the read in progress and turns it into a batch (`None` when the record
    /// could not be read and was settled otherwise).
    async fn finish_read(&mut self) -> Option<Batch> {
        let (_, job) = self.reading.as_mut()?;
        let result = job.await;
        self.read_done(result)
    }

    /// Hands the outcome of the read in progress to [`Receiver::handle`].
    fn read_done(
        &mut self,
        result: Result<Result<Vec<Value>, Unreadable>, tokio::task::JoinError>,
    ) -> Option<Batch> {
        let (record, _) = self.reading.take()?;
        let read =
            result.unwrap_or_else(|e| Err(Unreadable::Failed(io::Error::other(e.to_string()))));
        self.handle(record, read)
    }

    /// The next batch if one can be read now (reading the disk on this thread).
    pub fn try_recv(&mut self) -> Option<Batch> {
        if let Some((_, job)) = &mut self.reading {
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            let std::task::Poll::Ready(result) = std::pin::Pin::new(job).poll(&mut cx) else {
                return None;
            };
            if let Some(batch) = self.read_done(result) {
                return Some(batch);
            }
        }
        loop {
            let claim = self.shared.ledger().claim(Instant::now());
            let Claim::Record(record) = claim else {
                return None;
            };
            let read = self
                .segment_file(record.pos.segment)
                .and_then(|file| read_values(&file, &record));
            if let Some(batch) = self.handle(record, read) {
                return Some(batch);
            }
        }
    }

    fn input_closed(&self) -> bool {
        *self.input_done.borrow() || self.input_done.has_changed().is_err()
    }

    fn segment_file(&mut self, id: u64) -> Result<Arc<File>, Unreadable> {
        if let Some((open, file)) = &self.file
            && *open == id
        {
            return Ok(Arc::clone(file));
        }
        let path = segment::path(&self.shared.dir, id);
        match File::open(&path) {
            Ok(file) => {
                let file = Arc::new(file);
                self.file = Some((id, Arc::clone(&file)));
                Ok(file)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(Unreadable::Corrupted("segment file is missing".into()))
            }
            Err(e) => Err(Unreadable::Failed(e)),
        }
    }

    /// Turns a read into a batch with acknowledgements of the buffer's own, or settles a
    /// record that cannot be read.
    fn handle(
        &mut self,
        record: RecordMeta,
        read: Result<Vec<Value>, Unreadable>,
    ) -> Option<Batch> {
        let values = match read {
            Ok(values) => values,
            Err(Unreadable::Corrupted(reason)) => {
                self.shared.corrupted(record, &reason);
                return None;
            }
            Err(Unreadable::Failed(e)) => {
                self.shared
                    .metrics
                    .labels
                    .error("buffer_read_failed", "receiving");
                tracing::error!(component = %self.shared.id(), error = %e, "cannot read the disk buffer");
                self.shared.settle(record, BatchStatus::Failed);
                return None;
            }
        };
        let mut batch: Batch = values.into_iter().map(Event::new).collect();
        let receipt = attach_ack(&mut batch);
        let shared = Arc::clone(&self.shared);
        tokio::spawn(async move {
            let status = receipt.await;
            shared.settle(record, status);
        });
        if batch.is_empty() {
            return None;
        }
        let metrics = &self.shared.metrics;
        metrics.sent.increment(batch.len() as u64);
        metrics.component_received.increment(batch.len() as u64);
        Some(batch)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        lock(&self.shared.readers).remove(&self.reader);
        if let Some((record, job)) = self.reading.take() {
            // Claimed but never handed to the sink: give it back for another reader.
            job.abort();
            self.shared.settle(record, BatchStatus::Failed);
        }
    }
}
