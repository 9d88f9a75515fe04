//! OTLP metrics load: `services × instances` resources, each with its share of `series` metric
//! streams, exported round after round with values that move the way real instruments do.
//!
//! The stream set is cut once into request templates of `batch_size` points (one point per
//! stream), held as prost messages. Sending a template advances every stream it holds by one
//! round (a gauge wanders, a cumulative counter grows, a histogram gains observations, the
//! timestamp is now) and encodes it: no allocation but the output buffer, about as cheap as the
//! encode itself. A template is never sent twice at once, so each stream's points reach the
//! server in order, as from one SDK exporter.
//!
//! The mix per resource repeats every 16 streams: 4 explicit-bucket histograms
//! (`http.server.request.duration`, seconds, 16 buckets), 2 exponential histograms
//! (`rpc.server.duration`, scale 3, about 40 buckets), 3 monotonic cumulative int sums
//! (`app.requests`), 1 cache hit/miss sum (`cache.operations`), 1 monotonic double sum
//! (`app.cost`), 1 up-down counter (`http.server.active_requests`), 2 int gauges
//! (`messaging.queue.depth`), 1 double gauge (`process.memory.usage`) and 1 summary
//! (`jvm.gc.pause`).

use crate::pool::Encoding;
use crate::run::{BACKOFF_MAX, BACKOFF_MIN, RunError, pace_units};
use crate::scenario::{Protocol, Rate, Target};
use crate::transport::{Client, Outcome, Signal};
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram,
    HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary,
    SummaryDataPoint, exponential_histogram_data_point, metric, number_data_point,
    summary_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// What to generate.
#[derive(Debug, Clone)]
pub struct MetricsSpec {
    pub services: usize,
    /// Instances (pods, each its own resource and `service.instance.id`) per service.
    pub instances: usize,
    /// Metric streams over all resources, spread as evenly as whole streams allow.
    pub series: usize,
    /// Data points per export request (the last request of the set may hold fewer).
    pub batch_size: usize,
    pub env: String,
    pub version: String,
    pub seed: u64,
}

impl Default for MetricsSpec {
    fn default() -> Self {
        MetricsSpec {
            services: 10,
            instances: 1,
            series: 1000,
            batch_size: 1000,
            env: "prod".into(),
            version: "v1".into(),
            seed: 1,
        }
    }
}

impl MetricsSpec {
    pub fn resources(&self) -> usize {
        self.services * self.instances
    }
    pub fn validate(&self) -> Result<(), String> {
        if self.services == 0 || self.instances == 0 || self.batch_size == 0 {
            return Err("services, instances and batch size must be at least 1".into());
        }
        if self.series < self.resources() {
            return Err(format!(
                "{} series cannot cover {} services x {} instances (one stream each at least)",
                self.series, self.services, self.instances
            ));
        }
        Ok(())
    }
}

/// A metrics load run.
#[derive(Debug, Clone)]
pub struct MetricsScenario {
    pub target: Target,
    /// TLS and headers for a secured target.
    pub access: crate::transport::Access,
    pub spec: MetricsSpec,
    /// Data points per second over all requests, or `max`.
    pub rate: Rate,
    pub duration: Duration,
    pub connections: usize,
    pub concurrency: usize,
}

impl MetricsScenario {
    pub fn new(target: Target, spec: MetricsSpec, rate: Rate, duration: Duration) -> Self {
        MetricsScenario {
            target,
            access: Default::default(),
            spec,
            rate,
            duration,
            connections: 4,
            concurrency: 16,
        }
    }
}

/// The instrument behind a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Family {
    QueueDepth,
    MemoryUsage,
    Requests,
    CacheOps,
    Cost,
    ActiveRequests,
    RequestDuration,
    RpcDuration,
    GcPause,
}

use Family::*;

/// The stream mix of every resource, repeated.
pub const CYCLE: [Family; 16] = [
    RequestDuration,
    Requests,
    QueueDepth,
    RpcDuration,
    RequestDuration,
    CacheOps,
    MemoryUsage,
    Requests,
    RequestDuration,
    Cost,
    RpcDuration,
    ActiveRequests,
    RequestDuration,
    Requests,
    GcPause,
    QueueDepth,
];

