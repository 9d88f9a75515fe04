//! OTLP metrics → [`MetricPoint`]s: the rules shared by the protobuf fast path ([`wire`]) and
//! OTLP/JSON ([`json`]), the per-request batch both decoders fill, and the tally reported in
//! `partial_success`.
//!
//! Design decisions:
//! - **Decode everything, then record.** A decoder fills a [`Batch`]: valid points with their
//!   bucket arrays, quantiles and attributes in per-request arenas. Only when the whole request
//!   has decoded are the points handed to the [`MetricSink`], so a structural error refuses the
//!   request before anything is recorded, as on the trace path. The batch lives in a
//!   thread-local pool and keeps its capacity: a warm decoder allocates nothing.
//! - **Validation per point.** A point is rejected on its own (counted in
//!   `partial_success.rejected_data_points`) for the first failing rule, in this order: the
//!   resource (no `service.name`, a dimension that is not UTF-8), the metric (no name, name or
//!   unit not UTF-8, a sum or histogram whose temporality is neither delta nor cumulative),
//!   the point (no `time_unix_nano`, no value, a NaN or infinite number, bucket arrays that do
//!   not fit their rules, a quantile outside `[0, 1]`), then its attributes (more than
//!   [`MAX_POINT_ATTRIBUTES`], a key or string value that is not UTF-8). A point flagged
//!   `FLAG_NO_RECORDED_VALUE` is skipped before any rule: accepted, not recorded.
//! - **Bounded arrays.** Bucket and quantile arrays are capped ([`MAX_EXPLICIT_BUCKETS`],
//!   [`MAX_EXPONENTIAL_BUCKETS`] per side, [`MAX_QUANTILES`]) while they are read, never
//!   reserved from a length the client sent; a packed array longer than the cap rejects its
//!   point without being copied.
//! - **Attributes as text.** Point attributes are rendered as text (strings as they are,
//!   integers in decimal, `true`/`false`, doubles in their shortest form, `""` for arrays,
//!   maps, bytes and unset values), sorted by key, and the last value of a repeated key wins.

pub mod json;
pub mod wire;

use crate::extract::{AttrValue, ExtractConfig, Found, ResourceFields};
use slogate_core::{
    MAX_EXTRA_DIMS, MetricPoint, MetricSink, PointRefusal, PointValue, Temporality,
};
use std::cell::RefCell;
use std::fmt::Write as _;

/// `DataPointFlags.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK`: the point marks a gap, it has no value.
pub const FLAG_NO_RECORDED_VALUE: u32 = 1;
/// Attributes (before removing repeated keys) a point may carry.
pub const MAX_POINT_ATTRIBUTES: usize = 128;
/// Bucket counts (and bounds) an explicit-bucket histogram point may carry.
pub const MAX_EXPLICIT_BUCKETS: usize = 200;
/// Bucket counts per side (positive, negative) of an exponential histogram point: twice the
/// OpenTelemetry SDKs' default maximum size of 160.
pub const MAX_EXPONENTIAL_BUCKETS: usize = 320;
/// Quantiles a summary point may carry.
pub const MAX_QUANTILES: usize = 128;
/// The exponential histogram scales accepted (the OpenTelemetry data model's range).
pub const EXP_SCALES: std::ops::RangeInclusive<i32> = -10..=20;

/// `AggregationTemporality` values.
const TEMPORALITY_DELTA: i32 = 1;
const TEMPORALITY_CUMULATIVE: i32 = 2;

/// Where a [`PointReject::InvalidUtf8`] was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricDim {
    Service,
    Env,
    Version,
    /// The configured extra dimension at this index.
    Extra(u8),
    Instance,
    MetricName,
    Unit,
    /// A point attribute's key or string value.
    Attribute,
}

impl MetricDim {
    fn describe(self) -> String {
        match self {
            MetricDim::Service => {
                "service (resource attribute service.name or as configured)".into()
            }
            MetricDim::Env => {
                "env (resource attribute deployment.environment.name or as configured)".into()
            }
            MetricDim::Version => {
                "version (resource attribute service.version or as configured)".into()
            }
            MetricDim::Extra(i) => format!("extra dimension #{i} (as configured)"),
            MetricDim::Instance => {
                "instance (resource attribute service.instance.id, k8s.pod.name or host.name)"
                    .into()
            }
            MetricDim::MetricName => "the metric name".into(),
            MetricDim::Unit => "the metric unit".into(),
            MetricDim::Attribute => "a point attribute".into(),
        }
    }
}

/// Why a data point was not recorded; each is counted in `partial_success`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointReject {
    MissingService,
    /// A string that becomes part of the point's identity is not valid UTF-8.
    InvalidUtf8(MetricDim),
    MissingMetricName,
    /// A sum or histogram whose aggregation temporality is neither delta nor cumulative.
    InvalidTemporality,
    MissingTime,
    /// A gauge or sum point with neither `as_double` nor `as_int`.
    MissingValue,
    /// NaN or an infinity in a value, a sum, min or max, a bound, a quantile's value or a
    /// zero threshold.
    NonFiniteValue,
    /// `bounds.len() + 1 != counts.len()` (unless both are empty), or a negative zero threshold.
    InvalidBuckets,
    /// Explicit bounds not strictly increasing.
    UnsortedBounds,
    /// `count` differs from the sum of the bucket counts (and the zero count).
    CountMismatch,
    /// More buckets (or quantiles) than the caps allow.
    TooManyBuckets,
    /// An exponential histogram scale outside [`EXP_SCALES`].
    InvalidScale,
    /// An exponential histogram whose `offset + len` does not fit an `i32`.
    OffsetOverflow,
    /// A summary quantile outside `[0, 1]`.
    InvalidQuantile,
    /// More than [`MAX_POINT_ATTRIBUTES`] attributes.
    TooManyAttributes,
    /// The sink refused the point.
    Refused(PointRefusal),
}

