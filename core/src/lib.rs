//! siemflow-core: the engine every plugin plugs into.
//!
//! Events, acknowledgements, buffers, configuration, the plugin registry, the running
//! topology, state on disk and observability live here. No plugin does.

pub mod ack;
pub mod api;
pub mod auth;
pub mod buffer;
pub mod cef;
pub mod config;
pub mod decoding;
pub mod delivery;
pub mod dropped;
pub mod escape;
pub mod event;
pub mod event_time;
pub mod external;
pub mod fanout;
pub mod fs;
pub mod http;
pub mod io_error;
pub mod json;
pub mod kafka;
pub mod leef;
pub mod log_limit;
pub mod metrics;
pub mod otlp;
pub mod plugin;
pub mod registry;
pub mod retry;
pub mod secret;
pub mod settlement;
pub mod state;
pub mod template;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod tls;
pub mod topology;
pub mod units;

pub use ack::{AckReceipt, BatchStatus, EventAck};
pub use event::{Batch, Event};
pub use plugin::{
    BoxFuture, ConfigIssue, SinkConfig, SinkContext, SourceConfig, SourceContext, Transform,
    TransformConfig, TransformContext, TransformOutputs,
};
pub use registry::Registry;
pub use secret::Secret;

/// The value type of an event: VRL's, so VRL programs run on events without conversion.
pub use vrl::value::{KeyString, ObjectMap, Value};
