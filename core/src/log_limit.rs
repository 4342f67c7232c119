//! Saying a recurring problem without flooding the log: one message per period, with how
//! many occurrences were held back since the last one.

use std::time::{Duration, Instant};

/// How often the same kind of per-event error is logged at most (the default period).
pub const PER_EVENT_ERROR_PERIOD: Duration = Duration::from_secs(10);

/// Decides which of a stream of repeated problems gets logged.
#[derive(Debug)]
pub struct RateLimitedLog {
    period: Duration,
    last_logged: Option<Instant>,
    suppressed: u64,
}

impl Default for RateLimitedLog {
    /// One message per [`PER_EVENT_ERROR_PERIOD`].
    fn default() -> Self {
        RateLimitedLog::new(PER_EVENT_ERROR_PERIOD)
    }
}

impl RateLimitedLog {
    /// One message per `period` at most.
    pub fn new(period: Duration) -> Self {
        RateLimitedLog {
            period,
            last_logged: None,
            suppressed: 0,
        }
    }

    /// `Some(n)` when this occurrence should be logged, `n` being how many were
    /// suppressed since the last one logged; `None` when it should be skipped.
    pub fn admit(&mut self) -> Option<u64> {
        let now = Instant::now();
        match self.last_logged {
            Some(last) if now.duration_since(last) < self.period => {
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
        let mut log = RateLimitedLog::new(Duration::from_secs(3600));
        assert_eq!(log.admit(), Some(0));
        assert_eq!(log.admit(), None);
        assert_eq!(log.admit(), None);
        log.last_logged = Instant::now().checked_sub(Duration::from_secs(3601));
        assert_eq!(log.admit(), Some(2));
        assert_eq!(log.admit(), None);
    }
}
