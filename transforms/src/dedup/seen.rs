//! The two-tier seen-set: a compact open-addressing table of the newest keys in memory,
//! and every delivered key in a redb file on disk (written through, once a second).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use anyhow::Context;
use redb::{
    Database, DatabaseError, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition,
};

/// A key: the 128-bit hash of an event's key fields.
pub(super) type Key = u128;

/// Delivered keys and the time (Unix seconds) they were first seen.
const KEYS: TableDefinition<u128, u32> = TableDefinition::new("seen");
/// The same keys ordered by time, so expiry is a range scan rather than a full scan.
const BY_TIME: TableDefinition<(u32, u128), ()> = TableDefinition::new("seen_by_time");

/// Expired entries removed per sweep, so a sweep never holds the lock for long.
const SWEEP_LIMIT: usize = 50_000;
/// The table's first size, in slots.
const INITIAL_SLOTS: usize = 4096;

/// One slot of the in-memory table; `t == 0` marks it empty.
#[derive(Clone, Copy, Default)]
struct Slot {
    hi: u64,
    lo: u64,
    t: u32,
}

/// Bytes one slot takes: memory per key is fixed whatever the key fields are.
pub(super) const SLOT_BYTES: usize = std::mem::size_of::<Slot>();

impl Slot {
    fn key(&self) -> Key {
        ((self.hi as u128) << 64) | self.lo as u128
    }
}

/// Linear-probing table with backward-shift deletion (no tombstones, so it never needs
/// rehashing and its size is exactly what was allocated).
struct Table {
    slots: Vec<Slot>,
    len: usize,
}

impl Table {
    fn new(slots: usize) -> Self {
        Table {
            slots: vec![Slot::default(); slots],
            len: 0,
        }
    }

    /// The home slot: the key is already a uniform hash, so a multiply-shift suffices.
    fn home(&self, key: Key) -> usize {
        ((key as u64 as u128 * self.slots.len() as u128) >> 64) as usize
    }

    fn find(&self, key: Key) -> Option<usize> {
        let n = self.slots.len();
        let (hi, lo) = ((key >> 64) as u64, key as u64);
        let mut i = self.home(key);
        loop {
            let slot = &self.slots[i];
            if slot.t == 0 {
                return None;
            }
            if slot.hi == hi && slot.lo == lo {
                return Some(i);
            }
            i += 1;
            if i == n {
                i = 0;
            }
        }
    }

    /// Inserts or overwrites; the caller keeps at least one slot free.
    fn insert(&mut self, key: Key, t: u32) {
        let n = self.slots.len();
        let (hi, lo) = ((key >> 64) as u64, key as u64);
        let mut i = self.home(key);
        loop {
            let slot = &mut self.slots[i];
            if slot.t == 0 {
                *slot = Slot { hi, lo, t };
                self.len += 1;
                return;
            }
            if slot.hi == hi && slot.lo == lo {
                slot.t = t;
                return;
            }
            i += 1;
            if i == n {
                i = 0;
            }
        }
    }

    /// Empties slot `i` and shifts the rest of its cluster back so probes stay correct.
    fn remove_at(&mut self, mut hole: usize) {
        let n = self.slots.len();
        self.slots[hole].t = 0;
        self.len -= 1;
        let mut j = hole;
        loop {
            j = if j + 1 == n { 0 } else { j + 1 };
            if self.slots[j].t == 0 {
                return;
            }
            let home = self.home(self.slots[j].key());
            // The entry may move into the hole unless its home lies cyclically in (hole, j].
            let stays = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !stays {
                self.slots[hole] = self.slots[j];
                self.slots[j].t = 0;
                hole = j;
            }
        }
    }

    /// Removes every entry whose time `keep` rejects; returns how many went.
    fn retain(&mut self, mut keep: impl FnMut(u32) -> bool) -> usize {
        let before = self.len;
        let mut i = 0;
        while i < self.slots.len() {
            let t = self.slots[i].t;
            if t != 0 && !keep(t) {
                // Re-examine `i`: the shift may have moved another entry into it.
                self.remove_at(i);
                continue;
            }
            i += 1;
        }
        before - self.len
    }

    fn bytes(&self) -> usize {
        self.slots.len() * SLOT_BYTES
    }
}

