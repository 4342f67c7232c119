//! `bench/run.sh`: measures whole pipelines on realistic audit records and writes
//! bench/RESULTS.md with the machine, date, commit and figures.

mod dataset;
mod scenario;

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

/// Benchmark siemflow pipelines end to end.
#[derive(Parser)]
struct Args {
    /// The release siemflow binary.
    #[arg(long, default_value = "target/release/siemflow")]
    siemflow: PathBuf,
    /// Records per run.
    #[arg(long, default_value_t = 500_000)]
    events: u64,
    /// Exact duplicates, in per cent.
    #[arg(long, default_value_t = 3)]
    duplicates: u64,
    /// Only scenarios whose name contains this.
    #[arg(long)]
    only: Option<String>,
    /// Where to write the report.
    #[arg(long, default_value = "bench/RESULTS.md")]
    report: PathBuf,
    /// Template records.
    #[arg(long, default_value = "tests/fixtures/o365")]
    fixtures: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let siemflow = std::fs::canonicalize(&args.siemflow).with_context(|| {
        format!(
            "{} (build it with cargo build --release)",
            args.siemflow.display()
        )
    })?;
    let work = tempfile::tempdir()?;
    let templates = dataset::templates(&args.fixtures)?;
    let input = work.path().join("input.ndjson");
    let data = dataset::write(&input, &templates, args.events, args.duplicates)?;
    eprintln!(
        "dataset: {} records, {:.1} MB, {:.0} bytes/record on average",
        data.events,
        data.bytes as f64 / 1e6,
        data.bytes as f64 / data.events as f64
    );
    let mut results = Vec::new();
    for scenario in scenario::all() {
        if args
            .only
            .as_deref()
            .is_some_and(|o| !scenario.name.contains(o))
        {
            continue;
        }
        eprintln!("running {} ...", scenario.name);
        let result = scenario::run(&scenario, &siemflow, &input, &data, work.path())?;
        eprintln!(
            "  {:.0} events/s, {:.1} MB/s, peak RSS {:.1} MiB",
            result.events_per_second, result.megabytes_per_second, result.peak_rss_mib
        );
        results.push((scenario, result));
    }
    let report = scenario::report(&results, &data);
    std::fs::write(&args.report, &report)?;
    println!("{report}");
    Ok(())
}
