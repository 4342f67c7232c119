//! Injected faults: throttling, budgets, server errors, short pages, duplicates, late blobs.

mod common;

use std::collections::HashMap;

use common::*;
use serde_json::Value;
use siemflow_simulator::{
    DEFAULT_TENANT_ID, Faults, M365Config, published_blobs, published_records,
};

fn with(faults: Faults) -> M365Config {
    M365Config {
        faults,
        ..M365Config::default()
    }
}

#[tokio::test]
async fn throttling_is_af429_mostly_on_403() {
    let sim = start(with(Faults {
        throttle_rate: 1.0,
        ..Faults::default()
    }))
    .await;
    let t = token(&sim).await;
    let mut statuses = HashMap::new();
    for _ in 0..40 {
        let (s, _, b) = call(
            &sim,
            "GET",
            &format!("subscriptions/list?PublisherIdentifier={PUBLISHER}"),
            Some(&t),
        )
        .await;
        assert_eq!(code(&b), "AF429", "{b}");
        assert!(b.contains("Too many requests. Method=ListSubscriptions"));
        *statuses.entry(s).or_insert(0) += 1;
    }
    assert!(
        statuses[&403] > statuses.get(&429).copied().unwrap_or(0),
        "{statuses:?}"
    );
    assert_eq!(
        statuses.keys().filter(|s| **s != 403 && **s != 429).count(),
        0
    );
    assert_eq!(sim.stats().tenant(DEFAULT_TENANT_ID).throttled, 40);
    sim.stop().await;
}

#[tokio::test]
async fn budgets_per_tenant_and_shared_pool_without_publisher() {
    let cfg = M365Config {
        requests_per_minute: 5,
        unidentified_requests_per_minute: 2,
        ..M365Config::default()
    };
    let sim = start(cfg).await;
    let t = token(&sim).await;
    let mut codes = Vec::new();
    for _ in 0..7 {
        let (s, _, b) = call(
            &sim,
            "GET",
            &format!("subscriptions/list?PublisherIdentifier={PUBLISHER}"),
            Some(&t),
        )
        .await;
        codes.push((s, code(&b)));
    }
    assert!(codes[..5].iter().all(|(s, _)| *s == 200), "{codes:?}");
    assert!(
        codes[5..].iter().all(|(s, c)| *s == 403 && c == "AF429"),
        "{codes:?}"
    );
    // Without PublisherIdentifier the (much smaller) shared pool applies.
    let mut shared = Vec::new();
    for _ in 0..3 {
        let (s, _, _) = call(&sim, "GET", "subscriptions/list", Some(&t)).await;
        shared.push(s);
    }
    assert_eq!(shared, vec![200, 200, 403]);
    let st = sim.stats().tenant(DEFAULT_TENANT_ID);
    assert_eq!((st.throttled, st.unidentified), (3, 3));
    // A new minute, a new budget.
    sim.advance_clock(std::time::Duration::from_secs(60));
    let (s, _, _) = call(
        &sim,
        "GET",
        &format!("subscriptions/list?PublisherIdentifier={PUBLISHER}"),
        Some(&t),
    )
    .await;
    assert_eq!(s, 200);
    sim.stop().await;
}

#[tokio::test]
async fn server_errors_are_af50000() {
    let sim = start(with(Faults {
        server_error_rate: 1.0,
        ..Faults::default()
    }))
    .await;
    let t = token(&sim).await;
    for _ in 0..10 {
        let (s, _, b) = call(
            &sim,
            "GET",
            &format!("subscriptions/list?PublisherIdentifier={PUBLISHER}"),
            Some(&t),
        )
        .await;
        assert!(s == 500 || s == 503, "{s}");
        assert_eq!(code(&b), "AF50000");
    }
    assert_eq!(sim.stats().tenant(DEFAULT_TENANT_ID).server_errors, 10);
    sim.stop().await;
}

