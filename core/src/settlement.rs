//! Ordered settlement: acknowledgements resolve in any order, a checkpoint moves only over
//! the settled prefix.
//!
//! A source keeps one [`OrderedSettlement`] and registers each batch it emits under a key
//! (a file, a content type, a query) with the checkpoint value the key reaches once that
//! batch and every batch registered before it under the same key are delivered. The
//! helper answers, per key, the checkpoint that is safe to save now. Keys are independent:
//! a slow or failed batch of one file holds back that file's checkpoint only.
//!
//! A batch may also name a *floor*: the highest checkpoint that is still safe while it is
//! unsettled. By default the floor is what the key had reached when the batch was
//! registered, which is right for data read in checkpoint order (file offsets, a query
//! sorted by its cursor field). A source whose batches can arrive below what it already
//! reached (a late Management Activity blob, listed behind the cursor) gives the floor
//! explicitly ([`OrderedSettlement::register_span`]); the checkpoint then never passes
//! the floor of an unsettled batch.
//!
//! What a failed batch does to the batches after it is the source's choice
//! ([`AfterFailure`]): read everything again from the failed batch (a file, a query), or
//! hold the checkpoint at the failed batch until the source fetches it again (a blob
//! known by its id).

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

use crate::BatchStatus;

/// What a failed batch does to the batches registered after it under the same key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Later batches are void (their acknowledgements are ignored) and the key's epoch
    /// moves on: the source reads again from the failed batch's floor, so what came after
    /// it is read again too. For data read in order: file offsets, cursor queries.
    Rewind,
    /// Later batches settle as usual; the failed one stays as a hole that holds the
    /// checkpoint at its floor until the source [abandons](OrderedSettlement::abandon) it
    /// (having registered it again, or given it up). For data fetched by identity: blobs.
    Hold,
}

/// A registered batch, to settle with its acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Ticket<K> {
    key: K,
    seq: u64,
}

impl<K> Ticket<K> {
    /// The key the batch was registered under.
    pub fn key(&self) -> &K {
        &self.key
    }
}

/// What settling a ticket did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled<C> {
    /// Delivered; `advanced` is true when the key's checkpoint moved.
    Delivered {
        /// The key's checkpoint moved.
        advanced: bool,
    },
    /// Failed: the checkpoint stops before it; the source reads it again.
    Failed(Failure<C>),
    /// The ticket no longer counts (void after a rewind, settled already, or its key was
    /// forgotten): nothing changed.
    Stale,
}

/// Where a source reads again after a failed batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure<C> {
    /// The checkpoint that was safe just before the failed batch (its floor); `None` when
    /// the key had no checkpoint yet (read again from the very start).
    pub resume_from: Option<C>,
    /// The key's epoch now. After a rewind it moved on: batches read before the rewind
    /// must not be registered (check [`OrderedSettlement::epoch`]).
    pub epoch: u64,
    /// How many later batches a rewind made void.
    pub voided: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Pending,
    Delivered,
    /// A held hole (AfterFailure::Hold).
    Failed,
    /// Given up on or registered again: settled as far as the checkpoint is concerned.
    Abandoned,
}

#[derive(Debug)]
struct Entry<C> {
    seq: u64,
    floor: Option<C>,
    reach: C,
    state: State,
}

#[derive(Debug)]
struct KeyState<C> {
    /// What the settled prefix reached (or the saved checkpoint).
    committed: Option<C>,
    /// Registered batches not yet passed by the prefix, in registration order.
    queue: VecDeque<Entry<C>>,
    epoch: u64,
}

impl<C: Clone + Ord> KeyState<C> {
    fn new(committed: Option<C>) -> Self {
        KeyState {
            committed,
            queue: VecDeque::new(),
            epoch: 0,
        }
    }

    /// What the key has reached once everything registered so far settles.
    fn tail_reach(&self) -> Option<C> {
        match self.queue.back() {
            Some(entry) => Some(entry.reach.clone()),
            None => self.committed.clone(),
        }
    }

    fn position(&self, seq: u64) -> Option<usize> {
        // Sequence numbers only grow and entries leave from either end: the queue is sorted.
        self.queue.binary_search_by_key(&seq, |e| e.seq).ok()
    }

