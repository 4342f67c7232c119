//! The few pieces of the Kafka wire protocol the Event Hubs front reads and writes itself:
//! request headers, ApiVersions responses (to add the SASL APIs), SaslHandshake and
//! SaslAuthenticate. Everything else passes through as bytes.

/// ApiKey of SaslHandshake.
pub const SASL_HANDSHAKE: i16 = 17;
/// ApiKey of ApiVersions.
pub const API_VERSIONS: i16 = 18;
/// ApiKey of SaslAuthenticate.
pub const SASL_AUTHENTICATE: i16 = 36;

/// Versions the front serves: SaslHandshake v1 only (v0 would be followed by unframed SASL
/// bytes) and SaslAuthenticate v0–v1 (not flexible).
pub const SASL_HANDSHAKE_VERSIONS: (i16, i16) = (1, 1);
/// See [`SASL_HANDSHAKE_VERSIONS`].
pub const SASL_AUTHENTICATE_VERSIONS: (i16, i16) = (0, 1);

/// Kafka error codes the front answers with.
pub const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
/// The SASL exchange failed: wrong user name or password.
pub const SASL_AUTHENTICATION_FAILED: i16 = 58;

/// What a request frame starts with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHeader {
    /// The API.
    pub api_key: i16,
    /// Its version.
    pub api_version: i16,
    /// Echoed in the response.
    pub correlation_id: i32,
    /// Where the body begins (after the client id, non-flexible header v1).
    pub body_offset: usize,
}

/// Why a frame could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed Kafka frame: {0}")]
pub struct Malformed(pub &'static str);

/// A cursor over a frame's bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, at: 0 }
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], Malformed> {
        let end = self.at.checked_add(n).ok_or(Malformed(what))?;
        let slice = self.bytes.get(self.at..end).ok_or(Malformed(what))?;
        self.at = end;
        Ok(slice)
    }

    fn i16(&mut self, what: &'static str) -> Result<i16, Malformed> {
        let b = self.take(2, what)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self, what: &'static str) -> Result<i32, Malformed> {
        let b = self.take(4, what)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn uvarint(&mut self, what: &'static str) -> Result<u64, Malformed> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.take(1, what)?[0];
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Malformed(what))
    }

    /// A nullable string with an i16 length (-1 is null).
    fn nullable_string(&mut self, what: &'static str) -> Result<Option<&'a [u8]>, Malformed> {
        match self.i16(what)? {
            -1 => Ok(None),
            len if len < 0 => Err(Malformed(what)),
            len => Ok(Some(self.take(len as usize, what)?)),
        }
    }

    /// Bytes with an i32 length.
    fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], Malformed> {
        match self.i32(what)? {
            len if len < 0 => Err(Malformed(what)),
            len => self.take(len as usize, what),
        }
    }

    /// Skips a tagged-field section (flexible versions).
    fn skip_tags(&mut self, what: &'static str) -> Result<(), Malformed> {
        for _ in 0..self.uvarint(what)? {
            self.uvarint(what)?;
            let size = self.uvarint(what)?;
            self.take(usize::try_from(size).map_err(|_| Malformed(what))?, what)?;
        }
        Ok(())
    }

    fn rest(&self) -> &'a [u8] {
        &self.bytes[self.at..]
    }
}

/// Reads a request frame's header (the frame without its 4-byte length). The client id
/// is read as in header v1; the front reads bodies only of non-flexible requests.
pub fn request_header(frame: &[u8]) -> Result<RequestHeader, Malformed> {
    let mut reader = Reader::new(frame);
    let api_key = reader.i16("api_key")?;
    let api_version = reader.i16("api_version")?;
    let correlation_id = reader.i32("correlation_id")?;
    reader.nullable_string("client_id")?;
    Ok(RequestHeader {
        api_key,
        api_version,
        correlation_id,
        body_offset: reader.at,
    })
}

/// A SaslHandshake request's mechanism.
pub fn handshake_mechanism(body: &[u8]) -> Result<String, Malformed> {
    let mut reader = Reader::new(body);
    let mechanism = reader
        .nullable_string("mechanism")?
        .ok_or(Malformed("mechanism"))?;
    Ok(String::from_utf8_lossy(mechanism).into_owned())
}

/// A SaslAuthenticate (v0–v1) request's auth bytes.
pub fn authenticate_bytes(body: &[u8]) -> Result<&[u8], Malformed> {
    Reader::new(body).bytes("auth_bytes")
}

/// A SASL PLAIN message, `authzid NUL authcid NUL password` (RFC 4616): the user name and
/// password.
pub fn plain_credentials(token: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut parts = token.splitn(3, |b| *b == 0);
    let _authzid = parts.next()?;
    Some((parts.next()?, parts.next()?))
}

