//! The series registry, per-worker shards, slot closing and window queries.
//!
//! HOT PATH: [`Writer::record`] runs once per span.

use crate::history::{Agg, Geometry, History, Scratch};
use crate::open::{NO_SLOT, OpenSlot, Parts};
use dashmap::DashMap;
use parking_lot::{Mutex, RwLock};
use slogate_core::{
    OVERFLOW, Observation, ObservationWriter, Recorder, Selector, SeriesKey, SlotRecord, write_key,
};
use slogate_sketch::Sketch;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::mem::size_of;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Weak};

pub type SeriesId = u32;

/// Time source, so tests can move time by hand.
pub trait Clock: Send + Sync + 'static {
    /// Seconds since the Unix epoch.
    fn now_unix(&self) -> u64;
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

/// A clock that only moves when told to.
#[derive(Debug, Default)]
pub struct ManualClock(pub AtomicU64);

impl Clock for ManualClock {
    fn now_unix(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

impl ManualClock {
    pub fn new(t: u64) -> Arc<Self> {
        Arc::new(ManualClock(AtomicU64::new(t)))
    }
    pub fn advance(&self, secs: u64) {
        self.0.fetch_add(secs, Relaxed);
    }
}

#[derive(Debug, Clone)]
pub struct WindowConfig {
    pub slot_seconds: u64,
    pub fine_retention_seconds: u64,
    pub coarse_slot_seconds: u64,
    pub coarse_retention_seconds: u64,
    pub max_series_per_service: usize,
    pub max_series: usize,
    /// Overflow series per service that keep their env and version before all collapse into one.
    pub max_overflow_series_per_service: usize,
    pub extra_dims: Vec<String>,
}

impl Default for WindowConfig {
    fn default() -> Self {
        WindowConfig {
            slot_seconds: 10,
            fine_retention_seconds: 3600,
            coarse_slot_seconds: 300,
            coarse_retention_seconds: 3 * 86400,
            max_series_per_service: 2000,
            max_series: 100_000,
            max_overflow_series_per_service: 8,
            extra_dims: Vec::new(),
        }
    }
}

impl WindowConfig {
    fn fine_keep(&self) -> u64 {
        self.fine_retention_seconds.div_ceil(self.slot_seconds) + 1
    }
    fn coarse_keep(&self) -> u64 {
        self.coarse_retention_seconds
            .div_ceil(self.coarse_slot_seconds)
            + 1
    }
    fn geometry(&self) -> Geometry {
        Geometry {
            slot_seconds: self.slot_seconds,
            fine_keep: self.fine_keep(),
            coarse_seconds: self.coarse_slot_seconds,
            coarse_keep: self.coarse_keep(),
        }
    }
}

/// What a window query found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WindowStats {
    pub requests: u64,
    pub errors: u64,
    pub sketch: Sketch,
    /// Series that matched the selector (with or without data in the window).
    pub series: usize,
    /// The window actually covered, in seconds (a whole number of slots).
    pub covered_seconds: u64,
    /// The time the data actually spans: from the start of the first slot with a request up
    /// to now (at least one second, at most `covered_seconds`); 0 without requests. A cohort
    /// that started two minutes ago in a ten-minute window has 120 s of traffic, and its
    /// request rate is its requests over those 120 s, not over the window.
    pub observed_seconds: u64,
}

/// One step of a [`Registry::timeline`]: the sealed slots from `start_unix` for the step.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TimelineStep {
    pub start_unix: u64,
    pub requests: u64,
    pub errors: u64,
    pub sketch: Sketch,
}

/// Most steps one [`Registry::timeline`] returns.
pub const MAX_TIMELINE_STEPS: u64 = 720;

struct Series {
    key: SeriesKey,
    history: Mutex<History>,
}

#[derive(Default)]
struct ServiceEntry {
    regular: usize,
    overflow_series: usize,
    ids: Vec<SeriesId>,
}

pub(crate) struct ShardState {
    // foldhash: several times faster than SipHash on these short keys and still seeded per
    // process; the cache only ever holds admitted (capped) series, so flooding it is bounded.
    cache: HashMap<Box<[u8]>, SeriesId, foldhash::fast::RandomState>,
    key_buf: Vec<u8>,
    open: [OpenSlot; 2],
    over: OverflowCache,
}

/// Where over-cap keys go, learnt from [`Registry::resolve`], so a flood of new keys over the
/// caps costs a lookup or two and no lock or allocation per span. Every map is keyed by values
/// of series that exist (a capped service, the env and version of an overflow series), so each
/// is bounded by the series caps, not by what clients send. Caps only fill (no series is ever
/// removed), so what is learnt stays true: a capped service gets no new regular series, and
/// once its overflow cohorts are full, no new cohort.
#[derive(Default)]
struct OverflowCache {
    /// Services at their regular-series cap (key bytes of the service, terminator included).
    capped: HashSet<Box<[u8]>, foldhash::fast::RandomState>,
    /// Service, env and version (their key bytes) → the overflow series of that cohort.
    by_cohort: HashMap<Box<[u8]>, SeriesId, foldhash::fast::RandomState>,
    /// Capped services whose overflow cohorts are all taken → the service's overflow series.
    by_service: HashMap<Box<[u8]>, SeriesId, foldhash::fast::RandomState>,
    /// Scratch for a cohort's overflow key.
    buf: Vec<u8>,
}

