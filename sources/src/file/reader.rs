//! The reading thread: finds files, follows them through rotation, and turns their new
//! lines into batches. It never decides what is delivered; the task in `mod.rs` does,
//! and tells it what to read again.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use metrics::Gauge;
use siemflow_core::event::Batch;
use tokio::sync::mpsc::Sender;

use super::checkpoint::{self, Entry};
use super::config::ReadFrom;
use crate::lines::{LineBuffer, LineDecoder, Piece, RawLines};

/// Names one open file for as long as the reader holds it.
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
    /// The start-up scan announced every file it found.
    ScanDone,
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
    /// Include globs.
    pub include: Vec<String>,
    /// Exclude globs, compiled.
    pub exclude: Vec<glob::Pattern>,
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
    /// Line decoding and its counters.
    pub decoder: LineDecoder,
    /// `source_files_watched`.
    pub watched: Gauge,
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

struct Tracked {
    serial: FileSerial,
    path: PathBuf,
    file: File,
    device: u64,
    inode: u64,
    fingerprint: Option<u64>,
    /// Just past the last line handed out.
    offset: u64,
    /// Where the next read starts.
    read_pos: u64,
    lines: LineBuffer,
    generation: u64,
    next_poll: Instant,
    orphaned_since: Option<Instant>,
    drained: bool,
}

struct Reader {
    settings: ReaderSettings,
    files: Vec<Tracked>,
    next_serial: FileSerial,
    events: Sender<ReaderEvent>,
    last_scan: Instant,
    recycler: Recycler,
}

/// Runs until the source task drops its ends of the channels.
pub fn run(settings: ReaderSettings, events: Sender<ReaderEvent>, commands: Receiver<Command>) {
    let mut reader = Reader {
        settings,
        files: Vec::new(),
        next_serial: 0,
        events,
        last_scan: Instant::now(),
        recycler: Recycler::new(),
    };
    let _ = reader.run(&commands);
}

impl Reader {
    fn run(&mut self, commands: &Receiver<Command>) -> Result<(), Stopped> {
        self.scan(true)?;
        self.send(ReaderEvent::ScanDone)?;
        // Checkpoints of files not found at start-up are pruned by the source task.
        self.settings.resume.clear();
        loop {
            loop {
                match commands.try_recv() {
                    Ok(command) => self.apply(command),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return Err(Stopped),
                }
            }
            if self.last_scan.elapsed() >= self.settings.glob_interval {
                self.scan(false)?;
            }
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

    /// How long nothing is due: until the next file poll or rescan.
    fn idle_wait(&self) -> Duration {
        let now = Instant::now();
        let next_scan = self.last_scan + self.settings.glob_interval;
        let next_poll = self
            .files
            .iter()
            .filter(|f| !f.drained)
            .map(|f| f.next_poll)
            .min()
            .unwrap_or(next_scan);
        next_poll
            .min(next_scan)
            .saturating_duration_since(now)
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
                let Some(file) = self.files.iter_mut().find(|f| f.serial == serial) else {
                    tracing::debug!(serial, "rewind for a file no longer open");
                    return;
                };
                tracing::info!(path = %file.path.display(), offset, "reading again from the start of the failed batch");
                file.generation = generation;
                file.offset = offset;
                file.read_pos = offset;
                file.lines.clear();
                file.drained = false;
                file.next_poll = not_before;
            }
            Command::Release(serial) => {
                if let Some(index) = self.files.iter().position(|f| f.serial == serial) {
                    let file = self.files.swap_remove(index);
                    tracing::debug!(path = %file.path.display(), "closed a drained file");
                    self.settings.watched.set(self.files.len() as f64);
                }
            }
        }
    }

