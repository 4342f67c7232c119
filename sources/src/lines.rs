//! Splitting a byte stream into lines, read in chunks that grow while the stream keeps
//! them full, with a bound on line length.
//!
//! Shared by the line-oriented sources: they read straight into [`LineBuffer::spare`]
//! and take lines out without copying them.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use metrics::Counter;
use siemflow_core::decoding::{Decoding, LineIssues};
use siemflow_core::event::{Batch, Event};
use siemflow_core::metrics::ComponentMetrics;

/// The most bytes one read asks for: large, so a busy file costs few syscalls.
pub const CHUNK_BYTES: usize = 256 * 1024;

/// What the first read of a buffer asks for. Each read that fills what it was offered
/// doubles the next one, up to [`CHUNK_BYTES`]: a busy stream reaches full chunks within
/// a few reads, while a small file (thousands of them, each opened in turn) costs a
/// small buffer instead of zeroing a full chunk.
const FIRST_CHUNK_BYTES: usize = 8 * 1024;

/// What the buffer found next.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    /// A complete line (without its newline) at this range of the buffer.
    Line {
        /// Where the line sits in the buffer.
        range: Range<usize>,
        /// Bytes consumed from the stream, newline included.
        consumed: u64,
    },
    /// A line longer than the limit, now skipped up to and including its newline.
    TooLong {
        /// Bytes consumed from the stream, newline included.
        consumed: u64,
    },
}

/// A growable read buffer that hands out complete lines.
pub struct LineBuffer {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    searched: usize,
    max_line: usize,
    /// Bytes of an overlong line already dropped while waiting for its newline.
    discarded: Option<u64>,
    /// The least free space [`LineBuffer::spare`] offers now.
    chunk: usize,
}

impl LineBuffer {
    /// An empty buffer that rejects lines longer than `max_line` bytes.
    pub fn new(max_line: usize) -> Self {
        LineBuffer {
            buf: Vec::new(),
            start: 0,
            end: 0,
            searched: 0,
            max_line: max_line.max(1),
            discarded: None,
            chunk: FIRST_CHUNK_BYTES,
        }
    }

    /// Free space at the end of the buffer to read into: a small chunk at first, growing
    /// to [`CHUNK_BYTES`] as reads keep filling it.
    pub fn spare(&mut self) -> &mut [u8] {
        if self.start > 0 {
            // Keep only the unfinished line so the buffer does not grow with the stream.
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.searched -= self.start;
            self.start = 0;
        }
        if self.buf.len() - self.end < self.chunk {
            self.buf.resize(self.end + self.chunk, 0);
        }
        &mut self.buf[self.end..]
    }

    /// Marks `filled` bytes of [`LineBuffer::spare`] as read.
    pub fn commit(&mut self, filled: usize) {
        // A read that filled all it was offered: more is waiting, so offer more next time.
        if filled >= self.buf.len() - self.end {
            self.chunk = (self.chunk * 2).min(CHUNK_BYTES);
        }
        self.end = (self.end + filled).min(self.buf.len());
    }

    /// The bytes of a line returned by [`LineBuffer::next_piece`].
    pub fn slice(&self, range: Range<usize>) -> &[u8] {
        &self.buf[range]
    }

    /// Bytes read but not yet handed out as part of a piece (an unfinished line).
    pub fn unfinished_bytes(&self) -> u64 {
        (self.end - self.start) as u64 + self.discarded.unwrap_or(0)
    }

