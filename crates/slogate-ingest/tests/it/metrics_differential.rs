//! The metrics fast path against prost and a plain reference of the rules: the same points,
//! in the same order, and the same tally, for random requests of every point type (valid and
//! not), the same requests with their fields reordered, unpacked and padded with unknown
//! fields, repeated messages that protobuf merges, and OTLP/JSON of the same requests.

use crate::metrics_support::{Collect, REFUSED, T0, reference};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint,
    exponential_histogram_data_point::Buckets, metric, number_data_point,
    summary_data_point::ValueAtQuantile,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use proptest::prelude::*;
use prost::Message;
use slogate_ingest::extract::ExtractConfig;
use slogate_ingest::metrics::MetricTally;
use slogate_ingest::metrics::wire::decode_metrics;

fn config() -> ExtractConfig {
    ExtractConfig {
        extras: vec![vec![b"cloud.region".to_vec()]],
        ..Default::default()
    }
}

fn arb_value() -> impl Strategy<Value = any_value::Value> {
    use any_value::Value::*;
    prop_oneof![
        4 => prop::sample::select(vec!["GET", "", "/a/b", "x".repeat(130).leak() as &str])
            .prop_map(|s| StringValue(s.into())),
        1 => any::<bool>().prop_map(BoolValue),
        2 => prop::sample::select(vec![0i64, -1, 200, 1 << 40, i64::MIN]).prop_map(IntValue),
        2 => prop::sample::select(vec![0.5f64, -0.0, 1e21, 2.5e-8, 3.0, f64::NAN, f64::INFINITY])
            .prop_map(DoubleValue),
        1 => Just(BytesValue(vec![1, 2])),
        1 => Just(ArrayValue(Default::default())),
    ]
}

fn arb_attrs() -> impl Strategy<Value = Vec<KeyValue>> {
    let key = prop::sample::select(vec!["http.route", "method", "a", "b", "zz.last"]);
    prop_oneof![
        8 => prop::collection::vec(
            (key, prop::option::weighted(0.9, arb_value())).prop_map(|(k, v)| KeyValue {
                key: k.into(),
                value: if k == "b" && v.is_none() { Some(AnyValue { value: None }) } else { v.map(|v| AnyValue { value: Some(v) }) },
                ..Default::default()
            }),
            0..6,
        ),
        // Past the attribute cap.
        1 => Just((0..129).map(|i| crate::metrics_support::kv(&format!("k{i}"), "v")).collect()),
    ]
}

fn arb_time() -> impl Strategy<Value = (u64, u64, u32)> {
    (
        prop::sample::select(vec![0u64, T0 - 1_000]),
        prop_oneof![9 => Just(T0), 1 => Just(0u64)],
        prop_oneof![9 => Just(0u32), 1 => Just(1u32), 1 => Just(2u32)],
    )
}

fn arb_double() -> impl Strategy<Value = f64> {
    prop_oneof![
        8 => prop::sample::select(vec![0.0f64, 1.5, -3.25, 1e300, 42.0]),
        1 => prop::sample::select(vec![f64::NAN, f64::INFINITY, f64::NEG_INFINITY]),
    ]
}

fn arb_number_point() -> impl Strategy<Value = NumberDataPoint> {
    (
        arb_time(),
        arb_attrs(),
        prop_oneof![
            6 => arb_double().prop_map(|d| Some(number_data_point::Value::AsDouble(d))),
            2 => prop::sample::select(vec![0i64, -7, i64::MAX]).prop_map(|i| Some(number_data_point::Value::AsInt(i))),
            1 => Just(None),
        ],
    )
        .prop_map(|((start, time, flags), attributes, value)| NumberDataPoint {
            attributes,
            start_time_unix_nano: start,
            time_unix_nano: time,
            flags,
            value,
            ..Default::default()
        })
}

