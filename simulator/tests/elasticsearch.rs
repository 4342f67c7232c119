//! The Elasticsearch / OpenSearch simulator through a real HTTP client: `_bulk` parsing and
//! per-item results, data streams, 409 on `create`, item and request faults, auth, limits.

mod common;

use std::net::SocketAddr;

use serde_json::{Value, json};
use siemflow_simulator::elasticsearch::{EsApiKey, EsFaults, EsUser, Flavour};
use siemflow_simulator::{ElasticsearchConfig, ElasticsearchSimulator};

async fn start(cfg: ElasticsearchConfig) -> ElasticsearchSimulator {
    let addr: SocketAddr = "127.0.0.1:0".parse().expect("address");
    ElasticsearchSimulator::start(cfg, addr)
        .await
        .expect("simulator starts")
}

struct Answer {
    status: u16,
    body: Value,
    text: String,
    product: Option<String>,
}

async fn request(
    method: reqwest::Method,
    url: String,
    headers: &[(&str, &str)],
    body: impl Into<reqwest::Body>,
) -> Answer {
    let mut req = reqwest::Client::new().request(method, url).body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    let product = r
        .headers()
        .get("x-elastic-product")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = r.text().await.expect("body");
    Answer {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
        product,
    }
}

async fn bulk(sim: &ElasticsearchSimulator, path: &str, body: impl Into<reqwest::Body>) -> Answer {
    request(
        reqwest::Method::POST,
        format!("{}{path}", sim.url()),
        &[("content-type", "application/x-ndjson")],
        body,
    )
    .await
}

fn ndjson(lines: &[Value]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

fn item_status(a: &Answer) -> Vec<u64> {
    a.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| {
            let (_, v) = i.as_object().expect("item").iter().next().expect("op");
            v["status"].as_u64().expect("status")
        })
        .collect()
}

fn item(a: &Answer, n: usize, op: &str) -> Value {
    a.body["items"][n][op].clone()
}

/// A cluster of `flavour` with `faults` switched on.
async fn start_faulty(flavour: Flavour, faults: EsFaults) -> ElasticsearchSimulator {
    start(ElasticsearchConfig {
        flavour,
        faults,
        ..ElasticsearchConfig::default()
    })
    .await
}

/// One `create` of a one-field document into index `x`.
async fn create_one(es: &ElasticsearchSimulator) -> Answer {
    bulk(
        es,
        "/x/_bulk",
        ndjson(&[json!({"create": {}}), json!({"m": 1})]),
    )
    .await
}

#[tokio::test]
async fn version_info_and_health_per_flavour() {
    let es = start(ElasticsearchConfig::default()).await;
    let a = request(reqwest::Method::GET, es.url() + "/", &[], "").await;
    assert_eq!(a.status, 200);
    assert!(
        a.body["version"]["number"]
            .as_str()
            .expect("number")
            .starts_with("8.")
    );
    assert_eq!(a.body["tagline"], json!("You Know, for Search"));
    assert_eq!(a.product.as_deref(), Some("Elasticsearch"));
    let h = request(reqwest::Method::GET, es.url() + "/_cluster/health", &[], "").await;
    assert_eq!((h.status, h.body["status"].clone()), (200, json!("green")));
    es.stop().await;

    let os = start(ElasticsearchConfig {
        flavour: Flavour::Opensearch,
        ..ElasticsearchConfig::default()
    })
    .await;
    let a = request(reqwest::Method::GET, os.url() + "/", &[], "").await;
    assert_eq!(a.body["version"]["distribution"], json!("opensearch"));
    assert!(
        a.body["version"]["number"]
            .as_str()
            .expect("number")
            .starts_with("2.")
    );
    assert_eq!(a.product, None);
    os.stop().await;
}

