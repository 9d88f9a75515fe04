//! Data-driven tests of the store: ingest rules, every aggregate on hand-computed series, the
//! no-data sentences, caps and overflow, retention, slot close, and quantile error bounds.

use crate::{Aggregate as A, Combine, Measure, MetricStore, MetricStoreConfig, Selection};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use slogate_core::{
    MetricPoint, MetricSink, PointRefusal, PointValue, Selector, Temporality as Tp,
};
use slogate_sketch::{Sketch, nearest_rank};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A slot-aligned start of time for every test, in seconds.
const T0: u64 = 1_700_000_000;
const NS: u64 = 1_000_000_000;

struct Env {
    store: Arc<MetricStore>,
    clock: Arc<AtomicU64>,
}

impl Env {
    fn new(cfg: MetricStoreConfig) -> Env {
        let clock = Arc::new(AtomicU64::new(T0 * NS));
        let c = clock.clone();
        Env {
            store: MetricStore::new(cfg, Arc::new(move || c.load(Relaxed))),
            clock,
        }
    }
    fn default() -> Env {
        Env::new(MetricStoreConfig::default())
    }
    /// Sets the clock to `T0 + secs`.
    fn at(&self, secs: f64) {
        self.clock.store(ns(secs), Relaxed);
    }
    /// Records at clock `T0 + secs` (or later, when the clock is already ahead).
    fn rec(&self, p: MetricPoint<'_>) -> Result<(), PointRefusal> {
        let t = p.time_unix_nano.max(self.clock.load(Relaxed));
        self.clock.store(t, Relaxed);
        self.store.record_point(&p)
    }
    fn q(&self, sel: &Selection, agg: A, window: u64) -> Measure {
        self.store
            .query(&cohort(&[]), sel, agg, Combine::Sum, window)
    }
}

fn ns(secs: f64) -> u64 {
    ((T0 * NS) as i64 + (secs * 1e9).round() as i64) as u64
}

fn cohort(extra: &[(&str, &str)]) -> Selector {
    let mut pairs = vec![("service", "checkout")];
    pairs.extend_from_slice(extra);
    Selector::new(pairs, &["region".to_string()]).unwrap()
}

fn pt<'a>(metric: &'a str, secs: f64, value: PointValue<'a>) -> MetricPoint<'a> {
    MetricPoint {
        service: "checkout",
        env: "prod",
        version: "v1",
        extras: ["", "", "", ""],
        instance: "pod-1",
        metric,
        unit: "",
        attributes: &[],
        start_time_unix_nano: 0,
        time_unix_nano: ns(secs),
        value,
    }
}

fn gauge(v: f64) -> PointValue<'static> {
    PointValue::Gauge(v)
}

fn counter(v: f64) -> PointValue<'static> {
    PointValue::Sum {
        value: v,
        monotonic: true,
        temporality: Tp::Cumulative,
    }
}

fn sum(v: f64, monotonic: bool, temporality: Tp) -> PointValue<'static> {
    PointValue::Sum {
        value: v,
        monotonic,
        temporality,
    }
}

fn sel(metric: &str) -> Selection {
    Selection::new(metric)
}

fn close(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * y.abs().max(1.0),
        (None, None) => true,
        _ => false,
    }
}

#[test]
fn gauge_aggregates() {
    let e = Env::default();
    for (i, v) in [3.0, 1.0, 4.0, 1.0, 5.0, 9.0].into_iter().enumerate() {
        e.rec(pt("queue", i as f64 * 10.0, gauge(v))).unwrap();
    }
    e.at(55.0);
    // (aggregate, window, value, points, seconds)
    let cases = [
        (A::Last, 60, Some(9.0), 6, 50.0),
        (A::Min, 60, Some(1.0), 6, 50.0),
        (A::Max, 60, Some(9.0), 6, 50.0),
        (A::Avg, 60, Some(23.0 / 6.0), 6, 50.0),
        (A::Sum, 60, Some(23.0), 6, 50.0),
        (A::Count, 60, Some(6.0), 6, 50.0),
        (A::Avg, 25, Some(5.0), 3, 20.0),
        (A::Min, 25, Some(1.0), 3, 20.0),
        (A::Count, 25, Some(3.0), 3, 20.0),
        (A::Last, 1, None, 0, 0.0),
    ];
    for (agg, window, want, points, seconds) in cases {
        let m = e.q(&sel("queue"), agg, window);
        assert!(close(m.value, want), "{agg} over {window}: {m:?}");
        assert_eq!((m.points, m.seconds), (points, seconds), "{agg} {window}");
        assert_eq!(m.kind, Some("gauge"));
        assert_eq!(m.gap.is_some(), want.is_none(), "{m:?}");
    }
}

