//! The source against the in-process Graph simulator, faults on, over a 2-day history and
//! live arrivals (late sign-ins included); the harness is `graph_security`'s.

use std::collections::HashSet;
use std::time::Duration;

use siemflow_simulator::{DEFAULT_TENANT_ID, GraphFaults, GraphResource};

use super::EntraLogsConfig;
use crate::graph_security::tests::{
    Received, entra, first_missing, missing_final_versions, simulator, start, truth, tuning, world,
};

/// Each log: its resource name, the simulator's collection and the record's time field.
const LOGS: [(&str, GraphResource, &str); 6] = [
    ("sign_ins", GraphResource::SignIns, "createdDateTime"),
    (
        "non_interactive_sign_ins",
        GraphResource::NonInteractiveSignIns,
        "createdDateTime",
    ),
    (
        "service_principal_sign_ins",
        GraphResource::ServicePrincipalSignIns,
        "createdDateTime",
    ),
    (
        "managed_identity_sign_ins",
        GraphResource::ManagedIdentitySignIns,
        "createdDateTime",
    ),
    (
        "directory_audits",
        GraphResource::DirectoryAudits,
        "activityDateTime",
    ),
    (
        "provisioning",
        GraphResource::Provisioning,
        "activityDateTime",
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_log_record_arrives_once_late_ones_included_through_every_fault() {
    let mut config = world(
        "2d",
        GraphFaults {
            throttle_rate: 0.02,
            server_error_rate: 0.08,
            slow_rate: 0.2,
            slow_latency: Duration::from_millis(300),
            repeat_rate: 0.5,
            missing_next_link_rate: 0.0,
            expired_skiptoken_rate: 0.25,
        },
    );
    config.seed = 23;
    config.graph.late_sign_in_rate = 0.1;
    config.graph.sign_ins_per_hour = 800;
    config.graph.identity_requests_per_10s = 60;
    let sim = simulator(config).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut source = EntraLogsConfig::with_tenants(vec![entra(&sim)]);
    source.api_url = Some(sim.base_url());
    source.resources = super::RESOURCES.iter().map(|r| r.to_string()).collect();
    source.sign_in_types = super::SIGN_IN_TYPES.iter().map(|r| r.to_string()).collect();
    source.start_from = Duration::from_secs(3 * 86_400);
    // Sign-ins that surface up to 2 hours late are still inside the window.
    source.lateness = Duration::from_secs(150 * 60);
    source.poll_interval = Duration::from_millis(100);
    source.requests_per_10s = 60;
    let mut running = start("entra_faults", "entra_logs", dir.path(), |cx| {
        source.build_with(cx, tuning(&sim))
    });
    let fields: Vec<(&str, &'static str)> = LOGS.iter().map(|(r, _, f)| (*r, *f)).collect();
    let mut seen = Received::new(&fields);

    // Records that became visible after an earlier step although older than it.
    let mut late = 0;
    let mut before: Option<(chrono::DateTime<chrono::Utc>, HashSet<String>)> = None;
    for step in 0..4 {
        if step > 0 {
            sim.advance_clock(Duration::from_secs(40 * 60));
        }
        let until = sim.now();
        let mut all = 0;
        let mut ids = HashSet::new();
        for (resource, which, field) in LOGS {
            let want = truth(&sim, which, field, until);
            all += want.len();
            if let Some((earlier, known)) = &before {
                late += want
                    .iter()
                    .filter(|(id, at)| at < earlier && !known.contains(id))
                    .count();
            }
            ids.extend(want.iter().map(|(id, _)| id.clone()));
            let arrived = running
                .deliver_until(&mut seen, |r| {
                    missing_final_versions(&r.of(resource), &want).is_empty()
                })
                .await;
            assert!(
                arrived,
                "step {step}: {resource} missing {:?}",
                first_missing(&seen.of(resource), &want)
            );
        }
        assert!(all > 5_000, "a real workload: {all}");
        before = Some((until, ids));
    }
    assert!(late > 10, "late records were part of the test: {late}");
    let repeated_dropped = running.counter("graph_repeated_records_total", "");
    running.stop(&mut seen).await;

    // Nothing invented, nothing twice.
    let until = sim.now();
    for (resource, which, field) in LOGS {
        let published = truth(&sim, which, field, until);
        let got = seen.of(resource);
        let invented: Vec<_> = got.difference(&published).take(5).collect();
        assert!(invented.is_empty(), "{resource}: unpublished {invented:?}");
        let ids: HashSet<_> = got.iter().map(|(id, _)| id).collect();
        assert_eq!(ids.len(), got.len(), "{resource}: one time per id");
    }
    let twice: Vec<_> = seen.pairs.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(twice.is_empty(), "each record emitted once: {twice:?}");
    assert_eq!(seen.without_metadata, 0);
    assert!(
        repeated_dropped > 0,
        "repeats and overlaps were dropped by id"
    );

    let graph = sim.stats().tenant(DEFAULT_TENANT_ID).graph;
    for fault in [
        "throttle",
        "server_error",
        "slow",
        "repeat",
        "expired_skiptoken",
    ] {
        assert!(graph.fault(fault) > 0, "{fault} fired: {:?}", graph.faults);
    }
    assert_eq!(graph.forbidden, 0);
    for endpoint in ["signIns", "beta/signIns", "directoryAudits", "provisioning"] {
        assert!(
            graph.requests.get(endpoint).is_some_and(|n| *n > 0),
            "{endpoint} read"
        );
    }
    // The budget starts at most 60 requests in any 10.1 s, the try after a 401 (tokens
    // expire as the simulator's clock moves 2 hours) included.
    assert!(graph.unauthorized > 0, "tokens expired on the way");
    let most = graph.max_in_window("identity", Duration::from_secs(10));
    assert!(most <= 60, "{most} requests in 10 s");
    assert_eq!(
        graph.throttled, 0,
        "the simulator's own limit was never reached"
    );
}