#[tokio::test]
async fn index_create_and_the_409_on_an_existing_id() {
    let es = start(ElasticsearchConfig::default()).await;
    let body = ndjson(&[
        json!({"create": {"_index": "m365", "_id": "a"}}),
        json!({"n": 1}),
        json!({"index": {"_index": "m365", "_id": "b"}}),
        json!({"n": 2}),
        json!({"index": {"_index": "m365"}}),
        json!({"n": 3}),
    ]);
    let a = bulk(&es, "/_bulk", body).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["errors"], json!(false));
    assert!(a.body["took"].is_u64());
    assert_eq!(item_status(&a), vec![201, 201, 201]);
    let first = item(&a, 0, "create");
    assert_eq!(first["result"], json!("created"));
    assert_eq!(first["_version"], json!(1));
    assert_eq!(first["_index"], json!("m365"));
    let auto_id = item(&a, 2, "index")["_id"]
        .as_str()
        .expect("auto id")
        .to_string();
    assert_eq!(auto_id.len(), 20);

    // Again: create → 409, index → overwrite (version 2).
    let again = ndjson(&[
        json!({"create": {"_id": "a"}}),
        json!({"n": 10}),
        json!({"index": {"_id": "b"}}),
        json!({"n": 20}),
    ]);
    let a = bulk(&es, "/m365/_bulk", again).await;
    assert_eq!(a.body["errors"], json!(true));
    assert_eq!(item_status(&a), vec![409, 200]);
    let conflict = item(&a, 0, "create");
    assert_eq!(
        conflict["error"]["type"],
        json!("version_conflict_engine_exception")
    );
    assert_eq!(
        conflict["error"]["reason"],
        json!("[a]: version conflict, document already exists (current version [1])")
    );
    assert_eq!(item(&a, 1, "index")["result"], json!("updated"));
    assert_eq!(item(&a, 1, "index")["_version"], json!(2));

    let docs = es.documents("m365");
    assert_eq!(docs.len(), 3);
    assert!(docs.contains(&("a".to_string(), json!({"n": 1}))));
    assert!(docs.contains(&("b".to_string(), json!({"n": 20}))));
    let counts = es.indexing_attempts("m365");
    assert_eq!(
        (
            counts["a"].attempts,
            counts["a"].writes,
            counts["a"].conflicts
        ),
        (2, 1, 1)
    );
    assert_eq!(counts["b"].writes, 2);
    let stats = es.stats();
    assert_eq!(stats.items_by_status.get(&409), Some(&1));
    assert_eq!(stats.documents_created, 3);
    assert_eq!(stats.documents_updated, 1);
    es.stop().await;
}

#[tokio::test]
async fn update_and_delete() {
    let es = start(ElasticsearchConfig::default()).await;
    let body = ndjson(&[
        json!({"index": {"_index": "x", "_id": "1"}}),
        json!({"a": 1}),
        json!({"update": {"_index": "x", "_id": "1"}}),
        json!({"doc": {"b": 2}}),
        json!({"update": {"_index": "x", "_id": "2"}}),
        json!({"doc": {"c": 3}}),
        json!({"update": {"_index": "x", "_id": "3"}}),
        json!({"doc": {"d": 4}, "doc_as_upsert": true}),
        json!({"delete": {"_index": "x", "_id": "3"}}),
        json!({"delete": {"_index": "x", "_id": "9"}}),
    ]);
    let a = bulk(&es, "/_bulk", body).await;
    assert_eq!(item_status(&a), vec![201, 200, 404, 201, 200, 404]);
    assert_eq!(
        item(&a, 2, "update")["error"]["type"],
        json!("document_missing_exception")
    );
    assert_eq!(item(&a, 5, "delete")["result"], json!("not_found"));
    assert_eq!(
        es.documents("x"),
        vec![("1".to_string(), json!({"a": 1, "b": 2}))]
    );
    es.stop().await;
}

#[tokio::test]
async fn data_streams_take_only_create_with_a_timestamp() {
    for (flavour, parsing) in [
        (Flavour::Elasticsearch, "document_parsing_exception"),
        (Flavour::Opensearch, "mapper_parsing_exception"),
    ] {
        let es = start(ElasticsearchConfig {
            flavour,
            data_streams: vec!["logs-*-*".into()],
            ..ElasticsearchConfig::default()
        })
        .await;
        let body = ndjson(&[
            json!({"index": {"_index": "logs-m365-default", "_id": "1"}}),
            json!({"@timestamp": "2026-11-02T10:15:30.123Z"}),
            json!({"create": {"_index": "logs-m365-default", "_id": "2"}}),
            json!({"message": "no time"}),
            json!({"create": {"_index": "logs-m365-default", "_id": "3"}}),
            json!({"@timestamp": "2026-11-02T10:15:30.123Z"}),
        ]);
        let a = bulk(&es, "/_bulk", body).await;
        assert_eq!(item_status(&a), vec![400, 400, 201]);
        assert_eq!(
            item(&a, 0, "index")["error"]["type"],
            json!("illegal_argument_exception")
        );
        assert!(
            item(&a, 0, "index")["error"]["reason"]
                .as_str()
                .expect("reason")
                .starts_with(
                    "only write ops with an op_type of create are allowed in data streams"
                )
        );
        assert_eq!(item(&a, 1, "create")["error"]["type"], json!(parsing));
        let backing = item(&a, 2, "create")["_index"]
            .as_str()
            .expect("index")
            .to_string();
        assert!(
            backing.starts_with(".ds-logs-m365-default-") && backing.ends_with("-000001"),
            "{backing}"
        );
        assert_eq!(es.documents("logs-m365-default").len(), 1);
        es.stop().await;
    }
}