/// What [`Registry::resolve`] mapped a key to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mapping {
    /// Its own series: cacheable by key.
    Regular,
    /// The overflow series of its service, env and version.
    Cohort,
    /// The overflow series of its service.
    Service,
    /// The global overflow series (every series cap reached).
    Global,
}

/// The end of the `n`th dimension of key bytes (after its `0xFF`), if the key has it.
fn dims_end(key: &[u8], n: usize) -> Option<usize> {
    let mut seen = 0;
    for (i, b) in key.iter().enumerate() {
        if *b == 0xFF {
            seen += 1;
            if seen == n {
                return Some(i + 1);
            }
        }
    }
    None
}

type Shard = Mutex<ShardState>;

#[derive(Default)]
pub struct RegistryStats {
    pub overflow_observations: AtomicU64,
    pub series_created: AtomicU64,
    /// Over-cap observations placed from a shard's [`OverflowCache`], without the registry's
    /// lock.
    pub overflow_fast: AtomicU64,
    pub slots_closed: AtomicU64,
}

pub struct Registry {
    id: u64,
    cfg: WindowConfig,
    clock: Arc<dyn Clock>,
    index: DashMap<Box<[u8]>, SeriesId>,
    /// How many series exist (regular and overflow): `series.len()` without its lock.
    series_total: AtomicUsize,
    /// The global overflow series plus one, once it exists (0 before).
    global_overflow: AtomicU32,
    series: RwLock<Vec<Arc<Series>>>,
    services: Mutex<HashMap<String, ServiceEntry>>,
    shards: Mutex<Vec<Arc<Shard>>>,
    /// Held for writing while the closer moves ended slots from the shards into `staged` (a
    /// few pointer moves), and for reading by queries, so a query never sees a slot in neither
    /// place. Sealing itself (merging and encoding every series) runs without it.
    closing: RwLock<()>,
    /// Ended slots taken from the shards and not yet sealed into every history. Queries read a
    /// series' part here until that series' history records it as applied.
    staged: RwLock<Staged>,
    /// One close pass at a time.
    close_pass: Mutex<()>,
    /// The closer's reusable buffers.
    closer: Mutex<Closer>,
    /// Rows of slots a lagging writer had to close itself, for the next `close_slots`.
    pending_rows: Mutex<Vec<SlotRecord>>,
    pub stats: RegistryStats,
}

/// The parts of one close pass, readable by queries while the pass seals them.
#[derive(Default)]
struct Staged {
    /// Pass number, increasing; histories record `(pass, slot)` of the last part applied.
    pass: u64,
    /// By slot.
    parts: Vec<StagedPart>,
}

/// `(slot, parts, (series, entry position) sorted by series)`: one shard's part of one slot.
type StagedPart = (u64, Parts, Vec<(SeriesId, u32)>);

impl Staged {
    /// Adds series `id`'s staged data not yet applied to its history (`applied`) to `out`.
    fn merge_series(&self, id: SeriesId, applied: (u64, u64), first_slot: u64, out: &mut Agg) {
        for (slot, parts, index) in &self.parts {
            if *slot < first_slot || (self.pass, *slot) <= applied {
                continue;
            }
            if let Ok(i) = index.binary_search_by_key(&id, |(s, _)| *s) {
                parts.merge_into(index[i].1 as usize, out);
            }
        }
    }

    fn heap_bytes(&self) -> usize {
        self.parts.capacity() * size_of::<StagedPart>()
            + self
                .parts
                .iter()
                .map(|(_, p, ix)| p.heap_bytes() + ix.capacity() * size_of::<(SeriesId, u32)>())
                .sum::<usize>()
    }
}

#[derive(Default)]
struct Closer {
    agg: Agg,
    bytes: Vec<u8>,
    scratch: Scratch,
    /// `(series, part, entry position)` of the parts being closed, sorted by series.
    order: Vec<(SeriesId, u32, u32)>,
}

/// Heap bytes held by the registry, split by what they are for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// Live state: series keys and records, the series index, the shards' key caches and open
    /// slots, and the closer's buffers.
    pub live: usize,
    /// Closed fine slots kept for windows (the fine rings).
    pub fine: usize,
    /// Closed coarse slots (the coarse rings).
    pub coarse: usize,
}

