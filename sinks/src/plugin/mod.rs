//! `plugin`: a sink written in any language, run as an external process over the gRPC
//! protocol of `proto/plugin.proto` (core's [`siemflow_core::external`] does the process
//! work). See docs/sinks/plugin.md.
//!
//! Delivery is core's engine ([`siemflow_core::delivery`]), as for the HTTP sinks:
//! batching, retries with backoff (or the plugin's `Retry(after)`), dead letters for
//! `Rejected` events, failing a batch back to its source after `retry.max_duration`.
//! At most `credit` batches are sent unanswered (the engine's concurrency), so a slow
//! plugin slows the pipeline instead of growing memory. A keeper task owns the process:
//! when it dies, hangs (a batch unanswered for `batch_timeout`) or misses a ping, it is
//! killed and restarted with backoff; the batches it held fail as retryable and the
//! engine sends them again to its successor.

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::anyhow;
use bytes::{BufMut as _, Bytes};
use prost::Message as _;
use prost::encoding::{WireType, encode_key, encode_varint};
use schemars::JsonSchema;
use serde::Deserialize;
use siemflow_core::api::Health;
use siemflow_core::delivery::{
    self, Concurrency, DEAD_LETTER, EventOutcome, Failure, HealthcheckConfig, Outcome, Protocol,
    Rejection, Request, Settings,
};
use siemflow_core::external::proto::{self, PingRequest, sink_result};
use siemflow_core::external::{ExternalConfig, Session, Supervisor, value};
use siemflow_core::metrics::ComponentKind;
use siemflow_core::{BoxFuture, ConfigIssue, Event, SinkConfig, SinkContext};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// The options of the `plugin` sink (core's [`ExternalConfig`]).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct PluginSinkConfig(pub ExternalConfig);

impl SinkConfig for PluginSinkConfig {
    fn outputs(&self) -> Vec<String> {
        vec![DEAD_LETTER.to_string()]
    }

    fn check(&self) -> Vec<ConfigIssue> {
        self.0.check(ComponentKind::Sink)
    }

    fn external(&self) -> Option<&ExternalConfig> {
        Some(&self.0)
    }

    fn build(&self, cx: SinkContext) -> anyhow::Result<BoxFuture<anyhow::Result<()>>> {
        Ok(Box::pin(run(self.0.clone(), cx)))
    }
}

type Waiters = Arc<Mutex<HashMap<u64, oneshot::Sender<proto::SinkResult>>>>;

/// The data stream of one plugin process, shared by every request in flight.
#[derive(Clone)]
struct Link {
    generation: u64,
    requests: mpsc::Sender<Bytes>,
    waiters: Waiters,
}

/// The delivery engine's side: sends each request on the current link, awaits its answer.
struct PluginSink {
    link: watch::Receiver<Option<Link>>,
    /// How events are encoded: fixed by the first process, since the engine keeps
    /// encoded batches across restarts.
    form: value::EventForm,
    next_id: AtomicU64,
    batch_timeout: Duration,
    hung: mpsc::Sender<u64>,
}

async fn run(config: ExternalConfig, cx: SinkContext) -> anyhow::Result<()> {
    let id = cx.component.id.clone();
    let labels = cx.component.metrics.labels.clone();
    let command = config.command.clone();
    let batch = config.batch.clone().unwrap_or_default();
    let retry = config.retry.clone().unwrap_or_default();
    let batch_timeout = config.batch_timeout;
    let supervisor = Supervisor::new(&id, ComponentKind::Sink, config, &labels)
        .with_state_dir(cx.component.ensure_state_dir()?);
    let session = supervisor
        .start()
        .await
        .map_err(|e| anyhow!("plugin `{command}` of sink `{id}` {e}"))?;
    // The plugin's credit is the number of requests the engine keeps in flight.
    let credit = session.credit();
    let form = session.event_form();
    let (link_tx, link_rx) = watch::channel(None);
    let (hung_tx, hung_rx) = mpsc::channel(1);
    let stop = CancellationToken::new();
    let keeper = tokio::spawn(keep(
        supervisor,
        session,
        link_tx,
        hung_rx,
        stop.clone(),
        cx.health.part("plugin"),
    ));
    let protocol = PluginSink {
        link: link_rx,
        form,
        next_id: AtomicU64::new(1),
        batch_timeout,
        hung: hung_tx,
    };
    let healthcheck = HealthcheckConfig {
        enabled: false,
        ..HealthcheckConfig::default()
    };
    let settings = Settings::new(&batch, Concurrency::Fixed(credit), &retry, &healthcheck);
    let result = delivery::run(protocol, settings, cx).await;
    stop.cancel();
    let _ = keeper.await;
    result
}

