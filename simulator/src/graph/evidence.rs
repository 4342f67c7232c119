//! Alert evidence: polymorphic by `@odata.type`, with the common base fields and each type's
//! own (reference §2.4, the alerts_v2 documentation example).

use serde_json::{Map, Value, json};

use super::products::EvidenceKind;
use super::time::{HOUR, MINUTE, Ticks, format};
use crate::world::rng::Rng;
use crate::world::{TenantProfile, User};

const FILES: [(&str, &str, &str); 5] = [
    (
        "MsSense.exe",
        "C:\\Program Files\\Windows Defender Advanced Threat Protection",
        "Microsoft Corporation",
    ),
    ("invoice-8841.pdf.exe", "C:\\Users\\Public\\Downloads", ""),
    ("mimikatz.exe", "C:\\Windows\\Temp", ""),
    (
        "salaries-2026.xlsx",
        "https://contoso.sharepoint.com/sites/Finance/Shared Documents",
        "",
    ),
    ("update.ps1", "C:\\ProgramData\\Microsoft\\Update", ""),
];
const COMMAND_LINES: [&str; 3] = [
    "powershell.exe -nop -w hidden -enc SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQA",
    "\"MsSense.exe\"",
    "rundll32.exe C:\\Windows\\Temp\\a.dll,Start",
];
const URLS: [&str; 3] = [
    "https://login-microsoftonline.example.net/common/oauth2",
    "http://invoice-portal.example.org/view?id=8841",
    "https://sharepoint-docs.example.com/s/Q3",
];

/// One evidence item of `kind` for an alert created at `created` about `user`.
pub(crate) fn evidence(
    kind: EvidenceKind,
    t: &TenantProfile,
    user: &User,
    created: Ticks,
    rng: &mut Rng,
) -> Value {
    let (odata_type, own) = match kind {
        EvidenceKind::Device => ("deviceEvidence", device(t, user, created, rng)),
        EvidenceKind::File => ("fileEvidence", file(user, rng)),
        EvidenceKind::Process => ("processEvidence", process(user, created, rng)),
        EvidenceKind::RegistryKey => (
            "registryKeyEvidence",
            json!({
                "registryKey": "SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Run",
                "registryHive": "HKEY_LOCAL_MACHINE",
            }),
        ),
        EvidenceKind::User => ("userEvidence", json!({"userAccount": account(t, user)})),
        EvidenceKind::Ip => (
            "ipEvidence",
            json!({
                "ipAddress": rng.public_ipv4(),
                "countryLetterCode": *rng.pick(&["US", "NL", "SG", "BR", "RU"]),
            }),
        ),
        EvidenceKind::Url => ("urlEvidence", json!({"url": *rng.pick(&URLS)})),
        EvidenceKind::Mailbox => (
            "mailboxEvidence",
            json!({
                "primaryAddress": user.upn,
                "displayName": user.display,
                "userAccount": account(t, user),
            }),
        ),
        EvidenceKind::AnalyzedMessage => {
            ("analyzedMessageEvidence", message(t, user, created, rng))
        }
        EvidenceKind::CloudApplication => (
            "cloudApplicationEvidence",
            json!({
                "appId": 11161,
                "displayName": "Microsoft 365",
                "instanceId": 0,
                "instanceName": "Microsoft 365",
                "saasAppId": 11161,
            }),
        ),
        EvidenceKind::AzureResource => {
            let name = format!("{}data{}", t.company, rng.below(100));
            (
                "azureResourceEvidence",
                json!({
                    "resourceId": format!(
                        "/subscriptions/{}/resourceGroups/rg-prod/providers/Microsoft.Storage/storageAccounts/{name}",
                        rng.guid()
                    ),
                    "resourceName": name,
                    "resourceType": "Microsoft.Storage/storageAccounts",
                }),
            )
        }
    };
    let mut m = Map::new();
    m.insert(
        "@odata.type".into(),
        Value::String(format!("#microsoft.graph.security.{odata_type}")),
    );
    m.insert("createdDateTime".into(), Value::String(format(created)));
    m.insert(
        "verdict".into(),
        json!(*rng.pick(&["unknown", "suspicious", "malicious", "noThreatsFound"])),
    );
    m.insert(
        "remediationStatus".into(),
        json!(*rng.pick(&["none", "none", "remediated", "prevented", "blocked"])),
    );
    m.insert("remediationStatusDetails".into(), Value::Null);
    let role = match kind {
        EvidenceKind::Device | EvidenceKind::User if rng.chance(0.5) => vec!["compromised"],
        EvidenceKind::Ip | EvidenceKind::Url if rng.chance(0.5) => vec!["attacker"],
        _ => vec![],
    };
    m.insert("roles".into(), json!(role));
    m.insert("detailedRoles".into(), json!([]));
    m.insert("tags".into(), json!([]));
    if let Value::Object(own) = own {
        m.extend(own);
    }
    Value::Object(m)
}

fn account(t: &TenantProfile, user: &User) -> Value {
    let name = user.upn.split('@').next().unwrap_or_default();
    json!({
        "accountName": name,
        "domainName": t.company.to_uppercase(),
        "userSid": user.sid,
        "azureAdUserId": user.object_id,
        "userPrincipalName": user.upn,
        "displayName": user.display,
    })
}

