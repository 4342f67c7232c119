//! Command-line arguments.
//!
//! `siemflow [OPTIONS]` runs, as `vector [OPTIONS]` does; `run` and `validate` also take
//! config files as plain arguments (`siemflow validate pipeline.toml`). The logging and
//! thread options are global: accepted before or after any command name.

use std::path::PathBuf;

use clap::error::ErrorKind;
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use siemflow_core::config::ConfigPaths;

/// Microsoft 365 security and audit data into SIEMs, with nothing lost.
#[derive(Debug, Parser)]
#[command(name = "siemflow", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// With no command, `siemflow` runs: where its configuration is.
    #[command(flatten)]
    pub config: ConfigFlags,
    /// With no command, `siemflow` runs: how.
    #[command(flatten)]
    pub run: RunOptions,
    /// Options of every command.
    #[command(flatten)]
    pub global: GlobalArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a pipeline (the default command).
    Run(RunArgs),
    /// Check a pipeline's configuration and print every error.
    Validate(ConfigArgs),
    /// Run config unit tests: events into transforms, VRL assertions on their outputs.
    Test(TestArgs),
    /// List the plugins and their options.
    List(ListArgs),
    /// Serve a local stand-in for a Microsoft API or a SIEM endpoint (no credentials, no network).
    Simulate(Box<crate::simulate::SimulateArgs>),
}

impl Cli {
    /// Parses the command line into the command to run and the global options; `run`
    /// and `validate` options given before the command name apply to it.
    pub fn parse_command() -> (Command, GlobalArgs) {
        let cli = Cli::parse();
        match cli.resolve() {
            Ok(parsed) => parsed,
            Err(message) => Cli::command()
                .error(ErrorKind::ArgumentConflict, message)
                .exit(),
        }
    }

    /// The command with the options before its name folded in, or why they do not apply.
    fn resolve(self) -> Result<(Command, GlobalArgs), String> {
        let Cli {
            command,
            config,
            run,
            global,
        } = self;
        let command = match command {
            None => Command::Run(RunArgs {
                config: ConfigArgs {
                    files: Vec::new(),
                    flags: config,
                },
                options: run,
            }),
            Some(Command::Run(mut args)) => {
                args.config.flags.prepend(config);
                args.options.watch_config |= run.watch_config;
                Command::Run(args)
            }
            Some(Command::Validate(mut args)) => {
                if run.watch_config {
                    return Err("`--watch-config` applies to `run`, not `validate`".into());
                }
                args.flags.prepend(config);
                Command::Validate(args)
            }
            Some(Command::Test(mut args)) => {
                if run.watch_config {
                    return Err("`--watch-config` applies to `run`, not `test`".into());
                }
                args.config.prepend(config);
                Command::Test(args)
            }
            Some(other) => {
                if !config.is_empty() || run.watch_config {
                    return Err(
                        "`-c`, `--config-dir` and `--watch-config` apply to `run`, `validate` and `test` only"
                            .into(),
                    );
                }
                other
            }
        };
        Ok((command, global))
    }
}

/// Options every command takes, before or after its name.
#[derive(Debug, Args, Clone)]
pub struct GlobalArgs {
    /// Log format (logs go to stderr; stdout belongs to the console sink).
    #[arg(
        long,
        value_enum,
        default_value_t = LogFormat::Text,
        env = "SIEMFLOW_LOG_FORMAT",
        global = true
    )]
    pub log_format: LogFormat,
    /// Log filter, e.g. `info` or `siemflow_sources=debug` (also RUST_LOG).
    #[arg(long, env = "SIEMFLOW_LOG", default_value = "info", global = true)]
    pub log_level: String,
    /// Worker threads of `run` and `simulate` (default: one per core).
    #[arg(long, env = "SIEMFLOW_THREADS", global = true)]
    pub threads: Option<usize>,
}

/// Where the configuration is, as options.
#[derive(Debug, Args, Default, Clone)]
pub struct ConfigFlags {
    /// A config file; repeat to merge several. Default: pipeline.toml.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Vec<PathBuf>,
    /// A folder whose *.toml files are merged (in name order).
    #[arg(long = "config-dir", value_name = "DIR")]
    pub config_dir: Vec<PathBuf>,
}

impl ConfigFlags {
    fn is_empty(&self) -> bool {
        self.config.is_empty() && self.config_dir.is_empty()
    }

    /// Puts `earlier` (given before the command name) first.
    fn prepend(&mut self, mut earlier: ConfigFlags) {
        earlier.config.append(&mut self.config);
        earlier.config_dir.append(&mut self.config_dir);
        *self = earlier;
    }
}

/// Where the configuration is: files as arguments and/or options, merged alike.
#[derive(Debug, Args, Default, Clone)]
pub struct ConfigArgs {
    /// Config files, merged as repeated `-c` are.
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub flags: ConfigFlags,
}

