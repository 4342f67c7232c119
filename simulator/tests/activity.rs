//! Management Activity API: auth, subscriptions, window rules, paging, blobs, expiry.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::time::Duration as StdDuration;

use chrono::{Duration, Utc};
use common::*;
use serde_json::Value;
use siemflow_simulator::{
    DEFAULT_CLIENT_ID, DEFAULT_TENANT_ID, Faults, M365Config, TenantConfig, published_blobs,
    published_records,
};

const OTHER_TENANT: &str = "7c0de1e5-2b2a-4d5e-9f00-3f6e5d4c3b2a";
const OTHER_CLIENT: &str = "3b1f2a44-8c6d-4e7f-a012-b3c4d5e6f708";
const NO_ROLE_CLIENT: &str = "aa0b1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d";

fn two_tenants() -> M365Config {
    let mut cfg = M365Config::default();
    cfg.tenants.push(TenantConfig {
        tenant_id: OTHER_TENANT.into(),
        client_id: OTHER_CLIENT.into(),
        client_secret: Some("other-secret".into()),
        certificate_pem: None,
        roles: vec!["ActivityFeed.Read".into()],
    });
    cfg.tenants.push(TenantConfig {
        tenant_id: DEFAULT_TENANT_ID.into(),
        client_id: NO_ROLE_CLIENT.into(),
        client_secret: Some("no-role".into()),
        certificate_pem: None,
        roles: vec![],
    });
    cfg
}

#[tokio::test]
async fn authentication_and_authorisation() {
    let cfg = M365Config {
        token_lifetime: StdDuration::from_secs(60),
        ..two_tenants()
    };
    let sim = start(cfg).await;
    let q = format!("subscriptions/list?PublisherIdentifier={PUBLISHER}");
    let (s, _, _) = call(&sim, "GET", &q, None).await;
    assert_eq!(s, 401, "no token");
    let (s, _, _) = call(&sim, "GET", &q, Some("not-a-token")).await;
    assert_eq!(s, 401, "unknown token");
    let other = token_for(&sim, OTHER_TENANT, OTHER_CLIENT, "other-secret").await;
    let (s, _, b) = call(&sim, "GET", &q, Some(&other)).await;
    assert_eq!((s, code(&b).as_str()), (401, "AF20010"), "{b}");
    let no_role = token_for(&sim, DEFAULT_TENANT_ID, NO_ROLE_CLIENT, "no-role").await;
    let (s, _, b) = call(&sim, "GET", &q, Some(&no_role)).await;
    assert_eq!((s, code(&b).as_str()), (401, "AF10001"), "{b}");
    // A Graph token is a valid token, for the wrong audience.
    let (_, graph) = token_request(
        &sim,
        DEFAULT_TENANT_ID,
        false,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", DEFAULT_CLIENT_ID),
            ("client_secret", "simulator-secret"),
            ("scope", "https://graph.microsoft.com/.default"),
        ],
    )
    .await;
    let (s, _, _) = call(&sim, "GET", &q, graph["access_token"].as_str()).await;
    assert_eq!(s, 401, "graph audience");
    let t = token(&sim).await;
    let (s, _, b) = call(&sim, "GET", &q, Some(&t)).await;
    assert_eq!(s, 200, "{b}");
    sim.advance_clock(StdDuration::from_secs(61));
    let (s, _, _) = call(&sim, "GET", &q, Some(&t)).await;
    assert_eq!(s, 401, "expired token");
    sim.stop().await;
}

