//! A shard's open slot: compact per-series partial aggregates in one arena of `u16` counts.
//!
//! HOT PATH: [`OpenSlot::record`] runs once per span.
//!
//! Every series a shard saw in the slot has an [`Entry`] (exact requests, errors, sum, min,
//! max) and a region of the slot's arena holding its bucket counts in one of two forms:
//!
//! - **sparse**: an open-addressing table of `(index + 1, count)` cell pairs, 8 cells to start,
//!   doubled when three quarters full. A series with a few dozen spans per slot holds a few hundred bytes
//!   even though its values span hundreds of buckets.
//! - **dense**: one `u16` per bucket over the series' window of indexes, chosen as soon as it is
//!   smaller than the next sparse table (busy series).
//!
//! Each entry starts in the form and size the same series ended the previous slot on this
//! parity with, so in steady state regions do not grow and the arena holds no garbage.
//!
//! Regions are never freed one by one: growing a region appends a new one and abandons the old
//! (at most as large as the new one, so at most half the arena is garbage). The whole arena is
//! handed to the closer when the slot ends and freed there; the next slot on this parity starts
//! with one allocation of the previous slot's size. So a series that stops sending costs nothing
//! here one slot later, and the hot path allocates only when a region outgrows the reserve.
//!
//! A `u16` count that would pass 65,535 is moved to the slot's spill list as one
//! `(entry, index)` record worth 65,536 and restarts from zero, so counts stay exact with at most
//! one spill record per 65,536 spans.

use crate::history::Agg;
use crate::registry::SeriesId;
use slogate_sketch::{bucket_index, MAX_INDEX};
use std::mem::size_of;

const NONE: u32 = u32::MAX;
/// Cells of a new sparse table (a power of two).
const FIRST_CELLS: usize = 8;
/// Extra buckets on the growing side of a dense window.
const DENSE_SLACK: usize = 16;
/// What one spill record is worth.
const SPILL: u64 = 1 << 16;

/// One series' partial aggregate in an open slot.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub id: SeriesId,
    /// Start of the region in the arena.
    off: u32,
    /// Dense: first bucket index of the window. Sparse: unused.
    lo: u16,
    /// Dense: window length. Sparse: used cells.
    len: u16,
    /// Sparse: table cells (a power of two). Dense: 0.
    cells: u16,
    pub requests: u64,
    pub errors: u64,
    pub sum: u128,
    pub min: u64,
    pub max: u64,
}

/// An open slot of one shard.
#[derive(Debug)]
pub(crate) struct OpenSlot {
    pub slot: u64,
    /// Per series id: its entry's position in `entries`, or `NONE`.
    pos: Vec<u32>,
    /// Per series id: the form its entry ended the last slot in ([`Hint`]), so the next slot
    /// starts in that form and size instead of growing into it again.
    hints: Vec<u32>,
    pub(crate) parts: Parts,
    /// Arena length and entries at the last hand-over, to size the next slot's reserve.
    peak: (usize, usize),
}

/// The data of an open slot, detached from the shard when the slot ends.
#[derive(Debug, Default)]
pub(crate) struct Parts {
    pub entries: Vec<Entry>,
    arena: Vec<u16>,
    /// `(entry position, bucket index)`, each worth [`SPILL`].
    spill: Vec<(u32, u16)>,
}

pub(crate) const NO_SLOT: u64 = u64::MAX;

impl OpenSlot {
    pub const fn new() -> Self {
        OpenSlot { slot: NO_SLOT, pos: Vec::new(), hints: Vec::new(), parts: Parts { entries: Vec::new(), arena: Vec::new(), spill: Vec::new() }, peak: (0, 0) }
    }

    /// Starts slot `slot` on an empty open slot, reserving what the previous one needed.
    #[cold]
    pub fn start(&mut self, slot: u64) {
        debug_assert!(self.parts.entries.is_empty());
        self.slot = slot;
        let (arena, entries) = self.peak;
        self.parts.arena.reserve_exact(arena + arena / 8);
        self.parts.entries.reserve_exact(entries + entries / 8);
    }

    /// Hands the slot's data over (to be merged into the histories) and leaves this open slot
    /// empty, holding no arena.
    pub fn take(&mut self) -> (u64, Parts) {
        let mut live = 0;
        for e in &self.parts.entries {
            self.pos[e.id as usize] = NONE;
            let hint = Hint::of(e);
            self.hints[e.id as usize] = hint.0;
            live += hint.region();
        }
        // The next slot starts every entry at its final size, so it needs no room for garbage.
        self.peak = (live, self.parts.entries.len());
        let slot = std::mem::replace(&mut self.slot, NO_SLOT);
        (slot, std::mem::take(&mut self.parts))
    }

