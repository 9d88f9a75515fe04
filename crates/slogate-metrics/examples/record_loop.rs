//! The store's per-point cost on the end-to-end bench's shape, for `perf stat` and A/B runs:
//! 20,000 streams (per 16: 5 counters, 4 explicit histograms, 3 gauges, 4 more counters), each
//! getting a point every 0.4 s of simulated time, sent as requests of 1,000 points through
//! `record_points`. Between requests a 16 MiB buffer is walked, as the server's idle time and
//! the other processes of the bench evict its caches (`--warm` skips that).
//!
//! `cargo run --release -p slogate-metrics --example record_loop [-- --warm] [-- --single]`
//! prints CPU ns per point (of the store only; the walk is not timed). `--single` records point by
//! point (`record_point`), the path without the look-ahead.

use slogate_core::{MetricPoint, MetricSink, PointValue, Temporality};
use slogate_metrics::{MetricStore, MetricStoreConfig};
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

const STREAMS: usize = 20_000;
const BATCH: usize = 1_000;
const T0: u64 = 1_700_000_000 * 1_000_000_000;

/// This thread's CPU time (the machine may be shared: wall time would count waiting).
fn cpu_ns() -> u64 {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").expect("linux");
    s.split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .expect("schedstat")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let warm = args.iter().any(|a| a == "--warm");
    let single = args.iter().any(|a| a == "--single");
    let clock = Arc::new(AtomicU64::new(T0));
    let c = clock.clone();
    let cfg = MetricStoreConfig {
        max_series: 2 * STREAMS,
        max_series_per_metric: STREAMS,
        ..MetricStoreConfig::default()
    };
    let store = MetricStore::new(cfg, Arc::new(move || c.load(Relaxed)));
    let instances: Vec<String> = (0..STREAMS / 16).map(|i| format!("pod-{i:05}")).collect();
    let bounds: Vec<f64> = vec![
        0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 15.0,
    ];
    let names = [
        "http.server.requests",
        "http.server.request.duration",
        "jobs.queue.depth",
        "cache.operations",
    ];
    let mut thrash = vec![0u8; 16 << 20];
    let mut round: u64 = 0;
    let mut points = 0u64;
    let mut spent = Duration::ZERO;
    let deadline = Instant::now() + Duration::from_secs(6);
    while Instant::now() < deadline {
        round += 1;
        let t = T0 + round * 400_000_000;
        clock.store(t + 1_000_000, Relaxed);
        for start in (0..STREAMS).step_by(BATCH) {
            if !warm {
                for i in (0..thrash.len()).step_by(64) {
                    thrash[i] = thrash[i].wrapping_add(1);
                }
                black_box(&thrash);
            }
            let counts: Vec<[u64; 16]> = (0..BATCH)
                .map(|j| {
                    let mut c = [0u64; 16];
                    for (b, x) in c.iter_mut().enumerate() {
                        *x = round * ((j + b) % 5) as u64;
                    }
                    c
                })
                .collect();
            let attrs: Vec<[(&str, &str); 1]> = (0..BATCH)
                .map(|j| [("kind", ["a", "b", "c", "d"][(start + j) % 4])])
                .collect();
            let point_at = |j: usize| {
                let s = start + j;
                let kind = (s % 16) / 4;
                let value = match kind {
                    1 => PointValue::Histogram {
                        temporality: Temporality::Cumulative,
                        count: counts[j].iter().sum(),
                        sum: Some(round as f64),
                        min: None,
                        max: None,
                        bounds: &bounds,
                        counts: &counts[j],
                    },
                    2 => PointValue::Gauge((round % 100) as f64),
                    _ => PointValue::Sum {
                        value: (round * 3) as f64,
                        monotonic: true,
                        temporality: Temporality::Cumulative,
                    },
                };
                MetricPoint {
                    service: ["checkout", "payments", "search", "cart"][s % 4],
                    env: "prod",
                    version: "v1.4.2",
                    extras: ["", "", "", ""],
                    instance: &instances[s / 16],
                    metric: names[kind],
                    unit: if kind == 1 { "s" } else { "1" },
                    attributes: &attrs[j],
                    start_time_unix_nano: T0,
                    time_unix_nano: t,
                    value,
                }
            };
            let mut ok = 0u64;
            let t0 = cpu_ns();
            if single {
                for j in 0..BATCH {
                    ok += u64::from(store.record_point(&point_at(j)).is_ok());
                }
            } else {
                store.record_points(BATCH, &point_at, &mut |_, r| ok += u64::from(r.is_ok()));
            }
            spent += Duration::from_nanos(cpu_ns() - t0);
            assert_eq!(ok, BATCH as u64, "every point is stored");
            points += BATCH as u64;
        }
    }
    println!(
        "{} ns/point over {points} points ({} rounds, {} streams, {})",
        spent.as_nanos() as u64 / points,
        round,
        store.series_count(),
        if warm {
            "warm"
        } else {
            "caches walked between requests"
        }
    );
}
