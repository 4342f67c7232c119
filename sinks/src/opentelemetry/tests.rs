use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message as _;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use siemflow_core::delivery::{EventOutcome, Failure, Item, Outcome};
use siemflow_core::otlp::{self, Envelope, Notes};
use siemflow_core::{Event, Value};
use tonic::Code;
use tonic::transport::server::TcpIncoming;
use tonic_types::{ErrorDetails, StatusExt as _};

use super::config::OpentelemetrySinkConfig;
use super::encode::{Mapper, request_body, severity_number};
use super::status::{grpc_failure, http_failure, partial_success};
use crate::test_support::{event, labels, start_sink};

fn config(toml: &str) -> OpentelemetrySinkConfig {
    let config: OpentelemetrySinkConfig =
        toml::from_str(&format!("endpoint = \"http://127.0.0.1:4317\"\n{toml}")).expect("config");
    let issues = config.issues();
    assert!(issues.is_empty(), "{issues:?}");
    config
}

fn mapper(toml: &str) -> Mapper {
    Mapper::new(&config(toml), &labels("otlp", "opentelemetry")).expect("mapper")
}

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 5).expect("time")
}

/// The record an event becomes, and the request its partition frames it in.
fn encode(mapper: &Mapper, event: &Event) -> (LogRecord, ExportLogsServiceRequest) {
    let mut out = Vec::new();
    let partition = mapper.encode(event, now(), &mut out);
    let record = LogRecord::decode(out.as_slice()).expect("a LogRecord");
    let items = [Item {
        event: event.clone(),
        encoded: out,
    }];
    let body = request_body(&partition, &items).expect("body");
    let request = ExportLogsServiceRequest::decode(body.as_slice()).expect("a request");
    (record, request)
}

fn s(text: &str) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(text.into())),
    }
}

fn int(i: i64) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::IntValue(i)),
    }
}

fn kv(key: &str, value: AnyValue) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(value),
        key_strindex: 0,
    }
}

fn kvlist(pairs: Vec<KeyValue>) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::KvlistValue(KeyValueList {
            values: pairs,
        })),
    }
}

#[test]
fn an_event_from_the_source_goes_out_as_the_record_it_came_in_as() {
    let record = LogRecord {
        time_unix_nano: 1_767_225_600_123_456_789,
        observed_time_unix_nano: 1_767_225_661_000_000_001,
        severity_number: 9,
        severity_text: "Informational".into(),
        body: Some(kvlist(vec![
            kv("Operation", s("New-InboxRule")),
            kv("RecordType", int(1)),
        ])),
        attributes: vec![kv("tenant", s("t1"))],
        dropped_attributes_count: 2,
        flags: 1,
        trace_id: (1..=16).collect(),
        span_id: (0xf0..=0xf7).collect(),
        event_name: "o365.audit.exchange".into(),
    };
    let resource = Resource {
        attributes: vec![kv("service.name", s("peer"))],
        dropped_attributes_count: 3,
        entity_refs: Vec::new(),
    };
    let scope = InstrumentationScope {
        name: "test.scope".into(),
        version: "1.2".into(),
        attributes: vec![kv("a", s("b"))],
        dropped_attributes_count: 0,
    };
    let mut notes = Notes::default();
    let envelope = Envelope::new(
        Some(&resource),
        "https://opentelemetry.io/schemas/1.26.0",
        Some(&scope),
        "https://scope.example",
        &mut notes,
    );
    let fields = otlp::event_from_record(&record, &envelope, now(), &mut notes);
    let event = Event::new(Value::Object(fields));
    // The configured resource and scope only fill in: the relayed record keeps its own.
    let mapper = mapper(
        "resource = { \"service.name\" = \"siemflow\", \"host.name\" = \"relay\" }\nscope = { name = \"siemflow\" }",
    );
    let (sent, request) = encode(&mapper, &event);
    assert_eq!(sent, record);
    let [resource_logs] = request.resource_logs.as_slice() else {
        panic!("one ResourceLogs: {request:?}")
    };
    assert_eq!(
        resource_logs.schema_url,
        "https://opentelemetry.io/schemas/1.26.0"
    );
    let sent_resource = resource_logs.resource.as_ref().expect("resource");
    assert_eq!(
        sent_resource.attributes,
        vec![kv("host.name", s("relay")), kv("service.name", s("peer"))]
    );
    assert_eq!(sent_resource.dropped_attributes_count, 3);
    let [scope_logs] = resource_logs.scope_logs.as_slice() else {
        panic!("one ScopeLogs")
    };
    assert_eq!(scope_logs.scope.as_ref(), Some(&scope));
    assert_eq!(scope_logs.schema_url, "https://scope.example");
    assert_eq!(scope_logs.log_records, vec![record]);
}