/// `(secs, start secs or None, value)` points of one sum stream, then increase and rate over
/// the last 60 s at `T0 + 100` (the window starts at `T0 + 40`).
#[test]
fn sum_increase_and_rate() {
    type Pts = &'static [(f64, Option<f64>, f64)];
    let c = Tp::Cumulative;
    let d = Tp::Delta;
    // (name, monotonic, temporality, points, increase, rate)
    type Case = (&'static str, bool, Tp, Pts, Option<f64>, Option<f64>);
    let cases: &[Case] = &[
        (
            "steady",
            true,
            c,
            &[
                (30.0, Some(-1000.0), 10.0),
                (50.0, Some(-1000.0), 15.0),
                (70.0, Some(-1000.0), 25.0),
                (90.0, Some(-1000.0), 40.0),
            ],
            Some(25.0),
            Some(25.0 / 40.0),
        ),
        (
            "reset by start time",
            true,
            c,
            &[
                (50.0, Some(-1000.0), 100.0),
                (70.0, Some(60.0), 5.0),
                (90.0, Some(60.0), 12.0),
            ],
            Some(12.0),
            Some(12.0 / 30.0),
        ),
        (
            "reset by drop",
            true,
            c,
            &[
                (50.0, Some(-1000.0), 100.0),
                (70.0, Some(-1000.0), 3.0),
                (90.0, Some(-1000.0), 10.0),
            ],
            Some(10.0),
            Some(10.0 / 40.0),
        ),
        (
            "born in the window",
            true,
            c,
            &[(90.0, Some(80.0), 7.0)],
            Some(7.0),
            Some(0.7),
        ),
        (
            "born before the window",
            true,
            c,
            &[(90.0, Some(0.0), 7.0)],
            None,
            None,
        ),
        (
            "no start time: first point is the baseline",
            true,
            c,
            &[(70.0, None, 5.0), (90.0, None, 8.0)],
            Some(3.0),
            Some(3.0 / 20.0),
        ),
        (
            "one point without start time",
            true,
            c,
            &[(90.0, None, 8.0)],
            None,
            None,
        ),
        (
            "up-down counter",
            false,
            c,
            &[
                (50.0, Some(-1000.0), 10.0),
                (70.0, Some(-1000.0), 4.0),
                (90.0, Some(-1000.0), 6.0),
            ],
            Some(-4.0),
            Some(-4.0 / 40.0),
        ),
        (
            "up-down counter restarted",
            false,
            c,
            &[
                (50.0, Some(-1000.0), 10.0),
                (70.0, Some(60.0), -2.0),
                (90.0, Some(60.0), 1.0),
            ],
            Some(1.0),
            Some(1.0 / 30.0),
        ),
        (
            "delta without start",
            true,
            d,
            &[(50.0, None, 3.0), (70.0, None, 4.0), (90.0, None, 5.0)],
            Some(12.0),
            Some(12.0 / 40.0),
        ),
        (
            "delta with start",
            true,
            d,
            &[
                (50.0, Some(40.0), 3.0),
                (70.0, Some(50.0), 4.0),
                (90.0, Some(70.0), 5.0),
            ],
            Some(12.0),
            Some(12.0 / 50.0),
        ),
        (
            "single delta point",
            true,
            d,
            &[(90.0, Some(80.0), 2.0)],
            Some(2.0),
            Some(0.2),
        ),
        (
            "single delta point without start: no span",
            true,
            d,
            &[(90.0, None, 2.0)],
            Some(2.0),
            None,
        ),
        (
            "non-monotonic delta",
            false,
            d,
            &[(50.0, None, -3.0), (70.0, None, 5.0)],
            Some(2.0),
            Some(2.0 / 20.0),
        ),
    ];
    for &(name, monotonic, temporality, points, increase, rate) in cases {
        let e = Env::default();
        for &(t, start, v) in points {
            let mut p = pt("reqs", t, sum(v, monotonic, temporality));
            p.start_time_unix_nano = start.map_or(0, ns);
            e.rec(p).unwrap();
        }
        e.at(100.0);
        let inc = e.q(&sel("reqs"), A::Increase, 60);
        let total = e.q(&sel("reqs"), A::Sum, 60);
        let r = e.q(&sel("reqs"), A::Rate, 60);
        assert!(close(inc.value, increase), "{name}: increase {inc:?}");
        assert_eq!(total.value, inc.value, "{name}: sum is the increase");
        assert!(close(r.value, rate), "{name}: rate {r:?}");
        assert_eq!(inc.gap.is_some(), increase.is_none(), "{name}: {inc:?}");
        assert_eq!(r.gap.is_some(), rate.is_none(), "{name}: {r:?}");
    }
}

/// A counter restarted once by a new start time and once by a drop: slot increases are never
/// negative and add up to the increases the points prove (the first point is a baseline).
#[test]
fn resets_never_lose_or_invent_counts() {
    let e = Env::default();
    // A counter that counts 1 per second, restarted (new start) at 35 s and dropped (same
    // start, monotonic) at 65 s.
    let mut value = 0.0;
    let mut start = ns(0.0);
    let mut last_t = 0.0;
    for step in 1..=10 {
        let t = step as f64 * 10.0;
        value += 10.0;
        if step == 4 {
            // Restarted at 35 s: counted 5 since then.
            start = ns(35.0);
            value = 5.0;
        }
        if step == 7 {
            // Dropped without a new start time: 2 since an unknown moment.
            value = 2.0;
        }
        let mut p = pt("c", t, counter(value));
        p.start_time_unix_nano = start;
        e.rec(p).unwrap();
        last_t = t;
    }
    e.at(last_t + 30.0);
    let rows = e.store.close_slots();
    let increase: f64 = rows.iter().map(|r| r.increase).sum();
    // The first point is the baseline (its start, T0, is not inside its slot); the reset
    // points count what their value says.
    assert_eq!(increase, 10.0 * 8.0 + 5.0 - 10.0 + 2.0);
    assert!(rows.iter().all(|r| r.increase >= 0.0), "{rows:?}");
    let mut out = String::new();
    e.store.render_metrics(&mut out);
    assert!(out.contains("slogate_metric_resets_total 2\n"), "{out}");
}

#[test]
fn refusals() {
    let e = Env::default();
    let neg_delta = sum(-1.0, true, Tp::Delta);
    let cases: [(MetricPoint<'_>, Result<(), PointRefusal>); 9] = [
        (pt("g", 10.0, gauge(1.0)), Ok(())),
        // Same time: an accepted duplicate, ignored.
        (pt("g", 10.0, gauge(7.0)), Ok(())),
        (pt("g", 5.0, gauge(1.0)), Err(PointRefusal::OutOfRange)),
        (pt("g", 20.0, counter(1.0)), Err(PointRefusal::Conflict)),
        (
            MetricPoint {
                unit: "ms",
                ..pt("g", 20.0, gauge(1.0))
            },
            Err(PointRefusal::Conflict),
        ),
        (pt("d", 20.0, neg_delta), Err(PointRefusal::Conflict)),
        (pt("g", -4000.0, gauge(1.0)), Err(PointRefusal::OutOfRange)),
        (
            pt("g", 20.0 + 301.0, gauge(1.0)),
            Err(PointRefusal::OutOfRange),
        ),
        (pt("g", 30.0, gauge(2.0)), Ok(())),
    ];
    for (i, (p, want)) in cases.into_iter().enumerate() {
        e.clock.store(ns(20.0).max(e.clock.load(Relaxed)), Relaxed);
        assert_eq!(e.store.record_point(&p), want, "case {i}");
    }
    e.at(40.0);
    let m = e.q(&sel("g"), A::Sum, 60);
    assert_eq!(m.value, Some(3.0), "the duplicate was ignored: {m:?}");
    let mut out = String::new();
    e.store.render_metrics(&mut out);
    for line in [
        "slogate_metric_points_total{outcome=\"stored\"} 2",
        "slogate_metric_points_total{outcome=\"duplicate\"} 1",
        "slogate_metric_points_total{outcome=\"out_of_range\"} 3",
        "slogate_metric_points_total{outcome=\"conflict\"} 3",
    ] {
        assert!(out.contains(line), "{line}\n{out}");
    }
}

#[test]
fn time_in_state_and_transitions() {
    // (name, stale_after, samples, now, window, aggregate, value)
    type Case = (
        &'static str,
        u64,
        &'static [(f64, f64)],
        f64,
        u64,
        A,
        Option<f64>,
    );
    let breaker: &[(f64, f64)] = &[(0.0, 0.0), (20.0, 1.0), (50.0, 0.0), (70.0, 1.0)];
    let states: &[(f64, f64)] = &[
        (0.0, 0.0),
        (10.0, 1.0),
        (20.0, 2.0),
        (30.0, 2.0),
        (40.0, 1.0),
        (50.0, 0.0),
    ];
    let flaps: &[(f64, f64)] = &[
        (-10.0, 1.0),
        (5.0, 0.0),
        (15.0, 1.0),
        (25.0, 0.0),
        (35.0, 1.0),
        (45.0, 0.0),
    ];
    let open = |s| A::TimeInState { state: Some(s) };
    let into = |s| A::Transitions { into: Some(s) };
    let cases: &[Case] = &[
        (
            "breaker open",
            300,
            breaker,
            100.0,
            80,
            open(1.0),
            Some(60.0),
        ),
        (
            "breaker non-zero",
            300,
            breaker,
            100.0,
            80,
            A::TimeInState { state: None },
            Some(60.0),
        ),
        (
            "breaker closed",
            300,
            breaker,
            100.0,
            80,
            open(0.0),
            Some(20.0),
        ),
        (
            "the sample before the window holds into it",
            300,
            breaker,
            100.0,
            90,
            open(0.0),
            Some(30.0),
        ),
        (
            "a sample holds at most stale_after",
            15,
            breaker,
            80.0,
            60,
            open(1.0),
            Some(25.0),
        ),
        ("enum state 2", 300, states, 60.0, 60, open(2.0), Some(20.0)),
        ("enum state 1", 300, states, 60.0, 60, open(1.0), Some(20.0)),
        ("enum state 0", 300, states, 60.0, 60, open(0.0), Some(20.0)),
        (
            "enum changes",
            300,
            states,
            60.0,
            60,
            A::Transitions { into: None },
            Some(4.0),
        ),
        ("enum into 1", 300, states, 60.0, 60, into(1.0), Some(2.0)),
        ("enum into 0", 300, states, 60.0, 60, into(0.0), Some(1.0)),
        ("flaps twice", 300, flaps, 50.0, 50, into(1.0), Some(2.0)),
        (
            "from the sample before the window",
            300,
            flaps,
            50.0,
            50,
            into(0.0),
            Some(3.0),
        ),
        (
            "stale breaker has no answer",
            15,
            breaker,
            100.0,
            80,
            open(1.0),
            None,
        ),
    ];
    for &(name, stale, samples, now, window, agg, want) in cases {
        let e = Env::new(MetricStoreConfig {
            stale_after_seconds: stale,
            ..MetricStoreConfig::default()
        });
        for &(t, v) in samples {
            e.clock.store(ns(t), Relaxed);
            e.store.record_point(&pt("breaker", t, gauge(v))).unwrap();
        }
        e.at(now);
        let m = e.q(&sel("breaker"), agg, window);
        assert!(close(m.value, want), "{name}: {m:?}");
        if want.is_none() {
            assert!(
                m.gap.as_deref().unwrap().contains("stopped reporting"),
                "{name}: {m:?}"
            );
        }
    }
}

#[test]
fn combine_across_instances() {
    let e = Env::default();
    for (pod, g, c0, c1) in [("pod-1", 10.0, 100.0, 130.0), ("pod-2", 30.0, 5.0, 15.0)] {
        let start = ns(-100.0);
        let p = |t, v| MetricPoint {
            instance: pod,
            start_time_unix_nano: start,
            ..pt("reqs", t, counter(v))
        };
        e.rec(p(10.0, c0)).unwrap();
        e.rec(p(20.0, c1)).unwrap();
        e.rec(MetricPoint {
            instance: pod,
            ..pt("inflight", 20.0, gauge(g))
        })
        .unwrap();
    }
    e.at(25.0);
    let cases = [
        ("inflight", A::Last, Combine::Sum, 40.0),
        ("inflight", A::Last, Combine::Avg, 20.0),
        ("inflight", A::Last, Combine::Max, 30.0),
        ("inflight", A::Last, Combine::Min, 10.0),
        ("reqs", A::Increase, Combine::Sum, 40.0),
        ("reqs", A::Rate, Combine::Sum, 4.0),
        ("reqs", A::Rate, Combine::Max, 3.0),
    ];
    for (metric, agg, how, want) in cases {
        let m = e.store.query(&cohort(&[]), &sel(metric), agg, how, 60);
        assert_eq!(m.value, Some(want), "{metric} {agg} {how:?}: {m:?}");
        assert_eq!(m.series, 2);
    }
    // Point-attribute matchers and cohort dimensions narrow the streams.
    let m = e.store.query(
        &cohort(&[("version", "v2")]),
        &sel("inflight"),
        A::Last,
        Combine::Sum,
        60,
    );
    assert!(m.value.is_none());
}

#[test]
fn attribute_matchers() {
    let e = Env::default();
    let attrs: [&[(&str, &str)]; 3] = [
        &[("code", "200"), ("route", "/a")],
        &[("code", "500"), ("route", "/a")],
        &[("route", "/b")],
    ];
    for (i, a) in attrs.iter().enumerate() {
        e.rec(MetricPoint {
            attributes: a,
            ..pt("hits", 10.0, gauge(10f64.powi(i as i32)))
        })
        .unwrap();
    }
    e.at(20.0);
    let cases: [(&[(&str, &str)], f64); 6] = [
        (&[], 111.0),
        (&[("route", "/a")], 11.0),
        (&[("code", "*")], 11.0),
        (&[("code", "!500")], 101.0),
        (&[("code", "!200"), ("route", "/a")], 10.0),
        (&[("route", "/b"), ("code", "*")], f64::NAN),
    ];
    for (matchers, want) in cases {
        let mut s = sel("hits");
        for (k, v) in matchers {
            s = s.with(*k, *v);
        }
        let m = e.q(&s, A::Last, 60);
        if want.is_nan() {
            assert!(m.value.is_none() && m.gap.is_some(), "{s}: {m:?}");
        } else {
            assert_eq!(m.value, Some(want), "{s}");
        }
    }
}

fn hist<'a>(
    temporality: Tp,
    bounds: &'a [f64],
    counts: &'a [u64],
    sum: f64,
    minmax: Option<(f64, f64)>,
) -> PointValue<'a> {
    PointValue::Histogram {
        temporality,
        count: counts.iter().sum(),
        sum: Some(sum),
        min: minmax.map(|m| m.0),
        max: minmax.map(|m| m.1),
        bounds,
        counts,
    }
}

