//! Reading CEF lines (ArcSight's Common Event Format) into fields, exactly as VRL's
//! `parse_cef` (vrl 0.38, `strict: true`, `translate_custom_fields: false`) reads them —
//! the same fields, the same values, and an error where it errs — in one pass without its
//! parser's per-character allocations.
//!
//! What `parse_cef` does, and so this:
//! - Everything before the first `CEF:` is skipped.
//! - Seven header fields follow, each after an optional `|` (a field right after `CEF:`
//!   may start with one, which is skipped). `\|` and `\\` are the only escapes; any other
//!   backslash, or one at the very end of the text, is an error. Each field is trimmed of
//!   whitespace. Names: `cefVersion`, `deviceVendor`, `deviceProduct`, `deviceVersion`,
//!   `deviceEventClassId`, `name`, `severity`.
//! - The extension is `key=value` pairs. A key follows one or more spaces or `|` and runs
//!   to the next space, `=` or backslash; it must end in `=`. A value runs until the next
//!   key (spaces or `|`, then a key, then `=`), an unescaped `=`, or the end; `\=` is `=`,
//!   `\\` is `\`, `\n` and `\r` are a line feed, any other backslash stays a backslash,
//!   and one at the very end of the text is an error. A value followed directly by a key
//!   is empty. The last value loses its trailing spaces.
//! - A header without an extension needs its closing `|`; after the pairs only whitespace
//!   may remain (an unescaped `=` in a value, for one, leaves text over: an error).
//! - Any value (header or extension) wrapped in double quotes loses them.
//! - Keys are the extension's, then the header's: a later one wins (the header over an
//!   extension key of the same name).

use bytes::Bytes;
use thiserror::Error;
use vrl::value::{KeyString, ObjectMap, Value};

/// The header fields' names, in order.
pub const HEADER_FIELDS: [&str; 7] = [
    "cefVersion",
    "deviceVendor",
    "deviceProduct",
    "deviceVersion",
    "deviceEventClassId",
    "name",
    "severity",
];

/// Why a text is not CEF (where VRL's `parse_cef` fails too).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CefError {
    /// No `CEF:` anywhere.
    #[error("no `CEF:` in the text")]
    NoPrefix,
    /// A backslash in a header field that escapes neither `|` nor `\`.
    #[error("header field {0} has a backslash that escapes neither `|` nor `\\`")]
    HeaderEscape(&'static str),
    /// The text ends within the header, or right after it without its closing `|`.
    #[error("the header has no closing `|` before the end of the text")]
    NoExtension,
    /// Text the extension's `key=value` pairs do not cover.
    #[error(
        "extension text {0:?} is not key=value pairs (an unescaped `=` or a trailing backslash?)"
    )]
    Extension(String),
}

