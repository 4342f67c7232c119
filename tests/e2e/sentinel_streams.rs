//! The DCR stream declarations that `docs/sinks/sentinel.md` ("Stream shapes for Microsoft
//! feeds") gives for the Graph and Entra feeds, checked against what the real binary sends:
//! `entra_logs` (every sign-in kind, directory audits) and `graph_security` (alerts,
//! incidents) read the Microsoft 365 simulator (run in this test process, so the test
//! knows the ground truth) into four `sentinel` sinks, each to a Logs Ingestion DCR of
//! its own that requires the columns every record of its feed carries. Every record must
//! be accepted (nothing dead-lettered), every field sent must be a declared column (but
//! the documented `x__odata_type`), every declared sign-in column must be populated on
//! the sign-in kinds the page says carry it, and every declared column must be sent
//! (but those the page says Graph leaves out of some answers).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use siemflow_simulator::sentinel::{Dcr, SentinelConfig, SentinelSimulator};
use siemflow_simulator::{
    DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TENANT_ID, GraphResource, M365Config,
    Simulator, graph_ground_truth,
};

use crate::harness::{Workspace, wait_for};

/// Each feed: the stream the page declares, its pipeline source (type, resources and
/// extra options), the time field, the simulator's collections, and the columns every
/// record of the feed carries (the DCR requires them).
struct Feed {
    stream: &'static str,
    source: &'static str,
    options: &'static str,
    timestamp_field: &'static str,
    truth: &'static [GraphResource],
    /// The declared columns up to and including this one are in every record.
    always_through: &'static str,
}

const FEEDS: [Feed; 4] = [
    Feed {
        stream: "Custom-EntraSignIns_CL",
        source: "entra_logs",
        options: r#"resources = ["sign_ins"]
sign_in_types = ["interactive", "non_interactive", "service_principal", "managed_identity"]
lateness = "2h30m"
requests_per_10s = 1000"#,
        timestamp_field: "createdDateTime",
        truth: &[
            GraphResource::SignIns,
            GraphResource::NonInteractiveSignIns,
            GraphResource::ServicePrincipalSignIns,
            GraphResource::ManagedIdentitySignIns,
        ],
        always_through: "siemflow",
    },
    Feed {
        stream: "Custom-EntraDirectoryAudits_CL",
        source: "entra_logs",
        options: r#"resources = ["directory_audits"]
requests_per_10s = 1000"#,
        timestamp_field: "activityDateTime",
        truth: &[GraphResource::DirectoryAudits],
        always_through: "x_id",
    },
    Feed {
        stream: "Custom-GraphSecurityAlerts_CL",
        source: "graph_security",
        options: r#"resources = ["alerts"]
requests_per_minute = 100000"#,
        timestamp_field: "lastUpdateDateTime",
        truth: &[GraphResource::Alerts],
        always_through: "x_id",
    },
    Feed {
        stream: "Custom-GraphSecurityIncidents_CL",
        source: "graph_security",
        options: r#"resources = ["incidents"]
requests_per_minute = 100000"#,
        timestamp_field: "lastUpdateDateTime",
        truth: &[GraphResource::Incidents],
        always_through: "x_id",
    },
];

/// Sent but deliberately left undeclared (the page says why).
const UNDECLARED: [&str; 1] = ["x__odata_type"];

/// Declared, but Graph leaves them out of some answers (the page says so; an incident's
/// `resolvedDateTime` only once it is resolved, and only from the simulator).
const NOT_IN_EVERY_ANSWER: [&str; 5] = [
    "additionalData",
    "customDetails",
    "lastModifiedBy",
    "resolvingComment",
    "resolvedDateTime",
];

/// The first column only the beta sign-ins carry.
const FIRST_BETA_SIGN_IN_COLUMN: &str = "signInEventTypes";

/// Every stream's declared columns, in order, from the page's `streamDeclarations` blocks.
fn declared_streams() -> BTreeMap<String, Vec<String>> {
    let page = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/sinks/sentinel.md"),
    )
    .expect("docs/sinks/sentinel.md");
    let mut streams = BTreeMap::new();
    for block in page.split("```json\n").skip(1) {
        let Some((json, _)) = block.split_once("```") else {
            continue;
        };
        let Ok(value) = serde_json::from_str::<Value>(json) else {
            panic!("a JSON block of sentinel.md does not parse:\n{json}");
        };
        let Some(declarations) = value["streamDeclarations"].as_object() else {
            continue;
        };
        for (stream, declaration) in declarations {
            let columns = declaration["columns"]
                .as_array()
                .expect("columns")
                .iter()
                .map(|c| c["name"].as_str().expect("column name").to_string())
                .collect();
            streams.insert(stream.clone(), columns);
        }
    }
    streams
}

