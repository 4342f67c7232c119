//! What the disk buffer holds, in memory: segments and their sizes, records not yet
//! handed to the sink, records the sink holds, and the position that is safe to persist.
//!
//! Pure bookkeeping, no I/O: the caller does the reading, writing and deleting.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::segment::{Pos, RecordMeta};

/// What `position.json` holds: everything before `next` was delivered, and so were the
/// records listed in `delivered` (delivered out of order, after `next`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Position {
    /// The first record not known to be delivered.
    pub next: Pos,
    /// Records after `next` the sink already delivered.
    #[serde(default)]
    pub delivered: Vec<Pos>,
}

#[derive(Debug, Clone, Copy)]
struct Segment {
    bytes: u64,
    /// No more records will be appended.
    sealed: bool,
}

/// The buffer's bookkeeping.
#[derive(Debug, Default)]
pub(super) struct Ledger {
    segments: BTreeMap<u64, Segment>,
    /// Records on disk not handed out yet, in order.
    unread: VecDeque<RecordMeta>,
    /// Records handed to the sink (or waiting to be handed again) and not delivered.
    outstanding: BTreeMap<Pos, RecordMeta>,
    /// Failed records waiting to be handed out again, with when.
    redeliver: VecDeque<(RecordMeta, Instant)>,
    /// Delivered records after the first undelivered one.
    delivered_ahead: BTreeSet<Pos>,
    /// Bytes of every segment file.
    disk_bytes: u64,
    /// Bytes promised to writes in progress.
    reserved: u64,
    /// Events in unread and outstanding records.
    events: u64,
    /// The id the next segment gets.
    next_segment: u64,
    /// While records are being appended, the first segment they may land in: it and
    /// later segments are not deleted until the records are published.
    writing_from: Option<u64>,
}

/// What a reader should do next.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Claim {
    /// Read and hand out this record.
    Record(RecordMeta),
    /// Nothing now; a failed record is due again at this instant.
    Later(Instant),
    /// Nothing to read.
    Empty,
}

impl Ledger {
    /// An empty ledger whose first new segment gets id `next_segment`.
    pub fn new(next_segment: u64) -> Ledger {
        Ledger {
            next_segment,
            ..Ledger::default()
        }
    }

    /// Adds a segment found on disk at open (sealed: a new run never appends to it).
    pub fn recover_segment(&mut self, id: u64, bytes: u64, records: Vec<RecordMeta>) {
        self.segments.insert(
            id,
            Segment {
                bytes,
                sealed: true,
            },
        );
        self.disk_bytes += bytes;
        self.next_segment = self.next_segment.max(id + 1);
        for record in records {
            self.events += u64::from(record.events);
            self.unread.push_back(record);
        }
    }

    /// Records are about to be appended to the open segment (or a new one).
    pub fn begin_write(&mut self, open_segment: Option<u64>) {
        self.writing_from = Some(open_segment.unwrap_or(self.next_segment));
    }

    /// The append failed: nothing of it will be published.
    pub fn abandon_write(&mut self) {
        self.writing_from = None;
    }

    /// Hands out the id of the next segment to create.
    pub fn next_segment_id(&mut self) -> u64 {
        let id = self.next_segment;
        self.next_segment += 1;
        id
    }

    /// Registers a created segment of `bytes` (its header) and seals the previous one.
    pub fn add_segment(&mut self, id: u64, bytes: u64) {
        self.seal_all();
        self.segments.insert(
            id,
            Segment {
                bytes,
                sealed: false,
            },
        );
        self.disk_bytes += bytes;
    }

    /// Seals every segment: the next write starts a new one.
    pub fn seal_all(&mut self) {
        for segment in self.segments.values_mut() {
            segment.sealed = true;
        }
    }

