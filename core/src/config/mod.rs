//! Loading a pipeline from one or more TOML files into a checked [`Config`].

pub mod checks;
mod error;
mod graph;
mod interpolate;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_spanned::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

pub use error::{ConfigError, ConfigErrors, SourceFile, closest, suggest};
pub use interpolate::interpolate;

/// The `[api]` table, defined beside the server it configures.
pub use crate::api::ApiConfig;

use crate::buffer::BufferConfig;
use crate::metrics::ComponentKind;
use crate::registry::{ExtensionConfig, PluginConfig, Registry};

/// Each input as written, with its span: for errors that point at one input.
type InputSpans = Vec<(String, Range<usize>)>;

/// Where a component takes events from: `id` or `id.output`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InputRef {
    /// The upstream component.
    pub component: String,
    /// Its named output; `None` for the default one.
    pub output: Option<String>,
}

impl std::fmt::Display for InputRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.output {
            Some(o) => write!(f, "{}.{o}", self.component),
            None => f.write_str(&self.component),
        }
    }
}

/// One configured component, parsed and checked.
#[derive(Debug)]
pub struct Component {
    /// Its id.
    pub id: String,
    /// Source, transform or sink.
    pub kind: ComponentKind,
    /// The plugin `type`.
    pub type_name: String,
    /// What it consumes (empty for sources).
    pub inputs: Vec<InputRef>,
    /// Its buffer (sinks; transforms use the default).
    pub buffer: BufferConfig,
    /// The plugin's typed options.
    pub plugin: PluginConfig,
    /// Everything that defines it, rendered: a reload replaces it only when this changes.
    pub fingerprint: String,
}

/// A whole pipeline.
pub struct Config {
    /// Where components keep state, one folder per id.
    pub data_dir: PathBuf,
    /// The HTTP API, if enabled.
    pub api: Option<ApiConfig>,
    /// How long SIGTERM waits for in-flight events.
    pub shutdown_timeout: Duration,
    /// Every component by id.
    pub components: BTreeMap<String, Component>,
    /// Problems that do not stop the pipeline (an output nobody consumes).
    pub warnings: Vec<ConfigError>,
    /// Registered top-level tables (e.g. `[simulator]`), parsed, with their rendering
    /// (to tell whether a reload changed them).
    pub extensions: BTreeMap<String, (ExtensionConfig, String)>,
}

impl std::fmt::Debug for ExtensionsDebug<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

struct ExtensionsDebug<'a>(&'a BTreeMap<String, (ExtensionConfig, String)>);

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("data_dir", &self.data_dir)
            .field("api", &self.api)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("components", &self.components)
            .field("warnings", &self.warnings)
            .field("extensions", &ExtensionsDebug(&self.extensions))
            .finish()
    }
}

impl Config {
    /// A registered top-level table, if the config has it.
    pub fn extension<T: 'static>(&self, name: &str) -> Option<&T> {
        self.extensions.get(name)?.0.downcast_ref::<T>()
    }

    /// The rendering of an extension table, to compare across reloads.
    pub fn extension_fingerprint(&self, name: &str) -> Option<&str> {
        self.extensions.get(name).map(|(_, f)| f.as_str())
    }

    /// The state folder of a component.
    pub fn state_dir(&self, id: &str) -> PathBuf {
        self.data_dir.join(id)
    }
}

/// Where to read the configuration from.
#[derive(Debug, Clone, Default)]
pub struct ConfigPaths {
    /// Files given with `-c`.
    pub files: Vec<PathBuf>,
    /// Folders given with `--config-dir`: every `*.toml` in them, by name.
    pub dirs: Vec<PathBuf>,
}