#[tokio::test]
async fn truncated_pages_still_page_to_completion() {
    let cfg = with(Faults {
        truncated_page_rate: 0.5,
        page_size: 5,
        ..Faults::default()
    });
    let sim = start(cfg.clone()).await;
    let t = token(&sim).await;
    subscribe(&sim, &t, "Audit.AzureActiveDirectory").await;
    let (start_t, end_t) = last_day();
    let (listed, pages) = list_all(&sim, &t, "Audit.AzureActiveDirectory", start_t, end_t).await;
    assert!(
        pages.iter().any(|(n, next)| *n < 5 && *next),
        "some page was cut short: {pages:?}"
    );
    let ids: Vec<&str> = listed
        .iter()
        .map(|d| d["contentId"].as_str().expect("id"))
        .collect();
    let truth = published_blobs(
        &cfg,
        DEFAULT_TENANT_ID,
        "Audit.AzureActiveDirectory",
        start_t,
        end_t,
    );
    let want: Vec<&str> = truth.iter().map(|b| b.content_id.as_str()).collect();
    assert_eq!(ids, want);
    sim.stop().await;
}

#[tokio::test]
async fn duplicates_appear_in_two_blobs() {
    let cfg = with(Faults {
        duplicate_rate: 0.2,
        ..Faults::default()
    });
    let sim = start(cfg.clone()).await;
    let t = token(&sim).await;
    subscribe(&sim, &t, "Audit.Exchange").await;
    let (start_t, end_t) = last_day();
    let (listed, _) = list_all(&sim, &t, "Audit.Exchange", start_t, end_t).await;
    let mut seen: HashMap<String, Vec<(String, Value)>> = HashMap::new();
    for d in &listed {
        for r in fetch_blob(&t, d["contentUri"].as_str().expect("uri")).await {
            let id = r["Id"].as_str().expect("Id").to_string();
            seen.entry(id)
                .or_default()
                .push((d["contentId"].as_str().expect("cid").to_string(), r));
        }
    }
    let repeated: Vec<_> = seen.values().filter(|v| v.len() > 1).collect();
    assert!(!repeated.is_empty(), "some record is in two blobs");
    for v in &repeated {
        assert_ne!(v[0].0, v[1].0, "in two different blobs");
        assert_eq!(v[0].1, v[1].1, "the repeat is identical");
    }
    // Ground truth lists each record once.
    let truth = published_records(&cfg, DEFAULT_TENANT_ID, "Audit.Exchange", start_t, end_t);
    assert_eq!(truth.len(), seen.len());
    sim.stop().await;
}

#[tokio::test]
async fn late_blobs_are_published_hours_after_their_records() {
    let cfg = with(Faults {
        late_blob_rate: 0.3,
        ..Faults::default()
    });
    let sim = start(cfg.clone()).await;
    let t = token(&sim).await;
    subscribe(&sim, &t, "Audit.SharePoint").await;
    let (start_t, end_t) = last_day();
    let (listed, _) = list_all(&sim, &t, "Audit.SharePoint", start_t, end_t).await;
    let mut late = 0;
    let mut previous_newest = None;
    let mut listed_after_newer = false;
    for d in &listed {
        let created =
            chrono::DateTime::parse_from_rfc3339(d["contentCreated"].as_str().expect("c"))
                .expect("iso")
                .naive_utc();
        let records = fetch_blob(&t, d["contentUri"].as_str().expect("uri")).await;
        let newest = records
            .iter()
            .filter_map(|r| r["CreationTime"].as_str())
            .filter_map(|s| {
                chrono::NaiveDateTime::parse_from_str(
                    s.trim_end_matches('Z'),
                    "%Y-%m-%dT%H:%M:%S%.f",
                )
                .ok()
            })
            .max()
            .expect("records have CreationTime");
        assert!(newest <= created, "published after its records");
        if created - newest > chrono::Duration::hours(2) {
            late += 1;
            if previous_newest.is_some_and(|p| p > newest) {
                listed_after_newer = true;
            }
        }
        previous_newest =
            Some(previous_newest.map_or(newest, |p: chrono::NaiveDateTime| p.max(newest)));
    }
    assert!(late > 0, "some blob is late");
    assert!(
        listed_after_newer,
        "a late blob is listed after blobs with newer records"
    );
    let truth = published_blobs(&cfg, DEFAULT_TENANT_ID, "Audit.SharePoint", start_t, end_t);
    assert_eq!(truth.iter().filter(|b| b.late).count(), late);
    sim.stop().await;
}
