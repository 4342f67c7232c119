//! Loading whole configs: values `run` could not use are refused, located, by `validate`.

use serde::Deserialize;

use super::*;
use crate::{BoxFuture, SinkConfig, SinkContext, SourceConfig, SourceContext};

/// A source with no options, never run.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Idle {}

impl SourceConfig for Idle {
    fn build(&self, _: SourceContext) -> anyhow::Result<BoxFuture<anyhow::Result<()>>> {
        anyhow::bail!("not run in these tests")
    }
}

impl SinkConfig for Idle {
    fn build(&self, _: SinkContext) -> anyhow::Result<BoxFuture<anyhow::Result<()>>> {
        anyhow::bail!("not run in these tests")
    }
}

const PIPELINE: &str =
    "[sources.in]\ntype = \"idle\"\n[sinks.out]\ntype = \"idle\"\ninputs = [\"in\"]\n";

/// The errors of `text`, one line each.
fn errors(text: &str) -> Vec<String> {
    let mut registry = Registry::new();
    registry.source::<Idle>("idle", "test source");
    registry.sink::<Idle>("idle", "test sink");
    match load_files(&[SourceFile::new("p.toml", text)], &registry, &|_| None) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn the_test_pipeline_is_valid() {
    assert_eq!(errors(PIPELINE), Vec::<String>::new());
}

#[test]
fn a_buffer_larger_than_a_semaphore_holds_is_refused_at_its_key() {
    let text = format!("{PIPELINE}buffer = {{ max_events = 2305843009213693952 }}\n");
    assert_eq!(
        errors(&text),
        [
            "p.toml:6:25: error in [sinks.out] at `buffer.max_events`: must be between 1 and 4294967295, not 2305843009213693952"
        ]
    );
    let text = format!("{PIPELINE}buffer = {{ max_events = 0 }}\n");
    assert_eq!(errors(&text).len(), 1);
    let text = format!("{PIPELINE}buffer = {{ max_events = 4294967295 }}\n");
    assert_eq!(errors(&text), Vec::<String>::new());
}

#[test]
fn an_api_address_that_cannot_be_listened_on_is_refused() {
    let port = errors(&format!("[api]\naddress = \"999.1.1.1:99999\"\n{PIPELINE}"));
    assert_eq!(
        port,
        [
            "p.toml:2:1: error at `api.address`: `99999` in `999.1.1.1:99999` is not a port number (0 to 65535)\n  hint: an address to listen on, e.g. \"127.0.0.1:8686\" or \"0.0.0.0:8686\""
        ]
    );
    let ip = errors(&format!("[api]\naddress = \"999.1.1.1:99\"\n{PIPELINE}"));
    assert!(
        ip[0].contains("`999.1.1.1` is not an IPv4 address"),
        "{ip:?}"
    );
    for good in [
        "127.0.0.1:0",
        "localhost:8686",
        "[::1]:8686",
        "0.0.0.0:8686",
    ] {
        let text = format!("[api]\naddress = \"{good}\"\n{PIPELINE}");
        assert_eq!(errors(&text), Vec::<String>::new(), "{good}");
    }
}

#[test]
fn api_connections_past_what_a_semaphore_holds_are_refused_at_their_key() {
    let found = errors(&format!(
        "[api]\nmax_connections = 2305843009213693952\n{PIPELINE}"
    ));
    assert_eq!(
        found,
        [
            "p.toml:2:19: error at `api.max_connections`: must be between 1 and 4294967295, not 2305843009213693952"
        ]
    );
}

#[test]
fn a_data_dir_holding_nul_is_refused() {
    let found = errors(&format!("data_dir = \"data\\u0000\"\n{PIPELINE}"));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("p.toml:1:12: error at `data_dir`: `data\\0` holds a NUL character"),
        "{found:?}"
    );
}

#[test]
fn a_duration_past_what_a_clock_can_add_is_refused() {
    let found = errors(&format!("shutdown_timeout = \"500000000000y\"\n{PIPELINE}"));
    assert_eq!(
        found,
        [
            "p.toml:1:20: error at `shutdown_timeout`: `500000000000y` is longer than 100y, the longest duration an option takes"
        ]
    );
}
