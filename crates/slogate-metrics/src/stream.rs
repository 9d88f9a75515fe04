//! One metric stream: its owned key and shape, and the state a point updates (raw samples,
//! per-slot histogram cells, the cumulative baseline increments are computed from).
//!
//! HOT PATH: [`StreamState::ingest`] runs once per point, under the stream's own lock.

use crate::config::Scale;
use crate::pending::{Pending, fold};
use parking_lot::Mutex;
use slogate_core::{MetricPoint, PointRefusal, PointValue, Temporality};
use std::collections::{HashMap, VecDeque};
use std::mem::size_of;

/// The sample carries an increase (`inc`) that covers `(from, t]`.
pub(crate) const HAS_INC: u8 = 1;
/// The first point of a cumulative stream: its increase is only known when it has a start time
/// (then `from` is that start and `HAS_INC` is set).
pub(crate) const FIRST: u8 = 2;
/// The point restarted its counter (new start time, or a drop of a monotonic value).
pub(crate) const RESET: u8 = 4;

/// The attribute set of an overflow stream.
pub const OVERFLOW_ATTRIBUTE: (&str, &str) = ("__overflow__", "true");

/// The owned identity of a stream. `packed` comes first (`repr(C)`): the hot path reads it,
/// the rest is for queries and listings.
#[derive(Debug, Clone, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct StreamKey {
    /// Every part below in one buffer, each ended by `0xFF` (a byte UTF-8 never holds), the
    /// overflow marker `0xFE` in place of instance and attributes: what a lookup compares, in
    /// one memcmp, inside the stream itself when short.
    pub packed: PackedKey,
    pub service: String,
    pub env: String,
    pub version: String,
    pub extras: Vec<String>,
    pub instance: String,
    pub metric: String,
    pub attributes: Vec<(String, String)>,
}

/// Keys up to this long live inside the stream (the lines a look-ahead prefetches with it).
const INLINE_KEY: usize = 128;

/// A packed key, inline when short.
pub(crate) type PackedKey = Inline<INLINE_KEY>;

/// Bytes held inline when at most `N` long (no allocation), on the heap otherwise: what the
/// hot path compares without a pointer to chase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Inline<const N: usize> {
    len: usize,
    inline: [u8; N],
    /// The whole value when it is longer than `N`; empty (no allocation) otherwise.
    heap: Box<[u8]>,
}

impl<const N: usize> Inline<N> {
    pub fn new(bytes: &[u8]) -> Inline<N> {
        let mut inline = [0u8; N];
        let heap = if bytes.len() <= N {
            inline[..bytes.len()].copy_from_slice(bytes);
            Box::default()
        } else {
            bytes.into()
        };
        Inline {
            len: bytes.len(),
            inline,
            heap,
        }
    }

    #[inline]
    pub fn bytes(&self) -> &[u8] {
        if self.len <= N {
            &self.inline[..self.len]
        } else {
            &self.heap
        }
    }

    pub fn heap_bytes(&self) -> usize {
        self.heap.len()
    }
}

