//! The running pipeline: builds components, wires their outputs to their consumers'
//! buffers, replaces only what changed on reload, and drains on shutdown.
//!
//! Wiring lives in one place: every output's consumer list ([`Targets`]) is shared
//! between the producing task and this struct, so rewiring never restarts a producer.
//! A finished component clears its lists; a consumer's buffer closes when no list holds
//! it any more, so a finished source drains the whole pipeline behind it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;

use crate::api::{Health, HealthRegistry};
use crate::buffer::{self, BufferConfig, BufferReceiver, BufferSender, WeakBufferSender};
use crate::config::{Component, Config};
use crate::fanout::{Output, Outputs, Targets};
use crate::metrics::{ComponentKind, ComponentLabels, ComponentMetrics};
use crate::plugin::{
    BoxFuture, ComponentContext, SinkContext, SourceContext, Transform, TransformContext,
    TransformOutputs,
};
use crate::registry::PluginConfig;

/// Events a transform's input buffer holds; small, since a transform keeps up or
/// pushes back on its producers.
const TRANSFORM_BUFFER_EVENTS: usize = 500;

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
        topology.launch(prepared, &BTreeSet::new());
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
                .map(|(key, _)| (key.clone(), Arc::new(Mutex::new(Vec::new()))))
                .collect();
            let built: Vec<Output> = outputs
                .iter()
                .zip(&targets)
                .map(|((_, name), (_, t))| Output::new(name.clone(), Arc::clone(t), &labels))
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
                    let built = transform
                        .build(&TransformContext { component: context })
                        .with_context(|| format!("cannot start transform `{id}`"))?;
                    let names = transform.outputs();
                    let task: BoxFuture<anyhow::Result<()>> =
                        Box::pin(run_transform(built, receiver, closers.clone(), names));
                    (task, Some(sender))
                }
                PluginConfig::Sink(sink) => {
                    let (sender, receiver) =
                        buffer::open(&component.buffer, &labels, &context.state_dir)
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

    /// Wires prepared components in and starts them. `kept` are running components that
    /// stay; edges between two kept components already exist.
    fn launch(&mut self, prepared: Vec<Prepared>, kept: &BTreeSet<String>) {
        // Strong senders for every consumer while wiring, so no buffer closes midway.
        let mut senders: BTreeMap<String, BufferSender> = kept
            .iter()
            .filter_map(|id| Some((id.clone(), self.inputs.get(id)?.upgrade()?)))
            .collect();
        let new_ids: BTreeSet<String> = prepared.iter().map(|p| p.id.clone()).collect();
        for p in &prepared {
            for (key, targets) in &p.outputs {
                self.targets.insert(key.clone(), Arc::clone(targets));
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
                if let Some(targets) = self.targets.get(&input.to_string())
                    && let Ok(mut list) = targets.lock()
                {
                    list.retain(|(id, _)| id != &component.id);
                    list.push((component.id.clone(), sender.clone()));
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

    /// Removes `id` from every output's consumer list.
    fn detach(&self, id: &str) {
        for targets in self.targets.values() {
            if let Ok(mut list) = targets.lock() {
                list.retain(|(consumer, _)| consumer != id);
            }
        }
    }

    /// Stops components and waits (up to `deadline`) for each to drain; returns the ids
    /// that had to be aborted.
    async fn stop_components(&mut self, ids: &[String], deadline: Duration) -> Vec<String> {
        let mut waiting = Vec::new();
        for id in ids {
            let Some(running) = self.running.remove(id) else {
                continue;
            };
            self.inputs.remove(id);
            running.stop_reading.cancel();
            self.detach(id);
            waiting.push((id.clone(), running));
        }
        let mut aborted = Vec::new();
        let until = tokio::time::Instant::now() + deadline;
        for (id, mut running) in waiting {
            let finished = tokio::time::timeout_at(until, running.done.wait_for(|d| *d)).await;
            if finished.is_err() {
                tracing::warn!(component = %id, "did not drain in time; aborted (unacknowledged events will be re-read)");
                running.abort.abort();
                aborted.push(id);
            }
        }
        aborted
    }

    /// Applies a new configuration: components whose definition changed are replaced,
    /// new ones started, missing ones stopped, the rest keep running untouched. If any
    /// new component cannot be built, nothing changes and the error is returned.
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
        let kept: BTreeSet<String> = self
            .running
            .keys()
            .filter(|id| !to_stop.contains(id))
            .cloned()
            .collect();
        // Hold the kept consumers open while their producers are swapped.
        let held: Vec<BufferSender> = kept
            .iter()
            .filter_map(|id| self.inputs.get(id)?.upgrade())
            .collect();
        let deadline = new.shutdown_timeout;
        self.stop_components(&to_stop, deadline).await;
        for id in &to_stop {
            self.targets
                .retain(|key, _| key != id && !key.starts_with(&format!("{id}.")));
        }
        self.config = new;
        self.launch(prepared, &kept);
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