/// Keys of delivered events, bounded in memory, complete on disk.
pub(super) struct SeenSet {
    table: Table,
    /// Slots the table may use, counting the old and new table while it grows.
    budget_slots: usize,
    /// The most memory the table ever held at once (old + new while growing).
    peak_table_bytes: usize,
    window: u32,
    db: Arc<Database>,
    writer: Arc<Writer>,
    path: PathBuf,
    cache_bytes: usize,
    /// Delivered keys not yet written to disk (all are also in the table).
    dirty: Vec<(Key, u32)>,
    disk_keys: u64,
    /// True when the disk may hold live keys the table does not: misses must ask the disk.
    disk_only: bool,
}

impl SeenSet {
    /// Opens (or creates) the store in `dir` and loads the newest keys into memory.
    pub(super) fn open(
        dir: &Path,
        budget: u64,
        window: Duration,
        now: u64,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the dedup state folder {}", dir.display()))?;
        let path = dir.join("dedup.redb");
        // An eighth of the budget for redb's page cache, the rest for the table.
        let budget = usize::try_from(budget).unwrap_or(usize::MAX);
        let cache_bytes = budget / 8;
        let db = open_db(&path, cache_bytes)?;
        let txn = db.begin_write().context("opening the dedup store")?;
        txn.open_table(KEYS).context("opening the dedup store")?;
        txn.open_table(BY_TIME).context("opening the dedup store")?;
        txn.commit().context("initialising the dedup store")?;
        let budget_slots = (budget - cache_bytes) / SLOT_BYTES;
        let first = INITIAL_SLOTS.min(budget_slots / 2);
        let window = u32::try_from(window.as_secs()).unwrap_or(u32::MAX);
        let mut seen = SeenSet {
            table: Table::new(first),
            budget_slots,
            peak_table_bytes: first * SLOT_BYTES,
            window,
            db: Arc::new(db),
            writer: Arc::new(Writer::default()),
            path,
            cache_bytes,
            dirty: Vec::new(),
            disk_keys: 0,
            disk_only: false,
        };
        seen.sweep(now)?;
        seen.load(now)?;
        Ok(seen)
    }

    /// Fills the table with the newest live keys from disk, as far as it fits without evicting.
    fn load(&mut self, now: u64) -> anyhow::Result<()> {
        let window = u64::from(self.window);
        let SeenSet {
            db,
            table,
            budget_slots,
            peak_table_bytes,
            ..
        } = &mut *self;
        let txn = db.begin_read().context("reading the dedup store")?;
        let keys = txn.open_table(KEYS).context("reading the dedup store")?;
        let disk_keys = keys.len().context("reading the dedup store")?;
        let by_time = txn.open_table(BY_TIME).context("reading the dedup store")?;
        for entry in by_time.iter().context("reading the dedup store")?.rev() {
            let (key, _) = entry.context("reading the dedup store")?;
            let (t, key) = key.value();
            if u64::from(t) + window <= now {
                break;
            }
            // Newest first: an older (stale) index entry never overwrites a newer one.
            if table.find(key).is_some() {
                continue;
            }
            if !room_without_evicting(table, *budget_slots, peak_table_bytes) {
                break;
            }
            table.insert(key, t);
        }
        self.disk_keys = disk_keys;
        self.disk_only = (self.table.len as u64) < disk_keys;
        Ok(())
    }

    fn live(&self, t: u32, now: u64) -> bool {
        u64::from(t) + u64::from(self.window) > now
    }

