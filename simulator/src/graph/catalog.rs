//! What a collection holds at an instant: each record created since the history start and
//! visible by then, alerts and incidents in their latest visible version, masked for the
//! caller's `Prefer` header, filtered and sorted as the query asks.

use serde_json::Value;

use super::filter::Expr;
use super::identity::{LogKind, LogRef};
use super::odata::{Collection, SortKey};
use super::products::EVOLVABLE_SOURCES;
use super::security::IncidentPlan;
use super::time::{HOUR, Ticks};
use super::versions::latest_visible;
use crate::world::World;

/// The instant and scope a query is answered for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct View {
    /// Records and versions visible at or before this instant are returned.
    pub(crate) now: Ticks,
    /// Records created before this instant do not exist (the history start).
    pub(crate) from: Ticks,
    /// `Prefer: include-unknown-enum-members` was sent.
    pub(crate) unknown_members: bool,
}

/// One record as served, with its sort keys.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) id: String,
    pub(crate) created: Ticks,
    pub(crate) updated: Ticks,
    pub(crate) record: Value,
    /// A log record's coordinates (it renders again from them); `None` for alerts and incidents.
    pub(crate) log: Option<LogRef>,
}

/// How to narrow and order a listing.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape<'a> {
    pub(crate) filter: Option<&'a Expr>,
    pub(crate) sort: SortKey,
    pub(crate) descending: bool,
    pub(crate) expand_alerts: bool,
}

/// The listing of `c` for `tenant` under `view`, filtered and sorted.
pub(crate) fn rows(
    world: &World,
    tenant: usize,
    c: Collection,
    view: View,
    shape: Shape,
) -> Vec<Row> {
    let mut out = match c {
        Collection::Alerts | Collection::Incidents => security_rows(world, tenant, c, view, shape),
        _ => log_rows(world, tenant, c, view, shape),
    };
    if let Some(f) = shape.filter {
        out.retain(|r| f.matches(&r.record));
    }
    out.sort_by(|a, b| {
        let key = |r: &Row| match shape.sort {
            SortKey::Created => r.created,
            SortKey::Updated => r.updated,
        };
        let by_time = key(a).cmp(&key(b));
        let by_time = if shape.descending {
            by_time.reverse()
        } else {
            by_time
        };
        by_time.then_with(|| a.id.cmp(&b.id))
    });
    out
}

/// Incidents whose first alert is at or after `from` (by `now`'s hour). An incident that
/// began before the history does not exist, nor do its alerts, even those created after
/// `from`: otherwise such an alert would name an incident no listing returns, and an
/// incident created after `from` could expand to no alert.
fn incidents(world: &World, tenant: usize, view: View) -> Vec<IncidentPlan> {
    let mut out = world.incidents_in_hours(
        tenant,
        view.from.div_euclid(HOUR),
        view.now.div_euclid(HOUR),
    );
    out.retain(|inc| inc.alerts.first().is_some_and(|a| a.created >= view.from));
    out
}

/// The `[lo, hi)` bounds a filter's top-level `and` puts on `lastUpdateDateTime`: a version
/// outside them is not rendered (the filter would refuse it; its time is written losslessly).
#[derive(Debug, Clone, Copy, Default)]
struct UpdatedBounds {
    lo: Option<Ticks>,
    hi: Option<Ticks>,
}

impl UpdatedBounds {
    fn of(shape: Shape) -> Self {
        let (lo, hi) = shape
            .filter
            .map_or((None, None), |f| f.time_bounds("lastUpdateDateTime"));
        UpdatedBounds { lo, hi }
    }

    fn admit(self, updated: Ticks) -> bool {
        self.lo.is_none_or(|lo| updated >= lo) && self.hi.is_none_or(|hi| updated < hi)
    }
}

fn security_rows(
    world: &World,
    tenant: usize,
    c: Collection,
    view: View,
    shape: Shape,
) -> Vec<Row> {
    let mut out = Vec::new();
    let bounds = UpdatedBounds::of(shape);
    for inc in incidents(world, tenant, view) {
        match c {
            Collection::Alerts => out.extend(alert_rows(world, &inc, view, bounds)),
            _ => {
                if inc.created > view.now {
                    continue;
                }
                let versions: Vec<_> = inc.versions.iter().map(|v| v.version).collect();
                let Some(k) = latest_visible(&versions, view.now) else {
                    continue;
                };
                if !bounds.admit(versions[k].updated) {
                    continue;
                }
                let mut record = world.incident_json(&inc, k);
                mask(&mut record, view);
                if shape.expand_alerts
                    && let Value::Object(m) = &mut record
                {
                    let alerts = alert_rows(world, &inc, view, UpdatedBounds::default())
                        .into_iter()
                        .map(|r| r.record)
                        .collect();
                    m.insert("alerts".into(), Value::Array(alerts));
                }
                out.push(Row {
                    id: inc.id.clone(),
                    created: inc.created,
                    updated: versions[k].updated,
                    record,
                    log: None,
                });
            }
        }
    }
    out
}

