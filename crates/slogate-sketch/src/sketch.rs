//! The [`Sketch`] type: a window of bucket counts plus exact count, sum, min and max.

use std::fmt;

use crate::bucket::{
    MAX_INDEX, NUM_BUCKETS, bucket_index, bucket_last, bucket_lower, bucket_value,
};

/// Extra buckets added on each side the window grows towards when a recording falls outside it,
/// so a drifting distribution does not reallocate on every new bucket. Growth is at least half
/// the current window, which keeps reallocations logarithmic in the final width.
const MIN_SLACK: usize = 32;

/// Mergeable latency histogram over `u64` values (nanoseconds, by convention) with relative
/// error at most [`RELATIVE_ERROR`](crate::RELATIVE_ERROR) on every quantile.
///
/// Equality is logical: two sketches are equal when they hold the same count, sum, min, max
/// and non-empty buckets, whatever their allocated window.
#[derive(Clone)]
pub struct Sketch {
    /// Counts for bucket indexes `[lo, lo + counts.len())`; zeros are allowed at both ends.
    pub(crate) counts: Vec<u64>,
    pub(crate) lo: u16,
    pub(crate) count: u64,
    pub(crate) sum: u128,
    /// `u64::MAX` while empty, so recording is a plain `min` with no emptiness branch.
    pub(crate) min: u64,
    /// `0` while empty, for the same reason.
    pub(crate) max: u64,
}

impl Sketch {
    /// An empty sketch; allocates nothing until the first value is recorded.
    pub const fn new() -> Sketch {
        Sketch {
            counts: Vec::new(),
            lo: 0,
            count: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
        }
    }

    /// Records one value.
    // HOT PATH: called once per ingested span.
    #[inline]
    pub fn record(&mut self, v: u64) {
        self.record_n(v, 1);
    }

