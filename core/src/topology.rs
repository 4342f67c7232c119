//! The running pipeline: builds components, wires their outputs to their consumers'
//! buffers, replaces only what changed on reload, and drains on shutdown.
//!
//! Wiring lives in one place: every output's consumer list ([`Targets`]) is shared
//! between the producing task and this struct, so rewiring never restarts a producer.
//! A finished component clears its lists; a consumer's buffer closes when no list holds
//! it any more, so a finished source drains the whole pipeline behind it.
//!
//! A reload stops the replaced components the same way: each is unwired from the outputs
//! of the components that stay, which are paused meanwhile, so their batches wait for the
//! successor instead of finding no consumer. The stopped components drain what they
//! hold into whatever they feed; then the successors are wired in and the pause lifts.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::{mpsc, watch};
use tokio::task::{AbortHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::api::{Health, HealthRegistry};
use crate::buffer::{self, BufferConfig, BufferReceiver, BufferSender, WeakBufferSender};
use crate::config::{Component, Config};
use crate::fanout::{Output, Outputs, Targets};
use crate::metrics::{ComponentKind, ComponentLabels, ComponentMetrics};
use crate::plugin::{
    BoxFuture, ComponentContext, SinkContext, SourceContext, Transform, TransformConfig,
    TransformContext, TransformOutputs,
};
use crate::registry::PluginConfig;

/// Events a transform's input buffer holds; small, since a transform keeps up or
/// pushes back on its producers.
const TRANSFORM_BUFFER_EVENTS: usize = 500;

/// How long an aborted component gets to unwind before a reload moves on without it.
const ABORT_GRACE: Duration = Duration::from_secs(5);

struct Running {
    kind: ComponentKind,
    fingerprint: String,
    generation: u64,
    stop_reading: CancellationToken,
    abort: AbortHandle,
    done: watch::Receiver<bool>,
}

/// A component built but not yet wired or started.
struct Prepared {
    id: String,
    kind: ComponentKind,
    fingerprint: String,
    task: BoxFuture<anyhow::Result<()>>,
    input: Option<BufferSender>,
    outputs: Vec<(String, Targets)>,
    closers: Outputs,
    stop_reading: CancellationToken,
    health: Health,
}

/// How a component task ended.
#[derive(Debug)]
pub struct Exit {
    /// The component.
    pub id: String,
    /// Its result; `Err` for an error or a panic.
    pub result: anyhow::Result<()>,
}

/// What a reload changed.
#[derive(Debug, Default, PartialEq)]
pub struct ReloadSummary {
    /// Components started for the first time.
    pub added: Vec<String>,
    /// Components stopped and started again with their new config.
    pub replaced: Vec<String>,
    /// Components stopped for good.
    pub removed: Vec<String>,
}

/// The pipeline while it runs.
pub struct Topology {
    config: Config,
    health: HealthRegistry,
    running: BTreeMap<String, Running>,
    targets: BTreeMap<String, Targets>,
    inputs: BTreeMap<String, WeakBufferSender>,
    abort: CancellationToken,
    generation: u64,
    exits_tx: mpsc::UnboundedSender<(String, u64, anyhow::Result<()>)>,
    exits_rx: mpsc::UnboundedReceiver<(String, u64, anyhow::Result<()>)>,
}

impl Topology {
    /// Builds and starts every component of `config`.
    pub fn start(config: Config, health: HealthRegistry) -> anyhow::Result<Topology> {
        let (exits_tx, exits_rx) = mpsc::unbounded_channel();
        let mut topology = Topology {
            config,
            health,
            running: BTreeMap::new(),
            targets: BTreeMap::new(),
            inputs: BTreeMap::new(),
            abort: CancellationToken::new(),
            generation: 0,
            exits_tx,
            exits_rx,
        };
        let ids: Vec<String> = topology.config.components.keys().cloned().collect();
        let prepared = topology.prepare(&topology.config, &ids)?;
        topology.launch(prepared);
        Ok(topology)
    }

    /// The configuration running now.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Ids of the components still running.
    pub fn running(&self) -> Vec<String> {
        self.running.keys().cloned().collect()
    }

    fn labels(component: &Component) -> ComponentLabels {
        ComponentLabels {
            id: component.id.clone(),
            kind: component.kind,
            type_name: component.type_name.clone(),
        }
    }

    /// Builds the given components of `config` without starting or wiring them.
    fn prepare(&self, config: &Config, ids: &[String]) -> anyhow::Result<Vec<Prepared>> {
        let mut prepared = Vec::new();
        for id in ids {
            let Some(component) = config.components.get(id) else {
                continue;
            };
            let labels = Self::labels(component);
            let context = ComponentContext {
                id: id.clone(),
                state_dir: config.state_dir(id),
                metrics: ComponentMetrics::new(labels.clone()),
            };
            let mut outputs = vec![(id.clone(), None)];
            outputs.extend(
                component
                    .plugin
                    .outputs()
                    .into_iter()
                    .map(|name| (format!("{id}.{name}"), Some(name))),
            );
            let targets: Vec<(String, Targets)> = outputs
                .iter()
                .map(|(key, _)| (key.clone(), Targets::default()))
                .collect();
            let built: Vec<Output> = outputs
                .iter()
                .zip(&targets)
                .map(|((_, name), (_, t))| Output::new(name.clone(), t.clone(), &labels))
                .collect();
            let closers = Outputs {
                default: built[0].clone(),
                named: built[1..].to_vec(),
            };
            let stop_reading = CancellationToken::new();
            let health = self.health.handle(id, component.kind);
            let (task, input) = match &component.plugin {
                PluginConfig::Source(source) => {
                    let cx = SourceContext {
                        component: context,
                        out: closers.default.clone(),
                        shutdown: stop_reading.clone(),
                    };
                    let task = source
                        .build(cx)
                        .with_context(|| format!("cannot start source `{id}`"))?;
                    (task, None)
                }
                PluginConfig::Transform(transform) => {
                    let buffer_config = BufferConfig {
                        max_events: TRANSFORM_BUFFER_EVENTS,
                        ..BufferConfig::default()
                    };
                    let (sender, receiver) = buffer::channel(&buffer_config, &labels);
                    let cx = TransformContext { component: context };
                    let task = transform_task(transform.as_ref(), &cx, receiver, closers.clone())
                        .with_context(|| format!("cannot start transform `{id}`"))?;
                    (task, Some(sender))
                }
                PluginConfig::Sink(sink) => {
                    let (sender, receiver) =
                        buffer::open(&component.buffer, &labels, &context.state_dir, &health)
                            .with_context(|| format!("cannot open the buffer of sink `{id}`"))?;
                    let cx = SinkContext {
                        component: context,
                        input: receiver,
                        outputs: closers.named.clone(),
                        health: health.clone(),
                        abort: self.abort.clone(),
                    };
                    let task = sink
                        .build(cx)
                        .with_context(|| format!("cannot start sink `{id}`"))?;
                    (task, Some(sender))
                }
            };
            prepared.push(Prepared {
                id: id.clone(),
                kind: component.kind,
                fingerprint: component.fingerprint.clone(),
                task,
                input,
                outputs: targets,
                closers,
                stop_reading,
                health,
            });
        }
        Ok(prepared)
    }

    /// Wires prepared components in beside everything running now and starts them; edges
    /// between two running components already exist.
    fn launch(&mut self, prepared: Vec<Prepared>) {
        if prepared.is_empty() {
            return;
        }
        // Strong senders for every consumer while wiring, so no buffer closes midway.
        let mut senders: BTreeMap<String, BufferSender> = self
            .running
            .keys()
            .filter_map(|id| Some((id.clone(), self.inputs.get(id)?.upgrade()?)))
            .collect();
        let new_ids: BTreeSet<String> = prepared.iter().map(|p| p.id.clone()).collect();
        for p in &prepared {
            for (key, targets) in &p.outputs {
                self.targets.insert(key.clone(), targets.clone());
            }
            if let Some(sender) = &p.input {
                self.inputs.insert(p.id.clone(), sender.downgrade());
                senders.insert(p.id.clone(), sender.clone());
            }
        }
        for component in self.config.components.values() {
            let Some(sender) = senders.get(&component.id) else {
                continue;
            };
            for input in &component.inputs {
                let fresh = new_ids.contains(&component.id) || new_ids.contains(&input.component);
                if !fresh {
                    continue;
                }
                if let Some(targets) = self.targets.get(&input.to_string()) {
                    targets.attach(&component.id, sender.clone());
                }
            }
        }
        for p in prepared {
            self.spawn(p);
        }
    }

    fn spawn(&mut self, p: Prepared) {
        self.generation += 1;
        let generation = self.generation;
        let (done_tx, done_rx) = watch::channel(false);
        p.health.activate();
        let inner = tokio::spawn(p.task);
        let abort = inner.abort_handle();
        let exits = self.exits_tx.clone();
        let health = p.health;
        let closers = p.closers;
        let id = p.id.clone();
        tokio::spawn(async move {
            let result = match inner.await {
                Ok(result) => result,
                Err(e) if e.is_panic() => Err(anyhow::anyhow!("component panicked: {e}")),
                Err(_) => Err(anyhow::anyhow!("component was aborted")),
            };
            closers.close();
            health.deregister();
            let _ = done_tx.send(true);
            let _ = exits.send((id, generation, result));
        });
        drop(p.input);
        self.running.insert(
            p.id,
            Running {
                kind: p.kind,
                fingerprint: p.fingerprint,
                generation,
                stop_reading: p.stop_reading,
                abort,
                done: done_rx,
            },
        );
    }

    /// The next component that ended; `None` once nothing runs any more.
    pub async fn next_exit(&mut self) -> Option<Exit> {
        loop {
            if self.running.is_empty() {
                return None;
            }
            let (id, generation, result) = self.exits_rx.recv().await?;
            if self
                .running
                .get(&id)
                .is_some_and(|r| r.generation == generation)
            {
                self.running.remove(&id);
                self.inputs.remove(&id);
                return Some(Exit { id, result });
            }
        }
    }

    /// Unwires the components in `stopping` from the outputs of every other component and
    /// pauses those outputs; returns each with the stopping consumers it fed.
    ///
    /// Edges between two stopping components stay, so a stopping chain drains in order:
    /// the upstream one finishes, clears its outputs, and that closes the next one's input.
    fn unwire_paused(&self, stopping: &BTreeSet<String>) -> Vec<(Targets, BTreeSet<String>)> {
        let mut paused = Vec::new();
        for (key, targets) in &self.targets {
            let owner = key.split_once('.').map_or(key.as_str(), |(owner, _)| owner);
            if stopping.contains(owner) {
                continue;
            }
            let fed: BTreeSet<String> = stopping
                .iter()
                .filter(|id| targets.feeds(id))
                .cloned()
                .collect();
            if fed.is_empty() {
                continue;
            }
            // Paused before unwiring, so no batch sees the output without its consumer.
            targets.set_paused(true);
            for id in &fed {
                targets.detach(id);
            }
            paused.push((targets.clone(), fed));
        }
        paused
    }

    /// Signals components to stop; returns a set that yields each id as it finishes,
    /// aborting what is left at `deadline`.
    fn stop_components(&mut self, ids: &[String], deadline: Duration) -> JoinSet<String> {
        let until = tokio::time::Instant::now() + deadline;
        let mut finishing = JoinSet::new();
        for id in ids {
            let Some(mut running) = self.running.remove(id) else {
                continue;
            };
            self.inputs.remove(id);
            running.stop_reading.cancel();
            let id = id.clone();
            finishing.spawn(async move {
                let drained = tokio::time::timeout_at(until, running.done.wait_for(|d| *d))
                    .await
                    .is_ok();
                if !drained {
                    tracing::warn!(component = %id, "did not drain in time; aborted (unacknowledged events will be re-read)");
                    running.abort.abort();
                    // The abort lands at the task's next await; its outputs close then.
                    let _ = tokio::time::timeout(ABORT_GRACE, running.done.wait_for(|d| *d)).await;
                }
                id
            });
        }
        finishing
    }

    /// Applies a new configuration: components whose definition changed are replaced,
    /// new ones started, missing ones stopped, the rest keep running untouched. If any
    /// new component cannot be built, nothing changes and the error is returned.
    ///
    /// A replaced component's successor starts once the old one has drained — at most
    /// `shutdown_timeout`, after which the old one is aborted and what it held is failed
    /// back to its sources. Outputs that fed it hold their batches meanwhile (their
    /// producers wait, as for a full buffer), so nothing is settled that no sink
    /// delivered; an output that the new configuration leaves without a consumer discards
    /// only after that.
    pub async fn reload(&mut self, new: Config) -> anyhow::Result<ReloadSummary> {
        let mut summary = ReloadSummary::default();
        for (id, component) in &new.components {
            match self.running.get(id) {
                None => summary.added.push(id.clone()),
                Some(r) if r.fingerprint != component.fingerprint || r.kind != component.kind => {
                    summary.replaced.push(id.clone())
                }
                Some(_) => {}
            }
        }
        summary.removed = self
            .running
            .keys()
            .filter(|id| !new.components.contains_key(*id))
            .cloned()
            .collect();
        let to_start: Vec<String> = summary
            .added
            .iter()
            .chain(&summary.replaced)
            .cloned()
            .collect();
        let prepared = self.prepare(&new, &to_start)?;
        let to_stop: Vec<String> = summary
            .replaced
            .iter()
            .chain(&summary.removed)
            .cloned()
            .collect();
        let stopping: BTreeSet<String> = to_stop.iter().cloned().collect();
        // Hold the kept consumers open while their producers are swapped.
        let held: Vec<BufferSender> = self
            .running
            .keys()
            .filter(|id| !stopping.contains(*id))
            .filter_map(|id| self.inputs.get(id)?.upgrade())
            .collect();
        let mut paused = self.unwire_paused(&stopping);
        let mut finishing = self.stop_components(&to_stop, new.shutdown_timeout);
        self.config = new;

        // New components start at once; a successor waits for its predecessor, one by
        // one, so a replaced chain never blocks on a part that has not drained yet.
        let (mut successors, fresh): (Vec<Prepared>, Vec<Prepared>) =
            prepared.into_iter().partition(|p| stopping.contains(&p.id));
        self.launch(fresh);
        while let Some(finished) = finishing.join_next().await {
            let Ok(id) = finished else { continue };
            self.targets
                .retain(|key, _| key != &id && !key.starts_with(&format!("{id}.")));
            if let Some(at) = successors.iter().position(|p| p.id == id) {
                let successor = successors.swap_remove(at);
                self.launch(vec![successor]);
            }
            paused.retain_mut(|(targets, fed)| {
                fed.remove(&id);
                if fed.is_empty() {
                    targets.set_paused(false);
                }
                !fed.is_empty()
            });
        }
        // Only reached if a stop task itself failed; never leave an output paused.
        self.launch(successors);
        for (targets, _) in paused {
            targets.set_paused(false);
        }
        drop(held);
        Ok(summary)
    }

    /// Stops the sources and waits up to `deadline` for everything in flight to be
    /// delivered. Returns false when it had to abort what was left.
    pub async fn shutdown(&mut self, deadline: Duration) -> bool {
        for running in self.running.values() {
            if running.kind == ComponentKind::Source {
                running.stop_reading.cancel();
            }
        }
        let drained = tokio::time::timeout(deadline, async {
            while let Some(exit) = self.next_exit().await {
                if let Err(e) = exit.result {
                    tracing::error!(component = %exit.id, error = %format!("{e:#}"), "component failed while draining");
                }
            }
        })
        .await
        .is_ok();
        if !drained {
            self.abort_all();
        }
        drained
    }

    /// Ends every component at once (second signal, or the deadline passed).
    pub fn abort_all(&mut self) {
        self.abort.cancel();
        for (id, running) in std::mem::take(&mut self.running) {
            tracing::warn!(component = %id, "aborted");
            running.abort.abort();
        }
    }
}

/// The task that runs a transform between its input and its outputs, in whichever form
/// it is built: its own task ([`TransformConfig::build_task`]) or a synchronous
/// [`Transform`] driven here.
pub fn transform_task(
    config: &dyn TransformConfig,
    cx: &TransformContext,
    input: BufferReceiver,
    outputs: Outputs,
) -> anyhow::Result<BoxFuture<anyhow::Result<()>>> {
    if let Some(task) = config.build_task(cx) {
        return Ok(task?(input, outputs));
    }
    let built = config.build(cx)?;
    Ok(Box::pin(run_transform(
        built,
        input,
        outputs,
        config.outputs(),
    )))
}

async fn run_transform(
    mut transform: Box<dyn Transform>,
    mut input: BufferReceiver,
    outputs: Outputs,
    names: Vec<String>,
) -> anyhow::Result<()> {
    let mut emitted = TransformOutputs::new(&names);
    while let Some(batch) = input.recv().await {
        transform.transform(batch, &mut emitted);
        outputs.send_emitted(&mut emitted).await;
    }
    transform.finish(&mut emitted);
    outputs.send_emitted(&mut emitted).await;
    Ok(())
}
