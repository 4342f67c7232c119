//! The one rule for text that ends up in a line of output (text logs, console and file
//! text, syslog payloads): characters that could end the line early, forge another one or
//! drive a terminal are written as visible escapes instead.
//!
//! Unsafe: every control character (C0 `U+0000`–`U+001F` except TAB, DEL `U+007F`, C1
//! `U+0080`–`U+009F`, which holds NEL `U+0085` and the 8-bit CSI/OSC that some terminals
//! obey), the Unicode line and paragraph separators `U+2028` and `U+2029`, and bytes that
//! are not UTF-8. TAB stays: it separates fields (LEEF's default delimiter, TSV) and can
//! neither break a line nor command a terminal.
//!
//! Escapes: `\0`, `\n`, `\r`; `\uHHHH` for the other characters (JSON's own escape, so
//! JSON text stays valid JSON with the same meaning when escaped again, as the syslog
//! sink does to a JSON payload); `\xHH` for a byte that is not UTF-8. Backslashes are
//! left alone, so text already escaped by a format (CEF's `\=`, `\\`) passes unchanged;
//! the escaping is for safety, not for a reversible round trip.

use std::borrow::Cow;
use std::io::Write as _;

/// True for a character that must not appear raw in a line of output (see the module doc).
pub fn is_line_unsafe(c: char) -> bool {
    (c.is_control() && c != '\t') || c == '\u{2028}' || c == '\u{2029}'
}

/// `c` written as JSON's escape `\uHHHH` (lower-case hex, four digits for every unsafe
/// character): the one form of an unsafe character without a short escape, also for the
/// formats that apply this rule with escapes of their own (CEF, LEEF).
#[derive(Debug, Clone, Copy)]
pub struct UnicodeEscape(pub char);

impl std::fmt::Display for UnicodeEscape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "\\u{:04x}", u32::from(self.0))
    }
}

/// Appends `text` to `out` with unsafe characters escaped; true if any was escaped.
pub fn push_escaped(out: &mut Vec<u8>, text: &[u8]) -> bool {
    let Some(first) = first_unsafe(text) else {
        out.extend_from_slice(text);
        return false;
    };
    out.extend_from_slice(&text[..first]);
    let mut escaped = false;
    for chunk in text[first..].utf8_chunks() {
        escaped |= push_escaped_str(out, chunk.valid());
        for byte in chunk.invalid() {
            escaped = true;
            // Writing into a Vec cannot fail.
            let _ = write!(out, "\\x{byte:02x}");
        }
    }
    escaped
}

/// Escapes unsafe characters in `buf[start..]`, in place; true if any was escaped.
pub fn escape_tail(buf: &mut Vec<u8>, start: usize) -> bool {
    let Some(first) = buf.get(start..).and_then(first_unsafe) else {
        return false;
    };
    let tail = buf.split_off(start + first);
    push_escaped(buf, &tail)
}

/// `text` with unsafe characters escaped, borrowed when there is none.
pub fn escape_str(text: &str) -> Cow<'_, str> {
    if first_unsafe(text.as_bytes()).is_none() {
        return Cow::Borrowed(text);
    }
    let mut out = Vec::with_capacity(text.len() + 8);
    push_escaped_str(&mut out, text);
    // Valid UTF-8 in, valid UTF-8 and ASCII escapes out: the lossy path never runs.
    Cow::Owned(
        String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
    )
}

/// Where the first unsafe character (or byte that is not UTF-8) starts, if any. Checks
/// without copying, so safe text costs one scan and no allocation.
fn first_unsafe(text: &[u8]) -> Option<usize> {
    let mut from = 0;
    loop {
        let at = from + first_suspect(&text[from..])?;
        let width = match text[at] {
            0xc2..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf4 => 4,
            // An ASCII control or DEL, or a byte no UTF-8 character starts with.
            _ => return Some(at),
        };
        let c = text
            .get(at..at + width)
            .and_then(|bytes| std::str::from_utf8(bytes).ok())
            .and_then(|s| s.chars().next());
        match c {
            Some(c) if !is_line_unsafe(c) => from = at + width,
            _ => return Some(at),
        }
    }
}

/// Where the first byte that may start an unsafe character is: anything but printable
/// ASCII and TAB. Nearly every line is plain ASCII, and this scan is all it costs, so it
/// looks at sixteen bytes per step (a TAB sends its block to the byte-wise check).
fn first_suspect(text: &[u8]) -> Option<usize> {
    first_flagged(
        text,
        Stops {
            controls: true,
            non_ascii: true,
            ascii: &[],
        },
        |b| !(*b == b'\t' || (0x20..0x7f).contains(b)),
    )
}

