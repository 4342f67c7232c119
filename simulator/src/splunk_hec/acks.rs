//! Indexer acknowledgement state: per-channel sequential ackIds (reference §1.6).

use std::collections::HashMap;
use std::time::Instant;

/// When an issued ackId turns true; `None` = lost, it never does.
type Due = Option<Instant>;

/// Every channel's pending acknowledgements.
#[derive(Debug, Default)]
pub(crate) struct Channels {
    channels: HashMap<String, Channel>,
}

#[derive(Debug, Default)]
struct Channel {
    next: u64,
    pending: HashMap<u64, Due>,
}

impl Channels {
    /// How many ackIds of `channel` wait to be reported.
    pub(crate) fn pending(&self, channel: &str) -> usize {
        self.channels
            .get(&channel.to_ascii_lowercase())
            .map_or(0, |c| c.pending.len())
    }

    /// Issues the channel's next ackId (ids start at 0 and increase by one per request).
    pub(crate) fn issue(&mut self, channel: &str, due: Due) -> u64 {
        let c = self
            .channels
            .entry(channel.to_ascii_lowercase())
            .or_default();
        let id = c.next;
        c.next += 1;
        c.pending.insert(id, due);
        id
    }

    /// Answers an ack query. An ackId reported true is forgotten (asked again: false), as
    /// Splunk does; unknown, pending and lost ids are false.
    pub(crate) fn query(&mut self, channel: &str, ids: &[u64], now: Instant) -> Vec<(u64, bool)> {
        let Some(c) = self.channels.get_mut(&channel.to_ascii_lowercase()) else {
            return ids.iter().map(|id| (*id, false)).collect();
        };
        ids.iter()
            .map(|id| {
                let done = matches!(c.pending.get(id), Some(Some(due)) if *due <= now);
                if done {
                    c.pending.remove(id);
                }
                (*id, done)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn ids_are_per_channel_and_forgotten_once_reported() {
        let mut c = Channels::default();
        let now = Instant::now();
        assert_eq!(c.issue("A", Some(now)), 0);
        assert_eq!(c.issue("a", Some(now + Duration::from_secs(60))), 1);
        assert_eq!(c.issue("b", None), 0);
        assert_eq!(
            c.query("a", &[0, 1, 9], now),
            vec![(0, true), (1, false), (9, false)]
        );
        assert_eq!(c.query("a", &[0], now), vec![(0, false)]);
        assert_eq!(
            c.query("b", &[0], now + Duration::from_secs(3600)),
            vec![(0, false)]
        );
        assert_eq!(c.pending("a"), 1);
    }
}
