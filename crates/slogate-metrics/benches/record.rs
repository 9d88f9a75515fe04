//! Criterion benchmarks for the metric store: `record_point` on a warm store (1,000 known
//! streams, so nothing is created) and window queries over 1,000 points.
//!
//! Measured on 2 vCPUs, "AMD EPYC" (a shared cloud VM, load average ~1 at the time),
//! `cargo bench --locked -p slogate-metrics --bench record -- --warm-up-time 1
//! --measurement-time 3`, the code before the pending accumulator (a copy of the previous
//! commit, this bench file) and after it run alternately, twice each; figures are per point
//! (median of the two runs' estimates), then memory per stream (`memory_bytes() / 1000` after
//! the warm-up, printed by the bench):
//!
//! | bench | before | after | memory before → after |
//! |---|---|---|---|
//! | `record_point/counter` (cumulative sum, 2 attributes) | 218 ns | 217 ns | 3,448 → 3,567 B |
//! | `record_point/histogram` (cumulative, 15 buckets, 10 points per 10 s cell) | 875 ns | 251 ns | 2,544 → 2,709 B |
//! | `record_point/histogram_sparse` (same, 1 point per cell: every point folds) | 879 ns | 473 ns | 11,313 → 10,362 B (600 s) |
//! | `record_point/exponential` (cumulative, scale 3, 40 buckets, 8 grow per point) | 3.64 µs | 388 ns | 3,822 → 3,668 B |
//! | `record_point/summary` (3 quantiles) | 179 ns | 158 ns | 1,816 → 1,937 B |
//! | `query_1000_points/gauge_avg` | 1.25 µs | 1.25 µs | |
//! | `query_1000_points/gauge_time_in_state` | 3.51 µs | 3.51 µs | |
//! | `query_1000_points/counter_rate` | 1.44 µs | 1.34 µs | |
//! | `query_1000_points/histogram_p99` (100 cells merged) | 9.66 µs | 9.65 µs | |
//!
//! - Before, a histogram point decoded the cell's sketch bytes into a scratch sketch, recorded
//!   and re-encoded them (and computed two `exp2` per exponential bucket). Now it adds counts
//!   to the stream's pending accumulator (representatives cached per layout) and the bytes are
//!   rewritten once per fold. No allocation for a known stream once its buffers have grown.
//! - What is left is mostly cache misses on cold per-stream state (1,000 streams round-robin):
//!   the counter path's ~210 ns, plus, when sparse, the expired cell `prune` drops (one per
//!   point in steady state; the new cell reuses its slot of the ring) and the fold itself.
//! - Memory: every stream carries the (empty) accumulator inline (+112 B) and a prune deadline
//!   (+8 B); a histogram stream adds 16 B per bucket; cell bytes are now allocated exactly.
//! - `query_1000_points` (one stream, 1,000 points in a 1,200 s window): unchanged; a
//!   histogram query also reads the open cell's pending increments (a few `record_n`).

use criterion::{Criterion, criterion_group, criterion_main};
use slogate_core::{MetricPoint, MetricSink, PointValue, Selector, Temporality};
use slogate_metrics::{Aggregate, Combine, MetricStore, MetricStoreConfig, Selection};
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

const STREAMS: usize = 1000;
const T0: u64 = 1_700_000_000 * 1_000_000_000;

fn store() -> (Arc<MetricStore>, Arc<AtomicU64>) {
    let clock = Arc::new(AtomicU64::new(T0));
    let c = clock.clone();
    let store = MetricStore::new(
        MetricStoreConfig::default(),
        Arc::new(move || c.load(Relaxed)),
    );
    (store, clock)
}

fn routes() -> Vec<[(&'static str, String); 2]> {
    (0..STREAMS)
        .map(|i| {
            [
                ("code", "200".to_string()),
                ("http.route", format!("/api/{i}")),
            ]
        })
        .collect()
}

fn point<'a>(
    attrs: &'a [(&'a str, &'a str)],
    metric: &'a str,
    unit: &'a str,
    t: u64,
    value: PointValue<'a>,
) -> MetricPoint<'a> {
    MetricPoint {
        service: "checkout",
        env: "prod",
        version: "v1",
        extras: ["", "", "", ""],
        instance: "pod-1",
        metric,
        unit,
        attributes: attrs,
        start_time_unix_nano: T0 - 1_000_000_000,
        time_unix_nano: t,
        value,
    }
}