#[tokio::test]
async fn malformed_requests_are_refused_whole() {
    let es = start(ElasticsearchConfig {
        max_content_length: 1000,
        ..ElasticsearchConfig::default()
    })
    .await;
    let ok = ndjson(&[json!({"index": {"_index": "x"}}), json!({"a": 1})]);
    let a = request(
        reqwest::Method::POST,
        es.url() + "/_bulk",
        &[("content-type", "text/plain")],
        ok.clone(),
    )
    .await;
    assert_eq!(
        (a.status, a.body.clone()),
        (
            406,
            json!({"error": "Content-Type header [text/plain] is not supported", "status": 406})
        )
    );
    let cases: Vec<(String, String, &str)> = vec![
        (
            "/_bulk".into(),
            ok.trim_end().to_string(),
            "illegal_argument_exception",
        ),
        ("/_bulk".into(), String::new(), "parse_exception"),
        (
            "/_bulk?refresh=true&colour=red".into(),
            ok.clone(),
            "illegal_argument_exception",
        ),
        (
            "/_bulk".into(),
            ndjson(&[
                json!({"index": {"_index": "x", "_type": "_doc"}}),
                json!({}),
            ]),
            "illegal_argument_exception",
        ),
        (
            "/_bulk".into(),
            ndjson(&[json!({"index": {}}), json!({})]),
            "action_request_validation_exception",
        ),
        (
            "/Upper/_bulk".into(),
            ok.clone(),
            "invalid_index_name_exception",
        ),
    ];
    for (path, body, kind) in cases {
        let a = bulk(&es, &path, body.clone()).await;
        assert_eq!(a.status, 400, "{path} {body:?}: {}", a.text);
        assert_eq!(a.body["error"]["type"], json!(kind), "{path} {body:?}");
        assert_eq!(a.body["status"], json!(400));
    }
    // An invalid index name inside the body fails only its item.
    let a = bulk(
        &es,
        "/_bulk",
        ndjson(&[
            json!({"index": {"_index": "Bad Name"}}),
            json!({"a": 1}),
            json!({"index": {"_index": "good"}}),
            json!({"a": 1}),
        ]),
    )
    .await;
    assert_eq!(item_status(&a), vec![400, 201]);
    assert_eq!(
        item(&a, 0, "index")["error"]["type"],
        json!("invalid_index_name_exception")
    );
    // A bad source line fails only its item.
    let a = bulk(
        &es,
        "/x/_bulk",
        "{\"index\":{}}\n{not json\n{\"index\":{}}\n{\"a\":1}\n",
    )
    .await;
    assert_eq!(item_status(&a), vec![400, 201]);
    assert_eq!(
        item(&a, 0, "index")["error"]["type"],
        json!("document_parsing_exception")
    );
    // Over http.max_content_length, as sent and after gunzip.
    let big = ndjson(&[
        json!({"index": {"_index": "x"}}),
        json!({"pad": "p".repeat(1000)}),
    ]);
    assert_eq!(bulk(&es, "/_bulk", big.clone()).await.status, 413);
    let gz = common::gzip(big.as_bytes());
    let a = request(
        reqwest::Method::POST,
        es.url() + "/_bulk",
        &[
            ("content-type", "application/x-ndjson"),
            ("content-encoding", "gzip"),
        ],
        gz,
    )
    .await;
    assert_eq!(a.status, 413);
    // Gzip within the limit is fine.
    let gz = common::gzip(ok.as_bytes());
    let a = request(
        reqwest::Method::POST,
        es.url() + "/_bulk",
        &[
            ("content-type", "application/x-ndjson"),
            ("content-encoding", "gzip"),
        ],
        gz,
    )
    .await;
    assert_eq!(item_status(&a), vec![201]);
    let a = request(reqwest::Method::GET, es.url() + "/_nothing/here", &[], "").await;
    assert_eq!(a.status, 400);
    assert_eq!(
        a.body["error"],
        json!("no handler found for uri [/_nothing/here] and method [GET]")
    );
    es.stop().await;
}

