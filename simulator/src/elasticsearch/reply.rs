//! Elasticsearch's JSON error shapes, product headers and `filter_path`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::config::Flavour;

/// A request-level error: `{"error":{"root_cause":[…],"type","reason"},"status"}`.
#[derive(Debug, Clone)]
pub(crate) struct EsError {
    pub(crate) status: StatusCode,
    pub(crate) kind: &'static str,
    pub(crate) reason: String,
}

impl EsError {
    /// An error of `kind` (`illegal_argument_exception`, …) with its HTTP status.
    pub(crate) fn new(status: StatusCode, kind: &'static str, reason: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            reason: reason.into(),
        }
    }

    /// 400 `illegal_argument_exception`, the commonest refusal.
    pub(crate) fn illegal(reason: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "illegal_argument_exception",
            reason,
        )
    }

    /// The JSON body.
    pub(crate) fn body(&self) -> Value {
        let cause = json!({"type": self.kind, "reason": self.reason});
        json!({
            "error": {"root_cause": [cause], "type": self.kind, "reason": self.reason},
            "status": self.status.as_u16(),
        })
    }
}

/// A JSON answer with the headers of the flavour (`X-Elastic-Product` for Elasticsearch).
pub(crate) fn json_response(flavour: Flavour, status: StatusCode, body: &Value) -> Response {
    let mut r = (status, body.to_string()).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if flavour == Flavour::Elasticsearch {
        h.insert(
            "x-elastic-product",
            HeaderValue::from_static("Elasticsearch"),
        );
    }
    r
}

/// An answer without a body (413 from the HTTP layer).
pub(crate) fn empty_response(flavour: Flavour, status: StatusCode) -> Response {
    let mut r = status.into_response();
    if flavour == Flavour::Elasticsearch {
        r.headers_mut().insert(
            "x-elastic-product",
            HeaderValue::from_static("Elasticsearch"),
        );
    }
    r
}

/// The 401 of each product when credentials are missing or wrong.
pub(crate) fn unauthorized(flavour: Flavour, reason: &str) -> Response {
    match flavour {
        Flavour::Elasticsearch => {
            let challenge = ["Basic realm=\"security\" charset=\"UTF-8\"", "ApiKey"];
            let cause = json!({
                "type": "security_exception",
                "reason": reason,
                "header": {"WWW-Authenticate": challenge},
            });
            let body = json!({
                "error": {
                    "root_cause": [cause],
                    "type": "security_exception",
                    "reason": reason,
                    "header": {"WWW-Authenticate": challenge},
                },
                "status": 401,
            });
            let mut r = json_response(flavour, StatusCode::UNAUTHORIZED, &body);
            for c in challenge {
                r.headers_mut()
                    .append(header::WWW_AUTHENTICATE, HeaderValue::from_static(c));
            }
            r
        }
        Flavour::Opensearch => {
            let mut r = (StatusCode::UNAUTHORIZED, "Unauthorized").into_response();
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=UTF-8"),
            );
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"OpenSearch Security\""),
            );
            r
        }
    }
}

/// Applies `filter_path` (comma-separated dotted paths, `*` matching any key; arrays are
/// transparent). Nothing matched ⇒ `{}`, as Elasticsearch answers.
pub(crate) fn filter_path(value: &Value, spec: &str) -> Value {
    let paths: Vec<Vec<&str>> = spec
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| p.split('.').collect())
        .collect();
    if paths.is_empty() {
        return value.clone();
    }
    filter(value, &paths).unwrap_or_else(|| Value::Object(Map::new()))
}

fn filter(value: &Value, paths: &[Vec<&str>]) -> Option<Value> {
    if paths.iter().any(|p| p.is_empty()) {
        return Some(value.clone());
    }
    match value {
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, child) in map {
                let rest: Vec<Vec<&str>> = paths
                    .iter()
                    .filter(|p| p[0] == "*" || p[0] == k)
                    .map(|p| p[1..].to_vec())
                    .collect();
                if rest.is_empty() {
                    continue;
                }
                if let Some(kept) = filter(child, &rest) {
                    out.insert(k.clone(), kept);
                }
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
        Value::Array(items) => {
            let kept: Vec<Value> = items.iter().filter_map(|i| filter(i, paths)).collect();
            (!kept.is_empty()).then_some(Value::Array(kept))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_path_keeps_matching_leaves() {
        let v = json!({"took": 3, "errors": true, "items": [
            {"create": {"_id": "a", "status": 201, "result": "created"}},
            {"index": {"_id": "b", "status": 429, "error": {"type": "x"}}}
        ]});
        assert_eq!(
            filter_path(&v, "errors,items.*.status,items.*.error"),
            json!({"errors": true, "items": [
                {"create": {"status": 201}},
                {"index": {"status": 429, "error": {"type": "x"}}}
            ]})
        );
        assert_eq!(filter_path(&v, "nothing"), json!({}));
        assert_eq!(filter_path(&v, ""), v);
    }
}
