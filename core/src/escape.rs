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
/// looks at eight bytes per step: a word with no byte below 0x20, none at 0x7f and none
/// at or above 0x80 is skipped whole (a TAB sends its word to the byte-wise check).
fn first_suspect(text: &[u8]) -> Option<usize> {
    first_flagged(
        text,
        |w| w | below_space(w) | zero_byte(w ^ (ONES * 0x7f)),
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

/// Where the first byte that is not printable ASCII, or is one of `ascii`, is; eight bytes
/// per step as in [`first_suspect`].
fn next_candidate(text: &[u8], ascii: &[u8]) -> Option<usize> {
    first_flagged(
        text,
        |w| {
            let mut flags = w | below_space(w) | zero_byte(w ^ (ONES * 0x7f));
            for &b in ascii {
                flags |= zero_byte(w ^ (ONES * u64::from(b)));
            }
            flags
        },
        |b| !(0x20..0x7f).contains(b) || ascii.contains(b),
    )
}

/// The one eight-bytes-per-step scan of the escapers: where the first byte `wanted` picks
/// is. `flags` marks (in a byte's high bit) every byte of a word that may be wanted — the
/// classic word tests may flag a clean byte next to a flagged one, never miss one — so a
/// word with no flag is skipped whole and a flagged one is checked byte by byte.
pub(crate) fn first_flagged(
    text: &[u8],
    flags: impl Fn(u64) -> u64,
    wanted: impl Fn(&u8) -> bool,
) -> Option<usize> {
    let mut words = text.chunks_exact(8);
    let mut at = 0;
    for word in &mut words {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        if flags(u64::from_ne_bytes(bytes)) & HIGH != 0
            && let Some(i) = word.iter().position(&wanted)
        {
            return Some(at + i);
        }
        at += 8;
    }
    words.remainder().iter().position(wanted).map(|i| at + i)
}

/// The classic "has a byte less than 0x20" test, for bytes below 0x80 (see [`zero_byte`]).
pub(crate) fn below_space(w: u64) -> u64 {
    w.wrapping_sub(ONES * 0x20) & !w
}

/// Every byte 0x01 in a word.
pub(crate) const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
/// Every byte's high bit in a word.
const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);

/// The classic "has a zero byte" test: a high bit set (after masking with [`HIGH`]) for
/// every zero byte; it may also flag a byte next to a zero one, never misses one.
pub(crate) fn zero_byte(w: u64) -> u64 {
    w.wrapping_sub(ONES) & !w
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
    }
}
