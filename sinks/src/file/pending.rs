//! A batch encoded and grouped by destination file, and the progress of writing it.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use metrics::Counter;
use siemflow_core::delivery::{Failure, FailureClass, Rejection};
use siemflow_core::io_error::IoContext;
use siemflow_core::metrics::ComponentLabels;
use siemflow_core::template::Template;
use siemflow_core::{Batch, BatchStatus, Event};

use super::open_files::OpenFiles;
use crate::encoding::LineEncoder;

/// What a missing template field is rendered as.
const MISSING_FIELD: &str = "_missing";
/// Initial size of a line buffer: room for a typical batch of ~1 KB events.
const BUFFER_BYTES: usize = 256 << 10;
/// A buffer grown past this is dropped after use, so one huge batch does not pin memory.
const KEPT_BUFFER_BYTES: usize = 8 << 20;
/// Spare buffers kept between batches.
const KEPT_BUFFERS: usize = 16;
/// At most this much of a path is quoted in messages: a name rendered from an event can
/// be as long as the event.
const QUOTED_PATH_CHARS: usize = 256;

/// The action of a [`WriteError`] that opens (or creates) the file: the only one whose
/// failure can be the name's fault.
const OPEN: &str = "open";

/// An I/O failure on one file.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} `{}`: {source}", quoted(path))]
pub(super) struct WriteError {
    /// The file.
    pub path: PathBuf,
    /// `open`, `write` or `fsync`.
    pub action: &'static str,
    /// What the OS said.
    #[source]
    pub source: io::Error,
}

/// A write that failed for the whole batch: it is tried again (progress kept).
#[derive(Debug)]
pub(super) struct Stalled {
    /// What failed.
    pub error: WriteError,
    /// Its class: retry or configuration, never data.
    pub class: FailureClass,
}

/// Where a group of lines stands.
#[derive(Debug)]
enum State {
    /// Not (completely) written yet.
    Pending,
    /// In the file (and synced, with `fsync`).
    Written,
    /// Its name can never be used: its events are to be dead-lettered.
    Rejected(Rejection),
    /// Its events went to the dead-letter output.
    DeadLettered,
}

/// The lines of one batch bound for one file.
struct Group {
    path: PathBuf,
    lines: Vec<u8>,
    /// The events behind the lines, holding their acknowledgements: settled once the
    /// lines are written, or handed on with them when dead-lettered.
    events: Vec<Event>,
    /// Bytes of `lines` already written: a retry resumes here, so nothing is written twice.
    written: usize,
    /// The file was created by this write and its folder entry is not synced yet.
    created: bool,
    state: State,
}

/// One batch, encoded and grouped by file, on its way to disk.
pub(super) struct PendingWrite {
    groups: Vec<Group>,
    /// The configured folder the names of event fields are rendered below; `None` when
    /// the template has no field, so every name is the configuration's.
    event_folder: Option<PathBuf>,
}

impl PendingWrite {
    /// Events and bytes written.
    pub fn written(&self) -> (u64, u64) {
        self.groups
            .iter()
            .filter(|g| matches!(g.state, State::Written))
            .fold((0, 0), |(events, bytes), g| {
                (events + g.events.len() as u64, bytes + g.lines.len() as u64)
            })
    }

    /// The file the first unfinished group goes to (for messages).
    pub fn first_pending_path(&self) -> Option<&Path> {
        self.groups
            .iter()
            .find(|g| matches!(g.state, State::Pending))
            .map(|g| g.path.as_path())
    }