    /// Reserves room for `bytes` if it fits under `max_size`, or if the buffer is empty
    /// (so one record larger than the whole buffer can still pass).
    pub fn try_reserve(&mut self, bytes: u64, max_size: u64) -> bool {
        let used = self.disk_bytes + self.reserved;
        if used + bytes <= max_size || used == 0 {
            self.reserved += bytes;
            true
        } else {
            false
        }
    }

    /// Makes durably written records readable and turns their reservation into bytes.
    pub fn publish(&mut self, records: &[RecordMeta], reserved: u64) {
        self.writing_from = None;
        self.reserved = self.reserved.saturating_sub(reserved);
        for record in records {
            if let Some(segment) = self.segments.get_mut(&record.pos.segment) {
                segment.bytes += record.disk_len();
            }
            self.disk_bytes += record.disk_len();
            self.events += u64::from(record.events);
            self.unread.push_back(*record);
        }
    }

    /// Takes the next record to hand out: a failed one that is due, else the oldest unread.
    pub fn claim(&mut self, now: Instant) -> Claim {
        if let Some((record, due)) = self.redeliver.front()
            && *due <= now
        {
            let record = *record;
            self.redeliver.pop_front();
            return Claim::Record(record);
        }
        if let Some(record) = self.unread.pop_front() {
            self.outstanding.insert(record.pos, record);
            return Claim::Record(record);
        }
        match self.redeliver.front() {
            Some((_, due)) => Claim::Later(*due),
            None => Claim::Empty,
        }
    }

    /// True when nothing waits to be handed out (now or later).
    pub fn nothing_to_read(&self) -> bool {
        self.unread.is_empty() && self.redeliver.is_empty()
    }

    /// True when every record on disk was delivered and none is being written.
    pub fn idle(&self) -> bool {
        self.unread.is_empty() && self.outstanding.is_empty() && self.writing_from.is_none()
    }

    /// The sink delivered a record. Returns true when the persistable position moved.
    pub fn delivered(&mut self, record: &RecordMeta) -> bool {
        self.forget(record);
        let first = self.first_pending();
        match first {
            Some(first) if record.pos > first => {
                self.delivered_ahead.insert(record.pos);
                false
            }
            _ => {
                self.prune_delivered_ahead();
                true
            }
        }
    }

    /// A record that could not be read is given up (it was counted as corrupted).
    pub fn skipped(&mut self, record: &RecordMeta) -> bool {
        self.delivered(record)
    }

    fn forget(&mut self, record: &RecordMeta) {
        if self.outstanding.remove(&record.pos).is_some() {
            self.events = self.events.saturating_sub(u64::from(record.events));
        }
    }

    /// The sink failed a record: hand it out again from `due` on.
    pub fn failed(&mut self, record: RecordMeta, due: Instant) {
        if self.outstanding.contains_key(&record.pos) {
            self.redeliver.push_back((record, due));
        }
    }

