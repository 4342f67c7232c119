//! A batch encoded and grouped by destination file, and the progress of writing it.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use metrics::Counter;
use siemflow_core::Batch;
use siemflow_core::ack::AckSet;
use siemflow_core::metrics::ComponentLabels;
use siemflow_core::template::Template;

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

/// An I/O failure on one file.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} `{}`: {source}", path.display())]
pub(super) struct WriteError {
    /// The file.
    pub path: PathBuf,
    /// `open`, `write` or `fsync`.
    pub action: &'static str,
    /// What the OS said.
    #[source]
    pub source: io::Error,
}

/// The lines of one batch bound for one file.
struct Group {
    path: PathBuf,
    lines: Vec<u8>,
    /// Bytes of `lines` already written: a retry resumes here, so nothing is written twice.
    written: usize,
    /// The file was created by this write and its folder entry is not synced yet.
    created: bool,
    done: bool,
}

/// One batch, encoded and grouped by file, on its way to disk.
pub(super) struct PendingWrite {
    groups: Vec<Group>,
    /// Events in the batch.
    pub events: u64,
}

impl PendingWrite {
    /// Bytes in the batch.
    pub fn bytes(&self) -> u64 {
        self.groups.iter().map(|g| g.lines.len() as u64).sum()
    }

    /// The file the first unfinished group goes to (for messages).
    pub fn first_pending_path(&self) -> Option<&Path> {
        self.groups
            .iter()
            .find(|g| !g.done)
            .map(|g| g.path.as_path())
    }

    /// Writes (and with `fsync`, syncs) every group not written yet. Blocking: run it on
    /// a blocking thread. On error, the progress is kept and the failing file closed.
    pub fn write_to(&mut self, files: &mut OpenFiles, fsync: bool) -> Result<(), WriteError> {
        for group in self.groups.iter_mut().filter(|g| !g.done) {
            if let Err(error) = group.write_to(files, fsync) {
                files.close(&group.path);
                return Err(error);
            }
        }
        Ok(())
    }
}

impl Group {
    fn write_to(&mut self, files: &mut OpenFiles, fsync: bool) -> Result<(), WriteError> {
        let handle = files
            .get_or_open(&self.path)
            .map_err(|e| error(&self.path, "open", e))?;
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
        self.done = true;
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

    /// Encodes a batch, rendering paths with `now`, and takes its acknowledgements out.
    pub fn encode(&mut self, batch: Batch, now: DateTime<Utc>) -> (PendingWrite, AckSet) {
        let mut acks = AckSet::default();
        let mut groups: Vec<Group> = Vec::new();
        let events = batch.len() as u64;
        if self.template.has_fields() {
            let mut index: HashMap<String, usize> = HashMap::new();
            for mut event in batch {
                if let Some(ack) = event.ack.take() {
                    acks.push(ack);
                }
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
                self.lines.encode(&event, &mut groups[slot].lines);
            }
        } else if let Some(first) = batch.first() {
            // The path depends only on the time: render it once for the whole batch.
            let (path, _) = self.template.render_path_or(first, now, MISSING_FIELD);
            let mut group = self.group(PathBuf::from(path));
            for mut event in batch {
                if let Some(ack) = event.ack.take() {
                    acks.push(ack);
                }
                self.lines.encode(&event, &mut group.lines);
            }
            groups.push(group);
        }
        (PendingWrite { groups, events }, acks)
    }

    /// Takes the buffers of a written batch back for the next ones.
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
            written: 0,
            created: false,
            done: false,
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
