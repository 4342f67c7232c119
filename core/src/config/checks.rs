//! Checks of values that many components share — URLs, addresses, paths, counts — so a
//! bad one is refused by `siemflow validate` in the same words wherever it appears,
//! instead of failing (or panicking) only once `run` uses it.
//!
//! Each returns the problem as a sentence that never repeats a credential; the caller
//! turns it into a [`ConfigIssue`](crate::ConfigIssue) at its own key, with its own hint.

use std::net::{IpAddr, Ipv4Addr};

/// The most events or requests a count option may hold: the semaphores that bound
/// buffers and requests in flight take at most `u32::MAX` permits in one call, and
/// tokio refuses to create one with more than about 2^61 (it panics).
pub const MAX_COUNT: usize = u32::MAX as usize;

/// Why `value` is not a count from 1 to `max`, if it is not.
pub fn count(value: usize, max: usize) -> Result<(), String> {
    if (1..=max).contains(&value) {
        Ok(())
    } else {
        Err(format!("must be between 1 and {max}, not {value}"))
    }
}

/// Why `url` cannot be an endpoint that events or credentials are sent to, if it cannot:
/// an http(s) URL with a host, plain http only to this machine (loopback) so secrets and
/// audit records never cross a network unencrypted, and no credentials in it.
pub fn endpoint_url(url: &str) -> Result<reqwest::Url, String> {
    let shown = without_credentials(url);
    let parsed = reqwest::Url::parse(url.trim())
        .map_err(|error| format!("`{shown}` is not a URL ({error})"))?;
    let Some(host) = parsed.host_str() else {
        return Err(format!("`{shown}` has no host"));
    };
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(format!(
            "`{shown}` holds credentials (`user:password@`): they would be sent as a second \
             Authorization header beside the component's own, and could end up in logs; \
             remove them from the URL and use the component's credential options \
             (`token`, `auth`)"
        ));
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" if loopback => Ok(parsed),
        "http" => Err(format!(
            "`{shown}` is plain http to another machine: credentials and data would travel unencrypted; use https"
        )),
        _ => Err(format!("`{shown}` is not an http(s) URL")),
    }
}

/// [`endpoint_url`] for a service's base URL, to which the component adds the API's own
/// path: no path, query or fragment of its own.
pub fn base_url(url: &str) -> Result<reqwest::Url, String> {
    let parsed = endpoint_url(url)?;
    let shown = without_credentials(url);
    if parsed.path() != "/" {
        return Err(format!(
            "`{shown}` has a path (`{}`): give the base URL alone; the component adds the API's path",
            parsed.path()
        ));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(format!(
            "`{shown}` has a query or fragment: give the base URL alone"
        ));
    }
    Ok(parsed)
}

/// Why `url` cannot be an HTTP(S) proxy, if it cannot. Proxy URLs may carry the proxy's
/// credentials, so the message never repeats the URL.
pub fn proxy_url(url: &str) -> Result<(), String> {
    let parsed =
        reqwest::Url::parse(url.trim()).map_err(|error| format!("is not a URL ({error})"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "has the scheme `{}`; a proxy is an http:// or https:// URL",
            parsed.scheme()
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("has no host".into());
    }
    // What `run` will do with it, so validate refuses exactly what run would.
    reqwest::Proxy::all(parsed.as_str())
        .map(drop)
        .map_err(|error| format!("is not a usable proxy URL ({})", error.without_url()))
}

/// Splits an address to connect to, `host:port` (IPv6 as `[::1]:514`); the host keeps
/// no brackets. Port 0 cannot be connected to.
pub fn connect_address(address: &str) -> Result<(String, u16), String> {
    let (host, port) = host_port(address)?;
    if port == 0 {
        return Err(format!(
            "port 0 in `{}` cannot be connected to",
            address.trim()
        ));
    }
    Ok((host, port))
}

/// Checks an address to listen on, `host:port` (IPv6 as `[::1]:8686`); port 0 asks the
/// system for a free port.
pub fn listen_address(address: &str) -> Result<(), String> {
    host_port(address).map(drop)
}

/// `host:port` with a port number and a host that is an IP address or a DNS name.
fn host_port(address: &str) -> Result<(String, u16), String> {
    let address = address.trim();
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| format!("`{address}` has no port; write host:port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("`{port}` in `{address}` is not a port number (0 to 65535)"))?;
    let bracketed = host.starts_with('[') && host.ends_with(']');
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("`{address}` has no host"));
    }
    if host.contains(':') && !bracketed {
        return Err(format!(
            "write the IPv6 address in brackets: `[{host}]:{port}`"
        ));
    }
    if bracketed && host.parse::<std::net::Ipv6Addr>().is_err() {
        return Err(format!("`{host}` in `{address}` is not an IPv6 address"));
    }
    if let Some(problem) = host_problem(host) {
        return Err(format!("{problem} in `{address}`"));
    }
    Ok((host.to_string(), port))
}

