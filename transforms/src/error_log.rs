//! Rate limiting for per-event error logs, so a flood of bad events cannot flood the log.

use std::time::{Duration, Instant};

/// How often one component logs the same kind of per-event error at most.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Decides which of a stream of repeated errors gets logged.
#[derive(Debug, Default)]
pub struct RateLimitedLog {
    last_logged: Option<Instant>,
    suppressed: u64,
}

impl RateLimitedLog {
    /// `Some(n)` when this occurrence should be logged, `n` being how many were
    /// suppressed since the last one logged; `None` when it should be skipped.
    pub fn admit(&mut self) -> Option<u64> {
        let now = Instant::now();
        match self.last_logged {
            Some(last) if now.duration_since(last) < LOG_INTERVAL => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last_logged = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_the_first_and_counts_the_rest() {
        let mut log = RateLimitedLog::default();
        assert_eq!(log.admit(), Some(0));
        assert_eq!(log.admit(), None);
        assert_eq!(log.admit(), None);
        log.last_logged = Instant::now().checked_sub(LOG_INTERVAL);
        assert_eq!(log.admit(), Some(2));
    }
}
