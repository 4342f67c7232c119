//! siemflow-sinks: the built-in sink plugins, one folder per plugin `type`.

pub mod blackhole;
pub mod console;
mod duration;
pub mod elasticsearch;
pub mod encoding;
pub mod file;
pub mod kafka;
pub mod opentelemetry;
pub mod plugin;
pub mod sentinel;
pub mod splunk_hec;
pub mod syslog;
mod tls;

#[cfg(test)]
mod test_support;

/// Registers every sink of this crate.
pub fn register(registry: &mut siemflow_core::Registry) {
    registry.sink::<blackhole::BlackholeSinkConfig>(
        "blackhole",
        "Counts and acknowledges events without sending them anywhere (testing, benchmarks)",
    );
    registry.sink::<console::ConsoleSinkConfig>(
        "console",
        "Writes events as lines to stdout or stderr",
    );
    registry.sink::<elasticsearch::ElasticsearchSinkConfig>(
        "elasticsearch",
        "Delivers events to Elasticsearch or OpenSearch with _bulk: indices or data streams, deterministic ids",
    );
    registry.sink::<file::FileSinkConfig>(
        "file",
        "Appends events as lines to files named by a template",
    );
    registry.sink::<kafka::KafkaSinkConfig>(
        "kafka",
        "Produces events to Apache Kafka or the Event Hubs Kafka endpoint, acknowledged from delivery reports",
    );
    registry.sink::<opentelemetry::OpentelemetrySinkConfig>(
        "opentelemetry",
        "Delivers events as OTLP log records over gRPC or HTTP to an OpenTelemetry Collector or any OTLP receiver",
    );
    registry.sink::<plugin::PluginSinkConfig>(
        "plugin",
        "Runs an external program (any language) over gRPC as the sink, with retries and dead letters",
    );
    registry.sink::<sentinel::SentinelSinkConfig>(
        "sentinel",
        "Delivers events to Microsoft Sentinel through the Azure Monitor Logs Ingestion API",
    );
    registry.sink::<splunk_hec::SplunkHecSinkConfig>(
        "splunk_hec",
        "Delivers events to a Splunk HTTP Event Collector, with indexer acknowledgements",
    );
    registry.sink::<syslog::SyslogSinkConfig>(
        "syslog",
        "Sends events as syslog messages (RFC 5424/3164) over TCP, TLS or UDP",
    );
}

#[cfg(test)]
mod tests {
    use siemflow_core::metrics::ComponentKind;

    #[test]
    fn registers_every_sink() {
        let mut registry = siemflow_core::Registry::new();
        super::register(&mut registry);
        assert_eq!(
            registry.names(ComponentKind::Sink),
            [
                "blackhole",
                "console",
                "elasticsearch",
                "file",
                "kafka",
                "opentelemetry",
                "plugin",
                "sentinel",
                "splunk_hec",
                "syslog"
            ]
        );
    }
}
