//! The request budget every Microsoft pull source in the process shares, per (tenant, API
//! host, quota): Microsoft counts requests per app per tenant, so two sources reading one
//! tenant (or a source and its successor during a reload) must count together.
//!
//! A budget holds one or more sliding windows (2,000 a minute; 100 a minute *and* 1,500 an
//! hour). A caller [waits for a slot](RequestBudget::acquire): slots are reserved in
//! arrival order (fair), the wait is one timer (no polling), and a slot is granted only when
//! no window would hold more than its limit. Within that hard limit requests are paced
//! (a small burst, then evenly spread) rather than sent in one burst per window.
//!
//! A throttled answer seen by any caller [pauses](RequestBudget::pause) every caller of the
//! budget until the server's `Retry-After` (or the back-off) has passed.
//!
//! The server counts a request when it arrives, which is some time after the budget let
//! it start: on a loaded machine, more than any fixed margin. So a request counts from its
//! start while it is in flight and, once its exchange ended ([`Grant`] dropped), from that
//! end — no earlier than the server saw it — and later requests are spaced from there.
//!
//! The quota is part of the key because one host serves several: Graph counts `/security`
//! (150 a minute) apart from the identity reports (5 per 10 s).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::time::Instant;

/// Every live budget of the process, by key.
static BUDGETS: LazyLock<Mutex<HashMap<BudgetKey, Weak<Shared>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// At most `limit` requests in any `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Requests allowed in any span of `period`.
    pub limit: u32,
    /// The span.
    pub period: Duration,
}

impl Window {
    /// `limit` requests in any `period`.
    pub const fn new(limit: u32, period: Duration) -> Self {
        Window { limit, period }
    }

    /// `limit` requests a minute.
    pub const fn per_minute(limit: u32) -> Self {
        Window::new(limit, Duration::from_secs(60))
    }

    /// `limit` requests an hour.
    pub const fn per_hour(limit: u32) -> Self {
        Window::new(limit, Duration::from_secs(3600))
    }

    /// The period as a label value (`60s`, `1h`).
    fn label(&self) -> String {
        humantime::format_duration(self.period).to_string()
    }
}

/// Which quota a budget counts: one per (tenant, host, quota name).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BudgetKey {
    /// The tenant id, lower-cased.
    pub tenant: String,
    /// The API host (with its port when not the default), lower-cased.
    pub host: String,
    /// The quota's name on that host (`security`, `reports`, `activity`…).
    pub quota: &'static str,
}

/// A source's hold on a shared budget. Its windows count while it lives; the budget is
/// shared with every other holder of the same key.
#[derive(Debug)]
pub struct RequestBudget {
    shared: Arc<Shared>,
    holder: u64,
}

#[derive(Debug)]
struct Shared {
    key: BudgetKey,
    metric_prefix: &'static str,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Each holder's windows; the budget enforces the strictest limit per period.
    holders: HashMap<u64, Vec<Window>>,
    next_holder: u64,
    windows: Vec<WindowState>,
    /// Start times of granted (or reserved) requests, ascending, pruned to the longest span.
    /// Slots are handed out in order: a new one is never before the last. A request that
    /// starts later than its slot moves to its true time. Pacing spaces starts by these.
    log: VecDeque<Instant>,
    /// The same requests, each at the latest time the server may have seen it: its start
    /// while in flight, the end of its exchange once over. Limits count these, so a
    /// request sent late cannot put more than the limit in the server's window; pacing
    /// does not, so a long exchange does not delay the next request's start.
    counted: VecDeque<Instant>,
    /// No request starts before this (after throttling).
    paused_until: Instant,
}

#[derive(Debug)]
struct WindowState {
    window: Window,
    /// The period plus a margin, so that requests arriving a little late at the server
    /// never make it count more than the limit in its own window.
    span: Duration,
    /// Pacing: at most `burst` requests in any `burst_span` (`burst` × span / limit), so a
    /// window's requests are spread over it rather than sent at its start.
    burst: usize,
    burst_span: Duration,
}