/// Appends `text`, cut to `max` characters, copying the runs between the characters
/// `special` picks whole and writing each of those with `replace`; true when cut. The
/// one loop of the line formats' escapers (CEF, LEEF): most text has nothing to replace,
/// and then this is one scan and one copy. `special` is asked only about characters that
/// are not printable ASCII and about the printable ASCII bytes listed in `ascii`, which
/// must hold every one it picks (the scan skips eight bytes at a time past the others).
pub fn push_replaced(
    out: &mut String,
    text: &str,
    max: usize,
    ascii: &[u8],
    special: impl Fn(char) -> bool,
    mut replace: impl FnMut(&mut String, char),
) -> bool {
    // A character takes at least one byte, so a text no longer than `max` bytes is whole.
    let (text, cut) = match text.len() > max {
        true => match text.char_indices().nth(max) {
            Some((end, _)) => (&text[..end], true),
            None => (text, false),
        },
        false => (text, false),
    };
    let bytes = text.as_bytes();
    let (mut run, mut at) = (0, 0);
    while let Some(found) = next_candidate(&bytes[at..], ascii) {
        at += found;
        // `at` is at a character boundary: candidates start characters, and the scan
        // resumes after whole ones.
        let c = text[at..]
            .chars()
            .next()
            .unwrap_or(char::REPLACEMENT_CHARACTER);
        if special(c) {
            out.push_str(&text[run..at]);
            replace(out, c);
            run = at + c.len_utf8();
        }
        at += c.len_utf8();
    }
    out.push_str(&text[run..]);
    cut
}

/// Where the first byte that is not printable ASCII, or is one of `ascii`, is; sixteen
/// bytes per step as in [`first_suspect`].
fn next_candidate(text: &[u8], ascii: &[u8]) -> Option<usize> {
    first_flagged(
        text,
        Stops {
            controls: true,
            non_ascii: true,
            ascii,
        },
        |b| !(0x20..0x7f).contains(b) || ascii.contains(b),
    )
}

/// The bytes a scan of [`first_flagged`] stops at: every byte its caller may want, and
/// maybe more.
#[derive(Clone, Copy)]
pub(crate) struct Stops<'a> {
    /// The controls below 0x20.
    pub controls: bool,
    /// DEL (0x7f) and every byte from 0x80 (all of UTF-8's multi-byte characters).
    pub non_ascii: bool,
    /// These bytes.
    pub ascii: &'a [u8],
}

/// Bytes per step of the block scans.
pub(crate) const BLOCK: usize = 16;

/// The one scan of the escapers: where the first byte `wanted` picks is. Text is looked
/// at sixteen bytes at a time: a block with no byte among `stops` (a superset of what
/// `wanted` picks) is skipped whole, and only its stops are put to `wanted`.
#[inline(always)]
pub(crate) fn first_flagged(
    text: &[u8],
    stops: Stops<'_>,
    wanted: impl Fn(&u8) -> bool,
) -> Option<usize> {
    let mut found = None;
    each_stop(text, stops, |at, byte| {
        if wanted(&byte) {
            found = Some(at);
        }
        found.is_none()
    });
    found
}

/// Calls `visit` with the index and value of every byte of `text` among `stops`, in
/// order, while it returns true; blocks of sixteen bytes without a stop cost one test.
/// Inlined, so that a caller's constant `stops` shape the block test.
#[inline(always)]
pub(crate) fn each_stop(text: &[u8], stops: Stops<'_>, mut visit: impl FnMut(usize, u8) -> bool) {
    let (blocks, rest) = text.as_chunks::<BLOCK>();
    let mut at = 0;
    for block in blocks {
        if !visit_block(block, stops_in(block, stops), at, &mut visit) {
            return;
        }
        at += BLOCK;
    }
    if rest.is_empty() {
        return;
    }
    match text.last_chunk::<BLOCK>() {
        // The last sixteen bytes, overlapping the block before: only those past it count.
        Some(last) => {
            let before = BLOCK - rest.len();
            let mask = stops_in(last, stops) >> before << before;
            visit_block(last, mask, text.len() - BLOCK, &mut visit);
        }
        // Shorter than a block (a field name, a short value): byte by byte.
        None => {
            for (i, &byte) in rest.iter().enumerate() {
                if is_stop(byte, stops) && !visit(i, byte) {
                    return;
                }
            }
        }
    }
}

/// Whether `byte` is among `stops`.
#[inline(always)]
fn is_stop(byte: u8, stops: Stops<'_>) -> bool {
    (stops.controls && byte < 0x20)
        || (stops.non_ascii && byte >= 0x7f)
        || stops.ascii.contains(&byte)
}

