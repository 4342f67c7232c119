//! Microsoft Graph: paging and filters against the ground truth, late visibility, updates,
//! errors, faults, audiences, roles, licences and throttle windows.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration as StdDuration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chrono::{DateTime, Duration, Utc};
use common::*;
use serde_json::Value;
use siemflow_simulator::{
    Cloud, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TENANT_ID, GraphConfig, GraphFaults,
    GraphResource, GraphStats, GraphTenantConfig, M365Config, Simulator, TenantConfig,
    graph_ground_truth, graph_versions,
};

const GRAPH: &str = "https://graph.microsoft.com";
const PREFER: &str = "include-unknown-enum-members";
const SECOND_TENANT: &str = "7c0de1e5-2b2a-4d5e-9f00-3f6e5d4c3b2a";
const SECOND_CLIENT: &str = "3b1f2a44-8c6d-4e7f-a012-b3c4d5e6f708";
const THIRD_TENANT: &str = "0d1e2f30-4a5b-4c6d-8e7f-90a1b2c3d4e5";
const THIRD_CLIENT: &str = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d";

/// A frozen world with limits out of the way, so a listing is a fixed ground truth.
fn frozen(graph: GraphConfig) -> M365Config {
    M365Config {
        live: false,
        history: StdDuration::from_secs(24 * 3600),
        graph: GraphConfig {
            security_requests_per_minute: 1_000_000,
            identity_requests_per_10s: 1_000_000,
            ..graph
        },
        ..M365Config::default()
    }
}

/// A live world (time passes, `advance_clock` moves it) with limits out of the way.
fn live(graph: GraphConfig) -> M365Config {
    M365Config {
        live: true,
        ..frozen(graph)
    }
}

fn app(tenant: &str, client: &str, secret: &str, roles: &[&str]) -> TenantConfig {
    TenantConfig {
        tenant_id: tenant.into(),
        client_id: client.into(),
        client_secret: Some(secret.into()),
        certificate_pem: None,
        roles: roles.iter().map(|r| r.to_string()).collect(),
    }
}

/// A token of the default app for `resource`.
async fn default_token(sim: &Simulator, resource: &str) -> String {
    token_for_resource(
        sim,
        DEFAULT_TENANT_ID,
        DEFAULT_CLIENT_ID,
        DEFAULT_CLIENT_SECRET,
        resource,
    )
    .await
}

async fn graph_token(sim: &Simulator) -> String {
    default_token(sim, GRAPH).await
}

/// A simulator of `cfg` and a Graph token of its default app.
async fn start_with_token(cfg: M365Config) -> (Simulator, String) {
    let sim = start(cfg).await;
    let t = graph_token(&sim).await;
    (sim, t)
}

/// The ground truth of the default tenant.
fn ground_truth(
    cfg: &M365Config,
    resource: GraphResource,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Vec<Value> {
    graph_ground_truth(cfg, DEFAULT_TENANT_ID, resource, from, until)
}

/// The default tenant's Graph counters.
fn graph_stats(sim: &Simulator) -> GraphStats {
    sim.stats().tenant(DEFAULT_TENANT_ID).graph
}

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Reply {
    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }
    fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or_default()
    }
    fn value(&self) -> Vec<Value> {
        self.body["value"].as_array().cloned().unwrap_or_default()
    }
    fn next(&self) -> Option<String> {
        self.body["@odata.nextLink"].as_str().map(str::to_string)
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// GET an absolute URL with a bearer token and optionally the Prefer header.
async fn get_url(url: &str, token: Option<&str>, prefer: bool) -> Reply {
    let mut rb = http().get(url);
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    if prefer {
        rb = rb.header("Prefer", PREFER);
    }
    let r = rb.send().await.expect("request");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{url}: not JSON: {text:?}"));
    Reply {
        status,
        headers,
        body,
    }
}

/// GET `path_and_query` below the simulator's root (`/v1.0/…`); the query is encoded here.
async fn get(
    sim: &Simulator,
    path: &str,
    query: &[(&str, &str)],
    token: Option<&str>,
    prefer: bool,
) -> Reply {
    get_url(&url(sim, path, query), token, prefer).await
}

fn url(sim: &Simulator, path: &str, query: &[(&str, &str)]) -> String {
    let mut u = format!("{}{path}", sim.base_url());
    if !query.is_empty() {
        let q: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(query)
            .finish();
        u = format!("{u}?{q}");
    }
    u
}

/// Follows nextLinks from `first` to the end; when a full page of `top` comes without one,
/// goes on with `$skip` (reference §2.2). Returns every record and each page's size.
async fn collect(
    first: &str,
    token: &str,
    prefer: bool,
    top: Option<usize>,
) -> (Vec<Value>, Vec<usize>) {
    let mut all = Vec::new();
    let mut pages = Vec::new();
    let mut next = first.to_string();
    for _ in 0..2_000 {
        let r = get_url(&next, Some(token), prefer).await;
        assert_eq!(r.status, 200, "{next}: {}", r.body);
        let value = r.value();
        pages.push(value.len());
        all.extend(value.iter().cloned());
        match (r.next(), top) {
            (Some(n), _) => next = n,
            (None, Some(top)) if value.len() == top => {
                next = format!("{first}&$skip={}", all.len());
            }
            _ => return (all, pages),
        }
    }
    panic!("paging never ended");
}

/// Every record of `path` with `query`, following nextLinks alone.
async fn list(
    sim: &Simulator,
    path: &str,
    query: &[(&str, &str)],
    token: &str,
    prefer: bool,
) -> Vec<Value> {
    collect(&url(sim, path, query), token, prefer, None).await.0
}

/// `got == want`, saying where they first differ.
fn same(got: &[Value], want: &[Value], what: &str) {
    assert_eq!(ids(got), ids(want), "{what}: ids");
    if let Some((g, w)) = got.iter().zip(want).find(|(g, w)| g != w) {
        panic!("{what}: record differs\n got: {g}\nwant: {w}");
    }
}

fn ids(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_string())
        .collect()
}

fn id_set(records: &[Value]) -> BTreeSet<String> {
    ids(records).into_iter().collect()
}

fn time_of(r: &Value, field: &str) -> DateTime<Utc> {
    let s = r[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} in {r}"));
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{s}: {e}"))
        .with_timezone(&Utc)
}

/// `2026-09-01T10:00:00.0000000Z`, a DateTimeOffset literal.
fn lit(t: DateTime<Utc>) -> String {
    format!(
        "{}.{:07}Z",
        t.format("%Y-%m-%dT%H:%M:%S"),
        t.timestamp_subsec_nanos() / 100
    )
}