#[tokio::test]
async fn subscription_lifecycle() {
    let sim = start(M365Config::default()).await;
    let t = token(&sim).await;
    let (start_t, end_t) = last_day();
    let list_q = format!(
        "subscriptions/content?contentType=Audit.Exchange&startTime={}&endTime={}&PublisherIdentifier={PUBLISHER}",
        fmt(start_t),
        fmt(end_t)
    );
    let (s, _, b) = call(&sim, "GET", &list_q, Some(&t)).await;
    assert_eq!(
        (s, code(&b).as_str()),
        (400, "AF20022"),
        "no subscription yet: {b}"
    );
    let start_q =
        format!("subscriptions/start?contentType=Audit.Exchange&PublisherIdentifier={PUBLISHER}");
    let (s, _, b) = call(&sim, "POST", &start_q, Some(&t)).await;
    assert_eq!(s, 200, "{b}");
    let v: Value = serde_json::from_str(&b).expect("json");
    assert_eq!(
        (
            v["contentType"].as_str(),
            v["status"].as_str(),
            v["webhook"].is_null()
        ),
        (Some("Audit.Exchange"), Some("enabled"), true)
    );
    let (s, _, b) = call(&sim, "POST", &start_q, Some(&t)).await;
    assert_eq!((s, code(&b).as_str()), (400, "AF20024"), "{b}");
    let (s, _, b) = call(
        &sim,
        "POST",
        &format!("subscriptions/start?contentType=Audit.Nope&PublisherIdentifier={PUBLISHER}"),
        Some(&t),
    )
    .await;
    assert_eq!((s, code(&b).as_str()), (400, "AF20020"), "{b}");
    let (s, _, b) = call(
        &sim,
        "GET",
        &format!("subscriptions/list?PublisherIdentifier={PUBLISHER}"),
        Some(&t),
    )
    .await;
    assert_eq!(s, 200);
    let subs: Vec<Value> = serde_json::from_str(&b).expect("json");
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0]["status"], "enabled");
    let (s, _, b) = call(&sim, "GET", &list_q, Some(&t)).await;
    assert_eq!(s, 200, "{b}");
    // Stop, then a restart within 15 minutes is throttled; later it works.
    let (s, _, _) = call(
        &sim,
        "POST",
        &format!("subscriptions/stop?contentType=Audit.Exchange&PublisherIdentifier={PUBLISHER}"),
        Some(&t),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _, b) = call(&sim, "GET", &list_q, Some(&t)).await;
    assert_eq!(code(&b), "AF20022", "stopped: {s} {b}");
    let (s, _, b) = call(&sim, "POST", &start_q, Some(&t)).await;
    assert_eq!((s, code(&b).as_str()), (403, "AF429"), "{b}");
    sim.advance_clock(StdDuration::from_secs(16 * 60));
    let (s, _, b) = call(&sim, "POST", &start_q, Some(&t)).await;
    assert_eq!(s, 200, "{b}");
    sim.stop().await;
}

#[tokio::test]
async fn window_rules() {
    let sim = start(M365Config::default()).await;
    let t = token(&sim).await;
    subscribe(&sim, &t, "Audit.General").await;
    let now = Utc::now();
    let q = |s: &str, e: &str| {
        let mut q = format!(
            "subscriptions/content?contentType=Audit.General&PublisherIdentifier={PUBLISHER}"
        );
        if !s.is_empty() {
            q.push_str(&format!("&startTime={s}"));
        }
        if !e.is_empty() {
            q.push_str(&format!("&endTime={e}"));
        }
        q
    };
    let h = |d: i64| fmt(now - Duration::hours(d));
    let cases = [
        ("over 24 h", q(&h(30), &h(5)), "AF20030"),
        ("start after end", q(&h(1), &h(2)), "AF20030"),
        ("start equals end", q(&h(1), &h(1)), "AF20030"),
        ("start only", q(&h(3), ""), "AF20030"),
        ("end only", q("", &h(3)), "AF20030"),
        ("not a time", q("yesterday", &h(3)), "AF20030"),
        (
            "more than 7 days back",
            q(&h(8 * 24), &h(8 * 24 - 2)),
            "AF20055",
        ),
    ];
    for (what, path, want) in cases {
        let (s, _, b) = call(&sim, "GET", &path, Some(&t)).await;
        assert_eq!((s, code(&b).as_str()), (400, want), "{what}: {b}");
    }
    // Every documented format, a trailing Z and exactly 24 hours are accepted; so is no window.
    let day = (now - Duration::days(1)).format("%Y-%m-%d").to_string();
    let today = now.format("%Y-%m-%d").to_string();
    let ok = [
        q(&day, &today),
        q(&format!("{day}T10:00"), &format!("{today}T10:00")),
        q(&format!("{}Z", h(5)), &format!("{}Z", h(4))),
        q(&format!("{}.000Z", h(5)), &format!("{}.000Z", h(4))),
        q(&h(24), &h(0)),
        q("", ""),
    ];
    for path in ok {
        let (s, _, b) = call(&sim, "GET", &path, Some(&t)).await;
        assert_eq!(s, 200, "{path}: {b}");
    }
    sim.stop().await;
}

