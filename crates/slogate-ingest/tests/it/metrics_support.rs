//! Shared by the metrics tests: a sink that keeps owned copies of what it is given, request
//! builders, and an independent reference of the validation rules run on prost's decoded
//! structs.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    ExponentialHistogramDataPoint, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics,
    ScopeMetrics, SummaryDataPoint, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use slogate_core::{MetricPoint, MetricSink, PointRefusal, PointValue, Temporality};
use slogate_ingest::extract::ExtractConfig;
use slogate_ingest::metrics::{MetricTally, PointLoc, PointReject};
use std::sync::Mutex;

pub const T0: u64 = 1_800_000_000_000_000_000;

/// A metric point with everything owned.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnedPoint {
    pub service: String,
    pub env: String,
    pub version: String,
    pub extras: Vec<String>,
    pub instance: String,
    pub metric: String,
    pub unit: String,
    pub attributes: Vec<(String, String)>,
    pub start: u64,
    pub time: u64,
    pub value: OwnedValue,
}

#[derive(Debug, Clone, PartialEq)]
pub enum OwnedValue {
    Gauge(f64),
    Sum {
        value: f64,
        monotonic: bool,
        temporality: Temporality,
    },
    Histogram {
        temporality: Temporality,
        count: u64,
        sum: Option<f64>,
        min: Option<f64>,
        max: Option<f64>,
        bounds: Vec<f64>,
        counts: Vec<u64>,
    },
    Exponential {
        temporality: Temporality,
        count: u64,
        sum: Option<f64>,
        min: Option<f64>,
        max: Option<f64>,
        scale: i32,
        zero_count: u64,
        zero_threshold: f64,
        positive: (i32, Vec<u64>),
        negative: (i32, Vec<u64>),
    },
    Summary {
        count: u64,
        sum: f64,
        quantiles: Vec<(f64, f64)>,
    },
}

impl OwnedPoint {
    pub fn of(p: &MetricPoint<'_>) -> Self {
        let value = match p.value {
            PointValue::Gauge(v) => OwnedValue::Gauge(v),
            PointValue::Sum {
                value,
                monotonic,
                temporality,
            } => OwnedValue::Sum {
                value,
                monotonic,
                temporality,
            },
            PointValue::Histogram {
                temporality,
                count,
                sum,
                min,
                max,
                bounds,
                counts,
            } => OwnedValue::Histogram {
                temporality,
                count,
                sum,
                min,
                max,
                bounds: bounds.to_vec(),
                counts: counts.to_vec(),
            },
            PointValue::ExponentialHistogram {
                temporality,
                count,
                sum,
                min,
                max,
                scale,
                zero_count,
                zero_threshold,
                positive_offset,
                positive,
                negative_offset,
                negative,
            } => OwnedValue::Exponential {
                temporality,
                count,
                sum,
                min,
                max,
                scale,
                zero_count,
                zero_threshold,
                positive: (positive_offset, positive.to_vec()),
                negative: (negative_offset, negative.to_vec()),
            },
            PointValue::Summary {
                count,
                sum,
                quantiles,
            } => OwnedValue::Summary {
                count,
                sum,
                quantiles: quantiles.to_vec(),
            },
        };
        OwnedPoint {
            service: p.service.into(),
            env: p.env.into(),
            version: p.version.into(),
            extras: p.extras.iter().map(|s| s.to_string()).collect(),
            instance: p.instance.into(),
            metric: p.metric.into(),
            unit: p.unit.into(),
            attributes: p
                .attributes
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            start: p.start_time_unix_nano,
            time: p.time_unix_nano,
            value,
        }
    }
}

/// The metric name the test sinks refuse (as a conflict).
pub const REFUSED: &str = "refused.metric";

/// Keeps every point it is given; refuses the metric named [`REFUSED`].
#[derive(Default)]
pub struct Collect(pub Mutex<Vec<OwnedPoint>>);

impl MetricSink for Collect {
    fn record_point(&self, point: &MetricPoint<'_>) -> Result<(), PointRefusal> {
        if point.metric == REFUSED {
            return Err(PointRefusal::Conflict);
        }
        self.0.lock().unwrap().push(OwnedPoint::of(point));
        Ok(())
    }
}

