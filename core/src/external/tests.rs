use std::time::Duration;

use super::*;

fn config(script: &str) -> ExternalConfig {
    let mut config: ExternalConfig =
        serde_json::from_value(serde_json::json!({"command": "/bin/sh"})).expect("config");
    config.args = vec!["-c".into(), script.into()];
    config.start_timeout = Duration::from_secs(5);
    config
}

#[test]
fn the_generated_code_matches_the_proto() {
    let proto = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../proto/plugin.proto"
    ))
    .expect("proto/plugin.proto");
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &proto);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let generated = include_str!("proto/siemflow.plugin.v1.rs");
    assert!(
        generated.contains(&format!("proto sha256: {hex}")),
        "proto/plugin.proto changed: run scripts/gen-plugin-proto.sh"
    );
}

#[tokio::test]
async fn a_plugin_that_exits_during_its_handshake_is_reported_with_its_stderr() {
    let config = config("echo 'cannot import requests' >&2; exit 3");
    let error = start("enrich", ComponentKind::Transform, &config, None, false)
        .await
        .err()
        .expect("fails");
    let text = error.to_string();
    assert!(text.contains("exited during its handshake"), "{text}");
    assert!(text.contains("exit status: 3"), "{text}");
    assert!(text.contains("cannot import requests"), "{text}");
    assert!(!error.is_permanent());
}

#[tokio::test]
async fn a_plugin_that_never_listens_misses_the_start_deadline() {
    let mut config = config("echo waiting >&2; exec sleep 60");
    config.start_timeout = Duration::from_millis(300);
    let error = start("slow", ComponentKind::Sink, &config, None, false)
        .await
        .err()
        .expect("fails");
    let text = error.to_string();
    assert!(
        text.contains("did not answer the handshake within 300ms"),
        "{text}"
    );
    assert!(text.contains("waiting"), "{text}");
}

#[tokio::test]
async fn the_environment_holds_only_what_is_allowed() {
    // SAFETY-free: a variable only this test reads.
    let config = ExternalConfig {
        env: vec![
            "PATH".into(),
            "GREETING=hello world".into(),
            "NOT_SET_ANYWHERE_XYZ".into(),
        ],
        ..config("env >&2; exit 1")
    };
    let error = start("env", ComponentKind::Source, &config, None, false)
        .await
        .err()
        .expect("fails");
    let text = error.to_string();
    assert!(text.contains("GREETING=hello world"), "{text}");
    assert!(
        text.contains(&format!("{}=unix://", process::SOCKET_ENV)),
        "{text}"
    );
    assert!(text.contains(process::TOKEN_ENV), "{text}");
    assert!(!text.contains("NOT_SET_ANYWHERE_XYZ"), "{text}");
    assert!(
        !text.contains("HOME="),
        "host variables are not inherited: {text}"
    );
}

#[tokio::test]
async fn a_wrong_checksum_is_refused_before_running_anything() {
    let config = ExternalConfig {
        sha256: Some("0".repeat(64)),
        ..config("exit 0")
    };
    let error = start("pinned", ComponentKind::Sink, &config, None, false)
        .await
        .err()
        .expect("fails");
    assert!(error.to_string().contains("not the pinned"), "{error}");
    assert!(error.is_permanent());
}

#[tokio::test(start_paused = true)]
async fn in_flight_batches_expire_from_the_oldest() {
    let gauge = metrics::Gauge::noop();
    let mut in_flight = InFlight::new(gauge);
    let timeout = Duration::from_secs(30);
    assert_eq!(in_flight.deadline(timeout), None);
    let started = Instant::now();
    let first = in_flight.insert("a");
    tokio::time::advance(Duration::from_secs(10)).await;
    let second = in_flight.insert("b");
    assert_eq!(in_flight.deadline(timeout), Some(started + timeout));
    assert_eq!(in_flight.take(first), Some("a"));
    assert_eq!(
        in_flight.deadline(timeout),
        Some(started + Duration::from_secs(10) + timeout),
        "the answered batch no longer counts"
    );
    assert_eq!(in_flight.take(first), None, "an answer counts once");
    let third = in_flight.insert("c");
    assert!(third > second, "ids are never reused");
    assert_eq!(in_flight.drain(), vec!["b", "c"], "oldest first");
    assert!(in_flight.is_empty());
}

#[tokio::test(start_paused = true)]
async fn restarts_back_off_and_start_over_once_healthy() {
    let labels = crate::metrics::ComponentLabels {
        id: "backoff".into(),
        kind: ComponentKind::Transform,
        type_name: "plugin".into(),
    };
    let mut supervisor = Supervisor::new(
        "backoff",
        ComponentKind::Transform,
        config("exit 0"),
        &labels,
    );
    let first = supervisor.restarts.after_failure(None).expect("granted");
    let second = supervisor.restarts.after_failure(None).expect("granted");
    assert!(
        first >= RESTART_INITIAL && first < RESTART_INITIAL * 2,
        "{first:?}"
    );
    assert!(second >= RESTART_INITIAL * 2, "{second:?}");
    supervisor.healthy();
    let again = supervisor.restarts.after_failure(None).expect("granted");
    assert!(
        again < RESTART_INITIAL * 2,
        "back to the first step: {again:?}"
    );
}
