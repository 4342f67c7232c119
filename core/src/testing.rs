//! Test helpers for plugin authors (the `testing` feature): run a sink or a source
//! without the engine, wait for effects, and check the standard metrics.
//!
//! ```toml
//! [dev-dependencies]
//! siemflow-core = { path = "…/core", features = ["testing"] }
//! ```
//!
//! Every helper panics with a message saying what it waited for or what was wrong, as a
//! test assertion does. Metrics go to the process's Prometheus recorder
//! ([`crate::metrics::prometheus`]), shared by every test of the binary: give each test
//! component its own id.

use std::path::Path;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::HealthRegistry;
use crate::buffer::{self, BufferConfig, BufferReceiver, BufferSender};
use crate::delivery::DEAD_LETTER;
use crate::event::{attach_ack, resolve_batch};
use crate::fanout::{Output, Targets};
use crate::metrics::{ComponentKind, ComponentLabels, ComponentMetrics};
use crate::plugin::ComponentContext;
use crate::{
    AckReceipt, Batch, BatchStatus, BoxFuture, Event, SinkConfig, SinkContext, SourceContext,
};

/// How long a helper waits for something that should happen quickly.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Polls `condition` every 10 ms until it holds; panics naming `what` after [`PATIENCE`].
/// For effects with no signal to await (a file written, a counter moved).
pub async fn eventually(what: &str, condition: impl FnMut() -> bool) {
    eventually_within(what, PATIENCE, condition).await;
}