/// `http.server.request.duration` bounds in seconds: 15 bounds, 16 buckets.
pub const DURATION_BOUNDS: [f64; 15] = [
    0.002, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
pub const EXP_SCALE: i32 = 3;
const SUMMARY_QUANTILES: [f64; 3] = [0.5, 0.9, 0.99];
const METHODS: [&str; 4] = ["GET", "POST", "PUT", "DELETE"];
const SERVICES: [&str; 12] = [
    "checkout",
    "cart",
    "payments",
    "orders",
    "inventory",
    "search",
    "catalog",
    "shipping",
    "users",
    "auth",
    "recommendations",
    "notifications",
];

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            QueueDepth => "messaging.queue.depth",
            MemoryUsage => "process.memory.usage",
            Requests => "app.requests",
            CacheOps => "cache.operations",
            Cost => "app.cost",
            ActiveRequests => "http.server.active_requests",
            RequestDuration => "http.server.request.duration",
            RpcDuration => "rpc.server.duration",
            GcPause => "jvm.gc.pause",
        }
    }
    fn unit(self) -> &'static str {
        match self {
            QueueDepth => "{message}",
            MemoryUsage => "By",
            Requests | ActiveRequests => "{request}",
            CacheOps => "{operation}",
            Cost => "USD",
            RequestDuration | RpcDuration | GcPause => "s",
        }
    }
    fn description(self) -> &'static str {
        match self {
            QueueDepth => "Messages waiting in the queue.",
            MemoryUsage => "Process memory by state.",
            Requests => "Requests handled, by route and result.",
            CacheOps => "Cache lookups, by result.",
            Cost => "Billed cost of upstream calls.",
            ActiveRequests => "Requests in flight.",
            RequestDuration => "Duration of HTTP server requests.",
            RpcDuration => "Duration of RPC server calls.",
            GcPause => "Garbage collection pauses.",
        }
    }
    /// `gauge`, `sum`, `histogram`, `exponential_histogram` or `summary`.
    pub fn kind(self) -> &'static str {
        match self {
            QueueDepth | MemoryUsage => "gauge",
            Requests | CacheOps | Cost | ActiveRequests => "sum",
            RequestDuration => "histogram",
            RpcDuration => "exponential_histogram",
            GcPause => "summary",
        }
    }
    /// The point attributes of the `v`-th stream of this family on a resource (distinct per `v`).
    fn attributes(self, v: usize) -> Vec<KeyValue> {
        match self {
            QueueDepth => vec![s("queue", format!("queue-{v}"))],
            MemoryUsage => vec![
                s("memory.pool", format!("pool-{}", v / 4)),
                s("state", ["used", "cached", "free", "buffered"][v % 4]),
            ],
            Requests => vec![
                s("http.route", format!("/api/op{}", v / 3)),
                s("result", ["ok", "error", "timeout"][v % 3]),
            ],
            CacheOps => vec![
                s("cache", format!("cache-{}", v / 2)),
                s("result", ["hit", "miss"][v % 2]),
            ],
            Cost => vec![s("tenant", format!("tenant-{v}"))],
            ActiveRequests => vec![
                s("http.request.method", METHODS[v % 4]),
                s("http.route", format!("/api/op{}", v / 4)),
            ],
            RequestDuration => vec![
                s("http.request.method", METHODS[(v / 2) % 4]),
                s("http.route", format!("/api/op{}", v / 2)),
                i("http.response.status_code", [200, 500][v % 2]),
            ],
            RpcDuration => vec![
                s("rpc.method", format!("Method{v}")),
                s("rpc.service", "shop.v1.Api"),
            ],
            GcPause => vec![s("jvm.gc.name", format!("G1 Young Generation {v}"))],
        }
    }
}