#[tokio::test]
async fn item_faults_then_retrying_only_failed_items_gives_exactly_once() {
    let es = start(ElasticsearchConfig {
        seed: 9,
        faults: EsFaults {
            item_throttle_rate: 0.3,
            item_unavailable_rate: 0.2,
            ..EsFaults::default()
        },
        ..ElasticsearchConfig::default()
    })
    .await;
    let mut pending: Vec<u32> = (0..50).collect();
    let mut seen_429 = false;
    let mut seen_503 = false;
    for _round in 0..50 {
        if pending.is_empty() {
            break;
        }
        let lines: Vec<Value> = pending
            .iter()
            .flat_map(|n| {
                [
                    json!({"create": {"_index": "m365", "_id": format!("id{n}")}}),
                    json!({"n": n}),
                ]
            })
            .collect();
        let a = bulk(&es, "/_bulk", ndjson(&lines)).await;
        assert_eq!(a.status, 200);
        let statuses = item_status(&a);
        for (n, s) in statuses.iter().enumerate() {
            match s {
                429 => {
                    seen_429 = true;
                    assert_eq!(
                        item(&a, n, "create")["error"]["type"],
                        json!("es_rejected_execution_exception")
                    );
                }
                503 => {
                    seen_503 = true;
                    assert_eq!(
                        item(&a, n, "create")["error"]["type"],
                        json!("unavailable_shards_exception")
                    );
                }
                201 => {}
                other => panic!("unexpected item status {other}"),
            }
        }
        pending = pending
            .iter()
            .zip(&statuses)
            .filter(|(_, s)| **s != 201)
            .map(|(n, _)| *n)
            .collect();
    }
    assert!(pending.is_empty());
    assert!(seen_429 && seen_503);
    assert_eq!(es.documents("m365").len(), 50);
    assert!(es.indexing_attempts("m365").values().all(|c| c.writes == 1));
    es.stop().await;
}

#[tokio::test]
async fn reject_marker_and_request_faults_per_flavour() {
    for (flavour, parsing, rejected) in [
        (
            Flavour::Elasticsearch,
            "document_parsing_exception",
            "es_rejected_execution_exception",
        ),
        (
            Flavour::Opensearch,
            "mapper_parsing_exception",
            "opensearch_rejected_execution_exception",
        ),
    ] {
        let es = start_faulty(
            flavour,
            EsFaults {
                reject_marker: Some("POISON".into()),
                ..EsFaults::default()
            },
        )
        .await;
        let a = bulk(
            &es,
            "/x/_bulk",
            ndjson(&[
                json!({"create": {}}),
                json!({"m": "POISON"}),
                json!({"create": {}}),
                json!({"m": "fine"}),
            ]),
        )
        .await;
        assert_eq!(item_status(&a), vec![400, 201]);
        assert_eq!(item(&a, 0, "create")["error"]["type"], json!(parsing));
        es.stop().await;

        let busy = start_faulty(
            flavour,
            EsFaults {
                request_throttle_rate: 1.0,
                ..EsFaults::default()
            },
        )
        .await;
        let a = create_one(&busy).await;
        assert_eq!(
            (a.status, a.body["error"]["type"].clone()),
            (429, json!(rejected))
        );
        assert!(busy.documents("x").is_empty());
        busy.stop().await;
    }
    let down = start_faulty(
        Flavour::Elasticsearch,
        EsFaults {
            request_unavailable_rate: 1.0,
            ..EsFaults::default()
        },
    )
    .await;
    let a = create_one(&down).await;
    assert_eq!(a.status, 503);
    down.stop().await;
}

