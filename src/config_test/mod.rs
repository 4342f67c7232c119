//! `siemflow test`: config unit tests. Each case sends events into transforms of the
//! pipeline (built through the registry, as `run` builds them, so any registered type
//! works) and checks what their outputs emitted with VRL conditions.

mod spec;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use siemflow_core::buffer::{self, BufferConfig};
use siemflow_core::config::{self, Component, Config, ConfigErrors};
use siemflow_core::event::attach_ack;
use siemflow_core::fanout::{Output, Outputs, Targets};
use siemflow_core::metrics::{ComponentKind, ComponentLabels, ComponentMetrics};
use siemflow_core::plugin::ComponentContext;
use siemflow_core::registry::PluginConfig;
use siemflow_core::topology;
use siemflow_core::{Batch, BatchStatus, Event, Registry, TransformConfig, TransformContext};

use crate::EXIT_CONFIG;
use crate::cli::{GlobalArgs, TestArgs};
use spec::{Case, Quantifier};

/// Events of one output shown in full in a failure report; the rest are counted.
const SHOWN_EVENTS: usize = 3;

/// How long inputs may stay unsettled once the transforms ended and their outputs were
/// delivered (a transform settles what it holds as it ends; dedup from a task).
const SETTLE_PATIENCE: Duration = Duration::from_secs(10);