impl ConfigPaths {
    /// The files to read, folders expanded.
    pub fn expand(&self) -> Result<Vec<PathBuf>, ConfigErrors> {
        let mut files = self.files.clone();
        let mut errors = Vec::new();
        for dir in &self.dirs {
            match std::fs::read_dir(dir) {
                Ok(entries) => {
                    let mut found: Vec<PathBuf> = entries
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| p.extension().is_some_and(|e| e == "toml") && p.is_file())
                        .collect();
                    found.sort();
                    if found.is_empty() {
                        errors.push(ConfigError::new(format!(
                            "config folder `{}` holds no .toml file",
                            dir.display()
                        )));
                    }
                    files.extend(found);
                }
                Err(e) => errors.push(ConfigError::new(format!(
                    "cannot read config folder `{}`: {e}",
                    dir.display()
                ))),
            }
        }
        if errors.is_empty() {
            Ok(files)
        } else {
            Err(ConfigErrors(errors))
        }
    }
}

/// Reads, parses and checks the configuration at `paths`.
pub fn load(paths: &ConfigPaths, registry: &Registry) -> Result<Config, ConfigErrors> {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for path in paths.expand()? {
        match std::fs::read_to_string(&path) {
            Ok(text) => files.push(SourceFile::new(&path, text)),
            Err(e) => errors.push(ConfigError::new(format!(
                "cannot read config file `{}`: {e}",
                path.display()
            ))),
        }
    }
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    load_files(&files, registry, &|name| std::env::var(name).ok())
}

const TOP_LEVEL_KEYS: &[&str] = &[
    "data_dir",
    "api",
    "shutdown_timeout",
    "sources",
    "transforms",
    "sinks",
];

#[derive(Default)]
struct Globals {
    data_dir: Option<PathBuf>,
    api: Option<ApiConfig>,
    shutdown_timeout: Option<Duration>,
    seen: BTreeMap<&'static str, PathBuf>,
}

