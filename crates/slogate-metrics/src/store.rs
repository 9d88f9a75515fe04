//! The metric store: the sharded stream index, cardinality caps with overflow streams, slot
//! close for the history, the stream listing, memory accounting and `/metrics`.
//!
//! HOT PATH: [`MetricStore::record_point`] runs once per data point.

use crate::config::{MetricStoreConfig, Scale};
use crate::stream::{Cell, FIRST, HAS_INC, Limits, Outcome, Shape, Stream, StreamKey, StreamState};
use parking_lot::Mutex;
use slogate_core::prom::{self, Kind};
use slogate_core::{MAX_EXTRA_DIMS, MetricPoint, MetricSink, MetricSlotRecord, PointRefusal};
use slogate_sketch::Sketch;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::mem::size_of;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Points further than this ahead of the clock are refused.
const MAX_FUTURE_NS: u64 = 300 * NS;
pub(crate) const NS: u64 = 1_000_000_000;
const SHARDS: usize = 64;

/// The shard maps are keyed by a hash already computed with foldhash; hashing it again would
/// be wasted work.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

type Shard = Mutex<HashMap<u64, Vec<Arc<Stream>>, BuildHasherDefault<IdHasher>>>;

/// The streams of one `(service, metric)`.
#[derive(Default)]
pub(crate) struct MetricEntry {
    pub regular: usize,
    pub streams: Vec<Arc<Stream>>,
}

/// Stream creation state, behind one lock taken only off the hot path.
#[derive(Default)]
pub(crate) struct Catalog {
    /// service → metric → entry.
    pub services: HashMap<String, HashMap<String, MetricEntry>>,
    pub regular: usize,
    pub overflow: usize,
    pub all: Vec<Arc<Stream>>,
}

#[derive(Default)]
struct Stats {
    /// Points outside `[now - retention, now + 300 s]`.
    out_of_range: AtomicU64,
    /// Points of new streams with no room even in an overflow stream.
    dropped_series_limit: AtomicU64,
}

/// One stream, for an API listing.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StreamInfo {
    pub metric: String,
    pub unit: String,
    pub kind: &'static str,
    pub service: String,
    pub env: String,
    pub version: String,
    pub extras: Vec<String>,
    pub instance: String,
    pub attributes: Vec<(String, String)>,
    /// Whether this is the overflow stream of its cohort and metric.
    pub overflow: bool,
    /// Points held: raw samples for gauges and sums, points per slot cell otherwise.
    pub points: u64,
    pub last_time_unix_nano: u64,
}

/// The metric store; see the crate notes.
pub struct MetricStore {
    pub(crate) cfg: MetricStoreConfig,
    pub(crate) clock: Arc<dyn Fn() -> u64 + Send + Sync>,
    hasher: foldhash::fast::RandomState,
    pub(crate) extras: usize,
    shards: Box<[Shard]>,
    pub(crate) catalog: Mutex<Catalog>,
    /// One close pass at a time, so each slot is exported once.
    close_pass: Mutex<()>,
    stats: Stats,
}

enum Route {
    Own(Arc<Stream>),
    Overflow(Arc<Stream>),
    Drop,
}

impl MetricStore {
    pub fn new(
        cfg: MetricStoreConfig,
        now_unix_nano: Arc<dyn Fn() -> u64 + Send + Sync>,
    ) -> Arc<MetricStore> {
        assert!(cfg.slot_seconds > 0, "validated by config");
        let extras = cfg.extra_dims.len().min(MAX_EXTRA_DIMS);
        Arc::new(MetricStore {
            cfg,
            clock: now_unix_nano,
            hasher: foldhash::fast::RandomState::default(),
            extras,
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            catalog: Mutex::new(Catalog::default()),
            close_pass: Mutex::new(()),
            stats: Stats::default(),
        })
    }

    pub fn config(&self) -> &MetricStoreConfig {
        &self.cfg
    }

    pub(crate) fn now(&self) -> u64 {
        (self.clock)()
    }