    fn first_pending(&self) -> Option<Pos> {
        let outstanding = self.outstanding.keys().next().copied();
        let unread = self.unread.front().map(|r| r.pos);
        match (outstanding, unread) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn prune_delivered_ahead(&mut self) {
        match self.first_pending() {
            Some(first) => self.delivered_ahead = self.delivered_ahead.split_off(&first),
            None => self.delivered_ahead.clear(),
        }
    }

    /// The position to persist now.
    pub fn position(&self) -> Position {
        let next = self.first_pending().unwrap_or(Pos {
            segment: self.next_segment,
            offset: 0,
        });
        Position {
            next,
            delivered: self.delivered_ahead.iter().copied().collect(),
        }
    }

    /// Sealed segments holding nothing undelivered: safe to delete once the position is
    /// persisted.
    pub fn deletable(&self) -> Vec<u64> {
        let first = self
            .first_pending()
            .map_or(u64::MAX, |p| p.segment)
            .min(self.writing_from.unwrap_or(u64::MAX));
        self.segments
            .iter()
            .filter(|(id, s)| s.sealed && **id < first)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Forgets deleted segments.
    pub fn deleted(&mut self, ids: &[u64]) {
        for id in ids {
            if let Some(segment) = self.segments.remove(id) {
                self.disk_bytes = self.disk_bytes.saturating_sub(segment.bytes);
            }
        }
    }

    /// Bytes of the segment files.
    pub fn disk_bytes(&self) -> u64 {
        self.disk_bytes
    }

    /// Events not delivered yet.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// True when any segment file exists.
    pub fn has_segments(&self) -> bool {
        !self.segments.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(segment: u64, offset: u64) -> RecordMeta {
        RecordMeta {
            pos: Pos { segment, offset },
            len: 10,
            events: 2,
        }
    }

    fn start_segment(ledger: &mut Ledger) -> u64 {
        let id = ledger.next_segment_id();
        ledger.add_segment(id, 8);
        id
    }

    fn claim(ledger: &mut Ledger) -> RecordMeta {
        match ledger.claim(Instant::now()) {
            Claim::Record(r) => r,
            other => panic!("expected a record, got {other:?}"),
        }
    }

    #[test]
    fn position_follows_the_first_undelivered_record() {
        let mut ledger = Ledger::new(0);
        let id = start_segment(&mut ledger);
        let records = [record(id, 8), record(id, 26), record(id, 44)];
        assert!(ledger.try_reserve(54, 1000));
        ledger.publish(&records, 54);
        let (a, b, c) = (claim(&mut ledger), claim(&mut ledger), claim(&mut ledger));
        assert!(!ledger.delivered(&b), "b is ahead of a");
        assert_eq!(ledger.position().next, a.pos);
        assert_eq!(ledger.position().delivered, vec![b.pos]);
        assert!(ledger.delivered(&a));
        assert_eq!(ledger.position().next, c.pos);
        assert!(ledger.position().delivered.is_empty());
        assert!(ledger.delivered(&c));
        assert_eq!(
            ledger.position().next,
            Pos {
                segment: 1,
                offset: 0
            }
        );
        assert!(ledger.deletable().is_empty(), "the open segment stays");
        ledger.seal_all();
        assert_eq!(ledger.deletable(), vec![id]);
        assert_eq!(ledger.events(), 0);
    }

    #[test]
    fn segments_being_written_are_not_deletable() {
        let mut ledger = Ledger::new(0);
        let first = start_segment(&mut ledger);
        ledger.begin_write(Some(first));
        // The group spills into a new segment, which seals the first one.
        let second = start_segment(&mut ledger);
        assert!(
            ledger.deletable().is_empty(),
            "unpublished records live in {first}"
        );
        ledger.publish(&[record(first, 8), record(second, 8)], 0);
        assert!(ledger.deletable().is_empty(), "now they are unread");
    }

    #[test]
    fn failed_records_come_back_first_when_due() {
        let mut ledger = Ledger::new(0);
        let id = start_segment(&mut ledger);
        ledger.publish(&[record(id, 8), record(id, 26)], 0);
        let first = claim(&mut ledger);
        let later = Instant::now() + std::time::Duration::from_secs(3600);
        ledger.failed(first, later);
        assert_eq!(
            claim(&mut ledger).pos,
            Pos {
                segment: id,
                offset: 26
            }
        );
        assert_eq!(ledger.claim(Instant::now()), Claim::Later(later));
        assert_eq!(ledger.claim(later), Claim::Record(first));
        assert_eq!(ledger.position().next, first.pos);
    }

    #[test]
    fn room_is_bounded_but_one_record_always_fits_an_empty_buffer() {
        let mut ledger = Ledger::new(0);
        assert!(
            ledger.try_reserve(5000, 1000),
            "empty: one oversized record passes"
        );
        assert!(!ledger.try_reserve(1, 1000));
        ledger.publish(&[], 5000);
        assert!(ledger.try_reserve(600, 1000));
        assert!(ledger.try_reserve(400, 1000));
        assert!(!ledger.try_reserve(1, 1000));
    }
}
