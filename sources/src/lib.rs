//! siemflow-sources: the source plugins, one module (folder) per plugin `type`.

pub mod file;
mod lines;
mod schema;
pub mod stdin;
#[cfg(test)]
mod testing;

/// Registers every source plugin of this crate.
pub fn register(registry: &mut siemflow_core::Registry) {
    registry.source::<file::FileConfig>(
        "file",
        "Tails files matching globs (JSON or text lines), through rotation, checkpointing only delivered data",
    );
    registry.source::<stdin::StdinConfig>(
        "stdin",
        "Reads JSON or text lines from standard input; ends, after every batch is settled, at end of input",
    );
}
