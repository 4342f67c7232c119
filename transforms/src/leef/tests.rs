//! LEEF tests. No maintained independent LEEF parser exists (siem-sinks.md §8.2), so the
//! lines are read back by a small parser written here from IBM's rules (§7.1: the header
//! split on `|`, attributes on the delimiter, a name ending at its first `=`) that, like
//! QRadar, undoes nothing. What it reads is compared with the source values passed
//! through the replacements docs/transforms/leef.md documents (`documented`, written
//! from that page, not from the encoder's code). Every fixture record, injection
//! attempts, limits and options are checked through it.

use std::collections::BTreeSet;

use super::{LeefConfig, LeefEncoder};
use crate::siem_mapping::{
    Kind, Tracker, header_text, severity, tests::fixture_records, typed_text,
};
use crate::test_support::{build, config, event};
use chrono::DateTime;

/// One LEEF line, read back as written: nothing is unescaped.
#[derive(Debug)]
struct Parsed {
    version: String,
    /// Vendor, product, version, EventID.
    header: [String; 4],
    /// The delimiter field as written in a 2.0 header (`None` for 1.0).
    delimiter_field: Option<String>,
    delimiter: char,
    /// Attributes in line order; a `Vec` so a duplicated key is visible.
    attributes: Vec<(String, String)>,
}

impl Parsed {
    fn get(&self, key: &str) -> Option<&str> {
        let mut found = self.attributes.iter().filter(|(k, _)| k == key);
        let first = found.next().map(|(_, v)| v.as_str());
        assert!(found.next().is_none(), "attribute `{key}` appears twice");
        first
    }

    fn keys(&self) -> Vec<&str> {
        self.attributes.iter().map(|(k, _)| k.as_str()).collect()
    }
}

