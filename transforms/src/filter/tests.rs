use siemflow_core::BatchStatus;
use siemflow_core::event::attach_ack;

use super::FilterConfig;
use crate::test_support::{Built, bodies, build, config, deliver_all, event};
use siemflow_core::TransformConfig;

fn filter(condition_toml: &str) -> Built {
    build::<FilterConfig>("keep", "filter", condition_toml)
}

fn kept(built: &mut Built, events: &[&str]) -> Vec<serde_json::Value> {
    let mut emitted = built.run(events.iter().map(|e| event(e)).collect());
    assert!(emitted.named.iter().all(|(_, events)| events.is_empty()));
    let default = std::mem::take(&mut emitted.default);
    let out = bodies(&default);
    deliver_all(default);
    out
}

#[test]
fn vector_status_example_works_as_is() {
    let mut f = filter(r#"condition = '.status == 200'"#);
    let out = kept(
        &mut f,
        &[
            r#"{"status":200,"n":1}"#,
            r#"{"status":404,"n":2}"#,
            r#"{"n":3}"#,
        ],
    );
    assert_eq!(out, vec![serde_json::json!({"status":200,"n":1})]);
}

#[test]
fn vector_contains_example_works_as_is() {
    let mut f = filter(r#"condition = 'contains(string!(.message), "error")'"#);
    let out = kept(
        &mut f,
        &[
            r#"{"message":"an error occurred"}"#,
            r#"{"message":"all good"}"#,
            // `string!` fails here: a runtime error counts as false.
            r#"{"message":42}"#,
        ],
    );
    assert_eq!(
        out,
        vec![serde_json::json!({"message":"an error occurred"})]
    );
}

#[test]
fn audit_record_example_works_as_is() {
    let mut f = filter(r#"condition = 'exists(.Id) && .RecordType == 15'"#);
    let out = kept(
        &mut f,
        &[
            r#"{"Id":"a","RecordType":15,"Workload":"AzureActiveDirectory"}"#,
            r#"{"Id":"b","RecordType":2}"#,
            r#"{"RecordType":15}"#,
        ],
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0]["Id"], "a");
}

#[test]
fn long_form_condition_is_accepted() {
    let mut f = filter(
        r#"condition = { type = "vrl", source = '.Workload == "Exchange" && .Operation != "MailItemsAccessed"' }"#,
    );
    let out = kept(
        &mut f,
        &[
            r#"{"Workload":"Exchange","Operation":"Send"}"#,
            r#"{"Workload":"Exchange","Operation":"MailItemsAccessed"}"#,
            r#"{"Workload":"SharePoint","Operation":"FileAccessed"}"#,
        ],
    );
    assert_eq!(
        out,
        vec![serde_json::json!({"Workload":"Exchange","Operation":"Send"})]
    );
}

#[test]
fn a_non_boolean_result_counts_as_false() {
    let mut f = filter(r#"condition = '.flag'"#);
    let out = kept(&mut f, &[r#"{"flag":true}"#, r#"{"flag":"yes"}"#, r#"{}"#]);
    assert_eq!(out, vec![serde_json::json!({"flag":true})]);
}

#[test]
fn kept_events_are_unmodified() {
    let mut f = filter(r#"condition = 'exists(.Id)'"#);
    let out = kept(&mut f, &[r#"{"Id":"x","Nested":{"a":[1,2]}}"#]);
    assert_eq!(
        out,
        vec![serde_json::json!({"Id":"x","Nested":{"a":[1,2]}})]
    );
}

#[tokio::test]
async fn filtered_events_settle_as_delivered() {
    let mut f = filter(r#"condition = '.RecordType == 15'"#);
    let mut batch = vec![
        event(r#"{"RecordType":15}"#),
        event(r#"{"RecordType":2}"#),
        event(r#"{"RecordType":3}"#),
    ];
    let receipt = attach_ack(&mut batch);
    let emitted = f.run(batch);
    assert_eq!(emitted.default.len(), 1);
    deliver_all(emitted.default);
    assert_eq!(receipt.await, BatchStatus::Delivered);
}

#[tokio::test]
async fn kept_events_keep_their_acknowledgement() {
    let mut f = filter(r#"condition = '.RecordType == 15'"#);
    let mut batch = vec![event(r#"{"RecordType":15}"#), event(r#"{"RecordType":2}"#)];
    let receipt = attach_ack(&mut batch);
    let emitted = f.run(batch);
    // The kept event never reached a sink: the batch must not count as delivered.
    drop(emitted);
    assert_eq!(receipt.await, BatchStatus::Failed);
}

#[test]
fn compile_errors_name_the_option_and_the_location() {
    let config: FilterConfig = config(r#"condition = '.status == '"#);
    let issues = config.check();
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].key.as_deref(), Some("condition"));
    assert!(
        issues[0].message.contains("condition:1:"),
        "{}",
        issues[0].message
    );
}

#[test]
fn unhandled_fallible_calls_are_compile_errors() {
    let config: FilterConfig = config(r#"condition = 'contains(.message, "error")'"#);
    let issues = config.check();
    assert_eq!(issues.len(), 1);
    assert!(
        issues[0].message.contains("error[E110]"),
        "{}",
        issues[0].message
    );
}

#[test]
fn a_condition_that_is_never_boolean_is_rejected() {
    let config: FilterConfig = config(r#"condition = 'upcase("exchange")'"#);
    let issues = config.check();
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].key.as_deref(), Some("condition"));
    assert!(
        issues[0].message.contains("never to a boolean"),
        "{}",
        issues[0].message
    );
}

#[test]
fn a_condition_cannot_modify_the_event() {
    let config: FilterConfig = config(r#"condition = '.x = true'"#);
    assert_eq!(config.check().len(), 1);
}

#[test]
fn only_vrl_conditions_are_known() {
    let error = toml::from_str::<FilterConfig>(r#"condition = { type = "is_log" }"#)
        .expect_err("unknown condition type");
    assert!(error.to_string().contains("vrl"), "{error}");
}

#[test]
fn unknown_options_are_rejected() {
    assert!(toml::from_str::<FilterConfig>("condition = 'true'\nconditoin = 'false'").is_err());
    assert!(
        toml::from_str::<FilterConfig>("condition = { type = 'vrl', source = 'true', sorce = '' }")
            .is_err()
    );
}
