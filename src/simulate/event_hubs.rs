//! `siemflow simulate event-hubs` (the Event Hubs Kafka endpoint before a broker) and
//! `siemflow simulate xdr-stream` (Defender XDR streaming messages into a topic).

use std::path::Path;
use std::process::ExitCode;

use siemflow_core::Secret;
use siemflow_core::http::TlsConfig;
use siemflow_core::kafka::{EventHubsConfig, KafkaClient, KafkaConnection, SaslConfig};
use siemflow_simulator::event_hubs::xdr::{self, XdrStreamConfig};
use siemflow_simulator::event_hubs::{
    DEFAULT_CONNECTION_STRING, EventHubsFront, EventHubsFrontConfig, FrontTls,
};

use super::{SimulateArgs, Target, loopback, runtime};
use crate::cli::GlobalArgs;

/// The front's default port: Event Hubs' Kafka port.
const EVENT_HUBS_PORT: u16 = 9093;

/// The arguments of one of these targets given to another: what to say.
pub(super) fn misplaced(args: &SimulateArgs) -> Option<String> {
    let front_only =
        args.broker.is_some() || args.cert.is_some() || args.key.is_some() || args.ca_out.is_some();
    let stream_only = args.ca_file.is_some()
        || args.topic.is_some()
        || args.messages != 10
        || args.records_per_message != 5;
    match args.target {
        Target::EventHubs if stream_only => Some(
            "--ca-file, --topic, --messages and --records-per-message belong to `siemflow simulate xdr-stream`".into(),
        ),
        Target::XdrStream if front_only => Some(
            "--broker, --cert, --key and --ca-out belong to `siemflow simulate event-hubs`".into(),
        ),
        Target::EventHubs | Target::XdrStream => None,
        _ if front_only || stream_only || args.connection_string.is_some() => Some(
            "--broker, --connection-string, --cert, --key, --ca-out, --ca-file, --topic, --messages and --records-per-message belong to `siemflow simulate event-hubs` and `xdr-stream`".into(),
        ),
        _ => None,
    }
}

/// `siemflow simulate event-hubs --broker ADDR [--listen ADDR] [--connection-string S]
/// (--cert PEM --key PEM | --ca-out PEM)`: serves until SIGTERM or SIGINT.
pub(super) fn serve(args: &SimulateArgs, global: &GlobalArgs) -> ExitCode {
    let Some(broker) = args.broker.clone() else {
        eprintln!(
            "siemflow simulate event-hubs needs --broker, the Kafka broker behind the front (e.g. --broker 127.0.0.1:9092)"
        );
        return ExitCode::from(crate::EXIT_CONFIG);
    };
    if args.config.is_some() || args.seed.is_some() {
        eprintln!("-c and --seed do not apply to event-hubs");
        return ExitCode::from(crate::EXIT_CONFIG);
    }
    let tls = match (&args.cert, &args.key, &args.ca_out) {
        (Some(cert), Some(key), None) => FrontTls::from_pem_files(cert, key),
        (None, None, Some(ca_out)) => generate_tls(ca_out),
        _ => {
            eprintln!(
                "siemflow simulate event-hubs needs --cert and --key (PEM), or --ca-out FILE to generate a certificate and write its CA there"
            );
            return ExitCode::from(crate::EXIT_CONFIG);
        }
    };
    let tls = match tls {
        Ok(tls) => tls,
        Err(e) => {
            eprintln!("{e:#}");
            return ExitCode::from(crate::EXIT_CONFIG);
        }
    };
    let mut config = EventHubsFrontConfig::new(broker);
    if let Some(connection_string) = &args.connection_string {
        config.connection_string = connection_string.clone();
    }
    let listen = args.listen.unwrap_or_else(|| loopback(EVENT_HUBS_PORT));
    let Some(runtime) = runtime(global) else {
        return ExitCode::FAILURE;
    };
    runtime.block_on(async move {
        let connection_string = config.connection_string.clone();
        let broker = config.broker.clone();
        let front = match EventHubsFront::start(config, tls, listen).await {
            Ok(front) => front,
            Err(e) => {
                tracing::error!("{e:#}");
                return ExitCode::FAILURE;
            }
        };
        let addr = front.addr();
        // The simulator's own connection string (or the one given here): printing it is intended.
        let shown = if connection_string == DEFAULT_CONNECTION_STRING {
            format!("{connection_string} (the simulator's own)")
        } else {
            "the one given with --connection-string".to_string()
        };
        println!(
            "Event Hubs Kafka endpoint simulator ready at {addr} (TLS, SASL PLAIN) before the broker at {broker}; Ctrl-C stops it.\n  \
             The broker must advertise this address: tansu broker --listener-url tcp://{broker} --advertised-listener-url tcp://{addr}\n  \
             connection string: {shown}\n  \
             siemflow: event_hubs = {{ connection_string = \"${{EH_CONN}}\", bootstrap_servers = \"{addr}\" }}  tls = {{ ca_file = \"{}\" }}",
            args.ca_out
                .as_deref()
                .map_or("<the CA of --cert>".to_string(), |p| p.display().to_string())
        );
        let waited = super::until_stopped().await;
        front.stop().await;
        waited
    })
}