#[test]
fn cumulative_histogram_increments() {
    let e = Env::default();
    let b: &[f64] = &[0.1, 0.2];
    let start = ns(-50.0);
    let steps: [(f64, u64, &[u64], f64); 4] = [
        (10.0, start, &[1, 2, 0], 0.5),
        (20.0, start, &[2, 4, 1], 1.5),
        // A bucket decreased: a reset; it counts what it says.
        (30.0, start, &[1, 0, 0], 0.05),
        (40.0, start, &[1, 1, 0], 0.2),
    ];
    for (t, s, counts, sum) in steps {
        let p = MetricPoint {
            unit: "s",
            start_time_unix_nano: s,
            ..pt("latency", t, hist(Tp::Cumulative, b, counts, sum, None))
        };
        e.rec(p).unwrap();
    }
    e.at(45.0);
    let cases = [
        (A::Increase, Some(4.0 + 1.0 + 1.0)),
        (A::Count, Some(4.0)),
        (A::Sum, Some((1.0 + 0.05 + 0.15) * 1000.0)),
        (A::Avg, Some(1.2 / 6.0 * 1000.0)),
        (A::Rate, Some(6.0 / 30.0)),
    ];
    for (agg, want) in cases {
        let m = e.q(&sel("latency"), agg, 60);
        assert!(close(m.value, want), "{agg}: {m:?}");
    }
    let m = e.q(&sel("latency"), A::Quantile(1.0), 60);
    assert_eq!(m.unit, "ms");
    // The increments: (0.1, 0.2] midpoint 150 ms ×2+1, top bucket (no max) 200 ms ×1, first
    // bucket 100 ms ×2: the largest is 200 ms.
    assert!((m.value.unwrap() - 200.0).abs() <= 200.0 / 256.0, "{m:?}");
    assert_eq!(m.error_bound, None, "top bucket without max is unbounded");
    let m = e.q(&sel("latency"), A::Quantile(0.5), 60);
    assert!((m.value.unwrap() - 150.0).abs() <= 150.0 / 256.0, "{m:?}");
    let eb = m.error_bound.unwrap();
    assert!((eb - (1.0 / 3.0 + 1.0 / 256.0) / (1.0 - 1.0 / 256.0)).abs() < 1e-12);
}

/// Generated values bucketed into an explicit histogram: each quantile is within the stated
/// bound of the exact nearest-rank quantile of the values.
#[test]
fn explicit_histogram_quantiles_within_bound() {
    let bounds: Vec<f64> = (0..90).map(|i| 0.5 * 1.1f64.powi(i)).collect();
    let mut rng = StdRng::seed_from_u64(7);
    for seed_round in 0..4 {
        let e = Env::default();
        let mut values: Vec<f64> = (0..5000)
            .map(|_| 10f64.powf(rng.random_range(0.0..3.0)))
            .collect();
        let mut counts = vec![0u64; bounds.len() + 1];
        for v in &values {
            counts[bounds.partition_point(|b| b < v)] += 1;
        }
        values.sort_by(f64::total_cmp);
        let (min, max) = (values[0], values[values.len() - 1]);
        let p = MetricPoint {
            unit: "ms",
            ..pt(
                "lat",
                10.0,
                hist(
                    Tp::Delta,
                    &bounds,
                    &counts,
                    values.iter().sum(),
                    Some((min, max)),
                ),
            )
        };
        e.rec(p).unwrap();
        e.at(15.0);
        for q in [0.0, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0] {
            let m = e.q(&sel("lat"), A::Quantile(q), 60);
            let exact = values[nearest_rank(q, values.len() as u64).unwrap() as usize - 1];
            let (v, b) = (m.value.unwrap(), m.error_bound.unwrap());
            assert!(
                (v - exact).abs() <= b * v,
                "round {seed_round} q {q}: {v} vs exact {exact}, bound {b}"
            );
            assert!(b < 0.06, "{b}");
        }
    }
}

/// Exponential bucket index of a positive value at `scale`: `(base^i, base^(i+1)]`.
fn exp_index(v: f64, scale: i32) -> i64 {
    (v.log2() * 2f64.powi(scale)).ceil() as i64 - 1
}

