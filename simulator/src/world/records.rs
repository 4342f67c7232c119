//! Audit records shaped like the real feed (reference §1.8–1.10 and the fixtures), with the
//! real feed's quirks kept on purpose: numbers as strings, naive CreationTime, JSON inside
//! strings, ClientIP as IPv6 with port or null.

use serde_json::{Value, json};

use super::generate::to_utc;
use super::rng::Rng;
use super::{TenantProfile, User};

const USER_AGENTS: [&str; 5] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17726; Pro)",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "OneDriveMpc-Transform_Thumbnail/1.0",
];
const APPS: [(&str, &str); 6] = [
    (
        "00000002-0000-0ff1-ce00-000000000000",
        "Office 365 Exchange Online",
    ),
    (
        "00000003-0000-0ff1-ce00-000000000000",
        "Office 365 SharePoint Online",
    ),
    ("1fec8e78-bce4-4aaf-ab1b-5451cc387264", "Microsoft Teams"),
    ("d3590ed6-52b3-4102-aeff-aad2292ab01c", "Microsoft Office"),
    ("00000003-0000-0000-c000-000000000000", "Microsoft Graph"),
    (
        "89bee1f7-5e6e-4d8a-9f3d-ecd601259da7",
        "Office365 Shell WCSS-Client",
    ),
];
const FILES: [(&str, &str); 8] = [
    ("Q3-forecast", "xlsx"),
    ("Board deck", "pptx"),
    ("Contract - Northwind", "docx"),
    ("salaries-2026", "xlsx"),
    ("Architecture overview", "vsdx"),
    ("customer-export", "csv"),
    ("Onboarding checklist", "docx"),
    ("invoice-8841", "pdf"),
];
const SITES: [&str; 5] = ["Finance", "HR", "Engineering", "Sales", "Legal"];

/// One record of content type `ct` (index into CONTENT_TYPES) created at `at_ms`.
pub(crate) fn record(t: &TenantProfile, ct: usize, at_ms: i64, rng: &mut Rng) -> Value {
    let user = rng.pick(&t.users).clone();
    let mut r = match ct {
        0 => azure_ad(t, &user, rng),
        1 => exchange(t, &user, rng),
        2 => sharepoint(t, &user, rng),
        3 => general(t, &user, at_ms, rng),
        _ => dlp(t, &user, rng),
    };
    if let Value::Object(m) = &mut r {
        m.insert(
            "CreationTime".into(),
            Value::String(creation_time(at_ms, rng)),
        );
        m.insert("Id".into(), Value::String(rng.guid()));
        m.insert("OrganizationId".into(), Value::String(t.id.clone()));
    }
    r
}

/// Mostly naive second-precision UTC; a few records carry `Z` or a 7-digit fraction.
fn creation_time(at_ms: i64, rng: &mut Rng) -> String {
    let dt = to_utc(at_ms);
    let roll = rng.below(100);
    if roll < 95 {
        dt.format("%Y-%m-%dT%H:%M:%S").to_string()
    } else if roll < 98 {
        dt.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        format!(
            "{}{:04}Z",
            dt.format("%Y-%m-%dT%H:%M:%S%.3f"),
            rng.below(10_000)
        )
    }
}

/// The ClientIP variants seen in real data.
fn client_ip(user: &User, rng: &mut Rng, nullable: bool) -> Value {
    let roll = rng.below(100);
    let s = match roll {
        0..=64 => user.ip.clone(),
        65..=74 => rng.public_ipv4(),
        75..=82 => rng.ipv6(),
        83..=87 => format!("[{}]:{}", rng.ipv6(), 1024 + rng.below(60_000)),
        88..=91 => format!("{}:{}", rng.public_ipv4(), 1024 + rng.below(60_000)),
        92..=94 => format!(
            "ffff:10.{}.{}.{}",
            rng.below(256),
            rng.below(256),
            1 + rng.below(254)
        ),
        _ if nullable => return Value::Null,
        _ => user.ip.clone(),
    };
    Value::String(s)
}

/// RecordType/UserType/Version: usually numbers, sometimes strings, as observed.
fn num(n: u64, rng: &mut Rng) -> Value {
    if rng.chance(0.1) {
        Value::String(n.to_string())
    } else {
        json!(n)
    }
}

