//! CEF tests: every fixture record round-trips through VRL's `parse_cef` (a parser we did
//! not write), escaping, injection attempts, limits and options.

use vrl::value::{ObjectMap, Value};

use super::{CefConfig, CefEncoder, keys};
use crate::siem_mapping::{Kind, Source, tests::fixture_records, typed_text};
use crate::test_support::{build, config, event};
use crate::vrl_program::{Access, VrlRunner, compile, utc};

/// Parses a line with VRL's stdlib `parse_cef` (custom fields left untranslated).
struct Oracle(VrlRunner);

impl Oracle {
    fn new() -> Self {
        let compiled = compile("parse_cef!(.line)", "test", Access::ReadOnly).expect("compiles");
        Oracle(VrlRunner::new(compiled.program, utc()))
    }

    fn parse(&mut self, line: &str) -> ObjectMap {
        let mut object = ObjectMap::new();
        object.insert("line".into(), Value::from(line));
        let mut target = Value::Object(object);
        match self.0.run(&mut target) {
            Ok(Value::Object(map)) => map,
            other => panic!("parse_cef failed on {line:?}: {other:?}"),
        }
    }
}

fn get(map: &ObjectMap, key: &str) -> Option<String> {
    map.get(key).map(|v| match v.to_str_lossy() {
        Some(s) => s.to_string(),
        None => format!("{v:?}"),
    })
}

/// What VRL yields for a value we wrote: it maps `\r` to LF, drops trailing spaces
/// before the next key, and strips surrounding double quotes.
fn as_vrl_sees(value: &str) -> String {
    let mut v = value.replace('\r', "\n").trim_end_matches(' ').to_string();
    if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
        v = v[1..v.len() - 1].to_string();
    }
    v
}

fn encoder(toml_text: &str) -> CefEncoder {
    CefEncoder::new(&config::<CefConfig>(toml_text)).expect("encoder builds")
}

fn line(encoder: &mut CefEncoder, json: &str) -> String {
    let mut out = String::new();
    encoder.encode(&event(json).value, &mut out);
    out
}

#[test]
fn every_fixture_record_round_trips_through_vrl_parse_cef() {
    let mut oracle = Oracle::new();
    let mut enc = encoder("");
    let mut out = String::new();
    let mut tmp = String::new();
    let mut checked = 0;
    for (file, record) in fixture_records() {
        enc.encode(&record, &mut out);
        assert!(!out.contains('\n') && !out.contains('\r'), "{file}: {out}");
        let parsed = oracle.parse(&out);
        let preset = &enc.presets[enc.select(&record)];
        assert_eq!(
            get(&parsed, "deviceVendor").as_deref(),
            Some(preset.header[0].const_text())
        );
        for entry in &preset.entries {
            let Some(got) = entry.source.get(&record) else {
                assert!(
                    !parsed.contains_key(entry.key.as_str()),
                    "{file}: {}",
                    entry.key
                );
                continue;
            };
            if !typed_text(&got, entry.kind, &mut tmp) {
                continue;
            }
            let max = match entry.kind {
                Kind::Text(max) => max,
                _ => usize::MAX,
            };
            let expected: String = tmp.chars().take(max).collect();
            assert_eq!(
                get(&parsed, &entry.key).map(|v| as_vrl_sees(&v)),
                Some(as_vrl_sees(&expected)),
                "{file}: key {} in {out}",
                entry.key
            );
            if let Some((label_key, label)) = &entry.label {
                assert_eq!(get(&parsed, label_key).as_deref(), Some(label.as_str()));
            }
            checked += 1;
        }
        if let Some(json) = get(&parsed, "cs6") {
            assert_eq!(get(&parsed, "cs6Label").as_deref(), Some("unmapped"));
            // Past cs6's 4000 characters the JSON is cut (and counted as truncated).
            if json.chars().count() < 4000 {
                serde_json::from_str::<serde_json::Value>(&json)
                    .unwrap_or_else(|e| panic!("{file}: unmapped JSON {json}: {e}"));
            }
        }
    }
    assert!(checked > 500, "{checked}");
}

impl Source {
    fn const_text(&self) -> &str {
        match self {
            Source::Const(text) => text,
            _ => "",
        }
    }
}

const SPECIAL: &str = "a|b=c\\d\te\r\nf é 日本 \\= \\| z";

