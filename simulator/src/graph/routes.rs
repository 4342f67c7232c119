//! The Graph endpoints under `/v1.0/` and `/beta/`: authentication, app roles, throttling,
//! injected faults, licence, then the OData listing with its paging.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::catalog::{self, Renderer, Shape, View};
use super::errors::GraphError;
use super::listing::{Listing, ListingKey};
use super::odata::{self, Collection, Family, Paging, Query, SortKey};
use super::paging::{self, Binding, Cursor};
use super::stats::GraphStats;
use super::time::{self, Ticks};
use crate::server::Arrived;
use crate::state::{Sim, lock};
use crate::throttle::Window;
use crate::tokens;
use crate::wire::query_pairs;

/// `GET /v1.0/{path}`.
pub(crate) async fn v1(
    State(sim): State<Arc<Sim>>,
    arrived: Option<Extension<Arrived>>,
    Path(path): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let now_ms = arrived.map_or_else(|| sim.now_ms(), |Extension(Arrived(ms))| ms);
    handle(&sim, now_ms, "v1.0", &path, &headers, &uri).await
}

/// `GET /beta/{path}`.
pub(crate) async fn beta(
    State(sim): State<Arc<Sim>>,
    arrived: Option<Extension<Arrived>>,
    Path(path): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let now_ms = arrived.map_or_else(|| sim.now_ms(), |Extension(Arrived(ms))| ms);
    handle(&sim, now_ms, "beta", &path, &headers, &uri).await
}

/// Counts into the caller's Graph stats (Sync: held across the slow fault's await).
type Count<'a> = &'a (dyn Fn(&dyn Fn(&mut GraphStats)) + Sync);

/// Who is calling, from the bearer token.
struct Caller {
    tenant: usize,
    tenant_id: String,
    client_id: String,
    roles: Vec<String>,
}

/// Answers a request that arrived at `now_ms` (simulator clock).
async fn handle(
    sim: &Sim,
    now_ms: i64,
    version: &str,
    path: &str,
    headers: &HeaderMap,
    uri: &Uri,
) -> Response {
    let Some(c) = Collection::at(version, path) else {
        let segment = path.split('/').find(|s| !s.is_empty()).unwrap_or(path);
        return GraphError::bad(format!("Resource not found for the segment '{segment}'."))
            .into_response();
    };
    let caller = authenticate(sim, headers);
    let tenant_key = match &caller {
        Ok(who) => who.tenant_id.clone(),
        Err((tenant, _)) => tenant.clone(),
    };
    let count = |f: &dyn Fn(&mut GraphStats)| sim.count(&tenant_key, |s| f(&mut s.graph));
    count(&|g| {
        *g.requests.entry(c.stats_name().into()).or_default() += 1;
        g.arrived(c.family().name(), now_ms);
    });
    let who = match caller {
        Ok(who) => who,
        Err((_, e)) => {
            count(&|g| g.unauthorized += 1);
            return e.into_response();
        }
    };
    let result: Result<Response, GraphError> = async {
        authorize(c, &who)?;
        admit(sim, c, &who, now_ms, &count)?;
        inject(sim, &count).await?;
        license(sim, c, &who)?;
        let q = odata::parse(c, &query_pairs(uri.query()))?;
        list(sim, c, &who, &q, headers, now_ms, &count)
    }
    .await;
    match result {
        Ok(r) => r,
        Err(e) => {
            count(&|g| match e.status {
                StatusCode::FORBIDDEN => g.forbidden += 1,
                StatusCode::BAD_REQUEST => g.bad_requests += 1,
                _ => {}
            });
            e.into_response()
        }
    }
}

/// The caller of a valid token; else the tenant to count the refusal under ("" when the
/// token names none) and the 401.
fn authenticate(sim: &Sim, headers: &HeaderMap) -> Result<Caller, (String, GraphError)> {
    let Some(token) = tokens::bearer(headers) else {
        return Err((
            String::new(),
            GraphError::unauthenticated("Access token is empty."),
        ));
    };
    let Some(info) = lock(&sim.tokens).get(&token).cloned() else {
        return Err((
            String::new(),
            GraphError::unauthenticated("Access token validation failure."),
        ));
    };
    let tenant_id = sim.world.tenants[info.tenant].id.clone();
    if info.expires_ms <= sim.now_ms() {
        return Err((
            tenant_id,
            GraphError::unauthenticated("Lifetime validation failed, the token is expired."),
        ));
    }
    // Tokens of one cloud are not valid in another; the Management API's are not Graph's.
    let audience = sim.cfg.graph.tenant(&tenant_id).cloud.graph_audience();
    if !info.audience.eq_ignore_ascii_case(audience) {
        return Err((
            tenant_id,
            GraphError::unauthenticated("Access token validation failure. Invalid audience."),
        ));
    }
    Ok(Caller {
        tenant: info.tenant,
        tenant_id,
        client_id: info.client_id,
        roles: info.roles,
    })
}