fn azure_ad(t: &TenantProfile, user: &User, rng: &mut Rng) -> Value {
    let (app_id, _) = *rng.pick(&APPS);
    if rng.chance(0.75) {
        let failed = rng.chance(0.15);
        let (err, logon_error) = if failed {
            *rng.pick(&[
                ("50126", "InvalidUserNameOrPassword"),
                ("50074", "UserStrongAuthClientAuthNRequired"),
                ("50053", "IdsLocked"),
                ("50055", "InvalidPasswordExpiredPassword"),
            ])
        } else {
            ("0", "")
        };
        let ua = *rng.pick(&USER_AGENTS);
        let os = *rng.pick(&["Windows10", "MacOs", "Ios", "Android"]);
        let browser = *rng.pick(&["Edge", "Chrome", "Safari", "Rich Client"]);
        json!({
            "Operation": if failed { "UserLoginFailed" } else { "UserLoggedIn" },
            "RecordType": num(15, rng),
            "ResultStatus": if failed { "Failed" } else { "Success" },
            "UserKey": user.object_id,
            "UserType": num(0, rng),
            "Version": num(1, rng),
            "Workload": "AzureActiveDirectory",
            "ClientIP": client_ip(user, rng, true),
            "ObjectId": app_id,
            "UserId": user.upn,
            "AzureActiveDirectoryEventType": 1,
            "ExtendedProperties": [
                {"Name": "ResultStatusDetail", "Value": if failed { "Redirect" } else { "Success" }},
                {"Name": "UserAgent", "Value": ua},
                {"Name": "UserAuthenticationMethod", "Value": rng.pick(&["1", "3", "5"]).to_string()},
                {"Name": "RequestType", "Value": rng.pick(&["OAuth2:Authorize", "Login:login", "OAuth2:Token", "SAS:ProcessAuth"]).to_string()},
                {"Name": "KeepMeSignedIn", "Value": "True"}
            ],
            "ModifiedProperties": [],
            "Actor": [{"ID": user.object_id, "Type": 0}, {"ID": user.upn, "Type": 5}],
            "ActorContextId": t.id,
            "ActorIpAddress": user.ip,
            "InterSystemsId": rng.guid(),
            "IntraSystemId": rng.guid(),
            "SupportTicketId": "",
            "Target": [{"ID": app_id, "Type": 0}],
            "TargetContextId": t.id,
            "ApplicationId": app_id,
            "DeviceProperties": [
                {"Name": "OS", "Value": os},
                {"Name": "BrowserType", "Value": browser},
                {"Name": "IsCompliantAndManaged", "Value": if rng.chance(0.6) { "True" } else { "False" }},
                {"Name": "SessionId", "Value": rng.guid()}
            ],
            "ErrorNumber": err,
            "LogonError": logon_error
        })
    } else {
        let target = rng.pick(&t.users).clone();
        let (op, prop, old, new) = *rng.pick(&[
            (
                "Update user.",
                "StrongAuthenticationMethod",
                "[]",
                "[{\"MethodType\":6,\"Default\":true}]",
            ),
            (
                "Add member to group.",
                "Group.DisplayName",
                "",
                "Finance Admins",
            ),
            ("Reset user password.", "PasswordProfile", "", ""),
            ("Add user.", "AccountEnabled", "[]", "[true]"),
            (
                "Consent to application.",
                "ConsentAction.Permissions",
                "",
                "[] => [[Scope: Mail.Read, User.Read]]",
            ),
            (
                "Add service principal credentials.",
                "KeyDescription",
                "[]",
                "[\"[KeyIdentifier=5e2c, KeyType=Password, KeyUsage=Verify]\"]",
            ),
        ]);
        json!({
            "Operation": op,
            "RecordType": num(8, rng),
            "ResultStatus": "Success",
            "UserKey": format!("{}@{}", user.puid, t.domain),
            "UserType": num(0, rng),
            "Version": num(1, rng),
            "Workload": "AzureActiveDirectory",
            "ObjectId": target.upn,
            "UserId": user.upn,
            "AzureActiveDirectoryEventType": 1,
            "ExtendedProperties": [
                {"Name": "additionalDetails", "Value": "{\"UserType\":\"Member\"}"},
                {"Name": "extendedAuditEventCategory", "Value": "User"}
            ],
            "ModifiedProperties": [
                {"Name": prop, "NewValue": new, "OldValue": old},
                {"Name": "Included Updated Properties", "NewValue": prop, "OldValue": ""}
            ],
            "Actor": [
                {"ID": user.upn, "Type": 5},
                {"ID": format!("{}", user.puid), "Type": 3},
                {"ID": format!("User_{}", user.object_id), "Type": 2}
            ],
            "ActorContextId": t.id,
            "InterSystemsId": rng.guid(),
            "IntraSystemId": rng.guid(),
            "SupportTicketId": "",
            "Target": [
                {"ID": format!("User_{}", target.object_id), "Type": 2},
                {"ID": target.upn, "Type": 5}
            ],
            "TargetContextId": t.id
        })
    }
}