#[test]
fn special_characters_survive_header_and_extension() {
    let mut enc = encoder(
        "preset = 'generic'\nunmapped = 'drop'\n[mapping]\nname = '.v'\nvendor = '.v'\n[mapping.extension]\nmsg = '.v'\ncs1 = '.v'\ncs1Label = 'Spé|cial=label'\n",
    );
    let json = serde_json::json!({ "v": SPECIAL }).to_string();
    let out = line(&mut enc, &json);
    assert!(
        out.starts_with("CEF:0|a\\|b=c\\\\d\te  f é 日本 \\\\= \\\\\\| z|"),
        "{out}"
    );
    assert!(
        out.contains("msg=a|b\\=c\\\\d\te\\r\\nf é 日本 \\\\\\= \\\\| z"),
        "{out}"
    );
    let parsed = Oracle::new().parse(&out);
    assert_eq!(get(&parsed, "msg"), Some(as_vrl_sees(SPECIAL)));
    assert_eq!(get(&parsed, "cs1"), Some(as_vrl_sees(SPECIAL)));
    assert_eq!(get(&parsed, "cs1Label").as_deref(), Some("Spé|cial=label"));
    // VRL drops a header value's final escaped pipe (`\\\|` at the end); compare up to it.
    assert!(
        get(&parsed, "name").is_some_and(|n| n.starts_with("a|b=c\\d\te  f é 日本 \\= \\")),
        "{out}"
    );
}

#[test]
fn injection_attempts_stay_inside_their_value() {
    let mut enc = encoder(
        "preset = 'generic'\nunmapped = 'drop'\n[mapping]\nname = '.n'\n[mapping.extension]\nmsg = '.m'\nsuser = '.u'\n",
    );
    let json = serde_json::json!({
        "n": "x|10|suser=root act=evil",
        "m": "hi act=deleteAll cs1=evil cs1Label=x",
        "u": "bob\n<13>Nov  2 10:15:30 host CEF:0|Evil|Corp|1|2|3|10|act=pwned",
    })
    .to_string();
    let out = line(&mut enc, &json);
    assert!(!out.contains('\n'), "{out}");
    let parsed = Oracle::new().parse(&out);
    let keys: Vec<&str> = parsed.keys().map(|k| k.as_str()).collect();
    for forbidden in ["act", "cs1", "cs1Label"] {
        assert!(!keys.contains(&forbidden), "{forbidden} injected: {out}");
    }
    assert_eq!(
        get(&parsed, "name").as_deref(),
        Some("x|10|suser=root act=evil")
    );
    assert_eq!(get(&parsed, "severity").as_deref(), Some("3"));
    assert_eq!(
        get(&parsed, "msg").as_deref(),
        Some("hi act=deleteAll cs1=evil cs1Label=x")
    );
    assert!(get(&parsed, "suser").is_some_and(|u| u.starts_with("bob\n<13>")));
}

#[test]
fn the_eighth_pipe_is_always_written() {
    let mut enc = encoder("preset = 'generic'\nunmapped = 'drop'\n[mapping]\nseverity = '7'\n");
    assert_eq!(
        line(&mut enc, "{}"),
        "CEF:0|Microsoft|Microsoft 365|1.0|||7|"
    );
    let parsed = Oracle::new().parse("CEF:0|Microsoft|Microsoft 365|1.0|||7|");
    assert_eq!(get(&parsed, "severity").as_deref(), Some("7"));
}

#[test]
fn header_and_value_limits_truncate_and_count() {
    let mut enc = encoder(
        "preset = 'generic'\nunmapped = 'drop'\n[mapping]\nvendor = '.v'\nname = '.v'\n[mapping.extension]\nexternalId = '.v'\nact = '.v'\n",
    );
    let long = "é".repeat(600);
    let out = line(&mut enc, &serde_json::json!({ "v": long }).to_string());
    let parsed = Oracle::new().parse(&out);
    assert_eq!(
        get(&parsed, "deviceVendor").map(|v| v.chars().count()),
        Some(63)
    );
    assert_eq!(get(&parsed, "name").map(|v| v.chars().count()), Some(512));
    assert_eq!(
        get(&parsed, "externalId").map(|v| v.chars().count()),
        Some(40)
    );
    assert_eq!(get(&parsed, "act").map(|v| v.chars().count()), Some(63));
    assert_eq!(enc.stats.truncated, 4);
}

#[test]
fn a_truncated_value_is_kept_whole_in_the_unmapped_json() {
    let mut enc = encoder("preset = 'generic'\n[mapping.extension]\nexternalId = '.Id'\n");
    let id = "x".repeat(50);
    let out = line(&mut enc, &serde_json::json!({ "Id": id }).to_string());
    let parsed = Oracle::new().parse(&out);
    assert_eq!(get(&parsed, "externalId").map(|v| v.len()), Some(40));
    assert_eq!(get(&parsed, "cs6"), Some(format!("{{\"Id\":\"{id}\"}}")));
}

#[test]
fn severity_is_zero_to_ten_or_unknown() {
    let mut enc = encoder("preset = 'generic'\nunmapped = 'drop'\n[mapping]\nseverity = '.s'\n");
    let mut oracle = Oracle::new();
    for (s, expected) in [
        ("\"High\"", "8"),
        ("\"informational\"", "1"),
        ("42", "10"),
        ("-1", "0"),
        ("\"5\"", "5"),
        ("\"bogus\"", "Unknown"),
    ] {
        let out = line(&mut enc, &format!("{{\"s\":{s}}}"));
        assert_eq!(
            get(&oracle.parse(&out), "severity").as_deref(),
            Some(expected),
            "{s}"
        );
    }
}

