//! The simulated indices and the execution of bulk items against them (reference §3.2).

use std::collections::{BTreeMap, HashMap};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::Serialize;
use serde_json::{Value, json};

use super::bulk::{Action, Op, index_name_problem};
use super::config::{ElasticsearchConfig, Flavour};
use crate::wire::Dice;
use crate::world::rng::{key, mix};

/// What happened to one `_id` of one index, over the simulator's life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct IdCounts {
    /// Items that named this `_id` (any outcome).
    pub attempts: u64,
    /// Items that wrote it (created, overwritten, updated or deleted).
    pub writes: u64,
    /// `create` items refused with 409 because it existed.
    pub conflicts: u64,
    /// Items failed otherwise (faults, bad document).
    pub failures: u64,
}

#[derive(Debug)]
struct Doc {
    source: Option<Value>,
    version: u64,
}

/// One index or data stream.
#[derive(Debug)]
pub(crate) struct IndexState {
    /// The name responses carry (`.ds-<stream>-<date>-000001` for a data stream).
    response_name: String,
    uuid: String,
    docs: BTreeMap<String, Doc>,
    counts: BTreeMap<String, IdCounts>,
    next_seq: u64,
}

/// Every index, plus the generator of automatic ids.
#[derive(Debug, Default)]
pub(crate) struct Store {
    indices: HashMap<String, IndexState>,
    auto_ids: u64,
}

/// The outcome of one item, for the response and the counters.
pub(crate) struct ItemResult {
    pub(crate) json: Value,
    pub(crate) status: u16,
    pub(crate) error: Option<&'static str>,
    pub(crate) result: Option<&'static str>,
}