/// 403 unless the token carries, for each requirement, one of its roles.
fn authorize(c: Collection, who: &Caller) -> Result<(), GraphError> {
    let has = |r: &&str| who.roles.iter().any(|x| x.eq_ignore_ascii_case(r));
    let missing = c
        .required_roles()
        .iter()
        .find(|any_of| !any_of.iter().any(has));
    let Some(any_of) = missing else {
        return Ok(());
    };
    Err(match c.family() {
        Family::Security => GraphError::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!(
                "Missing application roles. API required roles: {}. Application roles: {}.",
                any_of.join(","),
                who.roles.join(",")
            ),
        ),
        Family::Identity => GraphError::new(
            StatusCode::FORBIDDEN,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        ),
    })
}

/// The documented request limit of the collection's family.
fn admit(
    sim: &Sim,
    c: Collection,
    who: &Caller,
    now_ms: i64,
    count: Count<'_>,
) -> Result<(), GraphError> {
    let g = &sim.cfg.graph;
    let (requests, per_ms) = match c.family() {
        Family::Security => (g.security_requests_per_minute, 60_000),
        Family::Identity => (g.identity_requests_per_10s, 10_000),
    };
    sim.graph
        .limiter
        .admit(
            (who.tenant, who.client_id.clone(), c.family()),
            now_ms,
            &[Window { requests, per_ms }],
        )
        .map_err(|seconds| {
            count(&|g| g.throttled += 1);
            GraphError::throttled(seconds)
        })
}

/// The configured transport faults: throttling, 503/504, slow answers.
async fn inject(sim: &Sim, count: Count<'_>) -> Result<(), GraphError> {
    let f = &sim.cfg.graph.faults;
    let dice = &sim.graph.dice;
    let fired = |name: &'static str| {
        count(&|g| *g.faults.entry(name.into()).or_default() += 1);
    };
    if dice.chance(f.slow_rate) {
        fired("slow");
        tokio::time::sleep(f.slow_latency).await;
    }
    if dice.chance(f.throttle_rate) {
        fired("throttle");
        return Err(GraphError::throttled(1 + (dice.roll() * 10.0) as u64));
    }
    if dice.chance(f.server_error_rate) {
        fired("server_error");
        return Err(if dice.roll() < 0.5 {
            GraphError {
                retry_after: Some(1 + (dice.roll() * 5.0) as u64),
                ..GraphError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceNotAvailable",
                    "The service is temporarily unavailable. Please retry after the time specified in the Retry-After header.",
                )
            }
        } else {
            GraphError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "GatewayTimeout",
                "The gateway did not receive a response from the service in time.",
            )
        });
    }
    Ok(())
}

/// signIns and provisioning need Entra ID P1/P2 (reference §6.1).
fn license(sim: &Sim, c: Collection, who: &Caller) -> Result<(), GraphError> {
    if c.needs_premium() && !sim.cfg.graph.tenant(&who.tenant_id).premium {
        return Err(GraphError::new(
            StatusCode::FORBIDDEN,
            "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
            "Neither tenant is B2C or tenant doesn't have premium license",
        ));
    }
    Ok(())
}

/// The `lastUpdateDateTime` bounds of a security listing that a sorted index serves: the
/// world is frozen (every query sees one snapshot, so one index serves them all), the
/// listing is sorted by that time, and the filter says nothing else.
fn indexed_bounds(
    sim: &Sim,
    c: Collection,
    shape: Shape<'_>,
) -> Option<(Option<Ticks>, Option<Ticks>)> {
    const PATH: &str = "lastUpdateDateTime";
    let security = matches!(c, Collection::Alerts | Collection::Incidents);
    if sim.cfg.live || !security || shape.sort != SortKey::Updated {
        return None;
    }
    match shape.filter {
        None => Some((None, None)),
        Some(f) if f.only_bounds(PATH) => Some(f.time_bounds(PATH)),
        Some(_) => None,
    }
}

/// Whether `Prefer` (one or several headers, comma-separated) asks for newer enum members.
fn wants_unknown_members(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| {
            p.trim()
                .eq_ignore_ascii_case("include-unknown-enum-members")
        })
}