    pub(crate) fn limits(&self, now: u64) -> Limits {
        Limits {
            now,
            slot_ns: u64::from(self.cfg.slot_seconds) * NS,
            retention_ns: self.cfg.retention_seconds.saturating_mul(NS),
            max_points: self.cfg.max_points_per_series.max(1),
            max_sources: self.cfg.max_series_per_metric.max(1),
        }
    }

    /// Hash of the point's stream identity (`overflow`: of its cohort's overflow stream).
    // HOT PATH: hashes the borrowed parts, each followed by a byte that UTF-8 never holds.
    #[inline]
    fn hash_point(&self, p: &MetricPoint<'_>, overflow: bool) -> u64 {
        let mut h = self.hasher.build_hasher();
        let mut part = |s: &str| {
            h.write(s.as_bytes());
            h.write_u8(0xFF);
        };
        part(p.metric);
        part(p.service);
        part(p.env);
        part(p.version);
        for e in &p.extras[..self.extras] {
            part(e);
        }
        if overflow {
            h.write_u8(0xFE);
        } else {
            part(p.instance);
            for (k, v) in p.attributes {
                part(k);
                part(v);
            }
        }
        h.finish()
    }

    fn shard(&self, hash: u64) -> &Shard {
        &self.shards[(hash >> 58) as usize % SHARDS]
    }

    // HOT PATH: one shard lock, no allocation.
    #[inline]
    fn find(&self, hash: u64, p: &MetricPoint<'_>, overflow: bool) -> Option<Arc<Stream>> {
        let shard = self.shard(hash).lock();
        shard.get(&hash).and_then(|list| {
            list.iter()
                .find(|s| s.overflow == overflow && s.key.matches(p, overflow))
                .cloned()
        })
    }

    /// Finds or creates the stream of a point whose own stream was not found.
    #[cold]
    fn resolve(&self, p: &MetricPoint<'_>, hash: u64, shape: Shape) -> Route {
        let ohash = self.hash_point(p, true);
        // Caps never loosen (streams are not removed), so an existing overflow stream means
        // this point's stream can never be created: no need for the catalog lock.
        if let Some(s) = self.find(ohash, p, true) {
            return Route::Overflow(s);
        }
        let mut cat = self.catalog.lock();
        if let Some(s) = self.find(hash, p, false) {
            return Route::Own(s);
        }
        let regular = cat
            .services
            .get(p.service)
            .and_then(|m| m.get(p.metric))
            .map_or(0, |e| e.regular);
        if regular < self.cfg.max_series_per_metric && cat.regular < self.cfg.max_series {
            return Route::Own(self.create(&mut cat, p, hash, shape, false));
        }
        if let Some(s) = self.find(ohash, p, true) {
            return Route::Overflow(s);
        }
        if cat.overflow < self.cfg.max_overflow_series {
            return Route::Overflow(self.create(&mut cat, p, ohash, shape, true));
        }
        Route::Drop
    }

    fn create(
        &self,
        cat: &mut Catalog,
        p: &MetricPoint<'_>,
        hash: u64,
        shape: Shape,
        overflow: bool,
    ) -> Arc<Stream> {
        let stream = Arc::new(Stream {
            key: StreamKey::of(p, self.extras, overflow),
            unit: p.unit.to_string(),
            shape,
            scale: Scale::of(p.unit),
            overflow,
            state: Mutex::new(StreamState::new()),
        });
        let entry = cat
            .services
            .entry(p.service.to_string())
            .or_default()
            .entry(p.metric.to_string())
            .or_default();
        entry.streams.push(stream.clone());
        if overflow {
            cat.overflow += 1;
        } else {
            entry.regular += 1;
            cat.regular += 1;
        }
        cat.all.push(stream.clone());
        self.shard(hash)
            .lock()
            .entry(hash)
            .or_default()
            .push(stream.clone());
        stream
    }

    /// Regular plus overflow streams.
    pub fn series_count(&self) -> usize {
        let cat = self.catalog.lock();
        cat.regular + cat.overflow
    }

    fn all_streams(&self) -> Vec<Arc<Stream>> {
        self.catalog.lock().all.clone()
    }

