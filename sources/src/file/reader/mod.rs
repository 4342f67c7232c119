//! The reading thread: finds files, follows them through rotation, and turns their new
//! lines into batches. It never decides what is delivered; the task in `mod.rs` does,
//! and tells it what to read again.
//!
//! It holds at most `max_open_files` files open ([`OpenFiles`]). When more files match,
//! they take turns: a file waiting for a slot gets one from a file read to its end (or
//! one past its fair share of batches), which is closed and opened again, at its
//! offset, when a listing shows it changed — after checking that the path still names
//! the same file (device, inode and fingerprint). A listing that failed ([`Lister`])
//! never counts as a deletion.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge};
use siemflow_core::log_limit::RateLimitedLog;
use tokio::sync::mpsc::Sender;

use super::checkpoint::{self, Entry};
use super::complaints::{OncePerPath, RECURRING_PROBLEM_PERIOD};
use super::config::ReadFrom;
use super::listing::{FileId, Lister, Listing};
use super::open_files::{OpenFile, OpenFiles, Turn};
use crate::lines::{LineBuffer, LineDecoder};

mod batch;
mod turns;

#[cfg(test)]
pub use batch::DecodingLines;
pub use batch::ReadBatch;
use batch::{Recycler, read_batch};
use turns::Waiter;

/// Names one followed file for as long as the reader follows it.
pub type FileSerial = u64;

/// What the reader reports to the source task, in the order it happened.
#[derive(Debug)]
pub enum ReaderEvent {
    /// A file is now followed, starting at `offset` (which counts as delivered).
    Opened(OpenedFile),
    /// New lines of one file.
    Batch(ReadBatch),
    /// The file left the globs (rotated away or deleted) and was read to its end. The
    /// reader keeps it open until told [`Command::Release`], so a failed batch can still
    /// be read again.
    Drained(FileSerial),
    /// The file was truncated or replaced: what it held before cannot be read again. It
    /// is followed on under a new serial (announced next) from offset 0.
    Truncated(FileSerial),
    /// The file left the globs while it was closed (waiting for its turn): it cannot be
    /// opened, nor any of its batches read again. The reader forgot it.
    Vanished(FileSerial),
    /// Checkpoints loaded at start-up whose files a successful listing no longer finds.
    Forget(Vec<FileId>),
}

/// A file the reader started following.
#[derive(Debug)]
pub struct OpenedFile {
    /// The reader's name for it.
    pub serial: FileSerial,
    /// Where it was found.
    pub path: PathBuf,
    /// Device number.
    pub device: u64,
    /// Inode number.
    pub inode: u64,
    /// Hash of its first line, once it has one.
    pub fingerprint: Option<u64>,
    /// Where reading starts.
    pub offset: u64,
}

/// What the source task asks of the reader.
#[derive(Debug)]
pub enum Command {
    /// Read the file again from `offset`, not before `not_before`.
    Rewind {
        /// The file.
        serial: FileSerial,
        /// Where to start again.
        offset: u64,
        /// The generation its batches carry from now on.
        generation: u64,
        /// The end of the back-off.
        not_before: Instant,
    },
    /// A drained file is settled: close it.
    Release(FileSerial),
}

/// How the reader works; built from the config.
pub struct ReaderSettings {
    /// Finds the files.
    pub lister: Lister,
    /// Start of files without checkpoint found at start-up.
    pub read_from: ReadFrom,
    /// Rescan period.
    pub glob_interval: Duration,
    /// EOF poll period.
    pub poll_interval: Duration,
    /// Longest line kept.
    pub max_line_bytes: usize,
    /// Most events per batch.
    pub batch_max_events: usize,
    /// Most files open at once.
    pub max_open_files: usize,
    /// Line decoding and its counters.
    pub decoder: LineDecoder,
    /// `source_files_watched`.
    pub watched: Gauge,
    /// `source_files_open`.
    pub open: Gauge,
    /// `component_errors_total{error_type="open_failed"}`.
    pub open_failed: Counter,
    /// Checkpoints loaded at start-up.
    pub resume: Vec<Entry>,
    /// Where decoding jobs run.
    pub runtime: tokio::runtime::Handle,
}

/// The source task is gone: stop.
struct Stopped;

