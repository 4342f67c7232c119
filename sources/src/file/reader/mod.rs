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
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge};
use siemflow_core::event::Batch;
use tokio::sync::mpsc::Sender;

use super::checkpoint::{self, Entry};
use super::complaints::{OncePerPath, RECURRING_PROBLEM_PERIOD, Throttle};
use super::config::ReadFrom;
use super::listing::{FileId, Lister, Listing, is_out_of_descriptors};
use super::open_files::{self, OpenFile, OpenFiles, Turn};
use crate::lines::{LineBuffer, LineDecoder, Piece, RawLines};

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

/// Consecutive lines of one file, `start..end` in bytes.
#[derive(Debug)]
pub struct ReadBatch {
    /// The file.
    pub serial: FileSerial,
    /// Bumped by each [`Command::Rewind`]; batches of an older generation are stale.
    pub generation: u64,
    /// Offset of the first byte of the first line.
    pub start: u64,
    /// Offset just past the last newline consumed.
    pub end: u64,
    /// The file's fingerprint (it may only now be known).
    pub fingerprint: Option<u64>,
    /// The events, being decoded on the blocking pool while the reader reads on.
    pub events: DecodingLines,
}

/// A batch's events: none (only blank or discarded lines) or a decoding job.
#[derive(Debug)]
pub enum DecodingLines {
    /// No line to decode.
    Empty,
    /// Decoding on the blocking pool, so several batches decode at once.
    Decoding(tokio::task::JoinHandle<Batch>),
}

impl DecodingLines {
    /// The decoded events.
    pub async fn events(self) -> anyhow::Result<Batch> {
        match self {
            DecodingLines::Empty => Ok(Batch::new()),
            DecodingLines::Decoding(job) => job
                .await
                .map_err(|e| anyhow::anyhow!("decoding lines failed: {e}")),
        }
    }
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

/// Line buffers handed back by decoding jobs. Reusing them matters: freeing a buffer of
/// a megabyte makes glibc's allocator consolidate its free lists, which showed as a
/// third of the source's time.
struct Recycler {
    returned: std::sync::mpsc::Receiver<RawLines>,
    give_back: std::sync::mpsc::Sender<RawLines>,
}

impl Recycler {
    fn new() -> Self {
        let (give_back, returned) = std::sync::mpsc::channel();
        Recycler {
            returned,
            give_back,
        }
    }

    fn take(&self, lines: usize) -> RawLines {
        match self.returned.try_recv() {
            Ok(mut raw) => {
                raw.clear();
                raw
            }
            Err(_) => RawLines::with_capacity(0, lines),
        }
    }
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

/// A file in the queue for a slot.
#[derive(Debug, Clone, Copy)]
enum Waiter {
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
    out_of_descriptors: Throttle,
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
        out_of_descriptors: Throttle::new(RECURRING_PROBLEM_PERIOD),
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
            let missing = !found.contains_key(&id)
                && !self.files.values().any(|f| f.id == id)
                && gone_from(&entry.path, id);
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

    /// Gives slots to waiting files, closing files that are done with their turn.
    fn take_turns(&mut self) -> Result<(), Stopped> {
        while self.open_files.over_limit() {
            let Some(serial) = self.choose_to_close() else {
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
                let Some(serial) = self.choose_to_close() else {
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

    /// The open file to close for a waiting one, if any is done with its turn. Files
    /// that left the globs keep their slot: closed, they could not be opened again.
    fn choose_to_close(&self) -> Option<FileSerial> {
        open_files::choose_to_close(
            self.files
                .values()
                .filter(|f| f.handle.is_some() && !f.drained && f.orphaned_since.is_none())
                .map(|f| (f.serial, f.turn)),
        )
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
        let opened = self.open_files.open(&path).and_then(|handle| {
            let meta = handle.metadata()?;
            let fingerprint = checkpoint::fingerprint_file(&handle)?;
            Ok((handle, meta, fingerprint))
        });
        let (handle, meta, fingerprint) = match opened {
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
        let opened = self.open_files.open(&path).and_then(|handle| {
            let meta = handle.metadata()?;
            let fingerprint = checkpoint::fingerprint_file(&handle)?;
            Ok((handle, meta, fingerprint))
        });
        let (handle, meta, fingerprint) = match opened {
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
    fn ran_out_of_descriptors(&mut self) {
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

/// Reads the file's next lines into one batch and starts decoding them. Returns the batch
/// (none when no line was completed) and whether the end of the file was reached.
fn read_batch(
    settings: &ReaderSettings,
    recycler: &Recycler,
    file: &mut Tracked,
) -> std::io::Result<(Option<ReadBatch>, bool)> {
    let start = file.offset;
    let mut raw = recycler.take(settings.batch_max_events);
    let mut at_eof = false;
    while raw.len() < settings.batch_max_events {
        match file.lines.next_piece() {
            Some(Piece::Line { range, consumed }) => {
                let line = file.lines.slice(range);
                if !(line.is_empty() || line == b"\r") {
                    raw.push(line);
                }
                file.offset += consumed;
            }
            Some(Piece::TooLong { consumed }) => {
                tracing::warn!(path = %file.path.display(), offset = file.offset, bytes = consumed, max_line_bytes = settings.max_line_bytes, "line longer than max_line_bytes discarded");
                settings.decoder.count_too_long();
                file.offset += consumed;
            }
            None => {
                let Some(handle) = &file.handle else {
                    break;
                };
                let read = handle.read_at(file.lines.spare(), file.read_pos)?;
                if read == 0 {
                    at_eof = true;
                    break;
                }
                file.lines.commit(read);
                file.read_pos += read as u64;
            }
        }
    }
    if file.fingerprint.is_none()
        && file.read_pos > 0
        && let Some(handle) = &file.handle
    {
        file.fingerprint = checkpoint::fingerprint_file(handle)?;
    }
    if file.offset == start {
        return Ok((None, at_eof));
    }
    let events = if raw.is_empty() {
        DecodingLines::Empty
    } else {
        let decoder = settings.decoder.clone();
        let path = file.path.clone();
        let give_back = recycler.give_back.clone();
        DecodingLines::Decoding(settings.runtime.spawn_blocking(move || {
            let decoded = decoder.decode_all(&raw);
            // The reader may be gone (shutdown): then the buffer is simply freed.
            let _ = give_back.send(raw);
            if let Some(error) = decoded.first_error {
                tracing::warn!(path = %path.display(), batch_offset = start, lines = decoded.parse_errors, error, "lines that are not JSON objects kept whole in `message`");
            }
            decoded.events
        }))
    };
    let batch = ReadBatch {
        serial: file.serial,
        generation: file.generation,
        start,
        end: file.offset,
        fingerprint: file.fingerprint,
        events,
    };
    Ok((Some(batch), at_eof))
}
