//! The world without a server: determinism, record shapes, configuration.

use std::collections::HashSet;

use chrono::{Duration, TimeZone, Utc};
use serde_json::Value;
use siemflow_simulator::{
    CONTENT_TYPES, DEFAULT_TENANT_ID, M365Config, published_blobs, published_records,
};

fn day() -> (chrono::DateTime<Utc>, chrono::DateTime<Utc>) {
    let start = Utc
        .with_ymd_and_hms(2026, 9, 1, 0, 0, 0)
        .single()
        .expect("time");
    (start, start + Duration::hours(24))
}

#[test]
fn same_seed_same_world_other_seed_other_world() {
    let (s, e) = day();
    let a = M365Config::default();
    let b = M365Config {
        seed: 2,
        ..M365Config::default()
    };
    for ct in CONTENT_TYPES {
        let one = published_records(&a, DEFAULT_TENANT_ID, ct, s, e);
        assert_eq!(
            one,
            published_records(&a, DEFAULT_TENANT_ID, ct, s, e),
            "{ct}"
        );
        assert_eq!(
            published_blobs(&a, DEFAULT_TENANT_ID, ct, s, e),
            published_blobs(&a, DEFAULT_TENANT_ID, ct, s, e)
        );
        assert_ne!(
            one,
            published_records(&b, DEFAULT_TENANT_ID, ct, s, e),
            "{ct}"
        );
    }
}

#[test]
fn windows_are_half_open_and_contiguous() {
    let (s, e) = day();
    let cfg = M365Config::default();
    let mid = s + Duration::hours(13);
    let whole = published_blobs(&cfg, DEFAULT_TENANT_ID, "Audit.Exchange", s, e);
    let mut parts = published_blobs(&cfg, DEFAULT_TENANT_ID, "Audit.Exchange", s, mid);
    parts.extend(published_blobs(
        &cfg,
        DEFAULT_TENANT_ID,
        "Audit.Exchange",
        mid,
        e,
    ));
    assert_eq!(whole, parts);
    let exact = whole[3].content_created;
    let from_exact = published_blobs(&cfg, DEFAULT_TENANT_ID, "Audit.Exchange", exact, e);
    assert_eq!(from_exact[0], whole[3], "start is inclusive");
    let to_exact = published_blobs(&cfg, DEFAULT_TENANT_ID, "Audit.Exchange", s, exact);
    assert_eq!(to_exact.len(), 3, "end is exclusive");
}

