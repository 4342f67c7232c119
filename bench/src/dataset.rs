//! Realistic Office 365 audit records for benchmarks: the real sample records in
//! tests/fixtures/o365, with fresh ids, times, users and addresses, plus a few per cent
//! exact duplicates (as the Management Activity API delivers them).

use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::Context;
use serde_json::Value;

/// What was written.
pub struct Dataset {
    /// Records written (duplicates included).
    pub events: u64,
    /// Bytes written, newlines included.
    pub bytes: u64,
    /// Records that are not an exact repeat of an earlier one (what dedup lets through).
    pub unique: u64,
}

/// Loads the template records shipped with the repository, those at least `min_bytes`
/// long as compact JSON.
pub fn templates(fixtures: &Path, min_bytes: usize) -> anyhow::Result<Vec<Value>> {
    let mut records = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(fixtures)
        .with_context(|| format!("reading {}", fixtures.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "ndjson"))
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file)?;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let record: Value =
                serde_json::from_str(line).with_context(|| file.display().to_string())?;
            if serde_json::to_string(&record)?.len() >= min_bytes {
                records.push(record);
            }
        }
    }
    anyhow::ensure!(
        !records.is_empty(),
        "no template records of at least {min_bytes} bytes in {}",
        fixtures.display()
    );
    Ok(records)
}

/// A small deterministic generator, so every run measures the same data.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn set(record: &mut Value, keys: &[&str], value: Value) {
    if let Some(object) = record.as_object_mut() {
        for key in keys {
            if object.contains_key(*key) {
                object.insert((*key).to_string(), value);
                return;
            }
        }
    }
}

/// Writes `events` records to `path`; `duplicate_percent` of them repeat an earlier line.
pub fn write(
    path: &Path,
    templates: &[Value],
    events: u64,
    duplicate_percent: u64,
) -> anyhow::Result<Dataset> {
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut rng = SplitMix(0x5EED);
    let mut recent: Vec<String> = Vec::new();
    let mut bytes = 0u64;
    let mut repeats = 0u64;
    for i in 0..events {
        let line = if rng.next() % 100 < duplicate_percent && !recent.is_empty() {
            repeats += 1;
            recent[(rng.next() % recent.len() as u64) as usize].clone()
        } else {
            let mut record = templates[(i % templates.len() as u64) as usize].clone();
            let r = rng.next();
            let id = format!(
                "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
                r >> 32,
                r & 0xffff,
                i & 0xfff,
                (r >> 20) & 0xfff,
                i
            );
            // Every real Management Activity record has `Id` (Panther's samples lower-case
            // the keys of one log type): the dedup scenarios key on it.
            if let Some(object) = record.as_object_mut() {
                object.remove("id");
                object.insert("Id".to_string(), Value::String(id));
            }
            let seconds = i % 86_400;
            let time = format!(
                "2026-11-24T{:02}:{:02}:{:02}",
                seconds / 3600,
                (seconds / 60) % 60,
                seconds % 60
            );
            set(
                &mut record,
                &["CreationTime", "creationtime"],
                Value::String(time),
            );
            let user = format!("user{}@contoso.onmicrosoft.com", r % 5_000);
            set(&mut record, &["UserId", "userid"], Value::String(user));
            let ip = format!(
                "{}.{}.{}.{}",
                20 + r % 180,
                (r >> 8) % 256,
                (r >> 16) % 256,
                1 + (r >> 24) % 254
            );
            set(&mut record, &["ClientIP", "clientip"], Value::String(ip));
            serde_json::to_string(&record)?
        };
        bytes += line.len() as u64 + 1;
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")?;
        if recent.len() < 1_000 {
            recent.push(line);
        } else {
            let slot = (rng.next() % 1_000) as usize;
            recent[slot] = line;
        }
    }
    out.flush()?;
    Ok(Dataset {
        events,
        bytes,
        unique: events - repeats,
    })
}
