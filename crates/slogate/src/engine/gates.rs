//! Gate evaluation on live data: builds the canary and baseline selectors, queries the windows,
//! runs the pure gate rules, applies sustained-failure state, and keeps the verdict log and the
//! last verdict per gate and phase (for `/metrics`).

use crate::config::{GateConfig, PhaseConfig};
use parking_lot::Mutex;
use serde::Serialize;
use slogate_core::Selector;
use slogate_gate::{CohortData, CriterionOutcome, Decision, Sustain, Verdict};
use slogate_window::Registry;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::Arc;

/// How many verdicts the in-memory log keeps (newest first when read).
pub const VERDICT_LOG_CAPACITY: usize = 10_000;
/// How many (gate, phase, cohorts) sustained-failure states are kept; the least recently used
/// goes first.
const SUSTAIN_CAPACITY: usize = 10_000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GateError {
    #[error("unknown gate {0:?}; GET /api/v1/gates lists the configured gates")]
    UnknownGate(String),
    #[error("gate {gate:?} has no phase {phase:?}; its phases are {known}")]
    UnknownPhase {
        gate: String,
        phase: String,
        known: String,
    },
    #[error("{0}")]
    Selector(String),
    #[error(
        "canary and baseline select the same series ({0}); give them different cohort values, e.g. canary.version=v2&baseline.version=v1"
    )]
    SameCohort(String),
    #[error(
        "gate {0:?} compares the canary with a baseline, but no baseline cohort was given; pass baseline.<dimension>=value (e.g. baseline.version=v1) or configure one"
    )]
    BaselineUnset(String),
    /// A stored baseline that is missing, unreadable, or does not fit the gate.
    #[error("{0}")]
    StoredBaseline(String),
    #[error(
        "stored baseline {0:?} is not there; `slogate baseline list` shows the stored ones and `slogate baseline capture` saves one"
    )]
    UnknownBaseline(String),
}

