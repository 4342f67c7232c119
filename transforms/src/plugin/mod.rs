//! `plugin`: a transform written in any language, run as an external process over the
//! gRPC protocol of `proto/plugin.proto` (core's [`siemflow_core::external`] does the
//! process work). See docs/transforms/plugin.md.
//!
//! Up to the plugin's credit, batches are in flight at once; each answer is matched to
//! its batch by id. An input event's acknowledgement goes with every event it became
//! (none: dropped on purpose, settled as delivered); a failed event goes, annotated, to
//! `<id>.dropped`. When the plugin dies, hangs (a batch unanswered for `batch_timeout`,
//! or a ping) or breaks the protocol, it is killed and restarted with backoff and the
//! batches in flight are sent again to the new process. A batch the plugin died on
//! three times is split in halves, each tried once more (and split again if it fails
//! again); a single event the plugin died on three times goes to `<id>.dropped`, so one
//! poison event cannot stall the pipeline nor take its batch with it. Nothing in flight
//! is lost.

use std::collections::VecDeque;

use anyhow::anyhow;
use schemars::JsonSchema;
use serde::Deserialize;
use siemflow_core::buffer::BufferReceiver;
use siemflow_core::dropped::{Dropped, annotate};
use siemflow_core::event::Event;
use siemflow_core::external::proto::{self, PingRequest};
use siemflow_core::external::{ExternalConfig, InFlight, Session, Supervisor, value};
use siemflow_core::fanout::Outputs;
use siemflow_core::log_limit::RateLimitedLog;
use siemflow_core::metrics::{ComponentKind, ComponentMetrics};
use siemflow_core::plugin::{ComponentContext, TransformTask};
use siemflow_core::{
    ConfigIssue, ObjectMap, Transform, TransformConfig, TransformContext, TransformOutputs, Value,
};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

/// The output failed events go to.
pub const DROPPED: &str = "dropped";
/// Input batches already waiting are sent to the plugin as one until it holds this many
/// events.
pub const COALESCE_EVENTS: usize = 1000;
/// How many times a batch is sent to a plugin that dies or hangs on it before it is
/// split in halves (a single event: before it goes to `dropped`).
pub const MAX_ATTEMPTS: u32 = 3;

/// The options of the `plugin` transform (core's [`ExternalConfig`]).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct PluginTransformConfig(pub ExternalConfig);

impl TransformConfig for PluginTransformConfig {
    fn outputs(&self) -> Vec<String> {
        let mut names = self.0.outputs.clone();
        names.push(DROPPED.to_string());
        names
    }

    fn check(&self) -> Vec<ConfigIssue> {
        self.0.check(ComponentKind::Transform)
    }

    fn external(&self) -> Option<&ExternalConfig> {
        Some(&self.0)
    }

    fn build(&self, _cx: &TransformContext) -> anyhow::Result<Box<dyn Transform>> {
        Err(anyhow!(
            "the plugin transform runs as its own task (TransformConfig::build_task)"
        ))
    }

    fn build_task(&self, cx: &TransformContext) -> Option<anyhow::Result<TransformTask>> {
        let config = self.0.clone();
        let component = cx.component.clone();
        let names = self.outputs();
        Some(Ok(Box::new(move |input, outputs| {
            Box::pin(run(config, component, names, input, outputs))
        })))
    }
}

/// A batch sent to the plugin: the events as they arrived, to settle, resend or drop.
struct Pending {
    events: Vec<Event>,
    attempts: u32,
}

/// Why the plugin has to be restarted.
struct Broken(String);

/// The transform between its input and outputs: the plugin session, what is in flight,
/// and what waits to be sent again after a restart.
struct Runner {
    supervisor: Supervisor,
    component: ComponentContext,
    names: Vec<String>,
    outputs: Outputs,
    in_flight: InFlight<Pending>,
    resend: VecDeque<Pending>,
    emitted: TransformOutputs,
    errors: RateLimitedLog,
}

/// A plugin's answer to a batch, its events already read off the wire (by the task
/// that receives them, beside the one that sends and settles).
struct Answer {
    batch_id: u64,
    results: Vec<EventOutcome>,
}