#[test]
fn records_look_like_the_real_feed() {
    let (s, e) = day();
    let cfg = M365Config::default();
    let mut total = 0usize;
    let mut bytes = 0usize;
    let mut string_record_type = false;
    let mut null_ip = false;
    let mut ipv6_port = false;
    let mut ops = HashSet::new();
    let mut workloads = HashSet::new();
    let mut ids = HashSet::new();
    for ct in CONTENT_TYPES {
        let recs = published_records(&cfg, DEFAULT_TENANT_ID, ct, s, e);
        assert!(!recs.is_empty(), "{ct}");
        for r in &recs {
            total += 1;
            bytes += r.to_string().len();
            for f in [
                "Id",
                "CreationTime",
                "Operation",
                "OrganizationId",
                "RecordType",
                "UserType",
                "Workload",
                "UserId",
                "UserKey",
            ] {
                assert!(r.get(f).is_some(), "{ct} record without {f}: {r}");
            }
            assert_eq!(r["OrganizationId"], DEFAULT_TENANT_ID);
            let id = r["Id"].as_str().expect("Id");
            assert_eq!(id.len(), 36);
            assert!(ids.insert(id.to_string()), "Ids are unique");
            let t = r["CreationTime"].as_str().expect("time");
            assert!(
                chrono::NaiveDateTime::parse_from_str(
                    t.trim_end_matches('Z'),
                    "%Y-%m-%dT%H:%M:%S%.f"
                )
                .is_ok(),
                "{t}"
            );
            string_record_type |= r["RecordType"].is_string();
            null_ip |= r.get("ClientIP").is_some_and(Value::is_null);
            ipv6_port |= r["ClientIP"].as_str().is_some_and(|ip| ip.starts_with('['));
            ops.insert(r["Operation"].as_str().unwrap_or_default().to_string());
            workloads.insert(r["Workload"].as_str().unwrap_or_default().to_string());
            if r["Operation"] == "AlertTriggered" {
                let data: Value =
                    serde_json::from_str(r["Data"].as_str().expect("Data is a string"))
                        .expect("JSON inside");
                assert!(data.get("f3u").is_some());
            }
            if ct == "DLP.All" {
                assert!(
                    r["PolicyDetails"][0]["Rules"][0]["ConditionsMatched"]["SensitiveInformation"]
                        .is_array()
                );
            }
        }
    }
    assert!(string_record_type && null_ip && ipv6_port);
    for op in [
        "UserLoggedIn",
        "UserLoginFailed",
        "MailItemsAccessed",
        "FileDownloaded",
        "AlertTriggered",
        "TIMailData",
        "CopilotInteraction",
        "DlpRuleMatch",
        "MessageSent",
        "ViewReport",
    ] {
        assert!(ops.contains(op), "{op} missing");
    }
    for wl in [
        "AzureActiveDirectory",
        "Exchange",
        "SharePoint",
        "OneDrive",
        "MicrosoftTeams",
        "ThreatIntelligence",
        "SecurityComplianceCenter",
        "PowerBI",
        "Copilot",
    ] {
        assert!(workloads.contains(wl), "{wl} missing");
    }
    let avg = bytes / total;
    assert!(
        (600..=2000).contains(&avg),
        "about 1 KB per record, got {avg}"
    );
    // A weekday carries roughly records_per_hour × 24.
    assert!((600 * 24 / 2..=600 * 24 * 2).contains(&total), "{total}");
}

#[test]
fn a_million_record_tenant_is_cheap() {
    // ~6,000 records/hour ≈ 1M in a week; listing a day's blobs must not generate records.
    let cfg = M365Config {
        records_per_hour: 6000,
        ..M365Config::default()
    };
    let (s, e) = day();
    let blobs = published_blobs(&cfg, DEFAULT_TENANT_ID, "Audit.Exchange", s, e);
    let records: usize = blobs.iter().map(|b| b.records).sum();
    assert!(records > 20_000, "{records}");
}

#[test]
fn config_from_toml_with_defaults_and_strictness() {
    let cfg: M365Config = toml::from_str("").expect("empty table");
    assert_eq!(cfg, M365Config::default());
    let cfg: M365Config = toml::from_str(
        r#"
        seed = 7
        history = "7d"
        publish_delay = "45m"
        token_lifetime = "5m"
        [faults]
        throttle_rate = 0.1
        latency = "20ms"
        page_size = 30
        [[tenants]]
        tenant_id = "7c0de1e5-2b2a-4d5e-9f00-3f6e5d4c3b2a"
        client_id = "3b1f2a44-8c6d-4e7f-a012-b3c4d5e6f708"
        client_secret = "s"
        "#,
    )
    .expect("valid");
    assert_eq!(cfg.seed, 7);
    assert_eq!(cfg.faults.page_size, 30);
    assert_eq!(cfg.tenants[0].roles, siemflow_simulator::DEFAULT_ROLES);
    cfg.validate().expect("valid");
    assert!(
        toml::from_str::<M365Config>("sead = 1").is_err(),
        "unknown keys are refused"
    );
    assert!(toml::from_str::<M365Config>("[faults]\nthrotle_rate = 1.0").is_err());
    assert!(toml::from_str::<M365Config>("history = \"soon\"").is_err());
    let long: M365Config = toml::from_str("history = \"8d\"").expect("parses");
    assert!(long.validate().is_err(), "more than 7 days of history");
    let rate: M365Config = toml::from_str("[faults]\nduplicate_rate = 1.5").expect("parses");
    assert!(rate.validate().is_err());
}
