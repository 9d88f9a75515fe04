//! The OTLP metric store: streams of gauges, sums, histograms and summaries; cumulative values
//! turned into increases; histograms turned into sketches; window aggregations that say why
//! when they have no answer.
//!
//! # Streams
//!
//! A stream is identified by `(service, env, version, extras, instance, metric, attributes)`
//! (see `slogate_core::metric`). Its shape (kind, temporality, monotonicity) and unit are fixed
//! by its first point; a later point of another shape or unit is refused as `Conflict`.
//!
//! # Caps and overflow
//!
//! - Beyond `max_series_per_metric` regular streams for a `(service, metric)`, or beyond
//!   `max_series` regular streams in all, a new stream's points go to the **overflow stream** of
//!   its `(cohort, metric)`: instance `""`, attributes `[("__overflow__", "true")]`, counted in
//!   `slogate_metric_overflow_points_total`.
//! - Overflow streams are outside `max_series`, so a full store does not starve a new cohort
//!   (the canary) of an existing service: each `(cohort, metric)` can still get its overflow
//!   stream. They have their own ceiling, `max_overflow_series` (added to the brief's config,
//!   default 2,000), so a flood of cohorts stays bounded. Past it, a point of a new stream is
//!   **accepted but dropped** (`Ok`, counted in `slogate_metric_points_dropped_total{reason=
//!   "series_limit"}`): no `PointRefusal` says "over a cardinality cap", and refusing would make
//!   well-behaved exporters retry a point that can never be stored.
//! - An overflow stream mixes producers, so it keeps one small baseline per producer (hash of
//!   its full identity, at most `max_series_per_metric` of them, stale ones forgotten first) and
//!   turns each producer's cumulative points into increases before they meet. Its samples are
//!   kept in time order across producers, so its increases, rates and histogram values are
//!   sound, while its raw values (`Last`, `Min`, `Max`, `Avg` of a cumulative sum) mix
//!   producers and mean little. Overflow streams match equality attribute matchers
//!   only through their own `__overflow__` attribute: a query for `route=/x` does not see the
//!   overflowed part (its point count says so via `slogate_metric_overflow_points_total`).
//! - Caps never loosen (streams are not removed while the store lives), which lets a point of
//!   an overflowed stream find its overflow stream without the catalog lock.
//!
//! # Increases
//!
//! Computed at ingest, per stream (per producer in an overflow stream):
//! - Delta sums: the value (may be negative unless monotonic; a negative monotonic delta is a
//!   `Conflict`).
//! - Cumulative sums: `value − previous` while the start time stays and (monotonic) the value
//!   does not drop. A new start time, or a drop of a monotonic sum, is a **reset**: the increase
//!   is the value itself (the count since the new start), never negative; counted in
//!   `slogate_metric_resets_total`. Up-down counters reset only on a new start time.
//! - The first point of a cumulative stream is its baseline: no increase, unless its start time
//!   is set, then its whole value is the increase since that start, counted only by windows
//!   (and history slots) that contain the start: a counter born inside the window.
//! - Every increase remembers the interval it covers, `(from, t]`: the previous point's time, or
//!   the start time of a reset or a birth when it is after the previous point.
//! - Histograms and summaries: the same per bucket, count and sum; a reset is a new start time
//!   or any decrease (count, a bucket, the zero bucket), or an exponential scale that grew. An
//!   exponential histogram whose scale shrank is compared after merging the previous buckets
//!   down to the new scale. Explicit bounds that change without a new start time are a
//!   `Conflict`.
//!
//! # Time
//!
//! - A point older than `now − retention` or newer than `now + 300 s` is `OutOfRange`; a point
//!   at or before the stream's (producer's) last time is `OutOfRange`, except the same time,
//!   which is an accepted duplicate (ignored, counted).
//! - Gauges and sums keep raw samples, at most `max_points_per_series` (the oldest evicted,
//!   counted) and none older than the retention (pruned on insert, on query and on slot close).
//! - Histograms and summaries keep one cell per slot (`slot_seconds`, aligned to the Unix
//!   epoch, by point time): count increase, sum increase, and the sketch of the bucket
//!   increments, stored encoded (a few bytes per bucket). A point does not re-encode it: its
//!   bucket increments are added to the stream's one pending accumulator (a count per bucket
//!   of the stream's layout, whose representatives are computed once per layout, plus a short
//!   spill list for edge buckets whose min or max moved), which is folded into the cell's
//!   bytes, straight in the sketch's byte format, when the stream moves to another slot, its
//!   layout changes, the spill list fills, or the slot is exported. Queries read the
//!   accumulator too, so a point counts as soon as it is acknowledged; a pruned cell takes its
//!   pending increments with it. A known stream records without allocating once its buffers
//!   have grown (a new cell reuses the sketch bytes of a pruned one).
//!
//! # Restarts
//!
//! [`MetricStore::restore`] takes the history's per-slot rows of the time before the store
//! started; queries add the restored slots that start in their window to the live points of
//! the same stream (a cumulative sum's first point since is bridged to the last restored
//! value), and time in a state or transitions over a window that reaches before the start
//! have no value. See `restored`.
//!
//! # Histograms as sketches
//!
//! - Values map to the sketch's `u64`: nanoseconds for duration units (`ns`, `us`, `ms`, `s`,
//!   `min`, `h`), otherwise thousandths of the unit (so bytes, tokens or cost get quantiles too,
//!   at 0.001 resolution). Negative values cannot be sketched: they are counted (in `count`, and
//!   ranked below every sketched value) but not sketched; a quantile that falls among them has
//!   no value, and the gap says so.
//! - Representatives: explicit bucket `(lo, hi]` → its midpoint; the first bucket → `min` when
//!   reported and `≤ b0`, else `b0`; the last → `max` when reported and above the last bound,
//!   else the last bound; exponential bucket `i` → `2·base^(i+1)/(1+base)`; the zero bucket → 0.
//! - `error_bound` of a quantile is relative **to the answer**: the true value lies within
//!   `answer × (1 ± error_bound)`. It combines the source bucket's bound `r` with the sketch's
//!   relative error `e` as `(r + e) / (1 − e)`. `r` is the bucket's half-width over its midpoint
//!   `(hi − lo)/(hi + lo)` for an inner explicit bucket, `(b0 − min)/min` and `(max − b_last)/
//!   b_last` for the edge buckets (with the window's smallest `min` and largest `max`), and
//!   `(base − 1)/2` for an exponential bucket: relative to the representative this is the
//!   larger side (OpenTelemetry's `(base − 1)/(base + 1)` is relative to the true value). When
//!   several streams match, the widest bound wins. A bucket with no finite relative bound (an
//!   edge bucket without min/max, a bucket reaching 0) gives `None`.
//! - Summaries keep count and sum increases (no sketch) and the last point's quantiles.
//!
//! # Queries
//!
//! [`MetricStore::query`] takes a cohort [`Selector`](slogate_core::Selector) (service, env,
//! version, extras; its `operation` is ignored: metrics have none), a [`Selection`] (metric and
//! attribute matchers), an [`Aggregate`], a [`Combine`] across streams and a window ending now.
//! Per kind:
//!
//! | aggregate | gauge | sum | histogram, summary |
//! |---|---|---|---|
//! | `Last`, `Min`, `Max`, `Avg` | values | values (a cumulative sum's running total) | `Avg`: sum increase / count increase |
//! | `Sum` | sum of values | the increase | sum increase |
//! | `Count` | points | points | points |
//! | `Increase`, `Rate` | — | increase; rate = increase / seconds covered | count increase; rate |
//! | `Quantile(q)` | — | — | merged sketch (histograms); last value of exactly `q` (summaries) |
//! | `TimeInState`, `Transitions` | yes | yes | — |
//!
//! - The increase of a cumulative sum counts only increases whose interval starts inside the
//!   window, so it needs two points in the window (or a counter started in it); a delta sum
//!   needs one point. Rate divides by the time from the earliest interval start (clipped to the
//!   window) to the last point.
//! - Histogram and summary windows are whole slots: a slot that overlaps the window counts
//!   whole, with the increments its points carry (which cover back to their previous point).
//! - Values of the observed quantity of a histogram or summary (quantiles, `Avg`, `Sum`) are in
//!   milliseconds for duration units, else in the metric's unit; `Measure::unit` says which.
//! - `TimeInState`: a sample's value holds from its time until the next sample, for at most
//!   `stale_after_seconds`, clipped to the window; the last sample before the window counts
//!   for the part of its hold inside it. `Transitions` counts changes between consecutive
//!   samples, from the last sample before the window on.
//! - **No data is never a pass**: the value is `None`, with one sentence in `gap`, when no
//!   stream matches, streams of two kinds or units match, the aggregate does not apply to the
//!   kind, every matched stream stopped reporting (`stale_after_seconds`), no point is in the
//!   window, a cumulative increase lacks its second point, a rate spans no time, or a quantile
//!   has no value.
//!
//! # History
//!
//! [`MetricStore::close_slots`] exports each `(stream, slot)` with data exactly once, once the
//! slot ended at least one slot ago. A slot's increase is the sum of the increases of the points
//! in it (a birth counts when the start is inside the slot), so slot increases add up exactly
//! over time. A point that arrives for a slot already exported stays visible to windows but
//! not to the history (counted in `slogate_metric_late_points_total`).
//!
//! # Concurrency
//!
//! Streams live in 64 shards of an open-addressing index (`index.rs`); a point's identity parts
//! are packed into a reused buffer (each ended by a byte UTF-8 never holds), hashed with
//! foldhash, and a hit is confirmed by one comparison with the packed key stored inside the
//! stream, so finding a known stream allocates nothing. Each stream has its own lock, and its
//! outcome counters live under it, so the hot path touches no shared atomic. Creating a stream
//! takes the catalog lock (never held by the hot path).
//!
//! A request's points go through `record_points`: one clock read per request, and a
//! look-ahead that prefetches the index slot of the point 12 places ahead and the stream (its
//! lock, state, packed key, and where its last point wrote) of the point 6 places ahead. An
//! export touches thousands of streams once each, so nearly every point's memory is cold;
//! the look-ahead overlaps those misses (on the bench's 20,000 streams, about -40 % CPU per
//! point for the store, `examples/record_loop.rs`).

mod config;
mod index;
mod pending;
mod prefetch;
mod query;
mod restored;
mod store;
mod stream;

pub use config::MetricStoreConfig;
pub use query::{Aggregate, Combine, Measure, Selection, query_stored};
pub use restored::RestoreReport;
pub use store::{MetricStore, StreamInfo};
pub use stream::OVERFLOW_ATTRIBUTE;

#[cfg(test)]
mod tests;
