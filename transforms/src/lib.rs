//! siemflow transforms: `filter`, `route` and `remap`, all driven by VRL.

mod condition;
mod error_log;
pub mod filter;
pub mod remap;
pub mod route;
mod vrl_program;

#[cfg(test)]
mod test_support;

pub use condition::{ConditionConfig, ConditionKind, TypedCondition};

/// Registers every transform of this crate.
pub fn register(registry: &mut siemflow_core::Registry) {
    registry.transform::<filter::FilterConfig>(
        "filter",
        "Keeps the events that match a VRL condition; the rest are dropped as delivered",
    );
    registry.transform::<route::RouteConfig>(
        "route",
        "Sends each event to every named output whose VRL condition it matches",
    );
    registry.transform::<remap::RemapConfig>(
        "remap",
        "Rewrites events with a VRL program; failing events go to the `dropped` output",
    );
}
