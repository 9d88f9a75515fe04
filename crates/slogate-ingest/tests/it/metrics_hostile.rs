//! Data points built to hurt, each next to a legitimate one: every hostile point is rejected on
//! its own with the reason it deserves, on the protobuf and the JSON decoder, and the
//! legitimate point is recorded intact. Arrays whose length prefix claims 2^31 elements refuse
//! the request (the bytes are not there) without allocating for them; real arrays past the cap
//! reject their point without being copied.

use crate::metrics_differential::fast;
use crate::metrics_support::{
    Collect, OwnedValue, T0, exp_histogram, gauge, hist_point, histogram, kv, number, request,
    resource_metrics, summary,
};
use opentelemetry_proto::tonic::metrics::v1::{
    ExponentialHistogramDataPoint, Metric, NumberDataPoint, SummaryDataPoint,
    exponential_histogram_data_point::Buckets, summary_data_point::ValueAtQuantile,
};
use prost::Message;
use slogate_ingest::extract::ExtractConfig;
use slogate_ingest::metrics::{MetricDim, MetricTally, PointReject};

const SVC: &[(&str, &str)] = &[("service.name", "svc"), ("host.name", "node-1")];

fn exp_point(scale: i32, offset: i32, counts: Vec<u64>) -> ExponentialHistogramDataPoint {
    ExponentialHistogramDataPoint {
        time_unix_nano: T0,
        count: counts.iter().sum(),
        scale,
        positive: Some(Buckets {
            offset,
            bucket_counts: counts,
        }),
        ..Default::default()
    }
}

fn quantiles(q: &[(f64, f64)]) -> SummaryDataPoint {
    SummaryDataPoint {
        time_unix_nano: T0,
        count: 3,
        sum: 1.0,
        quantile_values: q
            .iter()
            .map(|&(quantile, value)| ValueAtQuantile { quantile, value })
            .collect(),
        ..Default::default()
    }
}

