//! Test helpers: run a source against a sink-side buffer without the engine.

use std::path::Path;

use std::time::{Duration, Instant};

use siemflow_core::SourceContext;
use siemflow_core::buffer::{self, BufferConfig, BufferReceiver};
use siemflow_core::event::Batch;
use siemflow_core::fanout::{Output, Targets};
use siemflow_core::metrics::{ComponentKind, ComponentLabels, ComponentMetrics};
use siemflow_core::plugin::ComponentContext;
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
    let (tx, rx) = buffer::channel(&BufferConfig::default(), &sink_labels);
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
