//! Log-linear bucket math: value → bucket index, and bucket index → bounds and representative.

/// Sub-buckets per power of two, as a bit count (2^7 = 128).
const SUB_BITS: u32 = 7;
const SUB_COUNT: u16 = 1 << SUB_BITS;

/// Number of distinct bucket indexes: 128 exact buckets for 0..128 plus 128 per power of two
/// for msb positions 7..=63, i.e. `(63 - 6) * 128 + 128`.
pub const NUM_BUCKETS: usize = 7424;

/// Largest valid bucket index; it holds `[255 << 56, u64::MAX]`.
pub const MAX_INDEX: u16 = (NUM_BUCKETS - 1) as u16;

/// Worst-case relative error of [`bucket_value`] against any value in its bucket: half a bucket
/// width over the smallest value of a bucket, which is at least 128 widths, so `1 / 256`.
pub const RELATIVE_ERROR: f64 = 1.0 / 256.0;

/// Bucket index of `v`.
///
/// Values below 256 map to themselves (buckets of width one); above that each power of two is
/// split into 128 equal sub-buckets keyed by the 7 bits after the most significant bit.
#[inline(always)]
pub const fn bucket_index(v: u64) -> u16 {
    // `| 1` keeps leading_zeros below 64 for v == 0; clamping the msb to 7 makes values under
    // 128 land on `0 + v`, so small and large values share one branch-free formula.
    let msb = 63 - (v | 1).leading_zeros();
    let p = if msb < SUB_BITS { SUB_BITS } else { msb };
    let shift = p - SUB_BITS;
    // For p >= 7, v >> shift lies in [128, 256): it is 128 + the 7 sub-bucket bits.
    (((shift) << SUB_BITS) + (v >> shift) as u32) as u16
}

/// Smallest value in bucket `idx` (inclusive). Indexes past [`MAX_INDEX`] are treated as
/// [`MAX_INDEX`].
#[inline]
pub const fn bucket_lower(idx: u16) -> u64 {
    let idx = clamp(idx);
    if idx < SUB_COUNT {
        return idx as u64;
    }
    let mantissa = (SUB_COUNT + (idx & (SUB_COUNT - 1))) as u64;
    mantissa << ((idx >> SUB_BITS) - 1)
}

/// One past the largest value in bucket `idx` (exclusive). The top bucket saturates to
/// `u64::MAX`, which that bucket nevertheless contains.
#[inline]
pub const fn bucket_upper(idx: u16) -> u64 {
    let idx = clamp(idx);
    if idx == MAX_INDEX {
        u64::MAX
    } else {
        bucket_lower(idx + 1)
    }
}

/// Largest value in bucket `idx` (inclusive).
#[inline]
pub(crate) const fn bucket_last(idx: u16) -> u64 {
    let idx = clamp(idx);
    if idx == MAX_INDEX {
        u64::MAX
    } else {
        bucket_lower(idx + 1) - 1
    }
}

/// Width of bucket `idx` in values.
#[inline]
pub(crate) const fn bucket_width(idx: u16) -> u64 {
    let idx = clamp(idx);
    if idx < SUB_COUNT {
        1
    } else {
        1 << ((idx >> SUB_BITS) - 1)
    }
}

/// Representative value of bucket `idx`: the midpoint of `[lower, upper)`, rounded down.
/// Exact for buckets of width one (all indexes below 256).
#[inline]
pub const fn bucket_value(idx: u16) -> u64 {
    bucket_lower(idx) + bucket_width(idx) / 2
}