/// `(what, the hostile metric, the reason)`: each goes in a request after a valid gauge.
fn cases() -> Vec<(&'static str, Metric, PointReject)> {
    use PointReject::*;
    let h = |bounds: Vec<f64>, counts: Vec<u64>| histogram("h", vec![hist_point(bounds, counts)]);
    let with_hist = |f: fn(&mut opentelemetry_proto::tonic::metrics::v1::HistogramDataPoint)| {
        let mut p = hist_point(vec![1.0], vec![1, 2]);
        f(&mut p);
        histogram("h", vec![p])
    };
    vec![
        (
            "NaN gauge",
            gauge("g", vec![number(f64::NAN)]),
            NonFiniteValue,
        ),
        (
            "+Inf gauge",
            gauge("g", vec![number(f64::INFINITY)]),
            NonFiniteValue,
        ),
        (
            "-Inf gauge",
            gauge("g", vec![number(f64::NEG_INFINITY)]),
            NonFiniteValue,
        ),
        (
            "no value",
            gauge(
                "g",
                vec![NumberDataPoint {
                    time_unix_nano: T0,
                    ..Default::default()
                }],
            ),
            MissingValue,
        ),
        (
            "missing time",
            gauge(
                "g",
                vec![NumberDataPoint {
                    time_unix_nano: 0,
                    ..number(1.0)
                }],
            ),
            MissingTime,
        ),
        (
            "no metric name",
            gauge("", vec![number(1.0)]),
            MissingMetricName,
        ),
        (
            "NaN histogram sum",
            with_hist(|p| p.sum = Some(f64::NAN)),
            NonFiniteValue,
        ),
        (
            "Inf histogram max",
            with_hist(|p| p.max = Some(f64::INFINITY)),
            NonFiniteValue,
        ),
        (
            "Inf bound",
            h(vec![f64::INFINITY], vec![1, 1]),
            NonFiniteValue,
        ),
        (
            "bounds and counts mismatch",
            h(vec![1.0, 2.0], vec![1, 1]),
            InvalidBuckets,
        ),
        (
            "bounds without counts",
            h(vec![1.0], vec![]),
            InvalidBuckets,
        ),
        (
            "counts not summing",
            with_hist(|p| p.count = 4),
            CountMismatch,
        ),
        (
            "counts overflowing u64",
            with_hist(|p| {
                p.bucket_counts = vec![u64::MAX, 2];
                p.count = 1;
            }),
            CountMismatch,
        ),
        (
            "unsorted bounds",
            h(vec![2.0, 1.0], vec![1, 1, 1]),
            UnsortedBounds,
        ),
        (
            "repeated bound",
            h(vec![1.0, 1.0], vec![1, 1, 1]),
            UnsortedBounds,
        ),
        (
            "201 explicit buckets",
            h((0..200).map(f64::from).collect(), vec![1; 201]),
            TooManyBuckets,
        ),
        (
            "scale 21",
            exp_histogram("e", vec![exp_point(21, 0, vec![1])]),
            InvalidScale,
        ),
        (
            "scale -11",
            exp_histogram("e", vec![exp_point(-11, 0, vec![1])]),
            InvalidScale,
        ),
        (
            "321 exponential buckets",
            exp_histogram("e", vec![exp_point(0, 0, vec![1; 321])]),
            TooManyBuckets,
        ),
        (
            "offset + len overflows i32",
            exp_histogram("e", vec![exp_point(0, i32::MAX - 1, vec![1, 1])]),
            OffsetOverflow,
        ),
        (
            "exponential count not summing",
            exp_histogram(
                "e",
                vec![ExponentialHistogramDataPoint {
                    zero_count: 5,
                    ..exp_point(0, 0, vec![1])
                }],
            ),
            CountMismatch,
        ),
        (
            "negative zero threshold",
            exp_histogram(
                "e",
                vec![ExponentialHistogramDataPoint {
                    zero_threshold: -1.0,
                    ..exp_point(0, 0, vec![1])
                }],
            ),
            InvalidBuckets,
        ),
        (
            "quantile above 1",
            summary("s", vec![quantiles(&[(1.5, 1.0)])]),
            InvalidQuantile,
        ),
        (
            "NaN quantile",
            summary("s", vec![quantiles(&[(f64::NAN, 1.0)])]),
            InvalidQuantile,
        ),
        (
            "Inf quantile value",
            summary("s", vec![quantiles(&[(0.5, f64::INFINITY)])]),
            NonFiniteValue,
        ),
        (
            "NaN summary sum",
            summary(
                "s",
                vec![SummaryDataPoint {
                    sum: f64::NAN,
                    ..quantiles(&[])
                }],
            ),
            NonFiniteValue,
        ),
        (
            "129 attributes",
            gauge(
                "g",
                vec![NumberDataPoint {
                    attributes: (0..129).map(|i| kv(&format!("k{i}"), "v")).collect(),
                    ..number(1.0)
                }],
            ),
            TooManyAttributes,
        ),
    ]
}

fn legit() -> Metric {
    gauge(
        "legit",
        vec![NumberDataPoint {
            attributes: vec![kv("route", "/a"), kv("method", "GET")],
            ..number(2.5)
        }],
    )
}

fn check_legit(points: &[crate::metrics_support::OwnedPoint], what: &str) {
    assert_eq!(
        points.len(),
        1,
        "{what}: only the legitimate point is recorded"
    );
    let p = &points[0];
    assert_eq!(
        (p.service.as_str(), p.instance.as_str(), p.metric.as_str()),
        ("svc", "node-1", "legit"),
        "{what}"
    );
    assert_eq!(
        p.attributes,
        vec![
            ("method".into(), "GET".into()),
            ("route".into(), "/a".into())
        ],
        "{what}"
    );
    assert_eq!(p.value, OwnedValue::Gauge(2.5), "{what}");
}