/// (id → lastUpdateDateTime) of a listing.
fn latest(records: &[Value]) -> BTreeMap<String, String> {
    records
        .iter()
        .map(|r| {
            (
                r["id"].as_str().expect("id").to_string(),
                r["lastUpdateDateTime"]
                    .as_str()
                    .expect("lastUpdate")
                    .to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn alerts_and_incidents_page_to_the_ground_truth() {
    let cfg = frozen(GraphConfig {
        alerts_per_hour: 12,
        ..GraphConfig::default()
    });
    let (sim, t) = start_with_token(cfg.clone()).await;
    let (from, until) = (sim.history_start(), sim.visible_until());
    for (path, resource, top) in [
        ("/v1.0/security/alerts_v2", GraphResource::Alerts, 7),
        ("/v1.0/security/incidents", GraphResource::Incidents, 5),
    ] {
        let truth = ground_truth(&cfg, resource, from, until);
        assert!(
            truth.len() > 30,
            "{path}: a day of data, got {}",
            truth.len()
        );
        let top_s = top.to_string();
        let (got, pages) = collect(&url(&sim, path, &[("$top", &top_s)]), &t, true, None).await;
        assert_eq!(
            got, truth,
            "{path}: every record, in the default order (newest first)"
        );
        assert!(
            pages[..pages.len() - 1].iter().all(|p| *p == top),
            "{path}: {pages:?}"
        );
        // Newest first by createdDateTime.
        let created: Vec<_> = got.iter().map(|r| time_of(r, "createdDateTime")).collect();
        assert!(created.windows(2).all(|w| w[0] >= w[1]), "{path}");
        // $count is the whole listing; $orderby=lastUpdateDateTime asc sorts ascending.
        let r = get(
            &sim,
            path,
            &[
                ("$count", "true"),
                ("$orderby", "lastUpdateDateTime asc"),
                ("$top", "5"),
            ],
            Some(&t),
            true,
        )
        .await;
        assert_eq!(
            r.body["@odata.count"].as_u64(),
            Some(truth.len() as u64),
            "{path}"
        );
        let asc = list(
            &sim,
            path,
            &[("$orderby", "lastUpdateDateTime asc"), ("$top", "9")],
            &t,
            true,
        )
        .await;
        let updated: Vec<_> = asc
            .iter()
            .map(|r| time_of(r, "lastUpdateDateTime"))
            .collect();
        assert!(
            updated.windows(2).all(|w| w[0] <= w[1]),
            "{path}: ascending"
        );
        assert_eq!(latest(&asc), latest(&truth));
        assert_eq!(r.header("preference-applied"), Some(PREFER));
    }
    // Nothing for the other tenant (no app there) and unknown tenants.
    assert!(graph_ground_truth(&cfg, SECOND_TENANT, GraphResource::Alerts, from, until).is_empty());
    sim.stop().await;
}

#[tokio::test]
async fn filters_match_the_documented_semantics() {
    let cfg = frozen(GraphConfig {
        alerts_per_hour: 12,
        ..GraphConfig::default()
    });
    let (sim, t) = start_with_token(cfg.clone()).await;
    let (from, until) = (sim.history_start(), sim.visible_until());
    let alerts = ground_truth(&cfg, GraphResource::Alerts, from, until);
    let mid = time_of(&alerts[alerts.len() / 2], "lastUpdateDateTime");
    type Pick = Box<dyn Fn(&Value) -> bool>;
    // (filter, the same predicate written independently, whether it must select something)
    let cases: Vec<(String, Pick, bool)> = vec![
        (
            format!("lastUpdateDateTime ge {}", lit(mid)),
            Box::new(move |r: &Value| time_of(r, "lastUpdateDateTime") >= mid),
            true,
        ),
        (
            format!("lastUpdateDateTime gt {}", lit(mid)),
            Box::new(move |r: &Value| time_of(r, "lastUpdateDateTime") > mid),
            false,
        ),
        (
            format!("createdDateTime lt {}", lit(mid)),
            Box::new(move |r: &Value| time_of(r, "createdDateTime") < mid),
            true,
        ),
        (
            "status eq 'resolved'".into(),
            Box::new(|r: &Value| r["status"] == "resolved"),
            true,
        ),
        (
            "status eq 'new' or status eq 'inProgress'".into(),
            Box::new(|r: &Value| r["status"] == "new" || r["status"] == "inProgress"),
            true,
        ),
        (
            format!(
                "severity eq 'high' and createdDateTime ge {}",
                lit(mid - Duration::hours(6))
            ),
            Box::new(move |r: &Value| {
                r["severity"] == "high" && time_of(r, "createdDateTime") >= mid - Duration::hours(6)
            }),
            false,
        ),
        (
            "assignedTo eq null".into(),
            Box::new(|r: &Value| r["assignedTo"].is_null()),
            true,
        ),
        (
            "not (assignedTo eq null)".into(),
            Box::new(|r: &Value| !r["assignedTo"].is_null()),
            true,
        ),
        (
            "classification eq 'truePositive'".into(),
            Box::new(|r: &Value| r["classification"] == "truePositive"),
            false,
        ),
        (
            "serviceSource eq 'microsoftDefenderForEndpoint'".into(),
            Box::new(|r: &Value| r["serviceSource"] == "microsoftDefenderForEndpoint"),
            true,
        ),
    ];
    for (filter, pick, must_select) in cases {
        let want: Vec<Value> = alerts.iter().filter(|r| pick(r)).cloned().collect();
        let got = list(
            &sim,
            "/v1.0/security/alerts_v2",
            &[("$filter", &filter), ("$top", "50")],
            &t,
            true,
        )
        .await;
        assert_eq!(ids(&got), ids(&want), "{filter}");
        assert!(
            !must_select || (!want.is_empty() && want.len() < alerts.len()),
            "{filter}: should select some, not all"
        );
    }
    // Quoted DateTimeOffset literals, unknown properties, bad enum members: Graph's 400.
    for bad in [
        format!("lastUpdateDateTime ge '{}'", lit(mid)),
        "title eq 'x'".into(),
        "status eq 'closed'".into(),
        "lastUpdateDateTime ge".into(),
        "lastUpdateDateTime ge 2026-09-01T10:00:00".into(),
    ] {
        let r = get(
            &sim,
            "/v1.0/security/alerts_v2",
            &[("$filter", &bad)],
            Some(&t),
            false,
        )
        .await;
        assert_eq!(
            (r.status, r.code()),
            (400, "BadRequest"),
            "{bad}: {}",
            r.body
        );
        assert!(
            r.message().starts_with("Invalid filter clause"),
            "{bad}: {}",
            r.message()
        );
        let inner = &r.body["error"]["innerError"];
        assert!(
            inner["request-id"].is_string() && inner["date"].is_string(),
            "{}",
            r.body
        );
        assert!(r.header("request-id").is_some());
    }
    let incidents = ground_truth(&cfg, GraphResource::Incidents, from, until);
    let r = get(
        &sim,
        "/v1.0/security/incidents",
        &[("$filter", "status eq 'active'"), ("$top", "50")],
        Some(&t),
        true,
    )
    .await;
    let want: Vec<Value> = incidents
        .iter()
        .filter(|i| i["status"] == "active")
        .cloned()
        .collect();
    assert_eq!(ids(&r.value()), ids(&want[..want.len().min(50)]));
    let r = get(
        &sim,
        "/v1.0/security/incidents",
        &[("$filter", "serviceSource eq 'x'")],
        Some(&t),
        false,
    )
    .await;
    assert_eq!(
        r.status, 400,
        "serviceSource is not filterable on incidents"
    );
    sim.stop().await;
}

#[tokio::test]
async fn incidents_expand_their_alerts() {
    let cfg = frozen(GraphConfig::default());
    let (sim, t) = start_with_token(cfg.clone()).await;
    let alerts = ground_truth(
        &cfg,
        GraphResource::Alerts,
        sim.history_start(),
        sim.visible_until(),
    );
    let incidents = list(
        &sim,
        "/v1.0/security/incidents",
        &[("$expand", "alerts"), ("$top", "10")],
        &t,
        true,
    )
    .await;
    let mut expanded = 0;
    for inc in &incidents {
        let list = inc["alerts"].as_array().expect("alerts expanded");
        assert!(!list.is_empty());
        let want: Vec<&Value> = alerts
            .iter()
            .filter(|a| a["incidentId"] == inc["id"])
            .collect();
        let mut got: Vec<&Value> = list.iter().collect();
        got.sort_by_key(|a| a["id"].as_str().map(str::to_string));
        let mut want = want;
        want.sort_by_key(|a| a["id"].as_str().map(str::to_string));
        assert_eq!(got, want, "incident {}", inc["id"]);
        expanded += list.len();
    }
    // Every alert belongs to a listed incident, except one whose incident is not indexed yet
    // (an incident is created a moment after its first alert).
    assert!(expanded <= alerts.len());
    let listed = id_set(&incidents);
    for a in alerts
        .iter()
        .filter(|a| !listed.contains(a["incidentId"].as_str().unwrap_or_default()))
    {
        assert!(
            time_of(a, "createdDateTime") > sim.visible_until() - Duration::minutes(5),
            "{a}"
        );
    }
    // Without $expand there is no alerts property.
    let r = get(
        &sim,
        "/v1.0/security/incidents",
        &[("$top", "1")],
        Some(&t),
        false,
    )
    .await;
    assert!(r.value()[0].get("alerts").is_none());
    sim.stop().await;
}

#[tokio::test]
async fn records_have_the_documented_shapes() {
    let cfg = frozen(GraphConfig {
        alerts_per_hour: 20,
        ..GraphConfig::default()
    });
    let (from, until) = (Utc::now() - Duration::days(1), Utc::now());
    let seven = regex_like_seven_digits;
    let alerts = ground_truth(&cfg, GraphResource::Alerts, from, until);
    let mut prefixes = BTreeSet::new();
    let mut evidence_types = BTreeSet::new();
    for a in &alerts {
        assert_eq!(a["@odata.type"], "#microsoft.graph.security.alert");
        assert_eq!(a["tenantId"], DEFAULT_TENANT_ID);
        has_keys(
            a,
            &[
                "providerAlertId",
                "incidentId",
                "status",
                "severity",
                "serviceSource",
                "detectionSource",
                "detectorId",
                "title",
                "category",
                "alertWebUrl",
                "incidentWebUrl",
                "mitreTechniques",
                "createdDateTime",
                "lastUpdateDateTime",
                "firstActivityDateTime",
                "lastActivityDateTime",
                "comments",
                "evidence",
                "systemTags",
                "classification",
                "determination",
                "assignedTo",
                "resolvedDateTime",
            ],
        );
        let id = a["id"].as_str().expect("id");
        prefixes.insert(id[..2].to_string());
        if id.starts_with("da") {
            assert!(
                seven(a["createdDateTime"].as_str().expect("created")),
                "{a}"
            );
            assert_eq!(a["providerAlertId"], a["id"]);
        }
        assert!(time_of(a, "lastUpdateDateTime") > time_of(a, "createdDateTime"));
        if a["status"] == "resolved" {
            assert!(a["resolvedDateTime"].is_string() && a["classification"].is_string());
        } else {
            assert!(a["resolvedDateTime"].is_null());
        }
        for e in a["evidence"].as_array().expect("evidence") {
            let ty = e["@odata.type"].as_str().expect("@odata.type");
            assert!(ty.starts_with("#microsoft.graph.security."), "{ty}");
            has_keys(
                e,
                &[
                    "createdDateTime",
                    "verdict",
                    "remediationStatus",
                    "roles",
                    "detailedRoles",
                    "tags",
                ],
            );
            evidence_types.insert(ty.to_string());
        }
    }
    assert!(
        prefixes.contains("da") && prefixes.contains("fa"),
        "{prefixes:?}"
    );
    assert!(evidence_types.len() >= 8, "{evidence_types:?}");
    let incidents = ground_truth(&cfg, GraphResource::Incidents, from, until);
    assert!(!incidents.is_empty());
    for i in &incidents {
        assert!(
            i["id"]
                .as_str()
                .expect("id")
                .bytes()
                .all(|b| b.is_ascii_digit())
        );
        has_keys(
            i,
            &[
                "incidentWebUrl",
                "redirectIncidentId",
                "displayName",
                "createdDateTime",
                "lastUpdateDateTime",
                "assignedTo",
                "classification",
                "determination",
                "status",
                "severity",
                "customTags",
                "systemTags",
                "comments",
            ],
        );
        assert!(seven(i["lastUpdateDateTime"].as_str().expect("lastUpdate")));
    }
    let sign_ins = ground_truth(&cfg, GraphResource::SignIns, from, until);
    assert!(!sign_ins.is_empty());
    for s in &sign_ins {
        has_keys(
            s,
            &[
                "createdDateTime",
                "userDisplayName",
                "userPrincipalName",
                "userId",
                "appId",
                "appDisplayName",
                "ipAddress",
                "clientAppUsed",
                "correlationId",
                "conditionalAccessStatus",
                "isInteractive",
                "riskDetail",
                "riskLevelAggregated",
                "riskLevelDuringSignIn",
                "riskState",
                "riskEventTypes",
                "resourceDisplayName",
                "resourceId",
                "status",
                "deviceDetail",
                "location",
                "appliedConditionalAccessPolicies",
            ],
        );
        assert_eq!(s["isInteractive"], true);
        assert!(
            s.get("signInEventTypes").is_none(),
            "v1.0 has no signInEventTypes"
        );
        assert!(s["status"]["errorCode"].is_u64());
        assert!(seven(s["createdDateTime"].as_str().expect("created")));
    }
    for (resource, kind) in [
        (GraphResource::NonInteractiveSignIns, "nonInteractiveUser"),
        (GraphResource::ServicePrincipalSignIns, "servicePrincipal"),
        (GraphResource::ManagedIdentitySignIns, "managedIdentity"),
    ] {
        let list = ground_truth(&cfg, resource, from, until);
        assert!(!list.is_empty(), "{kind}");
        assert!(
            list.iter()
                .all(|s| s["signInEventTypes"] == serde_json::json!([kind])
                    && s["isInteractive"] == false),
            "{kind}"
        );
    }
    let audits = ground_truth(&cfg, GraphResource::DirectoryAudits, from, until);
    assert!(!audits.is_empty());
    for d in &audits {
        assert!(d["id"].as_str().expect("id").starts_with("Directory_"));
        has_keys(
            d,
            &[
                "category",
                "correlationId",
                "result",
                "resultReason",
                "activityDisplayName",
                "activityDateTime",
                "loggedByService",
                "operationType",
                "initiatedBy",
                "targetResources",
                "additionalDetails",
            ],
        );
    }
    let provisioning = ground_truth(&cfg, GraphResource::Provisioning, from, until);
    assert!(!provisioning.is_empty());
    assert!(
        provisioning
            .iter()
            .all(|p| p["provisioningStatusInfo"]["status"].is_string()
                && p["activityDateTime"].is_string())
    );
}

/// Asserts that `record` has every one of `keys`.
fn has_keys(record: &Value, keys: &[&str]) {
    for key in keys {
        assert!(record.get(key).is_some(), "{key} missing in {record}");
    }
}

/// `…T10:02:11.4418120Z`: seven fractional digits and `Z`.
fn regex_like_seven_digits(s: &str) -> bool {
    s.len() == 28
        && s.ends_with('Z')
        && s.as_bytes()[19] == b'.'
        && s[20..27].bytes().all(|b| b.is_ascii_digit())
}

#[tokio::test]
async fn alerts_and_incidents_change_after_creation() {
    let cfg = live(GraphConfig {
        alerts_per_hour: 12,
        ..GraphConfig::default()
    });
    let sim = start(cfg.clone()).await;
    let from = sim.history_start();
    // Versions: some records have several, with increasing lastUpdateDateTime.
    let far = sim.visible_until() + Duration::days(2);
    let versions = graph_versions(&cfg, DEFAULT_TENANT_ID, GraphResource::Alerts, from, far);
    let mut per_id: HashMap<&str, Vec<DateTime<Utc>>> = HashMap::new();
    for (id, at) in &versions {
        per_id.entry(id).or_default().push(*at);
    }
    assert!(
        per_id.values().any(|v| v.len() >= 3),
        "some alerts change 2–3 times"
    );
    assert!(
        per_id
            .values()
            .all(|v| v.windows(2).all(|w| w[0] < w[1]) && v.len() <= 4)
    );

    for (path, resource) in [
        ("/v1.0/security/alerts_v2", GraphResource::Alerts),
        ("/v1.0/security/incidents", GraphResource::Incidents),
    ] {
        // What a source does: list everything, remember the newest lastUpdateDateTime, later
        // ask for lastUpdateDateTime ge (cursor − 5 min) and keep the latest version per id.
        let t = graph_token(&sim).await;
        let poll = Poll {
            sim: &sim,
            cfg: &cfg,
            resource,
            path,
        };
        let (first, seen) = poll.list(&[("$top", "50")], &t, BTreeMap::new()).await;
        let cursor = first
            .iter()
            .map(|r| time_of(r, "lastUpdateDateTime"))
            .max()
            .expect("records");

        sim.advance_clock(StdDuration::from_secs(20 * 3600));
        let t = graph_token(&sim).await; // the first one expired meanwhile
        let filter = format!(
            "lastUpdateDateTime ge {}",
            lit(cursor - Duration::minutes(5))
        );
        let query = [
            ("$filter", filter.as_str()),
            ("$orderby", "lastUpdateDateTime asc"),
            ("$top", "50"),
        ];
        let (changed, _) = poll.list(&query, &t, seen.clone()).await;
        let status: HashMap<&str, &Value> = first
            .iter()
            .map(|r| (r["id"].as_str().unwrap_or_default(), &r["status"]))
            .collect();
        let mut updated = 0;
        for r in &changed {
            let id = r["id"].as_str().unwrap_or_default();
            let Some(old) = seen.get(id) else {
                continue;
            };
            let now = r["lastUpdateDateTime"].as_str().unwrap_or_default();
            assert!(now >= old.as_str(), "{path}: versions only move forward");
            if now > old.as_str() {
                updated += 1;
                // new/active → inProgress/awaitingAction → resolved, never back.
                let rank = |s: &Value| match s.as_str().unwrap_or_default() {
                    "new" | "active" => 0,
                    "resolved" => 2,
                    _ => 1,
                };
                assert!(
                    rank(&r["status"]) >= rank(status[id]),
                    "{path}: {id} went back"
                );
            }
        }
        assert!(
            updated > 0,
            "{path}: records seen before came back in a later version"
        );
    }
    sim.stop().await;
}

/// A source's view of one security collection: what it has seen, checked against the truth.
struct Poll<'a> {
    sim: &'a Simulator,
    cfg: &'a M365Config,
    resource: GraphResource,
    path: &'a str,
}

impl Poll<'_> {
    /// Lists `query` to the end and merges the listing's latest versions into `known`; the
    /// merged view lies [`within`] the truth before and after the listing. Returns the
    /// listing and the merged view.
    async fn list(
        &self,
        query: &[(&str, &str)],
        token: &str,
        mut known: BTreeMap<String, String>,
    ) -> (Vec<Value>, BTreeMap<String, String>) {
        let (sim, from) = (self.sim, self.sim.history_start());
        let before = sim.visible_until();
        let got = list(sim, self.path, query, token, true).await;
        let after = sim.visible_until();
        known.extend(latest(&got));
        let truth = |until| latest(&ground_truth(self.cfg, self.resource, from, until));
        within(&known, &truth(before), &truth(after), self.path);
        (got, known)
    }
}

/// Every (id, lastUpdate) served lies between the truth before and after the listing: all
/// ids visible before are there, none invisible after is, each in a version of that span.
fn within(
    got: &BTreeMap<String, String>,
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
    what: &str,
) {
    for id in before.keys() {
        assert!(
            got.contains_key(id),
            "{what}: {id} visible before the listing is missing"
        );
    }
    for (id, at) in got {
        let ok = before.get(id) == Some(at)
            || after.get(id) == Some(at)
            || (before.get(id).is_some_and(|b| b <= at) && after.get(id).is_some_and(|a| at <= a));
        assert!(
            ok,
            "{what}: {id} at {at} is neither the version before ({:?}) nor after ({:?})",
            before.get(id),
            after.get(id)
        );
    }
}

#[tokio::test]
async fn sign_ins_come_newest_first_and_some_arrive_late() {
    let cfg = live(GraphConfig {
        sign_ins_per_hour: 2_000,
        late_sign_in_rate: 0.3,
        ..GraphConfig::default()
    });
    let (sim, t) = start_with_token(cfg.clone()).await;
    let t1 = sim.visible_until();
    let (lo, hi) = (t1 - Duration::hours(3), t1);
    let filter = format!(
        "createdDateTime ge {} and createdDateTime lt {}",
        lit(lo),
        lit(hi)
    );
    let first_url = url(
        &sim,
        "/v1.0/auditLogs/signIns",
        &[("$filter", &filter), ("$top", "100")],
    );
    let window = |records: Vec<Value>| -> BTreeSet<String> {
        records
            .into_iter()
            .filter(|r| {
                let c = time_of(r, "createdDateTime");
                c >= lo && c < hi
            })
            .map(|r| r["id"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let before = sim.visible_until();
    let (got, pages) = collect(&first_url, &t, false, None).await;
    let after = sim.visible_until();
    assert!(pages.len() > 2, "{pages:?}");
    let created: Vec<_> = got.iter().map(|r| time_of(r, "createdDateTime")).collect();
    assert!(created.windows(2).all(|w| w[0] >= w[1]), "newest first");
    assert!(
        created.iter().all(|c| *c >= lo && *c < hi),
        "the filter holds"
    );
    let got_ids = id_set(&got);
    assert_eq!(got_ids.len(), got.len(), "no record twice");
    // Records of the window are created at or after `lo`: the truth need not start earlier.
    let from = lo;
    let truth_before = window(ground_truth(&cfg, GraphResource::SignIns, from, before));
    let truth_after = window(ground_truth(&cfg, GraphResource::SignIns, from, after));
    assert!(truth_before.is_subset(&got_ids) && got_ids.is_subset(&truth_after));

    // Two hours later every sign-in of the window is visible, among them some that were
    // more than 30 minutes old and still missing at t1.
    sim.advance_clock(StdDuration::from_secs(2 * 3600 + 60));
    let t = graph_token(&sim).await;
    let (later, _) = collect(&first_url, &t, false, None).await;
    let later_ids = id_set(&later);
    assert!(got_ids.is_subset(&later_ids));
    let complete = window(ground_truth(
        &cfg,
        GraphResource::SignIns,
        from,
        sim.visible_until(),
    ));
    assert_eq!(later_ids, complete);
    let late: Vec<&Value> = later
        .iter()
        .filter(|r| {
            !got_ids.contains(r["id"].as_str().unwrap_or_default())
                && time_of(r, "createdDateTime") < t1 - Duration::minutes(30)
        })
        .collect();
    assert!(
        !late.is_empty(),
        "some sign-ins became visible more than 30 minutes after they happened"
    );

    // beta: the other kinds through signInEventTypes; v1.0 refuses that filter.
    for (kind, resource) in [
        ("nonInteractiveUser", GraphResource::NonInteractiveSignIns),
        ("servicePrincipal", GraphResource::ServicePrincipalSignIns),
        ("managedIdentity", GraphResource::ManagedIdentitySignIns),
    ] {
        let f = format!("{filter} and signInEventTypes/any(t: t eq '{kind}')");
        let beta = list(
            &sim,
            "/beta/auditLogs/signIns",
            &[("$filter", &f), ("$top", "1000")],
            &t,
            false,
        )
        .await;
        assert!(!beta.is_empty(), "{kind}");
        assert!(
            beta.iter()
                .all(|r| r["signInEventTypes"] == serde_json::json!([kind])),
            "{kind}"
        );
        let truth = window(ground_truth(&cfg, resource, from, sim.visible_until()));
        assert_eq!(id_set(&beta), truth, "{kind}");
        let r = get(
            &sim,
            "/v1.0/auditLogs/signIns",
            &[("$filter", &f)],
            Some(&t),
            false,
        )
        .await;
        assert_eq!(r.status, 400, "v1.0 has no signInEventTypes: {}", r.body);
    }
    // beta without the lambda: interactive sign-ins only (every page: the window can
    // hold more than one page of sign-ins, depending on the hour the test runs).
    let interactive = list(
        &sim,
        "/beta/auditLogs/signIns",
        &[("$filter", &filter), ("$top", "1000")],
        &t,
        false,
    )
    .await;
    assert_eq!(id_set(&interactive), later_ids);
    sim.stop().await;
}

#[tokio::test]
async fn audit_logs_page_by_skiptoken_to_the_ground_truth() {
    let cfg = frozen(GraphConfig::default());
    let (sim, t) = start_with_token(cfg.clone()).await;
    let (from, until) = (sim.history_start(), sim.visible_until());
    for (path, resource) in [
        (
            "/v1.0/auditLogs/directoryAudits",
            GraphResource::DirectoryAudits,
        ),
        ("/v1.0/auditLogs/provisioning", GraphResource::Provisioning),
        ("/v1.0/auditLogs/signIns", GraphResource::SignIns),
    ] {
        let truth = ground_truth(&cfg, resource, from, until);
        let (got, pages) = collect(&url(&sim, path, &[("$top", "37")]), &t, false, None).await;
        same(&got, &truth, path);
        assert!(pages.len() > 3);
        let r = get(&sim, path, &[("$top", "37")], Some(&t), false).await;
        let next = r.next().expect("nextLink");
        assert!(
            next.contains("$skiptoken=") && next.contains("$top=37"),
            "{next}"
        );
        assert!(
            r.body["@odata.context"]
                .as_str()
                .is_some_and(|c| c.ends_with(&path[6..]) || c.ends_with("signIns"))
        );
    }
    let asc = list(
        &sim,
        "/v1.0/auditLogs/directoryAudits",
        &[("$orderby", "activityDateTime asc"), ("$top", "100")],
        &t,
        false,
    )
    .await;
    let times: Vec<_> = asc.iter().map(|r| time_of(r, "activityDateTime")).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]));
    let f = "startswith(activityDisplayName,'Add member') and result eq 'success'";
    let added = list(
        &sim,
        "/v1.0/auditLogs/directoryAudits",
        &[("$filter", f)],
        &t,
        false,
    )
    .await;
    let want: Vec<Value> = ground_truth(&cfg, GraphResource::DirectoryAudits, from, until)
        .into_iter()
        .filter(|r| {
            r["activityDisplayName"]
                .as_str()
                .unwrap_or_default()
                .starts_with("Add member")
                && r["result"] == "success"
        })
        .collect();
    assert!(!want.is_empty());
    assert_eq!(ids(&added), ids(&want));
    sim.stop().await;
}

#[tokio::test]
async fn skiptokens_are_opaque_bound_and_expire() {
    let cfg = frozen(GraphConfig {
        skiptoken_lifetime: StdDuration::from_secs(600),
        ..GraphConfig::default()
    });
    let (sim, t) = start_with_token(cfg).await;
    let r = get(
        &sim,
        "/v1.0/auditLogs/directoryAudits",
        &[("$top", "10")],
        Some(&t),
        false,
    )
    .await;
    let next = r.next().expect("nextLink");
    // Edited tokens and tokens reused with another query are refused.
    let token = next.split("$skiptoken=").nth(1).expect("token");
    let last = if token.ends_with('A') { "B" } else { "A" };
    let edited = next.replace(token, &format!("{}{last}", &token[..token.len() - 1]));
    let e = get_url(&edited, Some(&t), false).await;
    assert_eq!(
        (e.status, e.message()),
        (400, "Invalid Skip Token"),
        "{}",
        e.body
    );
    let other = get(
        &sim,
        "/v1.0/auditLogs/directoryAudits",
        &[("$top", "11"), ("$skiptoken", token)],
        Some(&t),
        false,
    )
    .await;
    assert_eq!(other.status, 400, "{}", other.body);
    // Within the lifetime the chain continues; past it, from the first page on, it expired.
    sim.advance_clock(StdDuration::from_secs(300));
    let ok = get_url(&next, Some(&t), false).await;
    assert_eq!(ok.status, 200);
    let third = ok.next().expect("third page");
    sim.advance_clock(StdDuration::from_secs(301));
    let e = get_url(&third, Some(&t), false).await;
    assert_eq!(e.status, 400);
    assert_eq!(
        e.message(),
        "Skip token has expired. Restart pagination from the first page."
    );
    let again = get(
        &sim,
        "/v1.0/auditLogs/directoryAudits",
        &[("$top", "10")],
        Some(&t),
        false,
    )
    .await;
    assert_eq!(again.status, 200, "a fresh pagination works");
    let stats = graph_stats(&sim);
    assert_eq!(stats.bad_requests, 3);
    sim.stop().await;
}

#[tokio::test]
async fn query_options_outside_the_documented_ones_are_refused() {
    let (sim, t) = start_with_token(frozen(GraphConfig::default())).await;
    for (path, query, status, code) in [
        ("/v1.0/security/alerts_v2", vec![("$top", "2000")], 200, ""),
        (
            "/v1.0/security/alerts_v2",
            vec![("$top", "2001")],
            400,
            "BadRequest",
        ),
        ("/v1.0/security/incidents", vec![("$top", "50")], 200, ""),
        (
            "/v1.0/security/incidents",
            vec![("$top", "51")],
            400,
            "BadRequest",
        ),
        (
            "/v1.0/security/alerts_v2",
            vec![("$top", "ten")],
            400,
            "BadRequest",
        ),
        (
            "/v1.0/security/alerts_v2",
            vec![("$expand", "alerts")],
            400,
            "BadRequest",
        ),
        (
            "/v1.0/security/alerts_v2",
            vec![("$orderby", "severity desc")],
            400,
            "BadRequest",
        ),
        (
            "/v1.0/security/alerts_v2",
            vec![("$search", "x")],
            400,
            "BadRequest",
        ),
        (
            "/v1.0/security/incidents",
            vec![("$expand", "evidence")],
            400,
            "BadRequest",
        ),
        ("/v1.0/auditLogs/signIns", vec![("$top", "1000")], 200, ""),
        (
            "/v1.0/auditLogs/signIns",
            vec![("$top", "1001")],
            400,
            "Request_UnsupportedQuery",
        ),
        (
            "/v1.0/auditLogs/signIns",
            vec![("$top", "0")],
            400,
            "Request_UnsupportedQuery",
        ),
        (
            "/v1.0/auditLogs/signIns",
            vec![("$skip", "10")],
            400,
            "Request_UnsupportedQuery",
        ),
        (
            "/v1.0/auditLogs/signIns",
            vec![("$orderby", "createdDateTime asc")],
            400,
            "Request_UnsupportedQuery",
        ),
        (
            "/v1.0/auditLogs/directoryAudits",
            vec![("$count", "true")],
            400,
            "Request_UnsupportedQuery",
        ),
        (
            "/v1.0/auditLogs/directoryAudits",
            vec![("$orderby", "activityDateTime desc")],
            200,
            "",
        ),
        ("/v1.0/security/alerts", vec![], 400, "BadRequest"),
        ("/beta/security/alerts_v2", vec![], 400, "BadRequest"),
    ] {
        let r = get(&sim, path, &query, Some(&t), false).await;
        assert_eq!(
            (r.status, r.code()),
            (status, code),
            "{path} {query:?}: {}",
            r.body
        );
    }
    // Paths compare case-insensitively, as Graph's own nextLinks rely on (…/signins).
    let r = get(
        &sim,
        "/v1.0/AuditLogs/SignIns",
        &[("$top", "1")],
        Some(&t),
        false,
    )
    .await;
    assert_eq!(r.status, 200);
    sim.stop().await;
}

#[tokio::test]
async fn tokens_must_be_for_graph_in_the_tenants_cloud() {
    let mut cfg = frozen(GraphConfig {
        tenants: vec![
            GraphTenantConfig {
                tenant_id: SECOND_TENANT.into(),
                premium: true,
                cloud: Cloud::GccHigh,
            },
            GraphTenantConfig {
                tenant_id: THIRD_TENANT.into(),
                premium: true,
                cloud: Cloud::Dod,
            },
        ],
        ..GraphConfig::default()
    });
    cfg.token_lifetime = StdDuration::from_secs(60);
    cfg.tenants.push(app(
        SECOND_TENANT,
        SECOND_CLIENT,
        "second",
        &siemflow_simulator::DEFAULT_ROLES,
    ));
    cfg.tenants.push(app(
        THIRD_TENANT,
        THIRD_CLIENT,
        "third",
        &siemflow_simulator::DEFAULT_ROLES,
    ));
    let sim = start(cfg).await;
    let path = "/v1.0/security/alerts_v2";
    let q = [("$top", "1")];
    let unauthorized = |r: &Reply, what: &str| {
        assert_eq!(
            (r.status, r.code()),
            (401, "InvalidAuthenticationToken"),
            "{what}: {}",
            r.body
        );
        assert!(
            r.header("www-authenticate")
                .is_some_and(|h| h.starts_with("Bearer")),
            "{what}"
        );
    };
    unauthorized(&get(&sim, path, &q, None, false).await, "no token");
    unauthorized(
        &get(&sim, path, &q, Some("eyJ0.eyJ0.c2ln"), false).await,
        "unknown token",
    );
    let us = "https://graph.microsoft.us";
    let commercial_app = (DEFAULT_TENANT_ID, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET);
    let gcc_high_app = (SECOND_TENANT, SECOND_CLIENT, "second");
    let dod_app = (THIRD_TENANT, THIRD_CLIENT, "third");
    // (the app, the resource its token is for, whether Graph takes it)
    for ((tenant, client, secret), resource, accepted, what) in [
        (commercial_app, MANAGE, false, "Management API token"),
        (
            commercial_app,
            us,
            false,
            "GCC High audience on a commercial tenant",
        ),
        (
            commercial_app,
            GRAPH,
            true,
            "commercial tenant, graph.microsoft.com",
        ),
        (
            gcc_high_app,
            us,
            true,
            "GCC High tenant, graph.microsoft.us",
        ),
        (
            gcc_high_app,
            GRAPH,
            false,
            "commercial audience on a GCC High tenant",
        ),
        (
            dod_app,
            "https://dod-graph.microsoft.us",
            true,
            "DoD tenant",
        ),
        (dod_app, us, false, "GCC High audience on a DoD tenant"),
    ] {
        let token = token_for_resource(&sim, tenant, client, secret, resource).await;
        let r = get(&sim, path, &q, Some(&token), false).await;
        if accepted {
            assert_eq!(r.status, 200, "{what}: {}", r.body);
        } else {
            unauthorized(&r, what);
            assert!(
                r.message().contains("Invalid audience"),
                "{what}: {}",
                r.message()
            );
        }
    }
    // A Graph token is no Management API token either.
    let commercial = graph_token(&sim).await;
    let (s, _, _) = call(
        &sim,
        "GET",
        &format!("subscriptions/list?PublisherIdentifier={PUBLISHER}"),
        Some(&commercial),
    )
    .await;
    assert_eq!(s, 401);

    // The token's tenant decides whose data: the GCC High tenant sees its own alerts.
    let high = token_for_resource(&sim, SECOND_TENANT, SECOND_CLIENT, "second", us).await;
    let r = get(&sim, path, &q, Some(&high), true).await;
    assert_eq!(r.value().len(), 1, "{}", r.body);
    assert!(r.value().iter().all(|a| a["tenantId"] == SECOND_TENANT));
    assert!(r.value().iter().all(|a| {
        a["alertWebUrl"]
            .as_str()
            .is_some_and(|u| u.starts_with("https://security.microsoft.us/"))
    }));

    sim.advance_clock(StdDuration::from_secs(61));
    let r = get(&sim, path, &q, Some(&commercial), false).await;
    unauthorized(&r, "expired");
    assert!(r.message().contains("expired"));
    let stats = sim.stats();
    assert_eq!(
        stats.tenant(DEFAULT_TENANT_ID).graph.unauthorized,
        3,
        "manage, us, expired"
    );
    assert_eq!(
        stats.tenant("").graph.unauthorized,
        2,
        "no token, unknown token"
    );
    sim.stop().await;
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("payload");
    serde_json::from_slice(&B64.decode(payload).expect("base64")).expect("json")
}

#[tokio::test]
async fn app_roles_and_licences_gate_the_collections() {
    let mut cfg = frozen(GraphConfig {
        tenants: vec![GraphTenantConfig {
            tenant_id: SECOND_TENANT.into(),
            premium: false,
            cloud: Cloud::Commercial,
        }],
        ..GraphConfig::default()
    });
    let feed_only = "aa0b1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d";
    let audit_only = "bb0b1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d";
    cfg.tenants.push(app(
        DEFAULT_TENANT_ID,
        feed_only,
        "feed",
        &["ActivityFeed.Read"],
    ));
    cfg.tenants.push(app(
        DEFAULT_TENANT_ID,
        audit_only,
        "audit",
        &["AuditLog.Read.All", "SecurityIncident.Read.All"],
    ));
    cfg.tenants.push(app(
        SECOND_TENANT,
        SECOND_CLIENT,
        "second",
        &siemflow_simulator::DEFAULT_ROLES,
    ));
    let sim = start(cfg).await;
    // Tokens carry the roles of their resource only.
    let full = graph_token(&sim).await;
    let roles = claims(&full)["roles"].clone();
    assert_eq!(
        roles,
        serde_json::json!([
            "SecurityAlert.Read.All",
            "SecurityIncident.Read.All",
            "AuditLog.Read.All",
            "Directory.Read.All"
        ])
    );
    let manage = default_token(&sim, MANAGE).await;
    assert_eq!(
        claims(&manage)["roles"],
        serde_json::json!(["ActivityFeed.Read", "ActivityFeed.ReadDlp"])
    );

    let feed = token_for_resource(&sim, DEFAULT_TENANT_ID, feed_only, "feed", GRAPH).await;
    let audit = token_for_resource(&sim, DEFAULT_TENANT_ID, audit_only, "audit", GRAPH).await;
    let poor = token_for_resource(&sim, SECOND_TENANT, SECOND_CLIENT, "second", GRAPH).await;
    for (token, path, status, code) in [
        (&feed, "/v1.0/security/alerts_v2", 403, "Forbidden"),
        (&feed, "/v1.0/security/incidents", 403, "Forbidden"),
        (
            &feed,
            "/v1.0/auditLogs/directoryAudits",
            403,
            "Authorization_RequestDenied",
        ),
        (&audit, "/v1.0/security/alerts_v2", 403, "Forbidden"),
        (&audit, "/v1.0/security/incidents", 200, ""),
        (&audit, "/v1.0/auditLogs/directoryAudits", 200, ""),
        // signIns needs Directory.Read.All as well (documented known issue).
        (
            &audit,
            "/v1.0/auditLogs/signIns",
            403,
            "Authorization_RequestDenied",
        ),
        (&full, "/v1.0/auditLogs/signIns", 200, ""),
        (&poor, "/v1.0/auditLogs/directoryAudits", 200, ""),
        (
            &poor,
            "/v1.0/auditLogs/signIns",
            403,
            "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
        ),
        (
            &poor,
            "/beta/auditLogs/signIns",
            403,
            "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
        ),
        (
            &poor,
            "/v1.0/auditLogs/provisioning",
            403,
            "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
        ),
        (&poor, "/v1.0/security/alerts_v2", 200, ""),
    ] {
        let r = get(&sim, path, &[("$top", "1")], Some(token), false).await;
        assert_eq!((r.status, r.code()), (status, code), "{path}: {}", r.body);
    }
    let r = get(&sim, "/v1.0/auditLogs/signIns", &[], Some(&poor), false).await;
    assert_eq!(
        r.message(),
        "Neither tenant is B2C or tenant doesn't have premium license"
    );
    let r = get(&sim, "/v1.0/security/alerts_v2", &[], Some(&feed), false).await;
    assert!(
        r.message().contains("SecurityAlert.Read.All"),
        "{}",
        r.message()
    );
    assert_eq!(sim.stats().tenant(SECOND_TENANT).graph.forbidden, 4);
    sim.stop().await;
}

#[tokio::test]
async fn request_limits_are_sliding_windows_per_tenant_and_family() {
    let cfg = M365Config {
        live: false,
        graph: GraphConfig {
            security_requests_per_minute: 3,
            ..GraphConfig::default()
        },
        ..M365Config::default()
    };
    assert_eq!(GraphConfig::default().identity_requests_per_10s, 5);
    assert_eq!(GraphConfig::default().security_requests_per_minute, 150);
    let (sim, t) = start_with_token(cfg).await;
    let audits = "/v1.0/auditLogs/directoryAudits";
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let r = get(&sim, audits, &[("$top", "1")], Some(&t), false).await;
        if r.status == 429 {
            assert_eq!(r.code(), "TooManyRequests");
            let wait: u64 = r
                .header("retry-after")
                .expect("Retry-After")
                .parse()
                .expect("seconds");
            assert!((1..=10).contains(&wait), "{wait}");
        }
        statuses.push(r.status);
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429, 429]);
    // The security family has its own budget.
    for i in 0..4 {
        let r = get(
            &sim,
            "/v1.0/security/alerts_v2",
            &[("$top", "1")],
            Some(&t),
            false,
        )
        .await;
        assert_eq!(r.status, if i < 3 { 200 } else { 429 });
    }
    sim.advance_clock(StdDuration::from_secs(10));
    assert_eq!(
        get(&sim, audits, &[("$top", "1")], Some(&t), false)
            .await
            .status,
        200,
        "the window moved on"
    );
    let stats = graph_stats(&sim);
    assert_eq!(stats.throttled, 4);
    assert_eq!(
        stats.max_in_window("identity", StdDuration::from_secs(10)),
        8,
        "arrivals, throttled ones included"
    );
    assert_eq!(stats.requests["directoryAudits"], 9);
    // A client that keeps to 5 per 10 s is never refused, and the stats show its pace.
    let paced = start(M365Config {
        live: false,
        ..M365Config::default()
    })
    .await;
    let t = graph_token(&paced).await;
    for _ in 0..12 {
        let r = get(&paced, audits, &[("$top", "1")], Some(&t), false).await;
        assert_eq!(r.status, 200, "{}", r.body);
        paced.advance_clock(StdDuration::from_millis(2_001));
    }
    let stats = graph_stats(&paced);
    assert_eq!(
        stats.max_in_window("identity", StdDuration::from_secs(10)),
        5,
        "the limit, never more"
    );
    assert_eq!(stats.throttled, 0);
    sim.stop().await;
    paced.stop().await;
}

