//! The cluster's endpoints: `GET /`, `GET /_cluster/health`, `POST|PUT /_bulk` and
//! `/{index}/_bulk`. Order of checks: credentials, route, query parameters, content type,
//! request faults, body size, body.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::Response;
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use super::Es;
use super::bulk;
use super::config::Flavour;
use super::reply::{EsError, empty_response, filter_path, json_response, unauthorized};
use crate::state::lock;
use crate::wire::{self, BodyError, query_get, query_pairs};

/// Query parameters `_bulk` accepts; anything else is refused, as Elasticsearch does.
const BULK_PARAMS: [&str; 16] = [
    "pipeline",
    "refresh",
    "routing",
    "timeout",
    "wait_for_active_shards",
    "require_alias",
    "require_data_stream",
    "filter_path",
    "_source",
    "_source_includes",
    "_source_excludes",
    "pretty",
    "human",
    "error_trace",
    "list_executed_pipelines",
    "include_source_on_error",
];

/// Every route of the simulated cluster.
pub(crate) fn router(es: Arc<Es>) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/_cluster/health", get(health))
        .route("/_bulk", post(bulk_all).put(bulk_all))
        .route("/{index}/_bulk", post(bulk_index).put(bulk_index))
        .fallback(no_handler)
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(es)
}

/// The product's 401 when security is on and the credentials do not pass.
fn unauthenticated(es: &Es, headers: &HeaderMap, path: &str) -> Option<Response> {
    check_credentials(es, headers, path)
        .err()
        .map(|reason| unauthorized(es.cfg.flavour, &reason))
}

/// The credential check; the `Err` is the reason Elasticsearch gives.
fn check_credentials(es: &Es, headers: &HeaderMap, path: &str) -> Result<(), String> {
    let cfg = &es.cfg;
    if cfg.users.is_empty() && cfg.api_keys.is_empty() {
        return Ok(());
    }
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Err(format!(
            "missing authentication credentials for REST request [{path}]"
        ));
    };
    let (scheme, credentials) = value.trim().split_once(' ').unwrap_or((value, ""));
    let decoded = B64
        .decode(credentials.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok());
    let pair = decoded.as_deref().and_then(|d| d.split_once(':'));
    if scheme.eq_ignore_ascii_case("Basic") {
        if let Some((user, password)) = pair {
            if cfg
                .users
                .iter()
                .any(|u| u.username == user && u.password == password)
            {
                return Ok(());
            }
            return Err(format!(
                "unable to authenticate user [{user}] for REST request [{path}]"
            ));
        }
    } else if scheme.eq_ignore_ascii_case("ApiKey") && cfg.flavour == Flavour::Elasticsearch {
        if let Some((id, key)) = pair
            && cfg.api_keys.iter().any(|k| k.id == id && k.key == key)
        {
            return Ok(());
        }
        return Err(format!(
            "unable to authenticate with provided credentials and anonymous access is not allowed for this request [{path}]"
        ));
    }
    Err(format!(
        "missing authentication credentials for REST request [{path}]"
    ))
}

async fn root(State(es): State<Arc<Es>>, uri: Uri, headers: HeaderMap) -> Response {
    if let Some(r) = unauthenticated(&es, &headers, uri.path()) {
        return es.finish(r);
    }
    let body = match es.cfg.flavour {
        Flavour::Elasticsearch => json!({
            "name": "siemflow-simulator",
            "cluster_name": "siemflow-simulator",
            "cluster_uuid": es.cluster_uuid,
            "version": {
                "number": "8.15.0",
                "build_flavor": "default",
                "build_type": "docker",
                "build_hash": "1a77947f34deddb41af25e6f0ddb8e830159c179",
                "build_date": "2024-08-05T10:05:34.233336849Z",
                "build_snapshot": false,
                "lucene_version": "9.11.1",
                "minimum_wire_compatibility_version": "7.17.0",
                "minimum_index_compatibility_version": "7.0.0",
            },
            "tagline": "You Know, for Search",
        }),
        Flavour::Opensearch => json!({
            "name": "siemflow-simulator",
            "cluster_name": "siemflow-simulator",
            "cluster_uuid": es.cluster_uuid,
            "version": {
                "distribution": "opensearch",
                "number": "2.17.0",
                "build_type": "tar",
                "build_hash": "8586481dc99b1740ca3c7c966aee15ad0fc7b548",
                "build_date": "2024-09-13T01:04:03.101493573Z",
                "build_snapshot": false,
                "lucene_version": "9.11.1",
                "minimum_wire_compatibility_version": "7.10.0",
                "minimum_index_compatibility_version": "7.0.0",
            },
            "tagline": "The OpenSearch Project: https://opensearch.org/",
        }),
    };
    es.finish(json_response(es.cfg.flavour, StatusCode::OK, &body))
}

