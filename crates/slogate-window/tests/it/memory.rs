//! Memory per series, measured: the registry's own accounting (`Registry::memory`, the
//! `slogate_series_memory_bytes` metric) against the bytes a counting allocator saw, and the
//! issue-6 target of at most 4 KiB of live state per active series, at 2, 20, 100 and 2,000
//! spans/s per series.
//!
//! Traffic is realistic: two ingest threads (two shards), log-normal latencies (σ = 0.5, a
//! median per operation between 5 and 200 ms), a few closed slots and a busy open slot.

use crate::alloc::{MEASURING, net_bytes};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use slogate_core::{Observation, ObservationWriter, Operation, Recorder};
use slogate_window::{ManualClock, Registry, WindowConfig};

const T0: u64 = 1_800_000_000;
const TARGET: usize = 4096;

struct Case {
    series: usize,
    /// Spans per series per 10 s slot (so 20 = 2 spans/s).
    per_slot: usize,
    /// Closed slots before the measurement; the open slot is full as well.
    closed_slots: usize,
    /// Bound on live bytes per series.
    live_bound: usize,
}

struct Measured {
    allocator: usize,
    live: usize,
    closed: usize,
}

fn lognormal(rng: &mut StdRng, median_ns: f64, sigma: f64) -> u64 {
    // Box–Muller: one standard normal from two uniforms.
    let (u1, u2): (f64, f64) = (rng.random::<f64>().max(1e-12), rng.random());
    let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
    (median_ns * (sigma * z).exp()) as u64
}

fn run(c: &Case) -> Measured {
    // Names and medians exist before the measurement starts and outlive it.
    let services: Vec<String> = (0..c.series.div_ceil(100))
        .map(|s| format!("service-{s:03}"))
        .collect();
    let ops: Vec<String> = (0..100)
        .map(|o| format!("/api/v1/resource-{o:02}/{{id}}"))
        .collect();
    let medians: Vec<f64> = (0..100)
        .map(|o| 5e6 * 40f64.powf(o as f64 / 99.0))
        .collect();

    let before = net_bytes();
    let clock = ManualClock::new(T0);
    let registry = Registry::new(WindowConfig::default(), clock.clone());
    // Two long-lived ingest threads (as the server's workers are), each with its own shard;
    // between slots the main thread moves the clock and closes.
    let barrier = std::sync::Barrier::new(3);
    std::thread::scope(|scope| {
        for t in 0..2u64 {
            let (services, ops, medians, registry, barrier) =
                (&services, &ops, &medians, &registry, &barrier);
            scope.spawn(move || {
                let mut rng = StdRng::seed_from_u64(t);
                for _ in 0..=c.closed_slots {
                    let mut w = registry.writer();
                    for i in 0..c.series {
                        let (svc, op) = (&services[i / 100], i % 100);
                        for _ in 0..c.per_slot / 2 {
                            w.record(&Observation {
                                service: svc.as_bytes(),
                                env: b"production",
                                version: b"v1.4.2",
                                operation: Operation::pair(b"GET", b' ', ops[op].as_bytes()),
                                extras: [b""; 4],
                                error: rng.random_bool(0.01),
                                duration_ns: lognormal(&mut rng, medians[op], 0.5),
                                adjusted_count: 1,
                            });
                        }
                    }
                    drop(w);
                    barrier.wait();
                    barrier.wait();
                }
            });
        }
        for _ in 0..c.closed_slots {
            barrier.wait();
            clock.advance(10);
            registry.close_slots();
            barrier.wait();
        }
        // The last slot stays open.
        barrier.wait();
        barrier.wait();
    });
    assert_eq!(registry.series_count(), c.series);
    let allocator = (net_bytes() - before) as usize;
    let m = registry.memory();
    drop(registry);
    Measured {
        allocator,
        live: m.live,
        closed: m.closed(),
    }
}

#[test]
fn registry_accounting_matches_the_allocator_and_live_state_fits_4_kib() {
    let _measuring = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    let cases = [
        Case {
            series: 1_000,
            per_slot: 200,
            closed_slots: 3,
            live_bound: TARGET,
        },
        Case {
            series: 10_000,
            per_slot: 20,
            closed_slots: 2,
            live_bound: TARGET,
        },
        Case {
            series: 100,
            per_slot: 1_000,
            closed_slots: 2,
            live_bound: TARGET,
        },
        Case {
            series: 20,
            per_slot: 20_000,
            closed_slots: 2,
            live_bound: TARGET,
        },
    ];
    for c in &cases {
        let m = run(c);
        let counted = m.live + m.closed;
        let per = |b: usize| b / c.series;
        eprintln!(
            "{} series, {} spans per series per slot: allocator {} B/series, registry {} B/series (live {}, closed {} for {} slots)",
            c.series,
            c.per_slot,
            per(m.allocator),
            per(counted),
            per(m.live),
            per(m.closed),
            c.closed_slots
        );
        let diff = counted.abs_diff(m.allocator);
        assert!(
            diff * 20 <= m.allocator,
            "{} series: registry says {counted} B, allocator {} B (more than 5 % apart)",
            c.series,
            m.allocator
        );
        assert!(
            per(m.live) <= c.live_bound,
            "{} series: {} B of live state per series",
            c.series,
            per(m.live)
        );
    }
}