#[test]
fn each_hostile_point_is_rejected_alone() {
    let cfg = ExtractConfig::default();
    for (what, hostile, why) in cases() {
        let req = request(vec![resource_metrics(SVC, vec![legit(), hostile])]);
        // Protobuf.
        let (points, tally) = fast(&req.encode_to_vec(), &cfg).unwrap();
        check_legit(&points, what);
        assert_eq!((tally.recorded, tally.total_rejected()), (1, 1), "{what}");
        assert_eq!(tally.first_reject.map(|r| r.0), Some(why), "{what}");
        let msg = tally.message().unwrap();
        assert!(
            msg.starts_with(&format!("rejected 1 invalid data point(s): 1 {}; first at resource_metrics[0].scope_metrics[0].metrics[1].data_points[0]: ", why.label())),
            "{what}: {msg}"
        );
        // OTLP/JSON, as prost's serde writes it, with NaN and the infinities as the proto3
        // strings wherever they are (prost writes them as null outside quantiles).
        let mut json = serde_json::to_value(&req).unwrap();
        restore_specials(&mut json, &req);
        let body = serde_json::to_vec(&json).unwrap();
        let parsed =
            slogate_ingest::metrics::json::parse(&body).unwrap_or_else(|e| panic!("{what}: {e}"));
        let sink = Collect::default();
        let mut jtally = MetricTally::default();
        slogate_ingest::metrics::json::record_request(&parsed, &cfg, &sink, &mut jtally);
        check_legit(&sink.take(), what);
        assert_eq!(jtally, tally, "{what}: JSON");
    }
}

