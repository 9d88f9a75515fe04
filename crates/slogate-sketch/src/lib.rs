//! Mergeable log-linear latency sketch with bounded relative error and a versioned byte format.
//!
//! [`Sketch`] keeps, per series, a histogram of `u64` nanosecond values from which quantiles,
//! threshold counts and rank statistics are read back. Count, sum, min and max are exact; only
//! the position of a value inside its bucket is lost.
//!
//! # Why log-linear buckets
//!
//! Latency SLOs are stated relative to the value ("p99 within 1%"), so buckets must be narrow
//! in proportion to the value: a fixed *relative* width. DDSketch gets that from
//! `ceil(log_gamma(v))`, which needs a floating-point logarithm per record and a parameter both
//! sides of a merge must agree on. The HDR-style layout used here gets nearly the same shape
//! from integer bit tricks alone:
//!
//! * values `0..128` get one exact bucket each (`index = v`);
//! * for `v >= 128`, with `p` the position of the most significant bit (`p >= 7`), the 7 bits
//!   after it select one of 128 equal sub-buckets: `index = (p - 6) * 128 + ((v >> (p - 7)) & 127)`.
//!
//! This is one `leading_zeros`, a shift and an add ([`bucket_index`]), with no float and no
//! table. The index space is fixed (`NUM_BUCKETS = 7424`, fits a `u16`), so any two sketches
//! merge exactly by adding counts, with no parameter to negotiate and no collapsing.
//!
//! # Error bound
//!
//! A bucket starting at `L` with width `w` satisfies `L >= 128 * w` (its first value has a
//! mantissa of at least 128 steps of `w`). Its representative [`bucket_value`] is the midpoint
//! `L + w / 2`, so for any `v` in the bucket `|rep - v| <= w / 2 <= L / 256 <= v / 256`:
//! [`RELATIVE_ERROR`] is `1/256` (~0.39%). Buckets below 256 have width one and are exact.
//! Quantiles are nearest-rank on exact counts, so the bucket found is the one that holds the
//! true order statistic, and the answer is within `RELATIVE_ERROR` of it. Clamping to the exact
//! `[min, max]` only moves it closer.
//!
//! # Memory
//!
//! Counts live in one contiguous `Vec<u64>` covering a window `[lo, lo + len)` of indexes that
//! grows in either direction as values arrive (with slack, so growth is amortised) and is kept
//! by [`Sketch::clear`]. A series spanning 1 µs to 10 s touches about 3,000 buckets (~24 KiB),
//! far below the 58 KiB worst case of a full window. Once the window covers the data,
//! [`Sketch::record`] never allocates.
//!
//! # Byte format (version 1)
//!
//! All integers after the version byte are unsigned LEB128 varints (7 bits per byte, least
//! significant group first, high bit set when more bytes follow), minimally encoded:
//!
//! | field | type | notes |
//! |---|---|---|
//! | version | 1 byte | [`FORMAT_VERSION`] = 1 |
//! | count | u64 | number of values |
//! | min | u64 | exact; 0 when count is 0 |
//! | max | u64 | exact; 0 when count is 0 |
//! | sum | u128 | exact sum in nanoseconds; up to 19 bytes |
//! | entries | u64 | number of non-empty buckets, at most 7424 |
//! | per entry: index delta | u64 | first entry: the index itself; then the gap to the previous index, at least 1 |
//! | per entry: count | u64 | at least 1 |
//!
//! An empty sketch is 6 bytes (`01 00 00 00 00 00`). Encoding is canonical: equal sketches
//! encode to equal bytes, whatever their allocated window. [`Sketch::decode`] and
//! [`Sketch::merge_encoded`] treat input as untrusted: they never panic, never size an
//! allocation from a length in the input, and reject unknown versions, overlong or truncated
//! varints, indexes out of range or not strictly increasing, zero counts, counts not adding up
//! to `count`, `min > max`, min/max outside the first/last non-empty bucket, a sum no set of
//! values in those buckets could have, and trailing bytes. [`Sketch::merge_encoded`] validates
//! everything in a first pass and only then adds counts in a second, so an `Err` leaves the
//! target untouched.

mod bucket;
mod codec;
mod sketch;

pub use bucket::{
    MAX_INDEX, NUM_BUCKETS, RELATIVE_ERROR, bucket_index, bucket_lower, bucket_upper, bucket_value,
};
pub use codec::{DecodeError, FORMAT_VERSION};
pub use sketch::{Sketch, nearest_rank};