impl Store {
    /// Stored documents of `index`, by `_id`.
    pub(crate) fn documents(&self, index: &str) -> Vec<(String, Value)> {
        self.indices
            .get(index)
            .map(|i| {
                i.docs
                    .iter()
                    .filter_map(|(id, d)| d.source.clone().map(|s| (id.clone(), s)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Per-`_id` counters of `index`.
    pub(crate) fn counts(&self, index: &str) -> BTreeMap<String, IdCounts> {
        self.indices
            .get(index)
            .map(|i| i.counts.clone())
            .unwrap_or_default()
    }

    /// Number of indices and data streams (each one primary shard).
    pub(crate) fn index_count(&self) -> usize {
        self.indices.len()
    }

    fn auto_id(&mut self, seed: u64) -> String {
        self.auto_ids += 1;
        let a = mix(key(&[seed, 0xe5, self.auto_ids]));
        let b = mix(key(&[seed, 0xe6, self.auto_ids]));
        let mut bytes = [0u8; 15];
        bytes[..8].copy_from_slice(&a.to_be_bytes());
        bytes[8..].copy_from_slice(&b.to_be_bytes()[..7]);
        B64.encode(bytes)
    }

    /// Executes one item.
    pub(crate) fn apply(
        &mut self,
        cfg: &ElasticsearchConfig,
        dice: &Dice,
        action: &Action<'_>,
        today: &str,
    ) -> ItemResult {
        let op = action.op;
        let name = &action.index;
        let data_stream = cfg.is_data_stream(name);
        if let Some(why) = index_name_problem(name) {
            let e = error_json(
                "invalid_index_name_exception",
                format!("Invalid index name [{name}], {why}"),
                "_na_",
                name,
            );
            return failed(
                op,
                name,
                action.id.as_deref(),
                400,
                e,
                "invalid_index_name_exception",
            );
        }
        let id = match &action.id {
            Some(id) => id.clone(),
            None => self.auto_id(cfg.seed),
        };
        let index = self
            .indices
            .entry(name.clone())
            .or_insert_with(|| IndexState {
                response_name: if data_stream {
                    format!(".ds-{name}-{today}-000001")
                } else {
                    name.clone()
                },
                uuid: B64.encode(
                    mix(key(&[cfg.seed, 0x1d, crate::world::rng::hash_str(name)])).to_be_bytes(),
                ),
                docs: BTreeMap::new(),
                counts: BTreeMap::new(),
                next_seq: 0,
            });
        index.counts.entry(id.clone()).or_default().attempts += 1;
        let outcome = execute(cfg, dice, action, &id, data_stream, index);
        let counts = index.counts.entry(id.clone()).or_default();
        match &outcome {
            Ok(_) => counts.writes += 1,
            Err((409, ..)) => counts.conflicts += 1,
            Err(_) => counts.failures += 1,
        }
        let (response_name, uuid) = (index.response_name.clone(), index.uuid.clone());
        match outcome {
            Ok((status, result, version, seq_no)) => ItemResult {
                json: json!({op.name(): {
                    "_index": response_name,
                    "_id": id,
                    "_version": version,
                    "result": result,
                    "_shards": {"total": 2, "successful": 1, "failed": 0},
                    "_seq_no": seq_no,
                    "_primary_term": 1,
                    "status": status,
                }}),
                status,
                error: None,
                result: Some(result),
            },
            Err((status, kind, reason)) => {
                let e = error_json(kind, reason, &uuid, &response_name);
                failed(op, &response_name, Some(&id), status, e, kind)
            }
        }
    }
}

type Outcome = Result<(u16, &'static str, u64, u64), (u16, &'static str, String)>;

fn execute(
    cfg: &ElasticsearchConfig,
    dice: &Dice,
    action: &Action<'_>,
    id: &str,
    data_stream: bool,
    index: &mut IndexState,
) -> Outcome {
    let opensearch = cfg.flavour == Flavour::Opensearch;
    let parsing = if opensearch {
        "mapper_parsing_exception"
    } else {
        "document_parsing_exception"
    };
    if data_stream && action.op != Op::Create {
        return Err((
            400,
            "illegal_argument_exception",
            format!(
                "only write ops with an op_type of create are allowed in data streams (index [{}], op [{}])",
                action.index,
                action.op.name()
            ),
        ));
    }
    let f = &cfg.faults;
    if dice.chance(f.item_throttle_rate) {
        let kind = if opensearch {
            "opensearch_rejected_execution_exception"
        } else {
            "es_rejected_execution_exception"
        };
        return Err((
            429,
            kind,
            format!(
                "rejected execution of primary operation [shard_detail=[{}][0]] (write queue is full)",
                action.index
            ),
        ));
    }
    if dice.chance(f.item_unavailable_rate) {
        return Err((
            503,
            "unavailable_shards_exception",
            format!(
                "[{}][0] primary shard is not active Timeout: [1m], request: [BulkShardRequest [[{}][0]] containing [1] requests]",
                action.index, action.index
            ),
        ));
    }
    let source = match action.source {
        None => None,
        Some(line) => {
            let parsed: Value = serde_json::from_slice(line).map_err(|e| {
                (
                    400,
                    parsing,
                    format!("[1:{}] failed to parse: {e}", e.column()),
                )
            })?;
            if !parsed.is_object() {
                return Err((
                    400,
                    parsing,
                    "[1:1] failed to parse: the document source must be a JSON object".to_string(),
                ));
            }
            if let Some(marker) = &f.reject_marker
                && memchr::memmem::find(line, marker.as_bytes()).is_some()
            {
                return Err((
                    400,
                    parsing,
                    format!(
                        "[1:1] failed to parse field [message] of type [long] in document with id '{id}'. Preview of field's value: '{marker}'"
                    ),
                ));
            }
            Some(parsed)
        }
    };
    if data_stream
        && source
            .as_ref()
            .is_some_and(|s| s.get("@timestamp").is_none_or(Value::is_null))
    {
        return Err((
            400,
            parsing,
            "data stream timestamp field [@timestamp] is missing".to_string(),
        ));
    }
    let keep = cfg.keep_documents;
    let seq = index.next_seq;
    match action.op {
        Op::Create => {
            if let Some(existing) = index.docs.get(id) {
                return Err((
                    409,
                    "version_conflict_engine_exception",
                    format!(
                        "[{id}]: version conflict, document already exists (current version [{}])",
                        existing.version
                    ),
                ));
            }
            index.next_seq += 1;
            index.docs.insert(id.to_string(), doc(source, keep, 1));
            Ok((201, "created", 1, seq))
        }
        Op::Index => {
            index.next_seq += 1;
            let version = index.docs.get(id).map_or(1, |d| d.version + 1);
            index
                .docs
                .insert(id.to_string(), doc(source, keep, version));
            if version == 1 {
                Ok((201, "created", 1, seq))
            } else {
                Ok((200, "updated", version, seq))
            }
        }
        Op::Update => update(index, id, source, keep, seq),
        Op::Delete => match index.docs.remove(id) {
            Some(d) => {
                index.next_seq += 1;
                Ok((200, "deleted", d.version + 1, seq))
            }
            None => Ok((404, "not_found", 1, seq)),
        },
    }
}

fn doc(source: Option<Value>, keep: bool, version: u64) -> Doc {
    Doc {
        source: if keep { source } else { None },
        version,
    }
}

/// `update` with a partial `doc` (merged at the top level), `doc_as_upsert` or `upsert`.
fn update(index: &mut IndexState, id: &str, body: Option<Value>, keep: bool, seq: u64) -> Outcome {
    let body = body.unwrap_or_default();
    let Some(partial) = body.get("doc").and_then(Value::as_object).cloned() else {
        return Err((
            400,
            "action_request_validation_exception",
            "Validation Failed: 1: script or doc is missing;".to_string(),
        ));
    };
    match index.docs.get_mut(id) {
        Some(existing) => {
            if let Some(Value::Object(current)) = existing.source.as_mut() {
                current.extend(partial);
            }
            existing.version += 1;
            index.next_seq += 1;
            Ok((200, "updated", existing.version, seq))
        }
        None => {
            let upsert = if body.get("doc_as_upsert").and_then(Value::as_bool) == Some(true) {
                Some(Value::Object(partial))
            } else {
                body.get("upsert").filter(|u| u.is_object()).cloned()
            };
            let Some(upsert) = upsert else {
                return Err((
                    404,
                    "document_missing_exception",
                    format!("[{id}]: document missing"),
                ));
            };
            index.next_seq += 1;
            index
                .docs
                .insert(id.to_string(), doc(Some(upsert), keep, 1));
            Ok((201, "created", 1, seq))
        }
    }
}

fn error_json(kind: &str, reason: String, uuid: &str, index: &str) -> Value {
    json!({"type": kind, "reason": reason, "index_uuid": uuid, "shard": "0", "index": index})
}

fn failed(
    op: Op,
    index: &str,
    id: Option<&str>,
    status: u16,
    error: Value,
    kind: &'static str,
) -> ItemResult {
    ItemResult {
        json: json!({op.name(): {"_index": index, "_id": id, "status": status, "error": error}}),
        status,
        error: Some(kind),
        result: None,
    }
}
