//! The time an event field holds, in the forms data sources and SIEM users write it:
//! one reading shared by the CEF/LEEF mappers and the sinks. Which source writes which
//! form is the source's knowledge (for Microsoft 365: `siemflow_sources::microsoft`).

use chrono::{DateTime, NaiveDateTime, Utc};

use crate::Value;

/// Zone-less forms, read as UTC: ISO 8601 with any number of fractional digits (chrono's
/// `%.f` takes any count), the same with a space separator, and the US 12-hour form
/// .NET writes by default (`M/d/yyyy h:mm:ss tt`).
const NAIVE_FORMATS: [&str; 4] = [
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%m/%d/%Y %I:%M:%S %p",
    "%Y-%m-%dT%H:%M:%S%.fZ",
];

/// The time in `value`: a timestamp; RFC 3339 or zone-less ISO 8601 text (UTC); or epoch
/// seconds, milliseconds, microseconds or nanoseconds, told apart by magnitude (as
/// numbers or as digit-only text). `None` for anything else.
pub fn event_time(value: &Value) -> Option<DateTime<Utc>> {
    match value {
        Value::Timestamp(time) => Some(*time),
        Value::Integer(n) => from_epoch_integer(*n),
        Value::Float(f) => from_epoch_float(f.into_inner()),
        Value::Bytes(_) | Value::String(_) => parse_time(value.to_str()?),
        _ => None,
    }
}

/// The time in a text: RFC 3339, zone-less ISO 8601 (UTC), or digit-only epoch.
pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return from_epoch_integer(text.parse().ok()?);
    }
    if let Some(time) = parse_common(text) {
        return Some(time);
    }
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Some(time.with_timezone(&Utc));
    }
    NAIVE_FORMATS
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
        .map(|naive| naive.and_utc())
}

/// Below 1e11 seconds (year 5138) a number is seconds; each further factor of 1000 is
/// the next unit (QRadar's devTime rule, extended to micro- and nanoseconds).
/// The form nearly every Microsoft record uses, `2024-05-01T12:34:56[.fffffff][Z]` (or a
/// space for the `T`), read without chrono's format parser: this runs once per event in
/// CEF and LEEF, and parsing a format string each time cost more than the rest of the
/// field. Anything else (offsets, leap seconds, more than 9 fraction digits) is `None`
/// and left to the general parsers, which read these forms the same way.
fn parse_common(text: &str) -> Option<DateTime<Utc>> {
    let b = text.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        b.get(range)?.iter().try_fold(0u32, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
        })
    };
    let mut rest = &b[19..];
    let mut nanos = 0;
    if let Some(fraction) = rest.strip_prefix(b".") {
        let width = fraction.iter().take_while(|d| d.is_ascii_digit()).count();
        if width == 0 || width > 9 {
            return None;
        }
        let value = digits(20..20 + width)?;
        nanos = value * 10u32.pow(9 - width as u32);
        rest = &fraction[width..];
    }
    if !(rest.is_empty() || rest == b"Z") {
        return None;
    }
    let date =
        chrono::NaiveDate::from_ymd_opt(digits(0..4)? as i32, digits(5..7)?, digits(8..10)?)?;
    let time = date.and_hms_nano_opt(digits(11..13)?, digits(14..16)?, digits(17..19)?, nanos)?;
    Some(time.and_utc())
}

fn from_epoch_integer(n: i64) -> Option<DateTime<Utc>> {
    match n.unsigned_abs() {
        m if m < 100_000_000_000 => DateTime::from_timestamp(n, 0),
        m if m < 100_000_000_000_000 => DateTime::from_timestamp_millis(n),
        m if m < 100_000_000_000_000_000 => DateTime::from_timestamp_micros(n),
        _ => Some(DateTime::from_timestamp_nanos(n)),
    }
}

fn from_epoch_float(number: f64) -> Option<DateTime<Utc>> {
    if !number.is_finite() {
        return None;
    }
    let magnitude = number.abs();
    let micros = if magnitude < 1e11 {
        number * 1e6
    } else if magnitude < 1e14 {
        number * 1e3
    } else if magnitude < 1e17 {
        number
    } else {
        number / 1e3
    };
    DateTime::from_timestamp_micros(micros.round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn float(n: f64) -> Value {
        Value::from_f64_or_zero(n)
    }

    fn ms(value: Value) -> Option<i64> {
        event_time(&value).map(|t| t.timestamp_millis())
    }

    #[test]
    fn the_common_form_reads_as_the_general_parsers_do() {
        for text in [
            "2022-12-12T15:57:57",
            "2022-12-12T15:57:57Z",
            "2022-12-12 15:57:57.5",
            "2022-12-12T15:57:57.1234567Z",
            "2022-12-12T15:57:57.123456789",
            "2024-02-29T00:00:00",
        ] {
            let general = DateTime::parse_from_rfc3339(text)
                .map(|t| t.with_timezone(&Utc))
                .ok()
                .or_else(|| {
                    NAIVE_FORMATS
                        .iter()
                        .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
                        .map(|n| n.and_utc())
                });
            assert!(general.is_some(), "{text}");
            assert_eq!(parse_common(text), general, "{text}");
        }
        for other in [
            "2022-12-12T15:57:57+02:00",
            "2023-02-29T00:00:00",
            "2022-12-12T15:57:60",
            "2022-12-12T15:57:57.",
            "2022-12-12T15:57:57.1234567890",
            "2022-12-12T15:57",
            "12/12/2022 3:57:57 PM",
        ] {
            assert_eq!(parse_common(other), None, "{other}");
        }
        assert_eq!(
            parse_time("2022-12-12T15:57:57+02:00").map(|t| t.timestamp()),
            Some(1_670_853_477)
        );
    }

    #[test]
    fn every_form_reads_the_same_instant() {
        let expected = Some(1_670_860_677_123);
        assert_eq!(ms(Value::from("2022-12-12T15:57:57.123")), expected);
        assert_eq!(ms(Value::from("2022-12-12 15:57:57.123")), expected);
        assert_eq!(ms(Value::from("2022-12-12T15:57:57.1230000Z")), expected);
        assert_eq!(ms(Value::from("2022-12-12T16:57:57.123+01:00")), expected);
        assert_eq!(ms(Value::from("1670860677123")), expected);
        assert_eq!(ms(Value::Integer(1_670_860_677_123)), expected);
        assert_eq!(ms(Value::Integer(1_670_860_677_123_000)), expected);
        assert_eq!(ms(Value::Integer(1_670_860_677_123_000_000)), expected);
        assert_eq!(ms(float(1_670_860_677.123)), expected);
        assert_eq!(ms(float(1_670_860_677_123.0)), expected);
        assert_eq!(ms(Value::Integer(1_670_860_677)), Some(1_670_860_677_000));
        assert_eq!(
            ms(Value::from("12/12/2022 3:57:57 PM")),
            Some(1_670_860_677_000)
        );
    }

    #[test]
    fn non_times_are_none() {
        assert_eq!(ms(Value::from("yesterday")), None);
        assert_eq!(ms(Value::from("")), None);
        assert_eq!(ms(Value::Boolean(true)), None);
    }
}
