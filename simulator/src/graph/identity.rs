//! Entra ID logs through Graph (reference §6): sign-ins of four kinds, directory audits and
//! provisioning events, derived per (tenant, kind, hour). Each record becomes visible some
//! minutes after its time — sign-ins sometimes up to two hours (§6.5).

use serde_json::{Value, json};

use super::time::{HOUR, MINUTE, MS, Ticks, format};
use crate::world::generate::{hourly_count, rhythm};
use crate::world::rng::{Rng, key};
use crate::world::{TenantProfile, User, World};

/// The four sign-in logs (`signInEventTypes` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SignInKind {
    Interactive,
    NonInteractive,
    ServicePrincipal,
    ManagedIdentity,
}

impl SignInKind {
    /// Every kind, interactive first.
    pub(crate) const ALL: [SignInKind; 4] = [
        SignInKind::Interactive,
        SignInKind::NonInteractive,
        SignInKind::ServicePrincipal,
        SignInKind::ManagedIdentity,
    ];

    /// The `signInEventTypes` member.
    pub(crate) fn event_type(self) -> &'static str {
        match self {
            SignInKind::Interactive => "interactiveUser",
            SignInKind::NonInteractive => "nonInteractiveUser",
            SignInKind::ServicePrincipal => "servicePrincipal",
            SignInKind::ManagedIdentity => "managedIdentity",
        }
    }

    fn share(self) -> f64 {
        match self {
            SignInKind::Interactive => 0.30,
            SignInKind::NonInteractive => 0.50,
            SignInKind::ServicePrincipal => 0.12,
            SignInKind::ManagedIdentity => 0.08,
        }
    }
}

/// Which log a record belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogKind {
    SignIn(SignInKind),
    DirectoryAudit,
    Provisioning,
}

impl LogKind {
    fn code(self) -> u64 {
        match self {
            LogKind::SignIn(k) => k as u64,
            LogKind::DirectoryAudit => 10,
            LogKind::Provisioning => 11,
        }
    }
}

/// One log record located by (tenant, kind, hour, index), with its time and visibility.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LogRef {
    pub(crate) tenant: usize,
    pub(crate) kind: LogKind,
    /// createdDateTime (sign-ins) or activityDateTime (audits, provisioning).
    pub(crate) at: Ticks,
    /// The first instant a query returns it.
    pub(crate) visible: Ticks,
    key: u64,
}

/// The longest a record may stay invisible after its time (late sign-ins: 30 min–2 h).
pub(crate) const MAX_LOG_DELAY: Ticks = 2 * HOUR;

impl World {
    fn log_hour_key(&self, tenant: usize, kind: LogKind, hour: i64) -> u64 {
        key(&[
            self.cfg.seed,
            self.tenants[tenant].tag,
            0x1d_106,
            kind.code(),
            hour as u64,
        ])
    }

    fn log_count(&self, tenant: usize, kind: LogKind, hour: i64) -> u32 {
        let g = &self.cfg.graph;
        let per_hour = match kind {
            LogKind::SignIn(k) => f64::from(g.sign_ins_per_hour) * k.share(),
            LogKind::DirectoryAudit => f64::from(g.directory_audits_per_hour),
            LogKind::Provisioning => f64::from(g.provisioning_per_hour),
        };
        hourly_count(
            per_hour * rhythm(hour),
            self.log_hour_key(tenant, kind, hour),
            1_000_000,
        )
    }

    fn log_ref(&self, tenant: usize, kind: LogKind, hour: i64, index: u32) -> LogRef {
        let mut rng = Rng::new(key(&[
            self.log_hour_key(tenant, kind, hour),
            u64::from(index),
        ]));
        let at = hour * HOUR + rng.below(HOUR as u64) as Ticks;
        let typical = self.cfg.graph.log_delay.as_millis() as f64 * MS as f64;
        let late =
            matches!(kind, LogKind::SignIn(_)) && rng.chance(self.cfg.graph.late_sign_in_rate);
        let delay = if late {
            30 * MINUTE + rng.below((90 * MINUTE) as u64) as Ticks
        } else {
            (typical * (0.2 + 1.6 * rng.unit())) as Ticks
        };
        LogRef {
            tenant,
            kind,
            at,
            visible: at + delay.min(MAX_LOG_DELAY),
            key: rng.next_u64(),
        }
    }

