//! `GET /`: which product and version a node runs.

use reqwest::header::HeaderMap;
use serde_json::Value;

/// The product behind an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Product {
    /// Elasticsearch, with its version (`8.15.0`).
    Elasticsearch { version: String },
    /// OpenSearch (`version.distribution = "opensearch"`), with its version.
    OpenSearch { version: String },
    /// Something else answered (a proxy's own page, say).
    Unknown,
}

impl Product {
    /// Reads the answer to `GET /`.
    pub fn read(headers: &HeaderMap, body: &[u8]) -> Self {
        let Ok(root) = serde_json::from_slice::<Value>(body) else {
            return Product::Unknown;
        };
        let version = root.get("version");
        let number = version
            .and_then(|v| v.get("number"))
            .and_then(Value::as_str)
            .map(str::to_string);
        let distribution = version
            .and_then(|v| v.get("distribution"))
            .and_then(Value::as_str);
        match (number, distribution) {
            (Some(version), Some("opensearch")) => Product::OpenSearch { version },
            // 7.14 and later also send `X-Elastic-Product`; earlier ones only the body.
            (Some(version), _) => Product::Elasticsearch { version },
            (None, _) if headers.contains_key("x-elastic-product") => Product::Elasticsearch {
                version: "unknown".into(),
            },
            (None, _) => Product::Unknown,
        }
    }

    /// The product's name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Product::Elasticsearch { .. } => "Elasticsearch",
            Product::OpenSearch { .. } => "OpenSearch",
            Product::Unknown => "unknown",
        }
    }

    /// The version, for logs.
    pub fn version(&self) -> &str {
        match self {
            Product::Elasticsearch { version } | Product::OpenSearch { version } => version,
            Product::Unknown => "unknown",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products() {
        let none = HeaderMap::new();
        assert_eq!(
            Product::read(&none, br#"{"version":{"number":"8.15.0","build_flavor":"default"},"tagline":"You Know, for Search"}"#),
            Product::Elasticsearch { version: "8.15.0".into() }
        );
        assert_eq!(
            Product::read(&none, br#"{"version":{"number":"7.10.2"}}"#),
            Product::Elasticsearch {
                version: "7.10.2".into()
            }
        );
        assert_eq!(
            Product::read(
                &none,
                br#"{"version":{"distribution":"opensearch","number":"2.17.0"}}"#
            ),
            Product::OpenSearch {
                version: "2.17.0".into()
            }
        );
        assert_eq!(Product::read(&none, b"<html>ok</html>"), Product::Unknown);
    }
}
