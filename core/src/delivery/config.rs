//! The delivery options every HTTP sink takes, each a field of the sink's own config:
//! `batch`, `compression`, `concurrency`, `request`, `retry`, `tls`, `proxy`, `healthcheck`.
//!
//! A sink declares them as `#[serde(default)]` fields (serde's `flatten` does not work
//! with `deny_unknown_fields`) and passes them to [`super::Settings`].

use std::io::Write as _;
use std::time::Duration;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

pub use super::adaptive::AdaptiveConcurrency;
use crate::ConfigIssue;
use crate::config::checks::{MAX_COUNT, count};
use crate::retry::RetryRule;

/// `batch`: when a request is cut from the events waiting.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// At most this many events per request (default 1000).
    pub max_events: usize,
    /// At most this many bytes of encoded events per request, before compression
    /// (default `"1MiB"`); a single larger event is sent alone.
    #[serde(
        deserialize_with = "crate::units::size",
        serialize_with = "crate::units::serialize_size"
    )]
    #[schemars(with = "String")]
    pub max_bytes: u64,
    /// Send a partial batch once its first event waited this long (default `"1s"`).
    #[serde(
        deserialize_with = "crate::units::duration",
        serialize_with = "crate::units::serialize_duration"
    )]
    #[schemars(with = "String")]
    pub timeout: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_events: 1000,
            max_bytes: 1 << 20,
            timeout: Duration::from_secs(1),
        }
    }
}

/// `compression`: how request bodies are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// Sent as is (default).
    #[default]
    None,
    /// gzip (`Content-Encoding: gzip`), at a fast level: less traffic for some CPU.
    Gzip,
}

impl Compression {
    /// The `Content-Encoding` header value, if any.
    pub fn content_encoding(self) -> Option<&'static str> {
        match self {
            Compression::None => None,
            Compression::Gzip => Some("gzip"),
        }
    }

    /// Encodes a request body.
    pub fn compress(self, body: Vec<u8>) -> Vec<u8> {
        match self {
            Compression::None => body,
            Compression::Gzip => {
                let mut encoder = flate2::write::GzEncoder::new(
                    Vec::with_capacity(body.len() / 4 + 64),
                    flate2::Compression::fast(),
                );
                // Writing into a Vec cannot fail.
                let _ = encoder.write_all(&body);
                encoder.finish().unwrap_or_default()
            }
        }
    }
}

/// `concurrency`: how many requests may be in flight at once (default 4).
///
/// A number fixes it; `"adaptive"` or `{ adaptive = { ... } }` lets Vector's AIMD
/// controller find it from round-trip times and the peer's push-back.
#[derive(Debug, Clone, Copy, PartialEq, schemars::JsonSchema)]
#[schemars(with = "ConcurrencySchema")]
pub enum Concurrency {
    /// At most this many, always.
    Fixed(usize),
    /// As many as the peer takes without slowing down or pushing back.
    Adaptive(AdaptiveConcurrency),
}

impl Default for Concurrency {
    fn default() -> Self {
        Concurrency::Fixed(4)
    }
}

/// The forms `concurrency` takes, for the schema only.
#[derive(schemars::JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum ConcurrencySchema {
    /// A fixed number of requests in flight, at least 1.
    Fixed(usize),
    /// `"adaptive"`, with the controller's defaults.
    Word(AdaptiveWord),
    /// `{ adaptive = { initial, max, decrease_ratio, ewma_alpha, rtt_deviation_scale } }`.
    Table {
        /// The controller's bounds and tuning.
        adaptive: AdaptiveConcurrency,
    },
}

#[derive(schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
enum AdaptiveWord {
    Adaptive,
}

impl<'de> Deserialize<'de> for Concurrency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ConcurrencyVisitor)
    }
}

struct ConcurrencyVisitor;

const CONCURRENCY_FORMS: &str =
    "a number of requests such as 4, \"adaptive\", or { adaptive = { max = 50 } }";

