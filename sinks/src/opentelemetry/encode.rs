//! Events → OTLP log records (the shared mapping of `siemflow_core::otlp`, plus this
//! sink's options), and records → `ExportLogsServiceRequest` bodies.
//!
//! Each event is encoded once, as it arrives: its `LogRecord` in protobuf, and as its
//! partition the resource and scope it goes under (an encoded, record-less
//! `ResourceLogs`, base64). The delivery engine cuts requests per partition, so a request
//! is one `ResourceLogs` with one `ScopeLogs`, framed around the records' bytes.

use std::borrow::Cow;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use metrics::Counter;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message as _;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};
use siemflow_core::delivery::Item;
use siemflow_core::event::field_path;
use siemflow_core::event_time::event_time;
use siemflow_core::metrics::ComponentLabels;
use siemflow_core::otlp::{self, Notes};
use siemflow_core::template::FieldTemplate;
use siemflow_core::{Event, Value};
use vrl::path::{OwnedSegment, OwnedValuePath};
use vrl::value::{KeyString, ObjectMap};

use super::any;
use super::config::OpentelemetrySinkConfig;

/// Protobuf field numbers of the envelope around the records (`logs.proto`,
/// `logs_service.proto`).
const REQUEST_RESOURCE_LOGS: u32 = 1;
const RESOURCE_LOGS_SCOPE_LOGS: u32 = 2;
const SCOPE_LOGS_LOG_RECORDS: u32 = 2;
const LOG_RECORD_BODY: u32 = 5;

/// Bytes a record adds to a request besides its own: its field key and length.
pub(super) const RECORD_FRAMING_BYTES: u64 = 1 + 5;

/// A resource attribute from the configuration.
#[derive(Debug, Clone)]
enum Configured {
    Fixed(Value),
    Template(FieldTemplate),
}

/// What turns events into records, as the sink's options say.
pub(super) struct Mapper {
    body_field: Option<(OwnedValuePath, Option<String>)>,
    attributes: Vec<(KeyString, OwnedValuePath)>,
    resource: Vec<(KeyString, Configured)>,
    scope: Option<InstrumentationScope>,
    timestamp_field: Option<OwnedValuePath>,
    severity_field: Option<OwnedValuePath>,
    event_name: Option<FieldTemplate>,
    /// The partition of events with no resource or scope of their own, when it does not
    /// depend on the event.
    fixed_partition: Option<String>,
    invalid_ids: Counter,
    /// A template's field (in `event_name` or `resource`) the event lacked.
    template_field_missing: Counter,
}

impl Mapper {
    /// The mapping of a (checked) configuration.
    pub fn new(config: &OpentelemetrySinkConfig, labels: &ComponentLabels) -> anyhow::Result<Self> {
        let path = |key: &str, text: &str| {
            field_path(key, text).map_err(|issue| anyhow::anyhow!("{key}: {}", issue.message))
        };
        let body_field = match &config.body_field {
            Some(text) => {
                let path = path("body_field", text)?;
                let top = top_level_name(&path);
                Some((path, top))
            }
            None => None,
        };
        let mut attributes = Vec::with_capacity(config.attributes.len());
        for (key, field) in &config.attributes {
            attributes.push((
                KeyString::from(key.as_str()),
                path(&format!("attributes.{key}"), field)?,
            ));
        }
        let mut resource = Vec::with_capacity(config.resource.len());
        for (key, value) in &config.resource {
            let configured = match value.as_str() {
                Some(text) if text.contains("{{") => Configured::Template(
                    FieldTemplate::parse(text)
                        .map_err(|message| anyhow::anyhow!("resource.{key}: {message}"))?,
                ),
                _ => Configured::Fixed(Value::from(value.clone())),
            };
            resource.push((KeyString::from(key.as_str()), configured));
        }
        let scope = config.scope.as_ref().map(|scope| InstrumentationScope {
            name: scope.name.clone(),
            version: scope.version.clone(),
            attributes: Vec::new(),
            dropped_attributes_count: 0,
        });
        let mut mapper = Mapper {
            body_field,
            attributes,
            resource,
            scope,
            timestamp_field: config
                .timestamp_field
                .as_deref()
                .map(|f| path("timestamp_field", f))
                .transpose()?,
            severity_field: config
                .severity_field
                .as_deref()
                .map(|f| path("severity_field", f))
                .transpose()?,
            event_name: config
                .event_name
                .as_deref()
                .map(|t| FieldTemplate::parse(t).map_err(|m| anyhow::anyhow!("event_name: {m}")))
                .transpose()?,
            fixed_partition: None,
            invalid_ids: labels.counter(
                "component_errors_total",
                &[
                    ("error_type", "invalid_trace_or_span_id"),
                    ("stage", "processing"),
                ],
            ),
            template_field_missing: labels.counter(
                "component_errors_total",
                &[
                    ("error_type", "template_field_missing"),
                    ("stage", "processing"),
                ],
            ),
        };
        if mapper
            .resource
            .iter()
            .all(|(_, v)| matches!(v, Configured::Fixed(_)))
        {
            let (resource, scope) = mapper.envelope(&ObjectMap::new(), 0, None, None);
            mapper.fixed_partition = Some(partition(resource, "", scope, ""));
        }
        Ok(mapper)
    }