/// What one input event became: what it emitted (output and event), or the plugin's
/// error.
type EventOutcome = Result<Vec<(String, Emission)>, String>;

/// One emitted event as read off the wire.
enum Emission {
    /// A whole event.
    Whole(Result<Value, value::ValueError>),
    /// The input event with these top-level fields set and removed.
    Patch {
        set: Result<Value, value::ValueError>,
        removed: Vec<String>,
    },
}

impl Answer {
    fn read(result: proto::TransformResult) -> Self {
        let read =
            |event: Option<proto::Event>| event.map_or(Ok(Value::Null), value::event_from_wire);
        let results = result
            .results
            .into_iter()
            .map(|outcome| {
                if !outcome.error.is_empty() {
                    return Err(outcome.error);
                }
                Ok(outcome
                    .emitted
                    .into_iter()
                    .map(|emitted| {
                        let emission = match emitted.patch {
                            Some(patch) => Emission::Patch {
                                set: read(patch.set),
                                removed: patch.removed,
                            },
                            None => Emission::Whole(read(emitted.event)),
                        };
                        (emitted.output, emission)
                    })
                    .collect())
            })
            .collect();
        Answer {
            batch_id: result.batch_id,
            results,
        }
    }
}

/// An emitted event checked against its input, to be built.
enum Ready {
    Whole(Value),
    Patch(ObjectMap, Vec<String>),
}

/// The data stream of one plugin process.
struct Stream {
    requests: mpsc::Sender<proto::TransformBatch>,
    answers: mpsc::Receiver<Result<Answer, tonic::Status>>,
    form: value::EventForm,
}

