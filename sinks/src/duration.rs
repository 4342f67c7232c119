//! Serde helpers for duration options, so schema defaults read `"30s"` like the config does.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// The word that turns an optional duration off.
const DISABLED: &str = "none";

/// Shows a duration the way a user writes it (`"30s"`); used for schema defaults.
pub(crate) use siemflow_core::units::serialize_duration as serialize;

/// Reads `"none"` as off, anything else as a duration such as `"10s"`.
pub(crate) fn deserialize_optional<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(d)?;
    if text.trim().eq_ignore_ascii_case(DISABLED) {
        return Ok(None);
    }
    siemflow_core::units::parse_duration(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// Shows an optional duration, `"none"` when off.
pub(crate) fn serialize_optional<S: Serializer>(
    value: &Option<Duration>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(duration) => serialize(duration, s),
        None => s.serialize_str(DISABLED),
    }
}