#[inline]
const fn clamp(idx: u16) -> u16 {
    if idx > MAX_INDEX { MAX_INDEX } else { idx }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Case {
        v: u64,
        idx: u16,
        lower: u64,
        upper: u64,
    }

    fn check(c: &Case) {
        assert_eq!(bucket_index(c.v), c.idx, "index of {}", c.v);
        assert_eq!(bucket_lower(c.idx), c.lower, "lower of {}", c.idx);
        assert_eq!(bucket_upper(c.idx), c.upper, "upper of {}", c.idx);
        assert!(
            c.lower <= c.v && (c.v < c.upper || c.idx == MAX_INDEX),
            "{} in bucket",
            c.v
        );
    }

    #[test]
    fn index_and_bounds_table() {
        let cases = [
            Case {
                v: 0,
                idx: 0,
                lower: 0,
                upper: 1,
            },
            Case {
                v: 1,
                idx: 1,
                lower: 1,
                upper: 2,
            },
            Case {
                v: 127,
                idx: 127,
                lower: 127,
                upper: 128,
            },
            Case {
                v: 128,
                idx: 128,
                lower: 128,
                upper: 129,
            },
            Case {
                v: 129,
                idx: 129,
                lower: 129,
                upper: 130,
            },
            Case {
                v: 255,
                idx: 255,
                lower: 255,
                upper: 256,
            },
            Case {
                v: 256,
                idx: 256,
                lower: 256,
                upper: 258,
            },
            Case {
                v: 257,
                idx: 256,
                lower: 256,
                upper: 258,
            },
            Case {
                v: 511,
                idx: 383,
                lower: 510,
                upper: 512,
            },
            Case {
                v: 512,
                idx: 384,
                lower: 512,
                upper: 516,
            },
            Case {
                v: 1 << 20,
                idx: 14 * 128,
                lower: 1 << 20,
                upper: (1 << 20) + (1 << 13),
            },
            Case {
                v: 3_600_000_000_000,
                idx: 4561,
                lower: 209 << 34,
                upper: 210 << 34,
            },
            Case {
                v: u64::MAX / 2,
                idx: 7295,
                lower: 255 << 55,
                upper: 1 << 63,
            },
            Case {
                v: 1 << 63,
                idx: 7296,
                lower: 1 << 63,
                upper: (129 << 56),
            },
            Case {
                v: u64::MAX - 1,
                idx: MAX_INDEX,
                lower: 255 << 56,
                upper: u64::MAX,
            },
            Case {
                v: u64::MAX,
                idx: MAX_INDEX,
                lower: 255 << 56,
                upper: u64::MAX,
            },
        ];
        for c in &cases {
            check(c);
        }
    }

    #[test]
    fn buckets_tile_the_u64_range() {
        assert_eq!(bucket_lower(0), 0);
        for idx in 0..MAX_INDEX {
            assert_eq!(bucket_upper(idx), bucket_lower(idx + 1), "gap after {idx}");
            assert_eq!(bucket_index(bucket_lower(idx)), idx);
            assert_eq!(bucket_index(bucket_last(idx)), idx);
            assert_eq!(bucket_last(idx) - bucket_lower(idx) + 1, bucket_width(idx));
        }
        assert_eq!(bucket_last(MAX_INDEX), u64::MAX);
        assert_eq!(bucket_index(u64::MAX) as usize, NUM_BUCKETS - 1);
    }

    #[test]
    fn representative_within_relative_error() {
        for idx in 0..=MAX_INDEX {
            let rep = bucket_value(idx);
            assert_eq!(bucket_index(rep), idx);
            if idx < 256 {
                assert_eq!(rep, bucket_lower(idx));
            }
            for v in [bucket_lower(idx), bucket_last(idx)] {
                if v == 0 {
                    continue;
                }
                let err = (rep as f64 - v as f64).abs() / v as f64;
                assert!(err <= RELATIVE_ERROR + 1e-12, "idx {idx} v {v} err {err}");
            }
        }
    }

    #[test]
    fn out_of_range_indexes_clamp_to_top_bucket() {
        for idx in [MAX_INDEX + 1, u16::MAX] {
            assert_eq!(bucket_lower(idx), bucket_lower(MAX_INDEX));
            assert_eq!(bucket_upper(idx), u64::MAX);
            assert_eq!(bucket_value(idx), bucket_value(MAX_INDEX));
        }
    }
}
