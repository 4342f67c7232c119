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
//!
//! By default it is a fields transform (`sdk::serve_fields_transform`): it parses none of
//! an event's fields and sends back only the two it adds. With `args = ["--values"]` it
//! takes each event whole as values (`sdk::serve_transform`), which the bench reports too.

use std::process::ExitCode;

// Events are many small allocations; mimalloc (as siemflow itself uses) makes a plugin
// that parses and builds them markedly cheaper than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use siemflow_core::Value;
use siemflow_core::external::sdk::{self, Emit, Fields, Options};

fn label(config: &Value) -> Option<Value> {
    config.as_object().and_then(|c| c.get("tag")).cloned()
}

fn tag_fields(mut event: Fields, config: &Value) -> Result<Vec<Emit>, String> {
    event.insert("tagged", Value::Boolean(true));
    if let Some(label) = label(config) {
        event.insert("tag", label);
    }
    Ok(vec![Emit::default_output(event)])
}

fn tag_values(mut event: Value, config: &Value) -> Result<Vec<Emit>, String> {
    let fields = event.as_object_mut().ok_or("not an object")?;
    fields.insert("tagged".into(), Value::Boolean(true));
    if let Some(label) = label(config) {
        fields.insert("tag".into(), label);
    }
    Ok(vec![Emit::default_output(event)])
}

fn main() -> ExitCode {
    let schema = serde_json::json!({
        "type": "object",
        "properties": {"tag": {"type": "string"}},
        "additionalProperties": false
    });
    let options = Options::new("plugin_tagger").schema(schema).credit(4);
    if std::env::args().any(|arg| arg == "--values") {
        sdk::serve_transform(options, tag_values)
    } else {
        sdk::serve_fields_transform(options, tag_fields)
    }
}
