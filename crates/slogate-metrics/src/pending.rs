//! Bucket increments of a stream's open cell, held aside and folded into the cell's encoded
//! sketch in batches.
//!
//! Recording a histogram point straight into the encoded sketch means decoding it, adding the
//! buckets and encoding it again: most of a point's cost. Instead each stream keeps one
//! [`Pending`]: a `(sketch value, count)` accumulator per bucket *position* of the stream's
//! layout (explicit bucket `i`, or exponential bucket `lo + i` at one scale), whose values are
//! the cached bucket representatives, so a point only adds counts. It is folded into the cell
//! ([`fold`]) when the stream moves to another slot, when its layout changes, when the spill
//! list fills, and when the slot is exported; queries read it as it is ([`Pending::record_into`]),
//! so every acknowledged point is visible.
//!
//! The fold merges the held increments with the cell's bytes directly in the `slogate-sketch`
//! byte format (documented and canonical), with no `Sketch` in between: the result is the very
//! bytes `Sketch::encode` gives for the same values (see the tests), so nothing downstream can
//! tell the difference.
//!
//! Memory: one accumulator per stream, 16 bytes per bucket position, positions
//! capped at [`MAX_POSITIONS`]; the spill list holds at most [`SPILL_CAP`] entries.

use crate::config::Scale;
use crate::stream::{Cell, exp_rep, explicit_rep};
use slogate_sketch::{FORMAT_VERSION, Sketch, bucket_index};
use std::cell::RefCell;

/// Spilled increments held before a fold.
pub(crate) const SPILL_CAP: usize = 32;
/// Bucket positions a layout caches at most; wider histograms record through the spill list.
pub(crate) const MAX_POSITIONS: usize = 256;
/// How far an exponential layout may reach beyond the point that rebuilt it (in buckets), so a
/// range that drifts a little does not rebuild it on every point.
const EXP_SLACK: i64 = 32;

/// What the positions of [`Pending::reps`] stand for.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// Nothing cached: the next point builds a layout.
    #[default]
    None,
    /// Explicit buckets `0..len` of the stream's bounds (`Data::bounds`, which resets the
    /// layout when it changes). Inner buckets hold their representative; the edge buckets'
    /// depend on each point's min and max, and are replaced (spilling the old) when they move.
    Explicit { len: u32, cached: bool },
    /// Exponential buckets `lo..lo + len` at `scale`.
    Exponential {
        scale: i32,
        lo: i32,
        len: u32,
        cached: bool,
    },
}

/// Increments of one cell not yet in its encoded sketch; see the module notes.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    /// The slot of the cell the increments belong to (meaningful while `active`).
    pub slot: u64,
    /// Whether any increment is held.
    pub active: bool,
    layout: Layout,
    /// Per position: the sketch value, and the count held. Values stay when counts are
    /// folded, so a cached layout only adds counts (kept apart, so a point touches fewer cache
    /// lines). Empty when the layout is not cached (too wide, or a representative that cannot
    /// be sketched): increments then go to `spill`.
    reps: Vec<u64>,
    counts: Vec<u64>,
    /// Increments whose position held another value, in any order.
    spill: Vec<(u64, u64)>,
    /// Exponential zero-bucket count (value 0).
    zero: u64,
}

impl Pending {
    /// Where the next increments go: a prefetch hint (0 when nothing is held).
    #[inline]
    pub fn hot(&self) -> usize {
        if self.counts.is_empty() {
            0
        } else {
            self.counts.as_ptr() as usize
        }
    }

    /// Forgets the layout (the stream's explicit bounds changed); held increments stay.
    pub fn reset_layout(&mut self) {
        self.layout = Layout::None;
    }

    /// Drops the held increments (their cell was pruned).
    pub fn discard(&mut self) {
        self.counts.fill(0);
        self.spill.clear();
        self.zero = 0;
        self.active = false;
    }

    pub fn heap_bytes(&self) -> usize {
        (self.reps.capacity() + self.counts.capacity()) * size_of::<u64>()
            + self.spill.capacity() * size_of::<(u64, u64)>()
    }

