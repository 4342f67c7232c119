//! `subscriptions/content`: blob descriptors whose contentCreated is in the window, paged by
//! NextPageUri; and `subscriptions/notifications` (webhook history, always empty here).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, NaiveDateTime};
use serde_json::{Value, json};

use super::{Ctx, Query, gate, json_response};
use crate::config::CONTENT_TYPES;
use crate::errors::AfError;
use crate::faults;
use crate::state::{Sim, lock};
use crate::world::generate::{compact, iso_ms, parse_compact};
use crate::world::rng::key;

const DAY_MS: i64 = 24 * 3600 * 1000;
/// The longest window the service accepts.
const MAX_SPAN_MS: i64 = DAY_MS;
/// How far back a window may start.
const MAX_AGE_MS: i64 = 7 * DAY_MS;

/// `GET subscriptions/content?contentType=…&startTime=…&endTime=…[&nextPage=…]`.
pub(crate) async fn content(
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
        "content",
        "ListContent",
    ) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    list(&sim, &ctx).unwrap_or_else(IntoResponse::into_response)
}

/// `GET subscriptions/notifications`: same checks; no webhooks are ever sent, so empty.
pub(crate) async fn notifications(
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
        "notifications",
        "ListNotifications",
    ) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let checked = ctx
        .content_type()
        .and_then(|ct| require_subscription(&sim, &ctx, ct))
        .and_then(|()| window(&ctx.query, sim.now_ms()));
    match checked {
        Ok(_) => json_response(StatusCode::OK, "[]".into()),
        Err(e) => e.into_response(),
    }
}

fn require_subscription(sim: &Sim, ctx: &Ctx, ct: usize) -> Result<(), AfError> {
    let enabled = lock(&sim.subs)
        .get(&(ctx.tenant, ct))
        .is_some_and(|s| s.enabled);
    if enabled {
        Ok(())
    } else {
        Err(AfError::bad(
            "AF20022",
            format!(
                "No subscription found for the specified content type: {}.",
                CONTENT_TYPES[ct]
            ),
        ))
    }
}

/// A validated listing window.
pub(crate) struct Window {
    start_ms: i64,
    end_ms: i64,
    /// The values as the client sent them, repeated verbatim in NextPageUri.
    raw: Option<(String, String)>,
}

fn window_error() -> AfError {
    AfError::bad(
        "AF20030",
        "Start time and end time must both be specified (or both omitted) and must be less than or equal to 24 hours apart, with the start time prior to end time.",
    )
}

/// Parses the accepted time formats: `YYYY-MM-DD`, `…THH:MM`, `…THH:MM:SS`, optional
/// fraction, optional `Z`; other RFC 3339 offsets as clients have been seen to send.
pub(crate) fn parse_time(s: &str) -> Option<i64> {
    let t = s.strip_suffix('Z').unwrap_or(s);
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(n) = NaiveDateTime::parse_from_str(t, fmt) {
            return Some(n.and_utc().timestamp_millis());
        }
    }
    if t.len() == 10
        && let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d")
    {
        return d
            .and_hms_opt(0, 0, 0)
            .map(|n| n.and_utc().timestamp_millis());
    }
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.timestamp_millis())
}

/// The window rules: both or neither, start < end, ≤ 24 h, start ≥ now − 7 days.
pub(crate) fn window(q: &Query, now_ms: i64) -> Result<Window, AfError> {
    let (start_ms, end_ms, raw) = match (q.get("startTime"), q.get("endTime")) {
        // Documented as "the last 24 hours" (another article says "since midnight").
        (None, None) => (now_ms - DAY_MS, now_ms, None),
        (Some(s), Some(e)) => {
            let start = parse_time(s).ok_or_else(window_error)?;
            let end = parse_time(e).ok_or_else(window_error)?;
            (start, end, Some((s.to_string(), e.to_string())))
        }
        _ => return Err(window_error()),
    };
    if start_ms >= end_ms || end_ms - start_ms > MAX_SPAN_MS {
        return Err(window_error());
    }
    if start_ms < now_ms - MAX_AGE_MS {
        return Err(AfError::bad(
            "AF20055",
            "Start time cannot be more than 7 days in the past.",
        ));
    }
    Ok(Window {
        start_ms,
        end_ms,
        raw,
    })
}

/// A nextPage token: the contentCreated of the next descriptor and how many descriptors
/// with that same instant were already returned (`20260901105500123R000002`).
fn page_token(created_ms: i64, skip: usize) -> String {
    format!("{}R{skip:06}", compact(created_ms))
}