    /// Forgets everything buffered (the stream is read again from elsewhere).
    pub fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
        self.searched = 0;
        self.discarded = None;
    }

    /// Frees the read buffer when it holds nothing unfinished.
    pub fn release_memory(&mut self) {
        if self.start == self.end && self.discarded.is_none() {
            self.buf = Vec::new();
            self.chunk = FIRST_CHUNK_BYTES;
            self.clear();
        }
    }

    /// The bytes read but not yet handed out, from the start of the next piece (framings
    /// other than newline look at them, e.g. syslog's octet counting).
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Hands out the next `len` pending bytes (at most what is pending) as a range of the
    /// buffer: a piece whose length the caller read from the stream.
    pub fn take(&mut self, len: usize) -> Range<usize> {
        let len = len.min(self.end - self.start);
        let range = self.start..self.start + len;
        self.start += len;
        self.searched = self.searched.max(self.start);
        range
    }

    /// True while a line is partly read (searched for its newline, or being discarded):
    /// the next piece continues it, whatever framing another caller might guess.
    pub fn inside_line(&self) -> bool {
        self.discarded.is_some() || self.searched > self.start
    }

    /// The next complete line, or `None` until more bytes arrive.
    pub fn next_piece(&mut self) -> Option<Piece> {
        let from = self.searched.max(self.start);
        match memchr::memchr(b'\n', &self.buf[from..self.end]) {
            Some(at) => {
                let newline = from + at;
                let range = self.start..newline;
                let consumed = (newline + 1 - self.start) as u64;
                self.start = newline + 1;
                self.searched = self.start;
                if let Some(dropped) = self.discarded.take() {
                    return Some(Piece::TooLong {
                        consumed: dropped + consumed,
                    });
                }
                if range.len() > self.max_line {
                    return Some(Piece::TooLong { consumed });
                }
                Some(Piece::Line { range, consumed })
            }
            None => {
                self.searched = self.end;
                let unfinished = self.end - self.start;
                if unfinished > self.max_line {
                    // Dropping the bytes now is what bounds memory for a runaway line.
                    *self.discarded.get_or_insert(0) += unfinished as u64;
                    self.start = self.end;
                    self.searched = self.end;
                }
                None
            }
        }
    }

    /// At the end of the stream: the last line that never got its newline, if any.
    pub fn finish(&mut self) -> Option<Piece> {
        if let Some(dropped) = self.discarded.take() {
            let consumed = dropped + (self.end - self.start) as u64;
            self.start = self.end;
            self.searched = self.end;
            return Some(Piece::TooLong { consumed });
        }
        if self.start == self.end {
            return None;
        }
        let range = self.start..self.end;
        let consumed = range.len() as u64;
        self.start = self.end;
        self.searched = self.end;
        if range.len() > self.max_line {
            return Some(Piece::TooLong { consumed });
        }
        Some(Piece::Line { range, consumed })
    }
}

/// Complete lines copied out of a read buffer, to be decoded elsewhere (another thread).
#[derive(Default)]
pub struct RawLines {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl RawLines {
    /// Room for about this many bytes and lines.
    pub fn with_capacity(bytes: usize, lines: usize) -> Self {
        RawLines {
            bytes: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(lines),
        }
    }

    /// Empties it, keeping its memory for reuse.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }

    /// Adds one line (without its newline).
    pub fn push(&mut self, line: &[u8]) {
        self.bytes.extend_from_slice(line);
        self.ends.push(self.bytes.len());
    }

    /// How many lines it holds.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True when it holds no line.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The lines in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let line = &self.bytes[start..end];
            start = end;
            line
        })
    }
}

/// Events decoded from [`RawLines`], with what went wrong.
pub struct Decoded {
    /// One event per non-blank line.
    pub events: Batch,
    /// Lines that were not JSON objects (kept whole in `message`).
    pub parse_errors: u64,
    /// The first of those errors.
    pub first_error: Option<String>,
}

/// Turns lines into events and counts what the line sources must count.
#[derive(Clone)]
pub struct LineDecoder {
    decoding: Decoding,
    received_events: Counter,
    received_bytes: Counter,
    parse_failed: Counter,
    too_long: Counter,
    worked_around: Arc<WorkedAround>,
}

/// The counters of lines decoding had to work around (the event is kept), each warned
/// about once per component so a busy source cannot flood the log.
struct WorkedAround {
    component: String,
    invalid_utf8: Counter,
    lossy_number: Counter,
    duplicate_key: Counter,
    warned: [AtomicBool; 3],
}

impl WorkedAround {
    fn count(&self, issues: &LineIssues) {
        // The common case, on the hot path: nothing to count.
        if !(issues.invalid_utf8 || issues.lossy_number || issues.duplicate_key) {
            return;
        }
        let found = [
            (
                issues.invalid_utf8,
                &self.invalid_utf8,
                ERROR_INVALID_UTF8,
                "bytes that are not UTF-8 were replaced with U+FFFD",
            ),
            (
                issues.lossy_number,
                &self.lossy_number,
                ERROR_LOSSY_NUMBER,
                "an integer outside the signed 64-bit range was kept as a string of its exact digits",
            ),
            (
                issues.duplicate_key,
                &self.duplicate_key,
                ERROR_DUPLICATE_KEY,
                "an object held a key more than once; the last value was kept",
            ),
        ];
        for ((seen, counter, error_type, what), warned) in found.into_iter().zip(&self.warned) {
            if !seen {
                continue;
            }
            counter.increment(1);
            if !warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    component = %self.component,
                    error_type,
                    "a line was decoded with a change: {what} (counted as component_errors_total{{error_type=\"{error_type}\"}}, warned once)"
                );
            }
        }
    }
}

