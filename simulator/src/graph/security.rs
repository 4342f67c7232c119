//! Incidents and their alerts (Graph security API, reference §2.4–2.6), derived per
//! (tenant, hour) like the activity world: each incident groups 1–4 alerts about one user;
//! alerts and incidents change after creation, each change a new version.

use serde_json::{Map, Value, json};

use super::evidence::evidence;
use super::products::{IdForm, PRODUCTS, SEVERITIES, pick_product, severity_rank};
use super::time::{HOUR, MINUTE, MS, Ticks, format, format_trimmed};
use super::versions::{Change, ChangeKind, Version, first_update_gap, plan_changes, versions};
use crate::world::generate::{hourly_count, rhythm};
use crate::world::rng::{Rng, key};
use crate::world::{TenantProfile, World};

/// Average alerts per incident (1–4, uniform).
const ALERTS_PER_INCIDENT: f64 = 2.5;
/// .NET ticks at the Unix epoch: Defender for Endpoint ids embed .NET ticks.
const DOTNET_EPOCH: i64 = 621_355_968_000_000_000;

/// One alert's plan: identity, creation, later changes and their versions.
#[derive(Debug, Clone)]
pub(crate) struct AlertPlan {
    pub(crate) key: u64,
    pub(crate) id: String,
    pub(crate) provider_id: String,
    pub(crate) product: usize,
    pub(crate) detection: usize,
    pub(crate) created: Ticks,
    pub(crate) changes: Vec<Change>,
    /// versions[0] is the creation; versions[i] follows changes[i − 1].
    pub(crate) versions: Vec<Version>,
}

/// What one incident version includes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IncidentVersion {
    pub(crate) version: Version,
    /// Alerts correlated into the incident so far.
    pub(crate) alerts: usize,
    /// Changes applied so far.
    pub(crate) changes: usize,
}

/// One incident's plan with its alerts.
#[derive(Debug, Clone)]
pub(crate) struct IncidentPlan {
    pub(crate) tenant: usize,
    pub(crate) key: u64,
    pub(crate) id: String,
    pub(crate) user: usize,
    pub(crate) created: Ticks,
    pub(crate) alerts: Vec<AlertPlan>,
    pub(crate) changes: Vec<Change>,
    pub(crate) versions: Vec<IncidentVersion>,
}

impl World {
    fn hour_key_graph(&self, tenant: usize, hour: i64) -> u64 {
        key(&[
            self.cfg.seed,
            self.tenants[tenant].tag,
            0x5ec_a1e7,
            hour as u64,
        ])
    }

    /// Incidents whose first alert was created in `hour`.
    pub(crate) fn incident_count(&self, tenant: usize, hour: i64) -> u32 {
        let lambda = f64::from(self.cfg.graph.alerts_per_hour) * rhythm(hour) / ALERTS_PER_INCIDENT;
        hourly_count(lambda, self.hour_key_graph(tenant, hour), 999)
    }

    /// The SOC analysts of a tenant: its first three users.
    fn analysts(&self, tenant: usize) -> Vec<String> {
        self.tenants[tenant]
            .users
            .iter()
            .take(3)
            .map(|u| u.upn.clone())
            .collect()
    }

    /// Incident `index` of `hour`.
    pub(crate) fn incident(&self, tenant: usize, hour: i64, index: u32) -> IncidentPlan {
        let t = &self.tenants[tenant];
        let ikey = key(&[self.hour_key_graph(tenant, hour), 0x1c1d, u64::from(index)]);
        let mut rng = Rng::new(ikey);
        let delay_ms = self.cfg.graph.index_delay.as_millis() as i64;
        let analysts = self.analysts(tenant);
        let first = hour * HOUR + rng.below(HOUR as u64) as Ticks;
        let user = rng.below(t.users.len() as u64) as usize;
        let count = 1 + rng.below(4) as usize;
        let mut at = first;
        let alerts: Vec<AlertPlan> = (0..count)
            .map(|j| {
                if j > 0 {
                    at += MINUTE + rng.below((20 * MINUTE) as u64) as Ticks;
                }
                self.alert(ikey, j, at, &analysts, delay_ms)
            })
            .collect();
        let created = first + first_update_gap(&mut rng);
        let changes = plan_changes(&mut rng, created, &analysts, true);
        // Every correlated alert and every change is a new incident version.
        let mut events: Vec<(Ticks, bool)> = alerts
            .iter()
            .skip(1)
            .map(|a| (a.versions[0].updated + first_update_gap(&mut rng), true))
            .chain(changes.iter().map(|c| (c.at, false)))
            .collect();
        events.sort_by_key(|e| e.0);
        let mut updates = vec![created];
        let mut counts = vec![(1, 0)];
        for (when, join) in events {
            let (a, c) = counts[counts.len() - 1];
            updates.push(when.max(updates[updates.len() - 1] + MS));
            counts.push(if join { (a + 1, c) } else { (a, c + 1) });
        }
        let versions = versions(&mut rng, &updates, delay_ms)
            .into_iter()
            .zip(counts)
            .map(|(version, (alerts, changes))| IncidentVersion {
                version,
                alerts,
                changes,
            })
            .collect();
        IncidentPlan {
            tenant,
            key: ikey,
            id: ((hour.rem_euclid(1_000_000)) * 1000 + i64::from(index)).to_string(),
            user,
            created,
            alerts,
            changes,
            versions,
        }
    }