impl MemoryStats {
    /// Closed slots kept for windows: both rings.
    pub fn closed(&self) -> usize {
        self.fine + self.coarse
    }
}

static NEXT_REGISTRY: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// This thread's shard of each registry it has written to.
    static SHARDS: RefCell<Vec<(u64, Weak<Shard>)>> = const { RefCell::new(Vec::new()) };
}

impl Registry {
    pub fn new(cfg: WindowConfig, clock: Arc<dyn Clock>) -> Arc<Registry> {
        assert!(
            cfg.slot_seconds > 0 && cfg.coarse_slot_seconds >= cfg.slot_seconds,
            "validated by config"
        );
        Arc::new(Registry {
            id: NEXT_REGISTRY.fetch_add(1, Relaxed),
            cfg,
            clock,
            index: DashMap::new(),
            series_total: AtomicUsize::new(0),
            global_overflow: AtomicU32::new(0),
            series: RwLock::new(Vec::new()),
            services: Mutex::new(HashMap::new()),
            shards: Mutex::new(Vec::new()),
            closing: RwLock::new(()),
            staged: RwLock::new(Staged::default()),
            close_pass: Mutex::new(()),
            closer: Mutex::new(Closer::default()),
            pending_rows: Mutex::new(Vec::new()),
            stats: RegistryStats::default(),
        })
    }

    pub fn config(&self) -> &WindowConfig {
        &self.cfg
    }

    pub fn now_unix(&self) -> u64 {
        self.clock.now_unix()
    }

    fn shard(&self) -> Arc<Shard> {
        SHARDS.with(|cell| {
            let mut list = cell.borrow_mut();
            if let Some(s) = list
                .iter()
                .find(|(id, _)| *id == self.id)
                .and_then(|(_, w)| w.upgrade())
            {
                return s;
            }
            list.retain(|(_, w)| w.strong_count() > 0);
            let shard = Arc::new(Mutex::new(ShardState {
                cache: HashMap::with_hasher(foldhash::fast::RandomState::default()),
                key_buf: Vec::with_capacity(256),
                open: [OpenSlot::new(), OpenSlot::new()],
                over: OverflowCache::default(),
            }));
            self.shards.lock().push(shard.clone());
            list.push((self.id, Arc::downgrade(&shard)));
            shard
        })
    }

    /// The series of a key the shard's cache does not hold. A key of a service this shard
    /// knows is capped is an over-cap key (the shard holds every regular series of such a
    /// service), placed from the [`OverflowCache`] without the index when it can; another key is
    /// looked up in the index; what neither knows goes to [`Registry::resolve`], and what that
    /// says is learnt.
    #[cold]
    fn lookup_uncached(&self, state: &mut ShardState) -> SeriesId {
        let key = state.key_buf.as_slice();
        let capped = dims_end(key, 1).is_some_and(|end| state.over.capped.contains(&key[..end]));
        if capped {
            if let Some(id) = self.overflow_cached(key, &mut state.over) {
                self.stats.overflow_observations.fetch_add(1, Relaxed);
                self.stats.overflow_fast.fetch_add(1, Relaxed);
                return id;
            }
        } else if let Some(id) = self.index.get(key) {
            let id = *id;
            state.cache.insert(key.into(), id);
            return id;
        }
        let (id, mapping) = self.resolve(key);
        match mapping {
            Mapping::Regular => {
                state.cache.insert(key.into(), id);
            }
            Mapping::Cohort | Mapping::Service => {
                // First time this service is seen capped here, or its overflow cohorts just
                // filled up (then their list is final): take the service's series.
                let known_full = dims_end(key, 1)
                    .is_some_and(|end| state.over.by_service.contains_key(&key[..end]));
                if !capped || (mapping == Mapping::Service && !known_full) {
                    self.learn_capped(key, &mut state.cache, &mut state.over);
                }
            }
            Mapping::Global => {}
        }
        id
    }

    /// Takes every series of the (capped) service of `key` into the shard: its regular series
    /// into the cache, its overflow series into the [`OverflowCache`]. Bounded by the
    /// service's caps.
    fn learn_capped(
        &self,
        key: &[u8],
        cache: &mut HashMap<Box<[u8]>, SeriesId, foldhash::fast::RandomState>,
        over: &mut OverflowCache,
    ) {
        let Some(end) = dims_end(key, 1) else {
            return;
        };
        let service = String::from_utf8_lossy(&key[..end - 1]).into_owned();
        let services = self.services.lock();
        let series = self.series.read();
        let Some(entry) = services.get(&service) else {
            return;
        };
        for &id in &entry.ids {
            let k = &series[id as usize].key;
            let bytes = k.key_bytes();
            if k.operation != OVERFLOW {
                cache.insert(bytes.into(), id);
            } else if k.env != OVERFLOW {
                if let Some(cohort) = dims_end(&bytes, 3) {
                    over.by_cohort.insert(bytes[..cohort].into(), id);
                }
            } else {
                over.by_service.insert(bytes[..end].into(), id);
            }
        }
        over.capped.insert(key[..end].into());
    }