    /// The entry of series `id`, if it has data in this slot.
    #[cfg(test)]
    fn entry(&self, id: SeriesId) -> Option<&Entry> {
        let p = *self.pos.get(id as usize)?;
        self.parts.entries.get(p as usize)
    }

    /// Adds series `id`'s data in this slot, if any, to `out`.
    pub fn merge_series(&self, id: SeriesId, out: &mut Agg) {
        if let Some(&p) = self.pos.get(id as usize).filter(|p| **p != NONE) {
            self.parts.merge_into(p as usize, out);
        }
    }

    /// Records one span of series `id`.
    // HOT PATH
    #[inline]
    pub fn record(&mut self, id: SeriesId, error: bool, v: u64) {
        let p = match self.pos.get(id as usize) {
            Some(&p) if p != NONE => p as usize,
            _ => self.add_entry(id),
        };
        let parts = &mut self.parts;
        let e = &mut parts.entries[p];
        e.requests += 1;
        e.errors += u64::from(error);
        e.sum += u128::from(v);
        e.min = e.min.min(v);
        e.max = e.max.max(v);
        let idx = bucket_index(v);
        let cell = if e.cells == 0 {
            let off = usize::from(idx).wrapping_sub(usize::from(e.lo));
            if off < usize::from(e.len) {
                e.off as usize + off
            } else {
                parts.grow_dense(p, idx)
            }
        } else {
            parts.sparse_cell(p, idx)
        };
        let c = &mut parts.arena[cell];
        if *c == u16::MAX {
            *c = 0;
            parts.spill.push((p as u32, idx));
        } else {
            *c += 1;
        }
    }

    #[cold]
    #[inline(never)]
    fn add_entry(&mut self, id: SeriesId) -> usize {
        if self.pos.len() <= id as usize {
            self.pos.resize(id as usize + 1, NONE);
            self.hints.resize(id as usize + 1, 0);
        }
        let parts = &mut self.parts;
        let p = parts.entries.len();
        let hint = Hint(self.hints[id as usize]);
        let (lo, len, cells) = hint.form();
        let off = parts.alloc(hint.region());
        parts.entries.push(Entry { id, off, lo, len: if cells == 0 { len } else { 0 }, cells, requests: 0, errors: 0, sum: 0, min: u64::MAX, max: 0 });
        self.pos[id as usize] = p as u32;
        p
    }

    /// Heap bytes held (capacities).
    pub fn heap_bytes(&self) -> usize {
        (self.pos.capacity() + self.hints.capacity()) * size_of::<u32>() + self.parts.heap_bytes()
    }
}

/// An entry's form packed in a `u32`: `0` = none seen yet, a sparse table's cell count, or
/// `DENSE | lo << 16 | len` for a dense window.
#[derive(Debug, Clone, Copy)]
struct Hint(u32);

impl Hint {
    const DENSE: u32 = 1 << 31;

    fn of(e: &Entry) -> Hint {
        if e.cells == 0 {
            // The range the slot used plus slack, not the window it grew to: growth slack would
            // otherwise ratchet the window wider slot after slot.
            let lo = usize::from(bucket_index(e.min)).saturating_sub(DENSE_SLACK);
            let hi = (usize::from(bucket_index(e.max)) + DENSE_SLACK).min(usize::from(MAX_INDEX));
            Hint(Self::DENSE | (lo as u32) << 16 | (hi - lo + 1) as u32)
        } else {
            // A table more than half full would have grown at once: start one size up.
            // (Tables never pass 2,048 cells: a dense window of all 7,424 buckets is smaller.)
            let cells = if usize::from(e.len) * 2 > usize::from(e.cells) { (e.cells * 2).min(4096) } else { e.cells };
            Hint(u32::from(cells))
        }
    }

    /// Arena length of a region of this form.
    fn region(self) -> usize {
        let (_, len, cells) = self.form();
        if cells == 0 { usize::from(len) } else { 2 * usize::from(cells) }
    }

    /// `(lo, len, cells)` of a new entry.
    fn form(self) -> (u16, u16, u16) {
        match self.0 {
            0 => (0, 0, FIRST_CELLS as u16),
            h if h & Self::DENSE != 0 => (((h >> 16) & 0x7fff) as u16, h as u16, 0),
            h => (0, 0, h as u16),
        }
    }
}

impl Parts {
    /// Appends a zeroed region of `n` counts; returns its offset.
    fn alloc(&mut self, n: usize) -> u32 {
        let off = self.arena.len();
        if self.arena.capacity() < off + n {
            // Grow by an eighth rather than double: the slot started with last slot's size
            // reserved, so this is a little more traffic, not a new order of magnitude.
            self.arena.reserve_exact(n.max(off / 8).max(256));
        }
        self.arena.resize(off + n, 0);
        off as u32
    }

