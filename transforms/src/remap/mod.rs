//! `remap`: rewrites events with a VRL program. A failing event is never lost: it goes
//! on unmodified, or to the `dropped` output annotated with why.

mod annotation;
mod config;
#[cfg(test)]
mod tests;

pub use config::RemapConfig;

use metrics::Counter;
use siemflow_core::plugin::ComponentContext;
use siemflow_core::{Batch, Event, Transform, TransformOutputs};
use vrl::compiler::runtime::Terminate;
use vrl::compiler::{Program, TimeZone};
use vrl::value::Value;

use self::annotation::{FailureReason, annotate_dropped};
use crate::error_log::RateLimitedLog;
use crate::vrl_program::{VrlRunner, failure_message};

/// The named output for events the program failed on.
pub const DROPPED: &str = "dropped";

/// What happens to an event whose program failed.
#[derive(Debug, Clone, Copy)]
pub struct FailurePolicy {
    /// Drop (or reroute) on a runtime error instead of passing the original on.
    pub drop_on_error: bool,
    /// Drop (or reroute) on `abort` instead of passing the original on.
    pub drop_on_abort: bool,
    /// Dropped events go to the `dropped` output rather than being discarded.
    pub reroute_dropped: bool,
}

impl FailurePolicy {
    fn drops(self, reason: FailureReason) -> bool {
        match reason {
            FailureReason::Error => self.drop_on_error,
            FailureReason::Abort => self.drop_on_abort,
        }
    }

    /// True when a failure for this reason emits the event (on either output), which
    /// then must be the original, unmodified one.
    fn forwards(self, reason: FailureReason) -> bool {
        !self.drops(reason) || self.reroute_dropped
    }
}

/// The running remap.
pub struct Remap {
    runner: VrlRunner,
    policy: FailurePolicy,
    /// Copy each event before running the program: only when a failure could need the
    /// original, since the copy costs on the hot path.
    keep_original: bool,
    component_id: String,
    errors: Counter,
    discarded_error: Counter,
    discarded_abort: Counter,
    discarded_empty: Counter,
    error_log: RateLimitedLog,
    abort_log: RateLimitedLog,
}

impl Remap {
    /// A remap running `program`.
    pub fn new(
        program: Program,
        timezone: TimeZone,
        policy: FailurePolicy,
        component: &ComponentContext,
    ) -> Self {
        let info = program.info();
        // A root that may end up neither an object nor an array of objects is an error
        // found only after the program ran.
        let root = program
            .final_type_info()
            .state
            .external
            .target_kind()
            .clone();
        let may_error = info.fallible || !root.is_object();
        let keep_original = (may_error && policy.forwards(FailureReason::Error))
            || (info.abortable && policy.forwards(FailureReason::Abort));
        let labels = &component.metrics.labels;
        let discarded =
            |reason| labels.counter("component_discarded_events_total", &[("reason", reason)]);
        Remap {
            runner: VrlRunner::new(program, timezone),
            policy,
            keep_original,
            component_id: component.id.clone(),
            errors: labels.counter(
                "component_errors_total",
                &[("error_type", "remap_failed"), ("stage", "processing")],
            ),
            discarded_error: discarded("error"),
            discarded_abort: discarded("abort"),
            discarded_empty: discarded("empty_array"),
            error_log: RateLimitedLog::default(),
            abort_log: RateLimitedLog::default(),
        }
    }

    fn process(&mut self, mut event: Event, out: &mut TransformOutputs) {
        let original = self.keep_original.then(|| event.value.clone());
        match self.runner.run(&mut event.value) {
            Ok(_) => self.emit(event, original, out),
            Err(terminate) => {
                let reason = match terminate {
                    Terminate::Abort(_) => FailureReason::Abort,
                    Terminate::Error(_) | Terminate::Interrupted => FailureReason::Error,
                };
                self.fail(event, original, reason, failure_message(&terminate), out);
            }
        }
    }

    /// Emits what a successful run left in the event: one object, or one event per
    /// object of an array.
    fn emit(&mut self, mut event: Event, original: Option<Value>, out: &mut TransformOutputs) {
        match &mut event.value {
            Value::Object(_) => out.push(event),
            Value::Array(items) if items.iter().all(Value::is_object) => {
                if items.is_empty() {
                    self.discarded_empty.increment(1);
                }
                for item in std::mem::take(items) {
                    // Every new event carries its own share of the source's acknowledgement.
                    out.push(Event {
                        value: item,
                        ack: event.ack.clone(),
                    });
                }
                event.deliver();
            }
            other => {
                let message = format!(
                    "the program set the event to {}; it must be an object or an array of objects",
                    other.kind_str()
                );
                self.fail(event, original, FailureReason::Error, message, out);
            }
        }
    }

    fn fail(
        &mut self,
        mut event: Event,
        original: Option<Value>,
        reason: FailureReason,
        message: String,
        out: &mut TransformOutputs,
    ) {
        self.record(reason, &message);
        let drop = self.policy.drops(reason);
        if !drop || self.policy.reroute_dropped {
            match original {
                Some(original) => event.value = original,
                None => tracing::debug!(
                    component_id = %self.component_id,
                    "no copy of the original event was kept; forwarding it as the program left it"
                ),
            }
        }
        if !drop {
            out.push(event);
        } else if self.policy.reroute_dropped {
            annotate_dropped(&mut event.value, reason, message, &self.component_id);
            out.push_to(DROPPED, event);
        } else {
            // The user asked for failing events to be discarded: a deliberate, counted drop.
            match reason {
                FailureReason::Error => self.discarded_error.increment(1),
                FailureReason::Abort => self.discarded_abort.increment(1),
            }
            event.deliver();
        }
    }

    fn record(&mut self, reason: FailureReason, message: &str) {
        match reason {
            FailureReason::Error => {
                self.errors.increment(1);
                if let Some(suppressed) = self.error_log.admit() {
                    tracing::warn!(
                        component_id = %self.component_id,
                        error = message,
                        suppressed,
                        "VRL program failed on an event"
                    );
                }
            }
            FailureReason::Abort => {
                // An abort is the program's own decision, so it is not an error.
                if let Some(suppressed) = self.abort_log.admit() {
                    tracing::debug!(
                        component_id = %self.component_id,
                        message,
                        suppressed,
                        "VRL program aborted on an event"
                    );
                }
            }
        }
    }
}

impl Transform for Remap {
    fn transform(&mut self, batch: Batch, out: &mut TransformOutputs) {
        for event in batch {
            self.process(event, out);
        }
    }
}
