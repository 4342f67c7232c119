//! One event to its `_bulk` lines: the action line (`_index`, `_id`) and the source line.

use chrono::{DateTime, SecondsFormat, Utc};
use siemflow_core::Event;
use siemflow_core::delivery::Rejection;
use siemflow_core::event_time::event_time;
use siemflow_core::template::Template;
use vrl::path::OwnedValuePath;
use xxhash_rust::xxh3::Xxh3;

use super::config::{BulkAction, ElasticsearchSinkConfig, MissingId, Mode};
use crate::encoding::write_json;

/// Builds the lines of each event.
#[derive(Debug)]
pub(super) struct Encoder {
    mode: Mode,
    action: BulkAction,
    index: Template,
    id_paths: Vec<OwnedValuePath>,
    missing_id: MissingId,
    timestamp: OwnedValuePath,
}

/// What encoding noticed about an event, for the counters.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Encoded {
    /// `id_fields` is set but the event lacked one: sent without `_id`.
    pub id_missing: bool,
}

impl Encoder {
    pub fn new(config: &ElasticsearchSinkConfig) -> anyhow::Result<Self> {
        let index = Template::parse(config.index_template()).map_err(anyhow::Error::msg)?;
        let id_paths = config.id_paths().map_err(|issues| {
            anyhow::anyhow!(
                "{}",
                issues
                    .iter()
                    .map(|i| i.message.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        })?;
        let timestamp = vrl::path::parse_value_path(&dotted(&config.timestamp_field))
            .map_err(|e| anyhow::anyhow!("timestamp_field: {e}"))?;
        Ok(Encoder {
            mode: config.mode,
            action: config.bulk_action(),
            index,
            id_paths,
            missing_id: config.missing_id,
            timestamp,
        })
    }

    /// Appends the action line, a newline and the source line to `out`.
    pub fn encode(
        &self,
        event: &Event,
        out: &mut Vec<u8>,
        now: DateTime<Utc>,
    ) -> Result<Encoded, Rejection> {
        let time = event.get(&self.timestamp).and_then(event_time);
        let (rendered, missing) = self.index.render_path_or(event, time.unwrap_or(now), "");
        if let Some(field) = missing {
            return Err(Rejection::new(
                "index_field_missing",
                format!(
                    "the index template `{}` needs the field `{field}`, which the event lacks",
                    self.index.as_str()
                ),
            ));
        }
        let index = rendered.to_lowercase();
        if let Some(why) = index_name_problem(&index, self.mode) {
            return Err(Rejection::new(
                "invalid_index_name",
                format!(
                    "the index name `{index}` (from `{}`) {why}",
                    self.index.as_str()
                ),
            ));
        }
        let mut encoded = Encoded::default();
        let id = if self.id_paths.is_empty() {
            None
        } else {
            let id = document_id(event, &self.id_paths);
            if id.is_none() {
                if self.missing_id == MissingId::DeadLetter {
                    return Err(Rejection::new(
                        "id_field_missing",
                        format!(
                            "the event lacks one of the id_fields ({}), so it has no _id",
                            self.id_paths
                                .iter()
                                .map(ToString::to_string)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
                encoded.id_missing = true;
            }
            id
        };
        out.extend_from_slice(b"{\"");
        out.extend_from_slice(self.action.name().as_bytes());
        out.extend_from_slice(b"\":{\"_index\":");
        write_json(out, &index);
        if let Some(id) = &id {
            out.extend_from_slice(b",\"_id\":\"");
            out.extend_from_slice(id.as_bytes());
            out.push(b'"');
        }
        out.extend_from_slice(b"}}\n");
        self.source(event, time.unwrap_or(now), out);
        Ok(encoded)
    }

    /// The document: the event's object (a non-object event goes under `message`), with
    /// `@timestamp` added in data stream mode when it has none.
    fn source(&self, event: &Event, time: DateTime<Utc>, out: &mut Vec<u8>) {
        let Some(object) = event.value.as_object() else {
            out.extend_from_slice(b"{\"message\":");
            event.write_json(out);
            out.push(b'}');
            return;
        };
        let start = out.len();
        event.write_json(out);
        if self.mode == Mode::DataStream && !object.contains_key("@timestamp") {
            let stamp = time.to_rfc3339_opts(SecondsFormat::Millis, true);
            let mut field = format!("\"@timestamp\":\"{stamp}\"");
            if !object.is_empty() {
                field.push(',');
            }
            // Right after the object's opening brace.
            out.splice(start + 1..start + 1, field.into_bytes());
        }
    }
}

/// xxh3-128 of the id fields' JSON forms, each followed by a newline (which JSON text
/// cannot hold raw, so the fields cannot run into each other), as 32 hex digits. `None`
/// when a field is missing or null.
fn document_id(event: &Event, paths: &[OwnedValuePath]) -> Option<String> {
    let mut hasher = Xxh3::new();
    let mut json = Vec::with_capacity(64);
    for path in paths {
        let value = event.get(path).filter(|v| !v.is_null())?;
        json.clear();
        write_json(&mut json, value);
        json.push(b'\n');
        hasher.update(&json);
    }
    Some(format!("{:032x}", hasher.digest128()))
}

/// Why `name` cannot be an index (or data stream) name, per Elasticsearch's rules
/// (`MetadataCreateIndexService.validateIndexOrAliasName`, and data stream names may not
/// start with `.ds-`). `name` is already lower-case.
pub(super) fn index_name_problem(name: &str, mode: Mode) -> Option<&'static str> {
    if name.is_empty() {
        return Some("is empty");
    }
    if name == "." || name == ".." {
        return Some("must not be `.` or `..`");
    }
    if name.starts_with(['_', '-', '+']) {
        return Some("must not start with `_`, `-` or `+`");
    }
    if name.len() > 255 {
        return Some("is longer than 255 bytes");
    }
    if name.contains(['\\', '/', '*', '?', '"', '<', '>', '|', ' ', ',', '#', ':']) {
        return Some("must not contain any of \\ / * ? \" < > | , # : or a space");
    }
    if mode == Mode::DataStream && name.starts_with(".ds-") {
        return Some("must not start with `.ds-` (backing index names)");
    }
    None
}

fn dotted(text: &str) -> String {
    let text = text.trim();
    if text.starts_with('.') {
        text.to_string()
    } else {
        format!(".{text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn encoder(extra: &str) -> Encoder {
        let config: ElasticsearchSinkConfig =
            toml::from_str(&format!("endpoints = [\"http://127.0.0.1:9200\"]\n{extra}"))
                .expect("config");
        assert!(config.issues().is_empty(), "{:?}", config.issues());
        Encoder::new(&config).expect("encoder")
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("time")
    }

    /// The action line and the source line.
    fn lines(
        encoder: &Encoder,
        value: serde_json::Value,
    ) -> (serde_json::Value, serde_json::Value) {
        let mut out = Vec::new();
        encoder
            .encode(&Event::new(value.into()), &mut out, now())
            .expect("encodes");
        let text = String::from_utf8(out).expect("utf-8");
        let (action, source) = text.split_once('\n').expect("two lines");
        assert!(!source.contains('\n'), "one source line: {source}");
        (
            serde_json::from_str(action).expect("action json"),
            serde_json::from_str(source).expect("source json"),
        )
    }

    fn record(id: &str) -> serde_json::Value {
        serde_json::json!({
            "Id": id,
            "CreationTime": "2026-11-02T10:15:30",
            "Workload": "AzureActiveDirectory",
        })
    }

    #[test]
    fn index_from_event_time_and_fields_lower_cased() {
        let encoder = encoder("index = \"m365-{{ .Workload }}-%Y.%m.%d\"");
        let (action, source) = lines(&encoder, record("a"));
        assert_eq!(
            action["index"]["_index"],
            "m365-azureactivedirectory-2026.11.02"
        );
        assert!(action["index"].get("_id").is_none());
        assert_eq!(source, record("a"));
        // No event time: the send time.
        let (action, _) = lines(&encoder, serde_json::json!({"Workload": "Exchange"}));
        assert_eq!(action["index"]["_index"], "m365-exchange-2026.01.01");
    }

    #[test]
    fn deterministic_ids_and_create() {
        let encoder = encoder("id_fields = [\"Id\", \"CreationTime\"]");
        let (first, _) = lines(&encoder, record("9f0c2a7e"));
        let (again, _) = lines(&encoder, record("9f0c2a7e"));
        let (other, _) = lines(&encoder, record("9f0c2a7f"));
        let id = first["create"]["_id"].as_str().expect("an _id");
        assert_eq!(id.len(), 32);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(again["create"]["_id"], id);
        assert_ne!(other["create"]["_id"], id);
        // Field boundaries matter: ("ab", "c") is not ("a", "bc").
        let encoder = self::encoder("id_fields = [\"a\", \"b\"]");
        let (x, _) = lines(&encoder, serde_json::json!({"a": "ab", "b": "c"}));
        let (y, _) = lines(&encoder, serde_json::json!({"a": "a", "b": "bc"}));
        assert_ne!(x["create"]["_id"], y["create"]["_id"]);
    }

    #[test]
    fn missing_id_fields() {
        let encoder = self::encoder("id_fields = [\"Id\"]");
        let mut out = Vec::new();
        let event = Event::new(serde_json::json!({"Id": null}).into());
        let encoded = encoder.encode(&event, &mut out, now()).expect("sent");
        assert!(encoded.id_missing);
        assert!(!String::from_utf8_lossy(&out).contains("_id"));
        let encoder = self::encoder("id_fields = [\"Id\"]\nmissing_id = \"dead_letter\"");
        let refused = encoder.encode(&event, &mut Vec::new(), now());
        assert_eq!(
            refused.err().map(|r| r.reason).as_deref(),
            Some("id_field_missing")
        );
    }

    #[test]
    fn invalid_rendered_names_are_refused_with_the_reason() {
        let encoder = encoder("index = \"m365-{{ .Workload }}\"");
        let bad = Event::new(serde_json::json!({"Workload": "Azure AD"}).into());
        let refused = encoder
            .encode(&bad, &mut Vec::new(), now())
            .expect_err("refused");
        assert_eq!(refused.reason, "invalid_index_name");
        assert!(
            refused.message.contains("m365-azure ad"),
            "{}",
            refused.message
        );
        let missing = encoder
            .encode(&Event::from_message("x"), &mut Vec::new(), now())
            .expect_err("refused");
        assert_eq!(missing.reason, "index_field_missing");
        assert!(missing.message.contains("Workload"), "{}", missing.message);
        assert!(index_name_problem("_x", Mode::Index).is_some());
        assert!(index_name_problem(".ds-x", Mode::DataStream).is_some());
        assert!(index_name_problem(".ds-x", Mode::Index).is_none());
        assert!(index_name_problem(&"a".repeat(256), Mode::Index).is_some());
    }

    #[test]
    fn data_streams_get_a_timestamp() {
        let encoder =
            encoder("mode = \"data_stream\"\nindex = \"logs-m365.{{ .Workload }}-default\"");
        let (action, source) = lines(&encoder, record("a"));
        assert_eq!(
            action["create"]["_index"],
            "logs-m365.azureactivedirectory-default"
        );
        assert_eq!(source["@timestamp"], "2026-11-02T10:15:30.000Z");
        assert_eq!(source["Id"], "a");
        let (_, source) = lines(
            &encoder,
            serde_json::json!({"@timestamp": "kept", "Workload": "x"}),
        );
        assert_eq!(source["@timestamp"], "kept");
        let encoder = self::encoder("mode = \"data_stream\"");
        let (_, source) = lines(&encoder, serde_json::json!({}));
        assert_eq!(
            source,
            serde_json::json!({"@timestamp": "2026-01-01T00:00:00.000Z"})
        );
    }

    #[test]
    fn non_objects_go_under_message() {
        let encoder = encoder("");
        let (_, source) = lines(&encoder, serde_json::json!("CEF:0|a|b"));
        assert_eq!(source, serde_json::json!({"message": "CEF:0|a|b"}));
    }
}
