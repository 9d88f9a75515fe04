//! The metrics decoder allocates nothing in steady state: once the thread's batch is warm,
//! decoding a request of every point type (with attributes of every kind, explicit and
//! exponential buckets, quantiles, invalid points among them) and handing its points to a sink
//! that keeps nothing makes zero heap allocations. A counting global allocator measures it.
#![allow(unsafe_code)] // a counting global allocator is unsafe by nature

use crate::metrics_support::{T0, exp_histogram, hist_point, histogram, kv, summary};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    ExponentialHistogramDataPoint, Metric, NumberDataPoint, Sum, SummaryDataPoint,
    exponential_histogram_data_point::Buckets, metric, number_data_point,
    summary_data_point::ValueAtQuantile,
};
use prost::Message;
use slogate_core::{MetricPoint, MetricSink, PointRefusal};
use slogate_ingest::extract::ExtractConfig;
use slogate_ingest::metrics::MetricTally;
use slogate_ingest::metrics::wire::decode_metrics;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    // Only allocations made by the measuring thread count, so other test threads do not interfere.
    static COUNT: Cell<Option<u64>> = const { Cell::new(None) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = COUNT.try_with(|c| c.set(c.get().map(|n| n + layout.size() as u64)));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = COUNT.try_with(|c| c.set(c.get().map(|n| n + new_size as u64)));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Bytes allocated by this thread while `f` runs.
fn allocated_bytes(f: impl FnOnce()) -> u64 {
    COUNT.with(|c| c.set(Some(0)));
    f();
    COUNT.with(|c| c.replace(None)).unwrap_or(0)
}

/// Looks at every field of every point, keeps nothing.
struct Nothing;

impl MetricSink for Nothing {
    fn record_point(&self, point: &MetricPoint<'_>) -> Result<(), PointRefusal> {
        std::hint::black_box(point);
        Ok(())
    }
}

fn attrs(i: u64) -> Vec<KeyValue> {
    let v = |k: &str, v: any_value::Value| KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    };
    vec![
        kv("http.route", &format!("/api/{}", i % 8)),
        v(
            "http.response.status_code",
            any_value::Value::IntValue(200 + (i % 3) as i64),
        ),
        v("ratio", any_value::Value::DoubleValue(0.25 * i as f64)),
        v("ok", any_value::Value::BoolValue(i.is_multiple_of(2))),
        kv("method", "GET"),
        // A repeated key: the last wins.
        kv("method", "POST"),
    ]
}

/// 4 resources × 5 metrics × 20 points, one point in ten invalid.
pub(crate) fn request() -> Vec<u8> {
    let metrics = |r: u64| -> Vec<Metric> {
        let number = |i: u64| NumberDataPoint {
            attributes: attrs(i),
            start_time_unix_nano: T0 - 60_000_000_000,
            time_unix_nano: T0,
            value: Some(number_data_point::Value::AsDouble(if i % 10 == 9 {
                f64::NAN
            } else {
                i as f64
            })),
            ..Default::default()
        };
        vec![
            Metric {
                name: "requests".into(),
                unit: "{request}".into(),
                data: Some(metric::Data::Sum(Sum {
                    data_points: (0..20).map(|i| number(i + r)).collect(),
                    aggregation_temporality: 2,
                    is_monotonic: true,
                })),
                ..Default::default()
            },
            histogram(
                "duration",
                (0..20)
                    .map(|i| {
                        let mut p = hist_point(
                            vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0],
                            (0..11).map(|b| (b + i) % 4).collect(),
                        );
                        p.attributes = attrs(i);
                        if i % 10 == 9 {
                            p.count += 1;
                        }
                        p
                    })
                    .collect(),
            ),
            exp_histogram(
                "duration.exp",
                (0..20)
                    .map(|i| {
                        let counts: Vec<u64> = (0..40).map(|b| (b + i) % 5).collect();
                        ExponentialHistogramDataPoint {
                            attributes: attrs(i),
                            time_unix_nano: T0,
                            count: counts.iter().sum::<u64>() + 3,
                            sum: Some(12.5),
                            scale: 3,
                            zero_count: 3,
                            positive: Some(Buckets {
                                offset: -5,
                                bucket_counts: counts,
                            }),
                            negative: Some(Buckets {
                                offset: 0,
                                bucket_counts: vec![],
                            }),
                            ..Default::default()
                        }
                    })
                    .collect(),
            ),
            summary(
                "latency.summary",
                (0..20)
                    .map(|i| SummaryDataPoint {
                        attributes: attrs(i),
                        time_unix_nano: T0,
                        count: 10,
                        sum: 3.5,
                        quantile_values: [0.5, 0.9, 0.99]
                            .iter()
                            .map(|&q| ValueAtQuantile {
                                quantile: q,
                                value: q * 2.0,
                            })
                            .collect(),
                        ..Default::default()
                    })
                    .collect(),
            ),
            Metric {
                name: "queue.depth".into(),
                data: Some(metric::Data::Gauge(
                    opentelemetry_proto::tonic::metrics::v1::Gauge {
                        data_points: (0..20).map(number).collect(),
                    },
                )),
                ..Default::default()
            },
        ]
    };
    crate::metrics_support::request(
        (0..4)
            .map(|r| {
                crate::metrics_support::resource_metrics(
                    &[
                        (
                            "service.name",
                            ["checkout", "auth", "search", "cart"][r as usize],
                        ),
                        ("deployment.environment.name", "prod"),
                        ("service.version", "v1.4.2"),
                        ("service.instance.id", "0b7c-41"),
                        ("host.name", "node-7"),
                    ],
                    metrics(r),
                )
            })
            .collect(),
    )
    .encode_to_vec()
}

#[test]
fn decoding_allocates_nothing_in_steady_state() {
    let bytes = request();
    let cfg = ExtractConfig::default();
    let run = || {
        let mut tally = MetricTally::default();
        decode_metrics(&bytes, &cfg, &Nothing, &mut tally).unwrap();
        tally
    };
    // Warm-up: grows the thread's batch once.
    let tally = run();
    assert_eq!(
        (tally.recorded, tally.total_rejected()),
        (4 * 5 * 20 - 24, 24)
    );
    run();
    let per: Vec<u64> = (0..10)
        .map(|_| {
            allocated_bytes(|| {
                run();
            })
        })
        .collect();
    assert_eq!(
        per,
        vec![0; 10],
        "bytes allocated per request after warm-up"
    );
}
