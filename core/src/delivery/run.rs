//! The delivery loop: batch, send with bounded (fixed or adaptive) concurrency, retry,
//! settle.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::adaptive::Signal;
use super::batcher::{Batcher, Cut, Item};
use super::dead_letter::{DEAD_LETTER, DeadLetter};
use super::failure::{Failure, Rejection};
use super::metrics::DeliveryMetrics;
use super::slots::{Slot, Slots};
use super::{EventOutcome, Outcome, Protocol, Request, Settings};
use crate::api::Health;
use crate::event::resolve_batch;
use crate::retry::Retries;
use crate::{BatchStatus, SinkContext};

/// Delivers everything arriving on `cx.input` through `protocol` until the input ends
/// and every request finished, or `cx.abort` (unfinished events then resolve failed).
///
/// With a healthcheck the sink is not ready from the moment it is built: `/ready` must
/// not answer 200 for a peer nobody has reached yet.
pub fn run<P: Protocol>(
    protocol: P,
    settings: Settings,
    cx: SinkContext,
) -> impl Future<Output = anyhow::Result<()>> + Send {
    if settings.healthcheck.is_some() {
        cx.health
            .part(HEALTHCHECK)
            .unhealthy("healthcheck pending: the peer has not been reached yet");
    }
    let metrics = DeliveryMetrics::new(&cx.component.metrics.labels);
    run_with(protocol, settings, cx, metrics)
}

/// [`run`] reporting into metric handles made by the caller (tests record them apart).
pub(super) async fn run_with<P: Protocol>(
    protocol: P,
    settings: Settings,
    mut cx: SinkContext,
    metrics: DeliveryMetrics,
) -> anyhow::Result<()> {
    let labels = cx.component.metrics.labels.clone();
    let shared = Arc::new(Shared {
        protocol,
        dead_letter: DeadLetter::new(
            cx.output(DEAD_LETTER).cloned(),
            metrics.dead_letters.clone(),
        ),
        slots: Slots::new(settings.concurrency, metrics.clone()),
        metrics,
        health: HealthState {
            health: cx.health.clone(),
            failing: AtomicBool::new(false),
        },
        retry: settings.retry.clone(),
        abort: cx.abort.clone(),
        id: labels.id.clone(),
    });
    let mut jobs = JoinSet::new();
    // The probes outlive no delivery: they stop when this function returns, however.
    let probing = CancellationToken::new();
    let _stop_probing = probing.clone().drop_guard();
    if let Some(interval) = settings.healthcheck {
        tokio::spawn(healthchecks(
            Arc::clone(&shared),
            cx.health.part(HEALTHCHECK),
            interval,
            probing,
        ));
    }
    let mut batcher = Batcher::new(
        settings.batch.max_events,
        settings.batch.max_bytes,
        settings.batch.timeout,
        settings.separator_bytes,
        settings.framing_bytes,
    );
    let mut input_open = true;
    loop {
        while let Some(cut) = batcher.pop_ready() {
            let slot = tokio::select! {
                slot = shared.slots.acquire() => slot?,
                _ = cx.abort.cancelled() => return aborted(&shared, jobs, batcher.len() + cut.items.len()),
            };
            jobs.spawn(deliver(Arc::clone(&shared), cut, slot));
        }
        while let Some(done) = jobs.try_join_next() {
            report_join(&shared, done);
        }
        if !input_open {
            break;
        }
        let deadline = batcher.next_deadline();
        tokio::select! {
            batch = cx.input.recv() => match batch {
                Some(batch) => encode(&shared, &mut batcher, batch).await,
                None => {
                    batcher.cut_all();
                    input_open = false;
                }
            },
            _ = sleep_until(deadline), if deadline.is_some() => batcher.cut_expired(Instant::now()),
            Some(done) = jobs.join_next() => report_join(&shared, done),
            _ = cx.abort.cancelled() => return aborted(&shared, jobs, batcher.len()),
        }
    }
    loop {
        tokio::select! {
            done = jobs.join_next() => match done {
                Some(done) => report_join(&shared, done),
                None => break,
            },
            _ = cx.abort.cancelled() => return aborted(&shared, jobs, 0),
        }
    }
    Ok(())
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(deadline) = deadline {
        tokio::time::sleep_until(deadline).await;
    }
}

fn aborted<P: Protocol>(
    shared: &Shared<P>,
    mut jobs: JoinSet<()>,
    waiting: usize,
) -> anyhow::Result<()> {
    jobs.abort_all();
    tracing::warn!(
        component = %shared.id,
        requests = jobs.len(),
        waiting,
        "aborted with deliveries unfinished; their events will be re-read"
    );
    Ok(())
}