    /// Arena position of bucket `idx`'s count in sparse entry `p`, inserting the bucket (and
    /// growing or densifying the table) when it is new.
    #[inline]
    fn sparse_cell(&mut self, p: usize, idx: u16) -> usize {
        let e = &self.entries[p];
        let (off, cells) = (e.off as usize, usize::from(e.cells));
        let key = idx + 1;
        let mask = cells - 1;
        let mut i = hash(idx) & mask;
        loop {
            let k = self.arena[off + 2 * i];
            if k == key {
                return off + 2 * i + 1;
            }
            if k == 0 {
                break;
            }
            i = (i + 1) & mask;
        }
        if (usize::from(e.len) + 1) * 4 <= cells * 3 {
            self.arena[off + 2 * i] = key;
            self.entries[p].len += 1;
            return off + 2 * i + 1;
        }
        self.grow_sparse(p, idx)
    }

    /// The sparse table of entry `p` is three quarters full: doubles it, or turns it dense when a dense
    /// window over the entry's range is smaller. Returns the cell of `idx`.
    #[cold]
    #[inline(never)]
    fn grow_sparse(&mut self, p: usize, idx: u16) -> usize {
        let e = &self.entries[p];
        let (off, cells) = (e.off as usize, usize::from(e.cells));
        // min and max already include the value being recorded.
        let (first, last) = (bucket_index(e.min), bucket_index(e.max));
        let width = usize::from(last - first) + 1;
        if width + 2 * DENSE_SLACK <= 4 * cells || cells * 2 > usize::from(u16::MAX) {
            let lo = usize::from(first).saturating_sub(DENSE_SLACK);
            let hi = (usize::from(last) + DENSE_SLACK).min(usize::from(MAX_INDEX));
            let len = hi - lo + 1;
            let new = self.alloc(len) as usize;
            for i in 0..cells {
                let (k, c) = (self.arena[off + 2 * i], self.arena[off + 2 * i + 1]);
                if k != 0 {
                    self.arena[new + usize::from(k - 1) - lo] = c;
                }
            }
            let e = &mut self.entries[p];
            (e.off, e.lo, e.len, e.cells) = (new as u32, lo as u16, len as u16, 0);
            return new + usize::from(idx) - lo;
        }
        let new_cells = cells * 2;
        let new = self.alloc(2 * new_cells) as usize;
        let mask = new_cells - 1;
        let mut used = 0u16;
        for i in 0..cells {
            let (k, c) = (self.arena[off + 2 * i], self.arena[off + 2 * i + 1]);
            if k != 0 {
                let mut j = hash(k - 1) & mask;
                while self.arena[new + 2 * j] != 0 {
                    j = (j + 1) & mask;
                }
                self.arena[new + 2 * j] = k;
                self.arena[new + 2 * j + 1] = c;
                used += 1;
            }
        }
        let e = &mut self.entries[p];
        (e.off, e.len, e.cells) = (new as u32, used, new_cells as u16);
        self.sparse_cell(p, idx)
    }

    /// `idx` is outside dense entry `p`'s window: moves it to a wider one. Returns the cell.
    #[cold]
    #[inline(never)]
    fn grow_dense(&mut self, p: usize, idx: u16) -> usize {
        let e = &self.entries[p];
        let (off, lo, len) = (e.off as usize, usize::from(e.lo), usize::from(e.len));
        let pad = DENSE_SLACK.max(len / 4);
        let idx_u = usize::from(idx);
        let new_lo = if idx_u < lo { idx_u.saturating_sub(pad) } else { lo };
        let new_hi = if idx_u >= lo + len { (idx_u + pad).min(usize::from(MAX_INDEX)) } else { lo + len - 1 };
        let new_len = new_hi - new_lo + 1;
        if new_lo == lo && off + len == self.arena.len() {
            // The newest region grows upwards in place.
            self.alloc(new_len - len);
            self.entries[p].len = new_len as u16;
            return off + idx_u - lo;
        }
        let new = self.alloc(new_len) as usize;
        self.arena.copy_within(off..off + len, new + lo - new_lo);
        let e = &mut self.entries[p];
        (e.off, e.lo, e.len) = (new as u32, new_lo as u16, new_len as u16);
        new + idx_u - new_lo
    }

