//! The collections Graph serves here and the OData query options each takes, as documented:
//! `$filter` on the filterable properties, `$top` with its maximum, `$skip`, `$orderby`,
//! `$count`, `$expand`, `$select`, `$skiptoken`; anything else is refused with a 400.

use super::errors::GraphError;
use super::filter::{self, Expr, PropType, Schema};
use super::identity::SignInKind;
use super::products::SEVERITIES;

/// A Graph collection this simulator serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Collection {
    Alerts,
    Incidents,
    /// `auditLogs/signIns`; beta adds the non-interactive kinds and beta-only properties.
    SignIns {
        beta: bool,
    },
    DirectoryAudits,
    Provisioning,
}

/// The throttling scope a collection belongs to (reference §2.3, §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Family {
    Security,
    Identity,
}

impl Family {
    /// The name used in stats.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Family::Security => "security",
            Family::Identity => "identity",
        }
    }
}

/// How a collection pages: nextLink with `$skip` (security) or with `$skiptoken` (reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Paging {
    Skip,
    SkipToken,
}

const ALERT_STATUS: &[&str] = &[
    "unknown",
    "new",
    "inProgress",
    "resolved",
    "unknownFutureValue",
];
const INCIDENT_STATUS: &[&str] = &[
    "active",
    "resolved",
    "inProgress",
    "redirected",
    "unknownFutureValue",
    "awaitingAction",
];
const CLASSIFICATION: &[&str] = &[
    "unknown",
    "falsePositive",
    "truePositive",
    "informationalExpectedActivity",
    "unknownFutureValue",
];
const DETERMINATION: &[&str] = &[
    "unknown",
    "apt",
    "malware",
    "securityPersonnel",
    "securityTesting",
    "unwantedSoftware",
    "other",
    "multiStagedAttack",
    "compromisedUser",
    "phishing",
    "maliciousUserActivity",
    "clean",
    "insufficientData",
    "confirmedUserActivity",
    "lineOfBusinessApplication",
    "unknownFutureValue",
];
const SEVERITY: &[&str] = &[
    SEVERITIES[0],
    SEVERITIES[1],
    SEVERITIES[2],
    SEVERITIES[3],
    SEVERITIES[4],
    "unknownFutureValue",
];
const SERVICE_SOURCE: &[&str] = &[
    "unknown",
    "microsoftDefenderForEndpoint",
    "microsoftDefenderForIdentity",
    "microsoftDefenderForCloudApps",
    "microsoftDefenderForOffice365",
    "microsoft365Defender",
    "azureAdIdentityProtection",
    "microsoftAppGovernance",
    "dataLossPrevention",
    "unknownFutureValue",
    "microsoftDefenderForCloud",
    "microsoftSentinel",
];
const EVENT_TYPES: &[&str] = &[
    "interactiveUser",
    "nonInteractiveUser",
    "servicePrincipal",
    "managedIdentity",
    "unknownFutureValue",
];

