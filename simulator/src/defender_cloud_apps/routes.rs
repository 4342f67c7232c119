//! `GET|POST /api/v1/activities/` and `/api/v1/alerts/`: authentication (Entra bearer token
//! for the Cloud Apps audience with `Investigation.read`, or a legacy `Token`), the
//! 30-a-minute limit, injected faults, then the filtered, sorted, skip/limit page. Errors
//! are Django REST framework's `{"detail": …}`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::filters::{self, List, ListQuery};
use super::{CLOUD_APPS_AUDIENCE, CloudAppsStats};
use crate::state::{Sim, lock};

/// The role that reads activities and alerts (`Investigation.manage` includes it).
const READ_ROLES: [&str; 2] = ["Investigation.read", "Investigation.manage"];

/// An error answer.
struct Refusal {
    status: StatusCode,
    detail: String,
    retry_after: Option<u64>,
}

impl Refusal {
    fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Refusal {
            status,
            detail: detail.into(),
            retry_after: None,
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut r = (self.status, json!({"detail": self.detail}).to_string()).into_response();
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(s) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Token"));
        }
        r
    }
}

/// `/api/v1/activities/`.
pub(crate) async fn activities(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(&sim, List::Activities, &headers, &body)
}

/// `/api/v1/alerts/`.
pub(crate) async fn alerts(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(&sim, List::Alerts, &headers, &body)
}

fn handle(sim: &Sim, list: List, headers: &HeaderMap, body: &[u8]) -> Response {
    let now_ms = sim.now_ms();
    let caller = authenticate(sim, headers);
    let tenant_key = match &caller {
        Ok((_, id)) => id.clone(),
        Err(_) => String::new(),
    };
    let count = |f: &dyn Fn(&mut CloudAppsStats)| sim.count(&tenant_key, |s| f(&mut s.cloud_apps));
    let name = match list {
        List::Activities => "activities",
        List::Alerts => "alerts",
    };
    count(&|s| {
        *s.requests.entry(name.into()).or_default() += 1;
        s.arrived(now_ms);
    });
    let result: Result<Value, Refusal> = (|| {
        let (tenant, _) = caller?;
        let cfg = &sim.cfg.defender_cloud_apps;
        sim.cloud_apps
            .admit(tenant, now_ms, cfg.requests_per_minute)
            .map_err(|seconds| {
                count(&|s| s.throttled += 1);
                throttled(seconds)
            })?;
        inject(sim, &count)?;
        let q = filters::parse(list, body)
            .map_err(|detail| Refusal::new(StatusCode::BAD_REQUEST, detail))?;
        // What exists is frozen at start unless the world is live, as for the other APIs.
        Ok(page(sim, list, tenant, &q, sim.published_until_ms()))
    })();
    match result {
        Ok(data) => {
            let served = data["data"].as_array().map_or(0, Vec::len) as u64;
            count(&|s| {
                s.pages += 1;
                s.records_served += served;
            });
            let mut r = data.to_string().into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        Err(e) => {
            count(&|s| match e.status {
                StatusCode::UNAUTHORIZED => s.unauthorized += 1,
                StatusCode::FORBIDDEN => s.forbidden += 1,
                StatusCode::BAD_REQUEST => s.bad_requests += 1,
                _ => {}
            });
            e.into_response()
        }
    }
}

fn throttled(seconds: u64) -> Refusal {
    Refusal {
        retry_after: Some(seconds.max(1)),
        ..Refusal::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "Request was throttled. Expected available in {} seconds.",
                seconds.max(1)
            ),
        )
    }
}

/// The tenant (index, id) of the caller's token.
fn authenticate(sim: &Sim, headers: &HeaderMap) -> Result<(usize, String), Refusal> {
    let unauthorized = |detail: &str| Refusal::new(StatusCode::UNAUTHORIZED, detail);
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Err(unauthorized(
            "Authentication credentials were not provided.",
        ));
    };
    let (scheme, credential) = value.trim().split_once(' ').unwrap_or((value, ""));
    let credential = credential.trim();
    let tenant_of = |id: &str| {
        sim.world
            .tenants
            .iter()
            .position(|t| t.id.eq_ignore_ascii_case(id))
            .map(|i| (i, sim.world.tenants[i].id.clone()))
    };
    if scheme.eq_ignore_ascii_case("token") {
        return sim
            .cfg
            .defender_cloud_apps
            .token_tenant(credential, &sim.cfg.tenant_ids())
            .and_then(|id| tenant_of(&id))
            .ok_or_else(|| unauthorized("Invalid token."));
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(unauthorized(
            "Authentication credentials were not provided.",
        ));
    }
    let Some(info) = lock(&sim.tokens).get(credential).cloned() else {
        return Err(unauthorized("Invalid token."));
    };
    if info.expires_ms <= sim.now_ms() {
        return Err(unauthorized("Token is expired."));
    }
    let audience = info.audience.trim_start_matches("api://");
    if !audience.eq_ignore_ascii_case(CLOUD_APPS_AUDIENCE) {
        return Err(unauthorized("Invalid token: wrong audience."));
    }
    if !info
        .roles
        .iter()
        .any(|r| READ_ROLES.iter().any(|x| x.eq_ignore_ascii_case(r)))
    {
        return Err(Refusal::new(
            StatusCode::FORBIDDEN,
            "You do not have permission to perform this action. Required application role: Investigation.read.",
        ));
    }
    let tenant = sim.world.tenants[info.tenant].id.clone();
    Ok((info.tenant, tenant))
}

