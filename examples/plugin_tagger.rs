//! An external transform plugin in Rust: adds `tagged = true` (and `config.tag`, if set,
//! as `tag`) to every object event. The bench compares it with the same step compiled in.
//!
//! ```toml
//! [transforms.tag]
//! type = "plugin"
//! inputs = ["audit"]
//! command = "target/release/examples/plugin_tagger"
//! config = { tag = "m365" }
//! ```

use std::process::ExitCode;

// Events are many small allocations; mimalloc (as siemflow itself uses) makes a plugin
// that parses and builds them markedly cheaper than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use siemflow_core::Value;
use siemflow_core::external::sdk::{self, Emit, Options};

fn tag(mut event: Value, config: &Value) -> Result<Vec<Emit>, String> {
    let label = config.as_object().and_then(|c| c.get("tag")).cloned();
    match event.as_object_mut() {
        Some(fields) => {
            fields.insert("tagged".into(), Value::Boolean(true));
            if let Some(label) = label {
                fields.insert("tag".into(), label);
            }
            Ok(vec![Emit::default_output(event)])
        }
        None => Err("not an object".into()),
    }
}

fn main() -> ExitCode {
    let schema = serde_json::json!({
        "type": "object",
        "properties": {"tag": {"type": "string"}},
        "additionalProperties": false
    });
    sdk::serve_transform(Options::new("plugin_tagger").schema(schema).credit(4), tag)
}