    /// Every record of `kind` whose time is in [from, to), in no particular order.
    pub(crate) fn logs_in(
        &self,
        tenant: usize,
        kind: LogKind,
        from: Ticks,
        to: Ticks,
    ) -> Vec<LogRef> {
        let mut out = Vec::new();
        if from >= to {
            return out;
        }
        for hour in from.div_euclid(HOUR)..=(to - 1).div_euclid(HOUR) {
            for index in 0..self.log_count(tenant, kind, hour) {
                let r = self.log_ref(tenant, kind, hour, index);
                if r.at >= from && r.at < to {
                    out.push(r);
                }
            }
        }
        out
    }

    /// The record as served; `beta` adds the beta-only sign-in properties.
    pub(crate) fn log_json(&self, r: &LogRef, beta: bool) -> Value {
        let t = &self.tenants[r.tenant];
        let mut rng = Rng::new(r.key);
        match r.kind {
            LogKind::SignIn(kind) => sign_in(t, kind, r.at, beta, &mut rng),
            LogKind::DirectoryAudit => directory_audit(t, r.at, &mut rng),
            LogKind::Provisioning => provisioning(t, r.at, &mut rng),
        }
    }
}

const USER_APPS: [(&str, &str); 6] = [
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
    ("4765445b-32c6-49b0-83e6-1d93765276ca", "OfficeHome"),
    (
        "ab9b8c07-8f02-4f72-87fa-80105867a763",
        "OneDrive SyncEngine",
    ),
];
const RESOURCES: [(&str, &str); 4] = [
    ("00000003-0000-0000-c000-000000000000", "Microsoft Graph"),
    (
        "00000002-0000-0ff1-ce00-000000000000",
        "Office 365 Exchange Online",
    ),
    (
        "00000003-0000-0ff1-ce00-000000000000",
        "Office 365 SharePoint Online",
    ),
    ("cfa8b339-82a2-471a-a3c9-0fc0be7a4093", "Azure Key Vault"),
];
const SERVICE_APPS: [&str; 3] = [
    "siemflow collector",
    "HR provisioning sync",
    "Backup service",
];
const MANAGED_IDENTITIES: [&str; 3] = ["func-prod-ingest", "vm-build-agent-01", "logic-orders"];
// Short decimals: they survive every JSON parser's round trip exactly.
const LOCATIONS: [(&str, &str, &str, f64, f64); 5] = [
    ("Redmond", "Washington", "US", 47.6805, -122.1209),
    ("Amsterdam", "Noord-Holland", "NL", 52.3737, 4.8908),
    ("Singapore", "Singapore", "SG", 1.2897, 103.85),
    ("London", "England", "GB", 51.5064, -0.1272),
    ("Sao Paulo", "Sao Paulo", "BR", -23.5475, -46.6361),
];
const FAILURES: [(u64, &str); 5] = [
    (
        50126,
        "Error validating credentials due to invalid username or password.",
    ),
    (50074, "Strong Authentication is required."),
    (
        50140,
        "This error occurred due to 'Keep me signed in' interrupt when the user was signing in.",
    ),
    (
        53003,
        "Access has been blocked by Conditional Access policies. The access policy does not allow token issuance.",
    ),
    (
        50053,
        "Account is locked because user tried to sign in too many times with an incorrect user ID or password.",
    ),
];
const POLICIES: [(&str, &str); 3] = [
    (
        "de7e60eb-ed89-4d73-8205-2227def6b7c9",
        "Require MFA for all users",
    ),
    (
        "6701123a-b4c6-48af-8565-565c8bf7cabc",
        "Medium sign-in risk block",
    ),
    (
        "0b3f2a5c-7d14-4e6a-9c8b-1f2e3d4c5b6a",
        "Block legacy authentication",
    ),
];

