//! The hot path allocates nothing per span: once the series exist and the buffers are warm,
//! decoding, extracting and recording a whole 512-span export request makes zero heap
//! allocations. A counting global allocator measures it, so this test fails on any regression.
//!
//! The same allocator keeps the net bytes allocated by the whole process, which the memory
//! tests compare with the registry's own accounting; tests that allocate a lot hold
//! [`MEASURING`] so they do not disturb each other's figures.
#![allow(unsafe_code)] // a counting global allocator is unsafe by nature

use crate::requests::{pipeline, request_with};
use slogate_window::WindowConfig;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};

struct Counting;

thread_local! {
    // Only allocations made by the measuring thread count, so other test threads do not interfere.
    static COUNT: Cell<Option<u64>> = const { Cell::new(None) };
}

/// Bytes requested and not yet freed, by every thread of the process.
static NET_BYTES: AtomicI64 = AtomicI64::new(0);

/// Held by tests whose allocations must not overlap another test's measurement.
pub static MEASURING: Mutex<()> = Mutex::new(());

/// Heap bytes in use by the process (as requested from the allocator, without its overhead).
pub fn net_bytes() -> i64 {
    NET_BYTES.load(Relaxed)
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = COUNT.try_with(|c| c.set(c.get().map(|n| n + 1)));
        NET_BYTES.fetch_add(layout.size() as i64, Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        NET_BYTES.fetch_sub(layout.size() as i64, Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = COUNT.try_with(|c| c.set(c.get().map(|n| n + 1)));
        NET_BYTES.fetch_add(new_size as i64 - layout.size() as i64, Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn count_allocations(f: impl FnOnce()) -> u64 {
    COUNT.with(|c| c.set(Some(0)));
    f();
    COUNT.with(|c| c.replace(None)).unwrap_or(0)
}

#[test]
fn decode_extract_record_allocates_nothing_per_span() {
    let _measuring = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    let (registry, pipeline) = pipeline(WindowConfig::default());
    // Warm-up: creates the series, grows the buffers, and lets each series' sketch grow its
    // bucket range over the latencies it sees (a range grows a handful of times per series,
    // never per span).
    for seed in 1..=5 {
        let tally = pipeline.process(&request_with(seed, false), false).unwrap();
        assert_eq!(tally.recorded, 512);
    }
    let series = registry.series_count();
    // Same series, new spans (new ids, new latencies within the warmed ranges).
    let next = request_with(6, false);
    let mut recorded = 0;
    let mut per = Vec::new();
    for _ in 0..10 {
        per.push(count_allocations(|| {
            recorded += pipeline.process(&next, false).unwrap().recorded;
        }));
    }
    let n: u64 = per.iter().sum();
    assert_eq!(recorded, 5120);
    assert_eq!(
        registry.series_count(),
        series,
        "no new series in the measured round"
    );
    assert_eq!(
        n, 0,
        "heap allocations per 512-span request while decoding and recording: {per:?}"
    );
}

/// Over the caps, a flood of new keys (a new route every span, a new version every request)
/// costs no allocation either: the shard learns where its services' overflow goes.
#[test]
fn a_cardinality_flood_over_the_caps_allocates_nothing_per_span() {
    let _measuring = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    let cfg = WindowConfig {
        max_series_per_service: 4,
        max_overflow_series_per_service: 2,
        ..WindowConfig::default()
    };
    let (registry, pipeline) = pipeline(cfg);
    // Warm-up: fills each service's 4 series and 2 overflow cohorts, then its service-wide
    // overflow series (from the third version on).
    for seed in 1..=5 {
        let tally = pipeline.process(&request_with(seed, true), false).unwrap();
        assert_eq!(tally.recorded, 512);
    }
    let series = registry.series_count();
    assert_eq!(
        series,
        4 * (4 + 3),
        "4 services × (4 regular + 2 cohort + 1 service overflow)"
    );
    let fast = registry
        .stats
        .overflow_fast
        .load(std::sync::atomic::Ordering::Relaxed);
    let mut recorded = 0;
    let mut per = Vec::new();
    for seed in 6..16 {
        let next = request_with(seed, true);
        per.push(count_allocations(|| {
            recorded += pipeline.process(&next, false).unwrap().recorded;
        }));
    }
    let n: u64 = per.iter().sum();
    assert_eq!(recorded, 5120);
    assert_eq!(registry.series_count(), series, "no new series");
    assert_eq!(
        registry
            .stats
            .overflow_fast
            .load(std::sync::atomic::Ordering::Relaxed)
            - fast,
        5120,
        "every span placed from the shard's overflow cache"
    );
    assert_eq!(
        n, 0,
        "heap allocations per 512-span over-cap request: {per:?}"
    );
}
