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
        // The syslog source's reader (siemflow_core::cef) reads our lines as VRL does.
        assert_eq!(
            siemflow_core::cef::parse(&out).as_ref(),
            Ok(&parsed),
            "{file}: {out}"
        );
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
            // Fitted to cs6's 4000 characters by leaving fields out: always valid JSON.
            assert!(json.chars().count() <= 4000, "{file}");
            serde_json::from_str::<serde_json::Value>(&json)
                .unwrap_or_else(|e| panic!("{file}: unmapped JSON {json}: {e}"));
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

/// A Threat Intelligence email record as the Management Activity schema describes it:
/// `Recipients` is a list of addresses, `ExtendedProperties`-style lists hold objects.
pub(crate) const THREAT_INTELLIGENCE_EMAIL: &str = r#"{"RecordType":28,"Workload":"ThreatIntelligence","CreationTime":"2024-11-02T10:15:30","Id":"ti-1","Operation":"TIMailData","P1Sender":"mallory@fabrikam.example","Recipients":["alice@contoso.example","bob@contoso.example"],"Subject":"Invoice","Verdict":"Phish","DeliveryAction":["Blocked","Junked"],"Policies":[{"Name":"Anti-phish","Action":"Quarantine"}]}"#;

#[test]
fn list_values_are_joined_with_commas_as_microsofts_agent_does() {
    let mut enc = encoder("");
    let out = line(&mut enc, THREAT_INTELLIGENCE_EMAIL);
    assert!(
        out.contains(" duser=alice@contoso.example,bob@contoso.example "),
        "{out}"
    );
    let parsed = Oracle::new().parse(&out);
    assert_eq!(
        get(&parsed, "duser").as_deref(),
        Some("alice@contoso.example,bob@contoso.example")
    );
    assert_eq!(get(&parsed, "cs5").as_deref(), Some("Blocked,Junked"));
    // A list of objects has no plain form: it stays JSON (here in the unmapped cs6).
    let cs6: serde_json::Value =
        serde_json::from_str(&get(&parsed, "cs6").expect("cs6")).expect("JSON");
    assert_eq!(
        cs6,
        serde_json::json!({ "Policies": [{ "Name": "Anti-phish", "Action": "Quarantine" }] })
    );
    // The same join in a header field.
    let mut enc = encoder("preset = 'generic'\nunmapped = 'drop'\n[mapping]\nname = '.to'\n");
    let out = line(&mut enc, r#"{"to":["a@x.example","b@x.example"]}"#);
    assert_eq!(
        get(&Oracle::new().parse(&out), "name").as_deref(),
        Some("a@x.example,b@x.example")
    );
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

/// The transform hands the encoder the record itself (taken apart for the unmapped JSON
/// instead of copied): its lines must be the ones `encode` writes from a borrowed record.
#[test]
fn the_transform_writes_the_lines_encode_writes_unmapped_json_included() {
    const TOML: &str = "target_field = 'out'";
    let records = fixture_records();
    let mut encoder = encoder(TOML);
    let expected: Vec<String> = records
        .iter()
        .map(|(_, record)| {
            let mut out = String::new();
            encoder.encode(record, &mut out);
            out
        })
        .collect();
    assert!(
        expected.iter().any(|line| line.contains("cs6=")),
        "some fixture records keep unmapped fields"
    );
    let mut built = build::<CefConfig>("to_cef", "cef", TOML);
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

/// The fixture folder of Microsoft's Defender for Cloud Apps agent sample.
fn mda_fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/siem-mapping/microsoftdocs-cloudappsecurity")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Keys of Microsoft's agent lines the API records cannot reproduce, and why (the same
/// list is in docs/transforms/cef.md, `mda_activity` and `mda_alert`).
const MDA_NOT_DERIVABLE: &[(&str, &str)] = &[
    // The agent's own version; the presets write "1.0".
    ("deviceVersion", "agent version"),
    // APPID_SERVICENOW, APPID_BOX…: names from the agent's internal table; the API has
    // only the numeric app id (APPID_33626 shows the number form), which the presets write.
    ("cs2", "symbolic app ids"),
];

/// A value of Microsoft's line as it compares to ours: the 0.102 agent doubled the single
/// quotes of alert descriptions (`''myPolicy''`), a formatting artifact the API text lacks.
fn agent_value(key: &str, value: &str) -> String {
    if key == "msg" {
        value.replace("''", "'")
    } else {
        value.to_string()
    }
}

#[test]
fn mda_presets_reproduce_microsofts_agent_lines() {
    let lines = mda_fixture("mcas_siem_agent_cef.log");
    let records = mda_fixture("mda_api_records_for_agent_lines.ndjson");
    let lines: Vec<&str> = lines.lines().filter(|l| !l.trim().is_empty()).collect();
    let records: Vec<&str> = records.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!((lines.len(), records.len()), (12, 12));
    let mut oracle = Oracle::new();
    let mut auto = encoder("");
    // The activities API gives no portal link: the agent's is rebuilt from the tenant's
    // portal host, which only the user knows (docs: `mda_activity`).
    let mut activities = encoder(
        "preset = 'mda_activity'\n[mapping.extension]\ncs1 = 'https://contoso.portal.cloudappsecurity.com/#/audits?activity.id=eq({{ ._id }},)'\n",
    );
    let mut compared = 0;
    for (n, (agent_line, record)) in lines.iter().zip(&records).enumerate() {
        let agent = oracle.parse(&agent_line[agent_line.find("CEF:").expect("CEF line")..]);
        let record = event(record).value;
        let is_alert = n >= 6;
        assert_eq!(
            auto.preset_for(&record),
            if is_alert {
                "mda_alert"
            } else {
                "mda_activity"
            },
            "line {n}"
        );
        let mut ours_line = String::new();
        if is_alert {
            auto.encode(&record, &mut ours_line);
        } else {
            activities.encode(&record, &mut ours_line);
        }
        let ours = oracle.parse(&ours_line);
        for key in agent.keys() {
            let key = key.as_str();
            let value = agent_value(key, &get(&agent, key).unwrap_or_default());
            if MDA_NOT_DERIVABLE.iter().any(|(k, _)| *k == key) {
                continue;
            }
            let base = key.strip_suffix("Label").filter(|b| agent.contains_key(*b));
            let mine = get(&ours, key);
            match base {
                // A label is written with its key; the agent also labels empty keys.
                Some(base) if get(&ours, base).is_none() => {
                    assert!(
                        mine.is_none(),
                        "line {n}: {key} without {base}: {ours_line}"
                    );
                }
                _ if value.is_empty() => {
                    // The agent prints empty keys (`dvc=`); the API has no value, so we
                    // write none: absent and empty carry the same information.
                    assert!(
                        mine.as_deref().unwrap_or("").is_empty(),
                        "line {n}: {key} should be empty, got {mine:?}: {ours_line}"
                    );
                }
                _ if key == "externalId" && value.chars().count() > 40 => {
                    // The agent's 50-character activity ids break CEF's 40-character
                    // externalId limit; we cut at 40 (counted). The whole id is in the
                    // portal link here (the template read it); without one, in cs6.
                    let cut: String = value.chars().take(40).collect();
                    assert_eq!(mine.as_deref(), Some(cut.as_str()), "line {n}");
                    assert!(
                        get(&ours, "cs1").is_some_and(|url| url.contains(value.as_str())),
                        "line {n}"
                    );
                    let mut plain = String::new();
                    auto.encode(&record, &mut plain);
                    let cs6: serde_json::Value =
                        serde_json::from_str(&get(&oracle.parse(&plain), "cs6").expect("cs6"))
                            .expect("JSON");
                    assert_eq!(cs6["_id"], value.as_str(), "line {n}");
                }
                _ => assert_eq!(
                    mine.as_deref(),
                    Some(value.as_str()),
                    "line {n}: key {key}\nagent: {agent_line}\nours:  {ours_line}"
                ),
            }
            compared += 1;
        }
        // The presets write the numeric app ids instead of the agent's APPID_* names.
        let app = get(&agent, "cs2").expect("cs2");
        let ours_app = get(&ours, "cs2").expect("our cs2");
        assert!(ours_app.bytes().all(|b| b.is_ascii_digit()), "{ours_app}");
        if let Some(number) = app
            .strip_prefix("APPID_")
            .filter(|a| a.bytes().all(|b| b.is_ascii_digit()))
        {
            assert_eq!(ours_app, number, "line {n}");
        }
        assert_eq!(get(&ours, "deviceVersion").as_deref(), Some("1.0"));
    }
    // Every key of every line, labels included, minus the two listed exceptions.
    assert!(compared > 200, "{compared}");
}

#[test]
fn mda_severity_value_is_mdas_enum_on_the_cef_scale() {
    let mut enc = encoder("preset = 'mda_alert'\nunmapped = 'drop'");
    let mut oracle = Oracle::new();
    for (value, expected) in [
        ("0", "3"),
        ("1", "5"),
        ("2", "8"),
        // 3 is informational in MDA's enum, not CEF 3 (low).
        ("3", "1"),
        ("\"High\"", "8"),
        ("9", "9"),
    ] {
        let out = line(
            &mut enc,
            &format!(r#"{{"_id":"a","title":"t","severityValue":{value}}}"#),
        );
        assert_eq!(
            get(&oracle.parse(&out), "severity").as_deref(),
            Some(expected),
            "{value}"
        );
    }
}

#[test]
fn mda_client_addresses_split_into_ipv4_and_ipv6_keys() {
    let mut enc = encoder("unmapped = 'drop'");
    let mut oracle = Oracle::new();
    let activity = |ip: &str| {
        format!(r#"{{"_id":"1_x","appName":"Box","timestamp":1,"device":{{"clientIP":"{ip}"}}}}"#)
    };
    let alert = |ip: &str| {
        format!(
            r#"{{"_id":"a","title":"t","severityValue":1,"entities":[{{"id":"{ip}","type":"ip"}},{{"id":"192.0.2.9","type":"ip"}}]}}"#
        )
    };
    let v4 = oracle.parse(&line(&mut enc, &activity("198.51.100.7")));
    assert_eq!(get(&v4, "dvc").as_deref(), Some("198.51.100.7"));
    assert_eq!((get(&v4, "c6a1"), get(&v4, "c6a1Label")), (None, None));
    let v6 = oracle.parse(&line(&mut enc, &activity("2001:db8::7")));
    assert_eq!(get(&v6, "dvc"), None);
    assert_eq!(get(&v6, "c6a1").as_deref(), Some("2001:db8::7"));
    assert_eq!(
        get(&v6, "c6a1Label").as_deref(),
        Some("Device IPv6 Address")
    );
    // The other family is the sibling key's value, not an invalid one.
    assert_eq!(enc.stats.invalid, 0);
    let a4 = oracle.parse(&line(&mut enc, &alert("203.0.113.5")));
    assert_eq!(get(&a4, "src").as_deref(), Some("203.0.113.5"));
    assert_eq!(get(&a4, "c6a1"), None);
    let a6 = oracle.parse(&line(&mut enc, &alert("2001:db8::5")));
    assert_eq!(get(&a6, "c6a1").as_deref(), Some("2001:db8::5"));
    assert_eq!(enc.stats.invalid, 0);
}

#[test]
fn mde_alerts_map_to_the_documented_keys() {
    let mut enc = encoder("");
    let mut oracle = Oracle::new();
    let records: Vec<_> = fixture_records()
        .into_iter()
        .filter(|(file, _)| file.starts_with("get_alerts.") || file == "mde_alerts.ndjson")
        .collect();
    assert_eq!(records.len(), 5);
    let mut lines = Vec::new();
    for (file, record) in &records {
        assert_eq!(enc.preset_for(record), "defender_endpoint_alert", "{file}");
        let mut out = String::new();
        enc.encode(record, &mut out);
        lines.push(oracle.parse(&out));
    }
    let (doc1, doc2, unspecified, informational, high) =
        (&lines[0], &lines[1], &lines[2], &lines[3], &lines[4]);
    let expect = |map: &ObjectMap, pairs: &[(&str, &str)]| {
        for (key, value) in pairs {
            assert_eq!(get(map, key).as_deref(), Some(*value), "{key} in {map:?}");
        }
    };
    expect(
        doc1,
        &[
            ("deviceVendor", "Microsoft"),
            ("deviceProduct", "Defender for Endpoint"),
            // No detectorId in this record: the category is the class id.
            ("deviceEventClassId", "SuspiciousActivity"),
            ("name", "Suspicious 'Meterpreter' behavior was detected"),
            ("severity", "3"),
            // 2020-07-20T10:53:48.7657932Z, cut to the millisecond.
            ("rt", "1595242428765"),
            ("start", "1595242337665"),
            ("end", "1595242338136"),
            ("externalId", "da637308392288907382_-880718168"),
            ("cat", "SuspiciousActivity"),
            ("outcome", "New"),
            ("reason", "TruePositive"),
            ("dhost", "temp123.middleeast.corp.microsoft.com"),
            ("suser", "temp123"),
            ("sntdom", "DOMAIN"),
            ("cs1Label", "TenantId"),
            ("cs1", "a839b112-1253-6432-9bf6-94542403f21c"),
            ("cs2", "12ee6dd8c833c8a052ea231ec1b19adaf497b625"),
            ("cs3", "7587"),
            ("cs4", "Meterpreter"),
            ("cs5Label", "MitreTechniques"),
            ("cs5", "T1064,T1085,T1220"),
            ("deviceCustomDate1", "1595242430190"),
        ],
    );
    assert!(get(doc1, "msg").is_some_and(|m| m.contains("\n\nA malware is considered")));
    for absent in ["src", "request", "fname", "fileHash", "sproc"] {
        assert_eq!(get(doc1, absent), None, "{absent}: empty evidence");
    }
    expect(
        doc2,
        &[
            ("deviceEventClassId", "17e10bbc-3a68-474a-8aad-faef14d43952"),
            ("sproc", "rundll32.exe"),
            ("fname", "suspicious.dll"),
            ("filePath", "c:\\temp"),
            (
                "fileHash",
                "dc0ade0c95d6db98882bc8fa6707e64353cd6f7767ff48d6a81a6c2aef21c608",
            ),
        ],
    );
    // classification null: no reason; threatFamilyName null: no cs4.
    assert_eq!((get(doc2, "reason"), get(doc2, "cs4")), (None, None));
    expect(
        unspecified,
        &[
            // UnSpecified has no place on the 0–10 scale: CEF's own "Unknown".
            ("severity", "Unknown"),
            ("rt", "1788258090512"),
            ("src", "203.0.113.45"),
            ("request", "https://203.0.113.45/payload.bin?a=1&b=2"),
            ("sproc", "curl.exe"),
            ("fname", "p.bin"),
            ("suser", "alex"),
            ("sntdom", "CONTOSO"),
            ("cs5", "T1071.001,T1105"),
            ("outcome", "InProgress"),
        ],
    );
    assert_eq!(
        get(unspecified, "msg").as_deref(),
        Some(as_vrl_sees("A process connected to 203.0.113.45 | port=443\nwhich is on the\tcustom watch list; see C:\\Watch\\hosts.txt").as_str())
    );
    expect(
        informational,
        &[
            ("severity", "1"),
            ("src", "2001:db8:0:1::17"),
            ("dhost", "srv-dc01"),
            ("reason", "InformationalExpectedActivity"),
        ],
    );
    // relatedUser null and no MITRE techniques: no user keys, no empty cs5.
    for absent in ["suser", "sntdom", "cs5", "cs5Label"] {
        assert_eq!(get(informational, absent), None, "{absent}");
    }
    expect(
        high,
        &[
            ("severity", "8"),
            ("deviceEventClassId", "Malware"),
            ("cs4", "Trojan:Win32/Wacatac.B!ml"),
            ("rt", "1788436800123"),
        ],
    );
}

#[test]
fn a_cut_header_field_is_kept_whole_in_the_unmapped_json() {
    let mut enc = encoder("preset = 'generic'\n[mapping]\nname = '.n'\nvendor = 'V{{ .v }}'\n");
    let name = "n".repeat(600);
    let vendor = "é".repeat(100);
    let out = line(
        &mut enc,
        &serde_json::json!({ "n": name, "v": vendor, "other": 1 }).to_string(),
    );
    let parsed = Oracle::new().parse(&out);
    assert_eq!(get(&parsed, "name").map(|n| n.len()), Some(512));
    assert_eq!(enc.stats.truncated, 2);
    let cs6: serde_json::Value =
        serde_json::from_str(&get(&parsed, "cs6").expect("cs6")).expect("valid JSON");
    assert_eq!(
        cs6,
        serde_json::json!({
            "other": 1,
            "siemflow_truncated": { "name": name, "vendor": format!("V{vendor}") }
        })
    );
    // With unmapped fields dropped, the cut is only counted.
    let mut enc = encoder("preset = 'generic'\nunmapped = 'drop'\n[mapping]\nname = '.n'\n");
    let out = line(&mut enc, &serde_json::json!({ "n": name }).to_string());
    assert!(!out.contains("cs6"), "{out}");
    assert_eq!(enc.stats.truncated, 1);
}

#[test]
fn unmapped_json_too_long_for_cs6_leaves_whole_fields_out_and_stays_valid() {
    let mut enc = encoder("preset = 'generic'");
    let record = serde_json::json!({
        "small": "s",
        "big": "b".repeat(3000),
        "bigger": "c".repeat(3500),
        "nested": { "k": ["v=1", "w\\2"] },
    });
    let out = line(&mut enc, &record.to_string());
    let parsed = Oracle::new().parse(&out);
    let text = get(&parsed, "cs6").expect("cs6");
    assert!(text.chars().count() <= 4000, "{}", text.len());
    let cs6: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(
        cs6,
        serde_json::json!({
            "big": "b".repeat(3000),
            "nested": { "k": ["v=1", "w\\2"] },
            "small": "s",
            "siemflow_dropped": ["bigger"],
        })
    );
    assert_eq!(enc.stats.truncated, 1);
    // A JSON that fits is written as it is, and not counted.
    let out = line(&mut enc, r#"{"small":"s"}"#);
    assert_eq!(
        get(&Oracle::new().parse(&out), "cs6").as_deref(),
        Some(r#"{"small":"s"}"#)
    );
    assert_eq!(enc.stats.truncated, 1);
    // A custom unmapped key keeps its own limit (flexString2: 1023).
    let mut enc = encoder("preset = 'generic'\nunmapped_key = 'flexString2'");
    let out = line(&mut enc, &record.to_string());
    let text = get(&Oracle::new().parse(&out), "flexString2").expect("flexString2");
    let kept: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(
        kept["siemflow_dropped"],
        serde_json::json!(["bigger", "big"])
    );
}

/// The preset section of docs/transforms/cef.md, generated from the definitions.
fn preset_docs() -> String {
    use crate::siem_mapping::{PRESETS, preset_rows};
    let mut out = String::new();
    for preset in PRESETS {
        let h = &preset.header;
        out.push_str(&format!(
            "### `{}`\n\nHeader: vendor `{}`, product `{}`, version `{}`, class id `{}`, name `{}`, severity `{}`.\n\n| key | label | from |\n|---|---|---|\n",
            preset.name, h[0], h[1], h[2], h[3], h[4], h[5]
        ));
        let rows = preset_rows(preset, |_| {});
        for (key, text) in &rows {
            if key
                .strip_suffix("Label")
                .is_some_and(|base| rows.iter().any(|(k, _)| k == base))
            {
                continue;
            }
            let label = rows
                .iter()
                .find(|(k, _)| *k == format!("{key}Label"))
                .map(|(_, l)| format!("`{l}`"))
                .unwrap_or_default();
            out.push_str(&format!("| `{key}` | {label} | `{text}` |\n"));
        }
        out.push('\n');
    }
    out
}

/// Replaces the text between two markers of a docs page when `SIEMFLOW_WRITE_DOCS` is
/// set; otherwise asserts the page already holds it.
pub(crate) fn check_docs_section(page: &str, start: &str, end: &str, generated: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../docs/transforms")
        .join(page);
    let text = std::fs::read_to_string(&path).expect("docs page");
    let from = text.find(start).expect("start marker");
    let to = text[from..].find(end).expect("end marker") + from;
    if std::env::var_os("SIEMFLOW_WRITE_DOCS").is_some() {
        let updated = format!("{}{generated}{}", &text[..from], &text[to..]);
        std::fs::write(&path, updated).expect("write docs");
        return;
    }
    assert!(
        text[from..to] == *generated,
        "{page}: the preset tables differ from the definitions; regenerate with \
         SIEMFLOW_WRITE_DOCS=1 cargo test -p siemflow-transforms preset_tables"
    );
}

#[test]
fn preset_tables_in_the_docs_match_the_definitions() {
    check_docs_section(
        "cef.md",
        "### `o365_azure_ad`",
        "## Overrides",
        &preset_docs(),
    );
}