fn check_exponential(scale: i32, values: &mut [f64], q: f64) -> Result<(), TestCaseError> {
    let e = Env::default();
    let idx: Vec<i64> = values.iter().map(|v| exp_index(*v, scale)).collect();
    let lo = *idx.iter().min().unwrap();
    let hi = *idx.iter().max().unwrap();
    let mut positive = vec![0u64; (hi - lo + 1) as usize];
    for i in &idx {
        positive[(i - lo) as usize] += 1;
    }
    values.sort_by(f64::total_cmp);
    let p = MetricPoint {
        unit: "s",
        ..pt(
            "lat",
            10.0,
            PointValue::ExponentialHistogram {
                temporality: Tp::Delta,
                count: values.len() as u64,
                sum: Some(values.iter().sum()),
                min: None,
                max: None,
                scale,
                zero_count: 0,
                zero_threshold: 0.0,
                positive_offset: lo as i32,
                positive: &positive,
                negative_offset: 0,
                negative: &[],
            },
        )
    };
    e.rec(p).unwrap();
    e.at(15.0);
    let m = e.q(&sel("lat"), A::Quantile(q), 60);
    let exact = values[nearest_rank(q, values.len() as u64).unwrap() as usize - 1] * 1000.0;
    let (v, b) = (m.value.unwrap(), m.error_bound.unwrap());
    let base = 2f64.powf(2f64.powi(-scale));
    prop_assert!((b - ((base - 1.0) / 2.0 + 1.0 / 256.0) / (1.0 - 1.0 / 256.0)).abs() < 1e-12);
    prop_assert!(
        (v - exact).abs() <= b * v * (1.0 + 1e-9),
        "scale {}: {} vs exact {}, bound {}",
        scale,
        v,
        exact,
        b
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn exponential_quantile_within_bound(
        scale in -1i32..=8,
        mut values in prop::collection::vec(0.0005f64..20.0, 1..400),
        q in prop::sample::select(vec![0.5, 0.9, 0.95, 0.99]),
    ) {
        check_exponential(scale, &mut values, q)?;
    }
}

#[test]
fn exponential_p95_fixed_cases() {
    let mut rng = StdRng::seed_from_u64(3);
    for scale in [0, 2, 4, 8] {
        let mut values: Vec<f64> = (0..3000)
            .map(|_| 10f64.powf(rng.random_range(-3.0..1.0)))
            .collect();
        check_exponential(scale, &mut values, 0.95).unwrap();
    }
}

#[test]
fn negative_values_are_counted_not_sketched() {
    let e = Env::default();
    let b: &[f64] = &[-10.0, 0.0, 10.0];
    // Buckets: (-inf,-10] 1, (-10,0] 1, (0,10] 6, (10,inf) 2 → 2 of 10 values are negative.
    let counts: &[u64] = &[1, 1, 6, 2];
    e.rec(MetricPoint {
        unit: "By",
        ..pt(
            "delta",
            10.0,
            hist(Tp::Delta, b, counts, 30.0, Some((-20.0, 30.0))),
        )
    })
    .unwrap();
    e.at(15.0);
    let m = e.q(&sel("delta"), A::Quantile(0.1), 60);
    assert!(
        m.gap
            .as_deref()
            .unwrap()
            .contains("falls among negative values"),
        "{m:?}"
    );
    let m = e.q(&sel("delta"), A::Quantile(0.5), 60);
    assert_eq!(m.unit, "By");
    assert!((m.value.unwrap() - 5.0).abs() <= 5.0 / 256.0, "{m:?}");
    let m = e.q(&sel("delta"), A::Increase, 60);
    assert_eq!(m.value, Some(10.0));
}

#[test]
fn summary_quantiles() {
    let e = Env::default();
    let qs: &[(f64, f64)] = &[(0.5, 0.12), (0.99, 0.8)];
    for (t, count, sum) in [(10.0, 100, 20.0), (20.0, 160, 30.0)] {
        e.rec(MetricPoint {
            unit: "s",
            start_time_unix_nano: ns(-100.0),
            ..pt(
                "rpc",
                t,
                PointValue::Summary {
                    count,
                    sum,
                    quantiles: qs,
                },
            )
        })
        .unwrap();
    }
    e.at(25.0);
    let m = e.q(&sel("rpc"), A::Quantile(0.99), 60);
    assert_eq!((m.value, m.unit.as_str()), (Some(800.0), "ms"));
    let m = e.q(&sel("rpc"), A::Quantile(0.95), 60);
    assert_eq!(
        m.gap.as_deref(),
        Some(
            "summary metric `rpc` for service=checkout reports no 0.95 quantile (it has: 0.5, 0.99)"
        )
    );
    assert_eq!(e.q(&sel("rpc"), A::Increase, 60).value, Some(60.0));
    assert!(close(
        e.q(&sel("rpc"), A::Avg, 60).value,
        Some(10.0 / 60.0 * 1000.0)
    ));
}

#[test]
fn no_data_sentences() {
    let e = Env::new(MetricStoreConfig {
        stale_after_seconds: 300,
        ..MetricStoreConfig::default()
    });
    e.rec(pt("old", 0.0, gauge(1.0))).unwrap();
    e.rec(pt("g", 400.0, gauge(1.0))).unwrap();
    let mut p = pt("c", 400.0, counter(5.0));
    p.start_time_unix_nano = ns(-10.0);
    e.rec(p).unwrap();
    e.rec(pt("h", 400.0, hist(Tp::Delta, &[1.0], &[0, 0], 0.0, None)))
        .unwrap();
    e.rec(pt("mixed", 400.0, gauge(1.0))).unwrap();
    e.rec(MetricPoint {
        instance: "pod-2",
        ..pt("mixed", 400.0, counter(1.0))
    })
    .unwrap();
    e.rec(pt("d", 400.0, sum(3.0, true, Tp::Delta))).unwrap();
    e.at(410.0);
    let route = sel("g").with("route", "/x");
    let cases: [(Selection, A, u64, &str); 10] = [
        (
            sel("mixed"),
            A::Last,
            60,
            "metric `mixed` for service=checkout has streams of two kinds (gauge and sum); add an attribute matcher that separates them",
        ),
        (
            sel("d"),
            A::Rate,
            60,
            "the points of metric `d` for service=checkout in the last 60 s span no time, so a rate is undefined",
        ),
        (
            sel("nope"),
            A::Last,
            60,
            "no stream of metric `nope` for service=checkout exists",
        ),
        (
            route,
            A::Last,
            60,
            "no stream of metric `g`{route=/x} for service=checkout exists",
        ),
        (
            sel("old"),
            A::Last,
            600,
            "metric `old` for service=checkout stopped reporting 410 s ago",
        ),
        (
            sel("g"),
            A::Last,
            5,
            "no point of metric `g` for service=checkout in the last 5 s",
        ),
        (
            sel("c"),
            A::Increase,
            60,
            "metric `c` for service=checkout has fewer than 2 points of its cumulative value in the last 60 s and no counter started in it, so its increase is unknown",
        ),
        (
            sel("g"),
            A::Quantile(0.5),
            60,
            "quantile(0.5) does not apply to metric `g` for service=checkout, a gauge",
        ),
        (
            sel("h"),
            A::TimeInState { state: None },
            60,
            "time_in_state(non-zero) does not apply to metric `h` for service=checkout, a histogram (histograms and summaries answer avg, sum, count, increase, rate and quantile)",
        ),
        (
            sel("h"),
            A::Quantile(0.5),
            60,
            "histogram metric `h` for service=checkout recorded no value in the last 60 s",
        ),
    ];
    for (s, agg, window, want) in cases {
        let m = e.q(&s, agg, window);
        assert_eq!(m.value, None, "{s} {agg}");
        assert_eq!(m.gap.as_deref(), Some(want), "{s} {agg}");
    }
}

#[test]
fn overflow_and_reserve() {
    let e = Env::new(MetricStoreConfig {
        max_series_per_metric: 2,
        max_series: 3,
        max_overflow_series: 3,
        ..MetricStoreConfig::default()
    });
    let routes = ["/a", "/b", "/c", "/d"];
    let attrs: Vec<[(&str, &str); 1]> = routes.iter().map(|r| [("route", *r)]).collect();
    // m: two regular streams, then /c and /d overflow into one stream of (v1, m). Counters
    // with a start time: each producer's increase is tracked apart.
    for (i, a) in attrs.iter().enumerate() {
        for (t, v) in [(10.0, 100.0 * i as f64), (20.0, 100.0 * i as f64 + 7.0)] {
            e.rec(MetricPoint {
                attributes: a,
                start_time_unix_nano: ns(-100.0),
                ..pt("m", t, counter(v))
            })
            .unwrap();
        }
    }
    assert_eq!(e.store.series_count(), 3);
    // n: one regular stream fills the global cap; the next goes to (v1, n)'s overflow stream.
    for a in &attrs[..2] {
        e.rec(MetricPoint {
            attributes: a,
            ..pt("n", 20.0, gauge(1.0))
        })
        .unwrap();
    }
    assert_eq!(e.store.series_count(), 5);
    // A new cohort (the canary) still gets its overflow stream: outside the global cap.
    e.rec(MetricPoint {
        version: "v2",
        start_time_unix_nano: ns(15.0),
        ..pt("m", 20.0, counter(3.0))
    })
    .unwrap();
    // Its overflow stream is a counter now: a gauge of the same name conflicts.
    assert_eq!(
        e.rec(MetricPoint {
            version: "v2",
            instance: "pod-9",
            ..pt("m", 21.0, gauge(3.0))
        }),
        Err(PointRefusal::Conflict)
    );
    assert_eq!(e.store.series_count(), 6);
    // The overflow ceiling is reached: a new cohort's points are accepted and dropped.
    assert_eq!(
        e.rec(MetricPoint {
            version: "v3",
            ..pt("m", 20.0, counter(3.0))
        }),
        Ok(())
    );
    assert_eq!(e.store.series_count(), 6);
    e.at(25.0);
    let ov = Selection::new("m").with("__overflow__", "true");
    let cases = [
        (cohort(&[("version", "v1")]), sel("m"), 28.0, 3),
        (cohort(&[("version", "v1")]), ov.clone(), 14.0, 1),
        (cohort(&[("version", "v2")]), sel("m"), 3.0, 1),
        (cohort(&[]), sel("m").with("route", "/a"), 7.0, 1),
    ];
    for (c, s, want, series) in cases {
        let m = e.store.query(&c, &s, A::Increase, Combine::Sum, 60);
        assert_eq!((m.value, m.series), (Some(want), series), "{c} {s}: {m:?}");
    }
    let listed = e.store.series(Some("checkout"));
    assert_eq!(listed.len(), 6);
    assert_eq!(listed.iter().filter(|s| s.overflow).count(), 3);
    let mut out = String::new();
    e.store.render_metrics(&mut out);
    for line in [
        "slogate_metric_series{kind=\"regular\"} 3",
        "slogate_metric_series{kind=\"overflow\"} 3",
        "slogate_metric_overflow_points_total 6",
        "slogate_metric_points_dropped_total{reason=\"series_limit\"} 1",
        "slogate_metric_points_total{outcome=\"conflict\"} 1",
    ] {
        assert!(out.contains(line), "{line}\n{out}");
    }
}

#[test]
fn retention_and_point_cap() {
    let e = Env::new(MetricStoreConfig {
        retention_seconds: 60,
        max_points_per_series: 5,
        ..MetricStoreConfig::default()
    });
    for i in 0..8 {
        e.rec(pt("g", f64::from(i) * 10.0, gauge(f64::from(i))))
            .unwrap();
    }
    e.at(75.0);
    // The cap kept 30..70; nothing is older than the retention yet.
    let m = e.q(&sel("g"), A::Count, 60);
    assert_eq!((m.value, m.points), (Some(5.0), 5));
    assert_eq!(e.q(&sel("g"), A::Min, 60).value, Some(3.0));
    e.at(105.0);
    // Now 30 and 40 are older than the retention (cutoff 45): pruned.
    let m = e.q(&sel("g"), A::Count, 300);
    assert_eq!(m.value, Some(3.0));
    assert_eq!(e.store.series(None)[0].points, 3);
    let mut out = String::new();
    e.store.render_metrics(&mut out);
    assert!(
        out.contains("slogate_metric_evicted_points_total 3\n"),
        "{out}"
    );
    assert!(e.store.memory_bytes() > 0);
}

#[test]
fn close_slots_exports_each_slot_once() {
    let e = Env::default();
    let start = ns(-5.0);
    for (t, g, c) in [(1.0, 4.0, 10.0), (5.0, 2.0, 12.0), (12.0, 7.0, 20.0)] {
        e.rec(pt("g", t, gauge(g))).unwrap();
        e.rec(MetricPoint {
            start_time_unix_nano: start,
            ..pt("c", t, counter(c))
        })
        .unwrap();
        e.rec(MetricPoint {
            unit: "ms",
            ..pt(
                "h",
                t,
                hist(Tp::Delta, &[10.0], &[1, 0], 5.0, Some((5.0, 5.0))),
            )
        })
        .unwrap();
    }
    // Slot [T0, T0+10) ends at +10 and closes one slot later.
    e.at(19.0);
    assert!(e.store.close_slots().is_empty());
    e.at(20.0);
    let mut rows = e.store.close_slots();
    rows.sort_by(|a, b| a.metric.cmp(&b.metric));
    assert_eq!(rows.len(), 3, "{rows:?}");
    let slot = (T0) as i64;
    let (c, g, h) = (&rows[0], &rows[1], &rows[2]);
    assert_eq!(
        (g.slot_start_unix, g.slot_seconds, g.kind.as_str(), g.points),
        (slot, 10, "gauge", 2)
    );
    assert_eq!((g.min, g.max, g.last, g.value_sum), (2.0, 4.0, 2.0, 6.0));
    assert_eq!(g.last_time_unix_nano, ns(5.0));
    assert_eq!(
        (g.service.as_str(), g.instance.as_str()),
        ("checkout", "pod-1")
    );
    // The counter was born 5 s before the slot: its first value is a baseline.
    assert_eq!((c.kind.as_str(), c.increase, c.last), ("sum", 2.0, 12.0));
    assert_eq!(
        (h.kind.as_str(), h.increase, h.hist_sum, h.points),
        ("histogram", 2.0, 10.0, 2)
    );
    let sk = Sketch::decode(&h.sketch).unwrap();
    assert_eq!(
        (sk.count(), sk.min(), sk.max()),
        (2, Some(5_000_000), Some(5_000_000))
    );
    assert!(e.store.close_slots().is_empty(), "exported once");
    e.at(30.0);
    let rows = e.store.close_slots();
    assert_eq!(rows.len(), 3);
    assert!(
        rows.iter()
            .all(|r| r.slot_start_unix == slot + 10 && r.points == 1)
    );
    let c = rows.iter().find(|r| r.metric == "c").unwrap();
    assert_eq!(c.increase, 8.0);
    assert!(e.store.close_slots().is_empty());
    // At shutdown the open slot goes too, once.
    e.rec(pt("g", 31.0, gauge(9.0))).unwrap();
    assert!(e.store.close_slots().is_empty(), "the slot is still open");
    let rows = e.store.close_all_slots();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0].metric.as_str(), rows[0].last), ("g", 9.0));
    assert_eq!(rows[0].slot_start_unix, slot + 30);
    assert!(e.store.close_all_slots().is_empty(), "exported once");
}