    /// Where an over-cap key of a capped service goes, from what this shard learnt, if it
    /// knows: never a series other than the one [`Registry::resolve`] would pick.
    fn overflow_cached(&self, key: &[u8], over: &mut OverflowCache) -> Option<SeriesId> {
        if self.series_total.load(Relaxed) >= self.cfg.max_series {
            return self.global_overflow.load(Relaxed).checked_sub(1);
        }
        let service = &key[..dims_end(key, 1)?];
        let cohort = &key[..dims_end(key, 3)?];
        if let Some(id) = over.by_cohort.get(cohort) {
            return Some(*id);
        }
        // Its overflow cohorts filled up: their list, taken since, is final.
        if let Some(id) = over.by_service.get(service) {
            return Some(*id);
        }
        // The cohort's overflow series may exist, made by another shard.
        let extras = key[cohort.len()..]
            .iter()
            .filter(|b| **b == 0xFF)
            .count()
            .saturating_sub(1);
        over.buf.clear();
        over.buf.extend_from_slice(cohort);
        for _ in 0..=extras {
            over.buf.extend_from_slice(OVERFLOW.as_bytes());
            over.buf.push(0xFF);
        }
        let id = *self.index.get(over.buf.as_slice())?;
        over.by_cohort.insert(cohort.into(), id);
        Some(id)
    }

    /// Finds or creates the series for `key`, and says what it is mapped to: only
    /// [`Mapping::Regular`] may be cached by key (a flood of distinct over-cap keys must not
    /// grow the shard caches).
    fn resolve(&self, key: &[u8]) -> (SeriesId, Mapping) {
        if let Some(id) = self.index.get(key) {
            return (*id, Mapping::Regular);
        }
        let mut services = self.services.lock();
        if let Some(id) = self.index.get(key) {
            return (*id, Mapping::Regular);
        }
        let owned = SeriesKey::from_key_bytes(key);
        let total = self.series.read().len();
        let fits_service = services
            .get(&owned.service)
            .is_none_or(|s| s.regular < self.cfg.max_series_per_service);
        if fits_service && total < self.cfg.max_series {
            let id = self.create(&mut services, owned, key, false);
            return (id, Mapping::Regular);
        }
        self.stats.overflow_observations.fetch_add(1, Relaxed);
        let extras = vec![OVERFLOW.to_string(); owned.extras.len()];
        let mut candidates = Vec::with_capacity(2);
        if total < self.cfg.max_series {
            candidates.push(SeriesKey {
                operation: OVERFLOW.into(),
                extras: extras.clone(),
                ..owned.clone()
            });
            candidates.push(SeriesKey {
                env: OVERFLOW.into(),
                version: OVERFLOW.into(),
                operation: OVERFLOW.into(),
                extras: extras.clone(),
                ..owned.clone()
            });
        } else {
            candidates.push(SeriesKey {
                service: OVERFLOW.into(),
                env: OVERFLOW.into(),
                version: OVERFLOW.into(),
                operation: OVERFLOW.into(),
                extras,
            });
        }
        let last = candidates.len() - 1;
        let global = total >= self.cfg.max_series;
        for (i, cand) in candidates.into_iter().enumerate() {
            let mapping = match (global, i) {
                (true, _) => Mapping::Global,
                (false, 0) => Mapping::Cohort,
                (false, _) => Mapping::Service,
            };
            let bytes = cand.key_bytes();
            if let Some(id) = self.index.get(&bytes[..]) {
                return (*id, mapping);
            }
            let room = services
                .get(&cand.service)
                .is_none_or(|s| s.overflow_series < self.cfg.max_overflow_series_per_service);
            if room || i == last {
                let id = self.create(&mut services, cand, &bytes, true);
                if global {
                    self.global_overflow.store(id + 1, Relaxed);
                }
                return (id, mapping);
            }
        }
        unreachable!("the last candidate is always created")
    }

    fn create(
        &self,
        services: &mut HashMap<String, ServiceEntry>,
        key: SeriesKey,
        key_bytes: &[u8],
        overflow: bool,
    ) -> SeriesId {
        let mut series = self.series.write();
        let id = series.len() as SeriesId;
        let entry = services.entry(key.service.clone()).or_default();
        if overflow {
            entry.overflow_series += 1;
        } else {
            entry.regular += 1;
        }
        entry.ids.push(id);
        series.push(Arc::new(Series {
            key,
            history: Mutex::new(History::default()),
        }));
        self.index.insert(key_bytes.into(), id);
        self.series_total.store(series.len(), Relaxed);
        self.stats.series_created.fetch_add(1, Relaxed);
        id
    }