impl Collect {
    pub fn take(&self) -> Vec<OwnedPoint> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

pub fn any(v: any_value::Value) -> Option<AnyValue> {
    Some(AnyValue { value: Some(v) })
}

pub fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: any(any_value::Value::StringValue(v.into())),
        ..Default::default()
    }
}

pub fn resource(attrs: &[(&str, &str)]) -> Option<Resource> {
    Some(Resource {
        attributes: attrs.iter().map(|(k, v)| kv(k, v)).collect(),
        ..Default::default()
    })
}

pub fn request(resource_metrics: Vec<ResourceMetrics>) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest { resource_metrics }
}

/// One resource (service `svc`) with the given metrics in one scope.
pub fn resource_metrics(attrs: &[(&str, &str)], metrics: Vec<Metric>) -> ResourceMetrics {
    ResourceMetrics {
        resource: resource(attrs),
        scope_metrics: vec![ScopeMetrics {
            metrics,
            ..Default::default()
        }],
        ..Default::default()
    }
}

pub fn gauge(name: &str, points: Vec<NumberDataPoint>) -> Metric {
    Metric {
        name: name.into(),
        data: Some(metric::Data::Gauge(
            opentelemetry_proto::tonic::metrics::v1::Gauge {
                data_points: points,
            },
        )),
        ..Default::default()
    }
}

pub fn number(value: f64) -> NumberDataPoint {
    NumberDataPoint {
        time_unix_nano: T0,
        value: Some(number_data_point::Value::AsDouble(value)),
        ..Default::default()
    }
}

pub fn histogram(name: &str, points: Vec<HistogramDataPoint>) -> Metric {
    Metric {
        name: name.into(),
        unit: "s".into(),
        data: Some(metric::Data::Histogram(
            opentelemetry_proto::tonic::metrics::v1::Histogram {
                data_points: points,
                aggregation_temporality: 2,
            },
        )),
        ..Default::default()
    }
}

pub fn hist_point(bounds: Vec<f64>, counts: Vec<u64>) -> HistogramDataPoint {
    HistogramDataPoint {
        time_unix_nano: T0,
        count: counts.iter().sum(),
        sum: Some(1.5),
        explicit_bounds: bounds,
        bucket_counts: counts,
        ..Default::default()
    }
}

pub fn exp_histogram(name: &str, points: Vec<ExponentialHistogramDataPoint>) -> Metric {
    Metric {
        name: name.into(),
        data: Some(metric::Data::ExponentialHistogram(
            opentelemetry_proto::tonic::metrics::v1::ExponentialHistogram {
                data_points: points,
                aggregation_temporality: 1,
            },
        )),
        ..Default::default()
    }
}

pub fn summary(name: &str, points: Vec<SummaryDataPoint>) -> Metric {
    Metric {
        name: name.into(),
        data: Some(metric::Data::Summary(
            opentelemetry_proto::tonic::metrics::v1::Summary {
                data_points: points,
            },
        )),
        ..Default::default()
    }
}