async fn health(State(es): State<Arc<Es>>, uri: Uri, headers: HeaderMap) -> Response {
    if let Some(r) = unauthenticated(&es, &headers, uri.path()) {
        return es.finish(r);
    }
    let shards = lock(&es.inner).store.index_count();
    let body = json!({
        "cluster_name": "siemflow-simulator",
        "status": "green",
        "timed_out": false,
        "number_of_nodes": 1,
        "number_of_data_nodes": 1,
        "active_primary_shards": shards,
        "active_shards": shards,
        "relocating_shards": 0,
        "initializing_shards": 0,
        "unassigned_shards": 0,
        "delayed_unassigned_shards": 0,
        "number_of_pending_tasks": 0,
        "number_of_in_flight_fetch": 0,
        "task_max_waiting_in_queue_millis": 0,
        "active_shards_percent_as_number": 100.0,
    });
    es.finish(json_response(es.cfg.flavour, StatusCode::OK, &body))
}

async fn no_handler(
    State(es): State<Arc<Es>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = unauthenticated(&es, &headers, uri.path()) {
        return es.finish(r);
    }
    let body = json!({
        "error": format!("no handler found for uri [{}] and method [{method}]", uri.path()),
    });
    es.finish(json_response(
        es.cfg.flavour,
        StatusCode::BAD_REQUEST,
        &body,
    ))
}

async fn bulk_all(
    State(es): State<Arc<Es>>,
    uri: Uri,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    bulk_request(es, None, uri, query, headers, body).await
}

async fn bulk_index(
    State(es): State<Arc<Es>>,
    Path(index): Path<String>,
    uri: Uri,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    bulk_request(es, Some(index), uri, query, headers, body).await
}

async fn bulk_request(
    es: Arc<Es>,
    index: Option<String>,
    uri: Uri,
    query: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let f = &es.cfg.faults;
    if es.dice.chance(f.slow_rate) {
        tokio::time::sleep(f.slow_delay).await;
    }
    if let Some(r) = unauthenticated(&es, &headers, uri.path()) {
        return es.finish(r);
    }
    let flavour = es.cfg.flavour;
    let response = match bulk(
        &es,
        index.as_deref(),
        uri.path(),
        query.as_deref(),
        &headers,
        body,
    )
    .await
    {
        Ok(body) => json_response(flavour, StatusCode::OK, &body),
        Err(Refused::Es(e)) => json_response(flavour, e.status, &e.body()),
        Err(Refused::Plain(status, body)) => json_response(flavour, status, &body),
        Err(Refused::TooLarge) => empty_response(flavour, StatusCode::PAYLOAD_TOO_LARGE),
    };
    es.finish(response)
}

enum Refused {
    Es(EsError),
    /// Errors Elasticsearch answers with a flat `{"error":"…","status":N}`.
    Plain(StatusCode, Value),
    TooLarge,
}

impl From<EsError> for Refused {
    fn from(e: EsError) -> Self {
        Refused::Es(e)
    }
}

