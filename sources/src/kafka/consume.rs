//! The consumer loop: messages become batches per partition; a partition's offset is
//! stored (and then committed by librdkafka) only over the prefix whose every batch was
//! delivered.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use siemflow_core::event::{Batch, attach_ack};
use siemflow_core::settlement::{AfterFailure, OrderedSettlement, Settled, Ticket};
use siemflow_core::{AckReceipt, BatchStatus, Event, ObjectMap, SourceContext, Value};

use crate::lines::LineDecoder;

/// A partition: its topic and number.
pub(super) type Partition = (String, i32);

/// How long a batch may wait for room downstream before the source pauses its partitions
/// (it then keeps polling, so the group does not take them away for `max.poll.interval.ms`).
const PAUSE_AFTER: Duration = Duration::from_secs(1);

/// How long a seek after a failed batch may take.
const SEEK_TIMEOUT: Duration = Duration::from_secs(10);

/// Rebalance news from librdkafka's callback to the loop.
#[derive(Default)]
pub(super) struct Rebalances {
    revoked: Mutex<Vec<Partition>>,
}

/// The consumer's callbacks: on a revoke, what was delivered is committed before the
/// partitions go (the next owner starts there, re-reading only undelivered messages).
pub(super) struct Context {
    pub component: String,
    pub rebalances: Arc<Rebalances>,
}

impl ClientContext for Context {}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            // Only delivered prefixes were stored: committing them now is safe, and
            // saves the next owner from re-reading them.
            if let Err(error) = consumer.commit_consumer_state(CommitMode::Sync) {
                tracing::debug!(component = %self.component, %error, "commit before revoke");
            }
            let gone = partitions
                .elements()
                .iter()
                .map(|p| (p.topic().to_string(), p.partition()))
                .collect::<Vec<_>>();
            tracing::info!(component = %self.component, partitions = ?gone, "partitions revoked");
            self.rebalances
                .revoked
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(gone);
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(partitions) = rebalance {
            let got: Vec<Partition> = partitions
                .elements()
                .iter()
                .map(|p| (p.topic().to_string(), p.partition()))
                .collect();
            tracing::info!(component = %self.component, partitions = ?got, "partitions assigned");
        }
    }
}

/// What the loop needs besides the consumer.
pub(super) struct Settings {
    /// 1 while the partitions are paused for backpressure (`kafka_consumer_paused`).
    pub paused: metrics::Gauge,
    pub decoder: LineDecoder,
    pub metadata_key: String,
    pub batch_max_events: usize,
    pub unpack_records: bool,
}

/// Where a partition stands after a failed batch was rewound: messages fetched before
/// the seek (offsets past `last_registered`) are dropped until the re-read begins.
struct Rewound {
    last_registered: i64,
}

/// The loop's state.
struct Loop<'a> {
    consumer: &'a StreamConsumer<Context>,
    cx: &'a SourceContext,
    settings: &'a Settings,
    rebalances: Arc<Rebalances>,
    settlement: OrderedSettlement<Partition, i64>,
    receipts: FuturesUnordered<Pending>,
    last_registered: HashMap<Partition, i64>,
    rewound: HashMap<Partition, Rewound>,
    paused: bool,
}

/// A batch in flight downstream.
type Pending =
    std::pin::Pin<Box<dyn std::future::Future<Output = (Ticket<Partition>, BatchStatus)> + Send>>;

fn pending(ticket: Ticket<Partition>, receipt: AckReceipt) -> Pending {
    Box::pin(async move { (ticket, receipt.await) })
}

