//! IP addresses as Microsoft 365 writes them, and their class.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use siemflow_core::Value;

/// What an event field holds where an IP address is expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpField {
    /// Absent, null or empty (Entra events often have no `ClientIP`).
    Missing,
    /// Present but not an IP address.
    Invalid,
    /// An address; IPv4-mapped IPv6 addresses are given as IPv4.
    Ip(IpAddr),
}

/// Reads an IP from a field value: IPv4, IPv6, `1.2.3.4:443`, `[2001:db8::1]:443`,
/// `[2001:db8::1]`, `::ffff:10.1.2.3`.
pub fn ip_field(value: Option<&Value>) -> IpField {
    let text = match value {
        None | Some(Value::Null) => return IpField::Missing,
        Some(value) => match value.to_str_lossy() {
            Some(text) => text,
            None => return IpField::Invalid,
        },
    };
    let text = text.trim();
    if text.is_empty() {
        return IpField::Missing;
    }
    parse_ip(text).map_or(IpField::Invalid, IpField::Ip)
}

/// Parses one address in any of the forms of [`ip_field`].
pub fn parse_ip(text: &str) -> Option<IpAddr> {
    let ip = text
        .parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            text.strip_prefix('[')
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse::<Ipv6Addr>().ok())
                .map(IpAddr::V6)
        })?;
    // Mapped addresses must match IPv4 table rows and GeoIP's IPv4 data.
    Some(ip.to_canonical())
}

/// The class of an address, as SIEM users filter on it.
pub fn ip_class(ip: IpAddr) -> &'static str {
    match ip {
        IpAddr::V4(v4) => v4_class(v4),
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            if v6.is_loopback() {
                "loopback"
            } else if v6.is_unspecified() || v6.is_multicast() {
                "invalid"
            } else if (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80 {
                // Unique local fc00::/7 and link-local fe80::/10 are not routed publicly.
                "private"
            } else {
                "public"
            }
        }
    }
}

fn v4_class(v4: Ipv4Addr) -> &'static str {
    let [a, b, ..] = v4.octets();
    if v4.is_loopback() {
        "loopback"
    } else if v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast() {
        // No client can have these addresses.
        "invalid"
    } else if v4.is_private() || v4.is_link_local() || (a == 100 && (b & 0xc0) == 64) {
        // RFC 1918, link-local and carrier-grade NAT (100.64.0.0/10).
        "private"
    } else {
        "public"
    }
}
