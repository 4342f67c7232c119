//! An external sink plugin in Rust (siemflow runs it as a separate process over gRPC):
//! appends each batch to an NDJSON file and syncs it before answering `Delivered`.
//!
//! ```toml
//! [sinks.archive]
//! type = "plugin"
//! inputs = ["audit"]
//! command = "target/release/examples/plugin_ndjson_sink"
//! config = { path = "/var/lib/archive/audit.ndjson" }
//! ```
//!
//! An event that is not an object is rejected (siemflow dead-letters it); a write error
//! asks siemflow to retry the batch. `min_batch_interval_ms` spaces batches out, as a
//! destination with an ingest limit would. The credit is 1: siemflow sends the next batch
//! only once this one is answered, so a slow destination slows the pipeline.

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

use siemflow_core::Value;
use siemflow_core::external::sdk::{self, Options, Sink, SinkOutcome};
use tokio::time::Instant;

/// The sink: the file is opened per batch (the path comes with the config).
struct NdjsonSink {
    last: Mutex<Option<Instant>>,
}

impl Sink for NdjsonSink {
    async fn deliver(&self, events: Vec<Value>, config: &Value) -> SinkOutcome {
        let setting = |key: &str| config.as_object().and_then(|c| c.get(key)).cloned();
        let path = match setting("path") {
            Some(Value::String(text)) => Some(text.to_string()),
            Some(Value::Bytes(bytes)) => Some(String::from_utf8_lossy(&bytes).into_owned()),
            _ => None,
        };
        let Some(path) = path else {
            return SinkOutcome::Retry {
                reason: "config.path is missing".into(),
                after: None,
            };
        };
        if let Some(Value::Integer(ms)) = setting("min_batch_interval_ms") {
            let due = self
                .last
                .lock()
                .ok()
                .and_then(|l| *l)
                .map(|last| last + Duration::from_millis(ms.max(0) as u64));
            if let Some(due) = due {
                tokio::time::sleep_until(due).await;
            }
        }
        let mut text = Vec::new();
        let mut rejected = Vec::new();
        for (index, event) in (0u32..).zip(&events) {
            if event.is_object() {
                // A Value always has a JSON form.
                let _ = serde_json::to_writer(&mut text, event);
                text.push(b'\n');
            } else {
                rejected.push(index);
            }
        }
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut file| {
                file.write_all(&text)?;
                match file.sync_data() {
                    // A pipe or a character device has nothing to sync.
                    Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => Ok(()),
                    synced => synced,
                }
            });
        if let Ok(mut last) = self.last.lock() {
            *last = Some(Instant::now());
        }
        match written {
            Err(error) => SinkOutcome::Retry {
                reason: format!("cannot write {path}: {error}"),
                after: None,
            },
            Ok(()) if rejected.is_empty() => SinkOutcome::Delivered,
            Ok(()) => SinkOutcome::Rejected {
                indices: rejected,
                reason: "not an object".into(),
            },
        }
    }
}

fn main() -> ExitCode {
    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "path": {"type": "string", "description": "the NDJSON file to append to"},
            "min_batch_interval_ms": {"type": "integer", "minimum": 0}
        },
        "required": ["path"],
        "additionalProperties": false
    });
    let options = Options::new("plugin_ndjson_sink").schema(schema).credit(1);
    sdk::serve_sink(
        options,
        NdjsonSink {
            last: Mutex::new(None),
        },
    )
}
