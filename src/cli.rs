//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use siemflow_core::config::ConfigPaths;

/// Microsoft 365 security and audit data into SIEMs, with nothing lost.
#[derive(Debug, Parser)]
#[command(
    name = "siemflow",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// With no command, `siemflow` runs: these are `run`'s arguments.
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a pipeline (the default command).
    Run(RunArgs),
    /// Check a pipeline's configuration and print every error.
    Validate(ConfigArgs),
    /// List the plugins and their options.
    List(ListArgs),
    /// Serve a local stand-in for a Microsoft API or a SIEM endpoint (no credentials, no network).
    Simulate(crate::simulate::SimulateArgs),
}

/// Where the configuration is.
#[derive(Debug, Args, Default, Clone)]
pub struct ConfigArgs {
    /// A config file; repeat to merge several. Default: pipeline.toml.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Vec<PathBuf>,
    /// A folder whose *.toml files are merged (in name order).
    #[arg(long = "config-dir", value_name = "DIR")]
    pub config_dir: Vec<PathBuf>,
}

impl ConfigArgs {
    /// The files and folders to read, with pipeline.toml as the default.
    pub fn paths(&self) -> ConfigPaths {
        let mut files = self.config.clone();
        if files.is_empty() && self.config_dir.is_empty() {
            files.push(PathBuf::from("pipeline.toml"));
        }
        ConfigPaths {
            files,
            dirs: self.config_dir.clone(),
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, ValueEnum, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Reload when a config file changes (as on SIGHUP).
    #[arg(long, short = 'w')]
    pub watch_config: bool,
    /// Log format (logs go to stderr; stdout belongs to the console sink).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "SIEMFLOW_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Log filter, e.g. `info` or `siemflow_sources=debug` (also RUST_LOG).
    #[arg(long, env = "SIEMFLOW_LOG", default_value = "info")]
    pub log_level: String,
    /// Worker threads (default: one per core).
    #[arg(long, env = "SIEMFLOW_THREADS")]
    pub threads: Option<usize>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print the option schemas as JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Only this plugin (`type` name).
    pub plugin: Option<String>,
}