#[test]
fn ratio() {
    let m = |v: Option<f64>, points| Measure {
        value: v,
        points,
        series: 1,
        seconds: 60.0,
        unit: "1".into(),
        kind: Some("sum"),
        error_bound: None,
        gap: v.is_none().then(|| "no point of metric `x`".to_string()),
    };
    let cases = [
        (Some(5.0), Some(100.0), Some(0.05), None),
        (
            Some(5.0),
            Some(0.0),
            None,
            Some("denominator is zero over the window"),
        ),
        (None, Some(3.0), None, Some("no point of metric `x`")),
        (Some(1.0), None, None, Some("no point of metric `x`")),
    ];
    for (n, d, want, gap) in cases {
        let r = Measure::ratio(&m(n, 3), &m(d, 4));
        assert_eq!((r.value, r.gap.as_deref()), (want, gap));
        assert_eq!((r.points, r.series), (7, 2));
    }
}

/// What the store should hold, per `(metric, instance, slot)`: every increment recorded
/// straight into a sketch (the representative rules applied by the store's own functions),
/// and the count of values that cannot be sketched.
#[derive(Default)]
struct Reference {
    cells: std::collections::HashMap<(&'static str, &'static str, u64), (Sketch, u64)>,
}

impl Reference {
    fn cell(&mut self, metric: &'static str, instance: &'static str, t: u64) -> &mut (Sketch, u64) {
        self.cells
            .entry((metric, instance, t / (10 * NS)))
            .or_default()
    }

    /// Explicit-bucket increments `inc` of a point.
    #[allow(clippy::too_many_arguments)]
    fn explicit(
        &mut self,
        metric: &'static str,
        instance: &'static str,
        t: u64,
        bounds: &[f64],
        min: Option<f64>,
        max: Option<f64>,
        inc: &[u64],
    ) {
        let scale = crate::config::Scale::of("s");
        let (sk, neg) = self.cell(metric, instance, t);
        for (i, &n) in inc.iter().enumerate() {
            match scale.sketch_value(crate::stream::explicit_rep(i, bounds, min, max)) {
                Some(v) => sk.record_n(v, n),
                None => *neg += n,
            }
        }
    }

