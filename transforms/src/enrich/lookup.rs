//! CSV lookup tables, matched exactly or by CIDR range, reloaded when the file changes.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use metrics::{Counter, Gauge};
use siemflow_core::Value;
use siemflow_core::metrics::ComponentLabels;
use vrl::path::OwnedValuePath;

use super::Misses;
use super::cidr::{CidrTable, parse_net};
use super::config::{LookupConfig, MatchKind, field_path};
use super::ip::{IpField, ip_field};

/// The rows of one load of a file, indexed by the match column.
#[derive(Debug)]
struct Rows {
    /// Each row's other columns as (target path, value), ready to insert.
    values: Vec<Vec<(OwnedValuePath, Value)>>,
    index: Index,
}

#[derive(Debug)]
enum Index {
    Exact(HashMap<String, usize>),
    Cidr(CidrTable),
}

/// The file's identity at load time: a change of either means a new file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
}

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    let meta = fs::metadata(path)?;
    Ok(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
    })
}

/// Outcome of a reload check, for tests and logs.
#[derive(Debug, PartialEq, Eq)]
pub enum Reload {
    /// The file did not change.
    Unchanged,
    /// The new file replaced the table.
    Reloaded,
    /// The new file is broken; the old table stays.
    Failed,
}

/// One configured lookup table.
#[derive(Debug)]
pub struct LookupTable {
    file: PathBuf,
    match_kind: MatchKind,
    column: String,
    ignore_case: bool,
    key: OwnedValuePath,
    target: OwnedValuePath,
    rows: Rows,
    /// The stamp of the file last tried, loaded or not, so a broken file is tried once.
    seen: Stamp,
    reload_interval: Option<Duration>,
    next_check: Instant,
    misses: Misses,
    reloads_ok: Counter,
    reloads_failed: Counter,
    rows_gauge: Gauge,
}

impl LookupTable {
    /// Loads the table; a missing or broken file at start is a build error.
    pub fn new(config: &LookupConfig, labels: &ComponentLabels) -> anyhow::Result<Self> {
        let key = field_path("key", &config.key).map_err(|i| anyhow::anyhow!(i.message))?;
        let target =
            field_path("target", &config.target).map_err(|i| anyhow::anyhow!(i.message))?;
        let interval = siemflow_core::units::parse_duration(&config.reload_interval)
            .map_err(|e| anyhow::anyhow!("reload_interval: {e}"))?;
        let seen = stamp(&config.file)
            .with_context(|| format!("lookup table {}", config.file.display()))?;
        let rows = load(
            &config.file,
            config.match_kind,
            &config.column,
            config.ignore_case,
            &target,
        )?;
        let table_name = config.file.display().to_string();
        let table = [("table", table_name.as_str())];
        let rows_gauge = labels.gauge("enrich_table_rows", &table);
        rows_gauge.set(rows.values.len() as f64);
        Ok(LookupTable {
            file: config.file.clone(),
            match_kind: config.match_kind,
            column: config.column.clone(),
            ignore_case: config.ignore_case,
            misses: Misses::new(labels, &format!("lookup:{}", config.target)),
            key,
            target,
            rows,
            seen,
            reload_interval: (!interval.is_zero()).then_some(interval),
            next_check: Instant::now() + interval,
            reloads_ok: labels.counter(
                "enrich_table_reloads_total",
                &[("table", &table_name), ("result", "ok")],
            ),
            reloads_failed: labels.counter(
                "enrich_table_reloads_total",
                &[("table", &table_name), ("result", "error")],
            ),
            rows_gauge,
        })
    }

    /// Checks the file when the reload interval has passed.
    pub fn maybe_reload(&mut self, now: Instant) {
        if let Some(interval) = self.reload_interval
            && now >= self.next_check
        {
            self.next_check = now + interval;
            self.reload_if_changed();
        }
    }

