//! Adaptive request concurrency (`concurrency = "adaptive"`), after Vector's controller:
//! AIMD on round-trip times and the peer's push-back.
//!
//! Answers are gathered in observation windows about one averaged round trip long. At
//! the end of a window the limit moves at most once:
//! - up by one when the limit was reached during the window (there was demand for more),
//!   nothing pushed back, the window's mean RTT is at or below the long-run average, and
//!   it suggests at most one request waiting at the peer (see `queued`: Vector's rule
//!   alone lets a queueing peer's RTT drift up step by step, with the limit);
//! - down to `limit × decrease_ratio` (at least 1) when the peer pushed back (429, 503,
//!   timeouts: `Failure::Retry`) or the window's mean RTT rose above the average by more
//!   than `rtt_deviation_scale` standard deviations — a queue is building at the peer.
//!
//! Data errors and configuration errors say nothing about the peer's load and move
//! nothing. The long-run average and deviation are exponentially weighted (`ewma_alpha`).
//! The controller is plain arithmetic on the observations it is given; the semaphore
//! that enforces its limit is `slots.rs`'s.

use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

/// `concurrency = { adaptive = { ... } }`: the bounds and tuning of the controller;
/// `concurrency = "adaptive"` takes all the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AdaptiveConcurrency {
    /// The limit at start (default 1).
    pub initial: usize,
    /// The limit never grows past this (default 200).
    pub max: usize,
    /// A decrease multiplies the limit by this, rounding down (default 0.9).
    pub decrease_ratio: f64,
    /// The weight of a new window in the RTT average (default 0.4).
    pub ewma_alpha: f64,
    /// How many standard deviations above its average a window's RTT may be before the
    /// limit drops (default 2.5).
    pub rtt_deviation_scale: f64,
}

impl Default for AdaptiveConcurrency {
    fn default() -> Self {
        AdaptiveConcurrency {
            initial: 1,
            max: 200,
            decrease_ratio: 0.9,
            ewma_alpha: 0.4,
            rtt_deviation_scale: 2.5,
        }
    }
}

impl AdaptiveConcurrency {
    /// What is wrong with the values, if anything.
    pub fn problem(&self) -> Option<String> {
        if self.initial < 1 {
            return Some("adaptive.initial must be at least 1".into());
        }
        if self.max < self.initial {
            return Some(format!(
                "adaptive.max ({}) is less than adaptive.initial ({})",
                self.max, self.initial
            ));
        }
        if !(self.decrease_ratio > 0.0 && self.decrease_ratio < 1.0) {
            return Some(format!(
                "adaptive.decrease_ratio must be between 0 and 1 exclusive, not {}",
                self.decrease_ratio
            ));
        }
        if !(self.ewma_alpha > 0.0 && self.ewma_alpha <= 1.0) {
            return Some(format!(
                "adaptive.ewma_alpha must be more than 0 and at most 1, not {}",
                self.ewma_alpha
            ));
        }
        if !(self.rtt_deviation_scale >= 0.0 && self.rtt_deviation_scale.is_finite()) {
            return Some(format!(
                "adaptive.rtt_deviation_scale must be 0 or more, not {}",
                self.rtt_deviation_scale
            ));
        }
        None
    }
}

/// What one finished request tells the controller.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Signal {
    /// The peer processed it (delivered, accepted, or answered per event without
    /// push-back) after this round trip.
    Answered(Duration),
    /// The peer pushed back: 429, 503, a timeout, a busy item (`Failure::Retry`).
    BackPressure,
    /// Nothing about the peer's load (a data or configuration error, an abort).
    Neither,
}

/// How much slower than the average the floor follows a rising RTT. The average alone
/// drifts up with a queue at the peer (each step of the limit adds a little RTT, the
/// average catches up, noise lets the next step through); the floor remembers the
/// unloaded RTT long enough for the climb to stop near the peer's capacity, yet rises
/// when the peer (or the batch size) really got slower.
const FLOOR_RISE: f64 = 0.005;

/// `a <= b`, forgiving the rounding of averaging identical round trips.
fn at_most(a: f64, b: f64) -> bool {
    a <= b * (1.0 + 1e-9)
}

