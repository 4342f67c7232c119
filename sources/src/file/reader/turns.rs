//! Taking turns at the descriptor budget: which waiting file gets a slot, which open
//! file gives one up, and opening a file — for the first time, or again at its offset
//! after checking that its path still names it.

use std::fs::Metadata;
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use super::{FileSerial, OpenedFile, Reader, ReaderEvent, Stopped, Tracked};
use crate::file::checkpoint;
use crate::file::config::ReadFrom;
use crate::file::listing::{FileId, is_out_of_descriptors};
use crate::file::open_files::{self, OpenFile, Turn};
use crate::lines::LineBuffer;

/// A file in the queue for a slot.
#[derive(Debug, Clone, Copy)]
pub(super) enum Waiter {
    /// Found, never opened.
    New(FileId),
    /// Followed, closed, with data to read.
    Known(FileSerial),
}

/// Whether a waiter may be opened now.
enum Due {
    Now,
    Later,
    /// Nothing to open any more (forgotten, already open).
    Stale,
}

/// What came of opening a waiting file.
enum Opening {
    /// Opened, or nothing more to do for it now.
    Done,
    /// The process has no descriptor left: stop opening for a while.
    OutOfDescriptors,
}

/// Why a file could not be opened.
enum OpenFailure {
    /// Nothing at the path: the next listing tells where it went.
    Gone,
    /// The process has no descriptor left.
    OutOfDescriptors,
    /// Anything else (permission, I/O error): tried again after `glob_interval`.
    Refused,
}

impl Reader {
    /// Gives slots to waiting files, closing files that are done with their turn.
    pub(super) fn take_turns(&mut self) -> Result<(), Stopped> {
        // Worked out once per call: what is opened meanwhile is not done with its turn.
        let mut to_close: Option<Vec<FileSerial>> = None;
        while self.open_files.over_limit() {
            let Some(serial) = self.next_to_close(&mut to_close) else {
                break;
            };
            self.close(serial);
        }
        let now = Instant::now();
        if self.opens_paused_until.is_some_and(|until| now < until) {
            return Ok(());
        }
        self.opens_paused_until = None;
        let mut later = Vec::new();
        while let Some(waiter) = self.waiting.pop_front() {
            match self.due(waiter, now) {
                Due::Stale => continue,
                Due::Later => {
                    later.push(waiter);
                    continue;
                }
                Due::Now => {}
            }
            if !self.open_files.has_room() {
                let Some(serial) = self.next_to_close(&mut to_close) else {
                    self.waiting.push_front(waiter);
                    break;
                };
                self.close(serial);
            }
            let opening = match waiter {
                Waiter::New(id) => self.open_new(id)?,
                Waiter::Known(serial) => self.reopen(serial)?,
            };
            if let Opening::OutOfDescriptors = opening {
                self.waiting.push_front(waiter);
                break;
            }
        }
        for waiter in later.into_iter().rev() {
            self.waiting.push_front(waiter);
        }
        Ok(())
    }

    fn due(&mut self, waiter: Waiter, now: Instant) -> Due {
        match waiter {
            Waiter::New(id) => match self.discovered.get(&id) {
                None => Due::Stale,
                Some(found) if now < found.not_before => Due::Later,
                Some(_) => Due::Now,
            },
            Waiter::Known(serial) => match self.files.get_mut(&serial) {
                None => Due::Stale,
                Some(file) if file.handle.is_some() || file.drained => {
                    file.queued = false;
                    Due::Stale
                }
                Some(file) if now < file.next_poll => Due::Later,
                Some(_) => Due::Now,
            },
        }
    }

    /// The next open file to close for a waiting one, if any is done with its turn.
    /// Files that left the globs keep their slot: closed, they could not be opened again.
    fn next_to_close(&self, order: &mut Option<Vec<FileSerial>>) -> Option<FileSerial> {
        let order = order.get_or_insert_with(|| {
            let mut order = open_files::order_to_close(
                self.files
                    .values()
                    .filter(|f| f.handle.is_some() && !f.drained && f.orphaned_since.is_none())
                    .map(|f| (f.serial, f.turn)),
            );
            order.reverse();
            order
        });
        while let Some(serial) = order.pop() {
            if self.files.get(&serial).is_some_and(|f| f.handle.is_some()) {
                return Some(serial);
            }
        }
        None
    }