fn report_join<P: Protocol>(shared: &Shared<P>, done: Result<(), tokio::task::JoinError>) {
    if let Err(error) = done
        && error.is_panic()
    {
        // Its events were dropped unresolved, so they count as failed and are re-read.
        tracing::error!(component = %shared.id, error = %error, "a delivery task panicked");
    }
}

/// What every delivery task of a sink shares.
struct Shared<P> {
    protocol: P,
    dead_letter: DeadLetter,
    metrics: DeliveryMetrics,
    health: HealthState,
    retry: super::RetryConfig,
    abort: CancellationToken,
    slots: Arc<Slots>,
    id: String,
}

/// The sink's `/ready` state as delivery sees it.
struct HealthState {
    health: Health,
    failing: AtomicBool,
}

impl HealthState {
    fn failing(&self, reason: &str) {
        self.failing.store(true, Ordering::Release);
        self.health.unhealthy(reason);
    }

    fn delivered(&self) {
        if self.failing.swap(false, Ordering::AcqRel) {
            self.health.healthy();
        }
    }
}

/// The [`Health::part`] the periodic probe reports in, apart from what deliveries
/// report: a probe that passes (Splunk's health endpoint takes no token) must not clear a
/// delivery's configuration problem (a disabled token), nor a delivery a failed probe.
const HEALTHCHECK: &str = "healthcheck";

/// Probes the peer at once and then every `interval` until `stop`; each result sets the
/// healthcheck part of the sink's health. A change is logged once, not every probe.
async fn healthchecks<P: Protocol>(
    shared: Arc<Shared<P>>,
    health: Health,
    interval: Duration,
    stop: CancellationToken,
) {
    let mut passing: Option<bool> = None;
    loop {
        let probed = tokio::select! {
            probed = shared.protocol.healthcheck() => probed,
            () = stop.cancelled() => return,
        };
        match probed {
            Ok(()) => {
                if passing != Some(true) {
                    tracing::info!(component = %shared.id, "healthcheck passed");
                }
                passing = Some(true);
                health.healthy();
            }
            Err(failure) => {
                if passing != Some(false) {
                    tracing::warn!(
                        component = %shared.id,
                        class = failure.kind(),
                        reason = %failure,
                        ?interval,
                        "healthcheck failed: not ready until a probe passes; delivering anyway, with retries"
                    );
                }
                passing = Some(false);
                health.unhealthy(format!("healthcheck failed: {failure}"));
            }
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = stop.cancelled() => return,
        }
    }
}

async fn encode<P: Protocol>(shared: &Shared<P>, batcher: &mut Batcher, batch: crate::Batch) {
    let mut rejected: Vec<(Item, Rejection)> = Vec::new();
    // Events of one source are alike in size: sized by the one before, a buffer is
    // written without growing (a growing one is copied at each doubling, ~8 times for a
    // 1 KB record). One absurd record does not make the next one's buffer absurd.
    const MAX_SIZE_HINT: usize = 64 << 10;
    let mut size_hint = 0;
    for event in batch {
        let mut encoded = Vec::with_capacity(size_hint + size_hint / 8);
        match shared.protocol.encode(&event, &mut encoded) {
            Ok(partition) => {
                size_hint = encoded.len().min(MAX_SIZE_HINT);
                batcher.push(partition, Item { event, encoded })
            }
            Err(rejection) => rejected.push((
                Item {
                    event,
                    encoded: Vec::new(),
                },
                rejection,
            )),
        }
    }
    for (item, rejection) in rejected {
        shared.dead_letter.send(vec![item], &rejection).await;
    }
}

/// Delivers one cut batch: sends, retries, splits, dead-letters and settles every event.
async fn deliver<P: Protocol>(shared: Arc<Shared<P>>, cut: Cut, slot: Slot) {
    let mut job = Job {
        shared: &shared,
        retries: shared.retry.rule().start(),
        slot: Some(slot),
        attempts: 0,
    };
    let mut work = vec![cut.items];
    while let Some(items) = work.pop() {
        if let Err(Gave::Up(items)) = job.deliver_one(&cut.partition, items, &mut work).await {
            let mut events = items.len();
            events += work.iter().map(Vec::len).sum::<usize>();
            let remaining = std::mem::take(&mut work);
            for items in remaining {
                fail(&shared, items);
            }
            fail(&shared, items);
            tracing::debug!(component = %shared.id, events, "batch failed back to its source");
            return;
        }
    }
}

