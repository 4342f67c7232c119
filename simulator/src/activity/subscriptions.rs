//! `subscriptions/start`, `stop` and `list`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{Ctx, gate, json_response};
use crate::config::CONTENT_TYPES;
use crate::errors::AfError;
use crate::faults::throttled;
use crate::state::{Sim, lock};

/// The service throttles a repeated /start within this interval.
const START_REPEAT_MS: i64 = 15 * 60 * 1000;

/// `POST subscriptions/start?contentType=…`.
pub(crate) async fn start(
    State(sim): State<Arc<Sim>>,
    Path((version, tenant)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let ctx = match gate(
        &sim,
        &version,
        &tenant,
        &headers,
        &uri,
        "start",
        "StartSubscription",
    ) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    start_inner(&sim, &ctx, &body).unwrap_or_else(|e| {
        if e.code == "AF429" {
            sim.count(&tenant, |s| s.throttled += 1);
        }
        e.into_response()
    })
}

fn start_inner(sim: &Sim, ctx: &Ctx, body: &[u8]) -> Result<Response, AfError> {
    let ct = ctx.content_type()?;
    if !body.iter().all(u8::is_ascii_whitespace) {
        let v: Value = serde_json::from_slice(body).map_err(|e| {
            AfError::bad(
                "AF20001",
                format!("The request body is not valid JSON: {e}."),
            )
        })?;
        if v.get("webhook").is_some_and(|w| !w.is_null()) {
            // Registration would need a validation POST to the address; the simulator
            // delivers no webhooks, so it fails the way an unreachable endpoint does.
            return Err(AfError::bad(
                "AF20021",
                "Webhook validation failed: the simulator does not deliver webhooks; poll subscriptions/content instead.",
            ));
        }
    }
    let now = sim.now_ms();
    let mut subs = lock(&sim.subs);
    let sub = subs.entry((ctx.tenant, ct)).or_default();
    if sub.enabled {
        return Err(AfError::bad(
            "AF20024",
            "The subscription is already enabled. No property change.",
        ));
    }
    if sub.last_start_ms.is_some_and(|t| now - t < START_REPEAT_MS) {
        return Err(throttled(
            "StartSubscription",
            ctx.publisher.as_deref(),
            false,
        ));
    }
    sub.enabled = true;
    sub.last_start_ms = Some(now);
    if let Some(gap) = sub.gaps.last_mut()
        && gap.1.is_none()
    {
        gap.1 = Some(now);
    }
    let body = json!({"contentType": CONTENT_TYPES[ct], "status": "enabled", "webhook": null});
    Ok(json_response(StatusCode::OK, body.to_string()))
}

/// `POST subscriptions/stop?contentType=…`: content published while stopped is lost.
pub(crate) async fn stop(
    State(sim): State<Arc<Sim>>,
    Path((version, tenant)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let ctx = match gate(
        &sim,
        &version,
        &tenant,
        &headers,
        &uri,
        "stop",
        "StopSubscription",
    ) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let ct = match ctx.content_type() {
        Ok(ct) => ct,
        Err(e) => return e.into_response(),
    };
    let now = sim.now_ms();
    let mut subs = lock(&sim.subs);
    match subs.get_mut(&(ctx.tenant, ct)) {
        None => AfError::bad(
            "AF20022",
            format!(
                "No subscription found for the specified content type: {}.",
                CONTENT_TYPES[ct]
            ),
        )
        .into_response(),
        Some(sub) => {
            if sub.enabled {
                sub.enabled = false;
                sub.gaps.push((now, None));
            }
            StatusCode::OK.into_response()
        }
    }
}

/// `GET subscriptions/list`: every subscription ever started, enabled or not.
pub(crate) async fn list(
    State(sim): State<Arc<Sim>>,
    Path((version, tenant)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let ctx = match gate(
        &sim,
        &version,
        &tenant,
        &headers,
        &uri,
        "list",
        "ListSubscriptions",
    ) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let subs = lock(&sim.subs);
    let items: Vec<Value> = (0..CONTENT_TYPES.len())
        .filter_map(|ct| subs.get(&(ctx.tenant, ct)).map(|s| (ct, s)))
        .map(|(ct, s)| {
            json!({
                "contentType": CONTENT_TYPES[ct],
                "status": if s.enabled { "enabled" } else { "disabled" },
                "webhook": null
            })
        })
        .collect();
    json_response(StatusCode::OK, Value::Array(items).to_string())
}

/// `GET resources/dlpSensitiveTypes`: needs exactly one Accept-Language value.
pub(crate) async fn dlp_sensitive_types(
    State(sim): State<Arc<Sim>>,
    Path((version, tenant)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    if let Err(r) = gate(
        &sim,
        &version,
        &tenant,
        &headers,
        &uri,
        "dlp_types",
        "GetDlpSensitiveTypes",
    ) {
        return *r;
    }
    let lang = headers
        .get(axum::http::header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("en-US");
    if lang.contains(',') {
        return AfError::bad(
            "AF20054",
            "Only one language may be given in the Accept-Language header.",
        )
        .into_response();
    }
    if !lang.to_ascii_lowercase().starts_with("en") {
        return AfError::bad(
            "AF20053",
            format!("The language {lang} in the Accept-Language header is not supported."),
        )
        .into_response();
    }
    let body = json!([
        {"id": "50842eb7-edc8-4019-85dd-5a5c1f2bb085", "name": "Credit Card Number"},
        {"id": "a44669fe-0d48-453d-a9b1-2cc83f2cba77", "name": "U.S. Social Security Number (SSN)"},
        {"id": "e7dc4711-11b7-4cb0-b88b-2c394a771f0e", "name": "International Banking Account Number (IBAN)"}
    ]);
    json_response(StatusCode::OK, body.to_string())
}