/// A followed file, open or waiting for its turn.
struct Tracked {
    serial: FileSerial,
    path: PathBuf,
    id: FileId,
    fingerprint: Option<u64>,
    /// `None` while closed to leave the slot to another file.
    handle: Option<OpenFile>,
    /// Just past the last line handed out.
    offset: u64,
    /// Where the next read starts.
    read_pos: u64,
    lines: LineBuffer,
    generation: u64,
    next_poll: Instant,
    orphaned_since: Option<Instant>,
    drained: bool,
    /// In the queue for a slot.
    queued: bool,
    /// Its size when last read to its end: a closed file is opened again when a
    /// listing shows another size.
    seen_size: u64,
    turn: Turn,
}

/// A matching file not opened yet: it waits for a slot.
struct Discovered {
    path: PathBuf,
    /// Its size when found at start-up (before the first complete listing), where
    /// `read_from = "end"` starts it.
    startup_size: Option<u64>,
    /// When opening it may be tried (again).
    not_before: Instant,
}

struct Reader {
    settings: ReaderSettings,
    files: BTreeMap<FileSerial, Tracked>,
    discovered: HashMap<FileId, Discovered>,
    waiting: VecDeque<Waiter>,
    open_files: OpenFiles,
    /// True once a listing succeeded completely: files found later are not start-up files.
    listed_completely: bool,
    next_serial: FileSerial,
    events: Sender<ReaderEvent>,
    last_scan: Option<Instant>,
    opens_paused_until: Option<Instant>,
    out_of_descriptors: RateLimitedLog,
    troubled: OncePerPath,
    recycler: Recycler,
}

/// Runs until the source task drops its ends of the channels.
pub fn run(settings: ReaderSettings, events: Sender<ReaderEvent>, commands: Receiver<Command>) {
    let open_files = OpenFiles::new(settings.max_open_files, settings.open.clone());
    let mut reader = Reader {
        settings,
        files: BTreeMap::new(),
        discovered: HashMap::new(),
        waiting: VecDeque::new(),
        open_files,
        listed_completely: false,
        next_serial: 0,
        events,
        last_scan: None,
        opens_paused_until: None,
        out_of_descriptors: RateLimitedLog::new(RECURRING_PROBLEM_PERIOD),
        troubled: OncePerPath::default(),
        recycler: Recycler::new(),
    };
    let _ = reader.run(&commands);
}

/// True when `path` shows that file `id` is no longer there: nothing is at the path, or
/// another file is. A failure to look shows nothing.
fn gone_from(path: &Path, id: FileId) -> bool {
    match std::fs::metadata(path) {
        Ok(meta) => FileId::of(&meta) != id,
        Err(e) => matches!(
            e.kind(),
            io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
        ),
    }
}

impl Reader {
    fn run(&mut self, commands: &Receiver<Command>) -> Result<(), Stopped> {
        loop {
            loop {
                match commands.try_recv() {
                    Ok(command) => self.apply(command),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return Err(Stopped),
                }
            }
            if self
                .last_scan
                .is_none_or(|last| last.elapsed() >= self.settings.glob_interval)
            {
                self.scan()?;
            }
            self.take_turns()?;
            if !self.read_round()? {
                match commands.recv_timeout(self.idle_wait()) {
                    Ok(command) => self.apply(command),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return Err(Stopped),
                }
            }
        }
    }

    fn send(&self, event: ReaderEvent) -> Result<(), Stopped> {
        self.events.blocking_send(event).map_err(|_| Stopped)
    }

    /// How long nothing is due: until the next file poll or rescan, or one poll period
    /// while files wait for a slot.
    fn idle_wait(&self) -> Duration {
        let now = Instant::now();
        let next_scan = self
            .last_scan
            .map_or(now, |last| last + self.settings.glob_interval);
        let mut next = self
            .files
            .values()
            .filter(|f| f.handle.is_some() && !f.drained)
            .map(|f| f.next_poll)
            .min()
            .unwrap_or(next_scan)
            .min(next_scan);
        if !self.waiting.is_empty() {
            next = next.min(now + self.settings.poll_interval);
        }
        next.saturating_duration_since(now)
            .max(Duration::from_millis(1))
    }

