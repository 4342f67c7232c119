//! Graph instants: .NET ticks (100 ns) since the Unix epoch, written with 7 fractional
//! digits and `Z` as Graph does, and parsed from OData DateTimeOffset literals.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

/// 100-nanosecond units since 1970-01-01T00:00:00Z (Graph timestamps carry 7 digits).
pub(crate) type Ticks = i64;

/// Ticks per millisecond.
pub(crate) const MS: Ticks = 10_000;
/// Ticks per second.
pub(crate) const SECOND: Ticks = 1_000 * MS;
/// Ticks per minute.
pub(crate) const MINUTE: Ticks = 60 * SECOND;
/// Ticks per hour.
pub(crate) const HOUR: Ticks = 60 * MINUTE;

/// Unix milliseconds as ticks.
pub(crate) fn from_ms(ms: i64) -> Ticks {
    ms.saturating_mul(MS)
}

/// A chrono instant as ticks (sub-tick precision dropped).
pub(crate) fn from_utc(t: DateTime<Utc>) -> Ticks {
    t.timestamp()
        .saturating_mul(SECOND)
        .saturating_add(i64::from(t.timestamp_subsec_nanos() / 100))
}

/// Ticks as a chrono instant (clamped to chrono's range).
pub(crate) fn to_utc(t: Ticks) -> DateTime<Utc> {
    let secs = t.div_euclid(SECOND);
    let nanos = (t.rem_euclid(SECOND) * 100) as u32;
    DateTime::from_timestamp(secs, nanos).unwrap_or_default()
}

/// `2026-09-01T10:02:11.4418120Z`: always seven fractional digits.
pub(crate) fn format(t: Ticks) -> String {
    format!(
        "{}.{:07}Z",
        to_utc(t).format("%Y-%m-%dT%H:%M:%S"),
        t.rem_euclid(SECOND)
    )
}

/// As [`format`] with trailing zeros of the fraction dropped (`…08.51Z`, `…40Z`), the form
/// some Graph properties take.
pub(crate) fn format_trimmed(t: Ticks) -> String {
    let frac = format!("{:07}", t.rem_euclid(SECOND));
    let frac = frac.trim_end_matches('0');
    let base = to_utc(t).format("%Y-%m-%dT%H:%M:%S");
    if frac.is_empty() {
        format!("{base}Z")
    } else {
        format!("{base}.{frac}Z")
    }
}

/// Parses a DateTimeOffset as Graph accepts it in `$filter` and emits it in records:
/// `2026-09-01T10:00:00Z`, with 1–7 fractional digits, an offset instead of `Z`, minutes
/// only, or a bare date (midnight UTC). More than 7 digits are cut, as .NET does.
pub(crate) fn parse(s: &str) -> Option<Ticks> {
    if s.len() == 10 {
        let d = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
        return Some(from_utc(d.and_hms_opt(0, 0, 0)?.and_utc()));
    }
    if let Some(naive) = s.strip_suffix('Z').or_else(|| s.strip_suffix('z')) {
        for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
            if let Ok(n) = NaiveDateTime::parse_from_str(naive, fmt) {
                return Some(from_utc(n.and_utc()));
            }
        }
        return None;
    }
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| from_utc(d.with_timezone(&Utc)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seven_digits_round_trip() {
        let t = parse("2026-09-01T10:02:11.4418127Z").expect("parses");
        assert_eq!(format(t), "2026-09-01T10:02:11.4418127Z");
        assert_eq!(
            format_trimmed(parse("2026-09-01T10:12:08.51Z").expect("parses")),
            "2026-09-01T10:12:08.51Z"
        );
        assert_eq!(
            format_trimmed(parse("2026-09-01T09:58:40Z").expect("parses")),
            "2026-09-01T09:58:40Z"
        );
        assert_eq!(from_utc(to_utc(t)), t);
    }

    #[test]
    fn literal_forms() {
        let z = parse("2026-09-01T10:00:00Z").expect("Z");
        assert_eq!(parse("2026-09-01T12:00:00+02:00"), Some(z));
        assert_eq!(parse("2026-09-01T10:00Z"), Some(z));
        assert_eq!(
            parse("2026-09-01"),
            parse("2026-09-01T00:00:00Z"),
            "a bare date is midnight UTC"
        );
        assert_eq!(
            parse("2026-09-01T10:00:00.12345678Z"),
            Some(z + 1_234_567),
            "an eighth digit is cut"
        );
        for bad in [
            "2026-09-01T10:00:00",
            "yesterday",
            "2026-13-01T00:00:00Z",
            "",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
