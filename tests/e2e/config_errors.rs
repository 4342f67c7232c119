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

/// Runs the binary with `args` in the workspace: exit code, stdout, stderr.
fn siemflow(ws: &Workspace, args: &[&str]) -> (i32, String, String) {
    let output = std::process::Command::new(crate::harness::binary())
        .args(args)
        .current_dir(ws.dir.path())
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run siemflow");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn config_files_can_be_given_as_arguments_and_merge_with_c() {
    let ws = Workspace::new();
    ws.write("p.toml", GOOD);
    let (code, stdout, stderr) = siemflow(&ws, &["validate", "p.toml"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("valid: 1 sources, 0 transforms, 1 sinks"),
        "{stdout}"
    );
    ws.write(
        "more.toml",
        "[sinks.more]\ntype = \"blackhole\"\ninputs = [\"audit\"]\n",
    );
    let (code, stdout, stderr) = siemflow(&ws, &["validate", "-c", "p.toml", "more.toml"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("valid: 1 sources, 0 transforms, 2 sinks"),
        "{stdout}"
    );
    let (code, _, stderr) = siemflow(&ws, &["validate", "p.toml", "p.toml"]);
    assert_eq!(
        code, 78,
        "the same file twice declares every id twice: {stderr}"
    );
}

#[test]
fn global_options_are_accepted_before_the_command() {
    let ws = Workspace::new();
    ws.write(
        "p.toml",
        "data_dir = \"data\"\n[api]\nenabled = false\n[sources.in]\ntype = \"stdin\"\n[sinks.out]\ntype = \"file\"\ninputs = [\"in\"]\npath = \"out.ndjson\"\n",
    );
    // stdin is empty: the pipeline drains and exits on its own.
    let (code, _, stderr) = siemflow(
        &ws,
        &[
            "--log-level",
            "trace",
            "--log-format",
            "json",
            "run",
            "p.toml",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("\"message\":\"pipeline started\""),
        "json logs: {stderr}"
    );
    let (code, _, stderr) = siemflow(&ws, &["--log-level", "warn", "run", "p.toml"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        !stderr.contains("pipeline started"),
        "warn level applied: {stderr}"
    );
    let (code, _, stderr) = siemflow(&ws, &["run", "--log-format", "json", "-c", "p.toml"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("\"level\":\"INFO\""), "json logs: {stderr}");
    let (code, _, stderr) = siemflow(&ws, &["-c", "p.toml", "list"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("apply to `run`, `validate` and `test` only"),
        "{stderr}"
    );
}

#[test]
fn list_shows_defaults_as_they_are_written() {
    let ws = Workspace::new();
    let (code, stdout, stderr) = siemflow(&ws, &["list", "dedup"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("window: string = \"7d\""), "{stdout}");
    assert!(
        stdout.contains("memory_budget: string = \"64MiB\""),
        "{stdout}"
    );
    let (_, stdout, _) = siemflow(&ws, &["list", "splunk_hec", "--json"]);
    assert!(
        stdout.contains("\"default\": \"15m\""),
        "retry.max_duration: {stdout}"
    );
    assert!(!stdout.contains("\"secs\""), "{stdout}");
}

#[test]
fn list_into_a_closed_pipe_exits_quietly() {
    let mut child = std::process::Command::new(crate::harness::binary())
        .arg("list")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn list");
    // As `siemflow list | head -0` does: the reader goes away before the writer writes.
    drop(child.stdout.take());
    let output = child.wait_with_output().expect("wait for list");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn counts_and_durations_that_run_cannot_use_are_refused() {
    let text = r#"
[sources.audit]
type = "file"
include = ["in/*.ndjson"]
batch_max_events = 9223372036854775807
[sinks.out]
type = "file"
inputs = ["audit"]
path = "out.ndjson"
buffer = { max_events = 2305843009213693952 }
[sinks.hec_concurrency]
type = "splunk_hec"
inputs = ["audit"]
endpoint = "https://splunk.example:8088"
token = "t"
concurrency = 2305843009213693952
[sinks.hec_timeout]
type = "splunk_hec"
inputs = ["audit"]
endpoint = "https://splunk.example:8088"
token = "t"
batch = { timeout = "500000000000y" }
[sinks.hec_acks]
type = "splunk_hec"
inputs = ["audit"]
endpoint = "https://splunk.example:8088"
token = "t"
acknowledgements = { max_pending_acks = 2305843009213693952 }
"#;
    let error = error_of(text);
    for expected in [
        "p.toml:5:1: error in [sources.audit] at `batch_max_events`: must be between 1 and 1000000, not 9223372036854775807",
        "p.toml:10:25: error in [sinks.out] at `buffer.max_events`: must be between 1 and 4294967295, not 2305843009213693952",
        "p.toml:16:15: error in [sinks.hec_concurrency] at `concurrency`: concurrency must be between 1 and 4294967295, not 2305843009213693952",
        "p.toml:22:21: error in [sinks.hec_timeout] at `batch.timeout`: `500000000000y` is longer than 100y, the longest duration an option takes",
        "error in [sinks.hec_acks] at `acknowledgements.max_pending_acks`: must be between 1 and 4294967295, not 2305843009213693952",
        "5 configuration errors",
    ] {
        assert!(
            error.contains(expected),
            "expected {expected}\nin:\n{error}"
        );
    }
}

#[test]
fn urls_addresses_and_paths_that_run_cannot_use_are_refused() {
    let text = r#"
[api]
address = "999.1.1.1:99999"
[sources.audit]
type = "file"
include = ["in/*.ndjson"]
[sinks.out]
type = "file"
inputs = ["audit"]
path = "out\u0000.ndjson"
[sinks.hec_path]
type = "splunk_hec"
inputs = ["audit"]
endpoint = "https://splunk.example:8088/services/collector"
token = "t"
[sinks.hec_credentials]
type = "splunk_hec"
inputs = ["audit"]
endpoint = "https://admin:s3cret@splunk.example:8088"
token = "t"
[sinks.hec_proxy]
type = "splunk_hec"
inputs = ["audit"]
endpoint = "https://splunk.example:8088"
token = "t"
proxy = "ht!tp://user:s3cret@proxy.example:3128"
[sinks.es_proxy]
type = "elasticsearch"
inputs = ["audit"]
endpoints = ["https://es.example:9200"]
proxy = "socks5://proxy.example:1080"
[sinks.syslog]
type = "syslog"
inputs = ["audit"]
address = "999.1.1.1:514"
"#;
    let error = error_of(text);
    for expected in [
        "p.toml:3:1: error at `api.address`: `99999` in `999.1.1.1:99999` is not a port number (0 to 65535)",
        "p.toml:10:1: error in [sinks.out] at `path`: `out\\0.ndjson` holds a NUL character, which no file name can contain",
        "p.toml:14:1: error in [sinks.hec_path] at `endpoint`: `https://splunk.example:8088/services/collector` has a path (`/services/collector`): give the base URL alone",
        "p.toml:19:1: error in [sinks.hec_credentials] at `endpoint`: `https://***@splunk.example:8088` holds credentials (`user:password@`): they would be sent as a second Authorization header",
        "use the component's credential options (`token`, `auth`)",
        "p.toml:26:1: error in [sinks.hec_proxy] at `proxy`: is not a URL (relative URL without a base)",
        "p.toml:31:1: error in [sinks.es_proxy] at `proxy`: has the scheme `socks5`; a proxy is an http:// or https:// URL",
        "p.toml:35:1: error in [sinks.syslog] at `address`: `999.1.1.1` is not an IPv4 address in `999.1.1.1:514`",
        "7 configuration errors",
    ] {
        assert!(
            error.contains(expected),
            "expected {expected}\nin:\n{error}"
        );
    }
    assert!(
        !error.contains("s3cret"),
        "credentials are never echoed:\n{error}"
    );
}
