//! The Defender for Endpoint alerts of the world: the Graph world's alerts whose
//! `serviceSource` is `microsoftDefenderForEndpoint`, each written in MDE's own shape
//! (reference §3.3; the documented example responses): PascalCase enum values, a numeric
//! `incidentId`, the device as `machineId`/`computerDnsName`, `relatedUser`, and `evidence`
//! entities with MDE's flat fields (every key present, `null` when not applicable).

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::config::M365Config;
use crate::graph::{GraphResource, graph_ground_truth, graph_versions};

/// The Graph `serviceSource` of the alerts MDE serves.
const SERVICE_SOURCE: &str = "microsoftDefenderForEndpoint";

/// Every field an MDE evidence entity carries, in the documented order.
const EVIDENCE_FIELDS: [&str; 25] = [
    "entityType",
    "evidenceCreationTime",
    "sha1",
    "sha256",
    "fileName",
    "filePath",
    "processId",
    "processCommandLine",
    "processCreationTime",
    "parentProcessId",
    "parentProcessCreationTime",
    "parentProcessFileName",
    "parentProcessFilePath",
    "ipAddress",
    "url",
    "registryKey",
    "registryHive",
    "registryValueType",
    "registryValue",
    "accountName",
    "domainName",
    "userSid",
    "aadUserId",
    "userPrincipalName",
    "detectionStatus",
];

/// The MDE alerts of `tenant` created at or after `from`, each in its latest version visible
/// at `until`; `evidence` filled when `expand`, else empty (as without `$expand=evidence`).
pub(crate) fn alerts(
    config: &M365Config,
    tenant: &str,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
    expand: bool,
) -> Vec<Value> {
    graph_ground_truth(config, tenant, GraphResource::Alerts, from, until)
        .iter()
        .filter(|a| a["serviceSource"] == SERVICE_SOURCE)
        .map(|a| to_mde(a, expand))
        .collect()
}

/// Every version (id, lastUpdateTime) of the MDE alerts of `tenant` created at or after
/// `from` and visible at `until`, sorted.
pub(crate) fn versions(
    config: &M365Config,
    tenant: &str,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Vec<(String, DateTime<Utc>)> {
    let ids: std::collections::HashSet<String> =
        graph_ground_truth(config, tenant, GraphResource::Alerts, from, until)
            .iter()
            .filter(|a| a["serviceSource"] == SERVICE_SOURCE)
            .filter_map(|a| a["id"].as_str().map(str::to_string))
            .collect();
    graph_versions(config, tenant, GraphResource::Alerts, from, until)
        .into_iter()
        .filter(|(id, _)| ids.contains(id))
        .collect()
}

/// `inProgress` → `InProgress`.
fn pascal(value: &Value) -> Value {
    match value.as_str() {
        Some(text) if !text.is_empty() => {
            let mut chars = text.chars();
            let first = chars.next().map(|c| c.to_ascii_uppercase());
            json!(first.into_iter().chain(chars).collect::<String>())
        }
        _ => Value::Null,
    }
}

/// Graph's `unknown` verdicts are MDE's `null`.
fn verdict(value: &Value) -> Value {
    match value.as_str() {
        None | Some("unknown") | Some("unknownFutureValue") => Value::Null,
        Some(_) => pascal(value),
    }
}

fn severity(value: &Value) -> Value {
    match value.as_str() {
        Some("unknown") | None => json!("UnSpecified"),
        Some(_) => pascal(value),
    }
}

fn detection_source(value: &Value) -> Value {
    json!(match value.as_str().unwrap_or_default() {
        "microsoftDefenderForEndpoint" => "WindowsDefenderAtp",
        "antivirus" => "WindowsDefenderAv",
        "smartScreen" => "WindowsDefenderSmartScreen",
        "customDetection" => "CustomDetection",
        "automatedInvestigation" => "AutomatedInvestigation",
        other => return pascal(&json!(other)),
    })
}

fn investigation_state(status: &str, classification: &Value) -> &'static str {
    match status {
        "new" => "Queued",
        "inProgress" => "Running",
        _ if classification == "truePositive" => "SuccessfullyRemediated",
        _ => "Benign",
    }
}

/// The evidence's `@odata.type` without its namespace (`userEvidence`).
fn kind(evidence: &Value) -> &str {
    evidence["@odata.type"]
        .as_str()
        .and_then(|t| t.rsplit('.').next())
        .unwrap_or_default()
}

