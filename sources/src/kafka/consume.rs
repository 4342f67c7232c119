//! The consumer: a thread polls librdkafka into chunks of raw messages; a decoding stage
//! turns each chunk into events on the blocking pool (two chunks at a time, handed on in
//! polling order), so the polling thread's one core is not the limit; the loop emits them
//! as batches per partition and stores a partition's offset (committed by librdkafka in
//! the background) only over the prefix whose every batch was delivered.
//!
//! librdkafka runs the rebalance callback on the thread that polls. On a revoke the
//! callback hands the partitions to the loop and waits: the loop stops emitting them,
//! keeps settling acknowledgements until theirs are all in or `drain_timeout` passed,
//! then answers; the callback commits what was stored and returns, and only then does
//! librdkafka give the partitions away. The loop never waits for the polling thread, so
//! the acknowledgements progress while the callback waits.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{RecvTimeoutError, SyncSender};
use std::time::Duration;

use futures_util::StreamExt as _;
use futures_util::stream::{FuturesOrdered, FuturesUnordered};
use rdkafka::client::OAuthToken;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use siemflow_core::event::{Batch, attach_ack};
use siemflow_core::kafka::OAuthTokens;
use siemflow_core::settlement::{AfterFailure, OrderedSettlement, Settled, Ticket};
use siemflow_core::{AckReceipt, BatchStatus, Event, ObjectMap, SourceContext, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::lines::LineDecoder;

/// A partition: its topic and number.
pub(super) type Partition = (String, i32);

/// How long a chunk may wait for room downstream before the partitions are paused (the
/// thread then keeps polling, so the group does not take them away after
/// `max.poll.interval.ms`).
const PAUSE_AFTER: Duration = Duration::from_secs(1);

/// How long one poll waits for a message; also how soon the polling thread notices the
/// loop ended, and how often it serves rebalances while downstream is full.
const POLL_SLICE: Duration = Duration::from_millis(100);

/// Chunks polled ahead of the loop.
const CHUNKS_AHEAD: usize = 2;

/// Chunks decoded at the same time, each on a thread of the blocking pool: two keep both
/// cores of a small machine busy while the order of the chunks is kept.
const DECODING_AHEAD: usize = 2;

/// How long a seek after a failed batch may take.
const SEEK_TIMEOUT: Duration = Duration::from_secs(10);

/// How much longer than `drain_timeout` the rebalance callback waits for the loop's
/// answer; it only matters when the loop stopped answering.
const ANSWER_MARGIN: Duration = Duration::from_secs(5);

/// The first wait before a commit refused during a rebalance is tried again.
const COMMIT_BACKOFF: Duration = Duration::from_millis(50);

/// How long a commit refused during a rebalance is tried again. Short: a group that is
/// already collecting joins waits for this member, which rejoins only after the
/// callback returned.
const COMMIT_RETRY_FOR: Duration = Duration::from_secs(1);

/// Partitions being revoked, from the rebalance callback to the loop.
pub(super) struct Revoking {
    partitions: Vec<Partition>,
    /// Chunks polled before the revoke carry an older generation: the loop drops what
    /// they hold of these partitions.
    generation: u64,
    /// The group already gave the partitions to another member: nothing to wait for.
    lost: bool,
    /// Answered (or dropped) once the loop is done with the partitions.
    done: SyncSender<()>,
}

/// The consumer's callbacks, on the polling thread.
pub(super) struct Context {
    pub component: String,
    pub drain_timeout: Duration,
    pub revokes: mpsc::UnboundedSender<Revoking>,
    /// Moves on at each revoke; every chunk is stamped with it.
    pub generation: AtomicU64,
    /// Entra ID tokens, with OAUTHBEARER (`sasl` or `event_hubs`).
    pub oauth: Option<OAuthTokens>,
}

impl ClientContext for Context {
    // librdkafka asks for a token only when sasl.mechanism is OAUTHBEARER.
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(
        &self,
        _oauthbearer_config: Option<&str>,
    ) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        let Some(oauth) = &self.oauth else {
            return Err(
                "sasl.mechanism is OAUTHBEARER only through the source's `sasl` or `event_hubs` option"
                    .into(),
            );
        };
        let token = oauth.token()?;
        Ok(OAuthToken {
            token: token.token,
            principal_name: token.principal_name,
            lifetime_ms: token.lifetime_ms,
        })
    }
}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(list) = rebalance else {
            return;
        };
        let partitions = partitions_of(list);
        let lost = consumer.assignment_lost();
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        tracing::info!(component = %self.component, ?partitions, lost, "partitions revoked; waiting for their events in flight");
        let (done, answered) = std::sync::mpsc::sync_channel(1);
        let revoking = Revoking {
            partitions,
            generation,
            lost,
            done,
        };
        // A closed channel means the loop has ended: it committed already.
        if self.revokes.send(revoking).is_ok()
            && let Err(RecvTimeoutError::Timeout) =
                answered.recv_timeout(self.drain_timeout + ANSWER_MARGIN)
        {
            tracing::error!(component = %self.component, "the consumer loop did not answer a revoke; committing what it stored");
        }
        if lost {
            return;
        }
        // Only delivered prefixes were stored: what the drain delivered goes with them.
        self.commit_stored(consumer, std::time::Instant::now() + COMMIT_RETRY_FOR);
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance {
            let partitions = partitions_of(list);
            tracing::info!(component = %self.component, ?partitions, "partitions assigned");
        }
    }
}

