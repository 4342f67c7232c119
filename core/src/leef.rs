//! Reading LEEF 1.0 and 2.0 lines (IBM QRadar's Log Event Extended Format) into fields.
//!
//! `LEEF:1.0|Vendor|Product|Version|EventID|` then attributes separated by TAB;
//! `LEEF:2.0|Vendor|Product|Version|EventID|Delimiter|` where the delimiter is one
//! character or its code as `xHH`/`0xHH` (1–4 hex digits). IBM defines no escaping; like
//! AxoSyslog's `parse_leef`, `\|` is read as `|` in header fields and `\=` as `=` in
//! values. Some vendors leave the delimiter field out of a 2.0 header (Trend Micro Deep
//! Security): a fifth field holding `=` is then read as the first attributes, separated
//! by TAB, as SC4S and AxoSyslog do.

use thiserror::Error;

/// One LEEF line, split into its header and attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leef {
    /// `1.0` or `2.0`.
    pub version: String,
    /// The vendor header field.
    pub vendor: String,
    /// The product header field.
    pub product: String,
    /// The product version header field.
    pub product_version: String,
    /// The event ID header field (QRadar's QID key).
    pub event_id: String,
    /// The attribute delimiter in effect.
    pub delimiter: char,
    /// `key=value` attributes in line order (a key may repeat).
    pub attributes: Vec<(String, String)>,
}

/// Why a line is not LEEF.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LeefError {
    /// No `LEEF:` at the start of the payload.
    #[error("no `LEEF:` prefix")]
    NoPrefix,
    /// A version other than 1.0 or 2.0.
    #[error("unknown LEEF version {0:?} (expected 1.0 or 2.0)")]
    Version(String),
    /// Fewer `|`-separated header fields than the version needs.
    #[error("LEEF {version} header needs {needed} fields after the version, found {found}")]
    Header {
        /// The line's version.
        version: String,
        /// Fields the header needs.
        needed: usize,
        /// Fields found.
        found: usize,
    },
    /// A LEEF 2.0 delimiter field that names no character.
    #[error("LEEF 2.0 delimiter {0:?} is not one character nor a hex code (x09, 0x5E)")]
    Delimiter(String),
    /// Text before the first `=` of the attributes.
    #[error("attribute text {0:?} has no `key=`")]
    Attribute(String),
}

/// Parses a line that starts with `LEEF:` (a syslog header, if any, already removed).
pub fn parse(line: &str) -> Result<Leef, LeefError> {
    let rest = line.strip_prefix("LEEF:").ok_or(LeefError::NoPrefix)?;
    let (version, mut rest) = next_field(rest).ok_or(LeefError::Header {
        version: String::new(),
        needed: 4,
        found: 0,
    })?;
    let version = version.trim().to_string();
    let needed = match version.as_str() {
        "1.0" | "1" => 4,
        "2.0" | "2" => 5,
        _ => return Err(LeefError::Version(version)),
    };
    let mut header = Vec::with_capacity(5);
    while header.len() < 4 {
        let Some((field, after)) = next_field(rest) else {
            return Err(LeefError::Header {
                version,
                needed,
                found: header.len(),
            });
        };
        header.push(field);
        rest = after;
    }
    let mut delimiter = '\t';
    if needed == 5 {
        match next_field(rest) {
            Some((field, after)) if !field.contains('=') => {
                delimiter = delimiter_of(&field)?;
                rest = after;
            }
            // No delimiter field: the attributes follow, TAB-separated.
            Some(_) => {}
            None if rest.contains('=') => {}
            None => {
                return Err(LeefError::Header {
                    version,
                    needed,
                    found: 4,
                });
            }
        }
    }
    let attributes = attributes(rest, delimiter)?;
    let [vendor, product, product_version, event_id]: [String; 4] =
        header.try_into().map_err(|_| LeefError::Header {
            version: version.clone(),
            needed,
            found: 0,
        })?;
    Ok(Leef {
        version,
        vendor,
        product,
        product_version,
        event_id,
        delimiter,
        attributes,
    })
}

/// The header field up to the next unescaped `|` (with `\|` read as `|`) and what follows
/// that pipe; `None` when no pipe ends it.
fn next_field(text: &str) -> Option<(String, &str)> {
    let mut field = String::new();
    let mut chars = text.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '|' => return Some((field, &text[at + 1..])),
            '\\' if text[at + 1..].starts_with('|') => {
                field.push('|');
                chars.next();
            }
            c => field.push(c),
        }
    }
    None
}