impl StreamKey {
    pub fn of(p: &MetricPoint<'_>, extras: usize, overflow: bool) -> StreamKey {
        let (instance, attributes) = if overflow {
            (
                String::new(),
                vec![(
                    OVERFLOW_ATTRIBUTE.0.to_string(),
                    OVERFLOW_ATTRIBUTE.1.to_string(),
                )],
            )
        } else {
            (
                p.instance.to_string(),
                p.attributes
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        };
        let mut packed = Vec::new();
        StreamKey::pack(p, extras, overflow, &mut packed);
        StreamKey {
            service: p.service.to_string(),
            env: p.env.to_string(),
            version: p.version.to_string(),
            extras: p.extras[..extras].iter().map(|e| e.to_string()).collect(),
            instance,
            metric: p.metric.to_string(),
            attributes,
            packed: PackedKey::new(&packed),
        }
    }

    /// Writes the packed key of `p`'s stream (`overflow`: of its cohort's overflow stream)
    /// into `out`, replacing what it held.
    // HOT PATH: copies borrowed parts into a reused buffer.
    #[inline]
    pub fn pack(p: &MetricPoint<'_>, extras: usize, overflow: bool, out: &mut Vec<u8>) {
        out.clear();
        let mut part = |s: &str| {
            out.extend_from_slice(s.as_bytes());
            out.push(0xFF);
        };
        part(p.metric);
        part(p.service);
        part(p.env);
        part(p.version);
        for e in &p.extras[..extras] {
            part(e);
        }
        if overflow {
            out.push(0xFE);
        } else {
            part(p.instance);
            for (k, v) in p.attributes {
                part(k);
                part(v);
            }
        }
    }

    #[inline]
    pub fn packed(&self) -> &[u8] {
        self.packed.bytes()
    }

    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .binary_search_by(|(k, _)| k.as_str().cmp(name))
            .ok()
            .map(|i| self.attributes[i].1.as_str())
    }

    pub fn heap_bytes(&self) -> usize {
        let s = |x: &String| x.capacity();
        self.packed.heap_bytes()
            + s(&self.service)
            + s(&self.env)
            + s(&self.version)
            + s(&self.instance)
            + s(&self.metric)
            + self.extras.iter().map(s).sum::<usize>()
            + self.extras.capacity() * size_of::<String>()
            + self
                .attributes
                .iter()
                .map(|(k, v)| s(k) + s(v))
                .sum::<usize>()
            + self.attributes.capacity() * size_of::<(String, String)>()
    }
}

/// The point type of a stream, fixed by its first point; a point of another shape is a conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    Gauge,
    Sum { monotonic: bool, cumulative: bool },
    Histogram { cumulative: bool },
    Exponential { cumulative: bool },
    Summary,
}

impl Shape {
    pub fn of(v: &PointValue<'_>) -> Shape {
        let cum = |t: &Temporality| *t == Temporality::Cumulative;
        match v {
            PointValue::Gauge(_) => Shape::Gauge,
            PointValue::Sum {
                monotonic,
                temporality,
                ..
            } => Shape::Sum {
                monotonic: *monotonic,
                cumulative: cum(temporality),
            },
            PointValue::Histogram { temporality, .. } => Shape::Histogram {
                cumulative: cum(temporality),
            },
            PointValue::ExponentialHistogram { temporality, .. } => Shape::Exponential {
                cumulative: cum(temporality),
            },
            PointValue::Summary { .. } => Shape::Summary,
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            Shape::Gauge => "gauge",
            Shape::Sum { .. } => "sum",
            Shape::Histogram { .. } => "histogram",
            Shape::Exponential { .. } => "exponential_histogram",
            Shape::Summary => "summary",
        }
    }

    /// Gauges and sums keep raw samples; histograms and summaries keep per-slot cells.
    pub fn has_samples(self) -> bool {
        matches!(self, Shape::Gauge | Shape::Sum { .. })
    }

    pub fn cumulative(self) -> bool {
        match self {
            Shape::Gauge => false,
            Shape::Sum { cumulative, .. }
            | Shape::Histogram { cumulative }
            | Shape::Exponential { cumulative } => cumulative,
            Shape::Summary => true,
        }
    }
}

/// One stream: immutable identity plus its locked state. Laid out (`repr(C)`) with what a
/// point touches first: the state, the fields checked against the point, the packed key; the
/// owned key parts a query reads come last, past [`Stream::HOT_BYTES`].
#[repr(C)]
pub(crate) struct Stream {
    pub state: Mutex<StreamState>,
    pub shape: Shape,
    pub scale: Scale,
    pub overflow: bool,
    /// `unit`'s bytes, compared with each point's.
    pub unit_bytes: Inline<24>,
    pub key: StreamKey,
    pub unit: String,
}

impl Stream {
    /// The bytes from the start of a stream through its packed key.
    pub const HOT_BYTES: usize =
        std::mem::offset_of!(Stream, key) + std::mem::size_of::<PackedKey>();
}