    fn scan(&mut self, first: bool) -> Result<(), Stopped> {
        self.last_scan = Instant::now();
        let mut found: HashMap<(u64, u64), PathBuf> = HashMap::new();
        for pattern in &self.settings.include {
            let paths = match glob::glob(pattern) {
                Ok(paths) => paths,
                Err(e) => {
                    tracing::warn!(pattern, error = %e, "invalid include pattern");
                    continue;
                }
            };
            for entry in paths {
                let path = match entry {
                    Ok(path) => path,
                    Err(e) => {
                        tracing::debug!(error = %e, "cannot look into a folder while matching files");
                        continue;
                    }
                };
                if self.settings.exclude.iter().any(|p| p.matches_path(&path)) {
                    continue;
                }
                if let Ok(meta) = std::fs::metadata(&path)
                    && meta.is_file()
                {
                    found.entry((meta.dev(), meta.ino())).or_insert(path);
                }
            }
        }
        let now = Instant::now();
        let mut replaced = Vec::new();
        for file in &mut self.files {
            match found.remove(&(file.device, file.inode)) {
                Some(path) if !file.drained => {
                    if path != file.path {
                        tracing::info!(from = %file.path.display(), to = %path.display(), "file renamed; still following it");
                        file.path = path;
                    }
                    file.orphaned_since = None;
                    if let Some(known) = file.fingerprint
                        && let Ok(Some(current)) = checkpoint::fingerprint_file(&file.file)
                        && current != known
                    {
                        replaced.push(file.serial);
                    }
                }
                Some(_) => {}
                None => {
                    if file.orphaned_since.is_none() {
                        tracing::debug!(path = %file.path.display(), "file no longer matches (rotated or deleted); reading it to its end");
                        file.orphaned_since = Some(now);
                    }
                }
            }
        }
        for serial in replaced {
            self.restart_truncated(serial, "its first line changed (copy-truncate rotation)")?;
        }
        let mut new_files: Vec<_> = found.into_iter().collect();
        // Oldest inode first is a fair guess at the order files were written.
        new_files.sort();
        for ((device, inode), path) in new_files {
            self.open(path, device, inode, first)?;
        }
        self.settings.watched.set(self.files.len() as f64);
        Ok(())
    }

    fn open(&mut self, path: PathBuf, device: u64, inode: u64, first: bool) -> Result<(), Stopped> {
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot open file");
                return Ok(());
            }
        };
        let (device, inode, size) = match file.metadata() {
            Ok(meta) => (meta.dev(), meta.ino(), meta.len()),
            Err(_) => (device, inode, 0),
        };
        let fingerprint = checkpoint::fingerprint_file(&file).unwrap_or_else(|e| {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the start of the file");
            None
        });
        let known = fingerprint.and_then(|fp| {
            self.settings
                .resume
                .iter()
                .position(|entry| entry.matches(device, inode, fp))
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
            None if first && self.settings.read_from == ReadFrom::End => size,
            None => 0,
        };
        tracing::info!(path = %path.display(), offset, "following file");
        let serial = self.next_serial;
        self.next_serial += 1;
        self.files.push(Tracked {
            serial,
            path: path.clone(),
            file,
            device,
            inode,
            fingerprint,
            offset,
            read_pos: offset,
            lines: LineBuffer::new(self.settings.max_line_bytes),
            generation: 0,
            next_poll: Instant::now(),
            orphaned_since: None,
            drained: false,
        });
        self.send(ReaderEvent::Opened(OpenedFile {
            serial,
            path,
            device,
            inode,
            fingerprint,
            offset,
        }))
    }

    /// Gives a truncated file a new serial and reads it from the start.
    fn restart_truncated(&mut self, serial: FileSerial, why: &str) -> Result<(), Stopped> {
        let Some(file) = self.files.iter_mut().find(|f| f.serial == serial) else {
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
        file.fingerprint = checkpoint::fingerprint_file(&file.file).unwrap_or(None);
        file.next_poll = Instant::now();
        let opened = OpenedFile {
            serial: file.serial,
            path: file.path.clone(),
            device: file.device,
            inode: file.inode,
            fingerprint: file.fingerprint,
            offset: 0,
        };
        self.send(ReaderEvent::Truncated(old))?;
        self.send(ReaderEvent::Opened(opened))
    }

    /// Reads at most one batch from every file that is due. True when anything was read.
    fn read_round(&mut self) -> Result<bool, Stopped> {
        let mut worked = false;
        let mut index = 0;
        while index < self.files.len() {
            let now = Instant::now();
            let file = &mut self.files[index];
            index += 1;
            if file.drained || now < file.next_poll {
                continue;
            }
            let (batch, at_eof) = match read_batch(&self.settings, &self.recycler, file) {
                Ok(read) => read,
                Err(e) => {
                    tracing::warn!(path = %file.path.display(), error = %e, "cannot read file");
                    file.next_poll = now + self.settings.poll_interval;
                    continue;
                }
            };
            let serial = file.serial;
            if let Some(batch) = batch {
                worked = true;
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
        let Some(file) = self.files.iter_mut().find(|f| f.serial == serial) else {
            return Ok(());
        };
        file.next_poll = Instant::now() + poll;
        let size = file
            .file
            .metadata()
            .map(|m| m.len())
            .unwrap_or(file.read_pos);
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
                let read = file.file.read_at(file.lines.spare(), file.read_pos)?;
                if read == 0 {
                    at_eof = true;
                    break;
                }
                file.lines.commit(read);
                file.read_pos += read as u64;
            }
        }
    }
    if file.fingerprint.is_none() && file.read_pos > 0 {
        file.fingerprint = checkpoint::fingerprint_file(&file.file)?;
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