const ALERT_SCHEMA: Schema = Schema {
    type_name: "microsoft.graph.security.alert",
    props: &[
        ("assignedTo", PropType::Str),
        ("classification", PropType::Enum(CLASSIFICATION)),
        ("determination", PropType::Enum(DETERMINATION)),
        ("createdDateTime", PropType::DateTime),
        ("lastUpdateDateTime", PropType::DateTime),
        ("severity", PropType::Enum(SEVERITY)),
        ("serviceSource", PropType::Enum(SERVICE_SOURCE)),
        ("status", PropType::Enum(ALERT_STATUS)),
    ],
    more: &[],
};
const INCIDENT_SCHEMA: Schema = Schema {
    type_name: "microsoft.graph.security.incident",
    props: &[
        ("assignedTo", PropType::Str),
        ("classification", PropType::Enum(CLASSIFICATION)),
        ("createdDateTime", PropType::DateTime),
        ("determination", PropType::Enum(DETERMINATION)),
        ("lastUpdateDateTime", PropType::DateTime),
        ("severity", PropType::Enum(SEVERITY)),
        ("status", PropType::Enum(INCIDENT_STATUS)),
    ],
    more: &[],
};
const SIGN_IN_PROPS: &[(&str, PropType)] = &[
    ("createdDateTime", PropType::DateTime),
    ("id", PropType::Str),
    ("userId", PropType::Str),
    ("userPrincipalName", PropType::Str),
    ("userDisplayName", PropType::Str),
    ("appId", PropType::Str),
    ("appDisplayName", PropType::Str),
    ("ipAddress", PropType::Str),
    ("clientAppUsed", PropType::Str),
    ("correlationId", PropType::Str),
    ("conditionalAccessStatus", PropType::Str),
    ("isInteractive", PropType::Bool),
    ("resourceId", PropType::Str),
    ("resourceDisplayName", PropType::Str),
    ("riskState", PropType::Str),
    ("riskLevelDuringSignIn", PropType::Str),
    ("riskLevelAggregated", PropType::Str),
    ("status/errorCode", PropType::Int),
    ("location/city", PropType::Str),
    ("location/countryOrRegion", PropType::Str),
    ("deviceDetail/operatingSystem", PropType::Str),
    ("deviceDetail/browser", PropType::Str),
];
const SIGN_IN_SCHEMA: Schema = Schema {
    type_name: "microsoft.graph.signIn",
    props: SIGN_IN_PROPS,
    more: &[],
};
const BETA_SIGN_IN_SCHEMA: Schema = Schema {
    type_name: "microsoft.graph.signIn",
    props: SIGN_IN_PROPS,
    more: &[
        ("signInEventTypes", PropType::Strings(EVENT_TYPES)),
        ("servicePrincipalId", PropType::Str),
        ("servicePrincipalName", PropType::Str),
        ("managedIdentityType", PropType::Str),
        ("authenticationRequirement", PropType::Str),
        ("userType", PropType::Str),
    ],
};
const AUDIT_SCHEMA: Schema = Schema {
    type_name: "microsoft.graph.directoryAudit",
    props: &[
        ("activityDateTime", PropType::DateTime),
        ("id", PropType::Str),
        ("activityDisplayName", PropType::Str),
        ("category", PropType::Str),
        ("correlationId", PropType::Str),
        ("loggedByService", PropType::Str),
        ("operationType", PropType::Str),
        (
            "result",
            PropType::Enum(&["success", "failure", "timeout", "unknownFutureValue"]),
        ),
        ("initiatedBy/user/id", PropType::Str),
        ("initiatedBy/user/userPrincipalName", PropType::Str),
        ("initiatedBy/app/appId", PropType::Str),
        ("initiatedBy/app/displayName", PropType::Str),
    ],
    more: &[],
};
const PROVISIONING_SCHEMA: Schema = Schema {
    type_name: "microsoft.graph.provisioningObjectSummary",
    props: &[
        ("activityDateTime", PropType::DateTime),
        ("id", PropType::Str),
        ("jobId", PropType::Str),
        ("cycleId", PropType::Str),
        ("changeId", PropType::Str),
        (
            "provisioningAction",
            PropType::Enum(&[
                "other",
                "create",
                "delete",
                "disable",
                "update",
                "stagedDelete",
                "unknownFutureValue",
            ]),
        ),
        (
            "provisioningStatusInfo/status",
            PropType::Enum(&[
                "success",
                "warning",
                "failure",
                "skipped",
                "unknownFutureValue",
            ]),
        ),
        ("servicePrincipal/id", PropType::Str),
        ("servicePrincipal/displayName", PropType::Str),
        ("sourceIdentity/id", PropType::Str),
        ("sourceIdentity/displayName", PropType::Str),
        ("targetIdentity/displayName", PropType::Str),
    ],
    more: &[],
};

impl Collection {
    /// The collection at a path below `/v1.0/` or `/beta/` (Graph compares paths
    /// case-insensitively; its own nextLinks write `auditLogs/signins`).
    pub(crate) fn at(version: &str, path: &str) -> Option<Collection> {
        let beta = version == "beta";
        Some(
            match path.trim_end_matches('/').to_ascii_lowercase().as_str() {
                "security/alerts_v2" if !beta => Collection::Alerts,
                "security/incidents" if !beta => Collection::Incidents,
                "auditlogs/signins" => Collection::SignIns { beta },
                "auditlogs/directoryaudits" if !beta => Collection::DirectoryAudits,
                "auditlogs/provisioning" if !beta => Collection::Provisioning,
                _ => return None,
            },
        )
    }

