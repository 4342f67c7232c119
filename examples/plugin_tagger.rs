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
use siemflow_core::external::sdk::{self, Emit, Fields, Options};

// A fields transform: the event's fields are not parsed (the tagger reads none of them),
// and only the two it adds go back to siemflow.
fn tag(mut event: Fields, config: &Value) -> Result<Vec<Emit>, String> {
    event.insert("tagged", Value::Boolean(true));
    if let Some(label) = config.as_object().and_then(|c| c.get("tag")) {
        event.insert("tag", label.clone());
    }
    Ok(vec![Emit::default_output(event)])
}

fn main() -> ExitCode {
    let schema = serde_json::json!({
        "type": "object",
        "properties": {"tag": {"type": "string"}},
        "additionalProperties": false
    });
    sdk::serve_fields_transform(Options::new("plugin_tagger").schema(schema).credit(4), tag)
}
