//! End-to-end tests of the `siemflow` binary: real processes, real files, real signals.

mod harness;

mod api_limits;
mod backpressure;
mod config_errors;
mod config_test;
mod crash;
mod data_dir;
mod defender_cloud_apps;
mod defender_endpoint;
mod delivery;
mod disk_buffer;
mod elasticsearch;
mod event_hubs;
mod examples;
mod file_limits;
mod file_sink;
mod graph_security;
mod hostile_input;
mod kafka;
mod kafka_group;
mod kubernetes;
mod o365_management;
mod opentelemetry;
mod plugin;
mod reload;
mod sentinel;
mod sentinel_streams;
mod shutdown;
mod splunk_hec;
mod stdin;
mod syslog;
mod tansu;
