//! Test helpers of the sources: core's (its `testing` feature) under the names these
//! tests use, plus what only the sources' tests compare.

use std::path::Path;

use siemflow_core::buffer::BufferConfig;
use siemflow_core::event::Batch;
pub use siemflow_core::testing::{
    PATIENCE, RunningSource, WiredSource as Wired, assert_standard_metrics, counter_value,
    eventually, eventually_within, labels, next_batch, wire_source as wire_with,
};

/// Wires a source context to a default-sized buffer the test reads from.
pub fn wire(id: &str, type_name: &str, state_dir: &Path) -> Wired {
    wire_with(id, type_name, state_dir, &BufferConfig::default())
}

/// The `message` field (text decoding) or the `n` field (JSON) of each event.
pub fn lines_of(batch: &Batch) -> Vec<String> {
    batch
        .iter()
        .map(|event| {
            let object = event.value.as_object().expect("object event");
            match object.get("message").or_else(|| object.get("n")) {
                Some(value) if value.is_bytes() => value.to_string_lossy().into_owned(),
                Some(value) => value.to_string(),
                None => String::new(),
            }
        })
        .collect()
}

/// A field's text as the tests compare it: a string's text, anything else written out,
/// nothing when absent.
pub fn text(value: Option<&siemflow_core::Value>) -> String {
    match value {
        Some(value) => match value.to_str_lossy() {
            Some(text) => text.into_owned(),
            None => value.to_string(),
        },
        None => String::new(),
    }
}
