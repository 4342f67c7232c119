//! Renders option defaults the way a user writes them, for `siemflow list` and the docs.
//!
//! Used as `serialize_with` on config fields: serde ignores it (the configs only
//! deserialize) while schemars uses it to print the default.

use std::time::Duration;

use serde::Serializer;
use siemflow_core::decoding::Decoding;

/// A duration as `"1s"`, `"200ms"`.
pub fn duration<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&humantime::format_duration(*value).to_string())
}

/// A byte count as `"1MiB"`, `"64KiB"` or plain bytes.
pub fn size<S: Serializer>(value: &u64, serializer: S) -> Result<S::Ok, S::Error> {
    let text = match *value {
        0 => "0".to_string(),
        v if v % (1 << 30) == 0 => format!("{}GiB", v >> 30),
        v if v % (1 << 20) == 0 => format!("{}MiB", v >> 20),
        v if v % (1 << 10) == 0 => format!("{}KiB", v >> 10),
        v => v.to_string(),
    };
    serializer.serialize_str(&text)
}

/// A decoding as its config spelling.
pub fn decoding<S: Serializer>(value: &Decoding, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(match value {
        Decoding::Json => "json",
        Decoding::Text => "text",
    })
}
