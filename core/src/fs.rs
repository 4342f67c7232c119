//! Files the configuration names (a secret, a certificate, a lookup table, a GeoIP
//! database), read with bounds; and the exclusive file lock that makes a folder one
//! process's own.
//!
//! Without bounds `${file:/dev/zero}` reads until memory runs out, and a FIFO blocks
//! `siemflow validate` forever waiting for a writer. So a named file must be a regular
//! file (checked before it is opened for reading) no larger than a limit that fits its
//! kind.

use std::fs::{File, FileType, OpenOptions, TryLockError};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::units::format_size;

/// The most a certificate, key or CA bundle file (PEM, DER or PKCS#12) may hold. A whole
/// public CA bundle is about 200 KiB; one certificate with its key, a few KiB.
pub const CERTIFICATE_FILE_LIMIT: u64 = 1 << 20;

/// Why a file the configuration names could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file system refused (missing file, no permission, ...).
    #[error("cannot read {what} {}: {source}", path.display())]
    Io {
        /// What the file is for, e.g. `"tls.ca_file"`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The refusal.
        source: io::Error,
    },
    /// A folder, device, FIFO or socket: reading it could block or never end.
    #[error("{what} {} is {kind}, not a regular file", path.display())]
    NotRegular {
        /// What the file is for.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What it is instead, with its article ("a FIFO").
        kind: &'static str,
    },
    /// Larger than its kind of file may be.
    #[error("{what} {} is larger than the {} allowed", path.display(), format_size(*limit))]
    TooLarge {
        /// What the file is for.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The limit, in bytes.
        limit: u64,
    },
    /// Text was expected.
    #[error("{what} {} is not UTF-8 text", path.display())]
    NotText {
        /// What the file is for.
        what: &'static str,
        /// The file.
        path: PathBuf,
    },
}

/// Reads the regular file at `path` whole, refusing anything else or more than `limit`
/// bytes; `what` names the file in errors (`"tls.ca_file"`, `"secret file"`).
///
/// Symbolic links are followed (Kubernetes secret volumes are made of them); what they
/// lead to must be a regular file.
pub fn read_bounded(path: &Path, limit: u64, what: &'static str) -> Result<Vec<u8>, ReadError> {
    let io_error = |source| ReadError::Io {
        what,
        path: path.to_path_buf(),
        source,
    };
    let checked = |file_type: FileType, len: u64| {
        if let Some(kind) = not_regular(file_type) {
            return Err(ReadError::NotRegular {
                what,
                path: path.to_path_buf(),
                kind,
            });
        }
        if len > limit {
            return Err(ReadError::TooLarge {
                what,
                path: path.to_path_buf(),
                limit,
            });
        }
        Ok(len)
    };
    // Look before opening: opening a FIFO for reading blocks until a writer comes.
    let metadata = std::fs::metadata(path).map_err(io_error)?;
    checked(metadata.file_type(), metadata.len())?;
    // Should the path be swapped for a FIFO in between, O_NONBLOCK keeps the open from
    // waiting (it changes nothing for a regular file), and the second look refuses it.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(io_error)?;
    let metadata = file.metadata().map_err(io_error)?;
    let len = checked(metadata.file_type(), metadata.len())?;
    // A file growing while it is read stops at one byte past the limit.
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io_error)?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooLarge {
            what,
            path: path.to_path_buf(),
            limit,
        });
    }
    Ok(bytes)
}

/// [`read_bounded`] for a text file.
pub fn read_text_bounded(path: &Path, limit: u64, what: &'static str) -> Result<String, ReadError> {
    String::from_utf8(read_bounded(path, limit, what)?).map_err(|_| ReadError::NotText {
        what,
        path: path.to_path_buf(),
    })
}

