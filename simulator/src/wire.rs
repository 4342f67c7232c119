//! Pieces shared by the SIEM simulators (Splunk HEC, Logs Ingestion, Elasticsearch): bounded
//! request bodies with gzip, seeded fault dice, and config value parsers.

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::{Deserialize, Deserializer};

use crate::world::rng::{key, mix};

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    /// More bytes than allowed: on the wire (`decoded` false) or after gunzip.
    #[error("body of {length} bytes exceeds the limit of {limit}")]
    TooLarge {
        length: u64,
        limit: u64,
        decoded: bool,
    },
    /// A `Content-Encoding` the service does not take.
    #[error("unsupported Content-Encoding {0:?}")]
    UnsupportedEncoding(String),
    /// A gzip body that does not inflate.
    #[error("gzip body does not decompress: {0}")]
    Corrupt(String),
    /// The client went away while sending.
    #[error("reading the body failed: {0}")]
    Io(String),
}

/// Reads the whole body, refusing more than `wire_limit` bytes as sent and more than
/// `decoded_limit` bytes once decompressed (a gzip bomb stops at the limit).
/// Returns (decoded body, bytes on the wire).
pub(crate) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    wire_limit: u64,
    decoded_limit: u64,
) -> Result<(Bytes, u64), BodyError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(length) = declared.filter(|l| *l > wire_limit) {
        return Err(BodyError::TooLarge {
            length,
            limit: wire_limit,
            decoded: false,
        });
    }
    let limit = usize::try_from(wire_limit).unwrap_or(usize::MAX);
    let raw = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => {
            return Err(BodyError::TooLarge {
                length: wire_limit.saturating_add(1),
                limit: wire_limit,
                decoded: false,
            });
        }
        Err(e) => return Err(BodyError::Io(e.to_string())),
    };
    let wire = raw.len() as u64;
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    match encoding.as_str() {
        "" | "identity" => {
            if wire > decoded_limit {
                return Err(BodyError::TooLarge {
                    length: wire,
                    limit: decoded_limit,
                    decoded: true,
                });
            }
            Ok((raw, wire))
        }
        "gzip" | "x-gzip" => Ok((gunzip(&raw, decoded_limit)?, wire)),
        other => Err(BodyError::UnsupportedEncoding(other.to_string())),
    }
}

/// Inflates every gzip member of `raw`, stopping one byte past `limit`.
fn gunzip(raw: &[u8], limit: u64) -> Result<Bytes, BodyError> {
    let mut out = Vec::with_capacity(raw.len().saturating_mul(4).min(1 << 20));
    flate2::read::MultiGzDecoder::new(raw)
        .take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| BodyError::Corrupt(e.to_string()))?;
    if out.len() as u64 > limit {
        return Err(BodyError::TooLarge {
            length: out.len() as u64,
            limit,
            decoded: true,
        });
    }
    Ok(Bytes::from(out))
}

/// Fault decisions: a reproducible sequence from the seed and the order of the questions.
#[derive(Debug)]
pub(crate) struct Dice {
    seed: u64,
    stream: u64,
    counter: AtomicU64,
}

impl Dice {
    /// A sequence for one simulator (`stream` keeps simulators with the same seed apart).
    pub(crate) fn new(seed: u64, stream: u64) -> Self {
        Self {
            seed,
            stream,
            counter: AtomicU64::new(0),
        }
    }

    /// Uniform in [0, 1).
    pub(crate) fn roll(&self) -> f64 {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        (mix(key(&[self.seed, self.stream, n])) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`; a zero rate consumes no roll, so switching one fault on
    /// does not shift the decisions of a run without it.
    pub(crate) fn chance(&self, p: f64) -> bool {
        p > 0.0 && self.roll() < p
    }
}

/// `deserialize_with` for durations written as strings (`"30s"`, `"500ms"`).
pub(crate) fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(s.trim()).map_err(|e| {
        serde::de::Error::custom(format!(
            "invalid duration {s:?} ({e}); use e.g. \"500ms\", \"30s\", \"5m\""
        ))
    })
}

/// `deserialize_with` for sizes: an integer (bytes) or a string such as `"1MiB"`, `"100MB"`.
pub(crate) fn size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    match Size::deserialize(d)? {
        Size::Bytes(n) => Ok(n),
        Size::Text(text) => parse_size(&text).map_err(serde::de::Error::custom),
    }
}

fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size; write e.g. 1000000, \"1MiB\", \"100MB\""))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "kib" => 1 << 10,
        "mb" => 1_000_000,
        "mib" => 1 << 20,
        "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        other => return Err(format!("unknown size unit {other:?} in {text:?}")),
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// Checks that a fault rate is a share in [0, 1]; `name` is the config key for the message.
pub(crate) fn check_rate(name: &str, v: f64) -> anyhow::Result<()> {
    if !(0.0..=1.0).contains(&v) {
        anyhow::bail!("{name} must be between 0 and 1, got {v}");
    }
    Ok(())
}

/// The query string as (name, value) pairs.
pub(crate) fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

/// The first value of a query parameter.
pub(crate) fn query_get<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("1MB"), Ok(1_000_000));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("1.5MB").is_err());
        assert!(parse_size("1 parsec").is_err());
    }

    #[test]
    fn dice_repeat_with_the_seed() {
        let a = Dice::new(7, 1);
        let b = Dice::new(7, 1);
        let c = Dice::new(8, 1);
        let ra: Vec<f64> = (0..8).map(|_| a.roll()).collect();
        let rb: Vec<f64> = (0..8).map(|_| b.roll()).collect();
        let rc: Vec<f64> = (0..8).map(|_| c.roll()).collect();
        assert_eq!(ra, rb);
        assert_ne!(ra, rc);
        assert!(!a.chance(0.0));
    }

    #[test]
    fn gunzip_stops_at_the_limit() {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&vec![b'a'; 10_000]).expect("write");
        let gz = enc.finish().expect("finish");
        assert_eq!(gunzip(&gz, 10_000).expect("fits").len(), 10_000);
        assert!(matches!(
            gunzip(&gz, 9_999),
            Err(BodyError::TooLarge { decoded: true, .. })
        ));
        assert!(matches!(
            gunzip(b"not gzip", 100),
            Err(BodyError::Corrupt(_))
        ));
    }
}