    /// Exponential increments: zero bucket, positive buckets from `offset`, negative total.
    #[allow(clippy::too_many_arguments)]
    fn exponential(
        &mut self,
        metric: &'static str,
        t: u64,
        scale: i32,
        zero: u64,
        offset: i64,
        inc: &[u64],
        neg_total: u64,
    ) {
        let s = crate::config::Scale::of("s");
        let (sk, neg) = self.cell(metric, "pod-1", t);
        sk.record_n(0, zero);
        for (i, &n) in inc.iter().enumerate() {
            if let Some(v) = s.sketch_value(crate::stream::exp_rep(scale, offset + i as i64)) {
                sk.record_n(v, n);
            }
        }
        *neg += neg_total;
    }

    /// The merged sketch and negative count of `metric` over the slots a window starting at
    /// `ws` covers.
    fn window(&self, metric: &str, ws: u64) -> (Sketch, u64) {
        let mut out = (Sketch::new(), 0);
        for ((m, _, slot), (sk, neg)) in &self.cells {
            if *m == metric && (slot + 1) * 10 * NS > ws {
                out.0.merge(sk);
                out.1 += neg;
            }
        }
        out
    }
}

/// Histogram points (explicit and exponential, delta and cumulative, moving min and max,
/// changing bounds and scales, negative values, an overflow stream whose producers interleave
/// across slots) mixed with queries and slot closes: every quantile, increase and exported
/// sketch equals that of a plain sketch fed the same increments, whenever it is read, so
/// increments held aside before they reach a cell's sketch are never lost nor counted twice.
fn check_histograms_against_reference(seed: u64, steps: usize) {
    const OV_BOUNDS: &[f64] = &[0.01, 0.1, 1.0];
    const BOUNDS: [&[f64]; 3] = [
        &[0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0],
        &[-1.0, 0.5, 2.0],
        &[0.001, 0.002],
    ];
    let mut rng = StdRng::seed_from_u64(seed);
    let e = Env::new(MetricStoreConfig {
        max_series_per_metric: 2,
        stale_after_seconds: 1_000_000,
        ..MetricStoreConfig::default()
    });
    let mut reference = Reference::default();
    let mut now = 0.0f64;
    // Cumulative states: explicit counts, min and max; exponential counts by index and zero.
    let mut ch = [0u64; 8];
    let (mut ch_min, mut ch_max) = (0.004, 6.0);
    let mut ch_seen = false;
    let mut ce = std::collections::BTreeMap::<i64, u64>::new();
    let mut ce_zero = 0u64;
    let mut ce_seen = false;
    // Overflow producers: the last time of each; `a` and `b` get their own streams first.
    let producers = ["a", "b", "c", "d"];
    let mut ov_last = [f64::NEG_INFINITY; 4];
    let ov_point = |e: &Env, reference: &mut Reference, k: usize, secs: f64, counts: &[u64]| {
        let attrs: &[(&str, &str)] = &[];
        let p = MetricPoint {
            unit: "s",
            instance: producers[k],
            attributes: attrs,
            ..pt("ov", secs, hist(Tp::Delta, OV_BOUNDS, counts, 1.0, None))
        };
        e.rec(p).unwrap();
        let instance = if k < 2 { producers[k] } else { "" };
        reference.explicit("ov", instance, ns(secs), OV_BOUNDS, None, None, counts);
    };
    ov_point(&e, &mut reference, 0, 0.0, &[1, 0, 0, 0]);
    ov_point(&e, &mut reference, 1, 0.0, &[0, 1, 0, 0]);
    ov_last[0] = 0.0;
    ov_last[1] = 0.0;
    let sparse = |rng: &mut StdRng, n: usize| -> Vec<u64> {
        (0..n)
            .map(|_| {
                if rng.random_bool(0.4) {
                    rng.random_range(1..6)
                } else {
                    0
                }
            })
            .collect()
    };
    let mut closed = 0;
    for _ in 0..steps {
        now += rng.random_range(0.2..6.0);
        let t = ns(now);
        match rng.random_range(0..5) {
            0 => {
                let bounds = BOUNDS[if rng.random_bool(0.8) {
                    0
                } else {
                    rng.random_range(1..3)
                }];
                let counts = sparse(&mut rng, bounds.len() + 1);
                let minmax = rng
                    .random_bool(0.7)
                    .then(|| (rng.random_range(0.0001..0.01), rng.random_range(1.0..10.0)));
                let (min, max) = (minmax.map(|m| m.0), minmax.map(|m| m.1));
                let p = hist(Tp::Delta, bounds, &counts, 1.0, minmax);
                e.rec(MetricPoint {
                    unit: "s",
                    ..pt("dh", now, p)
                })
                .unwrap();
                reference.explicit("dh", "pod-1", t, bounds, min, max, &counts);
            }
            1 => {
                let inc = sparse(&mut rng, 8);
                for (c, n) in ch.iter_mut().zip(&inc) {
                    *c += n;
                }
                if rng.random_bool(0.1) {
                    ch_min *= 0.9;
                }
                if rng.random_bool(0.1) {
                    ch_max *= 1.1;
                }
                let bounds = BOUNDS[0];
                let p = hist(Tp::Cumulative, bounds, &ch, 1.0, Some((ch_min, ch_max)));
                e.rec(MetricPoint {
                    unit: "s",
                    ..pt("ch", now, p)
                })
                .unwrap();
                // The first point is the baseline (no start time): no increment.
                if ch_seen {
                    reference.explicit("ch", "pod-1", t, bounds, Some(ch_min), Some(ch_max), &inc);
                }
                ch_seen = true;
            }
            2 => {
                let scale = [3, 3, 3, 2, 4][rng.random_range(0..5)];
                let offset = rng.random_range(-60i32..-40);
                // Now and then wider than a cached layout may be.
                let len = if rng.random_bool(0.05) {
                    300
                } else {
                    rng.random_range(0..30)
                };
                let positive = sparse(&mut rng, len);
                let zero = if rng.random_bool(0.3) {
                    rng.random_range(1..4)
                } else {
                    0
                };
                let negative: Vec<u64> = if rng.random_bool(0.1) {
                    vec![1, 2]
                } else {
                    vec![]
                };
                let count = positive.iter().sum::<u64>() + zero + negative.iter().sum::<u64>();
                e.rec(MetricPoint {
                    unit: "s",
                    ..pt(
                        "de",
                        now,
                        PointValue::ExponentialHistogram {
                            temporality: Tp::Delta,
                            count,
                            sum: Some(1.0),
                            min: None,
                            max: None,
                            scale,
                            zero_count: zero,
                            zero_threshold: 0.0,
                            positive_offset: offset,
                            positive: &positive,
                            negative_offset: 0,
                            negative: &negative,
                        },
                    )
                })
                .unwrap();
                let neg = negative.iter().sum();
                reference.exponential("de", t, scale, zero, offset.into(), &positive, neg);
            }
            3 => {
                // Cumulative at scale 3; the range only grows, so nothing looks like a reset.
                let mut added = Vec::new();
                for _ in 0..rng.random_range(0..6) {
                    let idx = rng.random_range(-70i64..-30);
                    let n = rng.random_range(1..4);
                    *ce.entry(idx).or_default() += n;
                    added.push((idx, n));
                }
                let z = if rng.random_bool(0.2) { 1 } else { 0 };
                ce_zero += z;
                let (lo, hi) = match (ce.keys().next(), ce.keys().next_back()) {
                    (Some(&lo), Some(&hi)) => (lo, hi + 1),
                    _ => (0, 0),
                };
                let positive: Vec<u64> =
                    (lo..hi).map(|i| ce.get(&i).copied().unwrap_or(0)).collect();
                e.rec(MetricPoint {
                    unit: "s",
                    ..pt(
                        "ce",
                        now,
                        PointValue::ExponentialHistogram {
                            temporality: Tp::Cumulative,
                            count: positive.iter().sum::<u64>() + ce_zero,
                            sum: Some(1.0),
                            min: None,
                            max: None,
                            scale: 3,
                            zero_count: ce_zero,
                            zero_threshold: 0.0,
                            positive_offset: lo as i32,
                            positive: &positive,
                            negative_offset: 0,
                            negative: &[],
                        },
                    )
                })
                .unwrap();
                if ce_seen {
                    for (idx, n) in added {
                        reference.exponential("ce", t, 3, 0, idx, &[n], 0);
                    }
                    reference.exponential("ce", t, 3, z, 0, &[], 0);
                }
                ce_seen = true;
            }
            _ => {
                // A producer of `ov`, up to 25 s behind the clock: often in an earlier slot
                // than the stream's newest point.
                let k = rng.random_range(0..4);
                let secs = (now - rng.random_range(0.0..25.0)).max(ov_last[k] + 0.01);
                ov_last[k] = secs;
                let counts = sparse(&mut rng, OV_BOUNDS.len() + 1);
                ov_point(&e, &mut reference, k, secs, &counts);
            }
        }
        if rng.random_bool(0.3) {
            let metric = ["dh", "ch", "de", "ce", "ov"][rng.random_range(0..5)];
            let window = [10, 30, 60, 300, 3600][rng.random_range(0..5)];
            let q = [0.0, 0.25, 0.5, 0.9, 0.99, 1.0][rng.random_range(0..6)];
            let ws = e.clock.load(Relaxed) - window * NS;
            let (sk, neg) = reference.window(metric, ws);
            let want = nearest_rank(q, sk.count() + neg)
                .filter(|&r| r > neg)
                .and_then(|r| sk.value_at_rank(r - neg))
                .map(|v| v as f64 / 1e6);
            let m = e.q(&sel(metric), A::Quantile(q), window);
            assert_eq!(
                m.value, want,
                "seed {seed}: {metric} q{q} over {window} s: {m:?}"
            );
            let m = e.q(&sel(metric), A::Increase, window);
            let total = (sk.count() + neg) as f64;
            assert!(
                m.value.unwrap_or(0.0) == total,
                "seed {seed}: {metric} increase over {window} s: {m:?} vs {total}"
            );
        }
        if rng.random_bool(0.1) {
            for row in e.store.close_slots() {
                let slot = row.slot_start_unix as u64 / 10;
                let key = (row.metric.as_str(), row.instance.as_str(), slot);
                // A cell of baseline points only has no reference entry.
                let empty = (Sketch::new(), 0);
                let (sk, neg) = reference
                    .cells
                    .iter()
                    .find(|(k, _)| (k.0, k.1, k.2) == key)
                    .map_or(&empty, |(_, v)| v);
                let got = Sketch::decode(&row.sketch).unwrap();
                assert_eq!(&got, sk, "seed {seed}: exported {key:?}");
                assert_eq!(
                    row.increase,
                    (sk.count() + neg) as f64,
                    "seed {seed}: {key:?}"
                );
                closed += 1;
            }
        }
    }
    assert!(closed > 0 || steps < 50, "seed {seed}: no slot closed");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn histograms_match_a_plain_sketch(seed in any::<u64>()) {
        check_histograms_against_reference(seed, 400);
    }
}

