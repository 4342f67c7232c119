//! `bench/run.sh`: measures whole pipelines on realistic audit records and writes
//! bench/RESULTS.md with the machine, date, commit and figures.

mod backfill;
mod dataset;
mod dedup;
mod graph;
mod kafka;
mod o365;
mod otlp;
mod peers;
mod scenario;
mod speedlimit;
mod syslog;

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
    #[arg(long, default_value_t = 2)]
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
    /// Only template records at least this long as compact JSON (1000 gives records of
    /// about 1.2 KB, the shape of issue 16; the default keeps every sample, ~870 bytes).
    #[arg(long, default_value_t = 0)]
    min_template_bytes: usize,
    /// Records per hour of the simulated tenant in the o365 backfill (7 days of them).
    #[arg(long, default_value_t = 7_150)]
    o365_records_per_hour: u32,
    /// Latency added to every simulated API response, in milliseconds.
    #[arg(long, default_value_t = 50)]
    o365_latency_ms: u64,
    /// Alerts per weekday hour of the simulated tenant in the graph backfill (7 days of them).
    #[arg(long, default_value_t = 1_431)]
    graph_alerts_per_hour: u32,
    /// Sign-ins per weekday hour (all four kinds) in the graph backfill.
    #[arg(long, default_value_t = 7_128)]
    graph_sign_ins_per_hour: u32,
    /// Latency added to every simulated Graph response, in milliseconds.
    #[arg(long, default_value_t = 50)]
    graph_latency_ms: u64,
    /// The test venv with tansu and confluent-kafka (`scripts/test-deps.sh` makes it).
    #[arg(long, default_value = ".venv-test")]
    venv: PathBuf,
    /// Runs of the kafka scenario per compression.
    #[arg(long, default_value_t = 3)]
    kafka_runs: usize,
    /// The kafka sink's compression codecs to run, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "none,gzip")]
    kafka_compression: Vec<String>,
    /// Partitions of the kafka scenario's topic.
    #[arg(long, default_value_t = 6)]
    kafka_partitions: u32,
    /// The yardstick program (bench/speedlimit), timed before each pipeline.
    #[arg(long, default_value = "target/speedlimit/release/speedlimit")]
    speedlimit: PathBuf,
    /// Runs of the otlp scenario per protocol.
    #[arg(long, default_value_t = 3)]
    otlp_runs: usize,
    /// Only write the dataset to this file and exit (for profiling a pipeline by hand).
    #[arg(long)]
    write_dataset: Option<PathBuf>,
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
    let templates = dataset::templates(&args.fixtures, args.min_template_bytes)?;
    if let Some(path) = &args.write_dataset {
        let data = dataset::write(path, &templates, args.events, args.duplicates)?;
        eprintln!(
            "{}: {} records, {} bytes",
            path.display(),
            data.events,
            data.bytes
        );
        return Ok(());
    }
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
        let yardstick =
            speedlimit::events_per_second(&args.speedlimit, &input, work.path(), data.events)?;
        let mut result = scenario::run(&scenario, &siemflow, &input, &data, work.path())?;
        result.speedlimit_events_per_second = yardstick;
        eprintln!(
            "  {:.0} events/s ({:.2}× speedlimit's {:.0}), {:.1} MB/s, peak RSS {:.1} MiB",
            result.events_per_second,
            result.events_per_second / yardstick,
            yardstick,
            result.megabytes_per_second,
            result.peak_rss_mib
        );
        results.push((scenario, result));
    }
    let mut report = scenario::report(&results, &data);
    let backfill = "o365_management backfill";
    if args.only.as_deref().is_none_or(|o| backfill.contains(o)) {
        eprintln!("running {backfill} (several minutes: it is bound by the request budget) ...");
        let result = o365::run(
            &siemflow,
            work.path(),
            args.o365_records_per_hour,
            std::time::Duration::from_millis(args.o365_latency_ms),
        )?;
        eprintln!(
            "  {:.0} records/s, {:.0} requests/min of {:.0}, peak RSS {:.1} MiB",
            result.records_per_second,
            result.rate.per_minute(),
            result.rate.budget_per_minute,
            result.peak_rss_mib
        );
        report.push_str(&o365::report(&result));
    }
    let graph_backfill = "graph backfill";
    if args
        .only
        .as_deref()
        .is_none_or(|o| graph_backfill.contains(o))
    {
        eprintln!(
            "running {graph_backfill} (about half an hour: it is bound by the request budgets) ..."
        );
        let result = graph::run(
            &siemflow,
            work.path(),
            graph::GraphWorld {
                alerts_per_hour: args.graph_alerts_per_hour,
                sign_ins_per_hour: args.graph_sign_ins_per_hour,
                latency: std::time::Duration::from_millis(args.graph_latency_ms),
            },
        )?;
        for f in [&result.security, &result.identity] {
            eprintln!(
                "  {}: {:.0} records/s ({:.1} % of the budget-limited maximum), {:.1} requests/min of {:.0}",
                f.name,
                f.records_per_second(),
                f.share_of_maximum(),
                f.rate.per_minute(),
                f.rate.budget_per_minute
            );
        }
        eprintln!("  peak RSS {:.1} MiB", result.peak_rss_mib);
        report.push_str(&graph::report(&result));
    }
    if args.only.as_deref().is_none_or(|o| "syslog".contains(o)) {
        let mut runs = Vec::new();
        for decoding in ["cef", "text"] {
            eprintln!("running syslog ({decoding}) ...");
            let result = syslog::run(&siemflow, work.path(), args.events, 2, decoding)?;
            eprintln!(
                "  {:.0} events/s, {:.0} per CPU second, peak RSS {:.1} MiB",
                result.events_per_second(),
                result.events_per_cpu_second(),
                result.peak_rss_mib
            );
            runs.push(result);
        }
        report.push_str(&syslog::report(&runs));
    }
    if args.only.as_deref().is_none_or(|o| "kafka".contains(o)) {
        eprintln!("running kafka (file → kafka, kafka → blackhole; a tansu broker each run) ...");
        let runs = kafka::run(
            &siemflow,
            &input,
            &data,
            work.path(),
            &kafka::Options {
                venv: &args.venv,
                runs: args.kafka_runs,
                compressions: &args.kafka_compression,
                partitions: args.kafka_partitions,
            },
        )?;
        report.push_str(&kafka::report(&runs, args.kafka_partitions));
        let yardstick =
            speedlimit::events_per_second(&args.speedlimit, &input, work.path(), data.events)?;
        report.push_str(&speedlimit::line(yardstick));
    }
    if args.only.as_deref().is_none_or(|o| "otlp".contains(o)) {
        eprintln!(
            "running otlp (file → opentelemetry sink → opentelemetry source → blackhole) ..."
        );
        let runs = otlp::run(&siemflow, &input, &data, work.path(), args.otlp_runs)?;
        report.push_str(&otlp::report(&runs));
        let yardstick =
            speedlimit::events_per_second(&args.speedlimit, &input, work.path(), data.events)?;
        report.push_str(&speedlimit::line(yardstick));
    }
    if args.only.as_deref().is_none_or(|o| "dedup".contains(o)) {
        eprintln!(
            "running the dedup measurements (release tests; 10 million keys take minutes) ..."
        );
        report.push_str(&dedup::run()?);
    }
    std::fs::write(&args.report, &report)?;
    println!("{report}");
    Ok(())
}