#[test]
fn a_microsoft_365_record_is_the_body_and_the_options_fill_in_the_rest() {
    let mapper = mapper(
        r#"
timestamp_field = "CreationTime"
severity_field = "Severity"
event_name = "o365.audit.{{ .Workload }}"
attributes = { "m365.workload" = "Workload", "m365.missing" = "Nope" }
resource = { "service.name" = "siemflow", "cloud.tenant_id" = "{{ .OrganizationId }}", "m365.version" = 2 }
scope = { name = "siemflow.o365", version = "1" }
"#,
    );
    let record = event(serde_json::json!({
        "CreationTime": "2026-01-01T00:00:00",
        "Id": "aa",
        "Operation": "New-InboxRule",
        "OrganizationId": "tenant-1",
        "RecordType": 1,
        "Severity": "High",
        "Workload": "Exchange",
        "Parameters": [{"Name": "From", "Value": "x@contoso.example"}]
    }));
    let (sent, request) = encode(&mapper, &record);
    assert_eq!(sent.time_unix_nano, 1_767_225_600_000_000_000);
    assert_eq!(sent.observed_time_unix_nano, otlp::nanos_from_time(&now()));
    assert_eq!(
        (sent.severity_number, sent.severity_text.as_str()),
        (21, "High")
    );
    assert_eq!(sent.event_name, "o365.audit.Exchange");
    assert_eq!(sent.attributes, vec![kv("m365.workload", s("Exchange"))]);
    // The body is the whole record, every field with its type.
    let mut notes = Notes::default();
    let body = otlp::value_from_any(sent.body.as_ref().expect("body"), &mut notes);
    assert_eq!(
        serde_json::to_value(&body).expect("json"),
        serde_json::to_value(&record.value).expect("json")
    );
    let resource = request.resource_logs[0]
        .resource
        .as_ref()
        .expect("resource");
    assert_eq!(
        resource.attributes,
        vec![
            kv("cloud.tenant_id", s("tenant-1")),
            kv("m365.version", int(2)),
            kv("service.name", s("siemflow")),
        ]
    );
    let scope = request.resource_logs[0].scope_logs[0].scope.as_ref();
    assert_eq!(
        scope.map(|s| (s.name.as_str(), s.version.as_str())),
        Some(("siemflow.o365", "1"))
    );
}

#[test]
fn a_record_keeps_its_fields_with_otlp_names_in_its_body() {
    // A Defender for Cloud Apps activity (epoch milliseconds) and an Azure diagnostic
    // record's `resource` (a text path), as in tests/fixtures/siem-mapping.
    let record = event(serde_json::json!({
        "_id": "a1",
        "timestamp": 1_700_000_000_123_i64,
        "resource": "/SUBSCRIPTIONS/X/PROVIDERS/MICROSOFT.AADIAM",
        "attributes": {"not": "otlp"}
    }));
    let (sent, request) = encode(&mapper(""), &record);
    let body = otlp::value_from_any(sent.body.as_ref().expect("body"), &mut Notes::default());
    assert_eq!(body, record.value);
    assert!(sent.attributes.is_empty());
    assert_eq!(sent.time_unix_nano, 1_700_000_000_123_000_000);
    assert_eq!(request.resource_logs[0].resource, None);
}