fn parse_page_token(s: &str) -> Option<(i64, usize)> {
    let (time, skip) = s.split_once('R')?;
    if skip.len() != 6 || !skip.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some((parse_compact(time)?, skip.parse().ok()?))
}

fn list(sim: &Sim, ctx: &Ctx) -> Result<Response, AfError> {
    let ct = ctx.content_type()?;
    require_subscription(sim, ctx, ct)?;
    let w = window(&ctx.query, sim.now_ms())?;
    let lower = w.start_ms.max(sim.history_start_ms());
    let upper = w.end_ms.min(sim.published_until_ms() + 1);
    let mut blobs = sim.world.blobs_created_in(ctx.tenant, ct, lower, upper);
    if let Some(sub) = lock(&sim.subs).get(&(ctx.tenant, ct)) {
        blobs.retain(|b| !sub.lost(b.created_ms));
    }
    let mut from = 0;
    if let Some(token) = ctx.query.get("nextPage") {
        let bad = || AfError::bad("AF20031", format!("Invalid nextPage Input: {token}."));
        let (at_ms, skip) = parse_page_token(token).ok_or_else(bad)?;
        if at_ms < w.start_ms || at_ms >= w.end_ms {
            return Err(bad());
        }
        from = blobs.partition_point(|b| b.created_ms < at_ms) + skip;
        from = from.min(blobs.len());
    }
    let remaining = blobs.len() - from;
    let page_size = sim.cfg.faults.page_size;
    let mut take = remaining.min(page_size);
    let truncate = sim.cfg.faults.truncated_page_rate;
    if take > 0 && truncate > 0.0 && faults::roll(sim) < truncate {
        // A short page: fewer descriptors than available, possibly none, and still a NextPageUri.
        take = (faults::roll(sim) * take as f64) as usize;
    }
    let page = &blobs[from..from + take];
    let descriptors: Vec<Value> = page
        .iter()
        .map(|b| {
            let id = sim.world.content_id(b);
            json!({
                "contentType": CONTENT_TYPES[ct],
                "contentId": id,
                "contentUri": format!("{}/api/v1.0/{}/activity/feed/audit/{id}", ctx.base(), ctx.tenant_path),
                "contentCreated": iso_ms(b.created_ms),
                "contentExpiration": iso_ms(b.created_ms + MAX_AGE_MS),
            })
        })
        .collect();
    let mut response = json_response(StatusCode::OK, Value::Array(descriptors).to_string());
    if let Some(next) = blobs.get(from + take) {
        let skip = blobs[..from + take]
            .iter()
            .rev()
            .take_while(|b| b.created_ms == next.created_ms)
            .count();
        let token = page_token(next.created_ms, skip);
        let url = next_page_uri(sim, ctx, ct, &w, &token, next.created_ms);
        if let Ok(v) = HeaderValue::from_str(&url) {
            response
                .headers_mut()
                .insert(HeaderName::from_static("nextpageuri"), v);
        }
    }
    Ok(response)
}

/// Builds NextPageUri as observed: sometimes `/api/v1/` instead of `/api/v1.0/`, sometimes
/// lower-case `starttime`/`endtime`, and without PublisherIdentifier.
fn next_page_uri(sim: &Sim, ctx: &Ctx, ct: usize, w: &Window, token: &str, at_ms: i64) -> String {
    let h = key(&[sim.cfg.seed, ctx.tenant as u64, ct as u64, at_ms as u64]);
    let version = if h.is_multiple_of(3) { "v1" } else { "v1.0" };
    let (sname, ename) = if (h / 3).is_multiple_of(3) {
        ("starttime", "endtime")
    } else {
        ("startTime", "endTime")
    };
    let (start, end) = match &w.raw {
        Some((s, e)) => (s.clone(), e.clone()),
        None => (iso_ms(w.start_ms), iso_ms(w.end_ms)),
    };
    let enc = |s: &str| {
        form_urlencoded::byte_serialize(s.as_bytes())
            .collect::<String>()
            .replace("%3A", ":")
    };
    format!(
        "{}/api/{version}/{}/activity/feed/subscriptions/content?contentType={}&{sname}={}&{ename}={}&nextPage={token}",
        ctx.base(),
        ctx.tenant_path,
        CONTENT_TYPES[ct],
        enc(&start),
        enc(&end),
    )
}
