//! How alerts and incidents change after creation: an analyst picks them up, comments,
//! resolves them. Each change is a new version with a later lastUpdateDateTime, which queries
//! return only once indexed (a short, jittered delay).

use super::time::{HOUR, MINUTE, MS, SECOND, Ticks};
use crate::world::rng::Rng;

/// What an analyst (or automation) did to an alert or incident.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ChangeKind {
    /// Assigned to someone; status becomes inProgress.
    Assign(String),
    /// Incidents only: status becomes awaitingAction (an evolvable enum member).
    AwaitAction,
    /// A comment by someone.
    Comment { text: &'static str, by: String },
    /// Status resolved with a classification and determination.
    Resolve {
        classification: &'static str,
        determination: &'static str,
    },
}

/// One change at one instant.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Change {
    pub(crate) at: Ticks,
    pub(crate) kind: ChangeKind,
}

/// A version as the API sees it: when it was made and from when queries return it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Version {
    /// lastUpdateDateTime of this version.
    pub(crate) updated: Ticks,
    /// The first instant a query returns this version.
    pub(crate) visible: Ticks,
}

const COMMENTS: [&str; 6] = [
    "Investigating with the device owner.",
    "Confirmed with the user; they did not initiate this activity.",
    "Isolated the device pending review.",
    "Automated investigation completed; remediation actions approved.",
    "Related to the penetration test scheduled this week.",
    "Escalated to tier 2.",
];

/// (classification, determination) pairs an analyst sets when resolving.
const VERDICTS: [(&str, &str); 7] = [
    ("truePositive", "malware"),
    ("truePositive", "phishing"),
    ("truePositive", "compromisedUser"),
    ("truePositive", "multiStagedAttack"),
    ("falsePositive", "clean"),
    ("informationalExpectedActivity", "securityTesting"),
    ("informationalExpectedActivity", "confirmedUserActivity"),
];

/// Plans 0–3 changes after `created`: some subset of assign → (await) → comment → resolve,
/// in that order, minutes to hours apart. `analysts` are who may act (UPNs).
pub(crate) fn plan_changes(
    rng: &mut Rng,
    created: Ticks,
    analysts: &[String],
    incident: bool,
) -> Vec<Change> {
    let count = match rng.below(100) {
        0..=29 => 0,
        30..=59 => 1,
        60..=84 => 2,
        _ => 3,
    };
    let mut kinds = Vec::with_capacity(3);
    let analyst = rng.pick(analysts).clone();
    match count {
        0 => {}
        // A single change is either pick-up or an automated resolution.
        1 if rng.chance(0.5) => kinds.push(ChangeKind::Assign(analyst.clone())),
        1 => kinds.push(resolve(rng)),
        2 => {
            kinds.push(ChangeKind::Assign(analyst.clone()));
            kinds.push(resolve(rng));
        }
        _ => {
            kinds.push(ChangeKind::Assign(analyst.clone()));
            if incident && rng.chance(0.4) {
                kinds.push(ChangeKind::AwaitAction);
            } else {
                kinds.push(ChangeKind::Comment {
                    text: COMMENTS[rng.below(COMMENTS.len() as u64) as usize],
                    by: analyst.clone(),
                });
            }
            kinds.push(resolve(rng));
        }
    }
    let mut at = created;
    kinds
        .into_iter()
        .map(|kind| {
            // 5 minutes to 6 hours after the previous change, with a 7-digit fraction.
            at += 5 * MINUTE + rng.below((6 * HOUR - 5 * MINUTE) as u64) as Ticks;
            Change { at, kind }
        })
        .collect()
}

fn resolve(rng: &mut Rng) -> ChangeKind {
    let (classification, determination) = *rng.pick(&VERDICTS);
    ChangeKind::Resolve {
        classification,
        determination,
    }
}

/// Assigns each update instant its visibility: `updated` plus 0–2 × `delay`, never earlier
/// than the previous version's (an index does not reorder a record's versions).
pub(crate) fn versions(rng: &mut Rng, updates: &[Ticks], delay_ms: i64) -> Vec<Version> {
    let span = (2 * delay_ms).max(0) as u64 * MS as u64;
    let mut last_visible = Ticks::MIN;
    updates
        .iter()
        .map(|&updated| {
            let visible = (updated + rng.below(span + 1) as Ticks).max(last_visible);
            last_visible = visible;
            Version { updated, visible }
        })
        .collect()
}

/// The latest version visible at `now`, as an index into `versions`.
pub(crate) fn latest_visible(versions: &[Version], now: Ticks) -> Option<usize> {
    versions.iter().rposition(|v| v.visible <= now)
}

/// A small positive gap (0.2–1.5 s) between creation and the first lastUpdateDateTime, as
/// in real records where the two differ by a fraction of a second.
pub(crate) fn first_update_gap(rng: &mut Rng) -> Ticks {
    SECOND / 5 + rng.below((13 * SECOND / 10) as u64) as Ticks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_ordered_and_resolution_comes_last() {
        let analysts = vec!["a@x".to_string()];
        for seed in 0..200 {
            let mut rng = Rng::new(seed);
            let changes = plan_changes(&mut rng, 0, &analysts, seed % 2 == 0);
            assert!(changes.len() <= 3);
            assert!(changes.windows(2).all(|w| w[0].at < w[1].at));
            let resolved = changes
                .iter()
                .position(|c| matches!(c.kind, ChangeKind::Resolve { .. }));
            assert!(resolved.is_none_or(|i| i + 1 == changes.len()));
        }
    }

    #[test]
    fn visibility_never_goes_backwards() {
        let mut rng = Rng::new(3);
        let v = versions(&mut rng, &[0, 10, 20, 30 * MINUTE], 60_000);
        assert!(v.windows(2).all(|w| w[0].visible <= w[1].visible));
        assert!(v.iter().all(|x| x.visible >= x.updated));
        assert_eq!(latest_visible(&v, -1), None);
        assert_eq!(latest_visible(&v, Ticks::MAX), Some(3));
    }
}