/// An exponentially weighted mean and variance, in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Ewma {
    mean: f64,
    variance: f64,
}

impl Ewma {
    fn update(&mut self, sample: f64, alpha: f64) {
        let diff = sample - self.mean;
        let step = alpha * diff;
        self.mean += step;
        self.variance = (1.0 - alpha) * (self.variance + diff * step);
    }

    fn deviation(&self) -> f64 {
        self.variance.max(0.0).sqrt()
    }
}

/// The AIMD controller of one sink: feed it every request's start and end, read the limit.
#[derive(Debug, Clone)]
pub struct Controller {
    config: AdaptiveConcurrency,
    limit: usize,
    in_flight: usize,
    /// In flight reached the limit during this window.
    reached_limit: bool,
    /// The peer pushed back during this window.
    back_pressure: bool,
    /// Sum and count of this window's round trips, in seconds.
    window_sum: f64,
    window_count: u32,
    /// The long-run RTT, once one answer was seen.
    average: Option<Ewma>,
    /// The unloaded RTT, in seconds: the lowest window mean, rising only slowly.
    floor: f64,
    /// When the current window closes.
    window_end: Option<Instant>,
}

impl Controller {
    /// A controller at `config.initial` (clamped to 1..=max).
    pub fn new(config: AdaptiveConcurrency) -> Self {
        let max = config.max.max(1);
        Controller {
            limit: config.initial.clamp(1, max),
            config: AdaptiveConcurrency { max, ..config },
            in_flight: 0,
            reached_limit: false,
            back_pressure: false,
            window_sum: 0.0,
            window_count: 0,
            average: None,
            floor: 0.0,
            window_end: None,
        }
    }

    /// The current limit of requests in flight.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The long-run average round trip, once one answer was seen.
    pub fn average_rtt(&self) -> Option<Duration> {
        self.average
            .map(|a| Duration::from_secs_f64(a.mean.max(0.0)))
    }

    /// A request was sent.
    pub fn started(&mut self) {
        self.in_flight += 1;
        if self.in_flight >= self.limit {
            self.reached_limit = true;
        }
    }

    /// A request sent with [`Controller::started`] finished at `now`, telling `signal`;
    /// returns the limit, moved if a window closed.
    pub fn finished(&mut self, signal: Signal, now: Instant) -> usize {
        self.in_flight = self.in_flight.saturating_sub(1);
        match signal {
            Signal::Answered(rtt) => {
                self.window_sum += rtt.as_secs_f64();
                self.window_count += 1;
            }
            Signal::BackPressure => self.back_pressure = true,
            Signal::Neither => {}
        }
        let Some(mut average) = self.average else {
            // No round trip known yet, so no window length: the first answer starts the
            // average; push-back before it still lowers the limit.
            if let Some(first) = self.window_mean() {
                self.average = Some(Ewma {
                    mean: first,
                    variance: 0.0,
                });
                self.floor = first;
                self.close_window(now, first);
            } else if self.back_pressure {
                self.decrease();
                self.back_pressure = false;
                self.reached_limit = false;
            }
            return self.limit;
        };
        if self.window_end.is_some_and(|end| now < end) {
            return self.limit;
        }
        let current = self.window_mean();
        let threshold = average.deviation() * self.config.rtt_deviation_scale;
        if self.limit < self.config.max
            && self.reached_limit
            && !self.back_pressure
            && current.is_some_and(|rtt| at_most(rtt, average.mean) && self.queued(rtt) <= 1.0)
        {
            self.limit += 1;
        } else if self.back_pressure
            || current.is_some_and(|rtt| !at_most(rtt, average.mean + threshold))
        {
            self.decrease();
        }
        if let Some(rtt) = current {
            average.update(rtt, self.config.ewma_alpha);
            self.average = Some(average);
            let weight = if rtt < self.floor { 1.0 } else { FLOOR_RISE };
            self.floor += (rtt - self.floor) * self.config.ewma_alpha * weight;
        }
        self.close_window(now, average.mean);
        self.limit
    }