    fn checkpoint(&self) -> Option<C> {
        let mut lowest = self.committed.clone();
        for entry in &self.queue {
            if matches!(entry.state, State::Pending | State::Failed) && entry.floor < lowest {
                lowest = entry.floor.clone();
            }
        }
        lowest
    }

    fn pop_settled(&mut self) {
        while self
            .queue
            .front()
            .is_some_and(|e| matches!(e.state, State::Delivered | State::Abandoned))
        {
            if let Some(entry) = self.queue.pop_front() {
                self.committed = Some(entry.reach);
            }
        }
    }
}

/// Per-key checkpoints that move only over batches settled in registration order.
#[derive(Debug)]
pub struct OrderedSettlement<K, C> {
    after_failure: AfterFailure,
    keys: HashMap<K, KeyState<C>>,
    next_seq: u64,
}

impl<K: Eq + Hash + Clone, C: Clone + Ord> OrderedSettlement<K, C> {
    /// An empty helper; `after_failure` says what a failed batch does to later ones.
    pub fn new(after_failure: AfterFailure) -> Self {
        OrderedSettlement {
            after_failure,
            keys: HashMap::new(),
            next_seq: 0,
        }
    }

    /// Starts tracking `key` from its saved checkpoint. A key tracked already starts
    /// afresh: its outstanding tickets become stale.
    pub fn track(&mut self, key: K, checkpoint: Option<C>) {
        let epoch = self.keys.get(&key).map_or(0, |k| k.epoch + 1);
        let mut state = KeyState::new(checkpoint);
        state.epoch = epoch;
        self.keys.insert(key, state);
    }

    /// Registers a batch about to be emitted, read in checkpoint order: its floor is
    /// what the key has reached so far. An untracked key starts without a checkpoint.
    pub fn register(&mut self, key: K, reaches: C) -> Ticket<K> {
        let state = self.state(&key);
        let floor = state.tail_reach();
        self.push(key, floor, reaches, State::Pending)
    }

    /// Registers a batch whose data may lie below what the key reached: while it is
    /// unsettled the checkpoint stays at or below `floor`.
    pub fn register_span(&mut self, key: K, floor: C, reaches: C) -> Ticket<K> {
        self.push(key, Some(floor), reaches, State::Pending)
    }

    /// Records a stretch with nothing to deliver (a listing window without new data):
    /// it settles in order, like an empty batch delivered at once.
    pub fn register_settled(&mut self, key: K, reaches: C) {
        let state = self.state(&key);
        if state.queue.is_empty() {
            state.committed = Some(reaches);
            return;
        }
        let floor = state.tail_reach();
        self.push(key, floor, reaches, State::Delivered);
    }

    /// Settles a ticket with its acknowledgement's outcome.
    pub fn settle(&mut self, ticket: &Ticket<K>, status: BatchStatus) -> Settled<C> {
        match status {
            BatchStatus::Delivered => self.delivered(ticket),
            BatchStatus::Failed => self.failed(ticket),
        }
    }

    /// The batch was delivered (or had nothing to deliver).
    pub fn delivered(&mut self, ticket: &Ticket<K>) -> Settled<C> {
        let Some((state, index)) = self.pending(ticket) else {
            return Settled::Stale;
        };
        let before = state.checkpoint();
        state.queue[index].state = State::Delivered;
        state.pop_settled();
        Settled::Delivered {
            advanced: state.checkpoint() != before,
        }
    }

    /// The batch was not delivered: the checkpoint stops before it, and the answer says
    /// where to read again.
    pub fn failed(&mut self, ticket: &Ticket<K>) -> Settled<C> {
        let after_failure = self.after_failure;
        let Some((state, index)) = self.pending(ticket) else {
            return Settled::Stale;
        };
        let resume_from = state.queue[index].floor.clone();
        let voided = match after_failure {
            AfterFailure::Hold => {
                state.queue[index].state = State::Failed;
                0
            }
            AfterFailure::Rewind => {
                let voided = state.queue.len() - index - 1;
                state.queue.truncate(index);
                state.epoch += 1;
                voided
            }
        };
        Settled::Failed(Failure {
            resume_from,
            epoch: state.epoch,
            voided,
        })
    }

