//! CEF extension keys: validation, wire types and maximum lengths (CEF v25).

use crate::siem_mapping::Kind;

/// The type of a key, or why the key is not valid.
pub fn kind(key: &str) -> Result<Kind, String> {
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(format!(
            "invalid CEF extension key `{key}`: keys are letters and digits only"
        ));
    }
    Ok(match key {
        "rt"
        | "start"
        | "end"
        | "art"
        | "deviceCustomDate1"
        | "deviceCustomDate2"
        | "fileCreateTime"
        | "fileModificationTime"
        | "oldFileCreateTime"
        | "oldFileModificationTime"
        | "flexDate1" => Kind::Time,
        "spt"
        | "dpt"
        | "cnt"
        | "fsize"
        | "oldFileSize"
        | "in"
        | "out"
        | "cn1"
        | "cn2"
        | "cn3"
        | "spid"
        | "dpid"
        | "sourceTranslatedPort"
        | "destinationTranslatedPort" => Kind::Int,
        "cfp1" | "cfp2" | "cfp3" | "cfp4" => Kind::Float,
        // CEF v25 types `src`/`dst` IPv4, but parsers accept IPv6 there (siem-sinks §6.4);
        // `dvc` stays IPv4 and the `c6a` keys IPv6, so a preset can split one field.
        "src" | "dst" | "sourceTranslatedAddress" | "destinationTranslatedAddress" => Kind::Ip,
        "dvc" => Kind::Ipv4,
        "c6a1" | "c6a2" | "c6a3" | "c6a4" => Kind::Ipv6,
        "app" | "proto" | "deviceVersion" => Kind::Text(31),
        "act" | "outcome" => Kind::Text(63),
        "dvchost" => Kind::Text(100),
        "externalId" => Kind::Text(40),
        "deviceExternalId" | "fileHash" | "dtz" | "oldFileHash" => Kind::Text(255),
        "cs1" | "cs2" | "cs3" | "cs4" | "cs5" | "cs6" => Kind::Text(4000),
        _ => Kind::Text(1023),
    })
}

/// Custom keys ArcSight only understands together with their `…Label`.
pub fn needs_label(key: &str) -> bool {
    matches!(
        key,
        "cs1"
            | "cs2"
            | "cs3"
            | "cs4"
            | "cs5"
            | "cs6"
            | "cn1"
            | "cn2"
            | "cn3"
            | "cfp1"
            | "cfp2"
            | "cfp3"
            | "cfp4"
            | "c6a1"
            | "c6a2"
            | "c6a3"
            | "c6a4"
            | "deviceCustomDate1"
            | "deviceCustomDate2"
            | "flexString1"
            | "flexString2"
            | "flexDate1"
    )
}