fn kv(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}
fn s(key: &str, v: impl Into<String>) -> KeyValue {
    kv(key, any_value::Value::StringValue(v.into()))
}
fn i(key: &str, v: i64) -> KeyValue {
    kv(key, any_value::Value::IntValue(v))
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A uniform draw in [0, 1) fixed by `(seed, a, b)`: per-stream constants that do not depend
/// on how the streams are cut into requests.
fn unit(seed: u64, a: u64, b: u64) -> f64 {
    (splitmix(seed ^ splitmix(a ^ splitmix(b))) >> 11) as f64 / (1u64 << 53) as f64
}

pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Standard normal CDF (Abramowitz–Stegun 7.1.26 erf, |error| < 1.5e-7).
fn phi(z: f64) -> f64 {
    let x = z.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let y = 1.0
        - (((((1.061_405_429 * t - 1.453_152_027) * t) + 1.421_413_741) * t - 0.284_496_736) * t
            + 0.254_829_592)
            * t
            * (-x * x).exp();
    if z >= 0.0 {
        0.5 * (1.0 + y)
    } else {
        0.5 * (1.0 - y)
    }
}

/// A log-normal truncated at ±3σ: the shape new histogram observations are spread by.
#[derive(Debug, Clone, Copy)]
struct Shape {
    median: f64,
    sigma: f64,
}

impl Shape {
    fn min(self) -> f64 {
        self.median * (-3.0 * self.sigma).exp()
    }
    fn max(self) -> f64 {
        self.median * (3.0 * self.sigma).exp()
    }
    fn cdf(self, x: f64) -> f64 {
        if x <= self.min() {
            return 0.0;
        }
        if x >= self.max() {
            return 1.0;
        }
        let lo = phi(-3.0);
        ((phi((x / self.median).ln() / self.sigma) - lo) / (phi(3.0) - lo)).clamp(0.0, 1.0)
    }
    fn quantile(self, q: f64) -> f64 {
        // Rational approximation of the probit is overkill for three fixed quantiles.
        let z = match q {
            q if q >= 0.99 => 2.326,
            q if q >= 0.9 => 1.2816,
            _ => 0.0,
        };
        self.median * (self.sigma * z).exp()
    }
}

/// Per-bucket upper CDF values (the last is 1) and a representative value for each bucket.
fn bucket_shape(shape: Shape, uppers: impl Iterator<Item = (f64, f64)>) -> (Vec<f64>, Vec<f64>) {
    let (mut cdf, mut rep) = (Vec::new(), Vec::new());
    for (lo, hi) in uppers {
        cdf.push(shape.cdf(hi));
        let (lo, hi) = (lo.max(shape.min()), hi.min(shape.max()));
        rep.push(if hi > lo {
            (lo * hi).sqrt()
        } else {
            shape.median
        });
    }
    if let Some(last) = cdf.last_mut() {
        *last = 1.0;
    }
    (cdf, rep)
}

/// Spreads `n` new observations over buckets by systematic sampling at offset `u`: exactly `n`
/// in all, each bucket within one of its expected share. Adds to `counts`, returns the sum of
/// the representatives of what was added.
fn spread(n: u64, u: f64, cdf: &[f64], rep: &[f64], counts: &mut [u64]) -> f64 {
    let mut below = 0u64;
    let mut sum = 0.0;
    for ((c, r), out) in cdf.iter().zip(rep).zip(counts.iter_mut()) {
        let upto = ((c * n as f64 - u).floor() + 1.0).clamp(0.0, n as f64) as u64;
        let add = upto.saturating_sub(below);
        below = below.max(upto);
        *out += add;
        sum += add as f64 * r;
    }
    sum
}

/// One stream: where its point sits in the template and how it moves.
#[derive(Debug, Clone)]
struct Stream {
    family: Family,
    rm: u32,
    metric: u32,
    dp: u32,
    /// Gauge level or cumulative total.
    level: f64,
    /// Per-stream magnitude (growth per round, base level).
    scale: f64,
    phase: f64,
    shape: Shape,
    /// Histograms: CDF at each bucket's upper edge and representative values.
    cdf: Arc<[f64]>,
    rep: Arc<[f64]>,
}

/// A request's worth of streams, advanced and encoded on each send.
#[derive(Debug, Clone)]
pub struct Template {
    req: ExportMetricsServiceRequest,
    streams: Vec<Stream>,
    rng: SmallRng,
    round: u64,
    last_time: u64,
}

fn point_time(data: &mut metric::Data, dp: usize, t: u64) {
    match data {
        metric::Data::Gauge(g) => g.data_points[dp].time_unix_nano = t,
        metric::Data::Sum(x) => x.data_points[dp].time_unix_nano = t,
        metric::Data::Histogram(h) => h.data_points[dp].time_unix_nano = t,
        metric::Data::ExponentialHistogram(h) => h.data_points[dp].time_unix_nano = t,
        metric::Data::Summary(x) => x.data_points[dp].time_unix_nano = t,
    }
}

impl Template {
    /// Data points in each request built from this template.
    pub fn points(&self) -> usize {
        self.streams.len()
    }
    /// Rounds sent so far.
    pub fn round(&self) -> u64 {
        self.round
    }
    /// The request as last advanced.
    pub fn request(&self) -> &ExportMetricsServiceRequest {
        &self.req
    }

    /// Moves every stream on by one round and stamps the points with `now_ns` (or 1 ns after
    /// the previous round, whichever is later).
    pub fn advance(&mut self, now_ns: u64) -> &ExportMetricsServiceRequest {
        let t = now_ns.max(self.last_time + 1);
        self.last_time = t;
        self.round += 1;
        let round = self.round as f64;
        for st in &mut self.streams {
            let data = self.req.resource_metrics[st.rm as usize].scope_metrics[0].metrics
                [st.metric as usize]
                .data
                .as_mut()
                .expect("templates have data");
            let dp = st.dp as usize;
            point_time(data, dp, t);
            let rng = &mut self.rng;
            match (st.family, data) {
                (QueueDepth, metric::Data::Gauge(g)) => {
                    st.level =
                        (st.level + rng.random_range(-20.0..=20.0f64).round()).clamp(0.0, 10_000.0);
                    g.data_points[dp].value =
                        Some(number_data_point::Value::AsInt(st.level as i64));
                }
                (MemoryUsage, metric::Data::Gauge(g)) => {
                    let v = st.scale * (1.0 + 0.1 * (round / 30.0 + st.phase).sin())
                        + rng.random_range(0.0..1.0) * st.scale * 0.01;
                    g.data_points[dp].value = Some(number_data_point::Value::AsDouble(v.round()));
                }
                (Requests | CacheOps, metric::Data::Sum(x)) => {
                    st.level += (st.scale * rng.random_range(0.5..1.5f64)).round();
                    x.data_points[dp].value =
                        Some(number_data_point::Value::AsInt(st.level as i64));
                }
                (Cost, metric::Data::Sum(x)) => {
                    st.level += st.scale * rng.random_range(0.0..2.0f64);
                    x.data_points[dp].value = Some(number_data_point::Value::AsDouble(st.level));
                }
                (ActiveRequests, metric::Data::Sum(x)) => {
                    st.level = (st.level + rng.random_range(-5.0..=5.0f64).round()).max(0.0);
                    x.data_points[dp].value =
                        Some(number_data_point::Value::AsInt(st.level as i64));
                }
                (RequestDuration, metric::Data::Histogram(h)) => {
                    let p = &mut h.data_points[dp];
                    let n = (st.scale * rng.random_range(0.5..1.5f64)).round() as u64;
                    // In (0, 1]: a zero offset would put one observation below the shape.
                    let u = 1.0 - rng.random::<f64>();
                    let added = spread(n, u, &st.cdf, &st.rep, &mut p.bucket_counts);
                    p.count += n;
                    *p.sum.get_or_insert(0.0) += added;
                }
                (RpcDuration, metric::Data::ExponentialHistogram(h)) => {
                    let p = &mut h.data_points[dp];
                    let n = (st.scale * rng.random_range(0.5..1.5f64)).round() as u64;
                    // In (0, 1]: a zero offset would put one observation below the shape.
                    let u = 1.0 - rng.random::<f64>();
                    let buckets = &mut p.positive.as_mut().expect("positive buckets").bucket_counts;
                    let added = spread(n, u, &st.cdf, &st.rep, buckets);
                    p.count += n;
                    *p.sum.get_or_insert(0.0) += added;
                }
                (GcPause, metric::Data::Summary(x)) => {
                    let p = &mut x.data_points[dp];
                    let n = (st.scale * rng.random_range(0.5..1.5f64)).round() as u64;
                    let jitter = rng.random_range(0.9..1.1f64);
                    p.count += n;
                    p.sum += n as f64 * st.shape.median * jitter;
                    for q in &mut p.quantile_values {
                        q.value = st.shape.quantile(q.quantile) * jitter;
                    }
                }
                (f, _) => unreachable!("{f:?} stream in the wrong point type"),
            }
        }
        &self.req
    }

    /// Advances by one round and encodes the request (compressed for OTLP/HTTP with gzip).
    pub fn encode_next(&mut self, now_ns: u64, encoding: Encoding, gzip: bool) -> Bytes {
        self.advance(now_ns);
        let raw = match encoding {
            Encoding::Protobuf => {
                let mut buf = Vec::with_capacity(self.req.encoded_len());
                self.req.encode(&mut buf).expect("a Vec grows");
                buf
            }
            Encoding::Json => serde_json::to_vec(&self.req).expect("requests serialise"),
        };
        if !gzip {
            return Bytes::from(raw);
        }
        let mut gz = flate2::write::GzEncoder::new(
            Vec::with_capacity(raw.len() / 4),
            flate2::Compression::fast(),
        );
        gz.write_all(&raw).expect("writes to a Vec");
        Bytes::from(gz.finish().expect("writes to a Vec"))
    }
}

/// The service name of service `i`: realistic names, numbered once they run out.
pub fn service_name(i: usize) -> String {
    let base = SERVICES[i % SERVICES.len()];
    match i / SERVICES.len() {
        0 => base.to_string(),
        n => format!("{base}-{n}"),
    }
}

fn resource(spec: &MetricsSpec, service: usize, instance: usize) -> Resource {
    let name = service_name(service);
    let h = splitmix(spec.seed ^ splitmix(((service as u64) << 20) | instance as u64));
    let id = format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        h >> 32,
        (h >> 16) & 0xffff,
        h & 0xfff,
        (h >> 12) & 0xfff,
        splitmix(h) & 0xffff_ffff_ffff
    );
    Resource {
        attributes: vec![
            s("service.name", name.clone()),
            s("service.namespace", "shop"),
            s("service.version", spec.version.clone()),
            s("service.instance.id", id),
            s("deployment.environment.name", spec.env.clone()),
            s("host.name", format!("{name}-{:x}-{instance}", h & 0xfffff)),
            s("telemetry.sdk.name", "opentelemetry"),
            s("telemetry.sdk.language", "java"),
            s("telemetry.sdk.version", "1.44.0"),
        ],
        ..Default::default()
    }
}

