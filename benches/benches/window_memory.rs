//! Memory of the window registry, in bytes per series, at three traffic levels: the live state
//! (keys, index, caches, open slots) and the closed slots kept for windows, per series-hour.
//! Not a criterion bench: it prints a table (`cargo bench -p slogate-benches --bench
//! window_memory`). The figures come from `Registry::memory`, which
//! `crates/slogate-window/tests/it/memory.rs` checks against a counting allocator.
//!
//! 100 series (one service, 100 operations, one version), two ingest threads, log-normal
//! latencies (σ = 0.5, per-operation medians 5–200 ms), 1 % errors, default windows (10 s fine
//! slots kept 1 h, 5 min coarse slots kept 3 d). After one simulated hour (360 closed slots and
//! a full open one) the fine ring holds exactly one hour and the coarse ring 12 slots, i.e. one
//! hour; every further hour adds the coarse part only, while the fine part stays.
//!
//! Measured on 2 vCPUs, "Intel(R) Xeon(R) Processor" (a shared cloud VM, load 5–6 from other
//! builds), see BENCHMARKS.md "Memory per series, in more detail" for the table.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal};
use slogate_core::{Observation, ObservationWriter, Operation, Recorder};
use slogate_window::{ManualClock, Registry, WindowConfig};
use std::sync::Barrier;
use std::time::{Duration, Instant};

const T0: u64 = 1_800_000_000;
const SERIES: usize = 100;
const SLOTS: usize = 360;

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not, and this takes seconds.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let ops: Vec<String> = (0..SERIES)
        .map(|o| format!("/api/v1/resource-{o:02}/{{id}}"))
        .collect();
    let latencies: Vec<LogNormal<f64>> = (0..SERIES)
        .map(|o| {
            LogNormal::new((5e6 * 40f64.powf(o as f64 / (SERIES - 1) as f64)).ln(), 0.5)
                .expect("valid")
        })
        .collect();
    println!(
        "| spans/s per series | live B/series | fine ring B/series (1 h) | coarse ring B/series-hour | closed B/series-hour (fine + coarse) | B per fine slot | close_slots per series |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for rate in [1usize, 10, 100] {
        let clock = ManualClock::new(T0);
        let registry = Registry::new(WindowConfig::default(), clock.clone());
        let barrier = Barrier::new(3);
        let mut closing = Duration::ZERO;
        std::thread::scope(|scope| {
            for t in 0..2u64 {
                let (ops, latencies, registry, barrier) = (&ops, &latencies, &registry, &barrier);
                scope.spawn(move || {
                    let mut rng = StdRng::seed_from_u64(t);
                    for _ in 0..=SLOTS {
                        let mut w = registry.writer();
                        for (op, lat) in ops.iter().zip(latencies) {
                            for _ in 0..rate * 10 / 2 + (t as usize) * (rate * 10 % 2) {
                                w.record(&Observation {
                                    service: b"checkout",
                                    env: b"production",
                                    version: b"v1.4.2",
                                    operation: Operation::pair(b"GET", b' ', op.as_bytes()),
                                    extras: [b""; 4],
                                    error: rng.random_bool(0.01),
                                    duration_ns: lat.sample(&mut rng) as u64,
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
            for i in 0..=SLOTS {
                barrier.wait();
                if i < SLOTS {
                    clock.advance(10);
                    let t = Instant::now();
                    registry.close_slots();
                    closing += t.elapsed();
                }
                barrier.wait();
            }
        });
        let m = registry.memory();
        let w = registry.query(
            &slogate_core::Selector::new([("service", "checkout")], &[]).expect("valid"),
            3600,
        );
        assert_eq!(
            w.requests,
            (SERIES * rate * 10 * (SLOTS + 1)) as u64,
            "every span is in the hour"
        );
        let per = |b: usize| b / SERIES;
        println!(
            "| {rate} | {} | {} | {} | {} | {} | {:.1} µs |",
            per(m.live),
            per(m.fine),
            per(m.coarse),
            per(m.fine + m.coarse),
            m.fine / (SERIES * SLOTS),
            closing.as_secs_f64() * 1e6 / (SLOTS * SERIES) as f64,
        );
    }
}
