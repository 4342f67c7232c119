//! The dedup figures that are not whole pipelines: lookups per second when the keys fit in
//! memory, and 10 million distinct keys against the default 64 MiB budget. Both are
//! release-mode tests in `siemflow-transforms` (they need the seen-set's internals); this
//! runs them and lifts their measured lines into the report.

use std::process::Command;

use anyhow::{Context, bail};

/// The tests run, in the order their lines appear in the report.
const TESTS: [&str; 2] = [
    "dedup_lookups_per_second",
    "ten_million_distinct_keys_stay_inside_the_default_budget",
];

/// Runs the measuring tests; returns the report section.
pub fn run() -> anyhow::Result<String> {
    let mut command = Command::new("cargo");
    command.args([
        "test",
        "--release",
        "--locked",
        "--quiet",
        "-p",
        "siemflow-transforms",
        "--lib",
        "--",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
        "--exact",
    ]);
    for test in TESTS {
        command.arg(format!("dedup::tests::{test}"));
    }
    let output = command
        .output()
        .context("cannot run cargo test for the dedup measurements")?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!("the dedup measuring tests failed (their budget assertions included):\n{stderr}");
    }
    let measured: Vec<&str> = stderr
        .lines()
        .filter(|l| {
            l.starts_with("dedup: ") || l.starts_with("seen-set alone: ") || l.contains(" keys: ")
        })
        .collect();
    if measured.len() < 3 {
        bail!("the dedup tests printed no figures:\n{stderr}");
    }
    let mut out = String::from("\n## dedup\n\n");
    out.push_str(
        "Release-mode tests in `siemflow-transforms`, run by `bench/run.sh` \
         (`cargo test --release -p siemflow-transforms -- --ignored dedup::tests::…`). \
         The first line is the whole transform on 500,000 keys that fit in memory (target \
         ≥ 1,000,000 lookups/s); the last is 10 million distinct keys against the default \
         64 MiB memory budget — the test fails if the budget is ever exceeded.\n\n",
    );
    for line in measured {
        out.push_str(&format!("- {}\n", line.trim()));
    }
    Ok(out)
}
