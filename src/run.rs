//! `siemflow run` and `siemflow validate`: load, start, watch signals, reload, drain.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use siemflow_core::Registry;
use siemflow_core::api::{self, HealthRegistry};
use siemflow_core::config::{self, Config, ConfigErrors, ConfigPaths};
use siemflow_core::metrics::ComponentKind;
use siemflow_core::state::DataDirLock;
use siemflow_core::topology::Topology;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::EXIT_CONFIG;
use crate::cli::{ConfigArgs, GlobalArgs, RunArgs};
use crate::logging;

/// How often `--watch-config` looks at the config files.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// `siemflow validate`: every error, then a non-zero exit; or a summary.
pub fn validate(args: ConfigArgs, registry: &Registry) -> ExitCode {
    match config::load(&args.paths(), registry) {
        Ok(config) => {
            for warning in &config.warnings {
                eprintln!("{warning}");
            }
            let count = |kind| {
                config
                    .components
                    .values()
                    .filter(|c| c.kind == kind)
                    .count()
            };
            if let Err(errors) = describe_plugins(&config) {
                eprintln!("{errors}");
                return ExitCode::from(EXIT_CONFIG);
            }
            println!(
                "valid: {} sources, {} transforms, {} sinks",
                count(ComponentKind::Source),
                count(ComponentKind::Transform),
                count(ComponentKind::Sink)
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// Starts each external plugin (`type = "plugin"`) in describe mode: it must answer its
/// handshake and accept its `config` (checked against the schema it publishes); prints
/// what it is and the options it publishes. Every failure is collected.
fn describe_plugins(config: &Config) -> Result<(), String> {
    let plugins: Vec<_> = config
        .components
        .values()
        .filter_map(|c| Some((c, c.plugin.external()?)))
        .collect();
    if plugins.is_empty() {
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let mut errors = Vec::new();
    for (component, external) in plugins {
        let (id, kind) = (&component.id, component.kind);
        let described = runtime.block_on(siemflow_core::external::describe(id, kind, external));
        match described {
            Ok(answer) => {
                println!(
                    "{kind} `{id}`: plugin `{}` ({} {}, protocol {}, credit {})",
                    external.command,
                    answer.sdk_name,
                    answer.sdk_version,
                    answer.protocol_version,
                    answer.credit.max(1)
                );
                let schema = serde_json::from_str(&answer.config_schema).unwrap_or_default();
                for line in crate::list::options(&schema) {
                    println!("    config.{line}");
                }
            }
            Err(e) => errors.push(format!(
                "error: {kind} `{id}`: plugin `{}` {e}",
                external.command
            )),
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("\n"))
    }
}

/// `siemflow run`.
pub fn run(args: RunArgs, global: &GlobalArgs, registry: Registry) -> ExitCode {
    logging::init(global.log_format, &global.log_level);
    let paths = args.config.paths();
    let config = match config::load(&paths, &registry) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match runtime(global.threads) {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(supervise(
        config,
        paths,
        registry,
        args.options.watch_config,
    ));
    // Components that ignore cancellation must not hold the process open.
    runtime.shutdown_timeout(Duration::from_secs(1));
    code
}

fn log_warnings(config: &Config) {
    for warning in &config.warnings {
        tracing::warn!("{}", warning.to_string().replace('\n', " "));
    }
}

/// The async runtime of `run` and `simulate`: `--threads` workers, or one per core.
pub fn runtime(threads: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all().thread_name("siemflow");
    if let Some(threads) = threads {
        runtime.worker_threads(threads.max(1));
    }
    runtime.build()
}

fn log_errors(errors: &ConfigErrors, what: &str) {
    for error in &errors.0 {
        tracing::error!("{what}: {}", error.to_string().replace('\n', " "));
    }
}

async fn supervise(
    config: Config,
    paths: ConfigPaths,
    registry: Registry,
    watch: bool,
) -> ExitCode {
    // First of all: a SIGTERM that comes while the pipeline starts (a pod deleted during a
    // slow start, right after /health began to answer) is held and then drained like any
    // other, instead of killing the process by the signal's default action.
    let (mut sigterm, mut sigint, mut sighup) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(t), Ok(i), Ok(h)) => (t, i, h),
        _ => {
            tracing::error!("cannot install signal handlers");
            return ExitCode::FAILURE;
        }
    };
    // Before anything touches the data_dir: a second process on it must stop here.
    let mut data_dir_lock = match DataDirLock::take(&config.data_dir) {
        Ok(lock) => lock,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    siemflow_core::metrics::prometheus();
    let reloads_applied = metrics::counter!("config_reloads_total", "result" => "applied");
    let reloads_rejected = metrics::counter!("config_reloads_total", "result" => "rejected");
    log_warnings(&config);
    // Not ready until every component has started (a disk buffer opened, a sink's first
    // healthcheck passed): the API answers /health from here on, /ready 503 "starting".
    let health = HealthRegistry::starting();
    let api_stop = CancellationToken::new();
    if let Some(api) = &config.api {
        match api::serve(api, health.clone(), api_stop.clone()).await {
            Ok(bound) => {
                tracing::info!(address = %bound, "API listening (/health, /ready, /metrics)")
            }
            Err(e) => {
                tracing::error!("{e:#}");
                return ExitCode::FAILURE;
            }
        }
    }
    // The simulator must listen before the sources that talk to it start.
    let simulator = match config.extension::<crate::simulate::SimulatorTable>("simulator") {
        Some(table) => match crate::simulate::start_in_process(table).await {
            Ok(simulators) => {
                tracing::info!("in-process simulators started: {}", simulators.describe());
                Some(simulators)
            }
            Err(e) => {
                tracing::error!("{e:#}");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let components = config.components.len();
    let mut topology = match Topology::start(config, health.clone()) {
        Ok(topology) => topology,
        Err(e) => {
            tracing::error!("{e:#}");
            return ExitCode::FAILURE;
        }
    };
    health.started();
    tracing::info!(components, "pipeline started");

    let mut watched = if watch { stamps(&paths) } else { Vec::new() };
    let mut ticker = tokio::time::interval(WATCH_INTERVAL);
    let mut failed = false;
    let mut finished = false;

    loop {
        tokio::select! {
            _ = sigterm.recv() => { tracing::info!("SIGTERM: draining"); break; }
            _ = sigint.recv() => { tracing::info!("SIGINT: draining"); break; }
            _ = sighup.recv() => {
                tracing::info!("SIGHUP: reloading configuration");
                if reload(&mut topology, &mut data_dir_lock, &paths, &registry).await {
                    reloads_applied.increment(1);
                } else {
                    reloads_rejected.increment(1);
                }
            }
            _ = ticker.tick(), if watch => {
                let now = stamps(&paths);
                if now != watched {
                    watched = now;
                    tracing::info!("configuration changed on disk: reloading");
                    if reload(&mut topology, &mut data_dir_lock, &paths, &registry).await {
                        reloads_applied.increment(1);
                    } else {
                        reloads_rejected.increment(1);
                    }
                }
            }
            exit = topology.next_exit() => match exit {
                None => {
                    tracing::info!("every source finished and the pipeline drained");
                    finished = true;
                    break;
                }
                Some(exit) => match exit.result {
                    Ok(()) => tracing::info!(component = %exit.id, "component finished"),
                    Err(e) => {
                        tracing::error!(component = %exit.id, "component failed: {e:#}; stopping the pipeline");
                        failed = true;
                        break;
                    }
                },
            },
        }
    }

    // Unready while draining, so a receiver behind a Service gets no new connections.
    health.draining();
    let deadline = topology.config().shutdown_timeout;
    let drained = finished
        || tokio::select! {
            drained = topology.shutdown(deadline) => drained,
            _ = sigterm.recv() => second_signal(),
            _ = sigint.recv() => second_signal(),
        };
    api_stop.cancel();
    if let Some(simulator) = simulator {
        simulator.stop().await;
    }
    if drained {
        tracing::info!("drained; exiting");
    } else {
        tracing::error!(
            ?deadline,
            "shutdown deadline passed; unacknowledged events will be read again on restart"
        );
    }
    if failed || !drained {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn second_signal() -> ! {
    tracing::warn!("second signal: exiting at once");
    std::process::exit(130)
}

/// Loads the config again and applies it; false when it was rejected. A new data_dir is
/// locked before it is used, and the old one released once the reload applied.
async fn reload(
    topology: &mut Topology,
    data_dir_lock: &mut DataDirLock,
    paths: &ConfigPaths,
    registry: &Registry,
) -> bool {
    let new = match config::load(paths, registry) {
        Ok(new) => new,
        Err(errors) => {
            log_errors(&errors, "reload rejected");
            tracing::error!("reload rejected: the running pipeline is unchanged");
            return false;
        }
    };
    log_warnings(&new);
    if new.api != topology.config().api {
        tracing::warn!("changes to [api] take effect after a restart");
    }
    if new.extension_fingerprint("simulator")
        != topology.config().extension_fingerprint("simulator")
    {
        tracing::warn!("changes to [simulator] take effect after a restart");
    }
    // The data_dir this process holds already is not locked again: that would fail
    // against its own lock.
    let new_lock = if data_dir_lock.holds(&new.data_dir) {
        None
    } else {
        match DataDirLock::take(&new.data_dir) {
            Ok(lock) => Some(lock),
            Err(e) => {
                tracing::error!("reload rejected: {e}; the running pipeline is unchanged");
                return false;
            }
        }
    };
    match topology.reload(new).await {
        Ok(summary) => {
            if let Some(new_lock) = new_lock {
                *data_dir_lock = new_lock;
            }
            tracing::info!(
                added = ?summary.added,
                replaced = ?summary.replaced,
                removed = ?summary.removed,
                "reload applied"
            );
            true
        }
        Err(e) => {
            tracing::error!("reload rejected: {e:#}; the running pipeline is unchanged");
            false
        }
    }
}

/// Modification times of every config file, to notice edits.
fn stamps(paths: &ConfigPaths) -> Vec<(PathBuf, Option<SystemTime>)> {
    let files = paths.expand().unwrap_or_else(|_| paths.files.clone());
    files
        .into_iter()
        .map(|f| {
            let modified = std::fs::metadata(&f).and_then(|m| m.modified()).ok();
            (f, modified)
        })
        .collect()
}