    fn alert(
        &self,
        incident_key: u64,
        j: usize,
        created: Ticks,
        analysts: &[String],
        delay_ms: i64,
    ) -> AlertPlan {
        let akey = key(&[incident_key, 0xa1, j as u64]);
        let mut rng = Rng::new(akey);
        let product = pick_product(rng.next_u64());
        let p = &PRODUCTS[product];
        let detection = rng.below(p.detections.len() as u64) as usize;
        // Office 365 alerts carry 2-digit fractions (reference §2.6): keep 10 ms precision.
        let coarse = |t: Ticks| {
            if p.id_form == IdForm::PrefixedGuid("fa") {
                t - t.rem_euclid(10 * MS)
            } else {
                t
            }
        };
        let created = coarse(created);
        let (id, provider_id) = match p.id_form {
            IdForm::Ticks => {
                let id = format!("da{}_{}", created + DOTNET_EPOCH, rng.next_u64() as i32);
                (id.clone(), id)
            }
            IdForm::PrefixedGuid(prefix) => {
                let g = rng.guid();
                (format!("{prefix}{g}"), g)
            }
            IdForm::PrefixedHex(prefix) => {
                let h = rng.hex(32);
                (format!("{prefix}{h}"), h)
            }
        };
        let first = coarse(created + first_update_gap(&mut rng));
        let changes: Vec<Change> = plan_changes(&mut rng, first, analysts, false)
            .into_iter()
            .map(|c| Change {
                at: coarse(c.at),
                kind: c.kind,
            })
            .collect();
        let updates: Vec<Ticks> = std::iter::once(first)
            .chain(changes.iter().map(|c| c.at))
            .collect();
        AlertPlan {
            key: akey,
            id,
            provider_id,
            product,
            detection,
            created,
            versions: versions(&mut rng, &updates, delay_ms),
            changes,
        }
    }

    /// Every incident whose first alert falls in [first_hour, last_hour].
    #[cfg(test)]
    pub(crate) fn incidents_in_hours(
        &self,
        tenant: usize,
        first_hour: i64,
        last_hour: i64,
    ) -> Vec<IncidentPlan> {
        (first_hour..=last_hour)
            .flat_map(|h| (0..self.incident_count(tenant, h)).map(move |i| (h, i)))
            .map(|(h, i)| self.incident(tenant, h, i))
            .collect()
    }