/// What a file type is when it is not a regular file, with its article.
fn not_regular(file_type: FileType) -> Option<&'static str> {
    if file_type.is_file() {
        None
    } else if file_type.is_dir() {
        Some("a folder")
    } else if file_type.is_fifo() {
        Some("a FIFO")
    } else if file_type.is_char_device() {
        Some("a character device")
    } else if file_type.is_block_device() {
        Some("a block device")
    } else if file_type.is_socket() {
        Some("a socket")
    } else {
        Some("not a file")
    }
}

/// Opens `path` (creating it) and takes an exclusive `flock` on it without waiting.
/// `Ok(None)` when it is held through another open file: by another process, or by an
/// earlier open of the same file in this one.
///
/// The lock lasts as long as the returned file is open, and the kernel drops it when the
/// process dies, however it dies: a crash never leaves a stale lock behind.
pub fn try_lock(path: &Path) -> io::Result<Option<File>> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;

    use super::*;

    const LIMIT: u64 = 64 << 10;

    #[test]
    fn reads_a_regular_file_within_the_limit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "pem").expect("write");
        assert_eq!(
            read_bounded(&path, LIMIT, "tls.ca_file").expect("read"),
            b"pem"
        );
        assert_eq!(
            read_text_bounded(&path, 3, "tls.ca_file").expect("exactly the limit"),
            "pem"
        );
    }

    #[test]
    fn refuses_dev_zero_without_reading_it() {
        let error = read_bounded(Path::new("/dev/zero"), LIMIT, "secret file")
            .expect_err("a device is not a secret file");
        assert!(
            matches!(
                error,
                ReadError::NotRegular {
                    kind: "a character device",
                    ..
                }
            ),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            "secret file /dev/zero is a character device, not a regular file"
        );
    }

    #[test]
    fn refuses_a_fifo_before_opening_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("fifo");
        let c_path = CString::new(path.as_os_str().as_bytes()).expect("no NUL");
        // SAFETY: mkfifo(3) with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0, "mkfifo");
        // No writer ever opens the FIFO: opening it for reading would block this test.
        let error = read_bounded(&path, LIMIT, "secret file").expect_err("a FIFO");
        assert!(
            matches!(error, ReadError::NotRegular { kind: "a FIFO", .. }),
            "{error:?}"
        );
    }

    #[test]
    fn refuses_a_folder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let error = read_bounded(dir.path(), LIMIT, "lookup table").expect_err("a folder");
        assert!(
            matches!(
                error,
                ReadError::NotRegular {
                    kind: "a folder",
                    ..
                }
            ),
            "{error:?}"
        );
    }

    #[test]
    fn refuses_a_file_over_the_limit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("big");
        std::fs::write(&path, vec![b'x'; LIMIT as usize + 1]).expect("write");
        let error = read_bounded(&path, LIMIT, "secret file").expect_err("too large");
        assert!(
            matches!(error, ReadError::TooLarge { limit: LIMIT, .. }),
            "{error:?}"
        );
        assert!(
            error.to_string().contains("larger than the 64KiB allowed"),
            "{error}"
        );
    }

    #[test]
    fn follows_a_symbolic_link_to_a_regular_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("..data");
        std::fs::write(&target, "s3cret").expect("write");
        let link = dir.path().join("secret");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        assert_eq!(
            read_text_bounded(&link, LIMIT, "secret file").expect("read"),
            "s3cret"
        );
    }

    #[test]
    fn reports_a_missing_file_and_binary_text() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = read_bounded(&dir.path().join("nope"), LIMIT, "tls.ca_file");
        assert!(matches!(missing, Err(ReadError::Io { .. })));
        let path = dir.path().join("binary");
        std::fs::write(&path, [0xff, 0xfe]).expect("write");
        assert!(matches!(
            read_text_bounded(&path, LIMIT, "VRL program"),
            Err(ReadError::NotText { .. })
        ));
    }

    #[test]
    fn a_lock_is_exclusive_until_its_file_closes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(".lock");
        let held = try_lock(&path).expect("lock").expect("free");
        assert!(try_lock(&path).expect("try again").is_none(), "held");
        drop(held);
        assert!(try_lock(&path).expect("try again").is_some(), "released");
    }
}