/// The point of one stream at round 0: zero counts, the fixed parts in place.
fn initial_point(fam: Family, attributes: Vec<KeyValue>, start: u64, st: &Stream) -> metric::Data {
    let number = |start_time_unix_nano| NumberDataPoint {
        attributes: attributes.clone(),
        start_time_unix_nano,
        ..Default::default()
    };
    let cumulative = AggregationTemporality::Cumulative as i32;
    match fam {
        QueueDepth | MemoryUsage => metric::Data::Gauge(Gauge {
            data_points: vec![number(0)],
        }),
        Requests | CacheOps | Cost | ActiveRequests => metric::Data::Sum(Sum {
            data_points: vec![number(start)],
            aggregation_temporality: cumulative,
            is_monotonic: fam != ActiveRequests,
        }),
        RequestDuration => metric::Data::Histogram(Histogram {
            data_points: vec![HistogramDataPoint {
                attributes,
                start_time_unix_nano: start,
                sum: Some(0.0),
                bucket_counts: vec![0; DURATION_BOUNDS.len() + 1],
                explicit_bounds: DURATION_BOUNDS.to_vec(),
                min: Some(st.shape.min()),
                max: Some(st.shape.max()),
                ..Default::default()
            }],
            aggregation_temporality: cumulative,
        }),
        RpcDuration => metric::Data::ExponentialHistogram(ExponentialHistogram {
            data_points: vec![ExponentialHistogramDataPoint {
                attributes,
                start_time_unix_nano: start,
                sum: Some(0.0),
                scale: EXP_SCALE,
                positive: Some(exponential_histogram_data_point::Buckets {
                    offset: exp_index(st.shape.min()),
                    bucket_counts: vec![0; st.cdf.len()],
                }),
                min: Some(st.shape.min()),
                max: Some(st.shape.max()),
                ..Default::default()
            }],
            aggregation_temporality: cumulative,
        }),
        GcPause => metric::Data::Summary(Summary {
            data_points: vec![SummaryDataPoint {
                attributes,
                start_time_unix_nano: start,
                quantile_values: SUMMARY_QUANTILES
                    .iter()
                    .map(|&quantile| summary_data_point::ValueAtQuantile {
                        quantile,
                        value: 0.0,
                    })
                    .collect(),
                ..Default::default()
            }],
        }),
    }
}

