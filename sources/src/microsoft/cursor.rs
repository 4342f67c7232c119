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
//! A pair is kept as a 128-bit hash of its id and version ([`RecordVersion`]), not as their
//! text: a backfill walk of a day of sign-ins holds ~180,000 of them per kind, and every
//! cursor file write copies and serializes the delivered ones.
//!
//! A [`CursorStore`] is one source's file of such cursors (one per tenant and query),
//! written crash-safely by core's state writer (write, fsync, rename).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use xxhash_rust::xxh3::Xxh3Default;

/// The format written: 2 saves each pair as its hash (32 hex digits); 1 saved the id and
/// version as text, and is still read (each pair hashed on load).
const FORMAT_VERSION: u32 = 2;

/// The earliest format read.
const OLDEST_FORMAT_READ: u32 = 1;

/// The most a saved pair takes in the file: `["<32 hex>","2026-09-01T10:00:00.123456789Z"],`.
const SAVED_PAIR_BYTES: usize = 70;

/// One version of one record — `(id, lastUpdateDateTime)` for Graph alerts — as the cursor
/// keeps it: the xxh3-128 hash of the pair, 16 bytes whatever the lengths of the id and
/// version.
///
/// Two different pairs share a hash with probability about n²/2¹²⁹ among n pairs: below
/// 10⁻²⁵ for the ten million versions of a year's backfill. Such a collision would drop a
/// record version as already emitted; at these odds a disk or memory error is far likelier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordVersion(u128);

impl RecordVersion {
    /// The pair of `id` and `version` (what changes when the record does: its update time
    /// as written, an etag; empty for records that never change).
    pub fn new(id: impl AsRef<str>, version: impl AsRef<str>) -> Self {
        let (id, version) = (id.as_ref(), version.as_ref());
        let mut hasher = Xxh3Default::new();
        // The id's length first, so that ("ab", "c") and ("a", "bc") differ.
        hasher.update(&(id.len() as u64).to_le_bytes());
        hasher.update(id.as_bytes());
        hasher.update(version.as_bytes());
        RecordVersion(hasher.digest128())
    }