fn record(c: &mut Criterion) {
    let routes = routes();
    let attrs: Vec<[(&str, &str); 2]> = routes
        .iter()
        .map(|[(k1, v1), (k2, v2)]| [(*k1, v1.as_str()), (*k2, v2.as_str())])
        .collect();
    let bounds: Vec<f64> = vec![
        0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    ];
    let quantiles = [(0.5, 0.012), (0.9, 0.045), (0.99, 0.2)];
    let mut g = c.benchmark_group("record_point");
    for kind in [
        "counter",
        "histogram",
        "histogram_sparse",
        "exponential",
        "summary",
    ] {
        // `histogram_sparse`: one point per stream per 10 s slot (a 10 s export interval), so
        // every point starts a new cell; the others: one point per stream per second.
        let step = if kind == "histogram_sparse" {
            10_000_000
        } else {
            1_000_000
        };
        let (store, clock) = store();
        let mut k: u64 = 0;
        // Per stream: explicit buckets (15), exponential buckets (40), the summary count. One
        // state for all streams keeps the bench simple: a stream's points still never decrease.
        let mut counts = vec![0u64; bounds.len() + 1];
        let mut positive = vec![0u64; 40];
        let mut zero = 0u64;
        // Each point is 1 ms after the previous one, so every stream's points are in order and
        // a stream sees one point per second: cells and rings reach their steady state.
        let one = |k: &mut u64, counts: &mut [u64], positive: &mut [u64], zero: &mut u64| {
            *k += 1;
            let t = T0 + *k * step;
            clock.store(t, Relaxed);
            let a = &attrs[(*k % STREAMS as u64) as usize];
            let value = match kind {
                "counter" => PointValue::Sum {
                    value: *k as f64,
                    monotonic: true,
                    temporality: Temporality::Cumulative,
                },
                "histogram" | "histogram_sparse" => {
                    counts[(*k % 7) as usize + 3] += 1;
                    PointValue::Histogram {
                        temporality: Temporality::Cumulative,
                        count: counts.iter().sum(),
                        sum: Some(*k as f64),
                        min: None,
                        max: None,
                        bounds: &bounds,
                        counts,
                    }
                }
                "exponential" => {
                    // A busy stream: 8 of the 40 buckets (and sometimes the zero bucket) grow.
                    for j in 0..8 {
                        positive[((*k * 7 + j * 5) % 40) as usize] += 1 + j % 3;
                    }
                    *zero += *k % 2;
                    PointValue::ExponentialHistogram {
                        temporality: Temporality::Cumulative,
                        count: positive.iter().sum::<u64>() + *zero,
                        sum: Some(*k as f64),
                        min: None,
                        max: None,
                        scale: 3,
                        zero_count: *zero,
                        zero_threshold: 0.0,
                        positive_offset: -54,
                        positive,
                        negative_offset: 0,
                        negative: &[],
                    }
                }
                _ => PointValue::Summary {
                    count: *k,
                    sum: *k as f64 * 0.02,
                    quantiles: &quantiles,
                },
            };
            let unit = if kind == "counter" { "" } else { "s" };
            store
                .record_point(&point(a, "http.server.requests", unit, t, value))
                .unwrap();
        };
        // Warm: every stream exists and has a full minute of points (10 minutes when sparse).
        for _ in 0..(60 * STREAMS) {
            one(&mut k, &mut counts, &mut positive, &mut zero);
        }
        assert_eq!(store.series_count(), STREAMS);
        eprintln!(
            "record_point/{kind}: memory {} bytes per stream after {} s",
            store.memory_bytes() / STREAMS,
            60 * step / 1_000_000
        );
        g.bench_function(kind, |b| {
            b.iter(|| one(&mut k, &mut counts, &mut positive, &mut zero))
        });
    }
    g.finish();
}

fn query(c: &mut Criterion) {
    let (store, clock) = store();
    let attrs: [(&str, &str); 0] = [];
    // One gauge and one counter stream with 1,000 points each, one per second, and a
    // histogram with 1,000 points (100 cells of 10 s).
    let bounds = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];
    let mut counts = [0u64; 9];
    for i in 0..1000u64 {
        let t = T0 + i * 1_000_000_000;
        clock.store(t, Relaxed);
        let gauge = PointValue::Gauge((i % 3) as f64);
        store
            .record_point(&point(&attrs, "breaker", "", t, gauge))
            .unwrap();
        let sum = PointValue::Sum {
            value: (i * 5) as f64,
            monotonic: true,
            temporality: Temporality::Cumulative,
        };
        store
            .record_point(&point(&attrs, "requests", "", t, sum))
            .unwrap();
        counts[(i % 9) as usize] += 3;
        let h = PointValue::Histogram {
            temporality: Temporality::Cumulative,
            count: counts.iter().sum(),
            sum: Some(i as f64),
            min: Some(0.001),
            max: Some(2.0),
            bounds: &bounds,
            counts: &counts,
        };
        store
            .record_point(&point(&attrs, "latency", "s", t, h))
            .unwrap();
    }
    clock.store(T0 + 1000 * 1_000_000_000, Relaxed);
    let cohort = Selector::new([("service", "checkout")], &[]).unwrap();
    let cases = [
        ("gauge_avg", "breaker", Aggregate::Avg),
        (
            "gauge_time_in_state",
            "breaker",
            Aggregate::TimeInState { state: Some(2.0) },
        ),
        ("counter_rate", "requests", Aggregate::Rate),
        ("histogram_p99", "latency", Aggregate::Quantile(0.99)),
    ];
    let mut g = c.benchmark_group("query_1000_points");
    for (name, metric, agg) in cases {
        let sel = Selection::new(metric);
        let m = store.query(&cohort, &sel, agg, Combine::Sum, 1200);
        assert!(m.value.is_some(), "{name}: {m:?}");
        g.bench_function(name, |b| {
            b.iter(|| black_box(store.query(&cohort, &sel, agg, Combine::Sum, 1200)))
        });
    }
    g.finish();
}

criterion_group!(benches, record, query);
criterion_main!(benches);
