//! Component state on disk, written crash-safely: write a temp file, fsync, rename,
//! fsync the folder. A reader sees either the old or the new file, never a torn one.
//!
//! The `data_dir` holding that state belongs to one process at a time ([`DataDirLock`]).

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Replaces `path` with `bytes` atomically and durably.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let tmp = temp_path(path);
    {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    // The rename is only durable once the folder entry is on disk.
    File::open(dir)?.sync_all()
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Saves a value as pretty JSON, atomically.
pub fn save_json<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    write_atomic(path, &bytes)
}

/// Loads a JSON value saved by [`save_json`]; `Ok(None)` when there is none yet.
pub fn load_json<T: DeserializeOwned>(path: &Path) -> std::io::Result<Option<T>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The lock file in `data_dir`; it also holds the owner's process id, for the message
/// of the process it turns away.
pub const DATA_DIR_LOCK_FILE: &str = ".lock";

/// An exclusive `flock` on `data_dir/.lock`, held for as long as this value lives: two
/// processes sharing a `data_dir` would share checkpoints, dedup keys and disk buffers,
/// and both deliver the same records.
#[derive(Debug)]
pub struct DataDirLock {
    /// The folder, canonical, so that `./data` and `data` are one folder.
    dir: PathBuf,
    /// Holds the lock while open.
    _file: File,
}

/// Why a `data_dir` could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum DataDirLockError {
    /// Another process holds it.
    #[error(
        "data_dir {} is in use by another siemflow process{} (it holds {}): two processes on one data_dir would share checkpoints and buffers; stop the other process or give this one its own data_dir",
        dir.display(),
        pid.map(|pid| format!(" (pid {pid})")).unwrap_or_default(),
        dir.join(DATA_DIR_LOCK_FILE).display()
    )]
    Held {
        /// The folder.
        dir: PathBuf,
        /// The owner's process id, when its lock file says.
        pid: Option<u32>,
    },
    /// The folder or its lock file cannot be created or locked.
    #[error("cannot lock data_dir {}: {source}", dir.display())]
    Io {
        /// The folder.
        dir: PathBuf,
        /// The refusal.
        source: std::io::Error,
    },
}

impl DataDirLock {
    /// Creates `dir` if needed and locks it for this process, without waiting.
    pub fn take(dir: &Path) -> Result<Self, DataDirLockError> {
        let io_error = |source| DataDirLockError::Io {
            dir: dir.to_path_buf(),
            source,
        };
        fs::create_dir_all(dir).map_err(io_error)?;
        let dir = dir.canonicalize().map_err(io_error)?;
        let path = dir.join(DATA_DIR_LOCK_FILE);
        let Some(mut file) = crate::fs::try_lock(&path).map_err(io_error)? else {
            let pid = crate::fs::read_text_bounded(&path, 32, "the data_dir lock file")
                .ok()
                .and_then(|text| text.trim().parse().ok());
            return Err(DataDirLockError::Held { dir, pid });
        };
        // The process id is for the message of a process turned away; the lock itself is
        // the flock, which the kernel drops when this process ends, so a stale id in the
        // file never blocks anyone.
        file.set_len(0).map_err(io_error)?;
        write!(file, "{}", std::process::id()).map_err(io_error)?;
        Ok(DataDirLock { dir, _file: file })
    }

    /// True when `dir` is the folder this lock holds (a reload keeping its `data_dir`
    /// must not try to lock it a second time: that would fail against itself).
    pub fn holds(&self, dir: &Path) -> bool {
        dir.canonicalize().is_ok_and(|dir| dir == self.dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/checkpoints.json");
        assert_eq!(load_json::<Vec<u32>>(&path).expect("missing is fine"), None);
        save_json(&path, &vec![1u32, 2]).expect("save");
        save_json(&path, &vec![3u32]).expect("overwrite");
        assert_eq!(load_json::<Vec<u32>>(&path).expect("load"), Some(vec![3]));
        assert!(!temp_path(&path).exists());
    }

    #[test]
    fn a_corrupt_file_is_an_error_not_a_reset() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.json");
        fs::write(&path, b"{not json").expect("write");
        assert!(load_json::<Vec<u32>>(&path).is_err());
    }

    #[test]
    fn a_data_dir_is_locked_once_and_names_its_owner() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data_dir = dir.path().join("data");
        let lock = DataDirLock::take(&data_dir).expect("free");
        assert!(lock.holds(&data_dir));
        assert!(lock.holds(&data_dir.join("../data")));
        assert!(!lock.holds(dir.path()));
        // A second open of the lock file is refused even within one process, as another
        // process would be.
        let error = DataDirLock::take(&data_dir).expect_err("held");
        let message = error.to_string();
        assert!(
            matches!(error, DataDirLockError::Held { pid: Some(pid), .. } if pid == std::process::id()),
            "{message}"
        );
        let canonical = data_dir.canonicalize().expect("exists");
        assert!(
            message.contains(&canonical.display().to_string()),
            "{message}"
        );
        assert!(
            message.contains(&format!("pid {}", std::process::id())),
            "{message}"
        );
        drop(lock);
        DataDirLock::take(&data_dir).expect("free again once dropped");
    }
}
