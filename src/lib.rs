//! The `siemflow` command line, usable by third parties with their own plugins:
//!
//! ```no_run
//! let mut registry = siemflow::standard_registry();
//! // my_plugin::register(&mut registry);
//! std::process::ExitCode::from(siemflow::main_with(registry));
//! ```

mod cli;
mod config_test;
mod list;
mod logging;
mod run;
mod simulate;

use std::process::ExitCode;

pub use siemflow_core::Registry;

/// Exit code for configuration errors (sysexits' EX_CONFIG, as Vector uses).
pub const EXIT_CONFIG: u8 = 78;

/// A registry with every plugin that ships with siemflow.
pub fn standard_registry() -> Registry {
    let mut registry = Registry::new();
    siemflow_sources::register(&mut registry);
    siemflow_transforms::register(&mut registry);
    siemflow_sinks::register(&mut registry);
    registry
}

/// Parses the command line and runs it with the given plugins.
pub fn main_with(mut registry: Registry) -> ExitCode {
    registry.extension::<simulate::SimulatorTable>(
        "simulator",
        "Starts the Microsoft 365 and SIEM simulators in-process (see docs/simulator.md)",
    );
    let (command, global) = cli::Cli::parse_command();
    match command {
        cli::Command::Run(args) => run::run(args, &global, registry),
        cli::Command::Validate(args) => run::validate(args, &registry),
        cli::Command::Test(args) => config_test::test(args, &global, &registry),
        cli::Command::List(args) => list::list(args, &registry),
        cli::Command::Simulate(args) => simulate::simulate(*args, &global),
    }
}
