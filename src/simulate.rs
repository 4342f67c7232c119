//! `siemflow simulate m365` and the `[simulator]` table: the local Microsoft 365 stand-in,
//! standalone or started in-process before the pipeline.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use serde::Deserialize;
use siemflow_simulator::{M365Config, Simulator};

use crate::cli::LogFormat;
use crate::logging;

/// The `[simulator]` table of a pipeline: start the Microsoft 365 simulator in-process.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SimulatorTable {
    /// Address to serve on (login and management roots). Default 127.0.0.1:8365.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The simulated world: seed, tenants, history, faults (see docs/simulator.md).
    #[serde(default)]
    pub m365: M365Config,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8365))
}

/// What to simulate.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Target {
    /// Entra ID token endpoint and the Office 365 Management Activity API.
    M365,
}

/// `siemflow simulate` arguments.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// What to simulate.
    #[arg(value_enum)]
    pub target: Target,
    /// Address to serve on.
    #[arg(long, default_value = "127.0.0.1:8365")]
    pub listen: SocketAddr,
    /// A TOML file with the simulated world (the keys of `[simulator.m365]`).
    #[arg(short = 'c', long = "config")]
    pub config: Option<PathBuf>,
    /// Seed of the simulated world (overrides the file).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Starts the in-process simulator when the pipeline has a `[simulator]` table.
pub async fn start_in_process(table: &SimulatorTable) -> anyhow::Result<Simulator> {
    Simulator::start(table.m365.clone(), table.listen).await
}

/// `siemflow simulate m365`: serves until SIGTERM or SIGINT.
pub fn simulate(args: SimulateArgs) -> ExitCode {
    logging::init(args.log_format, "info");
    let mut config = match &args.config {
        Some(path) => match std::fs::read_to_string(path)
            .map_err(anyhow::Error::from)
            .and_then(|text| toml::from_str::<M365Config>(&text).map_err(anyhow::Error::from))
        {
            Ok(config) => config,
            Err(e) => {
                eprintln!("{}: {e}", path.display());
                return ExitCode::from(crate::EXIT_CONFIG);
            }
        },
        None => M365Config::default(),
    };
    if let Some(seed) = args.seed {
        config.seed = seed;
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let Target::M365 = args.target;
        let simulator = match Simulator::start(config, args.listen).await {
            Ok(simulator) => simulator,
            Err(e) => {
                tracing::error!("{e:#}");
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(url = %simulator.base_url(), "Microsoft 365 simulator ready; Ctrl-C stops it");
        let mut sigterm = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
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
        simulator.stop().await;
        ExitCode::SUCCESS
    })
}
