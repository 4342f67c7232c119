//! `route`: sends each event to every named output whose VRL condition it matches
//! (Vector-compatible).

mod config;
#[cfg(test)]
mod tests;

pub use config::RouteConfig;

use siemflow_core::metrics::ComponentLabels;
use siemflow_core::{Batch, Event, Transform, TransformOutputs};

use crate::condition::{Condition, ConditionErrors};

/// The output for events that match no route.
pub const UNMATCHED: &str = "_unmatched";

struct NamedRoute {
    name: String,
    condition: Condition,
}

/// The running router.
pub struct Router {
    routes: Vec<NamedRoute>,
    reroute_unmatched: bool,
    /// Indexes of the routes the current event matched; kept to reuse its allocation.
    matched: Vec<usize>,
    errors: ConditionErrors,
    labels: ComponentLabels,
}

impl Router {
    fn route(&mut self, mut event: Event, out: &mut TransformOutputs) -> bool {
        self.matched.clear();
        for (index, route) in self.routes.iter_mut().enumerate() {
            match route.condition.matches(&mut event.value) {
                Ok(true) => self.matched.push(index),
                Ok(false) => {}
                Err(message) => self.errors.record(&route.name, &message),
            }
        }
        let Some((&last, others)) = self.matched.split_last() else {
            if self.reroute_unmatched {
                out.push_to(UNMATCHED, event);
                return true;
            }
            event.deliver();
            return false;
        };
        for &index in others {
            // Each copy carries its own share of the acknowledgement.
            out.push_to(&self.routes[index].name, event.clone());
        }
        out.push_to(&self.routes[last].name, event);
        true
    }
}

impl Transform for Router {
    fn transform(&mut self, batch: Batch, out: &mut TransformOutputs) {
        let mut unmatched_dropped = 0u64;
        for event in batch {
            if !self.route(event, out) {
                unmatched_dropped += 1;
            }
        }
        if unmatched_dropped > 0 {
            self.labels.discarded("unmatched", unmatched_dropped);
        }
    }
}
