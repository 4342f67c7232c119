//! The list request body (`filters`, `sortField`, `sortDirection`, `skip`, `limit`) and the
//! filters the simulator knows, checked as strictly as the service: an unknown filter, an
//! operator a filter does not take or a value of the wrong type is a 400.

use serde_json::{Map, Value};

/// Most items one response holds (reference §5.1); a larger `limit` is cut to it.
pub(crate) const MAX_LIMIT: u64 = 100;

/// Which list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum List {
    Activities,
    Alerts,
}

/// One filter on an epoch-millisecond field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Range {
    /// Inclusive bounds.
    pub(crate) from: i64,
    pub(crate) until: i64,
}

impl Range {
    const ALL: Range = Range {
        from: i64::MIN,
        until: i64::MAX,
    };

    pub(crate) fn contains(&self, ms: i64) -> bool {
        self.from <= ms && ms <= self.until
    }
}

/// A parsed list request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ListQuery {
    /// `created` (activities' ingest time).
    pub(crate) created: Range,
    /// `date` (event time; an alert's raise time).
    pub(crate) date: Range,
    /// Alerts: `alertOpen`.
    pub(crate) open: Option<bool>,
    /// Alerts: `read`.
    pub(crate) read: Option<bool>,
    /// Alerts: `resolutionStatus` (eq: allowed values; neq: refused values).
    pub(crate) resolution: Option<(bool, Vec<i64>)>,
    /// Alerts: `severity`.
    pub(crate) severity: Option<(bool, Vec<i64>)>,
    /// `sortField` (`created`, `date`, `severity`); `None`: by date, newest first.
    pub(crate) sort: Option<&'static str>,
    pub(crate) descending: bool,
    pub(crate) skip: u64,
    pub(crate) limit: u64,
}

fn bad<T>(message: impl Into<String>) -> Result<T, String> {
    Err(message.into())
}

fn int(value: &Value, what: &str) -> Result<i64, String> {
    match value.as_i64() {
        Some(v) => Ok(v),
        None => bad(format!(
            "{what}: expected an integer (epoch milliseconds), got {value}"
        )),
    }
}

fn ints(value: &Value, what: &str) -> Result<Vec<i64>, String> {
    match value {
        Value::Array(items) => items.iter().map(|v| int(v, what)).collect(),
        other => Ok(vec![int(other, what)?]),
    }
}

/// A time filter's operators: eq, gt, gte, lt, lte, range.
fn time_range(name: &str, ops: &Map<String, Value>) -> Result<Range, String> {
    let mut range = Range::ALL;
    for (op, value) in ops {
        let what = format!("{name}.{op}");
        match op.as_str() {
            "gte" => range.from = range.from.max(int(value, &what)?),
            "gt" => range.from = range.from.max(int(value, &what)?.saturating_add(1)),
            "lte" => range.until = range.until.min(int(value, &what)?),
            "lt" => range.until = range.until.min(int(value, &what)?.saturating_sub(1)),
            "eq" => {
                let v = int(value, &what)?;
                range.from = range.from.max(v);
                range.until = range.until.min(v);
            }
            "range" => {
                let object = value
                    .as_object()
                    .ok_or(format!("{what}: expected {{\"start\": …, \"end\": …}}"))?;
                let start = object
                    .get("start")
                    .ok_or(format!("{what}.start is missing"))?;
                let end = object.get("end").ok_or(format!("{what}.end is missing"))?;
                range.from = range.from.max(int(start, &what)?);
                range.until = range.until.min(int(end, &what)?);
            }
            other => {
                return bad(format!(
                    "{name}: unsupported operator '{other}' (use eq, gt, gte, lt, lte, range)"
                ));
            }
        }
    }
    Ok(range)
}

fn boolean(name: &str, ops: &Map<String, Value>) -> Result<bool, String> {
    match (ops.len(), ops.get("eq")) {
        (1, Some(Value::Bool(b))) => Ok(*b),
        _ => bad(format!("{name}: only eq with true or false is supported")),
    }
}

fn enumeration(name: &str, ops: &Map<String, Value>) -> Result<(bool, Vec<i64>), String> {
    match ops.iter().next() {
        Some((op, value)) if ops.len() == 1 && (op == "eq" || op == "neq") => {
            Ok((op == "eq", ints(value, name)?))
        }
        _ => bad(format!("{name}: only one of eq or neq is supported")),
    }
}

