//! Decodes one OTLP metrics request N times into a sink that keeps nothing and prints the wall
//! time per data point: the cost of the metrics fast path (decode, validate, render and sort
//! attributes, hand over) without a store behind it. Builds its own request (4 resources,
//! 4 metrics each: a cumulative sum, a 10-bound histogram, a 40-bucket exponential histogram and
//! a gauge, 64 points each, 4 attributes per point), or reads one from a file.
//!
//! ```sh
//! cargo run --release -p slogate-ingest --example metrics_decode_loop -- 2000
//! cargo run --release -p slogate-ingest --example metrics_decode_loop -- 2000 /tmp/metrics.pb
//! ```
//!
//! Figures (release profile, a 2-core container shared with other builds, 3 runs of 2000
//! iterations, 1024 points and 234 KB per request): 243, 244 and 252 ns per data point at load
//! average 3.5 before the attribute and emission rework; after it, interleaved with the old
//! decoder at load average 5.6, 224, 231 and 233 ns against the old decoder's 312, 316 and 322
//! (the ratio is the figure to trust on a shared machine: about 0.73).

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    exponential_histogram_data_point::Buckets, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use slogate_core::{MetricPoint, MetricSink, PointRefusal};
use slogate_ingest::extract::ExtractConfig;
use slogate_ingest::metrics::MetricTally;
use slogate_ingest::metrics::wire::decode_metrics;

struct Nothing;

impl MetricSink for Nothing {
    fn record_point(&self, point: &MetricPoint<'_>) -> Result<(), PointRefusal> {
        std::hint::black_box(point);
        Ok(())
    }
}

fn kv(k: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn s(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.into())
}

fn request() -> Vec<u8> {
    const T0: u64 = 1_800_000_000_000_000_000;
    const POINTS: u64 = 64;
    let attrs = |i: u64| {
        vec![
            kv("http.route", s(&format!("/api/v1/items/{}", i % 16))),
            kv(
                "http.request.method",
                s(if i.is_multiple_of(3) { "POST" } else { "GET" }),
            ),
            kv("http.response.status_code", any_value::Value::IntValue(200)),
            kv("network.protocol.version", s("1.1")),
        ]
    };
    let number = |i: u64| NumberDataPoint {
        attributes: attrs(i),
        start_time_unix_nano: T0 - 60_000_000_000,
        time_unix_nano: T0,
        value: Some(number_data_point::Value::AsDouble(i as f64 * 1.5)),
        ..Default::default()
    };
    let metrics = vec![
        Metric {
            name: "http.server.request.count".into(),
            unit: "{request}".into(),
            data: Some(metric::Data::Sum(Sum {
                data_points: (0..POINTS).map(number).collect(),
                aggregation_temporality: 2,
                is_monotonic: true,
            })),
            ..Default::default()
        },
        Metric {
            name: "http.server.request.duration".into(),
            unit: "s".into(),
            data: Some(metric::Data::Histogram(Histogram {
                data_points: (0..POINTS)
                    .map(|i| {
                        let counts: Vec<u64> = (0..11).map(|b| (b * 7 + i) % 13).collect();
                        HistogramDataPoint {
                            attributes: attrs(i),
                            start_time_unix_nano: T0 - 60_000_000_000,
                            time_unix_nano: T0,
                            count: counts.iter().sum(),
                            sum: Some(3.25),
                            min: Some(0.001),
                            max: Some(4.0),
                            bucket_counts: counts,
                            explicit_bounds: vec![
                                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                            ],
                            ..Default::default()
                        }
                    })
                    .collect(),
                aggregation_temporality: 2,
            })),
            ..Default::default()
        },
        Metric {
            name: "rpc.server.duration".into(),
            unit: "ms".into(),
            data: Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
                data_points: (0..POINTS)
                    .map(|i| {
                        let counts: Vec<u64> = (0..40).map(|b| (b + i) % 9).collect();
                        ExponentialHistogramDataPoint {
                            attributes: attrs(i),
                            time_unix_nano: T0,
                            count: counts.iter().sum::<u64>() + 1,
                            sum: Some(812.5),
                            scale: 3,
                            zero_count: 1,
                            positive: Some(Buckets {
                                offset: 10,
                                bucket_counts: counts,
                            }),
                            ..Default::default()
                        }
                    })
                    .collect(),
                aggregation_temporality: 1,
            })),
            ..Default::default()
        },
        Metric {
            name: "process.memory.usage".into(),
            unit: "By".into(),
            data: Some(metric::Data::Gauge(Gauge {
                data_points: (0..POINTS).map(number).collect(),
            })),
            ..Default::default()
        },
    ];
    let resource_metrics = ["checkout", "auth", "search", "cart"]
        .iter()
        .map(|svc| ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", s(svc)),
                    kv("service.version", s("v1.4.2")),
                    kv("deployment.environment.name", s("prod")),
                    kv(
                        "service.instance.id",
                        s("627cc493-f310-47de-96bd-71410b7dec09"),
                    ),
                    kv("host.name", s("node-7")),
                ],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: metrics.clone(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    ExportMetricsServiceRequest { resource_metrics }.encode_to_vec()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .and_then(|s| s.parse().ok())
        .expect("usage: metrics_decode_loop ITERATIONS [REQUEST.pb]");
    let bytes = match args.next() {
        Some(path) => std::fs::read(path).expect("read the request"),
        None => request(),
    };
    let cfg = ExtractConfig::default();
    let mut points = 0;
    let run = |points: &mut u64| {
        let mut tally = MetricTally::default();
        decode_metrics(std::hint::black_box(&bytes), &cfg, &Nothing, &mut tally)
            .expect("valid request");
        *points = tally.recorded + tally.skipped + tally.total_rejected();
    };
    run(&mut points);
    let t0 = std::time::Instant::now();
    for _ in 0..n {
        run(&mut points);
    }
    let dt = t0.elapsed();
    println!(
        "{points} data points per request ({} bytes), {n} iterations, {:.1} ns per data point",
        bytes.len(),
        dt.as_nanos() as f64 / (n as f64 * points as f64)
    );
}