    fn apply(&mut self, command: Command) {
        match command {
            Command::Rewind {
                serial,
                offset,
                generation,
                not_before,
            } => {
                let Some(file) = self.files.get_mut(&serial) else {
                    tracing::debug!(serial, "rewind for a file no longer followed");
                    return;
                };
                tracing::info!(path = %file.path.display(), offset, "reading again from the start of the failed batch");
                file.generation = generation;
                file.offset = offset;
                file.read_pos = offset;
                file.lines.clear();
                file.drained = false;
                file.next_poll = not_before;
                // It has lines to read again: not idle, and queued for a slot if closed.
                file.turn.idle_since = None;
                if file.handle.is_none() && !file.queued {
                    file.queued = true;
                    self.waiting.push_back(Waiter::Known(serial));
                }
            }
            Command::Release(serial) => {
                if let Some(file) = self.files.remove(&serial) {
                    tracing::debug!(path = %file.path.display(), "closed a drained file");
                    self.show_watched();
                }
            }
        }
    }

    fn show_watched(&self) {
        self.settings
            .watched
            .set((self.files.len() + self.discovered.len()) as f64);
    }

    fn scan(&mut self) -> Result<(), Stopped> {
        self.last_scan = Some(Instant::now());
        let at_startup = !self.listed_completely;
        let known: HashSet<FileId> = self
            .files
            .values()
            .map(|f| f.id)
            .chain(self.discovered.keys().copied())
            .collect();
        let Listing {
            mut found,
            complete,
            out_of_descriptors,
        } = self.settings.lister.list(|id| known.contains(&id));
        drop(known);
        if out_of_descriptors {
            self.ran_out_of_descriptors();
        }
        if complete {
            self.listed_completely = true;
            self.forget_missing_checkpoints(&found)?;
        }

        let now = Instant::now();
        let mut replaced = Vec::new();
        let mut vanished = Vec::new();
        for file in self.files.values_mut() {
            match found.remove(&file.id) {
                Some(seen) if !file.drained => {
                    if seen.path != file.path {
                        tracing::info!(from = %file.path.display(), to = %seen.path.display(), "file renamed; still following it");
                        file.path = seen.path;
                    }
                    file.orphaned_since = None;
                    match &file.handle {
                        Some(handle) => {
                            if let Some(known) = file.fingerprint
                                && let Ok(Some(current)) = checkpoint::fingerprint_file(handle)
                                && current != known
                            {
                                replaced.push(file.serial);
                            }
                        }
                        None if seen.size != file.seen_size && !file.queued => {
                            file.queued = true;
                            self.waiting.push_back(Waiter::Known(file.serial));
                        }
                        None => {}
                    }
                }
                Some(_) => {}
                // Deleted only when a complete listing lacks it and its path confirms.
                None if complete && gone_from(&file.path, file.id) => {
                    if file.handle.is_none() {
                        vanished.push(file.serial);
                    } else if file.orphaned_since.is_none() {
                        tracing::debug!(path = %file.path.display(), "file no longer matches (rotated or deleted); reading it to its end");
                        file.orphaned_since = Some(now);
                    }
                }
                None => {}
            }
        }
        for serial in replaced {
            self.restart_truncated(serial, "its first line changed (copy-truncate rotation)")?;
        }
        for serial in vanished {
            self.vanish(serial)?;
        }

        // Files still waiting for their first turn.
        self.discovered
            .retain(|id, waiting| match found.remove(id) {
                Some(seen) => {
                    waiting.path = seen.path;
                    true
                }
                None => !(complete && gone_from(&waiting.path, *id)),
            });
        let mut new_files: Vec<_> = found.into_iter().collect();
        // Oldest inode first is a fair guess at the order files were written.
        new_files.sort_by_key(|(id, _)| *id);
        for (id, seen) in new_files {
            self.discovered.insert(
                id,
                Discovered {
                    path: seen.path,
                    startup_size: at_startup.then_some(seen.size),
                    not_before: now,
                },
            );
            self.waiting.push_back(Waiter::New(id));
        }
        self.show_watched();
        Ok(())
    }

    /// Checkpoints loaded at start-up whose file a complete listing did not find, and
    /// whose path confirms it is gone, are forgotten.
    fn forget_missing_checkpoints(
        &mut self,
        found: &HashMap<FileId, super::listing::Found>,
    ) -> Result<(), Stopped> {
        if self.settings.resume.is_empty() {
            return Ok(());
        }
        let mut gone = Vec::new();
        self.settings.resume.retain(|entry| {
            let id = entry.id();
            // Entries are taken out as their files are opened: none names a followed file.
            let missing = !found.contains_key(&id) && gone_from(&entry.path, id);
            if missing {
                gone.push(id);
            }
            !missing
        });
        if gone.is_empty() {
            return Ok(());
        }
        self.send(ReaderEvent::Forget(gone))
    }