fn exchange(t: &TenantProfile, user: &User, rng: &mut Rng) -> Value {
    let roll = rng.below(100);
    let client_info = *rng.pick(&[
        "Client=OWA;Action=ViaProxy",
        "Client=MSExchangeRPC",
        "Client=REST;Client=RESTSystem;;",
        "Client=OutlookService;Outlook-iOS/2.0;",
    ]);
    let mut r = json!({
        "RecordType": 2,
        "ResultStatus": "Succeeded",
        "UserKey": user.puid,
        "UserType": num(0, rng),
        "Version": num(1, rng),
        "Workload": "Exchange",
        "ClientIP": client_ip(user, rng, false),
        "UserId": user.upn,
        "AppId": rng.pick(&APPS).0,
        "ClientAppId": "",
        "ClientIPAddress": user.ip,
        "ClientInfoString": client_info,
        "ExternalAccess": false,
        "InternalLogonType": 0,
        "LogonType": 0,
        "LogonUserSid": user.sid,
        "MailboxGuid": user.mailbox_guid,
        "MailboxOwnerSid": user.sid,
        "MailboxOwnerUPN": user.upn,
        "OrganizationName": t.domain,
        "OriginatingServer": format!("{}MB{:04} (15.20.{}.{})", t.region.to_uppercase(), rng.below(10_000), 7000 + rng.below(900), rng.below(40)),
        "SessionId": rng.guid(),
    });
    let Value::Object(m) = &mut r else { return r };
    let subject = format!(
        "{} {}",
        rng.pick(&["Re:", "Fwd:", "", "[External]"]),
        rng.pick(&[
            "Invoice overdue",
            "Quarterly review",
            "Password expiry notice",
            "Lunch?",
            "Contract draft v3"
        ])
    );
    let msg_id = format!(
        "<{}@{}.prod.outlook.com>",
        rng.hex(32).to_uppercase(),
        t.region
    );
    if roll < 45 {
        m.insert("Operation".into(), json!("MailItemsAccessed"));
        m.insert("RecordType".into(), num(50, rng));
        m.insert("OperationCount".into(), json!(1 + rng.below(12)));
        m.insert(
            "OperationProperties".into(),
            json!([
                {"Name": "MailAccessType", "Value": rng.pick(&["Bind", "Sync"]).to_string()},
                {"Name": "IsThrottled", "Value": "False"}
            ]),
        );
        m.insert("Folders".into(), json!([{
            "FolderItems": [
                {"InternetMessageId": msg_id, "SizeInBytes": 2000 + rng.below(200_000)},
                {"InternetMessageId": format!("<{}@{}>", rng.hex(24), t.domain), "SizeInBytes": 2000 + rng.below(90_000)}
            ],
            "Id": format!("LgAAAAA{}AAAB", rng.hex(40).to_uppercase()),
            "Path": "\\Inbox"
        }]));
    } else if roll < 70 {
        let op = *rng.pick(&[
            "Send",
            "SoftDelete",
            "MoveToDeletedItems",
            "HardDelete",
            "Update",
        ]);
        m.insert("Operation".into(), json!(op));
        m.insert(
            "RecordType".into(),
            num(if op == "Send" || op == "Update" { 2 } else { 3 }, rng),
        );
        m.insert("Item".into(), json!({
            "Id": format!("RgAAAA{}AAAJ", rng.hex(48).to_uppercase()),
            "InternetMessageId": msg_id,
            "ParentFolder": {"Id": format!("LgAAAA{}AQ", rng.hex(40).to_uppercase()), "Path": if op == "Send" { "\\Sent Items" } else { "\\Inbox" }},
            "SizeInBytes": 1000 + rng.below(500_000),
            "Subject": subject.trim()
        }));
    } else if roll < 85 {
        let forward = rng
            .pick(&["attacker@example.net", "archive@example.org"])
            .to_string();
        m.insert("Operation".into(), json!("New-InboxRule"));
        m.insert("RecordType".into(), num(1, rng));
        m.insert(
            "ResultStatus".into(),
            json!(if rng.chance(0.9) { "True" } else { "False" }),
        );
        m.insert(
            "ObjectId".into(),
            json!(format!("{}\\Rule {}", user.upn, rng.below(100))),
        );
        m.insert(
            "Parameters".into(),
            json!([
                {"Name": "AlwaysDeleteOutlookRulesBlob", "Value": "False"},
                {"Name": "Force", "Value": "False"},
                {"Name": "Name", "Value": "."},
                {"Name": "ForwardTo", "Value": forward},
                {"Name": "MarkAsRead", "Value": "True"},
                {"Name": "StopProcessingRules", "Value": "True"}
            ]),
        );
    } else {
        m.insert(
            "Operation".into(),
            json!(
                rng.pick(&["Set-Mailbox", "Add-MailboxPermission", "Set-TransportRule"])
                    .to_string()
            ),
        );
        m.insert("RecordType".into(), num(1, rng));
        m.insert("ResultStatus".into(), json!("True"));
        m.insert("UserType".into(), num(2, rng));
        m.insert("ObjectId".into(), json!(rng.pick(&t.users).upn.clone()));
        m.insert(
            "Parameters".into(),
            json!([
                {"Name": "Identity", "Value": rng.pick(&t.users).upn.clone()},
                {"Name": "User", "Value": user.upn},
                {"Name": "AccessRights", "Value": "FullAccess"},
                {"Name": "InheritanceType", "Value": "All"}
            ]),
        );
        m.insert(
            "ClientIP".into(),
            json!(format!("[{}]:{}", rng.ipv6(), 1024 + rng.below(60_000))),
        );
    }
    r
}