impl PointReject {
    /// How many reasons there are: the size of per-reason counter arrays.
    pub const COUNT: usize = 17;

    /// One value per reason, in [`PointReject::index`] order (`InvalidUtf8` stands for every
    /// dimension).
    pub const ALL: [PointReject; PointReject::COUNT] = [
        PointReject::MissingService,
        PointReject::InvalidUtf8(MetricDim::Service),
        PointReject::MissingMetricName,
        PointReject::InvalidTemporality,
        PointReject::MissingTime,
        PointReject::MissingValue,
        PointReject::NonFiniteValue,
        PointReject::InvalidBuckets,
        PointReject::UnsortedBounds,
        PointReject::CountMismatch,
        PointReject::TooManyBuckets,
        PointReject::InvalidScale,
        PointReject::OffsetOverflow,
        PointReject::InvalidQuantile,
        PointReject::TooManyAttributes,
        PointReject::Refused(PointRefusal::OutOfRange),
        PointReject::Refused(PointRefusal::Conflict),
    ];

    /// The reason's position in per-reason counter arrays.
    pub const fn index(self) -> usize {
        match self {
            PointReject::MissingService => 0,
            PointReject::InvalidUtf8(_) => 1,
            PointReject::MissingMetricName => 2,
            PointReject::InvalidTemporality => 3,
            PointReject::MissingTime => 4,
            PointReject::MissingValue => 5,
            PointReject::NonFiniteValue => 6,
            PointReject::InvalidBuckets => 7,
            PointReject::UnsortedBounds => 8,
            PointReject::CountMismatch => 9,
            PointReject::TooManyBuckets => 10,
            PointReject::InvalidScale => 11,
            PointReject::OffsetOverflow => 12,
            PointReject::InvalidQuantile => 13,
            PointReject::TooManyAttributes => 14,
            PointReject::Refused(PointRefusal::OutOfRange) => 15,
            PointReject::Refused(PointRefusal::Conflict) => 16,
        }
    }

    /// The label used in `/metrics` and messages.
    pub fn label(self) -> &'static str {
        match self {
            PointReject::MissingService => "missing_service_name",
            PointReject::InvalidUtf8(_) => "invalid_utf8",
            PointReject::MissingMetricName => "missing_metric_name",
            PointReject::InvalidTemporality => "invalid_temporality",
            PointReject::MissingTime => "missing_time",
            PointReject::MissingValue => "missing_value",
            PointReject::NonFiniteValue => "non_finite_value",
            PointReject::InvalidBuckets => "invalid_buckets",
            PointReject::UnsortedBounds => "unsorted_bounds",
            PointReject::CountMismatch => "count_mismatch",
            PointReject::TooManyBuckets => "too_many_buckets",
            PointReject::InvalidScale => "invalid_scale",
            PointReject::OffsetOverflow => "bucket_offset_overflow",
            PointReject::InvalidQuantile => "invalid_quantile",
            PointReject::TooManyAttributes => "too_many_attributes",
            PointReject::Refused(r) => r.label(),
        }
    }

    fn describe(self) -> String {
        match self {
            PointReject::MissingService => "the resource has no service.name".into(),
            PointReject::InvalidUtf8(dim) => format!("{} is not valid UTF-8", dim.describe()),
            PointReject::MissingMetricName => "the metric has no name".into(),
            PointReject::InvalidTemporality => {
                "aggregation_temporality is neither delta (1) nor cumulative (2)".into()
            }
            PointReject::MissingTime => "time_unix_nano is not set".into(),
            PointReject::MissingValue => "the point has neither as_double nor as_int".into(),
            PointReject::NonFiniteValue => {
                "a value, sum, min, max or bound is NaN or infinite".into()
            }
            PointReject::InvalidBuckets => "explicit_bounds must have one element fewer than \
                bucket_counts, and zero_threshold must not be negative"
                .into(),
            PointReject::UnsortedBounds => "explicit_bounds are not strictly increasing".into(),
            PointReject::CountMismatch => "count is not the sum of the bucket counts".into(),
            PointReject::TooManyBuckets => format!(
                "more than {MAX_EXPLICIT_BUCKETS} explicit buckets, {MAX_EXPONENTIAL_BUCKETS} \
                 exponential buckets per side or {MAX_QUANTILES} quantiles"
            ),
            PointReject::InvalidScale => format!(
                "scale is outside [{}, {}]",
                EXP_SCALES.start(),
                EXP_SCALES.end()
            ),
            PointReject::OffsetOverflow => "bucket offset + bucket count overflows int32".into(),
            PointReject::InvalidQuantile => "a quantile is outside [0, 1]".into(),
            PointReject::TooManyAttributes => {
                format!("more than {MAX_POINT_ATTRIBUTES} attributes")
            }
            PointReject::Refused(PointRefusal::OutOfRange) => {
                "the point is older than the store keeps, or too far in the future".into()
            }
            PointReject::Refused(PointRefusal::Conflict) => {
                "the point conflicts with its series (a different type or bucket layout)".into()
            }
        }
    }
}

/// Where a point sits in its request, for the error message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PointLoc {
    pub resource: u32,
    pub scope: u32,
    pub metric: u32,
    pub point: u32,
}

/// Per-request tally of what was recorded, skipped and rejected.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricTally {
    pub recorded: u64,
    /// Points flagged `FLAG_NO_RECORDED_VALUE`: valid, not recorded.
    pub skipped: u64,
    /// Rejected points per reason, by [`PointReject::index`].
    pub rejected: [u64; PointReject::COUNT],
    pub first_reject: Option<(PointReject, PointLoc)>,
}