/// The index of the scale-3 bucket holding `x`: bucket `i` is `(2^(i/8), 2^((i+1)/8)]`.
pub fn exp_index(x: f64) -> i32 {
    ((x.log2() * f64::from(1 << EXP_SCALE)).ceil() as i32) - 1
}

fn exp_bound(index: i32) -> f64 {
    (f64::from(index) / f64::from(1 << EXP_SCALE)).exp2()
}

/// The stream's constants, from `(seed, resource, index)`.
fn new_stream(seed: u64, res: usize, j: usize, fam: Family) -> Stream {
    let r = |k: u64| unit(seed, res as u64, ((j as u64) << 8) | k);
    let (shape, scale, level) = match fam {
        QueueDepth => (Shape::default(), 1.0, (r(1) * 500.0).round()),
        MemoryUsage => (Shape::default(), 64e6 + r(1) * 960e6, 0.0),
        Requests => (Shape::default(), 20.0 + r(1) * 180.0, 0.0),
        CacheOps => (Shape::default(), 5.0 + r(1) * 200.0, 0.0),
        Cost => (Shape::default(), 0.001 + r(1) * 0.05, 0.0),
        ActiveRequests => (Shape::default(), 1.0, (r(1) * 50.0).round()),
        RequestDuration => (
            Shape {
                median: 0.01 * 30f64.powf(r(1)),
                sigma: 0.5 + 0.4 * r(2),
            },
            10.0 + r(3) * 90.0,
            0.0,
        ),
        // σ 0.58: ±3σ spans a factor 32, about 40 buckets at scale 3.
        RpcDuration => (
            Shape {
                median: 0.002 * 50f64.powf(r(1)),
                sigma: 0.58,
            },
            10.0 + r(3) * 90.0,
            0.0,
        ),
        GcPause => (
            Shape {
                median: 0.005 + r(1) * 0.02,
                sigma: 0.6,
            },
            1.0 + r(3) * 4.0,
            0.0,
        ),
    };
    let (cdf, rep) = match fam {
        RequestDuration => bucket_shape(
            shape,
            (0..=DURATION_BOUNDS.len()).map(|b| {
                let lo = if b == 0 { 0.0 } else { DURATION_BOUNDS[b - 1] };
                (lo, DURATION_BOUNDS.get(b).copied().unwrap_or(f64::INFINITY))
            }),
        ),
        RpcDuration => {
            let (first, last) = (exp_index(shape.min()), exp_index(shape.max()));
            bucket_shape(
                shape,
                (first..=last).map(|b| (exp_bound(b), exp_bound(b + 1))),
            )
        }
        _ => (Vec::new(), Vec::new()),
    };
    Stream {
        family: fam,
        rm: 0,
        metric: 0,
        dp: 0,
        level,
        scale,
        phase: r(4) * std::f64::consts::TAU,
        shape,
        cdf: cdf.into(),
        rep: rep.into(),
    }
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            median: 1.0,
            sigma: 0.5,
        }
    }
}