    /// The Defender portal of the tenant's cloud.
    fn portal(&self, t: &TenantProfile) -> &'static str {
        use super::config::Cloud;
        match self.cfg.graph.tenant(&t.id).cloud {
            Cloud::Commercial | Cloud::Gcc => "https://security.microsoft.com",
            Cloud::GccHigh => "https://security.microsoft.us",
            Cloud::Dod => "https://security.apps.mil",
        }
    }

    /// Alert `a` of incident `inc` as of its version `k`.
    pub(crate) fn alert_json(&self, inc: &IncidentPlan, a: &AlertPlan, k: usize) -> Value {
        let t = &self.tenants[inc.tenant];
        let p = &PRODUCTS[a.product];
        let d = &p.detections[a.detection];
        let user = &t.users[inc.user];
        let portal = self.portal(t);
        let mut rng = Rng::new(key(&[a.key, 0xba5e]));
        let detection_source = *rng.pick(p.detection_sources);
        let first_activity = a.created - MINUTE - rng.below((3 * HOUR) as u64) as Ticks;
        let last_activity =
            first_activity + rng.below((a.created - first_activity) as u64) as Ticks;
        let ms = |t: Ticks| t - t.rem_euclid(MS);
        let evidence: Vec<Value> = d
            .evidence
            .iter()
            .map(|kind| evidence(*kind, t, user, a.created, &mut rng))
            .collect();
        let verdict = if p.null_verdicts {
            Value::Null
        } else {
            json!("unknown")
        };
        let stamp = |x: Ticks| {
            if p.id_form == IdForm::PrefixedGuid("fa") {
                format_trimmed(x)
            } else {
                format(x)
            }
        };
        let mut m = Map::new();
        let mut put = |k: &str, v: Value| {
            m.insert(k.to_string(), v);
        };
        put("@odata.type", json!("#microsoft.graph.security.alert"));
        put("id", json!(a.id));
        put("providerAlertId", json!(a.provider_id));
        put("incidentId", json!(inc.id));
        put("status", json!("new"));
        put("severity", json!(d.severity));
        put("classification", verdict.clone());
        put("determination", verdict);
        put("serviceSource", json!(p.service_source));
        put("detectionSource", json!(detection_source));
        put("productName", json!(p.product_name));
        put("detectorId", json!(detector_id(a.product, a.detection)));
        put("tenantId", json!(t.id));
        put("title", json!(d.title));
        put(
            "description",
            json!(format!(
                "{} reported \"{}\" for {}. Review the evidence and the user's recent activity.",
                p.product_name, d.title, user.upn
            )),
        );
        put(
            "recommendedActions",
            json!(
                "1. Contact the user to verify intent.\n2. Review the evidence and related alerts.\n3. Remediate affected assets."
            ),
        );
        put("category", json!(d.category));
        put("assignedTo", Value::Null);
        put(
            "alertWebUrl",
            json!(format!("{portal}/alerts/{}?tid={}", a.id, t.id)),
        );
        put(
            "incidentWebUrl",
            json!(format!("{portal}/incidents/{}?tid={}", inc.id, t.id)),
        );
        put("actorDisplayName", Value::Null);
        put(
            "threatDisplayName",
            if d.category == "CredentialAccess" && a.product == 0 {
                json!("Mimikatz")
            } else {
                Value::Null
            },
        );
        put("threatFamilyName", Value::Null);
        put("mitreTechniques", json!(d.techniques));
        put("createdDateTime", json!(stamp(a.created)));
        put("lastUpdateDateTime", json!(stamp(a.versions[k].updated)));
        put("resolvedDateTime", Value::Null);
        put(
            "firstActivityDateTime",
            json!(format_trimmed(ms(first_activity))),
        );
        put(
            "lastActivityDateTime",
            json!(format_trimmed(ms(last_activity))),
        );
        put("comments", json!([]));
        put("evidence", Value::Array(evidence));
        put(
            "systemTags",
            if rng.chance(0.1) {
                json!(["Defender Experts"])
            } else {
                json!([])
            },
        );
        put(
            "alertPolicyId",
            if p.service_source == "dataLossPrevention"
                || p.service_source == "microsoftDefenderForOffice365"
            {
                json!(rng.guid())
            } else {
                Value::Null
            },
        );
        apply_changes(&mut m, &a.changes[..k], &stamp);
        Value::Object(m)
    }

    /// Incident `inc` as of its version `k` (without `alerts`, which only `$expand` adds).
    pub(crate) fn incident_json(&self, inc: &IncidentPlan, k: usize) -> Value {
        let t = &self.tenants[inc.tenant];
        let v = inc.versions[k];
        let joined = &inc.alerts[..v.alerts];
        let mut rng = Rng::new(key(&[inc.key, 0x1ce]));
        let severity = joined
            .iter()
            .map(|a| PRODUCTS[a.product].detections[a.detection].severity)
            .max_by_key(|s| severity_rank(s))
            .unwrap_or(SEVERITIES[0]);
        let mut categories: Vec<&str> = Vec::new();
        for a in joined {
            let c = PRODUCTS[a.product].detections[a.detection].category;
            if !categories.contains(&c) {
                categories.push(c);
            }
        }
        let display_name = match categories.as_slice() {
            [one, two, ..] => format!(
                "Multi-stage incident involving {} & {} involving one user",
                words(one),
                words(two)
            ),
            _ => format!(
                "{} involving one user",
                PRODUCTS[inc.alerts[0].product].detections[inc.alerts[0].detection].title
            ),
        };
        let portal = self.portal(t);
        let mut m = Map::new();
        let mut put = |k: &str, v: Value| {
            m.insert(k.to_string(), v);
        };
        put("@odata.type", json!("#microsoft.graph.security.incident"));
        put("id", json!(inc.id));
        put(
            "incidentWebUrl",
            json!(format!("{portal}/incidents/{}?tid={}", inc.id, t.id)),
        );
        put("redirectIncidentId", Value::Null);
        put("tenantId", json!(t.id));
        put("displayName", json!(display_name));
        put(
            "description",
            json!(format!(
                "{} alert(s) about {} correlated by Microsoft Defender XDR.",
                joined.len(),
                t.users[inc.user].upn
            )),
        );
        put("createdDateTime", json!(format(inc.created)));
        put("lastUpdateDateTime", json!(format(v.version.updated)));
        put("assignedTo", Value::Null);
        put("classification", json!("unknown"));
        put("determination", json!("unknown"));
        put("status", json!("active"));
        put("severity", json!(severity));
        put(
            "customTags",
            if rng.chance(0.15) {
                json!(["VIP"])
            } else {
                json!([])
            },
        );
        put("systemTags", json!([]));
        put("comments", json!([]));
        put("summary", Value::Null);
        apply_changes(&mut m, &inc.changes[..v.changes], &format);
        m.remove("resolvedDateTime");
        Value::Object(m)
    }
}