/// The label of the stage where reading errors happen.
pub const STAGE_RECEIVING: &str = "receiving";
/// `error_type` of lines whose bytes were not all UTF-8 (replaced with U+FFFD).
pub const ERROR_INVALID_UTF8: &str = "invalid_utf8";
/// `error_type` of JSON lines with an integer beyond i64 (kept as a string of its digits).
pub const ERROR_LOSSY_NUMBER: &str = "lossy_number";
/// `error_type` of JSON lines with a key given twice in one object (the last one kept).
pub const ERROR_DUPLICATE_KEY: &str = "duplicate_key";

impl LineDecoder {
    /// A decoder counting into this component's metrics.
    pub fn new(decoding: Decoding, metrics: &ComponentMetrics) -> Self {
        let errors = |error_type: &str| {
            metrics.labels.counter(
                "component_errors_total",
                &[("error_type", error_type), ("stage", STAGE_RECEIVING)],
            )
        };
        LineDecoder {
            decoding,
            received_events: metrics.received_events.clone(),
            received_bytes: metrics.received_bytes.clone(),
            parse_failed: errors("parse_failed"),
            too_long: errors("line_too_long"),
            worked_around: Arc::new(WorkedAround {
                component: metrics.labels.id.clone(),
                invalid_utf8: errors(ERROR_INVALID_UTF8),
                lossy_number: errors(ERROR_LOSSY_NUMBER),
                duplicate_key: errors(ERROR_DUPLICATE_KEY),
                warned: Default::default(),
            }),
        }
    }

    /// Decodes one line into `batch`; blank lines are skipped. Returns the parse error, if
    /// any (the line is still emitted, whole, in `message`).
    pub fn push(&self, line: &[u8], batch: &mut Vec<Event>) -> Option<String> {
        self.received_bytes.increment(line.len() as u64);
        if line.is_empty() || line == b"\r" {
            return None;
        }
        let (event, issues) = self.decoding.decode(line);
        batch.push(event);
        self.received_events.increment(1);
        self.worked_around.count(&issues);
        if issues.parse_error.is_some() {
            self.parse_failed.increment(1);
        }
        issues.parse_error
    }

    /// Decodes every line of `raw` (blank ones are skipped).
    pub fn decode_all(&self, raw: &RawLines) -> Decoded {
        let mut decoded = Decoded {
            events: Batch::with_capacity(raw.len()),
            parse_errors: 0,
            first_error: None,
        };
        for line in raw.iter() {
            if let Some(error) = self.push(line, &mut decoded.events) {
                decoded.parse_errors += 1;
                decoded.first_error.get_or_insert(error);
            }
        }
        decoded
    }

    /// Counts one discarded overlong line.
    pub fn count_too_long(&self) {
        self.too_long.increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(buffer: &mut LineBuffer, bytes: &[u8]) {
        let spare = buffer.spare();
        spare[..bytes.len()].copy_from_slice(bytes);
        buffer.commit(bytes.len());
    }

    fn lines(buffer: &mut LineBuffer) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(piece) = buffer.next_piece() {
            match piece {
                Piece::Line { range, .. } => {
                    out.push(String::from_utf8_lossy(buffer.slice(range)).into_owned())
                }
                Piece::TooLong { consumed } => out.push(format!("<too long: {consumed}>")),
            }
        }
        out
    }

    #[test]
    fn splits_lines_and_keeps_the_unfinished_one() {
        let mut buffer = LineBuffer::new(100);
        feed(&mut buffer, b"a\nbb\ncc");
        assert_eq!(lines(&mut buffer), ["a", "bb"]);
        assert_eq!(buffer.unfinished_bytes(), 2);
        feed(&mut buffer, b"c\n");
        assert_eq!(lines(&mut buffer), ["ccc"]);
        assert_eq!(buffer.unfinished_bytes(), 0);
    }

    #[test]
    fn overlong_lines_are_dropped_even_across_reads() {
        let mut buffer = LineBuffer::new(4);
        feed(&mut buffer, b"123456789");
        assert_eq!(lines(&mut buffer), Vec::<String>::new());
        assert_eq!(buffer.unfinished_bytes(), 9);
        feed(&mut buffer, b"0\nok\n12345\n");
        assert_eq!(
            lines(&mut buffer),
            ["<too long: 11>", "ok", "<too long: 6>"]
        );
    }

    fn decoder(id: &str, decoding: Decoding) -> LineDecoder {
        // Installed before the counters exist, so they are recorded.
        siemflow_core::metrics::prometheus();
        let labels = siemflow_core::metrics::ComponentLabels {
            id: id.to_string(),
            kind: siemflow_core::metrics::ComponentKind::Source,
            type_name: "file".to_string(),
        };
        LineDecoder::new(decoding, &ComponentMetrics::new(labels))
    }