#[test]
fn a_message_keeps_the_other_fields_as_attributes() {
    let mapper = mapper("attributes = { \"net.host\" = \"hostname\" }");
    let line = event(serde_json::json!({
        "message": "<34>1 x",
        "hostname": "fw1",
        "appname": "sshd",
        "attributes": {"appname": "own"}
    }));
    let (sent, request) = encode(&mapper, &line);
    assert_eq!(sent.body, Some(s("<34>1 x")));
    // The event's own attributes win over its other fields; the options win over both.
    assert_eq!(
        sent.attributes,
        vec![
            kv("appname", s("own")),
            kv("hostname", s("fw1")),
            kv("net.host", s("fw1")),
        ]
    );
    // No resource or scope anywhere: a bare ResourceLogs.
    assert_eq!(request.resource_logs[0].resource, None);
    assert_eq!(request.resource_logs[0].scope_logs[0].scope, None);

    let mapper = self::mapper("body_field = \"raw\"");
    let (sent, _) = encode(
        &mapper,
        &event(serde_json::json!({"raw": {"a": 1}, "other": true})),
    );
    assert_eq!(sent.body, Some(kvlist(vec![kv("a", int(1))])));
    assert_eq!(
        sent.attributes,
        vec![kv(
            "other",
            AnyValue {
                value: Some(any_value::Value::BoolValue(true))
            }
        )]
    );
}

#[test]
fn events_are_partitioned_by_resource_and_scope() {
    let mapper = mapper("resource = { \"cloud.tenant_id\" = \"{{ .TenantId }}\" }");
    let partition = |value: serde_json::Value| mapper.encode(&event(value), now(), &mut Vec::new());
    let a = partition(serde_json::json!({"TenantId": "a", "n": 1}));
    assert_eq!(a, partition(serde_json::json!({"TenantId": "a", "n": 2})));
    assert_ne!(a, partition(serde_json::json!({"TenantId": "b", "n": 1})));
    // In the source's shape, the event's own scope counts; in a record it is data.
    assert_eq!(
        a,
        partition(serde_json::json!({"TenantId": "a", "scope": {"name": "x"}}))
    );
    assert_ne!(
        a,
        partition(serde_json::json!({"message": "m", "TenantId": "a", "scope": {"name": "x"}}))
    );
    let fixed = self::mapper("resource = { \"service.name\" = \"siemflow\" }");
    let one = fixed.encode(&event(serde_json::json!({"n": 1})), now(), &mut Vec::new());
    assert_eq!(
        one,
        fixed.encode(&event(serde_json::json!({"m": 2})), now(), &mut Vec::new())
    );
    assert!(!one.is_empty());
    assert!(
        self::mapper("")
            .encode(&event(serde_json::json!({"n": 1})), now(), &mut Vec::new())
            .is_empty()
    );
}

#[test]
fn a_request_frames_its_records_in_order() {
    let mapper = mapper("resource = { \"service.name\" = \"siemflow\" }");
    let mut items = Vec::new();
    let mut partition = String::new();
    for i in 0..300 {
        let event = event(serde_json::json!({"message": "x".repeat(i), "n": i}));
        let mut encoded = Vec::new();
        partition = mapper.encode(&event, now(), &mut encoded);
        items.push(Item { event, encoded });
    }
    let body = request_body(&partition, &items).expect("body");
    let request = ExportLogsServiceRequest::decode(body.as_slice()).expect("request");
    let records = &request.resource_logs[0].scope_logs[0].log_records;
    assert_eq!(records.len(), 300);
    for (i, record) in records.iter().enumerate() {
        assert_eq!(record.body, Some(s(&"x".repeat(i))));
    }
    assert!(request_body("not base64!", &items).is_err());
}

#[test]
fn severity_words() {
    for (word, number) in [
        ("informational", 9),
        ("Low", 13),
        ("medium", 17),
        ("HIGH", 21),
        ("warning", 13),
        ("debug", 5),
        ("unknownFutureValue", 0),
    ] {
        assert_eq!(severity_number(word), number, "{word}");
    }
    let mapper = mapper("severity_field = \"level\"");
    let (sent, _) = encode(&mapper, &event(serde_json::json!({"level": 17})));
    assert_eq!(
        (sent.severity_number, sent.severity_text.as_str()),
        (17, "")
    );
    let (sent, _) = encode(&mapper, &event(serde_json::json!({"level": 99})));
    assert_eq!(
        (sent.severity_number, sent.severity_text.as_str()),
        (0, "99")
    );
}