impl MetricTally {
    pub fn total_rejected(&self) -> u64 {
        self.rejected.iter().sum()
    }

    pub fn reject(&mut self, why: PointReject, loc: PointLoc) {
        self.rejected[why.index()] += 1;
        if self.first_reject.is_none() {
            self.first_reject = Some((why, loc));
        }
    }

    /// The English message OTLP asks for when some points were rejected.
    pub fn message(&self) -> Option<String> {
        let total = self.total_rejected();
        if total == 0 {
            return None;
        }
        let parts: Vec<String> = PointReject::ALL
            .iter()
            .filter(|r| self.rejected[r.index()] > 0)
            .map(|r| format!("{} {}", self.rejected[r.index()], r.label()))
            .collect();
        let mut msg = format!(
            "rejected {total} invalid data point(s): {}",
            parts.join(", ")
        );
        if let Some((why, l)) = self.first_reject {
            let _ = write!(
                msg,
                "; first at resource_metrics[{}].scope_metrics[{}].metrics[{}].data_points[{}]: {}",
                l.resource,
                l.scope,
                l.metric,
                l.point,
                why.describe()
            );
        }
        Some(msg)
    }
}

/// Slots a decoder fills while scanning a resource's attributes: the span path's cohort
/// dimensions and the producing instance.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct MetricResource<'a> {
    pub dims: ResourceFields<'a>,
    pub instance: Found<'a>,
}

impl<'a> MetricResource<'a> {
    #[inline]
    pub fn offer(&mut self, cfg: &ExtractConfig, key: &[u8], value: AttrValue<'a>) {
        self.dims.offer(cfg, key, value);
        let rank = match key {
            b"service.instance.id" => 0,
            b"k8s.pod.name" => 1,
            b"host.name" => 2,
            _ => return,
        };
        if value.as_str().is_some() {
            self.instance.offer(value, rank);
        }
    }
}

/// A resource's validated identity.
#[derive(Debug, Clone, Copy)]
struct ResDims<'a> {
    service: &'a str,
    env: &'a str,
    version: &'a str,
    extras: [&'a str; MAX_EXTRA_DIMS],
    instance: &'a str,
}

fn utf8(v: &[u8], dim: MetricDim) -> Result<&str, PointReject> {
    std::str::from_utf8(v).map_err(|_| PointReject::InvalidUtf8(dim))
}

fn str_or_empty(found: Found<'_>) -> &[u8] {
    found.value.as_str().unwrap_or(b"")
}

fn resolve_resource<'a>(
    cfg: &ExtractConfig,
    r: &MetricResource<'a>,
) -> Result<ResDims<'a>, PointReject> {
    let service = match r.dims.service.value.as_str() {
        Some(s) if !s.is_empty() => s,
        _ => return Err(PointReject::MissingService),
    };
    let mut dims = ResDims {
        service: utf8(service, MetricDim::Service)?,
        env: utf8(str_or_empty(r.dims.env), MetricDim::Env)?,
        version: utf8(str_or_empty(r.dims.version), MetricDim::Version)?,
        extras: [""; MAX_EXTRA_DIMS],
        instance: "",
    };
    for (i, out) in dims.extras.iter_mut().enumerate().take(cfg.extras.len()) {
        *out = utf8(str_or_empty(r.dims.extras[i]), MetricDim::Extra(i as u8))?;
    }
    dims.instance = utf8(str_or_empty(r.instance), MetricDim::Instance)?;
    Ok(dims)
}

/// The data oneof of a `Metric`, with the settings of its data message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Gauge,
    Sum { temporality: i32, monotonic: bool },
    Histogram { temporality: i32 },
    ExponentialHistogram { temporality: i32 },
    Summary,
}

fn temporality(t: i32) -> Option<Temporality> {
    match t {
        TEMPORALITY_DELTA => Some(Temporality::Delta),
        TEMPORALITY_CUMULATIVE => Some(Temporality::Cumulative),
        _ => None,
    }
}

/// One metric as its points see it: validated once, or the reason all its points are rejected.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MetricCtx<'a> {
    res: u32,
    name: &'a str,
    unit: &'a str,
    kind: Kind,
    temporality: Temporality,
    reject: Option<PointReject>,
}

/// An attribute value as sent; rendered as text only for points that are kept.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Scalar<'a> {
    Str(&'a [u8]),
    Bool(bool),
    Int(i64),
    Double(f64),
    /// Arrays, maps, bytes, or no value: rendered as `""`.
    Other,
}

/// A point attribute's value as kept until its point is checked: strings validated as they
/// are read, numbers rendered only for points that are kept.
#[derive(Debug, Clone, Copy)]
enum RawValue<'a> {
    Text(&'a str),
    /// A string value that is not UTF-8: rejects its point unless a later value of the same
    /// key replaces it.
    BadUtf8,
    Int(i64),
    Double(f64),
}

#[derive(Debug, Clone, Copy)]
struct RawAttr<'a> {
    /// The key's first 8 bytes, big-endian and zero-padded: orders keys as their bytes do
    /// wherever it differs.
    prefix: u64,
    key: &'a str,
    value: RawValue<'a>,
    /// Arrival order: the tie-break of the large-n (unstable) sort.
    seq: u32,
}

impl RawAttr<'_> {
    /// Key order; ties are kept in arrival order by the (stable) sort.
    #[inline(always)]
    fn after(&self, other: &Self) -> bool {
        if self.prefix != other.prefix {
            return self.prefix > other.prefix;
        }
        self.key.as_bytes() > other.key.as_bytes()
    }

    #[inline(always)]
    fn same_key(&self, other: &Self) -> bool {
        self.prefix == other.prefix && self.key == other.key
    }
}