fn mde_device_id(user: &User) -> String {
    // Stable per device: derived from the device name, 40 hex digits like MDE's ids.
    let mut rng = Rng::new(crate::world::rng::hash_str(&user.device));
    rng.hex(40)
}

fn device(t: &TenantProfile, user: &User, created: Ticks, rng: &mut Rng) -> Value {
    json!({
        "firstSeenDateTime": format(created - 200 * 24 * HOUR - rng.below((100 * 24 * HOUR) as u64) as Ticks),
        "mdeDeviceId": mde_device_id(user),
        "azureAdDeviceId": if rng.chance(0.7) { Value::String(rng.guid()) } else { Value::Null },
        "deviceDnsName": format!("{}.{}", user.device.to_lowercase(), t.domain),
        "hostName": user.device,
        "osPlatform": *rng.pick(&["Windows11", "Windows10", "WindowsServer2022"]),
        "osBuild": *rng.pick(&[22631, 22621, 19045, 20348]),
        "version": *rng.pick(&["23H2", "22H2", "Other"]),
        "healthStatus": "active",
        "riskScore": *rng.pick(&["low", "medium", "high"]),
        "rbacGroupId": 75,
        "rbacGroupName": "UnassignedGroup",
        "onboardingStatus": "onboarded",
        "defenderAvStatus": *rng.pick(&["updated", "notUpdated", "unknown"]),
        "ipInterfaces": [user.ip],
        "loggedOnUsers": [{"accountName": user.upn.split('@').next().unwrap_or_default(), "domainName": t.company.to_uppercase()}],
        "vmMetadata": null,
    })
}

fn file_details(rng: &mut Rng) -> Value {
    let (name, path, publisher) = *rng.pick(&FILES);
    json!({
        "sha1": rng.hex(40),
        "sha256": rng.hex(64),
        "fileName": name,
        "filePath": path,
        "fileSize": 10_000 + rng.below(8_000_000),
        "filePublisher": if publisher.is_empty() { Value::Null } else { json!(publisher) },
        "signer": null,
        "issuer": null,
    })
}

fn file(user: &User, rng: &mut Rng) -> Value {
    json!({
        "detectionStatus": *rng.pick(&["detected", "blocked", "prevented"]),
        "mdeDeviceId": mde_device_id(user),
        "fileDetails": file_details(rng),
    })
}

fn process(user: &User, created: Ticks, rng: &mut Rng) -> Value {
    let started = created - rng.below((2 * HOUR) as u64) as Ticks;
    json!({
        "processId": 1000 + rng.below(30_000),
        "parentProcessId": 400 + rng.below(1_000),
        "processCommandLine": *rng.pick(&COMMAND_LINES),
        "processCreationDateTime": format(started),
        "parentProcessCreationDateTime": format(started - rng.below((8 * HOUR) as u64) as Ticks),
        "detectionStatus": "detected",
        "mdeDeviceId": mde_device_id(user),
        "imageFile": file_details(rng),
        "parentProcessImageFile": {
            "sha1": null, "sha256": null, "fileName": "explorer.exe", "filePath": "C:\\Windows",
            "fileSize": 5_087_216, "filePublisher": "Microsoft Corporation", "signer": null, "issuer": null,
        },
        "userAccount": {
            "accountName": user.upn.split('@').next().unwrap_or_default(),
            "domainName": null,
            "userSid": user.sid,
            "azureAdUserId": user.object_id,
            "userPrincipalName": user.upn,
            "displayName": user.display,
        },
    })
}

fn message(t: &TenantProfile, user: &User, created: Ticks, rng: &mut Rng) -> Value {
    let sender = *rng.pick(&[
        "billing@invoice-portal.example.org",
        "it-support@contoso-helpdesk.example.net",
    ]);
    let domain = sender.split('@').nth(1).unwrap_or_default();
    let url = *rng.pick(&URLS);
    json!({
        "networkMessageId": rng.guid(),
        "internetMessageId": format!("<{}@{}>", rng.hex(24), domain),
        "subject": *rng.pick(&["Invoice 8841 overdue", "Action required: password expiry", "Shared document: Q3 forecast"]),
        "language": "en",
        "senderIp": rng.public_ipv4(),
        "recipientEmailAddress": user.upn,
        "antiSpamDirection": "Inbound",
        "deliveryAction": *rng.pick(&["Delivered", "Blocked", "Replaced"]),
        "deliveryLocation": *rng.pick(&["Inbox/folder", "Quarantine", "Junk folder"]),
        "urn": format!("urn:MailEntity:{}", rng.hex(32)),
        "threats": ["Phish"],
        "threatDetectionMethods": ["URL detonation reputation"],
        "urls": [url],
        "urlCount": 1,
        "attachmentsCount": rng.below(2),
        "receivedDateTime": format(created - MINUTE - rng.below((30 * MINUTE) as u64) as Ticks),
        "p1Sender": {"emailAddress": sender, "displayName": null, "domainName": domain},
        "p2Sender": {"emailAddress": sender, "displayName": "Billing", "domainName": domain},
        "recipientDomain": t.domain,
    })
}