fn arb_hist_point() -> impl Strategy<Value = HistogramDataPoint> {
    (
        arb_time(),
        arb_attrs(),
        prop_oneof![
            6 => (0usize..6).prop_map(|n| (0..n).map(|i| i as f64 * 2.5 - 1.0).collect::<Vec<_>>()),
            1 => Just(vec![1.0, 0.5]),
            1 => Just(vec![1.0, 1.0]),
            1 => Just(vec![0.1, f64::NAN]),
            1 => Just((0..200).map(f64::from).collect()),
        ],
        prop::collection::vec(0u64..5, 0..3),
        prop_oneof![8 => Just(0i64), 1 => Just(1), 1 => Just(-1)],
        (
            prop::option::of(arb_double()),
            prop::option::of(arb_double()),
            prop::option::of(arb_double()),
        ),
        any::<bool>(),
    )
        .prop_map(
            |((start, time, flags), attributes, bounds, extra, skew, (sum, min, max), empty)| {
                let mut counts: Vec<u64> = (0..=bounds.len() as u64).map(|i| i % 3).collect();
                if empty && bounds.is_empty() {
                    counts.clear();
                }
                counts.extend(extra.iter().take(usize::from(skew != 0)));
                let count = counts.iter().sum::<u64>().saturating_add_signed(skew);
                HistogramDataPoint {
                    attributes,
                    start_time_unix_nano: start,
                    time_unix_nano: time,
                    flags,
                    count,
                    sum,
                    min,
                    max,
                    bucket_counts: counts,
                    explicit_bounds: bounds,
                    ..Default::default()
                }
            },
        )
}

fn arb_buckets() -> impl Strategy<Value = Option<Buckets>> {
    prop::option::of(
        (
            prop::sample::select(vec![0i32, -5, 7, i32::MAX - 2, i32::MIN]),
            prop_oneof![
                8 => prop::collection::vec(0u64..300, 0..5),
                1 => Just(vec![1u64; 321]),
                1 => Just(vec![u64::MAX, 2]),
            ],
        )
            .prop_map(|(offset, bucket_counts)| Buckets {
                offset,
                bucket_counts,
            }),
    )
}

fn arb_exp_point() -> impl Strategy<Value = ExponentialHistogramDataPoint> {
    (
        arb_time(),
        arb_attrs(),
        prop_oneof![8 => -10i32..=20, 1 => Just(-11), 1 => Just(21)],
        (arb_buckets(), arb_buckets(), 0u64..4),
        prop_oneof![8 => Just(0i64), 1 => Just(1)],
        (
            prop::option::of(arb_double()),
            prop::option::of(arb_double()),
            prop_oneof![6 => Just(0.0), 1 => Just(1e-9), 1 => Just(-1.0), 1 => Just(f64::NAN)],
        ),
    )
        .prop_map(
            |(
                (start, time, flags),
                attributes,
                scale,
                (positive, negative, zero_count),
                skew,
                (sum, max, zero_threshold),
            )| {
                let total = [&positive, &negative]
                    .iter()
                    .flat_map(|b| b.iter().flat_map(|b| &b.bucket_counts))
                    .fold(zero_count, |a, c| a.wrapping_add(*c));
                ExponentialHistogramDataPoint {
                    attributes,
                    start_time_unix_nano: start,
                    time_unix_nano: time,
                    flags,
                    count: total.wrapping_add_signed(skew),
                    sum,
                    max,
                    scale,
                    zero_count,
                    zero_threshold,
                    positive,
                    negative,
                    ..Default::default()
                }
            },
        )
}

fn arb_summary_point() -> impl Strategy<Value = SummaryDataPoint> {
    (
        arb_time(),
        arb_attrs(),
        prop::collection::vec(
            (
                prop_oneof![8 => prop::sample::select(vec![0.0f64, 0.5, 0.99, 1.0]), 1 => Just(1.5), 1 => Just(f64::NAN)],
                arb_double(),
            )
                .prop_map(|(quantile, value)| ValueAtQuantile { quantile, value }),
            0..4,
        ),
        arb_double(),
        0u64..100,
    )
        .prop_map(|((start, time, flags), attributes, quantile_values, sum, count)| SummaryDataPoint {
            attributes,
            start_time_unix_nano: start,
            time_unix_nano: time,
            flags,
            count,
            sum,
            quantile_values,
        })
}

