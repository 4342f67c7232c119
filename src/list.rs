//! `siemflow list`: every plugin and its options, from the config structs' schemas.

use std::process::ExitCode;

use serde_json::Value;
use siemflow_core::Registry;

use crate::cli::ListArgs;

/// Prints the plugins (or one) with their options.
pub fn list(args: ListArgs, registry: &Registry) -> ExitCode {
    let plugins: Vec<_> = registry
        .iter()
        .filter(|p| args.plugin.as_deref().is_none_or(|name| name == p.name))
        .collect();
    if plugins.is_empty() {
        eprintln!("no plugin named `{}`", args.plugin.unwrap_or_default());
        return ExitCode::FAILURE;
    }
    if args.json {
        let all: Vec<Value> = plugins
            .iter()
            .map(|p| {
                serde_json::json!({
                    "kind": p.kind.as_str(),
                    "type": p.name,
                    "description": p.description,
                    "options": (p.schema)().as_value().clone(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&all).unwrap_or_default());
        return ExitCode::SUCCESS;
    }
    let mut kind = None;
    for plugin in plugins {
        if kind != Some(plugin.kind) {
            kind = Some(plugin.kind);
            println!("{}:", plugin.kind.table());
        }
        println!("  {:<16} {}", plugin.name, plugin.description);
        let schema = (plugin.schema)();
        for line in options(schema.as_value()) {
            println!("      {line}");
        }
    }
    ExitCode::SUCCESS
}

/// One line per top-level option: name, type, default, first line of its doc.
fn options(schema: &Value) -> Vec<String> {
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return Vec::new();
    };
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    properties
        .iter()
        .map(|(name, property)| {
            let kind = type_name(property);
            let default = match property.get("default") {
                Some(d) => format!(" = {d}"),
                None if required.contains(&name.as_str()) => " (required)".to_string(),
                None => String::new(),
            };
            let doc = property
                .get("description")
                .and_then(Value::as_str)
                .and_then(|d| d.lines().next())
                .unwrap_or("");
            format!("{name}: {kind}{default}  {doc}")
        })
        .collect()
}

fn type_name(property: &Value) -> String {
    if let Some(t) = property.get("type") {
        return match t {
            Value::String(s) => s.clone(),
            Value::Array(a) => a
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("|"),
            _ => "value".into(),
        };
    }
    if let Some(r) = property.get("$ref").and_then(Value::as_str) {
        return r.rsplit('/').next().unwrap_or("object").to_string();
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(options) = property.get(key).and_then(Value::as_array) {
            return options.iter().map(type_name).collect::<Vec<_>>().join("|");
        }
    }
    if let Some(values) = property.get("enum").and_then(Value::as_array) {
        return values
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join("|");
    }
    "value".into()
}