impl GateError {
    pub fn http_status(&self) -> http::StatusCode {
        match self {
            GateError::UnknownGate(_)
            | GateError::UnknownPhase { .. }
            | GateError::UnknownBaseline(_) => http::StatusCode::NOT_FOUND,
            GateError::StoredBaseline(_) => http::StatusCode::INTERNAL_SERVER_ERROR,
            _ => http::StatusCode::BAD_REQUEST,
        }
    }
    pub fn grpc_code(&self) -> tonic::Code {
        match self {
            GateError::UnknownGate(_)
            | GateError::UnknownPhase { .. }
            | GateError::UnknownBaseline(_) => tonic::Code::NotFound,
            GateError::StoredBaseline(_) => tonic::Code::FailedPrecondition,
            _ => tonic::Code::InvalidArgument,
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CohortLatency {
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CohortSummary {
    pub selector: String,
    pub requests: u64,
    pub errors: u64,
    pub error_rate: Option<f64>,
    pub latency_ms: CohortLatency,
    /// Set when the cohort is a stored baseline rather than live traffic.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stored: Option<StoredRef>,
}

/// Which stored baseline a verdict compared with: its name, what and when it captured.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StoredRef {
    pub name: String,
    /// The capture's selector, e.g. `service=checkout,env=staging`.
    pub selector: String,
    /// The operation whose totals were used, or `null` for the baseline's total.
    pub operation: Option<String>,
    pub from: String,
    pub to: String,
    pub captured_at: String,
    pub requests: u64,
}

/// The verdict document of DESIGN.md.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VerdictDoc {
    pub gate: String,
    pub phase: String,
    pub evaluated_at: String,
    pub window_seconds: u64,
    pub verdict: Verdict,
    pub decision: Decision,
    pub canary: CohortSummary,
    pub baseline: CohortSummary,
    pub criteria: Vec<CriterionOutcome>,
    pub reasons: Vec<String>,
}

fn ms(v: Option<u64>) -> Option<f64> {
    v.map(|ns| (ns as f64 / 1e3).round() / 1e3)
}

fn summary(selector: &Selector, data: &CohortData) -> CohortSummary {
    let [p50, p90, p95, p99] = data.sketch.quantiles([0.5, 0.9, 0.95, 0.99]);
    CohortSummary {
        selector: selector.to_string(),
        requests: data.requests,
        errors: data.errors,
        error_rate: (data.requests > 0).then(|| data.errors as f64 / data.requests as f64),
        latency_ms: CohortLatency {
            p50: ms(p50),
            p90: ms(p90),
            p95: ms(p95),
            p99: ms(p99),
        },
        stored: None,
    }
}

/// Called with every recorded verdict (the alerting hook).
pub type VerdictHook = Arc<dyn Fn(&VerdictDoc) + Send + Sync>;

pub struct Gates {
    hook: Option<VerdictHook>,
    baselines: Arc<crate::baseline::BaselineStore>,
    gates: Vec<GateConfig>,
    registry: Arc<Registry>,
    sustain: Mutex<SustainStates>,
    log: Mutex<VecDeque<Arc<VerdictDoc>>>,
    last: Mutex<BTreeMap<(String, String), Arc<VerdictDoc>>>,
    evaluations: Mutex<BTreeMap<(String, &'static str), u64>>,
}

#[derive(Default)]
struct SustainStates {
    tick: u64,
    states: HashMap<String, (u64, BTreeMap<String, Sustain>)>,
}

impl Gates {
    pub fn new(
        gates: Vec<GateConfig>,
        registry: Arc<Registry>,
        hook: Option<VerdictHook>,
        baselines: Arc<crate::baseline::BaselineStore>,
    ) -> Gates {
        Gates {
            hook,
            baselines,
            gates,
            registry,
            sustain: Mutex::new(SustainStates::default()),
            log: Mutex::new(VecDeque::new()),
            last: Mutex::new(BTreeMap::new()),
            evaluations: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn configs(&self) -> &[GateConfig] {
        &self.gates
    }

    pub fn baselines(&self) -> &Arc<crate::baseline::BaselineStore> {
        &self.baselines
    }

    /// The stored baseline a request names (`baseline.stored=NAME`), else the gate's, unless
    /// the request gives a live baseline cohort instead.
    fn stored_name(
        g: &GateConfig,
        baseline: &[(String, String)],
    ) -> Result<Option<String>, GateError> {
        let key = crate::config::STORED_BASELINE_KEY;
        match baseline.iter().find(|(k, _)| k == key) {
            Some((_, name)) if baseline.len() == 1 => Ok(Some(name.clone())),
            Some(_) => Err(GateError::Selector(format!(
                "baseline.{key} names a stored baseline, which is the whole baseline; give no other baseline dimensions with it"
            ))),
            None if baseline.is_empty() => Ok(g.baseline_stored.clone()),
            None => Ok(None),
        }
    }

    /// The cohort data of a stored baseline for this gate: its operation's totals, or the
    /// baseline's total when the gate covers every operation.
    fn stored_cohort(
        &self,
        g: &GateConfig,
        name: &str,
    ) -> Result<(CohortData, StoredRef), GateError> {
        use slogate_history::BaselineError;
        let b = self.baselines.get(name).map_err(|e| match e {
            BaselineError::NotFound(n) => GateError::UnknownBaseline(n),
            BaselineError::InvalidName(_) => GateError::Selector(e.to_string()),
            other => GateError::StoredBaseline(format!(
                "stored baseline {name:?} cannot be used: {other}"
            )),
        })?;
        if b.selector.get("service").map(String::as_str) != Some(g.service.as_str()) {
            return Err(GateError::Selector(format!(
                "stored baseline {name:?} was captured for {}, but gate {:?} watches service {}",
                b.selector_text(),
                g.name,
                g.service
            )));
        }
        let captured_op = b.selector.get("operation");
        let op = g
            .operation
            .as_deref()
            .filter(|op| captured_op.map(String::as_str) != Some(*op));
        let totals = b.cohort(op).ok_or_else(|| {
            GateError::Selector(format!(
                "stored baseline {name:?} has no traffic for operation {:?}",
                op.unwrap_or("")
            ))
        })?;
        let sketch = totals.decode_sketch().map_err(|e| {
            GateError::StoredBaseline(format!(
                "stored baseline {name:?} holds an invalid sketch: {e}"
            ))
        })?;
        let reference = StoredRef {
            name: b.name.clone(),
            selector: b.selector_text(),
            operation: op.map(String::from).or_else(|| captured_op.cloned()),
            from: slogate_history::baseline::rfc3339(b.from_unix),
            to: slogate_history::baseline::rfc3339(b.to_unix),
            captured_at: slogate_history::baseline::rfc3339(b.captured_at_unix),
            requests: totals.requests,
        };
        Ok((
            CohortData {
                requests: totals.requests,
                errors: totals.errors,
                sketch,
            },
            reference,
        ))
    }

    fn find(
        &self,
        gate: &str,
        phase: Option<&str>,
    ) -> Result<(&GateConfig, &PhaseConfig), GateError> {
        let g = self
            .gates
            .iter()
            .find(|g| g.name == gate)
            .ok_or_else(|| GateError::UnknownGate(gate.into()))?;
        let p =
            match phase.filter(|p| !p.is_empty()) {
                None => &g.phases[0],
                Some(name) => g.phases.iter().find(|p| p.name == name).ok_or_else(|| {
                    GateError::UnknownPhase {
                        gate: gate.into(),
                        phase: name.into(),
                        known: g
                            .phases
                            .iter()
                            .map(|p| p.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    }
                })?,
            };
        Ok((g, p))
    }

    fn selector(
        &self,
        g: &GateConfig,
        defaults: &[(String, String)],
        overrides: &[(String, String)],
    ) -> Result<(Selector, bool), GateError> {
        let mut pairs: Vec<(String, String)> = vec![("service".into(), g.service.clone())];
        if let Some(op) = &g.operation {
            pairs.push(("operation".into(), op.clone()));
        }
        if overrides.iter().any(|(k, _)| k == "service") {
            return Err(GateError::Selector(format!(
                "the gate's service is fixed ({}); cohorts differ by other dimensions",
                g.service
            )));
        }
        let mut cohort_dims = false;
        for (k, v) in defaults.iter().chain(overrides) {
            pairs.retain(|(pk, _)| pk != k);
            pairs.push((k.clone(), v.clone()));
            cohort_dims |= k != "operation";
        }
        let sel = Selector::new(pairs, &self.registry.config().extra_dims)
            .map_err(|e| GateError::Selector(e.to_string()))?;
        Ok((sel, cohort_dims))
    }

    /// Evaluates a gate now and records the verdict.
    pub fn evaluate(
        &self,
        gate: &str,
        phase: Option<&str>,
        canary: &[(String, String)],
        baseline: &[(String, String)],
    ) -> Result<Arc<VerdictDoc>, GateError> {
        let (g, p) = self.find(gate, phase)?;
        let (canary_sel, _) = self.selector(g, &g.canary, canary)?;
        let stored_name = Self::stored_name(g, baseline)?;
        let stored = match &stored_name {
            Some(name) => Some(self.stored_cohort(g, name)?),
            None => None,
        };
        let (baseline_sel, baseline_given) = match &stored_name {
            // The live selector is unused; the summary names the stored baseline instead.
            Some(_) => (canary_sel.clone(), true),
            None => self.selector(g, &g.baseline, baseline)?,
        };
        let needs_baseline = p.spec.criteria.iter().any(|c| c.check.is_relative());
        if needs_baseline && !baseline_given {
            return Err(GateError::BaselineUnset(g.name.clone()));
        }
        if stored.is_none() && baseline_given && canary_sel == baseline_sel {
            return Err(GateError::SameCohort(canary_sel.to_string()));
        }
        let window = p.window_seconds;
        let query = |sel: &Selector| {
            let w = self.registry.query(sel, window);
            CohortData {
                requests: w.requests,
                errors: w.errors,
                sketch: w.sketch,
            }
        };
        let canary_data = query(&canary_sel);
        let (baseline_data, stored_ref) = match stored {
            Some((data, reference)) => (Some(data), Some(reference)),
            None => (baseline_given.then(|| query(&baseline_sel)), None),
        };
        let baseline_label = match &stored_ref {
            Some(r) => format!("stored:{} ({})", r.name, r.selector),
            None => baseline_sel.to_string(),
        };
        let mut eval =
            slogate_gate::evaluate(&p.spec, &canary_data, baseline_data.as_ref(), window);
        let now = self.registry.now_unix();
        if p.spec
            .criteria
            .iter()
            .any(|c| c.sustained_seconds.is_some())
        {
            let key = format!(
                "{}\u{1}{}\u{1}{canary_sel}\u{1}{baseline_label}",
                g.name, p.name
            );
            let mut st = self.sustain.lock();
            st.tick += 1;
            let tick = st.tick;
            if !st.states.contains_key(&key) && st.states.len() >= SUSTAIN_CAPACITY {
                if let Some(oldest) = st
                    .states
                    .iter()
                    .min_by_key(|(_, (t, _))| *t)
                    .map(|(k, _)| k.clone())
                {
                    st.states.remove(&oldest);
                }
            }
            let entry = st.states.entry(key).or_default();
            entry.0 = tick;
            eval.sustain(&p.spec, &mut entry.1, now);
        }
        let empty = CohortData::default();
        let doc = Arc::new(VerdictDoc {
            gate: g.name.clone(),
            phase: p.name.clone(),
            evaluated_at: humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(now),
            )
            .to_string(),
            window_seconds: window,
            verdict: eval.verdict,
            decision: eval.decision,
            canary: summary(&canary_sel, &canary_data),
            baseline: CohortSummary {
                selector: baseline_label,
                stored: stored_ref,
                ..summary(&baseline_sel, baseline_data.as_ref().unwrap_or(&empty))
            },
            criteria: eval.criteria,
            reasons: eval.reasons,
        });
        self.record(&doc);
        Ok(doc)
    }

    fn record(&self, doc: &Arc<VerdictDoc>) {
        let mut log = self.log.lock();
        if log.len() >= VERDICT_LOG_CAPACITY {
            log.pop_back();
        }
        log.push_front(doc.clone());
        drop(log);
        self.last
            .lock()
            .insert((doc.gate.clone(), doc.phase.clone()), doc.clone());
        *self
            .evaluations
            .lock()
            .entry((doc.gate.clone(), verdict_label(doc.verdict)))
            .or_default() += 1;
        tracing::info!(gate = %doc.gate, phase = %doc.phase, verdict = verdict_label(doc.verdict), canary = %doc.canary.selector, baseline = %doc.baseline.selector, "gate evaluated");
        if let Some(hook) = &self.hook {
            hook(doc);
        }
    }

    /// Recorded verdicts, newest first.
    pub fn history(&self, gate: Option<&str>, limit: usize) -> Vec<Arc<VerdictDoc>> {
        self.log
            .lock()
            .iter()
            .filter(|d| gate.is_none_or(|g| d.gate == g))
            .take(limit)
            .cloned()
            .collect()
    }

    /// Appends the gate gauges: the last verdict per gate and phase, its criteria and cohorts.
    pub fn render_metrics(&self, out: &mut String) {
        out.push_str("# HELP slogate_gate_evaluations_total Gate evaluations by verdict.\n# TYPE slogate_gate_evaluations_total counter\n");
        for ((gate, verdict), n) in self.evaluations.lock().iter() {
            let _ = writeln!(
                out,
                "slogate_gate_evaluations_total{{gate=\"{}\",verdict=\"{verdict}\"}} {n}",
                esc(gate)
            );
        }
        let last = self.last.lock();
        out.push_str("# HELP slogate_gate_verdict The last verdict of each gate and phase (1 for the current one).\n# TYPE slogate_gate_verdict gauge\n");
        for ((gate, phase), doc) in last.iter() {
            for v in ["pass", "fail", "inconclusive"] {
                let _ = writeln!(
                    out,
                    "slogate_gate_verdict{{gate=\"{}\",phase=\"{}\",verdict=\"{v}\"}} {}",
                    esc(gate),
                    esc(phase),
                    u8::from(verdict_label(doc.verdict) == v)
                );
            }
        }
        out.push_str("# HELP slogate_gate_criterion_observed The observed value of each criterion at the last evaluation.\n# TYPE slogate_gate_criterion_observed gauge\n");
        for ((gate, phase), doc) in last.iter() {
            for c in &doc.criteria {
                if let Some(v) = c.observed {
                    let _ = writeln!(
                        out,
                        "slogate_gate_criterion_observed{{gate=\"{}\",phase=\"{}\",criterion=\"{}\"}} {v}",
                        esc(gate),
                        esc(phase),
                        esc(&c.name)
                    );
                }
            }
        }
        out.push_str("# HELP slogate_gate_criterion_passing 1 when the criterion passed at the last evaluation, 0 otherwise (marginal, fail, no data).\n# TYPE slogate_gate_criterion_passing gauge\n");
        for ((gate, phase), doc) in last.iter() {
            for c in &doc.criteria {
                let pass = matches!(c.result, slogate_gate::CriterionResult::Pass);
                let _ = writeln!(
                    out,
                    "slogate_gate_criterion_passing{{gate=\"{}\",phase=\"{}\",criterion=\"{}\"}} {}",
                    esc(gate),
                    esc(phase),
                    esc(&c.name),
                    u8::from(pass)
                );
            }
        }
        out.push_str("# HELP slogate_cohort_requests Requests of each gate cohort in the window of the last evaluation.\n# TYPE slogate_cohort_requests gauge\n");
        out.push_str("# HELP slogate_cohort_error_rate Error rate of each gate cohort at the last evaluation (absent without requests).\n# TYPE slogate_cohort_error_rate gauge\n");
        out.push_str("# HELP slogate_cohort_latency_ms Latency quantiles of each gate cohort at the last evaluation.\n# TYPE slogate_cohort_latency_ms gauge\n");
        for ((gate, phase), doc) in last.iter() {
            for (cohort, s) in [("canary", &doc.canary), ("baseline", &doc.baseline)] {
                let labels = format!(
                    "gate=\"{}\",phase=\"{}\",cohort=\"{cohort}\"",
                    esc(gate),
                    esc(phase)
                );
                let _ = writeln!(out, "slogate_cohort_requests{{{labels}}} {}", s.requests);
                if let Some(r) = s.error_rate {
                    let _ = writeln!(out, "slogate_cohort_error_rate{{{labels}}} {r}");
                }
                for (q, v) in [
                    ("0.5", s.latency_ms.p50),
                    ("0.9", s.latency_ms.p90),
                    ("0.95", s.latency_ms.p95),
                    ("0.99", s.latency_ms.p99),
                ] {
                    if let Some(v) = v {
                        let _ = writeln!(
                            out,
                            "slogate_cohort_latency_ms{{{labels},quantile=\"{q}\"}} {v}"
                        );
                    }
                }
            }
        }
    }
}

pub fn verdict_label(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "pass",
        Verdict::Fail => "fail",
        Verdict::Inconclusive => "inconclusive",
    }
}

/// Escapes a Prometheus label value.
fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use slogate_core::{Observation, ObservationWriter, Operation, Recorder};
    use slogate_window::ManualClock;

    const CONFIG: &str = "
gates:
  - name: checkout
    service: checkout
    window: 1m
    min_requests: 100
    baseline: {version: v1}
    criteria:
      - {name: p95-vs-baseline, metric: latency_p95, compare: ratio, pass: 1.1, fail: 1.3}
      - {name: slower, test: mann_whitney, confidence: 0.99, max_effect: 0.55}
    phases:
      - name: canary
        criteria:
          - {name: error-rate, metric: error_rate, pass: 0.02, fail: 0.05}
      - name: ga
        criteria:
          - {name: error-rate, metric: error_rate, pass: 0.005, fail: 0.01}
";

    /// A registry holding `checkout` v1 (baseline) and the given canary versions, each with
    /// `n` requests whose latencies step evenly from 10 ms by `scale`, every `err`-th an error.
    fn setup(cohorts: &[(&str, u64, f64, u64)]) -> Gates {
        let cfg = Config::parse(CONFIG, "test.yaml").unwrap();
        let clock = ManualClock::new(1_800_000_000);
        let registry = Registry::new(cfg.window.clone(), clock);
        {
            let mut w = registry.writer();
            for (version, n, scale, err) in cohorts {
                for i in 0..*n {
                    w.record(&Observation {
                        service: b"checkout",
                        env: b"prod",
                        version: version.as_bytes(),
                        operation: Operation::single(b"GET /cart"),
                        extras: [b""; 4],
                        error: *err > 0 && i % err == 0,
                        duration_ns: ((10.0 + (i % 100) as f64) * scale * 1e6) as u64,
                    });
                }
            }
        }
        Gates::new(
            cfg.gates,
            registry,
            None,
            Arc::new(crate::baseline::BaselineStore::new(
                std::env::temp_dir().join("slogate-gates-unit-no-baselines"),
            )),
        )
    }

    fn canary(v: &str) -> Vec<(String, String)> {
        vec![("version".into(), v.into())]
    }

    #[test]
    fn verdict_document_snapshot() {
        let gates = setup(&[("v1", 2000, 1.0, 200), ("v2", 500, 1.4, 25)]);
        let doc = gates
            .evaluate("checkout", Some("canary"), &canary("v2"), &[])
            .unwrap();
        insta::assert_json_snapshot!(&*doc);
    }

    #[test]
    fn verdicts_by_scenario() {
        let gates = setup(&[
            ("v1", 2000, 1.0, 200),
            ("ok", 500, 1.0, 200),
            ("slow", 500, 1.4, 200),
            ("err3", 1000, 1.0, 33),
            ("err15", 2000, 1.0, 66),
            ("thin", 50, 1.0, 0),
        ]);
        // (canary version, phase, baseline override, verdict, decision)
        let cases: &[(&str, &str, Option<&str>, Verdict, Decision)] = &[
            ("ok", "canary", None, Verdict::Pass, Decision::Proceed),
            ("slow", "canary", None, Verdict::Fail, Decision::Rollback),
            (
                "err3",
                "canary",
                None,
                Verdict::Inconclusive,
                Decision::Hold,
            ),
            ("err15", "canary", None, Verdict::Pass, Decision::Proceed),
            ("err15", "ga", None, Verdict::Fail, Decision::Rollback),
            (
                "thin",
                "canary",
                None,
                Verdict::Inconclusive,
                Decision::Hold,
            ),
            // The baseline has no data: never a pass, even for a perfect canary.
            (
                "ok",
                "canary",
                Some("v9"),
                Verdict::Inconclusive,
                Decision::Hold,
            ),
        ];
        for (version, phase, baseline, verdict, decision) in cases {
            let base: Vec<(String, String)> = baseline
                .map(|b| vec![("version".to_string(), b.to_string())])
                .unwrap_or_default();
            let doc = gates
                .evaluate("checkout", Some(phase), &canary(version), &base)
                .unwrap();
            assert_eq!(
                (doc.verdict, doc.decision),
                (*verdict, *decision),
                "{version} {phase}: {:#?}",
                doc.reasons
            );
            assert_eq!(
                doc.reasons.len(),
                doc.criteria
                    .iter()
                    .filter(|c| c.result != slogate_gate::CriterionResult::Pass)
                    .count()
            );
        }
        assert_eq!(gates.history(Some("checkout"), 100).len(), cases.len());
        let mut metrics = String::new();
        gates.render_metrics(&mut metrics);
        assert!(
            metrics.contains(
                "slogate_gate_verdict{gate=\"checkout\",phase=\"ga\",verdict=\"fail\"} 1"
            ),
            "{metrics}"
        );
        assert!(
            metrics.contains(
                "slogate_gate_evaluations_total{gate=\"checkout\",verdict=\"inconclusive\"} 3"
            ),
            "{metrics}"
        );
    }

    #[test]
    fn request_errors() {
        let gates = setup(&[("v1", 10, 1.0, 0)]);
        let cases: &[(&str, Option<&str>, Vec<(String, String)>, &str)] = &[
            ("nope", None, canary("v2"), "unknown gate \"nope\""),
            (
                "checkout",
                Some("p9"),
                canary("v2"),
                "has no phase \"p9\"; its phases are canary, ga",
            ),
            (
                "checkout",
                None,
                canary("v1"),
                "canary and baseline select the same series",
            ),
            (
                "checkout",
                None,
                vec![("colour".into(), "red".into())],
                "unknown dimension `colour`",
            ),
            (
                "checkout",
                None,
                vec![("service".into(), "auth".into())],
                "the gate's service is fixed",
            ),
        ];
        for (gate, phase, sel, want) in cases {
            let err = gates
                .evaluate(gate, *phase, sel, &[])
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{err}");
        }
    }
}