#[tokio::test]
async fn newer_enum_members_need_the_prefer_header() {
    let cfg = frozen(GraphConfig {
        alerts_per_hour: 100,
        ..GraphConfig::default()
    });
    let (sim, t) = start_with_token(cfg.clone()).await;
    let newer = [
        "microsoftDefenderForCloud",
        "microsoftSentinel",
        "scheduledAlerts",
        "nrtAlerts",
        "microsoftDefenderForServers",
        "microsoftDefenderForStorage",
        "microsoftDefenderForKeyVault",
    ];
    let plain = list(
        &sim,
        "/v1.0/security/alerts_v2",
        &[("$top", "2000")],
        &t,
        false,
    )
    .await;
    let opted = list(
        &sim,
        "/v1.0/security/alerts_v2",
        &[("$top", "2000")],
        &t,
        true,
    )
    .await;
    assert_eq!(ids(&plain), ids(&opted));
    let sources = |records: &[Value]| -> BTreeSet<String> {
        records
            .iter()
            .flat_map(|r| [r["serviceSource"].as_str(), r["detectionSource"].as_str()])
            .flatten()
            .map(str::to_string)
            .collect()
    };
    assert!(
        sources(&opted).iter().any(|s| newer.contains(&s.as_str())),
        "{:?}",
        sources(&opted)
    );
    assert!(!sources(&plain).iter().any(|s| newer.contains(&s.as_str())));
    assert!(sources(&plain).contains("unknownFutureValue"));
    let incidents = list(
        &sim,
        "/v1.0/security/incidents",
        &[("$top", "50")],
        &t,
        false,
    )
    .await;
    let truth = ground_truth(
        &cfg,
        GraphResource::Incidents,
        sim.history_start(),
        sim.visible_until(),
    );
    let awaiting = truth
        .iter()
        .filter(|i| i["status"] == "awaitingAction")
        .count();
    assert!(awaiting > 0, "some incidents await action");
    assert_eq!(
        incidents
            .iter()
            .filter(|i| i["status"] == "unknownFutureValue")
            .count(),
        awaiting
    );
    let r = get(
        &sim,
        "/v1.0/security/alerts_v2",
        &[("$top", "1")],
        Some(&t),
        false,
    )
    .await;
    assert_eq!(r.header("preference-applied"), None);
    sim.stop().await;
}