/// Every stream's family, in order, for each resource: how many of each type a spec makes.
pub fn family_counts(spec: &MetricsSpec) -> BTreeMap<&'static str, usize> {
    let mut out = BTreeMap::new();
    let res = spec.resources();
    for r in 0..res {
        for j in 0..streams_of(spec, r) {
            *out.entry(CYCLE[j % CYCLE.len()].kind()).or_insert(0) += 1;
        }
    }
    out
}

fn streams_of(spec: &MetricsSpec, r: usize) -> usize {
    let res = spec.resources();
    spec.series / res + usize::from(r < spec.series % res)
}

/// Builds the request templates: the streams of all resources in order, cut every
/// `batch_size` points. `start_ns` is the process start the cumulative points count from.
pub fn build_templates(spec: &MetricsSpec, start_ns: u64) -> Vec<Template> {
    // (resource, stream index, family, variant) in global order.
    let mut all = Vec::with_capacity(spec.series);
    for r in 0..spec.resources() {
        let mut seen = [0usize; 9];
        for j in 0..streams_of(spec, r) {
            let fam = CYCLE[j % CYCLE.len()];
            let v = seen[fam as usize];
            seen[fam as usize] += 1;
            all.push((r, j, fam, v));
        }
    }
    let scope = InstrumentationScope {
        name: "io.opentelemetry.sdk.metrics".into(),
        version: "1.44.0".into(),
        ..Default::default()
    };
    all.chunks(spec.batch_size)
        .enumerate()
        .map(|(t, chunk)| {
            let mut req = ExportMetricsServiceRequest::default();
            let mut streams = Vec::with_capacity(chunk.len());
            let mut k = 0;
            while k < chunk.len() {
                let r = chunk[k].0;
                let end = k + chunk[k..].iter().take_while(|e| e.0 == r).count();
                let (service, instance) = (r / spec.instances, r % spec.instances);
                // Processes started 10 min to 2 h before the run.
                let start = start_ns.saturating_sub(
                    (600.0 + 6600.0 * unit(spec.seed, r as u64, 1 << 40)) as u64 * 1_000_000_000,
                );
                let mut metrics: Vec<Metric> = Vec::new();
                for &(_, j, fam, v) in &chunk[k..end] {
                    let mut st = new_stream(spec.seed, r, j, fam);
                    let m = match metrics.iter().position(|m| m.name == fam.name()) {
                        Some(m) => m,
                        None => {
                            metrics.push(Metric {
                                name: fam.name().into(),
                                description: fam.description().into(),
                                unit: fam.unit().into(),
                                ..Default::default()
                            });
                            metrics.len() - 1
                        }
                    };
                    let point = initial_point(fam, fam.attributes(v), start, &st);
                    let dp = match (&mut metrics[m].data, point) {
                        (None, p) => {
                            metrics[m].data = Some(p);
                            0
                        }
                        (Some(metric::Data::Gauge(a)), metric::Data::Gauge(b)) => {
                            a.data_points.extend(b.data_points);
                            a.data_points.len() - 1
                        }
                        (Some(metric::Data::Sum(a)), metric::Data::Sum(b)) => {
                            a.data_points.extend(b.data_points);
                            a.data_points.len() - 1
                        }
                        (Some(metric::Data::Histogram(a)), metric::Data::Histogram(b)) => {
                            a.data_points.extend(b.data_points);
                            a.data_points.len() - 1
                        }
                        (
                            Some(metric::Data::ExponentialHistogram(a)),
                            metric::Data::ExponentialHistogram(b),
                        ) => {
                            a.data_points.extend(b.data_points);
                            a.data_points.len() - 1
                        }
                        (Some(metric::Data::Summary(a)), metric::Data::Summary(b)) => {
                            a.data_points.extend(b.data_points);
                            a.data_points.len() - 1
                        }
                        _ => unreachable!("one metric name, one point type"),
                    };
                    st.rm = req.resource_metrics.len() as u32;
                    st.metric = m as u32;
                    st.dp = dp as u32;
                    streams.push(st);
                }
                req.resource_metrics.push(ResourceMetrics {
                    resource: Some(resource(spec, service, instance)),
                    scope_metrics: vec![ScopeMetrics {
                        scope: Some(scope.clone()),
                        metrics,
                        ..Default::default()
                    }],
                    ..Default::default()
                });
                k = end;
            }
            Template {
                req,
                streams,
                rng: SmallRng::seed_from_u64(splitmix(spec.seed ^ (t as u64).wrapping_mul(0x9e37))),
                round: 0,
                last_time: 0,
            }
        })
        .collect()
}

