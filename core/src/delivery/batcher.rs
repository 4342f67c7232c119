//! Cuts requests from encoded events: per partition, by event count, bytes and age.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use crate::event::Event;

/// One event and its wire form.
#[derive(Debug)]
pub struct Item {
    /// The event, kept for its acknowledgement and for the dead letter.
    pub event: Event,
    /// Its encoded bytes, as the sink put them in a request body.
    pub encoded: Vec<u8>,
}

/// The events of one request, all of one partition.
#[derive(Debug)]
pub struct Cut {
    /// What the sink groups requests by (an index name, say); empty when it does not.
    pub partition: String,
    /// The events, in arrival order.
    pub items: Vec<Item>,
}

#[derive(Debug)]
struct Open {
    items: Vec<Item>,
    bytes: u64,
    deadline: Instant,
}

/// Groups items per partition and cuts a request when it reaches `max_events`, when one
/// more item would pass `max_bytes`, or when its first item waited `timeout`.
#[derive(Debug)]
pub struct Batcher {
    max_events: usize,
    max_bytes: u64,
    timeout: Duration,
    per_item: u64,
    open: HashMap<String, Open>,
    ready: VecDeque<Cut>,
}

impl Batcher {
    /// A batcher whose byte limit counts each item's encoded size plus `per_item`
    /// separator bytes, out of `max_bytes` minus `per_request` framing bytes.
    pub fn new(
        max_events: usize,
        max_bytes: u64,
        timeout: Duration,
        per_item: u64,
        per_request: u64,
    ) -> Self {
        Batcher {
            max_events: max_events.max(1),
            max_bytes: max_bytes.saturating_sub(per_request).max(1),
            timeout,
            per_item,
            open: HashMap::new(),
            ready: VecDeque::new(),
        }
    }

    /// Adds an item to its partition's batch, cutting batches that are full.
    pub fn push(&mut self, partition: String, item: Item) {
        let size = item.encoded.len() as u64 + self.per_item;
        if let Some(open) = self.open.get(&partition)
            && open.bytes + size > self.max_bytes
        {
            self.cut(&partition);
        }
        let timeout = self.timeout;
        let open = self.open.entry(partition.clone()).or_insert_with(|| Open {
            items: Vec::new(),
            bytes: 0,
            deadline: Instant::now() + timeout,
        });
        open.items.push(item);
        open.bytes += size;
        if open.items.len() >= self.max_events || open.bytes >= self.max_bytes {
            self.cut(&partition);
        }
    }

    fn cut(&mut self, partition: &str) {
        if let Some(open) = self.open.remove(partition) {
            self.ready.push_back(Cut {
                partition: partition.to_string(),
                items: open.items,
            });
        }
    }

    /// The next batch ready to send.
    pub fn pop_ready(&mut self) -> Option<Cut> {
        self.ready.pop_front()
    }

    /// When the oldest open batch times out.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.open.values().map(|open| open.deadline).min()
    }

    /// Cuts every batch whose first item waited `timeout` by `now`.
    pub fn cut_expired(&mut self, now: Instant) {
        let mut expired: Vec<(Instant, String)> = self
            .open
            .iter()
            .filter(|(_, open)| open.deadline <= now)
            .map(|(partition, open)| (open.deadline, partition.clone()))
            .collect();
        expired.sort();
        for (_, partition) in expired {
            self.cut(&partition);
        }
    }

    /// Cuts every open batch (the input ended).
    pub fn cut_all(&mut self) {
        self.cut_expired(Instant::now() + self.timeout);
    }

    /// Events held, open or ready.
    pub fn len(&self) -> usize {
        self.open.values().map(|o| o.items.len()).sum::<usize>()
            + self.ready.iter().map(|c| c.items.len()).sum::<usize>()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(size: usize) -> Item {
        Item {
            event: Event::from_message("x"),
            encoded: vec![b'x'; size],
        }
    }

    fn sizes(batcher: &mut Batcher) -> Vec<(String, usize)> {
        std::iter::from_fn(|| batcher.pop_ready())
            .map(|cut| (cut.partition, cut.items.len()))
            .collect()
    }

    #[test]
    fn cuts_at_max_events() {
        let mut batcher = Batcher::new(3, 1 << 20, Duration::from_secs(60), 1, 0);
        for _ in 0..7 {
            batcher.push(String::new(), item(10));
        }
        assert_eq!(
            sizes(&mut batcher),
            [(String::new(), 3), (String::new(), 3)]
        );
        assert_eq!(batcher.len(), 1);
        batcher.cut_all();
        assert_eq!(sizes(&mut batcher), [(String::new(), 1)]);
        assert!(batcher.is_empty());
    }

    #[test]
    fn never_passes_max_bytes() {
        // 100 bytes, framing 2: room for 98 = 9 items of 10 + 1 separator each (99 > 98).
        let mut batcher = Batcher::new(1000, 100, Duration::from_secs(60), 1, 2);
        for _ in 0..20 {
            batcher.push(String::new(), item(10));
        }
        let cut = sizes(&mut batcher);
        assert_eq!(cut, [(String::new(), 8), (String::new(), 8)]);
        // An item larger than the limit goes alone.
        batcher.push(String::new(), item(500));
        batcher.push(String::new(), item(1));
        batcher.cut_all();
        let cut = sizes(&mut batcher);
        assert_eq!(
            cut,
            [(String::new(), 4), (String::new(), 1), (String::new(), 1)]
        );
    }

    #[test]
    fn partitions_batch_separately() {
        let mut batcher = Batcher::new(2, 1 << 20, Duration::from_secs(60), 1, 0);
        batcher.push("a".into(), item(1));
        batcher.push("b".into(), item(1));
        batcher.push("a".into(), item(1));
        assert_eq!(sizes(&mut batcher), [("a".to_string(), 2)]);
        batcher.cut_all();
        assert_eq!(sizes(&mut batcher), [("b".to_string(), 1)]);
    }

    #[tokio::test(start_paused = true)]
    async fn cuts_by_age() {
        let mut batcher = Batcher::new(100, 1 << 20, Duration::from_secs(1), 1, 0);
        batcher.push("a".into(), item(1));
        tokio::time::advance(Duration::from_millis(600)).await;
        batcher.push("b".into(), item(1));
        let first = batcher.next_deadline().expect("open batches");
        batcher.cut_expired(Instant::now());
        assert!(batcher.pop_ready().is_none(), "nothing is a second old yet");
        tokio::time::sleep_until(first).await;
        batcher.cut_expired(Instant::now());
        assert_eq!(sizes(&mut batcher), [("a".to_string(), 1)]);
        tokio::time::advance(Duration::from_millis(600)).await;
        batcher.cut_expired(Instant::now());
        assert_eq!(sizes(&mut batcher), [("b".to_string(), 1)]);
    }
}