impl WindowState {
    fn new(window: Window) -> Self {
        let limit = window.limit.max(1);
        let period = window.period.max(Duration::from_millis(1));
        let span = period + (period / 100).max(Duration::from_millis(100));
        let burst = (limit / 200).clamp(1, 50);
        WindowState {
            window: Window { limit, period },
            span,
            burst: burst as usize,
            burst_span: span / limit * burst,
        }
    }

    /// The earliest start at or after `slot` this window allows, given the requests'
    /// starts (pacing) and their counted times (the limit).
    fn earliest(
        &self,
        slot: Instant,
        starts: &VecDeque<Instant>,
        counted: &VecDeque<Instant>,
    ) -> Instant {
        let limited = earliest_in(counted, slot, self.window.limit as usize, self.span);
        let paced = earliest_in(starts, slot, self.burst, self.burst_span);
        limited.max(paced)
    }
}

/// The earliest start at or after `slot` that leaves fewer than `limit` starts of `log`
/// in the `span` before it (`log` ascending, every start at or before `slot`).
fn earliest_in(log: &VecDeque<Instant>, slot: Instant, limit: usize, span: Duration) -> Instant {
    let recent = log.len() - log.partition_point(|t| *t + span <= slot);
    if recent < limit {
        return slot;
    }
    // The limit-th most recent start must leave the span first.
    log[log.len() - limit] + span
}

impl State {
    /// The effective windows: per period, the strictest limit any holder asked for.
    fn recompute(&mut self) {
        let mut strictest: Vec<Window> = Vec::new();
        for window in self.holders.values().flatten() {
            match strictest.iter_mut().find(|w| w.period == window.period) {
                Some(existing) => existing.limit = existing.limit.min(window.limit),
                None => strictest.push(*window),
            }
        }
        self.windows = strictest.into_iter().map(WindowState::new).collect();
    }

    /// Reserves the next slot: the earliest time every window allows, after the pause and
    /// after every slot reserved before (first come, first served).
    fn reserve(&mut self, now: Instant) -> Instant {
        let last = self.log.back().copied().unwrap_or(now);
        let mut slot = now.max(self.paused_until).max(last);
        loop {
            let earliest = self
                .windows
                .iter()
                .map(|w| w.earliest(slot, &self.log, &self.counted))
                .max()
                .unwrap_or(slot);
            if earliest <= slot {
                break;
            }
            slot = earliest;
        }
        self.log.push_back(slot);
        self.counted.push_back(slot);
        let longest = self
            .windows
            .iter()
            .map(|w| w.span)
            .max()
            .unwrap_or_default();
        for times in [&mut self.log, &mut self.counted] {
            while times.front().is_some_and(|t| *t + longest <= now) {
                times.pop_front();
            }
        }
        slot
    }

    /// Starts the request reserved at `slot`, now: true when it may go. A caller woken
    /// late (a busy runtime) counts where it really starts, so the windows after it see
    /// its true time, and it goes only if no window then holds more than its limit;
    /// otherwise (or while paused) its slot is given back and it reserves again.
    fn start(&mut self, slot: Instant, now: Instant) -> bool {
        self.release(slot);
        let fits = self.windows.iter().all(|w| {
            let started = self.counted.partition_point(|t| *t <= now);
            let before = self.counted.partition_point(|t| *t + w.span <= now);
            started.saturating_sub(before) < w.window.limit as usize
        });
        if self.paused_until > now || !fits {
            return false;
        }
        for times in [&mut self.log, &mut self.counted] {
            let at = times.partition_point(|t| *t <= now);
            times.insert(at, now);
        }
        true
    }

    /// Moves the request started at `started` to `ended`, when its exchange with the
    /// server ended: the server saw it no later than that.
    fn finish(&mut self, started: Instant, ended: Instant) {
        if ended <= started {
            return;
        }
        if let Some(index) = self.counted.iter().rposition(|t| *t == started) {
            self.counted.remove(index);
            let at = self.counted.partition_point(|t| *t <= ended);
            self.counted.insert(at, ended);
        }
    }