    /// True when `key` was delivered within the window, for each key (`None` skipped as false).
    pub(super) fn lookup(&mut self, keys: &[Option<Key>], now: u64) -> anyhow::Result<Vec<bool>> {
        let mut found = Vec::with_capacity(keys.len());
        let mut misses = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            let hit = match key {
                None => false,
                Some(key) => match self.table.find(*key) {
                    Some(slot) if self.live(self.table.slots[slot].t, now) => true,
                    Some(slot) => {
                        // Lazy expiry; the disk copy goes at the next sweep.
                        self.table.remove_at(slot);
                        self.disk_only = true;
                        false
                    }
                    None => {
                        if self.disk_only {
                            misses.push(i);
                        }
                        false
                    }
                },
            };
            found.push(hit);
        }
        if !misses.is_empty() {
            // One read transaction for the whole batch.
            let txn = self.db.begin_read().context("reading the dedup store")?;
            let table = txn.open_table(KEYS).context("reading the dedup store")?;
            for i in misses {
                if let Some(key) = keys[i]
                    && let Some(t) = table.get(key).context("reading the dedup store")?
                {
                    found[i] = self.live(t.value(), now);
                }
            }
        }
        Ok(found)
    }

    /// Records a delivered key first seen at `t`; it reaches disk at the next flush.
    pub(super) fn insert(&mut self, key: Key, t: u64) -> anyhow::Result<()> {
        let t = u32::try_from(t).unwrap_or(u32::MAX).max(1);
        if self.table.find(key).is_none() {
            self.make_room()?;
        }
        self.table.insert(key, t);
        self.dirty.push((key, t));
        Ok(())
    }

    /// Grows the table within the budget, or evicts the oldest half of it to disk.
    fn make_room(&mut self) -> anyhow::Result<()> {
        if room_without_evicting(
            &mut self.table,
            self.budget_slots,
            &mut self.peak_table_bytes,
        ) {
            return Ok(());
        }
        // Every key in memory must be on disk before it may leave memory.
        self.flush()?;
        let slots = self.table.slots.len();
        let mut sample: Vec<u32> = self
            .table
            .slots
            .iter()
            .step_by((slots / 4096).max(1))
            .filter(|s| s.t != 0)
            .map(|s| s.t)
            .collect();
        sample.sort_unstable();
        if let Some(&median) = sample.get(sample.len() / 2) {
            self.table.retain(|t| t > median);
        }
        let target = slots * 3 / 8;
        if self.table.len > target {
            // Many keys share the median second: drop every other one.
            let mut keep = false;
            self.table.retain(|_| {
                keep = !keep;
                keep
            });
        }
        self.disk_only = true;
        Ok(())
    }

    /// Waits until no background write is under way.
    fn wait_idle(&self) {
        let mut busy = self.writer.busy.lock().unwrap_or_else(|p| p.into_inner());
        while *busy {
            busy = self
                .writer
                .idle
                .wait(busy)
                .unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Hands the keys delivered since the last flush to a write done without the state
    /// lock, so lookups go on meanwhile. Nothing leaves memory until that write is done.
    pub(super) fn take_flush(&mut self) -> Option<FlushJob> {
        self.wait_idle();
        if self.dirty.is_empty() {
            return None;
        }
        *self.writer.busy.lock().unwrap_or_else(|p| p.into_inner()) = true;
        Some(FlushJob {
            db: Arc::clone(&self.db),
            writer: Arc::clone(&self.writer),
            keys: std::mem::take(&mut self.dirty),
        })
    }

    /// Records the key count a background write left on disk.
    pub(super) fn flushed(&mut self, disk_keys: u64) {
        self.disk_keys = disk_keys;
        self.disk_only = self.disk_only || (self.table.len as u64) < disk_keys;
    }

    /// Writes the keys delivered since the last flush in one durable transaction.
    pub(super) fn flush(&mut self) -> anyhow::Result<()> {
        self.wait_idle();
        if self.dirty.is_empty() {
            return Ok(());
        }
        let disk_keys = write_keys(&self.db, &self.dirty)?;
        self.dirty.clear();
        self.dirty.shrink_to(1 << 16);
        self.flushed(disk_keys);
        Ok(())
    }

    /// Removes expired keys from memory and (up to a limit per call) from disk.
    pub(super) fn sweep(&mut self, now: u64) -> anyhow::Result<()> {
        // The key counts below assume no write is half done.
        self.wait_idle();
        let window = u64::from(self.window);
        self.table.retain(|t| u64::from(t) + window > now);
        let Some(cutoff) = now.checked_sub(window) else {
            return Ok(());
        };
        // Entries with t <= cutoff have expired.
        let cutoff = u32::try_from(cutoff).unwrap_or(u32::MAX);
        let txn = self.db.begin_write().context("sweeping the dedup store")?;
        {
            let mut keys = txn.open_table(KEYS).context("sweeping the dedup store")?;
            let mut by_time = txn
                .open_table(BY_TIME)
                .context("sweeping the dedup store")?;
            let expired = by_time
                .range(..=(cutoff, u128::MAX))
                .context("sweeping the dedup store")?
                .take(SWEEP_LIMIT)
                .map(|entry| entry.map(|(k, _)| k.value()))
                .collect::<Result<Vec<_>, _>>()
                .context("sweeping the dedup store")?;
            for (t, key) in expired {
                by_time
                    .remove((t, key))
                    .context("sweeping the dedup store")?;
                // An older index entry of a key seen again later must not remove it.
                let current = keys
                    .get(key)
                    .context("sweeping the dedup store")?
                    .map(|v| v.value());
                if current == Some(t) {
                    keys.remove(key).context("sweeping the dedup store")?;
                }
            }
            self.disk_keys = keys.len().context("sweeping the dedup store")?;
        }
        txn.commit().context("committing the dedup store")?;
        let flushed_in_memory = self.table.len.saturating_sub(self.dirty.len()) as u64;
        self.disk_only = self.disk_keys > flushed_in_memory;
        Ok(())
    }

    /// Keys held in memory.
    pub(super) fn keys_in_memory(&self) -> usize {
        self.table.len
    }

    /// Keys held on disk (flushed ones).
    pub(super) fn keys_on_disk(&self) -> u64 {
        self.disk_keys
    }

    /// Memory counted against the budget: the table plus the disk store's cache bound.
    pub(super) fn memory_bytes(&self) -> usize {
        self.table.bytes() + self.cache_bytes
    }

    /// The most the budgeted parts ever held at once (the table doubles while growing).
    #[cfg(test)]
    pub(super) fn peak_memory_bytes(&self) -> usize {
        self.peak_table_bytes + self.cache_bytes
    }

    /// Memory outside the budget: keys delivered in the last second, awaiting a flush.
    pub(super) fn unflushed_bytes(&self) -> usize {
        self.dirty.capacity() * std::mem::size_of::<(Key, u32)>()
    }

    /// The store's file size.
    pub(super) fn disk_bytes(&self) -> u64 {
        std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0)
    }
}