async fn bulk(
    es: &Es,
    index: Option<&str>,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Value, Refused> {
    let started = Instant::now();
    let q = query_pairs(query);
    if let Some((name, _)) = q.iter().find(|(k, _)| !BULK_PARAMS.contains(&k.as_str())) {
        return Err(EsError::illegal(format!(
            "request [{path}] contains unrecognized parameter: [{name}]"
        ))
        .into());
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let accepted = matches!(
        media.as_str(),
        "application/x-ndjson"
            | "application/json"
            | "application/vnd.elasticsearch+x-ndjson"
            | "application/vnd.elasticsearch+json"
    );
    if !accepted {
        return Err(Refused::Plain(
            StatusCode::NOT_ACCEPTABLE,
            json!({
                "error": format!("Content-Type header [{content_type}] is not supported"),
                "status": 406,
            }),
        ));
    }
    if let Some(i) = index
        && let Some(why) = bulk::index_name_problem(i)
    {
        return Err(EsError::new(
            StatusCode::BAD_REQUEST,
            "invalid_index_name_exception",
            format!("Invalid index name [{i}], {why}"),
        )
        .into());
    }
    let f = &es.cfg.faults;
    if es.dice.chance(f.request_throttle_rate) {
        let kind = match es.cfg.flavour {
            Flavour::Elasticsearch => "es_rejected_execution_exception",
            Flavour::Opensearch => "opensearch_rejected_execution_exception",
        };
        return Err(EsError::new(
            StatusCode::TOO_MANY_REQUESTS,
            kind,
            "rejected execution of coordinating operation [coordinating_and_primary_bytes=0, replica_bytes=0, all_bytes=0, coordinating_operation_bytes=1, max_coordinating_and_primary_bytes=0]",
        )
        .into());
    }
    if es.dice.chance(f.request_unavailable_rate) {
        return Err(EsError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "cluster_block_exception",
            "blocked by: [SERVICE_UNAVAILABLE/2/no master];",
        )
        .into());
    }
    let limit = es.cfg.max_content_length;
    let (bytes, wire_len) = match wire::read_body(headers, body, limit, limit).await {
        Ok(read) => read,
        Err(BodyError::TooLarge { length, .. }) => {
            es.note_body(length, 0);
            return Err(Refused::TooLarge);
        }
        Err(e) => return Err(EsError::illegal(e.to_string()).into()),
    };
    es.note_body(wire_len, bytes.len() as u64);
    let actions = bulk::parse(&bytes, index)?;
    let mut items = Vec::with_capacity(actions.len());
    let mut errors = false;
    {
        let mut inner = lock(&es.inner);
        let inner = &mut *inner;
        inner.stats.bulk_requests += 1;
        for action in &actions {
            let r = inner.store.apply(&es.cfg, &es.dice, action, &es.today);
            let s = &mut inner.stats;
            s.items += 1;
            *s.items_by_status.entry(r.status).or_default() += 1;
            if let Some(kind) = r.error {
                errors = true;
                *s.items_by_error.entry(kind.to_string()).or_default() += 1;
            }
            match r.result {
                Some("created") => s.documents_created += 1,
                Some("updated") => s.documents_updated += 1,
                Some("deleted") => s.documents_deleted += 1,
                _ => {}
            }
            items.push(r.json);
        }
    }
    let body = json!({
        "errors": errors,
        "took": started.elapsed().as_millis() as u64,
        "items": items,
    });
    Ok(match query_get(&q, "filter_path") {
        Some(spec) => filter_path(&body, spec),
        None => body,
    })
}

impl Es {
    fn note_body(&self, wire: u64, decoded: u64) {
        let mut inner = lock(&self.inner);
        inner.stats.largest_body = inner.stats.largest_body.max(wire);
        inner.stats.largest_decoded_body = inner.stats.largest_decoded_body.max(decoded);
    }

    /// Counts the answer.
    fn finish(&self, response: Response) -> Response {
        let mut inner = lock(&self.inner);
        inner.stats.requests += 1;
        *inner
            .stats
            .by_status
            .entry(response.status().as_u16())
            .or_default() += 1;
        response
    }
}
