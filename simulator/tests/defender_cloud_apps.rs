//! The Defender for Cloud Apps REST API of the simulator: both auth modes and their
//! refusals, strict list bodies, skip/limit paging with `hasNext` over batch-ingested
//! activities (ties on `created`), the 30-a-minute limit, alerts that change later.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{start, token_for_resource};
use serde_json::{Value, json};
use siemflow_simulator::{
    DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TENANT_ID, M365Config, Simulator,
    TenantConfig, cloud_apps_activities, cloud_apps_alerts,
};

const AUDIENCE: &str = "05a65629-4c1b-48c1-a78b-804c4abdd4af";
const API_TOKEN: &str = siemflow_simulator::defender_cloud_apps::DEFAULT_API_TOKEN;

async fn post(
    sim: &Simulator,
    path: &str,
    auth: Option<&str>,
    body: &Value,
) -> (u16, Value, Option<String>) {
    let mut request = reqwest::Client::new()
        .post(format!("{}{path}", sim.base_url()))
        .json(body);
    if let Some(auth) = auth {
        request = request.header("authorization", auth);
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

fn token() -> String {
    format!("Token {API_TOKEN}")
}

fn ids(rows: &[Value]) -> BTreeSet<String> {
    rows.iter()
        .map(|r| r["_id"].as_str().expect("_id").to_string())
        .collect()
}

#[tokio::test]
async fn both_auth_modes_and_their_refusals() {
    let mut cfg = M365Config::default();
    let no_role = "0b9e6f6e-3c1d-4c55-9a43-2f6a4fcb5a10";
    cfg.tenants.push(TenantConfig {
        client_id: no_role.into(),
        client_secret: Some("other".into()),
        roles: vec!["SecurityAlert.Read.All".into()],
        ..TenantConfig::default()
    });
    let sim = start(cfg).await;
    let path = "/api/v1/alerts/";
    let body = json!({"limit": 1});
    let (status, reply, _) = post(&sim, path, None, &body).await;
    assert_eq!(status, 401, "{reply}");
    assert!(reply["detail"].is_string());
    assert_eq!(post(&sim, path, Some("Token wrong"), &body).await.0, 401);
    assert_eq!(post(&sim, path, Some(&token()), &body).await.0, 200);
    let graph = token_for_resource(
        &sim,
        DEFAULT_TENANT_ID,
        DEFAULT_CLIENT_ID,
        DEFAULT_CLIENT_SECRET,
        "https://graph.microsoft.com",
    )
    .await;
    let (status, reply, _) = post(&sim, path, Some(&format!("Bearer {graph}")), &body).await;
    assert_eq!(status, 401, "a Graph token is refused: {reply}");
    assert!(
        reply["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("audience")
    );
    assert_eq!(
        post(&sim, path, Some(&format!("Token {graph}")), &body)
            .await
            .0,
        401,
        "a bearer token is no API token"
    );
    let mda = token_for_resource(
        &sim,
        DEFAULT_TENANT_ID,
        DEFAULT_CLIENT_ID,
        DEFAULT_CLIENT_SECRET,
        AUDIENCE,
    )
    .await;
    let (status, reply, _) = post(&sim, path, Some(&format!("Bearer {mda}")), &body).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        post(&sim, path, Some(&format!("Token {mda}")), &body)
            .await
            .0,
        401
    );
    let roleless = token_for_resource(&sim, DEFAULT_TENANT_ID, no_role, "other", AUDIENCE).await;
    assert_eq!(
        post(&sim, path, Some(&format!("Bearer {roleless}")), &body)
            .await
            .0,
        403
    );
    let stats = sim.stats();
    // Refused callers are counted under no tenant.
    assert_eq!(stats.tenant("").cloud_apps.unauthorized, 5);
    assert_eq!(stats.tenant("").cloud_apps.forbidden, 1);
    assert_eq!(stats.tenant(DEFAULT_TENANT_ID).cloud_apps.pages, 2);
}

#[tokio::test]
async fn list_bodies_are_checked_strictly() {
    let sim = start(M365Config::default()).await;
    for body in [
        json!({"filters": {"created": {"gte": "2026-09-01T00:00:00Z"}}}),
        json!({"filters": {"lastModified": {"gte": 1}}}),
        json!({"filters": {"created": {"after": 1}}}),
        json!({"sortField": "lastModified"}),
        json!({"page": 2}),
    ] {
        let (status, reply, _) = post(&sim, "/api/v1/activities/", Some(&token()), &body).await;
        assert_eq!(status, 400, "{body}: {reply}");
        assert!(reply["detail"].is_string(), "{reply}");
    }
    let (status, _, _) = post(
        &sim,
        "/api/v1/alerts/",
        Some(&token()),
        &json!({"filters": {"created": {"gte": 1}}}),
    )
    .await;
    assert_eq!(status, 400, "alerts have no created filter");
    let (status, reply, _) = post(
        &sim,
        "/api/v1/activities/",
        Some(&token()),
        &json!({"limit": 1000}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        reply["data"].as_array().map(Vec::len),
        Some(100),
        "at most 100 a response"
    );
    assert_eq!(reply["hasNext"], true);
}

/// Walks every activity by `created` ascending with skip/limit: the union is what the
/// world held when the walk began, at least, and what it held at its end, at most; many
/// activities share one `created` (batch ingestion); every page holds at most 100.
#[tokio::test]
async fn activities_page_by_created_with_ties_and_has_next() {
    let mut cfg = M365Config {
        history: Duration::from_secs(6 * 3600),
        ..M365Config::default()
    };
    cfg.defender_cloud_apps.activities_per_hour = 600;
    cfg.defender_cloud_apps.requests_per_minute = 10_000;
    let sim = start(cfg.clone()).await;
    let before = cloud_apps_activities(&cfg, DEFAULT_TENANT_ID, sim.history_start(), sim.now());
    assert!(before.len() > 1000, "{}", before.len());
    let mut seen = Vec::new();
    let mut skip = 0;
    loop {
        let body = json!({"filters": {"created": {"gte": 0}}, "sortField": "created", "sortDirection": "asc", "skip": skip, "limit": 100});
        let (status, reply, _) = post(&sim, "/api/v1/activities/", Some(&token()), &body).await;
        assert_eq!(status, 200, "{reply}");
        let data = reply["data"].as_array().expect("data").clone();
        assert!(data.len() <= 100);
        assert!(reply["total"].as_u64().is_some());
        let created: Vec<i64> = data
            .iter()
            .map(|r| r["created"].as_i64().expect("created"))
            .collect();
        assert!(created.windows(2).all(|w| w[0] <= w[1]), "ascending");
        skip += data.len();
        seen.extend(data);
        if reply["hasNext"] == false {
            break;
        }
    }
    let after = cloud_apps_activities(&cfg, DEFAULT_TENANT_ID, sim.history_start(), sim.now());
    let seen_ids = ids(&seen);
    assert_eq!(seen_ids.len(), seen.len(), "no repeats");
    assert!(ids(&before).is_subset(&seen_ids));
    assert!(seen_ids.is_subset(&ids(&after)));
    let created: BTreeSet<i64> = seen
        .iter()
        .map(|r| r["created"].as_i64().unwrap_or(0))
        .collect();
    assert!(
        created.len() < seen.len() / 2,
        "batches: {} values for {} activities",
        created.len(),
        seen.len()
    );
    let first = &seen[0];
    for key in [
        "_id",
        "appName",
        "timestamp",
        "eventTypeValue",
        "description",
    ] {
        assert!(!first[key].is_null(), "{key} in {first}");
    }
    assert!(first["user"]["userName"].is_string());
    assert!(first["device"]["clientIP"].is_string());
}

#[tokio::test]
async fn thirty_a_minute_then_429_with_retry_after() {
    let sim = start(M365Config::default()).await;
    let body = json!({"limit": 1});
    for i in 0..30 {
        let (status, reply, _) = post(&sim, "/api/v1/alerts/", Some(&token()), &body).await;
        assert_eq!(status, 200, "request {i}: {reply}");
    }
    let (status, reply, retry_after) =
        post(&sim, "/api/v1/activities/", Some(&token()), &body).await;
    assert_eq!(status, 429, "both lists share the limit: {reply}");
    let wait: u64 = retry_after.expect("Retry-After").parse().expect("seconds");
    assert!((1..=60).contains(&wait));
    let stats = sim.stats().tenant(DEFAULT_TENANT_ID).cloud_apps;
    assert_eq!(stats.throttled, 1);
    assert_eq!(stats.max_in_window(Duration::from_secs(60)), 31);
    sim.advance_clock(Duration::from_secs(61));
    assert_eq!(
        post(&sim, "/api/v1/alerts/", Some(&token()), &body).await.0,
        200,
        "a minute later"
    );
}

#[tokio::test]
async fn alerts_change_state_later_and_alert_open_follows() {
    let mut cfg = M365Config {
        history: Duration::from_secs(2 * 24 * 3600),
        ..M365Config::default()
    };
    cfg.defender_cloud_apps.alerts_per_hour = 20;
    cfg.defender_cloud_apps.requests_per_minute = 10_000;
    let sim = start(cfg.clone()).await;
    let list = |open: Option<bool>| {
        let mut filters = json!({"date": {"gte": 0}});
        if let Some(open) = open {
            filters["alertOpen"] = json!({"eq": open});
        }
        json!({"filters": filters, "sortField": "date", "sortDirection": "asc", "limit": 100})
    };
    let mut all = Vec::new();
    let mut skip = 0;
    loop {
        let mut body = list(None);
        body["skip"] = json!(skip);
        let (status, reply, _) = post(&sim, "/api/v1/alerts/", Some(&token()), &body).await;
        assert_eq!(status, 200, "{reply}");
        let data = reply["data"].as_array().expect("data").clone();
        skip += data.len();
        all.extend(data);
        if reply["hasNext"] == false {
            break;
        }
    }
    let truth = cloud_apps_alerts(&cfg, DEFAULT_TENANT_ID, sim.history_start(), sim.now());
    assert_eq!(ids(&all), ids(&truth));
    let (_, open, _) = post(&sim, "/api/v1/alerts/", Some(&token()), &list(Some(true))).await;
    for alert in open["data"].as_array().expect("data") {
        assert_eq!(alert["resolutionStatusValue"], 0, "{alert}");
    }
    let open_now: BTreeSet<String> = all
        .iter()
        .filter(|a| a["resolutionStatusValue"] == 0)
        .map(|a| a["_id"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(!open_now.is_empty());
    // Two days on, most open alerts are resolved: the same ids, another state.
    sim.advance_clock(Duration::from_secs(2 * 24 * 3600));
    let later = cloud_apps_alerts(&cfg, DEFAULT_TENANT_ID, sim.history_start(), sim.now());
    let resolved = later
        .iter()
        .filter(|a| open_now.contains(a["_id"].as_str().unwrap_or_default()))
        .filter(|a| a["resolutionStatusValue"] != 0)
        .count();
    assert!(resolved > 0, "some open alert was resolved later");
}

#[tokio::test]
async fn configured_api_tokens_replace_the_default_one() {
    let mut cfg = M365Config::default();
    cfg.defender_cloud_apps.api_tokens =
        vec![siemflow_simulator::defender_cloud_apps::ApiTokenConfig {
            tenant_id: DEFAULT_TENANT_ID.into(),
            token: "portal-token".into(),
        }];
    let sim = start(cfg).await;
    let body = json!({"limit": 1});
    assert_eq!(
        post(&sim, "/api/v1/alerts/", Some("Token portal-token"), &body)
            .await
            .0,
        200
    );
    assert_eq!(
        post(&sim, "/api/v1/alerts/", Some(&token()), &body).await.0,
        401
    );
    let mut bad = M365Config::default();
    bad.defender_cloud_apps.api_tokens =
        vec![siemflow_simulator::defender_cloud_apps::ApiTokenConfig {
            tenant_id: "7c0de1e5-2b2a-4d5e-9f00-3f6e5d4c3b2a".into(),
            token: "t".into(),
        }];
    assert!(
        bad.validate().is_err(),
        "a token of a tenant the world does not have"
    );
}