/// The incident's alerts visible under `view`, each in its latest visible version, if
/// that version is within `bounds`.
fn alert_rows(world: &World, inc: &IncidentPlan, view: View, bounds: UpdatedBounds) -> Vec<Row> {
    inc.alerts
        .iter()
        .filter_map(|a| {
            let k = latest_visible(&a.versions, view.now)?;
            if !bounds.admit(a.versions[k].updated) {
                return None;
            }
            let mut record = world.alert_json(inc, a, k);
            mask(&mut record, view);
            Some(Row {
                id: a.id.clone(),
                created: a.created,
                updated: a.versions[k].updated,
                record,
                log: None,
            })
        })
        .collect()
}

fn log_rows(world: &World, tenant: usize, c: Collection, view: View, shape: Shape) -> Vec<Row> {
    let (lo, hi) = shape
        .filter
        .map_or((None, None), |f| f.time_bounds(c.time_path()));
    let from = lo.map_or(view.from, |lo| lo.max(view.from));
    let to = hi.map_or(view.now + 1, |hi| hi.min(view.now + 1));
    let kinds: Vec<LogKind> = match c {
        Collection::SignIns { .. } => c
            .sign_in_kinds(shape.filter)
            .iter()
            .map(|k| LogKind::SignIn(*k))
            .collect(),
        Collection::DirectoryAudits => vec![LogKind::DirectoryAudit],
        _ => vec![LogKind::Provisioning],
    };
    let beta = c == Collection::SignIns { beta: true };
    let mut out = Vec::new();
    for kind in kinds {
        for r in world.logs_in(tenant, kind, from, to) {
            if r.visible > view.now {
                continue;
            }
            let record = world.log_json(&r, beta);
            let id = record
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            out.push(Row {
                id,
                created: r.at,
                updated: r.at,
                record,
                log: Some(r),
            });
        }
    }
    out
}

/// Replaces evolvable enum members by `unknownFutureValue` unless the caller opted in.
fn mask(record: &mut Value, view: View) {
    if view.unknown_members {
        return;
    }
    let Value::Object(m) = record else {
        return;
    };
    for key in ["serviceSource", "detectionSource"] {
        if let Some(v) = m.get_mut(key)
            && v.as_str().is_some_and(|s| EVOLVABLE_SOURCES.contains(&s))
        {
            *v = Value::String("unknownFutureValue".into());
        }
    }
    let incident = m
        .get("@odata.type")
        .is_some_and(|t| t == "#microsoft.graph.security.incident");
    if incident
        && let Some(v) = m.get_mut("status")
        && v == "awaitingAction"
    {
        *v = Value::String("unknownFutureValue".into());
    }
}

/// Every (id, lastUpdateDateTime) version of `c` created at or after `view.from` and visible
/// by `view.now` (records of the logs have one version, their own time).
pub(crate) fn versions(
    world: &World,
    tenant: usize,
    c: Collection,
    view: View,
) -> Vec<(String, Ticks)> {
    let mut out = Vec::new();
    match c {
        Collection::Alerts | Collection::Incidents => {
            for inc in incidents(world, tenant, view) {
                if c == Collection::Alerts {
                    for a in &inc.alerts {
                        out.extend(
                            a.versions
                                .iter()
                                .filter(|v| v.visible <= view.now)
                                .map(|v| (a.id.clone(), v.updated)),
                        );
                    }
                } else {
                    out.extend(
                        inc.versions
                            .iter()
                            .filter(|v| v.version.visible <= view.now)
                            .map(|v| (inc.id.clone(), v.version.updated)),
                    );
                }
            }
        }
        _ => {
            let shape = Shape {
                filter: None,
                sort: SortKey::Created,
                descending: true,
                expand_alerts: false,
            };
            out.extend(
                log_rows(world, tenant, c, view, shape)
                    .into_iter()
                    .map(|r| (r.id, r.created)),
            );
        }
    }
    out.sort();
    out
}