#[tokio::test]
async fn paging_yields_exactly_the_window_and_blobs_hold_the_ground_truth() {
    let cfg = M365Config {
        faults: Faults {
            page_size: 7,
            ..Faults::default()
        },
        ..M365Config::default()
    };
    let sim = start(cfg.clone()).await;
    let t = token(&sim).await;
    let (start_t, end_t) = last_day();
    for ct in ["Audit.Exchange", "DLP.All"] {
        subscribe(&sim, &t, ct).await;
        let (listed, pages) = list_all(&sim, &t, ct, start_t, end_t).await;
        let truth = published_blobs(&cfg, DEFAULT_TENANT_ID, ct, start_t, end_t);
        assert!(!truth.is_empty());
        let ids: Vec<&str> = listed
            .iter()
            .map(|d| d["contentId"].as_str().expect("id"))
            .collect();
        let want: Vec<&str> = truth.iter().map(|b| b.content_id.as_str()).collect();
        assert_eq!(
            ids, want,
            "{ct}: listed in contentCreated order, exactly the window"
        );
        if truth.len() > 7 {
            assert!(
                pages.len() > 1
                    && pages[..pages.len() - 1]
                        .iter()
                        .all(|(n, next)| *n == 7 && *next)
            );
        }
        for d in &listed {
            let created = chrono::DateTime::parse_from_rfc3339(
                d["contentCreated"].as_str().expect("created"),
            )
            .expect("iso");
            assert!(created >= start_t && created < end_t);
            assert_eq!(d["contentType"], ct);
            assert!(d["contentExpiration"].as_str().expect("exp").ends_with('Z'));
        }
        let mut got = Vec::new();
        for d in &listed {
            got.extend(fetch_blob(&t, d["contentUri"].as_str().expect("uri")).await);
        }
        let records = published_records(&cfg, DEFAULT_TENANT_ID, ct, start_t, end_t);
        assert_eq!(got, records, "{ct}: blobs hold exactly the ground truth");
    }
    let stats = sim.stats().tenant(DEFAULT_TENANT_ID);
    assert!(stats.by_endpoint["blob"] > 0 && stats.records_served > 0);
    assert!(stats.publisher_ids.contains(PUBLISHER));
    sim.stop().await;
}

#[tokio::test]
async fn next_page_uri_is_validated() {
    let cfg = M365Config {
        faults: Faults {
            page_size: 2,
            ..Faults::default()
        },
        ..M365Config::default()
    };
    let sim = start(cfg).await;
    let t = token(&sim).await;
    subscribe(&sim, &t, "Audit.AzureActiveDirectory").await;
    let (start_t, end_t) = last_day();
    let base = format!(
        "subscriptions/content?contentType=Audit.AzureActiveDirectory&startTime={}&endTime={}&PublisherIdentifier={PUBLISHER}",
        fmt(start_t),
        fmt(end_t)
    );
    for bad in [
        "garbage",
        "20010101000000000R000000",
        "20260901105500123R12",
    ] {
        let (s, _, b) = call(&sim, "GET", &format!("{base}&nextPage={bad}"), Some(&t)).await;
        assert_eq!((s, code(&b).as_str()), (400, "AF20031"), "{bad}: {b}");
    }
    // The service's own NextPageUri uses /api/v1/ or lower-case parameter names at times; both work.
    let mut seen_variants = BTreeSet::new();
    let (_, h, _) = call(&sim, "GET", &base, Some(&t)).await;
    let mut next = h
        .get("nextpageuri")
        .map(|v| v.to_str().expect("ascii").to_string());
    while let Some(url) = next {
        seen_variants.insert((url.contains("/api/v1/"), url.contains("starttime=")));
        assert!(
            !url.contains("PublisherIdentifier"),
            "NextPageUri leaves PublisherIdentifier out"
        );
        let (s, h, b) = call_url(
            "GET",
            &format!("{url}&PublisherIdentifier={PUBLISHER}"),
            Some(&t),
        )
        .await;
        assert_eq!(s, 200, "{url}: {b}");
        next = h
            .get("nextpageuri")
            .map(|v| v.to_str().expect("ascii").to_string());
    }
    assert!(seen_variants.len() > 1, "{seen_variants:?}");
    sim.stop().await;
}