fn arb_metric() -> impl Strategy<Value = Metric> {
    let temporality = prop_oneof![4 => Just(2i32), 4 => Just(1), 1 => Just(0), 1 => Just(3)];
    let data = prop_oneof![
        prop::collection::vec(arb_number_point(), 0..4)
            .prop_map(|data_points| Some(metric::Data::Gauge(Gauge { data_points }))),
        (
            prop::collection::vec(arb_number_point(), 0..4),
            temporality.clone(),
            any::<bool>()
        )
            .prop_map(|(data_points, aggregation_temporality, is_monotonic)| Some(
                metric::Data::Sum(Sum {
                    data_points,
                    aggregation_temporality,
                    is_monotonic,
                })
            )),
        (
            prop::collection::vec(arb_hist_point(), 0..4),
            temporality.clone()
        )
            .prop_map(|(data_points, aggregation_temporality)| Some(
                metric::Data::Histogram(Histogram {
                    data_points,
                    aggregation_temporality,
                })
            )),
        (prop::collection::vec(arb_exp_point(), 0..4), temporality).prop_map(
            |(data_points, aggregation_temporality)| Some(metric::Data::ExponentialHistogram(
                ExponentialHistogram {
                    data_points,
                    aggregation_temporality,
                }
            ))
        ),
        prop::collection::vec(arb_summary_point(), 0..4)
            .prop_map(|data_points| Some(metric::Data::Summary(Summary { data_points }))),
        Just(None),
    ];
    (
        prop_oneof![6 => Just("http.server.duration"), 1 => Just(""), 1 => Just(REFUSED), 1 => Just("queue.depth")],
        prop::sample::select(vec!["", "s", "{request}"]),
        data,
    )
        .prop_map(|(name, unit, data)| Metric {
            name: name.into(),
            unit: unit.into(),
            description: "d".into(),
            data,
            ..Default::default()
        })
}