#[tokio::test]
async fn filter_path_shrinks_the_response() {
    let es = start(ElasticsearchConfig::default()).await;
    let a = bulk(
        &es,
        "/x/_bulk?filter_path=errors,items.*.status,items.*.error",
        ndjson(&[
            json!({"create": {"_id": "1"}}),
            json!({}),
            json!({"create": {"_id": "1"}}),
            json!({}),
        ]),
    )
    .await;
    assert_eq!(a.body["errors"], json!(true));
    assert_eq!(a.body["items"][0], json!({"create": {"status": 201}}));
    assert_eq!(a.body["items"][1]["create"]["status"], json!(409));
    assert!(a.body.get("took").is_none());
    es.stop().await;
}

#[tokio::test]
async fn basic_and_api_key_authentication() {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let es = start(ElasticsearchConfig {
        users: vec![EsUser {
            username: "elastic".into(),
            password: "changeme".into(),
        }],
        api_keys: vec![EsApiKey {
            id: "VuaCfGcBCdbkQm-e5aOx".into(),
            key: "ui2lp2axTNmsyakw9tvNnw".into(),
        }],
        ..ElasticsearchConfig::default()
    })
    .await;
    let root = es.url() + "/";
    let get = |auth: Option<String>| {
        let root = root.clone();
        async move {
            let headers: Vec<(&str, &str)> = match &auth {
                Some(a) => vec![("authorization", a.as_str())],
                None => vec![],
            };
            request(reqwest::Method::GET, root, &headers, "").await
        }
    };
    let a = get(None).await;
    assert_eq!(a.status, 401);
    assert_eq!(a.body["error"]["type"], json!("security_exception"));
    assert_eq!(
        a.body["error"]["reason"],
        json!("missing authentication credentials for REST request [/]")
    );
    let a = get(Some(format!("Basic {}", b64("elastic:wrong")))).await;
    assert_eq!(a.status, 401);
    assert_eq!(
        a.body["error"]["reason"],
        json!("unable to authenticate user [elastic] for REST request [/]")
    );
    assert_eq!(
        get(Some(format!("Basic {}", b64("elastic:changeme"))))
            .await
            .status,
        200
    );
    let key = format!(
        "ApiKey {}",
        b64("VuaCfGcBCdbkQm-e5aOx:ui2lp2axTNmsyakw9tvNnw")
    );
    assert_eq!(get(Some(key.clone())).await.status, 200);
    assert_eq!(
        get(Some(format!("ApiKey {}", b64("VuaCfGcBCdbkQm-e5aOx:nope"))))
            .await
            .status,
        401
    );
    // _bulk is guarded too.
    let a = bulk(&es, "/x/_bulk", ndjson(&[json!({"create": {}}), json!({})])).await;
    assert_eq!(a.status, 401);
    assert!(es.documents("x").is_empty());
    es.stop().await;

    let os = start(ElasticsearchConfig {
        flavour: Flavour::Opensearch,
        users: vec![EsUser {
            username: "admin".into(),
            password: "admin".into(),
        }],
        ..ElasticsearchConfig::default()
    })
    .await;
    let a = request(reqwest::Method::GET, os.url() + "/", &[], "").await;
    assert_eq!((a.status, a.text.as_str()), (401, "Unauthorized"));
    let a = request(
        reqwest::Method::GET,
        os.url() + "/",
        &[("authorization", &format!("Basic {}", b64("admin:admin")))],
        "",
    )
    .await;
    assert_eq!(a.status, 200);
    os.stop().await;
}

#[tokio::test]
async fn configuration_is_checked() {
    let parsed: ElasticsearchConfig = toml::from_str(
        r#"
        flavour = "opensearch"
        data_streams = ["logs-*"]
        max_content_length = "10MiB"
        [[users]]
        username = "admin"
        password = "admin"
        [faults]
        item_throttle_rate = 0.1
        reject_marker = "POISON"
        "#,
    )
    .expect("config parses");
    assert_eq!(parsed.flavour, Flavour::Opensearch);
    assert_eq!(parsed.max_content_length, 10 << 20);
    parsed.validate().expect("valid");
    assert!(toml::from_str::<ElasticsearchConfig>("flavour = \"solr\"").is_err());
    let bad = ElasticsearchConfig {
        flavour: Flavour::Opensearch,
        api_keys: vec![EsApiKey {
            id: "a".into(),
            key: "b".into(),
        }],
        ..ElasticsearchConfig::default()
    };
    assert!(bad.validate().is_err());
    let shown = format!("{:?}", parsed);
    assert!(!shown.contains("password: \"admin\""), "{shown}");
}