/// The reference: the rules of `slogate_ingest::metrics` written out plainly over prost's
/// decoded request. Rejections by the rules come first, sink refusals after (the decoder
/// validates the whole request before it records anything).
pub fn reference(
    req: &ExportMetricsServiceRequest,
    cfg: &ExtractConfig,
) -> (Vec<OwnedPoint>, MetricTally) {
    let mut tally = MetricTally::default();
    let mut kept: Vec<(OwnedPoint, PointLoc)> = Vec::new();
    for (ri, rm) in req.resource_metrics.iter().enumerate() {
        let attrs: Vec<&KeyValue> = rm.resource.iter().flat_map(|r| &r.attributes).collect();
        let present = |kv: &KeyValue| {
            matches!(
                kv.value.as_ref().and_then(|v| v.value.as_ref()),
                Some(
                    any_value::Value::StringValue(_)
                        | any_value::Value::IntValue(_)
                        | any_value::Value::DoubleValue(_)
                )
            )
        };
        // The first configured key present wins; its first occurrence.
        let lookup = |keys: &[Vec<u8>], strings_only: bool| -> Option<String> {
            for k in keys {
                let found = attrs.iter().find(|kv| {
                    kv.key.as_bytes() == k.as_slice()
                        && if strings_only {
                            matches!(
                                kv.value.as_ref().and_then(|v| v.value.as_ref()),
                                Some(any_value::Value::StringValue(_))
                            )
                        } else {
                            present(kv)
                        }
                });
                if let Some(kv) = found {
                    return Some(match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                        Some(any_value::Value::StringValue(s)) => s.clone(),
                        _ => String::new(),
                    });
                }
            }
            None
        };
        let is_str = |keys: &[Vec<u8>]| {
            keys.iter()
                .find_map(|k| {
                    attrs
                        .iter()
                        .find(|kv| kv.key.as_bytes() == k && present(kv))
                })
                .is_some_and(|kv| {
                    matches!(
                        kv.value.as_ref().and_then(|v| v.value.as_ref()),
                        Some(any_value::Value::StringValue(s)) if !s.is_empty()
                    )
                })
        };
        let service_ok = is_str(&cfg.service_keys);
        let service = lookup(&cfg.service_keys, false).unwrap_or_default();
        let env = lookup(&cfg.env_keys, false).unwrap_or_default();
        let version = lookup(&cfg.version_keys, false).unwrap_or_default();
        let mut extras = vec![String::new(); slogate_core::MAX_EXTRA_DIMS];
        for (i, keys) in cfg.extras.iter().enumerate() {
            extras[i] = lookup(keys, false).unwrap_or_default();
        }
        let instance_keys: Vec<Vec<u8>> = ["service.instance.id", "k8s.pod.name", "host.name"]
            .iter()
            .map(|k| k.as_bytes().to_vec())
            .collect();
        let instance = lookup(&instance_keys, true).unwrap_or_default();
        for (si, sm) in rm.scope_metrics.iter().enumerate() {
            for (mi, m) in sm.metrics.iter().enumerate() {
                let valid_t = |t: i32| match t {
                    1 => Some(Temporality::Delta),
                    2 => Some(Temporality::Cumulative),
                    _ => None,
                };
                let metric_reject = if !service_ok {
                    Some(PointReject::MissingService)
                } else if m.name.is_empty() {
                    Some(PointReject::MissingMetricName)
                } else {
                    match &m.data {
                        Some(metric::Data::Sum(s)) => valid_t(s.aggregation_temporality)
                            .is_none()
                            .then_some(PointReject::InvalidTemporality),
                        Some(metric::Data::Histogram(h)) => valid_t(h.aggregation_temporality)
                            .is_none()
                            .then_some(PointReject::InvalidTemporality),
                        Some(metric::Data::ExponentialHistogram(h)) => {
                            valid_t(h.aggregation_temporality)
                                .is_none()
                                .then_some(PointReject::InvalidTemporality)
                        }
                        _ => None,
                    }
                };
                // (flags, time, value or why not, attributes) per point.
                type Checked = (
                    u32,
                    u64,
                    u64,
                    Result<OwnedValue, PointReject>,
                    Vec<KeyValue>,
                );
                let points: Vec<Checked> = match &m.data {
                    None => vec![],
                    Some(metric::Data::Gauge(g)) => g
                        .data_points
                        .iter()
                        .map(|p| {
                            let v = number_value(p).map(OwnedValue::Gauge);
                            (
                                p.flags,
                                p.start_time_unix_nano,
                                p.time_unix_nano,
                                v,
                                p.attributes.clone(),
                            )
                        })
                        .collect(),
                    Some(metric::Data::Sum(s)) => s
                        .data_points
                        .iter()
                        .map(|p| {
                            let v = number_value(p).map(|value| OwnedValue::Sum {
                                value,
                                monotonic: s.is_monotonic,
                                temporality: valid_t(s.aggregation_temporality)
                                    .unwrap_or(Temporality::Cumulative),
                            });
                            (
                                p.flags,
                                p.start_time_unix_nano,
                                p.time_unix_nano,
                                v,
                                p.attributes.clone(),
                            )
                        })
                        .collect(),
                    Some(metric::Data::Histogram(h)) => h
                        .data_points
                        .iter()
                        .map(|p| {
                            let t = valid_t(h.aggregation_temporality)
                                .unwrap_or(Temporality::Cumulative);
                            (
                                p.flags,
                                p.start_time_unix_nano,
                                p.time_unix_nano,
                                hist_value(p, t),
                                p.attributes.clone(),
                            )
                        })
                        .collect(),
                    Some(metric::Data::ExponentialHistogram(h)) => h
                        .data_points
                        .iter()
                        .map(|p| {
                            let t = valid_t(h.aggregation_temporality)
                                .unwrap_or(Temporality::Cumulative);
                            (
                                p.flags,
                                p.start_time_unix_nano,
                                p.time_unix_nano,
                                exp_value(p, t),
                                p.attributes.clone(),
                            )
                        })
                        .collect(),
                    Some(metric::Data::Summary(s)) => s
                        .data_points
                        .iter()
                        .map(|p| {
                            (
                                p.flags,
                                p.start_time_unix_nano,
                                p.time_unix_nano,
                                summary_value(p),
                                p.attributes.clone(),
                            )
                        })
                        .collect(),
                };
                for (pi, (flags, start, time, value, attributes)) in points.into_iter().enumerate()
                {
                    let loc = PointLoc {
                        resource: ri as u32,
                        scope: si as u32,
                        metric: mi as u32,
                        point: pi as u32,
                    };
                    if flags & 1 != 0 {
                        tally.skipped += 1;
                        continue;
                    }
                    let checked = (|| {
                        if let Some(why) = metric_reject {
                            return Err(why);
                        }
                        if time == 0 {
                            return Err(PointReject::MissingTime);
                        }
                        let value = value?;
                        if attributes.len() > 128 {
                            return Err(PointReject::TooManyAttributes);
                        }
                        Ok((value, render_attributes(&attributes)))
                    })();
                    match checked {
                        Ok((value, attributes)) => kept.push((
                            OwnedPoint {
                                service: service.clone(),
                                env: env.clone(),
                                version: version.clone(),
                                extras: extras.clone(),
                                instance: instance.clone(),
                                metric: m.name.clone(),
                                unit: m.unit.clone(),
                                attributes,
                                start,
                                time,
                                value,
                            },
                            loc,
                        )),
                        Err(why) => tally.reject(why, loc),
                    }
                }
            }
        }
    }
    let mut out = Vec::new();
    for (p, loc) in kept {
        if p.metric == REFUSED {
            tally.reject(PointReject::Refused(PointRefusal::Conflict), loc);
        } else {
            tally.recorded += 1;
            out.push(p);
        }
    }
    (out, tally)
}