    /// Adds the held increments to `sk` when they belong to the cell of `slot`.
    pub fn record_into(&self, slot: u64, sk: &mut Sketch) {
        if !self.active || self.slot != slot {
            return;
        }
        sk.record_n(0, self.zero);
        for (&v, &n) in self.reps.iter().zip(&self.counts) {
            sk.record_n(v, n);
        }
        for &(v, n) in &self.spill {
            sk.record_n(v, n);
        }
    }

    // HOT PATH: one entry update, allocation-free once the spill list has its capacity.
    #[inline]
    fn add(&mut self, bytes: &mut Vec<u8>, pos: usize, v: u64, n: u64) {
        self.active = true;
        let (r, c) = (&mut self.reps[pos], &mut self.counts[pos]);
        if *c == 0 || *r == v {
            *r = v;
            *c += n;
        } else {
            let (ov, on) = (std::mem::replace(r, v), std::mem::replace(c, n));
            self.push_spill(bytes, ov, on);
        }
    }

    fn push_spill(&mut self, bytes: &mut Vec<u8>, v: u64, n: u64) {
        self.active = true;
        if self.spill.capacity() == 0 {
            self.spill.reserve_exact(SPILL_CAP);
        }
        self.spill.push((v, n));
        if self.spill.len() >= SPILL_CAP {
            fold(bytes, self);
        }
    }

    /// Records the increments of an explicit histogram point into `cell` (count, negatives)
    /// and this accumulator (sketched values): `counts` minus `prev` (the previous cumulative
    /// counts) when given. Returns the count increase.
    // HOT PATH: with a cached layout, the inner buckets cost an add each; only the edge buckets
    // compute a representative.
    #[allow(clippy::too_many_arguments)]
    pub fn explicit(
        &mut self,
        cell: &mut Cell,
        scale: Scale,
        bounds: &[f64],
        min: Option<f64>,
        max: Option<f64>,
        counts: &[u64],
        prev: Option<&[u64]>,
    ) -> u64 {
        let len = counts.len();
        let cached = match self.layout {
            Layout::Explicit { len: l, cached } if l as usize == len => cached,
            _ => self.explicit_layout(&mut cell.sketch, scale, bounds, len),
        };
        let nb = bounds.len();
        let mut n_total = 0;
        for (i, &c) in counts.iter().enumerate() {
            let n = match prev {
                None => c,
                Some(p) => c - p[i],
            };
            if n == 0 {
                continue;
            }
            n_total += n;
            if cached && i != 0 && i < nb {
                self.active = true;
                self.counts[i] += n;
                continue;
            }
            match scale.sketch_value(explicit_rep(i, bounds, min, max)) {
                Some(v) if cached => self.add(&mut cell.sketch, i, v, n),
                Some(v) => self.push_spill(&mut cell.sketch, v, n),
                None => cell.neg += n,
            }
        }
        n_total
    }

    #[cold]
    fn explicit_layout(
        &mut self,
        bytes: &mut Vec<u8>,
        scale: Scale,
        bounds: &[f64],
        len: usize,
    ) -> bool {
        fold(bytes, self);
        self.reps.clear();
        self.counts.clear();
        let mut cached = len <= MAX_POSITIONS;
        if cached {
            self.reps.resize(len, 0);
            for i in 1..bounds.len().min(len) {
                match scale.sketch_value(explicit_rep(i, bounds, None, None)) {
                    Some(v) => self.reps[i] = v,
                    None => cached = false,
                }
            }
        }
        if cached {
            self.counts.resize(len, 0);
        } else {
            self.reps.clear();
        }
        self.layout = Layout::Explicit {
            len: u32::try_from(len).unwrap_or(u32::MAX),
            cached,
        };
        cached
    }