enum Gave {
    /// Retry time ran out, or the process is aborting: these events failed.
    Up(Vec<Item>),
}

struct Job<'a, P> {
    shared: &'a Shared<P>,
    /// The batch's retries under `retry`, its `max_duration` counted from the first send.
    retries: Retries,
    slot: Option<Slot>,
    attempts: u32,
}

impl<P: Protocol> Job<'_, P> {
    /// Sends `items` until each is delivered or dead-lettered; halves of a too-large
    /// request go back on `work`.
    async fn deliver_one(
        &mut self,
        partition: &str,
        mut items: Vec<Item>,
        work: &mut Vec<Vec<Item>>,
    ) -> Result<(), Gave> {
        let shared = self.shared;
        loop {
            if self.slot.is_none() {
                let slot = tokio::select! {
                    slot = shared.slots.acquire() => slot.ok(),
                    _ = shared.abort.cancelled() => None,
                };
                match slot {
                    Some(slot) => self.slot = Some(slot),
                    None => return Err(Gave::Up(items)),
                }
            }
            self.attempts += 1;
            shared.metrics.in_flight.increment(1.0);
            shared.slots.sending();
            let request = Request {
                partition,
                items: &items,
            };
            let sent = Instant::now();
            let outcome = tokio::select! {
                outcome = shared.protocol.send(request) => Some(outcome),
                _ = shared.abort.cancelled() => None,
            };
            shared.metrics.in_flight.decrement(1.0);
            let Some(outcome) = outcome else {
                shared.slots.finished(Signal::Neither);
                return Err(Gave::Up(items));
            };
            shared.slots.finished(signal(&outcome, sent.elapsed()));
            let failure = match outcome {
                Outcome::Delivered => {
                    self.delivered(items);
                    return Ok(());
                }
                Outcome::Failed(Failure::Data(rejection)) => {
                    shared.dead_letter.send(items, &rejection).await;
                    return Ok(());
                }
                Outcome::Failed(Failure::TooLarge { reason, response }) => {
                    shared.metrics.error("too_large");
                    if items.len() > 1 {
                        let second = items.split_off(items.len() / 2);
                        tracing::debug!(component = %shared.id, events = items.len() + second.len(), %reason, "request too large; splitting it in two");
                        work.push(second);
                        work.push(items);
                    } else {
                        let rejection = Rejection {
                            reason: "too_large".into(),
                            message: reason,
                            response,
                        };
                        shared.dead_letter.send(items, &rejection).await;
                    }
                    return Ok(());
                }
                Outcome::Failed(failure) => failure,
                Outcome::PerEvent(outcomes) => match self.settle_each(items, outcomes).await {
                    Settled::Done => return Ok(()),
                    Settled::Resend(rest) => {
                        items = rest;
                        continue;
                    }
                    Settled::Retry(rest, failure) => {
                        items = rest;
                        failure
                    }
                },
                Outcome::Accepted(confirmation) => {
                    // Waiting for a confirmation is not a request in flight.
                    self.slot = None;
                    let confirmed = tokio::select! {
                        confirmed = confirmation => Some(confirmed),
                        _ = shared.abort.cancelled() => None,
                    };
                    match confirmed {
                        Some(Ok(())) => {
                            self.delivered(items);
                            return Ok(());
                        }
                        Some(Err(failure)) => failure,
                        None => return Err(Gave::Up(items)),
                    }
                }
            };
            items = self.back_off(items, &failure).await?;
        }
    }

    fn delivered(&self, items: Vec<Item>) {
        let shared = self.shared;
        let bytes: usize = items.iter().map(|i| i.encoded.len()).sum();
        shared.metrics.sent_events.increment(items.len() as u64);
        shared.metrics.sent_bytes.increment(bytes as u64);
        shared.health.delivered();
        for mut item in items {
            if let Some(ack) = item.event.ack.take() {
                ack.resolve(BatchStatus::Delivered);
            }
        }
    }

    /// Settles what a per-event answer settled; returns what must be sent again.
    async fn settle_each(&mut self, items: Vec<Item>, outcomes: Vec<EventOutcome>) -> Settled {
        let shared = self.shared;
        if outcomes.len() != items.len() {
            let failure = Failure::retry(format!(
                "the sink reported {} results for a request of {} events",
                outcomes.len(),
                items.len()
            ));
            return Settled::Retry(items, failure);
        }
        let mut delivered = Vec::new();
        let mut rejected: Vec<(Item, Rejection)> = Vec::new();
        let mut again = Vec::new();
        let mut failure: Option<Failure> = None;
        for (item, outcome) in items.into_iter().zip(outcomes) {
            match outcome {
                EventOutcome::Delivered => delivered.push(item),
                EventOutcome::Rejected(rejection) => rejected.push((item, rejection)),
                EventOutcome::Resend => again.push(item),
                EventOutcome::Retry(f) => {
                    again.push(item);
                    failure.get_or_insert(f);
                }
            }
        }
        let progress = !delivered.is_empty() || !rejected.is_empty();
        if !delivered.is_empty() {
            self.delivered(delivered);
        }
        // Consecutive events with the same rejection go out as one dead-letter batch.
        let mut group: Vec<Item> = Vec::new();
        let mut current: Option<Rejection> = None;
        for (item, rejection) in rejected {
            if current.as_ref() != Some(&rejection) {
                if let Some(previous) = current.take() {
                    shared
                        .dead_letter
                        .send(std::mem::take(&mut group), &previous)
                        .await;
                }
                current = Some(rejection);
            }
            group.push(item);
        }
        if let Some(previous) = current {
            shared.dead_letter.send(group, &previous).await;
        }
        match (again.is_empty(), failure) {
            (true, _) => Settled::Done,
            (false, Some(failure)) => Settled::Retry(again, failure),
            (false, None) if progress => Settled::Resend(again),
            // Nothing moved: resending at once could loop; back off instead.
            (false, None) => Settled::Retry(
                again,
                Failure::retry("the peer took none of the events; sending them again"),
            ),
        }
    }

    /// Records a failure and waits before the next attempt, as the retry rule says
    /// ([`crate::retry`]); gives the events up when the wait would pass
    /// `retry.max_duration` or the process aborts.
    async fn back_off(&mut self, items: Vec<Item>, failure: &Failure) -> Result<Vec<Item>, Gave> {
        let shared = self.shared;
        shared.metrics.error(failure.kind());
        let wait = match failure {
            Failure::Retry { retry_after, .. } => self.retries.after_failure(*retry_after),
            Failure::Config { .. } => self.retries.after_config_failure(),
            _ => self.retries.after_failure(None),
        };
        if let Failure::Config { reason } = failure {
            shared.health.failing(reason);
        }
        let Some(delay) = wait else {
            shared.metrics.error("retries_exhausted");
            tracing::error!(
                component = %shared.id,
                reason = %failure,
                events = items.len(),
                attempts = self.attempts,
                spent = ?self.retries.elapsed(),
                "retry.max_duration reached; the batch is failed back to its source, which will read it again"
            );
            return Err(Gave::Up(items));
        };
        if let Failure::Config { reason } = failure {
            tracing::error!(
                component = %shared.id,
                reason = %reason,
                events = items.len(),
                attempt = self.attempts,
                retry_in = ?delay,
                "the peer refused the request: a configuration problem; retrying slowly until it is fixed"
            );
        } else {
            tracing::warn!(
                component = %shared.id,
                reason = %failure,
                events = items.len(),
                attempt = self.attempts,
                retry_in = ?delay,
                "request failed; retrying"
            );
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shared.abort.cancelled() => return Err(Gave::Up(items)),
        }
        shared.metrics.retries.increment(1);
        Ok(items)
    }
}

/// What an answer says about the peer's load, for the adaptive concurrency controller.
fn signal(outcome: &Outcome, rtt: std::time::Duration) -> Signal {
    match outcome {
        Outcome::Delivered | Outcome::Accepted(_) => Signal::Answered(rtt),
        Outcome::PerEvent(outcomes) => {
            // A busy item (an Elasticsearch 429 per item) is push-back too.
            if outcomes
                .iter()
                .any(|o| matches!(o, EventOutcome::Retry(Failure::Retry { .. })))
            {
                Signal::BackPressure
            } else {
                Signal::Answered(rtt)
            }
        }
        Outcome::Failed(Failure::Retry { .. }) => Signal::BackPressure,
        Outcome::Failed(_) => Signal::Neither,
    }
}

enum Settled {
    Done,
    Resend(Vec<Item>),
    Retry(Vec<Item>, Failure),
}

fn fail<P>(shared: &Shared<P>, items: Vec<Item>) {
    shared.metrics.failed_events.increment(items.len() as u64);
    resolve_batch(
        items.into_iter().map(|i| i.event).collect(),
        BatchStatus::Failed,
    );
}
