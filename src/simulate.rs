//! `siemflow simulate m365|graph|defender|splunk|sentinel|elasticsearch|mda-agent|event-hubs|xdr-stream`
//! and the `[simulator]` table: local stand-ins for Microsoft 365 (Management Activity API, Graph,
//! Defender) and the SIEMs, standalone or started in-process before the pipeline; the
//! Defender for Cloud Apps SIEM agent, a client that sends its CEF lines to a syslog receiver;
//! and the Event Hubs Kafka endpoint with its Defender XDR streaming generator ([`event_hubs`]).

mod event_hubs;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use siemflow_simulator::splunk_hec::DEFAULT_HEC_TOKEN;
use siemflow_simulator::{
    ElasticsearchConfig, ElasticsearchSimulator, M365Config, SentinelConfig, SentinelSimulator,
    Simulator, SplunkHecConfig, SplunkHecSimulator,
};

use crate::cli::GlobalArgs;
use crate::logging;

/// Default address of the Microsoft 365 simulator.
const M365_PORT: u16 = 8365;
/// Default address of the Splunk HEC simulator (Splunk's own HEC port).
const SPLUNK_PORT: u16 = 8088;
/// Default address of the Logs Ingestion simulator.
const SENTINEL_PORT: u16 = 8366;
/// Default address of the Elasticsearch simulator (Elasticsearch's own port).
const ELASTICSEARCH_PORT: u16 = 9200;

/// The `[simulator]` table of a pipeline: which simulators start in-process.
///
/// The Microsoft 365 simulator starts when `[simulator.m365]` or `listen` is present, or
/// when no SIEM simulator is (so a bare `[simulator]` keeps its old meaning); each SIEM
/// simulator starts when its sub-table is present.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SimulatorTable {
    /// Address of the Microsoft 365 simulator. Default 127.0.0.1:8365.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// The simulated Microsoft 365 world: seed, tenants, history, faults (docs/simulator.md).
    #[serde(default)]
    pub m365: Option<M365Config>,
    /// `[simulator.splunk_hec]`: `listen` (default 127.0.0.1:8088) plus the HEC keys.
    #[serde(default)]
    pub splunk_hec: Option<Served<SplunkHecConfig, SPLUNK_PORT>>,
    /// `[simulator.sentinel]`: `listen` (default 127.0.0.1:8366) plus the Logs Ingestion keys.
    #[serde(default)]
    pub sentinel: Option<Served<SentinelConfig, SENTINEL_PORT>>,
    /// `[simulator.elasticsearch]`: `listen` (default 127.0.0.1:9200) plus the cluster keys.
    #[serde(default)]
    pub elasticsearch: Option<Served<ElasticsearchConfig, ELASTICSEARCH_PORT>>,
}

impl SimulatorTable {
    /// The Microsoft 365 simulator's address and world, when it is to start.
    fn m365(&self) -> Option<(SocketAddr, M365Config)> {
        let siem =
            self.splunk_hec.is_some() || self.sentinel.is_some() || self.elasticsearch.is_some();
        if self.m365.is_none() && self.listen.is_none() && siem {
            return None;
        }
        let listen = self.listen.unwrap_or_else(|| loopback(M365_PORT));
        Some((listen, self.m365.clone().unwrap_or_default()))
    }
}

/// A simulator's configuration plus the `listen` key of its sub-table.
#[derive(Debug, Clone, PartialEq)]
pub struct Served<C, const PORT: u16> {
    /// Address to serve on. Default 127.0.0.1:`PORT`.
    pub listen: SocketAddr,
    /// The simulator's own keys.
    pub config: C,
}

impl<'de, C: DeserializeOwned, const PORT: u16> Deserialize<'de> for Served<C, PORT> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut table = toml::Table::deserialize(d)?;
        let listen = match table.remove("listen") {
            None => loopback(PORT),
            Some(toml::Value::String(s)) => s.parse().map_err(|e| {
                D::Error::custom(format!(
                    "listen: {s:?} is not an address ({e}); write e.g. \"127.0.0.1:{PORT}\""
                ))
            })?,
            Some(_) => {
                return Err(D::Error::custom(format!(
                    "listen must be a string such as \"127.0.0.1:{PORT}\""
                )));
            }
        };
        let config = C::deserialize(toml::Value::Table(table)).map_err(D::Error::custom)?;
        Ok(Self { listen, config })
    }
}