impl Context {
    /// Commits the stored offsets synchronously. Right after a rebalance the group may
    /// still wait for other members' SyncGroup and refuse commits with
    /// REBALANCE_IN_PROGRESS for a moment (Kafka does in CompletingRebalance): retried
    /// until `until`. A commit that fails for good leaves the next owner at the previous
    /// commit (duplicates), which is logged.
    fn commit_stored(&self, consumer: &BaseConsumer<Self>, until: std::time::Instant) {
        let mut backoff = COMMIT_BACKOFF;
        loop {
            match consumer.commit_consumer_state(CommitMode::Sync) {
                Ok(()) => return,
                // Nothing stored since the last commit.
                Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => return,
                Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::RebalanceInProgress))
                    if std::time::Instant::now() + backoff < until =>
                {
                    tracing::debug!(component = %self.component, "commit refused while the group completes its rebalance; trying again");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                Err(error) => {
                    tracing::warn!(component = %self.component, %error, "cannot commit the delivered offsets before a revoke; their next owner reads again from the previous commit");
                    return;
                }
            }
        }
    }
}

fn partitions_of(list: &TopicPartitionList) -> Vec<Partition> {
    list.elements()
        .iter()
        .map(|p| (p.topic().to_string(), p.partition()))
        .collect()
}

/// How the polling thread takes messages and the decoding stage turns them into events.
pub(super) struct Reading {
    /// 1 while the partitions are paused for backpressure (`kafka_consumer_paused`).
    pub paused: metrics::Gauge,
    pub decoding: Decoding,
    pub batch_max_events: usize,
}

/// Turns polled messages into events, off the polling thread.
pub(super) struct Decoding {
    pub decoder: LineDecoder,
    pub metadata_key: String,
    pub unpack_records: bool,
    pub batch_max_events: usize,
}

/// What the loop needs besides the consumer.
pub(super) struct Settings {
    pub drain_timeout: Duration,
}

/// A message taken from the consumer: its partition, offset and event.
type Taken = (Partition, i64, Event);

/// Events of messages polled together, none across a rebalance.
struct Chunk {
    generation: u64,
    messages: Vec<Taken>,
}

/// A message as polled: its value still bytes, its metadata (`metadata.<key>`) taken.
struct Polled {
    partition: Partition,
    offset: i64,
    payload: Vec<u8>,
    kafka: ObjectMap,
}

/// Messages polled together, none across a rebalance, not yet decoded.
struct PolledChunk {
    generation: u64,
    messages: Vec<Polled>,
}