/// A frozen world of six hours, the Graph limits out of the way.
fn world() -> M365Config {
    let mut config = M365Config {
        seed: 12,
        live: false,
        history: Duration::from_secs(6 * 3600),
        ..M365Config::default()
    };
    config.graph.alerts_per_hour = 30;
    config.graph.sign_ins_per_hour = 120;
    config.graph.security_requests_per_minute = 1_000_000;
    config.graph.identity_requests_per_10s = 1_000_000;
    config
}

fn dcr_id(i: usize) -> String {
    format!("dcr-{:032x}", 0x5e17_0000 + i)
}

fn pipeline(graph: &str, sentinel: &SentinelSimulator) -> String {
    let cfg = sentinel.config();
    let tenant = format!(
        r#"{{ tenant_id = "{DEFAULT_TENANT_ID}", client_id = "{DEFAULT_CLIENT_ID}", client_secret = "{DEFAULT_CLIENT_SECRET}", login_url = "{graph}" }}"#
    );
    let mut text = String::from("data_dir = \"data\"\n");
    let mut dead_letters = Vec::new();
    for (i, feed) in FEEDS.iter().enumerate() {
        text.push_str(&format!(
            r#"
[sources.feed{i}]
type = "{source}"
api_url = "{graph}"
start_from = "1d"
poll_interval = "1s"
tenants = [{tenant}]
{options}

[sinks.sentinel{i}]
type = "sentinel"
inputs = ["feed{i}"]
endpoint = "{url}"
dcr_immutable_id = "{dcr}"
stream_name = "{stream}"
timestamp_field = "{timestamp_field}"
batch = {{ max_events = 500, timeout = "50ms" }}
retry = {{ initial_backoff = "10ms", max_backoff = "100ms" }}
[sinks.sentinel{i}.auth]
tenant_id = "{sentinel_tenant}"
client_id = "{sentinel_client}"
client_secret = "{sentinel_secret}"
login_url = "{url}"
"#,
            source = feed.source,
            options = feed.options,
            url = sentinel.url(),
            dcr = dcr_id(i),
            stream = feed.stream,
            timestamp_field = feed.timestamp_field,
            sentinel_tenant = cfg.tenant_id,
            sentinel_client = cfg.client_id,
            sentinel_secret = cfg.client_secret,
        ));
        dead_letters.push(format!("\"sentinel{i}.dead_letter\""));
    }
    text.push_str(&format!(
        r#"
[sinks.rejects]
type = "file"
inputs = [{}]
path = "rejects.ndjson"
"#,
        dead_letters.join(", ")
    ));
    text
}

