//! Request budgets and injected failures of the Management Activity API.

use axum::http::StatusCode;

use crate::errors::AfError;
use crate::state::{Sim, lock};
use crate::world::rng::{key, mix};

/// The next fault decision, uniform in [0, 1): reproducible from the seed and request order.
pub(crate) fn roll(sim: &Sim) -> f64 {
    let n = sim
        .fault_counter
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    (mix(key(&[sim.cfg.seed, 0xfa17, n])) >> 11) as f64 / (1u64 << 53) as f64
}

/// The service's throttling error, under HTTP 403 as documented (or 429 when `status_429`).
pub(crate) fn throttled(method: &str, publisher: Option<&str>, status_429: bool) -> AfError {
    let status = if status_429 {
        StatusCode::TOO_MANY_REQUESTS
    } else {
        StatusCode::FORBIDDEN
    };
    AfError::new(
        status,
        "AF429",
        format!(
            "Too many requests. Method={method}, PublisherId={}",
            publisher.unwrap_or("00000000-0000-0000-0000-000000000000")
        ),
    )
}

/// Counts the request against its pool: the tenant's budget when it names a
/// PublisherIdentifier, else the one pool every unidentified caller shares.
pub(crate) fn admit(
    sim: &Sim,
    tenant: usize,
    publisher: Option<&str>,
    method: &str,
) -> Result<(), AfError> {
    let minute = sim.now_ms().div_euclid(60_000);
    let mut l = lock(&sim.limiter);
    let (slot, limit) = match publisher {
        Some(_) => (
            l.per_tenant.entry(tenant).or_default(),
            sim.cfg.requests_per_minute,
        ),
        None => (&mut l.shared, sim.cfg.unidentified_requests_per_minute),
    };
    if slot.0 != minute {
        *slot = (minute, 0);
    }
    slot.1 = slot.1.saturating_add(1);
    if slot.1 > limit {
        return Err(throttled(method, publisher, false));
    }
    Ok(())
}

/// Injected throttling and server errors, by the configured rates.
pub(crate) fn inject(sim: &Sim, method: &str, publisher: Option<&str>) -> Result<(), AfError> {
    let f = &sim.cfg.faults;
    if f.throttle_rate > 0.0 && roll(sim) < f.throttle_rate {
        // Documented as 403; some gateways answer 429 — clients must detect the code.
        return Err(throttled(method, publisher, roll(sim) < 0.2));
    }
    if f.server_error_rate > 0.0 && roll(sim) < f.server_error_rate {
        let status = if roll(sim) < 0.5 {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        return Err(AfError::new(
            status,
            "AF50000",
            "An internal error occurred. Retry the request.",
        ));
    }
    Ok(())
}