/// `siemflow test`: runs every case, prints one line per case and the failures' reasons;
/// exits 0 when all pass, 1 when any fails, 78 for a bad pipeline or test file.
pub fn test(args: TestArgs, global: &GlobalArgs, registry: &Registry) -> ExitCode {
    let config = match config::load(&args.pipeline(), registry) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let mut cases = match spec::load(&args.tests, &config) {
        Ok(cases) => cases,
        Err(errors) => {
            eprintln!("{}", ConfigErrors(errors));
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // Logs (a plugin's stderr among them) go to stderr; the report to stdout.
    crate::logging::init(global.log_format, &global.log_level);
    let runtime = match crate::run::runtime(Some(1)) {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut failed = 0;
    for case in &mut cases {
        let label = format!("{}: {}", case.file.display(), case.name);
        // Transforms run inside the runtime, as in a pipeline (dedup and plugins spawn tasks).
        match runtime.block_on(run_case(case, &config)) {
            Ok(()) => println!("test {label} ... passed"),
            Err(report) => {
                failed += 1;
                println!("test {label} ... FAILED\n{report}");
            }
        }
    }
    println!(
        "\n{} passed, {failed} failed ({} cases)",
        cases.len() - failed,
        cases.len()
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs one case; the error is its failure report.
async fn run_case(case: &mut Case, config: &Config) -> Result<(), String> {
    let state = tempfile::tempdir().map_err(|e| format!("  cannot make a state folder: {e}"))?;
    // Each input batch carries an acknowledgement, as a source's would: an event a
    // transform lets go without emitting or settling it fails it (read again in a run).
    let mut receipts = Vec::new();
    let inputs: BTreeMap<String, Vec<Batch>> = case
        .inputs
        .iter()
        .map(|(id, events)| {
            let mut batch = events.clone();
            receipts.push(attach_ack(&mut batch));
            (id.clone(), vec![batch])
        })
        .collect();
    let emitted = run_transforms(inputs, config, state.path()).await?;
    let mut report = String::new();
    for check in &mut case.checks {
        let events = emitted.get(&check.output).map(Vec::as_slice).unwrap_or(&[]);
        if let Some(expected) = check.events
            && expected != events.len()
        {
            let _ = writeln!(
                report,
                "  output `{}`: expected {expected} event{}, got {}",
                check.output,
                plural(expected),
                events.len()
            );
            show(&mut report, events);
        }
        for condition in &mut check.conditions {
            let mut matching = Vec::new();
            let mut errors = Vec::new();
            for (index, event) in events.iter().enumerate() {
                let mut value = event.value.clone();
                match condition.condition.matches(&mut value) {
                    Ok(true) => matching.push(index),
                    Ok(false) => {}
                    Err(message) => errors.push((index, message)),
                }
            }
            let failures: Vec<(usize, String)> = match condition.quantifier {
                Quantifier::All => (0..events.len())
                    .filter(|i| !matching.contains(i))
                    .map(|i| (i, reason(&errors, i)))
                    .collect(),
                Quantifier::None => matching.iter().map(|&i| (i, "it holds".into())).collect(),
                Quantifier::Any | Quantifier::Count(_) => Vec::new(),
            };
            let header = match condition.quantifier {
                Quantifier::All | Quantifier::None if !failures.is_empty() => Some(format!(
                    "{} of {} event{}",
                    failures.len(),
                    events.len(),
                    plural(events.len())
                )),
                Quantifier::Any if matching.is_empty() => {
                    Some(format!("no event of {} satisfies it", events.len()))
                }
                Quantifier::Count(n) if matching.len() != n => Some(format!(
                    "{} event{} of {} satisfy it",
                    matching.len(),
                    plural(matching.len()),
                    events.len()
                )),
                _ => None,
            };
            let Some(header) = header else {
                continue;
            };
            let _ = writeln!(
                report,
                "  output `{}`: condition ({}) failed: {header}\n    {}",
                check.output,
                condition.quantifier.describe(),
                condition.source.replace('\n', "\n    ")
            );
            if failures.is_empty() {
                for (index, message) in errors.iter().take(SHOWN_EVENTS) {
                    let _ = writeln!(report, "    event {index}: {message}");
                }
                show(&mut report, events);
            } else {
                for (index, why) in failures.iter().take(SHOWN_EVENTS) {
                    let _ = writeln!(
                        report,
                        "    event {index} ({why}): {}",
                        json(&events[*index])
                    );
                }
                if failures.len() > SHOWN_EVENTS {
                    let _ = writeln!(report, "    … and {} more", failures.len() - SHOWN_EVENTS);
                }
            }
        }
    }
    for output in &case.no_outputs_from {
        let events = emitted.get(output).map(Vec::as_slice).unwrap_or(&[]);
        if !events.is_empty() {
            let _ = writeln!(
                report,
                "  output `{output}`: expected no events, got {}",
                events.len()
            );
            show(&mut report, events);
        }
    }
    // Settled as a sink would; then every input must be settled too.
    for event in emitted.into_values().flatten() {
        event.deliver();
    }
    for receipt in receipts {
        match tokio::time::timeout(SETTLE_PATIENCE, receipt).await {
            Ok(BatchStatus::Delivered) => {}
            Ok(BatchStatus::Failed) => report.push_str(
                "  the transforms let go of input events without emitting or settling them \
                 (`Event::deliver`): a pipeline would fail them back to their source\n",
            ),
            Err(_) => {
                let _ = writeln!(
                    report,
                    "  input events were still unsettled {SETTLE_PATIENCE:?} after the \
                     transforms ended and their outputs were delivered"
                );
            }
        }
    }
    if report.is_empty() {
        Ok(())
    } else {
        Err(report.trim_end().to_string())
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Why an `all` condition did not hold for event `index`.
fn reason(errors: &[(usize, String)], index: usize) -> String {
    errors
        .iter()
        .find(|(i, _)| *i == index)
        .map_or_else(|| "false".to_string(), |(_, message)| message.clone())
}

fn json(event: &Event) -> String {
    serde_json::to_string(&event.value).unwrap_or_else(|e| format!("<not JSON: {e}>"))
}

/// Appends the first events of an output to a report.
fn show(report: &mut String, events: &[Event]) {
    for (index, event) in events.iter().enumerate().take(SHOWN_EVENTS) {
        let _ = writeln!(report, "    event {index}: {}", json(event));
    }
    if events.len() > SHOWN_EVENTS {
        let _ = writeln!(report, "    … and {} more", events.len() - SHOWN_EVENTS);
    }
}

/// Runs the transforms the inputs reach in graph order, each exactly as `run` runs it
/// (`topology::transform_task`: a synchronous transform or its own task, such as an
/// external plugin), and returns what each output (`id`, `id.name`) emitted.
async fn run_transforms(
    mut pending: BTreeMap<String, Vec<Batch>>,
    config: &Config,
    state: &Path,
) -> Result<BTreeMap<String, Vec<Event>>, String> {
    let reached = spec::downstream(config, pending.keys());
    let mut emitted: BTreeMap<String, Vec<Event>> = BTreeMap::new();
    let mut done: BTreeSet<String> = BTreeSet::new();
    while done.len() < reached.len() {
        // The next transform whose reached inputs have all run (the graph is acyclic).
        let Some(component) = config.components.values().find(|c| {
            reached.contains(&c.id)
                && !done.contains(&c.id)
                && c.inputs
                    .iter()
                    .all(|i| !reached.contains(&i.component) || done.contains(&i.component))
        }) else {
            return Err("  the transforms the inputs reach form a cycle".into());
        };
        done.insert(component.id.clone());
        let PluginConfig::Transform(plugin) = &component.plugin else {
            continue;
        };
        let batches = pending.remove(&component.id).unwrap_or_default();
        let ports = run_one(component, plugin.as_ref(), batches, state)
            .await
            .map_err(|e| {
                let why = format!("{e:#}").replace('\n', "\n    ");
                format!("  transform `{}` failed: {why}", component.id)
            })?;
        for (name, events) in ports {
            if events.is_empty() {
                continue;
            }
            for consumer in config.components.values() {
                let reads = consumer
                    .inputs
                    .iter()
                    .any(|i| i.component == component.id && i.output == name);
                if reads && reached.contains(&consumer.id) {
                    pending
                        .entry(consumer.id.clone())
                        .or_default()
                        .push(events.clone());
                }
            }
            let key = match &name {
                Some(name) => format!("{}.{name}", component.id),
                None => component.id.clone(),
            };
            emitted.entry(key).or_default().extend(events);
        }
    }
    Ok(emitted)
}

/// Builds one transform with a scratch state folder, feeds it `batches`, closes its input
/// and returns what each of its outputs emitted (`None`: the default output).
async fn run_one(
    component: &Component,
    plugin: &dyn TransformConfig,
    batches: Vec<Batch>,
    state: &Path,
) -> anyhow::Result<Vec<(Option<String>, Vec<Event>)>> {
    let labels = ComponentLabels {
        id: component.id.clone(),
        kind: ComponentKind::Transform,
        type_name: component.type_name.clone(),
    };
    let cx = TransformContext {
        component: ComponentContext {
            id: component.id.clone(),
            state_dir: state.join(&component.id),
            metrics: ComponentMetrics::new(labels.clone()),
        },
    };
    let (input, receiver) = buffer::channel(&BufferConfig::default(), &labels);
    // Each output feeds a collector that reads while the transform runs (never full).
    let names: Vec<Option<String>> = std::iter::once(None)
        .chain(plugin.outputs().into_iter().map(Some))
        .collect();
    let mut outputs = Vec::new();
    let mut collectors = Vec::new();
    for name in &names {
        let (tx, mut rx) = buffer::channel(&BufferConfig::default(), &labels);
        outputs.push(Output::new(
            name.clone(),
            Targets::new(vec![("test".to_string(), tx)]),
            &labels,
        ));
        collectors.push(tokio::spawn(async move {
            let mut events = Vec::new();
            while let Some(batch) = rx.recv().await {
                events.extend(batch);
            }
            events
        }));
    }
    let outputs = Outputs {
        default: outputs.remove(0),
        named: outputs,
    };
    let task = tokio::spawn(topology::transform_task(plugin, &cx, receiver, outputs)?);
    for batch in batches {
        if input.send(batch).await.is_err() {
            break; // the task ended early: its result says why
        }
    }
    // Closing the input ends the transform; its outputs close with it.
    drop(input);
    task.await??;
    let mut ports = Vec::new();
    for (name, collector) in names.into_iter().zip(collectors) {
        ports.push((name, collector.await?));
    }
    Ok(ports)
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use siemflow_core::config::SourceFile;
    use siemflow_core::{Transform, TransformOutputs};

    use super::*;

    /// A transform that loses what it is given: neither emitted nor settled.
    #[derive(Debug, Deserialize, schemars::JsonSchema)]
    struct Leaky {}

    impl TransformConfig for Leaky {
        fn build(&self, _cx: &TransformContext) -> anyhow::Result<Box<dyn Transform>> {
            Ok(Box::new(Leak))
        }
    }

    struct Leak;

    impl Transform for Leak {
        fn transform(&mut self, batch: Batch, _out: &mut TransformOutputs) {
            drop(batch);
        }
    }

    fn cases(pipeline: &str, tests: &str) -> (Config, Vec<Case>) {
        let mut registry = crate::standard_registry();
        registry.transform::<Leaky>("leaky", "Loses every event");
        let config =
            config::load_files(&[SourceFile::new("p.toml", pipeline)], &registry, &|_| None)
                .expect("the pipeline loads");
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("t.toml");
        std::fs::write(&file, tests).expect("write");
        let cases = spec::load(&[file], &config)
            .unwrap_or_else(|errors| panic!("{}", ConfigErrors(errors)));
        (config, cases)
    }

    const PIPELINE: &str = r#"
[sources.in]
type = "stdin"
[transforms.lossy]
type = "leaky"
inputs = ["in"]
[transforms.keep]
type = "filter"
inputs = ["in"]
condition = '.keep == true'
[sinks.out]
type = "blackhole"
inputs = ["lossy", "keep"]
"#;

    #[tokio::test]
    async fn a_transform_that_loses_events_fails_its_case() {
        let (config, mut cases) = cases(
            PIPELINE,
            r#"
[[tests]]
name = "lost"
insert_at = "lossy"
no_outputs_from = ["lossy"]
[[tests.inputs]]
event = { a = 1 }
"#,
        );
        let report = run_case(&mut cases[0], &config)
            .await
            .expect_err("a lost event fails the case");
        assert!(
            report.contains("let go of input events without emitting or settling them"),
            "{report}"
        );
    }

    #[tokio::test]
    async fn events_dropped_on_purpose_are_settled() {
        // `filter` drops what does not match with Event::deliver: nothing is lost.
        let (config, mut cases) = cases(
            PIPELINE,
            r#"
[[tests]]
name = "filtered"
insert_at = "keep"
[[tests.inputs]]
json = '[{"keep": true}, {"keep": false}, {"keep": false}]'
[[tests.outputs]]
extract_from = "keep"
events = 1
"#,
        );
        run_case(&mut cases[0], &config)
            .await
            .expect("the case passes");
    }
}
