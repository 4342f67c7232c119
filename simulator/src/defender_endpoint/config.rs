//! `[simulator.m365.defender_endpoint]`: the request limits and injected failures of the
//! Defender for Endpoint API (reference §3.2). Its alerts are the world's Defender for
//! Endpoint alerts, the same ones Graph serves (volume: `[simulator.m365.graph]
//! alerts_per_hour`).

use std::time::Duration;

use serde::Deserialize;

use crate::wire::{check_rate, duration};

/// The Defender for Endpoint part of the simulated world.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EndpointConfig {
    /// Request limits per (tenant, app), all enforced: a request over any of them is
    /// answered 429 with `Retry-After`. Default 100 per `"1m"` and 1,500 per `"1h"`
    /// (§3.2); tests shorten the periods.
    pub limits: Vec<RateLimit>,
    /// Injected failures. Default: all off.
    pub faults: EndpointFaults,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        Self {
            limits: vec![
                RateLimit {
                    requests: 100,
                    per: Duration::from_secs(60),
                },
                RateLimit {
                    requests: 1500,
                    per: Duration::from_secs(3600),
                },
            ],
            faults: EndpointFaults::default(),
        }
    }
}

/// At most `requests` in any span of `per`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Requests allowed in any span of `per`.
    pub requests: u32,
    /// The span (`"1m"`).
    #[serde(deserialize_with = "duration")]
    pub per: Duration,
}

/// Injected Defender for Endpoint failures; every rate is a share of requests in [0, 1].
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EndpointFaults {
    /// Requests answered 429 `TooManyRequests` with `Retry-After`. Default 0.
    pub throttle_rate: f64,
    /// Requests answered 500 `InternalServerError` or 503 (with `Retry-After`). Default 0.
    pub server_error_rate: f64,
    /// Requests answered after `slow_latency`. Default 0.
    pub slow_rate: f64,
    /// How long a slow answer takes. Default 0 s.
    #[serde(deserialize_with = "duration")]
    pub slow_latency: Duration,
}

impl EndpointConfig {
    /// Refuses limits that admit nothing and rates outside [0, 1].
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        for (i, limit) in self.limits.iter().enumerate() {
            if limit.requests == 0 || limit.per.is_zero() {
                anyhow::bail!(
                    "defender_endpoint.limits[{i}] must allow at least one request in a non-zero period"
                );
            }
        }
        let f = &self.faults;
        check_rate("defender_endpoint.faults.throttle_rate", f.throttle_rate)?;
        check_rate(
            "defender_endpoint.faults.server_error_rate",
            f.server_error_rate,
        )?;
        check_rate("defender_endpoint.faults.slow_rate", f.slow_rate)?;
        Ok(())
    }
}
