//! Which blobs exist, when they were published and which records they hold.

use std::collections::HashSet;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;

use super::rng::{Rng, key, mix};
use super::{TenantProfile, World, records};
use crate::config::CONTENT_TYPES;

const HOUR_MS: i64 = 3_600_000;
/// Share of a tenant's records per content type (same order as CONTENT_TYPES).
const SHARES: [f64; 5] = [0.30, 0.32, 0.24, 0.11, 0.03];
/// Late blobs are published this long after their records, plus up to LATE_SPREAD_MS.
const LATE_MIN_MS: i64 = 2 * HOUR_MS;
const LATE_SPREAD_MS: i64 = 10 * HOUR_MS;

/// Lower-case and mixed-case content type names as they appear inside content ids.
const CT_LOWER: [&str; 5] = [
    "audit_azureactivedirectory",
    "audit_exchange",
    "audit_sharepoint",
    "audit_general",
    "dlp_all",
];
const CT_MIXED: [&str; 5] = [
    "Audit_AzureActiveDirectory",
    "Audit_Exchange",
    "Audit_SharePoint",
    "Audit_General",
    "DLP_All",
];

/// One published blob, located by (tenant, content type, hour, index).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BlobRef {
    pub(crate) tenant: usize,
    pub(crate) ct: usize,
    pub(crate) hour: i64,
    pub(crate) index: u32,
    /// The records' CreationTime lies in [seg_start_ms, seg_end_ms).
    pub(crate) seg_start_ms: i64,
    pub(crate) seg_end_ms: i64,
    /// contentCreated, in Unix milliseconds.
    pub(crate) created_ms: i64,
    pub(crate) late: bool,
    /// Own records (duplicates pulled from an earlier blob come on top).
    pub(crate) size: u32,
}

/// Why a content id in a URL was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ContentIdError {
    /// Not in the service's content id format (AF20052).
    #[error("malformed content id")]
    Malformed,
    /// Well-formed but no such blob was ever published (AF20050).
    #[error("no such content")]
    Missing,
}

/// Index of a content type name (exact, as the service compares).
pub(crate) fn content_type_index(name: &str) -> Option<usize> {
    CONTENT_TYPES.iter().position(|c| *c == name)
}

impl World {
    fn hour_key(&self, t: &TenantProfile, ct: usize, hour: i64) -> u64 {
        key(&[self.cfg.seed, t.tag, ct as u64, hour as u64])
    }

    /// Average records per blob for a content type: busier feeds get bigger blobs.
    fn avg_blob_size(&self, ct: usize) -> f64 {
        (f64::from(self.cfg.records_per_hour) * SHARES[ct] / 6.0).clamp(1.0, 100.0)
    }

    /// Number of blobs a content type publishes for records of one hour.
    pub(crate) fn blob_count(&self, tenant: usize, ct: usize, hour: i64) -> u32 {
        let t = &self.tenants[tenant];
        let expected = f64::from(self.cfg.records_per_hour) * SHARES[ct] * rhythm(hour);
        let lambda = expected / self.avg_blob_size(ct);
        hourly_count(lambda, self.hour_key(t, ct, hour), 3600)
    }

    /// The blob `index` of an hour, if the hour has that many.
    pub(crate) fn blob(&self, tenant: usize, ct: usize, hour: i64, index: u32) -> Option<BlobRef> {
        let count = self.blob_count(tenant, ct, hour);
        if index >= count {
            return None;
        }
        let t = &self.tenants[tenant];
        let mut rng = Rng::new(key(&[self.hour_key(t, ct, hour), 0xb10b, u64::from(index)]));
        let seg = HOUR_MS / i64::from(count);
        let seg_start_ms = hour * HOUR_MS + seg * i64::from(index);
        let seg_end_ms = if index + 1 == count {
            (hour + 1) * HOUR_MS
        } else {
            seg_start_ms + seg
        };
        let delay = self.cfg.publish_delay.as_millis() as f64;
        let mut created_ms =
            seg_end_ms + (delay * (0.5 + rng.unit())) as i64 + rng.below(1000) as i64;
        let late = rng.chance(self.cfg.faults.late_blob_rate);
        if late {
            created_ms += LATE_MIN_MS + (rng.unit() * LATE_SPREAD_MS as f64) as i64;
        }
        let avg = self.avg_blob_size(ct);
        let lo = (avg / 2.0).floor().max(1.0) as u64;
        let hi = (2.0 * avg).round() as u64 - lo;
        let size = (lo + rng.below(hi.saturating_sub(lo) + 1)) as u32;
        Some(BlobRef {
            tenant,
            ct,
            hour,
            index,
            seg_start_ms,
            seg_end_ms,
            created_ms,
            late,
            size,
        })
    }