#[test]
fn histograms_match_a_plain_sketch_fixed_seeds() {
    for seed in 0..8 {
        check_histograms_against_reference(seed, 600);
    }
}

#[test]
fn held_histogram_increments_expire_with_their_cell() {
    let e = Env::new(MetricStoreConfig {
        retention_seconds: 60,
        ..MetricStoreConfig::default()
    });
    let b: &[f64] = &[1.0, 2.0];
    let p = |secs, counts| MetricPoint {
        unit: "s",
        ..pt("h", secs, hist(Tp::Delta, b, counts, 1.0, None))
    };
    e.rec(p(0.0, &[0, 0, 5])).unwrap();
    assert_eq!(e.q(&sel("h"), A::Quantile(0.5), 60).value, Some(2000.0));
    // The cell of the first point (and what it held) is past the retention.
    e.rec(p(200.0, &[3, 0, 0])).unwrap();
    let m = e.q(&sel("h"), A::Quantile(1.0), 60);
    assert_eq!((m.value, m.points), (Some(1000.0), 1), "{m:?}");
    assert_eq!(e.q(&sel("h"), A::Increase, 60).value, Some(3.0));
    e.at(225.0);
    let rows = e.store.close_slots();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let sk = Sketch::decode(&rows[0].sketch).unwrap();
    assert_eq!((sk.count(), sk.max()), (3, Some(1_000_000_000)));
}

/// `record_points` (the look-ahead over a request) stores exactly what `record_point` stores
/// point by point: same outcomes, same streams (with caps and overflow), same slots, for
/// requests longer and shorter than the look-ahead, with unit conflicts and out-of-range points.
#[test]
fn a_request_recorded_at_once_equals_its_points_one_by_one() {
    let cfg = MetricStoreConfig {
        max_series_per_metric: 12,
        max_series: 40,
        max_overflow_series: 3,
        ..MetricStoreConfig::default()
    };
    let (one, batch) = (Env::new(cfg.clone()), Env::new(cfg));
    let mut rng = StdRng::seed_from_u64(7);
    let bounds = [0.01, 0.1, 1.0];
    let instances: Vec<String> = (0..30).map(|i| format!("pod-{i}")).collect();
    let names = ["jobs.queue.depth", "cache.hits", "http.duration"];
    let mut counts = vec![[0u64; 4]; 30];
    for request in 0..60u64 {
        let secs = request as f64 * 2.0;
        one.at(secs);
        batch.at(secs);
        let n = [1, 3, 7, 12, 13, 40, 150][rng.random_range(0..7)];
        let specs: Vec<(usize, usize, bool, i64)> = (0..n)
            .map(|_| {
                let kind = rng.random_range(0..3);
                let inst = rng.random_range(0..30);
                let odd_unit = rng.random_range(0..50) == 0;
                let skew = match rng.random_range(0..40) {
                    0 => -100_000,
                    1 => 100_000,
                    _ => 0,
                };
                (kind, inst, odd_unit, skew)
            })
            .collect();
        let hists: Vec<[u64; 4]> = specs
            .iter()
            .map(|&(_, inst, _, _)| {
                counts[inst][rng.random_range(0..4)] += 1;
                counts[inst]
            })
            .collect();
        let point_at = |i: usize| {
            let (kind, inst, odd_unit, skew) = specs[i];
            let value = match kind {
                0 => gauge((request % 7) as f64),
                1 => counter((request * 3 + inst as u64) as f64),
                _ => PointValue::Histogram {
                    temporality: Tp::Cumulative,
                    count: hists[i].iter().sum(),
                    sum: Some(1.0),
                    min: None,
                    max: None,
                    bounds: &bounds,
                    counts: &hists[i],
                },
            };
            MetricPoint {
                instance: &instances[inst],
                unit: match (kind, odd_unit) {
                    (_, true) => "By",
                    (2, false) => "s",
                    _ => "1",
                },
                start_time_unix_nano: T0 * NS,
                ..pt(names[kind], secs + skew as f64 + i as f64 * 1e-6, value)
            }
        };
        let singles: Vec<Result<(), PointRefusal>> = (0..n)
            .map(|i| one.store.record_point(&point_at(i)))
            .collect();
        let mut batched = vec![None; n];
        batch.store.record_points(n, &point_at, &mut |i, r| {
            assert!(batched[i].replace(r).is_none(), "point {i} reported twice");
        });
        let batched: Vec<_> = batched.into_iter().map(|r| r.expect("reported")).collect();
        assert_eq!(singles, batched, "request {request}");
    }
    let streams = one.store.series(None);
    assert!(
        streams.len() >= 36 && streams.iter().any(|s| s.overflow),
        "the caps and overflow were reached: {} streams",
        streams.len()
    );
    assert_eq!(one.store.series(None), batch.store.series(None));
    assert_eq!(one.store.close_all_slots(), batch.store.close_all_slots());
}

