//! The Defender for Endpoint API of the simulator: tokens for the cloud's MDE audience with
//! `Alert.Read.All` only, MDE's error envelope, both request limits, strict OData options,
//! `$skip` nextLinks over an unsorted collection, evidence on `$expand`, updated alerts.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{start, token_for_resource};
use serde_json::Value;
use siemflow_simulator::{
    Cloud, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TENANT_ID, GraphTenantConfig,
    M365Config, RateLimit, Simulator, TenantConfig, endpoint_alert_versions, endpoint_alerts,
};

const MDE: &str = "https://api.securitycenter.microsoft.com";
const GOV: &str = "https://api-gov.securitycenter.microsoft.us";

async fn get(sim: &Simulator, query: &str, token: Option<&str>) -> (u16, Value, Option<String>) {
    get_url(&format!("{}/api/alerts{query}", sim.base_url()), token).await
}

async fn get_url(url: &str, token: Option<&str>) -> (u16, Value, Option<String>) {
    let mut request = reqwest::Client::new().get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let r = request.send().await.expect("request");
    let status = r.status().as_u16();
    let retry_after = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (status, r.json().await.unwrap_or(Value::Null), retry_after)
}

async fn mde_token(sim: &Simulator) -> String {
    token_for_resource(
        sim,
        DEFAULT_TENANT_ID,
        DEFAULT_CLIENT_ID,
        DEFAULT_CLIENT_SECRET,
        MDE,
    )
    .await
}

/// A world with two days of MDE alerts (a busy tenant), live.
fn busy() -> M365Config {
    let mut cfg = M365Config {
        history: Duration::from_secs(2 * 86_400),
        live: true,
        ..M365Config::default()
    };
    cfg.graph.alerts_per_hour = 40;
    cfg
}

fn ids(rows: &[Value]) -> BTreeSet<String> {
    rows.iter()
        .map(|r| r["id"].as_str().expect("id").to_string())
        .collect()
}

fn assert_envelope(body: &Value, code: &str) {
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    let target = body["error"]["target"].as_str().expect("target");
    assert_eq!(target.len(), 36, "a correlation GUID: {target}");
}

#[tokio::test]
async fn only_mde_tokens_of_the_tenants_cloud_with_the_alert_role_read() {
    let mut cfg = busy();
    let gov_tenant = "7d2e4c1a-5b6f-4a8e-9c0d-1e2f3a4b5c6d";
    let no_role = "0b9e6f6e-3c1d-4c55-9a43-2f6a4fcb5a10";
    cfg.tenants.push(TenantConfig {
        tenant_id: gov_tenant.into(),
        ..TenantConfig::default()
    });
    cfg.tenants.push(TenantConfig {
        client_id: no_role.into(),
        client_secret: Some("other".into()),
        roles: vec!["SecurityAlert.Read.All".into()],
        ..TenantConfig::default()
    });
    cfg.graph.tenants.push(GraphTenantConfig {
        tenant_id: gov_tenant.into(),
        premium: true,
        cloud: Cloud::GccHigh,
    });
    let sim = start(cfg).await;

    let (status, body, _) = get(&sim, "", None).await;
    assert_eq!(status, 401);
    assert_envelope(&body, "Unauthorized");
    let graph = token_for_resource(
        &sim,
        DEFAULT_TENANT_ID,
        DEFAULT_CLIENT_ID,
        DEFAULT_CLIENT_SECRET,
        "https://graph.microsoft.com",
    )
    .await;
    let (status, body, _) = get(&sim, "", Some(&graph)).await;
    assert_eq!(status, 401, "a Graph token is not MDE's");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("audience")
    );

    let token = mde_token(&sim).await;
    let (status, body, _) = get(&sim, "?$top=5", Some(&token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["value"].as_array().map(Vec::len), Some(5));
    let alias = token_for_resource(
        &sim,
        DEFAULT_TENANT_ID,
        DEFAULT_CLIENT_ID,
        DEFAULT_CLIENT_SECRET,
        "https://api.security.microsoft.com",
    )
    .await;
    assert_eq!(
        get(&sim, "?$top=1", Some(&alias)).await.0,
        200,
        "the same app's other URI"
    );

    // GCC High: the Gov audience only.
    let commercial = token_for_resource(
        &sim,
        gov_tenant,
        DEFAULT_CLIENT_ID,
        DEFAULT_CLIENT_SECRET,
        MDE,
    )
    .await;
    assert_eq!(get(&sim, "?$top=1", Some(&commercial)).await.0, 401);
    let gov = token_for_resource(
        &sim,
        gov_tenant,
        DEFAULT_CLIENT_ID,
        DEFAULT_CLIENT_SECRET,
        GOV,
    )
    .await;
    assert_eq!(get(&sim, "?$top=1", Some(&gov)).await.0, 200);

    // An app without Alert.Read.All: 403 Forbidden, naming the permission.
    let without = token_for_resource(&sim, DEFAULT_TENANT_ID, no_role, "other", MDE).await;
    let (status, body, _) = get(&sim, "", Some(&without)).await;
    assert_eq!(status, 403);
    assert_envelope(&body, "Forbidden");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("Alert.Read.All")
    );

    let stats = sim.stats();
    assert_eq!(
        stats.tenant(DEFAULT_TENANT_ID).defender_endpoint.forbidden,
        1
    );
    assert_eq!(stats.tenant(gov_tenant).defender_endpoint.unauthorized, 1);
}

