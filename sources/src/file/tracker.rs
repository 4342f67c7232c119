//! Which batches of which file are delivered, and so how far each file's checkpoint may go.
//!
//! A file's checkpoint moves to a batch's end only when that batch and every earlier batch
//! of the file were delivered. A failed batch cuts the file's queue there: later batches
//! (delivered or not) are forgotten, the file is read again from the failed batch's start
//! under a new generation, and stale batches still in flight are ignored. Core's
//! [`OrderedSettlement`] keeps this, one key per file serial, rewinding after a failure;
//! its epoch is the file's generation.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use siemflow_core::retry::{Retries, RetryRule};
use siemflow_core::settlement::{AfterFailure, OrderedSettlement, Settled, Ticket};

use super::checkpoint::{self, Entry};
use super::listing::FileId;
use super::reader::{Command, FileSerial, OpenedFile, ReadBatch};

/// How soon a failed batch is read again: from 250 ms, doubling with jitter per
/// consecutive failure of its file, up to 30 s. No budget: the data is still in the
/// file, so it is read again until it is delivered or the file is truncated.
const REREAD: RetryRule = RetryRule::new(Duration::from_millis(250), Duration::from_secs(30));

struct FileState {
    path: PathBuf,
    device: u64,
    inode: u64,
    fingerprint: Option<u64>,
    drained: bool,
    /// False once the file was truncated: its old content is gone.
    rereadable: bool,
    /// The re-reads since the file's last delivery; `None` while nothing failed.
    rereads: Option<Retries>,
}

/// What became of a failed batch.
#[derive(Debug, PartialEq, Eq)]
pub enum FailureOutcome {
    /// It will be read again.
    Retried,
    /// The file can no longer supply it (truncated, or shutting down).
    Lost,
    /// Stale: it belonged to an older generation of the file.
    Ignored,
}

/// Per-file acknowledgement state and the checkpoint derived from it.
pub struct Tracker {
    files: HashMap<FileSerial, FileState>,
    /// Each followed file's batches and checkpoint (byte offset), keyed by serial.
    settlement: OrderedSettlement<FileSerial, u64>,
    /// Loaded entries kept until their file is opened or a listing shows it gone.
    unconfirmed: Vec<Entry>,
    dirty: bool,
}

impl Tracker {
    /// A tracker that keeps the loaded checkpoints until their files are opened or gone.
    pub fn new(loaded: Vec<Entry>) -> Self {
        Tracker {
            files: HashMap::new(),
            settlement: OrderedSettlement::new(AfterFailure::Rewind),
            unconfirmed: loaded,
            dirty: false,
        }
    }

    /// True when the checkpoint changed since the last [`Tracker::take_entries`].
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// The last save failed: save again at the next chance.
    pub fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    /// Forgets loaded checkpoints of files that no longer exist.
    pub fn forget(&mut self, gone: &[FileId]) {
        let before = self.unconfirmed.len();
        self.unconfirmed.retain(|entry| !gone.contains(&entry.id()));
        let forgotten = before - self.unconfirmed.len();
        if forgotten > 0 {
            tracing::info!(
                files = forgotten,
                "forgetting checkpoints of files that no longer exist"
            );
            self.dirty = true;
        }
    }

    /// The reader follows a new file. A loaded checkpoint of the same inode is now
    /// either this file's (it resumed from it) or stale (the inode holds new content).
    pub fn opened(&mut self, file: OpenedFile) {
        self.unconfirmed
            .retain(|entry| !(entry.device == file.device && entry.inode == file.inode));
        self.settlement.track(file.serial, Some(file.offset));
        self.files.insert(
            file.serial,
            FileState {
                path: file.path,
                device: file.device,
                inode: file.inode,
                fingerprint: file.fingerprint,
                drained: false,
                rereadable: true,
                rereads: None,
            },
        );
        self.dirty = true;
    }

    /// Registers a batch about to be sent; `None` when it is stale and must be dropped.
    pub fn accept(&mut self, batch: &ReadBatch) -> Option<Ticket<FileSerial>> {
        let state = self.files.get_mut(&batch.serial)?;
        if batch.generation != self.settlement.epoch(&batch.serial) {
            return None;
        }
        if state.fingerprint.is_none() {
            state.fingerprint = batch.fingerprint;
        }
        Some(
            self.settlement
                .register_span(batch.serial, batch.start, batch.end),
        )
    }

