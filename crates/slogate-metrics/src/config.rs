//! The store's runtime configuration, its defaults, and unit handling (durations vs other units).

/// Runtime configuration of a [`MetricStore`](crate::MetricStore); validated by the caller.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricStoreConfig {
    /// Width of a history slot and of a histogram cell, in seconds (at least 1).
    pub slot_seconds: u32,
    /// How long points are kept; at least the longest window a criterion uses.
    pub retention_seconds: u64,
    /// Raw samples kept per gauge or sum stream; the oldest are evicted beyond it (counted).
    pub max_points_per_series: usize,
    /// Regular streams in the whole store; overflow streams are outside this cap.
    pub max_series: usize,
    /// Regular streams per `(service, metric)`; further streams go to the overflow stream of
    /// their `(cohort, metric)`. Also the number of producers one overflow stream tracks.
    pub max_series_per_metric: usize,
    /// Overflow streams in the whole store: their own ceiling, so a flood of cohorts cannot
    /// grow them without bound. Beyond it, points of new streams are dropped (counted).
    pub max_overflow_series: usize,
    /// A stream whose newest point is older than this has stopped reporting; a sample's value
    /// holds at most this long for time-in-state.
    pub stale_after_seconds: u64,
    /// Names of the configured extra cohort dimensions, in order (as in `MetricPoint::extras`).
    pub extra_dims: Vec<String>,
}

impl Default for MetricStoreConfig {
    fn default() -> Self {
        MetricStoreConfig {
            slot_seconds: 10,
            retention_seconds: 3600,
            max_points_per_series: 2048,
            max_series: 20_000,
            max_series_per_metric: 1000,
            max_overflow_series: 2000,
            stale_after_seconds: 300,
            extra_dims: Vec::new(),
        }
    }
}

/// Nanoseconds per unit for the UCUM duration units OpenTelemetry uses; `None` for the rest.
pub(crate) fn duration_ns(unit: &str) -> Option<f64> {
    Some(match unit {
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "min" => 60e9,
        "h" => 3600e9,
        _ => return None,
    })
}

/// How a stream's values map to the `u64` values of a sketch, and back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Scale {
    /// Sketch units per metric unit: nanoseconds for durations, thousandths otherwise.
    pub to_sketch: f64,
    /// Whether the unit is a duration (results are then given in milliseconds).
    pub duration: bool,
}

impl Scale {
    pub fn of(unit: &str) -> Scale {
        match duration_ns(unit) {
            Some(ns) => Scale {
                to_sketch: ns,
                duration: true,
            },
            None => Scale {
                to_sketch: 1000.0,
                duration: false,
            },
        }
    }

    /// The sketch value for `v`; `None` for negative values, which a sketch cannot hold.
    #[inline]
    pub fn sketch_value(self, v: f64) -> Option<u64> {
        // `as` saturates at u64::MAX; NaN never reaches here (the decoder rejects it).
        (v >= 0.0).then(|| (v * self.to_sketch).round() as u64)
    }

    /// A sketch value in the unit results are reported in (ms for durations).
    pub fn report_sketch(self, v: u64) -> f64 {
        if self.duration {
            v as f64 / 1e6
        } else {
            v as f64 / 1000.0
        }
    }

    /// A value in the metric's own unit converted to the reported unit.
    pub fn report(self, v: f64) -> f64 {
        if self.duration {
            v * self.to_sketch / 1e6
        } else {
            v
        }
    }

    /// The unit values of the observed quantity are reported in.
    pub fn report_unit(self, unit: &str) -> String {
        if self.duration {
            "ms".to_string()
        } else {
            unit.to_string()
        }
    }
}
