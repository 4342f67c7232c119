//! Every config mistake is reported with file, line, column, component, key and a hint,
//! and `validate` reports all of them at once.

use crate::harness::Workspace;

const GOOD: &str = r#"
data_dir = "data"
[sources.audit]
type = "file"
include = ["in/*.ndjson"]
[sinks.out]
type = "file"
inputs = ["audit"]
path = "out.ndjson"
"#;

/// Validates one config and returns its single error report.
fn error_of(text: &str) -> String {
    let ws = Workspace::new();
    ws.write("p.toml", text);
    let (code, stderr) = ws.validate(&["p.toml"]);
    assert_eq!(code, 78, "expected a config error; stderr:\n{stderr}");
    stderr
}

#[test]
fn the_good_config_validates() {
    let ws = Workspace::new();
    ws.write("p.toml", GOOD);
    let (code, stderr) = ws.validate(&["p.toml"]);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn unknown_type_names_the_known_ones() {
    let text = GOOD.replace("type = \"file\"\ninputs", "type = \"blackhol\"\ninputs");
    let error = error_of(&text);
    assert!(error.contains("p.toml:7:8:"), "{error}");
    assert!(error.contains("[sinks.out] at `type`"), "{error}");
    assert!(error.contains("unknown sink type `blackhol`"), "{error}");
    assert!(error.contains("did you mean `blackhole`?"), "{error}");
    assert!(
        error.contains("`console`"),
        "lists the known types: {error}"
    );
}

#[test]
fn unknown_option_suggests_the_right_key() {
    let text = GOOD.replace(
        "path = \"out.ndjson\"",
        "path = \"out.ndjson\"\nencodng = \"json\"",
    );
    let error = error_of(&text);
    assert!(error.contains("p.toml:10:1:"), "{error}");
    assert!(error.contains("[sinks.out] at `encodng`"), "{error}");
    assert!(error.contains("unknown key `encodng`"), "{error}");
    assert!(error.contains("did you mean `encoding`?"), "{error}");
}

#[test]
fn missing_input_suggests_the_closest_id() {
    let text = GOOD.replace("inputs = [\"audit\"]", "inputs = [\"audt\"]");
    let error = error_of(&text);
    assert!(error.contains("p.toml:8:11:"), "{error}");
    assert!(error.contains("[sinks.out] at `inputs`"), "{error}");
    assert!(error.contains("input `audt` does not exist"), "{error}");
    assert!(error.contains("did you mean `audit`?"), "{error}");
}

#[test]
fn a_cycle_names_its_members() {
    let text = format!(
        "{GOOD}\n[transforms.a]\ntype = \"remap\"\ninputs = [\"audit\", \"b\"]\nsource = '.x = 1'\n[transforms.b]\ntype = \"remap\"\ninputs = [\"a\"]\nsource = '.y = 1'\n"
    );
    let error = error_of(&text);
    assert!(error.contains("cycle"), "{error}");
    assert!(
        error.contains("a -> b -> a") || error.contains("b -> a -> b"),
        "{error}"
    );
    assert!(error.contains("p.toml:"), "{error}");
}

#[test]
fn an_unset_variable_shows_how_to_default_it() {
    let text = GOOD.replace(
        "path = \"out.ndjson\"",
        "path = \"${SIEMFLOW_TEST_UNSET_DIR}/out\"",
    );
    let error = error_of(&text);
    assert!(error.contains("p.toml:9:8:"), "{error}");
    assert!(
        error.contains("environment variable `SIEMFLOW_TEST_UNSET_DIR` is not set"),
        "{error}"
    );
    assert!(
        error.contains("${SIEMFLOW_TEST_UNSET_DIR:-value}"),
        "{error}"
    );
}

#[test]
fn invalid_toml_points_at_the_syntax_error() {
    let error = error_of("[sources.audit]\ntype = \"file\"\ninclude = [\"a\"\n");
    assert!(error.contains("p.toml:3:"), "{error}");
    assert!(error.contains("invalid TOML"), "{error}");
}

#[test]
fn a_wrong_value_type_names_the_nested_key() {
    let text = GOOD.replace(
        "path = \"out.ndjson\"",
        "path = \"out.ndjson\"\nbuffer.max_events = \"lots\"",
    );
    let error = error_of(&text);
    assert!(error.contains("p.toml:10:"), "{error}");
    assert!(
        error.contains("[sinks.out] at `buffer.max_events`"),
        "{error}"
    );
}

#[test]
fn a_bad_vrl_condition_is_reported_at_its_key() {
    let text = format!(
        "{GOOD}\n[transforms.only]\ntype = \"filter\"\ninputs = [\"audit\"]\ncondition = '.Workload =='\n"
    );
    let error = error_of(&text);
    assert!(error.contains("p.toml:14:1:"), "{error}");
    assert!(
        error.contains("[transforms.only] at `condition`"),
        "{error}"
    );
}

#[test]
fn a_duplicate_id_across_files_names_both_places() {
    let ws = Workspace::new();
    ws.write("a.toml", GOOD);
    ws.write("b.toml", "[sources.audit]\ntype = \"stdin\"\n");
    let (code, error) = ws.validate(&["a.toml", "b.toml"]);
    assert_eq!(code, 78, "{error}");
    assert!(error.contains("b.toml:1:"), "{error}");
    assert!(
        error.contains("component id `audit` is used twice"),
        "{error}"
    );
    assert!(
        error.contains("a.toml:3:"),
        "names the other place: {error}"
    );
}

#[test]
fn validate_reports_every_error_not_just_the_first() {
    let text = GOOD
        .replace("type = \"file\"\ninputs", "type = \"blackhol\"\ninputs")
        .replace(
            "data_dir = \"data\"",
            "data_dir = \"data\"\nshutdown_timeout = \"soon\"\ncolour = 1",
        );
    let error = error_of(&text);
    assert!(error.contains("unknown sink type"), "{error}");
    assert!(error.contains("`soon` is not a duration"), "{error}");
    assert!(error.contains("unknown top-level key `colour`"), "{error}");
    assert!(error.contains("3 configuration errors"), "{error}");
}

#[test]
fn a_config_dir_merges_its_files_and_env_fills_variables() {
    let ws = Workspace::new();
    ws.write(
        "conf.d/10-source.toml",
        "[sources.audit]\ntype = \"file\"\ninclude = [\"${SIEMFLOW_TEST_GLOB:-in/*.ndjson}\"]\n",
    );
    ws.write(
        "conf.d/20-sink.toml",
        "[sinks.out]\ntype = \"file\"\ninputs = [\"audit\"]\npath = \"${SIEMFLOW_TEST_OUT}\"\n",
    );
    ws.write("conf.d/notes.txt", "not a config file");
    let output = std::process::Command::new(crate::harness::binary())
        .args(["validate", "--config-dir", "conf.d"])
        .current_dir(ws.dir.path())
        .env("SIEMFLOW_TEST_OUT", "out.ndjson")
        .output()
        .expect("validate");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("valid: 1 sources, 0 transforms, 1 sinks"),
        "{stdout}"
    );
}

#[test]
fn a_broken_sink_does_not_hide_its_dead_letter_output_from_consumers() {
    let text = r#"
[sources.in]
type = "file"
include = ["in/*.ndjson"]
[sinks.hec]
type = "splunk_hec"
inputs = ["in"]
endpoint = "http://127.0.0.1:8088"
token = "t"
colour = "red"
[sinks.rejects]
type = "file"
inputs = ["hec.dead_letter"]
path = "rejects.ndjson"
"#;
    let error = error_of(text);
    assert!(error.contains("colour"), "{error}");
    assert!(!error.contains("no output named"), "{error}");
    assert!(error.contains("1 configuration error"), "{error}");
}