/// See [`RawAttr::prefix`].
#[inline(always)]
fn key_prefix(key: &[u8]) -> u64 {
    match key.first_chunk::<8>() {
        Some(c) => u64::from_be_bytes(*c),
        None => {
            let mut b = [0u8; 8];
            b[..key.len()].copy_from_slice(key);
            u64::from_be_bytes(b)
        }
    }
}

/// An attribute value of a kept point: borrowed from the request, or rendered into the batch's
/// text arena.
#[derive(Debug, Clone, Copy)]
enum Text<'a> {
    Borrowed(&'a str),
    Rendered(u32, u32),
}

type Range32 = (u32, u32);

#[derive(Debug, Clone, Copy)]
enum ValRec {
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
        bounds: Range32,
        counts: Range32,
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
        positive_offset: i32,
        positive: Range32,
        negative_offset: i32,
        negative: Range32,
    },
    Summary {
        count: u64,
        sum: f64,
        quantiles: Range32,
    },
}

#[derive(Debug, Clone, Copy)]
struct PointRec<'a> {
    res: u32,
    metric: &'a str,
    unit: &'a str,
    attrs: Range32,
    start: u64,
    time: u64,
    value: ValRec,
    loc: PointLoc,
}

/// Where a point's arrays begin in the arenas.
#[derive(Debug, Clone, Copy, Default)]
struct Marks {
    f64s: usize,
    u64s: usize,
    negative: usize,
    quantiles: usize,
}

/// The fields of one data point as a decoder reads them (its arrays go to the batch).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Draft {
    pub start: u64,
    pub time: u64,
    pub flags: u32,
    /// A gauge's or sum's value.
    pub number: Option<f64>,
    pub count: u64,
    /// A histogram's sum, or a summary's (always set for summaries).
    pub sum: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub scale: i32,
    pub zero_count: u64,
    pub zero_threshold: f64,
    pub positive_offset: i32,
    pub negative_offset: i32,
    marks: Marks,
    attrs_overflow: bool,
    /// An attribute key is not UTF-8.
    attr_key_bad: bool,
    buckets_overflow: bool,
}

/// The per-request arenas both decoders fill; see the module notes.
#[derive(Default)]
pub(crate) struct Batch<'a> {
    resources: Vec<Result<ResDims<'a>, PointReject>>,
    points: Vec<PointRec<'a>>,
    attrs: Vec<(&'a str, Text<'a>)>,
    raw: Vec<RawAttr<'a>>,
    f64s: Vec<f64>,
    u64s: Vec<u64>,
    negative: Vec<u64>,
    quantiles: Vec<(f64, f64)>,
    text: String,
    /// Emission scratch: the kept attributes as `&str` pairs (re-typed per request).
    pairs: Vec<(&'a str, &'a str)>,
    /// Attribute keys known to be UTF-8, by position in their point: points of a metric
    /// usually repeat their keys, and comparing bytes is cheaper than checking them again.
    keys: [&'a str; KEY_CACHE],
}

/// Attribute positions whose last key is remembered (see `Batch::keys`).
const KEY_CACHE: usize = 8;

/// Re-types an emptied vector without giving up its allocation: an in-place collect keeps the
/// buffer when the element types have the same layout (here they differ only in lifetimes).
fn recycle<T, U>(mut v: Vec<T>) -> Vec<U> {
    v.clear();
    v.into_iter().map(|_| unreachable!("emptied")).collect()
}

/// Arenas bigger than this many elements are not kept for reuse, so one huge request does not
/// pin memory.
const POOL_KEEP_ELEMENTS: usize = 1 << 16;

fn keep<T>(v: Vec<T>) -> Vec<T> {
    if v.capacity() > POOL_KEEP_ELEMENTS {
        Vec::new()
    } else {
        v
    }
}

impl<'a> Batch<'a> {
    fn recycle<'b>(self) -> Batch<'b> {
        let mut text = self.text;
        text.clear();
        if text.capacity() > POOL_KEEP_ELEMENTS * 8 {
            text = String::new();
        }
        Batch {
            resources: keep(recycle(self.resources)),
            points: keep(recycle(self.points)),
            attrs: keep(recycle(self.attrs)),
            raw: keep(recycle(self.raw)),
            f64s: keep(recycle(self.f64s)),
            u64s: keep(recycle(self.u64s)),
            negative: keep(recycle(self.negative)),
            quantiles: keep(recycle(self.quantiles)),
            text,
            pairs: keep(recycle(self.pairs)),
            keys: [""; KEY_CACHE],
        }
    }

    /// Adds a resource; its index, or why its points are rejected.
    pub fn add_resource(
        &mut self,
        cfg: &ExtractConfig,
        r: &MetricResource<'a>,
    ) -> Result<u32, PointReject> {
        let dims = resolve_resource(cfg, r)?;
        self.resources.push(Ok(dims));
        Ok((self.resources.len() - 1) as u32)
    }

