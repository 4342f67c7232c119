//! Cutting a TCP/TLS stream into syslog messages (RFC 6587): octet counting
//! (`LEN SP MSG`) or newline framing (`MSG LF`), on top of the line sources' read buffer.
//!
//! `auto` decides per message, as rsyslog's imtcp does: a message that starts with
//! digits and a space is octet-counted, anything else ends at LF. A line that merely
//! starts with digits (the Defender for Cloud Apps agent's `2017-11-22T17:50:04.000Z
//! CEF:0|…`) is newline-framed, since its digits are not followed by a space.

use std::ops::Range;

use super::config::Framing;
use crate::lines::{LineBuffer, Piece};

/// Most digits an octet count may have (RFC 6587 puts no bound; 10 digits exceed any
/// message this source accepts).
const MAX_COUNT_DIGITS: usize = 10;

/// What the framer found next.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A whole message at this range of the buffer.
    Message(Range<usize>),
    /// A message at this range that is not what the framing requires: with `framing =
    /// "octet_counting"`, a line without an octet count (emitted, with a parse error).
    Unframed(Range<usize>),
    /// The connection ended inside an octet-counted message: what arrived of it.
    Truncated(Range<usize>),
    /// A message longer than the limit, skipped (its bytes, as far as known).
    TooLong(u64),
}

/// How the next message starts.
enum Prefix {
    /// Only digits so far: wait for more bytes.
    Undecided,
    /// `LEN SP`: `digits` bytes of count, then the space, then `len` bytes.
    Counted { digits: usize, len: u64 },
    /// Not an octet count.
    NotCounted,
}

fn prefix(pending: &[u8]) -> Prefix {
    let digits = pending.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > MAX_COUNT_DIGITS {
        return Prefix::NotCounted;
    }
    match pending.get(digits) {
        None => Prefix::Undecided,
        Some(b' ') => {
            // At most 10 ASCII digits: always a valid u64.
            let len = pending[..digits]
                .iter()
                .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
            Prefix::Counted { digits, len }
        }
        Some(_) => Prefix::NotCounted,
    }
}

/// Splits messages out of a [`LineBuffer`] by the configured framing.
pub struct Framer {
    framing: Framing,
    max_message: u64,
    /// Bytes of an overlong octet-counted message still to skip.
    skipping: u64,
}

impl Framer {
    /// A framer for messages of at most `max_message` bytes.
    pub fn new(framing: Framing, max_message: u64) -> Self {
        Framer {
            framing,
            max_message,
            skipping: 0,
        }
    }

    /// The next message, or `None` until more bytes arrive.
    pub fn next(&mut self, buffer: &mut LineBuffer) -> Option<Frame> {
        if self.skipping > 0 {
            self.skip(buffer);
            if self.skipping > 0 {
                return None;
            }
        }
        let mut unframed = false;
        if self.framing != Framing::Newline && !buffer.inside_line() {
            let pending = buffer.pending();
            if pending.is_empty() {
                return None;
            }
            match prefix(pending) {
                Prefix::Undecided => return None,
                Prefix::Counted { digits, len } => {
                    if len > self.max_message {
                        buffer.take(digits + 1);
                        self.skipping = len;
                        // Skip what is already here; the rest as it arrives.
                        self.skip(buffer);
                        return Some(Frame::TooLong(len));
                    }
                    // len <= max_message, which fits in memory, so it fits usize.
                    let len = len as usize;
                    if pending.len() < digits + 1 + len {
                        return None;
                    }
                    buffer.take(digits + 1);
                    return Some(Frame::Message(buffer.take(len)));
                }
                Prefix::NotCounted => unframed = self.framing == Framing::OctetCounting,
            }
        }
        match buffer.next_piece()? {
            Piece::Line { range, .. } if unframed => Some(Frame::Unframed(range)),
            Piece::Line { range, .. } => Some(Frame::Message(range)),
            Piece::TooLong { consumed } => Some(Frame::TooLong(consumed)),
        }
    }

    /// Drops what is buffered of an overlong octet-counted message.
    fn skip(&mut self, buffer: &mut LineBuffer) {
        let now = usize::try_from(self.skipping)
            .unwrap_or(usize::MAX)
            .min(buffer.pending().len());
        buffer.take(now);
        self.skipping -= now as u64;
    }