/// The delimiter a LEEF 2.0 header names: one character, or `xHH`/`0xHH` (1–4 hex digits).
fn delimiter_of(field: &str) -> Result<char, LeefError> {
    let bad = || LeefError::Delimiter(field.to_string());
    let mut chars = field.chars();
    match (chars.next(), chars.next()) {
        (None, _) => Ok('\t'),
        (Some(c), None) => Ok(c),
        _ => {
            let hex = field
                .strip_prefix("0x")
                .or_else(|| field.strip_prefix("0X"))
                .or_else(|| field.strip_prefix('x'))
                .or_else(|| field.strip_prefix('X'))
                .ok_or_else(bad)?;
            if hex.is_empty() || hex.len() > 4 {
                return Err(bad());
            }
            u32::from_str_radix(hex, 16)
                .ok()
                .and_then(char::from_u32)
                .ok_or_else(bad)
        }
    }
}

/// `key=value` pairs separated by `delimiter`. A piece without `=` belongs to the value
/// before it (a value that holds the delimiter); `\=` in a value is read as `=`.
fn attributes(text: &str, delimiter: char) -> Result<Vec<(String, String)>, LeefError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for piece in text.split(delimiter) {
        match split_key(piece) {
            Some((key, value)) => out.push((key.to_string(), unescape(value))),
            None if piece.is_empty() => {}
            None => match out.last_mut() {
                Some((_, value)) => {
                    value.push(delimiter);
                    value.push_str(&unescape(piece));
                }
                None => return Err(LeefError::Attribute(piece.to_string())),
            },
        }
    }
    Ok(out)
}

/// The key and raw value of `key=value`, when the key is a plausible name.
fn split_key(piece: &str) -> Option<(&str, &str)> {
    let (key, value) = piece.split_once('=')?;
    let key = key.trim();
    let plausible = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    plausible.then_some((key, value))
}

fn unescape(value: &str) -> String {
    value.replace("\\=", "=")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(leef: &Leef) -> Vec<(&str, &str)> {
        leef.attributes
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn leef_1_0_is_tab_separated() {
        let leef =
            parse("LEEF:1.0|Microsoft|MSExchange|2016|15345|src=10.50.1.1\tdst=2.10.20.20\tsev=5")
                .expect("parses");
        assert_eq!(leef.version, "1.0");
        assert_eq!(
            (
                leef.vendor.as_str(),
                leef.product.as_str(),
                leef.product_version.as_str(),
                leef.event_id.as_str()
            ),
            ("Microsoft", "MSExchange", "2016", "15345")
        );
        assert_eq!(
            pairs(&leef),
            [("src", "10.50.1.1"), ("dst", "2.10.20.20"), ("sev", "5")]
        );
    }

    #[test]
    fn leef_2_0_delimiters_by_character_and_by_code() {
        let caret = parse("LEEF:2.0|Lancope|StealthWatch|1.0|41|^|src=10.0.1.8^dst=10.0.0.5^sev=5")
            .expect("parses");
        assert_eq!(caret.delimiter, '^');
        assert_eq!(
            pairs(&caret),
            [("src", "10.0.1.8"), ("dst", "10.0.0.5"), ("sev", "5")]
        );
        for code in ["x5E", "0x5e", "X5E"] {
            let line = format!("LEEF:2.0|V|P|1|E|{code}|a=1^b=2");
            assert_eq!(parse(&line).expect("parses").delimiter, '^', "{code}");
        }
        assert_eq!(
            parse("LEEF:2.0|V|P|1|E|x09|a=1\tb=2")
                .expect("parses")
                .attributes
                .len(),
            2
        );
        assert!(matches!(
            parse("LEEF:2.0|V|P|1|E|xZZ|a=1"),
            Err(LeefError::Delimiter(_))
        ));
    }

    #[test]
    fn a_missing_2_0_delimiter_field_means_tab() {
        let leef = parse("LEEF:2.0|Trend Micro|Deep Security Agent|10.0|4000030|cat=Anti-Malware\tname=HEU_AEGIS_CRYPT").expect("parses");
        assert_eq!(leef.delimiter, '\t');
        assert_eq!(
            pairs(&leef),
            [("cat", "Anti-Malware"), ("name", "HEU_AEGIS_CRYPT")]
        );
    }

    #[test]
    fn escapes_and_values_holding_the_delimiter() {
        let leef = parse(r"LEEF:2.0|V\|x|P|1|E|^|msg=a\=b^c^k=v^").expect("parses");
        assert_eq!(leef.vendor, "V|x");
        assert_eq!(pairs(&leef), [("msg", "a=b^c"), ("k", "v")]);
    }

    #[test]
    fn what_is_not_leef_says_why() {
        assert_eq!(parse("CEF:0|a"), Err(LeefError::NoPrefix));
        assert!(matches!(
            parse("LEEF:3.0|a|b|c|d|"),
            Err(LeefError::Version(_))
        ));
        assert!(matches!(
            parse("LEEF:1.0|a|b"),
            Err(LeefError::Header { .. })
        ));
        assert!(matches!(
            parse("LEEF:1.0|a|b|c|d|junk\tk=v"),
            Err(LeefError::Attribute(_))
        ));
    }
}