/// Consumes until shutdown, then waits for the acknowledgements still expected, stores
/// and commits what they delivered.
pub(super) async fn run(
    consumer: StreamConsumer<Context>,
    rebalances: Arc<Rebalances>,
    settings: Settings,
    cx: SourceContext,
) -> anyhow::Result<()> {
    let mut state = Loop {
        consumer: &consumer,
        cx: &cx,
        settings: &settings,
        rebalances,
        settlement: OrderedSettlement::new(AfterFailure::Rewind),
        receipts: FuturesUnordered::new(),
        last_registered: HashMap::new(),
        rewound: HashMap::new(),
        paused: false,
    };
    let mut stream = consumer.stream();
    // Messages taken while the partitions were paused, to emit next.
    let mut early: Vec<Taken> = Vec::new();
    loop {
        if !early.is_empty() {
            let taken = std::mem::take(&mut early);
            state.emit_all(taken, &mut stream, &mut early).await;
            continue;
        }
        tokio::select! {
            biased;
            _ = cx.shutdown.cancelled() => break,
            Some((ticket, status)) = state.receipts.next(), if !state.receipts.is_empty() => {
                state.settle(&ticket, status);
            }
            message = stream.next() => {
                let Some(message) = message else { break };
                let mut taken = Vec::new();
                let mut next = Some(message);
                // Take what librdkafka already fetched, up to a batch, without waiting.
                while let Some(message) = next.take() {
                    state.take_result(message, &mut taken);
                    if taken.len() < settings.batch_max_events {
                        next = futures_util::FutureExt::now_or_never(stream.next()).flatten();
                    }
                }
                state.emit_all(taken, &mut stream, &mut early).await;
            }
        }
        state.forget_revoked();
    }
    drop(stream);
    // Shutdown: what was sent is waited for (the engine drains the sinks), stored and
    // committed; what was not delivered is read again by the next owner.
    while let Some((ticket, status)) = state.receipts.next().await {
        state.settle(&ticket, status);
    }
    if let Err(error) = consumer.commit_consumer_state(CommitMode::Sync) {
        tracing::debug!(component = %cx.component.id, %error, "final commit");
    }
    Ok(())
}

/// A message taken from the consumer: its partition, offset and event.
type Taken = (Partition, i64, Event);

/// The consumer's message stream.
type Stream<'a> = rdkafka::consumer::MessageStream<'a, Context>;

