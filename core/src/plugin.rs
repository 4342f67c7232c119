//! The plugin contract: a config struct per plugin that builds a running component.

use std::fmt::Debug;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use tokio_util::sync::CancellationToken;

use crate::api::Health;
use crate::buffer::BufferReceiver;
use crate::event::{Batch, Event};
use crate::fanout::{Output, Outputs};
use crate::metrics::ComponentMetrics;

/// A boxed, sendable future: what sources and sinks run as.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A problem a plugin found in its own (already well-typed) configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigIssue {
    /// The key at fault, as a dotted path inside the component's table.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
    /// What would be valid.
    pub hint: Option<String>,
}

impl ConfigIssue {
    /// An issue about one key.
    pub fn new(key: &str, message: impl Into<String>) -> Self {
        ConfigIssue {
            key: Some(key.to_string()),
            message: message.into(),
            hint: None,
        }
    }

    /// Adds what would be valid.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// What every running component is given.
#[derive(Clone)]
pub struct ComponentContext {
    /// The component id from the config.
    pub id: String,
    /// `data_dir/<id>`: where the component keeps its state (created on demand).
    pub state_dir: PathBuf,
    /// Its metric handles.
    pub metrics: ComponentMetrics,
}

impl ComponentContext {
    /// The state folder, created if missing.
    pub fn ensure_state_dir(&self) -> anyhow::Result<PathBuf> {
        use anyhow::Context as _;
        std::fs::create_dir_all(&self.state_dir).with_context(|| {
            format!(
                "cannot create the state folder {}",
                self.state_dir.display()
            )
        })?;
        Ok(self.state_dir.clone())
    }
}

/// What a source is given to run.
pub struct SourceContext {
    /// Id, state folder, metrics.
    pub component: ComponentContext,
    /// Where its events go.
    pub out: Output,
    /// Cancelled when the source must stop reading (shutdown or reload). A source then
    /// waits for the acknowledgements it still expects, saves its checkpoint and returns.
    pub shutdown: CancellationToken,
}

/// What a sink is given to run.
pub struct SinkContext {
    /// Id, state folder, metrics.
    pub component: ComponentContext,
    /// Its buffer: the sink runs until this yields `None`, then flushes and returns.
    pub input: BufferReceiver,
    /// Named outputs the sink declared (e.g. `dead_letter`).
    pub outputs: Vec<Output>,
    /// Report healthy or not; `/ready` shows it.
    pub health: Health,
    /// Cancelled when the process must stop at once (second signal, deadline passed).
    pub abort: CancellationToken,
}

impl SinkContext {
    /// The named output, if the sink declared it.
    pub fn output(&self, name: &str) -> Option<&Output> {
        self.outputs.iter().find(|o| o.name() == Some(name))
    }
}

/// What a transform is given when it is built.
pub struct TransformContext {
    /// Id, state folder, metrics.
    pub component: ComponentContext,
}

/// The configuration of a source plugin.
pub trait SourceConfig: Debug + Send + Sync {
    /// Problems serde cannot see (conflicting options, bad values).
    fn check(&self) -> Vec<ConfigIssue> {
        Vec::new()
    }
    /// Builds the task that reads and emits events until it finishes or is stopped.
    fn build(&self, cx: SourceContext) -> anyhow::Result<BoxFuture<anyhow::Result<()>>>;
    /// The options of an external plugin (`siemflow validate` starts it to check them
    /// against the schema it publishes); `None` for every built-in component.
    fn external(&self) -> Option<&crate::external::ExternalConfig> {
        None
    }
}

/// The configuration of a transform plugin.
pub trait TransformConfig: Debug + Send + Sync {
    /// Named outputs beside the default one (addressed `id.name`).
    fn outputs(&self) -> Vec<String> {
        Vec::new()
    }
    /// False for a transform that only emits on named outputs (`route`).
    fn has_default_output(&self) -> bool {
        true
    }
    /// Problems serde cannot see (a VRL program that does not compile, say).
    fn check(&self) -> Vec<ConfigIssue> {
        Vec::new()
    }
    /// Builds the transform.
    fn build(&self, cx: &TransformContext) -> anyhow::Result<Box<dyn Transform>>;
    /// Builds the transform as its own async task instead, for a transform that awaits
    /// (an external plugin keeps several batches in flight). `None`, the default: the
    /// engine runs the synchronous transform of [`TransformConfig::build`].
    fn build_task(&self, _cx: &TransformContext) -> Option<anyhow::Result<TransformTask>> {
        None
    }
    /// The options of an external plugin (`siemflow validate` starts it to check them
    /// against the schema it publishes); `None` for every built-in component.
    fn external(&self) -> Option<&crate::external::ExternalConfig> {
        None
    }
}

/// A transform run as a task: it reads its input until it closes, sends what it emits
/// to its outputs, and settles or forwards every event it takes (as [`Transform`] does).
pub type TransformTask =
    Box<dyn FnOnce(BufferReceiver, Outputs) -> BoxFuture<anyhow::Result<()>> + Send>;

/// The configuration of a sink plugin.
pub trait SinkConfig: Debug + Send + Sync {
    /// Named outputs (e.g. `dead_letter`).
    fn outputs(&self) -> Vec<String> {
        Vec::new()
    }
    /// Problems serde cannot see.
    fn check(&self) -> Vec<ConfigIssue> {
        Vec::new()
    }
    /// Builds the task that delivers what arrives on `cx.input`.
    fn build(&self, cx: SinkContext) -> anyhow::Result<BoxFuture<anyhow::Result<()>>>;
    /// The options of an external plugin (`siemflow validate` starts it to check them
    /// against the schema it publishes); `None` for every built-in component.
    fn external(&self) -> Option<&crate::external::ExternalConfig> {
        None
    }
}

/// A synchronous event transform; the engine runs it in its own task.
pub trait Transform: Send {
    /// Handles one batch. Every event must end in `out` or be settled with
    /// [`Event::deliver`] when dropped on purpose; an event simply let go counts as failed.
    fn transform(&mut self, batch: Batch, out: &mut TransformOutputs);

