//! One series' closed slots: a fine ring and a coarse ring of encoded sketches.
//!
//! Nothing here is decoded between queries: a slot is sealed (encoded) once, when the closer
//! has merged every shard's part of it, and the coarse slot it belongs to is re-encoded with it
//! merged in. Only a part that arrives after its slot was sealed (a lagging flush) or a coarse
//! slot being extended decodes a stored sketch, into the closer's reusable scratch.

use slogate_sketch::Sketch;
use std::collections::VecDeque;
use std::mem::size_of;

/// Requests, errors and latency of one series over some span of time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Agg {
    pub requests: u64,
    pub errors: u64,
    pub sketch: Sketch,
}

impl Agg {
    pub fn clear(&mut self) {
        self.requests = 0;
        self.errors = 0;
        self.sketch.clear();
    }
}

/// A sealed slot: counts and the encoded sketch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosedSlot {
    pub slot: u64,
    pub requests: u64,
    pub errors: u64,
    pub sketch: Box<[u8]>,
}

impl ClosedSlot {
    pub fn merge_into(&self, agg: &mut Agg) {
        agg.requests += self.requests;
        agg.errors += self.errors;
        // Stored sketches were encoded by this process or validated on import.
        agg.sketch.merge_encoded_trusted(&self.sketch);
    }

    fn heap_bytes(&self) -> usize {
        self.sketch.len()
    }
}

/// Reusable buffers of the code that seals slots (the closer, or a lagging writer).
#[derive(Debug, Default)]
pub struct Scratch {
    merged: Sketch,
    bytes: Vec<u8>,
}

impl Scratch {
    pub fn heap_bytes(&self) -> usize {
        self.merged.heap_bytes() + self.bytes.capacity()
    }

    /// `bytes` merged with `agg`, encoded.
    fn merged_with(&mut self, bytes: &[u8], agg: &Agg) -> Box<[u8]> {
        self.merged.clear();
        self.merged.merge_encoded_trusted(bytes);
        self.merged.merge(&agg.sketch);
        self.bytes.clear();
        self.merged.encode(&mut self.bytes);
        self.bytes.as_slice().into()
    }
}

/// A ring of sealed slots, oldest first.
#[derive(Debug, Default)]
pub struct Ring {
    pub sealed: VecDeque<ClosedSlot>,
}

impl Ring {
    /// Adds `agg` (encoded as `bytes`) to slot `slot`: a new slot, or merged into a stored one.
    fn add(&mut self, slot: u64, agg: &Agg, bytes: &[u8], keep: u64, scratch: &mut Scratch) {
        match self.sealed.back_mut() {
            Some(last) if last.slot == slot => {
                last.sketch = scratch.merged_with(&last.sketch, agg);
                last.requests += agg.requests;
                last.errors += agg.errors;
            }
            Some(last) if last.slot > slot => {
                match self.sealed.binary_search_by_key(&slot, |c| c.slot) {
                    Ok(i) => {
                        let c = &mut self.sealed[i];
                        c.sketch = scratch.merged_with(&c.sketch, agg);
                        c.requests += agg.requests;
                        c.errors += agg.errors;
                    }
                    Err(i) => self.sealed.insert(
                        i,
                        ClosedSlot {
                            slot,
                            requests: agg.requests,
                            errors: agg.errors,
                            sketch: bytes.into(),
                        },
                    ),
                }
            }
            _ => self.sealed.push_back(ClosedSlot {
                slot,
                requests: agg.requests,
                errors: agg.errors,
                sketch: bytes.into(),
            }),
        }
        let newest = self.sealed.back().map_or(slot, |c| c.slot);
        while self.sealed.front().is_some_and(|c| c.slot + keep <= newest) {
            self.sealed.pop_front();
        }
    }

    /// The first slot `>= first` that has requests.
    pub fn first_with_data(&self, first: u64) -> Option<u64> {
        let start = self.sealed.partition_point(|c| c.slot < first);
        self.sealed
            .range(start..)
            .find(|c| c.requests > 0)
            .map(|c| c.slot)
    }

    /// Merges every slot in `[first, end)` into `out`.
    pub(crate) fn collect(&self, first: u64, end: u64, out: &mut Agg) {
        let start = self.sealed.partition_point(|c| c.slot < first);
        for c in self.sealed.range(start..).take_while(|c| c.slot < end) {
            c.merge_into(out);
        }
    }

    pub fn heap_bytes(&self) -> usize {
        self.sealed.capacity() * size_of::<ClosedSlot>()
            + self
                .sealed
                .iter()
                .map(ClosedSlot::heap_bytes)
                .sum::<usize>()
    }
}

/// The closed history of one series.
#[derive(Debug, Default)]
pub struct History {
    pub fine: Ring,
    pub coarse: Ring,
    /// `(close pass, slot)` of the last staged part sealed into this history: a query reads
    /// staged parts after it from the registry's staging area, the rest from here.
    pub applied: (u64, u64),
}

/// Ring geometry, from the window configuration.
#[derive(Debug, Clone, Copy)]
pub struct Geometry {
    pub slot_seconds: u64,
    pub fine_keep: u64,
    pub coarse_seconds: u64,
    pub coarse_keep: u64,
}

impl History {
    /// Adds one closed part of fine slot `slot` (all shards' parts merged, or a late one),
    /// already encoded as `bytes`.
    pub fn add(&mut self, slot: u64, agg: &Agg, bytes: &[u8], g: Geometry, scratch: &mut Scratch) {
        self.fine.add(slot, agg, bytes, g.fine_keep, scratch);
        self.coarse.add(
            slot * g.slot_seconds / g.coarse_seconds,
            agg,
            bytes,
            g.coarse_keep,
            scratch,
        );
    }

    /// Merges every fine slot `>= first_slot` into `out`. Every fine slot is also in its coarse
    /// slot, so the fine slots from the first whole coarse slot on are read from the coarse
    /// ring: a 10-minute window merges at most 29 fine and 3 coarse slots instead of 60. (A
    /// fine slot not sealed yet is in neither ring but in the shards, so nothing counts twice.)
    pub fn collect_fine(&self, first_slot: u64, g: Geometry, out: &mut Agg) {
        // Only when fine slots map onto coarse slots exactly and the coarse ring keeps at least
        // as long as the fine one (both checked by the configuration, not by `WindowConfig`).
        let exact = g.coarse_seconds.is_multiple_of(g.slot_seconds)
            && g.coarse_keep.saturating_mul(g.coarse_seconds)
                >= g.fine_keep.saturating_mul(g.slot_seconds);
        if !exact {
            self.fine.collect(first_slot, u64::MAX, out);
            return;
        }
        let per_coarse = g.coarse_seconds / g.slot_seconds;
        let first_coarse = first_slot.div_ceil(per_coarse);
        self.fine
            .collect(first_slot, first_coarse.saturating_mul(per_coarse), out);
        self.coarse.collect(first_coarse, u64::MAX, out);
    }

    pub fn collect_coarse(&self, first_coarse_slot: u64, out: &mut Agg) {
        self.coarse.collect(first_coarse_slot, u64::MAX, out);
    }

    pub fn heap_bytes(&self) -> usize {
        self.fine.heap_bytes() + self.coarse.heap_bytes()
    }

    /// The newest slot that has data, if any.
    pub fn last_slot(&self) -> Option<u64> {
        self.fine.sealed.back().map(|c| c.slot)
    }
}
