//! `GET /api/alerts`: authentication (a token for the cloud's MDE audience), the
//! `Alert.Read.All` role, both request limits, injected faults, then the OData page. Errors
//! are MDE's `{"error":{"code","message","target":<correlation id>}}`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::query::{self, AlertQuery};
use super::{EndpointStats, alerts, endpoint_audiences};
use crate::state::{Sim, lock};
use crate::tokens;
use crate::wire::query_pairs;

/// Counts into the caller's stats (Sync: held across the slow fault's await).
type Count<'a> = &'a (dyn Fn(&dyn Fn(&mut EndpointStats)) + Sync);

/// Either role reads alerts.
const READ_ROLES: [&str; 2] = ["Alert.Read.All", "Alert.ReadWrite.All"];

/// An error answer in MDE's envelope.
struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u64>,
}

impl Refusal {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Refusal {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    fn throttled(seconds: u64) -> Self {
        Refusal {
            retry_after: Some(seconds.max(1)),
            ..Refusal::new(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                format!(
                    "API calls quota exceeded! Maximum admitted 100 per Minute and 1500 per Hour. Try again in {} seconds.",
                    seconds.max(1)
                ),
            )
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let target = uuid_like(&self.message);
        let body = json!({"error": {"code": self.code, "message": self.message, "target": target}});
        let mut r = (self.status, body.to_string()).into_response();
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        if let Some(s) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

/// A correlation id of the GUID form (stable per message; only its shape matters).
fn uuid_like(seed: &str) -> String {
    let h = crate::world::rng::key(&[seed.len() as u64, seed.bytes().map(u64::from).sum()]);
    let hex = format!("{h:016x}{:016x}", h.rotate_left(17));
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// `GET /api/alerts`.
pub(crate) async fn alerts(State(sim): State<Arc<Sim>>, headers: HeaderMap, uri: Uri) -> Response {
    let now_ms = sim.now_ms();
    let caller = authenticate(&sim, &headers);
    let tenant_key = match &caller {
        Ok(who) => who.tenant_id.clone(),
        Err((tenant, _)) => tenant.clone(),
    };
    let count =
        |f: &dyn Fn(&mut EndpointStats)| sim.count(&tenant_key, |s| f(&mut s.defender_endpoint));
    count(&|s| {
        s.requests += 1;
        s.arrived(now_ms);
    });
    let result: Result<Value, Refusal> = async {
        let who = caller.map_err(|(_, e)| e)?;
        authorize(&who)?;
        let cfg = &sim.cfg.defender_endpoint;
        sim.defender_endpoint
            .admit((who.tenant, &who.client_id), now_ms, &cfg.limits)
            .map_err(|seconds| {
                count(&|s| s.throttled += 1);
                Refusal::throttled(seconds)
            })?;
        inject(&sim, &count).await?;
        let q = query::parse(&query_pairs(uri.query()))
            .map_err(|m| Refusal::new(StatusCode::BAD_REQUEST, "ODataError", m))?;
        Ok(page(
            &sim,
            &who.tenant_id,
            &q,
            uri.query().unwrap_or_default(),
        ))
    }
    .await;
    match result {
        Ok(body) => {
            let served = body["value"].as_array().map_or(0, Vec::len) as u64;
            count(&|s| {
                s.pages += 1;
                s.records_served += served;
            });
            let mut r = body.to_string().into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json; odata.metadata=minimal"),
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

/// Who is calling, from the bearer token.
struct Caller {
    tenant: usize,
    tenant_id: String,
    client_id: String,
    roles: Vec<String>,
}

fn authenticate(sim: &Sim, headers: &HeaderMap) -> Result<Caller, (String, Refusal)> {
    let unauthorized = |m: &str| Refusal::new(StatusCode::UNAUTHORIZED, "Unauthorized", m);
    let Some(token) = tokens::bearer(headers) else {
        return Err((
            String::new(),
            unauthorized("Authorization header is missing."),
        ));
    };
    let Some(info) = lock(&sim.tokens).get(&token).cloned() else {
        return Err((String::new(), unauthorized("Invalid token.")));
    };
    let tenant_id = sim.world.tenants[info.tenant].id.clone();
    if info.expires_ms <= sim.now_ms() {
        return Err((tenant_id, unauthorized("The token is expired.")));
    }
    // Tokens of Graph, the Management API or another cloud are not MDE's.
    let cloud = sim.cfg.graph.tenant(&tenant_id).cloud;
    if !endpoint_audiences(cloud)
        .iter()
        .any(|a| a.eq_ignore_ascii_case(&info.audience))
    {
        return Err((
            tenant_id,
            unauthorized(
                "Invalid audience: the token is not for the Microsoft Defender for Endpoint API of this cloud.",
            ),
        ));
    }
    Ok(Caller {
        tenant: info.tenant,
        tenant_id,
        client_id: info.client_id,
        roles: info.roles,
    })
}

fn authorize(who: &Caller) -> Result<(), Refusal> {
    let has = |r: &&str| who.roles.iter().any(|x| x.eq_ignore_ascii_case(r));
    if READ_ROLES.iter().any(has) {
        return Ok(());
    }
    Err(Refusal::new(
        StatusCode::FORBIDDEN,
        "Forbidden",
        format!(
            "The application does not have any of the required application permissions ({}) to access the resource.",
            READ_ROLES.join(", ")
        ),
    ))
}

/// The configured faults: slow answers, throttling, 500/503.
async fn inject(sim: &Sim, count: Count<'_>) -> Result<(), Refusal> {
    let f = &sim.cfg.defender_endpoint.faults;
    let dice = &sim.defender_endpoint.dice;
    let fired = |name: &'static str| count(&|s| *s.faults.entry(name.into()).or_default() += 1);
    if dice.chance(f.slow_rate) {
        fired("slow");
        tokio::time::sleep(f.slow_latency).await;
    }
    if dice.chance(f.throttle_rate) {
        fired("throttle");
        return Err(Refusal::throttled(1 + (dice.roll() * 5.0) as u64));
    }
    if dice.chance(f.server_error_rate) {
        fired("server_error");
        return Err(if dice.roll() < 0.5 {
            Refusal::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError",
                "An error has occurred.",
            )
        } else {
            Refusal {
                retry_after: Some(1 + (dice.roll() * 3.0) as u64),
                ..Refusal::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    "The service is temporarily unavailable.",
                )
            }
        });
    }
    Ok(())
}

/// The page `q` asks for: the matching alerts in a stable arbitrary order, `$skip` then
/// `$top`, and a nextLink when more remain.
fn page(sim: &Sim, tenant_id: &str, q: &AlertQuery, raw_query: &str) -> Value {
    let from = crate::world::generate::to_utc(sim.history_start_ms());
    // What exists is frozen at start unless the world is live, as for the other APIs.
    let now = crate::world::generate::to_utc(sim.published_until_ms());
    let mut matching: Vec<Value> = alerts::alerts(&sim.cfg, tenant_id, from, now, q.expand)
        .into_iter()
        .filter(|a| q.admits(a))
        .collect();
    // No documented order: by a hash of the id, stable across pages.
    matching.sort_by_key(|a| {
        let id = a["id"].as_str().unwrap_or_default();
        crate::world::rng::key(&[
            sim.cfg.seed,
            id.bytes()
                .fold(0u64, |h, b| h.wrapping_mul(131).wrapping_add(u64::from(b))),
        ])
    });
    let total = matching.len() as u64;
    let value: Vec<Value> = matching
        .into_iter()
        .skip(q.skip as usize)
        .take(q.top as usize)
        .collect();
    let base = format!("http://{}/api", sim.local_addr);
    let mut body = json!({
        "@odata.context": format!("{base}/$metadata#Alerts"),
        "value": value,
    });
    let next = q.skip + q.top;
    if q.top > 0 && next < total {
        // The options as the client wrote them, `$skip` replaced.
        let mut kept: Vec<&str> = raw_query
            .split('&')
            .filter(|pair| {
                let name = pair.split('=').next().unwrap_or_default();
                let name: String = form_urlencoded::parse(name.as_bytes())
                    .map(|(k, _)| k.into_owned())
                    .collect();
                !pair.is_empty() && !name.eq_ignore_ascii_case("$skip")
            })
            .collect();
        let skip = format!("$skip={next}");
        kept.push(&skip);
        body["@odata.nextLink"] = json!(format!("{base}/alerts?{}", kept.join("&")));
    }
    body
}
