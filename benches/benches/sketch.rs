//! Criterion benchmarks for `slogate-sketch`: recording into a warmed sketch (the per-span hot
//! path), exact merges of realistic 10k-sample sketches, p99 and multi-quantile reads on a
//! 100k-sample sketch, and the byte format (encode, decode, merge_encoded).
//!
//! Data is seeded log-normal latency (median 50 ms, sigma 0.8), so runs are comparable.
//! Figures: see BENCHMARKS.md.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, LogNormal};
use slogate_sketch::Sketch;

/// `n` latencies in nanoseconds from a log-normal with the given median (ms) and sigma.
fn latencies(seed: u64, n: usize, median_ms: f64, sigma: f64) -> Vec<u64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let dist = LogNormal::new((median_ms * 1e6).ln(), sigma).expect("valid log-normal");
    (0..n).map(|_| dist.sample(&mut rng) as u64).collect()
}

fn sketch_of(values: &[u64]) -> Sketch {
    let mut s = Sketch::new();
    for &v in values {
        s.record(v);
    }
    s
}

fn record(c: &mut Criterion) {
    let mut group = c.benchmark_group("sketch/record");
    let warm = latencies(1, 100_000, 50.0, 0.8);

    // One value per iteration into a sketch whose window already covers it.
    let mut s = sketch_of(&warm);
    group.throughput(Throughput::Elements(1));
    group.bench_function("single_value", |b| {
        b.iter(|| s.record(black_box(48_000_000)))
    });

    // A stream of varied values, so bucket lookups are not perfectly predicted.
    let stream = latencies(2, 4096, 50.0, 0.8);
    let mut s = sketch_of(&warm);
    group.throughput(Throughput::Elements(stream.len() as u64));
    group.bench_function("lognormal_stream_4096", |b| {
        b.iter(|| {
            for &v in black_box(&stream) {
                s.record(v);
            }
        })
    });
    group.finish();
}

fn merge(c: &mut Criterion) {
    let mut group = c.benchmark_group("sketch/merge");
    // Baseline and canary of one series: similar but not identical distributions.
    let baseline = sketch_of(&latencies(3, 10_000, 50.0, 0.8));
    let canary = sketch_of(&latencies(4, 10_000, 55.0, 0.9));
    // Accumulating into a sketch that already spans both, as a rolling window does.
    let mut acc = baseline.clone();
    acc.merge(&canary);
    group.bench_function("10k_into_10k", |b| b.iter(|| acc.merge(black_box(&canary))));
    group.finish();
}

fn quantile(c: &mut Criterion) {
    let mut group = c.benchmark_group("sketch/quantile");
    let s = sketch_of(&latencies(5, 100_000, 50.0, 0.8));
    group.bench_function("p99_100k", |b| {
        b.iter(|| black_box(&s).quantile(black_box(0.99)))
    });
    group.bench_function("p50_p90_p99_p999_100k", |b| {
        b.iter(|| black_box(&s).quantiles(black_box([0.5, 0.9, 0.99, 0.999])))
    });
    group.finish();
}

fn encode_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("sketch/encode_decode");
    let s = sketch_of(&latencies(6, 10_000, 50.0, 0.8));
    let bytes = s.encoded();
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    let mut out = Vec::with_capacity(bytes.len());
    group.bench_function("encode_10k", |b| {
        b.iter(|| {
            out.clear();
            black_box(&s).encode(&mut out);
            black_box(out.len())
        })
    });
    group.bench_function("decode_10k", |b| {
        b.iter(|| Sketch::decode(black_box(&bytes)).expect("valid encoding"))
    });
    group.finish();
}

fn merge_encoded(c: &mut Criterion) {
    let mut group = c.benchmark_group("sketch/merge_encoded");
    let canary = sketch_of(&latencies(6, 10_000, 55.0, 0.9));
    let bytes = canary.encoded();
    // Same accumulator shape as the merge group, so the two are directly comparable.
    let mut acc = sketch_of(&latencies(3, 10_000, 50.0, 0.8));
    acc.merge(&canary);
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("10k_into_10k", |b| {
        b.iter(|| {
            acc.merge_encoded(black_box(&bytes))
                .expect("valid encoding")
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    record,
    merge,
    quantile,
    encode_decode,
    merge_encoded
);
criterion_main!(benches);
