//! Domain types shared by every slogate crate: dimensions, series keys, borrowed observations,
//! selectors and the errors they raise.
//!
//! Design decisions:
//! - An [`Observation`] borrows every string from the request buffer it was decoded from, so the
//!   ingest hot path never allocates; only a *new* series turns those bytes into an owned
//!   [`SeriesKey`].
//! - The operation of a span is often two parts (`GET` + `/users/{id}`); [`Operation`] keeps the
//!   parts apart and [`write_key`] joins them into a caller-owned buffer, again without allocating.
//! - A series key has four fixed dimensions (`service`, `env`, `version`, `operation`) and up to
//!   [`MAX_EXTRA_DIMS`] configured extras. Missing values are the empty string, shown as `""`.
//! - A closed slot of one series is one [`SlotRecord`], whether the window just closed it, the
//!   history stores it or a restart loads it back: no conversion between crates.
//! - [`prom`] writes the Prometheus text exposition for every crate that serves `/metrics`, so
//!   escaping and family grouping are decided once.
//! - This crate does no I/O and knows nothing about OTLP.

mod key;
mod selector;

pub use key::{
    MAX_DIM_BYTES, MAX_EXTRA_DIMS, OVERFLOW, Observation, Operation, SeriesKey, write_key,
};
pub use selector::{DIMENSIONS, Selector, SelectorError};

mod record;
pub use record::{ObservationWriter, Recorder};

mod slot;
pub use slot::SlotRecord;

pub mod prom;
pub mod sampling;

pub mod metric;
pub use metric::{
    MetricPoint, MetricSink, MetricSlotRecord, PointRefusal, PointValue, Temporality,
};
