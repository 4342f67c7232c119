//! Saying a recurring problem without flooding the log: once in a while (core's
//! [`RateLimitedLog`](siemflow_core::log_limit::RateLimitedLog), every
//! [`RECURRING_PROBLEM_PERIOD`]), or once per path while the problem lasts.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often a problem that recurs at every listing (a folder that cannot be read, a
/// process out of descriptors) is logged again while it lasts.
pub const RECURRING_PROBLEM_PERIOD: Duration = Duration::from_secs(60);

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