impl Loop<'_> {
    /// Takes one result of the stream into `taken` (an error is logged: librdkafka
    /// retries what it can by itself).
    fn take_result(
        &mut self,
        message: Result<BorrowedMessage<'_>, rdkafka::error::KafkaError>,
        taken: &mut Vec<Taken>,
    ) {
        match message {
            Ok(message) => taken.extend(self.take(&message)),
            Err(error) => {
                tracing::warn!(component = %self.cx.component.id, %error, "Kafka consumer error; librdkafka retries")
            }
        }
    }

    /// Emits taken messages as one batch per partition, in order.
    async fn emit_all(
        &mut self,
        taken: Vec<Taken>,
        stream: &mut Stream<'_>,
        early: &mut Vec<Taken>,
    ) {
        self.forget_revoked();
        let mut order: Vec<Partition> = Vec::new();
        let mut batches: HashMap<Partition, Vec<(i64, Event)>> = HashMap::new();
        for (partition, offset, event) in taken {
            if !batches.contains_key(&partition) {
                order.push(partition.clone());
            }
            batches.entry(partition).or_default().push((offset, event));
        }
        for partition in order {
            if let Some(events) = batches.remove(&partition) {
                self.emit(partition, events, stream, early).await;
            }
        }
    }

    /// The events of one message (one, or one per record of a `{"records": [...]}`
    /// envelope when unpacking), each with its partition and offset; none for a message
    /// fetched before a rewind's seek took effect.
    fn take(&mut self, message: &BorrowedMessage<'_>) -> Vec<Taken> {
        let partition: Partition = (message.topic().to_string(), message.partition());
        let offset = message.offset();
        if let Some(rewound) = self.rewound.get(&partition) {
            if offset > rewound.last_registered {
                return Vec::new();
            }
            self.rewound.remove(&partition);
        }
        let value = message.payload().unwrap_or_default();
        let mut events = Vec::with_capacity(1);
        self.settings.decoder.push(value, &mut events);
        let event = events
            .pop()
            .unwrap_or_else(|| Event::from_message(String::new()));
        let mut events = if self.settings.unpack_records {
            unpack_records(event)
        } else {
            vec![event]
        };
        for event in &mut events {
            attach_metadata(event, &self.settings.metadata_key, message);
        }
        events
            .into_iter()
            .map(|event| (partition.clone(), offset, event))
            .collect()
    }

    /// Sends one partition's events as one batch and registers it.
    async fn emit(
        &mut self,
        partition: Partition,
        events: Vec<(i64, Event)>,
        stream: &mut Stream<'_>,
        early: &mut Vec<Taken>,
    ) {
        let Some(first) = events.first().map(|(offset, _)| *offset) else {
            return;
        };
        let last = events.last().map(|(offset, _)| *offset).unwrap_or(first);
        if !self.last_registered.contains_key(&partition) {
            self.settlement.track(partition.clone(), Some(first));
        }
        self.last_registered.insert(partition.clone(), last);
        let ticket = self.settlement.register(partition, last + 1);
        let mut batch: Batch = events.into_iter().map(|(_, event)| event).collect();
        let receipt = attach_ack(&mut batch);
        self.receipts.push(pending(ticket, receipt));
        self.send(batch, stream, early).await;
    }

    /// Sends a batch downstream; when it waits long for room, pauses every assigned
    /// partition and keeps polling (rebalances are served; nothing new is fetched).
    async fn send(&mut self, batch: Batch, stream: &mut Stream<'_>, early: &mut Vec<Taken>) {
        let send = self.cx.out.send(batch);
        tokio::pin!(send);
        tokio::select! {
            _ = &mut send => return,
            _ = tokio::time::sleep(PAUSE_AFTER) => {}
        }
        if let Ok(assignment) = self.consumer.assignment()
            && self.consumer.pause(&assignment).is_ok()
        {
            self.paused = true;
            self.settings.paused.set(1.0);
            tracing::debug!(component = %self.cx.component.id, "downstream is full; partitions paused");
        }
        loop {
            tokio::select! {
                _ = &mut send => break,
                Some((ticket, status)) = self.receipts.next(), if !self.receipts.is_empty() => {
                    self.settle(&ticket, status);
                }
                // Polling serves rebalances and keeps the group membership; what was
                // fetched before the pause is kept for after it.
                Some(message) = stream.next() => self.take_result(message, early),
            }
        }
        if self.paused {
            if let Ok(assignment) = self.consumer.assignment() {
                let _ = self.consumer.resume(&assignment);
            }
            self.paused = false;
            self.settings.paused.set(0.0);
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
                }
            }
            Settled::Delivered { advanced: false } | Settled::Stale => {}
            Settled::Failed(failure) => {
                let Some(resume) = failure.resume_from else {
                    return;
                };
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

    /// Stores `next` as the partition's offset to commit (librdkafka commits it in the
    /// background). A partition revoked meanwhile refuses it: its next owner re-reads.
    fn store(&self, partition: &Partition, next: i64) {
        let mut offsets = TopicPartitionList::new();
        if offsets
            .add_partition_offset(&partition.0, partition.1, Offset::Offset(next))
            .is_ok()
            && let Err(error) = self.consumer.store_offsets(&offsets)
        {
            tracing::debug!(component = %self.cx.component.id, topic = %partition.0, partition = partition.1, %error, "offset not stored (partition revoked)");
        }
    }

    /// Drops what the loop knows of revoked partitions: their late acknowledgements no
    /// longer count, and a later assignment starts from the committed offset.
    fn forget_revoked(&mut self) {
        let revoked = std::mem::take(
            &mut *self
                .rebalances
                .revoked
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        let revoked: HashSet<Partition> = revoked.into_iter().collect();
        for partition in revoked {
            self.settlement.forget(&partition);
            self.last_registered.remove(&partition);
            self.rewound.remove(&partition);
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

/// Puts the message's topic, partition, offset, key, timestamp and headers under
/// `metadata.<key>` of the event.
fn attach_metadata(event: &mut Event, key: &str, message: &BorrowedMessage<'_>) {
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
    if let Value::Object(root) = &mut event.value {
        let metadata = root
            .entry("metadata".into())
            .or_insert_with(|| Value::Object(ObjectMap::new()));
        if let Value::Object(metadata) = metadata {
            metadata.insert(key.into(), Value::Object(kafka));
        }
    }
}
