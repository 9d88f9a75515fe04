//! OTLP/JSON metrics requests: lowerCamelCase names, integer enums, 64-bit integers as strings
//! or numbers, doubles as numbers or the strings `"NaN"`, `"Infinity"` and `"-Infinity"`,
//! unknown fields ignored, `null` as the default. The slow path: parsed into owned structs,
//! then the same [`Batch`] and rules as the protobuf path.
//!
//! Strings are kept as the bytes the body holds (escapes resolved, UTF-8 not checked), as the
//! protobuf path keeps them, so a point whose identity is not valid UTF-8 is rejected on its
//! own rather than failing the whole request. A double written as a string that is not a
//! number refuses the request, as any other malformed value does; `"NaN"` and the infinities
//! parse, and the points holding them are rejected by the rules.

use super::{Batch, Draft, Kind, MetricResource, MetricTally, PointLoc, Scalar};
use crate::extract::{AttrValue, ExtractConfig};
use crate::json::{Bytes, opt_i64_lenient, u64_lenient};
use serde::Deserialize;
use serde::de::{self, Deserializer};
use slogate_core::MetricSink;

/// A parsed OTLP/JSON `ExportMetricsServiceRequest`.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct MetricsRequest {
    #[serde(default)]
    resource_metrics: Option<Vec<JsonResourceMetrics>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct JsonResourceMetrics {
    #[serde(default)]
    resource: Option<JsonResource>,
    #[serde(default)]
    scope_metrics: Option<Vec<JsonScopeMetrics>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct JsonResource {
    #[serde(default)]
    attributes: Option<Vec<JsonKeyValue>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct JsonScopeMetrics {
    #[serde(default)]
    metrics: Option<Vec<JsonMetric>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct JsonMetric {
    #[serde(default)]
    name: Option<Bytes>,
    #[serde(default)]
    unit: Option<Bytes>,
    #[serde(default)]
    gauge: Option<JsonData<JsonNumberPoint>>,
    #[serde(default)]
    sum: Option<JsonData<JsonNumberPoint>>,
    #[serde(default)]
    histogram: Option<JsonData<JsonHistogramPoint>>,
    #[serde(default)]
    exponential_histogram: Option<JsonData<JsonExpPoint>>,
    #[serde(default)]
    summary: Option<JsonData<JsonSummaryPoint>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonData<P> {
    #[serde(default = "Option::default")]
    data_points: Option<Vec<P>>,
    #[serde(default)]
    aggregation_temporality: Option<i32>,
    #[serde(default)]
    is_monotonic: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct JsonNumberPoint {
    #[serde(default)]
    attributes: Option<Vec<JsonKeyValue>>,
    #[serde(default)]
    start_time_unix_nano: Option<U64>,
    #[serde(default)]
    time_unix_nano: Option<U64>,
    #[serde(default)]
    as_double: Option<F64>,
    #[serde(default, deserialize_with = "opt_i64_lenient")]
    as_int: Option<i64>,
    #[serde(default)]
    flags: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct JsonHistogramPoint {
    #[serde(default)]
    attributes: Option<Vec<JsonKeyValue>>,
    #[serde(default)]
    start_time_unix_nano: Option<U64>,
    #[serde(default)]
    time_unix_nano: Option<U64>,
    #[serde(default)]
    count: Option<U64>,
    #[serde(default)]
    sum: Option<F64>,
    #[serde(default)]
    min: Option<F64>,
    #[serde(default)]
    max: Option<F64>,
    #[serde(default)]
    bucket_counts: Option<Vec<U64>>,
    #[serde(default)]
    explicit_bounds: Option<Vec<F64>>,
    #[serde(default)]
    flags: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct JsonExpPoint {
    #[serde(default)]
    attributes: Option<Vec<JsonKeyValue>>,
    #[serde(default)]
    start_time_unix_nano: Option<U64>,
    #[serde(default)]
    time_unix_nano: Option<U64>,
    #[serde(default)]
    count: Option<U64>,
    #[serde(default)]
    sum: Option<F64>,
    #[serde(default)]
    min: Option<F64>,
    #[serde(default)]
    max: Option<F64>,
    #[serde(default)]
    scale: Option<i32>,
    #[serde(default)]
    zero_count: Option<U64>,
    #[serde(default)]
    zero_threshold: Option<F64>,
    #[serde(default)]
    positive: Option<JsonBuckets>,
    #[serde(default)]
    negative: Option<JsonBuckets>,
    #[serde(default)]
    flags: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct JsonBuckets {
    #[serde(default)]
    offset: Option<i32>,
    #[serde(default)]
    bucket_counts: Option<Vec<U64>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct JsonSummaryPoint {
    #[serde(default)]
    attributes: Option<Vec<JsonKeyValue>>,
    #[serde(default)]
    start_time_unix_nano: Option<U64>,
    #[serde(default)]
    time_unix_nano: Option<U64>,
    #[serde(default)]
    count: Option<U64>,
    #[serde(default)]
    sum: Option<F64>,
    #[serde(default)]
    quantile_values: Option<Vec<JsonQuantile>>,
    #[serde(default)]
    flags: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct JsonQuantile {
    #[serde(default)]
    quantile: Option<F64>,
    #[serde(default)]
    value: Option<F64>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct JsonKeyValue {
    #[serde(default)]
    key: Option<Bytes>,
    #[serde(default)]
    value: Option<JsonAnyValue>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct JsonAnyValue {
    #[serde(default)]
    string_value: Option<Bytes>,
    #[serde(default)]
    bool_value: Option<bool>,
    #[serde(default, deserialize_with = "opt_i64_lenient")]
    int_value: Option<i64>,
    #[serde(default)]
    double_value: Option<F64>,
}

impl JsonAnyValue {
    /// The member set (a value should set one; when it sets several, strings win, then
    /// booleans, integers, doubles). Arrays, maps and bytes are ignored fields: `Other`.
    fn scalar(&self) -> Scalar<'_> {
        if let Some(s) = &self.string_value {
            Scalar::Str(&s.0)
        } else if let Some(b) = self.bool_value {
            Scalar::Bool(b)
        } else if let Some(i) = self.int_value {
            Scalar::Int(i)
        } else if let Some(F64(d)) = self.double_value {
            Scalar::Double(d)
        } else {
            Scalar::Other
        }
    }

    fn attr(&self) -> AttrValue<'_> {
        match self.scalar() {
            Scalar::Str(s) => AttrValue::Str(s),
            Scalar::Int(i) => AttrValue::Int(i),
            Scalar::Double(d) => AttrValue::Double(d),
            Scalar::Bool(_) | Scalar::Other => AttrValue::Absent,
        }
    }
}

/// A 64-bit unsigned integer as a number or a decimal string.
#[derive(Debug, Clone, Copy, Default)]
struct U64(u64);

impl<'de> Deserialize<'de> for U64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        u64_lenient(d).map(U64)
    }
}

/// A double as proto3 JSON writes it: a number, `"NaN"`, `"Infinity"`, `"-Infinity"`, or a
/// number in a string.
#[derive(Debug, Clone, Copy, Default)]
struct F64(f64);

impl<'de> Deserialize<'de> for F64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = F64;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number, \"NaN\", \"Infinity\" or \"-Infinity\"")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<F64, E> {
                Ok(F64(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<F64, E> {
                Ok(F64(v as f64))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<F64, E> {
                Ok(F64(v as f64))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<F64, E> {
                match v {
                    "NaN" => Ok(F64(f64::NAN)),
                    "Infinity" => Ok(F64(f64::INFINITY)),
                    "-Infinity" => Ok(F64(f64::NEG_INFINITY)),
                    // Rust also reads "inf" and "nan": only digits are numbers here.
                    _ if v.bytes().any(|b| b.is_ascii_digit())
                        && !v
                            .bytes()
                            .any(|b| b.is_ascii_alphabetic() && b != b'e' && b != b'E') =>
                    {
                        v.trim()
                            .parse()
                            .map(F64)
                            .map_err(|_| E::custom(format!("invalid double {v:?}")))
                    }
                    _ => Err(E::custom(format!("invalid double {v:?}"))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// Parses an OTLP/JSON metrics body. The error message is serde_json's, with line and column.
pub fn parse(body: &[u8]) -> Result<MetricsRequest, serde_json::Error> {
    serde_json::from_slice(body)
}

/// Records the valid points of a parsed request in `sink`, counting the rest in `tally`.
pub fn record_request<S: MetricSink + ?Sized>(
    req: &MetricsRequest,
    cfg: &ExtractConfig,
    sink: &S,
    tally: &mut MetricTally,
) {
    super::with_batch(|batch| {
        fill(req, cfg, batch, tally);
        batch.emit(sink, tally);
    });
}

fn slice<T>(v: &Option<Vec<T>>) -> &[T] {
    v.as_deref().unwrap_or(&[])
}

fn bytes(v: &Option<Bytes>) -> &[u8] {
    v.as_ref().map_or(b"", |b| &b.0)
}

fn fill<'a>(
    req: &'a MetricsRequest,
    cfg: &ExtractConfig,
    b: &mut Batch<'a>,
    tally: &mut MetricTally,
) {
    let mut loc = PointLoc::default();
    for rm in slice(&req.resource_metrics) {
        let mut res = MetricResource::default();
        if let Some(resource) = &rm.resource {
            for kv in slice(&resource.attributes) {
                let value = kv
                    .value
                    .as_ref()
                    .map_or(AttrValue::Absent, JsonAnyValue::attr);
                res.offer(cfg, bytes(&kv.key), value);
            }
        }
        let res = b.add_resource(cfg, &res);
        loc.scope = 0;
        for sm in slice(&rm.scope_metrics) {
            loc.metric = 0;
            for m in slice(&sm.metrics) {
                loc.point = 0;
                metric(m, res, &mut loc, b, tally);
                loc.metric = loc.metric.saturating_add(1);
            }
            loc.scope = loc.scope.saturating_add(1);
        }
        loc.resource = loc.resource.saturating_add(1);
    }
}

fn temporality<P>(data: &JsonData<P>) -> i32 {
    data.aggregation_temporality.unwrap_or(0)
}

fn metric<'a>(
    m: &'a JsonMetric,
    res: Result<u32, super::PointReject>,
    loc: &mut PointLoc,
    b: &mut Batch<'a>,
    tally: &mut MetricTally,
) {
    let (name, unit) = (bytes(&m.name), bytes(&m.unit));
    let attrs = |b: &mut Batch<'a>, d: &mut Draft, kvs: &'a Option<Vec<JsonKeyValue>>| {
        for kv in slice(kvs) {
            let value = kv
                .value
                .as_ref()
                .map_or(Scalar::Other, JsonAnyValue::scalar);
            b.attr(d, bytes(&kv.key), value);
        }
    };
    let u = |v: Option<U64>| v.unwrap_or_default().0;
    let f = |v: Option<F64>| v.map(|F64(x)| x);
    // One member should be set; if several are, the last in the proto's field order wins.
    if let Some(data) = &m.summary {
        let ctx = b.metric(res, name, unit, Kind::Summary);
        for p in slice(&data.data_points) {
            let mut d = b.begin_point();
            (d.start, d.time, d.count) =
                (u(p.start_time_unix_nano), u(p.time_unix_nano), u(p.count));
            d.sum = Some(f(p.sum).unwrap_or(0.0));
            d.flags = p.flags.unwrap_or(0);
            attrs(b, &mut d, &p.attributes);
            for q in slice(&p.quantile_values) {
                b.quantile(
                    &mut d,
                    f(q.quantile).unwrap_or(0.0),
                    f(q.value).unwrap_or(0.0),
                );
            }
            b.finish_point(&ctx, &d, *loc, tally);
            loc.point = loc.point.saturating_add(1);
        }
    } else if let Some(data) = &m.exponential_histogram {
        let kind = Kind::ExponentialHistogram {
            temporality: temporality(data),
        };
        let ctx = b.metric(res, name, unit, kind);
        for p in slice(&data.data_points) {
            let mut d = b.begin_point();
            (d.start, d.time, d.count) =
                (u(p.start_time_unix_nano), u(p.time_unix_nano), u(p.count));
            (d.sum, d.min, d.max) = (f(p.sum), f(p.min), f(p.max));
            d.scale = p.scale.unwrap_or(0);
            d.zero_count = u(p.zero_count);
            d.zero_threshold = f(p.zero_threshold).unwrap_or(0.0);
            d.flags = p.flags.unwrap_or(0);
            attrs(b, &mut d, &p.attributes);
            for (side, negative) in [(&p.positive, false), (&p.negative, true)] {
                let Some(side) = side else { continue };
                let offset = side.offset.unwrap_or(0);
                if negative {
                    d.negative_offset = offset;
                } else {
                    d.positive_offset = offset;
                }
                for c in slice(&side.bucket_counts) {
                    b.exp_count(&mut d, negative, c.0);
                }
            }
            b.finish_point(&ctx, &d, *loc, tally);
            loc.point = loc.point.saturating_add(1);
        }
    } else if let Some(data) = &m.histogram {
        let kind = Kind::Histogram {
            temporality: temporality(data),
        };
        let ctx = b.metric(res, name, unit, kind);
        for p in slice(&data.data_points) {
            let mut d = b.begin_point();
            (d.start, d.time, d.count) =
                (u(p.start_time_unix_nano), u(p.time_unix_nano), u(p.count));
            (d.sum, d.min, d.max) = (f(p.sum), f(p.min), f(p.max));
            d.flags = p.flags.unwrap_or(0);
            attrs(b, &mut d, &p.attributes);
            for (arr, bounds) in [
                (slice(&p.bucket_counts).len(), false),
                (slice(&p.explicit_bounds).len(), true),
            ] {
                if arr > b.explicit_room(&d, bounds) {
                    b.overflow(&mut d);
                } else if bounds {
                    for v in slice(&p.explicit_bounds) {
                        b.bound(&mut d, v.0);
                    }
                } else {
                    for c in slice(&p.bucket_counts) {
                        b.bucket_count(&mut d, c.0);
                    }
                }
            }
            b.finish_point(&ctx, &d, *loc, tally);
            loc.point = loc.point.saturating_add(1);
        }
    } else {
        let (data, kind) = match (&m.sum, &m.gauge) {
            (Some(data), _) => (
                data,
                Kind::Sum {
                    temporality: temporality(data),
                    monotonic: data.is_monotonic.unwrap_or(false),
                },
            ),
            (None, Some(data)) => (data, Kind::Gauge),
            (None, None) => return,
        };
        let ctx = b.metric(res, name, unit, kind);
        for p in slice(&data.data_points) {
            let mut d = b.begin_point();
            (d.start, d.time) = (u(p.start_time_unix_nano), u(p.time_unix_nano));
            // Both set: the protobuf oneof keeps one; JSON has no order, the double wins.
            d.number = f(p.as_double).or(p.as_int.map(|i| i as f64));
            d.flags = p.flags.unwrap_or(0);
            attrs(b, &mut d, &p.attributes);
            b.finish_point(&ctx, &d, *loc, tally);
            loc.point = loc.point.saturating_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_parse_as_proto3_json_writes_them() {
        let ok = [
            ("1.5", 1.5),
            ("-2", -2.0),
            ("18446744073709551615", 18446744073709551615.0),
            ("\"0.25\"", 0.25),
            ("\"1e3\"", 1000.0),
            ("\"Infinity\"", f64::INFINITY),
            ("\"-Infinity\"", f64::NEG_INFINITY),
        ];
        for (json, want) in ok {
            let F64(got) = serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"));
            assert_eq!(got, want, "{json}");
        }
        let F64(nan) = serde_json::from_str("\"NaN\"").unwrap();
        assert!(nan.is_nan());
        for bad in ["\"x\"", "\"inf\"", "\"nan\"", "true", "\"\"", "[]"] {
            assert!(serde_json::from_str::<F64>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn empty_and_null_members_are_defaults() {
        for body in [
            "{}",
            r#"{"resourceMetrics":null}"#,
            r#"{"resourceMetrics":[{"resource":null,"scopeMetrics":[{"metrics":[{"name":"m","gauge":{"dataPoints":null}}]}]}]}"#,
        ] {
            let req = parse(body.as_bytes()).unwrap_or_else(|e| panic!("{body}: {e}"));
            let mut tally = MetricTally::default();
            struct Nothing;
            impl MetricSink for Nothing {
                fn record_point(
                    &self,
                    _: &slogate_core::MetricPoint<'_>,
                ) -> Result<(), slogate_core::PointRefusal> {
                    panic!("no points")
                }
            }
            record_request(&req, &ExtractConfig::default(), &Nothing, &mut tally);
            assert_eq!(tally, MetricTally::default(), "{body}");
        }
    }
}