fn sharepoint(t: &TenantProfile, user: &User, rng: &mut Rng) -> Value {
    let onedrive = rng.chance(0.3);
    let (file, ext) = *rng.pick(&FILES);
    let site = *rng.pick(&SITES);
    let user_slug = user.upn.replace(['@', '.'], "_");
    let site_url = if onedrive {
        format!(
            "https://{}-my.sharepoint.com/personal/{user_slug}/",
            t.company
        )
    } else {
        format!("https://{}.sharepoint.com/sites/{site}/", t.company)
    };
    let folder = if onedrive {
        "Documents"
    } else {
        "Shared Documents"
    };
    let sharing = rng.chance(0.12);
    let op = if sharing {
        *rng.pick(&[
            "SharingSet",
            "AnonymousLinkCreated",
            "SharingInvitationCreated",
            "AddedToSecureLink",
        ])
    } else {
        *rng.pick(&[
            "FileAccessed",
            "FileAccessed",
            "FilePreviewed",
            "FileDownloaded",
            "FileModified",
            "FileUploaded",
            "FileDeleted",
            "FileSyncDownloadedFull",
        ])
    };
    let mut r = json!({
        "Operation": op,
        "RecordType": num(if sharing { 14 } else { 6 }, rng),
        "UserKey": format!("i:0h.f|membership|{}@live.com", user.puid.to_lowercase()),
        "UserType": num(0, rng),
        "Version": num(1, rng),
        "Workload": if onedrive { "OneDrive" } else { "SharePoint" },
        "ClientIP": client_ip(user, rng, false),
        "ObjectId": format!("{site_url}{folder}/{file}.{ext}"),
        "UserId": user.upn,
        "CorrelationId": rng.guid(),
        "EventSource": "SharePoint",
        "ItemType": "File",
        "ListId": rng.guid(),
        "ListItemUniqueId": rng.guid(),
        "Site": rng.guid(),
        "UserAgent": rng.pick(&USER_AGENTS).to_string(),
        "WebId": rng.guid(),
        "ApplicationId": rng.pick(&APPS).0,
        "HighPriorityMediaProcessing": false,
        "SourceFileExtension": ext,
        "SiteUrl": site_url,
        "SourceFileName": format!("{file}.{ext}"),
        "SourceRelativeUrl": folder,
        "IsManagedDevice": rng.chance(0.7),
        "Platform": rng.pick(&["WinDesktop", "MacDesktop", "iOS", "Android"]).to_string(),
        "GeoLocation": t.region.to_uppercase(),
    });
    if let Value::Object(m) = &mut r {
        if rng.chance(0.2) {
            m.insert("SensitivityLabelId".into(), json!(rng.guid()));
        }
        if sharing {
            m.insert(
                "TargetUserOrGroupName".into(),
                json!(if op == "AnonymousLinkCreated" {
                    "Anonymous".to_string()
                } else {
                    rng.pick(&t.users).upn.clone()
                }),
            );
            m.insert(
                "TargetUserOrGroupType".into(),
                json!(if op == "AnonymousLinkCreated" {
                    "Guest"
                } else {
                    "Member"
                }),
            );
            m.insert(
                "EventData".into(),
                json!("<PermissionsGranted>Read</PermissionsGranted>"),
            );
        }
    }
    r
}

