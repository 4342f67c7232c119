//! CSV lookup tables, matched exactly or by CIDR range, reloaded when the file changes.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, bail};
use metrics::{Counter, Gauge};
use siemflow_core::Value;
use siemflow_core::metrics::ComponentLabels;
use vrl::path::OwnedValuePath;

use super::Misses;
use super::cidr::{CidrTable, parse_net};
use siemflow_core::event::field_path;

use super::config::{LookupConfig, MatchKind};
use super::ip::{IpField, ip_field};
use super::watch::{Reload, Watched};

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

/// One configured lookup table.
#[derive(Debug)]
pub struct LookupTable {
    file: Watched,
    match_kind: MatchKind,
    column: String,
    ignore_case: bool,
    key: OwnedValuePath,
    target: OwnedValuePath,
    rows: Rows,
    misses: Misses,
    reloads_ok: Counter,
    reloads_failed: Counter,
    rows_gauge: Gauge,
}

impl LookupTable {
    /// Loads the table; a missing or broken file at start is a build error.
    pub fn new(
        config: &LookupConfig,
        labels: &ComponentLabels,
        now: Instant,
    ) -> anyhow::Result<Self> {
        let key = field_path("key", &config.key).map_err(|i| anyhow::anyhow!(i.message))?;
        let target =
            field_path("target", &config.target).map_err(|i| anyhow::anyhow!(i.message))?;
        let interval = siemflow_core::units::parse_duration(&config.reload_interval)
            .map_err(|e| anyhow::anyhow!("reload_interval: {e}"))?;
        let file = Watched::new(&config.file, interval, now)
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
            file,
            match_kind: config.match_kind,
            column: config.column.clone(),
            ignore_case: config.ignore_case,
            misses: Misses::new(labels, &format!("lookup:{}", config.target)),
            key,
            target,
            rows,
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
        if self.file.due(now) {
            self.reload_if_changed();
        }
    }

    /// Reloads the file if its modification time or size changed. The new table is
    /// built whole before it replaces the old one; a broken file keeps the old one.
    pub fn reload_if_changed(&mut self) -> Reload {
        match self.file.changed() {
            Ok(true) => {}
            Ok(false) => return Reload::Unchanged,
            Err(error) => {
                // A file being replaced may be briefly absent: keep the table, try again later.
                tracing::warn!(file = %self.file.path.display(), %error, "lookup table unreadable; keeping the loaded table");
                self.reloads_failed.increment(1);
                return Reload::Failed;
            }
        }
        match load(
            &self.file.path,
            self.match_kind,
            &self.column,
            self.ignore_case,
            &self.target,
        ) {
            Ok(rows) => {
                tracing::info!(file = %self.file.path.display(), rows = rows.values.len(), "lookup table reloaded");
                self.rows_gauge.set(rows.values.len() as f64);
                self.rows = rows;
                self.reloads_ok.increment(1);
                Reload::Reloaded
            }
            Err(error) => {
                tracing::error!(file = %self.file.path.display(), error = format!("{error:#}"), "lookup table reload failed; keeping the previous table");
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

/// The most a lookup table file may hold. The table is kept in memory, indexed, at a few
/// times its file size; a table of every user and device of a large tenant fits easily.
pub const TABLE_FILE_LIMIT: u64 = 256 << 20;

/// Reads and indexes a CSV file with a header line.
fn load(
    file: &Path,
    match_kind: MatchKind,
    column: &str,
    ignore_case: bool,
    target: &OwnedValuePath,
) -> anyhow::Result<Rows> {
    let context = || format!("lookup table {}", file.display());
    let bytes = siemflow_core::fs::read_bounded(file, TABLE_FILE_LIMIT, "lookup table")?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(bytes.as_slice());
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
