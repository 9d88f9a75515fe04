//! Criterion benchmarks for the metric store: `record_point` on a warm store (1,000 known
//! streams, so nothing is created or allocated) and window queries over 1,000 points.
//!
//! Measured on 2 vCPUs, "AMD EPYC" (a shared cloud VM, load average 4-5 from other builds, so
//! figures are pessimistic), `--warm-up-time 1 --measurement-time 3`:
//! - `record_point/counter` (cumulative sum, 2 attributes, 1,000 streams): 227 ns per point
//!   (median 223 ns); no allocation for a known stream.
//! - `record_point/histogram` (cumulative, 15 buckets, 10 points per 10 s cell): 0.90 µs per
//!   point: most of it re-decodes and re-encodes the cell's sketch bytes through the scratch
//!   sketch. Keeping the open cell as a live `Sketch` would trade that for ~10 KiB per stream.
//! - `query_1000_points` (one stream, 1,000 points in a 1,200 s window): `gauge_avg` 1.3 µs,
//!   `gauge_time_in_state` 4.1 µs, `counter_rate` 1.6 µs, `histogram_p99` (100 cells merged)
//!   11.6 µs.

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
    let mut g = c.benchmark_group("record_point");
    for kind in ["counter", "histogram"] {
        let (store, clock) = store();
        let mut k: u64 = 0;
        let mut counts = vec![0u64; bounds.len() + 1];
        // Each point is 1 ms after the previous one, so every stream's points are in order and
        // a stream sees one point per second: cells and rings reach their steady state.
        let one = |k: &mut u64, counts: &mut [u64]| {
            *k += 1;
            let t = T0 + *k * 1_000_000;
            clock.store(t, Relaxed);
            let a = &attrs[(*k % STREAMS as u64) as usize];
            let value = if kind == "counter" {
                PointValue::Sum {
                    value: *k as f64,
                    monotonic: true,
                    temporality: Temporality::Cumulative,
                }
            } else {
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
            };
            let unit = if kind == "counter" { "" } else { "s" };
            store
                .record_point(&point(a, "http.server.requests", unit, t, value))
                .unwrap();
        };
        // Warm: every stream exists and has a full minute of points.
        for _ in 0..(60 * STREAMS) {
            one(&mut k, &mut counts);
        }
        assert_eq!(store.series_count(), STREAMS);
        g.bench_function(kind, |b| b.iter(|| one(&mut k, &mut counts)));
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