#[test]
fn options_are_checked() {
    let issues = |toml: &str| {
        toml::from_str::<OpentelemetrySinkConfig>(toml)
            .expect("parses")
            .issues()
            .into_iter()
            .map(|i| i.key.unwrap_or_default())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        issues("endpoint = \"http://collector.example:4317\""),
        ["endpoint"]
    );
    assert_eq!(
        issues("endpoint = \"https://c.example:4317/v1\""),
        ["endpoint"]
    );
    assert!(issues("endpoint = \"https://c.example/otlp\"\nprotocol = \"http\"").is_empty());
    assert_eq!(
        issues("endpoint = \"https://c.example:4317\"\nproxy = \"http://p:3128\""),
        ["proxy"]
    );
    assert_eq!(
        issues(
            "endpoint = \"https://c.example:4317\"\nheaders = { \"content-type\" = \"x\", \"x-api-key\" = \"\", \"a b\" = \"c\" }"
        ),
        ["headers.a b", "headers.content-type", "headers.x-api-key"]
    );
    assert_eq!(
        issues(
            "endpoint = \"https://c.example:4317\"\nresource = { a = \"{{ .x\" }\nevent_name = \"{{ }}\"\nbody_field = \".\""
        ),
        ["body_field", "resource.a", "event_name"]
    );
    assert!(
        toml::from_str::<OpentelemetrySinkConfig>("endpoint = \"x\"\nprotocol = \"udp\"").is_err()
    );
    let defaults = config("");
    assert_eq!(
        defaults.compression,
        siemflow_core::delivery::Compression::Gzip
    );
    assert!(defaults.tls.verify_certificate);
}

#[test]
fn partial_success_dead_letters_the_count_with_the_message() {
    let response = |rejected: i64, message: &str| ExportLogsServiceResponse {
        partial_success: Some(ExportLogsPartialSuccess {
            rejected_log_records: rejected,
            error_message: message.into(),
        }),
    };
    assert!(matches!(
        partial_success(&ExportLogsServiceResponse::default(), 5, "c"),
        Outcome::Delivered
    ));
    assert!(matches!(
        partial_success(&response(0, "just a warning"), 5, "c"),
        Outcome::Delivered
    ));
    let Outcome::PerEvent(outcomes) = partial_success(&response(2, "too old"), 5, "c") else {
        panic!("per event")
    };
    assert_eq!(outcomes[..3], vec![EventOutcome::Delivered; 3]);
    for outcome in &outcomes[3..] {
        let EventOutcome::Rejected(rejection) = outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(rejection.reason, "partial_success");
        assert!(
            rejection.message.contains("too old"),
            "{}",
            rejection.message
        );
        assert!(
            rejection.message.contains("2 of the request's 5"),
            "{}",
            rejection.message
        );
    }
    let Outcome::PerEvent(outcomes) = partial_success(&response(9, ""), 3, "c") else {
        panic!("per event")
    };
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, EventOutcome::Rejected(_)))
    );
}

fn with_retry_info(code: Code, delay: Option<Duration>) -> tonic::Status {
    let mut details = ErrorDetails::new();
    if let Some(delay) = delay {
        details.set_retry_info(Some(delay));
    }
    tonic::Status::with_error_details(code, "busy", details)
}

#[test]
fn grpc_codes_are_classified_as_the_specification_says() {
    for code in [
        Code::Cancelled,
        Code::DeadlineExceeded,
        Code::Aborted,
        Code::OutOfRange,
        Code::Unavailable,
        Code::DataLoss,
    ] {
        assert_eq!(
            grpc_failure(&tonic::Status::new(code, "x")).kind(),
            "retry",
            "{code:?}"
        );
    }
    for code in [
        Code::Unauthenticated,
        Code::PermissionDenied,
        Code::Unimplemented,
        Code::NotFound,
    ] {
        assert_eq!(
            grpc_failure(&tonic::Status::new(code, "x")).kind(),
            "config",
            "{code:?}"
        );
    }
    for code in [
        Code::Unknown,
        Code::InvalidArgument,
        Code::AlreadyExists,
        Code::FailedPrecondition,
        Code::Internal,
        Code::ResourceExhausted,
    ] {
        assert_eq!(
            grpc_failure(&tonic::Status::new(code, "x")).kind(),
            "data",
            "{code:?}"
        );
    }
    let delay = Duration::from_millis(1500);
    for code in [Code::Unavailable, Code::ResourceExhausted] {
        match grpc_failure(&with_retry_info(code, Some(delay))) {
            Failure::Retry {
                retry_after,
                reason,
            } => {
                assert_eq!(retry_after, Some(delay));
                assert!(reason.starts_with("gRPC "), "{reason}");
            }
            other => panic!("{code:?}: {other:?}"),
        }
    }
    let gzip = grpc_failure(&tonic::Status::unimplemented(
        "Content is compressed with `gzip` which isn't supported",
    ));
    assert_eq!(gzip.kind(), "config");
    assert!(gzip.reason().contains("compression = \"none\""), "{gzip}");
    match grpc_failure(&tonic::Status::invalid_argument("bad record 3")) {
        Failure::Data(rejection) => {
            assert_eq!(rejection.reason, "invalid_argument");
            assert_eq!(rejection.message, "gRPC INVALID_ARGUMENT: bad record 3");
        }
        other => panic!("{other:?}"),
    }
    // The size limits of tonic (OUT_OF_RANGE, retryable by the table) and grpc-core.
    for status in [
        tonic::Status::out_of_range(
            "Error, decoded message length too large: found 5000 bytes, the limit is: 4194304 bytes",
        ),
        tonic::Status::resource_exhausted("Received message larger than max (5104 vs. 2000)"),
    ] {
        assert_eq!(grpc_failure(&status).kind(), "too_large", "{status:?}");
    }
}

