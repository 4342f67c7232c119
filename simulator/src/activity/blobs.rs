//! `GET audit/{contentId}`: one blob, a JSON array of records.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::{Ctx, gate, json_response};
use crate::errors::AfError;
use crate::state::{Sim, lock};
use crate::world::ContentIdError;

/// Content is retrievable for 7 days after it was published.
const RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;

/// `GET /api/v1.0/{tenant}/activity/feed/audit/{contentId}`.
pub(crate) async fn blob(
    State(sim): State<Arc<Sim>>,
    Path((version, tenant, content_id)): Path<(String, String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let ctx = match gate(&sim, &version, &tenant, &headers, &uri, "blob", "GetBlob") {
        Ok(c) => c,
        Err(r) => return *r,
    };
    match fetch(&sim, &ctx, &content_id) {
        Ok((count, body)) => {
            sim.count(&tenant, |s| {
                s.blobs_served += 1;
                s.records_served += count as u64;
            });
            json_response(StatusCode::OK, body)
        }
        Err(e) => e.into_response(),
    }
}

fn fetch(sim: &Sim, ctx: &Ctx, content_id: &str) -> Result<(usize, String), AfError> {
    let missing = || {
        AfError::bad(
            "AF20050",
            format!("The specified content ({content_id}) does not exist."),
        )
    };
    let b = sim
        .world
        .parse_content_id(ctx.tenant, content_id)
        .map_err(|e| match e {
            ContentIdError::Malformed => AfError::bad(
                "AF20052",
                format!("Content ID {content_id} in the URL is invalid."),
            ),
            ContentIdError::Missing => missing(),
        })?;
    if b.created_ms + RETENTION_MS < sim.now_ms() {
        return Err(AfError::bad(
            "AF20051",
            format!(
                "Content requested with the key {content_id} has already expired. Content older than 7 days cannot be retrieved."
            ),
        ));
    }
    // Not yet published, before the world's history, or published while the subscription was stopped.
    let lost = lock(&sim.subs)
        .get(&(ctx.tenant, b.ct))
        .is_some_and(|s| s.lost(b.created_ms));
    if b.created_ms > sim.published_until_ms() || b.created_ms < sim.history_start_ms() || lost {
        return Err(missing());
    }
    let records = sim.world.blob_records(&b);
    let count = records.len();
    Ok((count, Value::Array(records).to_string()))
}