    /// A closed file left the globs: forget it.
    fn vanish(&mut self, serial: FileSerial) -> Result<(), Stopped> {
        let Some(file) = self.files.remove(&serial) else {
            return Ok(());
        };
        if file.seen_size > file.offset {
            tracing::warn!(path = %file.path.display(), offset = file.offset, size = file.seen_size, "a file waiting for its turn was rotated away or deleted before its last lines were read; they are not read (raise max_open_files, or include the rotated names)");
        } else {
            tracing::debug!(path = %file.path.display(), "a closed file was rotated away or deleted");
        }
        self.show_watched();
        self.send(ReaderEvent::Vanished(serial))
    }

    /// Gives a truncated file a new serial and reads it from the start.
    fn restart_truncated(&mut self, serial: FileSerial, why: &str) -> Result<(), Stopped> {
        let Some(mut file) = self.files.remove(&serial) else {
            return Ok(());
        };
        tracing::info!(path = %file.path.display(), offset = file.offset, reason = why, "file was truncated; reading it again from the start");
        let old = file.serial;
        file.serial = self.next_serial;
        self.next_serial += 1;
        file.offset = 0;
        file.read_pos = 0;
        file.generation = 0;
        file.lines.clear();
        file.fingerprint = file
            .handle
            .as_ref()
            .and_then(|handle| checkpoint::fingerprint_file(handle).ok().flatten());
        file.next_poll = Instant::now();
        file.turn.idle_since = None;
        let opened = OpenedFile {
            serial: file.serial,
            path: file.path.clone(),
            device: file.id.device,
            inode: file.id.inode,
            fingerprint: file.fingerprint,
            offset: 0,
        };
        if file.handle.is_none() && !file.queued {
            file.queued = true;
            self.waiting.push_back(Waiter::Known(file.serial));
        }
        self.files.insert(file.serial, file);
        self.send(ReaderEvent::Truncated(old))?;
        self.send(ReaderEvent::Opened(opened))
    }

    /// Reads at most one batch from every open file that is due. True when anything was
    /// read.
    fn read_round(&mut self) -> Result<bool, Stopped> {
        let now = Instant::now();
        let due: Vec<FileSerial> = self
            .files
            .values()
            .filter(|f| f.handle.is_some() && !f.drained && now >= f.next_poll)
            .map(|f| f.serial)
            .collect();
        let mut worked = false;
        for serial in due {
            let Some(file) = self.files.get_mut(&serial) else {
                continue;
            };
            let (batch, at_eof) = match read_batch(&self.settings, &self.recycler, file) {
                Ok(read) => read,
                Err(e) => {
                    if self.troubled.first(&file.path) {
                        tracing::warn!(path = %file.path.display(), error = %e, "cannot read file; trying again (warned once per path)");
                    }
                    file.next_poll = now + self.settings.poll_interval;
                    continue;
                }
            };
            if let Some(batch) = batch {
                worked = true;
                file.turn.batches += 1;
                file.turn.idle_since = None;
                self.send(ReaderEvent::Batch(batch))?;
            }
            if at_eof {
                self.at_eof(serial)?;
            }
        }
        Ok(worked)
    }

    fn at_eof(&mut self, serial: FileSerial) -> Result<(), Stopped> {
        let poll = self.settings.poll_interval;
        let Some(file) = self.files.get_mut(&serial) else {
            return Ok(());
        };
        let Some(handle) = &file.handle else {
            return Ok(());
        };
        let now = Instant::now();
        file.next_poll = now + poll;
        file.turn.idle_since.get_or_insert(now);
        // A failure to look is not a truncation: the size read so far stands.
        let size = handle.metadata().map_or(file.read_pos, |m| m.len());
        file.seen_size = size;
        if size < file.read_pos {
            return self.restart_truncated(serial, "it is shorter than what was read");
        }
        if file.lines.unfinished_bytes() == 0 {
            // An idle file keeps no read buffer: many quiet files cost little memory.
            file.lines.release_memory();
        }
        // One poll period after it left the globs gives a writer time to finish.
        if let Some(since) = file.orphaned_since
            && since.elapsed() >= poll
        {
            let unfinished = file.lines.unfinished_bytes();
            if unfinished > 0 {
                tracing::warn!(path = %file.path.display(), offset = file.offset, bytes = unfinished, "rotated or deleted file ends with a line that has no newline; it is not read");
            }
            file.drained = true;
            return self.send(ReaderEvent::Drained(serial));
        }
        Ok(())
    }
}