/// Parses a CEF line (text before `CEF:` is skipped) into its fields.
pub fn parse(input: &str) -> Result<ObjectMap, CefError> {
    let b = input.as_bytes();
    let mut pos = find_prefix(b).ok_or(CefError::NoPrefix)? + 4;

    let mut header: [&str; 7] = [""; 7];
    let mut header_owned: [Option<String>; 7] = Default::default();
    for (i, name) in HEADER_FIELDS.iter().enumerate() {
        if b.get(pos) == Some(&b'|') {
            pos += 1;
        }
        if b.get(pos) == Some(&b'|') {
            continue;
        }
        let (value, end) = header_value(input, pos).ok_or(CefError::HeaderEscape(name))?;
        pos = end;
        match value {
            Unescaped::Slice(slice) => header[i] = slice.trim(),
            Unescaped::Owned(owned) => header_owned[i] = Some(owned),
        }
    }

    // The extension: `many1(key=value)`, else a lone `|`.
    let ext_start = pos;
    let mut pairs: Vec<(&str, Unescaped<'_>)> = Vec::new();
    let mut rest = pos;
    while let Ok(key) = key_at(b, rest) {
        match value_at(input, key.end + 1) {
            Some((value, end)) => {
                pairs.push((&input[key.start..key.end], value));
                rest = end;
            }
            None => break,
        }
    }
    if pairs.is_empty() {
        if b.get(ext_start) != Some(&b'|') {
            return Err(match ext_start >= b.len() {
                true => CefError::NoExtension,
                false => CefError::Extension(snippet(&input[ext_start..])),
            });
        }
        rest = ext_start + 1;
    }
    if !input[rest..].trim().is_empty() {
        return Err(CefError::Extension(snippet(&input[rest..])));
    }

    let mut object = ObjectMap::new();
    let last = pairs.len().wrapping_sub(1);
    for (i, (key, value)) in pairs.iter().enumerate() {
        let mut value = value.as_str();
        if i == last {
            value = value.trim_end_matches(' ');
        }
        object.insert(KeyString::from(*key), bytes(unquote(value)));
    }
    for (i, name) in HEADER_FIELDS.iter().enumerate() {
        let value = match &header_owned[i] {
            Some(owned) => owned.trim(),
            None => header[i],
        };
        object.insert(KeyString::from(*name), bytes(unquote(value)));
    }
    Ok(object)
}

fn bytes(value: &str) -> Value {
    Value::Bytes(Bytes::copy_from_slice(value.as_bytes()))
}

/// A value wrapped in double quotes without them (as `parse_cef` does).
fn unquote(value: &str) -> &str {
    if value.len() >= 2 && value.starts_with('"') && value.ends_with('"') {
        &value[1..value.len() - 1]
    } else {
        value
    }
}

fn snippet(text: &str) -> String {
    match text.char_indices().nth(40) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

fn find_prefix(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"CEF:")
}

/// A value: a slice of the input when it holds no escape.
enum Unescaped<'a> {
    Slice(&'a str),
    Owned(String),
}

impl Unescaped<'_> {
    fn as_str(&self) -> &str {
        match self {
            Unescaped::Slice(slice) => slice,
            Unescaped::Owned(owned) => owned,
        }
    }
}

/// Builds a value from the input's pieces and the escapes between them.
struct Builder<'a> {
    input: &'a str,
    owned: Option<String>,
    /// Where the piece not yet copied starts.
    from: usize,
}

impl<'a> Builder<'a> {
    fn new(input: &'a str, from: usize) -> Self {
        Builder {
            input,
            owned: None,
            from,
        }
    }

    /// Copies the input up to `at`, then `c`, and goes on at `next`.
    fn escape(&mut self, at: usize, c: char, next: usize) {
        let owned = self.owned.get_or_insert_with(String::new);
        owned.push_str(&self.input[self.from..at]);
        owned.push(c);
        self.from = next;
    }

    fn finish(self, end: usize) -> Unescaped<'a> {
        match self.owned {
            None => Unescaped::Slice(&self.input[self.from..end]),
            Some(mut owned) => {
                owned.push_str(&self.input[self.from..end]);
                Unescaped::Owned(owned)
            }
        }
    }
}

/// One header field from `start` (not at a `|`) to the next unescaped `|` or the end;
/// `None` for a backslash escaping neither `|` nor `\` (or ending the text).
fn header_value(input: &str, start: usize) -> Option<(Unescaped<'_>, usize)> {
    let b = input.as_bytes();
    let mut value = Builder::new(input, start);
    let mut pos = start;
    loop {
        let Some(found) = b[pos..].iter().position(|&c| c == b'\\' || c == b'|') else {
            return Some((value.finish(b.len()), b.len()));
        };
        let at = pos + found;
        if b[at] == b'|' {
            return Some((value.finish(at), at));
        }
        match b.get(at + 1) {
            Some(&c) if c == b'\\' || c == b'|' => {
                value.escape(at, char::from(c), at + 2);
                pos = at + 2;
            }
            _ => return None,
        }
    }
}

/// The key of a pair, `start..end` (its `=` at `end`).
struct Key {
    start: usize,
    end: usize,
}

/// `parse_key`: one or more spaces or `|`, then a key (up to a space, `=` or backslash),
/// then `=`. On failure, the position the scan stopped at: no key starts before it.
fn key_at(b: &[u8], at: usize) -> Result<Key, usize> {
    let mut pos = at;
    while pos < b.len() && (b[pos] == b' ' || b[pos] == b'|') {
        pos += 1;
    }
    if pos == at {
        return Err(at);
    }
    let start = pos;
    while pos < b.len() && !matches!(b[pos], b' ' | b'=' | b'\\') {
        pos += 1;
    }
    if pos > start && b.get(pos) == Some(&b'=') {
        Ok(Key { start, end: pos })
    } else {
        Err(pos)
    }
}

