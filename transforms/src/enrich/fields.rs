//! Static fields and `{{ .Field }}` templates.

use vrl::path::OwnedValuePath;

use siemflow_core::Value;

#[derive(Debug, Clone)]
enum Part {
    Text(String),
    Field(OwnedValuePath),
}

/// A string value with `{{ path }}` fields. Unlike `core::template`, which renders file
/// paths, it keeps `%` and `/` as written and can copy a typed value.
#[derive(Debug, Clone)]
pub struct FieldTemplate {
    parts: Vec<Part>,
}

impl FieldTemplate {
    /// Parses a template; text without `{{` is one literal part.
    pub fn parse(source: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = source;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| format!("unclosed `{{{{` in `{source}`"))?;
            let field = after[..end].trim();
            let path = siemflow_core::event::field_path("", field).map_err(|_| {
                format!(
                    "`{field}` in `{source}` is not a field path; write e.g. `{{{{ .UserId }}}}`"
                )
            })?;
            parts.push(Part::Field(path));
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(FieldTemplate { parts })
    }

    /// The value for one event, or the path of the first field it lacks.
    pub fn render(&self, event: &Value) -> Result<Value, String> {
        // One lone field copies the value with its type (a number stays a number).
        if let [Part::Field(path)] = self.parts.as_slice() {
            return match event.get(path) {
                Some(value) if !value.is_null() => Ok(value.clone()),
                _ => Err(path.to_string()),
            };
        }
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Field(path) => match event.get(path) {
                    Some(value) if !value.is_null() => out.push_str(&value.to_string_lossy()),
                    _ => return Err(path.to_string()),
                },
            }
        }
        Ok(Value::from(out))
    }
}

/// One entry of `fields`: where it goes and what it holds.
#[derive(Debug, Clone)]
pub struct StaticField {
    /// The destination path.
    pub path: OwnedValuePath,
    /// A fixed value, or a template for strings with fields.
    pub value: FieldValue,
}

/// A fixed value or a template.
#[derive(Debug, Clone)]
pub enum FieldValue {
    /// Set as is.
    Fixed(Value),
    /// Rendered per event.
    Template(FieldTemplate),
}

impl StaticField {
    /// Builds one entry from the config.
    pub fn new(name: &str, value: &serde_json::Value) -> Result<Self, String> {
        let path = siemflow_core::event::field_path(name, name).map_err(|issue| issue.message)?;
        let value = match value.as_str() {
            Some(text) if text.contains("{{") => FieldValue::Template(FieldTemplate::parse(text)?),
            _ => FieldValue::Fixed(Value::from(value.clone())),
        };
        Ok(StaticField { path, value })
    }
}