/// The polling thread's state.
struct Poller {
    consumer: Arc<BaseConsumer<Context>>,
    paused_gauge: metrics::Gauge,
    batch_max_events: usize,
    runtime: tokio::runtime::Handle,
    component: String,
    paused: bool,
}

impl Poller {
    /// Polls until the loop is gone, then lets go of the consumer (closing it, which
    /// serves a last revoke, when this is the last reference).
    fn run(mut self, data: mpsc::Sender<PolledChunk>) {
        while !data.is_closed() {
            let chunk = self.next_chunk(POLL_SLICE);
            if !chunk.messages.is_empty() && !self.hand_over(&data, chunk) {
                break;
            }
        }
    }

    /// What librdkafka has, up to a batch, waiting up to `wait` for the first message.
    fn next_chunk(&self, wait: Duration) -> PolledChunk {
        let generation = self.consumer.context().generation.load(Ordering::SeqCst);
        let mut messages = Vec::new();
        let mut timeout = wait;
        while messages.len() < self.batch_max_events {
            // None also after a rebalance was served: a chunk never spans one.
            match self.consumer.poll(timeout) {
                None => break,
                Some(Ok(message)) => messages.push(take(&message)),
                Some(Err(error)) => {
                    tracing::warn!(component = %self.component, %error, "Kafka consumer error; librdkafka retries")
                }
            }
            timeout = Duration::ZERO;
        }
        PolledChunk {
            generation,
            messages,
        }
    }

    /// Gives the loop a chunk; when it has had no room for a while, pauses the assigned
    /// partitions and keeps polling (serving rebalances) until it has. False once the
    /// loop is gone.
    fn hand_over(&mut self, data: &mpsc::Sender<PolledChunk>, chunk: PolledChunk) -> bool {
        let chunk = match data.try_send(chunk) {
            Ok(()) => return true,
            Err(mpsc::error::TrySendError::Closed(_)) => return false,
            Err(mpsc::error::TrySendError::Full(chunk)) => chunk,
        };
        let since = std::time::Instant::now();
        let mut queue = VecDeque::from([chunk]);
        while let Some(chunk) = queue.pop_front() {
            loop {
                let room = self
                    .runtime
                    .block_on(async { tokio::time::timeout(POLL_SLICE, data.reserve()).await });
                match room {
                    Ok(Ok(permit)) => {
                        permit.send(chunk);
                        break;
                    }
                    Ok(Err(_closed)) => return false,
                    Err(_elapsed) if since.elapsed() >= PAUSE_AFTER => {
                        // Again each time: partitions assigned meanwhile are paused too.
                        self.pause();
                        let more = self.next_chunk(Duration::ZERO);
                        if !more.messages.is_empty() {
                            queue.push_back(more);
                        }
                    }
                    Err(_elapsed) => {}
                }
            }
        }
        if self.paused {
            if let Ok(assignment) = self.consumer.assignment()
                && let Err(error) = self.consumer.resume(&assignment)
            {
                tracing::warn!(component = %self.component, %error, "cannot resume the partitions");
            }
            self.paused = false;
            self.paused_gauge.set(0.0);
        }
        true
    }

    fn pause(&mut self) {
        match self.consumer.assignment() {
            Ok(assignment) => {
                if let Err(error) = self.consumer.pause(&assignment) {
                    tracing::warn!(component = %self.component, %error, "cannot pause the partitions");
                }
            }
            Err(error) => {
                tracing::warn!(component = %self.component, %error, "cannot read the assignment to pause it")
            }
        }
        if !self.paused {
            self.paused = true;
            self.paused_gauge.set(1.0);
            tracing::debug!(component = %self.component, "downstream is full; partitions paused");
        }
    }
}

/// A message's value and metadata, copied out of librdkafka's buffer.
fn take(message: &BorrowedMessage<'_>) -> Polled {
    Polled {
        partition: (message.topic().to_string(), message.partition()),
        offset: message.offset(),
        payload: message.payload().unwrap_or_default().to_vec(),
        kafka: kafka_metadata(message),
    }
}