    /// Merges every open slot that has ended into the series histories. Call it at least once
    /// per slot; calling it more often is harmless.
    pub fn close_slots(&self) -> Vec<SlotRecord> {
        self.close_slots_at(self.clock.now_unix() / self.cfg.slot_seconds)
    }

    /// Closes every open slot before slot number `current`; `u64::MAX` closes all of them (at
    /// shutdown, so the history gets what is still open).
    pub fn close_slots_at(&self, current: u64) -> Vec<SlotRecord> {
        let _pass = self.close_pass.lock();
        let shards: Vec<Arc<Shard>> = self.shards.lock().clone();
        let pass = {
            // Only the hand-over blocks queries: the parts move from the shards to `staged`.
            let _closing = self.closing.write();
            let mut parts = Vec::new();
            for shard in shards {
                let mut state = shard.lock();
                for open in &mut state.open {
                    if open.slot != NO_SLOT && open.slot < current {
                        let (slot, p) = open.take();
                        let mut index: Vec<(SeriesId, u32)> = p
                            .entries
                            .iter()
                            .enumerate()
                            .map(|(i, e)| (e.id, i as u32))
                            .collect();
                        index.sort_unstable();
                        parts.push((slot, p, index));
                    }
                }
            }
            if parts.is_empty() {
                None
            } else {
                parts.sort_by_key(|(slot, _, _)| *slot);
                let mut staged = self.staged.write();
                staged.pass += 1;
                staged.parts = parts;
                Some(staged.pass)
            }
        };
        let mut rows = std::mem::take(&mut *self.pending_rows.lock());
        if let Some(pass) = pass {
            let sealed = {
                let staged = self.staged.read();
                self.stats
                    .slots_closed
                    .fetch_add(staged.parts.len() as u64, Relaxed);
                let parts: Vec<(u64, &Parts)> =
                    staged.parts.iter().map(|(slot, p, _)| (*slot, p)).collect();
                self.seal(&parts, Some(pass))
            };
            // Every history now holds its part; queries read them there.
            self.staged.write().parts = Vec::new();
            rows.extend(sealed);
        }
        rows
    }

    /// Loads closed slots back (from the history after a restart) so windows see them again.
    /// Slots already present are merged, never replaced. Returns the number of rows loaded.
    pub fn import(&self, rows: &[SlotRecord]) -> Result<usize, slogate_sketch::DecodeError> {
        let g = self.cfg.geometry();
        let mut loaded = 0;
        for row in rows {
            // A slot before 1970 cannot come from a window; such a row is not loaded.
            let Ok(start) = u64::try_from(row.slot_start_unix) else {
                continue;
            };
            // Validated here, so windows may merge the stored bytes without checking them again.
            let agg = Agg {
                requests: row.requests,
                errors: row.errors,
                sketch: Sketch::decode(&row.sketch)?,
            };
            let key = row.key.key_bytes();
            let (id, _) = self.resolve(&key);
            // Lock order as in `seal`: series, closer, history.
            let series = self.series.read();
            let mut closer = self.closer.lock();
            let slot = start / self.cfg.slot_seconds;
            series[id as usize]
                .history
                .lock()
                .add(slot, &agg, &row.sketch, g, &mut closer.scratch);
            loaded += 1;
        }
        *self.closer.lock() = Closer::default();
        Ok(loaded)
    }

    /// Merges ended open slots (every shard's part of them, sorted by slot) into the series
    /// histories: one sealed slot and one exported row per series and slot. Parts staged by
    /// close pass `pass` are marked applied in each history, under its lock, as they land.
    fn seal(&self, parts: &[(u64, &Parts)], pass: Option<u64>) -> Vec<SlotRecord> {
        let g = self.cfg.geometry();
        // The configuration keeps slots far below 2^32 seconds.
        let slot_seconds = u32::try_from(self.cfg.slot_seconds).unwrap_or(u32::MAX);
        let series = self.series.read();
        let mut closer = self.closer.lock();
        let Closer {
            agg,
            bytes,
            scratch,
            order,
        } = &mut *closer;
        let mut rows = Vec::new();
        let mut from = 0;
        while from < parts.len() {
            let slot = parts[from].0;
            let to = from + parts[from..].iter().take_while(|(s, _)| *s == slot).count();
            order.clear();
            for (k, (_, p)) in parts[from..to].iter().enumerate() {
                order.extend(
                    p.entries
                        .iter()
                        .enumerate()
                        .map(|(i, e)| (e.id, k as u32, i as u32)),
                );
            }
            order.sort_unstable();
            let mut i = 0;
            while i < order.len() {
                let id = order[i].0;
                agg.clear();
                while i < order.len() && order[i].0 == id {
                    let (_, k, pos) = order[i];
                    parts[from + k as usize].1.merge_into(pos as usize, agg);
                    i += 1;
                }
                if agg.requests == 0 {
                    continue;
                }
                bytes.clear();
                agg.sketch.encode(bytes);
                let s = &series[id as usize];
                let mut h = s.history.lock();
                h.add(slot, agg, bytes, g, scratch);
                if let Some(pass) = pass {
                    h.applied = (pass, slot);
                }
                drop(h);
                rows.push(SlotRecord {
                    slot_start_unix: i64::try_from(slot * self.cfg.slot_seconds)
                        .unwrap_or(i64::MAX),
                    slot_seconds,
                    key: s.key.clone(),
                    requests: agg.requests,
                    errors: agg.errors,
                    latency_sum_ns: agg.sketch.sum().min(u128::from(u64::MAX)) as u64,
                    latency_min_ns: agg.sketch.min().unwrap_or(0),
                    latency_max_ns: agg.sketch.max().unwrap_or(0),
                    sketch: bytes.clone(),
                });
            }
            from = to;
        }
        // The buffers are as wide as the widest series; between closes they would only sit there.
        *closer = Closer::default();
        rows
    }