    /// At the end of the stream: what is left of a message that never ended.
    pub fn finish(&mut self, buffer: &mut LineBuffer) -> Option<Frame> {
        if self.skipping > 0 {
            self.skipping = 0;
            let left = buffer.pending().len();
            buffer.take(left);
            return None;
        }
        if self.framing != Framing::Newline && !buffer.inside_line() {
            let pending = buffer.pending();
            if let Prefix::Counted { digits, .. } = prefix(pending) {
                let whole = pending.len();
                buffer.take(digits + 1);
                return Some(Frame::Truncated(buffer.take(whole - digits - 1)));
            }
        }
        match buffer.finish()? {
            Piece::Line { range, .. } => Some(Frame::Message(range)),
            Piece::TooLong { consumed } => Some(Frame::TooLong(consumed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Feeds `chunks` one read at a time and collects what the framer hands out.
    fn frames(framing: Framing, max: u64, chunks: &[&[u8]]) -> Vec<String> {
        let mut buffer = LineBuffer::new(max as usize);
        let mut framer = Framer::new(framing, max);
        let mut out = Vec::new();
        let show = |frame: Frame, buffer: &LineBuffer| match frame {
            Frame::Message(r) => String::from_utf8_lossy(buffer.slice(r)).into_owned(),
            Frame::Unframed(r) => format!("unframed:{}", String::from_utf8_lossy(buffer.slice(r))),
            Frame::Truncated(r) => {
                format!("truncated:{}", String::from_utf8_lossy(buffer.slice(r)))
            }
            Frame::TooLong(n) => format!("too long:{n}"),
        };
        for chunk in chunks {
            let spare = buffer.spare();
            spare[..chunk.len()].copy_from_slice(chunk);
            buffer.commit(chunk.len());
            while let Some(frame) = framer.next(&mut buffer) {
                out.push(show(frame, &buffer));
            }
        }
        while let Some(frame) = framer.finish(&mut buffer) {
            out.push(show(frame, &buffer));
        }
        out
    }

    #[test]
    fn auto_reads_octet_counts_and_lines_alike() {
        let got = frames(
            Framing::Auto,
            100,
            &[b"5 hello12 with\nnewline<14>a line\n2017-11-22T17:50:04Z CEF:0|x\n"],
        );
        assert_eq!(
            got,
            [
                "hello",
                "with\nnewline",
                "<14>a line",
                "2017-11-22T17:50:04Z CEF:0|x"
            ]
        );
    }

    #[test]
    fn a_count_split_across_reads_waits_for_its_message() {
        let got = frames(
            Framing::Auto,
            100,
            &[b"1", b"2 abc", b"defghi", b"jkl3 xyz"],
        );
        assert_eq!(got, ["abcdefghijkl", "xyz"]);
    }

    #[test]
    fn overlong_messages_are_skipped_in_both_framings() {
        let got = frames(
            Framing::Auto,
            4,
            &[b"10 0123", b"456789", b"2 ok123456789\nok\n"],
        );
        assert_eq!(got, ["too long:10", "ok", "too long:10", "ok"]);
    }

    #[test]
    fn strict_octet_counting_flags_lines_and_truncation() {
        let got = frames(Framing::OctetCounting, 100, &[b"<14>no count\n3 abc9 cut"]);
        assert_eq!(got, ["unframed:<14>no count", "abc", "truncated:cut"]);
        let got = frames(Framing::Newline, 100, &[b"3 abc\nlast"]);
        assert_eq!(got, ["3 abc", "last"]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Octet-counted messages with any bytes (newlines, NULs) come out exactly, however the stream is cut.
        #[test]
        fn octet_counted_messages_survive_any_split(
            messages in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..40), 1..20),
            cut in 1usize..50,
        ) {
            let mut stream = Vec::new();
            for m in &messages {
                stream.extend_from_slice(format!("{} ", m.len()).as_bytes());
                stream.extend_from_slice(m);
            }
            let chunks: Vec<&[u8]> = stream.chunks(cut).collect();
            let mut buffer = LineBuffer::new(64);
            let mut framer = Framer::new(Framing::OctetCounting, 64);
            let mut out = Vec::new();
            for chunk in chunks {
                let spare = buffer.spare();
                spare[..chunk.len()].copy_from_slice(chunk);
                buffer.commit(chunk.len());
                while let Some(frame) = framer.next(&mut buffer) {
                    match frame {
                        Frame::Message(r) => out.push(buffer.slice(r).to_vec()),
                        other => prop_assert!(false, "{other:?}"),
                    }
                }
            }
            prop_assert_eq!(framer.finish(&mut buffer), None);
            prop_assert_eq!(out, messages);
        }

        /// Any bytes in any framing: no panic, every byte accounted for, memory bounded.
        #[test]
        fn garbage_never_panics_and_is_accounted_for(
            stream in proptest::collection::vec(
                prop_oneof![Just(b'\n'), Just(0u8), Just(b' '), b'0'..=b'9', any::<u8>()], 0..600),
            cut in 1usize..80,
            framing in prop_oneof![Just(Framing::Auto), Just(Framing::OctetCounting), Just(Framing::Newline)],
        ) {
            let max = 32u64;
            let mut buffer = LineBuffer::new(max as usize);
            let mut framer = Framer::new(framing, max);
            let mut messages = 0usize;
            let mut check = |frame: Frame, buffer: &LineBuffer| -> Result<(), TestCaseError> {
                match frame {
                    Frame::Message(r) | Frame::Unframed(r) | Frame::Truncated(r) => {
                        prop_assert!(buffer.slice(r).len() as u64 <= max);
                        messages += 1;
                    }
                    Frame::TooLong(n) => prop_assert!(n > 0),
                }
                Ok(())
            };
            for chunk in stream.chunks(cut) {
                let spare = buffer.spare();
                prop_assert!(spare.len() >= chunk.len());
                spare[..chunk.len()].copy_from_slice(chunk);
                buffer.commit(chunk.len());
                while let Some(frame) = framer.next(&mut buffer) {
                    check(frame, &buffer)?;
                }
                // Never more than one message's worth plus a read is held.
                prop_assert!(buffer.pending().len() as u64 <= max + 11 + cut as u64);
            }
            while let Some(frame) = framer.finish(&mut buffer) {
                check(frame, &buffer)?;
            }
            prop_assert!(buffer.pending().is_empty());
            prop_assert!(messages <= stream.len() + 1);
        }
    }
}