/// What a metrics run did. `points_sent` counts every point in every request attempted;
/// `points_accepted` those in accepted requests minus `points_rejected` (their
/// `partial_success.rejected_data_points`); `points_failed` those in failed or throttled
/// requests.
#[derive(Debug, Clone, Serialize)]
pub struct MetricsReport {
    pub signal: Signal,
    pub series: usize,
    pub services: usize,
    pub instances: usize,
    pub batch_size: usize,
    /// Requests in one round of all series.
    pub requests_per_round: usize,
    /// Streams per point type.
    pub series_by_type: BTreeMap<&'static str, usize>,
    pub requests_ok: u64,
    pub requests_failed: u64,
    pub throttled: u64,
    pub points_sent: u64,
    pub points_accepted: u64,
    pub points_rejected: u64,
    pub points_failed: u64,
    /// Failed and throttled requests by status: `http 404`, `grpc Unimplemented`,
    /// `http 503`, `connection`...
    pub errors_by_status: BTreeMap<String, u64>,
    pub first_error: Option<String>,
    /// Encoded (uncompressed for gRPC, as sent for HTTP) bytes sent, over all attempts.
    pub bytes_sent: u64,
    /// Rounds of the least and most sent request template.
    pub rounds_min: u64,
    pub rounds_max: u64,
    #[serde(serialize_with = "secs")]
    pub elapsed: Duration,
    pub points_per_second: f64,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl MetricsReport {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("report serialises")
    }
    /// True when nothing was accepted and every failure said the server has no metrics
    /// receiver (HTTP 404 / 405, gRPC UNIMPLEMENTED).
    pub fn not_served(&self) -> bool {
        self.requests_ok == 0
            && !self.errors_by_status.is_empty()
            && self
                .errors_by_status
                .keys()
                .all(|k| matches!(k.as_str(), "http 404" | "http 405" | "grpc Unimplemented"))
    }
}

impl fmt::Display for MetricsReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "metrics: {} series ({} services x {} instances), {} points/request, {} requests/round",
            self.series, self.services, self.instances, self.batch_size, self.requests_per_round
        )?;
        writeln!(
            f,
            "sent {} points in {:.2}s: {} accepted ({:.0} points/s), {} rejected, {} failed; {} requests ok, {} failed, {} throttled; rounds {}..{}, {:.1} MB",
            self.points_sent,
            self.elapsed.as_secs_f64(),
            self.points_accepted,
            self.points_per_second,
            self.points_rejected,
            self.points_failed,
            self.requests_ok,
            self.requests_failed,
            self.throttled,
            self.rounds_min,
            self.rounds_max,
            self.bytes_sent as f64 / 1e6
        )?;
        let mix: Vec<String> = self
            .series_by_type
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        writeln!(f, "series by type: {}", mix.join(", "))?;
        if !self.errors_by_status.is_empty() {
            let e: Vec<String> = self
                .errors_by_status
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            writeln!(f, "errors by status: {}", e.join(", "))?;
        }
        if let Some(e) = &self.first_error {
            writeln!(f, "first error: {e}")?;
        }
        Ok(())
    }
}

struct Shared {
    templates: Vec<tokio::sync::Mutex<Template>>,
    cursor: AtomicUsize,
    rate: Rate,
    end: Instant,
    pacer: Mutex<Instant>,
    encoding: Encoding,
    gzip_body: bool,
    requests_ok: AtomicU64,
    requests_failed: AtomicU64,
    throttled: AtomicU64,
    points_sent: AtomicU64,
    points_accepted: AtomicU64,
    points_rejected: AtomicU64,
    points_failed: AtomicU64,
    bytes_sent: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
    first_error: Mutex<Option<String>>,
}

