//! Versioned byte format: encoding, validating decoding, and merging straight from bytes.

use crate::bucket::{NUM_BUCKETS, bucket_index, bucket_last, bucket_lower};
use crate::sketch::Sketch;

/// Version byte written first by [`Sketch::encode`]; the only one [`Sketch::decode`] accepts.
pub const FORMAT_VERSION: u8 = 1;

/// Why bytes could not be decoded or merged. Returned before `self` is touched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("input is empty")]
    Empty,
    #[error("unsupported format version {0}")]
    UnsupportedVersion(u8),
    #[error("input ends inside {field}")]
    Truncated { field: &'static str },
    #[error("{field} varint overflows its integer type")]
    VarintOverflow { field: &'static str },
    #[error("{field} varint is not minimally encoded")]
    NonCanonicalVarint { field: &'static str },
    #[error("empty sketch carries a non-zero min, max, sum or bucket count")]
    NonZeroEmpty,
    #[error("min {min} exceeds max {max}")]
    MinAboveMax { min: u64, max: u64 },
    #[error("bucket entry count {0} out of range")]
    BucketEntries(u64),
    #[error("bucket indexes are not strictly increasing")]
    UnorderedBuckets,
    #[error("bucket index {0} out of range")]
    IndexOutOfRange(u64),
    #[error("bucket {0} has a zero count")]
    ZeroCount(u16),
    #[error("bucket counts do not add up to count {0}")]
    CountMismatch(u64),
    #[error("min {0} is not in the first non-empty bucket")]
    MinOutsideBucket(u64),
    #[error("max {0} is not in the last non-empty bucket")]
    MaxOutsideBucket(u64),
    #[error("sum {0} is impossible for the recorded buckets")]
    SumOutOfRange(u128),
    #[error("{0} trailing bytes")]
    TrailingBytes(usize),
    #[error("merged count or sum overflows")]
    MergeOverflow,
}

const COUNT: &str = "count";
const MIN: &str = "min";
const MAX: &str = "max";
const SUM: &str = "sum";
const ENTRIES: &str = "bucket entry count";
const DELTA: &str = "bucket index delta";
const BUCKET_COUNT: &str = "bucket count";

/// What the validation pass learned, so the merge pass only re-reads the bucket entries.
struct Header {
    count: u64,
    min: u64,
    max: u64,
    sum: u128,
    entries: u64,
    /// Offset of the first bucket entry.
    body: usize,
    first: u16,
    last: u16,
}

impl Sketch {
    /// Appends the encoding of `self` to `out` (format in the crate docs).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(FORMAT_VERSION);
        put_varint(out, u128::from(self.count));
        let (min, max) = if self.is_empty() {
            (0, 0)
        } else {
            (self.min, self.max)
        };
        put_varint(out, u128::from(min));
        put_varint(out, u128::from(max));
        put_varint(out, self.sum);
        put_varint(out, self.buckets().count() as u128);
        let mut prev = 0u16;
        for (idx, c) in self.buckets() {
            put_varint(out, u128::from(idx - prev));
            put_varint(out, u128::from(c));
            prev = idx;
        }
    }

    /// The encoding of `self` in a fresh buffer.
    pub fn encoded(&self) -> Vec<u8> {
        // Header is at most 1 + 3 * 10 + 19 + 2 bytes; typical entries take 2-4 bytes.
        let mut out = Vec::with_capacity(52 + 4 * self.buckets().count());
        self.encode(&mut out);
        out
    }

    /// Decodes and validates untrusted bytes. Allocates at most one window of
    /// [`NUM_BUCKETS`](crate::NUM_BUCKETS) counts, and only after validation succeeded.
    pub fn decode(bytes: &[u8]) -> Result<Sketch, DecodeError> {
        let mut s = Sketch::new();
        s.merge_encoded(bytes)?;
        Ok(s)
    }

    /// Merges an encoded sketch into `self` without building a temporary [`Sketch`].
    /// Validates all of `bytes` first, so on `Err` `self` is unchanged.
    pub fn merge_encoded(&mut self, bytes: &[u8]) -> Result<(), DecodeError> {
        let h = validate(bytes)?;
        if h.count == 0 {
            return Ok(());
        }
        let count = self
            .count
            .checked_add(h.count)
            .ok_or(DecodeError::MergeOverflow)?;
        let sum = self
            .sum
            .checked_add(h.sum)
            .ok_or(DecodeError::MergeOverflow)?;
        self.cover(h.first, h.last, false);
        let mut r = Reader { bytes, pos: h.body };
        let mut idx = 0u64;
        for i in 0..h.entries {
            // Validated above, so these reads succeed and indexes lie inside the window.
            let (Ok(delta), Ok(c)) = (r.u64(DELTA), r.u64(BUCKET_COUNT)) else {
                break;
            };
            idx = if i == 0 { delta } else { idx + delta };
            let off = (idx as usize).wrapping_sub(usize::from(self.lo));
            if let Some(slot) = self.counts.get_mut(off) {
                *slot += c;
            }
        }
        self.count = count;
        self.sum = sum;
        self.min = self.min.min(h.min);
        self.max = self.max.max(h.max);
        Ok(())
    }
}

impl Sketch {
    /// Merges bytes this process encoded itself, or that passed [`Sketch::decode`] before,
    /// without validating them again: one pass over the bytes instead of two, and the window
    /// grows with slack, as suits an accumulator that takes many merges (a window query).
    ///
    /// Never panics and never reads out of bounds, whatever the input; on bytes that are not a
    /// valid encoding the merged values are unspecified but `self` stays a consistent sketch
    /// (see [`Sketch::merge_parts`]). Returns the count merged.
    pub fn merge_encoded_trusted(&mut self, bytes: &[u8]) -> u64 {
        if bytes.first() != Some(&FORMAT_VERSION) {
            return 0;
        }
        let mut r = Reader { bytes, pos: 1 };
        let header = (|| {
            let count = r.u64(COUNT)?;
            let min = r.u64(MIN)?;
            let max = r.u64(MAX)?;
            let sum = r.u128(SUM)?;
            let entries = r.u64(ENTRIES)?;
            Ok::<_, DecodeError>((count, min, max, sum, entries))
        })();
        let Ok((count, min, max, sum, entries)) = header else {
            return 0;
        };
        if count == 0 {
            return 0;
        }
        let before = self.count;
        let mut idx = 0u64;
        let mut i = 0u64;
        // Never more than the header's count, so a bucket cannot outgrow the sketch's count.
        let mut left = count;
        let buckets = std::iter::from_fn(|| {
            if i >= entries || left == 0 {
                return None;
            }
            let (Ok(delta), Ok(c)) = (r.u64(DELTA), r.u64(BUCKET_COUNT)) else {
                return None;
            };
            idx = if i == 0 {
                delta
            } else {
                idx.saturating_add(delta)
            };
            i += 1;
            let c = c.min(left);
            left -= c;
            Some((idx.min(u64::from(u16::MAX)) as u16, c))
        });
        self.merge_parts_with(sum, min, max, buckets, true);
        self.count - before
    }
}

/// Checks every rule of the format without allocating.
fn validate(bytes: &[u8]) -> Result<Header, DecodeError> {
    let (&version, _) = bytes.split_first().ok_or(DecodeError::Empty)?;
    if version != FORMAT_VERSION {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    let mut r = Reader { bytes, pos: 1 };
    let count = r.u64(COUNT)?;
    let min = r.u64(MIN)?;
    let max = r.u64(MAX)?;
    let sum = r.u128(SUM)?;
    let entries = r.u64(ENTRIES)?;
    let body = r.pos;
    if count == 0 {
        if (min, max, sum, entries) != (0, 0, 0, 0) {
            return Err(DecodeError::NonZeroEmpty);
        }
        r.finish()?;
        return Ok(Header {
            count,
            min,
            max,
            sum,
            entries,
            body,
            first: 0,
            last: 0,
        });
    }
    if min > max {
        return Err(DecodeError::MinAboveMax { min, max });
    }
    if entries == 0 || entries > NUM_BUCKETS as u64 {
        return Err(DecodeError::BucketEntries(entries));
    }

    let mut total = 0u64;
    // Bounds on the true sum from bucket edges; cannot overflow because total <= count.
    let (mut floor, mut ceil) = (0u128, 0u128);
    let (mut first, mut idx) = (0u16, 0u64);
    for i in 0..entries {
        let delta = r.u64(DELTA)?;
        let c = r.u64(BUCKET_COUNT)?;
        if i == 0 {
            idx = delta;
        } else if delta == 0 {
            return Err(DecodeError::UnorderedBuckets);
        } else {
            idx = idx.saturating_add(delta);
        }
        if idx >= NUM_BUCKETS as u64 {
            return Err(DecodeError::IndexOutOfRange(idx));
        }
        let index = idx as u16;
        if i == 0 {
            first = index;
        }
        if c == 0 {
            return Err(DecodeError::ZeroCount(index));
        }
        total = match total.checked_add(c) {
            Some(t) if t <= count => t,
            _ => return Err(DecodeError::CountMismatch(count)),
        };
        floor += u128::from(c) * u128::from(bucket_lower(index));
        ceil += u128::from(c) * u128::from(bucket_last(index));
    }
    let last = idx as u16;
    if total != count {
        return Err(DecodeError::CountMismatch(count));
    }
    if bucket_index(min) != first {
        return Err(DecodeError::MinOutsideBucket(min));
    }
    if bucket_index(max) != last {
        return Err(DecodeError::MaxOutsideBucket(max));
    }
    // One value is min, one is max (the same one when count == 1), the rest lie between.
    let rest = u128::from(count - 1);
    let floor = floor.max(rest * u128::from(min) + u128::from(max));
    let ceil = ceil.min(rest * u128::from(max) + u128::from(min));
    if sum < floor || sum > ceil {
        return Err(DecodeError::SumOutOfRange(sum));
    }
    r.finish()?;
    Ok(Header {
        count,
        min,
        max,
        sum,
        entries,
        body,
        first,
        last,
    })
}

/// Unsigned LEB128: 7 bits per byte, least significant group first, high bit = more follows.
fn put_varint(out: &mut Vec<u8>, mut v: u128) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    #[inline]
    fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        // Most deltas and many counts fit one byte; skip the general loop for them.
        match self.bytes.get(self.pos) {
            Some(&b) if b < 0x80 => {
                self.pos += 1;
                Ok(u64::from(b))
            }
            _ => self.varint(field, 64).map(|v| v as u64),
        }
    }

    fn u128(&mut self, field: &'static str) -> Result<u128, DecodeError> {
        self.varint(field, 128)
    }

    /// Reads a canonical LEB128 varint of at most `bits` bits.
    fn varint(&mut self, field: &'static str, bits: u32) -> Result<u128, DecodeError> {
        let max_bytes = bits.div_ceil(7);
        // Bits left for the final byte, e.g. 1 for u64 (9 * 7 = 63) and 2 for u128.
        let last_max = (1u8 << (bits - 7 * (max_bytes - 1))) - 1;
        let mut v = 0u128;
        for i in 0..max_bytes {
            let &b = self
                .bytes
                .get(self.pos)
                .ok_or(DecodeError::Truncated { field })?;
            self.pos += 1;
            if i == max_bytes - 1 && b > last_max {
                return Err(DecodeError::VarintOverflow { field });
            }
            v |= u128::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                // A zero final group adds nothing: a shorter encoding existed.
                if b == 0 && i > 0 {
                    return Err(DecodeError::NonCanonicalVarint { field });
                }
                return Ok(v);
            }
        }
        Err(DecodeError::VarintOverflow { field })
    }

    fn finish(&self) -> Result<(), DecodeError> {
        match self.bytes.len() - self.pos {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes(n)),
        }
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

    fn varint(v: u128) -> Vec<u8> {
        let mut out = Vec::new();
        put_varint(&mut out, v);
        out
    }

    /// Builds raw bytes from version and varint fields, for hand-made invalid inputs.
    fn raw(version: u8, fields: &[u128]) -> Vec<u8> {
        let mut out = vec![version];
        for &f in fields {
            out.extend(varint(f));
        }
        out
    }

    #[test]
    fn varint_roundtrip_table() {
        let cases: &[(u128, &[u8])] = &[
            (0, &[0]),
            (1, &[1]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (300, &[0xac, 0x02]),
            (
                u128::from(u64::MAX),
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
        ];
        for &(v, bytes) in cases {
            assert_eq!(varint(v), bytes, "encode {v}");
            let mut r = Reader { bytes, pos: 0 };
            assert_eq!(r.varint("x", 128), Ok(v), "decode {v}");
            assert_eq!(r.pos, bytes.len());
        }
        let max = varint(u128::MAX);
        assert_eq!(max.len(), 19);
        assert_eq!(
            Reader {
                bytes: &max,
                pos: 0
            }
            .u128("x"),
            Ok(u128::MAX)
        );
    }

    #[test]
    fn encoding_layout() {
        assert_eq!(Sketch::new().encoded(), [1, 0, 0, 0, 0, 0]);
        // count 3, min 5, max 300, sum 310, 2 entries: bucket 5 x2, bucket 300's (+delta) x1.
        let idx300 = u128::from(bucket_index(300));
        let want = raw(1, &[3, 5, 300, 310, 2, 5, 2, idx300 - 5, 1]);
        assert_eq!(sketch_of(&[5, 300, 5]).encoded(), want);
    }

    #[test]
    fn decode_errors_table() {
        struct Case {
            name: &'static str,
            bytes: Vec<u8>,
            want: DecodeError,
        }
        fn check(c: &Case) {
            assert_eq!(Sketch::decode(&c.bytes), Err(c.want.clone()), "{}", c.name);
            let mut s = sketch_of(&[1, 1_000, 1_000_000]);
            let before = (s.clone(), s.heap_bytes());
            assert_eq!(s.merge_encoded(&c.bytes), Err(c.want.clone()), "{}", c.name);
            assert_eq!(
                (s.clone(), s.heap_bytes()),
                before,
                "{} modified self",
                c.name
            );
        }
        let i1000 = u128::from(bucket_index(1000));
        let valid = raw(1, &[2, 10, 1000, 1010, 2, 10, 1, i1000 - 10, 1]);
        assert!(Sketch::decode(&valid).is_ok());
        let mut trailing = valid.clone();
        trailing.push(0);
        let cases = [
            Case {
                name: "empty input",
                bytes: vec![],
                want: DecodeError::Empty,
            },
            Case {
                name: "version 0",
                bytes: vec![0],
                want: DecodeError::UnsupportedVersion(0),
            },
            Case {
                name: "version 2",
                bytes: raw(2, &[0]),
                want: DecodeError::UnsupportedVersion(2),
            },
            Case {
                name: "version only",
                bytes: vec![1],
                want: DecodeError::Truncated { field: COUNT },
            },
            Case {
                name: "cut inside varint",
                bytes: vec![1, 0x80],
                want: DecodeError::Truncated { field: COUNT },
            },
            Case {
                name: "u64 varint too long",
                bytes: [&[1u8][..], &[0xff; 10], &[0x01]].concat(),
                want: DecodeError::VarintOverflow { field: COUNT },
            },
            Case {
                name: "u64 varint last byte too big",
                bytes: [&[1u8][..], &[0xff; 9], &[0x02]].concat(),
                want: DecodeError::VarintOverflow { field: COUNT },
            },
            Case {
                name: "padded varint",
                bytes: vec![1, 0x80, 0x00],
                want: DecodeError::NonCanonicalVarint { field: COUNT },
            },
            Case {
                name: "empty with min",
                bytes: raw(1, &[0, 1, 0, 0, 0]),
                want: DecodeError::NonZeroEmpty,
            },
            Case {
                name: "empty with entries",
                bytes: raw(1, &[0, 0, 0, 0, 1]),
                want: DecodeError::NonZeroEmpty,
            },
            Case {
                name: "min above max",
                bytes: raw(1, &[1, 9, 8, 9, 1, 9, 1]),
                want: DecodeError::MinAboveMax { min: 9, max: 8 },
            },
            Case {
                name: "no entries",
                bytes: raw(1, &[1, 9, 9, 9, 0]),
                want: DecodeError::BucketEntries(0),
            },
            Case {
                name: "huge entry count",
                bytes: raw(1, &[1, 9, 9, 9, u128::from(u64::MAX)]),
                want: DecodeError::BucketEntries(u64::MAX),
            },
            Case {
                name: "entries missing",
                bytes: raw(1, &[1, 9, 9, 9, 2, 9, 1]),
                want: DecodeError::Truncated { field: DELTA },
            },
            Case {
                name: "repeated index",
                bytes: raw(1, &[2, 9, 9, 18, 2, 9, 1, 0, 1]),
                want: DecodeError::UnorderedBuckets,
            },
            Case {
                name: "index past top bucket",
                bytes: raw(1, &[1, 9, 9, 9, 1, 7424, 1]),
                want: DecodeError::IndexOutOfRange(7424),
            },
            Case {
                name: "delta overflows",
                bytes: raw(1, &[2, 9, 9, 18, 2, 9, 1, u128::from(u64::MAX), 1]),
                want: DecodeError::IndexOutOfRange(u64::MAX),
            },
            Case {
                name: "zero count",
                bytes: raw(1, &[1, 9, 9, 9, 2, 9, 1, 1, 0]),
                want: DecodeError::ZeroCount(10),
            },
            Case {
                name: "counts short of total",
                bytes: raw(1, &[3, 9, 9, 27, 1, 9, 2]),
                want: DecodeError::CountMismatch(3),
            },
            Case {
                name: "counts beyond total",
                bytes: raw(1, &[1, 9, 9, 9, 1, 9, 2]),
                want: DecodeError::CountMismatch(1),
            },
            Case {
                name: "counts overflow u64",
                bytes: raw(
                    1,
                    &[
                        u128::from(u64::MAX),
                        9,
                        10,
                        9,
                        2,
                        9,
                        u128::from(u64::MAX),
                        1,
                        1,
                    ],
                ),
                want: DecodeError::CountMismatch(u64::MAX),
            },
            Case {
                name: "min in wrong bucket",
                bytes: raw(1, &[2, 8, 10, 19, 2, 9, 1, 1, 1]),
                want: DecodeError::MinOutsideBucket(8),
            },
            Case {
                name: "max in wrong bucket",
                bytes: raw(1, &[2, 9, 11, 19, 2, 9, 1, 1, 1]),
                want: DecodeError::MaxOutsideBucket(11),
            },
            Case {
                name: "sum below possible",
                bytes: raw(1, &[2, 9, 10, 18, 2, 9, 1, 1, 1]),
                want: DecodeError::SumOutOfRange(18),
            },
            Case {
                name: "sum above possible",
                bytes: raw(1, &[1, 9, 9, 10, 1, 9, 1]),
                want: DecodeError::SumOutOfRange(10),
            },
            Case {
                name: "trailing byte",
                bytes: trailing,
                want: DecodeError::TrailingBytes(1),
            },
            Case {
                name: "trailing after empty",
                bytes: raw(1, &[0, 0, 0, 0, 0, 0]),
                want: DecodeError::TrailingBytes(1),
            },
        ];
        for c in &cases {
            check(c);
        }
    }

    #[test]
    fn merge_encoded_overflow_leaves_self_unchanged() {
        let mut big = Sketch::new();
        big.record_n(1, u64::MAX);
        let bytes = sketch_of(&[1]).encoded();
        let before = big.clone();
        assert_eq!(big.merge_encoded(&bytes), Err(DecodeError::MergeOverflow));
        assert_eq!(big, before);
        assert_eq!(Sketch::decode(&big.encoded()), Ok(before));
    }

    /// The fuzzer's reproducers (fuzz/README.md): a trusted merge whose count saturates, and
    /// bytes whose sum does not fit their buckets, used to leave a sketch whose own encoding
    /// `decode` refused (`SumOutOfRange`); `merge` of two sketches whose counts add past
    /// `u64::MAX` used to overflow.
    #[test]
    fn saturating_and_inconsistent_merges_leave_a_sketch_that_decodes() {
        let mut big = Sketch::new();
        big.record_n(9, 1 << 63);
        let bytes = big.encoded();
        let mut acc = Sketch::new();
        acc.merge_encoded_trusted(&bytes);
        acc.merge_encoded_trusted(&bytes);
        assert_eq!(acc.count(), u64::MAX);
        assert_eq!(Sketch::decode(&acc.encoded()), Ok(acc.clone()));

        // Count 9 in the bucket of 1 with a sum of 0 (the real sum is 9), then the above.
        let mut lying = Sketch::new();
        lying.merge_parts(0, 1, 1, [(bucket_index(1), 9)]);
        assert_eq!(Sketch::decode(&lying.encoded()), Ok(lying.clone()));
        assert_eq!(
            lying.sum(),
            9,
            "the sum is moved to the only one the values can have"
        );
        lying.merge_encoded_trusted(&bytes);
        assert_eq!(Sketch::decode(&lying.encoded()), Ok(lying.clone()));

        let (mut a, mut b) = (big.clone(), big.clone());
        a.record_n(5, 1 << 62);
        a.merge(&b);
        assert_eq!(a.count(), u64::MAX);
        assert_eq!(Sketch::decode(&a.encoded()), Ok(a.clone()));
        b.merge(&Sketch::new());
        assert_eq!(b, big, "merging nothing changes nothing");
    }

    /// One value merged as parts is its own min, max and sum, whatever the parts claimed.
    #[test]
    fn one_value_merged_as_parts_is_consistent() {
        let mut s = Sketch::new();
        s.merge_parts(1_000_000, 100, 105, [(bucket_index(103), 1)]);
        assert_eq!((s.min(), s.max()), (s.max(), s.min()));
        assert_eq!(s.sum(), u128::from(s.min().unwrap()));
        assert_eq!(Sketch::decode(&s.encoded()), Ok(s));
    }

    #[test]
    fn error_messages_are_lowercase_without_period() {
        let errors = [
            DecodeError::Empty,
            DecodeError::Truncated { field: COUNT },
            DecodeError::SumOutOfRange(3),
            DecodeError::MergeOverflow,
        ];
        for e in errors {
            let msg = e.to_string();
            assert!(
                msg.chars().next().is_some_and(|c| c.is_lowercase()),
                "{msg}"
            );
            assert!(!msg.ends_with('.'), "{msg}");
        }
    }
}
