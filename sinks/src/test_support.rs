//! Drives a sink without the engine: core's sink harness (its `testing` feature) under
//! the names these tests use.

use std::path::Path;

use siemflow_core::metrics::{ComponentKind, ComponentLabels};
pub(crate) use siemflow_core::testing::{
    RunningSink, SinkHandles as Harness, acked, assert_standard_metrics, event, eventually,
};
use siemflow_core::{SinkConfig, SinkContext};

/// The labels of a test sink.
pub(crate) fn labels(id: &str, type_name: &str) -> ComponentLabels {
    siemflow_core::testing::labels(id, ComponentKind::Sink, type_name)
}

/// A context for a sink with this id and its test-side handles.
pub(crate) fn harness(id: &str, type_name: &str, state_dir: &Path) -> (Harness, SinkContext) {
    siemflow_core::testing::sink_context(id, type_name, state_dir)
}

/// Builds and spawns the sink with its `dead_letter` output wired to a buffer the test reads.
pub(crate) fn start_sink(id: &str, type_name: &str, config: &dyn SinkConfig) -> RunningSink {
    RunningSink::start(id, type_name, config)
}
