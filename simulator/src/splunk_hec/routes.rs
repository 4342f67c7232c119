//! The HEC endpoints: `/event`, `/raw`, `/ack`, `/health`, in the order Splunk checks things:
//! token, channel, body size, encoding, content.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, RawQuery, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;

use super::config::HecToken;
use super::events::{RawMeta, count_raw, parse_events, parse_raw, resolve_index};
use super::light::check_events;
use super::reply::{Code, Reply};
use super::{Hec, IndexedEvent};
use crate::config::is_guid;
use crate::state::lock;
use crate::wire::{self, BodyError, query_get, query_pairs};

/// Every HEC route.
pub(crate) fn router(hec: Arc<Hec>) -> Router {
    Router::new()
        .route("/services/collector", post(event))
        .route("/services/collector/event", post(event))
        .route("/services/collector/event/1.0", post(event))
        .route("/services/collector/raw", post(raw))
        .route("/services/collector/raw/1.0", post(raw))
        .route("/services/collector/ack", get(ack).post(ack))
        .route("/services/collector/health", get(health))
        .route("/services/collector/health/1.0", get(health))
        .fallback(not_found)
        .layer(DefaultBodyLimit::disable())
        .with_state(hec)
}

async fn not_found() -> Response {
    let body = r#"{"text":"The requested URL was not found on this server.","code":404}"#;
    let mut r = (axum::http::StatusCode::NOT_FOUND, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    r
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Event,
    Raw,
}

async fn event(
    State(hec): State<Arc<Hec>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    data(hec, Kind::Event, query, headers, body).await
}

async fn raw(
    State(hec): State<Arc<Hec>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    data(hec, Kind::Raw, query, headers, body).await
}

async fn data(
    hec: Arc<Hec>,
    kind: Kind,
    query: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let endpoint = if kind == Kind::Event { "event" } else { "raw" };
    let _in_flight = hec.enter();
    slow(&hec).await;
    let reply = ingest(&hec, kind, query.as_deref(), &headers, body)
        .await
        .unwrap_or_else(|r| r);
    hec.finish(endpoint, reply)
}

/// The slow fault: the request waits before anything is checked or indexed.
async fn slow(hec: &Hec) {
    if hec.dice.chance(hec.cfg.faults.slow_rate) {
        tokio::time::sleep(hec.cfg.faults.slow_delay).await;
    }
}

async fn ingest(
    hec: &Hec,
    kind: Kind,
    query: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Reply, Reply> {
    let q = query_pairs(query);
    let token = authenticate(&hec.cfg.tokens, headers, &q)?;
    let channel = channel(headers, &q, token.ack)?;
    let f = &hec.cfg.faults;
    if hec.dice.chance(f.busy_rate) {
        return Err(Code::ServerBusy.into());
    }
    if hec.dice.chance(f.server_error_rate) {
        return Err(Code::InternalError.into());
    }
    if hec.dice.chance(f.queue_full_rate) {
        return Err(Code::QueueFull.into());
    }
    let limit = hec.cfg.max_content_length;
    let (bytes, wire_len) = wire::read_body(headers, body, limit, limit)
        .await
        .map_err(|e| body_error(hec, e))?;
    hec.note_body(wire_len, bytes.len() as u64);
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Code::NoData.into());
    }
    let keep = hec.cfg.keep_events;
    let (events, count, error) = match kind {
        Kind::Event if keep => {
            let parsed = parse_events(
                &bytes,
                token,
                f.reject_marker.as_deref(),
                channel.as_deref(),
            );
            let count = parsed.events.len();
            (parsed.events, count, parsed.error)
        }
        Kind::Event => {
            let (count, error) = check_events(&bytes, token, f.reject_marker.as_deref());
            (Vec::new(), count, error)
        }
        Kind::Raw => {
            let named = query_get(&q, "index").map(str::to_string);
            let meta = RawMeta {
                index: resolve_index(token, named)?,
                host: query_get(&q, "host").map(str::to_string),
                source: query_get(&q, "source").map(str::to_string),
                sourcetype: query_get(&q, "sourcetype").map(str::to_string),
                channel: channel.clone(),
            };
            if keep {
                let events = parse_raw(&bytes, &meta);
                let count = events.len();
                (events, count, None)
            } else {
                (Vec::new(), count_raw(&bytes), None)
            }
        }
    };
    let ack_id = hec.commit(token, channel.as_deref(), events, count, error.is_some())?;
    Ok(match error {
        Some((code, k)) => Reply::Hec {
            code,
            invalid_event: Some(k),
            ack_id,
        },
        None => Reply::Hec {
            code: if hec.dice.chance(f.near_capacity_rate) {
                Code::QueueNearCapacity
            } else {
                Code::Success
            },
            invalid_event: None,
            ack_id,
        },
    })
}