fn number_value(p: &NumberDataPoint) -> Result<f64, PointReject> {
    let v = match p.value {
        Some(number_data_point::Value::AsDouble(d)) => d,
        Some(number_data_point::Value::AsInt(i)) => i as f64,
        None => return Err(PointReject::MissingValue),
    };
    if v.is_finite() {
        Ok(v)
    } else {
        Err(PointReject::NonFiniteValue)
    }
}

fn finite(v: Option<f64>) -> bool {
    v.is_none_or(f64::is_finite)
}

fn hist_value(p: &HistogramDataPoint, temporality: Temporality) -> Result<OwnedValue, PointReject> {
    use PointReject::*;
    if !(finite(p.sum) && finite(p.min) && finite(p.max)) {
        return Err(NonFiniteValue);
    }
    if p.bucket_counts.len() > 200 || p.explicit_bounds.len() > 200 {
        return Err(TooManyBuckets);
    }
    if p.explicit_bounds.iter().any(|b| !b.is_finite()) {
        return Err(NonFiniteValue);
    }
    let empty = p.bucket_counts.is_empty() && p.explicit_bounds.is_empty();
    if !empty && p.explicit_bounds.len() + 1 != p.bucket_counts.len() {
        return Err(InvalidBuckets);
    }
    if p.explicit_bounds.windows(2).any(|w| w[0] >= w[1]) {
        return Err(UnsortedBounds);
    }
    let total = p
        .bucket_counts
        .iter()
        .try_fold(0u64, |a, c| a.checked_add(*c));
    if !p.bucket_counts.is_empty() && total != Some(p.count) {
        return Err(CountMismatch);
    }
    Ok(OwnedValue::Histogram {
        temporality,
        count: p.count,
        sum: p.sum,
        min: p.min,
        max: p.max,
        bounds: p.explicit_bounds.clone(),
        counts: p.bucket_counts.clone(),
    })
}

