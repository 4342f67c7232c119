//! `siemflow test`: the shipped cases (tests/config/cases) pass, the one failing on
//! purpose (tests/config/failing) is reported assertion by assertion with exit 1, and a
//! broken test file is a config error (78), as for `siemflow validate`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{Workspace, binary};

/// The repository root: the test files name their fixtures relative to themselves.
fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `siemflow test -c tests/config/pipeline.toml <files>`: exit code, stdout, stderr.
fn siemflow_test(files: &[PathBuf]) -> (i32, String, String) {
    let output = Command::new(binary())
        .current_dir(root())
        .arg("test")
        .arg("-c")
        .arg("tests/config/pipeline.toml")
        .args(files)
        .output()
        .expect("run siemflow test");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn the_shipped_cases_pass() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("tests/config/cases"))
        .expect("tests/config/cases")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 2, "{files:?}");
    let (code, stdout, stderr) = siemflow_test(&files);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let passed: Vec<&str> = stdout
        .lines()
        .filter(|l| l.ends_with(" ... passed"))
        .collect();
    // Every CEF preset family of the fixtures has its case.
    for preset in [
        "o365_azure_ad",
        "o365_exchange_admin",
        "o365_sharepoint",
        "graph_alert_v2",
        "graph_incident",
        "defender_endpoint_alert",
        "entra_signin, entra_directory_audit",
        "defender_xdr_event",
        "LEEF 2.0",
    ] {
        assert!(
            passed.iter().any(|line| line.contains(preset)),
            "no passing case for {preset}:\n{stdout}"
        );
    }
    assert!(!stdout.contains("FAILED"), "{stdout}");
    assert!(
        stdout.contains(&format!("\n{} passed, 0 failed (", passed.len())),
        "{stdout}"
    );
}

#[test]
fn a_failing_case_is_reported_with_the_assertion_and_the_event() {
    let file = PathBuf::from("tests/config/failing/wrong_expectations.toml");
    let (code, stdout, stderr) = siemflow_test(&[file]);
    assert_eq!(code, 1, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let case =
        |name: &str| format!("test tests/config/failing/wrong_expectations.toml: {name} ... ");
    assert!(
        stdout.contains(&format!(
            "{}FAILED\n",
            case("a sign-in failure is not a success")
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("{}passed\n", case("this one passes"))),
        "{stdout}"
    );
    // The count, then the condition with how many events broke it and the event itself.
    assert!(
        stdout.contains("  output `to_cef`: expected 2 events, got 1\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "  output `to_cef`: condition (all) failed: 1 of 1 event\n    contains(string!(.message), \"|UserLoggedIn|\")\n    event 0 (false): {\"message\":\"CEF:0|Microsoft|Office 365 AzureActiveDirectory|1.0|UserLoginFailed|UserLoginFailed|3|rt=1714557600000 externalId=fail-1 "
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "  output `by_workload.exchange`: expected no events, got 1\n    event 0: {\"Operation\":\"Set-Mailbox\",\"Workload\":\"Exchange\"}\n"
        ),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("\n1 passed, 2 failed (3 cases)\n"),
        "{stdout}"
    );
}

#[test]
fn a_broken_test_file_is_a_config_error() {
    let ws = Workspace::new();
    let file = ws.write(
        "bad.toml",
        r#"
[[tests]]
name = "typos"
insert_at = "to_ceff"

[[tests.inputs]]
event = { a = 1 }

[[tests.outputs]]
extract_from = "by_workload.exchang"
all = ['.a ==']

[[tests]]
name = "no such fixture"
insert_at = "tag"

[[tests.inputs]]
file = "missing.ndjson"

[[tests.outputs]]
extract_from = "tag"
events = 1
"#,
    );
    let (code, stdout, stderr) = siemflow_test(std::slice::from_ref(&file));
    assert_eq!(code, 78, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.is_empty(), "nothing runs: {stdout}");
    let at = format!("{}: error in [tests[0] \"typos\"] at ", file.display());
    assert!(
        stderr.contains(&format!(
            "{at}`inputs[0].insert_at`: the pipeline has no transform `to_ceff`\n  hint: did you mean `to_cef`?"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{at}`outputs[0].extract_from`: `by_workload` has no output `exchang`"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{at}`outputs[0].all[0]`: the VRL condition does not compile"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("at `inputs[0].file`: cannot read `") && stderr.contains("missing.ndjson`"),
        "{stderr}"
    );
    assert!(stderr.ends_with("4 configuration errors\n"), "{stderr}");

    ws.write("syntax.toml", "[[tests]]\nname = \"x\"\ninsert_at = 3\n");
    let (code, _, stderr) = siemflow_test(&[ws.path("syntax.toml")]);
    assert_eq!(code, 78, "{stderr}");
    assert!(stderr.contains("invalid test file"), "{stderr}");
}

#[test]
fn a_plugin_transform_is_tested_as_it_runs() {
    // The Python SDK's enrichment example over gRPC, against a local users API (404 for
    // ids ending in 7), exactly as `run` would start it.
    let (url, served) = crate::plugin::users_api();
    let output = Command::new(binary())
        .current_dir(root())
        .env("PLUGIN_PYTHON", crate::plugin::python())
        .env("USERS_API", &url)
        .args([
            "test",
            "-c",
            "tests/config/plugin/pipeline.toml",
            "tests/config/plugin/enrich_http.toml",
        ])
        .output()
        .expect("run siemflow test");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    for case in [
        "plugin: each event gets its user's team",
        "plugin: a failed lookup goes to owner.dropped with its reason",
        "plugin then cef: the enrichment travels in the CEF line",
    ] {
        assert!(
            stdout.contains(&format!(
                "test tests/config/plugin/enrich_http.toml: {case} ... passed\n"
            )),
            "{stdout}"
        );
    }
    assert!(
        stdout.ends_with("\n3 passed, 0 failed (3 cases)\n"),
        "{stdout}"
    );
    // The plugin really asked the API: alice, bob, user7, carol.
    assert!(served.load(std::sync::atomic::Ordering::SeqCst) >= 4);
}