fn body_error(hec: &Hec, e: BodyError) -> Reply {
    tracing::debug!(error = %e, "splunk_hec simulator: body refused");
    match e {
        BodyError::TooLarge { length, limit, .. } => {
            hec.note_body(length, 0);
            Reply::TooLarge { length, limit }
        }
        BodyError::UnsupportedEncoding(_) | BodyError::Corrupt(_) | BodyError::Io(_) => {
            Code::InvalidDataFormat.into()
        }
    }
}

/// Finds the token: `Authorization: Splunk <token>`, HTTP Basic with the token as password,
/// or `?token=` when the token allows it.
fn authenticate<'a>(
    tokens: &'a [HecToken],
    headers: &HeaderMap,
    q: &[(String, String)],
) -> Result<&'a HecToken, Reply> {
    let (supplied, by_query) = match headers.get(header::AUTHORIZATION) {
        Some(h) => (header_token(h.as_bytes())?, false),
        None => match query_get(q, "token") {
            Some(t) => (t.to_string(), true),
            None => return Err(Code::TokenRequired.into()),
        },
    };
    let token = tokens
        .iter()
        .find(|t| t.token == supplied)
        .ok_or(Code::InvalidToken)?;
    if token.disabled {
        return Err(Code::TokenDisabled.into());
    }
    if by_query && !token.allow_query_string {
        return Err(Code::QueryStringAuthDisabled.into());
    }
    Ok(token)
}

fn header_token(value: &[u8]) -> Result<String, Code> {
    let v = std::str::from_utf8(value).map_err(|_| Code::InvalidAuthorization)?;
    let (scheme, rest) = v.trim().split_once(' ').ok_or(Code::InvalidAuthorization)?;
    let rest = rest.trim();
    if rest.is_empty() {
        return Err(Code::InvalidAuthorization);
    }
    if scheme.eq_ignore_ascii_case("Splunk") {
        return Ok(rest.to_string());
    }
    if scheme.eq_ignore_ascii_case("Basic") {
        let decoded = B64.decode(rest).map_err(|_| Code::InvalidAuthorization)?;
        let text = String::from_utf8(decoded).map_err(|_| Code::InvalidAuthorization)?;
        let (_, password) = text.split_once(':').ok_or(Code::InvalidAuthorization)?;
        return Ok(password.to_string());
    }
    // `Bearer` and anything else: HEC documents only Splunk, Basic and the query string.
    Err(Code::InvalidAuthorization)
}

/// The request's channel (header first, then `?channel=`): required when the token has
/// acknowledgement on, and a GUID whenever present.
fn channel(
    headers: &HeaderMap,
    q: &[(String, String)],
    ack: bool,
) -> Result<Option<String>, Reply> {
    let named = match headers.get("x-splunk-request-channel") {
        Some(h) => Some(
            h.to_str()
                .map_err(|_| Code::InvalidChannel)?
                .trim()
                .to_string(),
        ),
        None => query_get(q, "channel").map(|c| c.trim().to_string()),
    };
    match named {
        None if ack => Err(Code::ChannelMissing.into()),
        None => Ok(None),
        Some(c) if is_guid(&c) => Ok(Some(c)),
        Some(_) => Err(Code::InvalidChannel.into()),
    }
}

#[derive(Deserialize)]
struct AckQuery {
    acks: Vec<u64>,
}

/// `/services/collector/ack`: `{"acks":[ids]}` → `{"acks":{"id":bool}}`.
async fn ack(
    State(hec): State<Arc<Hec>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let _in_flight = hec.enter();
    let reply = ack_query(&hec, query.as_deref(), &headers, body)
        .await
        .unwrap_or_else(|r| r);
    hec.finish("ack", reply)
}