fn with_faults(faults: GraphFaults) -> M365Config {
    frozen(GraphConfig {
        faults,
        ..GraphConfig::default()
    })
}

#[tokio::test]
async fn transport_faults_fire_and_are_counted() {
    // 429 with Retry-After.
    let (sim, t) = start_with_token(with_faults(GraphFaults {
        throttle_rate: 1.0,
        ..GraphFaults::default()
    }))
    .await;
    for _ in 0..3 {
        let r = get(&sim, "/v1.0/security/alerts_v2", &[], Some(&t), false).await;
        assert_eq!((r.status, r.code()), (429, "TooManyRequests"));
        assert!(r.header("retry-after").is_some());
    }
    assert_eq!(graph_stats(&sim).fault("throttle"), 3);
    sim.stop().await;
    // 503 and 504.
    let (sim, t) = start_with_token(with_faults(GraphFaults {
        server_error_rate: 1.0,
        ..GraphFaults::default()
    }))
    .await;
    let mut seen = BTreeSet::new();
    for _ in 0..20 {
        let r = get(
            &sim,
            "/v1.0/auditLogs/directoryAudits",
            &[],
            Some(&t),
            false,
        )
        .await;
        assert!(
            matches!(
                (r.status, r.code()),
                (503, "ServiceNotAvailable") | (504, "GatewayTimeout")
            ),
            "{}",
            r.body
        );
        seen.insert(r.status);
    }
    assert_eq!(seen, BTreeSet::from([503, 504]));
    assert_eq!(graph_stats(&sim).fault("server_error"), 20);
    sim.stop().await;
    // Slow answers.
    let (sim, t) = start_with_token(with_faults(GraphFaults {
        slow_rate: 1.0,
        slow_latency: StdDuration::from_millis(300),
        ..GraphFaults::default()
    }))
    .await;
    let began = Instant::now();
    assert_eq!(
        get(&sim, "/v1.0/security/incidents", &[], Some(&t), false)
            .await
            .status,
        200
    );
    assert!(began.elapsed() >= StdDuration::from_millis(300));
    assert_eq!(graph_stats(&sim).fault("slow"), 1);
    sim.stop().await;
}