/// A stored baseline answers from the history's per-slot records what the live store answers
/// from its points: with one slot covering every point, each aggregate agrees (rates are over
/// the slot instead of between points), and what needs the points has no value.
#[test]
fn stored_records_answer_as_the_live_window() {
    let e = Env::new(MetricStoreConfig {
        slot_seconds: 400,
        ..MetricStoreConfig::default()
    });
    // Counters born inside the slot: their first values count as increases in both.
    let start = ns(0.5);
    let b: &[f64] = &[10.0, 20.0, 50.0];
    let mut cum = [0u64; 4];
    for i in 0..20u64 {
        let t = 1.0 + i as f64 * 10.0;
        e.rec(pt(
            "queue",
            t,
            gauge([4.0, 250.0, 7.0, 9.0][i as usize % 4]),
        ))
        .unwrap();
        let mut c = pt("cost", t, counter(3.5 * (i + 1) as f64));
        c.start_time_unix_nano = start;
        e.rec(c).unwrap();
        cum[(i % 4) as usize] += 1 + i % 3;
        let counts = cum;
        let total: u64 = counts.iter().sum();
        let mut h = pt(
            "latency",
            t,
            hist(
                Tp::Cumulative,
                b,
                &counts,
                12.0 * total as f64,
                Some((1.0, 80.0)),
            ),
        );
        h.unit = "ms";
        h.start_time_unix_nano = start;
        e.rec(h).unwrap();
    }
    e.at(299.0);
    let live = |m: &str, agg| e.q(&sel(m), agg, 300);
    let records = e.store.close_all_slots();
    assert_eq!(records.len(), 3, "{records:?}");
    let stored = |m: &str, agg| {
        crate::query_stored(&records, &sel(m), agg, Combine::Sum, "stored baseline b")
    };
    for (metric, agg) in [
        ("queue", A::Last),
        ("queue", A::Min),
        ("queue", A::Max),
        ("queue", A::Avg),
        ("queue", A::Count),
        ("queue", A::Sum),
        ("cost", A::Increase),
        ("cost", A::Sum),
        ("cost", A::Max),
        ("latency", A::Count),
        ("latency", A::Increase),
        ("latency", A::Sum),
        ("latency", A::Avg),
        ("latency", A::Quantile(0.5)),
        ("latency", A::Quantile(0.95)),
    ] {
        let (l, s) = (live(metric, agg), stored(metric, agg));
        assert!(l.value.is_some(), "{metric} {agg}: {l:?}");
        assert!(
            close(s.value, l.value),
            "{metric} {agg}: stored {s:?}, live {l:?}"
        );
        assert_eq!(
            (s.unit.as_str(), s.kind),
            (l.unit.as_str(), l.kind),
            "{metric} {agg}"
        );
        assert_eq!((s.points, s.series), (l.points, l.series), "{metric} {agg}");
    }
    // A rate is the increase over the time the stream's slots cover.
    let rate = stored("cost", A::Rate);
    assert!(close(rate.value, Some(3.5 * 20.0 / 400.0)), "{rate:?}");
    // What needs the points says so, never a value.
    for (metric, agg) in [
        ("queue", A::TimeInState { state: Some(250.0) }),
        ("queue", A::Transitions { into: None }),
    ] {
        let m = stored(metric, agg);
        assert!(m.value.is_none(), "{m:?}");
        assert!(m.gap.unwrap().contains("keeps per-slot totals only"));
    }
    let m = stored("nope", A::Last);
    assert_eq!(
        m.gap.as_deref(),
        Some("no stream of metric `nope` in stored baseline b was captured")
    );
    let m = stored("queue", A::Rate);
    assert!(m.gap.unwrap().contains("does not apply"), "rate of a gauge");
    // An attribute matcher selects among the records as among live streams.
    let m = crate::query_stored(
        &records,
        &sel("queue").with("pool", "a"),
        A::Last,
        Combine::Sum,
        "b",
    );
    assert!(m.value.is_none());
}

/// A store restarted in the middle of a window and given the history's slots of the time
/// before answers as a store that never stopped: gauges, a counter across the restart (its
/// first point after it bridged to the last value before), a histogram, a stream that only
/// reported before; time in a state over a window reaching before the restart has no value.
#[test]
fn a_restart_restores_the_window_from_the_history() {
    let never = Env::default();
    let before = Env::default();
    let after = Env::default();
    let start = ns(-100.0);
    let b: &[f64] = &[10.0, 20.0, 50.0];
    let points = |secs: f64| {
        let i = (secs as u64 / 2) as usize;
        let depth = [4.0, 250.0, 7.0, 9.0, 31.0][i % 5];
        let counts = [[1, 2, 0, 1], [0, 3, 1, 0], [2, 0, 0, 1]][i % 3];
        (
            depth,
            2.5 * secs,
            counts,
            f64::from(u8::from(i.is_multiple_of(7))),
        )
    };
    let record = |e: &Env, secs: f64, old_pod: bool| {
        let (depth, cost, counts, open) = points(secs);
        e.rec(pt("queue", secs, gauge(depth))).unwrap();
        if old_pod {
            let mut p = pt("queue", secs, gauge(depth + 1.0));
            p.instance = "pod-2";
            e.rec(p).unwrap();
        }
        let mut c = pt("cost", secs, counter(1000.0 + cost));
        c.start_time_unix_nano = start;
        e.rec(c).unwrap();
        let mut h = pt("latency", secs, hist(Tp::Delta, b, &counts, 7.0, None));
        h.unit = "ms";
        e.rec(h).unwrap();
        e.rec(pt("breaker", secs, gauge(open))).unwrap();
    };
    for i in 0..15 {
        let secs = 1.0 + 2.0 * f64::from(i);
        record(&never, secs, true);
        record(&before, secs, true);
    }
    // The restart: every slot goes to the history, the new store reads them back.
    before.at(30.0);
    after.at(30.5);
    let rows = before.store.close_all_slots();
    let report = after.store.restore(rows.clone(), 1_000_000);
    assert_eq!((report.streams, report.skipped), (5, 0), "{report:?}");
    for i in 0..15 {
        let secs = 31.0 + 2.0 * f64::from(i);
        record(&never, secs, false);
        record(&after, secs, false);
    }
    never.at(60.0);
    after.at(60.0);
    for (metric, agg, rel) in [
        ("queue", A::Last, 0.0),
        ("queue", A::Min, 0.0),
        ("queue", A::Max, 0.0),
        ("queue", A::Avg, 0.0),
        ("queue", A::Count, 0.0),
        ("queue", A::Sum, 0.0),
        ("cost", A::Increase, 0.0),
        ("cost", A::Max, 0.0),
        // From the window's start instead of the first increase's: 60 s against 59 s.
        ("cost", A::Rate, 0.02),
        ("latency", A::Count, 0.0),
        ("latency", A::Increase, 0.0),
        ("latency", A::Quantile(0.5), 0.0),
        ("latency", A::Quantile(0.99), 0.0),
    ] {
        let (want, got) = (
            never.q(&sel(metric), agg, 60),
            after.q(&sel(metric), agg, 60),
        );
        let (w, g) = (want.value.unwrap(), got.value.unwrap_or(f64::NAN));
        assert!(
            (w - g).abs() <= rel * w.abs() + 1e-9,
            "{metric} {agg}: after a restart {got:?}, never stopped {want:?}"
        );
        assert_eq!(got.points, want.points, "{metric} {agg}");
        assert_eq!(got.series, want.series, "{metric} {agg}");
    }
    // Time in a state needs the points: none over a window reaching before the restart, the
    // same answer once the window has passed it.
    let m = after.q(&sel("breaker"), A::TimeInState { state: Some(1.0) }, 60);
    assert!(m.value.is_none(), "{m:?}");
    let gap = m.gap.unwrap();
    assert!(gap.contains("reaches back before slogate started"), "{gap}");
    assert!(gap.contains("known again in 31 s"), "{gap}");
    for agg in [
        A::TimeInState { state: Some(1.0) },
        A::Transitions { into: None },
    ] {
        let (want, got) = (
            never.q(&sel("breaker"), agg, 20),
            after.q(&sel("breaker"), agg, 20),
        );
        assert!(close(got.value, want.value), "{agg}: {got:?} vs {want:?}");
    }
    // Without the restore the window would hold only the points since the restart.
    let bare = Env::default();
    bare.at(30.5);
    for i in 0..15 {
        record(&bare, 31.0 + 2.0 * f64::from(i), false);
    }
    bare.at(60.0);
    let cost = bare.q(&sel("cost"), A::Increase, 60).value.unwrap();
    assert!(cost < never.q(&sel("cost"), A::Increase, 60).value.unwrap() * 0.6);
    // A restore over its slot budget keeps the newest slots and says which windows miss some.
    let short = Env::default();
    short.at(30.5);
    let report = short.store.restore(rows, 10);
    assert_eq!(report.slots, 10, "{report:?}");
    for i in 0..15 {
        record(&short, 31.0 + 2.0 * f64::from(i), false);
    }
    short.at(60.0);
    let m = short.q(&sel("queue"), A::Max, 60);
    assert!(m.value.is_none(), "{m:?}");
    assert!(m.gap.unwrap().contains("did not reload"));
    // Restored slots age out with the retention.
    after.at(60.0 + 3600.0);
    after.store.close_slots();
    assert!(after.store.restored.read().streams.is_empty());
}