/// Visits the bytes of `block` that `mask` marks (bit i: byte i); false once `visit` is.
#[inline(always)]
fn visit_block(
    block: &[u8; BLOCK],
    mut mask: u32,
    at: usize,
    visit: &mut impl FnMut(usize, u8) -> bool,
) -> bool {
    while mask != 0 {
        let i = mask.trailing_zeros() as usize;
        if !visit(at + i, block[i]) {
            return false;
        }
        mask &= mask - 1;
    }
    true
}

impl Stops<'_> {
    /// Which bytes of `block` are among the stops (bit i: byte i).
    #[inline(always)]
    pub(crate) fn mask(&self, block: &[u8; BLOCK]) -> u32 {
        stops_in(block, *self)
    }
}

/// Which bytes of `block` are among the stops (bit i: byte i), with SSE2, which every
/// x86-64 processor has.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn stops_in(block: &[u8; BLOCK], stops: Stops<'_>) -> u32 {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_min_epu8, _mm_movemask_epi8,
        _mm_or_si128, _mm_set1_epi8, _mm_setzero_si128,
    };
    // SAFETY: SSE2 is part of x86-64 itself (the target's baseline), so these
    // instructions exist on every processor this code runs on; the one load reads the
    // 16 bytes of a 16-byte array, unaligned loads allowed.
    unsafe {
        let bytes = _mm_loadu_si128(block.as_ptr().cast::<__m128i>());
        let mut found = _mm_setzero_si128();
        if stops.controls {
            // Unsigned: min(b, 0x1f) == b exactly when b <= 0x1f.
            let low = _mm_min_epu8(bytes, _mm_set1_epi8(0x1f));
            found = _mm_or_si128(found, _mm_cmpeq_epi8(low, bytes));
        }
        if stops.non_ascii {
            // Unsigned: max(b, 0x7f) == b exactly when b >= 0x7f.
            let high = _mm_max_epu8(bytes, _mm_set1_epi8(0x7f));
            found = _mm_or_si128(found, _mm_cmpeq_epi8(high, bytes));
        }
        for &b in stops.ascii {
            found = _mm_or_si128(found, _mm_cmpeq_epi8(bytes, _mm_set1_epi8(b as i8)));
        }
        _mm_movemask_epi8(found) as u32
    }
}

/// Which bytes of `block` are among the stops (bit i: byte i), one at a time.
#[cfg(not(target_arch = "x86_64"))]
fn stops_in(block: &[u8; BLOCK], stops: Stops<'_>) -> u32 {
    stops_in_bytewise(block, stops)
}

/// [`stops_in`] byte by byte: elsewhere than x86-64, and the reference of its tests.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn stops_in_bytewise(block: &[u8; BLOCK], stops: Stops<'_>) -> u32 {
    let mut mask = 0;
    for (i, &b) in block.iter().enumerate() {
        mask |= u32::from(is_stop(b, stops)) << i;
    }
    mask
}