fn general(t: &TenantProfile, user: &User, at_ms: i64, rng: &mut Rng) -> Value {
    match rng.below(100) {
        0..=34 => teams(t, user, rng),
        35..=49 => threat_intel(t, user, rng),
        50..=64 => scc_alert(t, user, at_ms, rng),
        65..=79 => power_bi(t, user, rng),
        _ => copilot(t, user, rng),
    }
}

fn teams(t: &TenantProfile, user: &User, rng: &mut Rng) -> Value {
    let op = *rng.pick(&[
        "MessageSent",
        "TeamsSessionStarted",
        "MemberAdded",
        "ChatCreated",
        "MessageRead",
        "MeetingParticipantDetail",
    ]);
    let team = *rng.pick(&SITES);
    json!({
        "Operation": op,
        "RecordType": num(25, rng),
        "UserKey": user.object_id,
        "UserType": num(0, rng),
        "Version": num(1, rng),
        "Workload": "MicrosoftTeams",
        "ClientIP": client_ip(user, rng, false),
        "UserId": user.upn,
        "CommunicationType": rng.pick(&["Team", "OneOnOne", "GroupChat"]).to_string(),
        "ChatThreadId": format!("19:{}@thread.v2", rng.hex(32)),
        "MessageId": format!("{}", 1_700_000_000_000u64 + rng.below(100_000_000_000)),
        "MessageSizeInBytes": 200 + rng.below(8000),
        "TeamName": team,
        "TeamGuid": format!("19:{}@thread.tacv2", rng.hex(32)),
        "ChannelName": "General",
        "ChannelType": "Standard",
        "ChannelGuid": format!("19:{}@thread.tacv2", rng.hex(32)),
        "ItemName": team,
        "ParticipantInfo": {"HasForeignTenantUsers": rng.chance(0.1), "HasGuestUsers": rng.chance(0.1), "HasOtherGuestUsers": false, "HasUnauthenticatedUsers": false, "ParticipatingDomains": [], "ParticipatingSIPDomains": [], "ParticipatingTenantIds": [t.id]},
        "AppAccessContext": {"AADSessionId": rng.guid(), "ClientAppId": APPS[2].0, "ClientAppName": "Microsoft Teams", "CorrelationId": rng.guid(), "UniqueTokenId": rng.hex(22)},
        "Members": [{"DisplayName": user.display, "Role": 1, "UPN": user.upn}]
    })
}

fn threat_intel(t: &TenantProfile, user: &User, rng: &mut Rng) -> Value {
    let sender = format!(
        "{}@{}",
        rng.pick(&["billing", "it-support", "ceo", "noreply"]),
        rng.pick(&["example.com", "example.net", "example.org"])
    );
    if rng.chance(0.7) {
        let verdict = *rng.pick(&["Phish", "Malware", "Spam", "Phish"]);
        json!({
            "Operation": "TIMailData",
            "RecordType": num(28, rng),
            "UserKey": "ThreatIntel",
            "UserType": num(4, rng),
            "Version": num(1, rng),
            "Workload": "ThreatIntelligence",
            "ObjectId": rng.guid(),
            "UserId": "ThreatIntel",
            "AttachmentData": [{"FileName": "invoice.html", "FileType": "html", "FileVerdict": 0, "SHA256": rng.hex(64)}],
            "AuthDetails": [{"Name": "SPF", "Value": "Fail"}, {"Name": "DKIM", "Value": "None"}, {"Name": "DMARC", "Value": "Fail"}, {"Name": "Comp Auth", "Value": "fail"}],
            "DeliveryAction": rng.pick(&["Blocked", "Delivered", "Junked"]).to_string(),
            "DetectionMethod": rng.pick(&["Spoof DMARC", "URL malicious reputation", "File detonation"]).to_string(),
            "DetectionType": rng.pick(&["Inline", "Delayed", "ZAP"]).to_string(),
            "Directionality": "Inbound",
            "EventDeepLink": format!("https://security.microsoft.com/?hash=/threatexplorer?messageParams={}", rng.guid()),
            "InternetMessageId": format!("<{}@example.com>", rng.hex(20)),
            "MessageTime": to_utc(1_700_000_000_000).format("%Y-%m-%dT%H:%M:%S").to_string(),
            "NetworkMessageId": rng.guid(),
            "OriginalDeliveryLocation": "Quarantine",
            "LatestDeliveryLocation": "Quarantine",
            "P1Sender": sender,
            "P2Sender": sender,
            "Policy": "Antiphish",
            "PolicyAction": "MoveToJmf",
            "Recipients": [user.upn],
            "SenderIp": rng.public_ipv4(),
            "Subject": "Action required: your mailbox is full",
            "Verdict": verdict,
            "PhishConfidenceLevel": "High",
            "ThreatsAndDetectionTech": [format!("{verdict}: [Spoof DMARC]")],
            "SystemOverrides": []
        })
    } else {
        json!({
            "Operation": "TIUrlClickData",
            "RecordType": num(41, rng),
            "UserKey": "ThreatIntel",
            "UserType": num(4, rng),
            "Version": num(1, rng),
            "Workload": "ThreatIntelligence",
            "ObjectId": rng.guid(),
            "UserId": user.upn,
            "AppName": rng.pick(&["Outlook", "Teams", "Word"]).to_string(),
            "AppVersion": "16.0.17726.20126",
            "EventDeepLink": format!("https://security.microsoft.com/?hash=/threatexplorer?urlParams={}", rng.guid()),
            "SourceId": rng.guid(),
            "TimeOfClick": to_utc(1_700_000_000_000).format("%Y-%m-%dT%H:%M:%S").to_string(),
            "Url": format!("https://{}.example.com/login?session={}", rng.hex(6), rng.hex(12)),
            "UserIp": user.ip,
            "UrlClickAction": rng.below(3),
            "ClientIP": null,
            "TenantId": t.id
        })
    }
}