impl Drop for SeenSet {
    fn drop(&mut self) {
        if let Err(error) = self.flush() {
            tracing::error!(
                error = format!("{error:#}"),
                "dedup: could not save the seen-set"
            );
        }
    }
}

/// Whether a background write is under way.
#[derive(Default)]
struct Writer {
    busy: Mutex<bool>,
    idle: Condvar,
}

/// Keys to write to disk outside the state lock.
pub(super) struct FlushJob {
    db: Arc<Database>,
    writer: Arc<Writer>,
    keys: Vec<(Key, u32)>,
}

impl FlushJob {
    /// Writes the keys durably; returns how many keys the disk then holds.
    pub(super) fn write(self) -> anyhow::Result<u64> {
        let result = write_keys(&self.db, &self.keys);
        *self.writer.busy.lock().unwrap_or_else(|p| p.into_inner()) = false;
        self.writer.idle.notify_all();
        result
    }
}

/// Writes keys and their index entries in one durable transaction.
fn write_keys(db: &Database, dirty: &[(Key, u32)]) -> anyhow::Result<u64> {
    let txn = db.begin_write().context("writing the dedup store")?;
    let disk_keys = {
        let mut keys = txn.open_table(KEYS).context("writing the dedup store")?;
        let mut by_time = txn.open_table(BY_TIME).context("writing the dedup store")?;
        for &(key, t) in dirty {
            keys.insert(key, t).context("writing the dedup store")?;
            by_time
                .insert((t, key), ())
                .context("writing the dedup store")?;
        }
        keys.len().context("writing the dedup store")?
    };
    txn.commit().context("committing the dedup store")?;
    Ok(disk_keys)
}

/// True when one more key fits at a load of at most 3/4 (short probe sequences), growing
/// the table if the budget allows the old and the new table side by side.
fn room_without_evicting(table: &mut Table, budget_slots: usize, peak_bytes: &mut usize) -> bool {
    if (table.len + 1) * 4 <= table.slots.len() * 3 {
        return true;
    }
    let current = table.slots.len();
    let grown = (current * 2).min(budget_slots.saturating_sub(current));
    if grown <= current {
        return false;
    }
    let mut bigger = Table::new(grown);
    for slot in table.slots.iter().filter(|s| s.t != 0) {
        bigger.insert(slot.key(), slot.t);
    }
    *peak_bytes = (*peak_bytes).max(table.bytes() + bigger.bytes());
    *table = bigger;
    true
}

/// Opens the store, waiting a little for a previous instance (a reload) to let go of it.
fn open_db(path: &Path, cache_bytes: usize) -> anyhow::Result<Database> {
    let mut attempts = 0;
    loop {
        match Database::builder().set_cache_size(cache_bytes).create(path) {
            Ok(db) => return Ok(db),
            Err(DatabaseError::DatabaseAlreadyOpen) if attempts < 50 => {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(error) => {
                return Err(error)
                    .with_context(|| format!("opening the dedup store {}", path.display()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_removal_keeps_every_other_key_reachable() {
        let mut table = Table::new(64);
        let keys: Vec<Key> = (0..40u128)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .collect();
        for (i, key) in keys.iter().enumerate() {
            table.insert(*key, i as u32 + 1);
        }
        table.retain(|t| t % 2 == 0);
        assert_eq!(table.len, 20);
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(table.find(*key).is_some(), (i + 1) % 2 == 0, "key {i}");
        }
    }
}
