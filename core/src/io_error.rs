//! The one classification of I/O errors into the design's failure classes (retry, data,
//! configuration), for everything that writes files: the `file` sink, the disk buffer.
//!
//! The same errno means different things depending on where the name came from. A file
//! name rendered from an event's fields that is too long, or that runs into a file where
//! a folder should be, is that event's fault alone: no retry can fix it, so the event is
//! dead-lettered and the others flow on. The same error on a name the configuration fixes
//! (a disk buffer's folder, a `path` without event fields, the folder in front of the
//! first event field) would fail every event alike: an operator must fix it.
//! `docs/delivery.md` ("I/O errors") has the table for users.

use std::io;

use crate::delivery::FailureClass;

/// Where the failing name came from, which decides whether a bad name is the event's fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoContext {
    /// Opening or creating a file or folder whose name was rendered from an event's
    /// fields, below a configured folder that exists: a bad name is that event's alone.
    EventPath,
    /// Anything else: a file or folder the configuration names, or reading, writing or
    /// syncing a file already open.
    Configured,
}

/// The class of an I/O error met in `context`.
///
/// - A name the file system refuses — too long (`ENAMETOOLONG`), invalid (`EINVAL`,
///   `EILSEQ`), a file where a folder should be (`ENOTDIR`, or `EEXIST` from creating
///   the folders), a folder where the file should be (`EISDIR`), a symbolic link loop
///   (`ELOOP`) — is **data** for an [`IoContext::EventPath`] and **config** otherwise.
/// - A refusal only an operator can lift — no permission (`EACCES`, `EPERM`), a read-only
///   file system (`EROFS`) — is **config**.
/// - Everything else is **retry**: a full disk or quota (`ENOSPC`, `EDQUOT`), a file at
///   its size limit (`EFBIG`), an I/O error (`EIO`), a busy or interrupted call
///   (`EAGAIN`, `EINTR`, `EBUSY`), no descriptor (`EMFILE`, `ENFILE`), no memory, and
///   errors not listed, since retrying never loses data while dead-lettering an event
///   for a passing condition would.
pub fn classify(error: &io::Error, context: IoContext) -> FailureClass {
    match error.raw_os_error() {
        Some(errno) if is_bad_name(errno) => match context {
            IoContext::EventPath => FailureClass::Data,
            IoContext::Configured => FailureClass::Config,
        },
        Some(libc::EACCES | libc::EPERM | libc::EROFS) => FailureClass::Config,
        Some(_) => FailureClass::Retry,
        // Not from the OS (a short write, an error made up by a library): the kind is all
        // there is.
        None => match error.kind() {
            io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
                FailureClass::Config
            }
            _ => FailureClass::Retry,
        },
    }
}

/// A short word for an I/O error, for the `reason` of a dead letter and metric labels:
/// `name_too_long`, `not_a_directory`, `no_space`, `permission_denied`, ...
pub fn reason(error: &io::Error) -> &'static str {
    match error.raw_os_error() {
        Some(libc::ENAMETOOLONG) => "name_too_long",
        Some(libc::EINVAL | libc::EILSEQ) => "invalid_name",
        // Creating folders says EEXIST when a file is in the way.
        Some(libc::ENOTDIR | libc::EEXIST) => "not_a_directory",
        Some(libc::EISDIR) => "is_a_directory",
        Some(libc::ELOOP) => "symlink_loop",
        Some(libc::EACCES | libc::EPERM) => "permission_denied",
        Some(libc::EROFS) => "read_only_file_system",
        Some(libc::ENOSPC) => "no_space",
        Some(libc::EDQUOT) => "quota_exceeded",
        Some(libc::EFBIG) => "file_too_large",
        Some(libc::EIO) => "io_error",
        Some(libc::EMFILE | libc::ENFILE) => "too_many_open_files",
        _ => "io_error",
    }
}

