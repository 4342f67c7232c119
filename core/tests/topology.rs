//! The engine with tiny in-test plugins: acknowledgements across fan-out, failures,
//! deliberate drops, reload and draining.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use siemflow_core::api::HealthRegistry;
use siemflow_core::config::{SourceFile, load_files};
use siemflow_core::event::{attach_ack, resolve_batch};
use siemflow_core::topology::Topology;
use siemflow_core::{
    BatchStatus, BoxFuture, Event, Registry, SinkConfig, SinkContext, SourceConfig, SourceContext,
    Transform, TransformConfig, TransformContext, TransformOutputs,
};
use tokio::sync::mpsc;

type Receipts = Arc<Mutex<Option<mpsc::UnboundedSender<BatchStatus>>>>;

fn receipts() -> &'static Receipts {
    static RECEIPTS: std::sync::OnceLock<Receipts> = std::sync::OnceLock::new();
    RECEIPTS.get_or_init(|| Arc::new(Mutex::new(None)))
}

/// Emits `batches` batches of `size` events and reports each receipt.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Emit {
    batches: usize,
    size: usize,
    /// Keep running until shut down, instead of finishing after the last receipt.
    #[serde(default)]
    hold: bool,
}

impl SourceConfig for Emit {
    fn build(&self, cx: SourceContext) -> anyhow::Result<BoxFuture<anyhow::Result<()>>> {
        let (batches, size, hold) = (self.batches, self.size, self.hold);
        let report = receipts().lock().expect("lock").clone();
        Ok(Box::pin(async move {
            let mut pending = Vec::new();
            for b in 0..batches {
                let mut batch: Vec<Event> = (0..size)
                    .map(|i| Event::from_message(format!("{b}-{i}")))
                    .collect();
                pending.push(attach_ack(&mut batch));
                cx.out.send(batch).await;
            }
            for receipt in pending {
                let status = receipt.await;
                if let Some(report) = &report {
                    let _ = report.send(status);
                }
            }
            if hold {
                cx.shutdown.cancelled().await;
            }
            Ok(())
        }))
    }
}

/// Drops every event whose message ends in an odd digit, on purpose.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct DropOdd {}

impl TransformConfig for DropOdd {
    fn build(&self, _cx: &TransformContext) -> anyhow::Result<Box<dyn Transform>> {
        struct Run;
        impl Transform for Run {
            fn transform(&mut self, batch: Vec<Event>, out: &mut TransformOutputs) {
                for event in batch {
                    let odd = event
                        .value
                        .as_object()
                        .and_then(|o| o.get("message"))
                        .and_then(|m| m.to_str().map(|s| s.ends_with(['1', '3', '5', '7', '9'])))
                        .unwrap_or(false);
                    if odd {
                        event.deliver()
                    } else {
                        out.push(event)
                    }
                }
            }
        }
        Ok(Box::new(Run))
    }
}

/// Settles everything it receives with a fixed status and counts it.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Settle {
    fail: bool,
    #[serde(default)]
    counter: Option<String>,
}

fn counters() -> &'static Mutex<std::collections::BTreeMap<String, usize>> {
    static COUNTS: std::sync::OnceLock<Mutex<std::collections::BTreeMap<String, usize>>> =
        std::sync::OnceLock::new();
    COUNTS.get_or_init(Default::default)
}

impl SinkConfig for Settle {
    fn build(&self, mut cx: SinkContext) -> anyhow::Result<BoxFuture<anyhow::Result<()>>> {
        let status = if self.fail {
            BatchStatus::Failed
        } else {
            BatchStatus::Delivered
        };
        let counter = self.counter.clone();
        Ok(Box::pin(async move {
            while let Some(batch) = cx.input.recv().await {
                if let Some(name) = &counter {
                    *counters()
                        .lock()
                        .expect("lock")
                        .entry(name.clone())
                        .or_default() += batch.len();
                }
                resolve_batch(batch, status);
            }
            Ok(())
        }))
    }
}

fn registry() -> Registry {
    let mut registry = Registry::new();
    registry.source::<Emit>("emit", "test source");
    registry.transform::<DropOdd>("drop_odd", "test transform");
    registry.sink::<Settle>("settle", "test sink");
    registry
}

