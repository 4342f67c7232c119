//! Human-readable durations (`"30s"`, `"5m"`) and sizes (`"1MiB"`) in configs, read and
//! written the same way: what `siemflow list` shows as a default can be pasted back.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// The longest duration any option takes, 100 years (of 365.25 days, as humantime counts
/// `"100y"`): far beyond any useful interval or window, and short enough that adding it to
/// a clock reading can never overflow (which panics).
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 31_557_600);

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

/// Parses a duration such as `"500ms"`, `"30s"` or `"1h 30m"`, at most [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text.trim()).map_err(|e| {
        format!("`{text}` is not a duration ({e}); write e.g. \"30s\", \"5m\", \"500ms\"")
    })?;
    if duration > MAX_DURATION {
        return Err(format!(
            "`{text}` is longer than 100y, the longest duration an option takes"
        ));
    }
    Ok(duration)
}

/// Writes a duration the way a config does, largest units first: `"7d"`, `"1h 30m"`,
/// `"200ms"`, `"0s"`. [`parse_duration`] reads it back unchanged.
pub fn format_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    let nanos = duration.subsec_nanos();
    let (sub_second, sub_unit) = match nanos {
        n if n % 1_000_000 == 0 => (n / 1_000_000, "ms"),
        n if n % 1_000 == 0 => (n / 1_000, "us"),
        n => (n, "ns"),
    };
    let parts: Vec<String> = [
        (seconds / DAY, "d"),
        (seconds % DAY / HOUR, "h"),
        (seconds % HOUR / MINUTE, "m"),
        (seconds % MINUTE, "s"),
        (u64::from(sub_second), sub_unit),
    ]
    .into_iter()
    .filter(|(count, _)| *count > 0)
    .map(|(count, unit)| format!("{count}{unit}"))
    .collect();
    if parts.is_empty() {
        "0s".to_string()
    } else {
        parts.join(" ")
    }
}

/// Parses a size such as `"1MiB"`, `"64 KB"` or `"1000"` (bytes).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size; write e.g. \"1MiB\", \"512KB\", \"100\""))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "k" => 1_000,
        "kib" => 1 << 10,
        "mb" | "m" => 1_000_000,
        "mib" => 1 << 20,
        "gb" | "g" => 1_000_000_000,
        "gib" => 1 << 30,
        other => {
            return Err(format!(
                "unknown size unit `{other}` in `{text}`; use B, KB, KiB, MB, MiB, GB or GiB"
            ));
        }
    };
    let bytes = number * factor as f64;
    // `as` would quietly turn a too-large number into u64::MAX.
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("`{text}` is too large a size"));
    }
    Ok(bytes as u64)
}

/// Writes a byte count the way a config does: `"1GiB"`, `"64MiB"`, `"512KiB"`, or bytes.
pub fn format_size(bytes: u64) -> String {
    match bytes {
        0 => "0".to_string(),
        v if v % (1 << 30) == 0 => format!("{}GiB", v >> 30),
        v if v % (1 << 20) == 0 => format!("{}MiB", v >> 20),
        v if v % (1 << 10) == 0 => format!("{}KiB", v >> 10),
        v => v.to_string(),
    }
}

/// `#[serde(deserialize_with = "units::duration")]` for a `Duration` field.
pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    parse_duration(&text).map_err(serde::de::Error::custom)
}

/// [`duration`] above zero, for a timeout or an interval that zero would turn into "at
/// once, always" (a connection closed at once, a probe in a tight loop).
pub fn positive_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    match duration(d)? {
        Duration::ZERO => Err(serde::de::Error::custom(
            "must be longer than zero, e.g. \"10s\"",
        )),
        duration => Ok(duration),
    }
}

/// `#[serde(deserialize_with = "units::size")]` for a byte-count field; integers are bytes.
pub fn size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
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

/// `#[serde(serialize_with = "units::serialize_duration")]` beside `units::duration`: the
/// configs only deserialize, but schemars serializes a field's default with it, so
/// `siemflow list` and the docs show `"7d"` rather than `{"secs":604800,"nanos":0}`.
pub fn serialize_duration<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_duration(*value))
}

/// `#[serde(serialize_with = "units::serialize_size")]` beside `units::size`: the default
/// shows as `"64MiB"` rather than `67108864`.
pub fn serialize_size<S: Serializer>(value: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_size(*value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("64 KB"), Ok(64_000));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("12 parsecs").is_err());
        assert_eq!(
            parse_size("99999999999999999999GiB"),
            Err("`99999999999999999999GiB` is too large a size".to_string())
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_duration("100y"), Ok(MAX_DURATION));
        assert!(parse_duration("101y").is_err());
        assert_eq!(
            parse_duration("500000000000y"),
            Err(
                "`500000000000y` is longer than 100y, the longest duration an option takes"
                    .to_string()
            )
        );
    }

    #[test]
    fn written_as_a_config_would_and_read_back() {
        for (duration, text) in [
            (Duration::from_secs(7 * 86_400), "7d"),
            (Duration::from_secs(86_400), "1d"),
            (Duration::from_secs(5_400), "1h 30m"),
            (Duration::from_secs(60), "1m"),
            (Duration::from_millis(200), "200ms"),
            (Duration::from_millis(1_500), "1s 500ms"),
            (Duration::from_micros(5), "5us"),
            (Duration::ZERO, "0s"),
        ] {
            assert_eq!(format_duration(duration), text);
            assert_eq!(parse_duration(text), Ok(duration), "{text}");
        }
        for (bytes, text) in [
            (64 << 20, "64MiB"),
            (1 << 30, "1GiB"),
            (1_000, "1000"),
            (0, "0"),
        ] {
            assert_eq!(format_size(bytes), text);
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
    }
}