/// What the documentation says may never stand raw in a line (other than the delimiter
/// between attributes): control characters, U+2028 and U+2029.
fn never_raw(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

/// `text` as docs/transforms/leef.md says it is written, `separator` being the delimiter
/// (a value) or `|` (a header field): CR, LF, TAB as `\r`, `\n`, `\t`; the separator and
/// every other character `never_raw` names as `\u` and four lower-case hex digits;
/// everything else, backslashes included, unchanged. Cut to `max` source characters.
fn documented(text: &str, separator: char, max: usize) -> String {
    let mut out = String::new();
    for c in text.chars().take(max) {
        match c {
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c == separator || never_raw(c) => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out
}

/// A header field as documented: like a value with `|` as the separator, cut to 255
/// characters, and a final backslash written `\u005c`.
fn documented_header(text: &str) -> String {
    let mut out = documented(text, '|', 255);
    if out.ends_with('\\') {
        out.pop();
        out.push_str("\\u005c");
    }
    out
}

/// An attribute value as documented (no length limit).
fn documented_value(text: &str, delimiter: char) -> String {
    documented(text, delimiter, usize::MAX)
}

/// The delimiter of a 2.0 header: one character, or `xHH`/`0xHH` with 1–4 hex digits.
fn delimiter_of(field: &str) -> Result<char, String> {
    let mut chars = field.chars();
    if let (Some(c), None) = (chars.next(), chars.next()) {
        return Ok(c);
    }
    let lower = field.to_ascii_lowercase();
    let hex = lower
        .strip_prefix("0x")
        .or_else(|| lower.strip_prefix('x'))
        .filter(|h| (1..=4).contains(&h.len()) && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| format!("bad delimiter field {field:?}"))?;
    u32::from_str_radix(hex, 16)
        .ok()
        .and_then(char::from_u32)
        .ok_or_else(|| format!("bad delimiter code {field:?}"))
}

/// An error when `text` holds a character that may never stand raw in a line.
fn no_raw_breaks(what: &str, text: &str) -> Result<(), String> {
    match text.chars().find(|c| never_raw(*c)) {
        Some(c) => Err(format!("raw {c:?} in {what} {text:?}")),
        None => Ok(()),
    }
}

/// Parses a LEEF 1.0 or 2.0 line as §7.1 describes it, unescaping nothing.
fn parse(line: &str) -> Result<Parsed, String> {
    let rest = line.strip_prefix("LEEF:").ok_or("no LEEF: prefix")?;
    let (version, rest) = rest.split_once('|').ok_or("no version field")?;
    // Vendor, product, version, EventID, then the 2.0 delimiter field; the attributes
    // are everything after that, pipes included.
    let header_count = match version {
        "1.0" => 4,
        "2.0" => 5,
        other => return Err(format!("unknown LEEF version {other:?}")),
    };
    let fields: Vec<&str> = rest.splitn(header_count + 1, '|').collect();
    if fields.len() != header_count + 1 {
        return Err(format!("{} header fields in {line:?}", fields.len() - 1));
    }
    for field in &fields[..header_count] {
        no_raw_breaks("header field", field)?;
    }
    let header: [String; 4] = std::array::from_fn(|i| fields[i].to_string());
    let (delimiter_field, delimiter) = match version {
        "2.0" => (Some(fields[4].to_string()), delimiter_of(fields[4])?),
        _ => (None, '\t'),
    };
    let attributes_text = fields[header_count];
    let mut attributes = Vec::new();
    if !attributes_text.is_empty() {
        for attribute in attributes_text.split(delimiter) {
            let (key, value) = attribute
                .split_once('=')
                .ok_or_else(|| format!("attribute without `=`: {attribute:?}"))?;
            if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(format!("bad attribute name {key:?}"));
            }
            no_raw_breaks("attribute value", value)?;
            attributes.push((key.to_string(), value.to_string()));
        }
    }
    Ok(Parsed {
        version: version.to_string(),
        header,
        delimiter_field,
        delimiter,
        attributes,
    })
}

fn encoder(toml_text: &str) -> LeefEncoder {
    LeefEncoder::new(&config::<LeefConfig>(toml_text)).expect("encoder builds")
}

fn line(encoder: &mut LeefEncoder, json: &str) -> String {
    let mut out = String::new();
    encoder.encode(&event(json).value, &mut out);
    out
}

fn parsed(encoder: &mut LeefEncoder, json: &str) -> Parsed {
    let out = line(encoder, json);
    parse(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// The option sets every fixture goes through: (config, LEEF version, delimiter, ISO time).
const VARIANTS: &[(&str, &str, char, bool)] = &[
    ("version = '1.0'", "1.0", '\t', false),
    ("delimiter = \"\\t\"", "2.0", '\t', false),
    ("delimiter = '^'", "2.0", '^', false),
    ("delimiter = 'x09'", "2.0", '\t', false),
    ("delimiter = '^'\ndev_time = 'iso8601'", "2.0", '^', true),
];

/// Every record of tests/fixtures, each value read back by the spec parser above (which
/// undoes nothing), must be its source value but for the documented replacements: a
/// backslash in particular reads back as one backslash (`NT AUTHORITY\SYSTEM`).
#[test]
fn every_fixture_record_parses_back_to_what_the_preset_says() {
    let records = fixture_records();
    let mut tmp = String::new();
    // The test's own tracker: resolving sources must not disturb the encoder's.
    let mut tracker = Tracker::new(false);
    for (toml_text, version, delimiter, iso) in VARIANTS {
        let mut enc = encoder(toml_text);
        let mut out = String::new();
        let mut checked = 0;
        // Values holding a backslash: the fixtures must have some.
        let mut with_backslash = 0;
        let mut families = BTreeSet::new();
        for (file, record) in &records {
            enc.encode(record, &mut out);
            let p = parse(&out).unwrap_or_else(|e| panic!("{toml_text} {file}: {e}: {out}"));
            assert_eq!((p.version.as_str(), p.delimiter), (*version, *delimiter));
            let preset = &enc.presets[enc.select(record)];
            families.insert(preset.name);
            for (i, field) in p.header.iter().enumerate() {
                let expected = if header_text(&preset.header[i], record, &mut tracker, &mut tmp) {
                    documented_header(&tmp)
                } else {
                    String::new()
                };
                assert_eq!(*field, expected, "{file}: header field {i}");
            }
            // QRadar's sev is 1–10 (§7.3), unlike CEF's 0–10.
            let sev = preset.header[5]
                .get(record)
                .and_then(|got| severity(&got))
                .map(|n| n.max(1).to_string());
            assert_eq!(p.get("sev"), sev.as_deref(), "{file}");
            if let Some(sev) = p.get("sev") {
                assert!((1..=10).contains(&sev.parse::<u8>().expect("number")));
            }
            let name = header_text(&preset.header[4], record, &mut tracker, &mut tmp)
                .then(|| documented_value(&tmp, *delimiter));
            assert_eq!(p.get("name"), name.as_deref(), "{file}");
            let mut allowed: BTreeSet<&str> = ["sev", "name", "devTimeFormat", "unmapped"].into();
            for entry in &preset.entries {
                allowed.insert(entry.key.as_str());
                assert!(entry.label.is_none(), "LEEF names keys after their labels");
                let typed = entry
                    .source
                    .get(record)
                    .is_some_and(|got| typed_text(&got, entry.kind, &mut tmp));
                if !typed {
                    assert_eq!(p.get(&entry.key), None, "{file}: {}", entry.key);
                    continue;
                }
                let max = match entry.kind {
                    Kind::Text(max) => max,
                    _ => usize::MAX,
                };
                let expected = documented(&tmp, *delimiter, max);
                let got = p.get(&entry.key).unwrap_or_else(|| {
                    panic!("{toml_text} {file}: {} missing in {out}", entry.key)
                });
                if entry.key == "devTime" && *iso {
                    // The pattern announced in devTimeFormat, read back with chrono.
                    let t = DateTime::parse_from_str(got, "%Y-%m-%dT%H:%M:%S%.3f%z")
                        .unwrap_or_else(|e| panic!("{file}: devTime {got}: {e}"));
                    assert_eq!(t.timestamp_millis().to_string(), expected, "{file}");
                } else {
                    assert_eq!(got, expected, "{toml_text} {file}: key {}", entry.key);
                }
                with_backslash += usize::from(tmp.contains('\\'));
                checked += 1;
            }
            // devTimeFormat exactly when devTime is written as text (§7.3).
            let format =
                (*iso && p.get("devTime").is_some()).then_some("yyyy-MM-dd'T'HH:mm:ss.SSSZ");
            assert_eq!(p.get("devTimeFormat"), format, "{file}");
            for key in p.keys() {
                assert!(allowed.contains(key), "{file}: unexpected attribute {key}");
            }
            // LEEF has no length limit on custom attributes: the JSON is always whole.
            if let Some(json) = p.get("unmapped") {
                serde_json::from_str::<serde_json::Value>(json)
                    .unwrap_or_else(|e| panic!("{file}: unmapped JSON {json}: {e}"));
            }
        }
        assert!(checked > 500, "{toml_text}: {checked}");
        assert!(with_backslash > 10, "{toml_text}: {with_backslash}");
        for family in [
            "o365_azure_ad",
            "o365_exchange_admin",
            "o365_exchange_mailbox",
            "o365_sharepoint",
            "graph_alert_v2",
            "graph_incident",
            "entra_signin",
            "entra_directory_audit",
            "defender_xdr_event",
        ] {
            assert!(families.contains(family), "no fixture for {family}");
        }
    }
}

#[test]
fn preset_keys_are_translated_to_qradar_names() {
    let mut enc = encoder("delimiter = '^'");
    let p = parsed(
        &mut enc,
        r#"{"RecordType":15,"Workload":"AzureActiveDirectory","CreationTime":"2022-12-12T15:57:57","Id":"i-1","Operation":"UserLoggedIn","UserId":"alice@contoso.example","ClientIP":"203.0.113.7","OrganizationId":"org-1","UserType":0,"ApplicationId":"app"}"#,
    );
    assert_eq!(
        p.header,
        [
            "Microsoft",
            "Office 365 AzureActiveDirectory",
            "1.0",
            "UserLoggedIn"
        ]
    );
    assert_eq!(p.delimiter_field.as_deref(), Some("^"));
    for (key, value) in [
        ("devTime", "1670860677000"),
        ("usrName", "alice@contoso.example"),
        ("src", "203.0.113.7"),
        ("sev", "3"),
        ("cat", "AzureActiveDirectory"),
        ("externalId", "i-1"),
        ("OrganizationId", "org-1"),
        ("RecordType", "15"),
        ("UserType", "0"),
        ("ApplicationId", "app"),
    ] {
        assert_eq!(p.get(key), Some(value), "{key}");
    }
    for cef_only in ["rt", "suser", "cs1", "cs1Label", "cn1", "unmapped"] {
        assert_eq!(p.get(cef_only), None, "{cef_only}");
    }
}

/// Every character the encoder treats specially, next to text that looks like its forms.
const SPECIAL: &str =
    "a|b=c\\d\te\r\nf é 日本 \\= \\| ^ x5e \\x5e \\u005e \0\x07\x1b\x7f\u{85}\u{2028}\u{2029} z";

#[test]
fn special_characters_read_back_as_documented_in_header_and_attributes() {
    for (options, delimiter) in [
        ("version = '1.0'", '\t'),
        ("delimiter = '^'", '^'),
        ("delimiter = '0x7C'", '|'),
        ("delimiter = 'x2603'", '☃'),
    ] {
        let mut enc = encoder(&format!(
            "{options}\npreset = 'generic'\nunmapped = 'drop'\n[mapping]\nvendor = '.v'\nevent_class_id = '.v'\nname = '.v'\n[mapping.extension]\nmsg = '.v'\nusrName = '.v'\n"
        ));
        let out = line(&mut enc, &serde_json::json!({ "v": SPECIAL }).to_string());
        // The delimiter never appears raw inside a value: four attributes, three separators.
        let attributes = &out[out.find("sev=").expect("sev first")..];
        assert_eq!(attributes.matches(delimiter).count(), 3, "{out}");
        let p = parse(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        assert_eq!(p.delimiter, delimiter);
        assert_eq!(p.header[0], documented_header(SPECIAL), "{out}");
        assert_eq!(p.header[3], documented_header(SPECIAL), "{out}");
        for key in ["name", "msg", "usrName"] {
            let expected = documented_value(SPECIAL, delimiter);
            assert_eq!(
                p.get(key),
                Some(expected.as_str()),
                "{options} {key}: {out}"
            );
        }
    }
    // The documented forms spelled out once, so the oracle above cannot drift with them.
    let p = parsed(
        &mut encoder(
            "delimiter = '^'\npreset = 'generic'\nunmapped = 'drop'\n[mapping]\nevent_class_id = '.v'\n[mapping.extension]\nmsg = '.v'\n",
        ),
        &serde_json::json!({ "v": SPECIAL }).to_string(),
    );
    let controls = r"\u0000\u0007\u001b\u007f\u0085\u2028\u2029";
    assert_eq!(
        p.header[3],
        format!(r"a\u007cb=c\d\te\r\nf é 日本 \= \\u007c ^ x5e \x5e \u005e {controls} z")
    );
    assert_eq!(
        p.get("msg"),
        Some(format!(r"a|b=c\d\te\r\nf é 日本 \= \| \u005e x5e \x5e \u005e {controls} z").as_str())
    );
}

#[test]
fn backslashes_are_written_as_themselves() {
    let mut enc = encoder(
        "delimiter = '^'\npreset = 'generic'\nunmapped = 'drop'\n[mapping]\nevent_class_id = '.id'\n[mapping.extension]\nusrName = '.user'\nfilePath = '.path'\nmsg = '.trailing'\n",
    );
    let record = serde_json::json!({
        "id": "Folder\\Event",
        "user": "NT AUTHORITY\\SYSTEM",
        "path": "C:\\Windows\\System32\\svchost.exe",
        "trailing": "C:\\Temp\\",
    });
    let out = line(&mut enc, &record.to_string());
    assert!(!out.contains("\\\\"), "no doubled backslash: {out}");
    let p = parse(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(p.header[3], "Folder\\Event");
    assert_eq!(p.get("usrName"), Some("NT AUTHORITY\\SYSTEM"));
    assert_eq!(
        p.get("filePath"),
        Some("C:\\Windows\\System32\\svchost.exe")
    );
    assert_eq!(p.get("msg"), Some("C:\\Temp\\"));
}

#[test]
fn injection_attempts_stay_inside_their_value() {
    for (options, delimiter) in [
        ("version = '1.0'", "\t"),
        ("delimiter = '^'", "^"),
        ("delimiter = 'x09'", "\t"),
    ] {
        let mut enc = encoder(&format!(
            "{options}\npreset = 'generic'\nunmapped = 'drop'\n[mapping]\nevent_class_id = '.e'\nname = '.n'\nseverity = '.s'\n[mapping.extension]\nmsg = '.m'\naccountName = '.a'\n"
        ));
        let values = [
            ("e", "x|2.0|^|usrName=root".to_string()),
            ("n", format!("n{delimiter}usrName=admin")),
            ("s", "1|sev=10".to_string()),
            ("m", format!("x{delimiter}usrName=admin{delimiter}sev=10")),
            (
                "a",
                format!(
                    "bob\n<13>Nov  2 10:15:30 host LEEF:2.0|Evil|Corp|1|2|^|usrName=pwned\r\nsrc=10.0.0.1{delimiter}cat=evil"
                ),
            ),
        ];
        let json = serde_json::Value::Object(
            values
                .iter()
                .map(|(k, v)| (k.to_string(), serde_json::Value::from(v.as_str())))
                .collect(),
        );
        let out = line(&mut enc, &json.to_string());
        let p = parse(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        // Overrides are added in name order, after the preset's own attributes.
        assert_eq!(p.keys(), ["name", "accountName", "msg"], "{options}: {out}");
        // Read as written (nothing is unescaped): each value is its documented form.
        let delimiter = p.delimiter;
        assert_eq!(p.header[3], documented_header("x|2.0|^|usrName=root"));
        assert_eq!(p.header[3], r"x\u007c2.0\u007c^\u007cusrName=root");
        for (key, source) in [("name", 1), ("msg", 3), ("accountName", 4)] {
            let expected = documented_value(&values[source].1, delimiter);
            assert_eq!(p.get(key), Some(expected.as_str()), "{options} {key}");
        }
    }
}

/// Line breaks other than CR/LF (NEL, U+2028/2029, VT, FF), NUL, ESC and BEL, and a
/// backslash placed to swallow the next separator, forge nothing.
#[test]
fn control_characters_and_backslashes_forge_nothing() {
    let forged = "LEEF:2.0|Evil|Corp|1|2|^|usrName=pwned";
    for (options, delimiter) in [("version = '1.0'", "\t"), ("delimiter = '^'", "^")] {
        let mut enc = encoder(&format!(
            "{options}\npreset = 'generic'\nunmapped = 'drop'\n[mapping]\nvendor = '.v'\nevent_class_id = '.e'\n[mapping.extension]\naccountName = '.a'\nmsg = '.m'\n"
        ));
        let record = serde_json::json!({
            // A header field ending in a backslash: `\|` to parsers that honour it.
            "v": "Evil\\",
            "e": "id\\",
            "a": format!("x\u{85}{forged}\u{2028}{forged}\u{2029}\x0b\x0c{forged}\0\x1b[2J\x07"),
            "m": format!("ends in a backslash\\{delimiter}usrName=root"),
        });
        let out = line(&mut enc, &record.to_string());
        let p = parse(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        assert_eq!(p.keys(), ["sev", "accountName", "msg"], "{options}: {out}");
        assert_eq!(p.header[0], r"Evil\u005c");
        assert_eq!(p.header[3], r"id\u005c");
        // No header field ends in a backslash, so `\|` appears nowhere in the header.
        let header_end = out.find("sev=").expect("attributes");
        assert!(!out[..header_end].contains("\\|"), "{out}");
        let a = record["a"].as_str().expect("text");
        let expected = documented_value(a, p.delimiter);
        assert_eq!(p.get("accountName"), Some(expected.as_str()), "{out}");
        assert!(expected.starts_with(r"x\u0085LEEF:2.0|Evil"), "{expected}");
        assert!(expected.ends_with(r"\u0000\u001b[2J\u0007"), "{expected}");
        let msg = documented_value(
            &format!("ends in a backslash\\{delimiter}usrName=root"),
            p.delimiter,
        );
        assert_eq!(p.get("msg"), Some(msg.as_str()));
    }
}

#[test]
fn list_values_are_joined_with_commas_as_in_cef() {
    let p = parsed(
        &mut encoder("delimiter = '^'"),
        crate::cef::tests::THREAT_INTELLIGENCE_EMAIL,
    );
    assert_eq!(
        p.get("duser"),
        Some("alice@contoso.example,bob@contoso.example")
    );
    assert_eq!(p.get("DeliveryAction"), Some("Blocked,Junked"));
    assert_eq!(
        p.get("unmapped"),
        Some(r#"{"Policies":[{"Action":"Quarantine","Name":"Anti-phish"}]}"#)
    );
}

#[test]
fn sev_is_one_to_ten() {
    let mut enc = encoder("preset = 'generic'\nunmapped = 'drop'\n[mapping]\nseverity = '.s'\n");
    for (s, expected) in [
        ("\"High\"", Some("8")),
        ("\"informational\"", Some("1")),
        ("42", Some("10")),
        ("-1", Some("1")),
        ("0", Some("1")),
        ("\"0\"", Some("1")),
        ("\"5\"", Some("5")),
        ("\"Critical\"", Some("10")),
        // QRadar has no "Unknown": the attribute is left out instead.
        ("\"bogus\"", None),
    ] {
        let p = parsed(&mut enc, &format!("{{\"s\":{s}}}"));
        assert_eq!(p.get("sev"), expected, "{s}");
    }
}

#[test]
fn dev_time_format_is_sent_exactly_with_iso_times() {
    let record = r#"{"CreationTime":"2022-12-12T15:57:57.123Z"}"#;
    let mut enc = encoder("preset = 'generic'\nunmapped = 'drop'\ndev_time = 'iso8601'");
    let p = parsed(&mut enc, record);
    assert_eq!(p.get("devTime"), Some("2022-12-12T15:57:57.123+0000"));
    assert_eq!(p.get("devTimeFormat"), Some("yyyy-MM-dd'T'HH:mm:ss.SSSZ"));
    // The format comes before the time it describes.
    assert_eq!(p.keys(), ["sev", "devTimeFormat", "devTime"]);
    let p = parsed(&mut enc, "{}");
    assert_eq!((p.get("devTime"), p.get("devTimeFormat")), (None, None));
    for options in ["", "dev_time = 'epoch_ms'"] {
        let mut enc = encoder(&format!("{options}\npreset = 'generic'\nunmapped = 'drop'"));
        let p = parsed(&mut enc, record);
        assert_eq!(p.get("devTime"), Some("1670860677123"), "{options}");
        assert_eq!(p.get("devTimeFormat"), None, "{options}");
    }
}

#[test]
fn delimiter_option_forms() {
    for (option, header_field, delimiter) in [
        ("delimiter = \"\\t\"", "x09", '\t'),
        ("delimiter = '\\t'", "x09", '\t'),
        ("delimiter = 'x09'", "x09", '\t'),
        ("delimiter = '0x09'", "x09", '\t'),
        ("delimiter = '0X9'", "x09", '\t'),
        ("delimiter = '^'", "^", '^'),
        ("delimiter = 'x5E'", "^", '^'),
        ("delimiter = '0x5e'", "^", '^'),
        ("delimiter = '|'", "x7C", '|'),
        ("delimiter = ' '", "x20", ' '),
        ("delimiter = '☃'", "x2603", '☃'),
        ("", "x09", '\t'),
    ] {
        let mut enc = encoder(&format!(
            "{option}\npreset = 'generic'\nunmapped = 'drop'\n[mapping.extension]\na = 'x'\nb = 'y'\n"
        ));
        let p = parsed(&mut enc, "{}");
        assert_eq!(p.version, "2.0", "{option}");
        assert_eq!(p.delimiter_field.as_deref(), Some(header_field), "{option}");
        assert_eq!(p.delimiter, delimiter, "{option}");
        assert_eq!(p.get("a").zip(p.get("b")), Some(("x", "y")), "{option}");
    }
    let p = parsed(&mut encoder("version = '1.0'\ndelimiter = 'x09'"), "{}");
    assert_eq!((p.version.as_str(), p.delimiter_field), ("1.0", None));
}

#[test]
fn bad_delimiters_and_names_are_config_errors() {
    use siemflow_core::TransformConfig;
    for bad in [
        "delimiter = ''",
        "delimiter = 'ab'",
        "delimiter = 'a'",
        "delimiter = '_'",
        "delimiter = '='",
        "delimiter = '\\'",
        "delimiter = \"\\n\"",
        "delimiter = 'x0A'",
        // Written raw between attributes, so never a character a line may not hold raw.
        "delimiter = \"\\u001F\"",
        "delimiter = 'x00'",
        "delimiter = 'x1B'",
        "delimiter = 'x85'",
        "delimiter = 'x2028'",
        "delimiter = 'x2029'",
        "delimiter = 'xZZ'",
        "delimiter = 'x12345'",
        "delimiter = '0xD800'",
        // A 2.0 header can only name a delimiter up to U+FFFF (1–4 hex digits, §7.1).
        "delimiter = '😀'",
        "version = '1.0'\ndelimiter = '^'",
        "[mapping.extension]\n'bad key' = '.x'",
        "[mapping.extension]\n'a=b' = '.x'",
        "preset = 'nope'",
        "unmapped_key = 'usrName'",
        "unmapped_key = 'a^b'",
        "target_field = ''",
    ] {
        let config: LeefConfig = config(bad);
        assert!(!config.check().is_empty(), "{bad}");
    }
    assert!(toml::from_str::<LeefConfig>("version = '3.0'").is_err());
    assert!(toml::from_str::<LeefConfig>("dev_time = 'local'").is_err());
}

#[test]
fn limits_truncate_and_count_and_bad_values_are_kept_aside() {
    let mut enc = encoder(
        "preset = 'generic'\n[mapping]\nevent_class_id = '.v'\n[mapping.extension]\nusrName = '.v'\nsrc = '.ip'\ndevTime = '.when'\n",
    );
    let long = "é".repeat(300);
    let json = serde_json::json!({ "v": long, "ip": "not-an-ip", "when": "someday" });
    let p = parsed(&mut enc, &json.to_string());
    assert_eq!(p.header[3].chars().count(), 255);
    assert_eq!(p.get("usrName").map(|v| v.chars().count()), Some(255));
    assert_eq!((p.get("src"), p.get("devTime")), (None, None));
    assert_eq!(enc.stats.truncated, 2);
    assert_eq!(enc.stats.invalid, 2);
    // Cut and mistyped values stay whole in the unmapped JSON; the cut EventID is kept
    // whole under `siemflow_truncated` (it consumed `v`, so `v` is not repeated).
    let unmapped: serde_json::Value =
        serde_json::from_str(p.get("unmapped").expect("unmapped")).expect("JSON");
    assert_eq!(
        unmapped,
        serde_json::json!({
            "ip": "not-an-ip",
            "when": "someday",
            "siemflow_truncated": { "event_class_id": long },
        })
    );
    let mut enc = encoder("preset = 'generic'\n[mapping.extension]\nusrName = '.v'\n");
    let p = parsed(&mut enc, &json.to_string());
    let unmapped: serde_json::Value =
        serde_json::from_str(p.get("unmapped").expect("unmapped")).expect("JSON");
    assert_eq!(unmapped["v"], long.as_str());
}

#[test]
fn unmapped_fields_go_to_json_or_are_dropped() {
    let record = r#"{"RecordType":15,"Workload":"AzureActiveDirectory","CreationTime":"2022-12-12 15:57:57","Operation":"UserLoggedIn","Extra":{"deep":["a\tb","c^d"]}}"#;
    let expected = Some(r#"{"Extra":{"deep":["a\tb","c^d"]}}"#);
    // The `^` delimiter inside the JSON is written `\u005e`, JSON's own escape: the
    // text stays valid JSON and reads back as the record's fields.
    let p = parsed(&mut encoder("delimiter = '^'"), record);
    let json = p.get("unmapped").expect("unmapped");
    assert_eq!(json, r#"{"Extra":{"deep":["a\tb","c\u005ed"]}}"#);
    let read: serde_json::Value = serde_json::from_str(json).expect("valid JSON");
    assert_eq!(
        read,
        serde_json::json!({ "Extra": { "deep": ["a\tb", "c^d"] } })
    );
    let p = parsed(&mut encoder(""), record);
    assert_eq!(p.get("unmapped"), expected);
    let p = parsed(&mut encoder("unmapped_key = 'rest'"), record);
    assert_eq!((p.get("rest"), p.get("unmapped")), (expected, None));
    let p = parsed(&mut encoder("unmapped = 'drop'"), record);
    assert_eq!(p.get("unmapped"), None);
}

#[test]
fn user_overrides_use_leef_names() {
    let mut enc = encoder(
        "[mapping]\nname = '{{ .Operation }} by {{ .UserId }}'\nevent_class_id = 'signin'\n[mapping.extension]\nusrName = '.Actor[1].ID'\nOrganizationId = ''\nresource = '.Custom'\n",
    );
    let p = parsed(
        &mut enc,
        r#"{"RecordType":15,"Workload":"AzureActiveDirectory","Operation":"UserLoggedIn","UserId":"a@b","Actor":[{"ID":"1"},{"ID":"x@y"}],"Custom":"c","OrganizationId":"o"}"#,
    );
    assert_eq!(p.header[3], "signin");
    assert_eq!(p.get("name"), Some("UserLoggedIn by a@b"));
    assert_eq!(p.get("usrName"), Some("x@y"));
    assert_eq!(p.get("resource"), Some("c"));
    assert_eq!(p.get("OrganizationId"), None);
    assert_eq!(
        enc.preset_for(&event(r#"{"RecordType":15,"Workload":"AzureActiveDirectory"}"#).value),
        "o365_azure_ad"
    );
}

#[test]
fn the_parser_rejects_what_it_should() {
    // The oracle must be able to say no, or the tests above prove nothing.
    for bad in [
        "LEEF:2.0|V|P|1|E|",
        "LEEF:2.0|V|P|1|E|xZZ|a=b",
        "LEEF:1.0|V|P|1|E|a=b\tc",
        "LEEF:1.0|V|P|1|E|a b=c",
        "LEEF:1.0|V|P|1|E|a=b\nLEEF:1.0|V|P|1|E|",
        "LEEF:2.0|V|P|1|E|^|a=b\tc",
        "LEEF:2.0|V|P|1|E|^|a=b\u{2028}c",
        "LEEF:2.0|V|P|1|E|^|a=b\u{85}c",
        "LEEF:2.0|V|P|1|E|^|a=\x1b[2J",
        "LEEF:2.0|V|P|1|E|^|a=\0",
        "LEEF:1.0|V\r|P|1|E|",
        "LEEF:1.0|V|P|1",
        "LEEF:3.0|V|P|1|E|",
        "CEF:0|V|P|1|E|N|3|",
    ] {
        assert!(parse(bad).is_err(), "{bad:?}");
    }
    // Backslashes mean nothing to it: `\|` splits like any pipe, `\x5e` is text.
    let p = parse(r"LEEF:2.0|V\|x|P|1|0x5E|a=b\x5ec^d=\\\t|e").expect("valid");
    assert_eq!(p.header, [r"V\", "x", "P", "1"]);
    assert_eq!(p.delimiter, '^');
    assert_eq!(
        p.attributes,
        [
            ("a".to_string(), r"b\x5ec".to_string()),
            ("d".to_string(), r"\\\t|e".to_string())
        ]
    );
}

#[test]
fn the_transform_puts_the_line_in_the_target_field() {
    let mut built = build::<LeefConfig>(
        "to_leef",
        "leef",
        "target_field = 'leef'\npreset = 'generic'\ndelimiter = '^'",
    );
    let mut emitted = built.run(vec![event(r#"{"Operation":"X"}"#)]);
    let events = std::mem::take(&mut emitted.default);
    assert_eq!(events.len(), 1);
    let body = serde_json::to_value(&events[0].value).expect("json");
    assert_eq!(
        body,
        serde_json::json!({ "leef": "LEEF:2.0|Microsoft|Microsoft 365|1.0|X|^|sev=3^name=X" })
    );
    crate::test_support::deliver_all(events);
}

/// The transform hands the encoder the record itself (taken apart for the unmapped JSON
/// instead of copied): its lines must be the ones `encode` writes from a borrowed record.
#[test]
fn the_transform_writes_the_lines_encode_writes_unmapped_json_included() {
    const TOML: &str = "target_field = 'out'\ndelimiter = '^'";
    let records = fixture_records();
    let mut encoder = LeefEncoder::new(&config::<LeefConfig>(TOML)).expect("encoder builds");
    let expected: Vec<String> = records
        .iter()
        .map(|(_, record)| {
            let mut out = String::new();
            encoder.encode(record, &mut out);
            out
        })
        .collect();
    assert!(
        expected.iter().any(|line| line.contains("unmapped=")),
        "some fixture records keep unmapped fields"
    );
    let mut built = build::<LeefConfig>("to_leef", "leef", TOML);
    let batch = records
        .iter()
        .map(|(_, record)| siemflow_core::Event::new(record.clone()))
        .collect();
    let events = std::mem::take(&mut built.run(batch).default);
    let lines: Vec<String> = events
        .iter()
        .map(|e| {
            let body = serde_json::to_value(&e.value).expect("json");
            body["out"].as_str().expect("a line").to_string()
        })
        .collect();
    assert_eq!(lines, expected);
    crate::test_support::deliver_all(events);
}

/// The preset section of docs/transforms/leef.md, generated from the definitions
/// through the transform's own key translation.
fn preset_docs() -> String {
    use crate::siem_mapping::{PRESETS, preset_rows};
    let mut out = String::new();
    for preset in PRESETS {
        let h = &preset.header;
        out.push_str(&format!(
            "### `{}`\n\nHeader: vendor `{}`, product `{}`, version `{}`, EventID `{}`; `name` attribute `{}`; `sev` `{}`.\n\n| attribute | from |\n|---|---|\n",
            preset.name, h[0], h[1], h[2], h[3], h[4], h[5]
        ));
        for (key, text) in preset_rows(preset, super::keys::translate) {
            out.push_str(&format!("| `{key}` | `{text}` |\n"));
        }
        out.push('\n');
    }
    out
}

#[test]
fn preset_tables_in_the_docs_match_the_definitions() {
    crate::cef::tests::check_docs_section(
        "leef.md",
        "### `o365_azure_ad`",
        "## Overrides",
        &preset_docs(),
    );
}

#[test]
fn defender_presets_read_back_in_leef() {
    let mut enc = encoder("delimiter = '^'");
    let records = fixture_records();
    let find = |file: &str, n: usize| {
        records
            .iter()
            .filter(|(f, _)| f == file)
            .nth(n)
            .map(|(_, r)| r.clone())
            .expect("fixture record")
    };
    let mut out = String::new();
    // The first activity and the first alert of Microsoft's agent sample.
    let file = "mda_api_records_for_agent_lines.ndjson";
    enc.encode(&find(file, 0), &mut out);
    let p = parse(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(
        p.header,
        ["MCAS", "SIEM_Agent", "1.0", "EVENT_CATEGORY_LOGOUT"]
    );
    for (key, value) in [
        ("name", "Log out"),
        ("usrName", "admin@contoso.com"),
        ("dvc", "13.82.149.151"),
        (
            "targetObjects",
            "admin@contoso.com,admin@contoso.com,admin@contoso.com",
        ),
        ("devTime", "1511373004000"),
    ] {
        assert_eq!(p.get(key), Some(value), "{key}: {out}");
    }
    assert_eq!(p.get("DeviceIPv6Address"), None);
    enc.encode(&find(file, 6), &mut out);
    let p = parse(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(p.header[3], "ALERT_CABINET_EVENT_MATCH_AUDIT");
    for (key, value) in [
        ("sev", "3"),
        ("name", "myPolicy"),
        ("usrName", "admin@box-contoso.com"),
        ("destinationServiceName", "Box"),
        (
            "relatedAudits",
            "1500151288183_acc891bf-33e1-424b-a021-0d4370789660",
        ),
        ("policyIDs", "59f0ab82f797fa0681e9b1c7"),
        (
            "portalURL",
            "https://cloud-app-security.com/#/alerts/596a7e360c204203a335a3fb",
        ),
    ] {
        assert_eq!(p.get(key), Some(value), "{key}: {out}");
    }
    // A Defender for Endpoint alert with an UnSpecified severity: no `sev` at all.
    enc.encode(&find("mde_alerts.ndjson", 0), &mut out);
    let p = parse(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(p.get("sev"), None);
    for (key, value) in [
        ("usrName", "alex"),
        ("domain", "CONTOSO"),
        ("src", "203.0.113.45"),
        ("url", "https://203.0.113.45/payload.bin?a=1&b=2"),
        ("devTime", "1788258090512"),
        ("LastUpdateTime", "1788258300100"),
        ("MitreTechniques", "T1071.001,T1105"),
    ] {
        assert_eq!(p.get(key), Some(value), "{key}: {out}");
    }
}