    /// Records `n` occurrences of `v`; `n == 0` is a no-op.
    // HOT PATH: no allocation once the window covers `v`, no floating point, one
    // well-predicted branch for the window check.
    #[inline]
    pub fn record_n(&mut self, v: u64, n: u64) {
        if n == 0 {
            return;
        }
        let idx = bucket_index(v);
        // Below-window indexes wrap to huge offsets, so one bounds check covers both sides.
        let off = (idx as usize).wrapping_sub(self.lo as usize);
        match self.counts.get_mut(off) {
            Some(c) => *c += n,
            None => self.grow_and_add(idx, n),
        }
        self.count += n;
        self.sum += u128::from(v) * u128::from(n);
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    #[cold]
    #[inline(never)]
    fn grow_and_add(&mut self, idx: u16, n: u64) {
        self.cover(idx, idx, true);
        self.counts[usize::from(idx - self.lo)] += n;
    }

    /// Grows the window so it covers bucket indexes `[first, last]`, keeping counts in place.
    /// With `slack`, overshoots in the growth direction to amortise later growth.
    pub(crate) fn cover(&mut self, first: u16, last: u16, slack: bool) {
        let (first, last) = (usize::from(first), usize::from(last));
        let len = self.counts.len();
        let pad = if slack { MIN_SLACK.max(len / 2) } else { 0 };
        if len == 0 {
            let lo = first.saturating_sub(pad);
            let hi = (last + pad).min(NUM_BUCKETS - 1);
            self.lo = lo as u16;
            self.counts.resize(hi - lo + 1, 0);
            return;
        }
        let cur_lo = usize::from(self.lo);
        let cur_hi = cur_lo + len - 1;
        let new_lo = if first < cur_lo {
            first.min(cur_lo.saturating_sub(pad))
        } else {
            cur_lo
        };
        let new_hi = if last > cur_hi {
            last.max(cur_hi + pad).min(NUM_BUCKETS - 1)
        } else {
            cur_hi
        };
        let new_len = new_hi - new_lo + 1;
        if new_lo == cur_lo {
            if new_len > len {
                self.counts.resize(new_len, 0);
            }
            return;
        }
        let mut grown = Vec::with_capacity(new_len);
        grown.resize(cur_lo - new_lo, 0);
        grown.extend_from_slice(&self.counts);
        grown.resize(new_len, 0);
        self.counts = grown;
        self.lo = new_lo as u16;
    }

    /// Indexes of the first and last non-empty buckets: exactly the buckets of min and max.
    #[inline]
    pub(crate) fn occupied(&self) -> Option<(u16, u16)> {
        (self.count > 0).then(|| (bucket_index(self.min), bucket_index(self.max)))
    }

    /// Adds every value of `other` to `self`. Exact: bucket counts, count, sum, min and max
    /// combine without loss, so merging is associative and commutative.
    ///
    /// Counts past `u64::MAX` in all (beyond any real traffic, but possible from decoded bytes)
    /// are clipped as [`Sketch::merge_parts`] clips them, so the result stays consistent.
    pub fn merge(&mut self, other: &Sketch) {
        let Some((first, last)) = other.occupied() else {
            return;
        };
        if self.count.checked_add(other.count).is_none() {
            let lo = other.lo;
            let buckets = other
                .counts
                .iter()
                .enumerate()
                .filter(|&(_, &c)| c > 0)
                .map(|(i, &c)| (lo + i as u16, c));
            self.merge_parts(other.sum, other.min, other.max, buckets);
            return;
        }
        // Merged sketches are often stored (windows, snapshots), so grow them exactly.
        self.cover(first, last, false);
        let src_start = usize::from(first - other.lo);
        let src = &other.counts[src_start..=usize::from(last - other.lo)];
        let dst_start = usize::from(first - self.lo);
        for (d, s) in self.counts[dst_start..dst_start + src.len()]
            .iter_mut()
            .zip(src)
        {
            *d += s;
        }
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// Grows the window once so it covers the buckets of `[lo, hi]` (values, not indexes), for
    /// an accumulator about to receive many merges over a known range.
    pub fn reserve_values(&mut self, lo: u64, hi: u64) {
        let (a, b) = (bucket_index(lo.min(hi)), bucket_index(hi.max(lo)));
        self.cover(a, b, false);
    }

    /// Adds a partial aggregate kept outside a `Sketch` (compact per-thread counters, stored
    /// slots): `buckets` yields `(index, count)` pairs in any order, possibly repeating an index;
    /// `sum`, `min` and `max` are the exact statistics of the same values.
    ///
    /// The count added is the sum of the bucket counts. On inconsistent input the result stays a
    /// consistent sketch (one whose encoding [`Sketch::decode`] accepts) and nothing panics:
    /// indexes past [`MAX_INDEX`](crate::MAX_INDEX) go to the top bucket, counts that would take
    /// the total past `u64::MAX` are dropped, a `min` or `max` outside the first or last
    /// non-empty bucket is moved to that bucket's edge, and a `sum` the added values cannot
    /// have (below their buckets' lower edges, above their upper edges, or than `min` and `max`
    /// allow; also after dropped counts) is moved to the nearest sum they can have.
    pub fn merge_parts(
        &mut self,
        sum: u128,
        min: u64,
        max: u64,
        buckets: impl IntoIterator<Item = (u16, u64)>,
    ) {
        self.merge_parts_with(sum, min, max, buckets, false);
    }

    /// [`Sketch::merge_parts`]; `slack` grows the window with room to spare (accumulators that
    /// take many merges) instead of exactly (sketches that are kept).
    pub(crate) fn merge_parts_with(
        &mut self,
        sum: u128,
        min: u64,
        max: u64,
        buckets: impl IntoIterator<Item = (u16, u64)>,
        slack: bool,
    ) {
        let (min, max) = (min.min(max), max.max(min));
        self.cover(bucket_index(min), bucket_index(max), slack);
        let (mut added, mut first, mut last) = (0u64, MAX_INDEX, 0u16);
        // The sums the added values can have, from their buckets' edges (at most
        // u64::MAX values of at most u64::MAX each: no overflow).
        let (mut floor, mut ceil) = (0u128, 0u128);
        for (idx, n) in buckets {
            // Counts past u64::MAX in all are dropped, so the buckets always add up to `count`.
            let n = n.min(u64::MAX - self.count - added);
            if n == 0 {
                continue;
            }
            let idx = idx.min(MAX_INDEX);
            let off = usize::from(idx).wrapping_sub(usize::from(self.lo));
            match self.counts.get_mut(off) {
                Some(c) => *c += n,
                None => {
                    self.cover(idx, idx, true);
                    self.counts[usize::from(idx - self.lo)] += n;
                }
            }
            added += n;
            first = first.min(idx);
            last = last.max(idx);
            floor += u128::from(n) * u128::from(bucket_lower(idx));
            ceil += u128::from(n) * u128::from(bucket_last(idx));
        }
        if added == 0 {
            return;
        }
        let min = if bucket_index(min) == first {
            min
        } else {
            bucket_lower(first)
        };
        let max = if bucket_index(max) == last {
            max
        } else {
            bucket_last(last)
        };
        // One added value is min, one is max (the same when one was added), the rest between:
        // the bounds `Sketch::decode` checks, which hold for the whole sketch when they hold
        // for each part merged into it.
        let (min, max, sum) = if added == 1 {
            // One value: min, max and sum are that value.
            let v = sum.clamp(u128::from(min), u128::from(max)) as u64;
            (v, v, u128::from(v))
        } else {
            (min, max, sum)
        };
        let rest = u128::from(added - 1);
        let floor = floor.max(rest * u128::from(min) + u128::from(max));
        let ceil = ceil.min(rest * u128::from(max) + u128::from(min));
        self.count += added;
        self.sum = self.sum.saturating_add(sum.clamp(floor, ceil.max(floor)));
        self.min = self.min.min(min);
        self.max = self.max.max(max);
    }

    /// Number of recorded values.
    #[inline]
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Exact sum of recorded values.
    #[inline]
    pub fn sum(&self) -> u128 {
        self.sum
    }

    /// Exact smallest recorded value.
    #[inline]
    pub fn min(&self) -> Option<u64> {
        (self.count > 0).then_some(self.min)
    }

    /// Exact largest recorded value.
    #[inline]
    pub fn max(&self) -> Option<u64> {
        (self.count > 0).then_some(self.max)
    }

    /// Arithmetic mean of recorded values.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum as f64 / self.count as f64)
    }

    /// Whether nothing has been recorded.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Nearest-rank quantile: the representative of the bucket holding the
    /// [`nearest_rank`]-th smallest value, clamped to `[min, max]`. `q` is clamped to `[0, 1]`;
    /// NaN and an empty sketch give `None`.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        let [v] = self.quantiles([q]);
        v
    }