/// One raw gauge or sum point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Sample {
    pub t: u64,
    /// Start of the interval `inc` covers (meaningful with `HAS_INC`).
    pub from: u64,
    pub v: f64,
    pub inc: f64,
    pub flags: u8,
}

/// The increments of a histogram or summary stream that arrived in one slot.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Cell {
    pub slot: u64,
    pub points: u32,
    /// Count increase, negative values included.
    pub count: u64,
    /// Values that could not be sketched (negative), part of `count`.
    pub neg: u64,
    pub sum: f64,
    /// The sketched values, in the `slogate-sketch` byte format; empty when none. The newest
    /// increments of the stream's open cell may still be held in `Data::pending`.
    pub sketch: Vec<u8>,
    /// Earliest start of the intervals the increments cover; `u64::MAX` without increments.
    pub from: u64,
    pub last_t: u64,
    /// Smallest `min` and largest `max` the points reported (NaN when none did).
    pub vmin: f64,
    pub vmax: f64,
    /// Smallest exponential scale seen (`i32::MAX` when none): the widest buckets.
    pub scale: i32,
}

impl Cell {
    fn new(slot: u64, sketch: Vec<u8>) -> Cell {
        Cell {
            slot,
            points: 0,
            count: 0,
            neg: 0,
            sum: 0.0,
            sketch,
            from: u64::MAX,
            last_t: 0,
            vmin: f64::NAN,
            vmax: f64::NAN,
            scale: i32::MAX,
        }
    }

    fn note_point(&mut self, t: u64, min: Option<f64>, max: Option<f64>) {
        self.points += 1;
        self.last_t = self.last_t.max(t);
        if let Some(m) = min {
            self.vmin = self.vmin.min(m);
        }
        if let Some(m) = max {
            self.vmax = self.vmax.max(m);
        }
    }
}

/// What a cumulative stream (or one producer of an overflow stream) reported last.
#[derive(Debug, Default, Clone)]
pub(crate) struct Baseline {
    pub seen: bool,
    pub start: u64,
    pub t: u64,
    pub value: f64,
    pub count: u64,
    pub sum: f64,
    pub bounds: Vec<f64>,
    /// Explicit bucket counts, or positive exponential bucket counts from `pos_off`.
    pub pos: Vec<u64>,
    pub pos_off: i32,
    pub scale: i32,
    pub zero: u64,
    pub neg_total: u64,
}

impl Baseline {
    fn heap_bytes(&self) -> usize {
        self.bounds.capacity() * 8 + self.pos.capacity() * 8
    }
}

/// Per-stream counters, read by `render_metrics`; kept here, under the stream lock, so the hot
/// path touches no shared atomic.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Counters {
    pub stored: u64,
    pub duplicate: u64,
    pub out_of_range: u64,
    pub conflict: u64,
    pub dropped: u64,
    pub resets: u64,
    pub evicted: u64,
    /// Points that landed in a slot already exported to the history.
    pub late: u64,
}

/// Everything a stream keeps besides its baseline.
#[derive(Debug)]
pub(crate) struct Data {
    pub samples: VecDeque<Sample>,
    pub cells: VecDeque<Cell>,
    /// Sketch buffers of pruned cells, reused by new ones.
    pub spare: Vec<Vec<u8>>,
    /// The first point of a cumulative histogram or summary stream with a start time: counted
    /// only by windows (and slots) that contain its start.
    pub birth: Option<Box<Cell>>,
    /// Bounds of the last explicit histogram point (for error bounds, and the layout of
    /// `pending`).
    pub bounds: Vec<f64>,
    /// Bucket increments of one cell not folded into its sketch yet (see `pending`).
    pub pending: Pending,
    /// The last summary point's quantiles and its time.
    pub quantiles: Vec<(f64, f64)>,
    pub quantiles_t: u64,
    /// Newest point time.
    pub last_t: u64,
    /// Highest slot exported to the history.
    pub exported_through: Option<u64>,
    pub counters: Counters,
    /// `prune` drops nothing while the retention cutoff is at or below this: the smallest of
    /// the oldest sample's time, the end of the oldest cell minus 1 ns and the birth cell's
    /// time (`u64::MAX` when there is none). Kept so a point does not touch the oldest entries.
    pub expiry: u64,
}