    /// A writer found its open slot two slots old (the closer is behind): it closes that slot
    /// itself rather than mix two slots, and keeps the rows for the next `close_slots`.
    /// It seals directly, without staging: a query that read this series' history just before
    /// and reaches this shard just after misses the part once (rare: the closer must be two
    /// slots behind; staging here would need the closing lock while the shard lock is held,
    /// the reverse of the query's order).
    #[cold]
    fn close_stale(&self, open: &mut OpenSlot) {
        let (slot, parts) = open.take();
        let rows = self.seal(&[(slot, &parts)], None);
        self.stats.slots_closed.fetch_add(1, Relaxed);
        let mut pending = self.pending_rows.lock();
        // Bounded: a closer that never runs loses history rows, never memory.
        let room = self
            .cfg
            .max_series
            .saturating_mul(4)
            .saturating_sub(pending.len());
        pending.extend(rows.into_iter().take(room));
    }

    /// The series of the selector's service that match it, with their ids.
    fn select(&self, sel: &Selector) -> Vec<(SeriesId, Arc<Series>)> {
        let Some(service) = sel.service() else {
            return Vec::new();
        };
        let ids: Vec<SeriesId> = self
            .services
            .lock()
            .get(service)
            .map(|s| s.ids.clone())
            .unwrap_or_default();
        let series = self.series.read();
        ids.into_iter()
            .map(|id| (id, series[id as usize].clone()))
            .filter(|(_, s)| sel.matches(&s.key, &self.cfg.extra_dims))
            .collect()
    }

    /// Requests, errors and the merged latency sketch of the series matching `sel` over the last
    /// `window_seconds`.
    pub fn query(&self, sel: &Selector, window_seconds: u64) -> WindowStats {
        let now = self.clock.now_unix();
        let slot_s = self.cfg.slot_seconds;
        let current = now / slot_s;
        let fine = window_seconds <= self.cfg.fine_retention_seconds;
        let (first_fine, covered) = if fine {
            let n = window_seconds.div_ceil(slot_s);
            (current.saturating_sub(n), (n + 1) * slot_s)
        } else {
            let cs = self.cfg.coarse_slot_seconds;
            let n = window_seconds.div_ceil(cs);
            let first_coarse = (now / cs).saturating_sub(n);
            (first_coarse * cs / slot_s, (n + 1) * cs)
        };
        let _closing = self.closing.read();
        // Taken before the histories are read: a pass's parts leave `staged` only after every
        // history has them, so each series' slot is counted from exactly one of the two.
        let staged = self.staged.read();
        let selected = self.select(sel);
        let g = self.cfg.geometry();
        let mut agg = Agg::default();
        // The first fine slot with a request, for `observed_seconds`.
        let mut first_data = u64::MAX;
        let per_coarse = self.cfg.coarse_slot_seconds / slot_s;
        // The oldest staged slot in the window, worked out once rather than per series.
        let oldest_staged = staged
            .parts
            .iter()
            .map(|(slot, ..)| *slot)
            .filter(|slot| *slot >= first_fine)
            .min()
            .unwrap_or(first_fine);
        for (id, s) in &selected {
            let h = s.history.lock();
            if fine {
                h.collect_fine(first_fine, g, &mut agg);
                if let Some(f) = h.fine.first_with_data(first_fine) {
                    first_data = first_data.min(f);
                }
            } else {
                let first_coarse = first_fine * slot_s / self.cfg.coarse_slot_seconds;
                h.collect_coarse(first_coarse, &mut agg);
                if let Some(c) = h.coarse.first_with_data(first_coarse) {
                    first_data = first_data.min(c * per_coarse.max(1));
                }
            }
            if !staged.parts.is_empty() {
                let before = agg.requests;
                staged.merge_series(*id, h.applied, first_fine, &mut agg);
                if agg.requests > before {
                    first_data = first_data.min(oldest_staged);
                }
            }
        }
        drop(staged);
        let shards: Vec<Arc<Shard>> = self.shards.lock().clone();
        for shard in shards {
            let state = shard.lock();
            for open in &state.open {
                if open.slot == NO_SLOT || open.slot < first_fine {
                    continue;
                }
                let before = agg.requests;
                for (id, _) in &selected {
                    open.merge_series(*id, &mut agg);
                }
                if agg.requests > before {
                    first_data = first_data.min(open.slot);
                }
            }
        }
        let observed_seconds = if agg.requests == 0 || first_data == u64::MAX {
            0
        } else {
            now.saturating_sub(first_data.max(first_fine) * slot_s)
                .clamp(1, covered)
        };
        WindowStats {
            requests: agg.requests,
            errors: agg.errors,
            sketch: agg.sketch,
            series: selected.len(),
            covered_seconds: covered,
            observed_seconds,
        }
    }

