//! Listings served page by page. The rows of one query at one snapshot are computed once
//! and kept for the pages that follow (as a real service keeps a paged query's result), so a
//! page costs its own records rather than the whole collection again. Rows are kept by their
//! coordinates ([`Entry`], a few dozen bytes) and a page renders its own records only: a week
//! of a large tenant — a million sign-ins, 200,000 alerts — stays servable at the documented
//! request rates within a little memory.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::catalog::{Entry, Renderer, Row};
use super::odata::Collection;
use super::time::Ticks;
use crate::state::lock;
use crate::world::World;

/// What decides a listing's rows: the caller's tenant, the collection, the query options a
/// nextLink repeats, the snapshot instant and the `Prefer` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ListingKey {
    pub(crate) tenant: usize,
    pub(crate) collection: Collection,
    /// [`super::paging::query_hash`] of the carried options.
    pub(crate) query: u64,
    pub(crate) snapshot: Ticks,
    pub(crate) unknown_members: bool,
}

/// The filtered, sorted rows of one query at one snapshot.
#[derive(Debug)]
pub(crate) struct Listing {
    entries: Vec<Entry>,
    renderer: Renderer,
}

impl Listing {
    /// Keeps the coordinates of `rows` (in their order), rendered by `renderer`.
    pub(crate) fn new(renderer: Renderer, rows: Vec<Row>) -> Self {
        let mut entries: Vec<Entry> = rows.into_iter().map(|row| row.entry).collect();
        entries.shrink_to_fit();
        Listing { entries, renderer }
    }

    /// Rows in the listing.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The records of rows `start..end` as served.
    pub(crate) fn records(&self, world: &World, start: usize, end: usize) -> Vec<Value> {
        self.entries[start..end]
            .iter()
            .map(|entry| self.renderer.record(world, entry))
            .collect()
    }
}

/// The latest listings, most recently used last.
#[derive(Debug, Default)]
pub(crate) struct ListingCache {
    kept: Mutex<VecDeque<(ListingKey, Arc<Listing>)>>,
}

impl ListingCache {
    /// Listings kept: every collection of a few concurrent clients (a week of a large
    /// tenant's rows is a few dozen megabytes).
    const KEPT: usize = 8;

    /// The listing of `key`, built by `build` (outside the lock) when it is not kept.
    pub(crate) fn get_or_build(
        &self,
        key: ListingKey,
        build: impl FnOnce() -> Listing,
    ) -> Arc<Listing> {
        if let Some(found) = self.take(&key) {
            return found;
        }
        let built = Arc::new(build());
        let mut kept = lock(&self.kept);
        // A concurrent request may have built the same listing meanwhile: keep one.
        kept.retain(|(k, _)| *k != key);
        if kept.len() >= Self::KEPT {
            kept.pop_front();
        }
        kept.push_back((key, Arc::clone(&built)));
        built
    }

    /// The kept listing of `key`, moved to the most recently used end.
    fn take(&self, key: &ListingKey) -> Option<Arc<Listing>> {
        let mut kept = lock(&self.kept);
        let at = kept.iter().position(|(k, _)| k == key)?;
        let entry = kept.remove(at)?;
        let listing = Arc::clone(&entry.1);
        kept.push_back(entry);
        Some(listing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(query: u64) -> ListingKey {
        ListingKey {
            tenant: 0,
            collection: Collection::Alerts,
            query,
            snapshot: 1,
            unknown_members: false,
        }
    }

    fn listing(n: usize) -> Listing {
        let view = crate::graph::catalog::View {
            now: 0,
            from: 0,
            unknown_members: false,
        };
        Listing {
            entries: (0..n)
                .map(|i| Entry::Incident {
                    hour: 0,
                    index: i as u32,
                    version: 0,
                })
                .collect(),
            renderer: Renderer::new(0, Collection::Alerts, view, false),
        }
    }

    #[test]
    fn builds_once_per_key_and_keeps_the_most_recently_used() {
        let cache = ListingCache::default();
        let mut builds = 0;
        for round in 0..2 {
            for q in 0..ListingCache::KEPT as u64 {
                let l = cache.get_or_build(key(q), || {
                    builds += 1;
                    listing(q as usize)
                });
                assert_eq!(l.len(), q as usize, "round {round}");
            }
        }
        assert_eq!(
            builds,
            ListingCache::KEPT,
            "the second round is served from the cache"
        );
        // Key 0 used again, then one new key: the least recently used (1) goes, 0 stays.
        cache.get_or_build(key(0), || unreachable!("kept"));
        cache.get_or_build(key(100), || listing(0));
        cache.get_or_build(key(0), || unreachable!("kept"));
        let mut rebuilt = false;
        cache.get_or_build(key(1), || {
            rebuilt = true;
            listing(1)
        });
        assert!(rebuilt, "the least recently used listing was dropped");
    }
}
