//! Static fields and `{{ .Field }}` templates.

use vrl::path::OwnedValuePath;

use siemflow_core::Value;
pub use siemflow_core::template::FieldTemplate;

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