    /// The pair a saved form names: 32 hex digits.
    fn from_hex(text: &str) -> Option<Self> {
        let digits = text.len() == 32 && text.bytes().all(|b| b.is_ascii_hexdigit());
        digits
            .then(|| u128::from_str_radix(text, 16).ok())
            .flatten()
            .map(RecordVersion)
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
        let mut seen = Vec::with_capacity(self.seen.len());
        seen.extend(
            self.seen
                .iter()
                .filter(|(_, seen)| seen.delivered)
                .map(|(record, seen)| SavedPair {
                    record: *record,
                    at: seen.at,
                }),
        );
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
                pair.record,
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

/// One delivered pair on disk: `["<32 hex digits of its hash>", "<its time>"]`; a file of
/// format 1 wrote `{"id": …, "version": …, "at": …}`, read as the same pair.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SavedPair {
    /// The pair.
    pub record: RecordVersion,
    /// Its cursor-field time.
    pub at: DateTime<Utc>,
}

impl Serialize for SavedPair {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        /// The hash as 32 hex digits, written without a string of its own.
        struct Hex(u128);
        impl Serialize for Hex {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(&format_args!("{:032x}", self.0))
            }
        }
        (Hex(self.record.0), self.at).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SavedPair {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Hashed(String, DateTime<Utc>),
            Text {
                id: String,
                version: String,
                at: DateTime<Utc>,
            },
        }
        match Written::deserialize(deserializer)? {
            Written::Hashed(hex, at) => match RecordVersion::from_hex(&hex) {
                Some(record) => Ok(SavedPair { record, at }),
                None => Err(serde::de::Error::custom(format!(
                    "`{hex}` is not a pair's hash (32 hex digits)"
                ))),
            },
            Written::Text { id, version, at } => Ok(SavedPair {
                record: RecordVersion::new(id, version),
                at,
            }),
        }
    }
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
    #[error("{} has format version {found}, this siemflow reads versions {OLDEST_FORMAT_READ} to {FORMAT_VERSION}", path.display())]
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
            Some(saved) if !(OLDEST_FORMAT_READ..=FORMAT_VERSION).contains(&saved.version) => {
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
    // Sized for the pairs up front: a buffer grown by doubling would take up to twice the
    // file (megabytes during a backfill).
    let pairs: usize = snapshot.cursors.values().map(|c| c.seen.len()).sum();
    let mut bytes = Vec::with_capacity(pairs * SAVED_PAIR_BYTES + 4096);
    let written = serde_json::to_writer(&mut bytes, snapshot)
        .map_err(std::io::Error::other)
        .and_then(|()| siemflow_core::state::write_atomic(path, &bytes));
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
            if c.admit(record, at) {
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
        c.admit(a, at);
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
    fn pairs_are_told_apart_by_id_and_version_whatever_their_lengths() {
        let pair = RecordVersion::new("da1_2", "2026-09-01T10:12:09.02Z");
        assert_eq!(
            pair,
            RecordVersion::new(String::from("da1_2"), "2026-09-01T10:12:09.02Z")
        );
        assert_ne!(
            pair,
            RecordVersion::new("da1_2", "2026-09-01T10:12:09.0200000Z")
        );
        assert_ne!(RecordVersion::new("ab", "c"), RecordVersion::new("a", "bc"));
        assert_ne!(RecordVersion::new("a", ""), RecordVersion::new("", "a"));
        assert_eq!(std::mem::size_of::<RecordVersion>(), 16);
    }

    #[test]
    fn a_file_of_format_1_loads_its_pairs_and_is_written_again_as_hashes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cursors.json");
        // As siemflow wrote it before pairs were hashed (format 1).
        let written = r#"{"version":1,"cursors":{"tenant/alerts":{
            "high_water":"2026-09-01T10:00:00Z","complete":"2026-09-01T09:58:00Z",
            "seen":[
                {"id":"da1_2","version":"2026-09-01T10:00:00.0200000Z","at":"2026-09-01T10:00:00.020Z"},
                {"id":"3f2c9a1e-7b4d-4e0a-9c1f-2d3e4f5a6b7c","version":"","at":"2026-09-01T09:59:30Z"}
            ]}}}"#;
        std::fs::write(&path, written).expect("write");
        let overlap = TimeDelta::minutes(5);
        let mut store = CursorStore::open(path.clone(), overlap).expect("a format 1 file");
        let at = |text: &str| text.parse::<DateTime<Utc>>().expect("time");
        let alert = RecordVersion::new("da1_2", "2026-09-01T10:00:00.0200000Z");
        let sign_in = RecordVersion::new("3f2c9a1e-7b4d-4e0a-9c1f-2d3e4f5a6b7c", "");
        {
            let c = store.cursor("tenant/alerts").expect("cursor");
            assert_eq!(c.high_water(), Some(at("2026-09-01T10:00:00Z")));
            assert_eq!(c.query_from(), Some(at("2026-09-01T09:58:00Z")));
            assert!(
                !c.is_new(&alert),
                "a delivered pair of the old file is remembered"
            );
            assert!(!c.is_new(&sign_in));
            assert!(c.is_new(&RecordVersion::new("da1_2", "2026-09-01T10:03:00Z")));
            assert_eq!(c.len(), 2);
        }
        // Written again: format 2, each pair its hash in 32 hex digits and its time.
        store.cursor_mut("tenant/alerts");
        store.save().expect("save");
        let text = std::fs::read_to_string(&path).expect("read");
        let file: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(file["version"], 2);
        let mut pairs: Vec<(String, String)> = file["cursors"]["tenant/alerts"]["seen"]
            .as_array()
            .expect("seen")
            .iter()
            .map(|pair| {
                let hash = pair[0].as_str().expect("hash").to_string();
                let time = pair[1].as_str().expect("time").to_string();
                (hash, time)
            })
            .collect();
        pairs.sort();
        let mut expected = vec![
            (
                format!("{:032x}", alert.0),
                "2026-09-01T10:00:00.020Z".to_string(),
            ),
            (
                format!("{:032x}", sign_in.0),
                "2026-09-01T09:59:30Z".to_string(),
            ),
        ];
        expected.sort();
        assert_eq!(pairs, expected);
        assert!(!text.contains("da1_2"), "no id text is kept: {text}");
        // And read back the same.
        let again = CursorStore::open(path.clone(), overlap).expect("a format 2 file");
        let c = again.cursor("tenant/alerts").expect("cursor");
        assert_eq!(c, store.cursor("tenant/alerts").expect("cursor"));
        assert!(!c.is_new(&alert) && !c.is_new(&sign_in));
        // A hash that is not 32 hex digits is a corrupt file, never a silent reset.
        for bad in [
            "12ab",
            "zz3f2c9a1e7b4d4e0a9c1f2d3e4f5a6b",
            "+f3f2c9a1e7b4d4e0a9c1f2d3e4f5a6b",
        ] {
            let broken = format!(
                r#"{{"version":2,"cursors":{{"t/a":{{"high_water":null,"seen":[["{bad}","2026-09-01T10:00:00Z"]]}}}}}}"#
            );
            std::fs::write(&path, broken).expect("write");
            assert!(
                matches!(
                    CursorStore::open(path.clone(), overlap),
                    Err(CursorError::Read { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_failed_batch_gives_its_pairs_back() {
        let mut c = OverlapCursor::new(TimeDelta::minutes(5));
        let (a, at) = alert("a", 0);
        assert!(c.admit(a, at));
        c.settle([&a], false);
        assert!(c.is_new(&a), "read again by the next query");
        assert!(c.admit(a, at));
    }

    #[test]
    fn pruning_keeps_the_set_to_the_window() {
        let mut c = OverlapCursor::new(TimeDelta::minutes(10));
        for minute in 0..1000 {
            let (record, at) = alert(&format!("r{minute}"), minute);
            assert!(c.admit(record, at));
            c.settle([&record], true);
            c.advance(at);
            assert!(c.len() <= 11, "{} pairs at minute {minute}", c.len());
        }
        // Undelivered pairs stay however old, until settled.
        let (old, at) = alert("in-flight", 500);
        c.admit(old, at);
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
        c.admit(record, at);
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
        c.admit(a, at_a);
        c.admit(b, at_b);
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
