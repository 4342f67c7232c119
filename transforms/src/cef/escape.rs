//! CEF escaping (siem-sinks.md §6.2), with truncation to a maximum number of characters.
//!
//! CEF defines escapes for `\`, `|` (header), `=` (extension), CR and LF only. Any other
//! control character but TAB (NUL, BEL, ESC, NEL, DEL…) and U+2028/U+2029 would end a
//! syslog line, cut a C string or drive a terminal (`siemflow_core::escape`'s rule; TAB
//! separates nothing in CEF and is common in real text), and CEF has no form for them:
//! they are written as the visible text `\uHHHH` — in CEF's own escaping `\\uHHHH`, so a CEF
//! parser reads back a backslash, `u` and four hex digits (docs/transforms/cef.md).

use siemflow_core::escape;

/// Appends a header field: `\` and `|` escaped, CR/LF replaced by a space (headers
/// cannot hold line breaks), other control characters as `\\uHHHH`. Returns true when
/// the value was cut to `max` characters.
pub fn header(out: &mut String, value: &str, max: usize) -> bool {
    escape::push_replaced(
        out,
        value,
        max,
        b"\\|",
        |c| matches!(c, '\\' | '|') || escape::is_line_unsafe(c),
        |out, c| match c {
            '\\' => out.push_str("\\\\"),
            '|' => out.push_str("\\|"),
            '\r' | '\n' => out.push(' '),
            c => push_code(out, c),
        },
    )
}

/// Appends an extension value: `\`, `=`, LF and CR escaped, other control characters as
/// `\\uHHHH`; the pipe stays bare (legal there, and Beats rejects `\|` in extensions).
/// Returns true when cut to `max` characters.
pub fn value(out: &mut String, value: &str, max: usize) -> bool {
    escape::push_replaced(
        out,
        value,
        max,
        b"\\=",
        |c| matches!(c, '\\' | '=') || escape::is_line_unsafe(c),
        |out, c| match c {
            '\\' => out.push_str("\\\\"),
            '=' => out.push_str("\\="),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => push_code(out, c),
        },
    )
}

/// Writes `c` as the text `\uHHHH` (core's form), its backslash escaped as CEF requires.
fn push_code(out: &mut String, c: char) {
    use std::fmt::Write;
    // Writing into a String cannot fail.
    let _ = write!(out, "\\{}", escape::UnicodeEscape(c));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_become_visible_escaped_text() {
        let mut out = String::new();
        value(
            &mut out,
            "a\u{7}b\u{1b}[31mc\u{0}d\u{85}e\u{2028}f\tg",
            usize::MAX,
        );
        assert_eq!(
            out,
            "a\\\\u0007b\\\\u001b[31mc\\\\u0000d\\\\u0085e\\\\u2028f\tg"
        );
        let mut out = String::new();
        header(&mut out, "x\u{1b}y\nz", usize::MAX);
        assert_eq!(out, "x\\\\u001by z");
    }
}