    /// Stops a pending or held batch from holding the checkpoint: the source registered
    /// it again, or gave it up (and reported the loss). False for a stale ticket.
    pub fn abandon(&mut self, ticket: &Ticket<K>) -> bool {
        let Some(state) = self.keys.get_mut(&ticket.key) else {
            return false;
        };
        let Some(index) = state.position(ticket.seq) else {
            return false;
        };
        if !matches!(state.queue[index].state, State::Pending | State::Failed) {
            return false;
        }
        state.queue[index].state = State::Abandoned;
        state.pop_settled();
        true
    }

    /// The checkpoint that is safe to save for `key` now.
    pub fn checkpoint(&self, key: &K) -> Option<C> {
        self.keys.get(key).and_then(KeyState::checkpoint)
    }

    /// The key's epoch: it moves on at each rewind (0 for an untracked key).
    pub fn epoch(&self, key: &K) -> u64 {
        self.keys.get(key).map_or(0, |k| k.epoch)
    }

    /// True when nothing registered under `key` is waiting to settle.
    pub fn is_idle(&self, key: &K) -> bool {
        self.keys.get(key).is_none_or(|k| k.queue.is_empty())
    }

    /// Batches registered and not settled (pending or held after a failure), over all keys.
    pub fn outstanding(&self) -> usize {
        self.keys
            .values()
            .flat_map(|k| k.queue.iter())
            .filter(|e| matches!(e.state, State::Pending | State::Failed))
            .count()
    }

    /// Stops tracking `key` (a file that is gone); returns its checkpoint. Its
    /// outstanding tickets become stale.
    pub fn forget(&mut self, key: &K) -> Option<C> {
        self.keys.remove(key).and_then(|k| k.checkpoint())
    }

    fn state(&mut self, key: &K) -> &mut KeyState<C> {
        self.keys
            .entry(key.clone())
            .or_insert_with(|| KeyState::new(None))
    }

    fn push(&mut self, key: K, floor: Option<C>, reach: C, entry_state: State) -> Ticket<K> {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.state(&key).queue.push_back(Entry {
            seq,
            floor,
            reach,
            state: entry_state,
        });
        Ticket { key, seq }
    }