/// The async runtime of a simulate command; None (said on stderr) when it cannot start.
fn runtime(global: &GlobalArgs) -> Option<tokio::runtime::Runtime> {
    crate::run::runtime(global.threads)
        .map_err(|e| eprintln!("cannot start the async runtime: {e}"))
        .ok()
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// What to simulate.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Target {
    /// Entra ID token endpoint and the Office 365 Management Activity API (and Graph).
    M365,
    /// Microsoft Graph (security alerts and incidents, Entra ID sign-in and audit logs): the
    /// Microsoft 365 simulator, which serves Graph on its address (default 127.0.0.1:8365).
    Graph,
    /// Microsoft Defender for Endpoint (`/api/alerts`): the Microsoft 365 simulator, which
    /// serves it on its address (default 127.0.0.1:8365).
    Defender,
    /// Splunk HTTP Event Collector (default 127.0.0.1:8088).
    Splunk,
    /// Azure Monitor Logs Ingestion API (Microsoft Sentinel) with its Entra token endpoint
    /// (default 127.0.0.1:8366).
    Sentinel,
    /// Elasticsearch / OpenSearch `_bulk` (default 127.0.0.1:9200).
    Elasticsearch,
    /// The Defender for Cloud Apps SIEM agent: sends its documented CEF lines to the syslog
    /// receiver at `--to` (TCP, or UDP with `--udp`), `--repeat` times, then exits.
    MdaAgent,
    /// The Kafka endpoint of an Azure Event Hubs namespace: TLS and SASL PLAIN with a
    /// connection string, in front of the Kafka broker at `--broker`.
    EventHubs,
    /// Defender XDR streaming: writes `--messages` `{"records": [...]}` messages to
    /// `--topic` at `--to` (a broker, or the event-hubs front with `--connection-string`),
    /// then exits.
    XdrStream,
}

/// `siemflow simulate` arguments.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// What to simulate.
    #[arg(value_enum)]
    pub target: Target,
    /// Address to serve on. Default: 127.0.0.1 and 8365 (m365, graph, defender), 8088 (splunk), 8366
    /// (sentinel) or 9200 (elasticsearch).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// A TOML file with the simulator's keys (those of `[simulator.m365]`,
    /// `[simulator.splunk_hec]`, `[simulator.sentinel]` or `[simulator.elasticsearch]`,
    /// without `listen`).
    #[arg(short = 'c', long = "config")]
    pub config: Option<PathBuf>,
    /// Seed of the simulator (overrides the file).
    #[arg(long)]
    pub seed: Option<u64>,
    /// mda-agent: the syslog receiver to send to, e.g. 127.0.0.1:5514; xdr-stream: the
    /// Kafka bootstrap address (a broker, or the event-hubs front).
    #[arg(long)]
    pub to: Option<SocketAddr>,
    /// mda-agent: one datagram per line instead of one TCP connection.
    #[arg(long)]
    pub udp: bool,
    /// mda-agent: how many times to send the 12 lines.
    #[arg(long, default_value_t = 1)]
    pub repeat: u32,
    /// event-hubs: the Kafka broker behind the front, e.g. 127.0.0.1:9092.
    #[arg(long)]
    pub broker: Option<String>,
    /// event-hubs: the connection string the front accepts (default: the simulator's own);
    /// xdr-stream: authenticate to the front with it.
    #[arg(long)]
    pub connection_string: Option<String>,
    /// event-hubs: the front's PEM certificate (with `--key`); without them one is generated.
    #[arg(long)]
    pub cert: Option<PathBuf>,
    /// event-hubs: the PEM private key of `--cert`.
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// event-hubs: where to write the generated CA certificate clients trust (`tls.ca_file`).
    #[arg(long)]
    pub ca_out: Option<PathBuf>,
    /// xdr-stream: the CA certificate to trust (the front's `--ca-out`).
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// xdr-stream: the topic (event hub) to write to.
    #[arg(long)]
    pub topic: Option<String>,
    /// xdr-stream: how many messages.
    #[arg(long, default_value_t = 10)]
    pub messages: usize,
    /// xdr-stream: records in each message.
    #[arg(long, default_value_t = 5)]
    pub records_per_message: usize,
}

