//! The test file format of `siemflow test`, and its resolution against the pipeline.
//!
//! A test file holds `[[tests]]` cases. Vector's names are kept where they exist
//! (`insert_at`, `extract_from`, `no_outputs_from`, `conditions`, `log_fields`, `value`),
//! so a Vector test reads almost as it is; docs/testing.md lists the differences.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use siemflow_core::config::{Config, ConfigError, suggest};
use siemflow_core::metrics::ComponentKind;
use siemflow_core::registry::PluginConfig;
use siemflow_core::{Event, Value};
use siemflow_transforms::{Condition, ConditionConfig};

/// A test file: its cases.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    /// The cases, in order.
    #[serde(default)]
    tests: Vec<CaseSpec>,
}

/// One `[[tests]]` case as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseSpec {
    name: String,
    /// The transform every input goes into, unless an input names its own.
    insert_at: Option<String>,
    #[serde(default)]
    inputs: Vec<InputSpec>,
    #[serde(default)]
    outputs: Vec<OutputSpec>,
    /// Outputs (`id` or `id.name`) that must emit nothing.
    #[serde(default)]
    no_outputs_from: Vec<String>,
}

/// One `[[tests.inputs]]` entry: exactly one of `event`, `json`, `message` or `file`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InputSpec {
    insert_at: Option<String>,
    /// One event written as a TOML table (Vector's `log_fields`).
    #[serde(alias = "log_fields")]
    event: Option<toml::Table>,
    /// JSON text: an object, an array of them, or a `{"value": [...]}` page.
    json: Option<String>,
    /// A raw line, as `{ message = "…" }` (Vector's `value`).
    #[serde(alias = "value")]
    message: Option<String>,
    /// A fixture file, relative to the test file (same shapes as `json`, or NDJSON).
    file: Option<PathBuf>,
}

/// One `[[tests.outputs]]` entry: what one output must have emitted.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutputSpec {
    extract_from: String,
    /// The exact number of events.
    events: Option<usize>,
    /// Conditions every event must satisfy.
    #[serde(default)]
    all: Vec<ConditionConfig>,
    /// Conditions each satisfied by at least one event (Vector's `conditions`).
    #[serde(default, alias = "conditions")]
    any: Vec<ConditionConfig>,
    /// Conditions no event may satisfy.
    #[serde(default)]
    none: Vec<ConditionConfig>,
    /// Conditions satisfied by an exact number of events.
    #[serde(default)]
    count: Vec<CountSpec>,
}

/// `[[tests.outputs.count]]`: how many events satisfy a condition.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CountSpec {
    condition: ConditionConfig,
    events: usize,
}

/// A case ready to run: its inputs read and its conditions compiled.
pub struct Case {
    /// The file it came from.
    pub file: PathBuf,
    /// Its name.
    pub name: String,
    /// Input events per transform they go into.
    pub inputs: BTreeMap<String, Vec<Event>>,
    /// The assertions on outputs.
    pub checks: Vec<OutputCheck>,
    /// Outputs that must stay empty.
    pub no_outputs_from: Vec<String>,
}

/// How a condition is applied to the events of one output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantifier {
    /// Every event satisfies it.
    All,
    /// At least one event does.
    Any,
    /// No event does.
    None,
    /// Exactly this many events do.
    Count(usize),
}

impl Quantifier {
    /// How the report names it.
    pub fn describe(self) -> String {
        match self {
            Quantifier::All => "all".into(),
            Quantifier::Any => "any".into(),
            Quantifier::None => "none".into(),
            Quantifier::Count(n) => format!("count = {n}"),
        }
    }
}

/// A compiled condition with its source and quantifier.
pub struct CaseCondition {
    /// The VRL as written.
    pub source: String,
    /// How it applies.
    pub quantifier: Quantifier,
    /// Compiled.
    pub condition: Condition,
}

/// The assertions on one output.
pub struct OutputCheck {
    /// `id` or `id.name`.
    pub output: String,
    /// The exact number of events, if given.
    pub events: Option<usize>,
    /// The conditions.
    pub conditions: Vec<CaseCondition>,
}