impl Decoding {
    /// The events of a chunk's messages (one each, or one per record of a
    /// `{"records": [...]}` envelope when unpacking), each with its partition and offset;
    /// in more than one chunk when unpacked records pass `batch_max_events` (a message's
    /// records stay in one).
    fn decode(&self, chunk: PolledChunk) -> Vec<Chunk> {
        let mut chunks = Vec::new();
        let mut messages = Vec::with_capacity(chunk.messages.len());
        let mut decoded = Vec::with_capacity(1);
        for polled in chunk.messages {
            if messages.len() >= self.batch_max_events {
                chunks.push(Chunk {
                    generation: chunk.generation,
                    messages: std::mem::take(&mut messages),
                });
            }
            self.decoder.push(&polled.payload, &mut decoded);
            let event = decoded
                .pop()
                .unwrap_or_else(|| Event::from_message(String::new()));
            let events = if self.unpack_records {
                unpack_records(event)
            } else {
                vec![event]
            };
            let mut kafka = Some(polled.kafka);
            let last = events.len().saturating_sub(1);
            for (i, mut event) in events.into_iter().enumerate() {
                // The last event takes the metadata; the ones before get copies.
                let metadata = if i == last {
                    kafka.take().unwrap_or_default()
                } else {
                    kafka.clone().unwrap_or_default()
                };
                attach_metadata(&mut event, &self.metadata_key, metadata);
                messages.push((polled.partition.clone(), polled.offset, event));
            }
        }
        chunks.push(Chunk {
            generation: chunk.generation,
            messages,
        });
        chunks
    }
}

/// Decodes the polled chunks on the blocking pool, up to [`DECODING_AHEAD`] at a time,
/// and hands them to the loop in the order they were polled. Ends when the loop is gone
/// (then the polling thread sees its channel closed) or the polling thread ended.
async fn decode_chunks(
    decoding: Arc<Decoding>,
    mut polled: mpsc::Receiver<PolledChunk>,
    data: mpsc::Sender<Chunk>,
    component: String,
) {
    let mut decoding_now = FuturesOrdered::new();
    let mut polling = true;
    while polling || !decoding_now.is_empty() {
        tokio::select! {
            biased;
            _ = data.closed() => return,
            Some(done) = decoding_now.next(), if !decoding_now.is_empty() => match done {
                Ok(chunks) => {
                    for chunk in chunks {
                        if data.send(chunk).await.is_err() {
                            return;
                        }
                    }
                }
                Err(error) => {
                    tracing::error!(component = %component, %error, "decoding Kafka messages failed");
                    return;
                }
            },
            chunk = polled.recv(), if polling && decoding_now.len() < DECODING_AHEAD => match chunk {
                Some(chunk) => {
                    let decoding = Arc::clone(&decoding);
                    decoding_now.push_back(tokio::task::spawn_blocking(move || decoding.decode(chunk)));
                }
                None => polling = false,
            },
        }
    }
}

/// Where a partition stands after a failed batch was rewound: messages fetched before
/// the seek (offsets past `last_registered`) are dropped until the re-read begins.
struct Rewound {
    last_registered: i64,
}

/// Partitions the loop is draining for a revoke.
struct Drain {
    partitions: Vec<Partition>,
    deadline: Instant,
    done: SyncSender<()>,
}

/// Why events in flight were given up (`kafka_drain_abandoned_events_total{during}`).
#[derive(Clone, Copy)]
enum During {
    Revoke,
    Shutdown,
}