    /// Several quantiles in one pass over the buckets; same rules as [`Sketch::quantile`].
    pub fn quantiles<const N: usize>(&self, qs: [f64; N]) -> [Option<u64>; N] {
        let mut out = [None; N];
        let Some((first, last)) = self.occupied() else {
            return out;
        };
        let counts = &self.counts[usize::from(first - self.lo)..=usize::from(last - self.lo)];
        let ranks = qs.map(|q| nearest_rank(q, self.count));
        let mut order: [usize; N] = std::array::from_fn(|i| i);
        // `None` (NaN) sorts first; the rest are answered in rank order.
        order.sort_unstable_by_key(|&i| ranks[i]);
        let answer = |off: usize| bucket_value(first + off as u16).clamp(self.min, self.max);
        // Low ranks scan up from the bottom, high ranks down from the top, so tail quantiles
        // like p99 touch only the tail and all of them together still visit each bucket once.
        // Both loops stop because the counts add up to `count`, which is at least any rank.
        let half = self.count / 2;
        let (mut next, mut below) = (0, 0u64);
        for &i in &order {
            let Some(rank) = ranks[i].filter(|&r| r <= half) else {
                continue;
            };
            while below < rank {
                below += counts[next];
                next += 1;
            }
            out[i] = Some(answer(next - 1));
        }
        let (mut end, mut above) = (counts.len(), 0u64);
        for &i in order.iter().rev() {
            let Some(rank) = ranks[i].filter(|&r| r > half) else {
                break;
            };
            // The rank-th smallest is the `count - rank + 1`-th largest.
            let wanted = self.count - rank + 1;
            while above < wanted {
                end -= 1;
                above += counts[end];
            }
            out[i] = Some(answer(end));
        }
        out
    }

