//! CEF escaping (siem-sinks.md §6.2), with truncation to a maximum number of characters.

/// Appends a header field: `\` and `|` escaped, CR/LF replaced by a space (headers
/// cannot hold line breaks). Returns true when the value was cut to `max` characters.
pub fn header(out: &mut String, value: &str, max: usize) -> bool {
    for (written, c) in value.chars().enumerate() {
        if written == max {
            return true;
        }
        match c {
            '\\' => out.push_str("\\\\"),
            '|' => out.push_str("\\|"),
            '\r' | '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    false
}

/// Appends an extension value: `\`, `=`, LF and CR escaped; the pipe stays bare (legal
/// there, and Beats rejects `\|` in extensions). Returns true when cut to `max` characters.
pub fn value(out: &mut String, value: &str, max: usize) -> bool {
    for (written, c) in value.chars().enumerate() {
        if written == max {
            return true;
        }
        match c {
            '\\' => out.push_str("\\\\"),
            '=' => out.push_str("\\="),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    false
}