    /// Non-empty buckets of entry `p` as `(index, count)`, spilled counts included, in no
    /// particular order.
    pub fn buckets(&self, p: usize) -> impl Iterator<Item = (u16, u64)> + '_ {
        let e = &self.entries[p];
        let off = e.off as usize;
        let (dense, sparse): (&[u16], &[u16]) = if e.cells == 0 {
            (&self.arena[off..off + usize::from(e.len)], &[])
        } else {
            (&[], &self.arena[off..off + 2 * usize::from(e.cells)])
        };
        let lo = e.lo;
        let dense = dense.iter().enumerate().filter(|(_, c)| **c != 0).map(move |(i, &c)| (lo + i as u16, u64::from(c)));
        let sparse = sparse.chunks_exact(2).filter(|kc| kc[0] != 0 && kc[1] != 0).map(|kc| (kc[0] - 1, u64::from(kc[1])));
        let spill = self.spill.iter().filter(move |(q, _)| *q as usize == p).map(|&(_, idx)| (idx, SPILL));
        dense.chain(sparse).chain(spill)
    }

    /// Adds entry `p` to `out`.
    pub fn merge_into(&self, p: usize, out: &mut Agg) {
        let e = &self.entries[p];
        if e.requests > 0 {
            out.requests += e.requests;
            out.errors += e.errors;
            out.sketch.merge_parts(e.sum, e.min, e.max, self.buckets(p));
        }
    }

    pub fn heap_bytes(&self) -> usize {
        self.entries.capacity() * size_of::<Entry>() + self.arena.capacity() * size_of::<u16>() + self.spill.capacity() * size_of::<(u32, u16)>()
    }
}

/// Spreads bucket indexes (neighbours in value are neighbours in index) over the table.
#[inline(always)]
fn hash(idx: u16) -> usize {
    (u32::from(idx).wrapping_mul(0x9E37_79B1) >> 16) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use slogate_sketch::Sketch;

    fn reference(values: &[(u64, bool)]) -> Sketch {
        let mut s = Sketch::new();
        values.iter().for_each(|(v, _)| s.record(*v));
        s
    }

    /// Records `values` for two interleaved series and checks each merges to exactly the
    /// sketch a plain `Sketch` records.
    fn check(name: &str, values: &[u64]) {
        let mut open = OpenSlot::new();
        open.start(7);
        let mut mine: [Vec<(u64, bool)>; 2] = [Vec::new(), Vec::new()];
        for (i, &v) in values.iter().enumerate() {
            let id = (i % 2) as SeriesId * 5;
            open.record(id, i % 3 == 0, v);
            mine[i % 2].push((v, i % 3 == 0));
        }
        for (k, id) in [0 as SeriesId, 5].into_iter().enumerate() {
            let want = reference(&mine[k]);
            let Some(e) = open.entry(id) else {
                assert!(mine[k].is_empty(), "{name}");
                continue;
            };
            assert_eq!(e.requests, mine[k].len() as u64, "{name}");
            assert_eq!(e.errors, mine[k].iter().filter(|(_, err)| *err).count() as u64, "{name}");
            let mut got = Agg::default();
            open.merge_series(id, &mut got);
            assert_eq!((got.requests, got.errors), (e.requests, e.errors), "{name}");
            assert_eq!(got.sketch, want, "{name} series {id}");
            assert_eq!(Sketch::decode(&got.sketch.encoded()), Ok(want), "{name}: stays a valid encoding");
        }
    }

    #[test]
    fn sparse_dense_and_spill_forms_count_exactly() {
        let lognormal: Vec<u64> = (0..5_000u64).map(|i| 1_000_000 + (i * 7919 % 997) * (i % 13 + 1) * 40_000).collect();
        let cases: &[(&str, Vec<u64>)] = &[
            ("one value", vec![42]),
            ("a few spread values", vec![1, 1_000, 1_000_000, 1_000_000_000, u64::MAX, 0]),
            ("sparse table grows", (0..40u64).map(|i| 1_000_000 + i * 20_000).collect()),
            ("turns dense", lognormal.clone()),
            ("dense grows down then up", [&lognormal[..], &[3, 10_000_000_000_000]].concat()),
            ("u16 counts spill", vec![5_000_000; 2 * 70_000 + 3]),
            ("spill in a dense window", [vec![9_000; 140_000], (0..600u64).map(|i| 9_000 + i * 97).collect()].concat()),
        ];
        for (name, values) in cases {
            check(name, values);
        }
    }

    #[test]
    fn take_hands_over_and_frees() {
        let mut open = OpenSlot::new();
        open.start(3);
        for i in 0..1_000u64 {
            open.record((i % 4) as SeriesId, false, 1_000 + i * 1_000);
        }
        let busy = open.heap_bytes();
        let (slot, parts) = open.take();
        assert_eq!((slot, parts.entries.len(), open.slot), (3, 4, NO_SLOT));
        assert!(open.entry(1).is_none());
        assert!(open.heap_bytes() < busy / 2, "{} of {busy} bytes kept after the hand-over", open.heap_bytes());
        // The next slot reserves what this one used, so recording the same again allocates
        // no more arena.
        open.start(5);
        let reserved = open.parts.arena.capacity();
        for i in 0..1_000u64 {
            open.record((i % 4) as SeriesId, false, 1_000 + i * 1_000);
        }
        assert_eq!(open.parts.arena.capacity(), reserved);
    }
}
