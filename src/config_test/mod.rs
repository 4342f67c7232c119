//! `siemflow test`: config unit tests. Each case sends events into transforms of the
//! pipeline (built through the registry, as `run` builds them, so any registered type
//! works) and checks what their outputs emitted with VRL conditions.

mod spec;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use siemflow_core::config::{self, Config, ConfigErrors};
use siemflow_core::metrics::{ComponentKind, ComponentLabels, ComponentMetrics};
use siemflow_core::plugin::ComponentContext;
use siemflow_core::registry::PluginConfig;
use siemflow_core::{Event, Registry, Transform, TransformContext, TransformOutputs};

use crate::EXIT_CONFIG;
use crate::cli::TestArgs;
use spec::{Case, Quantifier};

/// Events of one output shown in full in a failure report; the rest are counted.
const SHOWN_EVENTS: usize = 3;

/// `siemflow test`: runs every case, prints one line per case and the failures' reasons;
/// exits 0 when all pass, 1 when any fails, 78 for a bad pipeline or test file.
pub fn test(args: TestArgs, registry: &Registry) -> ExitCode {
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
    let emitted = run_transforms(case, config, state.path())?;
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
    // Settled as a sink would, so transforms holding acknowledgements (dedup) end cleanly.
    for event in emitted.into_values().flatten() {
        event.deliver();
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

/// Builds the transforms the inputs reach, runs them in graph order and returns what
/// each output (`id`, `id.name`) emitted.
fn run_transforms(
    case: &Case,
    config: &Config,
    state: &Path,
) -> Result<BTreeMap<String, Vec<Event>>, String> {
    let reached = spec::downstream(config, case.inputs.keys());
    let mut pending: BTreeMap<String, Vec<Vec<Event>>> = case
        .inputs
        .iter()
        .map(|(id, events)| (id.clone(), vec![events.clone()]))
        .collect();
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
        let labels = ComponentLabels {
            id: component.id.clone(),
            kind: ComponentKind::Transform,
            type_name: component.type_name.clone(),
        };
        let cx = TransformContext {
            component: ComponentContext {
                id: component.id.clone(),
                state_dir: state.join(&component.id),
                metrics: ComponentMetrics::new(labels),
            },
        };
        let mut transform: Box<dyn Transform> = plugin
            .build(&cx)
            .map_err(|e| format!("  cannot build transform `{}`: {e:#}", component.id))?;
        let names = plugin.outputs();
        let mut out = TransformOutputs::new(&names);
        let batches = pending.remove(&component.id).unwrap_or_default();
        for batch in batches {
            transform.transform(batch, &mut out);
            route(
                config,
                &component.id,
                &names,
                &mut out,
                &mut pending,
                &mut emitted,
            );
        }
        transform.finish(&mut out);
        route(
            config,
            &component.id,
            &names,
            &mut out,
            &mut pending,
            &mut emitted,
        );
    }
    Ok(emitted)
}

/// Records what a transform emitted and queues a copy for every transform reading it.
fn route(
    config: &Config,
    id: &str,
    names: &[String],
    out: &mut TransformOutputs,
    pending: &mut BTreeMap<String, Vec<Vec<Event>>>,
    emitted: &mut BTreeMap<String, Vec<Event>>,
) {
    let (default, named) = out.drain();
    let ports =
        std::iter::once((id.to_string(), None, default)).chain(named.into_iter().filter_map(
            |(i, events)| Some((format!("{id}.{}", names.get(i)?), names.get(i), events)),
        ));
    for (key, name, events) in ports {
        if events.is_empty() {
            continue;
        }
        for consumer in config.components.values() {
            let reads = consumer
                .inputs
                .iter()
                .any(|i| i.component == id && i.output.as_ref() == name);
            if reads && consumer.kind == ComponentKind::Transform {
                pending
                    .entry(consumer.id.clone())
                    .or_default()
                    .push(events.clone());
            }
        }
        emitted.entry(key).or_default().extend(events);
    }
}
