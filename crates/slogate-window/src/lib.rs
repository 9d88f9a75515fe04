//! Rolling windows over per-series slots: the series registry, per-worker open slots, closed-slot
//! rings, and window queries.
//!
//! Design decisions:
//! - **Per-worker open slots.** Each ingest thread records into its own [`shard`](Registry::writer)
//!   (a mutex only that thread and the slot closer or a query ever take), so ingest threads never
//!   wait for each other. A batch takes the lock once and the clock once.
//! - **Series lookup from raw bytes.** A shard caches `key bytes → series id`; the key bytes are
//!   built in a reused buffer, so a known series costs a hash lookup and no allocation. Only a
//!   new series reaches the shared index (a `DashMap`) and becomes an owned [`SeriesKey`].
//! - **Slots.** Time is cut into slots of `slot_seconds` (10 s by default) by receive time. When
//!   a slot ends, the closer merges every shard's open state into the series' history:
//!   a *fine* ring (one sketch per slot, 1 h by default) and a *coarse* ring (one per
//!   `coarse_slot_seconds`, 5 min by default, kept 3 days). Closed sketches are stored encoded
//!   (the sketch byte format), so memory scales with the distinct latency buckets seen, not with
//!   a fixed array per slot.
//! - **Freshness.** A query merges closed slots *and* the shards' open slots, so a span is
//!   visible as soon as its export request was acknowledged.
//! - **Windows** cover the open slot plus the `ceil(window / slot)` slots before it, so a window
//!   never misses data at its far edge; up to the fine retention at slot resolution, beyond it
//!   at coarse resolution.
//! - **Cardinality** is capped per service and in total; what does not fit is recorded in an
//!   overflow series (operation `__overflow__`, keeping env and version while a few such series
//!   per service fit, then all `__overflow__`), and counted.

mod history;
mod open;
mod registry;

pub use history::{ClosedSlot, History};
pub use registry::{ClosedRow, Clock, ManualClock, MemoryStats, Registry, RegistryStats, SystemClock, WindowConfig, WindowStats, Writer};

#[cfg(test)]
mod tests;