/// Reads a list request body (an empty body is an empty request).
pub(crate) fn parse(list: List, body: &[u8]) -> Result<ListQuery, String> {
    let root: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Map::new())
    } else {
        serde_json::from_slice(body).map_err(|e| format!("JSON parse error - {e}"))?
    };
    let Some(root) = root.as_object() else {
        return bad("the request body must be a JSON object");
    };
    let mut q = ListQuery {
        created: Range::ALL,
        date: Range::ALL,
        open: None,
        read: None,
        resolution: None,
        severity: None,
        sort: None,
        descending: false,
        skip: 0,
        limit: MAX_LIMIT,
    };
    for (name, value) in root {
        match name.as_str() {
            "filters" => {
                let Some(filters) = value.as_object() else {
                    return bad("filters must be an object");
                };
                for (filter, ops) in filters {
                    let Some(ops) = ops.as_object() else {
                        return bad(format!("{filter}: expected an object of operators"));
                    };
                    match (list, filter.as_str()) {
                        (List::Activities, "created") => q.created = time_range(filter, ops)?,
                        (_, "date") => q.date = time_range(filter, ops)?,
                        (List::Alerts, "alertOpen") => q.open = Some(boolean(filter, ops)?),
                        (List::Alerts, "read") => q.read = Some(boolean(filter, ops)?),
                        (List::Alerts, "resolutionStatus") => {
                            q.resolution = Some(enumeration(filter, ops)?)
                        }
                        (List::Alerts, "severity") => q.severity = Some(enumeration(filter, ops)?),
                        (_, other) => return bad(format!("Unknown filter: {other}")),
                    }
                }
            }
            "sortField" => {
                q.sort = Some(match (list, value.as_str()) {
                    (List::Activities, Some("created")) => "created",
                    (_, Some("date")) => "date",
                    (List::Alerts, Some("severity")) => "severity",
                    _ => return bad(format!("Invalid sortField: {value}")),
                })
            }
            "sortDirection" => {
                q.descending = match value.as_str() {
                    Some("asc") => false,
                    Some("desc") => true,
                    _ => return bad(format!("Invalid sortDirection: {value} (asc or desc)")),
                }
            }
            "skip" => match value.as_u64() {
                Some(skip) => q.skip = skip,
                None => return bad(format!("skip must be a non-negative integer, got {value}")),
            },
            "limit" => match value.as_u64() {
                Some(limit) => q.limit = limit.min(MAX_LIMIT),
                None => return bad(format!("limit must be a non-negative integer, got {value}")),
            },
            other => return bad(format!("Unknown parameter: {other}")),
        }
    }
    if q.sort.is_none() {
        // The service's default order: newest first by date.
        q.descending = true;
    }
    Ok(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_body_is_read() {
        let body = br#"{"filters":{"created":{"gte":1756720800000}},"sortField":"created","sortDirection":"asc","skip":0,"limit":100}"#;
        let q = parse(List::Activities, body).expect("parsed");
        assert_eq!(q.created.from, 1_756_720_800_000);
        assert_eq!(q.sort, Some("created"));
        assert!(!q.descending);
        assert_eq!(q.limit, 100);
    }

    #[test]
    fn strictness() {
        for body in [
            r#"{"filters":{"created":{"gte":"2026-09-01T00:00:00Z"}}}"#,
            r#"{"filters":{"created":{"after":1}}}"#,
            r#"{"filters":{"lastModified":{"gte":1}}}"#,
            r#"{"sortField":"lastModified"}"#,
            r#"{"skip":-1}"#,
            r#"{"pageSize":10}"#,
            r#"not json"#,
        ] {
            assert!(parse(List::Activities, body.as_bytes()).is_err(), "{body}");
        }
        assert!(
            parse(List::Alerts, br#"{"filters":{"created":{"gte":1}}}"#).is_err(),
            "alerts have no created filter"
        );
        assert!(
            parse(
                List::Activities,
                br#"{"filters":{"alertOpen":{"eq":true}}}"#
            )
            .is_err()
        );
        let q = parse(List::Alerts, br#"{"filters":{"alertOpen":{"eq":true},"date":{"range":{"start":5,"end":9}}},"limit":1000}"#).expect("parsed");
        assert_eq!(q.open, Some(true));
        assert_eq!(q.date, Range { from: 5, until: 9 });
        assert_eq!(q.limit, MAX_LIMIT, "cut to 100");
    }
}
