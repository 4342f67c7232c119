//! Maps a plugin `type` string to its config parser, its option schema and its docs.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use toml::de::ValueDeserializer;

use crate::metrics::ComponentKind;
use crate::plugin::{SinkConfig, SourceConfig, TransformConfig};

/// A parsed, typed plugin configuration.
#[derive(Debug)]
pub enum PluginConfig {
    /// A source's config.
    Source(Box<dyn SourceConfig>),
    /// A transform's config.
    Transform(Box<dyn TransformConfig>),
    /// A sink's config.
    Sink(Box<dyn SinkConfig>),
}

impl PluginConfig {
    /// Named outputs beside the default one.
    pub fn outputs(&self) -> Vec<String> {
        match self {
            PluginConfig::Source(_) => Vec::new(),
            PluginConfig::Transform(t) => t.outputs(),
            PluginConfig::Sink(s) => s.outputs(),
        }
    }

    /// Whether the component emits on an unnamed output (`id`); sinks never do.
    pub fn has_default_output(&self) -> bool {
        match self {
            PluginConfig::Source(_) => true,
            PluginConfig::Transform(t) => t.has_default_output(),
            PluginConfig::Sink(_) => false,
        }
    }

    /// The options of an external plugin, if it is one.
    pub fn external(&self) -> Option<&crate::external::ExternalConfig> {
        match self {
            PluginConfig::Source(c) => c.external(),
            PluginConfig::Transform(c) => c.external(),
            PluginConfig::Sink(c) => c.external(),
        }
    }

    /// The plugin's own checks.
    pub fn check(&self) -> Vec<crate::plugin::ConfigIssue> {
        match self {
            PluginConfig::Source(c) => c.check(),
            PluginConfig::Transform(c) => c.check(),
            PluginConfig::Sink(c) => c.check(),
        }
    }
}

/// A deserialization failure with the path of the key at fault.
pub type ParseError = serde_path_to_error::Error<toml::de::Error>;

type ParseFn = for<'a> fn(ValueDeserializer<'a>) -> Result<PluginConfig, ParseError>;

/// One registered plugin.
pub struct Plugin {
    /// Source, transform or sink.
    pub kind: ComponentKind,
    /// The `type` string.
    pub name: &'static str,
    /// One line on what it does.
    pub description: &'static str,
    /// JSON schema of its options (for `siemflow list` and docs).
    pub schema: fn() -> schemars::Schema,
    parse: ParseFn,
}

impl Plugin {
    /// Parses this plugin's options.
    pub fn parse(&self, de: ValueDeserializer<'_>) -> Result<PluginConfig, ParseError> {
        (self.parse)(de)
    }
}

/// A parsed top-level extension table (e.g. `[simulator]`), for the binary to downcast.
pub type ExtensionConfig = Box<dyn std::any::Any + Send + Sync>;

type ExtensionParseFn = for<'a> fn(ValueDeserializer<'a>) -> Result<ExtensionConfig, ParseError>;

/// A top-level table the binary handles itself, outside the pipeline graph.
pub struct Extension {
    /// The table name.
    pub name: &'static str,
    /// One line on what it does.
    pub description: &'static str,
    parse: ExtensionParseFn,
}

impl Extension {
    /// Parses the table.
    pub fn parse(&self, de: ValueDeserializer<'_>) -> Result<ExtensionConfig, ParseError> {
        (self.parse)(de)
    }
}

fn parse_extension<T: DeserializeOwned + Send + Sync + 'static>(
    de: ValueDeserializer<'_>,
) -> Result<ExtensionConfig, ParseError> {
    serde_path_to_error::deserialize::<_, T>(de).map(|c| Box::new(c) as ExtensionConfig)
}

/// Every plugin this binary knows.
#[derive(Default)]
pub struct Registry {
    plugins: BTreeMap<(ComponentKind, &'static str), Plugin>,
    extensions: BTreeMap<&'static str, Extension>,
}

fn schema_of<T: schemars::JsonSchema>() -> schemars::Schema {
    schemars::SchemaGenerator::default().into_root_schema_for::<T>()
}

fn parse_source<T: SourceConfig + DeserializeOwned + 'static>(
    de: ValueDeserializer<'_>,
) -> Result<PluginConfig, ParseError> {
    serde_path_to_error::deserialize::<_, T>(de).map(|c| PluginConfig::Source(Box::new(c)))
}

fn parse_transform<T: TransformConfig + DeserializeOwned + 'static>(
    de: ValueDeserializer<'_>,
) -> Result<PluginConfig, ParseError> {
    serde_path_to_error::deserialize::<_, T>(de).map(|c| PluginConfig::Transform(Box::new(c)))
}

fn parse_sink<T: SinkConfig + DeserializeOwned + 'static>(
    de: ValueDeserializer<'_>,
) -> Result<PluginConfig, ParseError> {
    serde_path_to_error::deserialize::<_, T>(de).map(|c| PluginConfig::Sink(Box::new(c)))
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Registry::default()
    }

    fn add(&mut self, plugin: Plugin) {
        self.plugins.insert((plugin.kind, plugin.name), plugin);
    }

    /// Registers a source plugin under its `type` name.
    pub fn source<T>(&mut self, name: &'static str, description: &'static str)
    where
        T: SourceConfig + DeserializeOwned + schemars::JsonSchema + 'static,
    {
        self.add(Plugin {
            kind: ComponentKind::Source,
            name,
            description,
            schema: schema_of::<T>,
            parse: parse_source::<T>,
        });
    }

    /// Registers a transform plugin under its `type` name.
    pub fn transform<T>(&mut self, name: &'static str, description: &'static str)
    where
        T: TransformConfig + DeserializeOwned + schemars::JsonSchema + 'static,
    {
        self.add(Plugin {
            kind: ComponentKind::Transform,
            name,
            description,
            schema: schema_of::<T>,
            parse: parse_transform::<T>,
        });
    }

    /// Registers a sink plugin under its `type` name.
    pub fn sink<T>(&mut self, name: &'static str, description: &'static str)
    where
        T: SinkConfig + DeserializeOwned + schemars::JsonSchema + 'static,
    {
        self.add(Plugin {
            kind: ComponentKind::Sink,
            name,
            description,
            schema: schema_of::<T>,
            parse: parse_sink::<T>,
        });
    }

    /// Accepts a top-level table `[name]`, parsed into `T`; the binary reads it back with
    /// `Config::extension::<T>(name)`.
    pub fn extension<T>(&mut self, name: &'static str, description: &'static str)
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        self.extensions.insert(
            name,
            Extension {
                name,
                description,
                parse: parse_extension::<T>,
            },
        );
    }

    /// The extension table of this name, if registered.
    pub fn get_extension(&self, name: &str) -> Option<&Extension> {
        self.extensions.get(name)
    }

    /// The names of every extension table.
    pub fn extension_names(&self) -> Vec<&'static str> {
        self.extensions.keys().copied().collect()
    }

    /// The plugin of this kind and name.
    pub fn get(&self, kind: ComponentKind, name: &str) -> Option<&Plugin> {
        self.plugins
            .iter()
            .find(|((k, n), _)| *k == kind && *n == name)
            .map(|(_, p)| p)
    }

    /// The `type` names of one kind, sorted.
    pub fn names(&self, kind: ComponentKind) -> Vec<&'static str> {
        self.plugins
            .keys()
            .filter(|(k, _)| *k == kind)
            .map(|(_, n)| *n)
            .collect()
    }

    /// Every plugin, sources first.
    pub fn iter(&self) -> impl Iterator<Item = &Plugin> {
        self.plugins.values()
    }
}