    /// Heap bytes held: stream keys and states, the index and the catalog.
    pub fn memory_bytes(&self) -> usize {
        let streams = self.all_streams();
        let mut total = streams.capacity() * size_of::<Arc<Stream>>();
        for s in &streams {
            total += size_of::<Stream>() + s.key.heap_bytes() + s.unit.capacity();
            total += s.state.lock().heap_bytes();
        }
        for shard in &*self.shards {
            let m = shard.lock();
            total += m.capacity() * (size_of::<(u64, Vec<Arc<Stream>>)>() + 1)
                + m.values()
                    .map(|v| v.capacity() * size_of::<Arc<Stream>>())
                    .sum::<usize>();
        }
        let cat = self.catalog.lock();
        total += cat.all.capacity() * size_of::<Arc<Stream>>();
        for (service, metrics) in &cat.services {
            total += service.capacity() + metrics.capacity() * size_of::<(String, MetricEntry)>();
            for (m, e) in metrics {
                total += m.capacity() + e.streams.capacity() * size_of::<Arc<Stream>>();
            }
        }
        total
    }

    /// Streams of `service` (all when `None`), for an API listing; the caller bounds the output.
    pub fn series(&self, service: Option<&str>) -> Vec<StreamInfo> {
        let streams: Vec<Arc<Stream>> = {
            let cat = self.catalog.lock();
            match service {
                Some(svc) => cat
                    .services
                    .get(svc)
                    .map(|m| m.values().flat_map(|e| e.streams.iter().cloned()).collect())
                    .unwrap_or_default(),
                None => cat.all.clone(),
            }
        };
        let mut out: Vec<StreamInfo> = streams
            .iter()
            .map(|s| {
                let st = s.state.lock();
                let points = if s.shape.has_samples() {
                    st.data.samples.len() as u64
                } else {
                    st.data.cells.iter().map(|c| u64::from(c.points)).sum()
                };
                StreamInfo {
                    metric: s.key.metric.clone(),
                    unit: s.unit.clone(),
                    kind: s.shape.kind(),
                    service: s.key.service.clone(),
                    env: s.key.env.clone(),
                    version: s.key.version.clone(),
                    extras: s.key.extras.clone(),
                    instance: s.key.instance.clone(),
                    attributes: s.key.attributes.clone(),
                    overflow: s.overflow,
                    points,
                    last_time_unix_nano: st.data.last_t,
                }
            })
            .collect();
        out.sort_by(|a, b| {
            (
                &a.service,
                &a.metric,
                &a.env,
                &a.version,
                &a.instance,
                &a.attributes,
            )
                .cmp(&(
                    &b.service,
                    &b.metric,
                    &b.env,
                    &b.version,
                    &b.instance,
                    &b.attributes,
                ))
        });
        out
    }

    /// Exports every slot that ended at least one slot ago (so late points land first) and was
    /// not exported yet: one record per stream and slot with data. Call it once per slot.
    pub fn close_slots(&self) -> Vec<MetricSlotRecord> {
        self.close_through(false)
    }

    /// Exports every slot not exported yet, the open ones included: at shutdown, so the
    /// history keeps the last seconds too. Points that arrive later for those slots stay out
    /// of the history (counted as late).
    pub fn close_all_slots(&self) -> Vec<MetricSlotRecord> {
        self.close_through(true)
    }