    /// Validates what is known of a metric before its points.
    pub fn metric(
        &self,
        res: Result<u32, PointReject>,
        name: &'a [u8],
        unit: &'a [u8],
        kind: Kind,
    ) -> MetricCtx<'a> {
        let mut ctx = MetricCtx {
            res: 0,
            name: "",
            unit: "",
            kind,
            temporality: Temporality::Cumulative,
            reject: None,
        };
        let check = |ctx: &mut MetricCtx<'a>| -> Result<(), PointReject> {
            ctx.res = res?;
            if name.is_empty() {
                return Err(PointReject::MissingMetricName);
            }
            ctx.name = utf8(name, MetricDim::MetricName)?;
            ctx.unit = utf8(unit, MetricDim::Unit)?;
            match kind {
                Kind::Sum { temporality: t, .. }
                | Kind::Histogram { temporality: t }
                | Kind::ExponentialHistogram { temporality: t } => {
                    ctx.temporality = temporality(t).ok_or(PointReject::InvalidTemporality)?;
                }
                Kind::Gauge | Kind::Summary => {}
            }
            Ok(())
        };
        if let Err(why) = check(&mut ctx) {
            ctx.reject = Some(why);
        }
        ctx
    }

    /// Starts a point.
    #[inline]
    pub fn begin_point(&mut self) -> Draft {
        self.raw.clear();
        Draft {
            marks: Marks {
                f64s: self.f64s.len(),
                u64s: self.u64s.len(),
                negative: self.negative.len(),
                quantiles: self.quantiles.len(),
            },
            ..Draft::default()
        }
    }

    /// A point attribute. Its key and string value are checked here (a point whose kept
    /// attributes are not UTF-8 is rejected when it is finished).
    #[inline]
    pub fn attr(&mut self, d: &mut Draft, key: &'a [u8], value: Scalar<'a>) {
        if self.raw.len() >= MAX_POINT_ATTRIBUTES {
            d.attrs_overflow = true;
            return;
        }
        let key = match self.known_key(key) {
            Some(k) => k,
            None => match std::str::from_utf8(key) {
                Ok(k) => {
                    self.keys[self.raw.len() % KEY_CACHE] = k;
                    k
                }
                Err(_) => {
                    d.attr_key_bad = true;
                    ""
                }
            },
        };
        let value = match value {
            Scalar::Str(s) => std::str::from_utf8(s).map_or(RawValue::BadUtf8, RawValue::Text),
            Scalar::Bool(b) => RawValue::Text(if b { "true" } else { "false" }),
            Scalar::Other => RawValue::Text(""),
            Scalar::Int(i) => RawValue::Int(i),
            Scalar::Double(v) => RawValue::Double(v),
        };
        self.push_attr(d, key, value);
    }

    /// `key` as a string if it is the key last seen at this attribute position (bytes alike:
    /// the cached string has the same contents).
    #[inline(always)]
    pub fn known_key(&self, key: &[u8]) -> Option<&'a str> {
        let k = self.keys[self.raw.len() % KEY_CACHE];
        (k.as_bytes() == key).then_some(k)
    }

    /// Remembers a key known to be UTF-8 for the next point's attribute at this position.
    #[inline(always)]
    pub fn remember_key(&mut self, key: &'a str) {
        self.keys[self.raw.len() % KEY_CACHE] = key;
    }

    /// A point attribute whose key and string value are already known to be UTF-8.
    #[inline]
    pub fn attr_text(&mut self, d: &mut Draft, key: &'a str, value: &'a str) {
        if self.raw.len() >= MAX_POINT_ATTRIBUTES {
            d.attrs_overflow = true;
        } else {
            self.push_attr(d, key, RawValue::Text(value));
        }
    }

    #[inline(always)]
    fn push_attr(&mut self, _d: &mut Draft, key: &'a str, value: RawValue<'a>) {
        let seq = self.raw.len() as u32;
        self.raw.push(RawAttr {
            prefix: key_prefix(key.as_bytes()),
            key,
            value,
            seq,
        });
    }

    /// Room left for explicit bounds or bucket counts: a packed array that does not fit is
    /// skipped unread and its point rejected.
    #[inline]
    pub fn explicit_room(&self, d: &Draft, bounds: bool) -> usize {
        let used = if bounds {
            self.f64s.len() - d.marks.f64s
        } else {
            self.u64s.len() - d.marks.u64s
        };
        MAX_EXPLICIT_BUCKETS - used.min(MAX_EXPLICIT_BUCKETS)
    }

    #[inline]
    pub fn overflow(&mut self, d: &mut Draft) {
        d.buckets_overflow = true;
    }

    #[inline]
    pub fn bound(&mut self, d: &mut Draft, v: f64) {
        if self.f64s.len() - d.marks.f64s >= MAX_EXPLICIT_BUCKETS {
            d.buckets_overflow = true;
        } else {
            self.f64s.push(v);
        }
    }

    #[inline]
    pub fn bucket_count(&mut self, d: &mut Draft, v: u64) {
        if self.u64s.len() - d.marks.u64s >= MAX_EXPLICIT_BUCKETS {
            d.buckets_overflow = true;
        } else {
            self.u64s.push(v);
        }
    }

    /// A packed array of explicit bounds or bucket counts (little-endian 8-byte values) that
    /// fits [`Batch::explicit_room`].
    #[inline]
    pub fn explicit_packed(&mut self, bounds: bool, values: &[[u8; 8]]) {
        let values = values.iter().map(|c| u64::from_le_bytes(*c));
        if bounds {
            self.f64s.extend(values.map(f64::from_bits));
        } else {
            self.u64s.extend(values);
        }
    }

    /// Exponential histogram bucket counts of one byte each (a packed varint array whose
    /// bytes are all below `0x80`).
    #[inline]
    pub fn exp_counts_small(&mut self, d: &mut Draft, negative: bool, counts: &[u8]) {
        let (arena, mark) = if negative {
            (&mut self.negative, d.marks.negative)
        } else {
            (&mut self.u64s, d.marks.u64s)
        };
        let room = MAX_EXPONENTIAL_BUCKETS - (arena.len() - mark).min(MAX_EXPONENTIAL_BUCKETS);
        let take = if counts.len() > room {
            d.buckets_overflow = true;
            &counts[..room]
        } else {
            counts
        };
        arena.extend(take.iter().map(|&c| u64::from(c)));
    }

    /// An exponential histogram bucket count, positive side or negative.
    #[inline]
    pub fn exp_count(&mut self, d: &mut Draft, negative: bool, v: u64) {
        let (arena, mark) = if negative {
            (&mut self.negative, d.marks.negative)
        } else {
            (&mut self.u64s, d.marks.u64s)
        };
        if arena.len() - mark >= MAX_EXPONENTIAL_BUCKETS {
            d.buckets_overflow = true;
        } else {
            arena.push(v);
        }
    }

    #[inline]
    pub fn quantile(&mut self, d: &mut Draft, q: f64, v: f64) {
        if self.quantiles.len() - d.marks.quantiles >= MAX_QUANTILES {
            d.buckets_overflow = true;
        } else {
            self.quantiles.push((q, v));
        }
    }

    fn truncate(&mut self, m: Marks) {
        self.f64s.truncate(m.f64s);
        self.u64s.truncate(m.u64s);
        self.negative.truncate(m.negative);
        self.quantiles.truncate(m.quantiles);
    }

    /// Ends a point: keeps it for recording, or counts it as skipped or rejected.
    pub fn finish_point(
        &mut self,
        m: &MetricCtx<'a>,
        d: &Draft,
        loc: PointLoc,
        tally: &mut MetricTally,
    ) {
        if d.flags & FLAG_NO_RECORDED_VALUE != 0 {
            self.truncate(d.marks);
            tally.skipped += 1;
            return;
        }
        match self.check_point(m, d) {
            Ok((value, attrs)) => self.points.push(PointRec {
                res: m.res,
                metric: m.name,
                unit: m.unit,
                attrs,
                start: d.start,
                time: d.time,
                value,
                loc,
            }),
            Err(why) => {
                self.truncate(d.marks);
                tally.reject(why, loc);
            }
        }
    }

    fn check_point(
        &mut self,
        m: &MetricCtx<'a>,
        d: &Draft,
    ) -> Result<(ValRec, Range32), PointReject> {
        if let Some(why) = m.reject {
            return Err(why);
        }
        if d.time == 0 {
            return Err(PointReject::MissingTime);
        }
        let value = self.check_value(m, d)?;
        let attrs = self.finish_attrs(d)?;
        Ok((value, attrs))
    }

    fn check_value(&self, m: &MetricCtx<'a>, d: &Draft) -> Result<ValRec, PointReject> {
        use PointReject::*;
        let finite = |v: Option<f64>| v.is_none_or(f64::is_finite);
        let range = |from: usize, to: usize| (from as u32, to as u32);
        match m.kind {
            Kind::Gauge | Kind::Sum { .. } => {
                let value = d.number.ok_or(MissingValue)?;
                if !value.is_finite() {
                    return Err(NonFiniteValue);
                }
                Ok(match m.kind {
                    Kind::Sum { monotonic, .. } => ValRec::Sum {
                        value,
                        monotonic,
                        temporality: m.temporality,
                    },
                    _ => ValRec::Gauge(value),
                })
            }
            Kind::Histogram { .. } => {
                if !(finite(d.sum) && finite(d.min) && finite(d.max)) {
                    return Err(NonFiniteValue);
                }
                if d.buckets_overflow {
                    return Err(TooManyBuckets);
                }
                let bounds = &self.f64s[d.marks.f64s..];
                let counts = &self.u64s[d.marks.u64s..];
                if !bounds.iter().all(|b| b.is_finite()) {
                    return Err(NonFiniteValue);
                }
                if !(bounds.is_empty() && counts.is_empty()) && bounds.len() + 1 != counts.len() {
                    return Err(InvalidBuckets);
                }
                if bounds.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(UnsortedBounds);
                }
                if !counts.is_empty() && sum_counts(0, counts, &[]) != Some(d.count) {
                    return Err(CountMismatch);
                }
                Ok(ValRec::Histogram {
                    temporality: m.temporality,
                    count: d.count,
                    sum: d.sum,
                    min: d.min,
                    max: d.max,
                    bounds: range(d.marks.f64s, self.f64s.len()),
                    counts: range(d.marks.u64s, self.u64s.len()),
                })
            }
            Kind::ExponentialHistogram { .. } => {
                if !(finite(d.sum)
                    && finite(d.min)
                    && finite(d.max)
                    && d.zero_threshold.is_finite())
                {
                    return Err(NonFiniteValue);
                }
                if d.zero_threshold < 0.0 {
                    return Err(InvalidBuckets);
                }
                if !EXP_SCALES.contains(&d.scale) {
                    return Err(InvalidScale);
                }
                if d.buckets_overflow {
                    return Err(TooManyBuckets);
                }
                let positive = &self.u64s[d.marks.u64s..];
                let negative = &self.negative[d.marks.negative..];
                let fits =
                    |offset: i32, len: usize| i64::from(offset) + len as i64 <= i64::from(i32::MAX);
                if !fits(d.positive_offset, positive.len())
                    || !fits(d.negative_offset, negative.len())
                {
                    return Err(OffsetOverflow);
                }
                if sum_counts(d.zero_count, positive, negative) != Some(d.count) {
                    return Err(CountMismatch);
                }
                Ok(ValRec::Exponential {
                    temporality: m.temporality,
                    count: d.count,
                    sum: d.sum,
                    min: d.min,
                    max: d.max,
                    scale: d.scale,
                    zero_count: d.zero_count,
                    zero_threshold: d.zero_threshold,
                    positive_offset: d.positive_offset,
                    positive: range(d.marks.u64s, self.u64s.len()),
                    negative_offset: d.negative_offset,
                    negative: range(d.marks.negative, self.negative.len()),
                })
            }
            Kind::Summary => {
                let sum = d.sum.unwrap_or(0.0);
                if !sum.is_finite() {
                    return Err(NonFiniteValue);
                }
                if d.buckets_overflow {
                    return Err(TooManyBuckets);
                }
                for (q, v) in &self.quantiles[d.marks.quantiles..] {
                    if !(0.0..=1.0).contains(q) {
                        return Err(InvalidQuantile);
                    }
                    if !v.is_finite() {
                        return Err(NonFiniteValue);
                    }
                }
                Ok(ValRec::Summary {
                    count: d.count,
                    sum,
                    quantiles: range(d.marks.quantiles, self.quantiles.len()),
                })
            }
        }
    }

    /// Sorts the point's attributes by key (the last of a repeated key wins), checks them and
    /// moves them to the attribute arena, rendering numbers as text.
    // HOT PATH
    fn finish_attrs(&mut self, d: &Draft) -> Result<Range32, PointReject> {
        if d.attrs_overflow {
            return Err(PointReject::TooManyAttributes);
        }
        if d.attr_key_bad {
            return Err(PointReject::InvalidUtf8(MetricDim::Attribute));
        }
        let n = self.raw.len();
        if n > INSERTION_SORT_MAX {
            self.raw.sort_unstable_by(|a, b| {
                (a.prefix, a.key.as_bytes(), a.seq).cmp(&(b.prefix, b.key.as_bytes(), b.seq))
            });
            return self.keep_attrs(0..n);
        }
        // Few attributes: an insertion sort of their positions (stable, and no work when
        // they arrive sorted).
        let raw = &self.raw[..];
        let mut order = [0u8; INSERTION_SORT_MAX];
        for i in 0..n {
            let x = &raw[i];
            let mut j = i;
            while j > 0 && raw[usize::from(order[j - 1])].after(x) {
                order[j] = order[j - 1];
                j -= 1;
            }
            order[j] = i as u8;
        }
        self.keep_attrs(order[..n].iter().map(|&i| usize::from(i)))
    }

    /// Moves the point's attributes, taken in key order, to the attribute arena (the last of
    /// a repeated key wins), rendering numbers as text.
    #[inline(always)]
    fn keep_attrs(&mut self, order: impl Iterator<Item = usize>) -> Result<Range32, PointReject> {
        let from = self.attrs.len();
        let text_from = self.text.len();
        let mut order = order.peekable();
        while let Some(i) = order.next() {
            let a = self.raw[i];
            if order
                .peek()
                .is_some_and(|&next| self.raw[next].same_key(&a))
            {
                continue;
            }
            let value = match a.value {
                RawValue::Text(s) => Text::Borrowed(s),
                RawValue::Int(i) => render_i64(i, &mut self.text),
                RawValue::Double(v) => {
                    let start = self.text.len();
                    render_f64(v, &mut self.text);
                    Text::Rendered(start as u32, self.text.len() as u32)
                }
                RawValue::BadUtf8 => {
                    self.attrs.truncate(from);
                    self.text.truncate(text_from);
                    return Err(PointReject::InvalidUtf8(MetricDim::Attribute));
                }
            };
            self.attrs.push((a.key, value));
        }
        Ok((from as u32, self.attrs.len() as u32))
    }

    /// Hands every kept point to the sink; refusals are counted as rejections.
    pub fn emit<S: MetricSink + ?Sized>(&mut self, sink: &S, tally: &mut MetricTally) {
        if self.points.is_empty() {
            return;
        }
        let mut pairs: Vec<(&str, &str)> = recycle(std::mem::take(&mut self.pairs));
        let this = &*self;
        let span = |r: Range32| r.0 as usize..r.1 as usize;
        // Every kept attribute as `&str` pairs in one pass; a point's are a slice of them.
        pairs.extend(this.attrs.iter().map(|&(k, v)| {
            let v = match v {
                Text::Borrowed(s) => s,
                Text::Rendered(a, b) => &this.text[a as usize..b as usize],
            };
            (k, v)
        }));
        let pairs_ref = &pairs[..];
        // Builds point `i`; the store may build a point twice (once to fetch its stream early).
        let point_at = |i: usize| {
            let p = &this.points[i];
            let Ok(res) = &this.resources[p.res as usize] else {
                unreachable!("points of rejected resources are not kept")
            };
            let value = match p.value {
                ValRec::Gauge(v) => PointValue::Gauge(v),
                ValRec::Sum {
                    value,
                    monotonic,
                    temporality,
                } => PointValue::Sum {
                    value,
                    monotonic,
                    temporality,
                },
                ValRec::Histogram {
                    temporality,
                    count,
                    sum,
                    min,
                    max,
                    bounds,
                    counts,
                } => PointValue::Histogram {
                    temporality,
                    count,
                    sum,
                    min,
                    max,
                    bounds: &this.f64s[span(bounds)],
                    counts: &this.u64s[span(counts)],
                },
                ValRec::Exponential {
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
                } => PointValue::ExponentialHistogram {
                    temporality,
                    count,
                    sum,
                    min,
                    max,
                    scale,
                    zero_count,
                    zero_threshold,
                    positive_offset,
                    positive: &this.u64s[span(positive)],
                    negative_offset,
                    negative: &this.negative[span(negative)],
                },
                ValRec::Summary {
                    count,
                    sum,
                    quantiles,
                } => PointValue::Summary {
                    count,
                    sum,
                    quantiles: &this.quantiles[span(quantiles)],
                },
            };
            MetricPoint {
                service: res.service,
                env: res.env,
                version: res.version,
                extras: res.extras,
                instance: res.instance,
                metric: p.metric,
                unit: p.unit,
                attributes: &pairs_ref[span(p.attrs)],
                start_time_unix_nano: p.start,
                time_unix_nano: p.time,
                value,
            }
        };
        sink.record_points(
            this.points.len(),
            &point_at,
            &mut |i, outcome| match outcome {
                Ok(()) => tally.recorded += 1,
                Err(refusal) => tally.reject(PointReject::Refused(refusal), this.points[i].loc),
            },
        );
        self.pairs = recycle(pairs);
    }
}