pub(crate) struct StreamState {
    pub base: Baseline,
    /// Overflow streams only: one baseline per producer (hash of its stream identity).
    pub sources: HashMap<u64, Baseline, foldhash::fast::RandomState>,
    pub data: Data,
}

/// Limits and clock reading for one ingest.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub now: u64,
    pub slot_ns: u64,
    pub retention_ns: u64,
    pub max_points: usize,
    pub max_sources: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Stored,
    Duplicate,
    Refused(PointRefusal),
    /// An overflow stream tracking as many producers as it may.
    Dropped,
}

fn start_valid(start: u64, t: u64) -> bool {
    start > 0 && start <= t
}

impl StreamState {
    pub fn new() -> StreamState {
        StreamState {
            base: Baseline::default(),
            sources: HashMap::default(),
            data: Data::default(),
        }
    }

    /// Applies one point. `source` is the producer's hash when this is an overflow stream.
    pub fn ingest(
        &mut self,
        shape: Shape,
        scale: Scale,
        p: &MetricPoint<'_>,
        source: Option<u64>,
        lim: &Limits,
    ) -> Outcome {
        self.data.prune(lim.now, lim);
        let base = match source {
            None => &mut self.base,
            Some(h) => {
                if !self.sources.contains_key(&h) && self.sources.len() >= lim.max_sources {
                    // Forget producers that stopped reporting before giving up on this one.
                    let cutoff = lim.now.saturating_sub(lim.retention_ns);
                    self.sources.retain(|_, b| b.t >= cutoff);
                    if self.sources.len() >= lim.max_sources {
                        self.data.counters.dropped += 1;
                        return Outcome::Dropped;
                    }
                }
                self.sources.entry(h).or_default()
            }
        };
        let outcome = ingest_into(base, &mut self.data, shape, scale, p, lim);
        let c = &mut self.data.counters;
        match outcome {
            Outcome::Stored => c.stored += 1,
            Outcome::Duplicate => c.duplicate += 1,
            Outcome::Refused(PointRefusal::OutOfRange) => c.out_of_range += 1,
            Outcome::Refused(PointRefusal::Conflict) => c.conflict += 1,
            Outcome::Dropped => c.dropped += 1,
        }
        outcome
    }

    pub fn heap_bytes(&self) -> usize {
        self.base.heap_bytes()
            + self.sources.capacity() * (size_of::<(u64, Baseline)>() + 1)
            + self
                .sources
                .values()
                .map(Baseline::heap_bytes)
                .sum::<usize>()
            + self.data.heap_bytes()
    }
}

impl Default for Data {
    fn default() -> Data {
        Data {
            samples: VecDeque::new(),
            cells: VecDeque::new(),
            spare: Vec::new(),
            birth: None,
            bounds: Vec::new(),
            pending: Pending::default(),
            quantiles: Vec::new(),
            quantiles_t: 0,
            last_t: 0,
            exported_through: None,
            counters: Counters::default(),
            expiry: u64::MAX,
        }
    }
}

impl Data {
    /// Where the stream's next point will likely read or write: the newest sample (gauges and
    /// sums) or the histogram bounds, and the held histogram counts. Hints for a prefetch.
    #[inline]
    pub fn hot(&self) -> [usize; 2] {
        let a = match self.samples.back() {
            Some(s) => s as *const Sample as usize,
            None => self.bounds.as_ptr() as usize,
        };
        [a, self.pending.hot()]
    }

    /// Drops what is older than the retention: samples, cells, the birth cell.
    // HOT PATH: one comparison while nothing expires.
    #[inline]
    pub fn prune(&mut self, now: u64, lim: &Limits) {
        let cutoff = now.saturating_sub(lim.retention_ns);
        if cutoff > self.expiry {
            self.prune_to(cutoff, lim);
        }
    }