    /// How many requests a window RTT of `rtt` suggests wait in a queue at the peer:
    /// the limit times the share of `rtt` above the floor (TCP Vegas' estimate).
    fn queued(&self, rtt: f64) -> f64 {
        if rtt <= 0.0 {
            return 0.0;
        }
        self.limit as f64 * (1.0 - self.floor / rtt)
    }

    fn window_mean(&self) -> Option<f64> {
        (self.window_count > 0).then(|| self.window_sum / f64::from(self.window_count))
    }

    fn decrease(&mut self) {
        let lower = (self.limit as f64 * self.config.decrease_ratio) as usize;
        self.limit = lower.clamp(1, self.limit);
    }

    fn close_window(&mut self, now: Instant, length_secs: f64) {
        self.window_end = Some(now + Duration::from_secs_f64(length_secs.clamp(0.0, 3600.0)));
        self.window_sum = 0.0;
        self.window_count = 0;
        self.reached_limit = self.in_flight >= self.limit;
        self.back_pressure = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RTT: Duration = Duration::from_millis(10);

    fn controller(initial: usize, max: usize) -> Controller {
        Controller::new(AdaptiveConcurrency {
            initial,
            max,
            ..AdaptiveConcurrency::default()
        })
    }

    /// One window: `limit` requests sent at once (saturated), each answered with
    /// `signal`; the clock moves one `RTT` per window.
    fn saturated_window(c: &mut Controller, now: &mut Instant, signal: Signal) -> usize {
        let n = c.limit();
        for _ in 0..n {
            c.started();
        }
        *now += RTT;
        let mut limit = c.limit();
        for _ in 0..n {
            limit = c.finished(signal, *now);
        }
        limit
    }

    #[test]
    fn steady_saturated_climbs_by_one_per_window_up_to_max() {
        let mut c = controller(1, 8);
        let mut now = Instant::now();
        let mut seen = vec![c.limit()];
        for _ in 0..20 {
            seen.push(saturated_window(&mut c, &mut now, Signal::Answered(RTT)));
        }
        // The first answer only starts the average; then one step per window.
        assert_eq!(&seen[..9], &[1, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(seen.iter().all(|&l| l <= 8), "{seen:?}");
        assert_eq!(c.limit(), 8);
        assert_eq!(c.average_rtt(), Some(RTT));
    }

    #[test]
    fn one_adjustment_per_window_not_per_response() {
        let mut c = controller(4, 100);
        let mut now = Instant::now();
        saturated_window(&mut c, &mut now, Signal::Answered(RTT));
        assert_eq!(c.limit(), 4);
        // Eight answers inside one window (the clock does not reach its end) move it once.
        for _ in 0..4 {
            c.started();
        }
        now += RTT;
        for _ in 0..4 {
            c.finished(Signal::Answered(RTT), now);
            c.started();
        }
        for _ in 0..4 {
            c.finished(Signal::Answered(RTT), now);
        }
        assert_eq!(c.limit(), 5);
    }

    #[test]
    fn push_back_drops_multiplicatively_never_below_one() {
        let mut c = controller(1, 200);
        let mut now = Instant::now();
        for _ in 0..30 {
            saturated_window(&mut c, &mut now, Signal::Answered(RTT));
        }
        assert_eq!(c.limit(), 30);
        saturated_window(&mut c, &mut now, Signal::BackPressure);
        assert_eq!(c.limit(), 27, "30 × 0.9");
        saturated_window(&mut c, &mut now, Signal::BackPressure);
        assert_eq!(c.limit(), 24, "27 × 0.9 = 24.3, rounded down");
        for _ in 0..100 {
            saturated_window(&mut c, &mut now, Signal::BackPressure);
        }
        assert_eq!(c.limit(), 1);
    }

    #[test]
    fn push_back_before_any_answer_still_lowers_the_limit() {
        let mut c = controller(10, 200);
        let now = Instant::now();
        c.started();
        assert_eq!(c.finished(Signal::BackPressure, now), 9);
    }

    #[test]
    fn a_window_mixing_answers_and_push_back_drops() {
        let mut c = controller(10, 200);
        let mut now = Instant::now();
        saturated_window(&mut c, &mut now, Signal::Answered(RTT));
        // Inside the open window: one push-back among quick answers.
        c.started();
        c.finished(Signal::BackPressure, now);
        for _ in 0..10 {
            c.started();
        }
        now += RTT;
        for _ in 0..10 {
            c.finished(Signal::Answered(RTT), now);
        }
        assert_eq!(c.limit(), 9);
    }

    #[test]
    fn an_rtt_spike_above_average_and_deviation_drops() {
        let mut c = controller(10, 200);
        let mut now = Instant::now();
        // One request at a time (unsaturated, so the limit never grows), each in its own
        // window, alternating 9 ms and 11 ms: an average of about 10 ms with a deviation.
        let mut one = |c: &mut Controller, rtt: Duration| {
            c.started();
            now += Duration::from_secs(1);
            c.finished(Signal::Answered(rtt), now)
        };
        for i in 0..40 {
            one(
                &mut c,
                Duration::from_millis(if i % 2 == 0 { 9 } else { 11 }),
            );
        }
        // The second window (11 ms after 9 ms, no deviation known yet) may have dropped
        // it once; since then the noise stays within the allowance.
        let settled = c.limit();
        for i in 0..20 {
            let rtt = Duration::from_millis(if i % 2 == 0 { 9 } else { 11 });
            assert_eq!(one(&mut c, rtt), settled);
        }
        // Slower, yet within the deviation allowance: no change.
        assert_eq!(one(&mut c, Duration::from_micros(11_500)), settled);
        // Three times the usual round trip: a queue at the peer.
        assert_eq!(one(&mut c, RTT * 3), settled * 9 / 10);
    }

    #[test]
    fn a_queue_at_the_peer_stops_the_climb_near_its_capacity() {
        // A peer serving 6 at once: beyond that, round trips grow with the limit.
        let mut c = controller(1, 200);
        let mut now = Instant::now();
        let mut highest = 0;
        for window in 0..600 {
            let n = c.limit();
            let rtt = RTT.as_secs_f64() * (n as f64 / 6.0).max(1.0);
            // ±2 % of noise, alternating.
            let rtt = rtt * if window % 2 == 0 { 0.98 } else { 1.02 };
            for _ in 0..n {
                c.started();
            }
            now += Duration::from_secs_f64(rtt);
            for _ in 0..n {
                c.finished(Signal::Answered(Duration::from_secs_f64(rtt)), now);
            }
            if window > 50 {
                highest = highest.max(c.limit());
            }
        }
        assert!((5..=8).contains(&c.limit()), "{}", c.limit());
        assert!(highest <= 9, "{highest}");
    }

    #[test]
    fn unsaturated_never_increases() {
        let mut c = controller(4, 200);
        let mut now = Instant::now();
        for _ in 0..50 {
            // Three in flight under a limit of four.
            for _ in 0..3 {
                c.started();
            }
            now += RTT;
            for _ in 0..3 {
                c.finished(Signal::Answered(RTT), now);
            }
        }
        assert_eq!(c.limit(), 4);
    }

    #[test]
    fn data_and_config_errors_move_nothing() {
        let mut c = controller(5, 200);
        let mut now = Instant::now();
        saturated_window(&mut c, &mut now, Signal::Answered(RTT));
        // This window closes on the answers left from the first.
        saturated_window(&mut c, &mut now, Signal::Neither);
        let before = c.limit();
        for _ in 0..20 {
            saturated_window(&mut c, &mut now, Signal::Neither);
        }
        assert_eq!(c.limit(), before);
    }

    #[test]
    fn bad_values_are_named() {
        let bad = |tweak: fn(&mut AdaptiveConcurrency)| {
            let mut a = AdaptiveConcurrency::default();
            tweak(&mut a);
            a.problem().expect("a problem")
        };
        assert!(AdaptiveConcurrency::default().problem().is_none());
        assert!(bad(|a| a.initial = 0).contains("initial"));
        assert!(bad(|a| a.max = 0).contains("max"));
        assert!(bad(|a| a.decrease_ratio = 1.0).contains("decrease_ratio"));
        assert!(bad(|a| a.ewma_alpha = 0.0).contains("ewma_alpha"));
        assert!(bad(|a| a.rtt_deviation_scale = -1.0).contains("rtt_deviation_scale"));
    }
}
