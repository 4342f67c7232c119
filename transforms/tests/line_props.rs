//! Property tests of the CEF and LEEF encoders: real fixture records whose strings (and
//! an extra key) are replaced by hostile text must still give exactly one line, with no
//! character that could break it or command a terminal (core::escape's rule).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use proptest::prelude::*;
use siemflow_core::Value;
use siemflow_core::escape::is_line_unsafe;
use siemflow_transforms::cef::{CefConfig, CefEncoder};
use siemflow_transforms::leef::{LeefConfig, LeefEncoder};

/// Every record of the JSON fixtures (a Graph `value` list or a top-level array gives
/// one per element; NDJSON one per line).
fn fixture_records() -> &'static [Value] {
    static RECORDS: OnceLock<Vec<Value>> = OnceLock::new();
    RECORDS.get_or_init(|| {
        let mut files = Vec::new();
        json_files(
            &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures"),
            &mut files,
        );
        files.sort();
        let mut records = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(&file).expect("readable fixture");
            match serde_json::from_str::<Value>(&text) {
                Ok(Value::Object(map)) => match map.get("value") {
                    Some(Value::Array(items)) => records.extend(items.iter().cloned()),
                    _ => records.push(Value::Object(map)),
                },
                Ok(Value::Array(items)) => records.extend(items),
                Ok(other) => records.push(other),
                Err(_) => records.extend(
                    text.lines()
                        .filter(|l| !l.trim().is_empty())
                        .filter_map(|l| serde_json::from_str(l).ok()),
                ),
            }
        }
        assert!(!records.is_empty(), "no fixture records found");
        records
    })
}

fn json_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("fixture folder") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            json_files(&path, out);
        } else if path
            .extension()
            .is_some_and(|e| e == "json" || e == "ndjson")
        {
            out.push(path);
        }
    }
}

/// Text an attacker would send: anything, or mostly controls, separators and the
/// characters CEF and LEEF give meaning to.
fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[\\x00-\\x1f\\x7f\\u{80}-\\u{9f}\\u{2028}\\u{2029}a=|\\\\^ ]{0,24}",
    ]
}

/// A fixture record with some of its strings replaced and a hostile extra key.
fn hostile_record() -> impl Strategy<Value = Value> {
    (
        0..fixture_records().len(),
        proptest::collection::vec((any::<bool>(), hostile_text()), 1..8),
        hostile_text(),
        hostile_text(),
    )
        .prop_map(|(index, replacements, key, value)| {
            let mut record = fixture_records()[index].clone();
            let mut leaf = 0;
            replace_strings(&mut record, &replacements, &mut leaf);
            if let Value::Object(object) = &mut record {
                object.insert(key.into(), Value::from(value));
            }
            record
        })
}

/// Replaces the string leaves whose turn in `replacements` says so (cycling through it).
fn replace_strings(value: &mut Value, replacements: &[(bool, String)], leaf: &mut usize) {
    match value {
        Value::Bytes(_) | Value::String(_) => {
            let (replace, text) = &replacements[*leaf % replacements.len()];
            *leaf += 1;
            if *replace {
                *value = Value::from(text.as_str());
            }
        }
        Value::Object(object) => object
            .values_mut()
            .for_each(|v| replace_strings(v, replacements, leaf)),
        Value::Array(items) => items
            .iter_mut()
            .for_each(|v| replace_strings(v, replacements, leaf)),
        _ => {}
    }
}

fn cef(toml_text: &str) -> CefEncoder {
    let config: CefConfig = toml::from_str(toml_text).expect("cef config");
    CefEncoder::new(&config).expect("cef encoder")
}

fn leef(toml_text: &str) -> LeefEncoder {
    let config: LeefConfig = toml::from_str(toml_text).expect("leef config");
    LeefEncoder::new(&config).expect("leef encoder")
}

/// The first character of `line` that breaks the one-line rule, with its position.
fn first_unsafe(line: &str) -> Option<(usize, char)> {
    line.char_indices().find(|(_, c)| is_line_unsafe(*c))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn cef_is_one_safe_line_per_event(record in hostile_record(), drop_unmapped in any::<bool>()) {
        let mut encoder = cef(if drop_unmapped { "unmapped = \"drop\"" } else { "" });
        let mut line = String::new();
        encoder.encode(&record, &mut line);
        prop_assert!(line.starts_with("CEF:0|"), "{:?}", line);
        prop_assert_eq!(first_unsafe(&line), None, "{:?}", line);
    }

    #[test]
    fn leef_is_one_safe_line_per_event(
        record in hostile_record(),
        config in prop_oneof![
            Just(""),
            Just("delimiter = \"^\""),
            Just("version = \"1.0\""),
            Just("version = \"1.0\"\nunmapped = \"drop\""),
            Just("delimiter = \"^\"\nunmapped = \"drop\""),
            Just("dev_time = \"iso8601\""),
        ],
    ) {
        let mut encoder = leef(config);
        let mut line = String::new();
        encoder.encode(&record, &mut line);
        prop_assert!(line.starts_with("LEEF:"), "{:?}", line);
        prop_assert_eq!(first_unsafe(&line), None, "{:?}", line);
    }
}

/// The strings the property tests generate at random, each written once on purpose.
#[test]
fn every_control_character_in_every_field_stays_escaped() {
    let hostile: String = (0u32..0x20)
        .chain([0x7f, 0x85, 0x9b, 0x2028, 0x2029])
        .filter_map(char::from_u32)
        .collect();
    for record in fixture_records() {
        let mut record = record.clone();
        replace_strings(&mut record, &[(true, format!("a{hostile}b"))], &mut 0);
        if let Value::Object(object) = &mut record {
            object.insert(hostile.as_str().into(), Value::from(hostile.as_str()));
        }
        let mut line = String::new();
        cef("").encode(&record, &mut line);
        assert_eq!(first_unsafe(&line), None, "CEF: {line:?}");
        for config in ["", "delimiter = \"^\"", "version = \"1.0\""] {
            leef(config).encode(&record, &mut line);
            assert_eq!(first_unsafe(&line), None, "LEEF {config}: {line:?}");
        }
    }
}