impl ConfigArgs {
    /// The files and folders to read, with pipeline.toml as the default.
    pub fn paths(&self) -> ConfigPaths {
        let mut files = self.flags.config.clone();
        files.extend(self.files.iter().cloned());
        if files.is_empty() && self.flags.config_dir.is_empty() {
            files.push(PathBuf::from("pipeline.toml"));
        }
        ConfigPaths {
            files,
            dirs: self.flags.config_dir.clone(),
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

/// `run`'s options besides where the configuration is.
#[derive(Debug, Args, Default)]
pub struct RunOptions {
    /// Reload when a config file changes (as on SIGHUP).
    #[arg(long, short = 'w')]
    pub watch_config: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    #[command(flatten)]
    pub options: RunOptions,
}

/// `siemflow test`: the pipeline (`-c`, `--config-dir`) and the test files.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// Test files (TOML with `[[tests]]` cases; docs/testing.md).
    #[arg(value_name = "TEST_FILE", required = true)]
    pub tests: Vec<PathBuf>,
    /// The pipeline whose transforms are tested (default: pipeline.toml).
    #[command(flatten)]
    pub config: ConfigFlags,
}

impl TestArgs {
    /// The pipeline's files and folders, with pipeline.toml as the default.
    pub fn pipeline(&self) -> ConfigPaths {
        ConfigArgs {
            files: Vec::new(),
            flags: self.config.clone(),
        }
        .paths()
    }
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print the option schemas as JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Only this plugin (`type` name).
    pub plugin: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<(Command, GlobalArgs), String> {
        let cli = Cli::try_parse_from(std::iter::once("siemflow").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        cli.resolve()
    }

    fn files(command: &Command) -> Vec<PathBuf> {
        match command {
            Command::Run(args) => args.config.paths().files,
            Command::Validate(args) => args.paths().files,
            _ => panic!("not run or validate"),
        }
    }

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn validate_takes_paths_and_options_merged() {
        let (command, _) = parse(&["validate", "a.toml", "-c", "b.toml", "c.toml"]).unwrap();
        assert_eq!(
            files(&command),
            ["b.toml", "a.toml", "c.toml"].map(PathBuf::from)
        );
        let (command, _) = parse(&["-c", "first.toml", "validate", "second.toml"]).unwrap();
        assert_eq!(
            files(&command),
            ["first.toml", "second.toml"].map(PathBuf::from)
        );
        let (command, _) = parse(&["validate"]).unwrap();
        assert_eq!(files(&command), [PathBuf::from("pipeline.toml")]);
    }

    #[test]
    fn run_takes_paths_and_runs_without_a_command() {
        let (command, _) = parse(&["run", "p.toml", "-w"]).unwrap();
        assert_eq!(files(&command), [PathBuf::from("p.toml")]);
        let Command::Run(args) = command else {
            panic!("run")
        };
        assert!(args.options.watch_config);
        let (command, _) = parse(&["-c", "p.toml", "--watch-config"]).unwrap();
        let Command::Run(args) = &command else {
            panic!("run")
        };
        assert!(args.options.watch_config);
        assert_eq!(files(&command), [PathBuf::from("p.toml")]);
        let (command, _) = parse(&["-w", "run", "-c", "q.toml"]).unwrap();
        let Command::Run(args) = command else {
            panic!("run")
        };
        assert!(
            args.options.watch_config,
            "given before `run`, it applies to it"
        );
    }

    #[test]
    fn global_options_go_before_or_after_the_command() {
        for args in [
            &["--log-level", "trace", "run", "-c", "p.toml"][..],
            &["run", "--log-level", "trace", "-c", "p.toml"][..],
            &["--log-level", "trace", "-c", "p.toml"][..],
        ] {
            let (command, global) = parse(args).unwrap();
            assert_eq!(global.log_level, "trace", "{args:?}");
            assert!(matches!(command, Command::Run(_)));
        }
        let (_, global) = parse(&["--log-format", "json", "--threads", "2", "validate"]).unwrap();
        assert_eq!(global.log_format, LogFormat::Json);
        assert_eq!(global.threads, Some(2));
        let (_, global) = parse(&["simulate", "splunk", "--log-format", "json"]).unwrap();
        assert_eq!(global.log_format, LogFormat::Json);
    }

    #[test]
    fn test_takes_test_files_and_the_pipeline_as_options() {
        let (command, _) =
            parse(&["-c", "a.toml", "test", "t1.toml", "t2.toml", "-c", "b.toml"]).unwrap();
        let Command::Test(args) = command else {
            panic!("test")
        };
        assert_eq!(args.tests, ["t1.toml", "t2.toml"].map(PathBuf::from));
        assert_eq!(
            args.pipeline().files,
            ["a.toml", "b.toml"].map(PathBuf::from)
        );
        let (command, _) = parse(&["test", "t.toml"]).unwrap();
        let Command::Test(args) = command else {
            panic!("test")
        };
        assert_eq!(args.pipeline().files, [PathBuf::from("pipeline.toml")]);
        assert!(parse(&["test"]).is_err(), "a test file is required");
    }

    #[test]
    fn run_options_before_another_command_are_refused() {
        let error = parse(&["-c", "p.toml", "list"]).unwrap_err();
        assert!(
            error.contains("apply to `run`, `validate` and `test` only"),
            "{error}"
        );
        let error = parse(&["-w", "validate"]).unwrap_err();
        assert!(
            error.contains("`--watch-config` applies to `run`"),
            "{error}"
        );
        assert!(
            parse(&["valdate"]).is_err(),
            "a typo is not taken for a file"
        );
    }
}
