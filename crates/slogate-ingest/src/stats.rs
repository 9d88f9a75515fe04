//! Ingest counters for `/metrics`: updated once per request, never per span or data point.

use crate::extract::{Reject, Tally};
use crate::metrics::{MetricTally, PointReject};
use crate::pipeline::Transport;
use crate::shed::ShedReason;
use slogate_core::prom::{self, Family, Float, Kind};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Request latency buckets in seconds (upper bounds), Prometheus histogram style.
const BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

#[derive(Default)]
pub struct LatencyHistogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl LatencyHistogram {
    pub fn observe(&self, elapsed: std::time::Duration) {
        let secs = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_ns
            .fetch_add(elapsed.as_nanos().min(u64::MAX as u128) as u64, Relaxed);
    }

    /// Writes this histogram's `_bucket`, `_sum` and `_count` samples with one extra label.
    fn render(&self, f: &mut Family<'_>, label: (&str, &str)) {
        let (k, v) = label;
        self.render_labelled(f, &[(k, &v)]);
    }

    /// Writes this histogram's samples with the given labels (at most two).
    fn render_labelled(&self, f: &mut Family<'_>, labels: &prom::Labels<'_>) {
        let with_le = |le: &dyn std::fmt::Display, f: &mut Family<'_>, value: u64| {
            let mut all: [(&str, &dyn std::fmt::Display); 3] = [("le", le); 3];
            all[..labels.len()].copy_from_slice(labels);
            all[labels.len()] = ("le", le);
            f.sample_suffixed("_bucket", &all[..=labels.len()], value);
        };
        let mut cumulative = 0;
        for (i, le) in BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i].load(Relaxed);
            with_le(&Float(*le), f, cumulative);
        }
        let count = self.count.load(Relaxed);
        with_le(&Float(f64::INFINITY), f, count);
        let sum = self.sum_ns.load(Relaxed) as f64 / 1e9;
        f.sample_suffixed("_sum", labels, sum);
        f.sample_suffixed("_count", labels, count);
    }
}

/// Outcome labels of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestOutcome {
    Ok,
    Partial,
    Malformed,
    TooLarge,
    Unsupported,
    Overloaded,
    Internal,
}

impl RequestOutcome {
    const ALL: [RequestOutcome; 7] = [
        RequestOutcome::Ok,
        RequestOutcome::Partial,
        RequestOutcome::Malformed,
        RequestOutcome::TooLarge,
        RequestOutcome::Unsupported,
        RequestOutcome::Overloaded,
        RequestOutcome::Internal,
    ];
    fn label(self) -> &'static str {
        match self {
            RequestOutcome::Ok => "ok",
            RequestOutcome::Partial => "partial",
            RequestOutcome::Malformed => "malformed",
            RequestOutcome::TooLarge => "too_large",
            RequestOutcome::Unsupported => "unsupported",
            RequestOutcome::Overloaded => "overloaded",
            RequestOutcome::Internal => "internal",
        }
    }
}

#[derive(Default)]
pub struct TransportStats {
    requests: [AtomicU64; 7],
    latency: LatencyHistogram,
}

/// Outcome labels of a data point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointOutcome {
    Accepted,
    Rejected,
    /// Flagged as having no recorded value: valid, not recorded.
    Skipped,
}

impl PointOutcome {
    pub const ALL: [PointOutcome; 3] = [
        PointOutcome::Accepted,
        PointOutcome::Rejected,
        PointOutcome::Skipped,
    ];
    fn label(self) -> &'static str {
        match self {
            PointOutcome::Accepted => "accepted",
            PointOutcome::Rejected => "rejected",
            PointOutcome::Skipped => "skipped",
        }
    }
}

