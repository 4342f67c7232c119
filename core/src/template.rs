//! Templates such as `out/%Y-%m-%d/{{ .Workload }}.log`: strftime fields from the
//! current UTC time and `{{ path }}` fields from the event ([`Template`], for names and
//! paths); and values such as `"{{ .UserId }}"` ([`FieldTemplate`], for fields).

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, Utc};
use vrl::path::OwnedValuePath;

use crate::Value;
use crate::event::Event;

#[derive(Debug, Clone)]
enum Part {
    Text(String),
    Time(String),
    Field(OwnedValuePath),
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

impl Template {
    /// Parses a template, checking strftime specifiers and field paths.
    pub fn parse(source: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = source;
        while let Some(start) = rest.find("{{") {
            push_text(&mut parts, &rest[..start])?;
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| format!("unclosed `{{{{` in template `{source}`"))?;
            let field = after[..end].trim();
            let path = vrl::path::parse_value_path(field).map_err(|e| {
                format!("`{field}` in template `{source}` is not a field path ({e}); write e.g. `{{{{ .Workload }}}}`")
            })?;
            parts.push(Part::Field(path));
            rest = &after[end + 2..];
        }
        push_text(&mut parts, rest)?;
        Ok(Template {
            source: source.to_string(),
            parts,
        })
    }

    /// True when the result depends on the event, not only on the time.
    pub fn has_fields(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Field(_)))
    }

    /// What comes before the first event field, with times rendered for `now`: the part
    /// every event shares (all of it when there is no field). A sink writing files uses
    /// it to tell a bad name rendered from an event from a broken configured folder.
    pub fn fixed_prefix(&self, now: DateTime<Utc>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Time(f) => out.push_str(&now.format(f).to_string()),
                Part::Field(_) => break,
            }
        }
        out
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Renders for one event. A field value is made safe for a path: separators and `..`
    /// cannot be smuggled in by the data. A missing field is an error naming it.
    pub fn render_path(&self, event: &Event, now: DateTime<Utc>) -> Result<String, String> {
        match self.render_path_or(event, now, "") {
            (path, None) => Ok(path),
            (_, Some(missing)) => Err(format!("the event has no field `{missing}`")),
        }
    }

    /// Renders with `placeholder` standing in for missing fields; also returns the first
    /// missing field's path, so the caller can count it.
    pub fn render_path_or(
        &self,
        event: &Event,
        now: DateTime<Utc>,
        placeholder: &str,
    ) -> (String, Option<String>) {
        let mut out = String::with_capacity(self.source.len() + 16);
        let mut missing = None;
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Time(f) => out.push_str(&now.format(f).to_string()),
                Part::Field(path) => match event.get(path) {
                    Some(value) if !value.is_null() => {
                        out.push_str(&path_safe(&value.to_string_lossy()))
                    }
                    _ => {
                        out.push_str(placeholder);
                        missing.get_or_insert_with(|| path.to_string());
                    }
                },
            }
        }
        (out, missing)
    }
}

#[derive(Debug, Clone)]
enum FieldPart {
    Text(String),
    Field(OwnedValuePath),
}

/// A value with `{{ path }}` fields, for event fields and attributes (the `enrich`
/// transform's `fields`, the `opentelemetry` sink's `resource`). Unlike [`Template`],
/// which renders file paths, it keeps `%` and `/` as written and can copy a typed value.
#[derive(Debug, Clone)]
pub struct FieldTemplate {
    parts: Vec<FieldPart>,
}

impl FieldTemplate {
    /// Parses a template; text without `{{` is one literal part.
    pub fn parse(source: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = source;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(FieldPart::Text(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| format!("unclosed `{{{{` in `{source}`"))?;
            let field = after[..end].trim();
            let path = crate::event::field_path("", field).map_err(|_| {
                format!(
                    "`{field}` in `{source}` is not a field path; write e.g. `{{{{ .UserId }}}}`"
                )
            })?;
            parts.push(FieldPart::Field(path));
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(FieldPart::Text(rest.to_string()));
        }
        Ok(FieldTemplate { parts })
    }

