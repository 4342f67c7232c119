//! Renders option defaults the way a user writes them, for `siemflow list` and the docs.
//!
//! Used as `serialize_with` on config fields: serde ignores it (the configs only
//! deserialize) while schemars uses it to print the default.

use serde::Serializer;
use siemflow_core::decoding::Decoding;
pub use siemflow_core::units::{serialize_duration as duration, serialize_size as size};

/// A decoding as its config spelling.
pub fn decoding<S: Serializer>(value: &Decoding, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(match value {
        Decoding::Json => "json",
        Decoding::Text => "text",
    })
}