/// [`eventually`] with its own patience, for effects that are slow by nature.
pub async fn eventually_within(
    what: &str,
    patience: Duration,
    mut condition: impl FnMut() -> bool,
) {
    let deadline = tokio::time::Instant::now() + patience;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The labels of a test component.
pub fn labels(id: &str, kind: ComponentKind, type_name: &str) -> ComponentLabels {
    ComponentLabels {
        id: id.to_string(),
        kind,
        type_name: type_name.to_string(),
    }
}

/// A component context as the topology builds it, its metrics recorded by the process's
/// Prometheus recorder (installed here if it is not yet).
pub fn component(
    id: &str,
    kind: ComponentKind,
    type_name: &str,
    state_dir: &Path,
) -> ComponentContext {
    // Installed before the component's counters exist, so they are recorded.
    crate::metrics::prometheus();
    ComponentContext {
        id: id.to_string(),
        state_dir: state_dir.to_path_buf(),
        metrics: ComponentMetrics::new(labels(id, kind, type_name)),
    }
}

/// An event from a JSON literal.
pub fn event(value: serde_json::Value) -> Event {
    Event::new(value.into())
}

/// A batch of events with an acknowledgement attached, and its receipt.
pub fn acked(values: Vec<serde_json::Value>) -> (Batch, AckReceipt) {
    let mut batch: Batch = values.into_iter().map(event).collect();
    let receipt = attach_ack(&mut batch);
    (batch, receipt)
}

/// The event bodies as JSON, for readable assertions.
pub fn bodies(events: &[Event]) -> Vec<serde_json::Value> {
    events
        .iter()
        .map(|e| serde_json::to_value(&e.value).unwrap_or_else(|e| panic!("not JSON: {e}")))
        .collect()
}

// ---------- sinks ----------

/// The test side of a sink's context: its input, its health, its abort.
pub struct SinkHandles {
    /// Feeds the sink's buffer.
    pub sender: BufferSender,
    /// The sink's health, as `/ready` shows it.
    pub health: HealthRegistry,
    /// Aborts the sink (a second signal).
    pub abort: CancellationToken,
}

/// A sink context (memory buffer, no outputs) and the handles a test keeps to drive it.
pub fn sink_context(id: &str, type_name: &str, state_dir: &Path) -> (SinkHandles, SinkContext) {
    let component = component(id, ComponentKind::Sink, type_name, state_dir);
    let (sender, receiver) = buffer::channel(&BufferConfig::default(), &component.metrics.labels);
    let health = HealthRegistry::default();
    let abort = CancellationToken::new();
    let cx = SinkContext {
        component,
        input: receiver,
        outputs: vec![],
        health: health.register(id, ComponentKind::Sink),
        abort: abort.clone(),
    };
    (
        SinkHandles {
            sender,
            health,
            abort,
        },
        cx,
    )
}

/// A sink running on its own task, with its `dead_letter` output wired to a buffer the
/// test reads: send events, await their receipts, look at health and dead letters.
pub struct RunningSink {
    /// Its labels, for [`assert_standard_metrics`].
    pub labels: ComponentLabels,
    /// Feeds the sink.
    pub input: BufferSender,
    /// What the sink dead-lettered.
    pub dead: BufferReceiver,
    /// The sink's health, as `/ready` would show it.
    pub health: HealthRegistry,
    /// Aborts the sink (a second signal).
    pub abort: CancellationToken,
    /// The sink's task.
    pub task: JoinHandle<anyhow::Result<()>>,
}

impl RunningSink {
    /// Builds the sink from its config and spawns it (state in the temp folder).
    pub fn start(id: &str, type_name: &str, config: &dyn SinkConfig) -> Self {
        let (handles, mut cx) = sink_context(id, type_name, &std::env::temp_dir());
        let labels = cx.component.metrics.labels.clone();
        let (dead_tx, dead) = buffer::channel(&BufferConfig::default(), &labels);
        let targets = Targets::new(vec![("dead".to_string(), dead_tx)]);
        cx.outputs = vec![Output::new(Some(DEAD_LETTER.into()), targets, &labels)];
        let task = tokio::spawn(
            config
                .build(cx)
                .unwrap_or_else(|e| panic!("sink `{id}` does not build: {e:#}")),
        );
        RunningSink {
            labels,
            input: handles.sender,
            dead,
            health: handles.health,
            abort: handles.abort,
            task,
        }
    }

    /// Sends the records in batches of 50, each with an acknowledgement; returns the receipts.
    pub async fn send(
        &self,
        records: impl IntoIterator<Item = serde_json::Value>,
    ) -> Vec<AckReceipt> {
        let mut receipts = Vec::new();
        let mut records = records.into_iter().peekable();
        while records.peek().is_some() {
            let mut batch: Batch = records.by_ref().take(50).map(event).collect();
            receipts.push(attach_ack(&mut batch));
            if self.input.send(batch).await.is_err() {
                panic!("the sink `{}` stopped reading its input", self.labels.id);
            }
        }
        receipts
    }

    /// Plays the dead-letter consumer: collects and settles what has arrived.
    pub fn drain_dead(&mut self) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        while let Some(batch) = self.dead.try_recv() {
            out.extend(dead_values(batch));
        }
        out
    }

    /// Waits for every receipt while playing the dead-letter consumer (a dead letter keeps
    /// its acknowledgement until its consumer settles it) and asserts each was delivered;
    /// returns the dead letters.
    pub async fn settle(&mut self, receipts: Vec<AckReceipt>) -> Vec<serde_json::Value> {
        let mut dead = Vec::new();
        for receipt in receipts {
            let mut receipt = std::pin::pin!(receipt);
            let status = loop {
                tokio::select! {
                    status = &mut receipt => break status,
                    Some(batch) = self.dead.recv() => dead.extend(dead_values(batch)),
                }
            };
            assert_eq!(
                status,
                BatchStatus::Delivered,
                "a batch of `{}` was not delivered",
                self.labels.id
            );
        }
        dead.extend(self.drain_dead());
        dead
    }

    /// Closes the input, waits for the sink to end cleanly and returns what it
    /// dead-lettered meanwhile.
    pub async fn finish(mut self) -> Vec<serde_json::Value> {
        drop(self.input);
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("the sink `{}` failed: {e:#}", self.labels.id),
            Err(e) => panic!("the sink `{}` panicked: {e}", self.labels.id),
        }
        let mut dead = Vec::new();
        while let Some(batch) = self.dead.try_recv() {
            dead.extend(dead_values(batch));
        }
        dead
    }
}

/// A dead-lettered batch as JSON, settled as its consumer would.
fn dead_values(batch: Batch) -> Vec<serde_json::Value> {
    let values = bodies(&batch);
    resolve_batch(batch, BatchStatus::Delivered);
    values
}

// ---------- sources ----------

/// A source's context wired to a buffer the test reads.
pub struct WiredSource {
    /// The context to build the source with.
    pub cx: SourceContext,
    /// What the source emits.
    pub rx: BufferReceiver,
    /// Cancels the source (shutdown).
    pub shutdown: CancellationToken,
}

/// Wires a source context to a buffer of `buffer`'s size.
pub fn wire_source(
    id: &str,
    type_name: &str,
    state_dir: &Path,
    buffer: &BufferConfig,
) -> WiredSource {
    let component = component(id, ComponentKind::Source, type_name, state_dir);
    let sink_labels = labels(&format!("{id}_sink"), ComponentKind::Sink, "test");
    let (tx, rx) = buffer::channel(buffer, &sink_labels);
    let targets = Targets::new(vec![("sink".to_string(), tx)]);
    let shutdown = CancellationToken::new();
    let out = Output::new(None, targets, &component.metrics.labels);
    let cx = SourceContext {
        component,
        out,
        shutdown: shutdown.clone(),
    };
    WiredSource { cx, rx, shutdown }
}