    /// How far contentCreated can trail the hour its records belong to.
    fn max_publish_lag_ms(&self) -> i64 {
        let delay = self.cfg.publish_delay.as_millis() as i64;
        let late = if self.cfg.faults.late_blob_rate > 0.0 {
            LATE_MIN_MS + LATE_SPREAD_MS
        } else {
            0
        };
        HOUR_MS + delay * 3 / 2 + 1000 + late
    }

    /// Every blob whose contentCreated is in [start_ms, end_ms), ordered as the service lists
    /// them: by contentCreated, then content id.
    pub(crate) fn blobs_created_in(
        &self,
        tenant: usize,
        ct: usize,
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<BlobRef> {
        let mut out = Vec::new();
        if start_ms >= end_ms {
            return out;
        }
        let first_hour = (start_ms - self.max_publish_lag_ms()).div_euclid(HOUR_MS);
        let last_hour = end_ms.div_euclid(HOUR_MS);
        for hour in first_hour..=last_hour {
            for index in 0..self.blob_count(tenant, ct, hour) {
                if let Some(b) = self.blob(tenant, ct, hour, index)
                    && b.created_ms >= start_ms
                    && b.created_ms < end_ms
                {
                    out.push(b);
                }
            }
        }
        out.sort_by(|a, b| {
            a.created_ms
                .cmp(&b.created_ms)
                .then_with(|| self.content_id(a).cmp(&self.content_id(b)))
        });
        out
    }

    /// Hours between a blob and the earlier blob whose records it may repeat; far enough back
    /// that the repeat is published after the original.
    fn duplicate_lag_hours(&self) -> i64 {
        let delay = self.cfg.publish_delay.as_millis() as i64;
        2 + (delay * 3 / 2 + HOUR_MS - 1) / HOUR_MS
    }

    /// The blob's own records (no repeats).
    fn own_records(&self, b: &BlobRef) -> Vec<Value> {
        let t = &self.tenants[b.tenant];
        let base = key(&[self.hour_key(t, b.ct, b.hour), 0x7ec, u64::from(b.index)]);
        (0..b.size)
            .map(|i| {
                let mut rng = Rng::new(key(&[base, u64::from(i)]));
                let at = b.seg_start_ms + rng.below((b.seg_end_ms - b.seg_start_ms) as u64) as i64;
                records::record(t, b.ct, at, &mut rng)
            })
            .collect()
    }

    /// Whether record `i` of blob `b` is repeated in a later blob.
    fn is_repeated(&self, b: &BlobRef, i: usize) -> bool {
        let rate = self.cfg.faults.duplicate_rate;
        if rate <= 0.0 {
            return false;
        }
        let t = &self.tenants[b.tenant];
        let k = key(&[
            self.hour_key(t, b.ct, b.hour),
            0xd0b,
            u64::from(b.index),
            i as u64,
        ]);
        (mix(k) >> 11) as f64 / (1u64 << 53) as f64 <= rate
    }

    /// All records of a blob: its own, then the repeats of an earlier blob's records.
    pub(crate) fn blob_records(&self, b: &BlobRef) -> Vec<Value> {
        let mut recs = self.own_records(b);
        if self.cfg.faults.duplicate_rate > 0.0
            && let Some(src) =
                self.blob(b.tenant, b.ct, b.hour - self.duplicate_lag_hours(), b.index)
        {
            for (i, r) in self.own_records(&src).into_iter().enumerate() {
                if self.is_repeated(&src, i) {
                    recs.push(r);
                }
            }
        }
        recs
    }

    /// The blob's content id, in the service's `time$time$type$Type$region` shape.
    pub(crate) fn content_id(&self, b: &BlobRef) -> String {
        let t = &self.tenants[b.tenant];
        format!(
            "{}{:06}${}{:06}${}${}${}{:04}",
            compact(b.seg_start_ms),
            b.index,
            compact(b.created_ms),
            t.tag % 1_000_000,
            CT_LOWER[b.ct],
            CT_MIXED[b.ct],
            t.region,
            t.region_no
        )
    }

    /// Resolves a content id from a URL of `tenant` back to its blob.
    pub(crate) fn parse_content_id(
        &self,
        tenant: usize,
        id: &str,
    ) -> Result<BlobRef, ContentIdError> {
        let parts: Vec<&str> = id.split('$').collect();
        let [first, second, lower, mixed, region] = parts[..] else {
            return Err(ContentIdError::Malformed);
        };
        let digits = |s: &str| s.len() == 23 && s.bytes().all(|c| c.is_ascii_digit());
        if !digits(first) || !digits(second) {
            return Err(ContentIdError::Malformed);
        }
        let ct = CT_LOWER
            .iter()
            .position(|c| *c == lower)
            .ok_or(ContentIdError::Malformed)?;
        let region_ok = region.len() > 4
            && region[..region.len() - 4]
                .bytes()
                .all(|c| c.is_ascii_lowercase())
            && region[region.len() - 4..]
                .bytes()
                .all(|c| c.is_ascii_digit());
        if CT_MIXED[ct] != mixed || !region_ok {
            return Err(ContentIdError::Malformed);
        }
        let seg_start_ms = parse_compact(&first[..17]).ok_or(ContentIdError::Malformed)?;
        let created_ms = parse_compact(&second[..17]).ok_or(ContentIdError::Malformed)?;
        let index: u32 = first[17..].parse().map_err(|_| ContentIdError::Malformed)?;
        let b = self
            .blob(tenant, ct, seg_start_ms.div_euclid(HOUR_MS), index)
            .ok_or(ContentIdError::Missing)?;
        if self.content_id(&b) != id || b.created_ms != created_ms {
            return Err(ContentIdError::Missing);
        }
        Ok(b)
    }

    /// Ground truth: the records of every blob created in [start, end), each record once.
    pub(crate) fn records_created_in(
        &self,
        tenant: usize,
        ct: usize,
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<Value> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for b in self.blobs_created_in(tenant, ct, start_ms, end_ms) {
            for r in self.blob_records(&b) {
                let id = r
                    .get("Id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                if seen.insert(id) {
                    out.push(r);
                }
            }
        }
        out
    }
}

/// How many things happen in an hour whose expected number is `lambda`: its whole part,
/// plus one with the fraction's probability (drawn from `hour_key`), at most `max`.
pub(crate) fn hourly_count(lambda: f64, hour_key: u64, max: u32) -> u32 {
    let whole = lambda.floor();
    let extra = u32::from(Rng::new(hour_key).chance(lambda - whole));
    (whole as u32 + extra).min(max)
}

/// Relative activity by hour of the (UTC) day and day of the week: busy afternoons, quiet
/// nights and weekends. Averages 1.0 over a weekday.
pub(crate) fn rhythm(hour: i64) -> f64 {
    let hod = hour.rem_euclid(24) as f64;
    let day = hour.div_euclid(24);
    // 1970-01-01 was a Thursday: (day + 3) % 7 gives 0 = Monday.
    let weekend = (day + 3).rem_euclid(7) >= 5;
    let daily = 1.0 + 0.7 * ((hod - 14.0) * std::f64::consts::PI / 12.0).cos();
    if weekend { daily * 0.45 } else { daily }
}

/// `YYYYMMDDHHMMSSmmm` as used inside content ids and nextPage tokens.
pub(crate) fn compact(ms: i64) -> String {
    to_utc(ms).format("%Y%m%d%H%M%S%3f").to_string()
}

/// Inverse of `compact`.
pub(crate) fn parse_compact(s: &str) -> Option<i64> {
    if s.len() != 17 || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let naive = chrono::NaiveDateTime::parse_from_str(&s[..14], "%Y%m%d%H%M%S").ok()?;
    let ms: i64 = s[14..].parse().ok()?;
    Some(naive.and_utc().timestamp_millis() + ms)
}

/// Unix milliseconds as a UTC time (clamped to chrono's range).
pub(crate) fn to_utc(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// ISO-8601 with milliseconds and `Z`, as in blob descriptors.
pub(crate) fn iso_ms(ms: i64) -> String {
    to_utc(ms).format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}
