//! What happened, independent of where it is sent: an alert that fired or resolved, or a gate
//! whose verdict changed. Each destination's format ([`crate::slack`], [`crate::webhook`])
//! turns these into its own message.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use crate::event::Severity;

/// Why a message cannot be queued (checked at enqueue: a bug here should fail where it can be
/// fixed, not at Slack).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum MessageError {
    #[error("message key is empty")]
    EmptyKey,
    #[error("message text is blank")]
    BlankText,
    #[error("message has {0} blocks, the limit is 50")]
    TooManyBlocks(usize),
    #[error("alertmanager payload has no alerts")]
    NoAlerts,
}

/// An alert transition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertNote {
    /// The alert's stable id (its PagerDuty dedup key): a trigger and its resolve share it.
    pub id: String,
    /// `true` when the alert starts firing, `false` when it resolves.
    pub firing: bool,
    /// The rule, SLO or gate that fired.
    pub rule: String,
    /// `slo_burn`, `threshold` or `gate_failure`.
    pub class: String,
    /// The service, or empty when the rule has none.
    pub service: String,
    /// `P1`, `P2` or `ticket`.
    pub tier: String,
    pub severity: Severity,
    /// The condition in one line, as evaluated when the alert last changed.
    pub summary: String,
    /// Where to look: the SLO, the rule's SLI or the gate's verdicts in slogate.
    pub link: String,
    /// Unix seconds the alert started firing.
    pub started_at: u64,
    /// Unix seconds it resolved; `None` while firing.
    pub ended_at: Option<u64>,
    /// What the rule measured (burn rates, the observed value and its threshold…).
    pub details: Value,
}

/// A gate's verdict changed: one per change, never per evaluation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VerdictNote {
    pub gate: String,
    pub phase: String,
    pub service: String,
    pub canary: CohortFigures,
    pub baseline: CohortFigures,
    /// The previous verdict of the same gate, phase and cohorts; `None` for the first one.
    pub from: Option<VerdictState>,
    pub to: VerdictState,
    /// One sentence per criterion that did not pass.
    pub reasons: Vec<String>,
    /// RFC 3339.
    pub evaluated_at: String,
    /// Unix seconds of the evaluation.
    pub at: u64,
    /// The gate's verdict log in slogate.
    pub link: String,
}

/// A verdict and the decision it stands for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerdictState {
    /// `pass`, `fail` or `inconclusive`.
    pub verdict: String,
    /// `proceed`, `hold` or `rollback`.
    pub decision: String,
}

/// A cohort as a message shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CohortFigures {
    /// The selector, e.g. `service=checkout,version=v2`.
    pub selector: String,
    pub requests: u64,
    pub error_rate: Option<f64>,
    pub p99_ms: Option<f64>,
}

impl CohortFigures {
    /// The selector without its `service=` part, which the gate already names:
    /// `version=v2`, or the whole selector when nothing else is left.
    pub fn short(&self) -> &str {
        match self.selector.split_once(',') {
            Some((first, rest)) if first.starts_with("service=") => rest,
            _ => &self.selector,
        }
    }

    /// `1,234 requests · 2.10% errors · p99 312.0 ms`.
    pub fn figures(&self) -> String {
        let mut out = format!("{} requests", thousands(self.requests));
        if let Some(r) = self.error_rate {
            out.push_str(&format!(" · {:.2}% errors", r * 100.0));
        }
        if let Some(p) = self.p99_ms {
            out.push_str(&format!(" · p99 {p:.1} ms"));
        }
        out
    }
}

impl VerdictNote {
    /// What the message is about, stable across the gate's changes: gate, phase and cohorts.
    pub fn key(&self) -> String {
        format!(
            "slogate/verdict/{}/{}/{}/{}",
            self.gate, self.phase, self.canary.selector, self.baseline.selector
        )
    }

    /// `checkout canary version=v2: hold → rollback: p99 ratio 1.42 > 1.20`: the one-line
    /// form, as the verdict-change log line says it.
    pub fn headline(&self) -> String {
        let change = match &self.from {
            Some(from) => format!("{} → {}", from.decision, self.to.decision),
            None => format!("{} (first verdict)", self.to.decision),
        };
        let why = self
            .reasons
            .first()
            .map_or("every criterion passed", String::as_str);
        format!(
            "{} {} {}: {change}: {why}",
            self.gate,
            self.phase,
            self.canary.short()
        )
    }
}

/// `1234567` as `1,234,567`.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn alert(firing: bool) -> AlertNote {
        AlertNote {
            id: "slogate/slo-burn/checkout-availability/14.4x-1h".into(),
            firing,
            rule: "checkout-availability".into(),
            class: "slo_burn".into(),
            service: "checkout".into(),
            tier: "P1".into(),
            severity: Severity::Critical,
            summary: "[P1] checkout-availability SLO (99.900% target) is burning its error budget: burn 14.6x > 14.4x over 1h & 5m".into(),
            link: "https://slogate.example.com/api/v1/slos/checkout-availability".into(),
            started_at: 1_762_538_400,
            ended_at: (!firing).then_some(1_762_539_300),
            details: serde_json::json!({"long_burn_rate": 14.6}),
        }
    }

    pub fn verdict() -> VerdictNote {
        VerdictNote {
            gate: "checkout".into(),
            phase: "canary".into(),
            service: "checkout".into(),
            canary: CohortFigures {
                selector: "service=checkout,version=v2".into(),
                requests: 12_480,
                error_rate: Some(0.021),
                p99_ms: Some(412.5),
            },
            baseline: CohortFigures {
                selector: "service=checkout,version=v1".into(),
                requests: 118_020,
                error_rate: Some(0.004),
                p99_ms: Some(290.0),
            },
            from: Some(VerdictState {
                verdict: "inconclusive".into(),
                decision: "hold".into(),
            }),
            to: VerdictState {
                verdict: "fail".into(),
                decision: "rollback".into(),
            },
            reasons: vec![
                "p99 ratio 1.42 > 1.20 (canary 412.5 ms vs baseline 290.0 ms)".into(),
                "error rate 2.10% > 1.00%".into(),
            ],
            evaluated_at: "2025-11-07T18:40:00Z".into(),
            at: 1_762_540_800,
            link: "https://slogate.example.com/api/v1/verdicts?gate=checkout".into(),
        }
    }

    #[test]
    fn headline_and_figures() {
        let mut v = verdict();
        assert_eq!(
            v.headline(),
            "checkout canary version=v2: hold → rollback: p99 ratio 1.42 > 1.20 (canary 412.5 ms vs baseline 290.0 ms)"
        );
        assert_eq!(
            v.canary.figures(),
            "12,480 requests · 2.10% errors · p99 412.5 ms"
        );
        v.from = None;
        v.reasons.clear();
        v.to.decision = "proceed".into();
        v.canary.selector = "version=v2".into();
        assert_eq!(
            v.headline(),
            "checkout canary version=v2: proceed (first verdict): every criterion passed"
        );
        let cases = [
            (0, "0"),
            (999, "999"),
            (1000, "1,000"),
            (1_234_567, "1,234,567"),
        ];
        for (n, want) in cases {
            assert_eq!(thousands(n), want);
        }
    }
}
