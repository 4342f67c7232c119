//! The `dead_letter` output: events that can never be delivered, annotated with why.

use crate::dropped::{Dropped, annotate};
use crate::event::Event;
use crate::fanout::Output;
use crate::metrics::ComponentKind;

use super::batcher::Item;
use super::failure::Rejection;
use super::metrics::DeadLetterMetrics;

/// The name of the output every delivering sink declares.
pub const DEAD_LETTER: &str = "dead_letter";

/// Sends rejected events to the sink's `dead_letter` output (`<sink id>.dead_letter`).
#[derive(Clone)]
pub struct DeadLetter {
    output: Option<Output>,
    metrics: DeadLetterMetrics,
}

impl DeadLetter {
    /// The dead-letter output of a sink; `output` is `cx.output(DEAD_LETTER)`.
    pub fn new(output: Option<Output>, metrics: DeadLetterMetrics) -> Self {
        DeadLetter { output, metrics }
    }

    /// [`DeadLetter::send_events`] for encoded items (their encoded form is dropped).
    pub async fn send(&self, items: Vec<Item>, rejection: &Rejection) {
        let events = items.into_iter().map(|item| item.event).collect();
        self.send_events(events, rejection).await;
    }

    /// Annotates each event with `metadata.dropped`, counts them, logs the reason once
    /// and sends them on. The events keep their acknowledgements: whatever consumes
    /// `dead_letter` settles them (with no consumer they are counted and settled).
    pub async fn send_events(&self, mut events: Vec<Event>, rejection: &Rejection) {
        if events.is_empty() {
            return;
        }
        let labels = self.metrics.labels();
        let count = events.len() as u64;
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
        for event in &mut events {
            annotate(&mut event.value, &dropped);
        }
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
