//! Property tests of the config loader with every standard plugin: TOML-ish text and
//! arbitrary values in the keys the plugins know must never panic, and every error must
//! say where it is (file, line, column), as `siemflow validate` promises.

use std::sync::OnceLock;

use proptest::prelude::*;
use siemflow::standard_registry;
use siemflow_core::Registry;
use siemflow_core::config::{ConfigErrors, SourceFile, load_files};
use siemflow_core::metrics::ComponentKind;

const FILE: &str = "props.toml";

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(standard_registry)
}

/// `${SET}` resolves; every other variable is unset.
fn env(name: &str) -> Option<String> {
    (name == "SET").then(|| "from-env".to_string())
}

/// Loads `text` as the one config file; panics (the property fails) on a panic inside.
fn load(text: &str) -> Result<(), ConfigErrors> {
    load_files(&[SourceFile::new(FILE, text)], registry(), &env).map(|_| ())
}

/// Every error names the file and a line and column inside it.
fn assert_located(text: &str, errors: &ConfigErrors) -> Result<(), TestCaseError> {
    let lines = text.split('\n').count();
    for error in &errors.0 {
        prop_assert!(
            error.file.as_deref() == Some(std::path::Path::new(FILE))
                && (1..=lines).contains(&error.line)
                && error.column >= 1,
            "error without a place in the file: {error:?}\n--- config:\n{text}"
        );
    }
    Ok(())
}

/// A plugin's options, from its schema: each name with its schema, and which are required.
fn options(kind: ComponentKind, name: &str) -> (Vec<(String, serde_json::Value)>, Vec<String>) {
    let Some(plugin) = registry().get(kind, name) else {
        return Default::default();
    };
    let schema = serde_json::to_value((plugin.schema)()).unwrap_or_default();
    let properties = schema
        .get("properties")
        .and_then(|p| p.as_object())
        .map(|p| p.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let required = schema
        .get("required")
        .and_then(|r| r.as_array())
        .map(|r| {
            r.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    (properties, required)
}

/// Random material for one option value of the type its schema asks for.
#[derive(Debug, Clone)]
struct Pick {
    text: String,
    number: i64,
    flag: bool,
    index: prop::sample::Index,
}

fn pick() -> impl Strategy<Value = Pick> {
    (
        prop_oneof![
            3 => "(\\$\\{[A-Z]{0,4}(:-[a-z0-9]{0,3})?\\}?|-?[0-9]{1,12}(ns|ms|s|m|h|d|B|KB|KiB|MiB|GiB|EiB)?|[0-9]{1,3}(\\.[0-9]{1,3}){3}(:[0-9]{1,6})?|\\[::1?\\](:[0-9]{0,6})?|(https?|tcp|udp|file)://[a-z.]{0,8}(:[0-9]{0,6})?(/[a-z{}%]{0,6})?|\\.[A-Za-z]{1,6}(\\.[a-z]{1,3})?|/[a-z]{0,5}|[a-z]{1,6}(:[0-9]{1,6})?|%[A-Za-z]|\\{\\{ ?\\.[a-z]* ?\\}?\\}?)",
            1 => any::<String>(),
        ],
        prop_oneof![
            Just(0i64),
            Just(-1),
            Just(1),
            Just(i64::MAX),
            Just(i64::MIN),
            Just(i64::from(u32::MAX) + 1),
            0..100_000i64,
            any::<i64>(),
        ],
        any::<bool>(),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(text, number, flag, index)| Pick {
            text,
            number,
            flag,
            index,
        })
}

/// A value of the type `property`'s schema names (or its default has), if it names one.
fn typed_value(property: &serde_json::Value, pick: &Pick) -> Option<toml::Value> {
    if let Some(values) = property.get("enum").and_then(|e| e.as_array())
        && !values.is_empty()
    {
        return json_to_toml(pick.index.get(values));
    }
    let kind = match property.get("type") {
        Some(serde_json::Value::String(kind)) => kind.as_str(),
        Some(serde_json::Value::Array(kinds)) => kinds
            .iter()
            .filter_map(|k| k.as_str())
            .find(|k| *k != "null")
            .unwrap_or("null"),
        _ => match property.get("default") {
            Some(serde_json::Value::String(_)) => "string",
            Some(serde_json::Value::Number(_)) => "integer",
            Some(serde_json::Value::Bool(_)) => "boolean",
            Some(serde_json::Value::Array(_)) => "array",
            _ => return None,
        },
    };
    Some(match kind {
        "string" => toml::Value::String(pick.text.clone()),
        "integer" => toml::Value::Integer(pick.number),
        "number" => toml::Value::Float(pick.number as f64 / 7.0),
        "boolean" => toml::Value::Boolean(pick.flag),
        "array" => toml::Value::Array(vec![toml::Value::String(pick.text.clone())]),
        _ => return None,
    })
}

fn json_to_toml(value: &serde_json::Value) -> Option<toml::Value> {
    Some(match value {
        serde_json::Value::String(s) => toml::Value::String(s.clone()),
        serde_json::Value::Bool(b) => toml::Value::Boolean(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => toml::Value::Integer(i),
            None => toml::Value::Float(n.as_f64()?),
        },
        _ => return None,
    })
}

/// Pieces of config a person (or a fuzzer) might write, valid and not.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("[sources.a]".to_string()),
        Just("[transforms.b]".to_string()),
        Just("[sinks.c]".to_string()),
        Just("[api]".to_string()),
        Just("[[sinks]]".to_string()),
        Just("[sources.a.buffer]".to_string()),
        Just("type = \"file\"".to_string()),
        Just("type = \"remap\"".to_string()),
        Just("type = \"console\"".to_string()),
        Just("type = \"syslog\"".to_string()),
        Just("include = [\"in/*.log\"]".to_string()),
        Just("inputs = [\"a\"]".to_string()),
        Just("inputs = [\"b\", \"a.x\", \"\"]".to_string()),
        Just("source = '''\n.x = 1\n'''".to_string()),
        Just("data_dir = \"${SET}/d\"".to_string()),
        Just("shutdown_timeout = \"${UNSET:-5s}\"".to_string()),
        Just("address = \"${\"".to_string()),
        Just("buffer = { type = \"disk\", max_size = \"1KiB\" }".to_string()),
        "[a-z_.]{1,12} = (\"[^\"\\\\\\n]{0,12}\"|-?[0-9]{1,20}|true|\\[\\]|\\{\\}|[0-9.e+-]{1,8})",
        "[ -~]{0,30}",
        any::<String>(),
    ]
}

/// A TOML value of any type, nested a little.
fn toml_value() -> impl Strategy<Value = toml::Value> {
    let leaf = prop_oneof![
        any::<String>().prop_map(toml::Value::String),
        "(\\$\\{[A-Z]{0,4}(:-[a-z]{0,3})?\\}?|[0-9]{1,4}(ms|s|m|h|KiB|MiB|GiB)?|-?1|0|\\.[A-Za-z]{1,4}|/[a-z]{1,5}|[a-z]{1,3}:[0-9]{1,6})"
            .prop_map(toml::Value::String),
        any::<i64>().prop_map(toml::Value::Integer),
        any::<f64>()
            .prop_filter("TOML has no NaN literal in this writer", |f| !f.is_nan())
            .prop_map(toml::Value::Float),
        any::<bool>().prop_map(toml::Value::Boolean),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(toml::Value::Array),
            proptest::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| toml::Value::Table(m.into_iter().collect())),
        ]
    })
}