    /// Records the increments of an exponential histogram point at scale `es`: the zero
    /// bucket `zero` and the positive buckets `offset..` minus `prev(index)` (the previous
    /// cumulative count of that bucket) when given. Returns the count increase of the zero and
    /// positive buckets.
    // HOT PATH: with a cached layout, a bucket costs an add.
    #[allow(clippy::too_many_arguments)]
    pub fn exponential(
        &mut self,
        cell: &mut Cell,
        scale: Scale,
        es: i32,
        offset: i32,
        positive: &[u64],
        zero: u64,
        prev: Option<impl Fn(i64) -> u64>,
    ) -> u64 {
        let (plo, phi) = (i64::from(offset), i64::from(offset) + positive.len() as i64);
        let (lo, cached) = match self.layout {
            Layout::Exponential {
                scale,
                lo,
                len,
                cached,
            } if scale == es && i64::from(lo) <= plo && phi <= i64::from(lo) + i64::from(len) => {
                (i64::from(lo), cached)
            }
            _ if positive.is_empty() => (plo, false),
            _ => self.exponential_layout(&mut cell.sketch, scale, es, plo, phi),
        };
        if zero > 0 {
            self.zero += zero;
            self.active = true;
        }
        let mut n_total = zero;
        for (i, &c) in positive.iter().enumerate() {
            let idx = plo + i as i64;
            let n = match &prev {
                None => c,
                Some(p) => c - p(idx),
            };
            if n == 0 {
                continue;
            }
            n_total += n;
            if cached {
                self.active = true;
                self.counts[(idx - lo) as usize] += n;
            } else if let Some(v) = scale.sketch_value(exp_rep(es, idx)) {
                self.push_spill(&mut cell.sketch, v, n);
            }
        }
        n_total
    }

    #[cold]
    fn exponential_layout(
        &mut self,
        bytes: &mut Vec<u8>,
        scale: Scale,
        es: i32,
        plo: i64,
        phi: i64,
    ) -> (i64, bool) {
        fold(bytes, self);
        let (mut lo, mut hi) = (plo, phi);
        // Keep what the previous layout covered when it is close, so a range that moves back
        // and forth (delta points) settles on one layout.
        if let Layout::Exponential {
            scale: s,
            lo: l,
            len,
            ..
        } = self.layout
            && s == es
        {
            let l = i64::from(l);
            let (ulo, uhi) = (l.min(plo), (l + i64::from(len)).max(phi));
            if uhi - ulo <= phi - plo + EXP_SLACK {
                (lo, hi) = (ulo, uhi);
            }
        }
        let len = (hi - lo) as usize;
        self.reps.clear();
        self.counts.clear();
        let lo32 = i32::try_from(lo);
        let mut cached = len <= MAX_POSITIONS && lo32.is_ok();
        if cached {
            self.reps.resize(len, 0);
            for (j, r) in self.reps.iter_mut().enumerate() {
                match scale.sketch_value(exp_rep(es, lo + j as i64)) {
                    Some(v) => *r = v,
                    None => cached = false,
                }
            }
        }
        if cached {
            self.counts.resize(len, 0);
        } else {
            self.reps.clear();
        }
        // Only a cached layout's `lo` and `len` need to be exact.
        self.layout = Layout::Exponential {
            scale: es,
            lo: lo32.unwrap_or(i32::MIN),
            len: u32::try_from(len).unwrap_or(u32::MAX),
            cached,
        };
        (lo, cached)
    }
}

/// Scratch lists of the fold, per thread, so folding allocates nothing once they have grown.
#[derive(Default)]
struct FoldScratch {
    /// The held increments as `(bucket index, count)`.
    new: Vec<(u16, u64)>,
    /// The cell's current buckets.
    old: Vec<(u16, u64)>,
    /// Both merged.
    out: Vec<(u16, u64)>,
}

thread_local! {
    static FOLD: RefCell<FoldScratch> = RefCell::new(FoldScratch::default());
}

/// Count, sum, min and max of a set of values.
#[derive(Clone, Copy)]
struct Stats {
    count: u64,
    sum: u128,
    min: u64,
    max: u64,
}

impl Stats {
    const EMPTY: Stats = Stats {
        count: 0,
        sum: 0,
        min: u64::MAX,
        max: 0,
    };