    /// The path of a file, for messages.
    pub fn path(&self, serial: FileSerial) -> Option<&PathBuf> {
        self.files.get(&serial).map(|s| &s.path)
    }

    /// A batch was delivered. Returns a command for the reader when the file can be closed.
    pub fn delivered(&mut self, ticket: &Ticket<FileSerial>) -> Option<Command> {
        let serial = *ticket.key();
        match self.settlement.delivered(ticket) {
            Settled::Delivered { advanced: true } => {
                if let Some(state) = self.files.get_mut(&serial) {
                    state.rereads = None;
                }
                self.dirty = true;
            }
            Settled::Delivered { advanced: false } => {}
            Settled::Failed(_) | Settled::Stale => return None,
        }
        self.release_if_settled(serial)
    }

    /// A batch failed. With `retry`, the file is read again from the batch's start after a
    /// back-off; the returned command says so.
    pub fn failed(
        &mut self,
        ticket: &Ticket<FileSerial>,
        retry: bool,
    ) -> (FailureOutcome, Option<Command>) {
        let serial = *ticket.key();
        // Nothing at or after the hole may move the checkpoint: the settlement voids it
        // all (it is read again) and moves the file's generation on.
        let Settled::Failed(failure) = self.settlement.failed(ticket) else {
            return (FailureOutcome::Ignored, None);
        };
        let Some(state) = self.files.get_mut(&serial) else {
            return (FailureOutcome::Ignored, None);
        };
        let offset = failure.resume_from.unwrap_or(0);
        if retry && state.rereadable {
            // REREAD has no budget, so it always grants a wait.
            let backoff = state
                .rereads
                .get_or_insert_with(|| REREAD.start())
                .after_failure(None)
                .unwrap_or(REREAD.max);
            state.drained = false;
            let command = Command::Rewind {
                serial,
                offset,
                generation: failure.epoch,
                not_before: Instant::now() + backoff,
            };
            return (FailureOutcome::Retried, Some(command));
        }
        (FailureOutcome::Lost, self.release_if_settled(serial))
    }

    /// The reader read a file that left the globs to its end.
    pub fn drained(&mut self, serial: FileSerial) -> Option<Command> {
        self.files.get_mut(&serial)?.drained = true;
        self.release_if_settled(serial)
    }

    /// The file was truncated, or left the globs while closed: its batches can no longer
    /// be read again. The reader already let go of this serial: it is forgotten once its
    /// batches are settled, with nothing to release.
    pub fn unreadable(&mut self, serial: FileSerial) {
        let Some(state) = self.files.get_mut(&serial) else {
            return;
        };
        state.rereadable = false;
        state.drained = true;
        let release = self.release_if_settled(serial);
        debug_assert!(release.is_none(), "an unreadable file is not released");
    }

    fn release_if_settled(&mut self, serial: FileSerial) -> Option<Command> {
        let state = self.files.get(&serial)?;
        if !(state.drained && self.settlement.is_idle(&serial)) {
            return None;
        }
        let rereadable = state.rereadable;
        self.files.remove(&serial);
        self.settlement.forget(&serial);
        self.dirty = true;
        rereadable.then_some(Command::Release(serial))
    }

    /// The checkpoint entries to save now; clears the dirty flag.
    pub fn take_entries(&mut self) -> Vec<Entry> {
        self.dirty = false;
        let mut by_identity: HashMap<(u64, u64, String), (FileSerial, Entry)> = HashMap::new();
        for (&serial, state) in &self.files {
            let Some(fingerprint) = state.fingerprint else {
                continue;
            };
            let entry = Entry {
                path: state.path.clone(),
                device: state.device,
                inode: state.inode,
                fingerprint: checkpoint::hex(fingerprint),
                offset: self.settlement.checkpoint(&serial).unwrap_or(0),
            };
            let key = (entry.device, entry.inode, entry.fingerprint.clone());
            // The same content under an old serial (before a truncation) loses to the newest.
            match by_identity.get(&key) {
                Some((existing, _)) if *existing > serial => {}
                _ => {
                    by_identity.insert(key, (serial, entry));
                }
            }
        }
        let mut entries: Vec<Entry> = by_identity.into_values().map(|(_, e)| e).collect();
        entries.extend(self.unconfirmed.iter().cloned());
        entries.sort_by(|a, b| a.path.cmp(&b.path).then(a.inode.cmp(&b.inode)));
        entries
    }

