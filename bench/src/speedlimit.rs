//! The yardstick: bench/speedlimit (a copy of ../shared/bench/speedlimit), the canonical
//! job done by hand on one thread. Timed on the same input just before each pipeline, so a
//! pipeline's speed is reported as a ratio that survives the machine's noise (issue 16).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::Context;

/// Runs speedlimit over `input` (its CEF lines into `work`) and returns its events/s.
pub fn events_per_second(
    binary: &Path,
    input: &Path,
    work: &Path,
    events: u64,
) -> anyhow::Result<f64> {
    let out = work.join("speedlimit.cef");
    let started = Instant::now();
    let status = Command::new(binary)
        .arg(input)
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .with_context(|| {
            format!(
                "starting {} (bench/run.sh builds it; or cargo build --release --manifest-path bench/speedlimit/Cargo.toml --target-dir target/speedlimit)",
                binary.display()
            )
        })?;
    let seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(status.success(), "speedlimit failed: {status}");
    // Its output is not compared: only its time matters, and the file is large.
    let _ = std::fs::remove_file(&out);
    Ok(events as f64 / seconds)
}

/// The report's line for a section whose runs are compared with the yardstick by hand.
pub fn line(events_per_second: f64) -> String {
    format!(
        "\n`bench/speedlimit` on the same input, right after these runs: {events_per_second:.0} \
         events/s (divide a run's events/s by it for its ratio).\n"
    )
}
