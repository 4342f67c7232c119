//! Checks that the components form a valid graph: inputs exist, no cycles.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use super::{Component, ConfigError, SourceFile, suggest};
use crate::metrics::ComponentKind;

type Declared = BTreeMap<String, (usize, Range<usize>, ComponentKind)>;
type InputSpans = BTreeMap<String, (usize, super::InputSpans)>;

/// Every output of every component, as `id` or `id.name`, with its producer's kind.
fn outputs(components: &BTreeMap<String, Component>) -> BTreeMap<String, ComponentKind> {
    let mut all = BTreeMap::new();
    for c in components.values() {
        if c.plugin.has_default_output() {
            all.insert(c.id.clone(), c.kind);
        }
        for name in c.plugin.outputs() {
            all.insert(format!("{}.{name}", c.id), c.kind);
        }
    }
    all
}

pub(super) fn check(
    files: &[SourceFile],
    components: &BTreeMap<String, Component>,
    declared: &Declared,
    input_spans: &InputSpans,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<ConfigError>,
) {
    let available = outputs(components);
    let names: Vec<&str> = available.keys().map(String::as_str).collect();
    let mut consumed = BTreeSet::new();
    for component in components.values() {
        let Some((file_index, spans)) = input_spans.get(&component.id) else {
            continue;
        };
        let file = &files[*file_index];
        let where_ = format!("{}.{}", component.kind.table(), component.id);
        for (input, (text, span)) in component.inputs.iter().zip(spans) {
            let key = input.to_string();
            if key == component.id {
                errors.push(
                    ConfigError::new(format!("`{}` lists itself as an input", component.id))
                        .at(file, span.clone())
                        .component(&where_)
                        .key("inputs"),
                );
                continue;
            }
            if available.contains_key(&key) {
                consumed.insert(key);
                continue;
            }
            if declared.contains_key(&input.component) && !components.contains_key(&input.component)
            {
                // Its own table has errors (already reported), so its outputs are unknown.
                continue;
            }
            let message = match declared.get(&input.component) {
                Some((_, _, ComponentKind::Sink)) if input.output.is_none() => {
                    format!("input `{text}` is a sink; a sink's events cannot be consumed")
                }
                Some(_) if input.output.is_some() => format!(
                    "`{}` has no output named `{}`",
                    input.component,
                    input.output.as_deref().unwrap_or_default()
                ),
                Some(_) => format!("input `{text}` is not available"),
                None => format!("input `{text}` does not exist"),
            };
            errors.push(
                ConfigError::new(message)
                    .at(file, span.clone())
                    .component(&where_)
                    .key("inputs")
                    .hint(suggest(text, &names, "available inputs")),
            );
        }
    }

    if let Some(cycle) = find_cycle(components) {
        let first = &cycle[0];
        let mut error = ConfigError::new(format!(
            "the components form a cycle: {}",
            cycle.join(" -> ")
        ))
        .hint("events must flow from sources to sinks; break the cycle by removing one of these inputs");
        if let (Some(component), Some((file_index, span, kind))) =
            (components.get(first), declared.get(first))
        {
            error = error
                .at(&files[*file_index], span.clone())
                .component(format!("{}.{}", kind.table(), component.id))
                .key("inputs");
        }
        errors.push(error);
    }

    for (output, kind) in &available {
        if consumed.contains(output) {
            continue;
        }
        let component = output.split('.').next().unwrap_or(output);
        let Some((file_index, span, _)) = declared.get(component) else {
            continue;
        };
        // Unused named outputs are common (route's `_unmatched`); flag only default ones.
        if output.contains('.') {
            continue;
        }
        warnings.push(
            ConfigError::new(format!(
                "{kind} `{output}` has no consumer; its events are counted and discarded"
            ))
            .at(&files[*file_index], span.clone())
            .component(format!("{}.{component}", kind.table()))
            .hint(format!(
                "add `\"{output}\"` to some transform's or sink's `inputs`"
            ))
            .warning(),
        );
    }
}

/// A cycle of component ids (first repeated at the end), if the graph has one.
fn find_cycle(components: &BTreeMap<String, Component>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit(
        id: &str,
        components: &BTreeMap<String, Component>,
        marks: &mut BTreeMap<String, Mark>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match marks.get(id) {
            Some(Mark::Done) => return None,
            Some(Mark::Visiting) => {
                let start = stack.iter().position(|s| s == id).unwrap_or(0);
                let mut cycle = stack[start..].to_vec();
                cycle.push(id.to_string());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(id.to_string(), Mark::Visiting);
        stack.push(id.to_string());
        if let Some(component) = components.get(id) {
            for input in &component.inputs {
                if let Some(cycle) = visit(&input.component, components, marks, stack) {
                    return Some(cycle);
                }
            }
        }
        stack.pop();
        marks.insert(id.to_string(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for id in components.keys() {
        let mut stack = Vec::new();
        if let Some(mut cycle) = visit(id, components, &mut marks, &mut stack) {
            // Report in the direction events flow.
            cycle.reverse();
            return Some(cycle);
        }
    }
    None
}