#[tokio::test]
async fn paging_faults_repeat_records_drop_next_links_and_expire_tokens() {
    // A record repeated across two pages: dedup by id still gives the truth.
    let cfg = with_faults(GraphFaults {
        repeat_rate: 1.0,
        ..GraphFaults::default()
    });
    let (sim, t) = start_with_token(cfg.clone()).await;
    let (from, until) = (sim.history_start(), sim.visible_until());
    for (path, resource) in [
        ("/v1.0/security/alerts_v2", GraphResource::Alerts),
        (
            "/v1.0/auditLogs/directoryAudits",
            GraphResource::DirectoryAudits,
        ),
    ] {
        let (got, pages) = collect(&url(&sim, path, &[("$top", "10")]), &t, true, None).await;
        let truth = ground_truth(&cfg, resource, from, until);
        assert_eq!(
            got.len(),
            truth.len() + pages.len() - 1,
            "{path}: one repeat per page boundary"
        );
        let mut unique = ids(&got);
        unique.dedup();
        assert_eq!(unique, ids(&truth), "{path}");
    }
    assert!(graph_stats(&sim).fault("repeat") > 2);
    sim.stop().await;

    // Full pages without nextLink: $skip paging still reaches every record.
    let cfg = frozen(GraphConfig {
        alerts_per_hour: 20,
        faults: GraphFaults {
            missing_next_link_rate: 1.0,
            ..GraphFaults::default()
        },
        ..GraphConfig::default()
    });
    let (sim, t) = start_with_token(cfg.clone()).await;
    let truth = ground_truth(
        &cfg,
        GraphResource::Alerts,
        sim.history_start(),
        sim.visible_until(),
    );
    let r = get(
        &sim,
        "/v1.0/security/alerts_v2",
        &[("$top", "10")],
        Some(&t),
        true,
    )
    .await;
    assert_eq!(
        (r.value().len(), r.next()),
        (10, None),
        "a full page and no nextLink"
    );
    let naive = list(
        &sim,
        "/v1.0/security/alerts_v2",
        &[("$top", "10")],
        &t,
        true,
    )
    .await;
    assert_eq!(
        naive.len(),
        10,
        "following nextLinks alone stops after one page"
    );
    let (got, _) = collect(
        &url(&sim, "/v1.0/security/alerts_v2", &[("$top", "10")]),
        &t,
        true,
        Some(10),
    )
    .await;
    same(&got, &truth, "$skip paging");
    // Without $top the page is the default size and the nextLink stays.
    assert!(
        truth.len() > 100,
        "more than a default page: {}",
        truth.len()
    );
    let r = get(&sim, "/v1.0/security/alerts_v2", &[], Some(&t), true).await;
    assert_eq!(r.value().len(), 100);
    assert!(r.next().is_some());
    assert!(graph_stats(&sim).fault("missing_next_link") >= 3);
    sim.stop().await;

    // A fresh skiptoken refused as expired.
    let (sim, t) = start_with_token(with_faults(GraphFaults {
        expired_skiptoken_rate: 1.0,
        ..GraphFaults::default()
    }))
    .await;
    let r = get(
        &sim,
        "/v1.0/auditLogs/signIns",
        &[("$top", "5")],
        Some(&t),
        false,
    )
    .await;
    assert_eq!(r.status, 200, "first pages carry no token");
    let e = get_url(&r.next().expect("nextLink"), Some(&t), false).await;
    assert_eq!(e.status, 400);
    assert!(e.message().contains("Skip token has expired"));
    assert_eq!(graph_stats(&sim).fault("expired_skiptoken"), 1);
    sim.stop().await;
}

