//! Options of the `route` transform.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use siemflow_core::{ConfigIssue, Transform, TransformConfig, TransformContext};

use super::{NamedRoute, Router, UNMATCHED};
use crate::condition::{ConditionConfig, ConditionErrors};

/// Sends each event to every route whose condition it matches.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The routes: `name = "condition"` (or `name = { type = "vrl", source = "…" }`).
    /// Each name becomes an output addressed `<id>.<name>`. Default: no routes (every
    /// event is unmatched).
    #[serde(default)]
    pub route: BTreeMap<String, ConditionConfig>,
    /// Send events that match no route to the `<id>._unmatched` output. When false they
    /// are dropped and settled as delivered. Default: `true`.
    #[serde(default = "default_reroute_unmatched")]
    pub reroute_unmatched: bool,
}

fn default_reroute_unmatched() -> bool {
    true
}

/// Why a route name cannot name an output, if it cannot.
fn invalid_name(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("a route name cannot be empty")
    } else if name.contains('.') {
        Some("a route name cannot contain `.`: outputs are addressed `<id>.<name>`")
    } else if name == UNMATCHED || name == "_default" {
        Some("this route name is reserved")
    } else {
        None
    }
}

impl RouteConfig {
    fn compile(&self) -> Result<Vec<NamedRoute>, Vec<ConfigIssue>> {
        let mut routes = Vec::new();
        let mut issues = Vec::new();
        for (name, condition) in &self.route {
            let key = format!("route.{name}");
            if let Some(problem) = invalid_name(name) {
                issues.push(
                    ConfigIssue::new(&key, format!("invalid route name `{name}`: {problem}"))
                        .hint("use letters, digits, `_` or `-`, e.g. `exchange`; `_unmatched` is reserved"),
                );
                continue;
            }
            match condition.compile(&key) {
                Ok(condition) => routes.push(NamedRoute {
                    name: name.clone(),
                    condition,
                }),
                Err(issue) => issues.push(issue),
            }
        }
        if issues.is_empty() {
            Ok(routes)
        } else {
            Err(issues)
        }
    }
}

impl TransformConfig for RouteConfig {
    fn has_default_output(&self) -> bool {
        false
    }

    fn outputs(&self) -> Vec<String> {
        let mut outputs: Vec<String> = self.route.keys().cloned().collect();
        if self.reroute_unmatched {
            outputs.push(UNMATCHED.to_string());
        }
        outputs
    }

    fn check(&self) -> Vec<ConfigIssue> {
        self.compile().err().unwrap_or_default()
    }

    fn build(&self, cx: &TransformContext) -> anyhow::Result<Box<dyn Transform>> {
        let routes = self.compile().map_err(|issues| {
            let details: Vec<String> = issues
                .iter()
                .map(|issue| {
                    format!(
                        "option `{}`: {}",
                        issue.key.as_deref().unwrap_or("route"),
                        issue.message
                    )
                })
                .collect();
            anyhow::anyhow!(details.join("\n"))
        })?;
        Ok(Box::new(Router {
            routes,
            reroute_unmatched: self.reroute_unmatched,
            matched: Vec::new(),
            errors: ConditionErrors::new(&cx.component),
            labels: cx.component.metrics.labels.clone(),
        }))
    }
}