#[test]
fn http_statuses_are_classified_as_the_specification_says() {
    let status_body = tonic_types::pb::Status {
        code: 14,
        message: "collector busy".into(),
        details: Vec::new(),
    }
    .encode_to_vec();
    let mut headers = HeaderMap::new();
    headers.insert(RETRY_AFTER, "3".parse().expect("header"));
    for code in [429, 502, 503, 504] {
        match http_failure(
            StatusCode::from_u16(code).expect("status"),
            &headers,
            &status_body,
        ) {
            Failure::Retry {
                retry_after,
                reason,
            } => {
                assert_eq!(retry_after, Some(Duration::from_secs(3)));
                assert!(reason.ends_with(": collector busy"), "{reason}");
            }
            other => panic!("{code}: {other:?}"),
        }
    }
    let plain = HeaderMap::new();
    let kind = |code: u16| {
        http_failure(StatusCode::from_u16(code).expect("status"), &plain, b"nope").kind()
    };
    assert_eq!(kind(413), "too_large");
    for code in [400, 409, 422, 500, 501] {
        assert_eq!(kind(code), "data", "{code}");
    }
    for code in [401, 403, 404] {
        assert_eq!(kind(code), "config", "{code}");
    }
}

/// An in-process tonic receiver: records what arrives, answers from a script.
#[derive(Clone, Default)]
struct Receiver {
    arrived: Arc<Mutex<Vec<(tonic::metadata::MetadataMap, ExportLogsServiceRequest)>>>,
    answers: Arc<Mutex<Vec<Result<ExportLogsServiceResponse, tonic::Status>>>>,
}

#[tonic::async_trait]
impl LogsService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let (metadata, _, request) = request.into_parts();
        let empty = request.resource_logs.is_empty();
        self.arrived.lock().expect("lock").push((metadata, request));
        let answer = if empty {
            None
        } else {
            let mut answers = self.answers.lock().expect("lock");
            (!answers.is_empty()).then(|| answers.remove(0))
        };
        answer
            .unwrap_or_else(|| Ok(ExportLogsServiceResponse::default()))
            .map(tonic::Response::new)
    }
}

impl Receiver {
    /// Serves on an ephemeral loopback port with tonic's own size limit; returns the URL.
    fn serve(&self, max_message_bytes: usize) -> String {
        let incoming = TcpIncoming::bind("127.0.0.1:0".parse().expect("address")).expect("bind");
        let address = incoming.local_addr().expect("address");
        let service = LogsServiceServer::new(self.clone())
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
            .max_decoding_message_size(max_message_bytes);
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming),
        );
        format!("http://{address}")
    }

    fn records(&self) -> Vec<LogRecord> {
        self.arrived
            .lock()
            .expect("lock")
            .iter()
            .flat_map(|(_, r)| r.resource_logs.iter())
            .flat_map(|r| r.scope_logs.iter())
            .flat_map(|s| s.log_records.iter().cloned())
            .collect()
    }
}

fn sink(endpoint: &str, extra: &str) -> OpentelemetrySinkConfig {
    let retry = if extra.contains("retry") {
        ""
    } else {
        "retry = { initial_backoff = \"10ms\", max_backoff = \"50ms\" }"
    };
    let config: OpentelemetrySinkConfig =
        toml::from_str(&format!("endpoint = \"{endpoint}\"\n{retry}\n{extra}")).expect("config");
    assert!(config.issues().is_empty(), "{:?}", config.issues());
    config
}