/// Reads and resolves every case of the test files; all problems at once.
pub fn load(files: &[PathBuf], config: &Config) -> Result<Vec<Case>, Vec<ConfigError>> {
    let mut cases = Vec::new();
    let mut errors = Vec::new();
    if files.is_empty() {
        errors.push(
            ConfigError::new("no test file given")
                .hint("siemflow test -c pipeline.toml tests/*.toml"),
        );
    }
    for file in files {
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(e) => {
                errors.push(ConfigError::new(format!(
                    "cannot read test file `{}`: {e}",
                    file.display()
                )));
                continue;
            }
        };
        let parsed: TestFile = match toml::from_str(&text) {
            Ok(parsed) => parsed,
            Err(e) => {
                errors.push(ConfigError::new(format!(
                    "invalid test file `{}`: {}",
                    file.display(),
                    e.to_string().trim()
                )));
                continue;
            }
        };
        if parsed.tests.is_empty() {
            errors.push(
                ConfigError::new(format!("test file `{}` has no case", file.display()))
                    .hint("add `[[tests]]` tables with a name, inputs and outputs"),
            );
        }
        for (index, spec) in parsed.tests.into_iter().enumerate() {
            let mut at = Resolver {
                file,
                index,
                name: spec.name.clone(),
                config,
                errors: &mut errors,
            };
            if let Some(case) = at.case(spec) {
                cases.push(case);
            }
        }
    }
    if errors.is_empty() {
        Ok(cases)
    } else {
        Err(errors)
    }
}

/// Resolves one case, collecting what is wrong with it.
struct Resolver<'a> {
    file: &'a Path,
    index: usize,
    name: String,
    config: &'a Config,
    errors: &'a mut Vec<ConfigError>,
}

