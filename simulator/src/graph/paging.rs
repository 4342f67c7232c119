//! Pages and nextLinks. The security collections page with `$skip` in their nextLinks (as
//! in the documented example); the reports with an opaque `$skiptoken` that pins the
//! listing to the instant of its first page and expires a while after it ("Skip token has
//! expired. Restart pagination from the first page", as observed).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

use super::errors::GraphError;
use super::time::Ticks;
use crate::world::rng::{hash_str, key};

/// Where a `$skiptoken` pagination stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cursor {
    /// Records already returned.
    pub(crate) offset: usize,
    /// The listing's instant (visibility), fixed at the first page.
    pub(crate) snapshot: Ticks,
    /// The simulator clock (ms) at the first page, for expiry.
    pub(crate) started_ms: i64,
}

/// What a token is bound to: the simulator instance, the tenant and the query it continues.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Binding {
    pub(crate) secret: u64,
    pub(crate) tenant: usize,
    /// A hash of the query options the nextLink repeats.
    pub(crate) query: u64,
}

/// Hashes the options a nextLink repeats, order-insensitively.
pub(crate) fn query_hash(carry: &[(String, String)]) -> u64 {
    let mut parts: Vec<String> = carry
        .iter()
        .map(|(k, v)| format!("{}={v}", k.to_ascii_lowercase()))
        .collect();
    parts.sort();
    hash_str(&parts.join("&"))
}

/// The query hash of a collection's sorted index (see [`super::listing::Listing::within`]):
/// its key is no OData option, so no client query hashes to it.
pub(crate) fn index_hash(descending: bool, expand_alerts: bool) -> u64 {
    query_hash(&[(
        "#index".to_string(),
        format!("descending={descending}&expand={expand_alerts}"),
    )])
}

fn mac(b: &Binding, c: &Cursor) -> u64 {
    key(&[
        b.secret,
        b.tenant as u64,
        b.query,
        c.offset as u64,
        c.snapshot as u64,
        c.started_ms as u64,
    ])
}

/// An opaque token for `cursor`.
pub(crate) fn encode(b: &Binding, c: &Cursor) -> String {
    let text = format!(
        "{:x}.{:x}.{:x}.{:016x}",
        c.offset,
        c.snapshot,
        c.started_ms,
        mac(b, c)
    );
    B64.encode(text)
}

fn invalid() -> GraphError {
    GraphError::bad("Invalid Skip Token")
}

/// Reads a token back; a token not made by this simulator for this tenant and query is
/// invalid (400), one older than `lifetime_ms` expired (400).
pub(crate) fn decode(
    token: &str,
    b: &Binding,
    now_ms: i64,
    lifetime_ms: i64,
) -> Result<Cursor, GraphError> {
    let bytes = B64.decode(token.trim()).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let parts: Vec<&str> = text.split('.').collect();
    let [offset, snapshot, started, tag] = parts[..] else {
        return Err(invalid());
    };
    let hex = |s: &str| u64::from_str_radix(s, 16).map_err(|_| invalid());
    let c = Cursor {
        offset: usize::try_from(hex(offset)?).map_err(|_| invalid())?,
        snapshot: hex(snapshot)? as Ticks,
        started_ms: hex(started)? as i64,
    };
    if hex(tag)? != mac(b, &c) {
        return Err(invalid());
    }
    if now_ms - c.started_ms > lifetime_ms {
        return Err(expired());
    }
    Ok(c)
}

/// The refusal of an expired pagination.
pub(crate) fn expired() -> GraphError {
    GraphError::bad("Skip token has expired. Restart pagination from the first page.")
}

/// `base/path?carried options&extra`, values percent-encoded, names (`$filter`) verbatim.
pub(crate) fn link(base: &str, carry: &[(String, String)], extra: (&str, String)) -> String {
    let mut url = format!("{base}?");
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    for (k, v) in carry {
        url.push_str(&format!("{k}={}&", enc(v)));
    }
    url.push_str(&format!("{}={}", extra.0, enc(&extra.1)));
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_refuse_tampering_and_age() {
        let b = Binding {
            secret: 7,
            tenant: 0,
            query: 42,
        };
        let c = Cursor {
            offset: 1000,
            snapshot: 17_000_000_000_000_000,
            started_ms: 1_700_000_000_000,
        };
        let t = encode(&b, &c);
        assert_eq!(decode(&t, &b, c.started_ms + 1, 60_000).expect("valid"), c);
        let other_query = Binding { query: 43, ..b };
        assert_eq!(
            decode(&t, &other_query, c.started_ms, 60_000).map_err(|e| e.message),
            Err("Invalid Skip Token".into())
        );
        let forged = encode(&Binding { secret: 8, ..b }, &Cursor { offset: 5, ..c });
        assert!(decode(&forged, &b, c.started_ms, 60_000).is_err());
        assert!(decode("not a token!", &b, c.started_ms, 60_000).is_err());
        let e = decode(&t, &b, c.started_ms + 60_001, 60_000).expect_err("expired");
        assert!(e.message.contains("expired"), "{}", e.message);
    }

    #[test]
    fn links_keep_dollar_names_and_encode_values() {
        let carry = vec![(
            "$filter".to_string(),
            "createdDateTime ge 2026-09-01T10:00:00Z".to_string(),
        )];
        assert_eq!(
            link(
                "http://h/v1.0/auditLogs/signins",
                &carry,
                ("$skiptoken", "abc".into())
            ),
            "http://h/v1.0/auditLogs/signins?$filter=createdDateTime+ge+2026-09-01T10%3A00%3A00Z&$skiptoken=abc"
        );
    }
}
