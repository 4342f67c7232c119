//! An external source plugin in Rust (siemflow runs it as a separate process over gRPC):
//! emits `total` numbered events in batches of `batch_size` and keeps a cursor, the number
//! of events delivered, in `$SIEMFLOW_STATE_DIR/cursor`, saved only once siemflow
//! acknowledged a batch as delivered to every sink.
//!
//! ```toml
//! [sources.counter]
//! type = "plugin"
//! command = "target/release/examples/plugin_counter_source"
//! config = { total = 10000, batch_size = 100 }
//! ```
//!
//! The cursor is written atomically (write, fsync, rename), so a restart of the plugin or
//! of siemflow, even after a crash, resumes after the last delivered batch: an event may
//! come twice, never not at all. `pace_ms` waits between batches, as a poll would. Once
//! every event is out the source idles until siemflow stops it.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use siemflow_core::Value;
use siemflow_core::external::sdk::{self, Options, Stopping};

/// The cursor file: in the state folder siemflow gives the plugin.
fn cursor_path() -> PathBuf {
    let dir = std::env::var_os("SIEMFLOW_STATE_DIR").unwrap_or_else(|| ".".into());
    Path::new(&dir).join("cursor")
}

/// The saved cursor; 0 when there is none yet.
fn load_cursor(path: &Path) -> Result<u64, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => text
            .trim()
            .parse()
            .map_err(|e| format!("cursor file {} is not a number: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(format!("cannot read cursor file {}: {e}", path.display())),
    }
}

/// Saves the cursor atomically: write a temporary file, sync it, rename it over.
fn save_cursor(path: &Path, cursor: u64) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    std::fs::File::create(&tmp)
        .and_then(|mut file| {
            write!(file, "{cursor}")?;
            file.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| format!("cannot save cursor {cursor} to {}: {e}", path.display()))
}

/// A non-negative integer setting of the config table.
fn setting(config: &Value, key: &str, default: u64) -> u64 {
    match config.as_object().and_then(|c| c.get(key)) {
        Some(Value::Integer(n)) => (*n).max(0) as u64,
        _ => default,
    }
}

/// The reader: the next batch after `next`, with the cursor after it as the token.
struct Counter {
    next: Option<u64>,
}

impl Counter {
    fn read(&mut self, config: &Value, stopping: &Stopping) -> Option<(Vec<Value>, u64)> {
        let total = setting(config, "total", 1000);
        let batch_size = setting(config, "batch_size", 100).max(1);
        let pace = Duration::from_millis(setting(config, "pace_ms", 0));
        let next = match self.next {
            Some(next) => next,
            None => match load_cursor(&cursor_path()) {
                Ok(cursor) => {
                    sdk::log("info", &format!("counting from {cursor} to {total}"));
                    cursor
                }
                Err(e) => {
                    sdk::log("error", &e);
                    return None;
                }
            },
        };
        if next >= total {
            // Everything is out: idle until siemflow stops the source.
            while !stopping.wait(Duration::from_secs(60)) {}
            return None;
        }
        if !pace.is_zero() && stopping.wait(pace) {
            return None;
        }
        let end = (next + batch_size).min(total);
        let events = (next..end)
            .map(|n| {
                let event = serde_json::json!({ "Id": format!("evt-{n:08}"), "n": n });
                Value::from(event)
            })
            .collect();
        self.next = Some(end);
        Some((events, end))
    }
}

fn main() -> ExitCode {
    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "total": {"type": "integer", "minimum": 0, "description": "events to emit"},
            "batch_size": {"type": "integer", "minimum": 1},
            "pace_ms": {"type": "integer", "minimum": 0, "description": "wait between batches"}
        },
        "additionalProperties": false
    });
    let options = Options::new("plugin_counter_source")
        .schema(schema)
        .credit(4);
    let mut counter = Counter { next: None };
    let path = cursor_path();
    sdk::serve_source(
        options,
        move |config, stopping| counter.read(config, stopping),
        // Called in read order once the batch ending at `cursor` is delivered.
        move |cursor| {
            if let Err(e) = save_cursor(&path, cursor) {
                sdk::log("error", &e);
            }
        },
    )
}
