//! Property tests of the CEF and LEEF encoders: real fixture records whose strings (and
//! an extra key) are replaced by hostile text must still give exactly one line, with no
//! character that could break it or command a terminal (core::escape's rule).

use std::sync::OnceLock;

use proptest::prelude::*;
use siemflow_core::Value;
use siemflow_core::escape::is_line_unsafe;
use siemflow_transforms::cef::{CefConfig, CefEncoder};
use siemflow_transforms::leef::{LeefConfig, LeefEncoder};

#[path = "../src/siem_mapping/fixtures.rs"]
mod fixtures;

/// Every record of the JSON fixtures (the loader the encoders' unit tests use), read once.
fn fixture_records() -> &'static [Value] {
    static RECORDS: OnceLock<Vec<Value>> = OnceLock::new();
    RECORDS.get_or_init(|| {
        let records: Vec<Value> = fixtures::fixture_records()
            .into_iter()
            .map(|(_, record)| record)
            .collect();
        assert!(!records.is_empty(), "no fixture records found");
        records
    })
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
