//! `plugin`: a source written in any language, run as an external process over the
//! gRPC protocol of `proto/plugin.proto` (core's [`siemflow_core::external`] does the
//! process work). See docs/sources/plugin.md.
//!
//! Each batch the plugin sends gets an acknowledgement; once every sink copy of it was
//! delivered (or failed) the host answers `SourceAck { batch_id, delivered }`, so the
//! plugin advances its cursor only over delivered data. When the plugin dies or stops
//! answering pings it is restarted with backoff; the acks still owed to the dead process
//! are dropped (its successor re-reads from the cursor it saved: at least once). At stop
//! the host waits up to `stop_timeout` for the acks of what was emitted, sends them,
//! closes the stream, and stops the plugin.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::anyhow;
use schemars::JsonSchema;
use serde::Deserialize;
use siemflow_core::event::{Event, attach_ack};
use siemflow_core::external::proto::{self, PingRequest};
use siemflow_core::external::{ExternalConfig, PluginMetrics, Session, Supervisor, value};
use siemflow_core::metrics::ComponentKind;
use siemflow_core::{BatchStatus, BoxFuture, ConfigIssue, SourceConfig, SourceContext};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

/// The options of the `plugin` source (core's [`ExternalConfig`]).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct PluginSourceConfig(pub ExternalConfig);

impl SourceConfig for PluginSourceConfig {
    fn check(&self) -> Vec<ConfigIssue> {
        self.0.check(ComponentKind::Source)
    }

    fn external(&self) -> Option<&ExternalConfig> {
        Some(&self.0)
    }

    fn build(&self, cx: SourceContext) -> anyhow::Result<BoxFuture<anyhow::Result<()>>> {
        Ok(Box::pin(run(self.0.clone(), cx)))
    }
}

/// The data stream of one plugin process.
struct Stream {
    acks: mpsc::Sender<proto::SourceAck>,
    batches: mpsc::Receiver<Result<proto::SourceBatch, tonic::Status>>,
    /// One task per emitted batch, awaiting its acknowledgement.
    owed: JoinSet<()>,
}

fn open_stream(session: &Session, credit: usize) -> Stream {
    let (acks, rx) = mpsc::channel(credit.max(16));
    let (tx, batches) = mpsc::channel(1);
    let mut client = session.process.source();
    tokio::spawn(async move {
        match client.read(ReceiverStream::new(rx)).await {
            Ok(response) => {
                let mut stream = response.into_inner();
                while let Some(batch) = stream.message().await.transpose() {
                    if tx.send(batch).await.is_err() {
                        break;
                    }
                }
            }
            Err(status) => {
                let _ = tx.send(Err(status)).await;
            }
        }
    });
    Stream {
        acks,
        batches,
        owed: JoinSet::new(),
    }
}

async fn run(config: ExternalConfig, cx: SourceContext) -> anyhow::Result<()> {
    let component = &cx.component;
    let labels = component.metrics.labels.clone();
    let id = component.id.clone();
    let command = config.command.clone();
    let health_interval = config.health_interval;
    let batch_timeout = config.batch_timeout;
    let stop_timeout = config.stop_timeout;
    let mut supervisor = Supervisor::new(&id, ComponentKind::Source, config, &labels)
        .with_state_dir(component.ensure_state_dir()?);
    let describe = |e: &dyn std::fmt::Display| anyhow!("plugin `{command}` of source `{id}` {e}");
    let mut session = supervisor.start().await.map_err(|e| describe(&e))?;
    let owed_batches = Arc::new(AtomicUsize::new(0));
    loop {
        let mut stream = open_stream(&session, session.credit());
        let mut plugin = session.process.plugin();
        let mut ping = tokio::time::interval_at(Instant::now() + health_interval, health_interval);
        let why = loop {
            tokio::select! {
                _ = cx.shutdown.cancelled() => {
                    settle_and_stop(stream, session, stop_timeout).await;
                    return Ok(());
                }
                batch = stream.batches.recv() => match batch {
                    Some(Ok(batch)) => {
                        supervisor.healthy();
                        emit(&cx, &supervisor.metrics, &mut stream, &owed_batches, batch).await;
                    }
                    Some(Err(status)) => break format!("its stream failed: {status}"),
                    None => break "its stream ended".to_string(),
                },
                _ = ping.tick() => {
                    match tokio::time::timeout(batch_timeout, plugin.ping(PingRequest {})).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(status)) => break format!("its ping failed: {status}"),
                        Err(_) => break format!("its ping was not answered within {batch_timeout:?} (hung)"),
                    }
                }
            }
        };
        session.process.kill().await;
        let stderr = session.process.stderr_text().await;
        tracing::error!(component = %id, reason = %why, "plugin failed; its stderr ends with:\n{stderr}");
        labels.error("plugin_failed", "receiving");
        // Acks owed to the dead process cannot reach it; its successor re-reads from
        // the cursor it saved, so what is still in the pipeline may come twice.
        drop(stream);
        session = tokio::select! {
            _ = cx.shutdown.cancelled() => return Ok(()),
            restarted = supervisor.restart(&why) => restarted.map_err(|e| describe(&e))?,
        };
    }
}

/// Emits one batch with an acknowledgement whose outcome goes back to the plugin.
async fn emit(
    cx: &SourceContext,
    metrics: &PluginMetrics,
    stream: &mut Stream,
    owed_batches: &Arc<AtomicUsize>,
    batch: proto::SourceBatch,
) {
    let mut events = Vec::with_capacity(batch.events.len());
    for event in batch.events {
        match value::event_from_wire(event) {
            Ok(value) => events.push(Event::new(value)),
            Err(e) => {
                cx.component
                    .metrics
                    .labels
                    .error("plugin_invalid_value", "receiving");
                tracing::warn!(component = %cx.component.id, "plugin sent an event siemflow cannot hold, skipped: {e}");
            }
        }
    }
    cx.component
        .metrics
        .received_events
        .increment(events.len() as u64);
    let receipt = attach_ack(&mut events);
    let acks = stream.acks.clone();
    let batch_id = batch.batch_id;
    let gauge = metrics.in_flight.clone();
    let owed = Arc::clone(owed_batches);
    gauge.set((owed.fetch_add(1, Ordering::SeqCst) + 1) as f64);
    stream.owed.spawn(async move {
        let delivered = receipt.await == BatchStatus::Delivered;
        let _ = acks
            .send(proto::SourceAck {
                batch_id,
                delivered,
            })
            .await;
        gauge.set((owed.fetch_sub(1, Ordering::SeqCst) - 1) as f64);
    });
    cx.out.send(events).await;
}

/// At stop: waits (up to `stop_timeout`) for the acks of what was emitted so the plugin
/// can save its cursor, then closes the stream and stops the plugin.
async fn settle_and_stop(mut stream: Stream, session: Session, stop_timeout: std::time::Duration) {
    let owed = &mut stream.owed;
    let settled = tokio::time::timeout(stop_timeout, async {
        while owed.join_next().await.is_some() {}
    })
    .await
    .is_ok();
    if !settled {
        tracing::warn!(
            "plugin source stopped with batches unacknowledged; the plugin reads them again next time"
        );
    }
    drop(stream);
    session.process.stop(stop_timeout).await;
}