/// Owns the plugin process: publishes its link, restarts it when it dies or hangs, and
/// stops it when the sink is done.
async fn keep(
    mut supervisor: Supervisor,
    mut session: Session,
    links: watch::Sender<Option<Link>>,
    mut hung: mpsc::Receiver<u64>,
    stop: CancellationToken,
    health: Health,
) {
    let id = supervisor.id().to_string();
    let batch_timeout = supervisor.config().batch_timeout;
    let health_interval = supervisor.config().health_interval;
    let stop_timeout = supervisor.config().stop_timeout;
    let form = session.event_form();
    let mut generation = 0;
    loop {
        generation += 1;
        let (link, mut ended) = open_link(&session, generation, session.credit());
        links.send_replace(Some(link.clone()));
        health.healthy();
        let mut plugin = session.process.plugin();
        let mut ping = tokio::time::interval_at(Instant::now() + health_interval, health_interval);
        let why = loop {
            tokio::select! {
                _ = stop.cancelled() => {
                    links.send_replace(None);
                    drop(link);
                    session.process.stop(stop_timeout).await;
                    return;
                }
                reason = &mut ended => break reason.unwrap_or_else(|_| "its stream ended".into()),
                Some(stale) = hung.recv() => {
                    if stale == generation {
                        break format!("a batch was not answered within {batch_timeout:?} (hung)");
                    }
                }
                _ = ping.tick() => {
                    match tokio::time::timeout(batch_timeout, plugin.ping(PingRequest {})).await {
                        Ok(Ok(_)) => supervisor.healthy(),
                        Ok(Err(status)) => break format!("its ping failed: {status}"),
                        Err(_) => break format!("its ping was not answered within {batch_timeout:?} (hung)"),
                    }
                }
            }
        };
        links.send_replace(None);
        health.unhealthy(format!("plugin restarting: {why}"));
        session.process.kill().await;
        // The batches it held fail as retryable: the engine sends them again.
        link.waiters
            .lock()
            .map(|mut w| w.clear())
            .unwrap_or_default();
        let stderr = session.process.stderr_text().await;
        tracing::error!(component = %id, reason = %why, "plugin failed; its stderr ends with:\n{stderr}");
        supervisor.metrics.error("plugin_failed", "sending");
        let restarted = tokio::select! {
            _ = stop.cancelled() => return,
            restarted = supervisor.restart(&why) => restarted,
        };
        session = match restarted {
            Ok(session) if session.event_form() == form => session,
            failed => {
                let e = match failed {
                    // Batches already encoded for the first process would be unreadable.
                    Ok(mut other) => {
                        other.process.kill().await;
                        "the restarted plugin reads events in another encoding than the first (was it replaced?); restart siemflow".to_string()
                    }
                    Err(e) => e.to_string(),
                };
                // Only an operator can fix this: batches fail back to their sources once
                // their retry time is spent.
                tracing::error!(component = %id, "plugin cannot be restarted: {e}");
                health.unhealthy(format!("plugin cannot start: {e}"));
                stop.cancelled().await;
                return;
            }
        };
    }
}

/// Opens the Write stream; the returned receiver yields why it ended.
fn open_link(
    session: &Session,
    generation: u64,
    credit: usize,
) -> (Link, oneshot::Receiver<String>) {
    let (requests, rx) = mpsc::channel::<Bytes>(credit);
    let waiters: Waiters = Arc::default();
    let (ended_tx, ended) = oneshot::channel();
    let mut grpc = tonic::client::Grpc::new(session.process.channel())
        .max_decoding_message_size(siemflow_core::external::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(siemflow_core::external::MAX_MESSAGE_BYTES);
    let answers = Arc::clone(&waiters);
    tokio::spawn(async move {
        let why = async {
            grpc.ready()
                .await
                .map_err(|e| format!("its channel failed: {e}"))?;
            let path = tonic::codegen::http::uri::PathAndQuery::from_static(
                "/siemflow.plugin.v1.Sink/Write",
            );
            let response = grpc
                .streaming(tonic::Request::new(ReceiverStream::new(rx)), path, RawCodec)
                .await
                .map_err(|status| format!("its stream failed: {status}"))?;
            let mut stream = response.into_inner();
            while let Some(answer) = stream
                .message()
                .await
                .map_err(|status| format!("its stream failed: {status}"))?
            {
                let waiter = answers
                    .lock()
                    .ok()
                    .and_then(|mut w| w.remove(&answer.batch_id));
                match waiter {
                    Some(waiter) => {
                        let _ = waiter.send(answer);
                    }
                    None => tracing::debug!(
                        batch_id = answer.batch_id,
                        "answer for a batch no longer awaited"
                    ),
                }
            }
            Err::<(), String>("its stream ended".into())
        }
        .await
        .err()
        .unwrap_or_default();
        let _ = ended_tx.send(why);
    });
    (
        Link {
            generation,
            requests,
            waiters,
        },
        ended,
    )
}

/// A `SinkBatch` on the wire, built from events already encoded by [`Protocol::encode`]:
/// field 1 the id, field 2 each event (a repeated message is its encoded bytes).
fn frame<'a>(batch_id: u64, events: impl Iterator<Item = &'a [u8]>) -> Bytes {
    let mut buf = Vec::new();
    prost::encoding::uint64::encode(1, &batch_id, &mut buf);
    for event in events {
        encode_key(2, WireType::LengthDelimited, &mut buf);
        encode_varint(event.len() as u64, &mut buf);
        buf.extend_from_slice(event);
    }
    Bytes::from(buf)
}