    #[cold]
    fn prune_to(&mut self, cutoff: u64, lim: &Limits) {
        while self.samples.front().is_some_and(|s| s.t < cutoff) {
            self.samples.pop_front();
        }
        while self
            .cells
            .front()
            .is_some_and(|c| (c.slot + 1).saturating_mul(lim.slot_ns) <= cutoff)
        {
            if let Some(mut c) = self.cells.pop_front()
                && self.spare.len() < 2
            {
                c.sketch.clear();
                self.spare.push(c.sketch);
            }
        }
        // The held increments go with their cell.
        if self.pending.active
            && self
                .cells
                .front()
                .is_none_or(|c| c.slot > self.pending.slot)
        {
            self.pending.discard();
        }
        if self.birth.as_ref().is_some_and(|b| b.last_t < cutoff) {
            self.birth = None;
        }
        self.expiry = u64::MAX;
        if let Some(s) = self.samples.front() {
            self.expiry = s.t;
        }
        if let Some(c) = self.cells.front() {
            self.expiry = self.expiry.min(cell_expiry(c.slot, lim.slot_ns));
        }
        if let Some(b) = &self.birth {
            self.expiry = self.expiry.min(b.last_t);
        }
    }

    fn set_birth(&mut self, b: Box<Cell>) {
        self.expiry = self.expiry.min(b.last_t);
        self.birth = Some(b);
    }

    fn push_sample(&mut self, s: Sample, lim: &Limits) {
        self.expiry = self.expiry.min(s.t);
        if self.samples.back().is_none_or(|b| b.t <= s.t) {
            self.samples.push_back(s);
        } else {
            // Overflow streams merge producers, whose points interleave.
            let at = self.samples.partition_point(|x| x.t <= s.t);
            self.samples.insert(at, s);
        }
        while self.samples.len() > lim.max_points {
            self.samples.pop_front();
            self.counters.evicted += 1;
        }
    }

    /// The cell of `slot`, created when missing.
    fn cell(&mut self, slot: u64, slot_ns: u64) -> &mut Cell {
        let i = self.cell_index(slot, slot_ns);
        &mut self.cells[i]
    }

    /// The cell of `slot` (created when missing) and the held increments, which now belong to
    /// it: those of another cell are folded into that one first.
    // HOT PATH: a fold only when the stream moved to another slot.
    fn open_cell(&mut self, slot: u64, slot_ns: u64) -> (&mut Cell, &mut Pending) {
        if self.pending.slot != slot {
            self.fold_pending();
            self.pending.slot = slot;
        }
        let i = self.cell_index(slot, slot_ns);
        (&mut self.cells[i], &mut self.pending)
    }

    /// Folds the held increments into their cell's sketch.
    pub fn fold_pending(&mut self) {
        if !self.pending.active {
            return;
        }
        // Usually the newest cell: no need to touch the others.
        if let Some(c) = self.cells.back_mut()
            && c.slot == self.pending.slot
        {
            return fold(&mut c.sketch, &mut self.pending);
        }
        match self
            .cells
            .binary_search_by_key(&self.pending.slot, |c| c.slot)
        {
            Ok(i) => fold(&mut self.cells[i].sketch, &mut self.pending),
            Err(_) => self.pending.discard(),
        }
    }

    fn cell_index(&mut self, slot: u64, slot_ns: u64) -> usize {
        if self.cells.back().is_some_and(|b| b.slot == slot) {
            return self.cells.len() - 1;
        }
        self.expiry = self.expiry.min(cell_expiry(slot, slot_ns));
        match self.cells.back() {
            Some(b) if b.slot > slot => match self.cells.binary_search_by_key(&slot, |c| c.slot) {
                Ok(i) => i,
                Err(i) => {
                    let buf = self.spare.pop().unwrap_or_default();
                    self.cells.insert(i, Cell::new(slot, buf));
                    i
                }
            },
            _ => {
                let buf = self.spare.pop().unwrap_or_default();
                self.cells.push_back(Cell::new(slot, buf));
                self.cells.len() - 1
            }
        }
    }

