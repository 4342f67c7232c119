//! A file watched for replacement: its modification time and size, checked at an
//! interval. Shared by the CSV lookup tables and the GeoIP databases.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// The file's identity at load time: a change of either means a new file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
}

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    let meta = fs::metadata(path)?;
    Ok(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
    })
}

/// Outcome of a reload check, for tests and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// The file did not change.
    Unchanged,
    /// The new file replaced the loaded one.
    Reloaded,
    /// The new file is missing or broken; the loaded one stays.
    Failed,
}

/// One watched file.
#[derive(Debug)]
pub struct Watched {
    /// The file.
    pub path: PathBuf,
    /// The stamp of the file last tried, loaded or not, so a broken file is tried once.
    seen: Stamp,
    interval: Option<Duration>,
    next_check: Instant,
}

impl Watched {
    /// Stamps the file as loaded now; a zero `interval` turns checking off.
    pub fn new(path: &Path, interval: Duration, now: Instant) -> std::io::Result<Self> {
        Ok(Watched {
            path: path.to_path_buf(),
            seen: stamp(path)?,
            interval: (!interval.is_zero()).then_some(interval),
            next_check: now + interval,
        })
    }

    /// True once per interval: time to look at the file again.
    pub fn due(&mut self, now: Instant) -> bool {
        match self.interval {
            Some(interval) if now >= self.next_check => {
                self.next_check = now + interval;
                true
            }
            _ => false,
        }
    }

    /// True when the file changed since it was last tried (and remembers the new
    /// stamp, so a broken file is tried only once); an error when it cannot be read.
    pub fn changed(&mut self) -> std::io::Result<bool> {
        let current = stamp(&self.path)?;
        if current == self.seen {
            return Ok(false);
        }
        self.seen = current;
        Ok(true)
    }
}