/// A Graph evidence item as an MDE evidence entity; `None` for kinds MDE does not list
/// (the device is the alert's `machineId`).
fn evidence(graph: &Value) -> Option<Value> {
    let mut e: Map<String, Value> = EVIDENCE_FIELDS
        .iter()
        .map(|f| (f.to_string(), Value::Null))
        .collect();
    let mut set = |field: &str, value: &Value| {
        if !value.is_null() {
            e.insert(field.into(), value.clone());
        }
    };
    set("evidenceCreationTime", &graph["createdDateTime"]);
    let entity = match kind(graph) {
        "userEvidence" => {
            let account = &graph["userAccount"];
            set("accountName", &account["accountName"]);
            set("domainName", &account["domainName"]);
            set("userSid", &account["userSid"]);
            set("aadUserId", &account["azureAdUserId"]);
            set("userPrincipalName", &account["userPrincipalName"]);
            "User"
        }
        "processEvidence" => {
            let image = &graph["imageFile"];
            let parent = &graph["parentProcessImageFile"];
            set("sha1", &image["sha1"]);
            set("sha256", &image["sha256"]);
            set("fileName", &image["fileName"]);
            set("filePath", &image["filePath"]);
            set("processId", &graph["processId"]);
            set("processCommandLine", &graph["processCommandLine"]);
            set("processCreationTime", &graph["processCreationDateTime"]);
            set("parentProcessId", &graph["parentProcessId"]);
            set(
                "parentProcessCreationTime",
                &graph["parentProcessCreationDateTime"],
            );
            set("parentProcessFileName", &parent["fileName"]);
            set("parentProcessFilePath", &parent["filePath"]);
            set("detectionStatus", &pascal(&graph["detectionStatus"]));
            "Process"
        }
        "fileEvidence" => {
            let file = &graph["fileDetails"];
            set("sha1", &file["sha1"]);
            set("sha256", &file["sha256"]);
            set("fileName", &file["fileName"]);
            set("filePath", &file["filePath"]);
            set("detectionStatus", &pascal(&graph["detectionStatus"]));
            "File"
        }
        "ipEvidence" => {
            set("ipAddress", &graph["ipAddress"]);
            "Ip"
        }
        "urlEvidence" => {
            set("url", &graph["url"]);
            "Url"
        }
        "registryKeyEvidence" | "registryValueEvidence" => {
            set("registryKey", &graph["registryKey"]);
            set("registryHive", &graph["registryHive"]);
            set("registryValueType", &graph["registryValueType"]);
            set("registryValue", &graph["registryValue"]);
            "Registry"
        }
        _ => return None,
    };
    e.insert("entityType".into(), json!(entity));
    Some(Value::Object(e))
}

/// A Graph alerts_v2 record of Defender for Endpoint in MDE's shape.
pub(crate) fn to_mde(graph: &Value, expand: bool) -> Value {
    let items = graph["evidence"].as_array().cloned().unwrap_or_default();
    let device = items.iter().find(|e| kind(e) == "deviceEvidence");
    let user = items
        .iter()
        .find(|e| kind(e) == "userEvidence")
        .map(|e| &e["userAccount"]);
    let status = graph["status"].as_str().unwrap_or("new");
    let incident = graph["incidentId"]
        .as_str()
        .and_then(|id| id.parse::<u64>().ok())
        .map_or(Value::Null, |id| json!(id));
    let comments: Vec<Value> = graph["comments"]
        .as_array()
        .map(|c| {
            c.iter()
                .map(|c| {
                    json!({
                        "comment": c["comment"],
                        "createdBy": c["createdByDisplayName"],
                        "createdTime": c["createdDateTime"],
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let evidence: Vec<Value> = if expand {
        items.iter().filter_map(evidence).collect()
    } else {
        Vec::new()
    };
    json!({
        "id": graph["id"],
        "incidentId": incident,
        "investigationId": Value::Null,
        "assignedTo": graph["assignedTo"],
        "severity": severity(&graph["severity"]),
        "status": if status == "unknownFutureValue" { json!("Unknown") } else { pascal(&graph["status"]) },
        "classification": verdict(&graph["classification"]),
        "determination": verdict(&graph["determination"]),
        "investigationState": investigation_state(status, &graph["classification"]),
        "detectionSource": detection_source(&graph["detectionSource"]),
        "detectorId": graph["detectorId"],
        "category": graph["category"],
        "threatFamilyName": graph["threatFamilyName"],
        "title": graph["title"],
        "description": graph["description"],
        "alertCreationTime": graph["createdDateTime"],
        "firstEventTime": graph["firstActivityDateTime"],
        "lastEventTime": graph["lastActivityDateTime"],
        "lastUpdateTime": graph["lastUpdateDateTime"],
        "resolvedTime": graph["resolvedDateTime"],
        "machineId": device.map_or(Value::Null, |d| d["mdeDeviceId"].clone()),
        "computerDnsName": device.map_or(Value::Null, |d| d["deviceDnsName"].clone()),
        "rbacGroupName": device.map_or(Value::Null, |d| d["rbacGroupName"].clone()),
        "aadTenantId": graph["tenantId"],
        "threatName": graph["threatDisplayName"],
        "mitreTechniques": graph["mitreTechniques"],
        "relatedUser": user.map_or(Value::Null, |u| json!({
            "userName": u["accountName"],
            "domainName": u["domainName"],
        })),
        "comments": comments,
        "evidence": evidence,
    })
}