/// Parses and checks already-read files; `env` resolves `${VAR}`.
pub fn load_files(
    files: &[SourceFile],
    registry: &Registry,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let mut errors = Vec::new();
    let mut globals = Globals::default();
    let mut components: BTreeMap<String, Component> = BTreeMap::new();
    let mut declared: BTreeMap<String, (usize, Range<usize>, ComponentKind)> = BTreeMap::new();
    let mut input_spans: BTreeMap<String, (usize, InputSpans)> = BTreeMap::new();
    let mut extensions: BTreeMap<String, (ExtensionConfig, String)> = BTreeMap::new();

    if files.is_empty() {
        errors.push(
            ConfigError::new("no configuration file given")
                .hint("pass `-c pipeline.toml` (several `-c` are merged) or `--config-dir DIR`"),
        );
    }

    for (file_index, file) in files.iter().enumerate() {
        let mut root = match DeTable::parse(&file.text) {
            Ok(root) => root.into_inner(),
            Err(e) => {
                let span = e.span().unwrap_or(0..0);
                errors.push(
                    ConfigError::new(format!("invalid TOML: {}", e.message().trim()))
                        .at(file, span),
                );
                continue;
            }
        };
        for (_, value) in root.iter_mut() {
            interpolate_value(value, file, env, &mut errors);
        }
        for (key, value) in root.iter() {
            let name: &str = key.get_ref();
            match name {
                "sources" | "transforms" | "sinks" => {
                    let kind = match name {
                        "sources" => ComponentKind::Source,
                        "transforms" => ComponentKind::Transform,
                        _ => ComponentKind::Sink,
                    };
                    let Some(table) = value.get_ref().as_table() else {
                        errors.push(
                            ConfigError::new(format!("`{name}` must be a table"))
                                .at(file, value.span())
                                .hint(format!("write `[{name}.my_id]` sections")),
                        );
                        continue;
                    };
                    for (id, body) in table.iter() {
                        let id: &str = id.get_ref();
                        let where_ = format!("{name}.{id}");
                        if let Some((other_file, other_span, _)) = declared.get(id) {
                            let (line, column) = files[*other_file].line_column(other_span.start);
                            errors.push(
                                ConfigError::new(format!("component id `{id}` is used twice"))
                                    .at(file, body.span())
                                    .component(where_)
                                    .hint(format!(
                                        "ids are unique across sources, transforms and sinks; the other is at {}:{line}:{column}",
                                        files[*other_file].path.display()
                                    )),
                            );
                            continue;
                        }
                        declared.insert(id.to_string(), (file_index, body.span(), kind));
                        match parse_component(file, registry, kind, id, body, &mut errors) {
                            Some((component, spans)) => {
                                input_spans.insert(id.to_string(), (file_index, spans));
                                components.insert(id.to_string(), component);
                            }
                            None => continue,
                        }
                    }
                }
                "data_dir" | "api" | "shutdown_timeout" => {
                    let key_name = TOP_LEVEL_KEYS
                        .iter()
                        .find(|k| **k == name)
                        .copied()
                        .unwrap_or("data_dir");
                    if let Some(other) = globals.seen.get(key_name) {
                        errors.push(
                            ConfigError::new(format!("`{name}` is set in more than one file"))
                                .at(file, key.span())
                                .key(name)
                                .hint(format!("it is also set in {}", other.display())),
                        );
                        continue;
                    }
                    globals.seen.insert(key_name, file.path.clone());
                    parse_global(file, name, value, &mut globals, &mut errors);
                }
                other => match registry.get_extension(other) {
                    Some(extension) => {
                        if extensions.contains_key(other) {
                            errors.push(
                                ConfigError::new(format!(
                                    "`[{other}]` is set in more than one file"
                                ))
                                .at(file, key.span())
                                .key(other),
                            );
                            continue;
                        }
                        match extension.parse(ValueDeserializer::from(value.clone())) {
                            Ok(parsed) => {
                                let rendered = serde_json::to_string(&to_json(value.get_ref()))
                                    .unwrap_or_default();
                                extensions.insert(other.to_string(), (parsed, rendered));
                            }
                            Err(e) => {
                                errors.push(deserialize_error(file, value, e, Some(other), ""))
                            }
                        }
                    }
                    None => {
                        let mut valid: Vec<&str> = TOP_LEVEL_KEYS.to_vec();
                        valid.extend(registry.extension_names());
                        errors.push(
                            ConfigError::new(format!("unknown top-level key `{other}`"))
                                .at(file, key.span())
                                .key(other)
                                .hint(suggest(other, &valid, "valid top-level keys")),
                        )
                    }
                },
            }
        }
    }

    let data_dir = globals.data_dir.unwrap_or_else(|| PathBuf::from("./data"));
    let mut warnings = Vec::new();
    graph::check(
        files,
        &components,
        &declared,
        &input_spans,
        &mut errors,
        &mut warnings,
    );

    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    // The state folder belongs to every component: a new data_dir means a new component.
    for component in components.values_mut() {
        component.fingerprint = format!("{}|{}", data_dir.display(), component.fingerprint);
    }
    Ok(Config {
        data_dir,
        api: globals.api.filter(|a| a.enabled),
        shutdown_timeout: globals.shutdown_timeout.unwrap_or(Duration::from_secs(30)),
        components,
        warnings,
        extensions,
    })
}