    /// Gives back a reserved slot that was not used (its caller re-reserves or left).
    fn release(&mut self, slot: Instant) {
        for times in [&mut self.log, &mut self.counted] {
            if let Some(index) = times.iter().rposition(|t| *t == slot) {
                times.remove(index);
            }
        }
    }

    /// Requests started in the `period` ending at `at`.
    fn used(&self, window: &Window, at: Instant) -> usize {
        self.counted.len() - self.counted.partition_point(|t| *t + window.period <= at)
    }
}

impl RequestBudget {
    /// Joins the budget of `key` (creating it), adding `windows` to it: while this handle
    /// lives, the budget keeps to the strictest limit any holder asked for, per period.
    /// `metric_prefix` names its metrics (`o365` → `o365_request_budget_limit`).
    pub fn join(key: BudgetKey, windows: &[Window], metric_prefix: &'static str) -> Self {
        let key = BudgetKey {
            tenant: key.tenant.trim().to_ascii_lowercase(),
            host: key.host.trim().to_ascii_lowercase(),
            quota: key.quota,
        };
        let shared = {
            let mut budgets = BUDGETS.lock().unwrap_or_else(|p| p.into_inner());
            budgets.retain(|_, budget| budget.strong_count() > 0);
            match budgets.get(&key).and_then(Weak::upgrade) {
                Some(shared) => shared,
                None => {
                    let now = Instant::now();
                    let shared = Arc::new(Shared {
                        key: key.clone(),
                        metric_prefix,
                        state: Mutex::new(State {
                            holders: HashMap::new(),
                            next_holder: 0,
                            windows: Vec::new(),
                            log: VecDeque::new(),
                            counted: VecDeque::new(),
                            paused_until: now,
                        }),
                    });
                    budgets.insert(key, Arc::downgrade(&shared));
                    shared
                }
            }
        };
        let holder = {
            let mut state = shared.lock();
            let holder = state.next_holder;
            state.next_holder += 1;
            state.holders.insert(holder, windows.to_vec());
            state.recompute();
            shared.publish_limits(&state);
            holder
        };
        RequestBudget { shared, holder }
    }

    /// The budget's key.
    pub fn key(&self) -> &BudgetKey {
        &self.shared.key
    }

    /// The windows in force (the strictest of every holder's).
    pub fn windows(&self) -> Vec<Window> {
        self.shared
            .lock()
            .windows
            .iter()
            .map(|w| w.window)
            .collect()
    }

    /// Waits for this request's slot. Slots go in the order callers ask; cancelling the
    /// wait (dropping the future) gives the slot back. Hold the grant until the request's
    /// exchange with the server ended (answer read, or given up).
    pub async fn acquire(&self) -> Grant<'_> {
        let asked = Instant::now();
        loop {
            let mut reservation = Reservation {
                shared: &self.shared,
                slot: self.shared.lock().reserve(Instant::now()),
                used: false,
            };
            tokio::time::sleep_until(reservation.slot).await;
            let mut state = self.shared.lock();
            let now = Instant::now();
            // The slot is given back either way; a pause that began while this request
            // waited holds it back too.
            reservation.used = true;
            if state.start(reservation.slot, now) {
                self.shared.granted(&state, asked, now);
                return Grant {
                    shared: &self.shared,
                    started: now,
                };
            }
        }
    }

    /// True when a window is full: the requests of its last period, with those waiting
    /// for their slot, reach its limit (callers are kept waiting).
    pub fn is_saturated(&self) -> bool {
        let state = self.shared.lock();
        let now = Instant::now();
        state
            .windows
            .iter()
            .any(|w| state.used(&w.window, now) >= w.window.limit as usize)
    }

    /// Holds every caller of this budget back for `wait` (the server throttled one).
    pub fn pause(&self, wait: Duration) {
        let mut state = self.shared.lock();
        let until = Instant::now() + wait;
        if until > state.paused_until {
            state.paused_until = until;
        }
        self.shared
            .counter("request_budget_pauses_total")
            .increment(1);
    }

    /// When the current pause ends, if one is in force.
    pub fn paused_until(&self) -> Option<Instant> {
        let until = self.shared.lock().paused_until;
        (until > Instant::now()).then_some(until)
    }
}