/// The simulators a pipeline started in-process.
#[derive(Default)]
pub struct InProcess(Vec<Standalone>);

impl InProcess {
    /// The running simulators, each as its name and URL.
    pub fn describe(&self) -> String {
        let parts: Vec<String> = self.0.iter().map(Standalone::describe).collect();
        parts.join(", ")
    }

    /// Stops every simulator.
    pub async fn stop(self) {
        for simulator in self.0 {
            simulator.stop().await;
        }
    }
}

/// Starts the simulators the pipeline's `[simulator]` table names; on an error, those
/// already started are stopped again.
pub async fn start_in_process(table: &SimulatorTable) -> anyhow::Result<InProcess> {
    use anyhow::Context;
    let mut wanted = Vec::new();
    if let Some((listen, world)) = table.m365() {
        wanted.push(("[simulator.m365]", Config::M365(Box::new(world)), listen));
    }
    if let Some(s) = &table.splunk_hec {
        wanted.push((
            "[simulator.splunk_hec]",
            Config::Splunk(s.config.clone()),
            s.listen,
        ));
    }
    if let Some(s) = &table.sentinel {
        wanted.push((
            "[simulator.sentinel]",
            Config::Sentinel(s.config.clone()),
            s.listen,
        ));
    }
    if let Some(s) = &table.elasticsearch {
        wanted.push((
            "[simulator.elasticsearch]",
            Config::Elasticsearch(s.config.clone()),
            s.listen,
        ));
    }
    let mut running = InProcess::default();
    for (table, config, listen) in wanted {
        match config.start(listen).await.context(table) {
            Ok(simulator) => running.0.push(simulator),
            Err(e) => {
                running.stop().await;
                return Err(e);
            }
        }
    }
    Ok(running)
}

/// Reads `-c` into the target's configuration (its default without `-c`).
fn load<C: DeserializeOwned + Default>(path: Option<&PathBuf>) -> anyhow::Result<C> {
    let Some(path) = path else {
        return Ok(C::default());
    };
    let text = std::fs::read_to_string(path)?;
    Ok(toml::from_str(&text)?)
}

/// A running simulator, whichever it is.
enum Standalone {
    M365(Simulator),
    Splunk(SplunkHecSimulator),
    Sentinel(SentinelSimulator),
    Elasticsearch(ElasticsearchSimulator),
}

impl Standalone {
    /// Its name and URL.
    fn describe(&self) -> String {
        match self {
            Standalone::M365(s) => format!("Microsoft 365 at {}", s.base_url()),
            Standalone::Splunk(s) => format!("Splunk HEC at {}", s.url()),
            Standalone::Sentinel(s) => format!("Logs Ingestion at {}", s.url()),
            Standalone::Elasticsearch(s) => format!("Elasticsearch at {}", s.url()),
        }
    }

    async fn stop(self) {
        match self {
            Standalone::M365(s) => s.stop().await,
            Standalone::Splunk(s) => s.stop().await,
            Standalone::Sentinel(s) => s.stop().await,
            Standalone::Elasticsearch(s) => s.stop().await,
        }
    }
}

