//! `enrich`: adds static fields, CSV lookups (exact and CIDR), GeoIP/ASN and derived
//! fields to events. A miss leaves the event unchanged and is counted, never an error.

mod cidr;
mod config;
mod derive;
mod fields;
mod geoip;
mod ip;
mod lookup;
#[cfg(test)]
mod tests;
mod watch;

pub use config::{Derivation, DeriveConfig, EnrichConfig, GeoipConfig, LookupConfig, MatchKind};

use std::time::Instant;

use metrics::Counter;
use siemflow_core::metrics::ComponentLabels;
use siemflow_core::{Batch, Transform, TransformOutputs, Value};

use fields::{FieldValue, StaticField};

/// Counts the misses of one enricher by kind (`enrich_misses_total{enricher, kind}`).
#[derive(Debug)]
pub struct Misses {
    labels: ComponentLabels,
    enricher: String,
    /// Few kinds per enricher: a vector beats a map, and counters are looked up once.
    kinds: Vec<(&'static str, Counter, u64)>,
}

impl Misses {
    fn new(labels: &ComponentLabels, enricher: &str) -> Self {
        Misses {
            labels: labels.clone(),
            enricher: enricher.to_string(),
            kinds: Vec::new(),
        }
    }

    fn count(&mut self, kind: &'static str) {
        if let Some((_, counter, n)) = self.kinds.iter_mut().find(|(k, ..)| *k == kind) {
            counter.increment(1);
            *n += 1;
            return;
        }
        let counter = self.labels.counter(
            "enrich_misses_total",
            &[("enricher", &self.enricher), ("kind", kind)],
        );
        counter.increment(1);
        self.kinds.push((kind, counter, 1));
    }

    /// How many misses of a kind were counted (tests).
    #[cfg(test)]
    pub fn get(&self, kind: &str) -> u64 {
        self.kinds
            .iter()
            .find(|(k, ..)| *k == kind)
            .map_or(0, |(.., n)| *n)
    }
}

/// Where the transform reads the time for its reload checks; tests move it by hand.
#[derive(Debug, Clone, Default)]
enum Clock {
    #[default]
    System,
    #[cfg(test)]
    Manual(std::sync::Arc<std::sync::Mutex<Instant>>),
}

impl Clock {
    fn now(&self) -> Instant {
        match self {
            Clock::System => Instant::now(),
            #[cfg(test)]
            Clock::Manual(now) => *now.lock().expect("clock lock"),
        }
    }
}

/// The running transform.
#[derive(Debug)]
pub struct Enrich {
    fields: Vec<StaticField>,
    field_misses: Misses,
    lookups: Vec<lookup::LookupTable>,
    geoip: Option<geoip::Geoip>,
    derived: Vec<derive::Derived>,
    clock: Clock,
}

impl Enrich {
    fn new(config: &EnrichConfig, labels: &ComponentLabels) -> anyhow::Result<Self> {
        let clock = Clock::default();
        let now = clock.now();
        let fields = config
            .fields
            .iter()
            .map(|(name, value)| {
                StaticField::new(name, value).map_err(|e| anyhow::anyhow!("fields.{name}: {e}"))
            })
            .collect::<anyhow::Result<_>>()?;
        let lookups = config
            .lookup
            .iter()
            .enumerate()
            .map(|(i, l)| {
                lookup::LookupTable::new(l, labels, now)
                    .map_err(|e| anyhow::anyhow!("option `lookup[{i}]`: {e:#}"))
            })
            .collect::<anyhow::Result<_>>()?;
        let geoip = config
            .geoip
            .as_ref()
            .map(|g| geoip::Geoip::new(g, labels, now).map_err(|e| anyhow::anyhow!("{e:#}")))
            .transpose()?;
        Ok(Enrich {
            fields,
            field_misses: Misses::new(labels, "fields"),
            lookups,
            geoip,
            derived: derive::build(&config.derive, labels)?,
            clock,
        })
    }

    /// Enriches one event in place.
    fn enrich(&mut self, event: &mut Value) {
        for field in &self.fields {
            match &field.value {
                FieldValue::Fixed(value) => {
                    event.insert(&field.path, value.clone());
                }
                FieldValue::Template(template) => match template.render(event) {
                    Ok(value) => {
                        event.insert(&field.path, value);
                    }
                    Err(_missing) => self.field_misses.count("field_missing"),
                },
            }
        }
        for table in &mut self.lookups {
            table.apply(event);
        }
        if let Some(geoip) = &mut self.geoip {
            geoip.apply(event);
        }
        for derived in &mut self.derived {
            derived.apply(event);
        }
    }
}

impl Transform for Enrich {
    fn transform(&mut self, batch: Batch, out: &mut TransformOutputs) {
        // Reloads happen between batches, so one batch sees one version of each table
        // and database.
        let now = self.clock.now();
        for table in &mut self.lookups {
            table.maybe_reload(now);
        }
        if let Some(geoip) = &mut self.geoip {
            geoip.maybe_reload(now);
        }
        for mut event in batch {
            self.enrich(&mut event.value);
            out.push(event);
        }
    }
}
