//! One event as one Logs Ingestion record: `TimeGenerated` from the event's time, and
//! top-level field names that break the column rules renamed (reference §2.1).
//!
//! Renaming, applied to a top-level name only when it is not a valid column:
//! 1. every character other than `A-Z a-z 0-9 _` becomes `_`;
//! 2. a name that is reserved (`_ResourceId`, `id`, `_SubscriptionId`, `TenantId`, `Type`,
//!    `UniqueId`, `Title`, compared ignoring case), is a case variant of `TimeGenerated`,
//!    or does not start with a letter gets the prefix (`x_` by default);
//! 3. it is cut to 45 characters;
//! 4. if that name is taken in the record (ignoring case), `_2`, `_3`… is appended.
//!
//! A record's own `TimeGenerated` is the source of the column when it parses; otherwise
//! it is kept as `x_TimeGenerated`, so no value is lost. Nested keys are left alone: they
//! live inside `dynamic` columns, which have no naming rules.

use std::borrow::Cow;
use std::collections::HashSet;

use chrono::{DateTime, Utc};
use siemflow_core::ObjectMap;
use siemflow_core::event_time::event_time;

use crate::encoding::write_json;

/// Longest column name.
pub const MAX_COLUMN_NAME: usize = 45;

/// Names the service reserves, lower-cased (compared ignoring case).
const RESERVED: [&str; 7] = [
    "_resourceid",
    "id",
    "_subscriptionid",
    "tenantid",
    "type",
    "uniqueid",
    "title",
];

/// The column every record must carry.
pub const TIME_GENERATED: &str = "TimeGenerated";

/// Why `name` cannot be a column as it is, if it cannot.
pub fn column_problem(name: &str) -> Option<&'static str> {
    if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name)) {
        return Some("is a reserved column name");
    }
    if name.eq_ignore_ascii_case(TIME_GENERATED) && name != TIME_GENERATED {
        return Some("differs from TimeGenerated only in letter case");
    }
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Some("must start with a letter");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Some("may contain only letters, digits and '_'");
    }
    if name.len() > MAX_COLUMN_NAME {
        return Some("is longer than 45 characters");
    }
    None
}

/// A column-safe form of `name` (steps 1–3 of the module's rules; the caller makes it
/// unique).
fn column_name<'a>(name: &'a str, prefix: &str) -> Cow<'a, str> {
    if name == TIME_GENERATED || column_problem(name).is_none() {
        return Cow::Borrowed(name);
    }
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let needs_prefix = clean.eq_ignore_ascii_case(TIME_GENERATED)
        || RESERVED.iter().any(|r| r.eq_ignore_ascii_case(&clean))
        || !clean.starts_with(|c: char| c.is_ascii_alphabetic());
    let mut column = if needs_prefix {
        format!("{prefix}{clean}")
    } else {
        clean
    };
    column.truncate(MAX_COLUMN_NAME);
    Cow::Owned(column)
}

/// How a record was shaped, for the sink's counters.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Shaped {
    /// Top-level fields written under another name, as (original, column).
    pub renamed: Vec<(String, String)>,
    /// No configured field held a time: `TimeGenerated` is the send time.
    pub time_defaulted: bool,
}

/// Writes records the way a DCR stream takes them.
#[derive(Debug, Clone)]
pub struct RecordWriter {
    /// Fields tried in order for `TimeGenerated`.
    pub timestamp_fields: Vec<String>,
    /// Put before names that need it.
    pub rename_prefix: String,
}

