//! Saying a recurring problem without flooding the log: once in a while, or once per
//! path while the problem lasts.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often a problem that recurs at every listing (a folder that cannot be read, a
/// process out of descriptors) is logged again while it lasts.
pub const RECURRING_PROBLEM_PERIOD: Duration = Duration::from_secs(60);

/// Lets a recurring message through at most once per period and counts the rest.
pub struct Throttle {
    period: Duration,
    last: Option<Instant>,
    held_back: u64,
}

impl Throttle {
    /// A throttle letting one message through per `period`.
    pub fn new(period: Duration) -> Self {
        Throttle {
            period,
            last: None,
            held_back: 0,
        }
    }

    /// `Some(occurrences held back since the last message)` when this occurrence may be
    /// logged; `None` when it is held back.
    pub fn admit(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self.last.is_some_and(|last| now < last + self.period) {
            self.held_back += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.held_back))
    }
}

/// The paths already complained about, so each is warned about once while its problem
/// lasts and again if it comes back after going away.
#[derive(Default)]
pub struct OncePerPath {
    paths: HashSet<PathBuf>,
}

impl OncePerPath {
    /// True the first time `path` is complained about since it was last forgiven.
    pub fn first(&mut self, path: &Path) -> bool {
        if self.paths.contains(path) {
            return false;
        }
        self.paths.insert(path.to_path_buf());
        true
    }

    /// The problem of `path` went away.
    pub fn forgive(&mut self, path: &Path) {
        self.paths.remove(path);
    }

    /// Forgives every path whose problem is not in `current`.
    pub fn keep_only(&mut self, current: &HashSet<PathBuf>) {
        self.paths.retain(|path| current.contains(path));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttle_admits_once_per_period_and_counts_the_rest() {
        let mut throttle = Throttle::new(Duration::from_secs(3600));
        assert_eq!(throttle.admit(), Some(0));
        assert_eq!(throttle.admit(), None);
        assert_eq!(throttle.admit(), None);
        throttle.last = Some(Instant::now() - Duration::from_secs(3601));
        assert_eq!(throttle.admit(), Some(2));
    }

    #[test]
    fn a_path_is_complained_about_again_once_forgiven() {
        let mut once = OncePerPath::default();
        let path = Path::new("/x");
        assert!(once.first(path));
        assert!(!once.first(path));
        once.keep_only(&HashSet::new());
        assert!(once.first(path));
        once.forgive(path);
        assert!(once.first(path));
    }
}