    fn pending(&mut self, ticket: &Ticket<K>) -> Option<(&mut KeyState<C>, usize)> {
        let state = self.keys.get_mut(&ticket.key)?;
        let index = state.position(ticket.seq)?;
        (state.queue[index].state == State::Pending).then_some((state, index))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn advanced(settled: Settled<u64>) -> bool {
        match settled {
            Settled::Delivered { advanced } => advanced,
            other => panic!("not delivered: {other:?}"),
        }
    }

    #[test]
    fn out_of_order_acknowledgements_move_the_checkpoint_over_the_prefix_only() {
        let mut s = OrderedSettlement::new(AfterFailure::Rewind);
        s.track("f", Some(0u64));
        let t: Vec<_> = [10, 20, 30, 40, 50]
            .into_iter()
            .map(|end| s.register("f", end))
            .collect();
        assert!(!advanced(s.delivered(&t[2])));
        assert!(!advanced(s.delivered(&t[4])));
        assert_eq!(s.checkpoint(&"f"), Some(0));
        assert!(advanced(s.delivered(&t[0])));
        assert_eq!(s.checkpoint(&"f"), Some(10));
        assert!(advanced(s.delivered(&t[1])));
        assert_eq!(s.checkpoint(&"f"), Some(30), "the delivered third joins");
        assert_eq!(s.outstanding(), 1);
        assert!(advanced(s.delivered(&t[3])));
        assert_eq!(s.checkpoint(&"f"), Some(50));
        assert!(s.is_idle(&"f"));
        assert_eq!(s.delivered(&t[3]), Settled::Stale, "settled twice");
    }

    #[test]
    fn a_failure_in_the_middle_rewinds_to_its_start_and_voids_what_came_after() {
        let mut s = OrderedSettlement::new(AfterFailure::Rewind);
        s.track(1u64, Some(0u64));
        let a = s.register(1, 10);
        let b = s.register(1, 20);
        let c = s.register(1, 30);
        assert_eq!(s.epoch(&1), 0);
        assert_eq!(
            s.failed(&b),
            Settled::Failed(Failure {
                resume_from: Some(10),
                epoch: 1,
                voided: 1
            })
        );
        assert_eq!(s.delivered(&c), Settled::Stale, "read again after b");
        assert!(advanced(s.delivered(&a)));
        assert_eq!(s.checkpoint(&1), Some(10), "stops before the failed batch");
        // The re-read from 10 under epoch 1.
        let again = s.register(1, 30);
        assert!(advanced(s.delivered(&again)));
        assert_eq!(s.checkpoint(&1), Some(30));
        assert_eq!(s.failed(&b), Settled::Stale);
    }

    #[test]
    fn a_failure_before_any_checkpoint_resumes_from_the_start() {
        let mut s = OrderedSettlement::new(AfterFailure::Rewind);
        let a = s.register("q", 5u64);
        assert_eq!(s.checkpoint(&"q"), None);
        assert_eq!(
            s.failed(&a),
            Settled::Failed(Failure {
                resume_from: None,
                epoch: 1,
                voided: 0
            })
        );
        assert_eq!(s.checkpoint(&"q"), None);
    }

    #[test]
    fn a_held_failure_keeps_later_batches_and_the_checkpoint_below_it() {
        let mut s = OrderedSettlement::new(AfterFailure::Hold);
        let a = s.register_span("ct", 10u64, 10);
        let b = s.register_span("ct", 20, 20);
        let c = s.register_span("ct", 30, 30);
        s.register_settled("ct", 60);
        assert_eq!(
            s.failed(&b),
            Settled::Failed(Failure {
                resume_from: Some(20),
                epoch: 0,
                voided: 0
            })
        );
        assert!(!advanced(s.delivered(&c)), "c counts, behind the hole");
        assert!(advanced(s.delivered(&a)));
        assert_eq!(s.checkpoint(&"ct"), Some(10));
        assert_eq!(s.outstanding(), 1, "the hole");
        // Fetched again: registered anew, the hole abandoned.
        let b2 = s.register_span("ct", 20, 60);
        assert!(s.abandon(&b));
        assert!(!s.abandon(&b), "once");
        assert_eq!(s.checkpoint(&"ct"), Some(20), "the retry's floor holds it");
        assert!(advanced(s.delivered(&b2)));
        assert_eq!(s.checkpoint(&"ct"), Some(60));
    }

    #[test]
    fn keys_have_their_own_prefixes() {
        let mut s = OrderedSettlement::new(AfterFailure::Rewind);
        s.track("a", Some(0u64));
        s.track("b", Some(100u64));
        let a1 = s.register("a", 10);
        let b1 = s.register("b", 110);
        let a2 = s.register("a", 20);
        let b2 = s.register("b", 120);
        assert!(matches!(s.failed(&a1), Settled::Failed(_)));
        assert_eq!(s.delivered(&a2), Settled::Stale);
        assert!(advanced(s.delivered(&b1)));
        assert!(advanced(s.delivered(&b2)));
        assert_eq!(s.checkpoint(&"a"), Some(0));
        assert_eq!(s.checkpoint(&"b"), Some(120));
        assert_eq!(s.epoch(&"a"), 1);
        assert_eq!(s.epoch(&"b"), 0, "a's failure is a's alone");
        assert_eq!(s.forget(&"b"), Some(120));
        assert_eq!(s.checkpoint(&"b"), None);
    }

    #[test]
    fn a_late_span_below_the_reached_checkpoint_pulls_it_back_until_settled() {
        let mut s = OrderedSettlement::new(AfterFailure::Hold);
        s.register_settled("ct", 60u64);
        assert_eq!(s.checkpoint(&"ct"), Some(60));
        let late = s.register_span("ct", 30, 60);
        assert_eq!(s.checkpoint(&"ct"), Some(30));
        assert!(advanced(s.delivered(&late)));
        assert_eq!(s.checkpoint(&"ct"), Some(60));
    }

    #[test]
    fn settle_takes_batch_statuses_and_track_resets_a_key() {
        let mut s = OrderedSettlement::new(AfterFailure::Rewind);
        let a = s.register("k", 1u64);
        assert!(advanced(s.settle(&a, BatchStatus::Delivered)));
        let b = s.register("k", 2);
        s.track("k", Some(7));
        assert_eq!(s.settle(&b, BatchStatus::Failed), Settled::Stale);
        assert_eq!(s.checkpoint(&"k"), Some(7));
        assert!(s.is_idle(&"k"));
        assert!(s.is_idle(&"never"));
    }
}
