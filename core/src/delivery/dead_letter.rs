//! The `dead_letter` output: events that can never be delivered, annotated with why.

use crate::dropped::{Dropped, annotate};
use crate::fanout::Output;
use crate::metrics::ComponentKind;

use super::batcher::Item;
use super::failure::Rejection;
use super::metrics::DeliveryMetrics;

/// The name of the output every delivering sink declares.
pub const DEAD_LETTER: &str = "dead_letter";

/// Sends rejected events to the sink's `dead_letter` output (`<sink id>.dead_letter`).
#[derive(Clone)]
pub struct DeadLetter {
    output: Option<Output>,
    metrics: DeliveryMetrics,
}

impl DeadLetter {
    /// The dead-letter output of a sink; `output` is `cx.output(DEAD_LETTER)`.
    pub fn new(output: Option<Output>, metrics: DeliveryMetrics) -> Self {
        DeadLetter { output, metrics }
    }

    /// Annotates each event with `metadata.dropped`, counts them, logs the reason once
    /// and sends them on. The events keep their acknowledgements: whatever consumes
    /// `dead_letter` settles them (with no consumer they are counted and settled).
    pub async fn send(&self, items: Vec<Item>, rejection: &Rejection) {
        if items.is_empty() {
            return;
        }
        let labels = self.metrics.labels();
        let count = items.len() as u64;
        self.metrics.dead_lettered(&rejection.reason, count);
        tracing::warn!(
            component = %labels.id,
            events = count,
            reason = %rejection.reason,
            message = %rejection.message,
            status = rejection.response.as_ref().map(|r| r.status),
            "events can never be delivered; sent to the dead_letter output"
        );
        let dropped = Dropped {
            reason: &rejection.reason,
            message: &rejection.message,
            component_id: &labels.id,
            component_type: &labels.type_name,
            component_kind: ComponentKind::Sink,
            response: rejection.response.as_ref(),
        };
        let events = items
            .into_iter()
            .map(|mut item| {
                annotate(&mut item.event.value, &dropped);
                item.event
            })
            .collect();
        match &self.output {
            Some(output) => output.send(events).await,
            None => {
                // A sink that does not declare the output: nothing can take them, and
                // failing them would only have the source re-read them forever.
                crate::event::resolve_batch(events, crate::BatchStatus::Delivered);
            }
        }
    }
}