/// The loop's state.
struct Loop<'a> {
    consumer: &'a BaseConsumer<Context>,
    cx: &'a SourceContext,
    drain_timeout: Duration,
    revokes: mpsc::UnboundedReceiver<Revoking>,
    settlement: OrderedSettlement<Partition, i64>,
    receipts: FuturesUnordered<Pending>,
    last_registered: HashMap<Partition, i64>,
    rewound: HashMap<Partition, Rewound>,
    /// The generation of each partition's latest revoke.
    revoked_at: HashMap<Partition, u64>,
    /// Per partition, the batches emitted past its stored offset: the offset each one
    /// reaches and its number of events (what a drain's deadline gives up).
    in_flight: HashMap<Partition, VecDeque<(i64, usize)>>,
    drain: Option<Drain>,
    draining: metrics::Gauge,
}

/// A batch in flight downstream.
type Pending =
    std::pin::Pin<Box<dyn std::future::Future<Output = (Ticket<Partition>, BatchStatus)> + Send>>;

fn pending(ticket: Ticket<Partition>, receipt: AckReceipt) -> Pending {
    Box::pin(async move { (ticket, receipt.await) })
}

/// Consumes until shutdown, then waits up to `drain_timeout` for the acknowledgements
/// still expected, stores and commits what they delivered.
pub(super) async fn run(
    consumer: BaseConsumer<Context>,
    revokes: mpsc::UnboundedReceiver<Revoking>,
    reading: Reading,
    settings: Settings,
    cx: SourceContext,
) -> anyhow::Result<()> {
    let consumer = Arc::new(consumer);
    let (polled, polled_rx) = mpsc::channel::<PolledChunk>(CHUNKS_AHEAD);
    let (chunks, mut data) = mpsc::channel::<Chunk>(CHUNKS_AHEAD);
    let (finished, poller_finished) = oneshot::channel::<()>();
    tokio::spawn(decode_chunks(
        Arc::new(reading.decoding),
        polled_rx,
        chunks,
        cx.component.id.clone(),
    ));
    let poller = Poller {
        consumer: Arc::clone(&consumer),
        paused_gauge: reading.paused,
        batch_max_events: reading.batch_max_events,
        runtime: tokio::runtime::Handle::current(),
        component: cx.component.id.clone(),
        paused: false,
    };
    std::thread::Builder::new()
        .name(format!("kafka-{}", cx.component.id))
        .spawn(move || {
            poller.run(polled);
            let _ = finished.send(());
        })
        .map_err(|error| anyhow::anyhow!("cannot start the Kafka polling thread: {error}"))?;

    let labels = &cx.component.metrics.labels;
    let mut state = Loop {
        consumer: &consumer,
        cx: &cx,
        drain_timeout: settings.drain_timeout,
        revokes,
        settlement: OrderedSettlement::new(AfterFailure::Rewind),
        receipts: FuturesUnordered::new(),
        last_registered: HashMap::new(),
        rewound: HashMap::new(),
        revoked_at: HashMap::new(),
        in_flight: HashMap::new(),
        drain: None,
        draining: labels.gauge("kafka_consumer_draining_partitions", &[]),
    };
    let mut outcome = Ok(());
    loop {
        tokio::select! {
            biased;
            _ = cx.shutdown.cancelled() => break,
            _ = state.serve() => {}
            chunk = data.recv() => match chunk {
                Some(chunk) => state.emit_chunk(chunk).await,
                None => {
                    outcome = Err(anyhow::anyhow!("the Kafka polling thread stopped"));
                    break;
                }
            },
        }
    }
    // Shutdown: nothing new goes out; the batches in flight get up to drain_timeout, and
    // what they delivered is stored and committed. The rest is read again after a restart.
    let deadline = Instant::now() + settings.drain_timeout;
    while state.settlement.outstanding() > 0 || state.drain.is_some() {
        tokio::select! {
            _ = state.serve() => {}
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    state.close_drain();
    state.abandon_all(During::Shutdown);
    if let Err(error) = consumer.commit_consumer_state(CommitMode::Sync) {
        tracing::debug!(component = %cx.component.id, %error, "final commit");
    }
    // The polling thread closes the consumer once the channels are gone: its last
    // revoke finds the loop ended and only commits.
    drop(state);
    drop(consumer);
    drop(data);
    let _ = poller_finished.await;
    outcome
}

impl Loop<'_> {
    /// Waits for one revoke, acknowledgement or drain deadline, and handles it.
    async fn serve(&mut self) {
        let deadline = self.drain.as_ref().map(|drain| drain.deadline);
        tokio::select! {
            Some(revoking) = self.revokes.recv() => self.begin_drain(revoking),
            Some((ticket, status)) = self.receipts.next(), if !self.receipts.is_empty() => {
                self.settle(&ticket, status);
            }
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                self.close_drain();
                return;
            }
            else => std::future::pending::<()>().await,
        }
        if let Some(drain) = &self.drain
            && drain.partitions.iter().all(|p| self.settlement.is_idle(p))
        {
            self.close_drain();
        }
    }

    /// Stops emitting the revoked partitions and starts waiting for their acknowledgements.
    fn begin_drain(&mut self, revoking: Revoking) {
        self.close_drain();
        for partition in &revoking.partitions {
            self.revoked_at
                .insert(partition.clone(), revoking.generation);
        }
        self.draining.set(revoking.partitions.len() as f64);
        self.drain = Some(Drain {
            partitions: revoking.partitions,
            deadline: if revoking.lost {
                Instant::now()
            } else {
                Instant::now() + self.drain_timeout
            },
            done: revoking.done,
        });
        if let Some(drain) = &self.drain
            && drain.partitions.iter().all(|p| self.settlement.is_idle(p))
        {
            self.close_drain();
        }
    }

    /// Ends the drain under way: its partitions are forgotten (acknowledgements arriving
    /// later no longer count; what they held is re-read by the next owner) and the
    /// rebalance callback is told to go on.
    fn close_drain(&mut self) {
        let Some(drain) = self.drain.take() else {
            return;
        };
        let abandoned: usize = drain.partitions.iter().map(|p| self.forget(p)).sum();
        if abandoned > 0 {
            self.count_abandoned(During::Revoke, abandoned, &drain.partitions);
        }
        self.draining.set(0.0);
        let _ = drain.done.send(());
    }

    /// Gives up on everything in flight (shutdown's deadline passed).
    fn abandon_all(&mut self, during: During) {
        let partitions: Vec<Partition> = self.in_flight.keys().cloned().collect();
        let abandoned: usize = partitions.iter().map(|p| self.forget(p)).sum();
        if abandoned > 0 {
            self.count_abandoned(during, abandoned, &partitions);
        }
    }

    fn count_abandoned(&self, during: During, events: usize, partitions: &[Partition]) {
        let label = match during {
            During::Revoke => "revoke",
            During::Shutdown => "shutdown",
        };
        self.cx
            .component
            .metrics
            .labels
            .counter("kafka_drain_abandoned_events_total", &[("during", label)])
            .increment(events as u64);
        tracing::warn!(component = %self.cx.component.id, events, ?partitions, during = label, drain_timeout = ?self.drain_timeout, "events in flight not acknowledged within drain_timeout; they are read and delivered again (duplicates)");
    }

    /// Stops tracking a partition; returns how many of its emitted events were past its
    /// stored offset.
    fn forget(&mut self, partition: &Partition) -> usize {
        self.settlement.forget(partition);
        self.last_registered.remove(partition);
        self.rewound.remove(partition);
        self.in_flight
            .remove(partition)
            .map_or(0, |batches| batches.iter().map(|(_, events)| events).sum())
    }

    /// Emits a chunk as one batch per partition, in order; what it holds of a partition
    /// revoked since it was polled is dropped (the partition's next owner reads it).
    async fn emit_chunk(&mut self, chunk: Chunk) {
        let mut order: Vec<Partition> = Vec::new();
        let mut batches: HashMap<Partition, Vec<(i64, Event)>> = HashMap::new();
        for (partition, offset, event) in chunk.messages {
            if !batches.contains_key(&partition) {
                order.push(partition.clone());
            }
            batches.entry(partition).or_default().push((offset, event));
        }
        for partition in order {
            let revoked = self
                .revoked_at
                .get(&partition)
                .is_some_and(|&at| at > chunk.generation);
            if let Some(events) = batches.remove(&partition)
                && !revoked
            {
                let events = self.skip_rewound(&partition, events);
                self.emit(partition, events).await;
            }
        }
    }

    /// Drops messages fetched before a rewind's seek took effect.
    fn skip_rewound(
        &mut self,
        partition: &Partition,
        events: Vec<(i64, Event)>,
    ) -> Vec<(i64, Event)> {
        let Some(rewound) = self.rewound.get(partition) else {
            return events;
        };
        let last_registered = rewound.last_registered;
        let mut kept = Vec::with_capacity(events.len());
        let mut reread = false;
        for (offset, event) in events {
            reread |= offset <= last_registered;
            if reread {
                kept.push((offset, event));
            }
        }
        if reread {
            self.rewound.remove(partition);
        }
        kept
    }

    /// Sends one partition's events as one batch and registers it.
    async fn emit(&mut self, partition: Partition, events: Vec<(i64, Event)>) {
        let Some(first) = events.first().map(|(offset, _)| *offset) else {
            return;
        };
        let last = events.last().map(|(offset, _)| *offset).unwrap_or(first);
        if !self.last_registered.contains_key(&partition) {
            self.settlement.track(partition.clone(), Some(first));
        }
        self.last_registered.insert(partition.clone(), last);
        self.in_flight
            .entry(partition.clone())
            .or_default()
            .push_back((last + 1, events.len()));
        let ticket = self.settlement.register(partition, last + 1);
        let mut batch: Batch = events.into_iter().map(|(_, event)| event).collect();
        let receipt = attach_ack(&mut batch);
        self.receipts.push(pending(ticket, receipt));
        let cx = self.cx;
        let send = cx.out.send(batch);
        tokio::pin!(send);
        loop {
            tokio::select! {
                biased;
                _ = &mut send => return,
                // Revokes and acknowledgements are served while downstream is full.
                _ = self.serve() => {}
            }
        }
    }

    /// Settles a batch: a delivered prefix is stored; a failed batch rewinds its
    /// partition to the failed batch's first offset.
    fn settle(&mut self, ticket: &Ticket<Partition>, status: BatchStatus) {
        let partition = ticket.key().clone();
        match self.settlement.settle(ticket, status) {
            Settled::Delivered { advanced: true } => {
                if let Some(next) = self.settlement.checkpoint(&partition) {
                    self.store(&partition, next);
                    if self
                        .drain
                        .as_ref()
                        .is_some_and(|drain| drain.partitions.contains(&partition))
                    {
                        self.commit_draining(&partition, next);
                    }
                }
            }
            Settled::Delivered { advanced: false } | Settled::Stale => {}
            Settled::Failed(failure) => {
                let Some(resume) = failure.resume_from else {
                    return;
                };
                if let Some(batches) = self.in_flight.get_mut(&partition) {
                    batches.retain(|(reach, _)| *reach <= resume);
                }
                let last = self
                    .last_registered
                    .get(&partition)
                    .copied()
                    .unwrap_or(resume);
                tracing::warn!(component = %self.cx.component.id, topic = %partition.0, partition = partition.1, offset = resume, "a batch was not delivered; reading its partition again from its first message");
                match self.consumer.seek(
                    &partition.0,
                    partition.1,
                    Offset::Offset(resume),
                    SEEK_TIMEOUT,
                ) {
                    Ok(()) => {
                        self.rewound.insert(
                            partition.clone(),
                            Rewound {
                                last_registered: last,
                            },
                        );
                        self.last_registered.insert(partition, resume - 1);
                    }
                    Err(error) => {
                        // The partition stays where it is: the committed offset is still
                        // before the failed batch, so a restart or the next owner reads it.
                        tracing::error!(component = %self.cx.component.id, %error, "cannot seek back to the failed batch")
                    }
                }
            }
        }
    }

    /// Commits a draining partition's delivered prefix at once, while the group is most
    /// likely still settled (the rebalance callback commits again before it returns).
    fn commit_draining(&self, partition: &Partition, next: i64) {
        let mut offsets = TopicPartitionList::new();
        if offsets
            .add_partition_offset(&partition.0, partition.1, Offset::Offset(next))
            .is_ok()
            && let Err(error) = self.consumer.commit(&offsets, CommitMode::Async)
        {
            tracing::debug!(component = %self.cx.component.id, topic = %partition.0, partition = partition.1, %error, "commit during a revoke");
        }
    }

    /// Stores `next` as the partition's offset to commit (librdkafka commits it in the
    /// background, and the rebalance callback before a revoke completes).
    fn store(&mut self, partition: &Partition, next: i64) {
        if let Some(batches) = self.in_flight.get_mut(partition) {
            while batches.front().is_some_and(|(reach, _)| *reach <= next) {
                batches.pop_front();
            }
        }
        let mut offsets = TopicPartitionList::new();
        if offsets
            .add_partition_offset(&partition.0, partition.1, Offset::Offset(next))
            .is_ok()
            && let Err(error) = self.consumer.store_offsets(&offsets)
        {
            tracing::debug!(component = %self.cx.component.id, topic = %partition.0, partition = partition.1, %error, "offset not stored (partition revoked)");
        }
    }
}

