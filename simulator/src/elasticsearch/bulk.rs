//! The `_bulk` body: NDJSON action/metadata lines and source lines (reference §3.1), parsed
//! strictly the way Elasticsearch's REST layer does before any item is executed.

use serde_json::{Map, Value};

use super::reply::EsError;

/// A bulk operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Index,
    Create,
    Update,
    Delete,
}

impl Op {
    /// The key of the action line and of the response item.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Op::Index => "index",
            Op::Create => "create",
            Op::Update => "update",
            Op::Delete => "delete",
        }
    }
}

/// One parsed action with its source line.
#[derive(Debug)]
pub(crate) struct Action<'a> {
    pub(crate) op: Op,
    pub(crate) index: String,
    pub(crate) id: Option<String>,
    /// The source line (index, create, update); not yet parsed: a bad document fails only
    /// its own item, as on a real shard.
    pub(crate) source: Option<&'a [u8]>,
}

/// Metadata keys an action line may carry.
const METADATA: [&str; 15] = [
    "_index",
    "_id",
    "routing",
    "pipeline",
    "require_alias",
    "require_data_stream",
    "dynamic_templates",
    "if_seq_no",
    "if_primary_term",
    "version",
    "version_type",
    "op_type",
    "retry_on_conflict",
    "_source",
    "list_executed_pipelines",
];

/// Longest `_id`.
const MAX_ID_BYTES: usize = 512;

/// Splits and checks the body; any malformed line fails the whole request (400).
pub(crate) fn parse<'a>(
    body: &'a [u8],
    default_index: Option<&str>,
) -> Result<Vec<Action<'a>>, EsError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(EsError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "parse_exception",
            "request body is required",
        ));
    }
    if body.last() != Some(&b'\n') {
        return Err(EsError::illegal(
            "The bulk request must be terminated by a newline [\\n]",
        ));
    }
    let lines: Vec<&[u8]> = body[..body.len() - 1].split(|b| *b == b'\n').collect();
    let mut actions = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line_no = i + 1;
        let line = trim_cr(lines[i]);
        i += 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let (op, meta) = action_line(line, line_no)?;
        let index = match meta.get("_index") {
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(malformed(line_no, "_index must be a string")),
            None => match default_index {
                Some(d) => d.to_string(),
                None => return Err(validation("index is missing")),
            },
        };
        let id = match meta.get("_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(malformed(line_no, "_id must be a string")),
        };
        if let Some(id) = &id {
            if id.is_empty() {
                return Err(validation("if _id is specified it must not be empty"));
            }
            if id.len() > MAX_ID_BYTES {
                return Err(validation(&format!(
                    "id [{id}] is too long, must be no longer than 512 bytes but was: {}",
                    id.len()
                )));
            }
        }
        let op = match (op, meta.get("op_type").and_then(Value::as_str)) {
            (Op::Index, Some("create")) => Op::Create,
            (op, _) => op,
        };
        if matches!(op, Op::Update | Op::Delete) && id.is_none() {
            return Err(validation("id is missing"));
        }
        let source = if op == Op::Delete {
            None
        } else {
            let Some(line) = lines.get(i) else {
                return Err(EsError::illegal(format!(
                    "Malformed bulk request: action/metadata line [{line_no}] has no source line"
                )));
            };
            i += 1;
            Some(trim_cr(line))
        };
        actions.push(Action {
            op,
            index,
            id,
            source,
        });
    }
    Ok(actions)
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn malformed(line_no: usize, what: &str) -> EsError {
    EsError::illegal(format!(
        "Malformed action/metadata line [{line_no}], {what}"
    ))
}

fn validation(what: &str) -> EsError {
    EsError::new(
        axum::http::StatusCode::BAD_REQUEST,
        "action_request_validation_exception",
        format!("Validation Failed: 1: {what};"),
    )
}