    /// Requests, errors and latency of the series matching `sel`, per step over the last
    /// `range_seconds`, oldest first, from the sealed slots: the slot still open (and a closed
    /// one not sealed yet, for the moment it is staged) joins at its close. The step is a whole
    /// number of fine slots when the range is within the fine retention, of coarse slots
    /// otherwise, at least `step_seconds` and at most [`MAX_TIMELINE_STEPS`] of them.
    pub fn timeline(
        &self,
        sel: &Selector,
        range_seconds: u64,
        step_seconds: u64,
    ) -> (u64, Vec<TimelineStep>) {
        let now = self.clock.now_unix();
        let fine = range_seconds <= self.cfg.fine_retention_seconds;
        let slot = if fine {
            self.cfg.slot_seconds
        } else {
            self.cfg.coarse_slot_seconds
        }
        .max(1);
        let range = range_seconds.max(slot);
        let step = step_seconds
            .max(range.div_ceil(MAX_TIMELINE_STEPS))
            .div_ceil(slot)
            .max(1)
            * slot;
        // Steps end at the current slot's start (the open slot is left out) and align with
        // slots.
        let end = now / slot * slot;
        let n = range.div_ceil(step).min(MAX_TIMELINE_STEPS);
        let first = end.saturating_sub(n * step);
        let mut steps: Vec<TimelineStep> = (0..n)
            .map(|i| TimelineStep {
                start_unix: first + i * step,
                ..TimelineStep::default()
            })
            .collect();
        let selected = self.select(sel);
        let mut agg = Agg::default();
        for (_, s) in &selected {
            let h = s.history.lock();
            let ring = if fine { &h.fine } else { &h.coarse };
            for st in &mut steps {
                agg.clear();
                ring.collect(
                    st.start_unix / slot,
                    (st.start_unix + step) / slot,
                    &mut agg,
                );
                st.requests += agg.requests;
                st.errors += agg.errors;
                st.sketch.merge(&agg.sketch);
            }
        }
        (step, steps)
    }

    /// Number of series, including overflow series.
    pub fn series_count(&self) -> usize {
        self.series.read().len()
    }

    /// Keys of the series of one service (or all services).
    pub fn series_keys(&self, service: Option<&str>) -> Vec<SeriesKey> {
        self.series
            .read()
            .iter()
            .filter(|s| service.is_none_or(|svc| s.key.service == svc))
            .map(|s| s.key.clone())
            .collect()
    }

    /// Heap bytes held by series histories, keys and open shard state: the figure behind
    /// "bytes per series" (the sum of [`Registry::memory`]).
    pub fn memory_bytes(&self) -> usize {
        let m = self.memory();
        m.live + m.closed()
    }

    /// Heap bytes held, by allocated capacity, split into live state and closed slots.
    /// Hash tables are counted by their bucket arrays (key, value and one control byte per
    /// bucket); allocator headers and rounding are not counted.
    pub fn memory(&self) -> MemoryStats {
        let mut m = MemoryStats::default();
        {
            let series = self.series.read();
            m.live += series.capacity() * size_of::<Arc<Series>>();
            for s in series.iter() {
                // The Arc's two counters, the record, its key's heap parts.
                m.live += 2 * size_of::<usize>() + size_of::<Series>() + key_heap_bytes(&s.key);
                let h = s.history.lock();
                m.fine += h.fine.heap_bytes();
                m.coarse += h.coarse.heap_bytes();
            }
        }
        {
            let services = self.services.lock();
            m.live += services
                .iter()
                .map(|(k, v)| k.capacity() + v.ids.capacity() * size_of::<SeriesId>())
                .sum::<usize>()
                + table_bytes::<(String, ServiceEntry)>(services.capacity());
        }
        m.live += self.index.iter().map(|e| e.key().len()).sum::<usize>()
            + table_bytes::<(Box<[u8]>, SeriesId)>(self.index.capacity());
        for sh in self.shards.lock().iter() {
            let st = sh.lock();
            m.live += size_of::<ShardState>()
                + st.key_buf.capacity()
                + st.cache.keys().map(|k| k.len()).sum::<usize>()
                + table_bytes::<(Box<[u8]>, SeriesId)>(st.cache.capacity())
                + st.open.iter().map(OpenSlot::heap_bytes).sum::<usize>();
        }
        m.live += self.closer.lock().heap_bytes();
        m.live += self.staged.read().heap_bytes();
        m.live += self
            .pending_rows
            .lock()
            .iter()
            .map(|r| size_of::<SlotRecord>() + key_heap_bytes(&r.key) + r.sketch.capacity())
            .sum::<usize>();
        m
    }
}