/// `zero + Σ a + Σ b`, or `None` on overflow.
#[inline]
fn sum_counts(zero: u64, a: &[u64], b: &[u64]) -> Option<u64> {
    let (mut acc, mut over) = (zero, false);
    for &c in a.iter() {
        let (s, o) = acc.overflowing_add(c);
        (acc, over) = (s, over | o);
    }
    for &c in b.iter() {
        let (s, o) = acc.overflowing_add(c);
        (acc, over) = (s, over | o);
    }
    (!over).then_some(acc)
}

/// Attributes up to this many are sorted by insertion; more (rare, and at most
/// [`MAX_POINT_ATTRIBUTES`]) by the standard library's unstable sort with the arrival order
/// as the tie-break.
const INSERTION_SORT_MAX: usize = 16;

/// `0`, `1`, ... `999` in decimal, one after the other.
const SMALL_INT_BYTES: [u8; 2890] = {
    let mut t = [0u8; 2890];
    let (mut n, mut at) = (0usize, 0usize);
    while n < 1000 {
        if n >= 100 {
            t[at] = b'0' + (n / 100) as u8;
            at += 1;
        }
        if n >= 10 {
            t[at] = b'0' + (n / 10 % 10) as u8;
            at += 1;
        }
        t[at] = b'0' + (n % 10) as u8;
        at += 1;
        n += 1;
    }
    t
};

