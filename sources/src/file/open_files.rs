//! The bound on files the reader holds open (`max_open_files`) and whose turn it is.
//!
//! Every open file holds a [`Slot`] of the budget; dropping the file gives the slot back,
//! so the count cannot drift from the descriptors really held. When more files want
//! reading than there are slots, files take turns: one read to its end gives its slot up
//! first, then one that has had its fair share of batches.

use std::cell::Cell;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::rc::Rc;
use std::time::Instant;

use metrics::Gauge;

/// Batches a file may read in one turn while other files wait for a slot: long enough
/// that opening costs little beside reading, short enough that thousands of waiting
/// files are all read soon.
pub const FAIR_SHARE_BATCHES: u32 = 8;

/// The fewest files the derived default allows, even under a tiny open-file limit.
const DEFAULT_MIN: usize = 8;
/// The most files the derived default allows: beyond that, turns cost little and a
/// huge limit (`ulimit -n` of a million) would only hold memory.
const DEFAULT_MAX: usize = 4096;

/// The default `max_open_files`: a quarter of the process's soft open-file limit, so
/// sinks, the API's connections, disk buffers, checkpoints and a few more file sources
/// keep the other three quarters.
pub fn default_limit() -> usize {
    soft_file_limit().map_or(DEFAULT_MAX, |limit| {
        (limit / 4).clamp(DEFAULT_MIN, DEFAULT_MAX)
    })
}

/// `RLIMIT_NOFILE`'s soft limit; `None` when unlimited or unknown.
pub fn soft_file_limit() -> Option<usize> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) writes into the struct we own and reads nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0
        || limit.rlim_cur == libc::RLIM_INFINITY
    {
        return None;
    }
    usize::try_from(limit.rlim_cur).ok()
}

/// The descriptor budget of one reader.
pub struct OpenFiles {
    limit: usize,
    open: Rc<Cell<usize>>,
    gauge: Gauge,
}

/// An open file and the slot it holds.
pub struct OpenFile {
    file: File,
    _slot: Slot,
}

impl std::ops::Deref for OpenFile {
    type Target = File;

    fn deref(&self) -> &File {
        &self.file
    }
}

/// One unit of the budget; given back when dropped.
struct Slot {
    open: Rc<Cell<usize>>,
    gauge: Gauge,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let open = self.open.get().saturating_sub(1);
        self.open.set(open);
        self.gauge.set(open as f64);
    }
}

impl OpenFiles {
    /// A budget of `limit` files, shown in `gauge` (`source_files_open`).
    pub fn new(limit: usize, gauge: Gauge) -> Self {
        gauge.set(0.0);
        OpenFiles {
            limit: limit.max(1),
            open: Rc::new(Cell::new(0)),
            gauge,
        }
    }

    /// The most files held open at once now.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// True when another file may be opened.
    pub fn has_room(&self) -> bool {
        self.open.get() < self.limit
    }

    /// True when more files are open than the limit (it was lowered).
    pub fn over_limit(&self) -> bool {
        self.open.get() > self.limit
    }

    /// Opens `path` for reading, taking a slot. Non-blocking, so a FIFO put in a file's
    /// place cannot stall the reader.
    pub fn open(&self, path: &Path) -> io::Result<OpenFile> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)?;
        let open = self.open.get() + 1;
        self.open.set(open);
        self.gauge.set(open as f64);
        Ok(OpenFile {
            file,
            _slot: Slot {
                open: Rc::clone(&self.open),
                gauge: self.gauge.clone(),
            },
        })
    }

    /// The process ran out of descriptors although the budget had room: lower the limit
    /// to three quarters of what is open, giving the rest back to the sinks and the API.
    /// Returns the new limit when it changed.
    pub fn out_of_descriptors(&mut self) -> Option<usize> {
        let lowered = (self.open.get() * 3 / 4).max(1);
        (lowered < self.limit).then(|| {
            self.limit = lowered;
            lowered
        })
    }
}

/// How an open file is using its slot.
#[derive(Debug, Clone, Copy)]
pub struct Turn {
    /// When its reads started finding nothing new; `None` while it has data to read.
    pub idle_since: Option<Instant>,
    /// Batches read since it was opened.
    pub batches: u32,
}

/// The open files (key, turn) that may give their slot to a waiting file, in the order
/// they should: those idle (read to their end) the longest first, then those furthest
/// past their fair share of batches. Files busy within their share are left out: the
/// waiting file's turn comes soon.
pub fn order_to_close<K>(candidates: impl IntoIterator<Item = (K, Turn)>) -> Vec<K> {
    let mut idle = Vec::new();
    let mut past_share = Vec::new();
    for (key, turn) in candidates {
        match turn.idle_since {
            Some(since) => idle.push((since, key)),
            None if turn.batches >= FAIR_SHARE_BATCHES => past_share.push((turn.batches, key)),
            None => {}
        }
    }
    idle.sort_by_key(|(since, _)| *since);
    past_share.sort_by_key(|(batches, _)| std::cmp::Reverse(*batches));
    idle.into_iter()
        .map(|(_, key)| key)
        .chain(past_share.into_iter().map(|(_, key)| key))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn turn(idle_for_ms: Option<u64>, batches: u32) -> Turn {
        Turn {
            idle_since: idle_for_ms.map(|ms| Instant::now() - Duration::from_millis(ms)),
            batches,
        }
    }

    #[test]
    fn the_longest_idle_file_gives_way_first_then_the_busiest_past_its_share() {
        let files = [
            (0, turn(None, FAIR_SHARE_BATCHES + 5)),
            (1, turn(Some(10), 1)),
            (2, turn(Some(500), 0)),
        ];
        assert_eq!(order_to_close(files), [2, 1, 0]);
        let busy = [
            (0, turn(None, FAIR_SHARE_BATCHES)),
            (1, turn(None, FAIR_SHARE_BATCHES + 3)),
            (2, turn(None, 1)),
        ];
        assert_eq!(order_to_close(busy), [1, 0]);
        assert!(order_to_close([(0, turn(None, 1))]).is_empty());
    }

    #[test]
    fn slots_are_given_back_when_files_close_and_the_limit_can_be_lowered() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a");
        std::fs::write(&path, "x\n").expect("write");
        let mut files = OpenFiles::new(2, metrics::Gauge::noop());
        let first = files.open(&path).expect("open");
        let second = files.open(&path).expect("open");
        assert!(!files.has_room());
        drop(first);
        assert!(files.has_room());
        assert_eq!(files.out_of_descriptors(), Some(1));
        assert!(!files.has_room() && !files.over_limit());
        drop(second);
        assert!(files.has_room());
    }

    #[test]
    fn the_default_is_a_quarter_of_the_soft_limit_within_bounds() {
        let limit = default_limit();
        assert!((DEFAULT_MIN..=DEFAULT_MAX).contains(&limit));
        if let Some(soft) = soft_file_limit() {
            assert_eq!(limit, (soft / 4).clamp(DEFAULT_MIN, DEFAULT_MAX));
        }
    }
}