/// `siemflow simulate <target>`: serves until SIGTERM or SIGINT (`mda-agent` sends, then exits).
pub fn simulate(args: SimulateArgs, global: &GlobalArgs) -> ExitCode {
    logging::init(global.log_format, &global.log_level);
    if args.target != Target::MdaAgent && (args.udp || args.repeat != 1) {
        eprintln!("--udp and --repeat belong to `siemflow simulate mda-agent`");
        return ExitCode::from(crate::EXIT_CONFIG);
    }
    if !matches!(args.target, Target::MdaAgent | Target::XdrStream) && args.to.is_some() {
        eprintln!("--to belongs to `siemflow simulate mda-agent` and `xdr-stream`");
        return ExitCode::from(crate::EXIT_CONFIG);
    }
    if let Some(problem) = event_hubs::misplaced(&args) {
        eprintln!("{problem}");
        return ExitCode::from(crate::EXIT_CONFIG);
    }
    let path = args.config.as_ref();
    let seeded = |seed: &mut u64| *seed = args.seed.unwrap_or(*seed);
    let (loaded, port) = match args.target {
        Target::M365 | Target::Graph | Target::Defender => (
            load::<M365Config>(path).map(|mut c| {
                seeded(&mut c.seed);
                Config::M365(Box::new(c))
            }),
            M365_PORT,
        ),
        Target::Splunk => (
            load::<SplunkHecConfig>(path).map(|mut c| {
                seeded(&mut c.seed);
                Config::Splunk(c)
            }),
            SPLUNK_PORT,
        ),
        Target::Sentinel => (
            load::<SentinelConfig>(path).map(|mut c| {
                seeded(&mut c.seed);
                Config::Sentinel(c)
            }),
            SENTINEL_PORT,
        ),
        Target::Elasticsearch => (
            load::<ElasticsearchConfig>(path).map(|mut c| {
                seeded(&mut c.seed);
                Config::Elasticsearch(c)
            }),
            ELASTICSEARCH_PORT,
        ),
        Target::MdaAgent => return send_agent_lines(&args, global),
        Target::EventHubs => return event_hubs::serve(&args, global),
        Target::XdrStream => return event_hubs::generate(&args, global),
    };
    let config = match loaded {
        Ok(config) => config,
        Err(e) => {
            let file = path.map(|p| p.display().to_string()).unwrap_or_default();
            eprintln!("{file}: {e}");
            return ExitCode::from(crate::EXIT_CONFIG);
        }
    };
    let listen = args.listen.unwrap_or_else(|| loopback(port));
    let Some(runtime) = runtime(global) else {
        return ExitCode::FAILURE;
    };
    runtime.block_on(async move {
        let started = config.start(listen).await;
        let simulator = match started {
            Ok(simulator) => simulator,
            Err(e) => {
                tracing::error!("{e:#}");
                return ExitCode::FAILURE;
            }
        };
        println!("{}", instructions(&simulator));
        let waited = until_stopped().await;
        simulator.stop().await;
        waited
    })
}