fn scc_alert(t: &TenantProfile, user: &User, at_ms: i64, rng: &mut Rng) -> Value {
    let (name, op_in_data, wl, category) = *rng.pick(&[
        (
            "Creation of forwarding/redirect rule",
            "New-InboxRule",
            "Exchange",
            "ThreatManagement",
        ),
        (
            "Email messages containing malicious URL removed after delivery",
            "ZapPhish",
            "Exchange",
            "ThreatManagement",
        ),
        (
            "Unusual external user file activity",
            "FileDownloaded",
            "SharePoint",
            "DataGovernance",
        ),
        (
            "Elevation of Exchange admin privilege",
            "Add-RoleGroupMember",
            "Exchange",
            "PermissionsManagement",
        ),
        (
            "User restricted from sending email",
            "SendLimitExceeded",
            "Exchange",
            "ThreatManagement",
        ),
    ]);
    let sev = *rng.pick(&["Low", "Medium", "High", "Informational"]);
    let alert_id = rng.guid();
    let ts = to_utc(at_ms - 600_000)
        .format("%Y-%m-%dT%H:%M:%S%.3f0000Z")
        .to_string();
    let data = json!({
        "etype": "User", "eid": user.upn, "op": op_in_data, "tdc": "1", "suid": user.upn, "ut": "Regular",
        "ts": ts, "te": ts, "tid": t.id, "f3u": user.upn, "wl": wl, "an": name, "sev": sev,
        "ad": format!("This alert is triggered when {op_in_data} is performed by {}.", user.upn)
    });
    let entity = rng.chance(0.4);
    json!({
        "Operation": if entity { "AlertEntityGenerated" } else { *rng.pick(&["AlertTriggered", "AlertTriggered", "AlertUpdated"]) },
        // Observed: this record type arrives with its numbers as strings.
        "RecordType": "40",
        "ResultStatus": "Succeeded",
        "UserKey": "SecurityComplianceAlerts",
        "UserType": "4",
        "Version": "1",
        "Workload": "SecurityComplianceCenter",
        "ObjectId": alert_id,
        "UserId": "SecurityComplianceAlerts",
        "AlertId": alert_id,
        "AlertLinks": [{"AlertLinkHref": "", "AlertLinkName": ""}],
        "AlertType": rng.pick(&["System", "Custom"]).to_string(),
        "Category": category,
        "Comments": "New alert",
        "Data": data.to_string(),
        "EntityType": if entity { "User" } else { "" },
        "AlertEntityId": if entity { user.upn.clone() } else { String::new() },
        "Name": name,
        "PolicyId": rng.guid(),
        "Severity": sev,
        "Source": rng.pick(&["Office 365 Security & Compliance", "Cloud App Security"]).to_string(),
        "Status": rng.pick(&["Active", "Investigating", "Resolved", "Dismissed"]).to_string()
    })
}