    fn close_through(&self, all: bool) -> Vec<MetricSlotRecord> {
        let _pass = self.close_pass.lock();
        let now = self.now();
        let lim = self.limits(now);
        let slot_ns = lim.slot_ns;
        let last = if all {
            Some(now / slot_ns)
        } else {
            (now.saturating_sub(slot_ns) / slot_ns).checked_sub(1)
        };
        let Some(last) = last else {
            return Vec::new();
        };
        let mut rows = Vec::new();
        for s in self.all_streams() {
            let mut st = s.state.lock();
            st.data.prune(now, &lim);
            let data = &mut st.data;
            let first = data.exported_through.map_or(0, |e| e + 1);
            if first > last {
                continue;
            }
            let mut exported = None;
            if s.shape.has_samples() {
                let lo = data.samples.partition_point(|x| x.t / slot_ns < first);
                let hi = data.samples.partition_point(|x| x.t / slot_ns <= last);
                let mut i = lo;
                while i < hi {
                    let slot = data.samples[i].t / slot_ns;
                    let slot_start = slot * slot_ns;
                    let mut row = self.row(&s, slot);
                    row.min = f64::INFINITY;
                    row.max = f64::NEG_INFINITY;
                    while i < hi && data.samples[i].t / slot_ns == slot {
                        let x = data.samples[i];
                        row.points += 1;
                        row.min = row.min.min(x.v);
                        row.max = row.max.max(x.v);
                        row.last = x.v;
                        row.value_sum += x.v;
                        row.last_time_unix_nano = x.t;
                        if x.flags & HAS_INC != 0 && (x.flags & FIRST == 0 || x.from >= slot_start)
                        {
                            row.increase += x.inc;
                        }
                        i += 1;
                    }
                    rows.push(row);
                    exported = Some(slot);
                }
            } else {
                if data.pending.slot <= last {
                    data.fold_pending();
                }
                let lo = data.cells.partition_point(|c| c.slot < first);
                let hi = data.cells.partition_point(|c| c.slot <= last);
                for c in data.cells.range(lo..hi) {
                    let mut row = self.row(&s, c.slot);
                    row.points = u64::from(c.points);
                    row.last_time_unix_nano = c.last_t;
                    row.increase = c.count as f64;
                    row.hist_sum = c.sum;
                    let birth = data
                        .birth
                        .as_ref()
                        .filter(|b| b.slot == c.slot && b.from >= c.slot * slot_ns);
                    if let Some(b) = birth {
                        row.increase += b.count as f64;
                        row.hist_sum += b.sum;
                    }
                    if s.shape != Shape::Summary {
                        row.sketch = merged_sketch(c, birth.map(|b| &**b));
                    }
                    rows.push(row);
                    exported = Some(c.slot);
                }
            }
            if exported.is_some() {
                data.exported_through = exported;
            }
        }
        rows
    }

    fn row(&self, s: &Stream, slot: u64) -> MetricSlotRecord {
        MetricSlotRecord {
            slot_start_unix: (slot * u64::from(self.cfg.slot_seconds)) as i64,
            slot_seconds: self.cfg.slot_seconds,
            service: s.key.service.clone(),
            env: s.key.env.clone(),
            version: s.key.version.clone(),
            extras: s.key.extras.clone(),
            instance: s.key.instance.clone(),
            metric: s.key.metric.clone(),
            unit: s.unit.clone(),
            kind: s.shape.kind().to_string(),
            attributes: s.key.attributes.clone(),
            points: 0,
            min: 0.0,
            max: 0.0,
            last: 0.0,
            value_sum: 0.0,
            last_time_unix_nano: 0,
            increase: 0.0,
            hist_sum: 0.0,
            sketch: Vec::new(),
        }
    }