    /// Closes a file to free its slot; it is opened again at its offset when its turn
    /// comes (now, if it has more to read; when a listing shows it changed, if idle).
    fn close(&mut self, serial: FileSerial) {
        let Some(file) = self.files.get_mut(&serial) else {
            return;
        };
        let idle = file.turn.idle_since.is_some();
        file.handle = None;
        // Lines read past `offset` (a partial one, or more than a batch) are read again.
        file.read_pos = file.offset;
        file.lines.clear();
        file.lines.release_memory();
        file.turn = Turn {
            idle_since: None,
            batches: 0,
        };
        if !idle && !file.queued {
            file.queued = true;
            self.waiting.push_back(Waiter::Known(serial));
        }
        tracing::trace!(path = %file.path.display(), idle, "closed a file to let another take its turn");
    }

    /// Opens a file found by a listing for the first time and starts following it.
    fn open_new(&mut self, id: FileId) -> Result<Opening, Stopped> {
        let Some(found) = self.discovered.get(&id) else {
            return Ok(Opening::Done);
        };
        let path = found.path.clone();
        let (handle, meta, fingerprint) = match self.open_identified(&path) {
            Ok(opened) => opened,
            Err(e) => {
                return Ok(match self.cannot_open(&path, &e) {
                    OpenFailure::Gone => {
                        self.discovered.remove(&id);
                        Opening::Done
                    }
                    OpenFailure::OutOfDescriptors => Opening::OutOfDescriptors,
                    OpenFailure::Refused => {
                        if let Some(found) = self.discovered.get_mut(&id) {
                            found.not_before = Instant::now() + self.settings.glob_interval;
                        }
                        self.waiting.push_back(Waiter::New(id));
                        Opening::Done
                    }
                });
            }
        };
        self.troubled.forgive(&path);
        let Some(found) = self.discovered.remove(&id) else {
            return Ok(Opening::Done);
        };
        if FileId::of(&meta) != id {
            // Replaced since it was listed (and checked): the next listing looks again.
            tracing::debug!(path = %path.display(), "another file is at this path now");
            self.show_watched();
            return Ok(Opening::Done);
        }
        let size = meta.len();
        let known = fingerprint.and_then(|fp| {
            self.settings
                .resume
                .iter()
                .position(|entry| entry.matches(id.device, id.inode, fp))
        });
        let offset = match known.map(|index| self.settings.resume.swap_remove(index)) {
            Some(entry) if entry.offset <= size => {
                tracing::info!(path = %path.display(), offset = entry.offset, "resuming from checkpoint");
                entry.offset
            }
            Some(entry) => {
                tracing::warn!(path = %path.display(), checkpoint = entry.offset, size, "file is shorter than its checkpoint (truncated while stopped); reading it from the start");
                0
            }
            None if self.settings.read_from == ReadFrom::End => {
                // Shorter than at start-up means truncated since: all of it is new.
                found
                    .startup_size
                    .filter(|&start| start <= size)
                    .unwrap_or(0)
            }
            None => 0,
        };
        // Another entry for this inode holds older content: this file replaces it.
        self.settings.resume.retain(|entry| entry.id() != id);
        tracing::info!(path = %path.display(), offset, "following file");
        let serial = self.next_serial;
        self.next_serial += 1;
        let now = Instant::now();
        self.files.insert(
            serial,
            Tracked {
                serial,
                path: path.clone(),
                id,
                fingerprint,
                handle: Some(handle),
                offset,
                read_pos: offset,
                lines: LineBuffer::new(self.settings.max_line_bytes),
                generation: 0,
                next_poll: now,
                orphaned_since: None,
                drained: false,
                queued: false,
                seen_size: size,
                turn: Turn {
                    idle_since: None,
                    batches: 0,
                },
            },
        );
        self.show_watched();
        self.send(ReaderEvent::Opened(OpenedFile {
            serial,
            path,
            device: id.device,
            inode: id.inode,
            fingerprint,
            offset,
        }))?;
        Ok(Opening::Done)
    }

