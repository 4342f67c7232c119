//! Record checks of the Logs Ingestion API: column names (reference §2.1), required columns,
//! `TimeGenerated`, and the 64 KB field value truncation (§2.3).

use serde_json::Value;

/// Column names the service reserves (reference §2.1), compared exactly.
const RESERVED: [&str; 7] = [
    "_ResourceId",
    "id",
    "_SubscriptionId",
    "TenantId",
    "Type",
    "UniqueId",
    "Title",
];

/// Longest column name.
const MAX_COLUMN_NAME: usize = 45;

/// Why a column name is refused, if it is.
pub(crate) fn column_problem(name: &str) -> Option<&'static str> {
    if RESERVED.contains(&name) {
        return Some("is a reserved column name");
    }
    if !name.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) {
        return Some("must start with a letter");
    }
    if name.len() > MAX_COLUMN_NAME {
        return Some("is longer than 45 characters");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Some("may contain only letters, digits and '_'");
    }
    None
}

/// A record refused, with the error code and message of the 400 answer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Refusal {
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

/// Checks every record of a body; on success returns how many string values were truncated.
pub(crate) fn check_records(
    records: &mut [Value],
    required: &[String],
    max_field_bytes: usize,
) -> Result<u64, Refusal> {
    let mut truncated = 0;
    for (i, record) in records.iter_mut().enumerate() {
        let Value::Object(map) = record else {
            return Err(Refusal {
                code: "InvalidRecord",
                message: format!("Record {i} is not a JSON object."),
            });
        };
        if let Some((name, why)) = map
            .keys()
            .find_map(|k| column_problem(k).map(|why| (k.clone(), why)))
        {
            return Err(Refusal {
                code: "InvalidColumnName",
                message: format!("Record {i}: column name '{name}' {why}."),
            });
        }
        for column in required {
            if map.get(column).is_none_or(Value::is_null) {
                return Err(Refusal {
                    code: "MissingRequiredColumn",
                    message: format!("Record {i} has no value for the required column '{column}'."),
                });
            }
        }
        if let Some(t) = map.get("TimeGenerated").filter(|t| !t.is_null()) {
            let valid = t
                .as_str()
                .is_some_and(|s| chrono::DateTime::parse_from_rfc3339(s).is_ok());
            if !valid {
                return Err(Refusal {
                    code: "InvalidTimeGenerated",
                    message: format!(
                        "Record {i}: TimeGenerated {t} is not an ISO 8601 date and time."
                    ),
                });
            }
        }
        // TimeGenerated is a datetime column, not a string one: never cut.
        for (_, value) in map.iter_mut().filter(|(k, _)| *k != "TimeGenerated") {
            if let Value::String(s) = value
                && s.len() > max_field_bytes
            {
                let mut cut = max_field_bytes;
                while !s.is_char_boundary(cut) {
                    cut -= 1;
                }
                s.truncate(cut);
                truncated += 1;
            }
        }
    }
    Ok(truncated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn column_rules() {
        assert_eq!(column_problem("Workload"), None);
        assert_eq!(column_problem("TenantId_s"), None);
        assert!(column_problem("TenantId").is_some());
        assert!(column_problem("_ResourceId").is_some());
        assert!(column_problem("1st").is_some());
        assert!(column_problem("user.name").is_some());
        assert!(column_problem(&"a".repeat(46)).is_some());
        assert_eq!(column_problem(&"a".repeat(45)), None);
    }

    #[test]
    fn records_checked_and_truncated() {
        let required = vec!["TimeGenerated".to_string()];
        let mut ok = vec![
            json!({"TimeGenerated": "2026-11-02T10:15:30.123Z", "Raw": {"a": 1}, "Big": "é".repeat(10)}),
        ];
        assert_eq!(check_records(&mut ok, &required, 5), Ok(1));
        assert_eq!(ok[0]["Big"], json!("éé"));
        let bad = [
            (json!({"Msg": "x"}), "MissingRequiredColumn"),
            (
                json!({"TimeGenerated": "yesterday"}),
                "InvalidTimeGenerated",
            ),
            (
                json!({"TimeGenerated": "2026-11-02T10:15:30Z", "Type": "x"}),
                "InvalidColumnName",
            ),
            (json!("text"), "InvalidRecord"),
        ];
        for (record, code) in bad {
            let mut records = vec![record];
            assert_eq!(
                check_records(&mut records, &required, 100).map_err(|r| r.code),
                Err(code)
            );
        }
    }
}
