//! Activities and alerts of Defender for Cloud Apps, derived per (tenant, hour) like the rest
//! of the world. Shapes follow reference §5.1 and the SIEM agent's sample lines
//! (tests/fixtures/microsoftdocs-cloudappsecurity): `_id` as `<tenantNum>_<appId>_<guid>`,
//! epoch-millisecond `timestamp` (event time) and `created` (ingest time, one value per
//! ingest batch, so many activities share it), `EVENT_CATEGORY_*` names.
//!
//! Alerts change after creation: most are read, many are resolved later (hours to a day and
//! a half); a query sees the state at its own instant.

use serde_json::{Value, json};

use crate::world::generate::{hourly_count, rhythm};
use crate::world::rng::{Rng, key};
use crate::world::{TenantProfile, World};

const HOUR_MS: i64 = 3_600_000;
const MINUTE_MS: i64 = 60_000;

/// (appId, appName, SIEM agent's app id name).
const APPS: [(u32, &str, &str); 5] = [
    (20893, "Microsoft SharePoint Online", "APPID_SHAREPOINT"),
    (15600, "Microsoft OneDrive for Business", "APPID_ONEDRIVE"),
    (20892, "Microsoft Exchange Online", "APPID_EXCHANGE"),
    (11161, "Office 365", "APPID_OFFICE365"),
    (13491, "ServiceNow", "APPID_SERVICENOW"),
];

/// (EVENT_CATEGORY_*, name as the agent prints it, eventTypeValue, rawOperationName).
const EVENTS: [(&str, &str, &str, &str); 7] = [
    (
        "EVENT_CATEGORY_LOGIN",
        "Log on",
        "EVENT_O365_LOGIN",
        "UserLoggedIn",
    ),
    (
        "EVENT_CATEGORY_LOGOUT",
        "Log out",
        "EVENT_O365_LOGOUT",
        "UserLoggedOut",
    ),
    (
        "EVENT_CATEGORY_DOWNLOAD_FILE",
        "Download file",
        "EVENT_O365_ONEDRIVE_GENERIC",
        "FileDownloaded",
    ),
    (
        "EVENT_CATEGORY_UPLOAD_FILE",
        "Upload file",
        "EVENT_O365_SHAREPOINT_GENERIC",
        "FileUploaded",
    ),
    (
        "EVENT_CATEGORY_VIEW_REPORT",
        "View report",
        "EVENT_SERVICENOW_GENERIC",
        "ViewReport",
    ),
    (
        "EVENT_CATEGORY_DELETE_OBJECT",
        "Delete object",
        "EVENT_SERVICENOW_GENERIC",
        "DeleteObject",
    ),
    (
        "EVENT_CATEGORY_CREATE_USER",
        "Create user",
        "EVENT_O365_AAD_GENERIC",
        "Add user.",
    ),
];

/// (title / policy label, policyType, alertType, severityValue).
const POLICIES: [(&str, &str, &str, u8); 4] = [
    (
        "Mass download by a single user",
        "ANOMALY_DETECTION",
        "ALERT_CABINET_EVENT_MATCH_AUDIT",
        1,
    ),
    (
        "Impossible travel activity",
        "ANOMALY_DETECTION",
        "ALERT_GEOLOCATION_NEW_COUNTRY",
        2,
    ),
    (
        "File shared with personal email address",
        "FILE",
        "ALERT_CABINET_FILE_MATCH",
        0,
    ),
    (
        "Activity from infrequent country",
        "ANOMALY_DETECTION",
        "ALERT_INFREQUENT_COUNTRY",
        3,
    ),
];

/// Where an activity is in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ActivityPlan {
    pub(crate) tenant: usize,
    pub(crate) hour: i64,
    pub(crate) index: u32,
    /// Event time.
    pub(crate) timestamp: i64,
    /// Ingest time: the end of its ingest batch.
    pub(crate) created: i64,
    /// When queries start returning it (`created`, or later when indexed late).
    pub(crate) visible: i64,
}

