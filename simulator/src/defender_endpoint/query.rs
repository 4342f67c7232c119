//! The OData query options `/api/alerts` takes (reference §3.2; the List alerts page):
//! `$filter` on the documented properties (`and` of comparisons), `$top` up to 10,000,
//! `$skip`, `$expand=evidence`. Anything else is refused as ASP.NET OData refuses it: 400
//! with the validator's message.

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;

use crate::graph::filter::Op;

/// The largest `$top`.
pub(crate) const MAX_TOP: u64 = 10_000;

/// Page size when `$top` is not given.
pub(crate) const DEFAULT_TOP: u64 = 10_000;

/// Filterable properties (§3.2), as the service names them; compared without case.
const FILTERABLE: [&str; 11] = [
    "alertCreationTime",
    "lastUpdateTime",
    "incidentId",
    "investigationId",
    "id",
    "assignedTo",
    "detectionSource",
    "lastEventTime",
    "status",
    "severity",
    "category",
];

/// The time-valued ones: compared as instants, with every operator.
const TIMES: [&str; 3] = ["alertCreationTime", "lastUpdateTime", "lastEventTime"];

/// A literal.
#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Time(DateTime<Utc>),
    Text(String),
    Number(f64),
    Null,
}

/// One `property op literal`.
#[derive(Debug, Clone, PartialEq)]
struct Clause {
    property: &'static str,
    op: Op,
    value: Literal,
}

/// A parsed query.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AlertQuery {
    clauses: Vec<Clause>,
    /// `$top` (default [`DEFAULT_TOP`]).
    pub(crate) top: u64,
    /// `$skip`.
    pub(crate) skip: u64,
    /// `$expand=evidence`.
    pub(crate) expand: bool,
}

/// Parses the query string's options; the error is the 400's message.
pub(crate) fn parse(pairs: &[(String, String)]) -> Result<AlertQuery, String> {
    let mut query = AlertQuery {
        clauses: Vec::new(),
        top: DEFAULT_TOP,
        skip: 0,
        expand: false,
    };
    let mut seen = std::collections::HashSet::new();
    for (name, value) in pairs {
        if !name.starts_with('$') {
            continue;
        }
        let option = name.to_ascii_lowercase();
        if !seen.insert(option.clone()) {
            return Err(format!(
                "Query option '{name}' was specified more than once, but it must be specified at most once."
            ));
        }
        match option.as_str() {
            "$filter" => query.clauses = filter(value)?,
            "$top" => {
                let top = number(name, value)?;
                if top > MAX_TOP {
                    return Err(format!(
                        "The limit of '{MAX_TOP}' for Top query has been exceeded. The value from the incoming request is '{top}'."
                    ));
                }
                query.top = top;
            }
            "$skip" => query.skip = number(name, value)?,
            "$expand" => {
                if !value.trim().eq_ignore_ascii_case("evidence") {
                    return Err(format!(
                        "Could not find a property named '{}' on type 'Alert'.",
                        value.trim()
                    ));
                }
                query.expand = true;
            }
            other => {
                let option = other.trim_start_matches('$');
                let pascal: String = option
                    .chars()
                    .take(1)
                    .flat_map(char::to_uppercase)
                    .chain(option.chars().skip(1))
                    .collect();
                return Err(format!(
                    "Query option '{pascal}' is not allowed. To allow it, set the 'AllowedQueryOptions' property on EnableQueryAttribute or QueryValidationSettings."
                ));
            }
        }
    }
    Ok(query)
}

fn number(name: &str, value: &str) -> Result<u64, String> {
    value.trim().parse().map_err(|_| {
        format!("Invalid value '{value}' for {name} query option found. The {name} query option requires a non-negative integer value.")
    })
}

/// `a op x and b op y …` (no `or`, no parentheses: the service's clients do not need them).
fn filter(text: &str) -> Result<Vec<Clause>, String> {
    let mut clauses = Vec::new();
    let tokens = tokenize(text)?;
    let mut rest = tokens.as_slice();
    loop {
        let [property, op, value, tail @ ..] = rest else {
            return Err(format!(
                "Syntax error at position {} in '{text}'.",
                text.len()
            ));
        };
        clauses.push(clause(property, op, value)?);
        match tail {
            [] => break,
            [and, more @ ..] if and.eq_ignore_ascii_case("and") => rest = more,
            [other, ..] => {
                return Err(format!("Syntax error: unexpected '{other}' in '{text}'."));
            }
        }
    }
    Ok(clauses)
}

/// Splits on spaces outside quotes; a quoted literal keeps its quotes.
fn tokenize(text: &str) -> Result<Vec<String>, String> {
    let mut tokens = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in text.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                current.push(c);
            }
            ' ' if !quoted => {
                if !current.is_empty() {
                    tokens.push(std::mem::take(&mut current));
                }
            }
            _ => current.push(c),
        }
    }
    if quoted {
        return Err(format!(
            "There is an unterminated string literal in '{text}'."
        ));
    }
    if !current.is_empty() {
        tokens.push(current);
    }
    Ok(tokens)
}

