//! OTLP metric data points as slogate sees them: the seam between the metrics decoder
//! (`slogate-ingest`), the metric store (`slogate-metrics`) and the history (`slogate-history`).
//!
//! Design decisions:
//! - A [`MetricPoint`] borrows every string and every bucket array from the decoder's request
//!   buffer or its reusable scratch space, like an [`Observation`](crate::Observation): a point of
//!   a series the store already knows costs no allocation.
//! - **Stream identity** is the OpenTelemetry one reduced to what slogate needs: the cohort
//!   dimensions taken from the resource (service, env, version, configured extras), the
//!   producing `instance` (`service.instance.id`, else `k8s.pod.name`, else `host.name`, else
//!   empty), the metric name, and the point attributes sorted by key. Two pods of one version are
//!   two streams, so their cumulative counters are never mixed into spurious resets.
//! - Every value that reaches a [`MetricSink`] has already been validated by the decoder: finite
//!   numbers, histogram bucket counts that sum to `count`, `bounds.len() + 1 == counts.len()`,
//!   strictly increasing bounds, bounded bucket arrays. The sink may still refuse a point (a
//!   cardinality cap, a point older than the store keeps) and says why.
//! - Point attribute values are rendered as text (`true`, `42`, `0.5`, the string itself):
//!   criteria match them as text.

use crate::MAX_EXTRA_DIMS;

/// Aggregation temporality of a sum or histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Temporality {
    /// Each point holds the change since the previous point.
    Delta,
    /// Each point holds the total since `start_time_unix_nano`.
    Cumulative,
}

/// The value of one data point, by OTLP point type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PointValue<'a> {
    Gauge(f64),
    Sum {
        value: f64,
        monotonic: bool,
        temporality: Temporality,
    },
    /// Explicit-bucket histogram: `counts[i]` values fell in `(bounds[i-1], bounds[i]]`, the
    /// first bucket is `(-inf, bounds[0]]`, the last `(bounds[last], +inf)`.
    Histogram {
        temporality: Temporality,
        count: u64,
        sum: Option<f64>,
        min: Option<f64>,
        max: Option<f64>,
        bounds: &'a [f64],
        counts: &'a [u64],
    },
    /// Base-2 exponential histogram: bucket `offset + i` covers `(base^(offset+i), base^(offset+i+1)]`
    /// with `base = 2^(2^-scale)`.
    ExponentialHistogram {
        temporality: Temporality,
        count: u64,
        sum: Option<f64>,
        min: Option<f64>,
        max: Option<f64>,
        scale: i32,
        zero_count: u64,
        zero_threshold: f64,
        positive_offset: i32,
        positive: &'a [u64],
        negative_offset: i32,
        negative: &'a [u64],
    },
    /// Summary: cumulative count and sum, and the quantiles the producer computed
    /// (`(quantile, value)`, quantile in `[0, 1]`).
    Summary {
        count: u64,
        sum: f64,
        quantiles: &'a [(f64, f64)],
    },
}

impl PointValue<'_> {
    /// `gauge`, `sum`, `histogram`, `exponential_histogram` or `summary`: the `kind` column of
    /// the history's `metrics` table.
    pub fn kind(&self) -> &'static str {
        match self {
            PointValue::Gauge(_) => "gauge",
            PointValue::Sum { .. } => "sum",
            PointValue::Histogram { .. } => "histogram",
            PointValue::ExponentialHistogram { .. } => "exponential_histogram",
            PointValue::Summary { .. } => "summary",
        }
    }
}

/// One validated data point, borrowed from the request being decoded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricPoint<'a> {
    pub service: &'a str,
    pub env: &'a str,
    pub version: &'a str,
    /// Values of the configured extra dimensions, in configuration order; `""` when absent.
    pub extras: [&'a str; MAX_EXTRA_DIMS],
    /// The producing instance (see the module notes); `""` when the resource names none.
    pub instance: &'a str,
    pub metric: &'a str,
    /// The metric's unit as sent (`s`, `ms`, `By`, `1`, `{request}`...), `""` when unset.
    pub unit: &'a str,
    /// Point attributes sorted by key, keys unique (the last value of a repeated key wins).
    pub attributes: &'a [(&'a str, &'a str)],
    /// 0 when unset.
    pub start_time_unix_nano: u64,
    pub time_unix_nano: u64,
    pub value: PointValue<'a>,
}

/// Why a sink refused a point; counted in `partial_success.rejected_data_points`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointRefusal {
    /// Older than the store keeps (its retention), or too far in the future.
    OutOfRange,
    /// The point's unit cannot be combined with the series it joins (a histogram whose bounds
    /// changed unit, a point type that differs from the series').
    Conflict,
}

impl PointRefusal {
    pub fn label(self) -> &'static str {
        match self {
            PointRefusal::OutOfRange => "out_of_range",
            PointRefusal::Conflict => "conflict",
        }
    }
}

/// Something that stores metric points; the implementation takes only short, sharded locks.
pub trait MetricSink: Send + Sync + 'static {
    fn record_point(&self, point: &MetricPoint<'_>) -> Result<(), PointRefusal>;

    /// Records the points `point(0)`, ..., `point(n - 1)` of one request, in order, and reports
    /// each outcome through `done(i, outcome)`. `point` may be called more than once per index
    /// and must build the same point each time. A store overrides this to read its clock once
    /// per request and to fetch the memory of later points while it updates earlier ones; the
    /// default records them one by one.
    fn record_points<'a>(
        &self,
        n: usize,
        point: &dyn Fn(usize) -> MetricPoint<'a>,
        done: &mut dyn FnMut(usize, Result<(), PointRefusal>),
    ) {
        for i in 0..n {
            done(i, self.record_point(&point(i)));
        }
    }
}

/// One closed slot of one metric stream: a row of the history's `metrics` table.
///
/// Which fields are meaningful depends on `kind`: `min`, `max`, `last` and `value_sum` are over
/// the point values of gauges and sums (a cumulative sum's value is its running total);
/// `increase` is a sum's increase (never negative: resets are detected) or a histogram's or
/// summary's count increase; `hist_sum` the increase of a histogram's or summary's sum; `sketch`
/// the histogram values that arrived in the slot, in the `slogate-sketch` byte format (empty
/// otherwise). Times are Unix seconds; `last_time_unix_nano` is the last point's own time.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSlotRecord {
    pub slot_start_unix: i64,
    pub slot_seconds: u32,
    pub service: String,
    pub env: String,
    pub version: String,
    pub extras: Vec<String>,
    pub instance: String,
    pub metric: String,
    pub unit: String,
    pub kind: String,
    /// Point attributes sorted by key.
    pub attributes: Vec<(String, String)>,
    pub points: u64,
    pub min: f64,
    pub max: f64,
    pub last: f64,
    pub value_sum: f64,
    pub last_time_unix_nano: u64,
    pub increase: f64,
    pub hist_sum: f64,
    pub sketch: Vec<u8>,
}