/// Errors that say the name itself cannot be used, whatever the state of the disk.
fn is_bad_name(errno: i32) -> bool {
    matches!(
        errno,
        libc::ENAMETOOLONG
            | libc::EINVAL
            | libc::EILSEQ
            | libc::ENOTDIR
            | libc::EEXIST
            | libc::EISDIR
            | libc::ELOOP
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(errno: i32) -> io::Error {
        io::Error::from_raw_os_error(errno)
    }

    #[test]
    fn bad_names_are_the_events_fault_only_below_a_configured_folder() {
        for errno in [
            libc::ENAMETOOLONG,
            libc::EINVAL,
            libc::EILSEQ,
            libc::ENOTDIR,
            libc::EEXIST,
            libc::EISDIR,
            libc::ELOOP,
        ] {
            assert_eq!(
                classify(&os(errno), IoContext::EventPath),
                FailureClass::Data,
                "errno {errno}"
            );
            assert_eq!(
                classify(&os(errno), IoContext::Configured),
                FailureClass::Config,
                "errno {errno}"
            );
        }
    }

    #[test]
    fn permissions_are_configuration_wherever_they_occur() {
        for errno in [libc::EACCES, libc::EPERM, libc::EROFS] {
            for context in [IoContext::EventPath, IoContext::Configured] {
                assert_eq!(
                    classify(&os(errno), context),
                    FailureClass::Config,
                    "errno {errno}"
                );
            }
        }
    }

    #[test]
    fn resource_shortages_and_unknown_errors_are_retried() {
        for errno in [
            libc::ENOSPC,
            libc::EDQUOT,
            libc::EFBIG,
            libc::EIO,
            libc::EAGAIN,
            libc::EINTR,
            libc::EBUSY,
            libc::EMFILE,
            libc::ENFILE,
            libc::ENOMEM,
            libc::ENOENT,
            libc::ESTALE,
        ] {
            for context in [IoContext::EventPath, IoContext::Configured] {
                assert_eq!(
                    classify(&os(errno), context),
                    FailureClass::Retry,
                    "errno {errno}"
                );
            }
        }
    }

    #[test]
    fn errors_without_an_errno_go_by_their_kind() {
        let short = io::Error::from(io::ErrorKind::WriteZero);
        assert_eq!(classify(&short, IoContext::EventPath), FailureClass::Retry);
        let denied = io::Error::from(io::ErrorKind::PermissionDenied);
        assert_eq!(
            classify(&denied, IoContext::Configured),
            FailureClass::Config
        );
        assert_eq!(reason(&short), "io_error");
    }

    #[test]
    fn real_errors_from_the_file_system() {
        let dir = tempfile::tempdir().expect("tempdir");
        let long = dir.path().join(format!("{}.log", "x".repeat(10_000)));
        let error = std::fs::File::create(&long).expect_err("too long");
        assert_eq!(reason(&error), "name_too_long");
        assert_eq!(classify(&error, IoContext::EventPath), FailureClass::Data);

        let file = dir.path().join("a-file");
        std::fs::write(&file, "x").expect("write");
        let error = std::fs::File::create(file.join("below.log")).expect_err("not a folder");
        assert_eq!(reason(&error), "not_a_directory");
        assert_eq!(classify(&error, IoContext::EventPath), FailureClass::Data);
        let error = std::fs::create_dir_all(&file).expect_err("a file in the way");
        assert_eq!(reason(&error), "not_a_directory");
        assert_eq!(
            classify(&error, IoContext::Configured),
            FailureClass::Config
        );

        let error = std::fs::File::create(dir.path()).expect_err("a folder");
        assert_eq!(reason(&error), "is_a_directory");
        assert_eq!(classify(&error, IoContext::EventPath), FailureClass::Data);

        let error = std::fs::OpenOptions::new()
            .append(true)
            .open("/dev/full")
            .and_then(|mut full| std::io::Write::write_all(&mut full, b"x"))
            .expect_err("a full device");
        assert_eq!(reason(&error), "no_space");
        assert_eq!(classify(&error, IoContext::Configured), FailureClass::Retry);
    }
}
