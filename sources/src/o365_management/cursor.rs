//! Cursors per (tenant, content type) and the content ids already processed, with their
//! on-disk form (`state.json`).
//!
//! The cursor is a `contentCreated` below which every listed blob was delivered end to
//! end. Core's ordered settlement ([`OrderedSettlement`], one key per feed) keeps it:
//! listing registers each admitted blob with its `contentCreated` as floor and how far
//! listing got as what it reaches, and each stretch listed without new blobs as settled.
//! Acknowledgements come in any order; the cursor is what the settled prefix reached,
//! never past an unsettled blob's `contentCreated`. A blob whose delivery failed stays as
//! a held hole until it is listed (and fetched) again, or expires.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use siemflow_core::settlement::{AfterFailure, OrderedSettlement, Ticket};

use super::listing::Descriptor;

/// The state file inside the component's state folder.
pub(crate) const FILE_NAME: &str = "state.json";

const FORMAT_VERSION: u32 = 1;

/// A feed: (tenant id lower-cased, content type).
pub(crate) type FeedKey = (String, String);

/// The settlement of every feed's blobs.
type Settlement = OrderedSettlement<FeedKey, DateTime<Utc>>;

/// What to do with a listed descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// New: fetch it (it is now pending).
    Fetch,
    /// Delivered (or skipped for good) before.
    AlreadyProcessed,
    /// Listed earlier and still on its way.
    InFlight,
    /// Past its contentExpiration: it cannot be fetched any more.
    Expired,
}

/// What a feed keeps besides its settlement.
#[derive(Debug, Default)]
pub(crate) struct ContentCursor {
    /// How far listing got: every blob created before this was listed (and admitted).
    listed_through: Option<DateTime<Utc>>,
    /// Admitted and not yet settled, by contentId.
    in_flight: HashMap<String, Ticket<FeedKey>>,
    /// Not delivered, held until listed again: contentId → (hole, contentExpiration).
    retry: HashMap<String, (Ticket<FeedKey>, DateTime<Utc>)>,
    /// Delivered or skipped for good. Id → contentExpiration (forgotten after it).
    processed: HashMap<String, DateTime<Utc>>,
    /// When /start was last called for this content type (the 15-minute rule).
    subscription_started_at: Option<DateTime<Utc>>,
}

impl ContentCursor {
    /// When /start was last called.
    #[cfg(test)]
    pub(crate) fn subscription_started_at(&self) -> Option<DateTime<Utc>> {
        self.subscription_started_at
    }

    fn saved(&self, cursor: Option<DateTime<Utc>>, now: DateTime<Utc>) -> SavedCursor {
        SavedCursor {
            cursor,
            subscription_started_at: self.subscription_started_at,
            processed: self
                .processed
                .iter()
                .filter(|(_, expiration)| **expiration > now)
                .map(|(id, expiration)| (id.clone(), *expiration))
                .collect(),
        }
    }

    fn from_saved(saved: SavedCursor) -> Self {
        ContentCursor {
            listed_through: saved.cursor,
            subscription_started_at: saved.subscription_started_at,
            processed: saved.processed.into_iter().collect(),
            ..ContentCursor::default()
        }
    }
}

/// One feed's cursor and its settlement, borrowed from the [`SourceState`].
pub(crate) struct FeedCursor<'a> {
    key: FeedKey,
    cursor: &'a mut ContentCursor,
    settlement: &'a mut Settlement,
}