async fn ack_query(
    hec: &Hec,
    query: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Reply, Reply> {
    let q = query_pairs(query);
    let token = authenticate(&hec.cfg.tokens, headers, &q)?;
    if !token.ack {
        return Err(Code::AckDisabled.into());
    }
    let Some(channel) = channel(headers, &q, true)? else {
        return Err(Code::ChannelMissing.into());
    };
    let limit = hec.cfg.max_content_length;
    let (bytes, _) = wire::read_body(headers, body, limit, limit)
        .await
        .map_err(|e| body_error(hec, e))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Code::NoData.into());
    }
    let asked: AckQuery =
        serde_json::from_slice(&bytes).map_err(|_| Reply::from(Code::InvalidDataFormat))?;
    let mut inner = lock(&hec.inner);
    let answers = inner.channels.query(&channel, &asked.acks, Instant::now());
    inner.stats.ack_queries += 1;
    inner.stats.acks_acknowledged += answers.iter().filter(|(_, done)| *done).count() as u64;
    Ok(Reply::Acks(answers))
}

/// `/services/collector/health`: no token needed; `?token=` checks one (codes 21, 22).
async fn health(State(hec): State<Arc<Hec>>, RawQuery(query): RawQuery) -> Response {
    let q = query_pairs(query.as_deref());
    let code = match query_get(&q, "token") {
        Some(t) => match hec.cfg.tokens.iter().find(|k| k.token == t) {
            None => Code::HealthInvalidToken,
            Some(k) if k.disabled => Code::HealthTokenDisabled,
            Some(_) => Code::Healthy,
        },
        None => Code::Healthy,
    };
    let code = if code == Code::Healthy && hec.dice.chance(hec.cfg.faults.unhealthy_rate) {
        Code::QueuesFull
    } else {
        code
    };
    hec.finish("health", code.into())
}

impl Hec {
    /// Indexes `count` events (kept as `events` when `keep_events` is on) unless their ack is
    /// lost, and issues the request's ackId when the token asks for acknowledgement and at
    /// least one event was taken.
    fn commit(
        &self,
        token: &HecToken,
        channel: Option<&str>,
        events: Vec<IndexedEvent>,
        count: usize,
        rejected_one: bool,
    ) -> Result<Option<u64>, Reply> {
        let mut inner = lock(&self.inner);
        if rejected_one {
            inner.stats.events_rejected += 1;
        }
        if count == 0 {
            return Ok(None);
        }
        let mut lost = false;
        let mut ack_id = None;
        if let (true, Some(channel)) = (token.ack, channel) {
            if inner.channels.pending(channel) >= self.cfg.max_pending_acks_per_channel {
                return Err(Code::AckChannelFull.into());
            }
            lost = self.dice.chance(self.cfg.faults.lost_ack_rate);
            let due = (!lost).then(|| Instant::now() + self.cfg.faults.ack_delay);
            ack_id = Some(inner.channels.issue(channel, due));
            inner.stats.acks_issued += 1;
        }
        let n = count as u64;
        if lost {
            inner.stats.acks_lost += 1;
            inner.stats.events_lost += n;
        } else {
            inner.stats.events_indexed += n;
            if self.cfg.keep_events {
                inner.events.extend(events);
            }
        }
        Ok(ack_id)
    }

    fn note_body(&self, wire: u64, decoded: u64) {
        let mut inner = lock(&self.inner);
        inner.stats.largest_body = inner.stats.largest_body.max(wire);
        inner.stats.largest_decoded_body = inner.stats.largest_decoded_body.max(decoded);
    }

    /// Counts the reply and turns it into the response.
    fn finish(&self, endpoint: &str, reply: Reply) -> Response {
        {
            let mut inner = lock(&self.inner);
            let s = &mut inner.stats;
            s.requests += 1;
            *s.by_endpoint.entry(endpoint.to_string()).or_default() += 1;
            *s.by_status.entry(reply.status().as_u16()).or_default() += 1;
            if let Some(code) = reply.code() {
                *s.by_code.entry(code).or_default() += 1;
            }
        }
        reply.into_response()
    }
}