#[tokio::test]
async fn over_the_receivers_size_limit_requests_are_split_and_a_lone_record_dead_lettered() {
    let receiver = Receiver::default();
    let endpoint = receiver.serve(4000);
    let config = sink(
        &endpoint,
        "compression = \"none\"\nbatch = { max_events = 100, timeout = \"50ms\" }\nconcurrency = 1",
    );
    let mut running = start_sink("otlp", "opentelemetry", &config);
    let mut records: Vec<serde_json::Value> = (0..40)
        .map(|i| serde_json::json!({"message": format!("{i:03}{}", "x".repeat(300))}))
        .collect();
    records.insert(17, serde_json::json!({"message": "y".repeat(6000)}));
    let receipts = running.send(records).await;
    let dead = running.settle(receipts).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    let dropped = &dead[0]["metadata"]["dropped"];
    assert_eq!(dropped["reason"], "too_large");
    assert!(
        dropped["message"]
            .as_str()
            .is_some_and(|m| m.contains("OUT_OF_RANGE") && m.contains("too large")),
        "{dropped}"
    );
    let mut arrived: Vec<String> = receiver
        .records()
        .iter()
        .filter_map(|r| match &r.body.as_ref()?.value {
            Some(any_value::Value::StringValue(text)) => Some(text[..3].to_string()),
            _ => None,
        })
        .collect();
    arrived.sort();
    arrived.dedup();
    assert_eq!(
        arrived,
        (0..40).map(|i| format!("{i:03}")).collect::<Vec<_>>()
    );
    running.finish().await;
}

#[tokio::test]
async fn partial_success_retry_info_headers_and_gzip_over_grpc() {
    let receiver = Receiver::default();
    receiver.answers.lock().expect("lock").extend([
        Err(with_retry_info(
            Code::Unavailable,
            Some(Duration::from_millis(20)),
        )),
        Ok(ExportLogsServiceResponse {
            partial_success: Some(ExportLogsPartialSuccess {
                rejected_log_records: 1,
                error_message: "record too old".into(),
            }),
        }),
    ]);
    let endpoint = receiver.serve(4 << 20);
    let config = sink(
        &endpoint,
        "headers = { \"X-Api-Key\" = \"s3cret\" }\nbatch = { max_events = 3, timeout = \"50ms\" }\nconcurrency = 1",
    );
    let mut running = start_sink("otlp", "opentelemetry", &config);
    let receipts = running
        .send((0..3).map(|i| serde_json::json!({"message": format!("m{i}")})))
        .await;
    let dead = running.settle(receipts).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["message"], "m2");
    let dropped = &dead[0]["metadata"]["dropped"];
    assert_eq!(dropped["reason"], "partial_success");
    assert!(
        dropped["message"]
            .as_str()
            .is_some_and(|m| m.contains("record too old")),
        "{dropped}"
    );
    running.finish().await;
    let arrived = receiver.arrived.lock().expect("lock");
    // The healthcheck's empty request, the refused one, the partially taken one.
    let with_records: Vec<_> = arrived
        .iter()
        .filter(|(_, r)| !r.resource_logs.is_empty())
        .collect();
    assert_eq!(with_records.len(), 2);
    for (metadata, _) in &with_records {
        assert_eq!(
            metadata.get("x-api-key").and_then(|v| v.to_str().ok()),
            Some("s3cret")
        );
        assert_eq!(
            metadata.get("grpc-encoding").and_then(|v| v.to_str().ok()),
            Some("gzip")
        );
    }
}

/// Serves the receiver over TLS (rustls, ALPN h2) with `dir`'s `server.pem` for
/// 127.0.0.1; returns the `https` URL.
async fn serve_tls(receiver: &Receiver, dir: &std::path::Path) -> String {
    use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
    let certs = siemflow_core::tls::certificates(&dir.join("server.pem"), "server.pem")
        .expect("certificate");
    let key = siemflow_core::tls::private_key(&dir.join("server.key"), "server.key").expect("key");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
    config.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let (streams, incoming) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            // A client that refuses our certificate fails its handshake: skip it.
            if let Ok(tls) = acceptor.accept(tcp).await
                && streams.send(Ok::<_, std::io::Error>(tls)).await.is_err()
            {
                break;
            }
        }
    });
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(
                LogsServiceServer::new(receiver.clone())
                    .accept_compressed(tonic::codec::CompressionEncoding::Gzip),
            )
            .serve_with_incoming(ReceiverStream::new(incoming)),
    );
    format!("https://{address}")
}

