//! The fixture loader of the CEF and LEEF tests: the unit tests' (`siem_mapping::tests`)
//! and the property tests' (`tests/line_props.rs`, which includes this file by path).

use std::path::{Path, PathBuf};

use vrl::value::Value;

/// Every JSON record under tests/fixtures (all folders, `.json` and `.ndjson`; a Graph
/// response's `value` list and a top-level array give one record per element), in path
/// order: (file name, record).
pub(crate) fn fixture_records() -> Vec<(String, Value)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
    let mut files = Vec::new();
    json_files(&root, &mut files);
    files.sort();
    let mut records = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable");
        let name = file
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let values: Vec<Value> = match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(map)) => match map.get("value") {
                Some(Value::Array(items)) => items.clone(),
                _ => vec![Value::Object(map)],
            },
            Ok(Value::Array(items)) => items,
            Ok(other) => vec![other],
            Err(_) => text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| serde_json::from_str(l).expect("one JSON record per line"))
                .collect(),
        };
        records.extend(values.into_iter().map(|v| (name.clone(), v)));
    }
    records
}

/// Collects the `.json` and `.ndjson` files under `dir`, at any depth.
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