fn frame(correlation_id: i32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + body.len());
    out.extend_from_slice(&(4 + body.len() as i32).to_be_bytes());
    out.extend_from_slice(&correlation_id.to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn put_string(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&(text.len() as i16).to_be_bytes());
    out.extend_from_slice(text.as_bytes());
}

/// A SaslHandshake v0–v1 response frame: the error and the mechanisms offered.
pub fn handshake_response(correlation_id: i32, error: i16, mechanisms: &[&str]) -> Vec<u8> {
    let mut body = error.to_be_bytes().to_vec();
    body.extend_from_slice(&(mechanisms.len() as i32).to_be_bytes());
    for mechanism in mechanisms {
        put_string(&mut body, mechanism);
    }
    frame(correlation_id, &body)
}

/// A SaslAuthenticate v0–v1 response frame (empty auth bytes; v1 adds the session
/// lifetime, 0: no re-authentication).
pub fn authenticate_response(
    correlation_id: i32,
    version: i16,
    error: i16,
    message: Option<&str>,
) -> Vec<u8> {
    let mut body = error.to_be_bytes().to_vec();
    match message {
        Some(message) => put_string(&mut body, message),
        None => body.extend_from_slice(&(-1i16).to_be_bytes()),
    }
    body.extend_from_slice(&0i32.to_be_bytes());
    if version >= 1 {
        body.extend_from_slice(&0i64.to_be_bytes());
    }
    frame(correlation_id, &body)
}

/// The broker's ApiVersions response frame (without the length) with SaslHandshake and
/// SaslAuthenticate added at the versions the front serves (replacing any the broker
/// lists). `version` is the request's: v3+ bodies are flexible (the response header
/// stays v0, as Kafka specifies for ApiVersions). An error answer (e.g. an unsupported
/// version, which the broker writes as v0) is returned as it is.
pub fn add_sasl_apis(response: &[u8], version: i16) -> Result<Vec<u8>, Malformed> {
    let mut reader = Reader::new(response);
    let correlation = reader.take(4, "correlation_id")?;
    let error = reader.i16("error_code")?;
    if error != 0 {
        return Ok(response.to_vec());
    }
    let flexible = version >= 3;
    let count = if flexible {
        let n = reader.uvarint("api_keys")?;
        n.checked_sub(1).ok_or(Malformed("api_keys"))? as usize
    } else {
        usize::try_from(reader.i32("api_keys")?).map_err(|_| Malformed("api_keys"))?
    };
    let mut entries: Vec<&[u8]> = Vec::with_capacity(count + 2);
    for _ in 0..count {
        let start = reader.at;
        let key = reader.i16("api_key")?;
        reader.take(4, "versions")?;
        if flexible {
            reader.skip_tags("api_key tags")?;
        }
        if key != SASL_HANDSHAKE && key != SASL_AUTHENTICATE {
            entries.push(&response[start..reader.at]);
        }
    }
    let rest = reader.rest();
    let ours = [
        (SASL_HANDSHAKE, SASL_HANDSHAKE_VERSIONS),
        (SASL_AUTHENTICATE, SASL_AUTHENTICATE_VERSIONS),
    ]
    .map(|(key, (min, max))| {
        let mut entry = Vec::with_capacity(7);
        entry.extend_from_slice(&key.to_be_bytes());
        entry.extend_from_slice(&min.to_be_bytes());
        entry.extend_from_slice(&max.to_be_bytes());
        if flexible {
            entry.push(0);
        }
        entry
    });
    let mut out = Vec::with_capacity(response.len() + 16);
    out.extend_from_slice(correlation);
    out.extend_from_slice(&error.to_be_bytes());
    let total = entries.len() + ours.len();
    if flexible {
        put_uvarint(&mut out, total as u64 + 1);
    } else {
        out.extend_from_slice(&(total as i32).to_be_bytes());
    }
    for entry in entries {
        out.extend_from_slice(entry);
    }
    for entry in &ours {
        out.extend_from_slice(entry);
    }
    out.extend_from_slice(rest);
    Ok(out)
}

