//! Typed conversions shared by CEF and LEEF: timestamps, severities, numbers, addresses.

use std::net::IpAddr;

use siemflow_core::event_time::event_time;
use vrl::value::Value;

use super::source::{Got, value_text};

/// The type a key's value must have on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Text of at most this many characters (`usize::MAX`: unbounded).
    Text(usize),
    /// A whole number.
    Int,
    /// A floating-point number.
    Float,
    /// Milliseconds since the epoch.
    Time,
    /// An IPv4 or IPv6 address.
    Ip,
    /// An IPv4 address only (CEF `dvc`); an IPv6 one is left to an IPv6 key.
    Ipv4,
    /// An IPv6 address only (CEF `c6a1`–`c6a4`); an IPv4 one is left to an IPv4 key.
    Ipv6,
}

/// Writes the value of `got` as `kind` requires into `out` (cleared first); false when
/// the value cannot have that type.
pub fn typed_text(got: &Got<'_>, kind: Kind, out: &mut String) -> bool {
    out.clear();
    match got {
        Got::Field(value, _) => match kind {
            Kind::Text(_) => value_text(value, out),
            Kind::Time => match epoch_ms(value) {
                Some(ms) => out.push_str(&ms.to_string()),
                None => return false,
            },
            _ => {
                value_text(value, out);
                return check_text(kind, out);
            }
        },
        Got::Text(text, _) => {
            if kind == Kind::Time {
                match parse_time(text) {
                    Some(ms) => out.push_str(&ms.to_string()),
                    None => return false,
                }
            } else {
                out.push_str(text);
                return check_text(kind, out);
            }
        }
    }
    true
}

fn check_text(kind: Kind, out: &mut String) -> bool {
    match kind {
        Kind::Int => {
            let trimmed = out.trim();
            // "1.0" from a float field is still a whole number.
            let parsed = trimmed.parse::<i64>().ok().or_else(|| {
                trimmed
                    .parse::<f64>()
                    .ok()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                    .map(|f| f as i64)
            });
            match parsed {
                Some(n) => {
                    out.clear();
                    out.push_str(&n.to_string());
                    true
                }
                None => false,
            }
        }
        Kind::Float => out.trim().parse::<f64>().is_ok_and(f64::is_finite),
        Kind::Ip => out.trim().parse::<IpAddr>().is_ok(),
        Kind::Ipv4 => out.trim().parse::<IpAddr>().is_ok_and(|ip| ip.is_ipv4()),
        Kind::Ipv6 => out.trim().parse::<IpAddr>().is_ok_and(|ip| ip.is_ipv6()),
        Kind::Text(_) | Kind::Time => true,
    }
}

/// True when `text` (what `typed_text` left in its buffer) is a valid address of the
/// family `kind` does not take: not an error, the value belongs to the sibling key.
pub fn other_ip_family(kind: Kind, text: &str) -> bool {
    match (kind, text.trim().parse::<IpAddr>()) {
        (Kind::Ipv4, Ok(ip)) => ip.is_ipv6(),
        (Kind::Ipv6, Ok(ip)) => ip.is_ipv4(),
        _ => false,
    }
}

/// A timestamp value as epoch milliseconds (see [`siemflow_core::event_time`] for the forms).
pub fn epoch_ms(value: &Value) -> Option<i64> {
    event_time(value).map(|time| time.timestamp_millis())
}

/// Parses a timestamp text to epoch milliseconds.
pub fn parse_time(text: &str) -> Option<i64> {
    siemflow_core::event_time::parse_time(text).map(|time| time.timestamp_millis())
}

/// Severity text or number to 0–10: Informational 1, Low 3, Medium 5, High 8, Critical 10.
pub fn severity(got: &Got<'_>) -> Option<u8> {
    let mut text = String::new();
    let text: &str = match got {
        Got::Field(Value::Integer(n), _) => return Some((*n).clamp(0, 10) as u8),
        Got::Field(value, _) => {
            value_text(value, &mut text);
            &text
        }
        Got::Text(t, _) => t,
    };
    let text = text.trim();
    if let Ok(n) = text.parse::<i64>() {
        return Some(n.clamp(0, 10) as u8);
    }
    const NAMES: [(&str, u8); 12] = [
        ("informational", 1),
        ("info", 1),
        ("information", 1),
        ("verbose", 1),
        ("low", 3),
        ("medium", 5),
        ("moderate", 5),
        ("high", 8),
        ("very-high", 10),
        ("veryhigh", 10),
        ("critical", 10),
        ("severe", 10),
    ];
    // Compared without lowercasing a copy: this runs once per event.
    NAMES
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(text))
        .map(|&(_, n)| n)
}

/// A severity (0–10) as text, without formatting a new string per event.
pub fn severity_text(n: u8) -> &'static str {
    const TEXT: [&str; 11] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10"];
    TEXT[usize::from(n.min(10))]
}
