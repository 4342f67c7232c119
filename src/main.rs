//! The `siemflow` binary: the standard plugins behind the command line.

fn main() -> std::process::ExitCode {
    siemflow::main_with(siemflow::standard_registry())
}