#[tokio::test]
async fn grpc_over_tls_trusts_the_configured_ca_and_nothing_else() {
    let dir = tempfile::tempdir().expect("tempdir");
    super::rsyslogd::write_certificates(dir.path());
    let receiver = Receiver::default();
    let endpoint = serve_tls(&receiver, dir.path()).await;

    let trusted = sink(
        &endpoint,
        &format!(
            "tls = {{ ca_file = \"{}\" }}\nbatch = {{ max_events = 5, timeout = \"20ms\" }}\nretry = {{ initial_backoff = \"10ms\", max_backoff = \"50ms\", max_duration = \"20s\" }}",
            dir.path().join("ca.pem").display()
        ),
    );
    let mut running = start_sink("otlp-tls", "opentelemetry", &trusted);
    let receipts = running
        .send((0..5).map(|i| serde_json::json!({"message": format!("over tls {i}")})))
        .await;
    assert!(running.settle(receipts).await.is_empty());
    running.finish().await;
    assert_eq!(receiver.records().len(), 5);

    // Verification is on by default: without the CA the receiver is a stranger.
    let untrusted = sink(
        &endpoint,
        "retry = { initial_backoff = \"10ms\", max_backoff = \"20ms\", max_duration = \"200ms\" }\nbatch = { max_events = 1, timeout = \"20ms\" }\nhealthcheck = { enabled = false }",
    );
    let running = start_sink("otlp-untrusted", "opentelemetry", &untrusted);
    let receipts = running
        .send([serde_json::json!({"message": "never sent"})])
        .await;
    for receipt in receipts {
        assert_eq!(receipt.await, siemflow_core::BatchStatus::Failed);
    }
    running.finish().await;
    assert_eq!(receiver.records().len(), 5, "nothing more arrived");
}

/// Event values of every kind, nested: what a JSON record or a transform can hold.
fn event_value() -> impl proptest::strategy::Strategy<Value = Value> {
    use proptest::prelude::*;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Boolean),
        any::<i64>().prop_map(Value::Integer),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from_f64_or_zero),
        any::<String>().prop_map(|s| Value::from(s.as_str())),
        (0..4_000_000_000i64, 0..1_000_000_000u32).prop_map(|(s, n)| {
            Value::Timestamp(DateTime::from_timestamp(s, n).expect("a time"))
        }),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..6).prop_map(|map| {
                Value::Object(map.into_iter().map(|(k, v)| (k.into(), v)).collect())
            }),
        ]
    })
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config::with_cases(2000))]

    /// The direct encoding is byte for byte prost's encoding of the shared mapping's
    /// `AnyValue`.
    #[test]
    fn values_encode_as_the_generated_code_encodes_them(value in event_value()) {
        let mut direct = Vec::new();
        super::any::encode_field(7, &value, &mut direct);
        // The same field of a message that holds only it, by the generated code.
        let mut generated = Vec::new();
        prost::encoding::message::encode(7, &otlp::any_from_value(&value), &mut generated);
        proptest::prop_assert_eq!(&direct, &generated);
    }

    /// A record's body, written directly, decodes to the shared mapping's.
    #[test]
    fn a_record_body_decodes_as_the_shared_mapping(
        fields in proptest::collection::btree_map("[A-Z][a-z]{0,7}", event_value(), 1..8),
    ) {
        let mut object: vrl::value::ObjectMap =
            fields.into_iter().map(|(k, v)| (k.into(), v)).collect();
        // Outside the source's shape: capitalised names are never OTLP fields.
        object.insert("RecordType".into(), Value::Integer(15));
        let value = Value::Object(object);
        let mut out = Vec::new();
        mapper("").encode(&Event::new(value.clone()), now(), &mut out);
        let record = LogRecord::decode(out.as_slice()).expect("a LogRecord");
        proptest::prop_assert_eq!(record.body, Some(otlp::any_from_value(&value)));
    }
}