/// A pipeline: real plugin types with their required keys and some others, values of
/// the right type (likely-looking or odd) or of any type.
fn structured_config() -> impl Strategy<Value = String> {
    let plugins: Vec<(ComponentKind, &'static str)> =
        registry().iter().map(|p| (p.kind, p.name)).collect();
    let component = (
        proptest::sample::select(plugins),
        proptest::collection::vec(pick(), 4),
        proptest::collection::vec(
            (
                any::<prop::sample::Index>(),
                any::<bool>(),
                pick(),
                toml_value(),
            ),
            0..4,
        ),
        proptest::option::weighted(
            0.9,
            proptest::collection::vec(
                prop_oneof![4 => Just("c0"), 4 => Just("c1"), 1 => Just("c9"), 1 => Just("c0.x")],
                0..3,
            ),
        ),
    );
    (
        proptest::collection::vec(component, 1..4),
        proptest::collection::vec(
            (
                prop_oneof![
                    Just("data_dir"),
                    Just("shutdown_timeout"),
                    Just("api"),
                    Just("unknown")
                ],
                toml_value(),
            ),
            0..3,
        ),
    )
        .prop_map(|(components, globals)| {
            let mut root = toml::Table::new();
            for (key, value) in globals {
                root.insert(key.to_string(), value);
            }
            for (i, ((kind, type_name), required_picks, extra, inputs)) in
                components.into_iter().enumerate()
            {
                let mut body = toml::Table::new();
                body.insert("type".into(), toml::Value::String(type_name.to_string()));
                let (properties, required) = options(kind, type_name);
                let schema_of = |name: &str| {
                    properties
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, s)| s.clone())
                        .unwrap_or_default()
                };
                for (name, pick) in required.iter().zip(required_picks.iter().cycle()) {
                    if let Some(value) = typed_value(&schema_of(name), pick) {
                        body.insert(name.clone(), value);
                    }
                }
                for (index, typed, pick, any_value) in extra {
                    if properties.is_empty() {
                        break;
                    }
                    let (name, schema) = &properties[index.index(properties.len())];
                    let value = if typed {
                        typed_value(schema, &pick).unwrap_or(any_value)
                    } else {
                        any_value
                    };
                    body.insert(name.clone(), value);
                }
                if let Some(inputs) = inputs
                    && kind != ComponentKind::Source
                {
                    body.insert(
                        "inputs".into(),
                        toml::Value::Array(
                            inputs
                                .into_iter()
                                .map(|i| toml::Value::String(i.to_string()))
                                .collect(),
                        ),
                    );
                }
                let table = root
                    .entry(kind.table())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                if let toml::Value::Table(table) = table {
                    table.insert(format!("c{i}"), toml::Value::Table(body));
                }
            }
            toml::to_string(&root).unwrap_or_default()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Text made of config-like lines and noise: no panic, every error placed.
    #[test]
    fn toml_ish_text_never_panics_and_errors_are_located(
        fragments in proptest::collection::vec(fragment(), 0..12),
    ) {
        let text = fragments.join("\n");
        if let Err(errors) = load(&text) {
            assert_located(&text, &errors)?;
        }
    }

    /// Real plugins and keys with values of any type: no panic, every error placed.
    #[test]
    fn any_value_in_a_known_key_never_panics_and_errors_are_located(
        text in structured_config(),
    ) {
        if let Err(errors) = load(&text) {
            assert_located(&text, &errors)?;
        }
    }
}