impl FeedCursor<'_> {
    /// The cursor: every listed blob created before it was delivered.
    pub(crate) fn cursor(&self) -> Option<DateTime<Utc>> {
        self.settlement.checkpoint(&self.key)
    }

    /// Decides about a listed descriptor, and notes that listing got as far as it.
    pub(crate) fn admit(&mut self, d: &Descriptor, now: DateTime<Utc>) -> Admission {
        self.listed(d.content_created);
        let c = &mut *self.cursor;
        if c.processed.contains_key(&d.content_id) {
            return Admission::AlreadyProcessed;
        }
        if c.in_flight.contains_key(&d.content_id) {
            return Admission::InFlight;
        }
        // Listed again: the retry is under way (or moot), so its hole no longer holds the
        // cursor; the new registration below does while it is pending.
        if let Some((hole, _)) = c.retry.remove(&d.content_id) {
            self.settlement.abandon(&hole);
        }
        if d.content_expiration <= now {
            c.processed
                .insert(d.content_id.clone(), d.content_expiration);
            return Admission::Expired;
        }
        let reaches = c.listed_through.unwrap_or(d.content_created);
        let ticket = self
            .settlement
            .register_span(self.key.clone(), d.content_created, reaches);
        c.in_flight.insert(d.content_id.clone(), ticket);
        Admission::Fetch
    }

    /// Listing has covered everything created before `t`.
    pub(crate) fn listed(&mut self, t: DateTime<Utc>) {
        if self.cursor.listed_through.is_none_or(|l| l < t) {
            self.cursor.listed_through = Some(t);
            self.settlement.register_settled(self.key.clone(), t);
        }
    }

    /// The blob was delivered, or is skipped for good (missing, expired, too large).
    pub(crate) fn processed(&mut self, d: &Descriptor) {
        if let Some(ticket) = self.cursor.in_flight.remove(&d.content_id) {
            self.settlement.delivered(&ticket);
        }
        self.cursor
            .processed
            .insert(d.content_id.clone(), d.content_expiration);
    }

    /// The blob was not delivered: keep the cursor below it until it is listed again.
    pub(crate) fn failed(&mut self, d: &Descriptor) {
        if let Some(ticket) = self.cursor.in_flight.remove(&d.content_id) {
            self.settlement.failed(&ticket);
            self.cursor
                .retry
                .insert(d.content_id.clone(), (ticket, d.content_expiration));
        }
    }

    /// Forgets what expired; returns the retries that expired before they succeeded.
    pub(crate) fn prune(&mut self, now: DateTime<Utc>) -> Vec<String> {
        self.cursor
            .processed
            .retain(|_, expiration| *expiration > now);
        let lost: Vec<String> = self
            .cursor
            .retry
            .iter()
            .filter(|(_, (_, expiration))| *expiration <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &lost {
            if let Some((hole, _)) = self.cursor.retry.remove(id) {
                self.settlement.abandon(&hole);
            }
        }
        lost
    }

    /// When /start was last called.
    pub(crate) fn subscription_started_at(&self) -> Option<DateTime<Utc>> {
        self.cursor.subscription_started_at
    }

    /// Notes a /start call.
    pub(crate) fn subscription_started(&mut self, at: DateTime<Utc>) {
        self.cursor.subscription_started_at = Some(at);
    }

    /// Blobs admitted and not settled.
    #[cfg(test)]
    pub(crate) fn pending_count(&self) -> usize {
        self.cursor.in_flight.len()
    }
}

/// Every cursor of the source, keyed by (tenant id, content type).
#[derive(Debug)]
pub(crate) struct SourceState {
    cursors: HashMap<FeedKey, ContentCursor>,
    /// A failed blob is fetched again by its id: it holds its feed's cursor, later blobs
    /// still count.
    settlement: Settlement,
    dirty: bool,
}

impl Default for SourceState {
    fn default() -> Self {
        SourceState {
            cursors: HashMap::new(),
            settlement: OrderedSettlement::new(AfterFailure::Hold),
            dirty: false,
        }
    }
}

fn feed_key(tenant_id: &str, content_type: &str) -> FeedKey {
    (tenant_id.to_ascii_lowercase(), content_type.to_string())
}

impl SourceState {
    /// The cursor of one (tenant, content type), created empty if new.
    pub(crate) fn cursor_mut(&mut self, tenant_id: &str, content_type: &str) -> FeedCursor<'_> {
        self.dirty = true;
        let key = feed_key(tenant_id, content_type);
        let cursor = self.cursors.entry(key.clone()).or_default();
        FeedCursor {
            key,
            cursor,
            settlement: &mut self.settlement,
        }
    }

    /// The cursor of one (tenant, content type), if it has one.
    pub(crate) fn cursor(&self, tenant_id: &str, content_type: &str) -> Option<DateTime<Utc>> {
        self.settlement
            .checkpoint(&feed_key(tenant_id, content_type))
    }

    /// What else one feed keeps, if it exists.
    #[cfg(test)]
    pub(crate) fn feed(&self, tenant_id: &str, content_type: &str) -> Option<&ContentCursor> {
        self.cursors.get(&feed_key(tenant_id, content_type))
    }

    /// True when something changed since the last snapshot.
    pub(crate) fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// The on-disk form, pruning what expired; clears the dirty flag.
    pub(crate) fn snapshot(&mut self, now: DateTime<Utc>) -> SavedState {
        self.dirty = false;
        let mut feeds: BTreeMap<String, BTreeMap<String, SavedCursor>> = BTreeMap::new();
        for (key, cursor) in &mut self.cursors {
            cursor.processed.retain(|_, expiration| *expiration > now);
            let checkpoint = self.settlement.checkpoint(key);
            feeds
                .entry(key.0.clone())
                .or_default()
                .insert(key.1.clone(), cursor.saved(checkpoint, now));
        }
        SavedState {
            version: FORMAT_VERSION,
            tenants: feeds,
        }
    }

    /// Marks the state as needing a write (after a failed save).
    pub(crate) fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    /// Restores what a previous run saved.
    pub(crate) fn from_saved(saved: SavedState) -> Self {
        let mut state = SourceState::default();
        for (tenant, feeds) in saved.tenants {
            for (content_type, cursor) in feeds {
                let key = feed_key(&tenant, &content_type);
                state.settlement.track(key.clone(), cursor.cursor);
                state.cursors.insert(key, ContentCursor::from_saved(cursor));
            }
        }
        state
    }
}

