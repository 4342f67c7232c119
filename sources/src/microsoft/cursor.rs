//! A cursor with an overlap window, for APIs queried by a time field of mutable records
//! (Graph's `lastUpdateDateTime`, Defender's `lastUpdateTime`, Cloud Apps' `created`):
//! each poll asks for `field ge (high-water mark − overlap)` so that records indexed late
//! are not missed, and drops the (id, version) pairs it already emitted (reference §2.7).
//!
//! The set of emitted pairs stays bounded: a pair older than the window can never come
//! back from such a query, so it is forgotten when the mark moves on. Pairs emitted but
//! not yet delivered are remembered in memory only: a query repeated meanwhile does not
//! emit them twice, a failed batch [gives them back](OverlapCursor::settle), and after a
//! crash they are not in the file, so they are read again.
//!
//! The overlap covers records that become visible late, so it matters only near the time a
//! window was read: a window read long after its end (a backfill) is complete up to
//! [where lateness allows](OverlapCursor::close), and the next query starts there rather
//! than an overlap back, which a backfill would otherwise pay once per walk.
//!
//! A [`CursorStore`] is one source's file of such cursors (one per tenant and query),
//! written crash-safely by core's state writer (write, fsync, rename).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

const FORMAT_VERSION: u32 = 1;

/// One version of one record: `(id, lastUpdateDateTime)` for Graph alerts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RecordVersion {
    /// The record's id.
    pub id: String,
    /// What changes when the record does (its update time as written, an etag); empty
    /// for records that never change.
    pub version: String,
}