    /// The path as nextLinks and `@odata.context` write it.
    pub(crate) fn path(self) -> &'static str {
        match self {
            Collection::Alerts => "security/alerts_v2",
            Collection::Incidents => "security/incidents",
            Collection::SignIns { .. } => "auditLogs/signins",
            Collection::DirectoryAudits => "auditLogs/directoryAudits",
            Collection::Provisioning => "auditLogs/provisioning",
        }
    }

    /// `@odata.context` fragment.
    pub(crate) fn context(self) -> &'static str {
        match self {
            Collection::SignIns { .. } => "auditLogs/signIns",
            other => other.path(),
        }
    }

    /// `v1.0` or `beta`.
    pub(crate) fn version(self) -> &'static str {
        match self {
            Collection::SignIns { beta: true } => "beta",
            _ => "v1.0",
        }
    }

    /// Stats name: the path, with `beta/` in front for beta sign-ins.
    pub(crate) fn stats_name(self) -> &'static str {
        match self {
            Collection::Alerts => "alerts_v2",
            Collection::Incidents => "incidents",
            Collection::SignIns { beta: false } => "signIns",
            Collection::SignIns { beta: true } => "beta/signIns",
            Collection::DirectoryAudits => "directoryAudits",
            Collection::Provisioning => "provisioning",
        }
    }

    pub(crate) fn family(self) -> Family {
        match self {
            Collection::Alerts | Collection::Incidents => Family::Security,
            _ => Family::Identity,
        }
    }

    pub(crate) fn paging(self) -> Paging {
        match self.family() {
            Family::Security => Paging::Skip,
            Family::Identity => Paging::SkipToken,
        }
    }

    /// The app roles that grant reading it, any one of each inner list (signIns needs both
    /// AuditLog.Read.All and Directory.Read.All, a documented known issue).
    pub(crate) fn required_roles(self) -> &'static [&'static [&'static str]] {
        match self {
            Collection::Alerts => &[&["SecurityAlert.Read.All", "SecurityAlert.ReadWrite.All"]],
            Collection::Incidents => &[&[
                "SecurityIncident.Read.All",
                "SecurityIncident.ReadWrite.All",
            ]],
            Collection::SignIns { .. } => &[&["AuditLog.Read.All"], &["Directory.Read.All"]],
            Collection::DirectoryAudits | Collection::Provisioning => &[&["AuditLog.Read.All"]],
        }
    }

    /// Whether the tenant needs Entra ID P1/P2 for it.
    pub(crate) fn needs_premium(self) -> bool {
        matches!(self, Collection::SignIns { .. } | Collection::Provisioning)
    }

    /// The time property the records are created at (for hour selection).
    pub(crate) fn time_path(self) -> &'static str {
        match self {
            Collection::Alerts | Collection::Incidents | Collection::SignIns { .. } => {
                "createdDateTime"
            }
            Collection::DirectoryAudits | Collection::Provisioning => "activityDateTime",
        }
    }

    pub(crate) fn schema(self) -> &'static Schema {
        match self {
            Collection::Alerts => &ALERT_SCHEMA,
            Collection::Incidents => &INCIDENT_SCHEMA,
            Collection::SignIns { beta: false } => &SIGN_IN_SCHEMA,
            Collection::SignIns { beta: true } => &BETA_SIGN_IN_SCHEMA,
            Collection::DirectoryAudits => &AUDIT_SCHEMA,
            Collection::Provisioning => &PROVISIONING_SCHEMA,
        }
    }

    /// Largest `$top` accepted. Alerts: 2,000 (the largest page real clients use, §2.2);
    /// incidents: 50 (likewise); the reports: 1,000 (documented for signIns).
    pub(crate) fn max_top(self) -> usize {
        match self {
            Collection::Alerts => 2_000,
            Collection::Incidents => 50,
            _ => 1_000,
        }
    }

    /// Page size without `$top`.
    pub(crate) fn default_top(self) -> usize {
        match self {
            Collection::Alerts => 100,
            Collection::Incidents => 50,
            _ => 1_000,
        }
    }

    fn allowed_options(self) -> &'static [&'static str] {
        match self {
            Collection::Alerts => &["$filter", "$top", "$skip", "$count", "$orderby", "$select"],
            Collection::Incidents => &[
                "$filter", "$top", "$skip", "$count", "$orderby", "$select", "$expand",
            ],
            Collection::SignIns { .. } => &["$filter", "$top", "$skiptoken", "$select"],
            Collection::DirectoryAudits | Collection::Provisioning => {
                &["$filter", "$top", "$skiptoken", "$select", "$orderby"]
            }
        }
    }

    /// Properties `$orderby` takes.
    fn sortable(self) -> &'static [&'static str] {
        match self {
            Collection::Alerts | Collection::Incidents => {
                &["lastUpdateDateTime", "createdDateTime"]
            }
            Collection::DirectoryAudits | Collection::Provisioning => &["activityDateTime"],
            Collection::SignIns { .. } => &[],
        }
    }

    /// The sign-in kinds a query reads: interactive only, unless a beta filter names
    /// `signInEventTypes` (then every kind, filtered by it, or the one kind its top-level
    /// `and` requires).
    pub(crate) fn sign_in_kinds(self, filter: Option<&Expr>) -> &'static [SignInKind] {
        match self {
            Collection::SignIns { beta: true }
                if filter.is_some_and(|f| f.mentions("signInEventTypes")) =>
            {
                // A record's signInEventTypes holds its own kind only: a required member
                // leaves one kind to generate (the filter still decides).
                let required = filter.and_then(|f| f.required_member("signInEventTypes"));
                match SignInKind::ALL
                    .iter()
                    .position(|k| required.is_some_and(|r| r.eq_ignore_ascii_case(k.event_type())))
                {
                    Some(i) => &SignInKind::ALL[i..=i],
                    None => &SignInKind::ALL,
                }
            }
            _ => &SignInKind::ALL[..1],
        }
    }
}

