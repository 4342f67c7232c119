//! The part of JSON Schema a plugin's published config schema is checked with.
//!
//! siemflow carries no full JSON Schema validator (a large dependency for a few keys);
//! it checks the keywords plugin schemas use for plain option tables — `type`,
//! `properties`, `required`, `additionalProperties: false`, `enum`, `items`, `minimum`,
//! `maximum` — and ignores the rest (documented in docs/plugin-authoring.md). A plugin
//! may check more itself and answer the handshake with `error`.

use serde_json::{Map, Value};

/// Problems of `config` against the schema text; a schema that is not JSON is one.
pub fn check_text(schema: &str, config: &Map<String, Value>) -> Vec<String> {
    match serde_json::from_str::<Value>(schema) {
        Ok(schema) => {
            let mut problems = Vec::new();
            check(
                &schema,
                &Value::Object(config.clone()),
                "config",
                &mut problems,
            );
            problems
        }
        Err(e) => vec![format!("its config schema is not JSON ({e})")],
    }
}

fn type_matches(name: &str, value: &Value) -> bool {
    match name {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        "number" => value.is_number(),
        "integer" => value.is_i64() || value.is_u64(),
        _ => true,
    }
}

fn check(schema: &Value, value: &Value, path: &str, problems: &mut Vec<String>) {
    let Some(schema) = schema.as_object() else {
        return;
    };
    if let Some(kind) = schema.get("type") {
        let names: Vec<&str> = match kind {
            Value::String(name) => vec![name.as_str()],
            Value::Array(names) => names.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !names.is_empty() && !names.iter().any(|n| type_matches(n, value)) {
            problems.push(format!("`{path}` must be of type {}", names.join(" or ")));
            return;
        }
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array)
        && !options.contains(value)
    {
        let shown: Vec<String> = options.iter().map(Value::to_string).collect();
        problems.push(format!("`{path}` must be one of {}", shown.join(", ")));
    }
    if let Some(number) = value.as_f64() {
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
            && number < min
        {
            problems.push(format!("`{path}` must be at least {min}"));
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
            && number > max
        {
            problems.push(format!("`{path}` must be at most {max}"));
        }
    }
    if let (Some(items), Some(values)) = (schema.get("items"), value.as_array()) {
        for (i, item) in values.iter().enumerate() {
            check(items, item, &format!("{path}[{i}]"), problems);
        }
    }
    let Some(object) = value.as_object() else {
        return;
    };
    let properties = schema.get("properties").and_then(Value::as_object);
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for key in required.iter().filter_map(Value::as_str) {
            if !object.contains_key(key) {
                problems.push(format!("`{path}.{key}` is required"));
            }
        }
    }
    for (key, item) in object {
        match properties.and_then(|p| p.get(key)) {
            Some(property) => check(property, item, &format!("{path}.{key}"), problems),
            None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                let known: Vec<&String> =
                    properties.map(|p| p.keys().collect()).unwrap_or_default();
                problems.push(format!(
                    "`{path}.{key}` is not an option of this plugin (it takes {known:?})"
                ));
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn problems(schema: Value, config: Value) -> Vec<String> {
        let Value::Object(config) = config else {
            panic!("an object")
        };
        check_text(&schema.to_string(), &config)
    }

    #[test]
    fn types_required_unknown_keys_enums_and_ranges() {
        let schema = json!({
            "type": "object",
            "properties": {
                "url": {"type": "string"},
                "retries": {"type": "integer", "minimum": 0, "maximum": 10},
                "mode": {"enum": ["fast", "safe"]},
                "tags": {"type": "array", "items": {"type": "string"}}
            },
            "required": ["url"],
            "additionalProperties": false
        });
        assert!(problems(schema.clone(), json!({"url": "http://x"})).is_empty());
        let found = problems(
            schema,
            json!({"retries": 11, "mode": "slow", "tags": ["a", 1], "extra": true}),
        );
        assert_eq!(found.len(), 5, "{found:?}");
        assert!(found.iter().any(|p| p.contains("`config.url` is required")));
        assert!(
            found
                .iter()
                .any(|p| p.contains("config.retries") && p.contains("at most 10"))
        );
        assert!(found.iter().any(|p| p.contains("config.mode")));
        assert!(found.iter().any(|p| p.contains("config.tags[1]")));
        assert!(found.iter().any(|p| p.contains("config.extra")));
    }

    #[test]
    fn a_schema_that_is_not_json_is_a_problem() {
        let found = check_text("{", &Map::new());
        assert!(found[0].contains("not JSON"), "{found:?}");
    }
}