    pub fn heap_bytes(&self) -> usize {
        self.samples.capacity() * size_of::<Sample>()
            + self.cells.capacity() * size_of::<Cell>()
            + self
                .cells
                .iter()
                .map(|c| c.sketch.capacity())
                .sum::<usize>()
            + self.spare.iter().map(Vec::capacity).sum::<usize>()
            + self.spare.capacity() * size_of::<Vec<u8>>()
            + self
                .birth
                .as_ref()
                .map_or(0, |b| size_of::<Cell>() + b.sketch.capacity())
            + self.bounds.capacity() * 8
            + self.pending.heap_bytes()
            + self.quantiles.capacity() * 16
    }
}

/// The last instant a cell of `slot` survives the retention cutoff at (see `Data::expiry`).
fn cell_expiry(slot: u64, slot_ns: u64) -> u64 {
    (slot + 1).saturating_mul(slot_ns) - 1
}

/// Representative value of explicit bucket `i` (see the crate notes).
pub(crate) fn explicit_rep(i: usize, bounds: &[f64], min: Option<f64>, max: Option<f64>) -> f64 {
    let n = bounds.len();
    if n == 0 {
        return match (min, max) {
            (Some(a), Some(b)) => (a + b) / 2.0,
            (Some(a), None) => a,
            (None, Some(b)) => b,
            (None, None) => 0.0,
        };
    }
    if i == 0 {
        min.filter(|m| *m <= bounds[0]).unwrap_or(bounds[0])
    } else if i >= n {
        max.filter(|m| *m > bounds[n - 1]).unwrap_or(bounds[n - 1])
    } else {
        (bounds[i - 1] + bounds[i]) / 2.0
    }
}

/// `base` of an exponential histogram at `scale`: `2^(2^-scale)`.
pub(crate) fn exp_base(scale: i32) -> f64 {
    (-f64::from(scale)).exp2().exp2()
}

/// Representative of exponential bucket `idx` (covering `(base^idx, base^(idx+1)]`):
/// `2 base^(idx+1) / (1 + base)`, OpenTelemetry's recommendation.
pub(crate) fn exp_rep(scale: i32, idx: i64) -> f64 {
    let base = exp_base(scale);
    let upper = ((idx + 1) as f64 * (-f64::from(scale)).exp2()).exp2();
    2.0 * upper / (1.0 + base)
}

/// Count of `base`'s exponential buckets that fall in bucket `j` at the coarser `scale`.
// HOT PATH: at an unchanged scale, one lookup.
#[inline]
fn prev_exp(base: &Baseline, scale: i32, j: i64) -> u64 {
    if base.scale == scale {
        let k = j - i64::from(base.pos_off);
        return usize::try_from(k)
            .ok()
            .and_then(|k| base.pos.get(k))
            .map_or(0, |n| *n);
    }
    let d = (base.scale - scale) as u32;
    let lo = j << d;
    let hi = ((j + 1) << d) - 1;
    let off = i64::from(base.pos_off);
    let (a, b) = (lo.max(off), hi.min(off + base.pos.len() as i64 - 1));
    if a > b {
        return 0;
    }
    base.pos[(a - off) as usize..=(b - off) as usize]
        .iter()
        .sum()
}