/// The sort key of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SortKey {
    Created,
    Updated,
}

/// A validated query.
#[derive(Debug, Clone)]
pub(crate) struct Query {
    pub(crate) filter: Option<Expr>,
    pub(crate) top: Option<usize>,
    pub(crate) skip: usize,
    pub(crate) sort: SortKey,
    pub(crate) descending: bool,
    pub(crate) count: bool,
    pub(crate) expand_alerts: bool,
    pub(crate) select: Option<Vec<String>>,
    pub(crate) skiptoken: Option<String>,
    /// The options as sent (name, value), except `$skip`/`$skiptoken`: nextLinks repeat them.
    pub(crate) carry: Vec<(String, String)>,
}

impl Query {
    /// The page size in force.
    pub(crate) fn page_size(&self, c: Collection) -> usize {
        self.top.unwrap_or_else(|| c.default_top())
    }
}

/// Validates the query string of a request to `c`.
pub(crate) fn parse(c: Collection, pairs: &[(String, String)]) -> Result<Query, GraphError> {
    let mut q = Query {
        filter: None,
        top: None,
        skip: 0,
        sort: SortKey::Created,
        descending: true,
        count: false,
        expand_alerts: false,
        select: None,
        skiptoken: None,
        carry: Vec::new(),
    };
    let mut seen: Vec<String> = Vec::new();
    for (name, value) in pairs {
        if !name.starts_with('$') {
            continue;
        }
        let lower = name.to_ascii_lowercase();
        if seen.contains(&lower) {
            return Err(GraphError::bad(format!(
                "Query option '{}' was specified more than once, but it must be specified at most once.",
                &name[1..]
            )));
        }
        seen.push(lower.clone());
        if !c.allowed_options().contains(&lower.as_str()) {
            let known = [
                "$filter",
                "$top",
                "$skip",
                "$count",
                "$orderby",
                "$select",
                "$expand",
                "$skiptoken",
                "$search",
                "$format",
            ];
            let message = format!("Query option '{name}' is not supported.");
            return Err(if !known.contains(&lower.as_str()) {
                GraphError::bad(format!("The query parameter '{name}' is not supported."))
            } else if c.family() == Family::Identity {
                GraphError::unsupported(message)
            } else {
                GraphError::bad(message)
            });
        }
        match lower.as_str() {
            "$filter" => {
                q.filter = Some(filter::parse(value, c.schema()).map_err(GraphError::bad)?);
            }
            "$top" => q.top = Some(top(c, value)?),
            "$skip" => {
                q.skip = value.trim().parse().map_err(|_| {
                    GraphError::bad(format!(
                        "Invalid value '{value}' for $skip query option found. The $skip query option requires a non-negative integer value."
                    ))
                })?;
            }
            "$count" => {
                q.count = match value.trim() {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(GraphError::bad(format!(
                            "'{value}' is not a valid count option."
                        )));
                    }
                }
            }
            "$orderby" => (q.sort, q.descending) = order_by(c, value)?,
            "$expand" => {
                let wanted: Vec<&str> = value.split(',').map(str::trim).collect();
                if wanted.iter().any(|w| !w.eq_ignore_ascii_case("alerts")) {
                    return Err(GraphError::bad(format!(
                        "Could not find a property named '{}' on type 'microsoft.graph.security.incident'.",
                        wanted
                            .iter()
                            .find(|w| !w.eq_ignore_ascii_case("alerts"))
                            .unwrap_or(&"")
                    )));
                }
                q.expand_alerts = true;
            }
            "$select" => {
                q.select = Some(
                    value
                        .split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect(),
                );
            }
            "$skiptoken" => q.skiptoken = Some(value.clone()),
            _ => {}
        }
        if lower != "$skip" && lower != "$skiptoken" {
            q.carry.push((name.clone(), value.clone()));
        }
    }
    Ok(q)
}