/// The next batch, or a panic when none comes within [`PATIENCE`].
pub async fn next_batch(rx: &mut BufferReceiver) -> Batch {
    match tokio::time::timeout(PATIENCE, rx.recv()).await {
        Ok(Some(batch)) => batch,
        Ok(None) => panic!("the source closed its output"),
        Err(_) => panic!("no batch within {PATIENCE:?}"),
    }
}

/// A source running on its own task, writing to a buffer the test reads.
pub struct RunningSource {
    /// Its labels, for [`assert_standard_metrics`].
    pub labels: ComponentLabels,
    /// What the source emits.
    pub rx: BufferReceiver,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl RunningSource {
    /// Wires the source's context (a buffer of `buffer_events`), builds it with `build`
    /// and runs it.
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
        let wired = wire_source(id, type_name, state_dir, &buffer);
        let labels = wired.cx.component.metrics.labels.clone();
        let future =
            build(wired.cx).unwrap_or_else(|e| panic!("source `{id}` does not build: {e:#}"));
        RunningSource {
            labels,
            rx: wired.rx,
            shutdown: wired.shutdown,
            task: tokio::spawn(future),
        }
    }

    /// The next batch it emits (see [`next_batch`]).
    pub async fn next_batch(&mut self) -> Batch {
        next_batch(&mut self.rx).await
    }

    /// Stops the source, handing `add` whatever it still emits (then delivered); it must
    /// end cleanly within `patience`.
    pub async fn stop(mut self, patience: Duration, mut add: impl FnMut(&Batch)) {
        self.shutdown.cancel();
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            tokio::select! {
                ended = &mut self.task => {
                    match ended {
                        Ok(Ok(())) => return,
                        Ok(Err(e)) => panic!("the source `{}` failed: {e:#}", self.labels.id),
                        Err(e) => panic!("the source `{}` panicked: {e}", self.labels.id),
                    }
                }
                batch = self.rx.recv() => if let Some(batch) = batch {
                    add(&batch);
                    resolve_batch(batch, BatchStatus::Delivered);
                },
                _ = tokio::time::sleep_until(deadline) => panic!("the source `{}` did not stop", self.labels.id),
            }
        }
    }

    /// One of the source's counters (see [`counter_value`]).
    pub fn counter(&self, name: &str, label: &str) -> u64 {
        counter_value(name, &self.labels.id, label)
    }
}

// ---------- metrics ----------

/// The series of one metric of one component in the Prometheus output: each line's
/// labels and value.
fn series(name: &str, component_id: &str) -> Vec<(String, f64)> {
    let id_label = format!("component_id=\"{component_id}\"");
    crate::metrics::prometheus()
        .render()
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let (labels, value) = rest.strip_prefix('{')?.rsplit_once("} ")?;
            let labels = labels
                .split(',')
                .any(|l| l == id_label)
                .then(|| labels.to_string())?;
            Some((labels, value.trim().parse().ok()?))
        })
        .collect()
}

/// The sum of one counter of one component over the series whose labels contain
/// `extra_label` (`""` for all), 0 when absent.
pub fn counter_value(name: &str, component_id: &str, extra_label: &str) -> u64 {
    series(name, component_id)
        .into_iter()
        .filter(|(labels, _)| labels.contains(extra_label))
        .map(|(_, value)| value as u64)
        .sum()
}

/// The component compliance check: after a component handled `events` events, asserts
/// that it counted them under the standard names with the standard labels:
///
/// - `component_received_events_total` ≥ `events` (sources count what they read; a
///   transform's or sink's buffer counts what it was given);
/// - `component_sent_events_total` ≥ `events` (a source's or transform's outputs count
///   what they passed on, a sink what it delivered);
/// - every series of both carries `component_id`, `component_kind` and `component_type`
///   equal to `labels`.
///
/// Give a component that drops or dead-letters some events the number all of them reach.
pub fn assert_standard_metrics(labels: &ComponentLabels, events: u64) {
    for name in [
        "component_received_events_total",
        "component_sent_events_total",
    ] {
        let found = series(name, &labels.id);
        assert!(!found.is_empty(), "`{}` has no {name}", labels.id);
        for (series_labels, _) in &found {
            for expected in [
                format!("component_kind=\"{}\"", labels.kind),
                format!("component_type=\"{}\"", labels.type_name),
            ] {
                assert!(
                    series_labels.split(',').any(|l| l == expected),
                    "{name} of `{}` lacks {expected}: {{{series_labels}}}",
                    labels.id
                );
            }
        }
        let total: f64 = found.iter().map(|(_, value)| value).sum();
        assert!(
            total >= events as f64,
            "`{}` counted {total} in {name}, expected at least {events}",
            labels.id
        );
    }
}