fn config(text: &str) -> siemflow_core::config::Config {
    config_in(&tempfile::tempdir().expect("tempdir").keep(), text)
}

fn config_in(dir: &std::path::Path, text: &str) -> siemflow_core::config::Config {
    let text = format!("data_dir = \"{}\"\n{text}", dir.display());
    load_files(&[SourceFile::new("t.toml", text)], &registry(), &|_| None).expect("valid config")
}

async fn statuses(
    topology: &mut Topology,
    n: usize,
    rx: &mut mpsc::UnboundedReceiver<BatchStatus>,
) -> Vec<BatchStatus> {
    let mut out = Vec::new();
    while out.len() < n {
        tokio::select! {
            Some(status) = rx.recv() => out.push(status),
            exit = topology.next_exit() => {
                if let Some(exit) = exit { exit.result.expect("component ok"); }
            }
        }
    }
    out
}

// One test drives every scenario in order: the receipt channel is process-global.
#[tokio::test]
async fn acknowledgements_follow_every_copy() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    *receipts().lock().expect("lock") = Some(tx);

    // Fan-out to two delivering sinks, one through a filter that drops half on purpose.
    let mut topology = Topology::start(
        config(
            r#"
[sources.in]
type = "emit"
batches = 3
size = 10
[transforms.half]
type = "drop_odd"
inputs = ["in"]
[sinks.a]
type = "settle"
inputs = ["in"]
fail = false
counter = "a"
[sinks.b]
type = "settle"
inputs = ["half"]
fail = false
counter = "b"
"#,
        ),
        HealthRegistry::default(),
    )
    .expect("start");
    assert_eq!(
        statuses(&mut topology, 3, &mut rx).await,
        vec![BatchStatus::Delivered; 3]
    );
    while topology.next_exit().await.is_some() {}
    {
        let counts = counters().lock().expect("lock");
        assert_eq!(counts.get("a"), Some(&30));
        assert_eq!(counts.get("b"), Some(&15));
    }

    // One failing copy fails the batch, although the other copy was delivered.
    let mut topology = Topology::start(
        config(
            r#"
[sources.in]
type = "emit"
batches = 2
size = 5
[sinks.good]
type = "settle"
inputs = ["in"]
fail = false
[sinks.bad]
type = "settle"
inputs = ["in"]
fail = true
"#,
        ),
        HealthRegistry::default(),
    )
    .expect("start");
    assert_eq!(
        statuses(&mut topology, 2, &mut rx).await,
        vec![BatchStatus::Failed; 2]
    );
    while topology.next_exit().await.is_some() {}

    // A reload that changes only the sink keeps the source; a removed sink drains.
    let data_dir = tempfile::tempdir().expect("tempdir");
    let mut topology = Topology::start(
        config_in(
            data_dir.path(),
            r#"
[sources.in]
type = "emit"
batches = 1
size = 1
hold = true
[sinks.a]
type = "settle"
inputs = ["in"]
fail = false
"#,
        ),
        HealthRegistry::default(),
    )
    .expect("start");
    assert_eq!(
        statuses(&mut topology, 1, &mut rx).await,
        vec![BatchStatus::Delivered]
    );
    let summary = tokio::time::timeout(
        Duration::from_secs(10),
        topology.reload(config_in(
            data_dir.path(),
            r#"
[sources.in]
type = "emit"
batches = 1
size = 1
hold = true
[sinks.c]
type = "settle"
inputs = ["in"]
fail = false
"#,
        )),
    )
    .await
    .expect("reload in time")
    .expect("reload");
    assert_eq!(summary.added, vec!["c".to_string()]);
    assert_eq!(summary.removed, vec!["a".to_string()]);
    assert!(
        summary.replaced.is_empty(),
        "the data_dir and the source are unchanged: {summary:?}"
    );
    assert_eq!(topology.running(), vec!["c".to_string(), "in".to_string()]);
    assert!(
        topology.shutdown(Duration::from_secs(10)).await,
        "drains in time"
    );
    assert!(topology.running().is_empty());
}