/// A stable object id for a named thing of a tenant (service principals, identities).
fn stable_id(t: &TenantProfile, name: &str) -> String {
    Rng::new(key(&[t.tag, crate::world::rng::hash_str(name)])).guid()
}

fn sign_in(t: &TenantProfile, kind: SignInKind, at: Ticks, beta: bool, rng: &mut Rng) -> Value {
    let user: &User = rng.pick(&t.users);
    let person = matches!(kind, SignInKind::Interactive | SignInKind::NonInteractive);
    let failed = person && rng.chance(0.12);
    let (error_code, failure_reason) = if failed {
        let (c, r) = *rng.pick(&FAILURES);
        (c, json!(r))
    } else {
        (0, Value::Null)
    };
    let (app_id, app_name) = match kind {
        SignInKind::Interactive | SignInKind::NonInteractive => {
            let (id, name) = *rng.pick(&USER_APPS);
            (id.to_string(), name.to_string())
        }
        SignInKind::ServicePrincipal => {
            let name = *rng.pick(&SERVICE_APPS);
            (stable_id(t, &format!("app:{name}")), name.to_string())
        }
        SignInKind::ManagedIdentity => {
            let name = *rng.pick(&MANAGED_IDENTITIES);
            (stable_id(t, &format!("mi-app:{name}")), name.to_string())
        }
    };
    let (resource_id, resource_name) = *rng.pick(&RESOURCES);
    let (city, state, country, lat, lon) = *rng.pick(&LOCATIONS);
    let risky = person && rng.chance(0.03);
    let ip = match rng.below(100) {
        0..=69 if person => user.ip.clone(),
        // Cross-tenant sign-ins come with the last octet redacted (§6.5).
        70 if person => format!(
            "{}.XXX",
            user.ip.rsplit_once('.').map_or("192.0.2", |(n, _)| n)
        ),
        _ => rng.public_ipv4(),
    };
    // Passwordless and interrupted flows put the object id where the name would be.
    let guid_names = person && rng.chance(0.02);
    let (display, upn, user_id) = if person {
        if guid_names {
            (
                user.object_id.clone(),
                user.object_id.clone(),
                user.object_id.clone(),
            )
        } else {
            (
                user.display.clone(),
                user.upn.clone(),
                user.object_id.clone(),
            )
        }
    } else if beta {
        (String::new(), String::new(), String::new())
    } else {
        (app_name.clone(), String::new(), String::new())
    };
    let policies: Vec<Value> = POLICIES
        .iter()
        .map(|(id, name)| {
            json!({
                "id": id,
                "displayName": name,
                "enforcedGrantControls": if *name == "Require MFA for all users" { json!(["Mfa"]) } else { json!([]) },
                "enforcedSessionControls": [],
                "result": *rng.pick(&["success", "notApplied", "notEnabled", "reportOnlySuccess"]),
            })
        })
        .collect();
    let browser = match kind {
        SignInKind::Interactive => *rng.pick(&["Edge 126.0.0", "Chrome 126.0.0", "Safari 17.5"]),
        SignInKind::NonInteractive => "Rich Client 5.2.0",
        _ => "",
    };
    let mut r = json!({
        "id": rng.guid(),
        "createdDateTime": format(at),
        "userDisplayName": display,
        "userPrincipalName": upn,
        "userId": user_id,
        "appId": app_id,
        "appDisplayName": app_name,
        "ipAddress": ip,
        "clientAppUsed": match kind {
            SignInKind::Interactive => *rng.pick(&["Browser", "Mobile Apps and Desktop clients"]),
            SignInKind::NonInteractive => "Mobile Apps and Desktop clients",
            _ => "",
        },
        "correlationId": rng.guid(),
        "conditionalAccessStatus": if failed && error_code == 53003 { "failure" } else { *rng.pick(&["success", "notApplied"]) },
        "isInteractive": kind == SignInKind::Interactive,
        "riskDetail": "none",
        "riskLevelAggregated": if risky { "medium" } else { "none" },
        "riskLevelDuringSignIn": if risky { "medium" } else { "none" },
        "riskState": if risky { "atRisk" } else { "none" },
        "riskEventTypes": if risky { json!(["unfamiliarFeatures"]) } else { json!([]) },
        "riskEventTypes_v2": if risky { json!(["unfamiliarFeatures"]) } else { json!([]) },
        "resourceDisplayName": resource_name,
        "resourceId": resource_id,
        "status": {
            "errorCode": error_code,
            "failureReason": failure_reason,
            "additionalDetails": if failed { json!("The user didn't complete the MFA prompt.") } else { Value::Null },
        },
        "deviceDetail": {
            "deviceId": if person && rng.chance(0.6) { json!(stable_id(t, &user.device)) } else { json!("") },
            "displayName": if person { json!(user.device) } else { Value::Null },
            "operatingSystem": if person { *rng.pick(&["Windows 10", "Windows 11", "MacOs", "Ios"]) } else { "" },
            "browser": browser,
            "isCompliant": if person { json!(rng.chance(0.7)) } else { Value::Null },
            "isManaged": if person { json!(rng.chance(0.7)) } else { Value::Null },
            "trustType": if person { json!(*rng.pick(&["Azure AD joined", "Hybrid Azure AD joined", "Azure AD registered"])) } else { Value::Null },
        },
        "location": {
            "city": city,
            "state": state,
            "countryOrRegion": country,
            "geoCoordinates": {"altitude": null, "latitude": lat, "longitude": lon},
        },
        "appliedConditionalAccessPolicies": if person { json!(policies) } else { json!([]) },
    });
    if beta && let Value::Object(m) = &mut r {
        let (sp_id, sp_name, mi_type) = match kind {
            SignInKind::ServicePrincipal => (
                stable_id(t, &format!("sp:{app_name}")),
                app_name.clone(),
                "none",
            ),
            SignInKind::ManagedIdentity => (
                stable_id(t, &format!("mi:{app_name}")),
                app_name.clone(),
                if app_name.starts_with("vm") {
                    "systemAssigned"
                } else {
                    "userAssigned"
                },
            ),
            _ => (String::new(), String::new(), "none"),
        };
        let extra = json!({
            "signInEventTypes": [kind.event_type()],
            "servicePrincipalId": sp_id,
            "servicePrincipalName": sp_name,
            "managedIdentityType": mi_type,
            "authenticationRequirement": if person && rng.chance(0.5) { "multiFactorAuthentication" } else { "singleFactorAuthentication" },
            "tokenIssuerType": "AzureAD",
            "userType": if person { "member" } else { "" },
            "crossTenantAccessType": "none",
            "incomingTokenType": "none",
            "uniqueTokenIdentifier": rng.hex(22),
            "resourceTenantId": t.id,
            "homeTenantId": t.id,
            "processingTimeInMilliseconds": 20 + rng.below(400),
            "authenticationDetails": if person { json!([{
                "authenticationStepDateTime": format(at),
                "authenticationMethod": *rng.pick(&["Password", "Previously satisfied", "Mobile app notification"]),
                "succeeded": !failed,
                "authenticationStepResultDetail": if failed { "Authentication failed" } else { "MFA requirement satisfied by claim in the token" },
            }]) } else { json!([]) },
        });
        if let Value::Object(extra) = extra {
            m.extend(extra);
        }
    }
    r
}

