//! Options of the `filter` transform.

use schemars::JsonSchema;
use serde::Deserialize;
use siemflow_core::{ConfigIssue, Transform, TransformConfig, TransformContext};

use super::Filter;
use crate::condition::{ConditionConfig, ConditionErrors};

/// Keeps the events that match a condition; the others are dropped and settled as delivered.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// The condition an event must meet to be kept: a VRL expression such as
    /// `.Workload == "Exchange"`, or Vector's `{ type = "vrl", source = "…" }`.
    /// Required (no default). An event for which the condition fails at runtime or does
    /// not yield a boolean is dropped like a non-matching one, and counted as an error.
    pub condition: ConditionConfig,
}

impl TransformConfig for FilterConfig {
    fn check(&self) -> Vec<ConfigIssue> {
        self.condition
            .compile("condition")
            .err()
            .into_iter()
            .collect()
    }

    fn build(&self, cx: &TransformContext) -> anyhow::Result<Box<dyn Transform>> {
        let condition = self
            .condition
            .compile("condition")
            .map_err(|issue| anyhow::anyhow!("option `condition`: {}", issue.message))?;
        Ok(Box::new(Filter {
            condition,
            errors: ConditionErrors::new(&cx.component),
            labels: cx.component.metrics.labels.clone(),
        }))
    }
}