    /// Called once when the input is closed, before the outputs close.
    fn finish(&mut self, _out: &mut TransformOutputs) {}
}

/// Where a transform puts what it emits during one call.
pub struct TransformOutputs {
    /// Events for the default output.
    pub default: Vec<Event>,
    named: Vec<(String, Vec<Event>)>,
}

impl TransformOutputs {
    /// Empty outputs for these named ports.
    pub fn new(names: &[String]) -> Self {
        TransformOutputs {
            default: Vec::new(),
            named: names.iter().map(|n| (n.clone(), Vec::new())).collect(),
        }
    }

    /// Emits on the default output.
    pub fn push(&mut self, event: Event) {
        self.default.push(event);
    }

    /// Emits on a named output; an undeclared name is a plugin bug and fails the event.
    pub fn push_to(&mut self, name: &str, event: Event) {
        match self.named.iter_mut().find(|(n, _)| n == name) {
            Some((_, events)) => events.push(event),
            None => {
                tracing::error!(output = name, "transform emitted to an undeclared output");
                drop(event);
            }
        }
    }

    /// Takes what was emitted: the default output's events, then each named output's.
    pub fn drain(&mut self) -> (Vec<Event>, Vec<(usize, Vec<Event>)>) {
        let default = std::mem::take(&mut self.default);
        let named = self
            .named
            .iter_mut()
            .enumerate()
            .filter(|(_, (_, events))| !events.is_empty())
            .map(|(i, (_, events))| (i, std::mem::take(events)))
            .collect();
        (default, named)
    }
}

impl Outputs {
    /// Sends what a transform emitted to the matching outputs.
    pub async fn send_emitted(&self, out: &mut TransformOutputs) {
        let (default, named) = out.drain();
        self.default.send(default).await;
        for (index, events) in named {
            if let Some(output) = self.named.get(index) {
                output.send(events).await;
            }
        }
    }
}