    /// The `rank`-th smallest value (1-based): the representative of the bucket holding it,
    /// clamped to `[min, max]`, so within [`RELATIVE_ERROR`](crate::RELATIVE_ERROR) of the true
    /// order statistic. `None` when `rank` is 0 or above [`Sketch::count`].
    ///
    /// Order statistics at ranks other than the nearest rank of a quantile are what
    /// distribution-free confidence intervals for quantiles are made of, so they are exposed
    /// directly rather than through a quantile that would round the rank.
    pub fn value_at_rank(&self, rank: u64) -> Option<u64> {
        let (first, last) = self.occupied()?;
        if rank == 0 || rank > self.count {
            return None;
        }
        let counts = &self.counts[usize::from(first - self.lo)..=usize::from(last - self.lo)];
        let answer = |off: usize| bucket_value(first + off as u16).clamp(self.min, self.max);
        // Scan from whichever end is nearer, as `quantiles` does, so tail ranks touch the tail.
        if rank <= self.count / 2 {
            let mut below = 0u64;
            for (off, &c) in counts.iter().enumerate() {
                below += c;
                if below >= rank {
                    return Some(answer(off));
                }
            }
        } else {
            let wanted = self.count - rank + 1;
            let mut above = 0u64;
            for (off, &c) in counts.iter().enumerate().rev() {
                above += c;
                if above >= wanted {
                    return Some(answer(off));
                }
            }
        }
        unreachable!("bucket counts add up to count, which is at least rank")
    }

    /// Number of recorded values `<= v`, exact up to bucket resolution.
    ///
    /// Buckets entirely below `v`'s bucket always count. `v`'s own bucket counts whole when
    /// `v >= bucket_value`, i.e. its values are treated as sitting at the representative, the
    /// same convention [`Sketch::quantile`] uses, so `count_at_most(quantile(q))` is consistent
    /// with `q`. Exact when `v < min`, `v >= max`, or `v < 256` (buckets of width one).
    pub fn count_at_most(&self, v: u64) -> u64 {
        if self.count == 0 || v < self.min {
            return 0;
        }
        if v >= self.max {
            return self.count;
        }
        let idx = bucket_index(v);
        let off = usize::from(idx) - usize::from(self.lo);
        let end = if v >= bucket_value(idx) { off + 1 } else { off };
        // min <= v < max keeps `end` inside the window; sum whichever side is shorter.
        let (below, above) = self.counts.split_at(end);
        if below.len() <= above.len() {
            below.iter().sum()
        } else {
            self.count - above.iter().sum::<u64>()
        }
    }

    /// Non-empty buckets as `(index, count)`, ascending by index.
    pub fn buckets(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        let lo = self.lo;
        self.counts
            .iter()
            .enumerate()
            .filter(|&(_, &c)| c != 0)
            .map(move |(off, &c)| (lo + off as u16, c))
    }

    /// Forgets every value but keeps the window and its allocation, so a reused sketch records
    /// without reallocating.
    pub fn clear(&mut self) {
        // Every non-empty bucket lies between min's and max's, so only those need zeroing.
        if let Some((first, last)) = self.occupied() {
            let lo = usize::from(first - self.lo);
            self.counts[lo..=usize::from(last - self.lo)].fill(0);
        }
        self.count = 0;
        self.sum = 0;
        self.min = u64::MAX;
        self.max = 0;
    }

    /// Heap memory held, in bytes (allocated capacity, not just the used window).
    pub fn heap_bytes(&self) -> usize {
        self.counts.capacity() * size_of::<u64>()
    }
}

/// 1-based nearest rank of quantile `q` among `n` values: `max(1, ceil(q * n))`, with `q`
/// clamped to `[0, 1]`. `None` when `n == 0` or `q` is NaN.
///
/// Public so exact reference computations (tests, rank statistics) use the very same
/// floating-point rounding as [`Sketch::quantile`].
pub fn nearest_rank(q: f64, n: u64) -> Option<u64> {
    if n == 0 || q.is_nan() {
        return None;
    }
    let r = (q.clamp(0.0, 1.0) * n as f64).ceil() as u64;
    Some(r.clamp(1, n))
}

impl Default for Sketch {
    fn default() -> Self {
        Sketch::new()
    }
}

