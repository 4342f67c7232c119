//! What a collection holds at an instant: each record created since the history start and
//! visible by then, alerts and incidents in their latest visible version, masked for the
//! caller's `Prefer` header, filtered and sorted as the query asks.
//!
//! A listing keeps each row by its coordinates (an [`Entry`]), not as JSON: a week of a
//! large tenant — a million sign-ins, 200,000 alerts — is a few dozen bytes a row, and a
//! page renders only its own records ([`Renderer`]).

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

/// Where a row's record comes from: it renders again from these coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Entry {
    /// Version `version` of alert `alert` of incident `index` of `hour`.
    Alert {
        hour: i64,
        index: u32,
        alert: u8,
        version: u8,
    },
    /// Version `version` of incident `index` of `hour`.
    Incident { hour: i64, index: u32, version: u8 },
    /// A log record.
    Log(LogRef),
}

/// One record of a listing, with its sort keys.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) id: String,
    pub(crate) created: Ticks,
    pub(crate) updated: Ticks,
    pub(crate) entry: Entry,
}

/// How to narrow and order a listing.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape<'a> {
    pub(crate) filter: Option<&'a Expr>,
    pub(crate) sort: SortKey,
    pub(crate) descending: bool,
    pub(crate) expand_alerts: bool,
}

/// Renders the records of one listing's entries as served.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Renderer {
    pub(crate) tenant: usize,
    pub(crate) view: View,
    pub(crate) expand_alerts: bool,
    /// Beta sign-ins carry the beta-only properties.
    pub(crate) beta: bool,
}

impl Renderer {
    /// The renderer of `c`'s listing for `tenant` under `view`.
    pub(crate) fn new(tenant: usize, c: Collection, view: View, expand_alerts: bool) -> Self {
        Renderer {
            tenant,
            view,
            expand_alerts,
            beta: c == Collection::SignIns { beta: true },
        }
    }

    /// The record of `entry` as served (before `$select`).
    pub(crate) fn record(&self, world: &World, entry: &Entry) -> Value {
        match *entry {
            Entry::Log(ref log) => world.log_json(log, self.beta),
            Entry::Alert {
                hour,
                index,
                alert,
                version,
            } => {
                let inc = world.incident(self.tenant, hour, index);
                self.alert(world, &inc, usize::from(alert), usize::from(version))
            }
            Entry::Incident {
                hour,
                index,
                version,
            } => {
                let inc = world.incident(self.tenant, hour, index);
                self.incident(world, &inc, usize::from(version))
            }
        }
    }

    fn alert(&self, world: &World, inc: &IncidentPlan, alert: usize, version: usize) -> Value {
        let mut record = world.alert_json(inc, &inc.alerts[alert], version);
        mask(&mut record, self.view);
        record
    }

    fn incident(&self, world: &World, inc: &IncidentPlan, version: usize) -> Value {
        let mut record = world.incident_json(inc, version);
        mask(&mut record, self.view);
        if self.expand_alerts
            && let Value::Object(m) = &mut record
        {
            let alerts = inc
                .alerts
                .iter()
                .enumerate()
                .filter_map(|(j, a)| {
                    let k = latest_visible(&a.versions, self.view.now)?;
                    Some(self.alert(world, inc, j, k))
                })
                .collect();
            m.insert("alerts".into(), Value::Array(alerts));
        }
        record
    }
}

