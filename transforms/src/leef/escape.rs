//! LEEF replacements. IBM defines no escape syntax and QRadar undoes none, so a value is
//! written as it is except for the characters that would break the line's structure,
//! which are replaced by visible text (docs/transforms/leef.md, "Escaping"):
//!
//! - CR, LF, TAB → `\r`, `\n`, `\t`;
//! - any other control character (U+0000–U+001F, U+007F–U+009F: NUL, BEL, ESC, NEL…),
//!   U+2028 and U+2029 (line and paragraph separators), the attribute delimiter in a
//!   value and the pipe in a header field → `\uHHHH` (four lower-case hex digits);
//! - a header field's final backslash → `\u005c` (see `header`).
//!
//! A backslash anywhere else is written as itself (`NT AUTHORITY\SYSTEM`). The forms are
//! JSON's own string escapes, so the unmapped-fields JSON stays valid JSON; they use only
//! a backslash, letters and digits, none of which may be a delimiter, so a replacement
//! never holds the delimiter it replaces.

use siemflow_core::escape;

/// Appends an attribute value; true when it was cut to `max` characters.
pub fn value(out: &mut String, value: &str, delimiter: char, max: usize) -> bool {
    append(out, value, max, delimiter)
}

/// Appends a header field; true when it was cut to `max` characters.
pub fn header(out: &mut String, value: &str, max: usize) -> bool {
    let cut = append(out, value, max, '|');
    // Parsers that accept `\|` in headers (AxoSyslog's parse_leef) would read a final
    // backslash and the separator after it as an escaped pipe and shift every later
    // field. A `\` ending the buffer is this field's: what precedes the field is a `|`.
    if out.ends_with('\\') {
        out.pop();
        push_code(out, '\\');
    }
    cut
}

/// Appends `text`, cut to `max` characters, with the characters that would break the
/// line (see the module comment) and `separator` replaced.
fn append(out: &mut String, text: &str, max: usize, separator: char) -> bool {
    // The separator is the one printable character replaced (when it is printable ASCII).
    let mut ascii = [0u8; 4];
    let ascii = match separator.is_ascii() {
        true => separator.encode_utf8(&mut ascii).as_bytes(),
        false => &[],
    };
    escape::push_replaced(
        out,
        text,
        max,
        ascii,
        |c| breaks_line(c) || c == separator,
        push_replacement,
    )
}

/// Control characters and the Unicode line and paragraph separators: raw, they end a
/// syslog line, cut a C string, or drive a terminal (ESC, BEL). That is core's rule
/// (`siemflow_core::escape`) plus TAB, LEEF's default delimiter.
fn breaks_line(c: char) -> bool {
    c == '\t' || escape::is_line_unsafe(c)
}

fn push_replacement(out: &mut String, c: char) {
    match c {
        '\r' => out.push_str("\\r"),
        '\n' => out.push_str("\\n"),
        '\t' => out.push_str("\\t"),
        c => push_code(out, c),
    }
}

/// Writes `c` as `\uHHHH`, core's form (`siemflow_core::escape`).
fn push_code(out: &mut String, c: char) {
    use std::fmt::Write;
    // Every character replaced is at most U+FFFF (delimiters are checked for it), so
    // four digits always suffice. Writing into a String cannot fail.
    let _ = write!(out, "{}", escape::UnicodeEscape(c));
}

/// Parses a delimiter option: one character, `\t`, or hex `xHH`/`0xHH` (1–4 digits).
pub fn parse_delimiter(text: &str) -> Result<char, String> {
    let hex = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("x"))
        .or_else(|| text.strip_prefix("0X"))
        .or_else(|| text.strip_prefix("X"))
        .filter(|h| (1..=4).contains(&h.len()) && h.bytes().all(|b| b.is_ascii_hexdigit()));
    let c = if text == "\\t" {
        '\t'
    } else if let Some(hex) = hex {
        u32::from_str_radix(hex, 16)
            .ok()
            .and_then(char::from_u32)
            .ok_or_else(|| format!("`{text}` is not a valid character code"))?
    } else {
        let mut chars = text.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => c,
            _ => {
                return Err(format!(
                    "`{text}`: give one character, `\\t`, or hex `x09`/`0x09`"
                ));
            }
        }
    };
    // A 2.0 header names the delimiter with 1–4 hex digits (siem-sinks.md §7.1), so a
    // character above U+FFFF could not be announced to the parser.
    if u32::from(c) > 0xFFFF {
        return Err(format!(
            "delimiter {c:?} is above U+FFFF; a LEEF header cannot name it"
        ));
    }
    if c.is_ascii_alphanumeric() || matches!(c, '_' | '=' | '\\') {
        return Err(format!(
            "delimiter {c:?} would be ambiguous with names, `=` or replacements"
        ));
    }
    // The delimiter is written raw between attributes: it must not be a character the
    // line may never hold raw. TAB is LEEF's own default.
    if escape::is_line_unsafe(c) {
        return Err(format!(
            "delimiter {c:?} is a control or line-separator character; only TAB may be"
        ));
    }
    Ok(c)
}

/// The delimiter as written in a LEEF 2.0 header: printable ASCII as is, else `xHH`.
pub fn header_delimiter(c: char) -> String {
    if c.is_ascii_graphic() && c != '|' {
        c.to_string()
    } else {
        format!("x{:02X}", u32::from(c))
    }
}
