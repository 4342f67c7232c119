//! `filter`: keeps the events that match a VRL condition (Vector-compatible).

mod config;
#[cfg(test)]
mod tests;

pub use config::FilterConfig;

use siemflow_core::metrics::ComponentLabels;
use siemflow_core::{Batch, Transform, TransformOutputs};

use crate::condition::{Condition, ConditionErrors};

/// The running filter.
pub struct Filter {
    condition: Condition,
    errors: ConditionErrors,
    labels: ComponentLabels,
}

impl Transform for Filter {
    fn transform(&mut self, batch: Batch, out: &mut TransformOutputs) {
        let mut filtered = 0u64;
        for mut event in batch {
            let keep = match self.condition.matches(&mut event.value) {
                Ok(matched) => matched,
                Err(message) => {
                    self.errors.record("condition", &message);
                    false
                }
            };
            if keep {
                out.push(event);
            } else {
                // Dropping on purpose is a successful end for the event's acknowledgement.
                event.deliver();
                filtered += 1;
            }
        }
        if filtered > 0 {
            self.labels.discarded("filtered", filtered);
        }
    }
}