fn power_bi(t: &TenantProfile, user: &User, rng: &mut Rng) -> Value {
    let op = *rng.pick(&[
        "ViewReport",
        "ExportReport",
        "ViewDashboard",
        "ShareReport",
        "DownloadReport",
    ]);
    let report = *rng.pick(&[
        "Sales pipeline",
        "Headcount",
        "Churn analysis",
        "Cloud spend",
    ]);
    json!({
        "Operation": op,
        "RecordType": num(20, rng),
        "UserKey": user.puid,
        "UserType": num(0, rng),
        "Version": num(1, rng),
        "Workload": "PowerBI",
        "ClientIP": client_ip(user, rng, false),
        "ObjectId": report,
        "UserId": user.upn,
        "UserAgent": rng.pick(&USER_AGENTS).to_string(),
        "Activity": op,
        "ItemName": report,
        "WorkSpaceName": format!("{} workspace", rng.pick(&SITES)),
        "WorkspaceId": rng.guid(),
        "ReportId": rng.guid(),
        "ReportName": report,
        "ReportType": "PowerBIReport",
        "DatasetId": rng.guid(),
        "DatasetName": report,
        "CapacityId": rng.guid(),
        "CapacityName": "Premium Per User - Reserved",
        "DistributionMethod": "Workspace",
        "ConsumptionMethod": "Power BI Web",
        "RequestId": rng.guid(),
        "ActivityId": rng.guid(),
        "IsSuccess": true,
        "ExportEventStartDateTimeUTC": null,
        "ArtifactKind": "Report",
        "RefreshEnforcementPolicy": 0,
        "DataConnectivityMode": "Import",
        "TenantDomain": t.domain
    })
}

fn copilot(t: &TenantProfile, user: &User, rng: &mut Rng) -> Value {
    let host = *rng.pick(&["Word", "Teams", "Outlook", "Bing", "Excel"]);
    let (file, ext) = *rng.pick(&FILES);
    let msg = 1_715_000_000_000u64 + rng.below(10_000_000_000);
    json!({
        "Operation": "CopilotInteraction",
        "RecordType": num(261, rng),
        "UserKey": user.object_id,
        "UserType": num(0, rng),
        "Version": num(1, rng),
        "Workload": "Copilot",
        "ClientIP": client_ip(user, rng, false),
        "ClientRegion": t.region.to_uppercase(),
        "UserId": user.upn,
        "CopilotEventData": {
            "AISystemPlugin": if host == "Bing" { json!([{"Id": "BingWebSearch", "Name": "BuiltIn"}]) } else { json!([]) },
            "AccessedResources": [{
                "Action": "Read", "Id": rng.hex(40).to_uppercase(), "Name": format!("{file}.{ext}"),
                "SiteUrl": format!("https://{}.sharepoint.com/sites/{}/Shared%20Documents/{}.{ext}?web=1", t.company, rng.pick(&SITES), file.replace(' ', "%20")),
                "Type": ext
            }],
            "AppHost": host,
            "Contexts": [{"Id": format!("https://{}.sharepoint.com/_layouts/15/Doc.aspx?sourcedoc=%7B{}%7D", t.company, rng.guid().to_uppercase()), "Type": ext}],
            "MessageIds": [],
            "Messages": [{"Id": msg.to_string(), "isPrompt": true}, {"Id": (msg + 700).to_string(), "isPrompt": false}],
            "ModelTransparencyDetails": [],
            "ThreadId": format!("19:{}@thread.v2", rng.hex(32))
        }
    })
}