impl RecordWriter {
    /// Appends `record` as one JSON object to `out`, `TimeGenerated` first, as of `now()`
    /// when the record holds no time.
    pub fn write(
        &self,
        record: &ObjectMap,
        now: impl FnOnce() -> DateTime<Utc>,
        out: &mut Vec<u8>,
    ) -> Shaped {
        let mut shaped = Shaped::default();
        let found = self.timestamp_fields.iter().find_map(|field| {
            let time = record.get(field.as_str()).and_then(event_time)?;
            Some((field.as_str(), time))
        });
        let (source, time) = match found {
            Some((field, time)) => (Some(field), time),
            None => {
                shaped.time_defaulted = true;
                (None, now())
            }
        };
        out.push(b'{');
        write_json(out, TIME_GENERATED);
        out.push(b':');
        write_json(out, &format_time(time));
        // Most records need no renaming: written straight through.
        let plain = record
            .keys()
            .all(|key| key.as_str() != TIME_GENERATED && column_problem(key).is_none());
        if plain {
            for (key, value) in record {
                out.push(b',');
                write_json(out, key);
                out.push(b':');
                write_json(out, value);
            }
            out.push(b'}');
            return shaped;
        }
        // The record's own TimeGenerated is dropped only when it is what the column holds.
        let drop_own = source == Some(TIME_GENERATED);
        let names = self.columns(record, drop_own);
        for ((key, value), column) in record.iter().zip(&names) {
            let Some(column) = column else { continue };
            out.push(b',');
            write_json(out, column);
            out.push(b':');
            write_json(out, value);
            if column.as_ref() != key.as_str() {
                shaped.renamed.push((key.to_string(), column.to_string()));
            }
        }
        out.push(b'}');
        shaped
    }

    /// The column of each field in record order; `None` for a field left out (the
    /// record's own `TimeGenerated` when it became the column).
    fn columns<'a>(&self, record: &'a ObjectMap, drop_own: bool) -> Vec<Option<Cow<'a, str>>> {
        let mut names: Vec<Option<Cow<'a, str>>> = record
            .keys()
            .map(|key| {
                let key = key.as_str();
                if key == TIME_GENERATED {
                    return (!drop_own)
                        .then(|| Cow::Owned(format!("{}{TIME_GENERATED}", self.rename_prefix)));
                }
                Some(column_name(key, &self.rename_prefix))
            })
            .collect();
        let renamed = |(key, name): (&str, &Option<Cow<'a, str>>)| {
            name.as_ref().is_some_and(|n| n.as_ref() != key)
        };
        if !record
            .keys()
            .map(|k| k.as_str())
            .zip(names.iter())
            .any(renamed)
        {
            return names;
        }
        // Some names changed: keep every name unique ignoring case. Names left as they
        // were win; renamed ones take a numbered suffix when theirs is taken.
        let mut taken: HashSet<String> = HashSet::new();
        taken.insert(TIME_GENERATED.to_ascii_lowercase());
        for (key, name) in record.keys().zip(names.iter()) {
            if let Some(name) = name
                && name.as_ref() == key.as_str()
            {
                taken.insert(name.to_ascii_lowercase());
            }
        }
        for (key, name) in record.keys().zip(names.iter_mut()) {
            let Some(current) = name else { continue };
            if current.as_ref() == key.as_str() {
                continue;
            }
            let unique = unique_name(current, &taken);
            taken.insert(unique.to_ascii_lowercase());
            *name = Some(Cow::Owned(unique));
        }
        names
    }
}

fn unique_name(name: &str, taken: &HashSet<String>) -> String {
    if !taken.contains(&name.to_ascii_lowercase()) {
        return name.to_string();
    }
    (2u32..)
        .map(|n| {
            let suffix = format!("_{n}");
            let keep = name.len().min(MAX_COLUMN_NAME - suffix.len());
            format!("{}{suffix}", &name[..keep])
        })
        .find(|candidate| !taken.contains(&candidate.to_ascii_lowercase()))
        .unwrap_or_else(|| name.to_string())
}

