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
//! - **Compact open slots.** A shard's open slot keeps each series' bucket counts in one byte
//!   arena (a small sparse table for quiet series, a dense window for busy ones; see `open`), so
//!   live memory per series is a few KiB at most and a series that goes quiet costs nothing
//!   there one slot later.
//! - **Slots.** Time is cut into slots of `slot_seconds` (10 s by default) by receive time. When
//!   a slot ends, the closer takes it out of every shard, merges each series' parts once and
//!   seals the result, encoded, into the series' history: a *fine* ring (one sketch per slot,
//!   1 h by default) and a *coarse* ring (one per `coarse_slot_seconds`, 5 min by default, kept
//!   3 days). Nothing decoded is kept between slots; closed memory scales with the distinct
//!   latency buckets seen, not with a fixed array per slot.
//! - **Memory** is accounted exactly by allocated capacity ([`Registry::memory`]); a test checks
//!   it against a counting allocator.
//! - **Freshness.** A query merges closed slots *and* the shards' open slots, so a span is
//!   visible as soon as its export request was acknowledged.
//! - **Windows** cover the open slot plus the `ceil(window / slot)` slots before it, so a window
//!   never misses data at its far edge; up to the fine retention at slot resolution, beyond it
//!   at coarse resolution. Inside a fine window, whole coarse slots are read from the coarse
//!   ring (they hold exactly their fine slots), so a 10-minute window merges a few coarse
//!   slots and the fine slots at its edge instead of 60.
//! - **Cardinality** is capped per service and in total; what does not fit is recorded in an
//!   overflow series (operation `__overflow__`, keeping env and version while a few such series
//!   per service fit, then all `__overflow__`), and counted. Each shard learns where its capped
//!   services' new keys go (maps keyed by values of series that exist, so bounded by the caps),
//!   so a cardinality flood costs a lookup or two per span, without the registry's lock or an
//!   allocation; caps only fill, so what a shard learnt stays true.

mod history;
mod open;
mod registry;

pub use history::{ClosedSlot, History};
pub use registry::{
    Clock, MAX_TIMELINE_STEPS, ManualClock, MemoryStats, Registry, RegistryStats, SystemClock,
    TimelineStep, WindowConfig, WindowStats, Writer,
};

#[cfg(test)]
mod tests;