    /// Appends the event's `LogRecord` to `out`; returns its partition. `now` stands in
    /// for an observed time the event lacks.
    ///
    /// An event in the opentelemetry source's shape (it has `message` or `body`, or no
    /// field outside the OTLP fields), or any event when `body_field` is set, maps by
    /// `siemflow_core::otlp`, its other fields becoming attributes. Any other event is a
    /// record (a Microsoft 365 audit record, an alert): all of it is the body, untouched
    /// — even fields that happen to bear an OTLP name, such as a Defender for Cloud Apps
    /// `timestamp` — and the options say the rest.
    pub fn encode(&self, event: &Event, now: DateTime<Utc>, out: &mut Vec<u8>) -> String {
        let object = match &event.value {
            Value::Object(object) => Cow::Borrowed(object),
            // Not an object (a transform's doing): the value itself is the body.
            other => {
                let field = if other.is_bytes() {
                    otlp::MESSAGE
                } else {
                    otlp::BODY
                };
                Cow::Owned(ObjectMap::from([(KeyString::from(field), other.clone())]))
            }
        };
        let object = object.as_ref();
        let shaped = self.body_field.is_some()
            || object.contains_key(otlp::MESSAGE)
            || object.contains_key(otlp::BODY)
            || object
                .keys()
                .all(|key| otlp::FIELDS.contains(&key.as_str()));
        let mut parts = if shaped {
            let mut notes = Notes::default();
            let parts = otlp::record_from_event(object, &mut notes);
            if notes.lossy_text > 0 {
                self.invalid_ids.increment(notes.lossy_text);
            }
            parts
        } else {
            // The body is written last, straight from the event (`any`).
            let mut parts = otlp::RecordParts::default();
            parts.record.time_unix_nano = object
                .get(otlp::TIMESTAMP)
                .and_then(event_time)
                .map_or(0, |t| otlp::nanos_from_time(&t));
            parts
        };
        let record = &mut parts.record;

        if shaped {
            let body_key = match &self.body_field {
                Some((path, top)) => {
                    record.body = event
                        .get(path)
                        .filter(|v| !v.is_null())
                        .map(otlp::any_from_value);
                    top.as_deref()
                }
                None => None,
            };
            // The fields outside the OTLP fields, then the event's own attributes, then
            // the configured ones: a later one wins on a repeated key.
            let mut attributes: ObjectMap = object
                .iter()
                .filter(|(key, _)| {
                    !otlp::FIELDS.contains(&key.as_str()) && Some(key.as_str()) != body_key
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if !attributes.is_empty() || !self.attributes.is_empty() {
                if let Some(Value::Object(own)) = object.get(otlp::ATTRIBUTES) {
                    attributes.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
                self.add_configured_attributes(event, &mut attributes);
                record.attributes = otlp::key_values_from_object(&attributes);
            }
        } else if !self.attributes.is_empty() {
            let mut attributes = ObjectMap::new();
            self.add_configured_attributes(event, &mut attributes);
            record.attributes = otlp::key_values_from_object(&attributes);
        }

        if let Some(path) = &self.timestamp_field {
            record.time_unix_nano = event
                .get(path)
                .and_then(event_time)
                .map_or(0, |t| otlp::nanos_from_time(&t));
        }
        if record.observed_time_unix_nano == 0 {
            // The specification: set once the record is observed; this is its first
            // OTLP hop.
            record.observed_time_unix_nano = otlp::nanos_from_time(&now);
        }
        if let Some(path) = &self.severity_field
            && let Some(value) = event.get(path)
        {
            let (number, text) = severity(value);
            record.severity_number = number;
            record.severity_text = text;
        }
        if let Some(template) = &self.event_name {
            match template.render(&event.value) {
                Ok(name) => record.event_name = name.to_string_lossy().into_owned(),
                Err(_) => self.template_field_missing.increment(1),
            }
        }
        record.encode_raw(out);
        if !shaped {
            // Fields may come in any order on the wire; decoders merge them.
            any::encode_field(LOG_RECORD_BODY, &event.value, out);
        }

        let own_resource = match object.get(otlp::RESOURCE) {
            Some(Value::Object(resource)) if shaped => Some(resource),
            _ => None,
        };
        if own_resource.is_none()
            && parts.scope.is_none()
            && let Some(fixed) = &self.fixed_partition
        {
            return fixed.clone();
        }
        let own_attributes = match own_resource.and_then(|r| r.get(otlp::ATTRIBUTES)) {
            Some(Value::Object(attributes)) => Cow::Borrowed(attributes),
            _ => Cow::Owned(ObjectMap::new()),
        };
        let dropped = parts
            .resource
            .as_ref()
            .map_or(0, |r| r.dropped_attributes_count);
        let (resource, scope) = self.envelope(&own_attributes, dropped, Some(event), parts.scope);
        partition(
            resource,
            &parts.resource_schema_url,
            scope,
            &parts.scope_schema_url,
        )
    }

    fn add_configured_attributes(&self, event: &Event, attributes: &mut ObjectMap) {
        for (key, path) in &self.attributes {
            if let Some(value) = event.get(path).filter(|v| !v.is_null()) {
                attributes.insert(key.clone(), value.clone());
            }
        }
    }

    /// The resource (the event's own attributes, filled in from the configuration) and
    /// scope (the event's own, else the configured one) of a record.
    fn envelope(
        &self,
        own_attributes: &ObjectMap,
        dropped_attributes_count: u32,
        event: Option<&Event>,
        own_scope: Option<InstrumentationScope>,
    ) -> (Option<Resource>, Option<InstrumentationScope>) {
        let mut attributes = Cow::Borrowed(own_attributes);
        for (key, configured) in &self.resource {
            if attributes.contains_key(key) {
                continue;
            }
            let value = match (configured, event) {
                (Configured::Fixed(value), _) => Some(value.clone()),
                (Configured::Template(template), Some(event)) => {
                    let rendered = template.render(&event.value);
                    if rendered.is_err() {
                        self.template_field_missing.increment(1);
                    }
                    rendered.ok()
                }
                (Configured::Template(_), None) => None,
            };
            if let Some(value) = value {
                attributes.to_mut().insert(key.clone(), value);
            }
        }
        let resource =
            (!attributes.is_empty() || dropped_attributes_count != 0).then(|| Resource {
                attributes: otlp::key_values_from_object(&attributes),
                dropped_attributes_count,
                entity_refs: Vec::new(),
            });
        (resource, own_scope.or_else(|| self.scope.clone()))
    }
}

/// The top-level field a path names, when it names one (`Id`, `.Id`), to leave out of
/// the fields that become attributes.
fn top_level_name(path: &OwnedValuePath) -> Option<String> {
    match path.segments.as_slice() {
        [OwnedSegment::Field(name)] => Some(name.to_string()),
        _ => None,
    }
}

/// The severity a field holds: a number 1–24 is OTLP's `severity_number`; text is kept
/// as `severity_text` and its word gives the number (0 when it is not one of ours).
pub(super) fn severity(value: &Value) -> (i32, String) {
    match value {
        Value::Integer(n) if (1..=24).contains(n) => (*n as i32, String::new()),
        other => {
            let text = other.to_string_lossy().into_owned();
            (severity_number(&text), text)
        }
    }
}

/// The severity number of a word: syslog's and OpenTelemetry's levels, and the
/// Microsoft security products' alert severities (informational, low, medium, high).
pub(super) fn severity_number(word: &str) -> i32 {
    match word.trim().to_ascii_lowercase().as_str() {
        "trace" => 1,
        "debug" => 5,
        "info" | "information" | "informational" => 9,
        "notice" => 10,
        "warn" | "warning" | "low" => 13,
        "error" | "err" | "medium" => 17,
        "fatal" | "critical" | "crit" | "high" => 21,
        "alert" => 22,
        "emergency" | "emerg" => 23,
        _ => 0,
    }
}

/// The partition of records under `resource` and `scope`: a record-less `ResourceLogs`,
/// encoded and base64, for [`request_body`] to read back.
fn partition(
    resource: Option<Resource>,
    resource_schema_url: &str,
    scope: Option<InstrumentationScope>,
    scope_schema_url: &str,
) -> String {
    if resource.is_none()
        && scope.is_none()
        && resource_schema_url.is_empty()
        && scope_schema_url.is_empty()
    {
        return String::new();
    }
    let envelope = ResourceLogs {
        resource,
        scope_logs: vec![ScopeLogs {
            scope,
            log_records: Vec::new(),
            schema_url: scope_schema_url.to_string(),
        }],
        schema_url: resource_schema_url.to_string(),
    };
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(envelope.encode_to_vec())
}

/// The `ExportLogsServiceRequest` of encoded records under one partition: one
/// `ResourceLogs` holding one `ScopeLogs` holding the records, in order.
pub(super) fn request_body(partition: &str, items: &[Item]) -> anyhow::Result<Vec<u8>> {
    let records = || items.iter().map(|item| item.encoded.as_slice());
    let envelope = if partition.is_empty() {
        ResourceLogs::default()
    } else {
        let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(partition)
            .map_err(|e| anyhow::anyhow!("a partition that is not base64: {e}"))?;
        ResourceLogs::decode(bytes.as_slice())
            .map_err(|e| anyhow::anyhow!("a partition that is not a ResourceLogs: {e}"))?
    };
    let scope = envelope.scope_logs.into_iter().next().unwrap_or_default();
    // ScopeLogs: the scope and its schema URL, then the records.
    let scope_head = ScopeLogs {
        log_records: Vec::new(),
        ..scope
    };
    let records_len: usize = records()
        .map(|r| key_len(SCOPE_LOGS_LOG_RECORDS) + encoded_len_varint(r.len() as u64) + r.len())
        .sum();
    let scope_len = scope_head.encoded_len() + records_len;
    // ResourceLogs: the resource and its schema URL, then the one ScopeLogs.
    let resource_head = ResourceLogs {
        scope_logs: Vec::new(),
        ..envelope
    };
    let resource_len = resource_head.encoded_len()
        + key_len(RESOURCE_LOGS_SCOPE_LOGS)
        + encoded_len_varint(scope_len as u64)
        + scope_len;
    let total =
        key_len(REQUEST_RESOURCE_LOGS) + encoded_len_varint(resource_len as u64) + resource_len;
    let mut body = Vec::with_capacity(total);
    encode_key(REQUEST_RESOURCE_LOGS, WireType::LengthDelimited, &mut body);
    encode_varint(resource_len as u64, &mut body);
    resource_head.encode_raw(&mut body);
    encode_key(
        RESOURCE_LOGS_SCOPE_LOGS,
        WireType::LengthDelimited,
        &mut body,
    );
    encode_varint(scope_len as u64, &mut body);
    scope_head.encode_raw(&mut body);
    for record in records() {
        encode_key(SCOPE_LOGS_LOG_RECORDS, WireType::LengthDelimited, &mut body);
        encode_varint(record.len() as u64, &mut body);
        body.extend_from_slice(record);
    }
    debug_assert_eq!(body.len(), total);
    Ok(body)
}