/// Why `host` is neither an IP address nor a DNS name, if it is not.
fn host_problem(host: &str) -> Option<String> {
    if host.parse::<IpAddr>().is_ok() {
        return None;
    }
    // Digits and dots only is meant as IPv4 (`999.1.1.1`), never as a name.
    if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return match host.parse::<Ipv4Addr>() {
            Ok(_) => None,
            Err(_) => Some(format!("`{host}` is not an IPv4 address")),
        };
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    let valid_label = |label: &str| {
        (1..=63).contains(&label.len())
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if name.len() <= 253 && name.split('.').all(valid_label) {
        None
    } else {
        Some(format!("`{host}` is neither an IP address nor a host name"))
    }
}

/// Why `path` cannot name a file or folder, if it cannot: empty, or holding a NUL
/// character, which no path on any system can contain.
pub fn path(path: &str) -> Result<(), String> {
    if path.trim().is_empty() {
        return Err("is empty".into());
    }
    if path.contains('\0') {
        return Err(format!(
            "`{}` holds a NUL character, which no file name can contain",
            path.escape_debug()
        ));
    }
    Ok(())
}

/// The URL with any `user:password@` replaced by `***@`, for messages.
fn without_credentials(url: &str) -> String {
    let url = url.trim();
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***{}", &rest[at..]),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_bounded_on_both_sides() {
        assert!(count(1, 10).is_ok());
        assert!(count(10, 10).is_ok());
        assert_eq!(count(0, 10).unwrap_err(), "must be between 1 and 10, not 0");
        assert!(count(11, 10).is_err());
        assert!(count(MAX_COUNT + 1, MAX_COUNT).is_err());
    }

    #[test]
    fn endpoints_are_https_or_local_http_without_credentials() {
        assert!(endpoint_url("https://splunk.example:8088").is_ok());
        assert!(endpoint_url("http://127.0.0.1:8088").is_ok());
        assert!(endpoint_url("http://[::1]:8088").is_ok());
        assert!(endpoint_url("http://localhost:8088").is_ok());
        let plain = endpoint_url("http://splunk.example:8088").unwrap_err();
        assert!(plain.contains("plain http"), "{plain}");
        assert!(endpoint_url("ftp://splunk.example").is_err());
        assert!(endpoint_url("splunk.example:8088").is_err());
        let credentials = endpoint_url("https://u:s3cret@splunk.example:8088").unwrap_err();
        assert!(
            credentials.contains("second Authorization header"),
            "{credentials}"
        );
        assert!(
            credentials.contains("`https://***@splunk.example:8088`"),
            "{credentials}"
        );
        assert!(!credentials.contains("s3cret"), "{credentials}");
        let unparsable = endpoint_url("https://u:s3cret@[bad").unwrap_err();
        assert!(!unparsable.contains("s3cret"), "{unparsable}");
    }

    #[test]
    fn base_urls_have_no_path_query_or_fragment() {
        assert!(base_url("https://splunk.example:8088").is_ok());
        assert!(base_url("https://splunk.example:8088/").is_ok());
        let path = base_url("https://splunk.example:8088/services/collector").unwrap_err();
        assert!(
            path.contains("has a path (`/services/collector`)"),
            "{path}"
        );
        assert!(base_url("https://splunk.example:8088?a=b").is_err());
        assert!(base_url("https://splunk.example:8088#x").is_err());
    }

    #[test]
    fn proxies_are_http_urls_and_never_echoed() {
        assert!(proxy_url("http://proxy.example:3128").is_ok());
        assert!(proxy_url("https://user:pw@proxy.example:3128").is_ok());
        let bad = proxy_url("ht!tp://user:s3cret@proxy.example").unwrap_err();
        assert!(!bad.contains("s3cret"), "{bad}");
        assert!(proxy_url("socks5://proxy.example:1080").is_err());
        assert!(proxy_url("proxy.example:3128").is_err());
        assert!(proxy_url("http://").is_err());
    }

    #[test]
    fn addresses_need_a_valid_host_and_port() {
        assert_eq!(
            connect_address("siem.example:514"),
            Ok(("siem.example".to_string(), 514))
        );
        assert_eq!(connect_address("[::1]:514"), Ok(("::1".to_string(), 514)));
        assert!(connect_address("siem.example:0").is_err());
        assert!(connect_address("::1:514").is_err());
        assert!(connect_address("nohost").is_err());
        assert!(listen_address("127.0.0.1:0").is_ok());
        assert!(listen_address("localhost:8686").is_ok());
        assert!(listen_address("0.0.0.0:8686").is_ok());
        let port = listen_address("127.0.0.1:99999").unwrap_err();
        assert!(
            port.contains("`99999`") && port.contains("not a port number"),
            "{port}"
        );
        let ip = listen_address("999.1.1.1:99").unwrap_err();
        assert_eq!(ip, "`999.1.1.1` is not an IPv4 address in `999.1.1.1:99`");
        assert!(listen_address("bad host:80").is_err());
        assert!(listen_address("[not-ipv6]:80").is_err());
        assert!(listen_address(":80").is_err());
    }

    #[test]
    fn paths_are_not_empty_and_hold_no_nul() {
        assert!(path("out/%Y.log").is_ok());
        assert!(path("").is_err());
        assert_eq!(
            path("out\0.log").unwrap_err(),
            "`out\\0.log` holds a NUL character, which no file name can contain"
        );
    }
}
