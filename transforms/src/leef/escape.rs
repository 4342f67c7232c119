//! LEEF escaping. IBM defines none, so values are made safe by construction: the
//! delimiter, CR, LF and TAB never appear raw in a value (written `\xHH` — `\x{HHHH}`
//! for a delimiter above U+00FF —, `\r`, `\n`, `\t`), and a backslash is doubled so the
//! forms stay unambiguous.

/// Appends an attribute value; true when it was cut to `max` characters.
pub fn value(out: &mut String, value: &str, delimiter: char, max: usize) -> bool {
    for (written, c) in value.chars().enumerate() {
        if written == max {
            return true;
        }
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == delimiter => push_hex(out, c),
            c => out.push(c),
        }
    }
    false
}

/// Appends a header field: `\` and `|` escaped (AxoSyslog's rule), line breaks and
/// tabs replaced by a space.
pub fn header(out: &mut String, value: &str, max: usize) -> bool {
    for (written, c) in value.chars().enumerate() {
        if written == max {
            return true;
        }
        match c {
            '\\' => out.push_str("\\\\"),
            '|' => out.push_str("\\|"),
            '\r' | '\n' | '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    false
}

fn push_hex(out: &mut String, c: char) {
    use std::fmt::Write;
    let code = u32::from(c);
    let _ = if code <= 0xFF {
        write!(out, "\\x{code:02x}")
    } else {
        write!(out, "\\x{{{code:x}}}")
    };
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
    if c.is_ascii_alphanumeric() || matches!(c, '_' | '=' | '\\' | '\r' | '\n') {
        return Err(format!(
            "delimiter {c:?} would be ambiguous with keys, `=`, escapes or line breaks"
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
