//! The `siemflow` binary: the standard plugins behind the command line.

// Events are many small allocations (one per field); mimalloc frees them markedly faster
// than glibc's allocator across threads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    siemflow::main_with(siemflow::standard_registry())
}