/// The configured transport faults.
/// Counts into the caller's stats.
type Count<'a> = &'a dyn Fn(&dyn Fn(&mut CloudAppsStats));

fn inject(sim: &Sim, count: Count<'_>) -> Result<(), Refusal> {
    let f = &sim.cfg.defender_cloud_apps.faults;
    let dice = &sim.cloud_apps.dice;
    let fired = |name: &'static str| count(&|s| *s.faults.entry(name.into()).or_default() += 1);
    if dice.chance(f.throttle_rate) {
        fired("throttle");
        return Err(throttled(1 + (dice.roll() * 3.0) as u64));
    }
    if dice.chance(f.server_error_rate) {
        fired("server_error");
        let status = match (dice.roll() * 3.0) as u8 {
            0 => StatusCode::INTERNAL_SERVER_ERROR,
            1 => StatusCode::BAD_GATEWAY,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        return Err(Refusal::new(status, "A server error occurred."));
    }
    Ok(())
}

/// `total` as the service gives it: exact up to 1,000, then rounded down to hundreds.
fn approximate(n: usize) -> usize {
    if n > 1000 { n / 100 * 100 } else { n }
}

fn page(sim: &Sim, list: List, tenant: usize, q: &ListQuery, now_ms: i64) -> Value {
    let world = &sim.world;
    let history = sim.history_start_ms();
    let (skip, limit) = (q.skip as usize, q.limit as usize);
    match list {
        List::Activities => {
            let from = q.created.from.max(q.date.from);
            let mut rows: Vec<_> = world
                .mda_activities(tenant, history, from, q.created.until, now_ms)
                .into_iter()
                .filter(|a| q.date.contains(a.timestamp))
                .collect();
            let by_date = q.sort == Some("date") || q.sort.is_none();
            rows.sort_by_key(|a| {
                (
                    if by_date { a.timestamp } else { a.created },
                    a.hour,
                    a.index,
                )
            });
            if q.descending {
                rows.reverse();
            }
            let data: Vec<Value> = rows
                .iter()
                .skip(skip)
                .take(limit)
                .map(|a| world.mda_activity_record(a))
                .collect();
            json!({"total": approximate(rows.len()), "hasNext": skip + data.len() < rows.len(), "data": data})
        }
        List::Alerts => {
            let mut rows: Vec<_> = world
                .mda_alerts(tenant, history, q.date.from, q.date.until, now_ms)
                .into_iter()
                .filter(|a| {
                    let (status, resolution) = a.state(now_ms);
                    let open = resolution == 0;
                    q.open.is_none_or(|o| o == open)
                        && q.read.is_none_or(|r| r == (status != 0))
                        && q.resolution.as_ref().is_none_or(|(eq, values)| {
                            values.contains(&i64::from(resolution)) == *eq
                        })
                })
                .map(|a| {
                    let record = world.mda_alert_record(&a, now_ms);
                    (a, record)
                })
                .filter(|(_, record)| {
                    let severity = record["severityValue"].as_i64().unwrap_or(0);
                    q.severity
                        .as_ref()
                        .is_none_or(|(eq, values)| values.contains(&severity) == *eq)
                })
                .collect();
            let by_severity = q.sort == Some("severity");
            rows.sort_by_key(|(a, record)| {
                let first = if by_severity {
                    record["severityValue"].as_i64().unwrap_or(0)
                } else {
                    a.timestamp
                };
                (first, a.hour, a.index)
            });
            if q.descending {
                rows.reverse();
            }
            let total = rows.len();
            let data: Vec<Value> = rows
                .into_iter()
                .skip(skip)
                .take(limit)
                .map(|(_, r)| r)
                .collect();
            json!({"total": approximate(total), "hasNext": skip + data.len() < total, "data": data})
        }
    }
}