/// `InitialAccess` → `Initial access`, as incident names spell tactics.
fn words(tactic: &str) -> String {
    let mut out = String::new();
    for (i, c) in tactic.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push(' ');
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// A stable detector GUID per detection.
fn detector_id(product: usize, detection: usize) -> String {
    Rng::new(key(&[0xde7e, product as u64, detection as u64])).guid()
}

/// Applies changes in order to a record: status, assignee, comments, verdict.
fn apply_changes(m: &mut Map<String, Value>, changes: &[Change], stamp: &dyn Fn(Ticks) -> String) {
    for c in changes {
        match &c.kind {
            ChangeKind::Assign(who) => {
                m.insert("assignedTo".into(), json!(who));
                m.insert("status".into(), json!("inProgress"));
            }
            ChangeKind::AwaitAction => {
                m.insert("status".into(), json!("awaitingAction"));
            }
            ChangeKind::Comment { text, by } => {
                if let Some(Value::Array(list)) = m.get_mut("comments") {
                    list.push(json!({
                        "comment": text,
                        "createdByDisplayName": by,
                        "createdDateTime": stamp(c.at),
                    }));
                }
            }
            ChangeKind::Resolve {
                classification,
                determination,
            } => {
                if m.get("assignedTo").is_none_or(Value::is_null) {
                    m.insert("assignedTo".into(), json!("Automation"));
                }
                m.insert("status".into(), json!("resolved"));
                m.insert("classification".into(), json!(classification));
                m.insert("determination".into(), json!(determination));
                m.insert("resolvedDateTime".into(), json!(stamp(c.at)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::M365Config;
    use std::sync::Arc;

    #[test]
    fn incidents_are_deterministic_and_consistent() {
        let world = World::new(Arc::new(M365Config::default()));
        let hour = 493_000;
        let a = world.incidents_in_hours(0, hour, hour + 24);
        let b = world.incidents_in_hours(0, hour, hour + 24);
        assert!(!a.is_empty());
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(
                world.incident_json(x, x.versions.len() - 1),
                world.incident_json(y, y.versions.len() - 1)
            );
        }
        for inc in &a {
            assert!(
                inc.versions
                    .windows(2)
                    .all(|w| w[0].version.updated < w[1].version.updated)
            );
            assert_eq!(
                inc.versions.last().map(|v| v.alerts),
                Some(inc.alerts.len())
            );
            for al in &inc.alerts {
                let last = world.alert_json(inc, al, al.versions.len() - 1);
                assert_eq!(last["incidentId"], json!(inc.id));
                assert_eq!(last["id"], json!(al.id));
                assert!(al.versions.len() <= 4);
                let first = world.alert_json(inc, al, 0);
                assert_eq!(first["status"], "new");
                assert_eq!(first["comments"], json!([]));
            }
        }
    }

    #[test]
    fn tactics_read_as_words() {
        assert_eq!(words("InitialAccess"), "Initial access");
        assert_eq!(words("Impact"), "Impact");
    }
}
