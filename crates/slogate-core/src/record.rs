//! The seam between ingest and storage: receivers hand observations to a [`Recorder`].

use crate::Observation;

/// Something that stores observations. Receivers are generic over it so the recording call is
/// static and inlined; the window crate implements it with per-worker shards.
pub trait Recorder: Send + Sync + 'static {
    type Writer<'a>: ObservationWriter
    where
        Self: 'a;

    /// A writer for one batch (one export request). Taking it may lock state private to the
    /// calling worker thread, never state another ingest thread can hold.
    fn writer(&self) -> Self::Writer<'_>;
}

pub trait ObservationWriter {
    /// Records one span. A sampled span ([`Observation::adjusted_count`] > 1) stands for that
    /// many: request and error counts grow by it and the latency sketch by one value, so
    /// counts, rates and budgets estimate all traffic while the sketch's count stays the sample
    /// the statistics may use.
    fn record(&mut self, obs: &Observation<'_>);
}