    /// Reloads the file if its modification time or size changed. The new table is
    /// built whole before it replaces the old one; a broken file keeps the old one.
    pub fn reload_if_changed(&mut self) -> Reload {
        let current = match stamp(&self.file) {
            Ok(current) => current,
            Err(error) => {
                // A file being replaced may be briefly absent: keep the table, try again later.
                tracing::warn!(file = %self.file.display(), %error, "lookup table unreadable; keeping the loaded table");
                self.reloads_failed.increment(1);
                return Reload::Failed;
            }
        };
        if current == self.seen {
            return Reload::Unchanged;
        }
        self.seen = current;
        match load(
            &self.file,
            self.match_kind,
            &self.column,
            self.ignore_case,
            &self.target,
        ) {
            Ok(rows) => {
                tracing::info!(file = %self.file.display(), rows = rows.values.len(), "lookup table reloaded");
                self.rows_gauge.set(rows.values.len() as f64);
                self.rows = rows;
                self.reloads_ok.increment(1);
                Reload::Reloaded
            }
            Err(error) => {
                tracing::error!(file = %self.file.display(), error = format!("{error:#}"), "lookup table reload failed; keeping the previous table");
                self.reloads_failed.increment(1);
                Reload::Failed
            }
        }
    }

    /// Adds the matched row's columns to the event; a miss leaves it unchanged.
    pub fn apply(&mut self, event: &mut Value) {
        let row = match self.match_kind {
            MatchKind::Exact => {
                let Some(text) = event
                    .get(&self.key)
                    .filter(|v| !v.is_null())
                    .and_then(key_text)
                else {
                    return self.misses.count("field_missing");
                };
                let Index::Exact(map) = &self.rows.index else {
                    return;
                };
                let text = text.trim();
                if self.ignore_case {
                    map.get(&text.to_ascii_lowercase()).copied()
                } else {
                    map.get(text).copied()
                }
            }
            MatchKind::Cidr => {
                let ip = match ip_field(event.get(&self.key)) {
                    IpField::Ip(ip) => ip,
                    IpField::Missing => return self.misses.count("field_missing"),
                    IpField::Invalid => return self.misses.count("invalid_ip"),
                };
                let Index::Cidr(table) = &self.rows.index else {
                    return;
                };
                table.get(ip)
            }
        };
        match row.and_then(|row| self.rows.values.get(row)) {
            Some(values) => {
                for (path, value) in values {
                    event.insert(path, value.clone());
                }
            }
            None => self.misses.count("no_match"),
        }
    }

    /// Misses so far, by kind (tests).
    #[cfg(test)]
    pub fn misses(&self) -> &Misses {
        &self.misses
    }
}

/// The text of a key value: strings as they are, numbers and booleans printed.
fn key_text(value: &Value) -> Option<String> {
    match value {
        Value::Object(_) | Value::Array(_) => None,
        other => Some(other.to_string_lossy().into_owned()),
    }
}

/// Reads and indexes a CSV file with a header line.
fn load(
    file: &Path,
    match_kind: MatchKind,
    column: &str,
    ignore_case: bool,
    target: &OwnedValuePath,
) -> anyhow::Result<Rows> {
    let context = || format!("lookup table {}", file.display());
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_path(file)
        .with_context(context)?;
    let headers = reader.headers().with_context(context)?.clone();
    let Some(key_index) = headers.iter().position(|h| h == column) else {
        bail!(
            "{}: no column `{column}`; the header has: {}",
            context(),
            headers.iter().collect::<Vec<_>>().join(", ")
        );
    };
    let paths: Vec<Option<OwnedValuePath>> = headers
        .iter()
        .enumerate()
        .map(|(i, h)| (i != key_index).then(|| target.with_field_appended(h)))
        .collect();
    let mut values = Vec::new();
    let mut index = match match_kind {
        MatchKind::Exact => Index::Exact(HashMap::new()),
        MatchKind::Cidr => Index::Cidr(CidrTable::default()),
    };
    for (n, record) in reader.records().enumerate() {
        // Line numbers count the header, as an editor shows them.
        let record = record.with_context(|| format!("{}: line {}", context(), n + 2))?;
        let key = record.get(key_index).unwrap_or_default();
        let row = values.len();
        match &mut index {
            Index::Exact(map) => {
                let key = if ignore_case {
                    key.to_ascii_lowercase()
                } else {
                    key.to_string()
                };
                map.insert(key, row);
            }
            Index::Cidr(table) => {
                let Some(net) = parse_net(key) else {
                    bail!(
                        "{}: line {}: `{key}` in column `{column}` is not a network or IP address",
                        context(),
                        n + 2
                    );
                };
                table.insert(net, row);
            }
        }
        values.push(
            record
                .iter()
                .zip(&paths)
                .filter_map(|(cell, path)| {
                    path.as_ref()
                        .map(|p| (p.clone(), Value::from(cell.to_string())))
                })
                .collect(),
        );
    }
    Ok(Rows { values, index })
}