/// `state.json`.
#[derive(Debug, Serialize, Deserialize, Default, PartialEq)]
pub(crate) struct SavedState {
    /// Format version, for later migrations.
    pub version: u32,
    /// Tenant id → content type → cursor.
    pub tenants: BTreeMap<String, BTreeMap<String, SavedCursor>>,
}

/// One (tenant, content type) on disk.
#[derive(Debug, Serialize, Deserialize, Default, PartialEq)]
pub(crate) struct SavedCursor {
    /// Every blob listed with a contentCreated before this was delivered.
    pub cursor: Option<DateTime<Utc>>,
    /// When /start was last called.
    #[serde(default)]
    pub subscription_started_at: Option<DateTime<Utc>>,
    /// contentId → contentExpiration of blobs delivered or skipped for good.
    #[serde(default)]
    pub processed: BTreeMap<String, DateTime<Utc>>,
}

/// Loads `state.json`; a missing file is a first start, a corrupt one an error (never a
/// silent reset, which would re-read days of data).
pub(crate) fn load(path: &Path) -> anyhow::Result<SourceState> {
    match siemflow_core::state::load_json::<SavedState>(path) {
        Ok(Some(saved)) if saved.version == FORMAT_VERSION => Ok(SourceState::from_saved(saved)),
        Ok(Some(saved)) => anyhow::bail!(
            "{} has format version {}, this siemflow reads version {FORMAT_VERSION}",
            path.display(),
            saved.version
        ),
        Ok(None) => Ok(SourceState::default()),
        Err(e) => Err(anyhow::anyhow!(
            "cannot read the o365_management state {}: {e} (move it away to start again from start_from)",
            path.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    fn t(minutes: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_790_000_000, 0).expect("time") + TimeDelta::minutes(minutes)
    }

    fn blob(id: &str, created: i64) -> Descriptor {
        Descriptor {
            content_id: id.into(),
            content_uri: format!("http://h/{id}"),
            content_created: t(created),
            content_expiration: t(created) + TimeDelta::days(7),
        }
    }

    #[test]
    fn the_cursor_stays_below_every_unsettled_blob() {
        let mut state = SourceState::default();
        let mut c = state.cursor_mut("t", "Audit.Exchange");
        assert_eq!(c.cursor(), None);
        let (a, b, d) = (blob("a", 10), blob("b", 20), blob("c", 30));
        for x in [&a, &b, &d] {
            assert_eq!(c.admit(x, t(0)), Admission::Fetch);
        }
        c.listed(t(60));
        assert_eq!(c.cursor(), Some(t(10)));
        // Later blobs delivered first do not move it past the first.
        c.processed(&d);
        c.processed(&b);
        assert_eq!(c.cursor(), Some(t(10)));
        c.processed(&a);
        assert_eq!(c.cursor(), Some(t(60)));
    }

    #[test]
    fn a_failed_blob_holds_the_cursor_until_listed_again() {
        let mut state = SourceState::default();
        let mut c = state.cursor_mut("t", "Audit.Exchange");
        let (a, b) = (blob("a", 10), blob("b", 20));
        c.admit(&a, t(0));
        c.admit(&b, t(0));
        c.listed(t(60));
        c.failed(&a);
        c.processed(&b);
        assert_eq!(c.cursor(), Some(t(10)));
        // A second pass lists both: b is done, a is fetched again.
        assert_eq!(c.admit(&a, t(1)), Admission::Fetch);
        assert_eq!(c.admit(&b, t(1)), Admission::AlreadyProcessed);
        assert_eq!(c.cursor(), Some(t(10)));
        c.processed(&a);
        assert_eq!(c.cursor(), Some(t(60)));
    }

    #[test]
    fn a_late_blob_below_the_listing_frontier_pulls_the_cursor_back() {
        let mut state = SourceState::default();
        let mut c = state.cursor_mut("t", "Audit.Exchange");
        c.listed(t(60));
        let late = blob("late", 30);
        assert_eq!(c.admit(&late, t(0)), Admission::Fetch);
        assert_eq!(c.cursor(), Some(t(30)));
        assert_eq!(c.admit(&late, t(0)), Admission::InFlight);
        c.processed(&late);
        assert_eq!(c.cursor(), Some(t(60)));
    }

    #[test]
    fn expired_descriptors_and_processed_ids() {
        let mut state = SourceState::default();
        let mut c = state.cursor_mut("t", "Audit.Exchange");
        let old = blob("old", 0);
        assert_eq!(c.admit(&old, t(0) + TimeDelta::days(8)), Admission::Expired);
        assert_eq!(c.admit(&old, t(0)), Admission::AlreadyProcessed);
        assert!(c.prune(t(0) + TimeDelta::days(8)).is_empty());
        assert_eq!(
            c.admit(&old, t(0)),
            Admission::Fetch,
            "forgotten after expiry"
        );
        c.failed(&old);
        assert_eq!(c.prune(t(0) + TimeDelta::days(8)), vec!["old".to_string()]);
        assert_eq!(c.cursor(), Some(t(0)));
    }

    #[test]
    fn saves_and_restores() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE_NAME);
        let mut state = load(&path).expect("first start");
        let mut c = state.cursor_mut("41463F53-8812-40f4-890f-865bf6e35190", "Audit.Exchange");
        let (a, b) = (blob("a", 10), blob("b", 20));
        c.admit(&a, t(0));
        c.admit(&b, t(0));
        c.processed(&b);
        c.subscription_started(t(1));
        let snapshot = state.snapshot(t(0));
        assert!(!state.is_dirty());
        siemflow_core::state::save_json(&path, &snapshot).expect("save");
        let mut restored = load(&path).expect("load");
        assert_eq!(
            restored.cursor("41463f53-8812-40f4-890f-865bf6e35190", "Audit.Exchange"),
            Some(t(10)),
            "the pending blob a holds it"
        );
        let c = restored
            .feed("41463f53-8812-40f4-890f-865bf6e35190", "Audit.Exchange")
            .expect("feed");
        assert_eq!(c.subscription_started_at(), Some(t(1)));
        assert!(c.processed.contains_key("b"));
        let mut c = restored.cursor_mut("41463f53-8812-40f4-890f-865bf6e35190", "Audit.Exchange");
        assert_eq!(c.pending_count(), 0);
        assert_eq!(c.admit(&b, t(0)), Admission::AlreadyProcessed);
        assert_eq!(c.admit(&a, t(0)), Admission::Fetch, "a is fetched again");
        std::fs::write(&path, b"{broken").expect("write");
        assert!(load(&path).is_err());
    }

    #[test]
    fn acknowledgements_in_any_order_are_remembered_at_once() {
        let mut state = SourceState::default();
        let mut c = state.cursor_mut("t", "Audit.General");
        let (a, b, d) = (blob("a", 10), blob("b", 20), blob("c", 30));
        for x in [&a, &b, &d] {
            c.admit(x, t(0));
        }
        c.processed(&d);
        // The cursor waits for a, but c is not fetched again by the next pass.
        assert_eq!(c.cursor(), Some(t(10)));
        assert_eq!(c.admit(&d, t(1)), Admission::AlreadyProcessed);
        assert_eq!(c.admit(&a, t(1)), Admission::InFlight);
        assert_eq!(c.pending_count(), 2);
    }

    #[test]
    fn each_feed_has_its_own_cursor() {
        let mut state = SourceState::default();
        let held = blob("held", 10);
        let mut exchange = state.cursor_mut("t", "Audit.Exchange");
        exchange.admit(&held, t(0));
        exchange.listed(t(60));
        exchange.failed(&held);
        let mut general = state.cursor_mut("t", "Audit.General");
        let other = blob("other", 10);
        general.admit(&other, t(0));
        general.listed(t(60));
        general.processed(&other);
        assert_eq!(state.cursor("t", "Audit.Exchange"), Some(t(10)));
        assert_eq!(state.cursor("T", "Audit.General"), Some(t(60)));
    }
}