/// An alert and the instants its state changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AlertPlan {
    pub(crate) tenant: usize,
    pub(crate) hour: i64,
    pub(crate) index: u32,
    pub(crate) id: String,
    /// Raised at (epoch ms); visible from `visible`.
    pub(crate) timestamp: i64,
    pub(crate) visible: i64,
    /// Marked read at.
    pub(crate) read_at: Option<i64>,
    /// Resolved at, with its resolutionStatusValue (1–5).
    pub(crate) resolved: Option<(i64, u8)>,
}

impl AlertPlan {
    /// (statusValue, resolutionStatusValue) at `now`.
    pub(crate) fn state(&self, now: i64) -> (u8, u8) {
        let resolved = self.resolved.filter(|(at, _)| *at <= now);
        let read = self.read_at.is_some_and(|at| at <= now);
        match resolved {
            Some((_, status)) => (2, status),
            None if read => (1, 0),
            None => (0, 0),
        }
    }

    /// Every instant its state changes, creation included.
    pub(crate) fn change_times(&self) -> Vec<i64> {
        let mut times = vec![self.visible];
        times.extend(self.read_at);
        times.extend(self.resolved.map(|(at, _)| at));
        times.sort_unstable();
        times.dedup();
        times
    }
}

impl World {
    fn mda_key(&self, tenant: usize, what: u64, hour: i64) -> u64 {
        key(&[
            self.cfg.seed,
            self.tenants[tenant].tag,
            0x3da_c10d,
            what,
            hour as u64,
        ])
    }

    fn mda_activity_count(&self, tenant: usize, hour: i64) -> u32 {
        let lambda = f64::from(self.cfg.defender_cloud_apps.activities_per_hour) * rhythm(hour);
        hourly_count(lambda, self.mda_key(tenant, 1, hour), 200_000)
    }

    fn mda_activity(&self, tenant: usize, hour: i64, index: u32) -> ActivityPlan {
        let cfg = &self.cfg.defender_cloud_apps;
        let mut rng = Rng::new(key(&[self.mda_key(tenant, 2, hour), u64::from(index)]));
        let timestamp = hour * HOUR_MS + rng.below(HOUR_MS as u64) as i64;
        let delay = cfg.ingest_delay.as_millis() as f64 * (0.2 + 1.6 * rng.unit());
        let batch = cfg.ingest_interval.as_millis().max(1) as i64;
        let ingested = timestamp + delay as i64;
        let created = (ingested.div_euclid(batch) + 1) * batch;
        let late = cfg.faults.late_index_rate > 0.0 && rng.chance(cfg.faults.late_index_rate);
        let visible = if late {
            created + 1 + rng.below(cfg.faults.late_index_delay.as_millis().max(1) as u64) as i64
        } else {
            created
        };
        ActivityPlan {
            tenant,
            hour,
            index,
            timestamp,
            created,
            visible,
        }
    }

    /// The longest an activity's ingestion trails its event time.
    fn mda_max_ingest_lag(&self) -> i64 {
        let cfg = &self.cfg.defender_cloud_apps;
        (cfg.ingest_delay.as_millis() as f64 * 1.8) as i64 + cfg.ingest_interval.as_millis() as i64
    }

    /// Activities of `tenant` whose event time is at or after `history_ms`, created in
    /// `[created_from, created_until]` and visible at `now`.
    pub(crate) fn mda_activities(
        &self,
        tenant: usize,
        history_ms: i64,
        created_from: i64,
        created_until: i64,
        now: i64,
    ) -> Vec<ActivityPlan> {
        let first = created_from
            .saturating_sub(self.mda_max_ingest_lag())
            .max(history_ms)
            .div_euclid(HOUR_MS);
        let last = created_until.min(now).div_euclid(HOUR_MS);
        let mut out = Vec::new();
        for hour in first..=last {
            for index in 0..self.mda_activity_count(tenant, hour) {
                let a = self.mda_activity(tenant, hour, index);
                if a.timestamp >= history_ms
                    && a.created >= created_from
                    && a.created <= created_until
                    && a.visible <= now
                {
                    out.push(a);
                }
            }
        }
        out
    }