/// Waits for SIGTERM or SIGINT.
async fn until_stopped() -> ExitCode {
    let mut sigterm = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    tokio::select! {
        _ = sigterm.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    ExitCode::SUCCESS
}

/// `siemflow simulate mda-agent --to ADDR [--udp] [--repeat N]`: the agent's lines sent, the
/// count printed. A client, so the servers' `--listen`, `-c` and `--seed` do not apply.
fn send_agent_lines(args: &SimulateArgs, global: &GlobalArgs) -> ExitCode {
    use siemflow_simulator::mda_agent::{self, Transport};
    let Some(to) = args.to else {
        eprintln!(
            "siemflow simulate mda-agent needs --to, the syslog receiver (e.g. --to 127.0.0.1:5514)"
        );
        return ExitCode::from(crate::EXIT_CONFIG);
    };
    if args.listen.is_some() || args.config.is_some() || args.seed.is_some() {
        eprintln!("--listen, -c and --seed do not apply to mda-agent, a client; give --to");
        return ExitCode::from(crate::EXIT_CONFIG);
    }
    let transport = if args.udp {
        Transport::Udp
    } else {
        Transport::Tcp
    };
    let Some(runtime) = runtime(global) else {
        return ExitCode::FAILURE;
    };
    let agent = mda_agent::agent_lines();
    let lines: Vec<&str> = (0..args.repeat)
        .flat_map(|_| agent.iter().copied())
        .collect();
    match runtime.block_on(mda_agent::send(to, transport, &lines)) {
        Ok(()) => {
            println!(
                "sent {} Defender for Cloud Apps SIEM-agent lines to {to} over {}",
                lines.len(),
                if args.udp { "UDP" } else { "TCP" }
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cannot send to {to}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The configuration of one simulator, whichever it is (the Microsoft 365 one, much the
/// largest, boxed).
enum Config {
    M365(Box<M365Config>),
    Splunk(SplunkHecConfig),
    Sentinel(SentinelConfig),
    Elasticsearch(ElasticsearchConfig),
}

impl Config {
    /// Starts the simulator on `listen`.
    async fn start(self, listen: SocketAddr) -> anyhow::Result<Standalone> {
        Ok(match self {
            Config::M365(c) => Standalone::M365(Simulator::start(*c, listen).await?),
            Config::Splunk(c) => Standalone::Splunk(SplunkHecSimulator::start(c, listen).await?),
            Config::Sentinel(c) => Standalone::Sentinel(SentinelSimulator::start(c, listen).await?),
            Config::Elasticsearch(c) => {
                Standalone::Elasticsearch(ElasticsearchSimulator::start(c, listen).await?)
            }
        })
    }
}

/// What a user needs to point siemflow (or curl) at the simulator. The credentials are the
/// simulator's own, never real ones, so printing them is intended.
fn instructions(simulator: &Standalone) -> String {
    match simulator {
        Standalone::M365(s) => format!(
            "Microsoft 365 simulator ready at {url}; Ctrl-C stops it.\n  \
             login_url = \"{url}\"  api_url = \"{url}\"  graph_url = \"{url}\"  (see docs/simulator.md for the tenant and app)\n  \
             Graph: {url}/v1.0/security/alerts_v2, …/security/incidents, …/auditLogs/signIns|directoryAudits|provisioning, \
             {url}/beta/auditLogs/signIns; token scope https://graph.microsoft.com/.default\n  \
             Defender for Endpoint: {url}/api/alerts; token scope https://api.securitycenter.microsoft.com/.default\n  \
             Defender for Cloud Apps: portal_url = \"{url}\" ({url}/api/v1/activities/, …/alerts/); api_token = \"simulator-mda-api-token\", \
             or token scope 05a65629-4c1b-48c1-a78b-804c4abdd4af/.default",
            url = s.base_url()
        ),
        Standalone::Splunk(s) => {
            let c = s.config();
            let tokens: Vec<String> = c
                .tokens
                .iter()
                .map(|t| {
                    format!(
                        "{} (ack {}, default index {})",
                        t.token,
                        if t.ack { "on" } else { "off" },
                        t.default_index
                    )
                })
                .collect();
            let example = c
                .tokens
                .first()
                .map_or(DEFAULT_HEC_TOKEN, |t| t.token.as_str());
            format!(
                "Splunk HEC simulator ready at {url}; Ctrl-C stops it.\n  \
                 endpoint = \"{url}\"\n  tokens: {}\n  \
                 try: curl {url}/services/collector/event -H 'Authorization: Splunk {example}' -d '{{\"event\":\"hello\"}}'",
                tokens.join("; "),
                url = s.url()
            )
        }
        Standalone::Sentinel(s) => {
            let c = s.config();
            let dcrs: Vec<String> = c
                .dcrs
                .iter()
                .map(|d| format!("{} streams {}", d.immutable_id, d.streams.join(", ")))
                .collect();
            format!(
                "Logs Ingestion (Sentinel) simulator ready at {url}; Ctrl-C stops it.\n  \
                 endpoint = \"{url}\"  login_url = \"{url}\"\n  \
                 tenant_id = \"{}\"  client_id = \"{}\"  client_secret = \"{}\"  scope = \"{}//.default\"\n  \
                 DCRs: {}",
                c.tenant_id,
                c.client_id,
                c.client_secret,
                c.audience,
                dcrs.join("; "),
                url = s.url()
            )
        }
        Standalone::Elasticsearch(s) => {
            let c = s.config();
            let mut auth: Vec<String> = c
                .users
                .iter()
                .map(|u| format!("user {} / {}", u.username, u.password))
                .collect();
            auth.extend(
                c.api_keys
                    .iter()
                    .map(|k| format!("API key {}:{}", k.id, k.key)),
            );
            if auth.is_empty() {
                auth.push("none (security off)".into());
            }
            format!(
                "Elasticsearch simulator ({:?}) ready at {url}; Ctrl-C stops it.\n  \
                 endpoint = \"{url}\"\n  credentials: {}\n  data streams: {}",
                c.flavour,
                auth.join("; "),
                if c.data_streams.is_empty() {
                    "none".to_string()
                } else {
                    c.data_streams.join(", ")
                },
                url = s.url()
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SimulatorTable, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn the_old_table_still_means_m365() {
        let t = parse("listen = \"127.0.0.1:9365\"\n[m365]\nseed = 4\n").expect("parses");
        let (listen, world) = t.m365().expect("m365 starts");
        assert_eq!(listen, loopback(9365));
        assert_eq!(world.seed, 4);
        let bare = parse("").expect("parses");
        assert_eq!(bare.m365().map(|(l, _)| l), Some(loopback(M365_PORT)));
    }

    #[test]
    fn graph_keys_live_in_the_m365_table() {
        let t =
            parse("[m365.graph]\nalerts_per_hour = 3\n[m365.graph.faults]\nrepeat_rate = 0.5\n")
                .expect("parses");
        let (_, world) = t.m365().expect("m365 (and with it Graph) starts");
        assert_eq!(world.graph.alerts_per_hour, 3);
        assert_eq!(world.graph.faults.repeat_rate, 0.5);
        assert!(parse("[m365.graph]\ncolour = 1\n").is_err());
    }

    #[test]
    fn defender_endpoint_keys_live_in_the_m365_table() {
        let t = parse(
            "[m365.defender_endpoint]\nlimits = [{ requests = 10, per = \"10s\" }]\n\
             [m365.defender_endpoint.faults]\nthrottle_rate = 0.2\n",
        )
        .expect("parses");
        let (_, world) = t
            .m365()
            .expect("m365 (and with it Defender for Endpoint) starts");
        assert_eq!(world.defender_endpoint.limits.len(), 1);
        assert_eq!(world.defender_endpoint.limits[0].requests, 10);
        assert_eq!(world.defender_endpoint.faults.throttle_rate, 0.2);
        assert!(parse("[m365.defender_endpoint]\nrequests_per_minute = 1\n").is_err());
    }

    #[test]
    fn siem_sub_tables_with_listen_and_their_keys() {
        let t = parse(
            r#"
            [splunk_hec]
            listen = "127.0.0.1:18088"
            seed = 7
            [splunk_hec.faults]
            busy_rate = 0.1
            [sentinel]
            [elasticsearch]
            flavour = "opensearch"
            "#,
        )
        .expect("parses");
        assert!(
            t.m365().is_none(),
            "only the SIEM simulators were asked for"
        );
        let hec = t.splunk_hec.expect("splunk");
        assert_eq!(hec.listen, loopback(18088));
        assert_eq!(hec.config.seed, 7);
        assert_eq!(hec.config.faults.busy_rate, 0.1);
        assert_eq!(
            t.sentinel.expect("sentinel").listen,
            loopback(SENTINEL_PORT)
        );
        assert_eq!(
            t.elasticsearch.expect("es").listen,
            loopback(ELASTICSEARCH_PORT)
        );
    }

    #[test]
    fn unknown_keys_and_bad_addresses_are_errors() {
        let e = parse("[splunk_hec]\ncolour = 1\n").expect_err("unknown key");
        assert!(e.to_string().contains("colour"), "{e}");
        let e = parse("[sentinel]\nlisten = \"nowhere\"\n").expect_err("bad address");
        assert!(e.to_string().contains("listen"), "{e}");
        assert!(parse("[kafka]\n").is_err());
    }

    #[tokio::test]
    async fn in_process_simulators_start_and_stop() {
        let t = parse(
            r#"
            [splunk_hec]
            listen = "127.0.0.1:0"
            [sentinel]
            listen = "127.0.0.1:0"
            [elasticsearch]
            listen = "127.0.0.1:0"
            "#,
        )
        .expect("parses");
        let running = start_in_process(&t).await.expect("starts");
        let described = running.describe();
        assert!(
            described.contains("Splunk HEC at http://127.0.0.1:"),
            "{described}"
        );
        assert!(described.contains("Elasticsearch"), "{described}");
        assert!(!described.contains("Microsoft 365"), "{described}");
        running.stop().await;
    }
}
