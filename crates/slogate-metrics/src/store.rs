//! The metric store: the sharded stream index, cardinality caps with overflow streams, slot
//! close for the history, the stream listing, memory accounting and `/metrics`.
//!
//! HOT PATH: [`MetricStore::record_point`] runs once per data point.

use crate::config::{MetricStoreConfig, Scale};
use crate::index::{Hint, Index};
use crate::prefetch::prefetch;
use crate::stream::{
    Cell, FIRST, HAS_INC, Inline, Limits, Outcome, Shape, Stream, StreamKey, StreamState,
};
use parking_lot::Mutex;
use slogate_core::prom::{self, Kind};
use slogate_core::{MAX_EXTRA_DIMS, MetricPoint, MetricSink, MetricSlotRecord, PointRefusal};
use slogate_sketch::Sketch;
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::mem::size_of;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Points further than this ahead of the clock are refused.
const MAX_FUTURE_NS: u64 = 300 * NS;
pub(crate) const NS: u64 = 1_000_000_000;
const SHARDS: usize = 64;

/// One of the index's shards, chosen by the top bits of a stream's hash.
#[derive(Default)]
struct Shard {
    index: Mutex<Index>,
    hint: Hint,
}

/// How far ahead of the point being stored `record_points` fetches: a stream's index slot
/// `2 * AHEAD` points ahead, its state `AHEAD` points ahead.
const AHEAD: usize = 6;
/// The ring of look-ahead hashes: a power of two above `2 * AHEAD`.
const RING: usize = 16;
/// Cache lines of a stream (with its `Arc` counts) that the look-ahead prefetches.
const STREAM_LINES: usize = (Stream::HOT_BYTES + 16).div_ceil(64);

