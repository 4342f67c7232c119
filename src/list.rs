//! `siemflow list`: every plugin and its options, from the config structs' schemas.

use std::io::Write as _;
use std::process::ExitCode;

use serde_json::Value;
use siemflow_core::Registry;
use siemflow_core::registry::Plugin;

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
    let text = if args.json {
        json(&plugins)
    } else {
        text(&plugins)
    };
    // A reader that stops early (`siemflow list | head`) is not an error worth a panic.
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cannot write the list: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The plugins and their option schemas as a JSON array.
fn json(plugins: &[&Plugin]) -> String {
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
    let mut text = serde_json::to_string_pretty(&all).unwrap_or_default();
    text.push('\n');
    text
}

/// The plugins by kind, each with one line per option.
fn text(plugins: &[&Plugin]) -> String {
    let mut text = String::new();
    let mut kind = None;
    for plugin in plugins {
        if kind != Some(plugin.kind) {
            kind = Some(plugin.kind);
            text.push_str(&format!("{}:\n", plugin.kind.table()));
        }
        text.push_str(&format!("  {:<16} {}\n", plugin.name, plugin.description));
        let schema = (plugin.schema)();
        for line in options(schema.as_value()) {
            text.push_str(&format!("      {line}\n"));
        }
    }
    text
}

/// One line per top-level option: name, type, default, first line of its doc.
pub(crate) fn options(schema: &Value) -> Vec<String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every default in `schema`, with the path to it.
    fn defaults<'a>(
        path: String,
        schema: &'a Value,
        found: &mut Vec<(String, &'a Value, &'a Value)>,
    ) {
        match schema {
            Value::Object(map) => {
                if let Some(default) = map.get("default") {
                    found.push((path.clone(), schema, default));
                }
                for (key, value) in map {
                    defaults(format!("{path}.{key}"), value, found);
                }
            }
            Value::Array(items) => {
                for (i, value) in items.iter().enumerate() {
                    defaults(format!("{path}[{i}]"), value, found);
                }
            }
            _ => {}
        }
    }

    #[test]
    fn defaults_read_as_a_user_writes_them() {
        let registry = crate::standard_registry();
        let mut wrong = Vec::new();
        for plugin in registry.iter() {
            let schema = (plugin.schema)();
            let mut found = Vec::new();
            defaults(plugin.name.to_string(), schema.as_value(), &mut found);
            for (path, property, default) in found {
                // A `Duration` as serde writes it, not as a config does.
                if default.get("secs").is_some() && default.get("nanos").is_some() {
                    wrong.push(format!(
                        "{path} = {default} (use units::serialize_duration)"
                    ));
                }
                // A size shown as a bare number although the option is a string.
                let is_string = property.get("type") == Some(&Value::String("string".into()));
                if is_string && default.is_number() {
                    wrong.push(format!("{path} = {default} (use units::serialize_size)"));
                }
            }
        }
        assert!(
            wrong.is_empty(),
            "defaults not as a user writes them:\n{}",
            wrong.join("\n")
        );
    }

    #[test]
    fn dedup_shows_its_window_and_budget_as_written() {
        let registry = crate::standard_registry();
        let dedup = registry
            .get(siemflow_core::metrics::ComponentKind::Transform, "dedup")
            .expect("dedup");
        let lines = options((dedup.schema)().as_value());
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("window: string = \"7d\"")),
            "{lines:?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("memory_budget: string = \"64MiB\"")),
            "{lines:?}"
        );
    }
}