    /// Writes (and with `fsync`, syncs) every group not written yet. Blocking: run it on
    /// a blocking thread.
    ///
    /// A group whose name can never be used (too long, a file where a folder should be:
    /// [`siemflow_core::io_error`]'s data class) is set aside for the dead letter and the
    /// others are written. Any other failure stops the attempt: the progress is kept and
    /// the failing file closed, for the next attempt.
    pub fn write_to(&mut self, files: &mut OpenFiles, fsync: bool) -> Result<(), Stalled> {
        for group in self
            .groups
            .iter_mut()
            .filter(|g| matches!(g.state, State::Pending))
        {
            let Err(error) = group.write_to(files, fsync) else {
                group.state = State::Written;
                continue;
            };
            files.close(&group.path);
            let context = match &self.event_folder {
                Some(folder) if error.action == OPEN && usable_folder(folder) => {
                    IoContext::EventPath
                }
                _ => IoContext::Configured,
            };
            match Failure::from_io(&error.source, context, error.to_string()) {
                Failure::Data(rejection) => group.state = State::Rejected(rejection),
                failure => {
                    let class = failure.class();
                    return Err(Stalled { error, class });
                }
            }
        }
        Ok(())
    }

    /// The events of groups whose name can never be used, with why, for the dead
    /// letter; each group is handed out once.
    pub fn take_rejected(&mut self) -> Vec<(Vec<Event>, Rejection)> {
        let mut rejected = Vec::new();
        for group in &mut self.groups {
            match std::mem::replace(&mut group.state, State::DeadLettered) {
                State::Rejected(rejection) => {
                    rejected.push((std::mem::take(&mut group.events), rejection));
                }
                other => group.state = other,
            }
        }
        rejected
    }

    /// Settles the events of written groups as delivered and the rest (the process is
    /// aborting) as failed, so their source reads them again.
    pub fn settle(&mut self) {
        for group in &mut self.groups {
            let status = match group.state {
                State::Written => BatchStatus::Delivered,
                _ => BatchStatus::Failed,
            };
            siemflow_core::event::resolve_batch(std::mem::take(&mut group.events), status);
        }
    }
}

/// True when `folder` is (or could be made) a folder: then a name below it that the file
/// system refuses is the fault of the event it was rendered from.
fn usable_folder(folder: &Path) -> bool {
    std::fs::create_dir_all(folder).is_ok() && folder.is_dir()
}

/// A path for messages, cut to [`QUOTED_PATH_CHARS`].
pub(super) fn quoted(path: &Path) -> String {
    let text = path.display().to_string();
    match text.char_indices().nth(QUOTED_PATH_CHARS) {
        Some((cut, _)) => format!("{}… ({} bytes)", &text[..cut], text.len()),
        None => text,
    }
}

impl Group {
    fn write_to(&mut self, files: &mut OpenFiles, fsync: bool) -> Result<(), WriteError> {
        let handle = files
            .get_or_open(&self.path)
            .map_err(|e| error(&self.path, OPEN, e))?;
        self.created |= handle.created;
        if handle.torn_bytes_cut > 0 {
            // Only this sink writes the file, so a fragment is either an earlier run's
            // unacknowledged batch or the part of this group a failed write left: in the
            // second case resume from the start of the line it cut.
            self.written = self.written.saturating_sub(handle.torn_bytes_cut as usize);
            tracing::warn!(
                path = %self.path.display(),
                bytes = handle.torn_bytes_cut,
                "cut a torn final line left by an interrupted write; its events were not acknowledged and are written again"
            );
        }
        while self.written < self.lines.len() {
            match handle.file.write(&self.lines[self.written..]) {
                Ok(0) => {
                    let e = io::Error::from(io::ErrorKind::WriteZero);
                    return Err(error(&self.path, "write", e));
                }
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(error(&self.path, "write", e)),
            }
        }
        if fsync {
            if let Err(e) = handle.file.sync_data() {
                // After a failed fsync the kernel may have dropped the dirty pages while a
                // later fsync reports success: write the group again (a repeat, not a loss).
                self.written = 0;
                return Err(error(&self.path, "fsync", e));
            }
            if self.created {
                sync_folder(&self.path).map_err(|e| error(&self.path, "fsync the folder of", e))?;
                self.created = false;
            }
        }
        Ok(())
    }
}