#[derive(Default)]
pub struct IngestStats {
    pub spans_accepted: AtomicU64,
    pub spans_skipped: AtomicU64,
    spans_rejected: [AtomicU64; Reject::COUNT],
    transports: [TransportStats; 3],
    /// Metrics: data points by transport and [`PointOutcome`].
    metric_points: [[AtomicU64; 3]; 3],
    metric_points_rejected: [AtomicU64; PointReject::COUNT],
    metric_transports: [TransportStats; 3],
    /// Requests refused for overload, by [`ShedReason`].
    shed: [AtomicU64; ShedReason::ALL.len()],
}

impl IngestStats {
    pub fn count_tally(&self, tally: &Tally) {
        if tally.recorded > 0 {
            self.spans_accepted.fetch_add(tally.recorded, Relaxed);
        }
        if tally.skipped > 0 {
            self.spans_skipped.fetch_add(tally.skipped, Relaxed);
        }
        for r in Reject::ALL {
            let n = tally.rejected[r.index()];
            if n > 0 {
                self.spans_rejected[r.index()].fetch_add(n, Relaxed);
            }
        }
    }

    pub fn count_request(
        &self,
        transport: Transport,
        outcome: RequestOutcome,
        elapsed: std::time::Duration,
    ) {
        let t = &self.transports[transport as usize];
        t.requests[RequestOutcome::ALL
            .iter()
            .position(|o| *o == outcome)
            .unwrap_or(0)]
        .fetch_add(1, Relaxed);
        t.latency.observe(elapsed);
    }

    /// Counts a metrics request's rejections by reason (transport-independent).
    pub fn count_metric_tally(&self, tally: &MetricTally) {
        for r in PointReject::ALL {
            let n = tally.rejected[r.index()];
            if n > 0 {
                self.metric_points_rejected[r.index()].fetch_add(n, Relaxed);
            }
        }
    }

    /// Counts a finished metrics request and, when it was decoded, its points.
    pub fn count_metric_request(
        &self,
        transport: Transport,
        outcome: RequestOutcome,
        elapsed: std::time::Duration,
        tally: Option<&MetricTally>,
    ) {
        let t = &self.metric_transports[transport as usize];
        t.requests[outcome_index(outcome)].fetch_add(1, Relaxed);
        t.latency.observe(elapsed);
        if let Some(tally) = tally {
            let points = &self.metric_points[transport as usize];
            for (i, n) in [tally.recorded, tally.total_rejected(), tally.skipped]
                .into_iter()
                .enumerate()
            {
                if n > 0 {
                    points[i].fetch_add(n, Relaxed);
                }
            }
        }
    }

    /// Data points of metrics requests, by transport and outcome.
    pub fn metric_points(&self, transport: Transport, outcome: PointOutcome) -> u64 {
        let i = PointOutcome::ALL
            .iter()
            .position(|o| *o == outcome)
            .unwrap_or(0);
        self.metric_points[transport as usize][i].load(Relaxed)
    }

    /// Rejected data points of metrics requests, by reason.
    pub fn metric_points_rejected(&self, why: PointReject) -> u64 {
        self.metric_points_rejected[why.index()].load(Relaxed)
    }

    /// Metrics export requests by transport and outcome.
    pub fn metric_requests(&self, transport: Transport, outcome: RequestOutcome) -> u64 {
        self.metric_transports[transport as usize].requests[outcome_index(outcome)].load(Relaxed)
    }

    pub(crate) fn count_shed(&self, reason: ShedReason) {
        self.shed[reason as usize].fetch_add(1, Relaxed);
    }

    /// Requests (spans and metrics alike) refused for overload, by reason.
    pub fn shed(&self, reason: ShedReason) -> u64 {
        self.shed[reason as usize].load(Relaxed)
    }

    pub fn spans_rejected(&self, why: Reject) -> u64 {
        self.spans_rejected[why.index()].load(Relaxed)
    }

    pub fn requests(&self, transport: Transport, outcome: RequestOutcome) -> u64 {
        let i = RequestOutcome::ALL
            .iter()
            .position(|o| *o == outcome)
            .unwrap_or(0);
        self.transports[transport as usize].requests[i].load(Relaxed)
    }

