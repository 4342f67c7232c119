//! Vector's `metadata.dropped` annotation on events the program could not process; the
//! annotation itself is `siemflow_core::dropped`, shared with the sinks' dead letters.

use siemflow_core::dropped::{Dropped, annotate};
use siemflow_core::metrics::ComponentKind;
use vrl::value::Value;

/// Why the program did not produce its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    /// A runtime error (a failed `!` call, a non-object result).
    Error,
    /// The program called `abort`.
    Abort,
}

impl FailureReason {
    /// The word Vector puts in `metadata.dropped.reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Error => "error",
            FailureReason::Abort => "abort",
        }
    }
}

/// Adds `metadata.dropped = { reason, message, component_id, component_type, component_kind }`.
pub fn annotate_dropped(
    value: &mut Value,
    reason: FailureReason,
    message: String,
    component_id: &str,
) {
    annotate(
        value,
        &Dropped {
            reason: reason.as_str(),
            message: &message,
            component_id,
            component_type: "remap",
            component_kind: ComponentKind::Transform,
            response: None,
        },
    );
}