fn dlp(t: &TenantProfile, user: &User, rng: &mut Rng) -> Value {
    let (record_type, workload) = *rng.pick(&[
        (11u64, "SharePoint"),
        (13, "Exchange"),
        (63, "Endpoint"),
        (13, "Exchange"),
    ]);
    let undo = rng.chance(0.05);
    let (sit, sit_name) = *rng.pick(&[
        ("50842eb7-edc8-4019-85dd-5a5c1f2bb085", "Credit Card Number"),
        (
            "a44669fe-0d48-453d-a9b1-2cc83f2cba77",
            "U.S. Social Security Number (SSN)",
        ),
        (
            "e7dc4711-11b7-4cb0-b88b-2c394a771f0e",
            "International Banking Account Number (IBAN)",
        ),
    ]);
    let severity = *rng.pick(&["Low", "Medium", "High"]);
    let policy = *rng.pick(&["U.S. Financial Data", "GDPR Enhanced", "PCI DSS"]);
    let mut r = json!({
        "Operation": if undo { "DlpRuleUndo" } else { "DlpRuleMatch" },
        "RecordType": num(record_type, rng),
        "UserKey": "DlpAgent",
        "UserType": num(4, rng),
        "Version": num(1, rng),
        "Workload": workload,
        "ObjectId": "",
        "UserId": user.upn,
        "IncidentId": rng.guid(),
        "PolicyDetails": [{
            "PolicyId": rng.guid(),
            "PolicyName": policy,
            "Rules": [{
                "Actions": [rng.pick(&["NotifyUser", "BlockAccess", "GenerateIncidentReport"]).to_string()],
                "ConditionsMatched": {
                    "ConditionMatchedInNewScheme": true,
                    "OtherConditions": [],
                    "SensitiveInformation": [{
                        "ClassifierType": "Content",
                        "Confidence": 85,
                        "Count": 1 + rng.below(40),
                        "Location": null,
                        "SensitiveInformationDetections": null,
                        "SensitiveInformationTypeName": sit_name,
                        "SensitiveType": sit,
                        "UniqueCount": 1 + rng.below(10)
                    }]
                },
                "ManagementRuleId": rng.guid(),
                "RuleId": rng.guid(),
                "RuleMode": "Enable",
                "RuleName": format!("{policy} - high volume"),
                "Severity": severity
            }]
        }],
        "SensitiveInfoDetectionIsIncluded": false,
    });
    let Value::Object(m) = &mut r else { return r };
    match workload {
        "SharePoint" => {
            let (file, ext) = *rng.pick(&FILES);
            let url = format!(
                "https://{}.sharepoint.com/sites/{}/Shared Documents/{file}.{ext}",
                t.company,
                rng.pick(&SITES)
            );
            m.insert("ObjectId".into(), json!(url));
            m.insert("SharePointMetaData".into(), json!({
                "FileID": rng.guid(), "FileName": format!("{file}.{ext}"), "FilePathUrl": url, "IsViewableByExternalUsers": rng.chance(0.2),
                "IsVisibleOnlyToOdbOwner": false, "ItemCreationTime": to_utc(1_700_000_000_000).format("%Y-%m-%dT%H:%M:%S").to_string(),
                "ItemLastModifiedTime": to_utc(1_700_000_000_000).format("%Y-%m-%dT%H:%M:%S").to_string(),
                "ItemLastSharedTime": null, "ItemUniqueId": rng.guid(), "ListId": rng.guid(), "SensitivityLabelIds": [],
                "SiteAdmin": [user.upn], "SiteCollectionGuid": rng.guid(), "SiteCollectionUrl": format!("https://{}.sharepoint.com/sites/Finance", t.company), "UniqueID": rng.guid(), "From": user.upn
            }));
        }
        "Exchange" => {
            let to = rng
                .pick(&["partner@example.com", "gmail-user@example.net"])
                .to_string();
            m.insert(
                "ObjectId".into(),
                json!(format!(
                    "<{}@{}.prod.outlook.com>",
                    rng.hex(32).to_uppercase(),
                    t.region
                )),
            );
            m.insert("ExchangeMetaData".into(), json!({
                "BCC": [], "CC": [], "FileSize": 10_000 + rng.below(900_000), "From": user.upn,
                "MessageID": format!("<{}@{}.prod.outlook.com>", rng.hex(32).to_uppercase(), t.region),
                "RecipientCount": 1, "Sent": to_utc(1_700_000_000_000).format("%Y-%m-%dT%H:%M:%S").to_string(),
                "Subject": "Customer list", "To": [to], "UniqueID": rng.guid()
            }));
        }
        _ => {
            let (file, ext) = *rng.pick(&FILES);
            m.insert(
                "ObjectId".into(),
                json!(format!(
                    "C:\\Users\\{}\\Documents\\{file}.{ext}",
                    user.display.replace(' ', "")
                )),
            );
            m.insert("ClientIP".into(), client_ip(user, rng, false));
            m.insert("EndpointMetaData".into(), json!({
                "DeviceName": user.device, "EndpointOperation": rng.pick(&["CopyToRemovableMedia", "Print", "FileUploadedToCloud"]).to_string(),
                "EnforcementMode": 1, "FileExtension": ext, "FileSize": 5000 + rng.below(5_000_000), "FileType": ext,
                "MDATPDeviceId": rng.hex(40), "Platform": 1, "SourceLocationType": 1, "Sha256": rng.hex(64)
            }));
        }
    }
    if rng.chance(0.05) {
        m.insert("ExceptionInfo".into(), json!({"Justification": "Business need", "Reason": "Override", "Rules": [], "FalsePositive": false}));
    }
    r
}