    #[inline]
    fn add(&mut self, v: u64, n: u64) {
        self.count = self.count.wrapping_add(n);
        self.sum = self.sum.wrapping_add(u128::from(v) * u128::from(n));
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }
}

/// Folds the increments `p` holds into `bytes` (an encoded sketch, or empty for none) and
/// empties `p`. The bytes are exactly those `Sketch::encode` gives for the union of the values;
/// untouched when `p` holds nothing.
pub(crate) fn fold(bytes: &mut Vec<u8>, p: &mut Pending) {
    if !p.active {
        return;
    }
    p.active = false;
    FOLD.with(|f| {
        let f = &mut *f.borrow_mut();
        let mut add = Stats::EMPTY;
        f.new.clear();
        let zero = std::mem::take(&mut p.zero);
        // Representatives come in bucket order (explicit and exponential ones grow with the
        // position), except the spilled ones: usually sorted already. Neighbours may share a
        // sketch bucket.
        let mut sorted = true;
        let mut push = |v: u64, n: u64| {
            add.add(v, n);
            let idx = bucket_index(v);
            match f.new.last_mut() {
                Some(l) if l.0 == idx => l.1 = l.1.wrapping_add(n),
                l => {
                    sorted &= l.is_none_or(|l| l.0 < idx);
                    f.new.push((idx, n));
                }
            }
        };
        if zero > 0 {
            push(0, zero);
        }
        for (&v, n) in p.reps.iter().zip(p.counts.iter_mut()) {
            if *n > 0 {
                push(v, std::mem::take(n));
            }
        }
        for &(v, n) in &p.spill {
            if n > 0 {
                push(v, n);
            }
        }
        p.spill.clear();
        if add.count == 0 {
            return;
        }
        if !sorted {
            f.new.sort_unstable_by_key(|e| e.0);
            f.new.dedup_by(|e, kept| {
                let same = e.0 == kept.0;
                if same {
                    kept.1 = kept.1.wrapping_add(e.1);
                }
                same
            });
        }
        let (total, buckets) = match decode(bytes, &mut f.old) {
            Some(o) => {
                merge(&f.old, &f.new, &mut f.out);
                let total = Stats {
                    count: o.count.wrapping_add(add.count),
                    sum: o.sum.wrapping_add(add.sum),
                    min: o.min.min(add.min),
                    max: o.max.max(add.max),
                };
                (total, &f.out)
            }
            // A cell's first fold (always, when a stream sends one point per slot).
            None => (add, &f.new),
        };
        bytes.clear();
        // Exactly: a cell is kept for the whole retention, and most are folded once.
        let mut len = 1
            + varint_len(u128::from(total.count))
            + varint_len(u128::from(total.min))
            + varint_len(u128::from(total.max))
            + varint_len(total.sum)
            + varint_len(buckets.len() as u128);
        let mut prev = 0u16;
        for &(idx, c) in buckets {
            len += varint_len(u128::from(idx - prev)) + varint_len(u128::from(c));
            prev = idx;
        }
        bytes.reserve_exact(len);
        bytes.push(FORMAT_VERSION);
        put_varint(bytes, u128::from(total.count));
        put_varint(bytes, u128::from(total.min));
        put_varint(bytes, u128::from(total.max));
        put_varint(bytes, total.sum);
        put_varint(bytes, buckets.len() as u128);
        let mut prev = 0u16;
        for &(idx, c) in buckets {
            put_varint(bytes, u128::from(idx - prev));
            put_varint(bytes, u128::from(c));
            prev = idx;
        }
    });
}

/// Merges two index-sorted bucket lists into `out`, adding the counts of equal indexes.
fn merge(a: &[(u16, u64)], b: &[(u16, u64)], out: &mut Vec<(u16, u64)>) {
    out.clear();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let e = if j == b.len() || (i < a.len() && a[i].0 <= b[j].0) {
            i += 1;
            a[i - 1]
        } else {
            j += 1;
            b[j - 1]
        };
        match out.last_mut() {
            Some(l) if l.0 == e.0 => l.1 = l.1.wrapping_add(e.1),
            _ => out.push(e),
        }
    }
}