fn generate_tls(ca_out: &Path) -> anyhow::Result<FrontTls> {
    use anyhow::Context as _;
    let generated = FrontTls::generate(&["127.0.0.1".to_string(), "localhost".to_string()])?;
    std::fs::write(ca_out, &generated.ca_pem)
        .with_context(|| format!("cannot write the CA certificate to {}", ca_out.display()))?;
    Ok(generated.tls)
}

/// `siemflow simulate xdr-stream --to ADDR --topic T [--messages N]
/// [--records-per-message K] [--connection-string S --ca-file PEM] [--seed N]`: writes the
/// messages, waits for every delivery report, prints the count and exits.
pub(super) fn generate(args: &SimulateArgs, global: &GlobalArgs) -> ExitCode {
    let (Some(to), Some(topic)) = (args.to, args.topic.clone()) else {
        eprintln!(
            "siemflow simulate xdr-stream needs --to (a broker, or the event-hubs front) and --topic (the event hub)"
        );
        return ExitCode::from(crate::EXIT_CONFIG);
    };
    if args.listen.is_some() || args.config.is_some() {
        eprintln!("--listen and -c do not apply to xdr-stream, a client; give --to");
        return ExitCode::from(crate::EXIT_CONFIG);
    }
    let properties = match connection_properties(
        &to.to_string(),
        args.connection_string.as_deref(),
        args.ca_file.as_deref(),
    ) {
        Ok(properties) => properties,
        Err(problem) => {
            eprintln!("{problem}");
            return ExitCode::from(crate::EXIT_CONFIG);
        }
    };
    let config = XdrStreamConfig::starting_now(
        args.messages,
        args.records_per_message,
        args.seed.unwrap_or(1),
    );
    let messages = xdr::messages(&config);
    let Some(runtime) = runtime(global) else {
        return ExitCode::FAILURE;
    };
    match runtime.block_on(xdr::produce(&properties, &topic, &messages)) {
        Ok(delivered) => {
            println!(
                "wrote {delivered} Defender XDR streaming messages ({} records) to {topic} at {to}",
                delivered * config.records_per_message.max(1)
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cannot write to {topic} at {to}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The producer's connection properties, from the same code as the kafka plugins': the
/// Event Hubs shorthand with the address overridden when a connection string is given.
fn connection_properties(
    to: &str,
    connection_string: Option<&str>,
    ca_file: Option<&Path>,
) -> Result<Vec<(String, String)>, String> {
    let tls = ca_file.map(|ca_file| TlsConfig {
        ca_file: Some(ca_file.to_path_buf()),
        ..TlsConfig::default()
    });
    let event_hubs = connection_string.map(|connection_string| EventHubsConfig {
        connection_string: Some(Secret::new(connection_string)),
        namespace: None,
        auth: None,
        bootstrap_servers: Some(to.to_string()),
    });
    let no_options = Default::default();
    let connection = KafkaConnection {
        bootstrap_servers: event_hubs.is_none().then_some(to),
        tls: tls.as_ref(),
        sasl: None::<&SaslConfig>,
        event_hubs: event_hubs.as_ref(),
        compression: None,
        librdkafka_options: &no_options,
    };
    let issues = connection.issues();
    if let Some(issue) = issues.first() {
        let flag = match issue.key.as_deref() {
            Some(key) if key.starts_with("event_hubs") => "--connection-string",
            Some(key) if key.starts_with("tls") => "--ca-file",
            _ => "--to",
        };
        return Err(format!("{flag}: {}", issue.message));
    }
    Ok(connection
        .properties(KafkaClient::Producer)
        .into_iter()
        .map(|(key, value)| (key.to_string(), value))
        .collect())
}