    /// The value for one event, or the path of the first field it lacks.
    pub fn render(&self, event: &Value) -> Result<Value, String> {
        // One lone field copies the value with its type (a number stays a number).
        if let [FieldPart::Field(path)] = self.parts.as_slice() {
            return match event.get(path) {
                Some(value) if !value.is_null() => Ok(value.clone()),
                _ => Err(path.to_string()),
            };
        }
        let mut out = String::new();
        for part in &self.parts {
            match part {
                FieldPart::Text(text) => out.push_str(text),
                FieldPart::Field(path) => match event.get(path) {
                    Some(value) if !value.is_null() => out.push_str(&value.to_string_lossy()),
                    _ => return Err(path.to_string()),
                },
            }
        }
        Ok(Value::from(out))
    }
}

fn push_text(parts: &mut Vec<Part>, text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Ok(());
    }
    if text.contains('%') {
        if StrftimeItems::new(text).any(|item| matches!(item, Item::Error)) {
            return Err(format!(
                "`{text}` has an invalid strftime specifier; use e.g. %Y, %m, %d, %H, or %% for a literal %"
            ));
        }
        parts.push(Part::Time(text.to_string()));
    } else {
        parts.push(Part::Text(text.to_string()));
    }
    Ok(())
}

fn path_safe(value: &str) -> String {
    let cleaned: String = value
        .chars()
        .map(|c| match c {
            '/' | '\\' | '\0' => '_',
            c if c.is_control() => '_',
            c => c,
        })
        .collect();
    match cleaned.as_str() {
        "" | "." | ".." => "_".to_string(),
        _ => cleaned,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn event(workload: &str) -> Event {
        let (event, _) = crate::decoding::Decoding::Json
            .decode(format!(r#"{{"Workload":"{workload}"}}"#).as_bytes());
        event
    }

    #[test]
    fn renders_time_and_fields() {
        let template = Template::parse("out/%Y-%m-%d/{{ .Workload }}.log").expect("valid");
        let now = Utc
            .with_ymd_and_hms(2026, 11, 24, 10, 0, 0)
            .single()
            .expect("time");
        assert_eq!(
            template.render_path(&event("Exchange"), now).as_deref(),
            Ok("out/2026-11-24/Exchange.log")
        );
    }

    #[test]
    fn field_values_cannot_escape_the_folder() {
        let template = Template::parse("out/{{ .Workload }}.log").expect("valid");
        let rendered = template.render_path(&event("../../etc/passwd"), Utc::now());
        assert_eq!(rendered.as_deref(), Ok("out/.._.._etc_passwd.log"));
        assert_eq!(
            template.render_path(&event(".."), Utc::now()).as_deref(),
            Ok("out/_.log")
        );
    }

    #[test]
    fn the_fixed_prefix_ends_at_the_first_field() {
        let now = Utc
            .with_ymd_and_hms(2026, 11, 24, 10, 0, 0)
            .single()
            .expect("time");
        let template = Template::parse("out/%Y-%m-%d/{{ .Workload }}/x.log").expect("valid");
        assert_eq!(template.fixed_prefix(now), "out/2026-11-24/");
        let template = Template::parse("{{ .Workload }}.log").expect("valid");
        assert_eq!(template.fixed_prefix(now), "");
        let template = Template::parse("out/all.log").expect("valid");
        assert_eq!(template.fixed_prefix(now), "out/all.log");
    }

    #[test]
    fn rejects_bad_templates() {
        assert!(Template::parse("out/{{ .Workload").is_err());
        assert!(Template::parse("out/%Q.log").is_err());
        assert!(Template::parse("out/{{ not a path }}.log").is_err());
    }

    #[test]
    fn missing_fields_are_named() {
        let template = Template::parse("{{ .Nope }}").expect("valid");
        let error = template
            .render_path(&event("x"), Utc::now())
            .expect_err("missing");
        assert!(error.contains("Nope"), "{error}");
        let (path, missing) = template.render_path_or(&event("x"), Utc::now(), "_missing");
        assert_eq!(
            (path.as_str(), missing.as_deref()),
            ("_missing", Some("Nope"))
        );
    }
}