/// Asserts that the component counted at least `count` errors of `error_type` in
/// `component_errors_total` (with its standard labels).
pub fn assert_errors(labels: &ComponentLabels, error_type: &str, count: u64) {
    let counted = counter_value(
        "component_errors_total",
        &labels.id,
        &format!("error_type=\"{error_type}\""),
    );
    assert!(
        counted >= count,
        "`{}` counted {counted} component_errors_total{{error_type=\"{error_type}\"}}, expected at least {count}",
        labels.id
    );
    for (series_labels, _) in series("component_errors_total", &labels.id) {
        assert!(
            series_labels.contains(&format!("component_type=\"{}\"", labels.type_name)),
            "component_errors_total of `{}` lacks its component_type: {{{series_labels}}}",
            labels.id
        );
    }
}

// ---------- peers ----------

/// Serves `app` on a free loopback port for as long as the test's runtime lives; returns
/// its address (`format!("http://{address}/path")`): the peer a source or sink talks to.
pub async fn serve(app: axum::Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap_or_else(|e| panic!("cannot listen on loopback: {e}"));
    let address = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("the listener has no address: {e}"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    address
}

// ---------- docs ----------

/// Asserts that every Rust code block (fenced as `rust`) of the section `heading` of a
/// Markdown page (up to the next `## `) appears verbatim in `source`, so the page never
/// shows code that the tests do not compile and run; returns how many blocks it checked.
pub fn assert_quoted(page: &str, heading: &str, source: &str) -> usize {
    let Some((_, section)) = page.split_once(heading) else {
        panic!("the page has no section `{heading}`");
    };
    let section = section.split("\n## ").next().unwrap_or(section);
    let mut quoted = 0;
    for block in section.split("```rust\n").skip(1) {
        let code = block.split("```").next().unwrap_or(block);
        assert!(
            source.contains(code),
            "`{heading}` quotes code the source does not have:\n{code}"
        );
        quoted += 1;
    }
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A component of type `probe` and its metric handles.
    fn probe(id: &str, kind: ComponentKind) -> (ComponentLabels, ComponentMetrics) {
        let metrics = component(id, kind, "probe", &std::env::temp_dir()).metrics;
        (metrics.labels.clone(), metrics)
    }

    #[tokio::test]
    async fn eventually_returns_once_the_condition_holds() {
        let mut calls = 0;
        eventually("the third call", || {
            calls += 1;
            calls == 3
        })
        .await;
        assert_eq!(calls, 3);
    }

    #[tokio::test(start_paused = true)]
    #[should_panic(expected = "timed out waiting for: never")]
    async fn eventually_fails_naming_what_it_waited_for() {
        eventually("never", || false).await;
    }

    #[test]
    fn the_compliance_check_reads_the_standard_names_and_labels() {
        let (labels, metrics) = probe("testing_compliant", ComponentKind::Transform);
        metrics.received_events.increment(3);
        labels
            .counter("component_sent_events_total", &[("output", "_default")])
            .increment(3);
        assert_standard_metrics(&labels, 3);
        assert_eq!(
            counter_value("component_sent_events_total", &labels.id, "_default"),
            3
        );
        labels.error("request_failed", "sending");
        assert_errors(&labels, "request_failed", 1);
    }

    #[test]
    fn a_section_quoting_code_the_source_lacks_fails() {
        let page =
            "# P\n## Mine\n```rust\nfn a() {}\n```\ntext\n## Other\n```rust\nfn z() {}\n```\n";
        assert_eq!(assert_quoted(page, "## Mine", "fn a() {}\nfn b() {}\n"), 1);
        let missing = std::panic::catch_unwind(|| assert_quoted(page, "## Mine", "fn b() {}\n"));
        assert!(missing.is_err());
    }

    #[test]
    #[should_panic(expected = "counted 0 in component_sent_events_total, expected at least 1")]
    fn a_component_that_counts_nothing_sent_fails_the_check() {
        let (labels, metrics) = probe("testing_silent", ComponentKind::Sink);
        metrics.received_events.increment(1);
        assert_standard_metrics(&labels, 1);
    }
}