/// A value from `start` (just after its key's `=`) and where it ends; `None` where
/// `parse_cef`'s value parser fails (an `=` first, or a backslash ending the text).
fn value_at(input: &str, start: usize) -> Option<(Unescaped<'_>, usize)> {
    let b = input.as_bytes();
    if key_at(b, start).is_ok() {
        return Some((Unescaped::Slice(""), start));
    }
    let mut value = Builder::new(input, start);
    let mut pos = start;
    while pos < b.len() {
        match b[pos] {
            b'\\' => {
                let next = *b.get(pos + 1)?;
                match next {
                    b'=' => value.escape(pos, '=', pos + 2),
                    b'\\' => value.escape(pos, '\\', pos + 2),
                    b'n' | b'r' => value.escape(pos, '\n', pos + 2),
                    // Any other: a backslash, and the next character read as usual.
                    _ => {
                        value.escape(pos, '\\', pos + 1);
                        pos += 1;
                        continue;
                    }
                }
                pos += 2;
            }
            b'=' => {
                if pos == start {
                    return None;
                }
                return Some((value.finish(pos), pos));
            }
            b' ' | b'|' => match key_at(b, pos) {
                Ok(_) => return Some((value.finish(pos), pos)),
                // No key starts in the same run of spaces and `|`, nor at a `|` within
                // the key candidate (its key ends where this one did) — but for `|`s
                // right before a space that ended it: their run goes on over the space.
                Err(stop) => {
                    pos = stop;
                    if b.get(stop) == Some(&b' ') {
                        while b[pos - 1] == b'|' {
                            pos -= 1;
                        }
                    }
                }
            },
            _ => pos += 1,
        }
    }
    Some((value.finish(b.len()), b.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use vrl::compiler::runtime::Runtime;
    use vrl::compiler::{Program, TargetValue, TimeZone};
    use vrl::value::Secrets;

    thread_local! {
        static ORACLE: Program = vrl::compiler::compile("parse_cef!(.message)", &vrl::stdlib::all())
            .expect("compiles")
            .program;
    }

    /// VRL's `parse_cef` (the defaults the `syslog` source relies on): the oracle.
    fn vrl_parse_cef(line: &str) -> Result<ObjectMap, String> {
        ORACLE.with(|program| {
            let mut object = ObjectMap::new();
            object.insert("message".into(), Value::from(line));
            let mut target = TargetValue {
                value: Value::Object(object),
                metadata: Value::Object(ObjectMap::new()),
                secrets: Secrets::default(),
            };
            let tz = TimeZone::parse("UTC").expect("utc");
            match Runtime::default().resolve(&mut target, program, &tz) {
                Ok(Value::Object(object)) => Ok(object),
                Ok(other) => panic!("parse_cef returned {other:?}"),
                Err(error) => Err(error.to_string()),
            }
        })
    }

    /// Ours and VRL's agree: the same fields, or both an error.
    fn agrees(line: &str) -> Result<(), String> {
        match (parse(line), vrl_parse_cef(line)) {
            (Ok(ours), Ok(theirs)) if ours == theirs => Ok(()),
            (Err(_), Err(_)) => Ok(()),
            (ours, theirs) => Err(format!("{line:?}\n ours: {ours:?}\n VRL:  {theirs:?}")),
        }
    }

    fn assert_agrees(line: &str) {
        if let Err(diff) = agrees(line) {
            panic!("{diff}");
        }
    }

    fn fixture(path: &str) -> String {
        let path = format!("{}/../tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn the_mda_agent_lines_read_as_vrl_reads_them() {
        let log = fixture("siem-mapping/microsoftdocs-cloudappsecurity/mcas_siem_agent_cef.log");
        let mut lines = 0;
        for line in log.lines().filter(|l| l.contains("CEF:")) {
            assert_agrees(line);
            let fields = parse(line).expect("an agent line is CEF");
            assert_eq!(
                fields.get("deviceVendor"),
                Some(&Value::from("MCAS")),
                "{line}"
            );
            lines += 1;
        }
        assert!(lines >= 12, "{lines} lines");
    }

    #[test]
    fn vrl_documented_examples() {
        let fields = parse(r"CEF:0|security|threatmanager|1.0|100|Detected a \| in message. No action needed.|10|src=10.0.0.1 msg=Detected a threat.\n No action needed act=blocked a \= dst=1.1.1.1").expect("parses");
        assert_eq!(
            fields.get("name"),
            Some(&Value::from("Detected a | in message. No action needed."))
        );
        assert_eq!(
            fields.get("msg"),
            Some(&Value::from("Detected a threat.\n No action needed"))
        );
        assert_eq!(fields.get("act"), Some(&Value::from("blocked a =")));
        assert_eq!(fields.get("dst"), Some(&Value::from("1.1.1.1")));
        let fields = parse("Sep 29 08:26:10 host CEF:1|Security|threatmanager|1.0|100|worm successfully stopped|10|src=10.0.0.1 dst=2.1.2.2 spt=1232").expect("parses");
        assert_eq!(fields.len(), 10);
        assert_eq!(fields.get("cefVersion"), Some(&Value::from("1")));
        assert_eq!(
            parse("CEF:0|a|b|c|d|e|f|src=1 request=https://x?id=1")
                .err()
                .map(|e| matches!(e, CefError::Extension(_))),
            Some(true)
        );
    }

    /// Corners of `parse_cef`'s grammar, each checked against VRL.
    #[test]
    fn corner_cases_agree_with_vrl() {
        for line in [
            "CEF:0|V|P|1|E|N|5|",
            "CEF:0|V|P|1|E|N|5| \t",
            "CEF:0|V|P|1|E|N|5",
            "CEF:0|V|P|1|E|N|",
            "CEF:0|V|P|1|E",
            "CEF:",
            "CEF",
            "",
            "no cef here",
            "CEF:|0|V|P|1|E|N|5|",
            "CEF:0||||||||",
            "CEF:0|V|P|1|E|N|5|k=v",
            "CEF:0|V|P|1|E|N|5|k=",
            "CEF:0|V|P|1|E|N|5|k= ",
            "CEF:0|V|P|1|E|N|5|k= j=v",
            "CEF:0|V|P|1|E|N|5|k=|j=v",
            "CEF:0|V|P|1|E|N|5|k==v",
            "CEF:0|V|P|1|E|N|5|k=a=b",
            "CEF:0|V|P|1|E|N|5|k=a =b",
            "CEF:0|V|P|1|E|N|5|k=a\\",
            "CEF:0|V|P|1|E|N|5|k=a\\ ",
            "CEF:0|V|P|1|E|N|5|k=a\\=b\\\\c\\nd\\re\\tf\\|g",
            "CEF:0|V|P|1|E|N|5|k=a\\ j=b",
            "CEF:0|V|P|1|E|N|5|k=a\\\\ j=b",
            "CEF:0|V|P|1|E|N|5|k=a b  c j=d  ",
            "CEF:0|V|P|1|E|N|5|k=a|b|c=d",
            "CEF:0|V|P|1|E|N|5|k=a |b|c d=e",
            "CEF:0|V|P|1|E|N|5|k=\"quoted\" j=\"x",
            "CEF:0|V|P|1|E|N|5|k=\" j=\"\"",
            "CEF:0|\"V\"|P|1|E| \"N\" |5|",
            "CEF:0|V\\|W|P\\\\|1|E|N|5|",
            "CEF:0|V\\x|P|1|E|N|5|",
            "CEF:0|V|P|1|E|N|5\\",
            "CEF:0|V|P|1|E|N|5|\\",
            "CEF:0|V|P|1|E|N|5|g|k=v",
            "CEF:0|V|P|1|E|N|5|| |k=v",
            "CEF:0|V|P|1|E|N|5|k=v k=w",
            "CEF:0|V|P|1|E|N|5|name=x severity=9 k=v",
            "CEF:0|V|P|1|E|N|5|k=\u{e9}\u{6771} \u{e9}=\u{6771}",
            "CEF:0|V|P|1|E|N|5|\tk=v",
            "CEF:0|V|P|1|E|N|5| \u{2003}",
            "CEF:0|V|P|1|E|N|5|k=v\u{2003}",
            "CEF:0|V|P|1|E|N|5|k=v \n",
            "x CEF:0|V|P|1|E|N|5|k=CEF:1|a",
            "CEF:0| V | P |1|E|N|5|k= v ",
            "CEF:0|V|P|1|E|N|5|=v",
            "CEF:0|V|P|1|E|N|5| =v",
            "CEF:0|V|P|1|E|N|5|k=v =w",
            "CEF:0|V|P|1|E|N|5|k=v\\=",
            "CEF:0|V|P|1|E|N|5|k=\\=v",
            "CEF:0|V|P|1|E|N|5|k=\\",
            "CEF:0|V|P|1|E|N|5|k\\=v",
            "CEF:0|V|P|1|E|N|5|a|b=c",
            "CEF:0|V|P|1|E|N|5|k=a||b=c",
            "CEF:0|V|P|1|E|N|5|k=x| =y",
            "CEF:0|V|P|1|E|N|5|k=x|y|z w=1",
            "CEF:0|V|P|1|E|N|5|A=|CEF:| a=",
            "CEF:0|V|P|1|E|N|5|A=|b|| a=",
            "CEF:0|V|P|1|E|N|5|A=b|| |a=c",
        ] {
            assert_agrees(line);
        }
    }

    /// Pieces that meet `parse_cef`'s grammar at its corners.
    fn token() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "CEF:", "CEF:0", "|", "||", "\\", "\\\\", "\\|", "\\=", "\\n", "\\r", "\\t", "=", " ",
            "  ", "k", "cs1", "cs1Label", "name", "severity", "a b", "x=", " y=", "|z=", "\"",
            "\u{e9}", "\u{6771}", "\t", "\n", "\u{2003}", "0", "v", "-",
        ])
    }

    fn tokens(max: usize) -> impl Strategy<Value = String> {
        prop::collection::vec(token(), 0..max).prop_map(|t| t.concat())
    }

    fn header() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("CEF:0|Contoso|M365|1|E1|Name|5|".to_string()),
            Just("<14>1 - h a - - - CEF:0|MCAS|SIEM_Agent|0.1|EV|Log out|0|".to_string()),
            (tokens(4), tokens(4), tokens(4))
                .prop_map(|(a, b, c)| format!("{a}CEF:0|{b}|P|1|E|{c}|5|")),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// Any header and extension made of the grammar's pieces: ours equals VRL's.
        #[test]
        fn adversarial_lines_agree_with_vrl(header in header(), extension in tokens(24)) {
            let line = format!("{header}{extension}");
            prop_assert!(agrees(&line).is_ok(), "{}", agrees(&line).unwrap_err());
        }

        /// Pieces alone (the header, too, may be anything).
        #[test]
        fn token_soup_agrees_with_vrl(line in tokens(40)) {
            prop_assert!(agrees(&line).is_ok(), "{}", agrees(&line).unwrap_err());
        }

        /// Any printable text (and a few non-ASCII and control characters) as extension.
        #[test]
        fn any_extension_text_agrees_with_vrl(header in header(), extension in "[ -~\u{e9}\u{6771}\t\n\u{2003}]{0,60}") {
            let line = format!("{header}{extension}");
            prop_assert!(agrees(&line).is_ok(), "{}", agrees(&line).unwrap_err());
        }

        /// `key=value` pairs whose values hold anything: ours equals VRL's.
        #[test]
        fn pairs_agree_with_vrl(pairs in prop::collection::vec(("[a-zA-Z0-9_]{1,8}", tokens(6)), 1..6), sep in prop_oneof![Just(" "), Just("  "), Just("|"), Just(" |")]) {
            let extension = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(sep);
            let line = format!("CEF:0|V|P|1|E|N|5|{extension}");
            prop_assert!(agrees(&line).is_ok(), "{}", agrees(&line).unwrap_err());
        }
    }
}