/// Appends valid UTF-8 `text`, copying the runs between unsafe characters whole.
fn push_escaped_str(out: &mut Vec<u8>, text: &str) -> bool {
    let mut run = 0;
    let mut escaped = false;
    for (at, c) in text.char_indices() {
        if !is_line_unsafe(c) {
            continue;
        }
        escaped = true;
        out.extend_from_slice(&text.as_bytes()[run..at]);
        run = at + c.len_utf8();
        // Writing into a Vec cannot fail.
        let _ = match c {
            '\0' => write!(out, "\\0"),
            '\n' => write!(out, "\\n"),
            '\r' => write!(out, "\\r"),
            c => write!(out, "{}", UnicodeEscape(c)),
        };
    }
    out.extend_from_slice(&text.as_bytes()[run..]);
    escaped
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn escaped(text: &[u8]) -> String {
        let mut out = Vec::new();
        push_escaped(&mut out, text);
        String::from_utf8(out).expect("escaped output is UTF-8")
    }

    #[test]
    fn plain_text_and_tabs_pass_unchanged() {
        let mut out = Vec::new();
        assert!(!push_escaped(&mut out, b"CEF:0|a\\|b|k=v\tx \\= y"));
        assert_eq!(out, b"CEF:0|a\\|b|k=v\tx \\= y");
        assert!(matches!(escape_str("é ü 漢字 \t"), Cow::Borrowed(_)));
    }

    #[test]
    fn line_breaks_and_terminal_controls_become_visible_escapes() {
        assert_eq!(
            escaped(b"a\nb\rc\0d\x1b[31me\x07f\x7fg\x0b"),
            "a\\nb\\rc\\0d\\u001b[31me\\u0007f\\u007fg\\u000b"
        );
        assert_eq!(
            escaped("nel\u{85}ls\u{2028}ps\u{2029}csi\u{9b}".as_bytes()),
            "nel\\u0085ls\\u2028ps\\u2029csi\\u009b"
        );
    }

    #[test]
    fn escaped_json_is_still_json_with_the_same_value() {
        let value = serde_json::json!({"k\u{7f}": "a\u{7f}b\u{85}c\u{2028}d\u{9b}\u{1b}\n"});
        let json = serde_json::to_vec(&value).expect("json");
        let mut out = Vec::new();
        assert!(
            push_escaped(&mut out, &json),
            "DEL, C1 and U+2028 are raw in JSON"
        );
        let again: serde_json::Value = serde_json::from_slice(&out).expect("still JSON");
        assert_eq!(again, value);
    }

    #[test]
    fn bytes_that_are_not_utf8_become_hex_escapes() {
        assert_eq!(escaped(b"ok\xffthen\xc2"), "ok\\xffthen\\xc2");
        assert_eq!(escaped("é\u{85}".as_bytes()), "é\\u0085");
    }

    #[test]
    fn escape_tail_leaves_the_head_alone() {
        let mut buf = b"<13>1 head\n".to_vec();
        buf.extend_from_slice(b"payload\nforged");
        assert!(escape_tail(&mut buf, 11));
        assert_eq!(buf, b"<13>1 head\npayload\\nforged");
        assert!(!escape_tail(&mut buf, 11));
        assert!(
            !escape_tail(&mut buf, 1000),
            "a start past the end is no tail"
        );
        let mut accents = "é ü 漢字 🦀".as_bytes().to_vec();
        assert!(!escape_tail(&mut accents, 0));
        assert_eq!(accents, "é ü 漢字 🦀".as_bytes());
    }

    #[test]
    fn unicode_escape_is_four_lower_case_hex_digits() {
        assert_eq!(UnicodeEscape('\u{1b}').to_string(), "\\u001b");
        assert_eq!(UnicodeEscape('\u{2028}').to_string(), "\\u2028");
        assert_eq!(UnicodeEscape('\u{9f}').to_string(), "\\u009f");
    }

    #[test]
    fn escape_str_escapes() {
        assert_eq!(escape_str("x\n\u{1b}[2J"), "x\\n\\u001b[2J");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn output_is_utf8_without_unsafe_characters(text in proptest::collection::vec(any::<u8>(), 0..200)) {
            let out = escaped(&text);
            prop_assert!(!out.chars().any(is_line_unsafe), "{out:?}");
            prop_assert_eq!(push_escaped(&mut Vec::new(), &text), out.as_bytes() != text.as_slice());
            let mut tail = b"head".to_vec();
            tail.extend_from_slice(&text);
            escape_tail(&mut tail, 4);
            prop_assert_eq!(&tail[4..], out.as_bytes());
        }

        #[test]
        fn safe_text_is_unchanged(text in "[^\\p{Cc}\u{2028}\u{2029}]{0,100}") {
            prop_assert_eq!(escaped(text.as_bytes()), text.clone());
            prop_assert!(matches!(escape_str(&text), Cow::Borrowed(_)));
        }

        #[test]
        fn escape_str_agrees_with_push_escaped(text in any::<String>()) {
            prop_assert_eq!(escape_str(&text).into_owned(), escaped(text.as_bytes()));
        }

        /// The block scan finds what a byte-by-byte search finds, wherever it is (in a
        /// whole block or the padded tail), for every caller's stops.
        #[test]
        fn the_block_scan_finds_the_first_wanted_byte(
            text in proptest::collection::vec(
                prop_oneof![4 => 0x20u8..0x7f, 1 => any::<u8>(), 1 => Just(b'"')],
                0..80,
            ),
            controls in any::<bool>(),
            non_ascii in any::<bool>(),
            ascii in proptest::collection::vec(0x20u8..0x7f, 0..11),
        ) {
            let stops = Stops { controls, non_ascii, ascii: &ascii };
            let stop = |b: &u8| (controls && *b < 0x20) || (non_ascii && *b >= 0x7f) || ascii.contains(b);
            // A caller wants a subset of its stops: here every other one by value.
            let wanted = |b: &u8| stop(b) && b.is_multiple_of(2);
            prop_assert_eq!(first_flagged(&text, stops, wanted), text.iter().position(wanted));
            let mut visited = Vec::new();
            each_stop(&text, stops, |at, byte| {
                visited.push((at, byte));
                true
            });
            let every: Vec<(usize, u8)> =
                text.iter().copied().enumerate().filter(|(_, b)| stop(b)).collect();
            prop_assert_eq!(visited, every);
            for block in text.as_chunks::<BLOCK>().0 {
                prop_assert_eq!(stops_in(block, stops), stops_in_bytewise(block, stops));
            }
        }
    }
}