fn exp_value(
    p: &ExponentialHistogramDataPoint,
    temporality: Temporality,
) -> Result<OwnedValue, PointReject> {
    use PointReject::*;
    if !(finite(p.sum) && finite(p.min) && finite(p.max) && p.zero_threshold.is_finite()) {
        return Err(NonFiniteValue);
    }
    if p.zero_threshold < 0.0 {
        return Err(InvalidBuckets);
    }
    if !(-10..=20).contains(&p.scale) {
        return Err(InvalidScale);
    }
    let pos = p.positive.clone().unwrap_or_default();
    let neg = p.negative.clone().unwrap_or_default();
    if pos.bucket_counts.len() > 320 || neg.bucket_counts.len() > 320 {
        return Err(TooManyBuckets);
    }
    for side in [&pos, &neg] {
        if side.offset as i64 + side.bucket_counts.len() as i64 > i32::MAX as i64 {
            return Err(OffsetOverflow);
        }
    }
    let total = pos
        .bucket_counts
        .iter()
        .chain(&neg.bucket_counts)
        .try_fold(p.zero_count, |a, c| a.checked_add(*c));
    if total != Some(p.count) {
        return Err(CountMismatch);
    }
    Ok(OwnedValue::Exponential {
        temporality,
        count: p.count,
        sum: p.sum,
        min: p.min,
        max: p.max,
        scale: p.scale,
        zero_count: p.zero_count,
        zero_threshold: p.zero_threshold,
        positive: (pos.offset, pos.bucket_counts),
        negative: (neg.offset, neg.bucket_counts),
    })
}

fn summary_value(p: &SummaryDataPoint) -> Result<OwnedValue, PointReject> {
    if !p.sum.is_finite() {
        return Err(PointReject::NonFiniteValue);
    }
    if p.quantile_values.len() > 128 {
        return Err(PointReject::TooManyBuckets);
    }
    for q in &p.quantile_values {
        if !(0.0..=1.0).contains(&q.quantile) {
            return Err(PointReject::InvalidQuantile);
        }
        if !q.value.is_finite() {
            return Err(PointReject::NonFiniteValue);
        }
    }
    Ok(OwnedValue::Summary {
        count: p.count,
        sum: p.sum,
        quantiles: p
            .quantile_values
            .iter()
            .map(|q| (q.quantile, q.value))
            .collect(),
    })
}

/// Point attributes as text, sorted by key, the last of a repeated key winning.
pub fn render_attributes(attrs: &[KeyValue]) -> Vec<(String, String)> {
    let mut map = std::collections::BTreeMap::new();
    for kv in attrs {
        let text = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(any_value::Value::StringValue(s)) => s.clone(),
            Some(any_value::Value::BoolValue(b)) => b.to_string(),
            Some(any_value::Value::IntValue(i)) => i.to_string(),
            Some(any_value::Value::DoubleValue(d)) => double_text(*d),
            _ => String::new(),
        };
        map.insert(kv.key.clone(), text);
    }
    map.into_iter().collect()
}

fn double_text(d: f64) -> String {
    if d.is_nan() {
        "NaN".into()
    } else if d == f64::INFINITY {
        "Infinity".into()
    } else if d == f64::NEG_INFINITY {
        "-Infinity".into()
    } else if d == 0.0 {
        "0".into()
    } else if d.abs() >= 1e-7 && d.abs() < 1e21 {
        format!("{d}")
    } else {
        format!("{d:e}")
    }
}
