//! Vector-compatible conditions: a VRL expression that decides whether an event matches.

use std::fmt;

use schemars::JsonSchema;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use siemflow_core::ConfigIssue;
use siemflow_core::plugin::ComponentContext;
use vrl::value::Value;

use crate::error_log::RateLimitedLog;
use crate::vrl_program::{self, Access, VrlRunner};

/// A condition: a VRL expression string, or Vector's long form `{ type = "vrl", source = "…" }`.
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[schemars(untagged)]
pub enum ConditionConfig {
    /// A VRL expression resolving to a boolean, e.g. `.Workload == "Exchange"`.
    Source(String),
    /// Vector's table form.
    Typed(TypedCondition),
}

/// Vector's table form of a condition.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TypedCondition {
    /// The condition language. Only `vrl` is supported.
    #[serde(rename = "type")]
    pub kind: ConditionKind,
    /// The VRL expression. Required.
    pub source: String,
}

/// The languages a condition can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConditionKind {
    /// Vector Remap Language.
    Vrl,
}

impl<'de> Deserialize<'de> for ConditionConfig {
    // Hand-written so a bad table reports its real fault (unknown `type`, missing
    // `source`) instead of serde's "did not match any variant".
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ConditionVisitor;

        impl<'de> Visitor<'de> for ConditionVisitor {
            type Value = ConditionConfig;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a VRL expression string or a table `{ type = \"vrl\", source = \"…\" }`",
                )
            }

            fn visit_str<E: de::Error>(self, source: &str) -> Result<Self::Value, E> {
                Ok(ConditionConfig::Source(source.to_string()))
            }

            fn visit_string<E: de::Error>(self, source: String) -> Result<Self::Value, E> {
                Ok(ConditionConfig::Source(source))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                TypedCondition::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(ConditionConfig::Typed)
            }
        }

        deserializer.deserialize_any(ConditionVisitor)
    }
}

impl ConditionConfig {
    /// The VRL source of the condition.
    pub fn source(&self) -> &str {
        match self {
            ConditionConfig::Source(source) => source,
            ConditionConfig::Typed(typed) => &typed.source,
        }
    }

    /// Compiles the condition; the issue names `key`, the option holding it.
    pub fn compile(&self, key: &str) -> Result<Condition, ConfigIssue> {
        let source = self.source();
        let compiled =
            vrl_program::compile(source, key, Access::ReadOnly).map_err(|diagnostics| {
                ConfigIssue::new(
                    key,
                    format!("the VRL condition does not compile:\n{diagnostics}"),
                )
            })?;
        let result = compiled.program.final_type_info().result;
        if !result.kind().contains_boolean() {
            return Err(ConfigIssue::new(
                key,
                format!(
                    "the VRL condition `{source}` resolves to {}, never to a boolean",
                    result.kind()
                ),
            )
            .hint("write an expression that yields true or false, e.g. `.RecordType == 15`"));
        }
        if !compiled.warnings.is_empty() {
            tracing::warn!(option = key, warnings = %compiled.warnings, "VRL condition compiled with warnings");
        }
        Ok(Condition {
            runner: VrlRunner::new(compiled.program, vrl_program::utc()),
        })
    }
}

/// A compiled condition, ready to test events.
pub struct Condition {
    runner: VrlRunner,
}

impl Condition {
    /// True when the event matches; an error says why the condition could not decide.
    pub fn matches(&mut self, value: &mut Value) -> Result<bool, String> {
        match self.runner.run(value) {
            Ok(Value::Boolean(matched)) => Ok(matched),
            Ok(other) => Err(format!(
                "the condition resolved to {}, not a boolean",
                other.kind_str()
            )),
            Err(terminate) => Err(vrl_program::failure_message(&terminate)),
        }
    }
}

/// Counts and logs (rate-limited) the events a condition could not decide on.
pub struct ConditionErrors {
    component_id: String,
    counter: metrics::Counter,
    log: RateLimitedLog,
}

impl ConditionErrors {
    /// Error accounting for one component.
    pub fn new(component: &ComponentContext) -> Self {
        ConditionErrors {
            component_id: component.id.clone(),
            // Vector's error type for a VRL condition that failed at runtime.
            counter: component.metrics.labels.counter(
                "component_errors_total",
                &[("error_type", "script_failed"), ("stage", "processing")],
            ),
            log: RateLimitedLog::default(),
        }
    }

    /// Records one event whose condition failed; the event then counts as not matching.
    pub fn record(&mut self, condition: &str, message: &str) {
        self.counter.increment(1);
        if let Some(suppressed) = self.log.admit() {
            tracing::warn!(
                component_id = %self.component_id,
                condition,
                error = message,
                suppressed,
                "VRL condition failed; the event is treated as not matching"
            );
        }
    }
}
