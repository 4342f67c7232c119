//! Rate limiting for per-event error logs, so a flood of bad events cannot flood the log:
//! core's [`RateLimitedLog`], whose default period suits per-event errors.

pub use siemflow_core::log_limit::RateLimitedLog;
