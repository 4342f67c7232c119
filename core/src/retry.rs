//! The one retry rule of siemflow: how long to wait before trying again, and when to stop.
//!
//! Everything that tries again — the HTTP sinks' delivery, the syslog and file sinks, the
//! Management Activity client, the file source's re-reads — starts a [`Retries`] from a
//! [`RetryRule`] and asks it after each failure. `docs/delivery.md` ("Retries") describes
//! the rule for users:
//!
//! - Without word from the server, the wait is the next step of an exponential backoff:
//!   `initial`, doubling, with jitter, never longer than `max`.
//! - A server's `Retry-After` is the next wait, exactly: not shortened (trying sooner only
//!   earns another refusal), not capped at `max`, not jittered. It does not advance the
//!   backoff, which resumes where it was when a failure comes without one.
//! - A failure only an operator can fix (bad credentials, a missing permission) waits
//!   `max`, so it is retried slowly but never given up on before the budget ends.
//! - Where the caller has a budget — a time limit counted from the first attempt, a number
//!   of retries, or both — a wait that would end past it is not waited: the caller gives
//!   up at once. So a `Retry-After` longer than what is left fails at once rather than
//!   sleeping into a certain failure.

use std::time::Duration;

use backon::{BackoffBuilder as _, ExponentialBackoff, ExponentialBuilder};
use tokio::time::Instant;

/// How one series of attempts is paced and bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryRule {
    /// The first wait after a failure; each further one doubles (with jitter).
    pub initial: Duration,
    /// The longest wait of the backoff, jitter included.
    pub max: Duration,
    /// Give up when a wait would end later than this after the first attempt.
    pub max_duration: Option<Duration>,
    /// Give up after this many retries.
    pub max_retries: Option<usize>,
}

impl RetryRule {
    /// Waits from `initial` doubling up to `max`, with no budget: only the caller stops.
    pub const fn new(initial: Duration, max: Duration) -> Self {
        RetryRule {
            initial,
            max,
            max_duration: None,
            max_retries: None,
        }
    }

    /// The same rule, giving up once a wait would end past `max_duration` of trying.
    pub const fn within(self, max_duration: Duration) -> Self {
        RetryRule {
            max_duration: Some(max_duration),
            ..self
        }
    }

    /// The same rule, giving up after `retries` retries.
    pub const fn at_most(self, retries: usize) -> Self {
        RetryRule {
            max_retries: Some(retries),
            ..self
        }
    }

    /// A new series of attempts; a time budget counts from now (call it at the first attempt).
    pub fn start(&self) -> Retries {
        let longest = self.max.max(self.initial);
        Retries {
            rule: *self,
            longest,
            backoff: ExponentialBuilder::default()
                .with_min_delay(self.initial)
                .with_max_delay(longest)
                .with_factor(2.0)
                .with_jitter()
                .without_max_times()
                .build(),
            started: Instant::now(),
            retries: 0,
        }
    }
}

/// One series of attempts under a [`RetryRule`]: after each failed attempt it says how long
/// to wait before the next, or that the budget is spent.
#[derive(Debug)]
pub struct Retries {
    rule: RetryRule,
    /// `max`, or `initial` when a rule has them the wrong way round.
    longest: Duration,
    backoff: ExponentialBackoff,
    started: Instant,
    retries: usize,
}

impl Retries {
    /// The wait before the next attempt after a failure: exactly `retry_after` when the
    /// server sent one, else the next backoff step. `None`: give up now.
    pub fn after_failure(&mut self, retry_after: Option<Duration>) -> Option<Duration> {
        let wait = match retry_after {
            Some(asked) => asked,
            // The backoff never ends; jitter may take a step past `longest`, which caps it.
            None => self
                .backoff
                .next()
                .unwrap_or(self.longest)
                .min(self.longest),
        };
        self.grant(wait)
    }

    /// The wait after a failure only an operator can fix: the longest, so it is retried
    /// slowly. `None`: give up now.
    pub fn after_config_failure(&mut self) -> Option<Duration> {
        self.grant(self.longest)
    }

    /// Retries granted so far.
    pub fn retries(&self) -> usize {
        self.retries
    }

    /// Time since the series started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    fn grant(&mut self, wait: Duration) -> Option<Duration> {
        if self
            .rule
            .max_retries
            .is_some_and(|most| self.retries >= most)
        {
            return None;
        }
        if let Some(budget) = self.rule.max_duration
            && self.elapsed().saturating_add(wait) > budget
        {
            return None;
        }
        self.retries += 1;
        Some(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_backoff_doubles_with_jitter_and_never_passes_max() {
        let mut retries = RetryRule::new(100 * MS, 1000 * MS).start();
        let waits: Vec<Duration> = (0..12)
            .map(|_| retries.after_failure(None).expect("no budget"))
            .collect();
        assert!((100 * MS..200 * MS).contains(&waits[0]), "{waits:?}");
        assert!((200 * MS..400 * MS).contains(&waits[1]), "{waits:?}");
        assert!(waits.iter().all(|w| *w <= 1000 * MS), "{waits:?}");
        assert_eq!(waits[11], 1000 * MS, "grown to the cap: {waits:?}");
        assert_eq!(retries.retries(), 12);
    }

    #[test]
    fn retry_after_is_the_wait_exactly_and_leaves_the_backoff_where_it_was() {
        let mut retries = RetryRule::new(100 * MS, 1000 * MS).start();
        assert_eq!(retries.after_failure(Some(5000 * MS)), Some(5000 * MS));
        assert_eq!(
            retries.after_failure(Some(Duration::ZERO)),
            Some(Duration::ZERO)
        );
        let first_step = retries.after_failure(None).expect("no budget");
        assert!((100 * MS..200 * MS).contains(&first_step), "{first_step:?}");
    }

    #[test]
    fn configuration_failures_wait_the_longest() {
        let mut retries = RetryRule::new(100 * MS, 1000 * MS).start();
        assert_eq!(retries.after_config_failure(), Some(1000 * MS));
        let mut inverted = RetryRule::new(100 * MS, 10 * MS).start();
        assert_eq!(inverted.after_failure(None), Some(100 * MS));
    }

    #[test]
    fn a_retry_count_budget_ends_the_series() {
        let mut retries = RetryRule::new(MS, MS).at_most(2).start();
        assert!(retries.after_failure(None).is_some());
        assert!(retries.after_failure(Some(MS)).is_some());
        assert_eq!(retries.after_failure(None), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_past_the_time_budget_gives_up_at_once() {
        let mut retries = RetryRule::new(100 * MS, 100 * MS).within(1000 * MS).start();
        assert_eq!(retries.after_failure(Some(1000 * MS)), Some(1000 * MS));
        assert_eq!(
            retries.after_failure(Some(1001 * MS)),
            None,
            "longer than the budget"
        );
        tokio::time::advance(950 * MS).await;
        assert_eq!(retries.after_failure(Some(50 * MS)), Some(50 * MS));
        assert_eq!(
            retries.after_failure(Some(51 * MS)),
            None,
            "a Retry-After longer than what is left"
        );
        assert_eq!(retries.after_failure(None), None, "a backoff step too");
        assert_eq!(retries.after_config_failure(), None);
        assert_eq!(retries.elapsed(), 950 * MS);
    }
}