    fn decode(decoder: &LineDecoder, lines: &[&[u8]]) -> Decoded {
        let mut raw = RawLines::default();
        for line in lines {
            raw.push(line);
        }
        decoder.decode_all(&raw)
    }

    fn errors(id: &str, error_type: &str) -> u64 {
        crate::testing::counter_value(
            "component_errors_total",
            id,
            &format!("error_type=\"{error_type}\""),
        )
    }

    #[test]
    fn json_lines_decoded_with_a_change_are_counted_per_line() {
        let decoder = decoder("lines_json_changes", Decoding::Json);
        let decoded = decode(
            &decoder,
            &[
                br#"{"dup":1,"dup":2}"#,
                br#"{"a":{"x":1,"x":2,"x":3},"b":18446744073709551615}"#,
                br#"{"n":123456789012345678901234567890}"#,
                b"{\"bad\":\"\xff\"}",
                br#"{"fine":9223372036854775807}"#,
            ],
        );
        assert_eq!(decoded.events.len(), 5);
        assert_eq!(decoded.parse_errors, 1);
        assert_eq!(errors("lines_json_changes", ERROR_DUPLICATE_KEY), 2);
        assert_eq!(errors("lines_json_changes", ERROR_LOSSY_NUMBER), 2);
        assert_eq!(errors("lines_json_changes", ERROR_INVALID_UTF8), 1);
        assert_eq!(errors("lines_json_changes", "parse_failed"), 1);
        let big = decoded.events[2].value.as_object().expect("object");
        assert_eq!(
            big.get("n"),
            Some(&siemflow_core::Value::from(
                "123456789012345678901234567890"
            ))
        );
    }

    #[test]
    fn text_lines_with_invalid_utf8_are_counted() {
        let decoder = decoder("lines_text_utf8", Decoding::Text);
        let decoded = decode(
            &decoder,
            &[b"ok", b"caf\xe9", b"\xff\xfe", b"{\"dup\":1,\"dup\":2}"],
        );
        assert_eq!(decoded.events.len(), 4);
        assert_eq!(errors("lines_text_utf8", ERROR_INVALID_UTF8), 2);
        assert_eq!(
            errors("lines_text_utf8", ERROR_DUPLICATE_KEY),
            0,
            "text is not parsed"
        );
    }

    #[test]
    fn reads_start_small_and_grow_while_they_come_back_full() {
        let mut buffer = LineBuffer::new(4 * CHUNK_BYTES);
        assert_eq!(buffer.spare().len(), FIRST_CHUNK_BYTES);
        // A short read (a small file) does not grow the buffer.
        feed(&mut buffer, b"a\n");
        assert_eq!(lines(&mut buffer), ["a"]);
        assert_eq!(buffer.spare().len(), FIRST_CHUNK_BYTES);
        // Full reads double what is offered, up to a full chunk, and lines split across
        // them come out whole.
        let mut offered = Vec::new();
        let mut long_line = 0;
        for _ in 0..8 {
            let spare = buffer.spare();
            offered.push(spare.len());
            spare.fill(b'x');
            let filled = spare.len();
            buffer.commit(filled);
            long_line += filled;
            assert_eq!(buffer.next_piece(), None);
        }
        assert_eq!(offered.iter().max(), Some(&CHUNK_BYTES));
        assert!(offered.windows(2).all(|w| w[0] <= w[1]), "{offered:?}");
        assert!(offered.iter().all(|&n| n >= FIRST_CHUNK_BYTES));
        feed(&mut buffer, b"\n");
        let Some(Piece::Line { range, consumed }) = buffer.next_piece() else {
            panic!("expected the long line");
        };
        assert_eq!((range.len(), consumed), (long_line, long_line as u64 + 1));
        // An idle buffer lets its memory go and starts small again.
        buffer.release_memory();
        assert_eq!(buffer.spare().len(), FIRST_CHUNK_BYTES);
    }

    #[test]
    fn finish_returns_the_last_line_without_newline() {
        let mut buffer = LineBuffer::new(10);
        feed(&mut buffer, b"x\ntail");
        assert_eq!(lines(&mut buffer), ["x"]);
        let Some(Piece::Line { range, consumed }) = buffer.finish() else {
            panic!("expected the tail");
        };
        assert_eq!((buffer.slice(range), consumed), (&b"tail"[..], 4));
        assert_eq!(buffer.finish(), None);
    }
}