const SMALL_INTS: &str = match std::str::from_utf8(&SMALL_INT_BYTES) {
    Ok(s) => s,
    Err(_) => panic!("ASCII digits"),
};

/// An integer attribute value in decimal: from a static table below 1000 (status codes,
/// ports, counts), else into the text arena.
#[inline]
fn render_i64<'a>(v: i64, out: &mut String) -> Text<'a> {
    if let Ok(n @ 0..1000) = usize::try_from(v) {
        let (at, len) = match n {
            0..10 => (n, 1),
            10..100 => (10 + (n - 10) * 2, 2),
            _ => (190 + (n - 100) * 3, 3),
        };
        return Text::Borrowed(&SMALL_INTS[at..at + len]);
    }
    let start = out.len();
    push_i64(v, out);
    Text::Rendered(start as u32, out.len() as u32)
}

/// `v` in decimal, without going through `fmt`.
fn push_i64(v: i64, out: &mut String) {
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    let mut n = v.unsigned_abs();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        out.push('-');
    }
    for &c in &buf[at..] {
        out.push(char::from(c));
    }
}

/// A double attribute value in its shortest form: positional notation from 1e-7 up to 1e21
/// (`0.5`, `42`, `1234.5`), exponent notation outside (`1e21`, `2.5e-8`), `NaN`, `Infinity`,
/// `-Infinity`; negative zero is `0`.
pub fn render_f64(v: f64, out: &mut String) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "Infinity" } else { "-Infinity" });
    } else if v == 0.0 {
        out.push('0');
    } else if (1e-7..1e21).contains(&v.abs()) {
        let _ = write!(out, "{v}");
    } else {
        let _ = write!(out, "{v:e}");
    }
}