/// The listing of `c` for `tenant` under `view`, filtered and sorted.
pub(crate) fn rows(
    world: &World,
    tenant: usize,
    c: Collection,
    view: View,
    shape: Shape,
) -> Vec<Row> {
    let renderer = Renderer::new(tenant, c, view, shape.expand_alerts);
    let mut out = match c {
        Collection::Alerts | Collection::Incidents => security_rows(world, &renderer, c, shape),
        _ => log_rows(world, &renderer, c, shape),
    };
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

/// The longest an alert or incident goes on changing after the hour its incident's first
/// alert falls in (its alerts within about an hour, up to three changes 6 hours apart at
/// most): no version of an earlier hour's incident is updated at or after a bound this far
/// behind it.
const LONGEST_CHANGING: Ticks = 48 * HOUR;

/// Incidents whose first alert is at or after `from` (by `now`'s hour), with their hour and
/// index, from the hour `first_hour` on. An incident that began before the history does not
/// exist, nor do its alerts, even those created after `from`: otherwise such an alert would
/// name an incident no listing returns, and an incident created after `from` could expand
/// to no alert.
fn incidents(
    world: &World,
    tenant: usize,
    view: View,
    first_hour: i64,
) -> impl Iterator<Item = (i64, u32, IncidentPlan)> + '_ {
    let first = view.from.div_euclid(HOUR).max(first_hour);
    (first..=view.now.div_euclid(HOUR))
        .flat_map(move |h| (0..world.incident_count(tenant, h)).map(move |i| (h, i)))
        .map(move |(h, i)| (h, i, world.incident(tenant, h, i)))
        .filter(move |(_, _, inc)| inc.alerts.first().is_some_and(|a| a.created >= view.from))
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

/// Whether `record`'s row passes the filter: rendered (then dropped) only when the filter
/// says more than the bounds already applied on `bounded`.
fn passes(shape: Shape, bounded: &str, record: impl FnOnce() -> Value) -> bool {
    match shape.filter {
        Some(f) if !f.only_bounds(bounded) => f.matches(&record()),
        _ => true,
    }
}

fn security_rows(world: &World, renderer: &Renderer, c: Collection, shape: Shape) -> Vec<Row> {
    let view = renderer.view;
    let mut out = Vec::new();
    let bounds = UpdatedBounds::of(shape);
    let first_hour = bounds
        .lo
        .map_or(i64::MIN, |lo| (lo - LONGEST_CHANGING).div_euclid(HOUR));
    for (hour, index, inc) in incidents(world, renderer.tenant, view, first_hour) {
        match c {
            Collection::Alerts => {
                for (j, a) in inc.alerts.iter().enumerate() {
                    let Some(k) = latest_visible(&a.versions, view.now) else {
                        continue;
                    };
                    if !bounds.admit(a.versions[k].updated)
                        || !passes(shape, "lastUpdateDateTime", || {
                            renderer.alert(world, &inc, j, k)
                        })
                    {
                        continue;
                    }
                    out.push(Row {
                        id: a.id.clone(),
                        created: a.created,
                        updated: a.versions[k].updated,
                        entry: Entry::Alert {
                            hour,
                            index,
                            alert: j as u8,
                            version: k as u8,
                        },
                    });
                }
            }
            _ => {
                if inc.created > view.now {
                    continue;
                }
                let versions: Vec<_> = inc.versions.iter().map(|v| v.version).collect();
                let Some(k) = latest_visible(&versions, view.now) else {
                    continue;
                };
                if !bounds.admit(versions[k].updated)
                    || !passes(shape, "lastUpdateDateTime", || {
                        renderer.incident(world, &inc, k)
                    })
                {
                    continue;
                }
                out.push(Row {
                    id: inc.id.clone(),
                    created: inc.created,
                    updated: versions[k].updated,
                    entry: Entry::Incident {
                        hour,
                        index,
                        version: k as u8,
                    },
                });
            }
        }
    }
    out
}

fn log_rows(world: &World, renderer: &Renderer, c: Collection, shape: Shape) -> Vec<Row> {
    let view = renderer.view;
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
    let mut out = Vec::new();
    for kind in kinds {
        for r in world.logs_in(renderer.tenant, kind, from, to) {
            if r.visible > view.now {
                continue;
            }
            // The id is drawn with the rest of the record: rendered to read it, then dropped.
            let entry = Entry::Log(r);
            let record = renderer.record(world, &entry);
            if shape.filter.is_some_and(|f| !f.matches(&record)) {
                continue;
            }
            let id = record
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            out.push(Row {
                id,
                created: r.at,
                updated: r.at,
                entry,
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
            for (_, _, inc) in incidents(world, tenant, view, i64::MIN) {
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
            let renderer = Renderer::new(tenant, c, view, false);
            out.extend(
                log_rows(world, &renderer, c, shape)
                    .into_iter()
                    .map(|r| (r.id, r.created)),
            );
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::M365Config;
    use std::sync::Arc;

    #[test]
    fn no_version_is_updated_as_late_as_the_longest_change_bound() {
        let world = World::new(Arc::new(M365Config::default()));
        let first = 493_000;
        let mut seen = 0;
        for hour in first..first + 72 {
            for index in 0..world.incident_count(0, hour) {
                let inc = world.incident(0, hour, index);
                let bound = hour * HOUR + LONGEST_CHANGING;
                let updates = inc.versions.iter().map(|v| v.version.updated).chain(
                    inc.alerts
                        .iter()
                        .flat_map(|a| a.versions.iter().map(|v| v.updated)),
                );
                for updated in updates {
                    assert!(updated < bound, "incident {} of hour {hour}", inc.id);
                    seen += 1;
                }
            }
        }
        assert!(seen > 100, "{seen} versions checked");
    }

    #[test]
    fn a_listing_bounded_on_its_sort_key_is_a_run_of_the_unbounded_one() {
        // What lets a frozen world serve `lastUpdateDateTime` queries from one sorted index.
        fn shape(filter: Option<&Expr>, descending: bool) -> Shape<'_> {
            Shape {
                filter,
                sort: SortKey::Updated,
                descending,
                expand_alerts: false,
            }
        }
        let world = World::new(Arc::new(M365Config::default()));
        let from = 493_000 * HOUR;
        let view = View {
            now: from + 72 * HOUR,
            from,
            unknown_members: false,
        };
        for c in [Collection::Alerts, Collection::Incidents] {
            for descending in [false, true] {
                let all = rows(&world, 0, c, view, shape(None, descending));
                assert!(all.len() > 100, "{c:?}: {} rows", all.len());
                let mut times: Vec<Ticks> = all.iter().map(|r| r.updated).collect();
                times.sort();
                for (lo, hi) in [
                    (times[0], None),
                    (times[times.len() / 3], None),
                    (times[times.len() / 2], Some(times[times.len() * 3 / 4])),
                    (times[times.len() - 1], None),
                ] {
                    let mut text =
                        format!("lastUpdateDateTime ge {}", crate::graph::time::format(lo));
                    if let Some(hi) = hi {
                        text.push_str(&format!(
                            " and lastUpdateDateTime lt {}",
                            crate::graph::time::format(hi)
                        ));
                    }
                    let filter = crate::graph::filter::parse(&text, c.schema()).expect(&text);
                    let bounded: Vec<String> =
                        rows(&world, 0, c, view, shape(Some(&filter), descending))
                            .into_iter()
                            .map(|r| r.id)
                            .collect();
                    let run: Vec<String> = all
                        .iter()
                        .filter(|r| r.updated >= lo && hi.is_none_or(|hi| r.updated < hi))
                        .map(|r| r.id.clone())
                        .collect();
                    assert_eq!(bounded, run, "{c:?} {text} descending={descending}");
                    assert!(!run.is_empty(), "{c:?} {text}");
                }
            }
        }
    }
}