impl RecordVersion {
    /// The pair.
    pub fn new(id: impl Into<String>, version: impl Into<String>) -> Self {
        RecordVersion {
            id: id.into(),
            version: version.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    /// The record's cursor-field time: it decides when the pair leaves the window.
    at: DateTime<Utc>,
    delivered: bool,
}

/// The high-water mark of one query and the pairs emitted within its overlap window.
#[derive(Debug, Clone, PartialEq)]
pub struct OverlapCursor {
    high_water: Option<DateTime<Utc>>,
    /// Every record before this instant was visible when its window was read, and is
    /// delivered: no query needs to reach back before it (nor before the overlap).
    complete: Option<DateTime<Utc>>,
    /// Windows read whole whose pages are not all settled: (window end, complete up to),
    /// applied once the mark reaches the end.
    closing: Vec<(DateTime<Utc>, DateTime<Utc>)>,
    overlap: TimeDelta,
    seen: HashMap<RecordVersion, Seen>,
}

impl OverlapCursor {
    /// A cursor with no mark yet.
    pub fn new(overlap: TimeDelta) -> Self {
        OverlapCursor {
            high_water: None,
            complete: None,
            closing: Vec::new(),
            overlap,
            seen: HashMap::new(),
        }
    }

    /// Another overlap from now on (a collection with its own window).
    pub fn set_overlap(&mut self, overlap: TimeDelta) {
        self.overlap = overlap;
    }

    /// The highest cursor-field value delivered (as far as ordered settlement allows).
    pub fn high_water(&self) -> Option<DateTime<Utc>> {
        self.high_water
    }

    /// Where the next query starts: the mark less the overlap, or, when later, where the
    /// records are known complete (never past the mark); `None`: the source's first-start
    /// position.
    pub fn query_from(&self) -> Option<DateTime<Utc>> {
        let mark = self.high_water?;
        let from = mark - self.overlap;
        Some(match self.complete {
            Some(complete) => from.max(complete.min(mark)),
            None => from,
        })
    }

    /// A window ending at `end`, read from `started` on (the clock before its first
    /// request), was read whole: once its pages are delivered (the mark reaches `end`),
    /// every record before `end` that was visible at `started` is delivered — all those
    /// older than `started` less the overlap (a record becomes visible within the overlap
    /// of its time).
    pub fn close(&mut self, end: DateTime<Utc>, started: DateTime<Utc>) {
        let complete = end.min(started - self.overlap);
        if self.high_water.is_some_and(|mark| mark >= end) {
            self.complete = self.complete.max(Some(complete));
        } else {
            self.closing.push((end, complete));
        }
    }

    /// Applies the closed windows the mark has reached.
    fn apply_closed(&mut self) {
        let Some(mark) = self.high_water else {
            return;
        };
        let mut complete = self.complete;
        self.closing.retain(|(end, upto)| {
            let reached = *end <= mark;
            if reached {
                complete = complete.max(Some(*upto));
            }
            !reached
        });
        self.complete = complete;
    }

    /// True when the pair was not emitted before (nor is on its way now).
    pub fn is_new(&self, record: &RecordVersion) -> bool {
        !self.seen.contains_key(record)
    }

    /// Notes a record about to be emitted; false (emit nothing) when it was already.
    pub fn admit(&mut self, record: RecordVersion, at: DateTime<Utc>) -> bool {
        if self.seen.contains_key(&record) {
            return false;
        }
        self.seen.insert(
            record,
            Seen {
                at,
                delivered: false,
            },
        );
        true
    }

    /// The batch holding `records` settled: delivered pairs are kept (and saved); pairs
    /// of a failed batch are forgotten, so the query emits them again.
    pub fn settle<'a>(
        &mut self,
        records: impl IntoIterator<Item = &'a RecordVersion>,
        delivered: bool,
    ) {
        for record in records {
            if delivered {
                if let Some(seen) = self.seen.get_mut(record) {
                    seen.delivered = true;
                }
            } else {
                self.seen.remove(record);
                // The window is read again: it closes again then.
                self.closing.clear();
            }
        }
    }

    /// Moves the mark up to `to` (never down) and keeps every pair: a walk in progress
    /// may still be served them (its query started before the mark moved).
    pub fn raise(&mut self, to: DateTime<Utc>) {
        if self.high_water.is_none_or(|mark| mark < to) {
            self.high_water = Some(to);
        }
        self.apply_closed();
    }

    /// Moves the mark up to `to` (never down) and forgets delivered pairs that fell out
    /// of the window.
    pub fn advance(&mut self, to: DateTime<Utc>) {
        if self.high_water.is_none_or(|mark| mark < to) {
            self.high_water = Some(to);
        }
        self.apply_closed();
        self.prune();
    }

    /// Pairs remembered, delivered or on their way.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// True when no pair is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    fn prune(&mut self) {
        if let Some(from) = self.query_from() {
            // Pairs on their way stay until settled: a failure must be able to give them back.
            self.seen
                .retain(|_, seen| !seen.delivered || seen.at >= from);
        }
    }

    fn saved(&self) -> SavedCursor {
        // In no particular order: sorting a backfill's pairs would hold the state longer.
        let seen: Vec<SavedPair> = self
            .seen
            .iter()
            .filter(|(_, seen)| seen.delivered)
            .map(|(record, seen)| SavedPair {
                id: record.id.clone(),
                version: record.version.clone(),
                at: seen.at,
            })
            .collect();
        SavedCursor {
            high_water: self.high_water,
            complete: self.complete,
            seen,
        }
    }

    fn from_saved(saved: SavedCursor, overlap: TimeDelta) -> Self {
        let mut cursor = OverlapCursor::new(overlap);
        cursor.high_water = saved.high_water;
        cursor.complete = saved.complete;
        for pair in saved.seen {
            cursor.seen.insert(
                RecordVersion::new(pair.id, pair.version),
                Seen {
                    at: pair.at,
                    delivered: true,
                },
            );
        }
        cursor.prune();
        cursor
    }
}

/// The file's form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedCursors {
    /// Format version, for later migrations.
    pub version: u32,
    /// Cursor key → cursor.
    pub cursors: BTreeMap<String, SavedCursor>,
}