thread_local! {
    /// The packed key of the point being looked up, reused from point to point.
    static KEY: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

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
    /// The history's totals of the time before the store started.
    pub(crate) restored: parking_lot::RwLock<crate::restored::Restored>,
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
            restored: parking_lot::RwLock::new(crate::restored::Restored::default()),
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

    /// Hash of a packed stream key ([`StreamKey::pack`]).
    #[inline]
    fn hash_key(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    fn shard(&self, hash: u64) -> &Shard {
        &self.shards[(hash >> 58) as usize % SHARDS]
    }

    /// The stream whose packed key is `key`.
    fn find(&self, hash: u64, key: &[u8]) -> Option<Arc<Stream>> {
        let mut index = self.shard(hash).index.lock();
        index
            .get_mut(hash, key)
            .and_then(|slot| slot.stream.clone())
    }

    /// Finds or creates the stream of a point whose own stream (key `key`, hash `hash`) was
    /// not found.
    #[cold]
    fn resolve(&self, p: &MetricPoint<'_>, key: &[u8], hash: u64, shape: Shape) -> Route {
        let mut okey = Vec::new();
        StreamKey::pack(p, self.extras, true, &mut okey);
        let ohash = self.hash_key(&okey);
        // Caps never loosen (streams are not removed), so an existing overflow stream means
        // this point's stream can never be created: no need for the catalog lock.
        if let Some(s) = self.find(ohash, &okey) {
            return Route::Overflow(s);
        }
        let mut cat = self.catalog.lock();
        if let Some(s) = self.find(hash, key) {
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
        if let Some(s) = self.find(ohash, &okey) {
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
            unit_bytes: Inline::new(p.unit.as_bytes()),
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
        let shard = self.shard(hash);
        shard.index.lock().insert(hash, stream.clone(), &shard.hint);
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
            total += size_of::<Stream>()
                + s.key.heap_bytes()
                + s.unit.capacity()
                + s.unit_bytes.heap_bytes();
            total += s.state.lock().heap_bytes();
        }
        for shard in &*self.shards {
            total += shard.index.lock().heap_bytes();
        }
        let cat = self.catalog.lock();
        total += cat.all.capacity() * size_of::<Arc<Stream>>();
        for (service, metrics) in &cat.services {
            total += service.capacity() + metrics.capacity() * size_of::<(String, MetricEntry)>();
            for (m, e) in metrics {
                total += m.capacity() + e.streams.capacity() * size_of::<Arc<Stream>>();
            }
        }
        total + self.restored_bytes()
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
        self.age_restored(now);
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
        let (streams, slots) = {
            let r = self.restored.read();
            (
                r.streams.len(),
                r.streams.values().map(|s| s.slots.len()).sum::<usize>(),
            )
        };
        prom::family(
            out,
            "slogate_metric_restored_slots",
            Kind::Gauge,
            "Metric slots read back from the history at start and still held (0 once the retention has passed them).",
        )
        .sample(&[], slots);
        prom::family(
            out,
            "slogate_metric_restored_streams",
            Kind::Gauge,
            "Metric streams with slots read back from the history at start.",
        )
        .sample(&[], streams);
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

impl MetricStore {
    /// Stores one point whose packed key's hash is `hash` (`None`: computed here); `key` is
    /// scratch space.
    // HOT PATH: for a known stream, one key packing, one shard lock and one stream lock;
    // nothing allocates.
    #[inline]
    fn record_with(
        &self,
        p: &MetricPoint<'_>,
        hash: Option<u64>,
        lim: &Limits,
        key: &mut Vec<u8>,
    ) -> Result<(), PointRefusal> {
        let t = p.time_unix_nano;
        if t < lim.now.saturating_sub(lim.retention_ns) || t > lim.now.saturating_add(MAX_FUTURE_NS)
        {
            self.stats.out_of_range.fetch_add(1, Relaxed);
            return Err(PointRefusal::OutOfRange);
        }
        let shape = Shape::of(&p.value);
        StreamKey::pack(p, self.extras, false, key);
        let hash = hash.unwrap_or_else(|| self.hash_key(key));
        {
            let mut index = self.shard(hash).index.lock();
            if let Some(slot) = index.get_mut(hash, key) {
                let stream = slot.stream.as_deref().expect("a found slot holds a stream");
                let (outcome, hot) = ingest(stream, shape, p, None, lim);
                slot.hot = hot;
                return outcome;
            }
        }
        let (stream, source) = match self.resolve(p, key, hash, shape) {
            Route::Own(s) => (s, None),
            Route::Overflow(s) => (s, Some(hash)),
            Route::Drop => {
                self.stats.dropped_series_limit.fetch_add(1, Relaxed);
                return Ok(());
            }
        };
        ingest(&stream, shape, p, source, lim).0
    }

    /// Look-ahead, far stage: hashes point `p`'s key and prefetches its index slot.
    #[inline]
    fn fetch_slot(&self, p: &MetricPoint<'_>, key: &mut Vec<u8>) -> u64 {
        StreamKey::pack(p, self.extras, false, key);
        let hash = self.hash_key(key);
        prefetch(self.shard(hash).hint.slot_address(hash), 1);
        hash
    }

    /// Look-ahead, near stage: prefetches the stream the slot of `hash` names (its key, lock
    /// and state) and where its last point wrote.
    #[inline]
    fn fetch_stream(&self, hash: u64) {
        let index = self.shard(hash).index.lock();
        if let Some(slot) = index.guess(hash)
            && let Some(stream) = &slot.stream
        {
            prefetch(
                (Arc::as_ptr(stream) as usize).wrapping_sub(16),
                STREAM_LINES,
            );
            prefetch(slot.hot[0], 2);
            prefetch(slot.hot[1], 2);
        }
    }
}

/// Stores `p` in `stream` (from producer `source` when it is an overflow stream); also returns
/// where the stream's next point will likely touch.
// HOT PATH: one stream lock.
#[inline]
fn ingest(
    stream: &Stream,
    shape: Shape,
    p: &MetricPoint<'_>,
    source: Option<u64>,
    lim: &Limits,
) -> (Result<(), PointRefusal>, [usize; 2]) {
    let mut st = stream.state.lock();
    if stream.shape != shape || stream.unit_bytes.bytes() != p.unit.as_bytes() {
        st.data.counters.conflict += 1;
        return (Err(PointRefusal::Conflict), st.data.hot());
    }
    let outcome = match st.ingest(shape, stream.scale, p, source, lim) {
        Outcome::Stored | Outcome::Duplicate | Outcome::Dropped => Ok(()),
        Outcome::Refused(r) => Err(r),
    };
    (outcome, st.data.hot())
}

impl MetricSink for MetricStore {
    fn record_point(&self, p: &MetricPoint<'_>) -> Result<(), PointRefusal> {
        let lim = self.limits(self.now());
        KEY.with_borrow_mut(|key| self.record_with(p, None, &lim, key))
    }

    /// One clock read for the request, and a look-ahead: while point `i` is stored, the index
    /// slot of point `i + 2 * AHEAD` and the stream of point `i + AHEAD` are being fetched, so
    /// that the cache misses of a request's points (thousands of streams, each touched once per
    /// export) overlap instead of following one another.
    // HOT PATH: per point, two key packings, one hash, two shard locks and one stream lock.
    fn record_points<'a>(
        &self,
        n: usize,
        point: &dyn Fn(usize) -> MetricPoint<'a>,
        done: &mut dyn FnMut(usize, Result<(), PointRefusal>),
    ) {
        let lim = self.limits(self.now());
        KEY.with_borrow_mut(|key| {
            let mut hashes = [0u64; RING];
            for i in 0..n.min(2 * AHEAD) {
                hashes[i % RING] = self.fetch_slot(&point(i), key);
            }
            for &h in &hashes[..n.min(AHEAD)] {
                self.fetch_stream(h);
            }
            for i in 0..n {
                if i + 2 * AHEAD < n {
                    hashes[(i + 2 * AHEAD) % RING] = self.fetch_slot(&point(i + 2 * AHEAD), key);
                }
                if i + AHEAD < n {
                    self.fetch_stream(hashes[(i + AHEAD) % RING]);
                }
                let outcome = self.record_with(&point(i), Some(hashes[i % RING]), &lim, key);
                done(i, outcome);
            }
        });
    }
}
