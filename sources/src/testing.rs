//! Test helpers: run a source against a sink-side buffer without the engine.

use std::path::Path;

use std::time::{Duration, Instant};

use siemflow_core::buffer::{self, BufferConfig, BufferReceiver};
use siemflow_core::event::Batch;
use siemflow_core::event::resolve_batch;
use siemflow_core::fanout::{Output, Targets};
use siemflow_core::metrics::{ComponentKind, ComponentLabels, ComponentMetrics};
use siemflow_core::plugin::ComponentContext;
use siemflow_core::{BatchStatus, BoxFuture, SourceContext};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long a test waits for something that should happen quickly.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A source's context wired to a buffer the test reads from.
pub struct Wired {
    pub cx: SourceContext,
    pub rx: BufferReceiver,
    pub shutdown: CancellationToken,
}

/// Wires a source context with a unique component id.
pub fn wire(id: &str, type_name: &str, state_dir: &Path) -> Wired {
    wire_with(id, type_name, state_dir, &BufferConfig::default())
}

/// Wires a source context to a buffer of `buffer`'s size.
pub fn wire_with(id: &str, type_name: &str, state_dir: &Path, buffer: &BufferConfig) -> Wired {
    // Installed before the component's counters exist, so they are recorded.
    siemflow_core::metrics::prometheus();
    let labels = ComponentLabels {
        id: id.to_string(),
        kind: ComponentKind::Source,
        type_name: type_name.to_string(),
    };
    let sink_labels = ComponentLabels {
        id: format!("{id}_sink"),
        kind: ComponentKind::Sink,
        type_name: "test".to_string(),
    };
    let (tx, rx) = buffer::channel(buffer, &sink_labels);
    let targets = Targets::new(vec![("sink".to_string(), tx)]);
    let shutdown = CancellationToken::new();
    let cx = SourceContext {
        component: ComponentContext {
            id: id.to_string(),
            state_dir: state_dir.to_path_buf(),
            metrics: ComponentMetrics::new(labels.clone()),
        },
        out: Output::new(None, targets, &labels),
        shutdown: shutdown.clone(),
    };
    Wired { cx, rx, shutdown }
}

/// The next batch, or a panic when none comes in time.
pub async fn next_batch(rx: &mut BufferReceiver) -> Batch {
    match tokio::time::timeout(PATIENCE, rx.recv()).await {
        Ok(Some(batch)) => batch,
        Ok(None) => panic!("the source closed its output"),
        Err(_) => panic!("no batch within {PATIENCE:?}"),
    }
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

/// Polls `condition` until it holds or the patience runs out (for file-system effects).
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The value of one counter of one component in the Prometheus output, 0 when absent.
pub fn counter_value(name: &str, component_id: &str, extra_label: &str) -> u64 {
    let rendered = siemflow_core::metrics::prometheus().render();
    rendered
        .lines()
        .filter(|line| line.starts_with(name))
        .filter(|line| {
            line.contains(&format!("component_id=\"{component_id}\"")) && line.contains(extra_label)
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// A source running on its own task, writing to a buffer of `buffer_events` the test reads.
pub struct RunningSource {
    pub id: String,
    pub rx: BufferReceiver,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl RunningSource {
    /// Wires the source's context, builds it with `build` and runs it.
    pub fn start(
        id: &str,
        type_name: &str,
        state_dir: &Path,
        buffer_events: usize,
        build: impl FnOnce(SourceContext) -> anyhow::Result<BoxFuture<anyhow::Result<()>>>,
    ) -> Self {
        // RUST_LOG=siemflow_sources=debug shows what the source does.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let buffer = BufferConfig {
            max_events: buffer_events,
            ..BufferConfig::default()
        };
        let wired = wire_with(id, type_name, state_dir, &buffer);
        let future = build(wired.cx).expect("build");
        RunningSource {
            id: id.to_string(),
            rx: wired.rx,
            shutdown: wired.shutdown,
            task: tokio::spawn(future),
        }
    }

    /// Stops the source, handing `add` whatever it still emits (then delivered); it must
    /// end cleanly within `patience`.
    pub async fn stop(mut self, patience: Duration, mut add: impl FnMut(&Batch)) {
        self.shutdown.cancel();
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            tokio::select! {
                ended = &mut self.task => {
                    ended.expect("source task").expect("source ends cleanly");
                    return;
                }
                batch = self.rx.recv() => if let Some(batch) = batch {
                    add(&batch);
                    resolve_batch(batch, BatchStatus::Delivered);
                },
                _ = tokio::time::sleep_until(deadline) => panic!("the source did not stop"),
            }
        }
    }

    /// One of the source's counters (see [`counter_value`]).
    pub fn counter(&self, name: &str, label: &str) -> u64 {
        counter_value(name, &self.id, label)
    }
}