/// One cursor on disk: its mark and its delivered pairs within the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedCursor {
    /// The high-water mark.
    pub high_water: Option<DateTime<Utc>>,
    /// Where the records are known complete ([`OverlapCursor::close`]); absent in files of
    /// earlier versions (the query then starts an overlap behind the mark).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complete: Option<DateTime<Utc>>,
    /// Delivered pairs within the overlap window.
    #[serde(default)]
    pub seen: Vec<SavedPair>,
}

/// One delivered pair on disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedPair {
    /// The record's id.
    pub id: String,
    /// Its version.
    pub version: String,
    /// Its cursor-field time.
    pub at: DateTime<Utc>,
}

/// Why a cursor file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CursorError {
    /// Unreadable or corrupt: never silently reset (that would read days of data again).
    #[error("cannot read the cursor file {}: {source} (move it away to start again from the configured start)", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Written by another format version.
    #[error("{} has format version {found}, this siemflow reads version {FORMAT_VERSION}", path.display())]
    Version {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: u32,
    },
    /// Writing failed.
    #[error("cannot write the cursor file {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// One source's cursors and the file they are saved in.
#[derive(Debug)]
pub struct CursorStore {
    path: PathBuf,
    overlap: TimeDelta,
    cursors: BTreeMap<String, OverlapCursor>,
    dirty: bool,
}