    /// Opens a followed file again for its turn, if its path still names it.
    fn reopen(&mut self, serial: FileSerial) -> Result<Opening, Stopped> {
        let Some(file) = self.files.get_mut(&serial) else {
            return Ok(Opening::Done);
        };
        file.queued = false;
        let path = file.path.clone();
        let (handle, meta, fingerprint) = match self.open_identified(&path) {
            Ok(opened) => opened,
            Err(e) => {
                return Ok(match self.cannot_open(&path, &e) {
                    // The next listing says where it went, if anywhere.
                    OpenFailure::Gone => Opening::Done,
                    OpenFailure::OutOfDescriptors => {
                        self.requeue_later(serial, Duration::ZERO);
                        Opening::OutOfDescriptors
                    }
                    OpenFailure::Refused => {
                        self.requeue_later(serial, self.settings.glob_interval);
                        Opening::Done
                    }
                });
            }
        };
        self.troubled.forgive(&path);
        let Some(file) = self.files.get_mut(&serial) else {
            return Ok(Opening::Done);
        };
        if FileId::of(&meta) != file.id {
            // Rotated while closed: another file has its name. The listing finds this
            // one under its new name, or finds it gone.
            tracing::debug!(path = %path.display(), "another file is at this path now; the listing decides what became of the one followed");
            return Ok(Opening::Done);
        }
        let replaced = meta.len() < file.offset
            || matches!((file.fingerprint, fingerprint), (Some(known), Some(now)) if known != now);
        file.handle = Some(handle);
        file.next_poll = file.next_poll.min(Instant::now());
        file.turn = Turn {
            idle_since: None,
            batches: 0,
        };
        if replaced {
            self.restart_truncated(serial, "it was truncated or replaced while closed")?;
        }
        Ok(Opening::Done)
    }

    /// Opens `path`, taking a slot, with what identifies the file now: its metadata
    /// (device, inode, size) and fingerprint.
    fn open_identified(&self, path: &Path) -> io::Result<(OpenFile, Metadata, Option<u64>)> {
        let handle = self.open_files.open(path)?;
        let meta = handle.metadata()?;
        let fingerprint = checkpoint::fingerprint_file(&handle)?;
        Ok((handle, meta, fingerprint))
    }

    /// Puts a closed file back in the queue, to be opened not before `delay` from now.
    fn requeue_later(&mut self, serial: FileSerial, delay: Duration) {
        if let Some(file) = self.files.get_mut(&serial) {
            file.next_poll = file.next_poll.max(Instant::now() + delay);
            file.queued = true;
            if delay.is_zero() {
                self.waiting.push_front(Waiter::Known(serial));
            } else {
                self.waiting.push_back(Waiter::Known(serial));
            }
        }
    }

    /// Counts and reports a failed open, saying how to go on.
    fn cannot_open(&mut self, path: &Path, error: &io::Error) -> OpenFailure {
        if matches!(
            error.kind(),
            io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
        ) {
            return OpenFailure::Gone;
        }
        self.settings.open_failed.increment(1);
        if is_out_of_descriptors(error) {
            self.ran_out_of_descriptors();
            return OpenFailure::OutOfDescriptors;
        }
        if self.troubled.first(path) {
            tracing::warn!(path = %path.display(), error = %error, "cannot open file; trying again at every glob_interval (warned once per path)");
        }
        OpenFailure::Refused
    }

    /// The process has no descriptor left: hold fewer files and pause opening.
    pub(super) fn ran_out_of_descriptors(&mut self) {
        let lowered = self.open_files.out_of_descriptors();
        if let Some(held_back) = self.out_of_descriptors.admit() {
            tracing::error!(
                max_open_files = self.open_files.limit(),
                lowered = lowered.is_some(),
                times_since_last_message = held_back,
                "the process ran out of file descriptors; this source holds fewer files open and retries (raise `ulimit -n` or lower max_open_files)"
            );
        }
        self.opens_paused_until = Some(Instant::now() + self.settings.poll_interval);
    }
}