fn list(
    sim: &Sim,
    c: Collection,
    who: &Caller,
    q: &Query,
    headers: &HeaderMap,
    now_ms: i64,
    count: Count<'_>,
) -> Result<Response, GraphError> {
    let g = &sim.cfg.graph;
    let dice = &sim.graph.dice;
    let fired = |name: &'static str| {
        count(&|s| *s.faults.entry(name.into()).or_default() += 1);
    };
    let binding = Binding {
        secret: sim.graph.secret,
        tenant: who.tenant,
        query: paging::query_hash(&q.carry),
    };
    let visible_now = time::from_ms(sim.published_until_ms());
    let cursor = match &q.skiptoken {
        Some(token) => {
            if dice.chance(g.faults.expired_skiptoken_rate) {
                fired("expired_skiptoken");
                return Err(paging::expired());
            }
            paging::decode(
                token,
                &binding,
                now_ms,
                g.skiptoken_lifetime.as_millis() as i64,
            )?
        }
        None => Cursor {
            offset: q.skip,
            snapshot: visible_now,
            started_ms: now_ms,
        },
    };
    let unknown_members = wants_unknown_members(headers);
    let view = View {
        now: cursor.snapshot,
        from: time::from_ms(sim.history_start_ms()),
        unknown_members,
    };
    let shape = Shape {
        filter: q.filter.as_ref(),
        sort: q.sort,
        descending: q.descending,
        expand_alerts: q.expand_alerts,
    };
    let listing_key = ListingKey {
        tenant: who.tenant,
        collection: c,
        query: binding.query,
        snapshot: cursor.snapshot,
        unknown_members,
    };
    let build = |shape: Shape<'_>| {
        Listing::new(
            Renderer::new(who.tenant, c, view, shape.expand_alerts),
            catalog::rows(&sim.world, who.tenant, c, view, shape),
        )
    };
    let rows = sim.graph.listings.get_or_build(listing_key, || {
        match indexed_bounds(sim, c, shape) {
            // Every such query of a frozen world is a run of one sorted index: built once,
            // cut by binary search.
            Some((lo, hi)) => {
                let index_key = ListingKey {
                    query: paging::index_hash(shape.descending, shape.expand_alerts),
                    ..listing_key
                };
                let index = sim.graph.listings.get_or_build(index_key, || {
                    build(Shape {
                        filter: None,
                        ..shape
                    })
                });
                index.within(lo, hi, shape.descending)
            }
            None => build(shape),
        }
    });
    let size = q.page_size(c);
    let start = cursor.offset.min(rows.len());
    let end = start.saturating_add(size).min(rows.len());
    let page = rows.records(&sim.world, start, end);
    let base = format!(
        "http://{}/{}",
        tokens::request_host(sim, headers),
        c.version()
    );
    let mut next = None;
    if end < rows.len() {
        let mut next_offset = end;
        // The next page starts one record back: that record comes twice.
        if page.len() > 1 && dice.chance(g.faults.repeat_rate) {
            fired("repeat");
            next_offset -= 1;
        }
        let url = format!("{base}/{}", c.path());
        next = match c.paging() {
            Paging::Skip => {
                if q.top.is_some()
                    && page.len() == size
                    && dice.chance(g.faults.missing_next_link_rate)
                {
                    fired("missing_next_link");
                    None
                } else {
                    Some(paging::link(
                        &url,
                        &q.carry,
                        ("$skip", next_offset.to_string()),
                    ))
                }
            }
            Paging::SkipToken => {
                let token = paging::encode(
                    &binding,
                    &Cursor {
                        offset: next_offset,
                        ..cursor
                    },
                );
                Some(paging::link(&url, &q.carry, ("$skiptoken", token)))
            }
        };
    }
    let value: Vec<Value> = page
        .iter()
        .map(|r| select(r, q.select.as_deref()))
        .collect();
    let served = value.len() as u64;
    count(&|s| {
        s.pages += 1;
        s.records_served += served;
    });
    let mut body = Map::new();
    body.insert(
        "@odata.context".into(),
        json!(format!("{base}/$metadata#{}", c.context())),
    );
    if q.count {
        body.insert("@odata.count".into(), json!(rows.len()));
    }
    if let Some(n) = next {
        body.insert("@odata.nextLink".into(), json!(n));
    }
    body.insert("value".into(), Value::Array(value));
    let mut r = (StatusCode::OK, Value::Object(body).to_string()).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(
            "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8",
        ),
    );
    if let Ok(id) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        h.insert("request-id", id);
    }
    if unknown_members {
        h.insert(
            "preference-applied",
            HeaderValue::from_static("include-unknown-enum-members"),
        );
    }
    Ok(r)
}

/// `$select`: only the named top-level properties (and `@odata.type`).
fn select(record: &Value, names: Option<&[String]>) -> Value {
    let (Some(names), Value::Object(m)) = (names, record) else {
        return record.clone();
    };
    let kept: Map<String, Value> = m
        .iter()
        .filter(|(k, _)| *k == "@odata.type" || names.iter().any(|n| n.eq_ignore_ascii_case(k)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Value::Object(kept)
}