impl<'de> Visitor<'de> for ConcurrencyVisitor {
    type Value = Concurrency;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(CONCURRENCY_FORMS)
    }

    fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Concurrency, E> {
        let fixed = usize::try_from(n).unwrap_or(0);
        match count(fixed, MAX_COUNT) {
            Ok(()) => Ok(Concurrency::Fixed(fixed)),
            Err(_) => Err(E::custom(format!(
                "concurrency must be between 1 and {MAX_COUNT}, not {n}"
            ))),
        }
    }

    fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Concurrency, E> {
        self.visit_i64(i64::try_from(n).unwrap_or(i64::MAX))
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Concurrency, E> {
        if text.trim() == "adaptive" {
            return Ok(Concurrency::Adaptive(AdaptiveConcurrency::default()));
        }
        Err(E::custom(format!(
            "concurrency must be {CONCURRENCY_FORMS}, not `{text}`"
        )))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Concurrency, A::Error> {
        let mut adaptive = None;
        while let Some(key) = map.next_key::<String>()? {
            if key != "adaptive" || adaptive.is_some() {
                return Err(serde::de::Error::custom(format!(
                    "concurrency takes one key, `adaptive`, not `{key}`"
                )));
            }
            adaptive = Some(map.next_value::<AdaptiveConcurrency>()?);
        }
        let adaptive = adaptive.unwrap_or_default();
        if let Some(problem) = adaptive.problem() {
            return Err(serde::de::Error::custom(format!("concurrency: {problem}")));
        }
        if let Err(problem) = count(adaptive.max, MAX_COUNT) {
            return Err(serde::de::Error::custom(format!(
                "concurrency: adaptive.max {problem}"
            )));
        }
        Ok(Concurrency::Adaptive(adaptive))
    }
}

/// `request`: options of each HTTP request.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RequestConfig {
    /// Give up on one request after this long and retry it (default `"60s"`).
    #[serde(
        deserialize_with = "crate::units::duration",
        serialize_with = "crate::units::serialize_duration"
    )]
    #[schemars(with = "String")]
    pub timeout: Duration,
}

impl Default for RequestConfig {
    fn default() -> Self {
        RequestConfig {
            timeout: Duration::from_secs(60),
        }
    }
}

/// `retry`: how failed requests are retried.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// The first wait after a failure (default `"1s"`); it doubles, with jitter.
    #[serde(
        deserialize_with = "crate::units::duration",
        serialize_with = "crate::units::serialize_duration"
    )]
    #[schemars(with = "String")]
    pub initial_backoff: Duration,
    /// The longest wait between attempts (default `"30s"`); also the pace at which a
    /// configuration error (bad token, missing permission) is retried.
    #[serde(
        deserialize_with = "crate::units::duration",
        serialize_with = "crate::units::serialize_duration"
    )]
    #[schemars(with = "String")]
    pub max_backoff: Duration,
    /// After this long a batch is failed (default `"15m"`): its acknowledgements resolve
    /// as failed so the source reads it again. It is never dropped.
    #[serde(
        deserialize_with = "crate::units::duration",
        serialize_with = "crate::units::serialize_duration"
    )]
    #[schemars(with = "String")]
    pub max_duration: Duration,
}

impl RetryConfig {
    /// Problems serde cannot see in `retry`; shared with sinks that take `retry` alone.
    pub fn check(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        if self.initial_backoff.is_zero() {
            issues.push(
                ConfigIssue::new("retry.initial_backoff", "must be longer than 0s")
                    .hint("e.g. \"1s\""),
            );
        }
        if self.max_backoff < self.initial_backoff {
            issues.push(
                ConfigIssue::new("retry.max_backoff", "is shorter than retry.initial_backoff")
                    .hint("e.g. initial_backoff = \"1s\", max_backoff = \"30s\""),
            );
        }
        if self.max_duration < self.initial_backoff {
            issues.push(
                ConfigIssue::new(
                    "retry.max_duration",
                    "is shorter than retry.initial_backoff",
                )
                .hint("e.g. \"15m\""),
            );
        }
        issues
    }

    /// The retry rule of these options: from `initial_backoff`, doubling with jitter up to
    /// `max_backoff`, within `max_duration` (see [`crate::retry`]).
    pub fn rule(&self) -> RetryRule {
        RetryRule::new(self.initial_backoff, self.max_backoff).within(self.max_duration)
    }
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            max_duration: Duration::from_secs(15 * 60),
        }
    }
}

/// `healthcheck`: probe the peer at start and then every `interval`.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct HealthcheckConfig {
    /// Probe the peer and report the result in `/ready` (default true): the sink is not
    /// ready until a probe passed, and not ready while the latest one failed. A failed
    /// probe is logged, never fatal: delivery goes on, with retries.
    pub enabled: bool,
    /// Time between probes (default `"30s"`), so a peer that became unreachable shows
    /// in `/ready` even while no event is sent.
    #[serde(
        deserialize_with = "crate::units::positive_duration",
        serialize_with = "crate::units::serialize_duration"
    )]
    #[schemars(with = "String")]
    pub interval: Duration,
}

impl Default for HealthcheckConfig {
    fn default() -> Self {
        HealthcheckConfig {
            enabled: true,
            interval: Duration::from_secs(30),
        }
    }
}