/// One event per record of an Azure `{"records": [...]}` envelope (Defender XDR streaming,
/// diagnostic settings); any other event, or an envelope without records, as it is. The
/// records of one message go out in one batch, so its offset is stored only once all of
/// them were delivered.
pub(super) fn unpack_records(event: Event) -> Vec<Event> {
    let mut root = match event.value {
        Value::Object(root) => root,
        other => return vec![Event::new(other)],
    };
    match root.remove("records") {
        Some(Value::Array(records)) if root.is_empty() && !records.is_empty() => records
            .into_iter()
            .map(|record| match record {
                object @ Value::Object(_) => Event::new(object),
                other => Event::from_message(other),
            })
            .collect(),
        Some(records) => {
            root.insert("records".into(), records);
            vec![Event::new(Value::Object(root))]
        }
        None => vec![Event::new(Value::Object(root))],
    }
}

/// The message's topic, partition, offset, key, timestamp and headers, for
/// `metadata.<key>` of its events.
fn kafka_metadata(message: &BorrowedMessage<'_>) -> ObjectMap {
    let mut kafka = ObjectMap::new();
    kafka.insert("topic".into(), Value::from(message.topic()));
    kafka.insert("partition".into(), Value::from(message.partition() as i64));
    kafka.insert("offset".into(), Value::from(message.offset()));
    kafka.insert(
        "key".into(),
        message.key().map_or(Value::Null, |k| {
            Value::from(String::from_utf8_lossy(k).into_owned())
        }),
    );
    let timestamp = message
        .timestamp()
        .to_millis()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map_or(Value::Null, Value::from);
    kafka.insert("timestamp".into(), timestamp);
    let mut headers = ObjectMap::new();
    if let Some(list) = message.headers() {
        for header in list.iter() {
            let value = header.value.map_or(Value::Null, |v| {
                Value::from(String::from_utf8_lossy(v).into_owned())
            });
            headers.insert(header.key.into(), value);
        }
    }
    kafka.insert("headers".into(), Value::Object(headers));
    kafka
}

/// Puts a message's metadata ([`kafka_metadata`]) under `metadata.<key>` of the event.
fn attach_metadata(event: &mut Event, key: &str, kafka: ObjectMap) {
    if let Value::Object(root) = &mut event.value {
        let metadata = root
            .entry("metadata".into())
            .or_insert_with(|| Value::Object(ObjectMap::new()));
        if let Value::Object(metadata) = metadata {
            metadata.insert(key.into(), Value::Object(kafka));
        }
    }
}