impl Drop for RequestBudget {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.holders.remove(&self.holder);
        state.recompute();
        self.shared.publish_limits(&state);
    }
}

/// A request the budget let start. Dropping it (the exchange ended) counts the request
/// from then on instead of from its start.
#[must_use = "hold the grant until the request's exchange ended"]
pub struct Grant<'a> {
    shared: &'a Shared,
    started: Instant,
}

impl Drop for Grant<'_> {
    fn drop(&mut self) {
        self.shared.lock().finish(self.started, Instant::now());
    }
}

/// A reserved slot, given back unless used (a cancelled wait must not cost a request).
struct Reservation<'a> {
    shared: &'a Shared,
    slot: Instant,
    used: bool,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.used {
            self.shared.lock().release(self.slot);
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update leaves the state usable: a poisoned lock still holds valid times.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn labels(&self, window: Option<&Window>) -> Vec<(&'static str, String)> {
        let mut labels = vec![
            ("tenant_id", self.key.tenant.clone()),
            ("host", self.key.host.clone()),
            ("quota", self.key.quota.to_string()),
        ];
        if let Some(window) = window {
            labels.push(("window", window.label()));
        }
        labels
    }

    fn name(&self, suffix: &str) -> String {
        format!("{}_{suffix}", self.metric_prefix)
    }

    fn counter(&self, suffix: &str) -> metrics::Counter {
        metrics::counter!(self.name(suffix), &self.labels(None))
    }

    fn publish_limits(&self, state: &State) {
        for window in &state.windows {
            metrics::gauge!(
                self.name("request_budget_limit"),
                &self.labels(Some(&window.window))
            )
            .set(f64::from(window.window.limit));
        }
    }

    fn granted(&self, state: &State, asked: Instant, slot: Instant) {
        for window in &state.windows {
            metrics::gauge!(
                self.name("request_budget_used"),
                &self.labels(Some(&window.window))
            )
            .set(state.used(&window.window, slot) as f64);
        }
        let waited = slot.saturating_duration_since(asked);
        if !waited.is_zero() {
            self.counter("request_budget_waits_total").increment(1);
            metrics::counter!(
                self.name("request_budget_wait_milliseconds_total"),
                &self.labels(None)
            )
            .increment(waited.as_millis() as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key no other test uses (budgets are process-wide).
    fn key(name: &str) -> BudgetKey {
        BudgetKey {
            tenant: format!("tenant-{name}"),
            host: "graph.test".into(),
            quota: "security",
        }
    }

    /// The most start times inside any span of `period`.
    fn busiest(times: &[Duration], period: Duration) -> usize {
        let mut sorted = times.to_vec();
        sorted.sort();
        let mut most = 0;
        let mut first = 0;
        for (last, t) in sorted.iter().enumerate() {
            while *t - sorted[first] >= period {
                first += 1;
            }
            most = most.max(last - first + 1);
        }
        most
    }

    /// Start times of `count` acquisitions by each of `callers` tasks.
    async fn run(budgets: Vec<Arc<RequestBudget>>, count: usize) -> Vec<Duration> {
        let begin = Instant::now();
        let tasks: Vec<_> = budgets
            .into_iter()
            .map(|budget| {
                tokio::spawn(async move {
                    let mut times = Vec::new();
                    for _ in 0..count {
                        let _grant = budget.acquire().await;
                        times.push(Instant::now() - begin);
                    }
                    times
                })
            })
            .collect();
        let mut times = Vec::new();
        for task in tasks {
            times.extend(task.await.expect("task"));
        }
        times
    }

    #[tokio::test(start_paused = true)]
    async fn two_sources_on_one_tenant_and_host_never_exceed_the_limit_together() {
        for limit in [1u32, 5, 150, 2000] {
            let window = Window::per_minute(limit);
            // Two sources joining the same key share one budget.
            let a = Arc::new(RequestBudget::join(
                key(&format!("two-{limit}")),
                &[window],
                "t",
            ));
            let b = Arc::new(RequestBudget::join(
                key(&format!("two-{limit}")),
                &[window],
                "t",
            ));
            let times = run(vec![a.clone(), b.clone(), a, b], limit as usize).await;
            let most = busiest(&times, window.period);
            assert!(most <= limit as usize, "limit {limit}: {most} in a minute");
            if limit >= 150 {
                assert!(
                    most as f64 >= f64::from(limit) * 0.95,
                    "limit {limit}: only {most} in the busiest minute"
                );
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn other_tenants_and_quotas_have_their_own_budgets() {
        let window = [Window::new(1, Duration::from_secs(10))];
        let a = RequestBudget::join(key("own-a"), &window, "t");
        let b = RequestBudget::join(key("own-b"), &window, "t");
        let reports = RequestBudget::join(
            BudgetKey {
                quota: "reports",
                ..key("own-a")
            },
            &window,
            "t",
        );
        let begin = Instant::now();
        drop(a.acquire().await);
        drop(b.acquire().await);
        drop(reports.acquire().await);
        assert_eq!(Instant::now(), begin, "three budgets, one slot each");
        drop(a.acquire().await);
        assert!(Instant::now() - begin >= Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttle_seen_by_one_caller_pauses_every_caller() {
        let window = [Window::per_minute(6000)];
        let a = Arc::new(RequestBudget::join(key("pause"), &window, "t"));
        let b = Arc::new(RequestBudget::join(key("pause"), &window, "t"));
        drop(a.acquire().await);
        let begin = Instant::now();
        a.pause(Duration::from_secs(30));
        let (ta, tb) = tokio::join!(
            async {
                drop(a.acquire().await);
                Instant::now() - begin
            },
            async {
                drop(b.acquire().await);
                Instant::now() - begin
            }
        );
        assert!(ta >= Duration::from_secs(30), "{ta:?}");
        assert!(tb >= Duration::from_secs(30), "{tb:?}");
        // A pause that starts while a caller waits for its slot holds it back too.
        let slow = Arc::new(RequestBudget::join(
            key("pause-late"),
            &[Window::per_minute(1)],
            "t",
        ));
        drop(slow.acquire().await);
        let begin = Instant::now();
        let waiter = tokio::spawn({
            let slow = slow.clone();
            async move {
                drop(slow.acquire().await);
                Instant::now() - begin
            }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        slow.pause(Duration::from_secs(600));
        let waited = waiter.await.expect("waiter");
        assert!(waited >= Duration::from_secs(601), "{waited:?}");
        // A shorter pause does not shorten a longer one.
        a.pause(Duration::from_secs(20));
        a.pause(Duration::from_secs(5));
        let begin = Instant::now();
        drop(b.acquire().await);
        assert!(Instant::now() - begin >= Duration::from_secs(20));
    }

    #[tokio::test(start_paused = true)]
    async fn two_windows_are_both_enforced() {
        // Like Defender for Endpoint: 100 a minute and 1,500 an hour, scaled down.
        let windows = [
            Window::new(10, Duration::from_secs(60)),
            Window::new(25, Duration::from_secs(600)),
        ];
        let a = Arc::new(RequestBudget::join(key("two-windows"), &windows, "t"));
        let b = Arc::new(RequestBudget::join(key("two-windows"), &windows, "t"));
        let times = run(vec![a, b], 30).await;
        assert!(busiest(&times, Duration::from_secs(60)) <= 10);
        assert!(busiest(&times, Duration::from_secs(600)) <= 25);
        // The hourly-like window binds: 60 requests need more than two of its spans.
        let last = times.iter().max().copied().unwrap_or_default();
        assert!(last >= Duration::from_secs(1200), "{last:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_strictest_holder_wins_while_it_holds() {
        let loose = RequestBudget::join(key("strict"), &[Window::per_minute(600)], "t");
        let strict = RequestBudget::join(key("strict"), &[Window::per_minute(6)], "t");
        assert_eq!(loose.windows(), [Window::per_minute(6)]);
        drop(strict);
        assert_eq!(loose.windows(), [Window::per_minute(600)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_that_starts_late_counts_where_it_started() {
        let window = Window::new(2, Duration::from_secs(10));
        let mut state = State {
            holders: HashMap::from([(0, vec![window])]),
            next_holder: 1,
            windows: Vec::new(),
            log: VecDeque::new(),
            counted: VecDeque::new(),
            paused_until: Instant::now(),
        };
        state.recompute();
        let t0 = Instant::now();
        let first = state.reserve(t0);
        let second = state.reserve(t0);
        // The first caller wakes 3 s late (a busy runtime) and starts then.
        assert!(state.start(first, t0 + Duration::from_secs(3)));
        assert!(state.start(second, second));
        // A third may start only once the first, as it really started, leaves the span:
        // the server sees the first at 3 s, not at its slot.
        let third = state.reserve(second);
        assert!(
            third >= t0 + Duration::from_secs(13),
            "{:?} after the first slot",
            third - t0
        );
        // A late start that would put more than the limit in a span is refused: it
        // reserves again.
        let mut busy = State {
            log: VecDeque::new(),
            counted: VecDeque::new(),
            ..state
        };
        let a = busy.reserve(t0);
        let b = busy.reserve(t0);
        assert!(busy.start(b, b));
        let c = busy.reserve(b);
        assert!(busy.start(c, c));
        assert!(!busy.start(a, c), "a and b and c in one span");
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_counts_from_the_end_of_its_exchange() {
        // The server may see a request as late as its answer: on a loaded machine the
        // request leaves well after the budget let it start.
        let window = Window::new(1, Duration::from_secs(10));
        let budget = RequestBudget::join(key("exchange-end"), &[window], "t");
        let begin = Instant::now();
        let grant = budget.acquire().await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        drop(grant);
        drop(budget.acquire().await);
        let waited = Instant::now() - begin;
        assert!(
            waited >= Duration::from_secs(13),
            "spaced from the start, not the end of the first exchange: {waited:?}"
        );
        // A request still in flight counts from its start: the next one waits for it.
        let grant = budget.acquire().await;
        let next = tokio::time::timeout(Duration::from_secs(5), budget.acquire()).await;
        assert!(next.is_err(), "a second request inside the window");
        drop(grant);
        // Pacing spaces starts, not ends: a long exchange does not delay the next start.
        let paced = RequestBudget::join(key("exchange-pacing"), &[Window::per_minute(150)], "t");
        drop(paced.acquire().await);
        let begin = Instant::now();
        let grant = paced.acquire().await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        drop(grant);
        let second = Instant::now();
        drop(paced.acquire().await);
        assert_eq!(
            Instant::now(),
            second,
            "the next start waited after a {:?} exchange",
            second - begin
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_wait_gives_its_slot_back() {
        let budget = RequestBudget::join(
            key("cancel"),
            &[Window::new(1, Duration::from_secs(10))],
            "t",
        );
        drop(budget.acquire().await);
        let begin = Instant::now();
        // Waits for the slot at 10 s, then gives up at 1 s.
        let gave_up = tokio::time::timeout(Duration::from_secs(1), budget.acquire()).await;
        assert!(gave_up.is_err());
        drop(budget.acquire().await);
        let waited = Instant::now() - begin;
        assert!(
            waited >= Duration::from_secs(10) && waited < Duration::from_secs(11),
            "the abandoned slot was not counted: {waited:?}"
        );
    }
}