    /// Batches still waiting for their acknowledgement.
    pub fn outstanding(&self) -> usize {
        self.settlement.outstanding()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opened(serial: FileSerial) -> OpenedFile {
        OpenedFile {
            serial,
            path: format!("/f{serial}").into(),
            device: 1,
            inode: serial,
            fingerprint: Some(7),
            offset: 0,
        }
    }

    fn batch(serial: FileSerial, generation: u64, start: u64, end: u64) -> ReadBatch {
        ReadBatch {
            serial,
            generation,
            start,
            end,
            fingerprint: Some(7),
            events: crate::file::reader::DecodingLines::Empty,
        }
    }

    fn offset(tracker: &mut Tracker) -> u64 {
        tracker.take_entries()[0].offset
    }

    #[test]
    fn checkpoint_waits_for_every_earlier_batch() {
        let mut tracker = Tracker::new(Vec::new());
        tracker.opened(opened(1));
        let a = tracker.accept(&batch(1, 0, 0, 10)).expect("current");
        let b = tracker.accept(&batch(1, 0, 10, 20)).expect("current");
        tracker.delivered(&b);
        assert_eq!(offset(&mut tracker), 0);
        tracker.delivered(&a);
        assert_eq!(offset(&mut tracker), 20);
    }

    #[test]
    fn a_failure_holds_the_checkpoint_until_the_reread_is_delivered() {
        let mut tracker = Tracker::new(Vec::new());
        tracker.opened(opened(1));
        let a = tracker.accept(&batch(1, 0, 0, 10)).expect("current");
        let b = tracker.accept(&batch(1, 0, 10, 20)).expect("current");
        let c = tracker.accept(&batch(1, 0, 20, 30)).expect("current");
        let (outcome, command) = tracker.failed(&b, true);
        assert_eq!(outcome, FailureOutcome::Retried);
        assert!(matches!(
            command,
            Some(Command::Rewind {
                offset: 10,
                generation: 1,
                ..
            })
        ));
        tracker.delivered(&c);
        tracker.delivered(&a);
        assert_eq!(offset(&mut tracker), 10);
        assert_eq!(
            tracker.accept(&batch(1, 0, 30, 40)),
            None,
            "stale generation"
        );
        let again = tracker.accept(&batch(1, 1, 10, 30)).expect("re-read");
        tracker.delivered(&again);
        assert_eq!(offset(&mut tracker), 30);
    }

    #[test]
    fn drained_file_is_released_once_settled() {
        let mut tracker = Tracker::new(Vec::new());
        tracker.opened(opened(1));
        let a = tracker.accept(&batch(1, 0, 0, 10)).expect("current");
        assert!(tracker.drained(1).is_none());
        assert!(matches!(tracker.delivered(&a), Some(Command::Release(1))));
        assert!(tracker.take_entries().is_empty());
    }

    #[test]
    fn an_unreadable_file_is_forgotten_once_settled_and_its_failure_is_lost() {
        let mut tracker = Tracker::new(Vec::new());
        tracker.opened(opened(1));
        tracker.opened(opened(2));
        let a = tracker.accept(&batch(1, 0, 0, 10)).expect("current");
        tracker.unreadable(1);
        tracker.unreadable(2);
        assert_eq!(
            tracker.take_entries().len(),
            1,
            "file 1 still has a batch out"
        );
        let (outcome, command) = tracker.failed(&a, true);
        assert_eq!(
            outcome,
            FailureOutcome::Lost,
            "its lines cannot be read again"
        );
        assert!(command.is_none(), "the reader let go of it already");
        assert!(tracker.take_entries().is_empty());
        assert_eq!(tracker.outstanding(), 0);
    }

    #[test]
    fn a_loaded_checkpoint_is_kept_until_its_file_is_opened_or_gone() {
        let entry = |inode: u64| Entry {
            path: format!("/f{inode}").into(),
            device: 1,
            inode,
            fingerprint: checkpoint::hex(7),
            offset: 4,
        };
        let mut tracker = Tracker::new(vec![entry(1), entry(2), entry(3)]);
        assert_eq!(tracker.take_entries().len(), 3, "saved while waiting");
        tracker.opened(opened(1));
        tracker.forget(&[FileId {
            device: 1,
            inode: 2,
        }]);
        let entries = tracker.take_entries();
        let offsets: Vec<(u64, u64)> = entries.iter().map(|e| (e.inode, e.offset)).collect();
        assert_eq!(
            offsets,
            [(1, 0), (3, 4)],
            "the opened file's own state, and the one not yet opened"
        );
    }
}