#[tokio::test]
async fn blob_errors_expired_missing_malformed() {
    let sim = start(M365Config::default()).await;
    let t = token(&sim).await;
    subscribe(&sim, &t, "Audit.SharePoint").await;
    let (start_t, end_t) = last_day();
    let (listed, _) = list_all(&sim, &t, "Audit.SharePoint", start_t, end_t).await;
    let uri = listed[0]["contentUri"].as_str().expect("uri").to_string();
    let id = listed[0]["contentId"].as_str().expect("id").to_string();
    assert!(id.contains("$audit_sharepoint$Audit_SharePoint$"));
    let base = uri.trim_end_matches(&id).to_string();
    let get = |u: String| {
        let t = t.clone();
        async move {
            call_url(
                "GET",
                &format!("{u}?PublisherIdentifier={PUBLISHER}"),
                Some(&t),
            )
            .await
        }
    };
    let (s, _, b) = get(format!("{base}not-a-content-id")).await;
    assert_eq!((s, code(&b).as_str()), (400, "AF20052"), "{b}");
    // Well-formed, but no blob has this index in that hour.
    let missing = format!("{}999999{}", &id[..17], &id[23..]);
    let (s, _, b) = get(format!("{base}{missing}")).await;
    assert_eq!((s, code(&b).as_str()), (400, "AF20050"), "{b}");
    // Another tenant's path cannot read it.
    let (s, _, _) =
        get(uri.replace(DEFAULT_TENANT_ID, "7c0de1e5-2b2a-4d5e-9f00-3f6e5d4c3b2a")).await;
    assert_eq!(s, 401);
    let (s, _, _) = get(uri.clone()).await;
    assert_eq!(s, 200);
    // Eight days later the content has expired (and the old token too).
    sim.advance_clock(StdDuration::from_secs(8 * 24 * 3600));
    let t2 = token(&sim).await;
    let (s, _, b) = call_url(
        "GET",
        &format!("{uri}?PublisherIdentifier={PUBLISHER}"),
        Some(&t2),
    )
    .await;
    assert_eq!((s, code(&b).as_str()), (400, "AF20051"), "{b}");
    sim.stop().await;
}

#[tokio::test]
async fn frozen_world_publishes_nothing_new_and_history_is_bounded() {
    let cfg = M365Config {
        live: false,
        history: StdDuration::from_secs(6 * 3600),
        ..M365Config::default()
    };
    let sim = start(cfg.clone()).await;
    let t = token(&sim).await;
    subscribe(&sim, &t, "Audit.Exchange").await;
    let (start_t, end_t) = last_day();
    let (listed, _) = list_all(&sim, &t, "Audit.Exchange", start_t, end_t).await;
    let oldest = Utc::now() - Duration::hours(6) - Duration::minutes(1);
    for d in &listed {
        let created =
            chrono::DateTime::parse_from_rfc3339(d["contentCreated"].as_str().expect("c"))
                .expect("iso");
        assert!(created >= oldest, "history is 6 h");
    }
    sim.advance_clock(StdDuration::from_secs(3 * 3600));
    let t = token(&sim).await;
    let (later, _) = list_all(
        &sim,
        &t,
        "Audit.Exchange",
        start_t + Duration::hours(3),
        end_t + Duration::hours(3),
    )
    .await;
    let a: HashSet<&Value> = listed.iter().map(|d| &d["contentId"]).collect();
    // Blobs between the first window's end and the start instant were published before the
    // world froze; anything newer must not exist.
    let b: HashSet<&Value> = later
        .iter()
        .filter(|d| {
            chrono::DateTime::parse_from_rfc3339(d["contentCreated"].as_str().expect("c"))
                .expect("iso")
                < end_t
        })
        .map(|d| &d["contentId"])
        .collect();
    assert_eq!(a, b, "a frozen world publishes nothing new");
    let frozen_at = sim.now() - Duration::hours(3);
    for d in &later {
        let created =
            chrono::DateTime::parse_from_rfc3339(d["contentCreated"].as_str().expect("c"))
                .expect("iso");
        assert!(created <= frozen_at, "published after the world froze");
    }
    sim.stop().await;
}