fn action_line(line: &[u8], line_no: usize) -> Result<(Op, Map<String, Value>), EsError> {
    let value: Value = serde_json::from_slice(line).map_err(|e| {
        EsError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "x_content_parse_exception",
            format!(
                "[{line_no}:{}] Malformed action/metadata line: {e}",
                e.column()
            ),
        )
    })?;
    let Value::Object(map) = value else {
        return Err(malformed(
            line_no,
            &format!("expected START_OBJECT but found [{}]", token_name(&value)),
        ));
    };
    let mut entries = map.into_iter();
    let Some((name, meta)) = entries.next() else {
        return Err(malformed(
            line_no,
            "expected FIELD_NAME but found [END_OBJECT]",
        ));
    };
    let op = match name.as_str() {
        "index" => Op::Index,
        "create" => Op::Create,
        "update" => Op::Update,
        "delete" => Op::Delete,
        other => {
            return Err(malformed(
                line_no,
                &format!(
                    "expected field [create], [delete], [index] or [update] but found [{other}]"
                ),
            ));
        }
    };
    let Value::Object(meta) = meta else {
        return Err(malformed(
            line_no,
            &format!("expected START_OBJECT but found [{}]", token_name(&meta)),
        ));
    };
    if entries.next().is_some() {
        return Err(malformed(
            line_no,
            "expected END_OBJECT but found [FIELD_NAME]",
        ));
    }
    if let Some(unknown) = meta.keys().find(|k| !METADATA.contains(&k.as_str())) {
        return Err(EsError::illegal(format!(
            "Action/metadata line [{line_no}] contains an unknown parameter [{unknown}]"
        )));
    }
    Ok((op, meta))
}

fn token_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "VALUE_NULL",
        Value::Bool(_) => "VALUE_BOOLEAN",
        Value::Number(_) => "VALUE_NUMBER",
        Value::String(_) => "VALUE_STRING",
        Value::Array(_) => "START_ARRAY",
        Value::Object(_) => "START_OBJECT",
    }
}

/// Why an index name is invalid, if it is (Elasticsearch's `MetadataCreateIndexService` rules).
pub(crate) fn index_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("must not be empty");
    }
    if name != name.to_lowercase() {
        return Some("must be lowercase");
    }
    if name == "." || name == ".." {
        return Some("must not be '.' or '..'");
    }
    if name.starts_with(['_', '-', '+']) {
        return Some("must not start with '_', '-', or '+'");
    }
    if name.len() > 255 {
        return Some("index name is too long, (> 255)");
    }
    if name.contains(['\\', '/', '*', '?', '"', '<', '>', '|', ' ', ',', '#', ':']) {
        return Some(
            "must not contain the following characters [ , \", *, \\, <, |, ,, >, /, ?, #, :]",
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_and_defaults() {
        let body = b"{\"index\":{\"_id\":\"1\"}}\n{\"a\":1}\n{\"delete\":{\"_index\":\"x\",\"_id\":\"2\"}}\n{\"create\":{\"_index\":\"y\"}}\n{\"b\":2}\n";
        let a = parse(body, Some("d")).expect("parses");
        assert_eq!(a.len(), 3);
        assert_eq!(
            (a[0].op, a[0].index.as_str(), a[0].id.as_deref()),
            (Op::Index, "d", Some("1"))
        );
        assert_eq!(a[0].source, Some(&b"{\"a\":1}"[..]));
        assert_eq!((a[1].op, a[1].source), (Op::Delete, None));
        assert_eq!((a[2].op, a[2].id.as_deref()), (Op::Create, None));
    }

    #[test]
    fn request_level_refusals() {
        let cases: [(&[u8], &str); 9] = [
            (b"", "parse_exception"),
            (b"{\"index\":{}}\n{}", "illegal_argument_exception"),
            (
                b"{\"index\":{}}\n{}\n",
                "action_request_validation_exception",
            ),
            (
                b"{\"upsert\":{\"_index\":\"x\"}}\n{}\n",
                "illegal_argument_exception",
            ),
            (
                b"{\"index\":{\"_index\":\"x\",\"_type\":\"_doc\"}}\n{}\n",
                "illegal_argument_exception",
            ),
            (b"[1]\n", "illegal_argument_exception"),
            (b"{nope\n", "x_content_parse_exception"),
            (
                b"{\"delete\":{\"_index\":\"x\"}}\n",
                "action_request_validation_exception",
            ),
            (
                b"{\"index\":{\"_index\":\"x\"}}\n",
                "illegal_argument_exception",
            ),
        ];
        for (body, kind) in cases {
            let e = parse(body, None).expect_err("refused");
            assert_eq!(e.kind, kind, "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn index_names() {
        assert_eq!(index_name_problem("logs-m365-default"), None);
        assert!(index_name_problem("Logs").is_some());
        assert!(index_name_problem("_x").is_some());
        assert!(index_name_problem("a b").is_some());
        assert!(index_name_problem(&"a".repeat(256)).is_some());
    }
}
