//! Every pipeline in `examples/` is one `siemflow validate` accepts.

use std::process::Command;

use crate::harness::{Workspace, binary};

/// The `${NAME}` references without a default, each with a value of the right shape:
/// a GUID for `*_ID` (tenant and client ids are checked), a word otherwise.
fn required_env(text: &str) -> Vec<(String, String)> {
    let mut vars = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else { break };
        let name = &after[..end];
        if !name.contains(":-") && !vars.iter().any(|(n, _)| n == name) {
            let value = if name.ends_with("_ID") {
                "00000000-0000-0000-0000-000000000001"
            } else {
                "placeholder"
            };
            vars.push((name.to_string(), value.to_string()));
        }
        rest = &after[end + 1..];
    }
    vars
}

/// Every `.toml` under `folder`, subfolders included (`examples/scale-out/`), sorted.
fn pipelines_under(folder: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(folder).expect("examples/") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            found.extend(pipelines_under(&path));
        } else if path.extension().and_then(|e| e.to_str()) == Some("toml") {
            found.push(path);
        }
    }
    found.sort();
    found
}

#[test]
fn every_example_pipeline_validates() {
    let folder = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/examples"));
    let mut checked = Vec::new();
    for path in pipelines_under(folder) {
        let text = std::fs::read_to_string(&path).expect("read example");
        // A scratch folder as the working directory: nothing lands in the repository.
        let ws = Workspace::new();
        let output = Command::new(binary())
            .arg("validate")
            .arg("-c")
            .arg(&path)
            .current_dir(ws.dir.path())
            .envs(required_env(&text))
            .output()
            .expect("run validate");
        assert_eq!(
            output.status.code(),
            Some(0),
            "{} does not validate:\n{}",
            path.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        let name = path.strip_prefix(folder).expect("under examples/");
        checked.push(name.to_string_lossy().into_owned());
    }
    checked.sort();
    for expected in [
        "arcsight.toml",
        "elasticsearch.toml",
        "entra-signins-sentinel.toml",
        "graph-alerts-splunk.toml",
        "mda-agent-sentinel.toml",
        "mda-arcsight.toml",
        "mde-alerts-qradar.toml",
        "qradar.toml",
        "rsyslog-relay.toml",
        "scale-out/collector.toml",
        "scale-out/processor.toml",
        "sentinel.toml",
        "splunk.toml",
    ] {
        assert!(
            checked.iter().any(|name| name == expected),
            "{expected} missing; examples found: {checked:?}"
        );
    }
}
