//! Delivery counters and recent history per destination, and their `/metrics` families.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use serde::Serialize;
use slogate_core::prom::{self, Kind};

/// How a delivery ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum DeliveryOutcome {
    Delivered,
    /// The destination refused the notification for good (PagerDuty `400`, Slack
    /// `channel_is_archived`, a receiver's `404`): retrying cannot help, so it was dropped.
    Rejected {
        errors: Vec<String>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeliveryRecord {
    pub seq: u64,
    /// The item's key: the PagerDuty dedup key, the alert id, or the gate a verdict is about.
    pub dedup_key: String,
    /// `trigger`, `resolve`, `verdict`.
    pub action: String,
    #[serde(flatten)]
    pub outcome: DeliveryOutcome,
    /// Requests made for this item, including the final one.
    pub attempts: u32,
    /// The final HTTP status.
    pub status: u16,
    /// Unix seconds of the final answer.
    pub at: u64,
}

/// Delivery counters and recent history of one destination, shared with the API.
#[derive(Debug)]
pub struct DeliveryStats {
    pub(crate) delivered: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) pending: AtomicU64,
    history_cap: usize,
    history: Mutex<VecDeque<DeliveryRecord>>,
    pub(crate) last_error: Mutex<Option<String>>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DeliveryStatsSnapshot {
    pub delivered: u64,
    pub rejected: u64,
    pub retries: u64,
    pub pending: u64,
    /// The most recent retryable failure, cleared by the next success.
    pub last_error: Option<String>,
    /// Newest first.
    pub recent: Vec<DeliveryRecord>,
}

impl DeliveryStats {
    pub fn new(history_cap: usize) -> DeliveryStats {
        DeliveryStats {
            delivered: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            history_cap: history_cap.max(1),
            history: Mutex::new(VecDeque::new()),
            last_error: Mutex::new(None),
        }
    }

    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }
    pub fn pending(&self) -> u64 {
        self.pending.load(Ordering::Relaxed)
    }

    /// Records oldest first.
    pub fn history(&self) -> Vec<DeliveryRecord> {
        self.history.lock().iter().cloned().collect()
    }

    pub fn snapshot(&self) -> DeliveryStatsSnapshot {
        DeliveryStatsSnapshot {
            delivered: self.delivered(),
            rejected: self.rejected(),
            retries: self.retries(),
            pending: self.pending(),
            last_error: self.last_error.lock().clone(),
            recent: self.history.lock().iter().rev().cloned().collect(),
        }
    }

    /// Appends PagerDuty's delivery counters to a Prometheus text exposition (`/metrics`). The
    /// names predate other destinations and stay for the rules and dashboards that use them;
    /// [`DeliveryBoard::render_metrics`] has the same figures for every destination.
    pub fn render_metrics(&self, out: &mut String) {
        let families = [
            (
                "slogate_pagerduty_delivered_total",
                Kind::Counter,
                "PagerDuty events accepted (2xx).",
                self.delivered(),
            ),
            (
                "slogate_pagerduty_rejected_total",
                Kind::Counter,
                "PagerDuty events rejected as invalid (400 or 413) and dropped.",
                self.rejected(),
            ),
            (
                "slogate_pagerduty_retries_total",
                Kind::Counter,
                "PagerDuty sends retried after 429, 5xx or a network error.",
                self.retries(),
            ),
            (
                "slogate_pagerduty_pending",
                Kind::Gauge,
                "Events waiting in the outbox.",
                self.pending(),
            ),
        ];
        for (name, kind, help, value) in families {
            prom::family(out, name, kind, help).sample(&[], value);
        }
    }

    pub(crate) fn record(&self, record: DeliveryRecord) {
        match record.outcome {
            DeliveryOutcome::Delivered => self.delivered.fetch_add(1, Ordering::Relaxed),
            DeliveryOutcome::Rejected { .. } => self.rejected.fetch_add(1, Ordering::Relaxed),
        };
        let mut h = self.history.lock();
        if h.len() >= self.history_cap {
            h.pop_front();
        }
        h.push_back(record);
    }
}

/// One destination on the board.
#[derive(Clone, Debug)]
pub struct BoardEntry {
    /// `pagerduty`, `slack`, or a webhook's configured name.
    pub name: String,
    /// `pagerduty`, `slack` or `webhook`.
    pub kind: &'static str,
    pub stats: Arc<DeliveryStats>,
}

/// The delivery stats of every destination, for `/metrics` and the API.
#[derive(Clone, Debug, Default)]
pub struct DeliveryBoard {
    entries: Vec<BoardEntry>,
}

/// One destination's stats as the API shows them.
#[derive(Clone, Debug, Serialize)]
pub struct DestinationSnapshot {
    pub destination: String,
    pub kind: &'static str,
    #[serde(flatten)]
    pub stats: DeliveryStatsSnapshot,
}

impl DeliveryBoard {
    pub fn add(&mut self, name: impl Into<String>, kind: &'static str, stats: Arc<DeliveryStats>) {
        self.entries.push(BoardEntry {
            name: name.into(),
            kind,
            stats,
        });
    }

    pub fn entries(&self) -> &[BoardEntry] {
        &self.entries
    }

