//! siemflow-sources: the source plugins, one module (folder) per plugin `type`.

pub mod defender_cloud_apps;
pub mod defender_endpoint;
pub mod entra_logs;
pub mod file;
pub mod graph_security;
pub mod kafka;
mod lines;
pub mod microsoft;
pub mod o365_management;
pub mod opentelemetry;
pub mod plugin;
mod schema;
pub mod stdin;
pub mod syslog;
#[cfg(test)]
mod testing;

/// Registers every source plugin of this crate.
pub fn register(registry: &mut siemflow_core::Registry) {
    registry.source::<defender_cloud_apps::CloudAppsConfig>(
        "defender_cloud_apps",
        "Reads Defender for Cloud Apps activities and alerts of one or more tenants through the portal's REST API, each activity once and each alert state once; cursors advance only over delivered pages",
    );
    registry.source::<defender_endpoint::DefenderEndpointConfig>(
        "defender_endpoint",
        "Reads Microsoft Defender for Endpoint alerts (with evidence) of one or more tenants, every new version once, within 100 requests a minute and 1,500 an hour; cursors advance only over delivered pages",
    );
    registry.source::<entra_logs::EntraLogsConfig>(
        "entra_logs",
        "Reads the Entra ID sign-in, directory audit and provisioning logs of one or more tenants through Microsoft Graph, each record once; cursors advance only over delivered windows",
    );
    registry.source::<file::FileConfig>(
        "file",
        "Tails files matching globs (JSON or text lines), through rotation, checkpointing only delivered data",
    );
    registry.source::<graph_security::GraphSecurityConfig>(
        "graph_security",
        "Reads Microsoft Graph security alerts (alerts_v2) and incidents of one or more tenants, every new version once; cursors advance only over delivered pages",
    );
    registry.source::<kafka::KafkaSourceConfig>(
        "kafka",
        "Consumes Kafka (or Event Hubs) topics in a consumer group; offsets are committed only for messages every sink delivered",
    );
    registry.source::<o365_management::O365ManagementConfig>(
        "o365_management",
        "Reads the Office 365 Management Activity API (unified audit log) of one or more tenants; cursors advance only over delivered blobs",
    );
    registry.source::<opentelemetry::OpenTelemetrySourceConfig>(
        "opentelemetry",
        "Receives OTLP logs over gRPC and HTTP (protobuf or JSON, gzip, TLS, bearer token); answers each request only once every sink has its records, and asks the sender to retry when the pipeline is full",
    );
    registry.source::<plugin::PluginSourceConfig>(
        "plugin",
        "Runs an external program (any language) over gRPC as the source; acks flow back to it",
    );
    registry.source::<stdin::StdinConfig>(
        "stdin",
        "Reads JSON or text lines from standard input; ends, after every batch is settled, at end of input",
    );
    registry.source::<syslog::SyslogSourceConfig>(
        "syslog",
        "Receives syslog (RFC 5424/3164) over TCP, TLS or UDP and decodes its payload as text, CEF, LEEF or JSON; TCP senders are slowed, not dropped, while the pipeline is full",
    );
}
