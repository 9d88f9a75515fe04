//! One series' closed slots: a fine ring and a coarse ring of encoded sketches.

use slogate_sketch::Sketch;
use std::collections::VecDeque;

/// Requests, errors and latency of one series over some span of time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Agg {
    pub requests: u64,
    pub errors: u64,
    pub sketch: Sketch,
}

impl Agg {
    pub fn merge(&mut self, other: &Agg) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.sketch.merge(&other.sketch);
    }
    pub fn clear(&mut self) {
        self.requests = 0;
        self.errors = 0;
        self.sketch.clear();
    }
    fn seal(&self, slot: u64) -> ClosedSlot {
        ClosedSlot { slot, requests: self.requests, errors: self.errors, sketch: self.sketch.encoded().into_boxed_slice() }
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
        agg.sketch.merge_encoded(&self.sketch).expect("sketches encoded by this process decode");
    }
    fn merge_from(&mut self, agg: &Agg) {
        let mut sk = Sketch::decode(&self.sketch).expect("sketches encoded by this process decode");
        sk.merge(&agg.sketch);
        self.requests += agg.requests;
        self.errors += agg.errors;
        self.sketch = sk.encoded().into_boxed_slice();
    }
}

/// A ring of sealed slots plus the slot being assembled (shards flush into it one by one).
#[derive(Debug, Default)]
pub struct Ring {
    pub sealed: VecDeque<ClosedSlot>,
    pub open: Option<(u64, Agg)>,
}

impl Ring {
    fn add(&mut self, slot: u64, agg: &Agg, keep: u64) {
        match &mut self.open {
            Some((s, open)) if *s == slot => open.merge(agg),
            Some((s, open)) if *s < slot => {
                self.sealed.push_back(open.seal(*s));
                open.clear();
                open.merge(agg);
                *s = slot;
            }
            Some(_) => {
                // A late flush for a slot that is already sealed: merge it there, never drop it.
                match self.sealed.binary_search_by_key(&slot, |c| c.slot) {
                    Ok(i) => self.sealed[i].merge_from(agg),
                    Err(i) => self.sealed.insert(i, agg.seal(slot)),
                }
            }
            None => self.open = Some((slot, agg.clone())),
        }
        let newest = self.open.as_ref().map_or(slot, |(s, _)| *s);
        while self.sealed.front().is_some_and(|c| c.slot + keep <= newest) {
            self.sealed.pop_front();
        }
    }

    /// Merges every slot `>= first` into `out`.
    fn collect(&self, first: u64, out: &mut Agg) {
        let start = self.sealed.partition_point(|c| c.slot < first);
        for c in self.sealed.range(start..) {
            c.merge_into(out);
        }
        if let Some((s, open)) = &self.open {
            if *s >= first {
                out.merge(open);
            }
        }
    }

    fn heap_bytes(&self) -> usize {
        self.sealed.iter().map(|c| c.sketch.len() + std::mem::size_of::<ClosedSlot>()).sum::<usize>()
            + self.open.as_ref().map_or(0, |(_, a)| a.sketch.heap_bytes() + std::mem::size_of::<Agg>())
    }
}

/// The closed history of one series.
#[derive(Debug, Default)]
pub struct History {
    pub fine: Ring,
    pub coarse: Ring,
}

impl History {
    /// Adds one shard's aggregate for `slot` (fine slot number).
    pub fn add(&mut self, slot: u64, agg: &Agg, slot_seconds: u64, fine_keep: u64, coarse_seconds: u64, coarse_keep: u64) {
        self.fine.add(slot, agg, fine_keep);
        self.coarse.add(slot * slot_seconds / coarse_seconds, agg, coarse_keep);
    }

    pub fn collect_fine(&self, first_slot: u64, out: &mut Agg) {
        self.fine.collect(first_slot, out);
    }

    pub fn collect_coarse(&self, first_coarse_slot: u64, out: &mut Agg) {
        self.coarse.collect(first_coarse_slot, out);
    }

    pub fn heap_bytes(&self) -> usize {
        self.fine.heap_bytes() + self.coarse.heap_bytes()
    }

    /// The newest slot that has data, if any.
    pub fn last_slot(&self) -> Option<u64> {
        self.fine.open.as_ref().map(|(s, _)| *s)
    }
}
