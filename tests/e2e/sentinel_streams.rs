//! The DCR stream declarations that `docs/sinks/sentinel.md` ("Stream shapes for Microsoft
//! feeds") gives, checked against what the real binary sends: `entra_logs` (every sign-in
//! kind, directory audits), `graph_security` (alerts, incidents) and `o365_management`
//! read the Microsoft 365 simulator (run in this test process, so the test knows the
//! ground truth) into five `sentinel` sinks, each to a Logs Ingestion DCR of its own that
//! requires the columns every record of its feed carries. Every record must be accepted
//! (nothing dead-lettered); for the Graph feeds every field sent must be a declared column
//! (but the documented `x__odata_type`; Office 365 records carry workload fields the page
//! leaves to the user); every declared sign-in column must be populated on the sign-in
//! kinds the page says carry it; and every declared column must be sent (but those the
//! page says are left out of some records).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use siemflow_simulator::sentinel::{Dcr, SentinelConfig, SentinelSimulator};
use siemflow_simulator::{
    CONTENT_TYPES, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TENANT_ID, GraphResource,
    M365Config, Simulator, graph_ground_truth, published_records,
};

use crate::harness::{Workspace, wait_for};

/// Each feed: the stream the page declares, its pipeline source (type, resources and
/// extra options), the time field, where the ground truth comes from, the record id's
/// column, the columns every record of the feed carries (the DCR requires them), and
/// whether every field it sends must be declared.
struct Feed {
    stream: &'static str,
    source: &'static str,
    options: &'static str,
    timestamp_field: &'static str,
    truth: Truth,
    id_column: &'static str,
    always: Always,
    every_field_declared: bool,
}

/// Where a feed's records come from in the simulated world.
enum Truth {
    /// Graph collections.
    Graph(&'static [GraphResource]),
    /// Every content type of the Management Activity API.
    Management,
}

/// The columns in every record of a feed.
enum Always {
    /// The declared columns up to and including this one.
    Through(&'static str),
    /// These.
    Columns(&'static [&'static str]),
}

const FEEDS: [Feed; 5] = [
    Feed {
        stream: "Custom-EntraSignIns_CL",
        source: "entra_logs",
        options: r#"resources = ["sign_ins"]
sign_in_types = ["interactive", "non_interactive", "service_principal", "managed_identity"]
lateness = "2h30m"
requests_per_10s = 1000"#,
        timestamp_field: "createdDateTime",
        truth: Truth::Graph(&[
            GraphResource::SignIns,
            GraphResource::NonInteractiveSignIns,
            GraphResource::ServicePrincipalSignIns,
            GraphResource::ManagedIdentitySignIns,
        ]),
        id_column: "x_id",
        always: Always::Through("siemflow"),
        every_field_declared: true,
    },
    Feed {
        stream: "Custom-EntraDirectoryAudits_CL",
        source: "entra_logs",
        options: r#"resources = ["directory_audits"]
requests_per_10s = 1000"#,
        timestamp_field: "activityDateTime",
        truth: Truth::Graph(&[GraphResource::DirectoryAudits]),
        id_column: "x_id",
        always: Always::Through("x_id"),
        every_field_declared: true,
    },
    Feed {
        stream: "Custom-GraphSecurityAlerts_CL",
        source: "graph_security",
        options: r#"resources = ["alerts"]
requests_per_minute = 100000"#,
        timestamp_field: "lastUpdateDateTime",
        truth: Truth::Graph(&[GraphResource::Alerts]),
        id_column: "x_id",
        always: Always::Through("x_id"),
        every_field_declared: true,
    },
    Feed {
        stream: "Custom-GraphSecurityIncidents_CL",
        source: "graph_security",
        options: r#"resources = ["incidents"]
requests_per_minute = 100000"#,
        timestamp_field: "lastUpdateDateTime",
        truth: Truth::Graph(&[GraphResource::Incidents]),
        id_column: "x_id",
        always: Always::Through("x_id"),
        every_field_declared: true,
    },
    Feed {
        stream: "Custom-M365Audit_CL",
        source: "o365_management",
        options: "requests_per_minute = 100000",
        timestamp_field: "CreationTime",
        truth: Truth::Management,
        id_column: "x_Id",
        always: Always::Columns(&[
            "TimeGenerated",
            "x_Id",
            "CreationTime",
            "Operation",
            "OrganizationId",
            "RecordType",
            "RecordTypeName",
            "UserKey",
            "UserType",
            "Workload",
            "UserId",
            "siemflow",
        ]),
        every_field_declared: false,
    },
];

/// Sent but deliberately left undeclared (the page says why).
const UNDECLARED: [&str; 1] = ["x__odata_type"];

/// Declared, but left out of some records (the page says so; an incident's
/// `resolvedDateTime` only once it is resolved, and only from the simulator).
const NOT_IN_EVERY_RECORD: [&str; 10] = [
    "additionalData",
    "customDetails",
    "lastModifiedBy",
    "resolvingComment",
    "resolvedDateTime",
    "ClientIP",
    "ObjectId",
    "ResultStatus",
    "Scope",
    "AppAccessContext",
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
fn the_documented_stream_declarations_take_every_record_of_the_microsoft_feeds() {
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
        match feed.always {
            Always::Through(last) => {
                let end = columns
                    .iter()
                    .position(|c| c == last)
                    .unwrap_or_else(|| panic!("{} declares no {last}", feed.stream));
                columns[..=end].to_vec()
            }
            Always::Columns(names) => {
                for name in names {
                    assert!(
                        columns.iter().any(|c| c == name),
                        "{} declares no {name}",
                        feed.stream
                    );
                }
                names.iter().map(|n| n.to_string()).collect()
            }
        }
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
        .map(|feed| match feed.truth {
            Truth::Graph(resources) => resources
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
                .collect(),
            Truth::Management => CONTENT_TYPES
                .iter()
                .flat_map(|ct| {
                    published_records(
                        graph.config(),
                        DEFAULT_TENANT_ID,
                        ct,
                        graph.history_start(),
                        until,
                    )
                })
                .map(|r| r["Id"].as_str().expect("Id").to_string())
                .collect(),
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
            .filter_map(|r| r[feed.id_column].as_str().map(str::to_string))
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
                    !feed.every_field_declared
                        || columns.contains(key.as_str())
                        || UNDECLARED.contains(&key.as_str()),
                    "{}: `{key}` is sent but not declared, so the service would drop it",
                    feed.stream
                );
                sent.insert(key.clone());
            }
        }
        for column in &declared[feed.stream] {
            assert!(
                sent.contains(column) || NOT_IN_EVERY_RECORD.contains(&column.as_str()),
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