/// ISO 8601 in UTC with a `Z`: milliseconds, or 100 ns ticks (Log Analytics' resolution,
/// and the most digits .NET parsers take) when the time is finer than a millisecond.
pub fn format_time(time: DateTime<Utc>) -> String {
    // A leap second reads as nanoseconds past 1e9: shown as the second's last tick.
    let nanos = time.timestamp_subsec_nanos().min(999_999_999);
    let seconds = time.format("%Y-%m-%dT%H:%M:%S");
    if nanos.is_multiple_of(1_000_000) {
        format!("{seconds}.{:03}Z", nanos / 1_000_000)
    } else {
        format!("{seconds}.{:07}Z", nanos / 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;
    use siemflow_core::Value;

    fn writer() -> RecordWriter {
        RecordWriter {
            timestamp_fields: vec![
                "TimeGenerated".into(),
                "CreationTime".into(),
                "createdDateTime".into(),
            ],
            rename_prefix: "x_".into(),
        }
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0)
            .single()
            .expect("time")
    }

    fn shape(record: serde_json::Value) -> (serde_json::Value, Shaped) {
        let value: Value = record.into();
        let object = value.as_object().expect("object");
        let mut out = Vec::new();
        let shaped = writer().write(object, now, &mut out);
        (serde_json::from_slice(&out).expect("valid JSON"), shaped)
    }

    #[test]
    fn valid_names_pass_and_time_comes_from_the_record() {
        let (record, shaped) = shape(json!({
            "CreationTime": "2026-11-02T10:15:30",
            "Workload": "AzureActiveDirectory",
            "Raw": {"id": 1, "Type": "nested keys stay"}
        }));
        assert_eq!(
            record,
            json!({
                "TimeGenerated": "2026-11-02T10:15:30.000Z",
                "CreationTime": "2026-11-02T10:15:30",
                "Workload": "AzureActiveDirectory",
                "Raw": {"id": 1, "Type": "nested keys stay"}
            })
        );
        assert_eq!(shaped, Shaped::default());
    }

    #[test]
    fn invalid_and_reserved_names_are_renamed() {
        let (record, shaped) = shape(json!({
            "createdDateTime": "2026-11-02T10:15:30.1234567+01:00",
            "TenantId": "t",
            "Id": "i",
            "type": "y",
            "_ResourceId": "r",
            "1st": 1,
            "user.name": "alice",
            "timegenerated": "x",
            "a_very_long_field_name_that_goes_past_the_column_limit": true,
        }));
        let object = record.as_object().expect("object");
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "TimeGenerated",
                "a_very_long_field_name_that_goes_past_the_col",
                "createdDateTime",
                "user_name",
                "x_1st",
                "x_Id",
                "x_TenantId",
                "x__ResourceId",
                "x_timegenerated",
                "x_type",
            ]
        );
        assert_eq!(
            object["TimeGenerated"],
            json!("2026-11-02T09:15:30.1234567Z")
        );
        assert_eq!(object["x_TenantId"], json!("t"));
        assert_eq!(shaped.renamed.len(), 8);
        for (_, column) in &shaped.renamed {
            assert_eq!(column_problem(column), None, "{column}");
        }
    }

    #[test]
    fn renamed_names_never_collide() {
        let (record, shaped) = shape(json!({
            "TenantId": 1,
            "x_TenantId": 2,
            "a.b": 3,
            "a_b": 4,
            "a-b": 5,
        }));
        let object = record.as_object().expect("object");
        assert_eq!(
            object["x_TenantId"],
            json!(2),
            "a valid name keeps its place"
        );
        assert_eq!(object["x_TenantId_2"], json!(1));
        assert_eq!(object["a_b"], json!(4));
        // In key order: `a-b` sorts before `a.b`.
        assert_eq!(object["a_b_2"], json!(5));
        assert_eq!(object["a_b_3"], json!(3));
        assert_eq!(shaped.renamed.len(), 3);
        assert!(shaped.time_defaulted);
        assert_eq!(object["TimeGenerated"], json!("2030-01-01T00:00:00.000Z"));
    }

    #[test]
    fn own_time_generated_is_kept_when_it_is_not_a_time() {
        let (record, _) =
            shape(json!({"TimeGenerated": "yesterday", "CreationTime": "2026-11-02T10:15:30Z"}));
        assert_eq!(
            record,
            json!({
                "TimeGenerated": "2026-11-02T10:15:30.000Z",
                "x_TimeGenerated": "yesterday",
                "CreationTime": "2026-11-02T10:15:30Z"
            })
        );
        let (record, shaped) = shape(json!({"TimeGenerated": "2026-11-02T10:15:30.5Z"}));
        assert_eq!(record, json!({"TimeGenerated": "2026-11-02T10:15:30.500Z"}));
        assert!(shaped.renamed.is_empty());
    }
}
