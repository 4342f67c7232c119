//! LEEF attribute names: CEF preset keys translated to QRadar's predefined attributes,
//! key validation and types.

use crate::siem_mapping::{Kind, Mapping, Source};

/// CEF keys with a QRadar predefined equivalent.
const PREDEFINED: &[(&str, &str)] = &[
    ("rt", "devTime"),
    ("suser", "usrName"),
    ("spt", "srcPort"),
    ("dpt", "dstPort"),
    ("shost", "identHostName"),
    ("request", "url"),
    ("sntdom", "domain"),
];

/// Rewrites a CEF-keyed preset for LEEF: predefined names, and each custom key named
/// after its label (`cs1Label=OrganizationId` + `cs1` → `OrganizationId`).
pub fn translate(mapping: &mut Mapping) {
    let labels: Vec<(String, String)> = mapping
        .extension
        .iter()
        .filter_map(|(key, source)| match (key.strip_suffix("Label"), source) {
            (Some(base), Source::Const(label)) => Some((base.to_string(), sanitize(label))),
            _ => None,
        })
        .collect();
    let extension = std::mem::take(&mut mapping.extension);
    for (key, source) in extension {
        if key.ends_with("Label") && labels.iter().any(|(base, _)| format!("{base}Label") == key) {
            continue;
        }
        let new_key = match labels.iter().find(|(base, _)| *base == key) {
            Some((_, label)) => label.clone(),
            None => PREDEFINED
                .iter()
                .find(|(cef, _)| *cef == key)
                .map_or(key, |(_, leef)| leef.to_string()),
        };
        mapping.set(&new_key, Some(source));
    }
}

fn sanitize(label: &str) -> String {
    label
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

/// The type of an attribute, or why its name is not valid.
pub fn kind(key: &str) -> Result<Kind, String> {
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(format!(
            "invalid LEEF attribute name `{key}`: letters, digits and `_` only"
        ));
    }
    Ok(match key {
        "devTime" | "start" | "end" | "deviceCustomDate1" | "deviceCustomDate2"
        | "LastUpdateDateTime" | "LastUpdateTime" => Kind::Time,
        "src" | "dst" | "srcPreNAT" | "dstPreNAT" | "srcPostNAT" | "dstPostNAT" | "identSrc" => {
            Kind::Ip
        }
        // A CEF preset's `dvc`/`c6aN` pair (IPv4/IPv6 of one field) keeps its split here:
        // `dvc` and attributes named after an IPv6 label take one family each.
        "dvc" => Kind::Ipv4,
        k if k.contains("IPv6") => Kind::Ipv6,
        "srcPort" | "dstPort" | "srcPreNATPort" | "dstPreNATPort" | "srcPostNATPort"
        | "dstPostNATPort" | "srcBytes" | "dstBytes" | "srcPackets" | "dstPackets"
        | "totalPackets" => Kind::Int,
        "usrName" | "accountName" | "identHostName" | "identNetBios" | "identGrpName" => {
            Kind::Text(255)
        }
        _ => Kind::Text(usize::MAX),
    })
}