fn open_stream(session: &Session, credit: usize) -> Stream {
    let (requests, rx) = mpsc::channel(credit);
    let (tx, answers) = mpsc::channel(credit);
    let mut client = session.process.transform();
    // The call resolves only once the plugin sends its first answer, so it runs beside
    // the loop that feeds it.
    tokio::spawn(async move {
        match client.process(ReceiverStream::new(rx)).await {
            Ok(response) => {
                let mut stream = response.into_inner();
                while let Some(answer) = stream.message().await.transpose() {
                    if tx.send(answer.map(Answer::read)).await.is_err() {
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
        requests,
        answers,
        form: session.event_form(),
    }
}

async fn run(
    config: ExternalConfig,
    component: ComponentContext,
    names: Vec<String>,
    mut input: BufferReceiver,
    outputs: Outputs,
) -> anyhow::Result<()> {
    let labels = component.metrics.labels.clone();
    let id = component.id.clone();
    let command = config.command.clone();
    let batch_timeout = config.batch_timeout;
    let health_interval = config.health_interval;
    let stop_timeout = config.stop_timeout;
    let supervisor = Supervisor::new(&id, ComponentKind::Transform, config, &labels)
        .with_state_dir(component.ensure_state_dir()?);
    let describe =
        |e: &dyn std::fmt::Display| anyhow!("plugin `{command}` of transform `{id}` {e}");
    let mut session = supervisor.start().await.map_err(|e| describe(&e))?;
    let mut runner = Runner {
        in_flight: InFlight::new(supervisor.metrics.in_flight.clone()),
        supervisor,
        emitted: TransformOutputs::new(&names),
        names,
        outputs,
        component,
        resend: VecDeque::new(),
        errors: RateLimitedLog::default(),
    };
    let mut input_done = false;
    loop {
        let credit = session.credit();
        let mut stream = open_stream(&session, credit);
        let mut plugin = session.process.plugin();
        let mut ping = tokio::time::interval_at(Instant::now() + health_interval, health_interval);
        let broken = 'session: loop {
            while runner.in_flight.len() < credit
                && let Some(pending) = runner.resend.pop_front()
            {
                if let Err(broken) = runner.send(&stream, pending).await {
                    break 'session broken;
                }
            }
            if input_done && runner.in_flight.is_empty() && runner.resend.is_empty() {
                drop(stream);
                session.process.stop(stop_timeout).await;
                return Ok(());
            }
            let deadline = runner.in_flight.deadline(batch_timeout);
            tokio::select! {
                biased;
                answer = stream.answers.recv() => match answer {
                    Some(Ok(result)) => {
                        if let Err(broken) = runner.answer(result).await {
                            break broken;
                        }
                    }
                    Some(Err(status)) => break Broken(format!("its stream failed: {status}")),
                    None => break Broken("its stream ended".into()),
                },
                _ = sleep_until(deadline), if deadline.is_some() => {
                    break Broken(format!("a batch was not answered within {batch_timeout:?} (hung)"));
                }
                batch = input.recv(), if !input_done && runner.in_flight.len() < credit && runner.resend.is_empty() => {
                    match batch {
                        Some(mut events) => {
                            // Batches already waiting go as one: fewer round trips.
                            while events.len() < COALESCE_EVENTS
                                && let Some(more) = input.try_recv()
                            {
                                events.extend(more);
                            }
                            runner.component.metrics.received_events.increment(events.len() as u64);
                            if let Err(broken) = runner.send(&stream, Pending { events, attempts: 0 }).await {
                                break broken;
                            }
                        }
                        None => input_done = true,
                    }
                }
                _ = ping.tick(), if runner.in_flight.is_empty() => {
                    match tokio::time::timeout(batch_timeout, plugin.ping(PingRequest {})).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(status)) => break Broken(format!("its ping failed: {status}")),
                        Err(_) => break Broken(format!("its ping was not answered within {batch_timeout:?} (hung)")),
                    }
                }
            }
        };
        session = runner
            .restart(session, broken)
            .await
            .map_err(|e| describe(&e))?;
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Runner {
    /// Sends a batch; it is in flight from now on.
    async fn send(&mut self, stream: &Stream, pending: Pending) -> Result<(), Broken> {
        let events = value::events_to_wire(pending.events.iter().map(|e| &e.value), stream.form);
        let batch_id = self.in_flight.insert(pending);
        stream
            .requests
            .send(proto::TransformBatch { batch_id, events })
            .await
            .map_err(|_| Broken("its stream closed".into()))
    }

    /// Applies one answer and sends what it emitted on.
    async fn answer(&mut self, result: Answer) -> Result<(), Broken> {
        let Some(pending) = self.in_flight.take(result.batch_id) else {
            return Err(Broken(format!(
                "it answered batch {} which is not in flight",
                result.batch_id
            )));
        };
        if result.results.len() != pending.events.len() {
            let answered = result.results.len();
            let sent = pending.events.len();
            // Sent again to the restarted plugin, as a batch it died on.
            self.resend.push_back(pending);
            return Err(Broken(format!(
                "it answered {answered} results for a batch of {sent} events"
            )));
        }
        self.supervisor.healthy();
        for (event, outcome) in pending.events.into_iter().zip(result.results) {
            self.apply(event, outcome);
        }
        self.outputs.send_emitted(&mut self.emitted).await;
        Ok(())
    }

    /// What one input event became.
    fn apply(&mut self, mut event: Event, outcome: EventOutcome) {
        let emitted = match outcome {
            Ok(emitted) => emitted,
            Err(error) => {
                self.fail(event, &error);
                return;
            }
        };
        // Everything is checked before the input is used up: a bad answer fails the
        // event as it came in.
        let mut ready = Vec::with_capacity(emitted.len());
        for (output, emission) in emitted {
            let declared = output.is_empty() || (output != DROPPED && self.names.contains(&output));
            if !declared {
                let message = format!("emitted to `{output}`, which is not a declared output");
                self.fail(event, &message);
                return;
            }
            let checked = match emission {
                Emission::Whole(Ok(value)) => Ok(Ready::Whole(value)),
                Emission::Patch {
                    set: Ok(Value::Object(set)),
                    removed,
                } if event.value.is_object() => Ok(Ready::Patch(set, removed)),
                Emission::Patch { set: Ok(_), .. } => Err(
                    "emitted a patch, which only an object event with an object of fields can take"
                        .to_string(),
                ),
                Emission::Whole(Err(e)) | Emission::Patch { set: Err(e), .. } => {
                    Err(format!("emitted an invalid value: {e}"))
                }
            };
            match checked {
                Ok(checked) => ready.push((output, checked)),
                Err(message) => {
                    self.fail(event, &message);
                    return;
                }
            }
        }
        let ack = event.ack.take();
        let mut patches = ready
            .iter()
            .filter(|(_, r)| matches!(r, Ready::Patch(..)))
            .count();
        let mut input = Some(event.value);
        for (output, checked) in ready {
            let value = match checked {
                Ready::Whole(value) => value,
                Ready::Patch(set, removed) => {
                    patches -= 1;
                    // The last patch takes the input itself; earlier ones a copy.
                    let base = if patches == 0 {
                        input.take()
                    } else {
                        input.clone()
                    };
                    let mut fields = match base {
                        Some(Value::Object(fields)) => fields,
                        _ => ObjectMap::new(),
                    };
                    value::apply_patch(&mut fields, set, &removed);
                    Value::Object(fields)
                }
            };
            let out = Event {
                value,
                ack: ack.clone(),
            };
            if output.is_empty() {
                self.emitted.push(out);
            } else {
                self.emitted.push_to(&output, out);
            }
        }
        // The original share was only the template of the emitted events' shares; with
        // none emitted, the event was dropped on purpose.
        if let Some(ack) = ack {
            ack.resolve(siemflow_core::BatchStatus::Delivered);
        }
    }

    /// A failed event: counted, logged (rate-limited), annotated and sent to `dropped`.
    fn fail(&mut self, mut event: Event, message: &str) {
        let metrics: &ComponentMetrics = &self.component.metrics;
        metrics.labels.error("plugin_event_failed", "processing");
        if let Some(suppressed) = self.errors.admit() {
            tracing::warn!(component = %self.component.id, suppressed, "plugin failed an event: {message}");
        }
        annotate(
            &mut event.value,
            &Dropped {
                reason: "error",
                message,
                component_id: &self.component.id,
                component_type: "plugin",
                component_kind: ComponentKind::Transform,
                response: None,
            },
        );
        self.emitted.push_to(DROPPED, event);
    }

    /// Kills the broken plugin, queues what was in flight to be sent again (or, after
    /// [`MAX_ATTEMPTS`], to `dropped`), and starts a new process.
    async fn restart(
        &mut self,
        mut session: Session,
        Broken(why): Broken,
    ) -> Result<Session, siemflow_core::external::StartError> {
        session.process.kill().await;
        let stderr = session.process.stderr_text().await;
        tracing::error!(component = %self.component.id, reason = %why, "plugin failed; its stderr ends with:\n{stderr}");
        self.component
            .metrics
            .labels
            .error("plugin_failed", "processing");
        let mut lost = Vec::new();
        let queued: Vec<Pending> = self.resend.drain(..).collect();
        for mut pending in queued.into_iter().chain(self.in_flight.drain()) {
            pending.attempts += 1;
            if pending.attempts < MAX_ATTEMPTS {
                self.supervisor.metrics.resent.increment(1);
                self.resend.push_back(pending);
            } else if pending.events.len() > 1 {
                // Bisect: each half gets one more try, so a poison event is isolated in
                // a few restarts while the innocent events of its batch get through.
                let second = pending.events.split_off(pending.events.len() / 2);
                for events in [pending.events, second] {
                    self.supervisor.metrics.resent.increment(1);
                    self.resend.push_back(Pending {
                        events,
                        attempts: MAX_ATTEMPTS - 1,
                    });
                }
            } else {
                lost.push(pending);
            }
        }
        let message =
            format!("the plugin died or hung on this event {MAX_ATTEMPTS} times (last: {why})");
        for pending in lost {
            for event in pending.events {
                self.fail(event, &message);
            }
        }
        self.outputs.send_emitted(&mut self.emitted).await;
        self.supervisor.restart(&why).await
    }
}
