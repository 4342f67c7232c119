use siemflow_core::event::attach_ack;
use siemflow_core::{BatchStatus, TransformConfig};

use super::RouteConfig;
use crate::test_support::{Built, bodies, build, config, deliver_all, event};

const WORKLOADS: &str = r#"
[route]
exchange = '.Workload == "Exchange"'
sharepoint = { type = "vrl", source = '.Workload == "SharePoint" || .Workload == "OneDrive"' }
"#;

fn router(toml_text: &str) -> Built {
    build::<RouteConfig>("by_workload", "route", toml_text)
}

#[test]
fn outputs_are_the_route_names_and_unmatched() {
    let config: RouteConfig = config(WORKLOADS);
    assert_eq!(
        config.outputs(),
        vec!["exchange", "sharepoint", "_unmatched"]
    );
    let config: RouteConfig = config_without_unmatched();
    assert_eq!(config.outputs(), vec!["exchange", "sharepoint"]);
}

fn config_without_unmatched() -> RouteConfig {
    config(&format!("reroute_unmatched = false\n{WORKLOADS}"))
}

#[test]
fn events_are_split_by_route_with_unmatched_kept() {
    let mut r = router(WORKLOADS);
    let mut emitted = r.run(vec![
        event(r#"{"Workload":"Exchange","n":1}"#),
        event(r#"{"Workload":"OneDrive","n":2}"#),
        event(r#"{"Workload":"AzureActiveDirectory","n":3}"#),
        event(r#"{"Workload":"SharePoint","n":4}"#),
    ]);
    assert!(emitted.default.is_empty());
    let numbers = |events: Vec<siemflow_core::Event>| -> Vec<i64> {
        let n = bodies(&events)
            .iter()
            .map(|b| b["n"].as_i64().expect("n"))
            .collect();
        deliver_all(events);
        n
    };
    assert_eq!(numbers(emitted.named("exchange")), vec![1]);
    assert_eq!(numbers(emitted.named("sharepoint")), vec![2, 4]);
    assert_eq!(numbers(emitted.named("_unmatched")), vec![3]);
}

#[tokio::test]
async fn unmatched_events_are_dropped_as_delivered_when_not_rerouted() {
    let config = config_without_unmatched();
    let mut r = Built {
        transform: config
            .build(&crate::test_support::context("r", "route"))
            .expect("builds"),
        outputs: config.outputs(),
    };
    let mut batch = vec![
        event(r#"{"Workload":"Exchange"}"#),
        event(r#"{"Workload":"Yammer"}"#),
    ];
    let receipt = attach_ack(&mut batch);
    let mut emitted = r.run(batch);
    let exchange = emitted.named("exchange");
    assert_eq!(exchange.len(), 1);
    assert!(emitted.named("_unmatched").is_empty());
    deliver_all(exchange);
    assert_eq!(receipt.await, BatchStatus::Delivered);
}

#[tokio::test]
async fn an_event_matching_several_routes_goes_to_each_with_its_own_ack_share() {
    let mut r = router(
        r#"
[route]
admin = '.RecordType == 1'
exchange = '.Workload == "Exchange"'
"#,
    );
    let mut batch = vec![event(r#"{"Workload":"Exchange","RecordType":1}"#)];
    let receipt = attach_ack(&mut batch);
    let mut emitted = r.run(batch);
    let admin = emitted.named("admin");
    let exchange = emitted.named("exchange");
    assert_eq!(bodies(&admin), bodies(&exchange));
    assert_eq!(admin.len(), 1);
    deliver_all(admin);
    // One copy delivered is not enough: the other copy still holds its share.
    drop(exchange);
    assert_eq!(receipt.await, BatchStatus::Failed);
}

#[tokio::test]
async fn every_copy_delivered_delivers_the_batch() {
    let mut r = router(
        r#"
[route]
admin = '.RecordType == 1'
exchange = '.Workload == "Exchange"'
"#,
    );
    let mut batch = vec![
        event(r#"{"Workload":"Exchange","RecordType":1}"#),
        event(r#"{"RecordType":7}"#),
    ];
    let receipt = attach_ack(&mut batch);
    let mut emitted = r.run(batch);
    deliver_all(emitted.named("admin"));
    deliver_all(emitted.named("exchange"));
    deliver_all(emitted.named("_unmatched"));
    assert_eq!(receipt.await, BatchStatus::Delivered);
}

#[test]
fn a_failing_condition_does_not_match() {
    let mut r = router(
        r#"
[route]
errors = 'contains(string!(.message), "error")'
"#,
    );
    let mut emitted = r.run(vec![
        event(r#"{"message":1}"#),
        event(r#"{"message":"error!"}"#),
    ]);
    assert_eq!(emitted.named("errors").len(), 1);
    assert_eq!(emitted.named("_unmatched").len(), 1);
}

#[test]
fn invalid_route_names_are_reported() {
    let config: RouteConfig = config(
        r#"
[route]
"a.b" = 'true'
_unmatched = 'true'
good = 'true'
"#,
    );
    let issues = config.check();
    let keys: Vec<_> = issues.iter().filter_map(|i| i.key.as_deref()).collect();
    assert_eq!(keys, vec!["route._unmatched", "route.a.b"]);
}

#[test]
fn compile_errors_name_the_route() {
    let config: RouteConfig = config(
        r#"
[route]
exchange = '.Workload == '
"#,
    );
    let issues = config.check();
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].key.as_deref(), Some("route.exchange"));
    assert!(
        issues[0].message.contains("does not compile"),
        "{}",
        issues[0].message
    );
}