fn put_uvarint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// The API keys and version ranges of an ApiVersions response (without the length), for
/// tests and logs.
pub fn api_versions(response: &[u8], version: i16) -> Result<Vec<(i16, i16, i16)>, Malformed> {
    let mut reader = Reader::new(response);
    reader.take(4, "correlation_id")?;
    reader.i16("error_code")?;
    let flexible = version >= 3;
    let count = if flexible {
        reader.uvarint("api_keys")?.saturating_sub(1) as usize
    } else {
        usize::try_from(reader.i32("api_keys")?).map_err(|_| Malformed("api_keys"))?
    };
    let mut keys = Vec::with_capacity(count);
    for _ in 0..count {
        keys.push((
            reader.i16("api_key")?,
            reader.i16("min")?,
            reader.i16("max")?,
        ));
        if flexible {
            reader.skip_tags("api_key tags")?;
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A broker's ApiVersions response body: Produce 0–9, Fetch 4–13 and a stale
    /// SaslHandshake entry, then throttle time and (v3) tagged fields.
    fn broker_response(flexible: bool) -> Vec<u8> {
        let mut out = 7i32.to_be_bytes().to_vec();
        out.extend_from_slice(&0i16.to_be_bytes());
        let entries = [(0i16, 0i16, 9i16), (1, 4, 13), (17, 0, 0)];
        if flexible {
            put_uvarint(&mut out, entries.len() as u64 + 1);
        } else {
            out.extend_from_slice(&(entries.len() as i32).to_be_bytes());
        }
        for (key, min, max) in entries {
            for v in [key, min, max] {
                out.extend_from_slice(&v.to_be_bytes());
            }
            if flexible {
                // One tagged field of 2 bytes, to be kept as it is.
                out.extend_from_slice(&[1, 5, 2, 0xab, 0xcd]);
            }
        }
        out.extend_from_slice(&25i32.to_be_bytes());
        if flexible {
            out.extend_from_slice(&[1, 0, 1, 0x42]);
        }
        out
    }

    #[test]
    fn api_versions_gain_the_sasl_apis_in_both_encodings() {
        for (version, flexible) in [(0, false), (2, false), (3, true), (4, true)] {
            let original = broker_response(flexible);
            let rewritten = add_sasl_apis(&original, version).expect("parsable");
            assert_eq!(
                api_versions(&rewritten, version).expect("still parsable"),
                [(0, 0, 9), (1, 4, 13), (17, 1, 1), (36, 0, 1)],
                "v{version}"
            );
            let tail: &[u8] = if flexible {
                &[0, 0, 0, 25, 1, 0, 1, 0x42]
            } else {
                &[0, 0, 0, 25]
            };
            assert!(rewritten.ends_with(tail), "v{version}: the tail is kept");
            if flexible {
                // The broker's per-entry tagged fields survive.
                assert!(rewritten.windows(5).any(|w| w == [1, 5, 2, 0xab, 0xcd]));
            }
        }
        let mut error = 7i32.to_be_bytes().to_vec();
        error.extend_from_slice(&35i16.to_be_bytes());
        error.extend_from_slice(&0i32.to_be_bytes());
        assert_eq!(add_sasl_apis(&error, 4).expect("kept"), error);
        assert!(add_sasl_apis(&original_truncated(), 0).is_err());
    }

    fn original_truncated() -> Vec<u8> {
        let mut bytes = broker_response(false);
        bytes.truncate(12);
        bytes
    }

    #[test]
    fn requests_and_sasl_tokens_are_read() {
        let mut frame = Vec::new();
        frame.extend_from_slice(&SASL_AUTHENTICATE.to_be_bytes());
        frame.extend_from_slice(&1i16.to_be_bytes());
        frame.extend_from_slice(&42i32.to_be_bytes());
        put_string(&mut frame, "rdkafka");
        let token = b"\0$ConnectionString\0Endpoint=sb://x/;SharedAccessKey=k";
        frame.extend_from_slice(&(token.len() as i32).to_be_bytes());
        frame.extend_from_slice(token);
        let header = request_header(&frame).expect("header");
        assert_eq!(
            (header.api_key, header.api_version, header.correlation_id),
            (36, 1, 42)
        );
        let bytes = authenticate_bytes(&frame[header.body_offset..]).expect("auth bytes");
        assert_eq!(
            plain_credentials(bytes),
            Some((
                &b"$ConnectionString"[..],
                &b"Endpoint=sb://x/;SharedAccessKey=k"[..]
            ))
        );
        assert_eq!(plain_credentials(b"no separators"), None);
        assert!(request_header(&[0, 17]).is_err());
        let mut handshake = Vec::new();
        put_string(&mut handshake, "PLAIN");
        assert_eq!(handshake_mechanism(&handshake).expect("mechanism"), "PLAIN");
    }

    #[test]
    fn sasl_responses_are_framed() {
        let failure = authenticate_response(9, 1, SASL_AUTHENTICATION_FAILED, Some("wrong"));
        // length, correlation id, error 58, message "wrong", empty bytes, lifetime.
        assert_eq!(&failure[..4], &(failure.len() as i32 - 4).to_be_bytes());
        assert_eq!(&failure[4..8], &9i32.to_be_bytes());
        assert_eq!(&failure[8..10], &58i16.to_be_bytes());
        assert_eq!(&failure[10..17], b"\0\x05wrong");
        assert_eq!(failure.len(), 4 + 4 + 2 + 7 + 4 + 8);
        let handshake = handshake_response(3, 0, &["PLAIN"]);
        assert_eq!(&handshake[8..], b"\0\0\0\0\0\x01\0\x05PLAIN");
    }
}