const ACTIVITIES: [(&str, &str, &str, &str, &str, &str, &str); 8] = [
    // (category, activityDisplayName, operationType, loggedByService, target type, property, new value)
    (
        "UserManagement",
        "Update user",
        "Update",
        "Core Directory",
        "User",
        "StrongAuthenticationMethod",
        "[{\"MethodType\":6,\"Default\":true}]",
    ),
    (
        "UserManagement",
        "Add user",
        "Add",
        "Core Directory",
        "User",
        "AccountEnabled",
        "[true]",
    ),
    (
        "UserManagement",
        "Reset user password",
        "Reset",
        "Core Directory",
        "User",
        "",
        "",
    ),
    (
        "GroupManagement",
        "Add member to group",
        "Assign",
        "Core Directory",
        "Group",
        "Group.DisplayName",
        "\"Finance Admins\"",
    ),
    (
        "RoleManagement",
        "Add member to role",
        "Assign",
        "Core Directory",
        "User",
        "Role.DisplayName",
        "\"Global Administrator\"",
    ),
    (
        "ApplicationManagement",
        "Consent to application",
        "Assign",
        "Core Directory",
        "ServicePrincipal",
        "ConsentAction.Permissions",
        "\"[] => [[Scope: Mail.Read, User.Read]]\"",
    ),
    (
        "ApplicationManagement",
        "Update application – Certificates and secrets management ",
        "Update",
        "Core Directory",
        "Application",
        "KeyDescription",
        "[\"[KeyIdentifier=5e2c,KeyType=Password,KeyUsage=Verify]\"]",
    ),
    (
        "Policy",
        "Update conditional access policy",
        "Update",
        "Conditional Access",
        "Policy",
        "ConditionalAccessPolicy",
        "{\"state\":\"enabled\"}",
    ),
];

