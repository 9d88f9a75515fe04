//! [`SlotRecord`]: one closed slot of one series, the record the window exports and the history stores.

use crate::SeriesKey;

/// One closed slot of one series: what the window's slot closer produces, what the history
/// writes as one row of its `requests` table, and what a restart loads back into the windows.
///
/// The field types are the history's, because that is where the record lives longest:
/// - `slot_start_unix` is an `i64` like every Unix timestamp in Arrow and Parquet; the window
///   only ever produces non-negative values and ignores negative ones when importing.
/// - `slot_seconds` is a `u32`: a slot of more than 136 years is not a slot, and the column is
///   `UInt32` in the table.
/// - Latencies are nanoseconds. `latency_sum_ns` is a `u64`: 2^64 ns is 584 years of summed
///   latency in one slot, so the sketch's exact `u128` sum saturates rather than wraps. The min
///   and max are 0 for a slot without requests (which the window never exports).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotRecord {
    /// Start of the slot, Unix seconds (UTC).
    pub slot_start_unix: i64,
    /// Length of the slot in seconds.
    pub slot_seconds: u32,
    pub key: SeriesKey,
    pub requests: u64,
    pub errors: u64,
    pub latency_sum_ns: u64,
    pub latency_min_ns: u64,
    pub latency_max_ns: u64,
    /// The slot's latency sketch in the `slogate-sketch` byte format.
    pub sketch: Vec<u8>,
}
