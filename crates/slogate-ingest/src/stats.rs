//! Ingest counters for `/metrics`: updated once per request, never per span.

use crate::extract::{Reject, Tally};
use crate::pipeline::Transport;
use std::fmt::Write;
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

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (i, le) in BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i].load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum{{{labels}}} {}",
            self.sum_ns.load(Relaxed) as f64 / 1e9
        );
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
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

#[derive(Default)]
pub struct IngestStats {
    pub spans_accepted: AtomicU64,
    pub spans_skipped: AtomicU64,
    spans_rejected: [AtomicU64; 4],
    transports: [TransportStats; 3],
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
            let n = tally.rejected[r as usize];
            if n > 0 {
                self.spans_rejected[r as usize].fetch_add(n, Relaxed);
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

    pub fn spans_rejected(&self, why: Reject) -> u64 {
        self.spans_rejected[why as usize].load(Relaxed)
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
        out.push_str("# HELP slogate_spans_accepted_total Spans recorded as observations.\n# TYPE slogate_spans_accepted_total counter\n");
        let _ = writeln!(
            out,
            "slogate_spans_accepted_total {}",
            self.spans_accepted.load(Relaxed)
        );
        out.push_str("# HELP slogate_spans_skipped_total Valid spans not recorded because their kind is not an entry kind.\n# TYPE slogate_spans_skipped_total counter\n");
        let _ = writeln!(
            out,
            "slogate_spans_skipped_total {}",
            self.spans_skipped.load(Relaxed)
        );
        out.push_str("# HELP slogate_spans_rejected_total Invalid spans rejected, by reason.\n# TYPE slogate_spans_rejected_total counter\n");
        for r in Reject::ALL {
            let _ = writeln!(
                out,
                "slogate_spans_rejected_total{{reason=\"{}\"}} {}",
                r.label(),
                self.spans_rejected(r)
            );
        }
        out.push_str("# HELP slogate_receiver_requests_total Export requests by transport and outcome.\n# TYPE slogate_receiver_requests_total counter\n");
        for t in Transport::ALL {
            for o in RequestOutcome::ALL {
                let _ = writeln!(
                    out,
                    "slogate_receiver_requests_total{{transport=\"{}\",outcome=\"{}\"}} {}",
                    t.label(),
                    o.label(),
                    self.requests(t, o)
                );
            }
        }
        out.push_str("# HELP slogate_receiver_request_duration_seconds Time to decode and record one export request.\n# TYPE slogate_receiver_request_duration_seconds histogram\n");
        for t in Transport::ALL {
            self.transports[t as usize].latency.render(
                out,
                "slogate_receiver_request_duration_seconds",
                &format!("transport=\"{}\"", t.label()),
            );
        }
    }
}
