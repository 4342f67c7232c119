//! Listings served page by page. The rows of one query at one snapshot are computed once
//! and kept for the pages that follow (as a real service keeps a paged query's result), so a
//! page costs its own records rather than the whole collection again. Rows are kept by their
//! coordinates ([`Entry`], a few dozen bytes) and a page renders its own records only: a week
//! of a large tenant — a million sign-ins, 200,000 alerts — stays servable at the documented
//! request rates within a little memory.

use std::collections::VecDeque;
use std::ops::Range;
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

/// The filtered, sorted rows of one query at one snapshot: a range of rows that may be
/// shared with the [index](Listing::within) it was cut from.
#[derive(Debug)]
pub(crate) struct Listing {
    entries: Arc<[Entry]>,
    /// Each row's `lastUpdateDateTime`, for cutting a range by it.
    updated: Arc<[Ticks]>,
    range: Range<usize>,
    renderer: Renderer,
}

impl Listing {
    /// Keeps the coordinates of `rows` (in their order), rendered by `renderer`.
    pub(crate) fn new(renderer: Renderer, rows: Vec<Row>) -> Self {
        let updated: Arc<[Ticks]> = rows.iter().map(|row| row.updated).collect();
        let entries: Arc<[Entry]> = rows.into_iter().map(|row| row.entry).collect();
        Listing {
            range: 0..entries.len(),
            entries,
            updated,
            renderer,
        }
    }

    /// Rows in the listing.
    pub(crate) fn len(&self) -> usize {
        self.range.len()
    }

    /// The records of rows `start..end` as served.
    pub(crate) fn records(&self, world: &World, start: usize, end: usize) -> Vec<Value> {
        let base = self.range.start;
        self.entries[base + start..base + end]
            .iter()
            .map(|entry| self.renderer.record(world, entry))
            .collect()
    }

    /// The rows updated in `[lo, hi)`, sharing this listing's rows. This listing must be
    /// sorted by `lastUpdateDateTime` (`descending` says which way), so they are one run:
    /// a query bounded only on its sort key is served by binary search instead of listing
    /// the collection again (the Graph collectors page by `ge` the last key read, a new
    /// query per page).
    pub(crate) fn within(&self, lo: Option<Ticks>, hi: Option<Ticks>, descending: bool) -> Self {
        let rows = &self.updated[self.range.clone()];
        let admitted = |t: &Ticks| lo.is_none_or(|lo| *t >= lo) && hi.is_none_or(|hi| *t < hi);
        // Ascending: rows below `lo` come first, rows at or past `hi` last; descending the
        // other way round.
        let (before, through) = if descending {
            (
                rows.partition_point(|t| hi.is_some_and(|hi| *t >= hi)),
                rows.partition_point(|t| lo.is_none_or(|lo| *t >= lo)),
            )
        } else {
            (
                rows.partition_point(|t| lo.is_some_and(|lo| *t < lo)),
                rows.partition_point(|t| hi.is_none_or(|hi| *t < hi)),
            )
        };
        let through = through.max(before);
        debug_assert!(rows[before..through].iter().all(admitted));
        Listing {
            entries: Arc::clone(&self.entries),
            updated: Arc::clone(&self.updated),
            range: self.range.start + before..self.range.start + through,
            renderer: self.renderer,
        }
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
        let rows = (0..n)
            .map(|i| Row {
                id: format!("id-{i}"),
                created: i as Ticks,
                updated: (i / 2) as Ticks,
                entry: Entry::Incident {
                    hour: 0,
                    index: i as u32,
                    version: 0,
                },
            })
            .collect();
        Listing::new(Renderer::new(0, Collection::Alerts, view, false), rows)
    }

    fn indices(listing: &Listing) -> Vec<u32> {
        listing.entries[listing.range.clone()]
            .iter()
            .map(|entry| match entry {
                Entry::Incident { index, .. } => *index,
                _ => unreachable!("incident rows"),
            })
            .collect()
    }

    #[test]
    fn a_range_by_update_time_is_the_rows_a_filter_would_keep() {
        // Rows updated 0,0,1,1,2,2,...,9,9 ascending.
        let all = listing(20);
        let cut = all.within(Some(3), Some(6), false);
        assert_eq!(indices(&cut), [6, 7, 8, 9, 10, 11]);
        assert_eq!(cut.len(), 6);
        assert_eq!(indices(&all.within(Some(9), None, false)), [18, 19]);
        assert_eq!(indices(&all.within(None, Some(1), false)), [0, 1]);
        assert_eq!(all.within(Some(10), None, false).len(), 0);
        assert_eq!(all.within(Some(5), Some(5), false).len(), 0);
        // A range of a range.
        assert_eq!(indices(&cut.within(Some(4), None, false)), [8, 9, 10, 11]);
        // Descending: updated 9,9,8,8,...,0,0.
        let view = crate::graph::catalog::View {
            now: 0,
            from: 0,
            unknown_members: false,
        };
        let mut rows: Vec<Row> = (0..20u32)
            .map(|i| Row {
                id: format!("id-{i}"),
                created: 0,
                updated: (i / 2) as Ticks,
                entry: Entry::Incident {
                    hour: 0,
                    index: i,
                    version: 0,
                },
            })
            .collect();
        rows.reverse();
        let down = Listing::new(Renderer::new(0, Collection::Alerts, view, false), rows);
        assert_eq!(indices(&down.within(Some(3), Some(5), true)), [9, 8, 7, 6]);
        assert_eq!(indices(&down.within(Some(9), None, true)), [19, 18]);
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
