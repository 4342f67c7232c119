//! Open file handles, bounded in number, closing the least recently used first.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

struct OpenFile {
    file: File,
    /// Ordering for LRU eviction; a counter, since two opens can share an `Instant`.
    last_used: u64,
    last_write: Instant,
}

/// A handle from [`OpenFiles::get_or_open`].
pub(super) struct Handle<'a> {
    /// The file, opened for appending.
    pub file: &'a mut File,
    /// True when this call created the file (its folder entry is new).
    pub created: bool,
    /// Bytes of a torn final line this call cut from an existing file (see [`cut_torn_tail`]).
    pub torn_bytes_cut: u64,
}

/// The sink's open files, keyed by path.
pub(super) struct OpenFiles {
    files: HashMap<PathBuf, OpenFile>,
    max_open: usize,
    clock: u64,
}

impl OpenFiles {
    /// An empty set keeping at most `max_open` files open.
    pub fn new(max_open: usize) -> Self {
        OpenFiles {
            files: HashMap::new(),
            max_open: max_open.max(1),
            clock: 0,
        }
    }

    /// The handle for `path`, opened for appending (creating the file and its folders)
    /// if it is not open yet.
    pub fn get_or_open(&mut self, path: &Path) -> io::Result<Handle<'_>> {
        self.clock += 1;
        let clock = self.clock;
        let now = Instant::now();
        let mut created = false;
        let mut torn_bytes_cut = 0;
        if !self.files.contains_key(path) {
            let (mut file, is_new) = open_append(path)?;
            created = is_new;
            if !is_new {
                torn_bytes_cut = cut_torn_tail(&mut file)?;
            }
            if self.files.len() >= self.max_open {
                self.close_least_recently_used();
            }
            self.files.insert(
                path.to_path_buf(),
                OpenFile {
                    file,
                    last_used: clock,
                    last_write: now,
                },
            );
        }
        let entry = self
            .files
            .get_mut(path)
            .ok_or_else(|| io::Error::other("file handle vanished right after opening"))?;
        entry.last_used = clock;
        entry.last_write = now;
        Ok(Handle {
            file: &mut entry.file,
            created,
            torn_bytes_cut,
        })
    }

    /// Closes `path` (after an error, so the next attempt starts from a fresh handle).
    pub fn close(&mut self, path: &Path) {
        self.files.remove(path);
    }

    /// Closes files not written for `idle`; returns how many.
    pub fn close_idle(&mut self, idle: Duration, now: Instant) -> usize {
        let before = self.files.len();
        self.files
            .retain(|_, open| now.saturating_duration_since(open.last_write) < idle);
        before - self.files.len()
    }

    /// How many files are open.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// True when `path` is open.
    #[cfg(test)]
    pub fn is_open(&self, path: &Path) -> bool {
        self.files.contains_key(path)
    }

    fn close_least_recently_used(&mut self) {
        let oldest = self
            .files
            .iter()
            .min_by_key(|(_, open)| open.last_used)
            .map(|(path, _)| path.clone());
        if let Some(path) = oldest {
            self.files.remove(&path);
        }
    }
}

/// Cuts a final line left without its newline by a write that was interrupted (SIGKILL,
/// a full disk). The sink owns its files, so such a fragment is the start of a batch that
/// was never acknowledged and will be written again whole; left in place it would glue
/// onto the next line and make one torn record. Returns the bytes removed.
fn cut_torn_tail(file: &mut File) -> io::Result<u64> {
    use std::os::unix::fs::FileExt as _;
    let len = file.metadata()?.len();
    let mut chunk = [0u8; 8192];
    let mut end = len;
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let window = &mut chunk[..(end - start) as usize];
        file.read_exact_at(window, start)?;
        if end == len && window.last() == Some(&b'\n') {
            return Ok(0);
        }
        if let Some(newline) = window.iter().rposition(|&b| b == b'\n') {
            end = start + newline as u64 + 1;
            break;
        }
        end = start;
    }
    if end < len {
        file.set_len(end)?;
    }
    Ok(len - end)
}

/// Opens for appending; creates the file (and missing folders) only when it is absent,
/// and says whether it did, so a caller that fsyncs knows to sync the folder as well.
fn open_append(path: &Path) -> io::Result<(File, bool)> {
    // Readable too: the tail of an existing file is checked for a torn line.
    match OpenOptions::new().read(true).append(true).open(path) {
        Ok(file) => Ok((file, false)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)?;
            }
            let file = OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                .open(path)?;
            Ok((file, true))
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    #[test]
    fn least_recently_used_file_is_closed_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b, c) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("c"),
        );
        let mut files = OpenFiles::new(2);
        files.get_or_open(&a).expect("open a");
        files.get_or_open(&b).expect("open b");
        files.get_or_open(&a).expect("reuse a");
        files.get_or_open(&c).expect("open c");
        assert_eq!(files.len(), 2);
        assert!(files.is_open(&a) && files.is_open(&c));
        assert!(!files.is_open(&b), "b was least recently used");
    }

    #[test]
    fn idle_files_are_closed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut files = OpenFiles::new(8);
        files.get_or_open(&dir.path().join("a")).expect("open");
        let now = Instant::now();
        assert_eq!(files.close_idle(Duration::from_secs(30), now), 0);
        assert_eq!(
            files.close_idle(Duration::from_secs(30), now + Duration::from_secs(31)),
            1
        );
        assert_eq!(files.len(), 0);
    }

    #[test]
    fn a_torn_final_line_is_cut_when_the_file_is_opened() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.ndjson");
        let cases = [
            ("{\"a\":1}\n{\"b\":".to_string(), "{\"a\":1}\n"),
            ("{\"a\":1}\n".to_string(), "{\"a\":1}\n"),
            ("{\"frag".to_string(), ""),
            (String::new(), ""),
            // A fragment longer than one read-back chunk.
            (format!("{{}}\n{}", "x".repeat(20_000)), "{}\n"),
        ];
        for (before, after) in cases {
            std::fs::write(&path, &before).expect("write");
            let mut files = OpenFiles::new(1);
            let handle = files.get_or_open(&path).expect("open");
            assert_eq!(handle.torn_bytes_cut, (before.len() - after.len()) as u64);
            handle.file.write_all(b"{\"c\":3}\n").expect("append");
            let written = std::fs::read_to_string(&path).expect("read");
            assert_eq!(written, format!("{after}{{\"c\":3}}\n"), "from {before:?}");
        }
    }

    #[test]
    fn creates_folders_and_reports_creation_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x/y/z.log");
        let mut files = OpenFiles::new(1);
        assert!(files.get_or_open(&path).expect("open").created);
        files.close(&path);
        assert!(!files.get_or_open(&path).expect("reopen").created);
    }
}
