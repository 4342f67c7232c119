//! Reading a file's next lines into a batch and decoding them on the blocking pool.

use std::os::unix::fs::FileExt;

use siemflow_core::event::Batch;

use super::{FileSerial, ReaderSettings, Tracked};
use crate::file::checkpoint;
use crate::lines::{Piece, RawLines};

/// Consecutive lines of one file, `start..end` in bytes.
#[derive(Debug)]
pub struct ReadBatch {
    /// The file.
    pub serial: FileSerial,
    /// Bumped by each [`super::Command::Rewind`]; batches of an older generation are stale.
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

/// Line buffers handed back by decoding jobs. Reusing them matters: freeing a buffer of
/// a megabyte makes glibc's allocator consolidate its free lists, which showed as a
/// third of the source's time.
pub struct Recycler {
    returned: std::sync::mpsc::Receiver<RawLines>,
    give_back: std::sync::mpsc::Sender<RawLines>,
}

impl Recycler {
    pub fn new() -> Self {
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

/// Reads the file's next lines into one batch and starts decoding them. Returns the batch
/// (none when no line was completed) and whether the end of the file was reached.
pub fn read_batch(
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
