//! A siemflow binary with one extra plugin: what docs/plugin-authoring.md describes.
//!
//! `cargo run --example custom_plugin -- list tag_tenant`

use serde::Deserialize;
use siemflow_core::{Batch, Transform, TransformConfig, TransformContext, TransformOutputs, Value};

/// Adds a tenant label to every event.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TagTenant {
    /// The label to add.
    pub tenant: String,
}

impl TransformConfig for TagTenant {
    fn build(&self, _cx: &TransformContext) -> anyhow::Result<Box<dyn Transform>> {
        Ok(Box::new(Tagger(self.tenant.clone())))
    }
}

struct Tagger(String);

impl Transform for Tagger {
    fn transform(&mut self, batch: Batch, out: &mut TransformOutputs) {
        for mut event in batch {
            if let Some(object) = event.value.as_object_mut() {
                object.insert("tenant".into(), Value::from(self.0.as_str()));
            }
            out.push(event);
        }
    }
}

fn main() -> std::process::ExitCode {
    let mut registry = siemflow::standard_registry();
    registry.transform::<TagTenant>("tag_tenant", "Adds a tenant label");
    siemflow::main_with(registry)
}
