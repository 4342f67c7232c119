//! Helpers shared by the transforms' unit tests.

use serde::de::DeserializeOwned;
use siemflow_core::metrics::{ComponentKind, ComponentLabels, ComponentMetrics};
use siemflow_core::plugin::ComponentContext;
pub use siemflow_core::testing::bodies;
use siemflow_core::{Event, Transform, TransformConfig, TransformContext, TransformOutputs, Value};

/// A built transform with the outputs it declared.
pub struct Built {
    pub transform: Box<dyn Transform>,
    pub outputs: Vec<String>,
}

impl Built {
    /// Runs one batch and returns the default output's events and each named output's.
    pub fn run(&mut self, batch: Vec<Event>) -> Emitted {
        let mut out = TransformOutputs::new(&self.outputs);
        self.transform.transform(batch, &mut out);
        let (default, named) = out.drain();
        Emitted {
            default,
            named: named
                .into_iter()
                .map(|(index, events)| (self.outputs[index].clone(), events))
                .collect(),
        }
    }
}

/// What one call emitted.
pub struct Emitted {
    pub default: Vec<Event>,
    pub named: Vec<(String, Vec<Event>)>,
}

impl Emitted {
    /// The events of one named output (empty when it got none).
    pub fn named(&mut self, name: &str) -> Vec<Event> {
        self.named
            .iter_mut()
            .find(|(n, _)| n == name)
            .map(|(_, events)| std::mem::take(events))
            .unwrap_or_default()
    }
}

/// Parses a config from TOML.
pub fn config<T: DeserializeOwned>(toml_text: &str) -> T {
    toml::from_str(toml_text).expect("config parses")
}

/// A context as the topology builds it.
pub fn context(id: &str, type_name: &str) -> TransformContext {
    let labels = ComponentLabels {
        id: id.to_string(),
        kind: ComponentKind::Transform,
        type_name: type_name.to_string(),
    };
    TransformContext {
        component: ComponentContext {
            id: id.to_string(),
            state_dir: std::env::temp_dir().join(id),
            metrics: ComponentMetrics::new(labels),
        },
    }
}

/// Builds a transform from its TOML config, asserting the config checks clean.
pub fn build<T: TransformConfig + DeserializeOwned>(
    id: &str,
    type_name: &str,
    toml_text: &str,
) -> Built {
    let config: T = config(toml_text);
    assert_eq!(config.check(), Vec::new(), "config checks clean");
    Built {
        transform: config
            .build(&context(id, type_name))
            .expect("transform builds"),
        outputs: config.outputs(),
    }
}

/// An event from JSON text.
pub fn event(json: &str) -> Event {
    Event::new(serde_json::from_str::<Value>(json).expect("valid JSON"))
}

/// Settles every event as a sink would after delivering it.
pub fn deliver_all(events: Vec<Event>) {
    for event in events {
        event.deliver();
    }
}