impl Closer {
    fn heap_bytes(&self) -> usize {
        self.agg.sketch.heap_bytes()
            + self.bytes.capacity()
            + self.scratch.heap_bytes()
            + self.order.capacity() * size_of::<(SeriesId, u32, u32)>()
    }
}

fn key_heap_bytes(k: &SeriesKey) -> usize {
    k.service.capacity()
        + k.env.capacity()
        + k.version.capacity()
        + k.operation.capacity()
        + k.extras.capacity() * size_of::<String>()
        + k.extras.iter().map(String::capacity).sum::<usize>()
}

/// Bytes of a hashbrown table that can hold `capacity` entries: a power-of-two bucket array
/// at most 7/8 full, one control byte per bucket plus one group of trailing control bytes.
fn table_bytes<T>(capacity: usize) -> usize {
    if capacity == 0 {
        return 0;
    }
    let buckets = if capacity < 8 {
        if capacity < 4 { 4 } else { 8 }
    } else {
        (capacity * 8 / 7).next_power_of_two()
    };
    buckets * (size_of::<T>() + 1) + 16
}

/// Records one batch into the calling thread's shard.
pub struct Writer<'a> {
    reg: &'a Registry,
    state: parking_lot::ArcMutexGuard<parking_lot::RawMutex, ShardState>,
    slot: u64,
}

impl Recorder for Registry {
    type Writer<'a> = Writer<'a>;
    fn writer(&self) -> Writer<'_> {
        let shard = self.shard();
        let slot = self.clock.now_unix() / self.cfg.slot_seconds;
        Writer {
            reg: self,
            state: Mutex::lock_arc(&shard),
            slot,
        }
    }
}

impl ObservationWriter for Writer<'_> {
    // HOT PATH
    #[inline]
    fn record(&mut self, obs: &Observation<'_>) {
        self.record_counted(obs, u64::from(obs.adjusted_count.max(1)));
    }
}

impl Writer<'_> {
    // HOT PATH
    #[inline]
    fn record_counted(&mut self, obs: &Observation<'_>, count: u64) {
        let reg = self.reg;
        let state = &mut *self.state;
        write_key(obs, reg.cfg.extra_dims.len(), &mut state.key_buf);
        let id = match state.cache.get(state.key_buf.as_slice()) {
            Some(id) => *id,
            None => reg.lookup_uncached(state),
        };
        let i = (self.slot & 1) as usize;
        let open = &mut state.open[i];
        if open.slot != self.slot {
            if open.slot != NO_SLOT {
                // The closer is behind by two slots; close the stale slot here rather than mix.
                reg.close_stale(open);
            }
            open.start(self.slot);
        }
        open.record(id, obs.error, obs.duration_ns, count);
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    //! The shard-level lookup, driven one key at a time by `crate::tests`.
    use super::*;

    pub fn shard_state() -> ShardState {
        ShardState {
            cache: HashMap::with_hasher(foldhash::fast::RandomState::default()),
            key_buf: Vec::new(),
            open: [OpenSlot::new(), OpenSlot::new()],
            over: OverflowCache::default(),
        }
    }

    /// Places `obs` as the writer does. Returns where the shard's overflow cache put it (when
    /// it knew) and where `Registry::resolve` puts it.
    pub fn place(
        reg: &Registry,
        state: &mut ShardState,
        obs: &Observation<'_>,
    ) -> (Option<SeriesId>, SeriesId) {
        write_key(obs, reg.cfg.extra_dims.len(), &mut state.key_buf);
        if let Some(id) = state.cache.get(state.key_buf.as_slice()) {
            return (None, *id);
        }
        let key = state.key_buf.clone();
        let capped = dims_end(&key, 1).is_some_and(|end| state.over.capped.contains(&key[..end]));
        let cached = match capped {
            true => reg.overflow_cached(&key, &mut state.over),
            false => None,
        };
        match cached {
            Some(id) => (Some(id), reg.resolve(&key).0),
            // As the writer does: resolve, and learn.
            None => (None, reg.lookup_uncached(state)),
        }
    }
}
