//! SLOs: good/total from cohort data, burn rates, multi-window burn checks and error budgets.

use crate::CohortData;
use serde::{Deserialize, Serialize};

/// What makes a request good.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SloKind {
    /// Good = not an error.
    Availability,
    /// Good = not an error and at most `threshold_ms` long.
    Latency { threshold_ms: f64 },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SloSpec {
    pub name: String,
    /// Target fraction of good requests, e.g. 0.999.
    pub objective: f64,
    pub kind: SloKind,
    pub period_seconds: u64,
}

/// Alert tiers and the PagerDuty severities they map to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord, Hash)]
pub enum Tier {
    P1,
    P2,
    #[serde(rename = "ticket")]
    Ticket,
}

impl Tier {
    pub fn severity(self) -> &'static str {
        match self {
            Tier::P1 => "critical",
            Tier::P2 => "error",
            Tier::Ticket => "warning",
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            Tier::P1 => "P1",
            Tier::P2 => "P2",
            Tier::Ticket => "ticket",
        }
    }
}

/// One multi-window burn-rate rule: fires when both windows burn at `factor` or faster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BurnTier {
    pub tier: Tier,
    pub factor: f64,
    pub long_seconds: u64,
    pub short_seconds: u64,
}

impl BurnTier {
    /// The Google SRE Workbook's defaults for a 30-day SLO: 2% of the budget in 1 h (14.4×),
    /// 5% in 6 h (6×), 10% in 1 d (3×), and 10% in 3 d (1×).
    pub fn workbook_defaults() -> Vec<BurnTier> {
        let t = |tier, factor, long_seconds, short_seconds| BurnTier {
            tier,
            factor,
            long_seconds,
            short_seconds,
        };
        vec![
            t(Tier::P1, 14.4, 3600, 300),
            t(Tier::P2, 6.0, 6 * 3600, 1800),
            t(Tier::Ticket, 3.0, 86400, 2 * 3600),
            t(Tier::Ticket, 1.0, 3 * 86400, 6 * 3600),
        ]
    }
}

/// `(good, total)` of a cohort under an SLO kind.
pub fn good_total(kind: SloKind, data: &CohortData) -> (u64, u64) {
    let total = data.requests;
    let errors = data.errors.min(total);
    match kind {
        SloKind::Availability => (total - errors, total),
        SloKind::Latency { threshold_ms } => {
            let fast = data.sketch.count_at_most((threshold_ms * 1e6) as u64);
            // Errors are bad however fast. Which latencies the errors had is not kept, so they
            // are assumed to be among the fast ones: the conservative (lowest) good count.
            (fast.saturating_sub(errors).min(total - errors), total)
        }
    }
}

/// How fast the budget burns: the bad fraction over the allowed bad fraction. 1.0 spends the
/// budget exactly over the period. `None` without requests.
pub fn burn_rate(good: u64, total: u64, objective: f64) -> Option<f64> {
    if total == 0 {
        return None;
    }
    let bad = (total - good.min(total)) as f64 / total as f64;
    Some(bad / (1.0 - objective).max(f64::MIN_POSITIVE))
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BurnCheck {
    pub long_burn_rate: Option<f64>,
    pub short_burn_rate: Option<f64>,
    pub long_requests: u64,
    pub short_requests: u64,
    /// Both windows burn at `factor` or faster and the long window has enough requests.
    pub active: bool,
    pub reason: String,
}

/// Applies one burn tier to the long and short windows' `(good, total)`.
pub fn multiwindow(
    long: (u64, u64),
    short: (u64, u64),
    tier: &BurnTier,
    objective: f64,
    min_requests: u64,
) -> BurnCheck {
    let long_rate = burn_rate(long.0, long.1, objective);
    let short_rate = burn_rate(short.0, short.1, objective);
    let window = |s: u64| humanize(s);
    let (active, reason) = if long.1 < min_requests {
        (
            false,
            format!(
                "{} requests in the {} window, fewer than the {min_requests} needed to page",
                long.1,
                window(tier.long_seconds)
            ),
        )
    } else {
        match (long_rate, short_rate) {
            (Some(l), Some(s)) if l >= tier.factor && s >= tier.factor => (
                true,
                format!(
                    "burning {l:.1}x over {} and {s:.1}x over {}, at or above {}x",
                    window(tier.long_seconds),
                    window(tier.short_seconds),
                    tier.factor
                ),
            ),
            (Some(l), s) => (
                false,
                format!(
                    "burning {l:.1}x over {} and {} over {}, below {}x in at least one",
                    window(tier.long_seconds),
                    s.map_or("no data".to_string(), |s| format!("{s:.1}x")),
                    window(tier.short_seconds),
                    tier.factor
                ),
            ),
            (None, _) => (false, "no requests".to_string()),
        }
    };
    BurnCheck {
        long_burn_rate: long_rate,
        short_burn_rate: short_rate,
        long_requests: long.1,
        short_requests: short.1,
        active,
        reason,
    }
}

/// The error budget over the measured part of the period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Budget {
    pub sli: Option<f64>,
    pub good: u64,
    pub total: u64,
    /// 1.0 untouched, 0.0 spent, negative overspent. `None` without requests.
    pub remaining_ratio: Option<f64>,
    /// The remaining budget as time at a sustainable burn (rate 1): `remaining_ratio × period`.
    pub remaining_seconds: Option<f64>,
}

