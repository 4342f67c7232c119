//! Picks the preset for a record (`preset = "auto"`) from its shape.

use vrl::value::{ObjectMap, Value};

fn get<'a>(map: &'a ObjectMap, key: &str) -> Option<&'a Value> {
    map.get(key).or_else(|| {
        map.iter()
            .find(|(k, _)| k.as_str().eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

fn text<'a>(map: &'a ObjectMap, key: &str) -> &'a str {
    match get(map, key) {
        Some(Value::Bytes(b)) => std::str::from_utf8(b).unwrap_or(""),
        Some(Value::String(s)) => s,
        _ => "",
    }
}

fn number(map: &ObjectMap, key: &str) -> Option<i64> {
    match get(map, key)? {
        Value::Integer(n) => Some(*n),
        Value::Bytes(b) => std::str::from_utf8(b).ok()?.trim().parse().ok(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The index, among `presets`, of the one that fits this record; the last preset is the
/// fallback (`generic`), and a single preset (chosen by name) is always used.
pub fn select<T>(presets: &[T], name: impl Fn(&T) -> &str, root: &Value) -> usize {
    if presets.len() <= 1 {
        return 0;
    }
    let wanted = detect(root);
    presets
        .iter()
        .position(|p| name(p) == wanted)
        .unwrap_or(presets.len() - 1)
}

/// The name of the preset that fits this record.
pub fn detect(value: &Value) -> &'static str {
    let Value::Object(map) = value else {
        return "generic";
    };
    let odata = [text(map, "@odata.type"), text(map, "at_sign_odata_type")].concat();
    if odata.ends_with("security.alert") {
        return "graph_alert_v2";
    }
    if odata.ends_with("security.incident") {
        return "graph_incident";
    }
    if get(map, "RecordType").is_some()
        && (get(map, "CreationTime").is_some()
            || get(map, "Workload").is_some()
            || get(map, "OfficeWorkload").is_some())
    {
        return management(map);
    }
    let has = |key: &str| get(map, key).is_some();
    // A Defender for Cloud Apps SIEM-agent line as VRL's parse_cef reads it (the `syslog`
    // source with `decoding = "cef"`).
    if text(map, "deviceVendor") == "MCAS" && text(map, "deviceProduct") == "SIEM_Agent" {
        return if text(map, "deviceEventClassId").starts_with("ALERT_") {
            "mda_alert"
        } else {
            "mda_activity"
        };
    }
    if has("incidentWebUrl") {
        return "graph_incident";
    }
    if has("serviceSource") && has("detectionSource") {
        return "graph_alert_v2";
    }
    if has("machineId") && has("alertCreationTime") {
        return "defender_endpoint_alert";
    }
    // Defender for Cloud Apps: activities carry `appName`, alerts `title` and a
    // `severityValue`/`threatScore` (their apps are in `entities[]`).
    if has("_id") && (has("appName") || has("severityValue") || has("threatScore")) {
        return if has("title") {
            "mda_alert"
        } else {
            "mda_activity"
        };
    }
    let category = text(map, "category");
    if category.contains("SignInLogs") || (has("userPrincipalName") && has("appDisplayName")) {
        return "entra_signin";
    }
    if category == "AuditLogs"
        || has("activityDisplayName")
        || text(map, "SourceSystem") == "Azure AD"
    {
        return "entra_directory_audit";
    }
    if category.starts_with("AdvancedHunting") || (has("ActionType") && has("Timestamp")) {
        return "defender_xdr_event";
    }
    "generic"
}

fn management(map: &ObjectMap) -> &'static str {
    let record_type = number(map, "RecordType").unwrap_or(-1);
    let workload = match text(map, "Workload") {
        "" => text(map, "OfficeWorkload"),
        w => w,
    };
    match (record_type, workload) {
        (11 | 13 | 33, _) => "o365_dlp",
        (40, _) | (_, "SecurityComplianceCenter") => "o365_security_compliance_alert",
        (28 | 41 | 47, _) | (_, "ThreatIntelligence") => "o365_threat_intelligence",
        (8 | 9 | 15, _) | (_, "AzureActiveDirectory") => "o365_azure_ad",
        (1, "Exchange") => "o365_exchange_admin",
        (_, "Exchange") => "o365_exchange_mailbox",
        (_, "SharePoint" | "OneDrive") => "o365_sharepoint",
        (_, "MicrosoftTeams") => "o365_teams",
        (_, "PowerBI") => "o365_power_bi",
        (261, _) | (_, "Copilot") => "o365_copilot",
        _ => "o365_generic",
    }
}