#[test]
fn ground_truth_is_a_pure_function_of_the_config() {
    let (from, until) = (
        Utc::now() - Duration::days(2),
        Utc::now() - Duration::days(1),
    );
    let a = M365Config::default();
    let b = M365Config {
        seed: 2,
        ..M365Config::default()
    };
    for resource in [
        GraphResource::Alerts,
        GraphResource::Incidents,
        GraphResource::SignIns,
        GraphResource::DirectoryAudits,
        GraphResource::Provisioning,
    ] {
        let one = ground_truth(&a, resource, from, until);
        assert!(!one.is_empty(), "{resource:?}");
        assert_eq!(one, ground_truth(&a, resource, from, until), "{resource:?}");
        assert_ne!(
            ids(&one),
            ids(&graph_ground_truth(
                &b,
                DEFAULT_TENANT_ID,
                resource,
                from,
                until
            )),
            "{resource:?}"
        );
        assert!(
            graph_ground_truth(
                &a,
                "00000000-0000-0000-0000-000000000000",
                resource,
                from,
                until
            )
            .is_empty()
        );
    }
    // Later `until`: a superset of records, each in the same or a later version.
    let early = latest(&ground_truth(&a, GraphResource::Alerts, from, until));
    let later = latest(&ground_truth(
        &a,
        GraphResource::Alerts,
        from,
        until + Duration::hours(12),
    ));
    assert!(
        early
            .iter()
            .all(|(id, at)| later.get(id).is_some_and(|l| l >= at))
    );
    assert!(
        early
            .iter()
            .any(|(id, at)| later.get(id).is_some_and(|l| l > at)),
        "some changed in 12 hours"
    );
    // graph_versions ends in the ground truth's versions.
    let versions = graph_versions(&a, DEFAULT_TENANT_ID, GraphResource::Incidents, from, until);
    let mut last: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
    for (id, at) in versions {
        last.insert(id, at);
    }
    let truth = ground_truth(&a, GraphResource::Incidents, from, until);
    assert_eq!(last.len(), truth.len());
    for i in &truth {
        assert_eq!(
            last[i["id"].as_str().expect("id")],
            time_of(i, "lastUpdateDateTime")
        );
    }
}