fn top(c: Collection, value: &str) -> Result<usize, GraphError> {
    let max = c.max_top();
    let n: i64 = value.trim().parse().map_err(|_| {
        GraphError::bad(format!(
            "Invalid value '{value}' for $top query option found. The $top query option requires a non-negative integer value."
        ))
    })?;
    match c.family() {
        Family::Identity if !(1..=max as i64).contains(&n) => Err(GraphError::unsupported(
            format!("Invalid page size specified: '{n}'. Must be between 1 and {max} inclusive."),
        )),
        Family::Security if n < 0 => Err(GraphError::bad(format!(
            "Invalid value '{value}' for $top query option found. The $top query option requires a non-negative integer value."
        ))),
        Family::Security if n as usize > max => Err(GraphError::bad(format!(
            "The limit of '{max}' for Top query has been exceeded. The value from the incoming request is '{n}'."
        ))),
        _ => Ok(n as usize),
    }
}

fn order_by(c: Collection, value: &str) -> Result<(SortKey, bool), GraphError> {
    if c.sortable().is_empty() {
        return Err(GraphError::unsupported(
            "Query option '$orderby' is not supported.",
        ));
    }
    let words: Vec<&str> = value.split_whitespace().collect();
    let (prop, dir) = match words[..] {
        [p] => (p, "asc"),
        [p, d] => (p, d),
        _ => {
            return Err(GraphError::bad(format!(
                "Invalid $orderby expression '{value}'."
            )));
        }
    };
    let Some(prop) = c.sortable().iter().find(|s| s.eq_ignore_ascii_case(prop)) else {
        return Err(GraphError::bad(format!(
            "Invalid $orderby expression '{value}': the collection can be sorted by {} only.",
            c.sortable().join(", ")
        )));
    };
    let descending = match dir.to_ascii_lowercase().as_str() {
        "asc" => false,
        "desc" => true,
        _ => {
            return Err(GraphError::bad(format!(
                "Invalid $orderby expression '{value}'."
            )));
        }
    };
    let key = if *prop == "lastUpdateDateTime" {
        SortKey::Updated
    } else {
        SortKey::Created
    };
    Ok((key, descending))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(c: Collection, pairs: &[(&str, &str)]) -> Result<Query, GraphError> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse(c, &pairs)
    }

    #[test]
    fn a_required_sign_in_event_type_narrows_the_kinds_generated() {
        let beta = Collection::SignIns { beta: true };
        let kinds = |filter: &str| {
            let query = q(beta, &[("$filter", filter)]).expect("valid");
            beta.sign_in_kinds(query.filter.as_ref()).to_vec()
        };
        assert_eq!(
            kinds(
                "createdDateTime ge 2026-09-01T10:00:00Z and signInEventTypes/any(t: t eq 'servicePrincipal')"
            ),
            [SignInKind::ServicePrincipal]
        );
        assert_eq!(
            kinds(
                "signInEventTypes/any(t: t eq 'NonInteractiveUser') and createdDateTime lt 2026-09-02T00:00:00Z"
            ),
            [SignInKind::NonInteractive]
        );
        // Either of two, or any but one: every kind is generated and the filter decides.
        assert_eq!(
            kinds(
                "signInEventTypes/any(t: t eq 'servicePrincipal') or signInEventTypes/any(t: t eq 'managedIdentity')"
            ),
            SignInKind::ALL
        );
        assert_eq!(
            kinds("signInEventTypes/any(t: t ne 'interactiveUser')"),
            SignInKind::ALL
        );
        assert_eq!(
            Collection::SignIns { beta: false }.sign_in_kinds(None),
            [SignInKind::Interactive]
        );
    }

    #[test]
    fn documented_options_pass_and_others_fail() {
        let ok = q(
            Collection::Alerts,
            &[
                ("$filter", "lastUpdateDateTime ge 2026-09-01T10:00:00Z"),
                ("$top", "2000"),
                ("$orderby", "lastUpdateDateTime asc"),
                ("$count", "true"),
                ("$skip", "10"),
                ("other", "ignored"),
            ],
        )
        .expect("valid");
        assert_eq!(
            (ok.top, ok.skip, ok.sort, ok.descending, ok.count),
            (Some(2000), 10, SortKey::Updated, false, true)
        );
        assert_eq!(
            ok.carry.len(),
            4,
            "all but $skip and non-$ names are carried"
        );
        let code =
            |c, p: &[(&str, &str)]| q(c, p).map(|_| ()).map_err(|e| (e.status.as_u16(), e.code));
        assert_eq!(
            code(Collection::Alerts, &[("$top", "2001")]),
            Err((400, "BadRequest"))
        );
        assert_eq!(
            code(Collection::Incidents, &[("$top", "51")]),
            Err((400, "BadRequest"))
        );
        let sign_ins = Collection::SignIns { beta: false };
        assert_eq!(code(sign_ins, &[("$top", "1000")]), Ok(()));
        assert_eq!(
            code(sign_ins, &[("$top", "1001")]),
            Err((400, "Request_UnsupportedQuery"))
        );
        assert_eq!(
            code(sign_ins, &[("$skip", "5")]),
            Err((400, "Request_UnsupportedQuery"))
        );
        assert_eq!(
            code(sign_ins, &[("$orderby", "createdDateTime")]),
            Err((400, "Request_UnsupportedQuery"))
        );
        assert_eq!(
            code(Collection::Alerts, &[("$expand", "alerts")]),
            Err((400, "BadRequest"))
        );
        assert_eq!(
            code(Collection::Incidents, &[("$expand", "alerts")]),
            Ok(())
        );
        assert_eq!(
            code(Collection::Incidents, &[("$expand", "evidence")]),
            Err((400, "BadRequest"))
        );
        assert_eq!(
            code(Collection::Alerts, &[("$filter", "title eq 'x'")]),
            Err((400, "BadRequest"))
        );
        assert_eq!(
            code(Collection::Alerts, &[("$bogus", "1")]),
            Err((400, "BadRequest"))
        );
        assert_eq!(
            code(Collection::Alerts, &[("$top", "1"), ("$TOP", "2")]),
            Err((400, "BadRequest"))
        );
        assert_eq!(
            code(
                sign_ins,
                &[(
                    "$filter",
                    "signInEventTypes/any(t: t eq 'servicePrincipal')"
                )]
            ),
            Err((400, "BadRequest"))
        );
        assert_eq!(
            code(
                Collection::SignIns { beta: true },
                &[(
                    "$filter",
                    "signInEventTypes/any(t: t eq 'servicePrincipal')"
                )]
            ),
            Ok(())
        );
    }

    #[test]
    fn paths_are_case_insensitive() {
        assert_eq!(
            Collection::at("v1.0", "auditLogs/signins"),
            Some(Collection::SignIns { beta: false })
        );
        assert_eq!(
            Collection::at("v1.0", "Security/Alerts_V2/"),
            Some(Collection::Alerts)
        );
        assert_eq!(Collection::at("beta", "security/alerts_v2"), None);
        assert_eq!(Collection::at("v1.0", "security/alerts"), None);
    }
}