    /// Appends the Prometheus text exposition of these counters.
    pub fn render(&self, out: &mut String) {
        prom::family(
            out,
            "slogate_spans_accepted_total",
            Kind::Counter,
            "Spans recorded as observations.",
        )
        .sample(&[], self.spans_accepted.load(Relaxed));
        prom::family(
            out,
            "slogate_spans_skipped_total",
            Kind::Counter,
            "Valid spans not recorded because their kind is not an entry kind.",
        )
        .sample(&[], self.spans_skipped.load(Relaxed));
        let mut f = prom::family(
            out,
            "slogate_spans_rejected_total",
            Kind::Counter,
            "Invalid spans rejected, by reason.",
        );
        for r in Reject::ALL {
            f.sample(&[("reason", &r.label())], self.spans_rejected(r));
        }
        let mut f = prom::family(
            out,
            "slogate_ingest_shed_total",
            Kind::Counter,
            "Export requests (spans and metrics) refused with a retryable overload answer, by reason: in_flight, memory or drill.",
        );
        for r in ShedReason::ALL {
            f.sample(&[("reason", &r.label())], self.shed(r));
        }
        let mut f = prom::family(
            out,
            "slogate_receiver_requests_total",
            Kind::Counter,
            "Export requests by transport and outcome.",
        );
        for t in Transport::ALL {
            for o in RequestOutcome::ALL {
                f.sample(
                    &[("transport", &t.label()), ("outcome", &o.label())],
                    self.requests(t, o),
                );
            }
        }
        let mut f = prom::family(
            out,
            "slogate_receiver_request_duration_seconds",
            Kind::Histogram,
            "Time to decode and record one export request.",
        );
        for t in Transport::ALL {
            self.transports[t as usize]
                .latency
                .render(&mut f, ("transport", t.label()));
        }
        self.render_metrics_signal(out);
    }

    /// The metrics signal's families: every sample carries `signal="metrics"`.
    fn render_metrics_signal(&self, out: &mut String) {
        let signal = "metrics";
        let mut f = prom::family(
            out,
            "slogate_ingest_points_total",
            Kind::Counter,
            "Data points of metrics export requests by transport and outcome.",
        );
        for t in Transport::ALL {
            for o in PointOutcome::ALL {
                f.sample(
                    &[
                        ("signal", &signal),
                        ("transport", &t.label()),
                        ("outcome", &o.label()),
                    ],
                    self.metric_points(t, o),
                );
            }
        }
        let mut f = prom::family(
            out,
            "slogate_ingest_points_rejected_total",
            Kind::Counter,
            "Invalid or refused data points of metrics export requests, by reason.",
        );
        for r in PointReject::ALL {
            f.sample(
                &[("signal", &signal), ("reason", &r.label())],
                self.metric_points_rejected(r),
            );
        }
        let mut f = prom::family(
            out,
            "slogate_ingest_requests_total",
            Kind::Counter,
            "Metrics export requests by transport and outcome.",
        );
        for t in Transport::ALL {
            for o in RequestOutcome::ALL {
                f.sample(
                    &[
                        ("signal", &signal),
                        ("transport", &t.label()),
                        ("outcome", &o.label()),
                    ],
                    self.metric_requests(t, o),
                );
            }
        }
        let mut f = prom::family(
            out,
            "slogate_ingest_request_duration_seconds",
            Kind::Histogram,
            "Time to decode and record one metrics export request.",
        );
        for t in Transport::ALL {
            self.metric_transports[t as usize]
                .latency
                .render_labelled(&mut f, &[("signal", &signal), ("transport", &t.label())]);
        }
    }
}

fn outcome_index(outcome: RequestOutcome) -> usize {
    RequestOutcome::ALL
        .iter()
        .position(|o| *o == outcome)
        .unwrap_or(0)
}