#[tokio::test]
async fn both_limits_are_enforced_with_retry_after() {
    let mut cfg = busy();
    cfg.defender_endpoint.limits = vec![
        RateLimit {
            requests: 3,
            per: Duration::from_secs(60),
        },
        RateLimit {
            requests: 4,
            per: Duration::from_secs(3600),
        },
    ];
    let sim = start(cfg).await;
    let token = mde_token(&sim).await;
    for _ in 0..3 {
        assert_eq!(get(&sim, "?$top=1", Some(&token)).await.0, 200);
    }
    let (status, body, retry) = get(&sim, "?$top=1", Some(&token)).await;
    assert_eq!(status, 429, "the per-minute limit");
    assert_envelope(&body, "TooManyRequests");
    let retry: u64 = retry.expect("Retry-After").parse().expect("seconds");
    assert!((1..=60).contains(&retry), "{retry}");
    sim.advance_clock(Duration::from_secs(61));
    assert_eq!(
        get(&sim, "?$top=1", Some(&token)).await.0,
        200,
        "a new minute"
    );
    sim.advance_clock(Duration::from_secs(61));
    let (status, _, retry) = get(&sim, "?$top=1", Some(&token)).await;
    assert_eq!(status, 429, "the hourly limit, though the minute has room");
    let retry: u64 = retry.expect("Retry-After").parse().expect("seconds");
    assert!(retry > 60, "until the hour's first request leaves: {retry}");
    let stats = sim.stats().tenant(DEFAULT_TENANT_ID).defender_endpoint;
    assert_eq!(stats.throttled, 2);
    assert_eq!(stats.requests, 6);
}

#[tokio::test]
async fn odata_options_are_strict() {
    let sim = start(busy()).await;
    let token = mde_token(&sim).await;
    for bad in [
        "?$top=10001",
        "?$orderby=lastUpdateTime%20asc",
        "?$filter=title%20eq%20'x'",
        "?$filter=lastUpdateTime%20ge%20'2026-01-01'",
        "?$expand=machines",
        "?$select=id",
    ] {
        let (status, body, _) = get(&sim, bad, Some(&token)).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_envelope(&body, "ODataError");
    }
    let (status, _, _) = get(&sim, "?$top=10000&$skip=0", Some(&token)).await;
    assert_eq!(status, 200, "the documented maximum");
    assert_eq!(
        sim.stats()
            .tenant(DEFAULT_TENANT_ID)
            .defender_endpoint
            .bad_requests,
        6
    );
}

