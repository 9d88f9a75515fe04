//! A shard's open slot: compact per-series partial aggregates in one byte arena.
//!
//! HOT PATH: [`OpenSlot::record`] runs once per span.
//!
//! Every series a shard saw in the slot has an [`Entry`] (exact requests, errors, sum, min,
//! max) and a region of the slot's arena holding its bucket counts in one of two forms:
//!
//! - **sparse**: an open-addressing table of 4-byte cells, `(index + 1, count)` as two `u16`,
//!   8 cells to start, doubled when three quarters full. A series with a few dozen spans per
//!   slot holds a few hundred bytes even though its values span hundreds of buckets.
//! - **dense**: one `u8` per bucket over the series' window of indexes, chosen as soon as it is
//!   smaller than the next sparse table (busy series). A dense entry whose counts keep passing
//!   255 becomes *wide*: its region holds a second, high byte per bucket after the low bytes,
//!   so a very busy series costs two bytes per bucket, never more.
//!
//! Counts stay exact: a count that wraps (a dense low byte past 255 in a narrow entry, a wide
//! entry's high byte past 255, a sparse `u16` past 65,535) restarts from zero and leaves one
//! record `(entry, index, worth)` in the slot's spill list, worth 256 or 65,536. A narrow
//! entry widens after [`MAX_WRAPS`] such records, so the list holds at most that many records
//! worth 256 per entry, plus one per 65,536 spans of one bucket. Carries run off the hot path:
//! a span costs one byte increment and one predictable comparison.
//!
//! Each entry starts in the form and size the same series ended the previous slot on this
//! parity with (wide only if that slot needed the high bytes), so in steady state regions do
//! not grow and the arena holds no garbage.
//!
//! Regions are never freed one by one: growing a region appends a new one and abandons the old
//! (at most as large as the new one, so at most half the arena is garbage). The whole arena is
//! handed to the closer when the slot ends and freed there (the spill list sorted by entry, so
//! the closer finds each entry's records at once); the next slot on this parity starts with
//! one allocation of the previous slot's size. So a series that stops sending costs nothing
//! here one slot later, and the hot path allocates only when a region outgrows the reserve.

use crate::history::Agg;
use crate::registry::SeriesId;
use slogate_sketch::{MAX_INDEX, bucket_index};
use std::mem::size_of;

const NONE: u32 = u32::MAX;
/// Cells of a new sparse table (a power of two).
const FIRST_CELLS: usize = 8;
/// Bytes of a sparse cell: bucket index + 1 and count, two little-endian `u16`.
const CELL: usize = 4;
/// Extra buckets on the growing side of a dense window.
const DENSE_SLACK: usize = 32;
/// Spill records worth 256 a narrow dense entry may leave before it widens.
const MAX_WRAPS: u16 = 16;
/// [`Entry::wraps`] of a wide dense entry.
const WIDE: u16 = u16::MAX;

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
    /// Dense: spill records worth 256 left so far, or [`WIDE`] once the region holds `len` high
    /// bytes after its `len` low bytes. Sparse: 0.
    wraps: u16,
    pub requests: u64,
    pub errors: u64,
    pub sum: u128,
    pub min: u64,
    pub max: u64,
}

/// `1 << shift` spans of bucket `idx` of entry `p`, carried out of the arena.
#[derive(Debug, Clone, Copy)]
struct Spill {
    p: u32,
    idx: u16,
    shift: u8,
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
    arena: Vec<u8>,
    spill: Vec<Spill>,
    /// `spill` is sorted by entry (from the hand-over on).
    sorted: bool,
}

pub(crate) const NO_SLOT: u64 = u64::MAX;