impl CursorStore {
    /// Loads `path` (a missing file is a first start), with `overlap` for every cursor.
    pub fn open(path: PathBuf, overlap: TimeDelta) -> Result<Self, CursorError> {
        let saved = siemflow_core::state::load_json::<SavedCursors>(&path).map_err(|source| {
            CursorError::Read {
                path: path.clone(),
                source,
            }
        })?;
        let cursors = match saved {
            None => BTreeMap::new(),
            Some(saved) if saved.version != FORMAT_VERSION => {
                return Err(CursorError::Version {
                    path,
                    found: saved.version,
                });
            }
            Some(saved) => saved
                .cursors
                .into_iter()
                .map(|(key, cursor)| (key, OverlapCursor::from_saved(cursor, overlap)))
                .collect(),
        };
        Ok(CursorStore {
            path,
            overlap,
            cursors,
            dirty: false,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Gives the cursor `key` its own overlap (created now if new): a collection that
    /// reads further back than the source's overlap (alerts re-read while open) keeps its
    /// emitted pairs as long.
    pub fn set_overlap(&mut self, key: &str, overlap: TimeDelta) {
        self.cursor_mut(key).set_overlap(overlap);
    }

    /// A cursor, if it exists.
    pub fn cursor(&self, key: &str) -> Option<&OverlapCursor> {
        self.cursors.get(key)
    }

    /// A cursor to change, created empty if new; the store then needs saving.
    pub fn cursor_mut(&mut self, key: &str) -> &mut OverlapCursor {
        self.dirty = true;
        let overlap = self.overlap;
        self.cursors
            .entry(key.to_string())
            .or_insert_with(|| OverlapCursor::new(overlap))
    }

    /// True when something changed since the last snapshot.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// The file's content now (delivered pairs only); clears the dirty flag. Write it
    /// with [`write`], off the async workers (copied here, so that the state is not held
    /// while a backfill's many pairs are serialized).
    pub fn snapshot(&mut self) -> SavedCursors {
        self.dirty = false;
        SavedCursors {
            version: FORMAT_VERSION,
            cursors: self
                .cursors
                .iter()
                .map(|(key, cursor)| (key.clone(), cursor.saved()))
                .collect(),
        }
    }

    /// Snapshot and write, here and now (blocking).
    pub fn save(&mut self) -> Result<(), CursorError> {
        let snapshot = self.snapshot();
        let written = write(&self.path, &snapshot);
        if written.is_err() {
            self.dirty = true;
        }
        written
    }
}

/// Writes a snapshot crash-safely: a reader sees the old file or the new one, never a
/// torn one (blocking: call it from `spawn_blocking`). Compact JSON: a backfill's walk
/// holds a day of pairs, written every second.
pub fn write(path: &Path, snapshot: &SavedCursors) -> Result<(), CursorError> {
    let written = serde_json::to_vec(snapshot)
        .map_err(std::io::Error::other)
        .and_then(|bytes| siemflow_core::state::write_atomic(path, &bytes));
    written.map_err(|source| CursorError::Write {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(minutes: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_790_000_000, 0).expect("time") + TimeDelta::minutes(minutes)
    }

    fn alert(id: &str, updated: i64) -> (RecordVersion, DateTime<Utc>) {
        (RecordVersion::new(id, t(updated).to_rfc3339()), t(updated))
    }

    #[test]
    fn the_overlap_drops_what_was_emitted_and_lets_new_versions_through() {
        let mut c = OverlapCursor::new(TimeDelta::minutes(5));
        assert_eq!(c.query_from(), None);
        for (record, at) in [alert("a", 0), alert("b", 1), alert("c", 2)] {
            assert!(c.admit(record, at));
        }
        let emitted = [alert("a", 0).0, alert("b", 1).0, alert("c", 2).0];
        c.settle(&emitted, true);
        c.advance(t(2));
        assert_eq!(c.query_from(), Some(t(-3)));
        // The next query (ge t(-3)) returns them again, plus b updated and d.
        let mut fresh = Vec::new();
        for (record, at) in [
            alert("a", 0),
            alert("b", 1),
            alert("c", 2),
            alert("b", 3),
            alert("d", 3),
        ] {
            if c.admit(record.clone(), at) {
                fresh.push(record);
            }
        }
        assert_eq!(fresh, [alert("b", 3).0, alert("d", 3).0]);
        // While on their way, a repeated query does not emit them twice either.
        assert!(!c.is_new(&alert("d", 3).0));
    }

    #[test]
    fn a_window_read_long_after_its_end_is_not_read_again() {
        let overlap = TimeDelta::minutes(15);
        let mut c = OverlapCursor::new(overlap);
        c.advance(t(0));
        assert_eq!(c.query_from(), Some(t(-15)));
        // A backfill window [0, 1440) read at minute 10,000: complete to its end, once
        // delivered.
        c.close(t(1440), t(10_000));
        assert_eq!(c.query_from(), Some(t(-15)), "not before its pages settle");
        c.raise(t(1440));
        assert_eq!(
            c.query_from(),
            Some(t(1440)),
            "the next walk starts at its end"
        );
        // A window read up to now (minute 10,000 less a minute's lag): the overlap again.
        c.close(t(9_999), t(10_000));
        c.advance(t(9_999));
        assert_eq!(c.query_from(), Some(t(9_985)));
        // The saved cursor remembers it.
        let again = OverlapCursor::from_saved(c.saved(), overlap);
        assert_eq!(again.query_from(), Some(t(9_985)));
        // A failed page of a window forgets its closing: its records are read again.
        let mut c = OverlapCursor::new(overlap);
        c.advance(t(0));
        let (a, at) = alert("a", 10);
        c.admit(a.clone(), at);
        c.close(t(1440), t(10_000));
        c.settle([&a], false);
        c.advance(t(1440));
        assert_eq!(c.query_from(), Some(t(1425)));
        // A file of an earlier version has no `complete`.
        let saved: SavedCursor =
            serde_json::from_str(r#"{"high_water":"2026-09-01T10:00:00Z","seen":[]}"#)
                .expect("earlier file");
        assert_eq!(saved.complete, None);
    }

    #[test]
    fn a_failed_batch_gives_its_pairs_back() {
        let mut c = OverlapCursor::new(TimeDelta::minutes(5));
        let (a, at) = alert("a", 0);
        assert!(c.admit(a.clone(), at));
        c.settle([&a], false);
        assert!(c.is_new(&a), "read again by the next query");
        assert!(c.admit(a, at));
    }

    #[test]
    fn pruning_keeps_the_set_to_the_window() {
        let mut c = OverlapCursor::new(TimeDelta::minutes(10));
        for minute in 0..1000 {
            let (record, at) = alert(&format!("r{minute}"), minute);
            assert!(c.admit(record.clone(), at));
            c.settle([&record], true);
            c.advance(at);
            assert!(c.len() <= 11, "{} pairs at minute {minute}", c.len());
        }
        // Undelivered pairs stay however old, until settled.
        let (old, at) = alert("in-flight", 500);
        c.admit(old.clone(), at);
        c.advance(t(2000));
        assert!(!c.is_new(&old));
        c.settle([&old], true);
        c.advance(t(2000));
        assert!(c.is_empty());
        c.advance(t(1));
        assert_eq!(c.high_water(), Some(t(2000)), "the mark never goes down");
    }

    #[test]
    fn raising_the_mark_keeps_every_pair_until_the_next_advance() {
        let mut c = OverlapCursor::new(TimeDelta::minutes(10));
        let (record, at) = alert("early", 0);
        c.admit(record.clone(), at);
        c.settle([&record], true);
        c.raise(t(100));
        assert_eq!(c.high_water(), Some(t(100)));
        assert_eq!(c.query_from(), Some(t(90)));
        assert!(
            !c.is_new(&record),
            "a walk in progress may still be served it"
        );
        c.raise(t(50));
        assert_eq!(c.high_water(), Some(t(100)), "never down");
        c.advance(t(100));
        assert!(c.is_empty(), "forgotten between walks");
    }

    #[test]
    fn the_store_writes_crash_safely_and_keeps_delivered_pairs_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cursors.json");
        let overlap = TimeDelta::minutes(5);
        let mut store = CursorStore::open(path.clone(), overlap).expect("first start");
        assert!(store.cursor("tenant/alerts").is_none());
        let c = store.cursor_mut("tenant/alerts");
        let (a, at_a) = alert("a", 0);
        let (b, at_b) = alert("b", 1);
        c.admit(a.clone(), at_a);
        c.admit(b.clone(), at_b);
        c.settle([&a], true);
        c.advance(t(0));
        assert!(store.is_dirty());
        store.save().expect("save");
        assert!(!store.is_dirty());
        // The file is the cursors' saved form.
        let written: SavedCursors =
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("parse");
        let saved = store.cursor("tenant/alerts").expect("cursor").saved();
        assert_eq!(written.cursors.get("tenant/alerts"), Some(&saved));
        // A crash mid-write leaves at most a temporary file beside it: ignored.
        std::fs::write(dir.path().join("cursors.json.tmp"), b"{torn").expect("write");
        let reopened = CursorStore::open(path.clone(), overlap).expect("reopen");
        let c = reopened.cursor("tenant/alerts").expect("cursor");
        assert_eq!(c.high_water(), Some(t(0)));
        assert!(!c.is_new(&a), "delivered: remembered");
        assert!(c.is_new(&b), "never delivered: read again");
        // A later save replaces the file whole.
        let mut store = reopened;
        store.cursor_mut("tenant/incidents").advance(t(9));
        store.save().expect("save");
        let again = CursorStore::open(path.clone(), overlap).expect("reopen");
        assert_eq!(
            again
                .cursor("tenant/incidents")
                .and_then(OverlapCursor::high_water),
            Some(t(9))
        );
        assert!(again.cursor("tenant/alerts").is_some());
        // A corrupt file is an error, never a silent reset.
        std::fs::write(&path, b"{broken").expect("write");
        assert!(matches!(
            CursorStore::open(path.clone(), overlap),
            Err(CursorError::Read { .. })
        ));
        std::fs::write(&path, br#"{"version":9,"cursors":{}}"#).expect("write");
        assert!(matches!(
            CursorStore::open(path, overlap),
            Err(CursorError::Version { found: 9, .. })
        ));
    }
}
