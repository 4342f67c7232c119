//! Measures what the overlap cursor's emitted pairs cost: a backfill walk of a day of
//! sign-ins holds ~180,000 (id, version) pairs per kind, and every cursor file write copies
//! and serializes the delivered ones.
//!
//! `cargo run --release -p siemflow-sources --example cursor_memory [pairs]` fills one
//! cursor with `pairs` (default 180,000) pairs shaped like Graph's (a GUID id, an ISO 8601
//! time with seven fractional digits as the version), marks them delivered, takes a snapshot
//! and writes it as the cursor file is written, and prints the bytes per pair: the
//! allocator's count (bytes asked for; a reallocation counts the old and the new block)
//! and the process's resident set (what malloc really took: VmRSS, and VmHWM for the peak
//! of the write).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{DateTime, SecondsFormat, TimeDelta};
use siemflow_sources::microsoft::{CursorStore, RecordVersion};

/// The system allocator, counting the bytes live and their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call goes to the system allocator with the caller's layout unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is passed on.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is passed on.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// This process's resident set (`VmRSS`) or its peak (`VmHWM`), in bytes.
fn status_bytes(field: &str) -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|kb| {
            kb.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<usize>()
                .ok()
        })
        .map_or(0, |kb| kb * 1024)
}

/// A GUID-shaped id, distinct for each `n`.
fn guid(n: u64) -> String {
    // splitmix64: well-spread bits from a counter.
    let mix = |mut z: u64| {
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let (a, b) = (mix(n), mix(!n));
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

fn vm_rss() -> usize {
    status_bytes("VmRSS:")
}

fn vm_hwm() -> usize {
    status_bytes("VmHWM:")
}

fn per_pair(bytes: usize, pairs: usize) -> f64 {
    bytes as f64 / pairs.max(1) as f64
}

fn main() -> anyhow::Result<()> {
    let pairs: usize = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 180_000,
    };
    let dir = tempfile::tempdir()?;
    let mut store = CursorStore::open(dir.path().join("cursors.json"), TimeDelta::minutes(15))?;
    let start = DateTime::from_timestamp(1_790_000_000, 0).unwrap_or_default();
    let (live_before, rss_before) = (LIVE.load(Ordering::Relaxed), vm_rss());
    let mut versions = Vec::with_capacity(pairs);
    let cursor = store.cursor_mut("tenant/sign_ins");
    for n in 0..pairs {
        let at = start + TimeDelta::milliseconds(n as i64 * 480) + TimeDelta::nanoseconds(100);
        let version = at.to_rfc3339_opts(SecondsFormat::Nanos, true);
        // Graph writes seven fractional digits.
        let version = format!("{}Z", &version[..version.len() - 3]);
        // The strings are made as a page's records make them; what is measured is what the
        // cursor keeps of them.
        let pair = RecordVersion::new(guid(n as u64), version);
        cursor.admit(pair, at);
        versions.push(pair);
    }
    cursor.settle(&versions, true);
    drop(versions);
    let (live_held, rss_held, hwm_held) = (LIVE.load(Ordering::Relaxed), vm_rss(), vm_hwm());
    PEAK.store(live_held, Ordering::Relaxed);
    let snapshot = store.snapshot();
    let path = dir.path().join("written.json");
    siemflow_sources::microsoft::cursor::write(&path, &snapshot)?;
    let file_bytes = std::fs::metadata(&path)?.len() as usize;
    let (peak_saving, hwm_saving) = (PEAK.load(Ordering::Relaxed), vm_hwm());
    println!("pairs: {pairs}");
    println!(
        "held in the cursor: {:.1} bytes/pair asked of the allocator, {:.1} bytes/pair of VmRSS ({:.1} MiB)",
        per_pair(live_held - live_before, pairs),
        per_pair(rss_held.saturating_sub(rss_before), pairs),
        (rss_held.saturating_sub(rss_before)) as f64 / 1048576.0
    );
    println!(
        "a cursor file write on top (snapshot + JSON): {:.1} bytes/pair asked at its peak, {:.1} bytes/pair more peak RSS (VmHWM); the file is {:.1} bytes/pair ({:.1} MiB)",
        per_pair(peak_saving - live_held, pairs),
        per_pair(hwm_saving.saturating_sub(hwm_held), pairs),
        per_pair(file_bytes, pairs),
        file_bytes as f64 / 1048576.0
    );
    Ok(())
}