thread_local! {
    /// A reusable batch per thread, so a request does not allocate its arenas.
    static BATCH_POOL: RefCell<Batch<'static>> = RefCell::new(Batch::default());
}

/// Runs `f` with an empty batch borrowed from the thread's pool.
pub(crate) fn with_batch<'a, T>(f: impl FnOnce(&mut Batch<'a>) -> T) -> T {
    let pooled = BATCH_POOL.with(|p| std::mem::take(&mut *p.borrow_mut()));
    let mut batch: Batch<'a> = pooled.recycle();
    let out = f(&mut batch);
    let back: Batch<'static> = batch.recycle();
    BATCH_POOL.with(|p| *p.borrow_mut() = back);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_render_in_their_shortest_form() {
        let cases = [
            (0.5, "0.5"),
            (42.0, "42"),
            (-1.25, "-1.25"),
            (0.1, "0.1"),
            (1e-7, "0.0000001"),
            (2.5e-8, "2.5e-8"),
            (1e21, "1e21"),
            (123456789012.0, "123456789012"),
            (-0.0, "0"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
        ];
        for (v, want) in cases {
            let mut s = String::new();
            render_f64(v, &mut s);
            assert_eq!(s, want, "{v:?}");
        }
    }

    #[test]
    fn tally_message_names_reasons_and_the_first_location() {
        let mut t = MetricTally::default();
        assert_eq!(t.message(), None);
        let loc = PointLoc {
            resource: 1,
            scope: 0,
            metric: 2,
            point: 3,
        };
        t.reject(PointReject::CountMismatch, loc);
        t.reject(PointReject::NonFiniteValue, PointLoc::default());
        t.reject(PointReject::CountMismatch, PointLoc::default());
        t.reject(
            PointReject::Refused(PointRefusal::Conflict),
            PointLoc::default(),
        );
        assert_eq!(
            t.message().unwrap(),
            "rejected 4 invalid data point(s): 1 non_finite_value, 2 count_mismatch, 1 conflict; \
             first at resource_metrics[1].scope_metrics[0].metrics[2].data_points[3]: count is \
             not the sum of the bucket counts"
        );
    }

    #[test]
    fn reasons_are_indexed_in_order() {
        for (i, r) in PointReject::ALL.iter().enumerate() {
            assert_eq!(r.index(), i, "{r:?}");
        }
    }
}