    /// The activity's record as the API returns it.
    pub(crate) fn mda_activity_record(&self, a: &ActivityPlan) -> Value {
        let t: &TenantProfile = &self.tenants[a.tenant];
        let mut rng = Rng::new(key(&[
            self.mda_key(a.tenant, 3, a.hour),
            u64::from(a.index),
        ]));
        let (app_id, app_name, _) = *rng.pick(&APPS);
        let (category, name, type_value, raw) = *rng.pick(&EVENTS);
        let user = rng.pick(&t.users).clone();
        let source_id = rng.guid();
        let tenant_num = t.tag % 1_000_000;
        let id = format!("{tenant_num}_{app_id}_{source_id}");
        let object = format!(
            "{}-{}.xlsx",
            ["Q3-forecast", "budget", "roadmap"][rng.below(3) as usize],
            rng.hex(4)
        );
        json!({
            "_id": id,
            "tenantId": tenant_num,
            "aadTenantId": t.id,
            "appId": app_id,
            "appName": app_name,
            "timestamp": a.timestamp,
            "timestampRaw": a.timestamp,
            "created": a.created,
            "createdRaw": a.created,
            "eventType": 233_580 + rng.below(40),
            "eventTypeValue": type_value,
            "eventTypeName": category,
            "eventRouting": {"auditing": true, "scubaUnpacker": false},
            "description": format!("{name}: {object}"),
            "description_id": category,
            "description_metadata": {"event_category": name, "target_object": object},
            "user": {"userName": user.upn, "userTags": []},
            "userAgent": {"name": "Edge", "operatingSystem": {"name": "Windows", "version": "10"}},
            "device": {
                "clientIP": user.ip,
                "userAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36 Edg/120.0",
                "countryCode": "US",
            },
            "location": {"countryCode": "US", "city": "Redmond", "region": "Washington", "isp": "microsoft corporation", "category": 0},
            "mainInfo": {
                "eventObjects": [
                    {"name": object, "id": rng.guid(), "role": 4, "type": 1},
                    {"name": user.upn, "id": user.object_id, "role": 3, "type": 2},
                ],
                "rawOperationName": raw,
                "prettyOperationName": name,
                "activityResult": {"isSuccess": true},
                "type": "event",
            },
            "collected": {"o365": {"blobId": rng.guid(), "lastUpdated": a.created}},
            "severity": "INFO",
            "resolvedActor": {"id": user.object_id, "name": user.display, "type": 2},
            "internals": {"otherIPs": [user.ip]},
            "srcAppId": app_id,
            "URL": format!("https://{}.portal.cloudappsecurity.com/#/audits?activity.id=eq({id},)", t.company),
        })
    }

    fn mda_alert_count(&self, tenant: usize, hour: i64) -> u32 {
        let lambda = f64::from(self.cfg.defender_cloud_apps.alerts_per_hour) * rhythm(hour);
        hourly_count(lambda, self.mda_key(tenant, 4, hour), 10_000)
    }

    fn mda_alert(&self, tenant: usize, hour: i64, index: u32) -> AlertPlan {
        let mut rng = Rng::new(key(&[self.mda_key(tenant, 5, hour), u64::from(index)]));
        let timestamp = hour * HOUR_MS + rng.below(HOUR_MS as u64) as i64;
        let visible = timestamp + 5_000 + rng.below(55_000) as i64;
        let read_at = rng
            .chance(0.7)
            .then(|| visible + MINUTE_MS + rng.below(120 * MINUTE_MS as u64) as i64);
        let resolved = rng.chance(0.6).then(|| {
            let at = visible + 10 * MINUTE_MS + rng.below(36 * HOUR_MS as u64) as i64;
            (at, 1 + rng.below(5) as u8)
        });
        // A Mongo ObjectId: seconds, then random bytes.
        let id = format!("{:08x}{}", timestamp / 1000, rng.hex(16));
        AlertPlan {
            tenant,
            hour,
            index,
            id,
            timestamp,
            visible,
            read_at,
            resolved,
        }
    }