fn parse_global(
    file: &SourceFile,
    name: &str,
    value: &Spanned<DeValue<'_>>,
    globals: &mut Globals,
    errors: &mut Vec<ConfigError>,
) {
    let span = value.span();
    match name {
        "data_dir" => match value.get_ref().as_str() {
            Some(dir) => match checks::path(dir) {
                Ok(()) => globals.data_dir = Some(PathBuf::from(dir)),
                Err(problem) => errors.push(
                    ConfigError::new(problem)
                        .at(file, span)
                        .key("data_dir")
                        .hint("a folder path such as \"./data\" or \"/var/lib/siemflow\""),
                ),
            },
            None => errors.push(
                ConfigError::new("`data_dir` must be a string (a folder path)")
                    .at(file, span)
                    .key("data_dir"),
            ),
        },
        "shutdown_timeout" => match value.get_ref().as_str().map(crate::units::parse_duration) {
            Some(Ok(d)) => globals.shutdown_timeout = Some(d),
            Some(Err(e)) => errors.push(ConfigError::new(e).at(file, span).key("shutdown_timeout")),
            None => errors.push(
                ConfigError::new("`shutdown_timeout` must be a string such as \"30s\"")
                    .at(file, span)
                    .key("shutdown_timeout"),
            ),
        },
        _ => match serde_path_to_error::deserialize::<_, ApiConfig>(ValueDeserializer::from(
            value.clone(),
        )) {
            Ok(api) => match checks::listen_address(&api.address) {
                Ok(()) => globals.api = Some(api),
                Err(problem) => errors.push(
                    ConfigError::new(problem)
                        .at(file, locate(value, "address").unwrap_or(span))
                        .key("api.address")
                        .hint(
                            "an address to listen on, e.g. \"127.0.0.1:8686\" or \"0.0.0.0:8686\"",
                        ),
                ),
            },
            Err(e) => errors.push(deserialize_error(file, value, e, None, "api")),
        },
    }
}

/// Parses one `[kind.id]` table; returns the component and the spans of its inputs.
fn parse_component(
    file: &SourceFile,
    registry: &Registry,
    kind: ComponentKind,
    id: &str,
    body: &Spanned<DeValue<'_>>,
    errors: &mut Vec<ConfigError>,
) -> Option<(Component, InputSpans)> {
    let where_ = format!("{}.{id}", kind.table());
    let err = |message: String, span: Range<usize>| {
        ConfigError::new(message)
            .at(file, span)
            .component(where_.clone())
    };
    if id.is_empty()
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        errors.push(
            err(format!("invalid component id `{id}`"), body.span()).hint(
                "ids use letters, digits, `_` and `-`; a dot separates an id from an output name",
            ),
        );
        return None;
    }
    let Some(table) = body.get_ref().as_table() else {
        errors.push(
            err(format!("`{where_}` must be a table"), body.span())
                .hint(format!("write `[{where_}]` followed by `type = \"...\"`")),
        );
        return None;
    };
    let known = registry.names(kind);
    let type_name = match table.get("type") {
        Some(t) => match t.get_ref().as_str() {
            Some(name) => name.to_string(),
            None => {
                errors.push(err("`type` must be a string".into(), t.span()).key("type"));
                return None;
            }
        },
        None => {
            errors.push(err("missing `type`".into(), body.span()).hint(format!(
                "known {} types: {}",
                kind,
                known.join(", ")
            )));
            return None;
        }
    };
    let Some(plugin) = registry.get(kind, &type_name) else {
        let span = table.get("type").map_or(body.span(), |t| t.span());
        errors.push(
            err(format!("unknown {kind} type `{type_name}`"), span)
                .key("type")
                .hint(suggest(&type_name, &known, &format!("known {kind} types"))),
        );
        return None;
    };

    let mut inputs = Vec::new();
    let mut input_spans = Vec::new();
    let mut ok = true;
    match (kind, table.get("inputs")) {
        (ComponentKind::Source, Some(v)) => {
            errors.push(
                err("sources take no `inputs`".into(), v.span())
                    .key("inputs")
                    .hint("only transforms and sinks have inputs"),
            );
            ok = false;
        }
        (ComponentKind::Source, None) => {}
        (_, None) => {
            errors.push(
                err(format!("missing `inputs` for {kind} `{id}`"), body.span())
                    .key("inputs")
                    .hint("add e.g. `inputs = [\"my_source\"]`"),
            );
            ok = false;
        }
        (_, Some(v)) => match v.get_ref().as_array() {
            Some(items) if !items.is_empty() => {
                for item in items.iter() {
                    match item.get_ref().as_str() {
                        Some(s) => {
                            let input = match s.split_once('.') {
                                Some((c, o)) => InputRef {
                                    component: c.to_string(),
                                    output: Some(o.to_string()),
                                },
                                None => InputRef {
                                    component: s.to_string(),
                                    output: None,
                                },
                            };
                            input_spans.push((s.to_string(), item.span()));
                            inputs.push(input);
                        }
                        None => {
                            errors.push(
                                err("each input must be a string".into(), item.span())
                                    .key("inputs"),
                            );
                            ok = false;
                        }
                    }
                }
            }
            _ => {
                errors.push(
                    err(
                        "`inputs` must be a non-empty list of component ids".into(),
                        v.span(),
                    )
                    .key("inputs")
                    .hint("e.g. `inputs = [\"my_source\", \"my_route.errors\"]`"),
                );
                ok = false;
            }
        },
    }

    let mut buffer = BufferConfig::default();
    if let Some(v) = table.get("buffer") {
        if kind == ComponentKind::Sink {
            match serde_path_to_error::deserialize::<_, BufferConfig>(ValueDeserializer::from(
                v.clone(),
            )) {
                Ok(b) => buffer = b,
                Err(e) => {
                    errors.push(deserialize_error(file, v, e, Some(&where_), "buffer"));
                    ok = false;
                }
            }
        } else {
            errors.push(
                err(format!("{kind}s have no `buffer`"), v.span())
                    .key("buffer")
                    .hint("only sinks have a buffer"),
            );
            ok = false;
        }
    }

    let mut options = DeTable::new();
    for (k, v) in table.iter() {
        if !matches!(k.get_ref().as_ref(), "type" | "inputs" | "buffer") {
            options.insert(k.clone(), v.clone());
        }
    }
    let options = Spanned::new(body.span(), DeValue::Table(options));
    let parsed = match plugin.parse(ValueDeserializer::from(options.clone())) {
        Ok(parsed) => parsed,
        Err(e) => {
            errors.push(deserialize_error(file, &options, e, Some(&where_), ""));
            return None;
        }
    };
    for issue in parsed.check() {
        let key = issue.key.clone().unwrap_or_default();
        let span = locate(body, &key).unwrap_or(body.span());
        errors.push(err(issue.message, span).key(key).maybe_hint(issue.hint));
        ok = false;
    }
    if !ok {
        return None;
    }
    let fingerprint = serde_json::to_string(&to_json(body.get_ref())).unwrap_or_default();
    Some((
        Component {
            id: id.to_string(),
            kind,
            type_name,
            inputs,
            buffer,
            plugin: parsed,
            fingerprint,
        },
        input_spans,
    ))
}