pub fn budget(good: u64, total: u64, objective: f64, period_seconds: u64) -> Budget {
    if total == 0 {
        return Budget {
            sli: None,
            good,
            total,
            remaining_ratio: None,
            remaining_seconds: None,
        };
    }
    let bad = (total - good.min(total)) as f64;
    let allowed = (1.0 - objective) * total as f64;
    let remaining = if allowed > 0.0 {
        1.0 - bad / allowed
    } else if bad > 0.0 {
        f64::NEG_INFINITY
    } else {
        1.0
    };
    Budget {
        sli: Some(good.min(total) as f64 / total as f64),
        good,
        total,
        remaining_ratio: Some(remaining),
        remaining_seconds: Some(remaining * period_seconds as f64),
    }
}

/// `3600` → `1h`, `300` → `5m`, `86400` → `1d`.
pub fn humanize(seconds: u64) -> String {
    match seconds {
        s if s % 86400 == 0 => format!("{}d", s / 86400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use slogate_sketch::Sketch;

    fn data(requests: u64, errors: u64, latencies_ms: &[u64]) -> CohortData {
        let mut sketch = Sketch::new();
        for l in latencies_ms {
            sketch.record(l * 1_000_000);
        }
        CohortData {
            requests,
            errors,
            sketch,
            observed_seconds: None,
            ..Default::default()
        }
    }

    #[test]
    fn burn_rates_by_hand() {
        // (good, total, objective, expected burn): 99.9% objective allows 0.1% bad.
        let cases = [
            (999, 1000, 0.999, Some(1.0)),     // 0.1% bad  = 1x
            (9856, 10_000, 0.999, Some(14.4)), // 1.44% bad = 14.4x
            (994, 1000, 0.999, Some(6.0)),     // 0.6% bad  = 6x
            (1000, 1000, 0.999, Some(0.0)),
            (0, 0, 0.999, None),
            (90, 100, 0.99, Some(10.0)), // 10% bad over 1% allowed
        ];
        for (good, total, objective, want) in cases {
            let got = burn_rate(good, total, objective);
            match (got, want) {
                (Some(g), Some(w)) => assert!(
                    (g - w).abs() < 1e-9,
                    "{good}/{total}@{objective}: {g} vs {w}"
                ),
                (g, w) => assert_eq!(g, w),
            }
        }
    }

    #[test]
    fn both_windows_must_burn_and_low_traffic_never_pages() {
        let tier = &BurnTier::workbook_defaults()[0];
        // (long good/total, short good/total, min_requests, active)
        let cases = [
            ((9800, 10_000), (980, 1000), 100, true),  // 20x and 20x
            ((9800, 10_000), (999, 1000), 100, false), // recovered: short window at 1x
            ((9990, 10_000), (900, 1000), 100, false), // a blip: long window at 1x
            ((0, 50), (0, 10), 100, false),            // every request failed, but only 50
            ((0, 100), (0, 10), 100, true),
        ];
        for (long, short, min, want) in cases {
            let c = multiwindow(long, short, tier, 0.999, min);
            assert_eq!(c.active, want, "{long:?} {short:?}: {}", c.reason);
        }
        let low = multiwindow((0, 50), (0, 10), tier, 0.999, 100);
        assert_eq!(
            low.reason,
            "50 requests in the 1h window, fewer than the 100 needed to page"
        );
    }

    #[test]
    fn good_counts_by_kind() {
        let d = data(10, 2, &[10, 20, 30, 40, 50, 100, 200, 300, 400, 500]);
        assert_eq!(good_total(SloKind::Availability, &d), (8, 10));
        // Eight at most 350 ms, minus the two errors (counted bad however fast).
        assert_eq!(
            good_total(
                SloKind::Latency {
                    threshold_ms: 350.0
                },
                &d
            ),
            (6, 10)
        );
        assert_eq!(
            good_total(SloKind::Latency { threshold_ms: 1.0 }, &d),
            (0, 10)
        );
    }

    #[test]
    fn budgets() {
        // 99.9% over 30 days: 1000 bad of 2,000,000 allowed 2000 → half the budget left, 15 days.
        let b = budget(1_999_000, 2_000_000, 0.999, 30 * 86400);
        assert!((b.remaining_ratio.unwrap() - 0.5).abs() < 1e-9);
        assert!((b.remaining_seconds.unwrap() - 15.0 * 86400.0).abs() < 1e-3);
        let over = budget(990, 1000, 0.999, 86400);
        assert!(
            (over.remaining_ratio.unwrap() + 9.0).abs() < 1e-9,
            "10 bad of 1 allowed: overspent 9x"
        );
        assert_eq!(budget(0, 0, 0.999, 86400).remaining_ratio, None);
    }
}