impl PartialEq for Sketch {
    fn eq(&self, other: &Self) -> bool {
        // Empty sketches keep min = u64::MAX and max = 0, so these compare logically too.
        self.count == other.count
            && self.sum == other.sum
            && self.min == other.min
            && self.max == other.max
            && self.buckets().eq(other.buckets())
    }
}

impl Eq for Sketch {}

impl fmt::Debug for Sketch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Buckets<'a>(&'a Sketch);
        impl fmt::Debug for Buckets<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_map().entries(self.0.buckets()).finish()
            }
        }
        f.debug_struct("Sketch")
            .field("count", &self.count)
            .field("sum", &self.sum)
            .field("min", &self.min())
            .field("max", &self.max())
            .field("buckets", &Buckets(self))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sketch_of(values: &[u64]) -> Sketch {
        let mut s = Sketch::new();
        for &v in values {
            s.record(v);
        }
        s
    }

    #[test]
    fn new_is_empty_and_unallocated() {
        let s = Sketch::new();
        assert!(s.is_empty());
        assert_eq!(s.heap_bytes(), 0);
        assert_eq!(
            (s.min(), s.max(), s.mean(), s.quantile(0.5)),
            (None, None, None, None)
        );
        assert_eq!(s.count_at_most(u64::MAX), 0);
        assert_eq!(s.buckets().count(), 0);
        assert_eq!(s, Sketch::default());
    }

    #[test]
    fn nearest_rank_table() {
        let cases: &[(f64, u64, Option<u64>)] = &[
            (0.5, 0, None),
            (f64::NAN, 10, None),
            (0.0, 10, Some(1)),
            (-3.0, 10, Some(1)),
            (0.1, 10, Some(1)),
            (0.11, 10, Some(2)),
            (0.5, 10, Some(5)),
            (0.5, 11, Some(6)),
            (1.0, 10, Some(10)),
            (7.0, 10, Some(10)),
            (0.999, 1000, Some(999)),
        ];
        for &(q, n, want) in cases {
            assert_eq!(nearest_rank(q, n), want, "q={q} n={n}");
        }
    }

    #[test]
    fn quantiles_table() {
        struct Case {
            values: &'static [u64],
            q: f64,
            want: Option<u64>,
        }
        fn check(c: &Case) {
            let s = sketch_of(c.values);
            assert_eq!(s.quantile(c.q), c.want, "values {:?} q {}", c.values, c.q);
        }
        let cases = [
            Case {
                values: &[],
                q: 0.5,
                want: None,
            },
            Case {
                values: &[7],
                q: 0.0,
                want: Some(7),
            },
            Case {
                values: &[7],
                q: 1.0,
                want: Some(7),
            },
            Case {
                values: &[1, 2, 3, 4],
                q: 0.5,
                want: Some(2),
            },
            Case {
                values: &[1, 2, 3, 4],
                q: 0.51,
                want: Some(3),
            },
            Case {
                values: &[4, 3, 2, 1],
                q: 1.0,
                want: Some(4),
            },
            Case {
                values: &[0, 0, 0, 127, 128, 129],
                q: 0.5,
                want: Some(0),
            },
            Case {
                values: &[0, 0, 0, 127, 128, 129],
                q: 0.9,
                want: Some(129),
            },
            // Representative 257 is above the exact max 256, so it is clamped.
            Case {
                values: &[256],
                q: 0.5,
                want: Some(256),
            },
            Case {
                values: &[u64::MAX],
                q: 0.5,
                want: Some(u64::MAX),
            },
            Case {
                values: &[u64::MAX - 1, u64::MAX],
                q: 0.0,
                want: Some(u64::MAX - 1),
            },
        ];
        for c in &cases {
            check(c);
        }
    }

    #[test]
    fn quantiles_answer_in_any_order() {
        let s = sketch_of(&(1..=100).collect::<Vec<_>>());
        let got = s.quantiles([0.99, f64::NAN, 0.0, 0.5, 0.5, 1.0]);
        assert_eq!(
            got,
            [Some(99), None, Some(1), Some(50), Some(50), Some(100)]
        );
        assert_eq!(s.quantiles::<0>([]), []);
    }

    #[test]
    fn value_at_rank_table() {
        // 1000 and 1001 share the bucket [1000, 1004) whose representative is 1002.
        let s = sketch_of(&[5, 5, 200, 1000, 1001, 5000]);
        let cases: &[(u64, Option<u64>)] = &[
            (0, None),
            (1, Some(5)),
            (2, Some(5)),
            (3, Some(200)),
            (4, Some(1002)),
            (5, Some(1002)),
            (6, Some(5000)),
            (7, None),
        ];
        for &(rank, want) in cases {
            assert_eq!(s.value_at_rank(rank), want, "rank {rank}");
        }
        assert_eq!(Sketch::new().value_at_rank(1), None);
    }

    #[test]
    fn value_at_rank_agrees_with_quantile() {
        let s = sketch_of(&(1..=1000).map(|v| v * 997).collect::<Vec<_>>());
        for q in [0.0, 0.01, 0.25, 0.5, 0.501, 0.9, 0.95, 0.99, 0.999, 1.0] {
            let rank = nearest_rank(q, s.count()).unwrap();
            assert_eq!(s.value_at_rank(rank), s.quantile(q), "q {q}");
        }
    }

    #[test]
    fn count_at_most_table() {
        // 1000 sits in bucket [1000, 1004) whose representative is 1002.
        let s = sketch_of(&[5, 5, 200, 1000, 1001, 5000]);
        let cases: &[(u64, u64)] = &[
            (0, 0),
            (4, 0),
            (5, 2),
            (199, 2),
            (200, 3),
            (1000, 3),
            (1001, 3),
            (1002, 5),
            (4999, 5),
            (5000, 6),
            (u64::MAX, 6),
        ];
        for &(v, want) in cases {
            assert_eq!(s.count_at_most(v), want, "v={v}");
        }
    }

    #[test]
    fn record_n_and_stats() {
        let mut s = Sketch::new();
        s.record_n(10, 3);
        s.record_n(99, 0);
        s.record(u64::MAX);
        assert_eq!(s.count(), 4);
        assert_eq!(s.sum(), 30 + u128::from(u64::MAX));
        assert_eq!((s.min(), s.max()), (Some(10), Some(u64::MAX)));
        assert_eq!(s.buckets().collect::<Vec<_>>(), vec![(10, 3), (7423, 1)]);
        assert_eq!(sketch_of(&[2, 4]).mean(), Some(3.0));
    }

    #[test]
    fn window_grows_both_ways_and_keeps_counts() {
        let mut s = Sketch::new();
        let values = [1_000_000, 5, 1_000_000_000, 0, u64::MAX, 300, 1_000_000];
        for v in values {
            s.record(v);
        }
        let mut want: Vec<(u16, u64)> = Vec::new();
        let mut idxs: Vec<u16> = values.iter().map(|&v| bucket_index(v)).collect();
        idxs.sort_unstable();
        for i in idxs {
            match want.last_mut() {
                Some((j, c)) if *j == i => *c += 1,
                _ => want.push((i, 1)),
            }
        }
        assert_eq!(s.buckets().collect::<Vec<_>>(), want);
    }

    #[test]
    fn equality_ignores_window_layout() {
        let mut a = sketch_of(&[10, 1_000_000]);
        let mut b = Sketch::new();
        b.merge(&sketch_of(&[1_000_000]));
        b.merge(&sketch_of(&[10]));
        assert_eq!(a, b);
        a.record(3);
        assert_ne!(a, b);
        a.clear();
        assert_eq!(a, Sketch::new());
    }

    #[test]
    fn clear_keeps_allocation_for_reuse() {
        let mut s = sketch_of(&[1_000, 2_000_000, 3_000_000_000]);
        let bytes = s.heap_bytes();
        assert!(bytes > 0);
        s.clear();
        assert!(s.is_empty());
        assert_eq!(s.heap_bytes(), bytes);
        for v in [3_000_000_000, 1_000, 2_000_000, 50_000] {
            s.record(v);
            assert_eq!(s.heap_bytes(), bytes, "record({v}) after clear reallocated");
        }
        assert_eq!(s.count(), 4);
    }
}