/// Runs a metrics load to its end. Must be called inside a tokio runtime.
pub async fn run_metrics(sc: &MetricsScenario) -> Result<MetricsReport, RunError> {
    let invalid = |m: String| RunError::Scenario(crate::ScenarioError::Invalid(m));
    sc.spec.validate().map_err(invalid)?;
    if sc.connections == 0 || sc.concurrency == 0 {
        return Err(invalid(
            "connections and concurrency must be at least 1".into(),
        ));
    }
    if let Rate::PerSecond(r) = sc.rate
        && !(r > 0.0 && r.is_finite())
    {
        return Err(invalid(format!("rate {r} is not a positive number")));
    }
    let spec = sc.spec.clone();
    let start_ns = now_ns();
    let templates = tokio::task::spawn_blocking(move || build_templates(&spec, start_ns))
        .await
        .expect("template building does not panic");
    let requests_per_round = templates.len();
    let clients: Vec<Client> = (0..sc.connections)
        .map(|_| Client::for_signal(&sc.target, Signal::Metrics, &sc.access))
        .collect::<Result<_, _>>()
        .map_err(RunError::Target)?;
    let start = Instant::now();
    let shared = Arc::new(Shared {
        templates: templates.into_iter().map(tokio::sync::Mutex::new).collect(),
        cursor: AtomicUsize::new(0),
        rate: sc.rate,
        end: start + sc.duration,
        pacer: Mutex::new(start),
        encoding: if sc.target.protocol == Protocol::HttpJson {
            Encoding::Json
        } else {
            Encoding::Protobuf
        },
        gzip_body: sc.target.gzip && sc.target.protocol != Protocol::Grpc,
        requests_ok: AtomicU64::new(0),
        requests_failed: AtomicU64::new(0),
        throttled: AtomicU64::new(0),
        points_sent: AtomicU64::new(0),
        points_accepted: AtomicU64::new(0),
        points_rejected: AtomicU64::new(0),
        points_failed: AtomicU64::new(0),
        bytes_sent: AtomicU64::new(0),
        errors: Mutex::new(BTreeMap::new()),
        first_error: Mutex::new(None),
    });
    let tasks: Vec<_> = (0..sc.concurrency)
        .map(|w| tokio::spawn(worker(shared.clone(), clients[w % clients.len()].clone())))
        .collect();
    for t in tasks {
        t.await.expect("worker does not panic");
    }
    let elapsed = start.elapsed();
    let mut rounds = (u64::MAX, 0);
    for t in &shared.templates {
        let r = t.lock().await.round();
        rounds = (rounds.0.min(r), rounds.1.max(r));
    }
    let accepted = shared.points_accepted.load(Relaxed);
    Ok(MetricsReport {
        signal: Signal::Metrics,
        series: sc.spec.series,
        services: sc.spec.services,
        instances: sc.spec.instances,
        batch_size: sc.spec.batch_size,
        requests_per_round,
        series_by_type: family_counts(&sc.spec),
        requests_ok: shared.requests_ok.load(Relaxed),
        requests_failed: shared.requests_failed.load(Relaxed),
        throttled: shared.throttled.load(Relaxed),
        points_sent: shared.points_sent.load(Relaxed),
        points_accepted: accepted,
        points_rejected: shared.points_rejected.load(Relaxed),
        points_failed: shared.points_failed.load(Relaxed),
        errors_by_status: shared.errors.lock().unwrap().clone(),
        first_error: shared.first_error.lock().unwrap().clone(),
        bytes_sent: shared.bytes_sent.load(Relaxed),
        rounds_min: rounds.0.min(rounds.1),
        rounds_max: rounds.1,
        elapsed,
        points_per_second: accepted as f64 / elapsed.as_secs_f64().max(1e-9),
    })
}

/// [`run_metrics`] on a fresh multi-threaded runtime.
pub fn run_metrics_blocking(sc: &MetricsScenario) -> Result<MetricsReport, RunError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(RunError::Runtime)?;
    rt.block_on(run_metrics(sc))
}

/// The next template nobody is sending, in round-robin order; waits for one if all are busy
/// (fewer templates than workers).
async fn next_template(shared: &Shared) -> tokio::sync::MutexGuard<'_, Template> {
    let n = shared.templates.len();
    let mut idx = 0;
    for _ in 0..n {
        idx = shared.cursor.fetch_add(1, Relaxed) % n;
        if let Ok(g) = shared.templates[idx].try_lock() {
            return g;
        }
    }
    shared.templates[idx].lock().await
}

async fn worker(shared: Arc<Shared>, mut client: Client) {
    let mut backoff = BACKOFF_MIN;
    loop {
        if Instant::now() >= shared.end {
            return;
        }
        let mut tpl = next_template(&shared).await;
        let points = tpl.points() as u64;
        if let Rate::PerSecond(rate) = shared.rate {
            let due = pace_units(&shared.pacer, points, rate);
            if due >= shared.end {
                drop(tpl);
                tokio::time::sleep_until(shared.end).await;
                return;
            }
            tokio::time::sleep_until(due).await;
        }
        let body = tpl.encode_next(now_ns(), shared.encoding, shared.gzip_body);
        shared.points_sent.fetch_add(points, Relaxed);
        shared.bytes_sent.fetch_add(body.len() as u64, Relaxed);
        let outcome = client.send(body).await;
        // Held until the answer: the next round of these streams goes after this one.
        drop(tpl);
        let status = match outcome {
            Outcome::Ok { rejected } => {
                shared.requests_ok.fetch_add(1, Relaxed);
                let rejected = rejected.min(points);
                shared.points_accepted.fetch_add(points - rejected, Relaxed);
                shared.points_rejected.fetch_add(rejected, Relaxed);
                backoff = BACKOFF_MIN;
                continue;
            }
            Outcome::Throttled { status } => {
                shared.throttled.fetch_add(1, Relaxed);
                status
            }
            Outcome::Failed { status, message } => {
                shared.requests_failed.fetch_add(1, Relaxed);
                shared.first_error.lock().unwrap().get_or_insert(message);
                status
            }
        };
        shared.points_failed.fetch_add(points, Relaxed);
        *shared.errors.lock().unwrap().entry(status).or_insert(0) += 1;
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}