#[tokio::test]
async fn pages_follow_next_links_and_the_filter_bounds_the_window() {
    let sim = start(busy()).await;
    let token = mde_token(&sim).await;
    let before = endpoint_alerts(
        sim.config(),
        DEFAULT_TENANT_ID,
        sim.history_start(),
        sim.now(),
    );
    assert!(before.len() > 200, "a real workload: {}", before.len());

    let mut url = format!("{}/api/alerts?$top=37&$expand=evidence", sim.base_url());
    let mut got = Vec::new();
    let mut pages = 0;
    loop {
        let (status, body, _) = get_url(&url, Some(&token)).await;
        assert_eq!(status, 200, "{body}");
        let page = body["value"].as_array().expect("value").clone();
        assert!(page.len() <= 37);
        got.extend(page);
        pages += 1;
        match body["@odata.nextLink"].as_str() {
            Some(next) => {
                assert!(
                    next.starts_with(&sim.base_url()) && next.contains("$skip="),
                    "{next}"
                );
                url = next.to_string();
            }
            None => break,
        }
    }
    let after = endpoint_alerts(
        sim.config(),
        DEFAULT_TENANT_ID,
        sim.history_start(),
        sim.now(),
    );
    assert!(pages > 5);
    assert!(ids(&before).is_subset(&ids(&got)) && ids(&got).is_subset(&ids(&after)));
    assert_eq!(got.len(), ids(&got).len(), "no alert twice in a quiet walk");
    // Not sorted by any time: the client cannot rely on an order.
    let times: Vec<&str> = got
        .iter()
        .map(|a| a["lastUpdateTime"].as_str().expect("time"))
        .collect();
    assert!(times.windows(2).any(|w| w[0] > w[1]) && times.windows(2).any(|w| w[0] < w[1]));
    // MDE's shape, with evidence entities carrying every documented key.
    let with_evidence = got
        .iter()
        .find(|a| a["evidence"].as_array().is_some_and(|e| !e.is_empty()))
        .expect("evidence expanded");
    for key in [
        "machineId",
        "alertCreationTime",
        "incidentId",
        "detectionSource",
        "relatedUser",
        "aadTenantId",
    ] {
        assert!(with_evidence.get(key).is_some(), "{key}: {with_evidence}");
    }
    assert!(with_evidence["incidentId"].is_u64());
    for e in with_evidence["evidence"].as_array().expect("evidence") {
        assert_eq!(e.as_object().map(|o| o.len()), Some(25), "{e}");
        assert!(
            ["User", "Process", "File", "Ip", "Url", "Registry"]
                .contains(&e["entityType"].as_str().unwrap_or_default()),
            "{e}"
        );
    }
    let (_, plain, _) = get(&sim, "?$top=50", Some(&token)).await;
    assert!(
        plain["value"]
            .as_array()
            .expect("value")
            .iter()
            .all(|a| a["evidence"] == serde_json::json!([]))
    );

    // A closed lastUpdateTime window holds exactly the alerts whose time is inside it.
    let from = sim.now() - chrono::TimeDelta::hours(10);
    let until = sim.now() - chrono::TimeDelta::hours(5);
    let q = format!(
        "?$filter=lastUpdateTime+ge+{}+and+lastUpdateTime+lt+{}",
        from.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        until.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    );
    let (status, body, _) = get(&sim, &q, Some(&token)).await;
    assert_eq!(status, 200, "{body}");
    let window = body["value"].as_array().expect("value");
    let inside = |a: &Value| {
        let at = chrono::DateTime::parse_from_rfc3339(a["lastUpdateTime"].as_str().expect("time"))
            .expect("time");
        at >= from && at < until
    };
    assert!(!window.is_empty() && window.iter().all(inside));
    let expected = after.iter().filter(|a| inside(a)).count();
    assert_eq!(window.len(), expected);
}

#[tokio::test]
async fn alerts_change_later_each_change_a_new_version() {
    let sim = start(busy()).await;
    let first = endpoint_alerts(
        sim.config(),
        DEFAULT_TENANT_ID,
        sim.history_start(),
        sim.now(),
    );
    sim.advance_clock(Duration::from_secs(6 * 3600));
    let token = mde_token(&sim).await;
    let (status, body, _) = get(&sim, "", Some(&token)).await;
    assert_eq!(status, 200);
    let later = body["value"].as_array().expect("value");
    let old: std::collections::HashMap<&str, &str> = first
        .iter()
        .map(|a| {
            (
                a["id"].as_str().unwrap_or_default(),
                a["lastUpdateTime"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    let updated = later
        .iter()
        .filter(|a| {
            old.get(a["id"].as_str().unwrap_or_default())
                .is_some_and(|t| *t != a["lastUpdateTime"])
        })
        .count();
    assert!(updated > 0, "some alerts were updated");
    assert!(later.len() > first.len(), "new alerts were raised");
    let versions = endpoint_alert_versions(
        sim.config(),
        DEFAULT_TENANT_ID,
        sim.history_start(),
        sim.now(),
    );
    assert!(versions.len() > later.len(), "more versions than alerts");
}