/// prost writes non-finite doubles as `null`; OTLP/JSON writes `"NaN"`, `"Infinity"`,
/// `"-Infinity"`. The hostile cases hold them only in points' value, sum, max, bounds and
/// summary sum: put the strings back there.
fn restore_specials(
    json: &mut serde_json::Value,
    req: &opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest,
) {
    use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
    let text = |v: f64| {
        serde_json::Value::String(
            if v.is_nan() {
                "NaN"
            } else if v > 0.0 {
                "Infinity"
            } else {
                "-Infinity"
            }
            .into(),
        )
    };
    for (ri, rm) in req.resource_metrics.iter().enumerate() {
        for (si, sm) in rm.scope_metrics.iter().enumerate() {
            for (mi, m) in sm.metrics.iter().enumerate() {
                let jm = &mut json["resourceMetrics"][ri]["scopeMetrics"][si]["metrics"][mi];
                match &m.data {
                    Some(metric::Data::Gauge(g)) => {
                        for (pi, p) in g.data_points.iter().enumerate() {
                            if let Some(number_data_point::Value::AsDouble(d)) = p.value
                                && !d.is_finite()
                            {
                                jm["gauge"]["dataPoints"][pi]["asDouble"] = text(d);
                            }
                        }
                    }
                    Some(metric::Data::Histogram(h)) => {
                        for (pi, p) in h.data_points.iter().enumerate() {
                            let jp = &mut jm["histogram"]["dataPoints"][pi];
                            for (k, v) in [("sum", p.sum), ("max", p.max)] {
                                if let Some(v) = v.filter(|v| !v.is_finite()) {
                                    jp[k] = text(v);
                                }
                            }
                            for (bi, b) in p.explicit_bounds.iter().enumerate() {
                                if !b.is_finite() {
                                    jp["explicitBounds"][bi] = text(*b);
                                }
                            }
                        }
                    }
                    Some(metric::Data::Summary(s)) => {
                        for (pi, p) in s.data_points.iter().enumerate() {
                            if !p.sum.is_finite() {
                                jm["summary"]["dataPoints"][pi]["sum"] = text(p.sum);
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

/// A resource without a service, or whose identity is not valid UTF-8: all its points are
/// rejected, the other resource's are kept.
#[test]
fn bad_resources_reject_their_points() {
    let cfg = ExtractConfig {
        extras: vec![vec![b"tenant".to_vec()]],
        ..Default::default()
    };
    type Case = (
        &'static [(&'static str, &'static str)],
        &'static str,
        PointReject,
    );
    let cases: Vec<Case> = vec![
        (&[("host.name", "h")], "", PointReject::MissingService),
        (&[("service.name", "")], "", PointReject::MissingService),
        (
            &[("service.name", "svc#prod")],
            "svc#prod",
            PointReject::InvalidUtf8(MetricDim::Service),
        ),
        (
            &[("service.name", "s"), ("deployment.environment.name", "p#")],
            "p#",
            PointReject::InvalidUtf8(MetricDim::Env),
        ),
        (
            &[("service.name", "s"), ("tenant", "acme#")],
            "acme#",
            PointReject::InvalidUtf8(MetricDim::Extra(0)),
        ),
        (
            &[("service.name", "s"), ("k8s.pod.name", "pod#")],
            "pod#",
            PointReject::InvalidUtf8(MetricDim::Instance),
        ),
    ];
    for (attrs, marked, why) in cases {
        let req = request(vec![
            resource_metrics(SVC, vec![legit()]),
            resource_metrics(attrs, vec![gauge("g", vec![number(1.0), number(2.0)])]),
        ]);
        let bytes = inject(req.encode_to_vec(), marked);
        let (points, tally) = fast(&bytes, &cfg).unwrap();
        check_legit(&points, &format!("{why:?}"));
        assert_eq!(tally.total_rejected(), 2, "{why:?}");
        assert_eq!(tally.rejected[why.index()], 2, "{why:?}");
        assert_eq!(tally.first_reject.unwrap().0, why);
    }
}

/// A metric name, unit, attribute key or value that is not UTF-8 rejects the point.
#[test]
fn invalid_utf8_in_metric_or_attributes_rejects_the_point() {
    let cfg = ExtractConfig::default();
    let cases: Vec<(Metric, &str, MetricDim)> = vec![
        (
            gauge("name#x", vec![number(1.0)]),
            "name#x",
            MetricDim::MetricName,
        ),
        (
            Metric {
                unit: "unit#x".into(),
                ..gauge("g", vec![number(1.0)])
            },
            "unit#x",
            MetricDim::Unit,
        ),
        (
            gauge(
                "g",
                vec![NumberDataPoint {
                    attributes: vec![kv("key#x", "v")],
                    ..number(1.0)
                }],
            ),
            "key#x",
            MetricDim::Attribute,
        ),
        (
            gauge(
                "g",
                vec![NumberDataPoint {
                    attributes: vec![kv("k", "value#x")],
                    ..number(1.0)
                }],
            ),
            "value#x",
            MetricDim::Attribute,
        ),
    ];
    for (m, marked, dim) in cases {
        let req = request(vec![resource_metrics(SVC, vec![legit(), m])]);
        let bytes = inject(req.encode_to_vec(), marked);
        let (points, tally) = fast(&bytes, &cfg).unwrap();
        check_legit(&points, marked);
        assert_eq!(
            tally.first_reject.map(|r| r.0),
            Some(PointReject::InvalidUtf8(dim)),
            "{marked}"
        );
    }
}

/// Replaces `#` with `0xFF` inside every occurrence of `marked` (nothing when it is empty).
fn inject(mut bytes: Vec<u8>, marked: &str) -> Vec<u8> {
    let needle = marked.as_bytes();
    if needle.is_empty() {
        return bytes;
    }
    let mut found = false;
    for i in 0..=bytes.len().saturating_sub(needle.len()) {
        if &bytes[i..i + needle.len()] == needle {
            for b in &mut bytes[i..i + needle.len()] {
                if *b == b'#' {
                    *b = 0xFF;
                }
            }
            found = true;
        }
    }
    assert!(found, "{marked} not in the request");
    bytes
}

/// A length-delimited field: one-byte tag, varint length, payload.
fn field(tag: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let mut n = payload.len();
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out.extend_from_slice(payload);
    out
}

/// Wraps histogram point bytes in a request for service `svc`.
fn histogram_request(point: &[u8]) -> Vec<u8> {
    let data = field(0x0A, point);
    let metric = [
        field(0x0A, b"h"),
        field(0x4A, &[data, vec![0x10, 0x02]].concat()),
    ]
    .concat();
    let rm = [
        field(
            0x0A,
            &field(0x0A, &kv("service.name", "svc").encode_to_vec()),
        ),
        field(0x12, &field(0x12, &metric)),
    ]
    .concat();
    field(0x0A, &rm)
}

/// A length prefix that claims 2^31 bucket counts (16 GiB) with a handful of bytes behind it
/// refuses the request as malformed; so does one claiming 2^31 varint buckets. Neither
/// allocates for the claim (the allocation test would see it; here the process would abort).
#[test]
fn huge_claimed_arrays_refuse_the_request_without_allocating() {
    let len_2_31 = |tag: u8| {
        let mut out = vec![tag];
        let mut n: u64 = 1 << 34; // 2^31 fixed64 elements
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
        out.extend_from_slice(&[0; 64]);
        out
    };
    let time = [&[0x19u8][..], &T0.to_le_bytes()].concat();
    for tag in [0x32u8, 0x3A] {
        let point = [time.clone(), len_2_31(tag)].concat();
        let err = fast(&histogram_request(&point), &ExtractConfig::default()).unwrap_err();
        assert!(err.contains("runs past the end"), "{err}");
    }
    // Exponential: positive.bucket_counts claiming 2^31 varints.
    let buckets = len_2_31(0x12);
    let point = [time.clone(), field(0x42, &buckets)].concat();
    let data = field(0x0A, &point);
    let metric = [
        field(0x0A, b"e"),
        field(0x52, &[data, vec![0x10, 0x01]].concat()),
    ]
    .concat();
    let rm = [
        field(
            0x0A,
            &field(0x0A, &kv("service.name", "svc").encode_to_vec()),
        ),
        field(0x12, &field(0x12, &metric)),
    ]
    .concat();
    let err = fast(&field(0x0A, &rm), &ExtractConfig::default()).unwrap_err();
    assert!(err.contains("runs past the end"), "{err}");
}

/// Real arrays past the cap (a million buckets, 8 MB on the wire) reject their point: the
/// request is fine, the point is not recorded, and the next point is.
#[test]
fn real_arrays_past_the_cap_reject_the_point() {
    let n = 1_000_000usize;
    let time = [&[0x19u8][..], &T0.to_le_bytes()].concat();
    let counts: Vec<u8> = (0..n as u64).flat_map(|_| 1u64.to_le_bytes()).collect();
    let count = [&[0x21u8][..], &(n as u64).to_le_bytes()].concat();
    let big = [time.clone(), count, field(0x32, &counts)].concat();
    let ok = [
        time,
        field(0x32, &1u64.to_le_bytes()),
        [&[0x21u8][..], &1u64.to_le_bytes()].concat(),
    ]
    .concat();
    let data = [field(0x0A, &big), field(0x0A, &ok), vec![0x10, 0x02]].concat();
    let metric = [field(0x0A, b"h"), field(0x4A, &data)].concat();
    let rm = [
        field(
            0x0A,
            &field(0x0A, &kv("service.name", "svc").encode_to_vec()),
        ),
        field(0x12, &field(0x12, &metric)),
    ]
    .concat();
    let (points, tally) = fast(&field(0x0A, &rm), &ExtractConfig::default()).unwrap();
    assert_eq!(tally.rejected[PointReject::TooManyBuckets.index()], 1);
    assert_eq!(points.len(), 1);
    assert!(matches!(&points[0].value, OwnedValue::Histogram { counts, .. } if counts == &vec![1]));
}

/// Points flagged as having no recorded value are skipped whatever they hold: not recorded,
/// not rejected.
#[test]
fn no_recorded_value_points_are_skipped() {
    let cfg = ExtractConfig::default();
    let flagged = |p: NumberDataPoint| NumberDataPoint { flags: 1, ..p };
    let req = request(vec![resource_metrics(
        SVC,
        vec![
            legit(),
            gauge(
                "g",
                vec![
                    flagged(number(f64::NAN)),
                    flagged(NumberDataPoint::default()),
                ],
            ),
            histogram(
                "h",
                vec![
                    opentelemetry_proto::tonic::metrics::v1::HistogramDataPoint {
                        flags: 1,
                        ..hist_point(vec![2.0, 1.0], vec![1])
                    },
                ],
            ),
        ],
    )]);
    let (points, tally) = fast(&req.encode_to_vec(), &cfg).unwrap();
    check_legit(&points, "flagged");
    assert_eq!(
        (tally.recorded, tally.skipped, tally.total_rejected()),
        (1, 3, 0)
    );
}