fn error(path: &Path, action: &'static str, source: io::Error) -> WriteError {
    WriteError {
        path: path.to_path_buf(),
        action,
        source,
    }
}

/// A new file is only durable once its folder entry is.
fn sync_folder(path: &Path) -> io::Result<()> {
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    File::open(folder)?.sync_all()
}

/// Turns batches into [`PendingWrite`]s, reusing line buffers between batches.
pub(super) struct BatchEncoder {
    template: Template,
    lines: LineEncoder,
    component: String,
    missing_field: Counter,
    warned_missing_field: bool,
    spare: Vec<Vec<u8>>,
}

impl BatchEncoder {
    /// An encoder rendering paths from `template`.
    pub fn new(template: Template, lines: LineEncoder, labels: &ComponentLabels) -> Self {
        BatchEncoder {
            template,
            lines,
            component: labels.id.clone(),
            missing_field: labels.counter(
                "component_errors_total",
                &[
                    ("error_type", "template_field_missing"),
                    ("stage", "processing"),
                ],
            ),
            warned_missing_field: false,
            spare: Vec::new(),
        }
    }

    /// Encodes a batch, rendering paths with `now`.
    pub fn encode(&mut self, batch: Batch, now: DateTime<Utc>) -> PendingWrite {
        let mut groups: Vec<Group> = Vec::new();
        let event_folder = self.template.has_fields().then(|| {
            let prefix = self.template.fixed_prefix(now);
            match prefix.rfind('/') {
                Some(end) => PathBuf::from(&prefix[..=end]),
                None => PathBuf::from("."),
            }
        });
        if self.template.has_fields() {
            let mut index: HashMap<String, usize> = HashMap::new();
            for event in batch {
                let (path, missing) = self.template.render_path_or(&event, now, MISSING_FIELD);
                if let Some(field) = missing {
                    self.note_missing_field(&field, &path);
                }
                let slot = match index.get(&path) {
                    Some(&slot) => slot,
                    None => {
                        groups.push(self.group(PathBuf::from(&path)));
                        index.insert(path, groups.len() - 1);
                        groups.len() - 1
                    }
                };
                let group = &mut groups[slot];
                self.lines.encode(&event, &mut group.lines);
                group.events.push(event);
            }
        } else if let Some(first) = batch.first() {
            // The path depends only on the time: render it once for the whole batch.
            let (path, _) = self.template.render_path_or(first, now, MISSING_FIELD);
            let mut group = self.group(PathBuf::from(path));
            group.events.reserve_exact(batch.len());
            for event in batch {
                self.lines.encode(&event, &mut group.lines);
                group.events.push(event);
            }
            groups.push(group);
        }
        PendingWrite {
            groups,
            event_folder,
        }
    }

    /// Takes the buffers of a settled batch back for the next ones.
    pub fn recycle(&mut self, pending: PendingWrite) {
        for group in pending.groups {
            let mut lines = group.lines;
            if lines.capacity() <= KEPT_BUFFER_BYTES && self.spare.len() < KEPT_BUFFERS {
                lines.clear();
                self.spare.push(lines);
            }
        }
    }

    fn group(&mut self, path: PathBuf) -> Group {
        Group {
            path,
            lines: self
                .spare
                .pop()
                .unwrap_or_else(|| Vec::with_capacity(BUFFER_BYTES)),
            events: Vec::new(),
            written: 0,
            created: false,
            state: State::Pending,
        }
    }

    fn note_missing_field(&mut self, field: &str, path: &str) {
        self.missing_field.increment(1);
        // Once per run: every event of a stream can lack the field.
        if !self.warned_missing_field {
            self.warned_missing_field = true;
            tracing::warn!(
                component = %self.component,
                field,
                path,
                "event lacks a field of the path template; writing it to the `_missing` path (counted as component_errors_total{{error_type=\"template_field_missing\"}}, warned once)"
            );
        }
    }
}
