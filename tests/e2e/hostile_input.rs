//! Hostile input through the real binary: a watched file whose name holds a newline and
//! ANSI escapes must not forge a line in the default text log nor reach the terminal, its
//! lines must not break the console output, and what decoding works around is counted.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::harness::{Workspace, binary, read_lines, wait_for};

/// The log line the file name tries to add, as the text format would print it.
const FORGED: &str = "2026-01-01T00:00:00.000000Z  INFO forged: admin logged in";

/// Kills the process when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// True for a character that would break a line or command a terminal (core's rule),
/// besides the newline that ends each line.
fn unsafe_char(c: char) -> bool {
    c != '\n' && siemflow_core::escape::is_line_unsafe(c)
}

#[test]
fn a_hostile_file_name_and_content_stay_on_their_lines() {
    let ws = Workspace::new();
    let name = format!("in/evil\n{FORGED} \u{1b}[31mred\u{1b}]0;pwned\u{7}.log");
    ws.write(
        &name,
        "first \u{1b}[2J\u{1b}]0;title\u{7} cleared\nsecond\rhalf \u{85}nel \u{2028}ls \u{7f}del \0nul\n",
    );
    ws.write(
        "p.toml",
        r#"
data_dir = "data"
[sources.in]
type = "file"
include = ["in/*.log"]
decoding = "text"
poll_interval = "50ms"
[sinks.out]
type = "console"
inputs = ["in"]
encoding = "text"
"#,
    );
    let stdout = std::fs::File::create(ws.path("stdout.txt")).expect("stdout file");
    let stderr = std::fs::File::create(ws.path("stderr.txt")).expect("stderr file");
    // The default log format (text), as a person would run it; stderr is a file here.
    let mut running = Running(
        Command::new(binary())
            .args(["run", "-c", "p.toml"])
            .current_dir(ws.dir.path())
            .env("RUST_LOG", "info")
            .env_remove("SIEMFLOW_LOG_FORMAT")
            .env_remove("NO_COLOR")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("spawn siemflow"),
    );
    let lines = wait_for("both lines on the console", Duration::from_secs(60), || {
        let lines = read_lines(&ws.path("stdout.txt"));
        (lines.len() >= 2).then_some(lines)
    });
    wait_for("the file in the log", Duration::from_secs(30), || {
        let log = std::fs::read_to_string(ws.path("stderr.txt")).unwrap_or_default();
        log.contains("following file").then_some(())
    });
    // SAFETY: kill(2) with the pid of the child we spawned and still own.
    unsafe { libc::kill(running.0.id() as i32, libc::SIGTERM) };
    let status = wait_for("exit", Duration::from_secs(30), || {
        running.0.try_wait().expect("try_wait")
    });
    let log = std::fs::read_to_string(ws.path("stderr.txt")).expect("log");
    assert!(status.success(), "exit {status:?}; log:\n{log}");

    assert!(!log.contains('\u{1b}'), "raw ESC in the log:\n{log:?}");
    assert!(
        !log.chars().any(unsafe_char),
        "a control character in the log:\n{log:?}"
    );
    assert!(
        !log.lines().any(|line| line.starts_with(FORGED)),
        "the file name forged a log line:\n{log}"
    );
    let following = log
        .lines()
        .find(|line| line.contains("following file"))
        .expect("the file is logged");
    assert!(
        following.contains(&format!(
            "evil\\n{FORGED} \\u001b[31mred\\u001b]0;pwned\\u0007.log"
        )),
        "the name is shown escaped on one line: {following}"
    );

    assert_eq!(
        lines,
        [
            "first \\u001b[2J\\u001b]0;title\\u0007 cleared",
            "second\\rhalf \\u0085nel \\u2028ls \\u007fdel \\0nul",
        ],
        "one console line per event, escaped"
    );
}

#[test]
fn decoding_counts_what_it_works_around_and_keeps_big_integers_exact() {
    let ws = Workspace::new();
    // Each odd line among good ones: only it is changed, and only it is counted.
    let mut input = concat!(
        "{\"Id\":\"good-1\",\"n\":9223372036854775807}\n",
        "{\"Id\":\"dup\",\"k\":1,\"k\":2}\n",
        "{\"Id\":\"good-2\",\"f\":1e19}\n",
        "{\"Id\":\"big\",\"n\":18446744073709551615,\"m\":-123456789012345678901234567890}\n",
        "caf\u{e9}\n",
    )
    .as_bytes()
    .to_vec();
    // A line that is not UTF-8 (and so not JSON either).
    input.extend_from_slice(b"{\"Id\":\"\xff\"}\n");
    input.extend_from_slice(b"{\"Id\":\"good-3\"}\n");
    std::fs::create_dir_all(ws.path("in")).expect("mkdir");
    std::fs::write(ws.path("in/a.ndjson"), input).expect("write");
    ws.write(
        "p.toml",
        r#"
data_dir = "data"
[api]
address = "127.0.0.1:0"
[sources.in]
type = "file"
include = ["in/*.ndjson"]
poll_interval = "50ms"
[sinks.out]
type = "file"
inputs = ["in"]
path = "out.ndjson"
"#,
    );
    let mut pipeline = ws.run("p.toml", Stdio::null());
    let lines = wait_for("seven events written", Duration::from_secs(60), || {
        let lines = ws.lines("out.ndjson");
        (lines.len() >= 7).then_some(lines)
    });
    assert_eq!(
        lines,
        [
            r#"{"Id":"good-1","n":9223372036854775807}"#,
            r#"{"Id":"dup","k":2}"#,
            r#"{"Id":"good-2","f":1e+19}"#,
            r#"{"Id":"big","m":"-123456789012345678901234567890","n":"18446744073709551615"}"#,
            r#"{"message":"café"}"#,
            "{\"message\":\"{\\\"Id\\\":\\\"\u{fffd}\\\"}\"}",
            r#"{"Id":"good-3"}"#,
        ]
    );
    let errors = |pipeline: &mut crate::harness::Pipeline, error_type: &str| {
        pipeline.metric(
            "component_errors_total",
            &[
                "component_id=\"in\"",
                &format!("error_type=\"{error_type}\""),
            ],
        )
    };
    wait_for("the counters", Duration::from_secs(30), || {
        (errors(&mut pipeline, "invalid_utf8") >= 1.0).then_some(())
    });
    assert_eq!(errors(&mut pipeline, "duplicate_key"), 1.0);
    assert_eq!(errors(&mut pipeline, "lossy_number"), 1.0);
    assert_eq!(errors(&mut pipeline, "invalid_utf8"), 1.0);
    assert_eq!(errors(&mut pipeline, "parse_failed"), 2.0);
}