/// Problems serde cannot see in the delivery options.
pub fn check(
    batch: &BatchConfig,
    request: &RequestConfig,
    retry: &RetryConfig,
) -> Vec<ConfigIssue> {
    let mut issues = Vec::new();
    if batch.max_events == 0 {
        issues.push(ConfigIssue::new("batch.max_events", "must be at least 1"));
    }
    if batch.max_bytes == 0 {
        issues
            .push(ConfigIssue::new("batch.max_bytes", "must be more than 0").hint("e.g. \"1MiB\""));
    }
    if batch.timeout.is_zero() {
        issues
            .push(ConfigIssue::new("batch.timeout", "must be longer than 0s").hint("e.g. \"1s\""));
    }
    if request.timeout.is_zero() {
        issues.push(
            ConfigIssue::new("request.timeout", "must be longer than 0s").hint("e.g. \"60s\""),
        );
    }
    issues.extend(retry.check());
    issues
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sink {
        #[serde(default)]
        batch: BatchConfig,
        #[serde(default)]
        compression: Compression,
        #[serde(default)]
        concurrency: Concurrency,
        #[serde(default)]
        retry: RetryConfig,
    }

    #[test]
    fn defaults_and_units() {
        let sink: Sink = toml::from_str("").expect("defaults");
        assert_eq!(sink.batch, BatchConfig::default());
        assert_eq!(sink.compression, Compression::None);
        assert_eq!(sink.concurrency, Concurrency::Fixed(4));
        let sink: Sink = toml::from_str(
            "compression = \"gzip\"\nconcurrency = 8\nbatch = { max_bytes = \"64KiB\", timeout = \"250ms\" }\nretry = { max_duration = \"1m\" }",
        )
        .expect("valid");
        assert_eq!(sink.batch.max_bytes, 65536);
        assert_eq!(sink.batch.max_events, 1000);
        assert_eq!(sink.batch.timeout, Duration::from_millis(250));
        assert_eq!(sink.concurrency, Concurrency::Fixed(8));
        assert_eq!(sink.retry.max_duration, Duration::from_secs(60));
        assert_eq!(sink.retry.initial_backoff, Duration::from_secs(1));
    }

    #[test]
    fn refusals_explain_themselves() {
        assert!(toml::from_str::<Sink>("concurrency = 0").is_err());
        let word = toml::from_str::<Sink>("concurrency = \"many\"").unwrap_err();
        assert!(word.to_string().contains("adaptive"), "{word}");
        let key = toml::from_str::<Sink>("concurrency = { adaptiv = {} }").unwrap_err();
        assert!(key.to_string().contains("`adaptiv`"), "{key}");
        let field =
            toml::from_str::<Sink>("concurrency = { adaptive = { maximum = 3 } }").unwrap_err();
        assert!(field.to_string().contains("maximum"), "{field}");
        let range = toml::from_str::<Sink>("concurrency = { adaptive = { initial = 5, max = 2 } }")
            .unwrap_err();
        assert!(range.to_string().contains("adaptive.max"), "{range}");
        assert!(toml::from_str::<Sink>("batch = { max_event = 3 }").is_err());
        assert!(toml::from_str::<Sink>("compression = \"zstd\"").is_err());
        let retry = RetryConfig {
            max_backoff: Duration::from_millis(1),
            ..RetryConfig::default()
        };
        let issues = check(&BatchConfig::default(), &RequestConfig::default(), &retry);
        assert_eq!(issues[0].key.as_deref(), Some("retry.max_backoff"));
    }

    #[test]
    fn adaptive_as_a_word_or_a_table() {
        let sink: Sink = toml::from_str("concurrency = \"adaptive\"").expect("word");
        assert_eq!(
            sink.concurrency,
            Concurrency::Adaptive(AdaptiveConcurrency::default())
        );
        let sink: Sink = toml::from_str(
            "concurrency = { adaptive = { initial = 2, max = 50, decrease_ratio = 0.5, ewma_alpha = 0.2, rtt_deviation_scale = 3.0 } }",
        )
        .expect("table");
        assert_eq!(
            sink.concurrency,
            Concurrency::Adaptive(AdaptiveConcurrency {
                initial: 2,
                max: 50,
                decrease_ratio: 0.5,
                ewma_alpha: 0.2,
                rtt_deviation_scale: 3.0,
            })
        );
        let sink: Sink =
            toml::from_str("concurrency = { adaptive = { max = 20 } }").expect("partial");
        assert_eq!(
            sink.concurrency,
            Concurrency::Adaptive(AdaptiveConcurrency {
                max: 20,
                ..AdaptiveConcurrency::default()
            })
        );
    }

    #[test]
    fn gzip_round_trips() {
        use std::io::Read as _;
        let body = b"{\"a\":1}\n".repeat(100);
        let packed = Compression::Gzip.compress(body.clone());
        assert!(packed.len() < body.len());
        let mut unpacked = Vec::new();
        flate2::read::GzDecoder::new(&packed[..])
            .read_to_end(&mut unpacked)
            .expect("gzip");
        assert_eq!(unpacked, body);
        assert_eq!(Compression::None.compress(body.clone()), body);
    }
}