    /// The stats of the destination called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<DeliveryStats>> {
        self.entries
            .iter()
            .find(|e| e.name == name)
            .map(|e| &e.stats)
    }

    pub fn snapshot(&self) -> Vec<DestinationSnapshot> {
        self.entries
            .iter()
            .map(|e| DestinationSnapshot {
                destination: e.name.clone(),
                kind: e.kind,
                stats: e.stats.snapshot(),
            })
            .collect()
    }

    /// Appends the `slogate_notify_*` families, one sample per destination, labelled
    /// `destination` (its name) and `kind`. Written even with no destination (header only), so
    /// a rule over them never refers to a family that is not there.
    pub fn render_metrics(&self, out: &mut String) {
        type Read = fn(&DeliveryStats) -> u64;
        let families: [(&str, Kind, &str, Read); 4] = [
            (
                "slogate_notify_delivered_total",
                Kind::Counter,
                "Notifications accepted (2xx), per destination.",
                DeliveryStats::delivered,
            ),
            (
                "slogate_notify_rejected_total",
                Kind::Counter,
                "Notifications the destination refused for good (e.g. 400, 404, 410) and dropped, per destination.",
                DeliveryStats::rejected,
            ),
            (
                "slogate_notify_retries_total",
                Kind::Counter,
                "Sends retried after 429, 5xx or a network error, per destination.",
                DeliveryStats::retries,
            ),
            (
                "slogate_notify_pending",
                Kind::Gauge,
                "Notifications waiting in the destination's outbox.",
                DeliveryStats::pending,
            ),
        ];
        for (name, kind, help, read) in families {
            let mut f = prom::family(out, name, kind, help);
            for e in &self.entries {
                f.sample(
                    &[("destination", &e.name), ("kind", &e.kind)],
                    read(&e.stats),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u64, outcome: DeliveryOutcome) -> DeliveryRecord {
        DeliveryRecord {
            seq,
            dedup_key: "k".into(),
            action: "trigger".into(),
            outcome,
            attempts: 1,
            status: 202,
            at: 0,
        }
    }

    #[test]
    fn metrics_exposition() {
        let stats = DeliveryStats::new(2);
        stats.record(record(1, DeliveryOutcome::Delivered));
        stats.record(record(2, DeliveryOutcome::Rejected { errors: vec![] }));
        stats.record(record(3, DeliveryOutcome::Delivered));
        stats.retries.fetch_add(4, Ordering::Relaxed);
        let mut out = String::new();
        stats.render_metrics(&mut out);
        let samples: Vec<&str> = out.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            samples,
            [
                "slogate_pagerduty_delivered_total 2",
                "slogate_pagerduty_rejected_total 1",
                "slogate_pagerduty_retries_total 4",
                "slogate_pagerduty_pending 0"
            ]
        );
        // The history ring keeps the newest `history_cap` records.
        assert_eq!(
            stats.history().iter().map(|r| r.seq).collect::<Vec<_>>(),
            [2, 3]
        );
        assert_eq!(
            stats
                .snapshot()
                .recent
                .iter()
                .map(|r| r.seq)
                .collect::<Vec<_>>(),
            [3, 2]
        );
    }

    #[test]
    fn board_exposition_labels_each_destination() {
        let slack = Arc::new(DeliveryStats::new(4));
        slack.record(record(1, DeliveryOutcome::Delivered));
        slack.pending.store(3, Ordering::Relaxed);
        let hook = Arc::new(DeliveryStats::new(4));
        hook.record(record(2, DeliveryOutcome::Rejected { errors: vec![] }));
        let mut board = DeliveryBoard::default();
        board.add("slack", "slack", slack);
        board.add("ops \"bridge\"", "webhook", hook);
        let mut out = String::new();
        board.render_metrics(&mut out);
        let samples: Vec<&str> = out.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            samples,
            [
                r#"slogate_notify_delivered_total{destination="slack",kind="slack"} 1"#,
                r#"slogate_notify_delivered_total{destination="ops \"bridge\"",kind="webhook"} 0"#,
                r#"slogate_notify_rejected_total{destination="slack",kind="slack"} 0"#,
                r#"slogate_notify_rejected_total{destination="ops \"bridge\"",kind="webhook"} 1"#,
                r#"slogate_notify_retries_total{destination="slack",kind="slack"} 0"#,
                r#"slogate_notify_retries_total{destination="ops \"bridge\"",kind="webhook"} 0"#,
                r#"slogate_notify_pending{destination="slack",kind="slack"} 3"#,
                r#"slogate_notify_pending{destination="ops \"bridge\"",kind="webhook"} 0"#,
            ]
        );
        assert_eq!(out.matches("# TYPE").count(), 4);
        // No destination: the headers alone.
        let mut empty = String::new();
        DeliveryBoard::default().render_metrics(&mut empty);
        assert!(empty.lines().all(|l| l.starts_with('#')), "{empty}");
        let json = serde_json::to_value(board.snapshot()).unwrap();
        assert_eq!(json[0]["destination"], "slack");
        assert_eq!(json[0]["pending"], 3);
        assert_eq!(json[1]["recent"][0]["outcome"], "rejected");
    }
}