/// Turns a serde failure into an error at the key it concerns.
fn deserialize_error(
    file: &SourceFile,
    root: &Spanned<DeValue<'_>>,
    error: serde_path_to_error::Error<toml::de::Error>,
    component: Option<&str>,
    prefix: &str,
) -> ConfigError {
    let path = error.path().to_string();
    let inner = error.into_inner();
    let message = inner.message().trim().to_string();
    let mut key = path.trim_start_matches('.').to_string();
    let (message, hint) = explain(&message, &mut key);
    let span = inner
        .span()
        .filter(|s| s != &root.span())
        .or_else(|| locate(root, &key))
        .unwrap_or(root.span());
    let key = match (prefix.is_empty(), key.is_empty()) {
        (true, _) => key,
        (false, true) => prefix.to_string(),
        (false, false) => format!("{prefix}.{key}"),
    };
    let mut error = ConfigError::new(message)
        .at(file, span)
        .key(key)
        .maybe_hint(hint);
    if let Some(c) = component {
        error = error.component(c);
    }
    error
}

/// Rewrites serde's wording into a message and a hint naming the valid choices.
fn explain(message: &str, key: &mut String) -> (String, Option<String>) {
    let quoted = |s: &str| -> Vec<String> {
        s.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    if let Some(rest) = message.strip_prefix("unknown field ") {
        let names = quoted(rest);
        if let Some((bad, valid)) = names.split_first() {
            let unknown = bad.clone();
            if key.is_empty() || key == "?" {
                *key = unknown.clone();
            } else if !key.ends_with(&unknown) {
                *key = format!("{key}.{unknown}");
            }
            let valid: Vec<&str> = valid.iter().map(String::as_str).collect();
            return (
                format!("unknown key `{unknown}`"),
                Some(suggest(&unknown, &valid, "valid keys")),
            );
        }
    }
    if let Some(rest) = message.strip_prefix("unknown variant ") {
        let names = quoted(rest);
        if let Some((bad, valid)) = names.split_first() {
            let valid: Vec<&str> = valid.iter().map(String::as_str).collect();
            return (
                format!("unknown value `{bad}`"),
                Some(suggest(bad, &valid, "valid values")),
            );
        }
    }
    if let Some(rest) = message.strip_prefix("missing field ") {
        let names = quoted(rest);
        if let Some(name) = names.first() {
            if key.is_empty() {
                *key = name.clone();
            } else {
                *key = format!("{key}.{name}");
            }
            return (format!("missing required key `{name}`"), None);
        }
    }
    (message.to_string(), None)
}

/// The span of the value at a dotted path (`a.b[2].c`) inside a spanned tree.
fn locate(root: &Spanned<DeValue<'_>>, path: &str) -> Option<Range<usize>> {
    let mut current = root;
    let mut found = None;
    for segment in path.split('.').filter(|s| !s.is_empty()) {
        let (name, indexes) = match segment.find('[') {
            Some(i) => (&segment[..i], &segment[i..]),
            None => (segment, ""),
        };
        if !name.is_empty() {
            let table = current.get_ref().as_table()?;
            let (key, value) = table.get_key_value(name)?;
            found = Some(key.span().start..value.span().end);
            current = value;
        }
        for index in indexes.split('[').filter_map(|s| s.strip_suffix(']')) {
            let i: usize = index.parse().ok()?;
            current = current.get_ref().as_array()?.get(i)?;
            found = Some(current.span());
        }
    }
    found
}

fn interpolate_value(
    value: &mut Spanned<DeValue<'_>>,
    file: &SourceFile,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<ConfigError>,
) {
    let span = value.span();
    match value.get_mut() {
        DeValue::String(s) if s.contains('$') => match interpolate(s, env) {
            Ok(expanded) => *s = expanded.into(),
            Err((message, hint)) => {
                errors.push(ConfigError::new(message).at(file, span).maybe_hint(hint))
            }
        },
        DeValue::Array(items) => {
            for item in items.iter_mut() {
                interpolate_value(item, file, env, errors);
            }
        }
        DeValue::Table(table) => {
            for (_, item) in table.iter_mut() {
                interpolate_value(item, file, env, errors);
            }
        }
        _ => {}
    }
}

fn to_json(value: &DeValue<'_>) -> serde_json::Value {
    match value {
        DeValue::String(s) => serde_json::Value::String(s.to_string()),
        DeValue::Integer(i) => serde_json::Value::String(format!("int:{}", i.as_str())),
        DeValue::Float(f) => serde_json::Value::String(format!("float:{}", f.as_str())),
        DeValue::Boolean(b) => serde_json::Value::Bool(*b),
        DeValue::Datetime(d) => serde_json::Value::String(d.to_string()),
        DeValue::Array(items) => items.iter().map(|i| to_json(i.get_ref())).collect(),
        DeValue::Table(table) => serde_json::Value::Object(
            table
                .iter()
                .map(|(k, v)| (k.get_ref().to_string(), to_json(v.get_ref())))
                .collect(),
        ),
    }
}

/// Reads a single TOML file from disk for tests and tools.
pub fn read_file(path: &Path) -> std::io::Result<SourceFile> {
    Ok(SourceFile::new(path, std::fs::read_to_string(path)?))
}