#[test]
fn graph_settings_parse_and_validate() {
    let cfg: M365Config = toml::from_str(
        r#"
        seed = 3
        [graph]
        alerts_per_hour = 2
        skiptoken_lifetime = "5m"
        [[graph.tenants]]
        tenant_id = "41463f53-8812-40f4-890f-865bf6e35190"
        premium = false
        cloud = "gcc_high"
        [graph.faults]
        repeat_rate = 0.1
        slow_latency = "250ms"
        "#,
    )
    .expect("parses");
    cfg.validate().expect("valid");
    assert_eq!(cfg.graph.alerts_per_hour, 2);
    assert_eq!(cfg.graph.tenants[0].cloud, Cloud::GccHigh);
    assert!(!cfg.graph.tenants[0].premium);
    assert_eq!(cfg.graph.faults.slow_latency, StdDuration::from_millis(250));
    for bad in [
        "[graph]\nalerts_per_hr = 1",
        "[graph.faults]\nrepeat_rate = 2.0",
        "[[graph.tenants]]\ntenant_id = \"7c0de1e5-2b2a-4d5e-9f00-3f6e5d4c3b2a\"",
        "[[graph.tenants]]\ntenant_id = \"41463f53-8812-40f4-890f-865bf6e35190\"\ncloud = \"mars\"",
        "[graph]\nidentity_requests_per_10s = 0",
    ] {
        let parsed: Result<M365Config, _> = toml::from_str(bad);
        assert!(
            parsed
                .map_err(|e| e.to_string())
                .and_then(|c| c.validate().map_err(|e| e.to_string()))
                .is_err(),
            "{bad}"
        );
    }
}