/// Reads bytes this process encoded (trusted): the statistics, and the buckets into `buckets`.
/// `None` for no sketch (empty bytes, or an empty sketch).
fn decode(bytes: &[u8], buckets: &mut Vec<(u16, u64)>) -> Option<Stats> {
    buckets.clear();
    if bytes.first() != Some(&FORMAT_VERSION) {
        return None;
    }
    let mut pos = 1;
    let mut next = || get_varint(bytes, &mut pos);
    let count = next() as u64;
    let min = next() as u64;
    let max = next() as u64;
    let sum = next();
    let entries = next();
    if count == 0 {
        return None;
    }
    let mut idx = 0u64;
    for _ in 0..entries {
        idx += next() as u64;
        buckets.push((idx.min(u64::from(u16::MAX)) as u16, next() as u64));
    }
    Some(Stats {
        count,
        sum,
        min,
        max,
    })
}

/// Bytes of `v` as a varint.
fn varint_len(v: u128) -> usize {
    (128 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// Unsigned LEB128, as the sketch format writes it.
#[inline]
fn put_varint(out: &mut Vec<u8>, mut v: u128) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(bytes: &[u8], pos: &mut usize) -> u128 {
    let mut v = 0u128;
    let mut shift = 0;
    while let Some(&b) = bytes.get(*pos) {
        *pos += 1;
        if shift < 128 {
            v |= u128::from(b & 0x7f) << shift;
        }
        shift += 7;
        if b & 0x80 == 0 {
            break;
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fresh(positions: usize) -> Pending {
        Pending {
            layout: Layout::Explicit {
                len: positions as u32,
                cached: true,
            },
            reps: vec![0; positions],
            counts: vec![0; positions],
            ..Pending::default()
        }
    }

    fn value() -> impl Strategy<Value = u64> {
        prop_oneof![
            0u64..300,
            0u64..5_000_000,
            any::<u64>().prop_map(|v| v >> 20)
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Folding gives the bytes `Sketch::encode` gives for the same values, whatever was
        /// there before and however the increments were held.
        #[test]
        fn fold_matches_sketch_encoding(
            old in prop::collection::vec((value(), 1u64..1000), 0..40),
            new in prop::collection::vec((value(), 0u64..1000), 0..60),
            positions in 0usize..20,
        ) {
            let mut want = Sketch::new();
            let mut bytes = Vec::new();
            if !old.is_empty() {
                for &(v, n) in &old {
                    want.record_n(v, n);
                }
                want.encode(&mut bytes);
            }
            for &(v, n) in &new {
                want.record_n(v, n);
            }
            let mut p = fresh(positions);
            for (k, &(v, n)) in new.iter().enumerate() {
                if positions > 0 && k % 2 == 0 {
                    p.add(&mut bytes, (v as usize) % positions, v, n);
                } else {
                    p.push_spill(&mut bytes, v, n);
                }
            }
            // Before the last fold, a query sees the same values.
            let mut seen = Sketch::new();
            seen.merge_encoded_trusted(&bytes);
            p.record_into(p.slot, &mut seen);
            prop_assert_eq!(&seen, &want);
            fold(&mut bytes, &mut p);
            prop_assert!(!p.active);
            if want.is_empty() {
                prop_assert!(bytes.is_empty());
            } else {
                prop_assert_eq!(&bytes, &want.encoded());
                prop_assert_eq!(Sketch::decode(&bytes).unwrap(), want);
            }
        }
    }

    #[test]
    fn fold_of_nothing_leaves_bytes() {
        let mut bytes = Vec::new();
        let mut p = fresh(4);
        p.add(&mut bytes, 1, 5, 0);
        assert!(p.active);
        fold(&mut bytes, &mut p);
        assert!(bytes.is_empty());
        p.add(&mut bytes, 1, 5, 2);
        p.push_spill(&mut bytes, 9, 1);
        p.discard();
        fold(&mut bytes, &mut p);
        assert!(bytes.is_empty());
    }
}