    /// Alerts of `tenant` raised in `[from, until]`, at or after `history_ms`, visible at `now`.
    pub(crate) fn mda_alerts(
        &self,
        tenant: usize,
        history_ms: i64,
        from: i64,
        until: i64,
        now: i64,
    ) -> Vec<AlertPlan> {
        let first = from.max(history_ms).div_euclid(HOUR_MS);
        let last = until.min(now).div_euclid(HOUR_MS);
        let mut out = Vec::new();
        for hour in first..=last {
            for index in 0..self.mda_alert_count(tenant, hour) {
                let a = self.mda_alert(tenant, hour, index);
                if a.timestamp >= history_ms.max(from) && a.timestamp <= until && a.visible <= now {
                    out.push(a);
                }
            }
        }
        out
    }

    /// The alert's record as the API returns it at `now`.
    pub(crate) fn mda_alert_record(&self, a: &AlertPlan, now: i64) -> Value {
        let t: &TenantProfile = &self.tenants[a.tenant];
        let mut rng = Rng::new(key(&[
            self.mda_key(a.tenant, 6, a.hour),
            u64::from(a.index),
        ]));
        let (app_id, app_name, _) = *rng.pick(&APPS);
        let (title, policy_type, alert_type, severity) = *rng.pick(&POLICIES);
        let user = rng.pick(&t.users).clone();
        let policy_id = format!("{:08x}{}", (a.timestamp / 1000) - 86_400 * 30, rng.hex(16));
        let audits: Vec<String> = (0..1 + rng.below(3))
            .map(|_| format!("{}_{app_id}_{}", t.tag % 1_000_000, rng.guid()))
            .collect();
        let (status, resolution) = a.state(now);
        let mut record = json!({
            "_id": a.id,
            "contextId": t.id,
            "timestamp": a.timestamp,
            "title": title,
            "description": format!("Activity policy '{title}' was triggered by '{}'", user.upn),
            "isMarkdown": false,
            "statusValue": status,
            "severityValue": severity,
            "resolutionStatusValue": resolution,
            "stories": [0],
            "evidence": [],
            "intent": [if policy_type == "FILE" { 11 } else { 4 }],
            "isPreview": false,
            "isSystemAlert": policy_type == "ANOMALY_DETECTION",
            "alertType": alert_type,
            "threatScore": 10 + rng.below(80),
            "entities": [
                {"id": user.object_id, "label": user.display, "pa": user.upn, "type": "account", "entityRole": "Source", "entityType": 2, "inst": 0, "saas": app_id},
                {"id": user.upn, "label": user.display, "type": "user"},
                {"id": app_id, "label": app_name, "type": "service"},
                {"id": user.ip, "label": user.ip, "type": "ip"},
                {"id": policy_id, "label": title, "policyType": policy_type, "type": "policyRule"},
            ],
            "audits": audits,
            "policy": {"id": policy_id, "label": title, "policyType": policy_type},
            "URL": format!("https://{}.portal.cloudappsecurity.com/#/alerts/{}", t.company, a.id),
        });
        if let Some((at, _)) = a.resolved.filter(|(at, _)| *at <= now)
            && let Some(object) = record.as_object_mut()
        {
            object.insert(
                "resolveTime".into(),
                json!(crate::world::generate::iso_ms(at)),
            );
            object.insert("handledByUser".into(), json!(format!("admin@{}", t.domain)));
        }
        record
    }
}