impl Resolver<'_> {
    fn error(&mut self, key: &str, message: impl Into<String>, hint: Option<String>) {
        let mut error = ConfigError::new(message)
            .component(format!("tests[{}] \"{}\"", self.index, self.name))
            .key(key);
        error.file = Some(self.file.to_path_buf());
        if let Some(hint) = hint {
            error = error.hint(hint);
        }
        self.errors.push(error);
    }

    fn case(&mut self, spec: CaseSpec) -> Option<Case> {
        let before = self.errors.len();
        if spec.name.trim().is_empty() {
            self.error("name", "a case needs a name", None);
        }
        if spec.inputs.is_empty() {
            self.error(
                "inputs",
                "the case has no input",
                Some("add `[[tests.inputs]]` with `event`, `json`, `message` or `file`".into()),
            );
        }
        if spec.outputs.is_empty() && spec.no_outputs_from.is_empty() {
            self.error(
                "outputs",
                "the case asserts nothing",
                Some("add `[[tests.outputs]]` or `no_outputs_from`".into()),
            );
        }
        let mut inputs: BTreeMap<String, Vec<Event>> = BTreeMap::new();
        for (i, input) in spec.inputs.into_iter().enumerate() {
            let key = format!("inputs[{i}]");
            let Some(target) = input.insert_at.clone().or_else(|| spec.insert_at.clone()) else {
                self.error(
                    &format!("{key}.insert_at"),
                    "no transform to insert the input at",
                    Some("set `insert_at` on the case or on the input".into()),
                );
                continue;
            };
            if !self.transform(&format!("{key}.insert_at"), &target) {
                continue;
            }
            if let Some(events) = self.input_events(&key, input) {
                inputs.entry(target).or_default().extend(events);
            }
        }
        let mut checks = Vec::new();
        for (i, output) in spec.outputs.into_iter().enumerate() {
            let key = format!("outputs[{i}]");
            self.output(&format!("{key}.extract_from"), &output.extract_from);
            let written =
                output.all.len() + output.any.len() + output.none.len() + output.count.len();
            let mut conditions = Vec::new();
            let groups = [
                ("all", Quantifier::All, output.all),
                ("any", Quantifier::Any, output.any),
                ("none", Quantifier::None, output.none),
            ];
            for (name, quantifier, list) in groups {
                for (j, condition) in list.into_iter().enumerate() {
                    let key = format!("{key}.{name}[{j}]");
                    conditions.extend(self.condition(&key, &condition, quantifier));
                }
            }
            for (j, count) in output.count.into_iter().enumerate() {
                let key = format!("{key}.count[{j}].condition");
                let quantifier = Quantifier::Count(count.events);
                conditions.extend(self.condition(&key, &count.condition, quantifier));
            }
            if output.events.is_none() && written == 0 {
                self.error(
                    &key,
                    format!("nothing is asserted about `{}`", output.extract_from),
                    Some(
                        "add `events = N`, or conditions in `all`, `any`, `none` or `count`".into(),
                    ),
                );
            }
            checks.push(OutputCheck {
                output: output.extract_from,
                events: output.events,
                conditions,
            });
        }
        for (i, output) in spec.no_outputs_from.iter().enumerate() {
            self.output(&format!("no_outputs_from[{i}]"), output);
        }
        // Asserting on an output that no input can reach would pass or fail vacuously.
        let reachable = downstream(self.config, inputs.keys());
        let asserted: Vec<String> = checks
            .iter()
            .map(|c| c.output.clone())
            .chain(spec.no_outputs_from.iter().cloned())
            .collect();
        for output in asserted {
            let id = output.split('.').next().unwrap_or_default();
            if self.config.components.contains_key(id)
                && !inputs.is_empty()
                && !reachable.contains(id)
            {
                self.error(
                    "outputs",
                    format!("`{output}` is not downstream of any input's `insert_at`"),
                    Some(
                        "extract from the transform the inputs go into, or one that reads from it"
                            .into(),
                    ),
                );
            }
        }
        (self.errors.len() == before).then(|| Case {
            file: self.file.to_path_buf(),
            name: spec.name,
            inputs,
            checks,
            no_outputs_from: spec.no_outputs_from,
        })
    }

    /// True when `id` is a transform of the pipeline.
    fn transform(&mut self, key: &str, id: &str) -> bool {
        match self.config.components.get(id) {
            Some(component) if component.kind == ComponentKind::Transform => true,
            Some(component) => {
                self.error(
                    key,
                    format!(
                        "`{id}` is a {}; tests insert events into transforms",
                        component.kind
                    ),
                    None,
                );
                false
            }
            None => {
                let hint = suggest(id, &self.transform_ids(), "transforms of the pipeline");
                self.error(
                    key,
                    format!("the pipeline has no transform `{id}`"),
                    Some(hint),
                );
                false
            }
        }
    }

    fn transform_ids(&self) -> Vec<&str> {
        self.config
            .components
            .values()
            .filter(|c| c.kind == ComponentKind::Transform)
            .map(|c| c.id.as_str())
            .collect()
    }

    /// Checks that `output` (`id` or `id.name`) is an output of a transform.
    fn output(&mut self, key: &str, output: &str) {
        let (id, name) = match output.split_once('.') {
            Some((id, name)) => (id, Some(name)),
            None => (output, None),
        };
        if !self.transform(key, id) {
            return;
        }
        let Some(component) = self.config.components.get(id) else {
            return;
        };
        let names = component.plugin.outputs();
        match name {
            None if !component.plugin.has_default_output() => {
                let listed: Vec<String> = names.iter().map(|n| format!("`{id}.{n}`")).collect();
                self.error(
                    key,
                    format!("`{id}` emits on named outputs only"),
                    Some(format!("its outputs: {}", listed.join(", "))),
                );
            }
            Some(name) if !names.iter().any(|n| n == name) => {
                let candidates: Vec<&str> = names.iter().map(String::as_str).collect();
                let hint = suggest(name, &candidates, &format!("outputs of `{id}`"));
                self.error(key, format!("`{id}` has no output `{name}`"), Some(hint));
            }
            _ => {}
        }
    }

    fn condition(
        &mut self,
        key: &str,
        condition: &ConditionConfig,
        quantifier: Quantifier,
    ) -> Option<CaseCondition> {
        match condition.compile(key) {
            Ok(compiled) => Some(CaseCondition {
                source: condition.source().trim().to_string(),
                quantifier,
                condition: compiled,
            }),
            Err(issue) => {
                self.error(key, issue.message, issue.hint);
                None
            }
        }
    }

    fn input_events(&mut self, key: &str, input: InputSpec) -> Option<Vec<Event>> {
        let given = [
            input.event.is_some(),
            input.json.is_some(),
            input.message.is_some(),
            input.file.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            self.error(
                key,
                "an input needs exactly one of `event`, `json`, `message` or `file`",
                None,
            );
            return None;
        }
        if let Some(table) = input.event {
            return Some(vec![Event::new(Value::from(toml_to_json(
                toml::Value::Table(table),
            )))]);
        }
        if let Some(message) = input.message {
            return Some(vec![Event::from_message(message)]);
        }
        let (text, what, key) = match (input.json, input.file) {
            (Some(json), _) => (json, "the JSON".to_string(), format!("{key}.json")),
            (None, Some(file)) => {
                let path = self.file.parent().unwrap_or(Path::new(".")).join(&file);
                match std::fs::read_to_string(&path) {
                    Ok(text) => (text, format!("`{}`", path.display()), format!("{key}.file")),
                    Err(e) => {
                        self.error(
                            &format!("{key}.file"),
                            format!("cannot read `{}`: {e}", path.display()),
                            Some("a fixture path is relative to the test file".into()),
                        );
                        return None;
                    }
                }
            }
            (None, None) => return None,
        };
        match records(&text) {
            Ok(records) if records.is_empty() => {
                self.error(&key, format!("{what} holds no record"), None);
                None
            }
            Ok(records) => Some(
                records
                    .into_iter()
                    .map(|r| Event::new(Value::from(r)))
                    .collect(),
            ),
            Err(problem) => {
                self.error(
                    &key,
                    format!("{what} is not JSON records: {problem}"),
                    Some(RECORD_SHAPES.into()),
                );
                None
            }
        }
    }
}