pub(crate) fn arb_request() -> impl Strategy<Value = ExportMetricsServiceRequest> {
    use crate::metrics_support::kv;
    let resource = (
        prop::option::of(prop::sample::select(vec!["checkout", ""])),
        any::<bool>(),
        prop::sample::select(vec![
            vec![],
            vec![("host.name", "node-1")],
            vec![("host.name", "node-1"), ("k8s.pod.name", "pod-7")],
            vec![("service.instance.id", "i-1"), ("k8s.pod.name", "pod-7")],
        ]),
    )
        .prop_map(|(service, int_service, instance)| {
            let mut attributes = Vec::new();
            if int_service {
                attributes.push(KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::IntValue(3)),
                    }),
                    ..Default::default()
                });
            }
            if let Some(s) = service {
                attributes.push(kv("service.name", s));
            }
            attributes.push(kv("deployment.environment.name", "prod"));
            attributes.push(kv("service.version", "v2"));
            attributes.push(kv("cloud.region", "eu"));
            for (k, v) in instance {
                attributes.push(kv(k, v));
            }
            Resource {
                attributes,
                ..Default::default()
            }
        });
    prop::collection::vec(
        (
            resource,
            prop::collection::vec(prop::collection::vec(arb_metric(), 0..4), 0..3),
        )
            .prop_map(|(resource, scopes)| ResourceMetrics {
                resource: Some(resource),
                scope_metrics: scopes
                    .into_iter()
                    .map(|metrics| ScopeMetrics {
                        metrics,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
        0..3,
    )
    .prop_map(|resource_metrics| ExportMetricsServiceRequest { resource_metrics })
}

pub(crate) fn fast(
    bytes: &[u8],
    cfg: &ExtractConfig,
) -> Result<(Vec<crate::metrics_support::OwnedPoint>, MetricTally), String> {
    let sink = Collect::default();
    let mut tally = MetricTally::default();
    decode_metrics(bytes, cfg, &sink, &mut tally).map_err(|e| e.to_string())?;
    Ok((sink.take(), tally))
}

/// prost's serde writes NaN and the infinities as `null` except in quantiles (where it writes
/// the proto3 strings): replaces them elsewhere with a finite value, so the JSON says what the
/// protobuf says.
fn json_safe(mut req: ExportMetricsServiceRequest) -> ExportMetricsServiceRequest {
    let fix = |v: &mut f64| {
        if !v.is_finite() {
            *v = 7.0;
        }
    };
    let fix_opt = |v: &mut Option<f64>| {
        if let Some(v) = v {
            fix(v);
        }
    };
    let fix_attrs = |attrs: &mut Vec<KeyValue>| {
        for kv in attrs {
            if let Some(AnyValue {
                value: Some(any_value::Value::DoubleValue(d)),
            }) = &mut kv.value
            {
                fix(d);
            }
        }
    };
    for rm in &mut req.resource_metrics {
        for m in rm.scope_metrics.iter_mut().flat_map(|s| &mut s.metrics) {
            match &mut m.data {
                Some(metric::Data::Gauge(Gauge { data_points }))
                | Some(metric::Data::Sum(Sum { data_points, .. })) => {
                    for p in data_points {
                        fix_attrs(&mut p.attributes);
                        if let Some(number_data_point::Value::AsDouble(d)) = &mut p.value {
                            fix(d);
                        }
                    }
                }
                Some(metric::Data::Histogram(h)) => {
                    for p in &mut h.data_points {
                        fix_attrs(&mut p.attributes);
                        [&mut p.sum, &mut p.min, &mut p.max]
                            .into_iter()
                            .for_each(fix_opt);
                        p.explicit_bounds.iter_mut().for_each(fix);
                    }
                }
                Some(metric::Data::ExponentialHistogram(h)) => {
                    for p in &mut h.data_points {
                        fix_attrs(&mut p.attributes);
                        [&mut p.sum, &mut p.min, &mut p.max]
                            .into_iter()
                            .for_each(fix_opt);
                        fix(&mut p.zero_threshold);
                    }
                }
                Some(metric::Data::Summary(s)) => {
                    for p in &mut s.data_points {
                        fix_attrs(&mut p.attributes);
                        fix(&mut p.sum);
                    }
                }
                None => {}
            }
        }
    }
    req
}

// --- A schema-aware rewriter: reorders, unpacks and pads fields at every message level. ---

#[derive(Clone, Copy, PartialEq)]
enum Msg {
    Request,
    ResourceMetrics,
    Resource,
    Scope,
    Metric,
    Data(u32),
    Point(u32),
    Buckets,
    Quantile,
    KeyValue,
    Leaf,
}

fn children(m: Msg, field: u32) -> Msg {
    match (m, field) {
        (Msg::Request, 1) => Msg::ResourceMetrics,
        (Msg::ResourceMetrics, 1) => Msg::Resource,
        (Msg::ResourceMetrics, 2) => Msg::Scope,
        (Msg::Resource, 1) => Msg::KeyValue,
        (Msg::Scope, 2) => Msg::Metric,
        (Msg::Metric, 5 | 7 | 9 | 10 | 11) => Msg::Data(field),
        (Msg::Data(kind), 1) => Msg::Point(kind),
        (Msg::Point(5 | 7), 7) | (Msg::Point(9), 9) | (Msg::Point(10), 1) | (Msg::Point(11), 7) => {
            Msg::KeyValue
        }
        (Msg::Point(10), 8 | 9) => Msg::Buckets,
        (Msg::Point(11), 6) => Msg::Quantile,
        _ => Msg::Leaf,
    }
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn read_varint(b: &[u8], i: &mut usize) -> u64 {
    let mut out = 0u64;
    for s in 0.. {
        let byte = b[*i];
        *i += 1;
        out |= u64::from(byte & 0x7F) << (7 * s);
        if byte < 0x80 {
            break;
        }
    }
    out
}

/// Splits a message into its top-level fields: (number, wire type, raw value bytes).
fn split(b: &[u8]) -> Vec<(u32, u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let tag = read_varint(b, &mut i);
        let (f, wt) = ((tag >> 3) as u32, (tag & 7) as u8);
        let start = i;
        match wt {
            0 => {
                read_varint(b, &mut i);
            }
            1 => i += 8,
            5 => i += 4,
            2 => {
                let len = read_varint(b, &mut i) as usize;
                out.push((f, wt, b[i..i + len].to_vec()));
                i += len;
                continue;
            }
            _ => unreachable!("prost writes no groups"),
        }
        out.push((f, wt, b[start..i].to_vec()));
    }
    out
}

fn put(f: u32, wt: u8, value: &[u8], out: &mut Vec<u8>) {
    varint(u64::from(f << 3 | u32::from(wt)), out);
    if wt == 2 {
        varint(value.len() as u64, out);
    }
    out.extend_from_slice(value);
}

/// Reverses the fields of every message (what protobuf allows: any order), writes packed
/// repeated scalars one element per field, and puts unknown fields (a varint, a string, a
/// fixed32 and a group) in front of every message's fields.
fn rewrite(b: &[u8], m: Msg) -> Vec<u8> {
    let mut out = Vec::new();
    if m != Msg::Leaf {
        // Field numbers no message here uses (their tags take two bytes).
        put(99, 0, &[0x96, 0x01], &mut out);
        put(1000, 2, b"junk", &mut out);
        put(98, 5, &[1, 2, 3, 4], &mut out);
        // A group: start tag, a field, end tag.
        varint((97 << 3) | 3, &mut out);
        put(1, 0, &[5], &mut out);
        varint((97 << 3) | 4, &mut out);
    }
    let mut fields = split(b);
    fields.reverse();
    for (f, wt, v) in fields {
        let child = children(m, f);
        match (m, f, wt) {
            // Packed fixed64 / double: one field per element.
            (Msg::Point(9), 6 | 7, 2) => {
                for c in v.chunks(8) {
                    put(f, 1, c, &mut out);
                }
            }
            // Packed varints.
            (Msg::Buckets, 2, 2) => {
                let mut i = 0;
                while i < v.len() {
                    let s = i;
                    read_varint(&v, &mut i);
                    put(f, 0, &v[s..i], &mut out);
                }
            }
            (_, _, 2) if child != Msg::Leaf => put(f, 2, &rewrite(&v, child), &mut out),
            _ => put(f, wt, &v, &mut out),
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(384))]

    #[test]
    fn wire_agrees_with_prost_and_the_reference(req in arb_request()) {
        let cfg = config();
        let bytes = req.encode_to_vec();
        let want = reference(&req, &cfg);
        prop_assert_eq!(fast(&bytes, &cfg).unwrap(), want);
    }

    /// The same request with its fields reversed at every level, packed arrays unpacked and
    /// unknown fields everywhere: prost reads it (reversed repeated fields and all) and both
    /// agree.
    #[test]
    fn reordered_unpacked_and_padded_fields_read_alike(req in arb_request()) {
        let cfg = config();
        let bytes = rewrite(&req.encode_to_vec(), Msg::Request);
        let decoded = ExportMetricsServiceRequest::decode(&bytes[..]).expect("prost reads it");
        prop_assert_eq!(fast(&bytes, &cfg).unwrap(), reference(&decoded, &cfg));
    }

    /// Cut or flipped bytes never panic, and when both decoders accept them they agree.
    #[test]
    fn hostile_bytes_never_panic(req in arb_request(), cut in any::<prop::sample::Index>(), flip in any::<prop::sample::Index>(), bit in 0u8..8) {
        let cfg = config();
        let mut bytes = req.encode_to_vec();
        if !bytes.is_empty() {
            let i = flip.index(bytes.len());
            bytes[i] ^= 1 << bit;
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        let ours = fast(&bytes, &cfg);
        if let (Ok(got), Ok(decoded)) = (&ours, ExportMetricsServiceRequest::decode(&bytes[..])) {
            prop_assert_eq!(got, &reference(&decoded, &cfg));
        }
        if let Err(e) = &ours {
            prop_assert!(e.starts_with("malformed protobuf: "), "{}", e);
        }
    }

    /// OTLP/JSON of the same request (prost's serde mapping) records what the protobuf
    /// records: the same points in the same order, the same tally.
    #[test]
    fn json_agrees_with_protobuf(req in arb_request()) {
        let cfg = config();
        let req = json_safe(req);
        let json = serde_json::to_vec(&req).unwrap();
        let parsed = slogate_ingest::metrics::json::parse(&json).unwrap();
        let sink = Collect::default();
        let mut tally = MetricTally::default();
        slogate_ingest::metrics::json::record_request(&parsed, &cfg, &sink, &mut tally);
        prop_assert_eq!((sink.take(), tally), fast(&req.encode_to_vec(), &cfg).unwrap());
    }
}

/// A `Metric` that carries its data member several times: occurrences of the same member merge
/// (points concatenate, the last temporality wins for all of them); a different member
/// replaces what came before. Likewise repeated `Buckets` and `Resource` messages merge.
#[test]
fn repeated_messages_merge_as_protobuf_merges_them() {
    let cfg = config();
    let point = |v: f64| NumberDataPoint {
        time_unix_nano: T0,
        value: Some(number_data_point::Value::AsDouble(v)),
        ..Default::default()
    };
    let sum = |points: Vec<NumberDataPoint>, t: i32| {
        Sum {
            data_points: points,
            aggregation_temporality: t,
            is_monotonic: true,
        }
        .encode_to_vec()
    };
    let gauge = Gauge {
        data_points: vec![point(9.0)],
    }
    .encode_to_vec();
    let field = |tag: u8, payload: &[u8]| {
        let mut out = vec![tag];
        varint(payload.len() as u64, &mut out);
        out.extend_from_slice(payload);
        out
    };
    let name = field(0x0A, b"m");
    // (Metric bytes, the values recorded in order)
    let cases: Vec<(Vec<u8>, Vec<f64>)> = vec![
        // sum, sum: merged; the second's temporality (delta) applies to both.
        (
            [
                name.clone(),
                field(0x3A, &sum(vec![point(1.0)], 2)),
                field(0x3A, &sum(vec![point(2.0)], 1)),
            ]
            .concat(),
            vec![1.0, 2.0],
        ),
        // gauge, sum: the sum replaces the gauge.
        (
            [
                field(0x2A, &gauge),
                name.clone(),
                field(0x3A, &sum(vec![point(3.0)], 2)),
            ]
            .concat(),
            vec![3.0],
        ),
        // sum, gauge, sum: only the last run counts.
        (
            [
                field(0x3A, &sum(vec![point(1.0)], 2)),
                field(0x2A, &gauge),
                field(0x3A, &sum(vec![point(4.0)], 2)),
                name.clone(),
            ]
            .concat(),
            vec![4.0],
        ),
        // An empty second name does not unset the first? It does: strings are last-wins.
        (
            [
                name.clone(),
                field(0x3A, &sum(vec![point(5.0)], 2)),
                field(0x0A, b"n"),
            ]
            .concat(),
            vec![5.0],
        ),
    ];
    for (metric_bytes, want) in cases {
        let scope = field(0x12, &metric_bytes);
        let rm = [
            field(0x12, &scope),
            // Two resource messages: their attributes concatenate.
            field(
                0x0A,
                &field(
                    0x0A,
                    &crate::metrics_support::kv("service.name", "svc").encode_to_vec(),
                ),
            ),
            field(
                0x0A,
                &field(
                    0x0A,
                    &crate::metrics_support::kv("host.name", "h").encode_to_vec(),
                ),
            ),
        ]
        .concat();
        let bytes = field(0x0A, &rm);
        let decoded = ExportMetricsServiceRequest::decode(&bytes[..]).unwrap();
        let (points, tally) = fast(&bytes, &cfg).unwrap();
        assert_eq!(
            (points.clone(), tally),
            reference(&decoded, &cfg),
            "{metric_bytes:x?}"
        );
        let got: Vec<f64> = points
            .iter()
            .map(|p| match p.value {
                crate::metrics_support::OwnedValue::Sum { value, .. } => value,
                _ => f64::NAN,
            })
            .collect();
        assert_eq!(got, want);
        assert!(points.iter().all(|p| p.instance == "h"));
    }
    // Two `positive` Buckets messages: the last offset, the counts concatenated.
    let b1 = Buckets {
        offset: 3,
        bucket_counts: vec![1, 2],
    }
    .encode_to_vec();
    let b2 = Buckets {
        offset: -2,
        bucket_counts: vec![4],
    }
    .encode_to_vec();
    let p = ExponentialHistogramDataPoint {
        time_unix_nano: T0,
        count: 7,
        ..Default::default()
    };
    let p = [p.encode_to_vec(), field(0x42, &b1), field(0x42, &b2)].concat();
    let data = [field(0x0A, &p), vec![0x10, 0x02]].concat();
    let metric_bytes = [name, field(0x52, &data)].concat();
    let bytes = field(
        0x0A,
        &[
            field(
                0x0A,
                &field(
                    0x0A,
                    &crate::metrics_support::kv("service.name", "svc").encode_to_vec(),
                ),
            ),
            field(0x12, &field(0x12, &metric_bytes)),
        ]
        .concat(),
    );
    let decoded = ExportMetricsServiceRequest::decode(&bytes[..]).unwrap();
    let (points, tally) = fast(&bytes, &cfg).unwrap();
    assert_eq!((points.clone(), tally), reference(&decoded, &cfg));
    assert!(
        matches!(&points[0].value, crate::metrics_support::OwnedValue::Exponential { positive, .. } if *positive == (-2, vec![1, 2, 4]))
    );
}

#[test]
fn malformed_requests_are_refused_whole() {
    let cases: &[(&[u8], &str)] = &[
        (b"\x0a\x05abc", "runs past the end"),
        (b"\x0a", "truncated varint"),
        (b"\x0b", "wrong wire type for a message or string field"),
        // A metric whose time is a varint.
        (
            b"\x0a\x0c\x12\x0a\x12\x08\x2a\x06\x0a\x04\x18\x01\x18\x01",
            "wrong wire type",
        ),
        // A packed bucket_counts of 7 bytes.
        (
            b"\x0a\x10\x12\x0e\x12\x0c\x4a\x0a\x0a\x08\x32\x06\x01\x02\x03\x04\x05\x06",
            "multiple of 8",
        ),
    ];
    for (bytes, want) in cases {
        let err = fast(bytes, &config()).unwrap_err();
        assert!(err.contains(want), "{bytes:x?}: {err}");
        assert!(
            ExportMetricsServiceRequest::decode(*bytes).is_err(),
            "prost refuses {bytes:x?} too"
        );
    }
}