#[test]
fn the_documented_stream_declarations_take_every_record_of_the_graph_and_entra_feeds() {
    let declared = declared_streams();
    for feed in &FEEDS {
        assert!(
            declared.contains_key(feed.stream),
            "sentinel.md declares no {}: {:?}",
            feed.stream,
            declared.keys()
        );
    }
    let always = |feed: &Feed| -> Vec<String> {
        let columns = &declared[feed.stream];
        let end = columns
            .iter()
            .position(|c| c == feed.always_through)
            .unwrap_or_else(|| panic!("{} declares no {}", feed.stream, feed.always_through));
        columns[..=end].to_vec()
    };

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let graph = runtime
        .block_on(Simulator::start(
            world(),
            "127.0.0.1:0".parse().expect("addr"),
        ))
        .expect("Microsoft 365 simulator");
    let sentinel = runtime
        .block_on(SentinelSimulator::start(
            SentinelConfig {
                dcrs: FEEDS
                    .iter()
                    .enumerate()
                    .map(|(i, feed)| Dcr {
                        immutable_id: dcr_id(i),
                        streams: vec![feed.stream.to_string()],
                        required_columns: always(feed),
                        publishers: None,
                    })
                    .collect(),
                ..SentinelConfig::default()
            },
            "127.0.0.1:0".parse().expect("addr"),
        ))
        .expect("Logs Ingestion simulator");

    // The ids each feed must deliver: the frozen world's records (alerts and incidents in
    // their one visible version).
    let until = graph.visible_until();
    let truth: Vec<BTreeSet<String>> = FEEDS
        .iter()
        .map(|feed| {
            feed.truth
                .iter()
                .flat_map(|resource| {
                    graph_ground_truth(
                        graph.config(),
                        DEFAULT_TENANT_ID,
                        *resource,
                        graph.history_start(),
                        until,
                    )
                })
                .map(|r| r["id"].as_str().expect("id").to_string())
                .collect()
        })
        .collect();
    for (feed, ids) in FEEDS.iter().zip(&truth) {
        assert!(!ids.is_empty(), "the world has {}", feed.stream);
    }

    let ws = Workspace::new();
    ws.write("p.toml", &pipeline(&graph.base_url(), &sentinel));
    let mut run = ws.run("p.toml", Stdio::null());
    let received = |feed: &Feed| -> BTreeSet<String> {
        sentinel
            .received(feed.stream)
            .iter()
            .filter_map(|r| r["x_id"].as_str().map(str::to_string))
            .collect()
    };
    wait_for(
        "every record of every feed ingested, or one dead-lettered",
        Duration::from_secs(180),
        || {
            let all = FEEDS
                .iter()
                .zip(&truth)
                .all(|(feed, ids)| received(feed).is_superset(ids));
            (all || !ws.lines("rejects.ndjson").is_empty()).then_some(())
        },
    );
    run.signal(libc::SIGTERM);
    assert!(run.wait_exit(Duration::from_secs(30)).success());

    let rejects = ws.lines("rejects.ndjson");
    assert!(
        rejects.is_empty(),
        "the DCRs refused records: {}",
        rejects
            .iter()
            .map(|l| {
                let event: Value = serde_json::from_str(l).unwrap_or_default();
                event["metadata"]["dropped"]["message"].to_string()
            })
            .collect::<Vec<_>>()
            .join("\n")
    );
    for (feed, ids) in FEEDS.iter().zip(&truth) {
        let records = sentinel.received(feed.stream);
        assert!(received(feed).is_superset(ids), "{}", feed.stream);
        let columns: HashSet<&str> = declared[feed.stream].iter().map(String::as_str).collect();
        let mut sent = BTreeSet::new();
        for record in &records {
            let object = record.as_object().expect("record");
            for key in object.keys() {
                assert!(
                    columns.contains(key.as_str()) || UNDECLARED.contains(&key.as_str()),
                    "{}: `{key}` is sent but not declared, so the service would drop it",
                    feed.stream
                );
                sent.insert(key.clone());
            }
        }
        for column in &declared[feed.stream] {
            assert!(
                sent.contains(column) || NOT_IN_EVERY_ANSWER.contains(&column.as_str()),
                "{}: `{column}` is declared but never sent",
                feed.stream
            );
        }
    }

    // Sign-ins: the beta kinds carry every declared column, populated; v1.0 ones none of
    // the beta kinds' own.
    let columns = &declared[FEEDS[0].stream];
    let first_beta = columns
        .iter()
        .position(|c| c == FIRST_BETA_SIGN_IN_COLUMN)
        .expect("the beta sign-in columns are declared");
    let mut kinds = BTreeSet::new();
    for record in sentinel.received(FEEDS[0].stream) {
        let kind = record["siemflow"]["resource"]
            .as_str()
            .expect("siemflow.resource")
            .to_string();
        let expected: &[String] = if kind == "sign_ins" {
            for column in &columns[first_beta..] {
                assert!(record.get(column).is_none(), "v1.0 sign-in with {column}");
            }
            &columns[..first_beta]
        } else {
            columns
        };
        for column in expected {
            assert!(
                record.get(column).is_some_and(|v| !v.is_null()),
                "a {kind} sign-in without {column}: {record}"
            );
        }
        kinds.insert(kind);
    }
    assert_eq!(kinds.len(), 4, "every sign-in kind was sent: {kinds:?}");

    runtime.block_on(sentinel.stop());
    runtime.block_on(graph.stop());
}