/// What the engine makes of an answer.
fn outcome(result: proto::SinkResult, events: usize) -> Outcome {
    match result.outcome {
        Some(sink_result::Outcome::Delivered(_)) => Outcome::Delivered,
        Some(sink_result::Outcome::Retry(retry)) => Outcome::Failed(Failure::Retry {
            reason: format!("the plugin asked to retry: {}", retry.reason),
            retry_after: (retry.after_ms > 0).then(|| Duration::from_millis(retry.after_ms)),
        }),
        Some(sink_result::Outcome::Rejected(rejected)) => {
            let mut each = vec![EventOutcome::Delivered; events];
            for index in rejected.indices {
                if let Some(slot) = each.get_mut(index as usize) {
                    *slot = EventOutcome::Rejected(Rejection::new("rejected", &rejected.reason));
                }
            }
            Outcome::PerEvent(each)
        }
        None => Outcome::Failed(Failure::retry("the plugin answered without an outcome")),
    }
}

impl Protocol for PluginSink {
    fn encode(&self, event: &Event, out: &mut Vec<u8>) -> Result<String, Rejection> {
        // Appending to a Vec cannot run out of space.
        let _ = value::event_to_wire(&event.value, self.form).encode(out);
        Ok(String::new())
    }

    async fn send(&self, request: Request<'_>) -> Outcome {
        let mut links = self.link.clone();
        let link =
            match tokio::time::timeout(self.batch_timeout, links.wait_for(Option::is_some)).await {
                Ok(Ok(link)) => link.clone(),
                _ => None,
            };
        let Some(link) = link else {
            return Outcome::Failed(Failure::retry("the plugin is not running (restarting)"));
        };
        let batch_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        if let Ok(mut waiters) = link.waiters.lock() {
            waiters.insert(batch_id, tx);
        }
        let forget = || {
            if let Ok(mut waiters) = link.waiters.lock() {
                waiters.remove(&batch_id);
            }
        };
        if link
            .requests
            .send(frame(batch_id, request.payloads()))
            .await
            .is_err()
        {
            forget();
            return Outcome::Failed(Failure::retry("the plugin's stream closed"));
        }
        match tokio::time::timeout(self.batch_timeout, rx).await {
            Ok(Ok(result)) => outcome(result, request.len()),
            Ok(Err(_)) => {
                Outcome::Failed(Failure::retry("the plugin died with this batch in flight"))
            }
            Err(_) => {
                forget();
                let _ = self.hung.try_send(link.generation);
                Outcome::Failed(Failure::retry(format!(
                    "the plugin did not answer within {:?}",
                    self.batch_timeout
                )))
            }
        }
    }

    async fn healthcheck(&self) -> Result<(), Failure> {
        Ok(())
    }
}

/// Sends pre-framed `SinkBatch` bytes and decodes `SinkResult`s: the events are encoded
/// once, by [`Protocol::encode`], where the engine measures batch sizes.
#[derive(Clone, Copy, Default)]
struct RawCodec;

struct RawEncoder;

struct ResultDecoder;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = proto::SinkResult;
    type Encoder = RawEncoder;
    type Decoder = ResultDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> ResultDecoder {
        ResultDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for ResultDecoder {
    type Item = proto::SinkResult;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        buf: &mut DecodeBuf<'_>,
    ) -> Result<Option<proto::SinkResult>, tonic::Status> {
        proto::SinkResult::decode(buf)
            .map(Some)
            .map_err(|e| tonic::Status::internal(format!("undecodable answer: {e}")))
    }
}