    /// Appends the store's own metrics to a Prometheus text exposition (`/metrics`).
    pub fn render_metrics(&self, out: &mut String) {
        let streams = self.all_streams();
        let (mut regular, mut overflow) = (0u64, 0u64);
        let mut c = crate::stream::Counters::default();
        let mut overflow_points = 0u64;
        let mut dropped_sources = 0u64;
        for s in &streams {
            let st = s.state.lock();
            let x = st.data.counters;
            if s.overflow {
                overflow += 1;
                overflow_points += x.stored;
            } else {
                regular += 1;
                c.stored += x.stored;
            }
            c.duplicate += x.duplicate;
            c.out_of_range += x.out_of_range;
            c.conflict += x.conflict;
            dropped_sources += x.dropped;
            c.resets += x.resets;
            c.evicted += x.evicted;
            c.late += x.late;
        }
        {
            let mut f = prom::family(
                out,
                "slogate_metric_series",
                Kind::Gauge,
                "Metric streams held, regular or overflow (one per cohort and metric past a cap).",
            );
            f.sample(&[("kind", &"regular")], regular);
            f.sample(&[("kind", &"overflow")], overflow);
        }
        let dropped = self.stats.dropped_series_limit.load(Relaxed) + dropped_sources;
        {
            let mut f = prom::family(
                out,
                "slogate_metric_points_total",
                Kind::Counter,
                "Metric data points received, by outcome.",
            );
            let outcomes = [
                ("stored", c.stored),
                ("overflow", overflow_points),
                ("duplicate", c.duplicate),
                (
                    "out_of_range",
                    c.out_of_range + self.stats.out_of_range.load(Relaxed),
                ),
                ("conflict", c.conflict),
                ("dropped", dropped),
            ];
            for (outcome, n) in outcomes {
                f.sample(&[("outcome", &outcome)], n);
            }
        }
        prom::family(
            out,
            "slogate_metric_points_dropped_total",
            Kind::Counter,
            "Metric points accepted but dropped, by reason (no room for their stream even in an overflow stream).",
        )
        .sample(&[("reason", &"series_limit")], dropped);
        let families = [
            (
                "slogate_metric_overflow_points_total",
                "Metric points stored in an overflow stream because a series cap was reached.",
                overflow_points,
            ),
            (
                "slogate_metric_resets_total",
                "Counter, histogram and summary resets detected (new start time or a decrease).",
                c.resets,
            ),
            (
                "slogate_metric_evicted_points_total",
                "Metric samples evicted before their retention by the per-stream point cap.",
                c.evicted,
            ),
            (
                "slogate_metric_late_points_total",
                "Metric points that arrived for a slot already exported to the history (kept for windows only).",
                c.late,
            ),
        ];
        for (name, help, value) in families {
            prom::family(out, name, Kind::Counter, help).sample(&[], value);
        }
        prom::family(
            out,
            "slogate_metric_memory_bytes",
            Kind::Gauge,
            "Heap bytes held by the metric store.",
        )
        .sample(&[], self.memory_bytes());
    }
}

/// The encoded sketch of a cell plus, when given, its birth cell: an empty sketch encodes to its
/// 6-byte form so every histogram row decodes.
fn merged_sketch(c: &Cell, birth: Option<&Cell>) -> Vec<u8> {
    let mut s = Sketch::new();
    s.merge_encoded_trusted(&c.sketch);
    if let Some(b) = birth {
        s.merge_encoded_trusted(&b.sketch);
    }
    s.encoded()
}

impl MetricSink for MetricStore {
    // HOT PATH: for a known stream, one clock read, one hash, one shard lock and one stream
    // lock; nothing allocates.
    fn record_point(&self, p: &MetricPoint<'_>) -> Result<(), PointRefusal> {
        let now = self.now();
        let lim = self.limits(now);
        let t = p.time_unix_nano;
        if t < now.saturating_sub(lim.retention_ns) || t > now.saturating_add(MAX_FUTURE_NS) {
            self.stats.out_of_range.fetch_add(1, Relaxed);
            return Err(PointRefusal::OutOfRange);
        }
        let shape = Shape::of(&p.value);
        let hash = self.hash_point(p, false);
        let (stream, source) = match self.find(hash, p, false) {
            Some(s) => (s, None),
            None => match self.resolve(p, hash, shape) {
                Route::Own(s) => (s, None),
                Route::Overflow(s) => (s, Some(hash)),
                Route::Drop => {
                    self.stats.dropped_series_limit.fetch_add(1, Relaxed);
                    return Ok(());
                }
            },
        };
        let mut st = stream.state.lock();
        if stream.shape != shape || stream.unit != p.unit {
            st.data.counters.conflict += 1;
            return Err(PointRefusal::Conflict);
        }
        match st.ingest(shape, stream.scale, p, source, &lim) {
            Outcome::Stored | Outcome::Duplicate | Outcome::Dropped => Ok(()),
            Outcome::Refused(r) => Err(r),
        }
    }
}