fn directory_audit(t: &TenantProfile, at: Ticks, rng: &mut Rng) -> Value {
    let (category, activity, operation, service, target_type, property, new_value) =
        *rng.pick(&ACTIVITIES);
    let actor = rng.pick(&t.users[..3]).clone();
    let target = rng.pick(&t.users).clone();
    let correlation = rng.guid();
    let failed = rng.chance(0.04);
    let by_app = rng.chance(0.2);
    let initiated = if by_app {
        json!({"app": {
            "appId": stable_id(t, "app:HR provisioning sync"),
            "displayName": "HR provisioning sync",
            "servicePrincipalId": stable_id(t, "sp:HR provisioning sync"),
            "servicePrincipalName": null,
        }, "user": null})
    } else {
        json!({"app": null, "user": {
            "id": actor.object_id,
            "displayName": null,
            "userPrincipalName": actor.upn,
            "ipAddress": actor.ip,
        }})
    };
    let modified = if property.is_empty() {
        json!([])
    } else {
        json!([{"displayName": property, "oldValue": null, "newValue": new_value}])
    };
    let suffix: String = (0..5)
        .map(|_| char::from(b"ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"[rng.below(34) as usize]))
        .collect();
    json!({
        "id": format!("Directory_{correlation}_{suffix}_{}", 100_000_000 + rng.below(900_000_000)),
        "category": category,
        "correlationId": correlation,
        "result": if failed { "failure" } else { "success" },
        "resultReason": if failed { "Microsoft.Online.Workflows.ObjectAlreadyExistsException" } else { "" },
        "activityDisplayName": activity,
        "activityDateTime": format(at),
        "loggedByService": service,
        "operationType": operation,
        "initiatedBy": initiated,
        "targetResources": [{
            "id": if target_type == "User" { target.object_id.clone() } else { rng.guid() },
            "displayName": if target_type == "User" { Value::Null } else { json!(property.split('.').next().unwrap_or_default()) },
            "type": target_type,
            "userPrincipalName": if target_type == "User" { json!(target.upn) } else { Value::Null },
            "groupType": if target_type == "Group" { json!("unifiedGroups") } else { Value::Null },
            "modifiedProperties": modified,
        }],
        "additionalDetails": if by_app { json!([]) } else { json!([{"key": "User-Agent", "value": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Edge/126.0"}]) },
    })
}

fn provisioning(t: &TenantProfile, at: Ticks, rng: &mut Rng) -> Value {
    let user = rng.pick(&t.users).clone();
    let action = *rng.pick(&[
        "create", "update", "update", "update", "disable", "delete", "other",
    ]);
    let status = *rng.pick(&[
        "success", "success", "success", "skipped", "failure", "warning",
    ]);
    let sp_id = stable_id(t, "sp:ServiceNow");
    let error = if status == "failure" {
        json!({
            "errorCode": "ServiceNowDuplicateEntry",
            "reason": "The user already exists in ServiceNow with a different id.",
            "additionalDetails": null,
            "errorCategory": "NonServiceFailure",
            "recommendedAction": "Match the existing account on email.",
        })
    } else {
        Value::Null
    };
    let steps: Vec<Value> = [
        ("EntryImport", "import"),
        ("EntrySynchronizationScoping", "scoping"),
        ("EntryExportUpdate", "export"),
    ]
    .iter()
    .map(|(name, kind)| {
        json!({
            "name": name,
            "provisioningStepType": kind,
            "status": if *kind == "export" { status } else { "success" },
            "description": format!("{name} for {}", user.upn),
            "details": {},
        })
    })
    .collect();
    json!({
        "id": rng.guid(),
        "activityDateTime": format(at),
        "tenantId": t.id,
        "jobId": format!("ServiceNowOutDelta.{}.{}", rng.hex(32), t.id),
        "cycleId": rng.guid(),
        "changeId": rng.guid(),
        "durationInMilliseconds": 200 + rng.below(5_000),
        "initiatedBy": {"id": "", "displayName": "Azure AD Provisioning Service", "initiatorType": "system"},
        "provisioningAction": action,
        "provisioningStatusInfo": {"status": status, "errorInformation": error},
        "provisioningSteps": steps,
        "servicePrincipal": {"id": sp_id, "displayName": "ServiceNow"},
        "sourceSystem": {"id": rng.guid(), "displayName": "Azure Active Directory", "details": {}},
        "targetSystem": {"id": rng.guid(), "displayName": "ServiceNow", "details": {
            "ApplicationId": stable_id(t, "app:ServiceNow"),
            "ServicePrincipalId": sp_id,
            "ServicePrincipalDisplayName": "ServiceNow",
        }},
        "sourceIdentity": {"id": user.object_id, "displayName": user.display, "identityType": "User", "details": {}},
        "targetIdentity": {"id": rng.hex(32), "displayName": user.display, "identityType": "User", "details": {}},
        "modifiedProperties": [{"displayName": "department", "oldValue": null, "newValue": *rng.pick(&["Finance", "Sales", "Engineering"])}],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::M365Config;
    use std::sync::Arc;

    #[test]
    fn records_fall_in_their_window_and_show_up_late() {
        let world = World::new(Arc::new(M365Config::default()));
        let from = 493_000 * HOUR;
        let to = from + 6 * HOUR;
        for kind in SignInKind::ALL
            .map(LogKind::SignIn)
            .into_iter()
            .chain([LogKind::DirectoryAudit, LogKind::Provisioning])
        {
            let refs = world.logs_in(0, kind, from, to);
            assert!(!refs.is_empty(), "{kind:?}");
            assert!(
                refs.iter()
                    .all(|r| r.at >= from && r.at < to && r.visible > r.at)
            );
            assert!(refs.iter().all(|r| r.visible - r.at <= MAX_LOG_DELAY));
            assert_eq!(refs, world.logs_in(0, kind, from, to));
        }
        let late = world
            .logs_in(
                0,
                LogKind::SignIn(SignInKind::Interactive),
                from,
                from + 48 * HOUR,
            )
            .iter()
            .filter(|r| r.visible - r.at >= 30 * MINUTE)
            .count();
        assert!(late > 0, "some sign-ins arrive late");
    }

    #[test]
    fn beta_shape_adds_event_types() {
        let world = World::new(Arc::new(M365Config::default()));
        let r = world.logs_in(
            0,
            LogKind::SignIn(SignInKind::ServicePrincipal),
            0,
            24 * HOUR,
        )[0];
        let v1 = world.log_json(&r, false);
        let beta = world.log_json(&r, true);
        assert!(v1.get("signInEventTypes").is_none());
        assert_eq!(beta["signInEventTypes"], json!(["servicePrincipal"]));
        assert_eq!(v1["id"], beta["id"]);
        assert_eq!(beta["createdDateTime"].as_str().map(str::len), Some(28));
    }
}