fn clause(property: &str, op: &str, value: &str) -> Result<Clause, String> {
    let Some(known) = FILTERABLE.iter().find(|p| p.eq_ignore_ascii_case(property)) else {
        return Err(format!(
            "Could not find a property named '{property}' on type 'Alert'."
        ));
    };
    let Some(op) = Op::parse(&op.to_ascii_lowercase()) else {
        return Err(format!("Syntax error: unknown operator '{op}'."));
    };
    let is_time = TIMES.contains(known);
    let value = literal(value, is_time)?;
    let ordered = !matches!(op, Op::Eq | Op::Ne);
    if ordered && !matches!(value, Literal::Time(_) | Literal::Number(_)) {
        return Err(format!(
            "The operator '{op:?}' is not supported for the value of '{known}'."
        ));
    }
    if is_time && !matches!(value, Literal::Time(_) | Literal::Null) {
        return Err(format!(
            "A binary operator with incompatible types was detected. Found operand types 'Edm.DateTimeOffset' and '{}' for '{known}'.",
            match value {
                Literal::Text(_) => "Edm.String",
                _ => "Edm.Int32",
            }
        ));
    }
    Ok(Clause {
        property: known,
        op,
        value,
    })
}

fn literal(text: &str, time: bool) -> Result<Literal, String> {
    if text.eq_ignore_ascii_case("null") {
        return Ok(Literal::Null);
    }
    if let Some(inner) = text.strip_prefix('\'').and_then(|t| t.strip_suffix('\'')) {
        return Ok(Literal::Text(inner.replace("''", "'")));
    }
    if time {
        if let Ok(at) = DateTime::parse_from_rfc3339(text) {
            return Ok(Literal::Time(at.with_timezone(&Utc)));
        }
        if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
            return Ok(Literal::Time(
                day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc(),
            ));
        }
        return Err(format!(
            "The DateTimeOffset text '{text}' should be in format 'yyyy-mm-ddThh:mm:ss('.'s+)?(zzzzzz)?' and each field value is within valid range."
        ));
    }
    text.parse::<f64>()
        .map(Literal::Number)
        .map_err(|_| format!("Syntax error at '{text}'."))
}

impl AlertQuery {
    /// Whether an alert (MDE shape) satisfies every clause.
    pub(crate) fn admits(&self, alert: &Value) -> bool {
        self.clauses.iter().all(|c| c.admits(alert))
    }
}

impl Clause {
    fn admits(&self, alert: &Value) -> bool {
        let field = &alert[self.property];
        let ordering = match (&self.value, field) {
            (Literal::Null, v) => {
                return match self.op {
                    Op::Eq => v.is_null(),
                    Op::Ne => !v.is_null(),
                    _ => false,
                };
            }
            (Literal::Time(want), Value::String(text)) => {
                match DateTime::parse_from_rfc3339(text) {
                    Ok(at) => at.with_timezone(&Utc).cmp(want),
                    Err(_) => return false,
                }
            }
            (Literal::Number(want), Value::Number(n)) => match n.as_f64() {
                Some(n) => n.total_cmp(want),
                None => return false,
            },
            (Literal::Number(want), Value::String(text)) => match text.parse::<f64>() {
                Ok(n) => n.total_cmp(want),
                Err(_) => return false,
            },
            (Literal::Text(want), Value::String(text)) => {
                text.to_ascii_lowercase().cmp(&want.to_ascii_lowercase())
            }
            _ => return false,
        };
        self.op.holds(ordering)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pairs(query: &[(&str, &str)]) -> Vec<(String, String)> {
        query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_documented_query_is_read() {
        let q = parse(&pairs(&[
            (
                "$filter",
                "lastUpdateTime ge 2026-09-01T10:00:00.123456Z and lastUpdateTime lt 2026-09-01T11:00:00Z and status eq 'New'",
            ),
            ("$top", "10000"),
            ("$expand", "evidence"),
        ]))
        .expect("valid");
        assert_eq!((q.top, q.skip, q.expand), (10_000, 0, true));
        let alert = |updated: &str| json!({"lastUpdateTime": updated, "status": "New"});
        assert!(q.admits(&alert("2026-09-01T10:00:00.1234560Z")));
        assert!(q.admits(&alert("2026-09-01T10:59:59.9999999Z")));
        assert!(!q.admits(&alert("2026-09-01T10:00:00.1234559Z")));
        assert!(!q.admits(&alert("2026-09-01T11:00:00Z")));
        assert!(
            !q.admits(&json!({"lastUpdateTime": "2026-09-01T10:30:00Z", "status": "Resolved"}))
        );
        let day = parse(&pairs(&[("$filter", "alertCreationTime gt 2018-11-22")])).expect("valid");
        assert!(day.admits(&json!({"alertCreationTime": "2018-11-22T00:00:01Z"})));
    }

    #[test]
    fn what_the_service_refuses_is_refused() {
        for bad in [
            vec![("$top", "10001")],
            vec![("$orderby", "lastUpdateTime asc")],
            vec![("$expand", "machines")],
            vec![("$filter", "title eq 'x'")],
            vec![("$filter", "lastUpdateTime ge 'yesterday'")],
            vec![("$filter", "lastUpdateTime ge")],
            vec![("$filter", "status gt 'New'")],
            vec![("$filter", "status eq 'New' or status eq 'Resolved'")],
            vec![("$top", "-1")],
            vec![("$top", "1"), ("$TOP", "2")],
        ] {
            assert!(parse(&pairs(&bad)).is_err(), "{bad:?}");
        }
        assert!(
            parse(&pairs(&[("$orderby", "x")]))
                .expect_err("refused")
                .starts_with("Query option 'Orderby' is not allowed")
        );
    }
}