fn ingest_into(
    base: &mut Baseline,
    data: &mut Data,
    shape: Shape,
    scale: Scale,
    p: &MetricPoint<'_>,
    lim: &Limits,
) -> Outcome {
    let t = p.time_unix_nano;
    if base.seen && t <= base.t {
        return if t == base.t {
            Outcome::Duplicate
        } else {
            Outcome::Refused(PointRefusal::OutOfRange)
        };
    }
    let slot = t / lim.slot_ns;
    let start = p.start_time_unix_nano;
    let from_reset = |base: &Baseline| {
        if start > base.t && start <= t {
            start
        } else {
            base.t
        }
    };
    match p.value {
        PointValue::Gauge(v) => {
            data.push_sample(
                Sample {
                    t,
                    from: t,
                    v,
                    inc: 0.0,
                    flags: 0,
                },
                lim,
            );
        }
        PointValue::Sum {
            value, monotonic, ..
        } => {
            if monotonic && value < 0.0 {
                return Outcome::Refused(PointRefusal::Conflict);
            }
            let s = if !shape.cumulative() {
                let from = if start_valid(start, t) { start } else { t };
                Sample {
                    t,
                    from,
                    v: value,
                    inc: value,
                    flags: HAS_INC,
                }
            } else if !base.seen {
                let valid = start_valid(start, t);
                Sample {
                    t,
                    from: if valid { start } else { t },
                    v: value,
                    inc: if valid { value } else { 0.0 },
                    flags: FIRST | if valid { HAS_INC } else { 0 },
                }
            } else if start != base.start || (monotonic && value < base.value) {
                data.counters.resets += 1;
                Sample {
                    t,
                    from: from_reset(base),
                    v: value,
                    inc: value,
                    flags: HAS_INC | RESET,
                }
            } else {
                Sample {
                    t,
                    from: base.t,
                    v: value,
                    inc: value - base.value,
                    flags: HAS_INC,
                }
            };
            data.push_sample(s, lim);
            base.value = value;
        }
        PointValue::Histogram {
            count,
            sum,
            min,
            max,
            bounds,
            counts,
            ..
        } => {
            let cumulative = shape.cumulative();
            let restarted = start != base.start;
            if cumulative && base.seen && !restarted && base.bounds != bounds {
                return Outcome::Refused(PointRefusal::Conflict);
            }
            let (full, from) = if !cumulative {
                (true, if start_valid(start, t) { start } else { t })
            } else if !base.seen {
                (true, start)
            } else if restarted
                || base.bounds != bounds
                || count < base.count
                || counts.iter().zip(&base.pos).any(|(n, o)| n < o)
            {
                data.counters.resets += 1;
                (true, from_reset(base))
            } else {
                (false, base.t)
            };
            let first = cumulative && !base.seen;
            let sum_inc = if full {
                sum.unwrap_or(0.0)
            } else {
                sum.map_or(0.0, |s| s - base.sum)
            };
            if data.bounds != bounds {
                data.bounds.clear();
                data.bounds.extend_from_slice(bounds);
                data.pending.reset_layout();
            }
            let prev = (!full).then_some(&base.pos[..]);
            let record = |cell: &mut Cell, pending: &mut Pending| {
                cell.count += pending.explicit(cell, scale, bounds, min, max, counts, prev);
                cell.sum += sum_inc;
                cell.from = cell.from.min(from);
            };
            if first {
                if start_valid(start, t) {
                    let mut b = Box::new(Cell::new(slot, Vec::new()));
                    b.note_point(t, min, max);
                    let mut pending = Pending::default();
                    record(&mut b, &mut pending);
                    fold(&mut b.sketch, &mut pending);
                    data.set_birth(b);
                }
                data.cell(slot, lim.slot_ns).note_point(t, min, max);
            } else {
                let (cell, pending) = data.open_cell(slot, lim.slot_ns);
                cell.note_point(t, min, max);
                record(cell, pending);
            }
            if cumulative {
                base.bounds.clear();
                base.bounds.extend_from_slice(bounds);
                base.pos.clear();
                base.pos.extend_from_slice(counts);
                base.count = count;
                base.sum = sum.unwrap_or(0.0);
            }
        }
        PointValue::ExponentialHistogram {
            count,
            sum,
            min,
            max,
            scale: es,
            zero_count,
            positive_offset,
            positive,
            negative,
            ..
        } => {
            let cumulative = shape.cumulative();
            let neg_total: u64 = negative.iter().sum();
            let decreased = || {
                if es > base.scale || count < base.count || zero_count < base.zero {
                    return true;
                }
                if neg_total < base.neg_total {
                    return true;
                }
                let mut covered = 0u64;
                for (i, &n) in positive.iter().enumerate() {
                    let prev = prev_exp(base, es, i64::from(positive_offset) + i as i64);
                    if n < prev {
                        return true;
                    }
                    covered += prev;
                }
                // A previous bucket outside the new range lost its counts.
                covered != base.pos.iter().sum::<u64>()
            };
            let (full, from) = if !cumulative {
                (true, if start_valid(start, t) { start } else { t })
            } else if !base.seen {
                (true, start)
            } else if start != base.start || decreased() {
                data.counters.resets += 1;
                (true, from_reset(base))
            } else {
                (false, base.t)
            };
            let first = cumulative && !base.seen;
            let sum_inc = if full {
                sum.unwrap_or(0.0)
            } else {
                sum.map_or(0.0, |s| s - base.sum)
            };
            let record = |cell: &mut Cell, pending: &mut Pending| {
                let z = if full {
                    zero_count
                } else {
                    zero_count - base.zero
                };
                let prev = (!full).then_some(|idx| prev_exp(base, es, idx));
                let n_total =
                    pending.exponential(cell, scale, es, positive_offset, positive, z, prev);
                let neg = if full {
                    neg_total
                } else {
                    neg_total - base.neg_total
                };
                cell.neg += neg;
                cell.count += n_total + neg;
                cell.sum += sum_inc;
                cell.from = cell.from.min(from);
                cell.scale = cell.scale.min(es);
            };
            if first {
                if start_valid(start, t) {
                    let mut b = Box::new(Cell::new(slot, Vec::new()));
                    b.note_point(t, min, max);
                    let mut pending = Pending::default();
                    record(&mut b, &mut pending);
                    fold(&mut b.sketch, &mut pending);
                    data.set_birth(b);
                }
                let c = data.cell(slot, lim.slot_ns);
                c.note_point(t, min, max);
                c.scale = c.scale.min(es);
            } else {
                let (cell, pending) = data.open_cell(slot, lim.slot_ns);
                cell.note_point(t, min, max);
                record(cell, pending);
            }
            if cumulative {
                base.scale = es;
                base.pos_off = positive_offset;
                base.pos.clear();
                base.pos.extend_from_slice(positive);
                base.zero = zero_count;
                base.neg_total = neg_total;
                base.count = count;
                base.sum = sum.unwrap_or(0.0);
            }
        }
        PointValue::Summary {
            count,
            sum,
            quantiles,
        } => {
            let (full, from) = if !base.seen {
                (true, start)
            } else if start != base.start || count < base.count {
                data.counters.resets += 1;
                (true, from_reset(base))
            } else {
                (false, base.t)
            };
            let (n, s) = if full {
                (count, sum)
            } else {
                (count - base.count, sum - base.sum)
            };
            if !base.seen {
                if start_valid(start, t) {
                    let mut b = Box::new(Cell::new(slot, Vec::new()));
                    b.note_point(t, None, None);
                    b.count = n;
                    b.sum = s;
                    b.from = from;
                    data.set_birth(b);
                }
                data.cell(slot, lim.slot_ns).note_point(t, None, None);
            } else {
                let cell = data.cell(slot, lim.slot_ns);
                cell.note_point(t, None, None);
                cell.count += n;
                cell.sum += s;
                cell.from = cell.from.min(from);
            }
            if t >= data.quantiles_t {
                data.quantiles.clear();
                data.quantiles.extend_from_slice(quantiles);
                data.quantiles_t = t;
            }
            base.count = count;
            base.sum = sum;
        }
    }
    base.seen = true;
    base.start = start;
    base.t = t;
    data.last_t = data.last_t.max(t);
    if data.exported_through.is_some_and(|s| slot <= s) {
        data.counters.late += 1;
    }
    Outcome::Stored
}