impl OpenSlot {
    pub const fn new() -> Self {
        OpenSlot {
            slot: NO_SLOT,
            pos: Vec::new(),
            hints: Vec::new(),
            parts: Parts {
                entries: Vec::new(),
                arena: Vec::new(),
                spill: Vec::new(),
                sorted: false,
            },
            peak: (0, 0),
        }
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
        for p in 0..self.parts.entries.len() {
            let id = self.parts.entries[p].id as usize;
            self.pos[id] = NONE;
            let hint = self.parts.hint(p);
            self.hints[id] = hint.0;
            live += hint.region();
        }
        // The next slot starts every entry at its final size, so it needs no room for garbage.
        self.peak = (live, self.parts.entries.len());
        self.parts.spill.sort_unstable_by_key(|s| s.p);
        self.parts.sorted = true;
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

    /// Records one span of series `id` that stands for `count` spans (1 unless sampled): the
    /// counts grow by `count`, the sketch by one value.
    // HOT PATH
    #[inline]
    pub fn record(&mut self, id: SeriesId, error: bool, v: u64, count: u64) {
        let p = match self.pos.get(id as usize) {
            Some(&p) if p != NONE => p as usize,
            _ => self.add_entry(id),
        };
        let parts = &mut self.parts;
        let e = &mut parts.entries[p];
        e.requests += count;
        e.errors += count * u64::from(error);
        e.sum += u128::from(v);
        e.min = e.min.min(v);
        e.max = e.max.max(v);
        let idx = bucket_index(v);
        if e.cells == 0 {
            let off = usize::from(idx).wrapping_sub(usize::from(e.lo));
            let cell = if off < usize::from(e.len) {
                e.off as usize + off
            } else {
                parts.grow_dense(p, idx)
            };
            let c = &mut parts.arena[cell];
            if *c == u8::MAX {
                parts.carry(p, cell, idx);
            } else {
                *c += 1;
            }
        } else {
            let cell = parts.sparse_cell(p, idx);
            // `DENSIFIED`: the table turned dense and the span is counted there.
            if cell != DENSIFIED {
                let c = read16(&parts.arena, cell);
                if c == u16::MAX {
                    write16(&mut parts.arena, cell, 0);
                    parts.spill.push(Spill {
                        p: p as u32,
                        idx,
                        shift: 16,
                    });
                } else {
                    write16(&mut parts.arena, cell, c + 1);
                }
            }
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
        let (lo, len, cells, wraps) = hint.form();
        let off = parts.alloc(hint.region());
        parts.entries.push(Entry {
            id,
            off,
            lo,
            len,
            cells,
            wraps,
            requests: 0,
            errors: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
        });
        self.pos[id as usize] = p as u32;
        p
    }

    /// Heap bytes held (capacities).
    pub fn heap_bytes(&self) -> usize {
        (self.pos.capacity() + self.hints.capacity()) * size_of::<u32>() + self.parts.heap_bytes()
    }
}

/// What [`Parts::sparse_cell`] returns when the table turned dense and counted the span itself.
const DENSIFIED: usize = usize::MAX;

#[inline(always)]
fn read16(arena: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([arena[at], arena[at + 1]])
}

#[inline(always)]
fn write16(arena: &mut [u8], at: usize, v: u16) {
    arena[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

/// An entry's form packed in a `u32`: `0` = none seen yet, a sparse table's cell count, or
/// `DENSE | WIDE? | lo << 16 | len` for a dense window.
#[derive(Debug, Clone, Copy)]
struct Hint(u32);

impl Hint {
    const DENSE: u32 = 1 << 31;
    const WIDE: u32 = 1 << 30;

    /// Arena bytes of a region of this form.
    fn region(self) -> usize {
        let (_, len, cells, wraps) = self.form();
        if cells == 0 {
            usize::from(len) * if wraps == WIDE { 2 } else { 1 }
        } else {
            CELL * usize::from(cells)
        }
    }

    /// `(lo, len, cells, wraps)` of a new entry.
    fn form(self) -> (u16, u16, u16, u16) {
        match self.0 {
            0 => (0, 0, FIRST_CELLS as u16, 0),
            h if h & Self::DENSE != 0 => (
                ((h >> 16) & 0x3fff) as u16,
                h as u16,
                0,
                if h & Self::WIDE != 0 { WIDE } else { 0 },
            ),
            h => (0, 0, h as u16, 0),
        }
    }
}

impl Parts {
    /// The form entry `p` ended the slot in, for the same series' entry in a later slot.
    fn hint(&self, p: usize) -> Hint {
        let e = &self.entries[p];
        if e.cells == 0 {
            // The range the slot used plus slack, not the window it grew to: growth slack would
            // otherwise ratchet the window wider slot after slot.
            let lo = usize::from(bucket_index(e.min)).saturating_sub(DENSE_SLACK);
            let hi = (usize::from(bucket_index(e.max)) + DENSE_SLACK).min(usize::from(MAX_INDEX));
            // Wide again only if this slot carried into the high bytes.
            let (off, len) = (e.off as usize, usize::from(e.len));
            let wide =
                e.wraps == WIDE && self.arena[off + len..off + 2 * len].iter().any(|&h| h != 0);
            Hint(
                Hint::DENSE
                    | if wide { Hint::WIDE } else { 0 }
                    | (lo as u32) << 16
                    | (hi - lo + 1) as u32,
            )
        } else {
            // A table more than half full would have grown at once: start one size up.
            // (Tables never pass 1,024 cells: a dense window of all 7,424 buckets is smaller.)
            let cells = if usize::from(e.len) * 2 > usize::from(e.cells) {
                (e.cells * 2).min(4096)
            } else {
                e.cells
            };
            Hint(u32::from(cells))
        }
    }

    /// Appends a zeroed region of `n` bytes; returns its offset.
    fn alloc(&mut self, n: usize) -> u32 {
        let off = self.arena.len();
        if self.arena.capacity() < off + n {
            // Grow by an eighth rather than double: the slot started with last slot's size
            // reserved, so this is a little more traffic, not a new order of magnitude.
            self.arena.reserve_exact(n.max(off / 8).max(512));
        }
        self.arena.resize(off + n, 0);
        off as u32
    }

    /// The low byte at `cell` of dense entry `p` wrapped (it holds 255 and counts one more):
    /// zeroes it and carries 256 into the high byte, or into a spill record.
    #[cold]
    #[inline(never)]
    fn carry(&mut self, p: usize, cell: usize, idx: u16) {
        self.arena[cell] = 0;
        let e = &mut self.entries[p];
        if e.wraps == WIDE {
            let high = &mut self.arena[cell + usize::from(e.len)];
            if *high == u8::MAX {
                *high = 0;
                self.spill.push(Spill {
                    p: p as u32,
                    idx,
                    shift: 16,
                });
            } else {
                *high += 1;
            }
            return;
        }
        self.spill.push(Spill {
            p: p as u32,
            idx,
            shift: 8,
        });
        e.wraps += 1;
        if e.wraps >= MAX_WRAPS {
            self.widen(p);
        }
    }

    /// Gives narrow dense entry `p` a high byte per bucket (its spill records stay valid).
    fn widen(&mut self, p: usize) {
        let e = &self.entries[p];
        let (off, len) = (e.off as usize, usize::from(e.len));
        if off + len == self.arena.len() {
            // The newest region: the high bytes go right after it.
            self.alloc(len);
        } else {
            let new = self.alloc(2 * len) as usize;
            self.arena.copy_within(off..off + len, new);
            self.entries[p].off = new as u32;
        }
        self.entries[p].wraps = WIDE;
    }

    /// Arena position of bucket `idx`'s count (a `u16`) in sparse entry `p`, inserting the
    /// bucket (and growing the table) when it is new; [`DENSIFIED`] when the table turned
    /// dense instead and the span is counted.
    #[inline]
    fn sparse_cell(&mut self, p: usize, idx: u16) -> usize {
        let e = &self.entries[p];
        let (off, cells) = (e.off as usize, usize::from(e.cells));
        let key = idx + 1;
        let mask = cells - 1;
        let mut i = hash(idx) & mask;
        loop {
            let k = read16(&self.arena, off + CELL * i);
            if k == key {
                return off + CELL * i + 2;
            }
            if k == 0 {
                break;
            }
            i = (i + 1) & mask;
        }
        if (usize::from(e.len) + 1) * 4 <= cells * 3 {
            write16(&mut self.arena, off + CELL * i, key);
            self.entries[p].len += 1;
            return off + CELL * i + 2;
        }
        self.grow_sparse(p, idx)
    }

    /// The sparse table of entry `p` is three quarters full: doubles it, or turns it dense when a dense
    /// window over the entry's range is smaller. Returns what [`Parts::sparse_cell`] does.
    #[cold]
    #[inline(never)]
    fn grow_sparse(&mut self, p: usize, idx: u16) -> usize {
        let e = &self.entries[p];
        let (off, cells) = (e.off as usize, usize::from(e.cells));
        // min and max already include the value being recorded.
        let (first, last) = (bucket_index(e.min), bucket_index(e.max));
        let width = usize::from(last - first) + 1;
        // Counts past 255 need the high bytes of a wide window.
        let wide = (0..cells).any(|i| read16(&self.arena, off + CELL * i + 2) > u16::from(u8::MAX));
        let bytes = (width + 2 * DENSE_SLACK) * if wide { 2 } else { 1 };
        if bytes <= 2 * CELL * cells || cells * 2 > usize::from(u16::MAX) {
            let lo = usize::from(first).saturating_sub(DENSE_SLACK);
            let hi = (usize::from(last) + DENSE_SLACK).min(usize::from(MAX_INDEX));
            let len = hi - lo + 1;
            let new = self.alloc(len * if wide { 2 } else { 1 }) as usize;
            for i in 0..cells {
                let (k, c) = (
                    read16(&self.arena, off + CELL * i),
                    read16(&self.arena, off + CELL * i + 2),
                );
                if k != 0 {
                    let at = new + usize::from(k - 1) - lo;
                    let [low, high] = c.to_le_bytes();
                    self.arena[at] = low;
                    if wide {
                        self.arena[at + len] = high;
                    }
                }
            }
            let e = &mut self.entries[p];
            (e.off, e.lo, e.len, e.cells, e.wraps) = (
                new as u32,
                lo as u16,
                len as u16,
                0,
                if wide { WIDE } else { 0 },
            );
            let cell = new + usize::from(idx) - lo;
            if self.arena[cell] == u8::MAX {
                self.carry(p, cell, idx);
            } else {
                self.arena[cell] += 1;
            }
            return DENSIFIED;
        }
        let new_cells = cells * 2;
        let new = self.alloc(CELL * new_cells) as usize;
        let mask = new_cells - 1;
        let mut used = 0u16;
        for i in 0..cells {
            let (k, c) = (
                read16(&self.arena, off + CELL * i),
                read16(&self.arena, off + CELL * i + 2),
            );
            if k != 0 {
                let mut j = hash(k - 1) & mask;
                while read16(&self.arena, new + CELL * j) != 0 {
                    j = (j + 1) & mask;
                }
                write16(&mut self.arena, new + CELL * j, k);
                write16(&mut self.arena, new + CELL * j + 2, c);
                used += 1;
            }
        }
        let e = &mut self.entries[p];
        (e.off, e.len, e.cells) = (new as u32, used, new_cells as u16);
        self.sparse_cell(p, idx)
    }

    /// `idx` is outside dense entry `p`'s window: moves it to a wider one. Returns the cell
    /// (of the low byte).
    #[cold]
    #[inline(never)]
    fn grow_dense(&mut self, p: usize, idx: u16) -> usize {
        let e = &self.entries[p];
        let (off, lo, len, wide) = (
            e.off as usize,
            usize::from(e.lo),
            usize::from(e.len),
            e.wraps == WIDE,
        );
        let pad = DENSE_SLACK.max(len / 4);
        let idx_u = usize::from(idx);
        let new_lo = if idx_u < lo {
            idx_u.saturating_sub(pad)
        } else {
            lo
        };
        let new_hi = if idx_u >= lo + len {
            (idx_u + pad).min(usize::from(MAX_INDEX))
        } else {
            lo + len - 1
        };
        let new_len = new_hi - new_lo + 1;
        if !wide && new_lo == lo && off + len == self.arena.len() {
            // The newest region grows upwards in place.
            self.alloc(new_len - len);
            self.entries[p].len = new_len as u16;
            return off + idx_u - lo;
        }
        let new = self.alloc(new_len * if wide { 2 } else { 1 }) as usize;
        self.arena.copy_within(off..off + len, new + lo - new_lo);
        if wide {
            self.arena
                .copy_within(off + len..off + 2 * len, new + new_len + lo - new_lo);
        }
        let e = &mut self.entries[p];
        (e.off, e.lo, e.len) = (new as u32, new_lo as u16, new_len as u16);
        new + idx_u - new_lo
    }

    /// Spill records of entry `p`.
    fn spills(&self, p: usize) -> impl Iterator<Item = &Spill> + '_ {
        let p = p as u32;
        let list = if self.sorted {
            let start = self.spill.partition_point(|s| s.p < p);
            let end = start + self.spill[start..].partition_point(|s| s.p == p);
            &self.spill[start..end]
        } else {
            &self.spill[..]
        };
        list.iter().filter(move |s| s.p == p)
    }

    /// Non-empty buckets of entry `p` as `(index, count)`, spilled counts included, in no
    /// particular order.
    pub fn buckets(&self, p: usize) -> impl Iterator<Item = (u16, u64)> + '_ {
        let e = &self.entries[p];
        let off = e.off as usize;
        let len = usize::from(e.len);
        let (low, high, sparse): (&[u8], &[u8], &[u8]) = if e.cells == 0 {
            let high: &[u8] = if e.wraps == WIDE {
                &self.arena[off + len..off + 2 * len]
            } else {
                &[]
            };
            (&self.arena[off..off + len], high, &[])
        } else {
            (
                &[],
                &[],
                &self.arena[off..off + CELL * usize::from(e.cells)],
            )
        };
        let lo = e.lo;
        let dense = low
            .iter()
            .enumerate()
            .map(move |(i, &c)| {
                (
                    lo + i as u16,
                    u64::from(c) | u64::from(high.get(i).copied().unwrap_or(0)) << 8,
                )
            })
            .filter(|(_, c)| *c != 0);
        let sparse = sparse
            .chunks_exact(CELL)
            .map(|c| {
                (
                    u16::from_le_bytes([c[0], c[1]]),
                    u16::from_le_bytes([c[2], c[3]]),
                )
            })
            .filter(|(k, c)| *k != 0 && *c != 0)
            .map(|(k, c)| (k - 1, u64::from(c)));
        let spill = self.spills(p).map(|s| (s.idx, 1u64 << s.shift));
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
        self.entries.capacity() * size_of::<Entry>()
            + self.arena.capacity()
            + self.spill.capacity() * size_of::<Spill>()
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
            open.record(id, i % 3 == 0, v, 1);
            mine[i % 2].push((v, i % 3 == 0));
        }
        for (k, id) in [0 as SeriesId, 5].into_iter().enumerate() {
            let want = reference(&mine[k]);
            let Some(e) = open.entry(id) else {
                assert!(mine[k].is_empty(), "{name}");
                continue;
            };
            assert_eq!(e.requests, mine[k].len() as u64, "{name}");
            assert_eq!(
                e.errors,
                mine[k].iter().filter(|(_, err)| *err).count() as u64,
                "{name}"
            );
            let mut got = Agg::default();
            open.merge_series(id, &mut got);
            assert_eq!((got.requests, got.errors), (e.requests, e.errors), "{name}");
            assert_eq!(got.sketch, want, "{name} series {id}");
            assert_eq!(
                Sketch::decode(&got.sketch.encoded()),
                Ok(want),
                "{name}: stays a valid encoding"
            );
        }
    }

    #[test]
    fn sparse_dense_and_spill_forms_count_exactly() {
        let lognormal: Vec<u64> = (0..5_000u64)
            .map(|i| 1_000_000 + (i * 7919 % 997) * (i % 13 + 1) * 40_000)
            .collect();
        let cases: &[(&str, Vec<u64>)] = &[
            ("one value", vec![42]),
            (
                "a few spread values",
                vec![1, 1_000, 1_000_000, 1_000_000_000, u64::MAX, 0],
            ),
            (
                "sparse table grows",
                (0..40u64).map(|i| 1_000_000 + i * 20_000).collect(),
            ),
            ("turns dense", lognormal.clone()),
            (
                "dense grows down then up",
                [&lognormal[..], &[3, 10_000_000_000_000]].concat(),
            ),
            ("u16 counts spill", vec![5_000_000; 2 * 70_000 + 3]),
            (
                "spill in a dense window",
                [
                    vec![9_000; 140_000],
                    (0..600u64).map(|i| 9_000 + i * 97).collect(),
                ]
                .concat(),
            ),
            // 2 * 1_000 spans in one bucket of a dense window: a few carries worth 256.
            (
                "u8 counts carry",
                [lognormal.clone(), vec![7_000_000; 2_000]].concat(),
            ),
            // 2 * 70_000: carries worth 256 until the entry widens, then high bytes, then a
            // record worth 65,536; then the wide window grows down and up.
            (
                "dense window widens",
                [
                    lognormal.clone(),
                    vec![7_000_000; 140_000],
                    vec![3, 10_000_000_000_000],
                ]
                .concat(),
            ),
            // A sparse table with counts past 255 turns into a wide dense window.
            (
                "sparse counts past 255 turn wide",
                [
                    vec![9_000; 1_000],
                    (0..600u64).map(|i| 9_000 + i * 97).collect(),
                ]
                .concat(),
            ),
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
            open.record((i % 4) as SeriesId, false, 1_000 + i * 1_000, 1);
        }
        let busy = open.heap_bytes();
        let (slot, parts) = open.take();
        assert_eq!((slot, parts.entries.len(), open.slot), (3, 4, NO_SLOT));
        assert!(open.entry(1).is_none());
        assert!(
            open.heap_bytes() < busy / 2,
            "{} of {busy} bytes kept after the hand-over",
            open.heap_bytes()
        );
        // The next slot reserves what this one used, so recording the same again allocates
        // no more arena.
        open.start(5);
        let reserved = open.parts.arena.capacity();
        for i in 0..1_000u64 {
            open.record((i % 4) as SeriesId, false, 1_000 + i * 1_000, 1);
        }
        assert_eq!(open.parts.arena.capacity(), reserved);
    }

    #[test]
    fn wide_entries_start_wide_only_while_needed() {
        // A busy series widens in slot 1, starts wide in slot 3 (same parity) and counts exactly
        // there; after a light slot it starts narrow again.
        let spread = |i: u64| 2_000_000 + i * 7_919 % 3_000_000;
        let mut open = OpenSlot::new();
        for (slot, hot) in [(1u64, 100_000usize), (3, 100_000), (5, 10), (7, 10)] {
            open.start(slot);
            let mut want = Sketch::new();
            for i in 0..3_000u64 {
                open.record(4, false, spread(i), 1);
                want.record(spread(i));
            }
            let e = open.entry(4).unwrap();
            assert_eq!(e.cells, 0, "slot {slot}: dense");
            assert_eq!(
                e.wraps == WIDE,
                slot == 3 || slot == 5,
                "slot {slot}: starts wide only after a slot that carried into high bytes"
            );
            for _ in 0..hot {
                open.record(4, false, 3_500_000, 1);
                want.record(3_500_000);
            }
            assert_eq!(
                open.entry(4).unwrap().wraps == WIDE,
                slot != 7,
                "slot {slot}: wide at the end"
            );
            let (_, parts) = open.take();
            let mut got = Agg::default();
            parts.merge_into(0, &mut got);
            assert_eq!(
                (got.requests, &got.sketch),
                (want.count(), &want),
                "slot {slot}"
            );
        }
    }
}