#[test]
fn timestamps_are_epoch_milliseconds_and_bad_values_are_kept_aside() {
    let mut enc = encoder("preset = 'generic'");
    let out = line(
        &mut enc,
        r#"{"CreationTime":"2022-12-12 15:57:57","ClientIP":"not-an-ip"}"#,
    );
    let parsed = Oracle::new().parse(&out);
    assert_eq!(get(&parsed, "rt").as_deref(), Some("1670860677000"));
    let mut enc =
        encoder("preset = 'generic'\n[mapping.extension]\nsrc = '.ClientIP'\nrt = '.When'\n");
    let out = line(&mut enc, r#"{"When":"someday","ClientIP":"not-an-ip"}"#);
    let parsed = Oracle::new().parse(&out);
    assert!(
        !parsed.contains_key("src") && !parsed.contains_key("rt"),
        "{out}"
    );
    assert_eq!(
        get(&parsed, "cs6").as_deref(),
        Some(r#"{"ClientIP":"not-an-ip","When":"someday"}"#)
    );
    assert_eq!(enc.stats.invalid, 2);
}

#[test]
fn unmapped_fields_go_to_json_or_are_dropped() {
    let record = r#"{"RecordType":15,"Workload":"AzureActiveDirectory","CreationTime":"2022-12-12 15:57:57","Operation":"UserLoggedIn","Extra":{"deep":[1,2]}}"#;
    let mut enc = encoder("");
    let parsed = Oracle::new().parse(&line(&mut enc, record));
    assert_eq!(
        get(&parsed, "cs6").as_deref(),
        Some(r#"{"Extra":{"deep":[1,2]}}"#)
    );
    let mut enc = encoder("unmapped_key = 'flexString2'\nunmapped_label = 'rest'");
    let parsed = Oracle::new().parse(&line(&mut enc, record));
    assert_eq!(get(&parsed, "flexString2Label").as_deref(), Some("rest"));
    let mut enc = encoder("unmapped = 'drop'");
    let parsed = Oracle::new().parse(&line(&mut enc, record));
    assert!(!parsed.contains_key("cs6"));
}

#[test]
fn user_overrides_extend_a_preset() {
    let mut enc = encoder(
        "[mapping]\nname = '{{ .Operation }} by {{ .UserId }}'\n[mapping.extension]\nsuser = '.Actor[1].ID'\nflexString1 = '.Custom'\nflexString1Label = 'Custom'\n",
    );
    let out = line(
        &mut enc,
        r#"{"RecordType":15,"Workload":"AzureActiveDirectory","Operation":"UserLoggedIn","UserId":"a@b","Actor":[{"ID":"1"},{"ID":"x@y"}],"Custom":"c"}"#,
    );
    let parsed = Oracle::new().parse(&out);
    assert_eq!(get(&parsed, "name").as_deref(), Some("UserLoggedIn by a@b"));
    assert_eq!(get(&parsed, "suser").as_deref(), Some("x@y"));
    assert_eq!(get(&parsed, "flexString1").as_deref(), Some("c"));
    assert_eq!(
        enc.preset_for(&event(r#"{"RecordType":15,"Workload":"AzureActiveDirectory"}"#).value),
        "o365_azure_ad"
    );
}

#[test]
fn invalid_keys_and_lonely_custom_keys_are_config_errors() {
    use siemflow_core::TransformConfig;
    for bad in [
        "[mapping.extension]\n'bad key' = '.x'",
        "[mapping.extension]\n'a=b' = '.x'",
        "[mapping.extension]\ncs5 = '.x'\ncs5Label = ''",
        "preset = 'generic'\n[mapping.extension]\ncs2 = '.x'",
        "preset = 'nope'",
        "unmapped_key = 'cs1'",
    ] {
        let config: CefConfig = config(bad);
        assert!(!config.check().is_empty(), "{bad}");
    }
    assert!(keys::kind("deviceCustomDate1").is_ok_and(|k| k == Kind::Time));
}

#[test]
fn the_transform_puts_the_line_in_the_target_field() {
    let mut built = build::<CefConfig>("to_cef", "cef", "target_field = 'cef'\npreset = 'generic'");
    let mut emitted = built.run(vec![event(r#"{"Operation":"X"}"#)]);
    let events = std::mem::take(&mut emitted.default);
    assert_eq!(events.len(), 1);
    let body = serde_json::to_value(&events[0].value).expect("json");
    assert_eq!(body["cef"], "CEF:0|Microsoft|Microsoft 365|1.0|X|X|3|");
    crate::test_support::deliver_all(events);
}