/// What `json` and `file` accept.
const RECORD_SHAPES: &str = "a JSON object, an array of objects (an Office 365 content blob), an \
    OData page `{\"value\": [...]}` (Graph, Defender), or NDJSON (one object per line)";

/// The records of a fixture: an OData page's `value`, an array's elements, one object,
/// or NDJSON lines.
fn records(text: &str) -> Result<Vec<serde_json::Value>, String> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Array(items)) => Ok(items),
        Ok(serde_json::Value::Object(mut page)) => match page.remove("value") {
            Some(serde_json::Value::Array(items)) => Ok(items),
            Some(other) => {
                page.insert("value".into(), other);
                Ok(vec![serde_json::Value::Object(page)])
            }
            None => Ok(vec![serde_json::Value::Object(page)]),
        },
        Ok(other) => Err(format!("a bare {} is not a record", kind_of(&other))),
        // Several values: NDJSON.
        Err(_) => text
            .lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(n, line)| serde_json::from_str(line).map_err(|e| format!("line {}: {e}", n + 1)))
            .collect(),
    }
}

fn kind_of(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

/// A TOML value as JSON; a TOML date-time becomes its RFC 3339 text.
fn toml_to_json(value: toml::Value) -> serde_json::Value {
    match value {
        toml::Value::String(s) => serde_json::Value::String(s),
        toml::Value::Integer(i) => serde_json::Value::from(i),
        toml::Value::Float(f) => serde_json::Value::from(f),
        toml::Value::Boolean(b) => serde_json::Value::Bool(b),
        toml::Value::Datetime(d) => serde_json::Value::String(d.to_string()),
        toml::Value::Array(items) => items.into_iter().map(toml_to_json).collect(),
        toml::Value::Table(table) => serde_json::Value::Object(
            table
                .into_iter()
                .map(|(k, v)| (k, toml_to_json(v)))
                .collect(),
        ),
    }
}

/// The transforms reachable from `starts` (themselves included) through `inputs`.
pub fn downstream<'a>(
    config: &Config,
    starts: impl IntoIterator<Item = &'a String>,
) -> BTreeSet<String> {
    let mut reached: BTreeSet<String> = starts.into_iter().cloned().collect();
    loop {
        let more: Vec<String> = config
            .components
            .values()
            .filter(|c| matches!(c.plugin, PluginConfig::Transform(_)))
            .filter(|c| !reached.contains(&c.id))
            .filter(|c| c.inputs.iter().any(|i| reached.contains(&i.component)))
            .map(|c| c.id.clone())
            .collect();
        if more.is_empty() {
            return reached;
        }
        reached.extend(more);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixture_shapes_are_read_as_records() {
        let page = r#"{"@odata.context": "x", "value": [{"id": 1}, {"id": 2}]}"#;
        assert_eq!(records(page).unwrap().len(), 2);
        assert_eq!(
            records(r#"[{"a": 1}, {"a": 2}, {"a": 3}]"#).unwrap().len(),
            3
        );
        assert_eq!(records(r#"{"a": 1}"#).unwrap().len(), 1);
        assert_eq!(records("{\"a\": 1}\n\n{\"a\": 2}\n").unwrap().len(), 2);
        let error = records("{\"a\": 1}\nnot json\n").unwrap_err();
        assert!(error.starts_with("line 2:"), "{error}");
        assert!(records("3").is_err());
        // A record whose own `value` is not a list is a record, not a page.
        let single = records(r#"{"value": 3, "b": 1}"#).unwrap();
        assert_eq!(single, vec![serde_json::json!({"value": 3, "b": 1})]);
    }

    #[test]
    fn toml_datetimes_become_text() {
        let table: toml::Table = toml::from_str("at = 2024-05-01T10:00:00Z\nn = 3").unwrap();
        let json = toml_to_json(toml::Value::Table(table));
        assert_eq!(
            json,
            serde_json::json!({"at": "2024-05-01T10:00:00Z", "n": 3})
        );
    }
}
