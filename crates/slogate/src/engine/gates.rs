//! Gate evaluation on live data: builds the canary and baseline selectors, queries the windows,
//! runs the pure gate rules, applies sustained-failure state, and keeps the verdict log and the
//! last verdict per gate and phase (for `/metrics`).
//!
//! The configured gates can be replaced while the server runs (a configuration reload): each
//! evaluation reads one snapshot of them, so it sees the whole old set or the whole new one.

use super::LatencyMs;
use super::analysis::{Analyses, AnalysisDoc, AnalysisRequest, Look};
use crate::config::{GateConfig, PhaseConfig};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use slogate_core::Selector;
use slogate_gate::{CohortData, CriterionOutcome, Decision, Sustain, Verdict};
use slogate_window::Registry;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

/// How many verdicts the in-memory log keeps (newest first when read).
pub const VERDICT_LOG_CAPACITY: usize = 10_000;
/// How many (gate, phase, cohorts) sustained-failure states are kept; the least recently used
/// goes first.
const SUSTAIN_CAPACITY: usize = 10_000;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
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
    /// An `analysis=` id, `looks=` or `interval=` that cannot be used.
    #[error("{0}")]
    Analysis(String),
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

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct CohortSummary {
    pub selector: String,
    pub requests: u64,
    pub errors: u64,
    pub error_rate: Option<f64>,
    pub latency_ms: LatencyMs,
    /// Seconds the cohort's data spans (first request to now); request rates divide by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_seconds: Option<u64>,
    /// Set when the traffic is sampled (OpenTelemetry probability sampling): `requests` and
    /// `errors` are then adjusted counts, and this is the number of sampled spans the
    /// statistical tests used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampled_requests: Option<u64>,
    /// Set when the cohort is a stored baseline rather than live traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored: Option<StoredRef>,
}

/// Which stored baseline a verdict compared with: its name, what and when it captured.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct VerdictDoc {
    pub gate: String,
    pub phase: String,
    pub evaluated_at: String,
    /// The span of data judged: the phase's window, or for an analysis the time since its data
    /// began.
    pub window_seconds: u64,
    /// `pass`, `fail` or `inconclusive` (no data and too little data are inconclusive).
    #[schema(value_type = String, example = "fail")]
    pub verdict: Verdict,
    /// `proceed`, `hold` or `rollback`.
    #[schema(value_type = String, example = "rollback")]
    pub decision: Decision,
    /// For a gate carried in the verdict request: the fingerprint of its definition, which
    /// tells two definitions under one name apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<String>,
    /// The analysis (rollout step) this look belongs to, when the request named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub analysis: Option<AnalysisDoc>,
    pub canary: CohortSummary,
    pub baseline: CohortSummary,
    /// Each criterion: observed, baseline, score and interval, thresholds, sample sizes, result
    /// and the reason.
    #[schema(value_type = Vec<Object>)]
    pub criteria: Vec<CriterionOutcome>,
    pub reasons: Vec<String>,
}

fn summary(selector: &Selector, data: &CohortData) -> CohortSummary {
    CohortSummary {
        selector: selector.to_string(),
        requests: data.requests,
        errors: data.errors,
        error_rate: (data.requests > 0).then(|| data.errors as f64 / data.requests as f64),
        latency_ms: LatencyMs::of(&data.sketch),
        observed_seconds: data.observed_seconds,
        sampled_requests: data.is_sampled().then(|| data.sample().0),
        stored: None,
    }
}

/// `GET /api/v1/gates/{gate}/timeline`: the gate's cohorts step by step.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TimelineDoc {
    pub gate: String,
    pub phase: String,
    pub step_seconds: u64,
    pub canary: TimelineCohort,
    pub baseline: TimelineCohort,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TimelineCohort {
    pub selector: String,
    /// Oldest first; `null` for a stored baseline, or when no baseline cohort is given.
    pub steps: Option<Vec<TimelinePoint>>,
}

/// One step: its start, and what the cohort did in it (`null` rates without requests).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TimelinePoint {
    pub at: String,
    pub requests: u64,
    pub errors: u64,
    pub error_rate: Option<f64>,
    pub latency_ms: LatencyMs,
}

/// A gate of `gates` and one of its phases.
fn find_phase<'a>(
    gates: &'a [GateConfig],
    gate: &str,
    phase: Option<&str>,
) -> Result<(&'a GateConfig, &'a PhaseConfig), GateError> {
    use crate::config::{LookupError, find_gate_phase};
    find_gate_phase(gates, "the configuration", gate, phase).map_err(|e| match e {
        LookupError::Gate { gate, .. } => GateError::UnknownGate(gate),
        LookupError::Phase { gate, phase, known } => GateError::UnknownPhase { gate, phase, known },
    })
}

/// Called with the gate's service and every recorded verdict (the alerting and history hook).
pub type VerdictHook = Arc<dyn Fn(&str, &VerdictDoc) + Send + Sync>;

/// Called once per change of a gate's verdict (the change the INFO log line reports), with the
/// gate's service, the previous verdict of that gate and phase, and the new one.
pub type ChangeHook = Arc<dyn Fn(&str, Option<&VerdictDoc>, &VerdictDoc) + Send + Sync>;

pub struct Gates {
    hook: Option<VerdictHook>,
    on_change: Option<ChangeHook>,
    baselines: Arc<crate::engine::baselines::BaselineStore>,
    /// The configured gates in force, swapped whole by [`Gates::replace`].
    gates: RwLock<Arc<Vec<GateConfig>>>,
    registry: Arc<Registry>,
    metrics: Option<Arc<slogate_metrics::MetricStore>>,
    sustain: Mutex<SustainStates>,
    pub(super) analyses: Analyses,
    log: Mutex<VecDeque<Arc<VerdictDoc>>>,
    last: Mutex<BTreeMap<(String, String), Arc<VerdictDoc>>>,
    evaluations: Mutex<BTreeMap<(String, &'static str), u64>>,
    /// Names of gates carried in requests, with the tick of their last evaluation: at most
    /// [`MAX_INLINE_GATES`], the least recently evaluated forgotten first.
    inline: Mutex<BTreeMap<String, u64>>,
}

/// What a [`Gates::replace`] did, by gate name.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct GateChanges {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
}

/// Most gates carried in requests whose last verdict and counters are kept.
pub const MAX_INLINE_GATES: usize = 1000;

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
        baselines: Arc<crate::engine::baselines::BaselineStore>,
    ) -> Gates {
        Gates {
            hook,
            on_change: None,
            baselines,
            gates: RwLock::new(Arc::new(gates)),
            registry,
            metrics: None,
            sustain: Mutex::new(SustainStates::default()),
            analyses: Analyses::default(),
            log: Mutex::new(VecDeque::new()),
            last: Mutex::new(BTreeMap::new()),
            evaluations: Mutex::new(BTreeMap::new()),
            inline: Mutex::new(BTreeMap::new()),
        }
    }

    /// Reads OTLP metric criteria from `store`.
    pub fn with_metrics(mut self, store: Arc<slogate_metrics::MetricStore>) -> Gates {
        self.metrics = Some(store);
        self
    }

    /// Calls `hook` on every change of a verdict (Slack and webhook notifications).
    pub fn with_change_hook(mut self, hook: ChangeHook) -> Gates {
        self.on_change = Some(hook);
        self
    }

    /// The configured gates in force now.
    pub fn configs(&self) -> Arc<Vec<GateConfig>> {
        self.gates.read().clone()
    }

    /// Puts `gates` in force in place of the configured ones (a configuration reload), at once
    /// for every later evaluation. `old` and `new` are the fingerprints of the definitions by
    /// name (see [`crate::config::Config::gate_fingerprints`]). A gate whose definition changed
    /// starts afresh: no sustained failure and no analysis carries over into the new
    /// definition; its last verdicts stay (the next one is compared with them), except those
    /// of phases it no longer has. A removed gate's last verdicts and counters go.
    pub fn replace(
        &self,
        gates: Vec<GateConfig>,
        old: &BTreeMap<String, String>,
        new: &BTreeMap<String, String>,
    ) -> GateChanges {
        let changes = GateChanges {
            added: new
                .keys()
                .filter(|n| !old.contains_key(*n))
                .cloned()
                .collect(),
            changed: new
                .iter()
                .filter(|(n, f)| old.get(*n).is_some_and(|o| o != *f))
                .map(|(n, _)| n.clone())
                .collect(),
            removed: old
                .keys()
                .filter(|n| !new.contains_key(*n))
                .cloned()
                .collect(),
        };
        let phases: BTreeSet<(String, String)> = gates
            .iter()
            .flat_map(|g| g.phases.iter().map(|p| (g.name.clone(), p.name.clone())))
            .collect();
        *self.gates.write() = Arc::new(gates);
        for name in changes.changed.iter().chain(&changes.removed) {
            // The keys of sustained states and analyses start with the gate's state name.
            let prefix = format!("{name}\u{1}");
            self.sustain
                .lock()
                .states
                .retain(|k, _| !k.starts_with(&prefix));
            self.analyses.forget(&prefix);
        }
        let inline = self.inline.lock();
        let stale = |gate: &String| changes.removed.contains(gate) && !inline.contains_key(gate);
        self.last.lock().retain(|(gate, phase), _| {
            !(stale(gate)
                || changes.changed.contains(gate)
                    && !phases.contains(&(gate.clone(), phase.clone())))
        });
        self.evaluations.lock().retain(|(gate, _), _| !stale(gate));
        changes
    }

    pub fn baselines(&self) -> &Arc<crate::engine::baselines::BaselineStore> {
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
    ) -> Result<(CohortData, StoredRef, Arc<slogate_history::Baseline>), GateError> {
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
            from: slogate_history::rfc3339(b.from_unix),
            to: slogate_history::rfc3339(b.to_unix),
            captured_at: slogate_history::rfc3339(b.captured_at_unix),
            requests: totals.requests,
        };
        Ok((
            CohortData {
                requests: totals.requests,
                errors: totals.errors,
                sketch,
                observed_seconds: None,
                ..Default::default()
            },
            reference,
            b,
        ))
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

    /// Evaluates a gate now and records the verdict: over the phase's sliding window, or, when
    /// the request names an analysis, as the next look of that analysis on the data since it
    /// began (see [`super::analysis`]).
    pub fn evaluate(
        &self,
        gate: &str,
        phase: Option<&str>,
        canary: &[(String, String)],
        baseline: &[(String, String)],
        analysis: Option<&AnalysisRequest>,
    ) -> Result<Arc<VerdictDoc>, GateError> {
        if let Some(req) = analysis {
            req.validate().map_err(GateError::Analysis)?;
        }
        let gates = self.configs();
        let (g, p) = find_phase(&gates, gate, phase)?;
        self.evaluate_phase(g, p, canary, baseline, analysis)
    }

    /// What the gate's cohorts did over the last `range_seconds`, step by step (the
    /// dashboard's charts): requests, error rate and latency of the canary and of the live
    /// baseline, from the sealed slots. A stored baseline has no steps (it is one period).
    pub fn timeline(
        &self,
        gate: &str,
        phase: Option<&str>,
        canary: &[(String, String)],
        baseline: &[(String, String)],
        range_seconds: u64,
        step_seconds: u64,
    ) -> Result<TimelineDoc, GateError> {
        let gates = self.configs();
        let (g, p) = find_phase(&gates, gate, phase)?;
        let (canary_sel, _) = self.selector(g, &g.canary, canary)?;
        let stored = Self::stored_name(g, baseline)?;
        let steps = |sel: &Selector| {
            let (step, steps) = self.registry.timeline(sel, range_seconds, step_seconds);
            let points = steps
                .iter()
                .map(|s| TimelinePoint {
                    at: slogate_history::rfc3339(s.start_unix as i64),
                    requests: s.requests,
                    errors: s.errors,
                    error_rate: (s.requests > 0).then(|| s.errors as f64 / s.requests as f64),
                    latency_ms: LatencyMs::of(&s.sketch),
                })
                .collect();
            (step, points)
        };
        let (step, canary_steps) = steps(&canary_sel);
        let baseline = match &stored {
            Some(name) => TimelineCohort {
                selector: format!("stored:{name}"),
                steps: None,
            },
            None => {
                let (sel, given) = self.selector(g, &g.baseline, baseline)?;
                TimelineCohort {
                    selector: sel.to_string(),
                    steps: given.then(|| steps(&sel).1),
                }
            }
        };
        Ok(TimelineDoc {
            gate: g.name.clone(),
            phase: p.name.clone(),
            step_seconds: step,
            canary: TimelineCohort {
                selector: canary_sel.to_string(),
                steps: Some(canary_steps),
            },
            baseline,
        })
    }

    /// Evaluates a gate carried in the request (validated by
    /// [`crate::config::Config::inline_gate`]) as [`Gates::evaluate`] does a configured one. Its
    /// sustained criteria and analyses are kept per definition; its last verdict and counters
    /// per name, for at most [`MAX_INLINE_GATES`] names.
    pub fn evaluate_inline(
        &self,
        g: &GateConfig,
        phase: Option<&str>,
        canary: &[(String, String)],
        baseline: &[(String, String)],
        analysis: Option<&AnalysisRequest>,
    ) -> Result<Arc<VerdictDoc>, GateError> {
        if let Some(req) = analysis {
            req.validate().map_err(GateError::Analysis)?;
        }
        let (g, p) = find_phase(std::slice::from_ref(g), &g.name, phase)?;
        self.remember_inline(&g.name);
        self.evaluate_phase(g, p, canary, baseline, analysis)
    }

    /// Notes an evaluation of the inline gate `name`; past [`MAX_INLINE_GATES`] names, forgets
    /// the least recently evaluated one's last verdicts and counters.
    fn remember_inline(&self, name: &str) {
        let mut inline = self.inline.lock();
        let tick = inline.values().copied().max().unwrap_or(0) + 1;
        if !inline.contains_key(name)
            && inline.len() >= MAX_INLINE_GATES
            && let Some(oldest) = inline
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(k, _)| k.clone())
        {
            inline.remove(&oldest);
            self.last.lock().retain(|(g, _), _| *g != oldest);
            self.evaluations.lock().retain(|(g, _), _| *g != oldest);
        }
        inline.insert(name.to_string(), tick);
    }

    fn evaluate_phase(
        &self,
        g: &GateConfig,
        p: &PhaseConfig,
        canary: &[(String, String)],
        baseline: &[(String, String)],
        analysis: Option<&AnalysisRequest>,
    ) -> Result<Arc<VerdictDoc>, GateError> {
        // Sustained criteria and analyses are kept per definition of the gate.
        let state_name = match &g.inline {
            Some(fingerprint) => format!("{}#{fingerprint}", g.name),
            None => g.name.clone(),
        };
        let (canary_sel, _) = self.selector(g, &g.canary, canary)?;
        let stored_name = Self::stored_name(g, baseline)?;
        let stored = match &stored_name {
            Some(name) => Some(self.stored_cohort(g, name)?),
            None => None,
        };
        // A configured stored baseline was checked at load; one named in the request is here.
        if stored.is_some()
            && let Some(why) = crate::config::stored_problem(&p.spec.criteria, &p.measures)
        {
            return Err(GateError::Selector(why));
        }
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
        let baseline_label = match &stored {
            Some((_, r, _)) => format!("stored:{} ({})", r.name, r.selector),
            None => baseline_sel.to_string(),
        };
        let now = self.registry.now_unix();
        let look = match analysis {
            Some(req) => {
                let key = format!(
                    "{state_name}\u{1}{}\u{1}{}\u{1}{canary_sel}\u{1}{baseline_label}",
                    p.name, req.id
                );
                match self.analyses.look(&key, req, &g.analysis, now) {
                    Look::Repeat(doc) => return Ok(doc),
                    Look::New {
                        analysis,
                        since_unix,
                        is_final,
                        interval_seconds,
                    } => Some((
                        key,
                        req.id.clone(),
                        analysis,
                        since_unix,
                        is_final,
                        interval_seconds,
                    )),
                }
            }
            None => None,
        };
        let window = match &look {
            Some((_, _, _, since, ..)) => now.saturating_sub(*since).max(1),
            None => p.window_seconds,
        };
        let query = |sel: &Selector| {
            let w = self.registry.query(sel, window);
            CohortData {
                requests: w.requests,
                errors: w.errors,
                sketch: w.sketch,
                observed_seconds: Some(w.observed_seconds),
                ..Default::default()
            }
        };
        // OTLP metric criteria are measured per cohort over the same window, after the span
        // data (a cost per request divides by the span count).
        let measured = |sel: &Selector, mut data: CohortData| {
            for (name, q) in &p.measures {
                let m = super::measure::measure(self.metrics.as_deref(), sel, q, window, &data);
                data.measured.insert(name.clone(), m);
            }
            data
        };
        let canary_data = measured(&canary_sel, query(&canary_sel));
        let (baseline_data, stored_ref) = match stored {
            Some((mut data, reference, b)) => {
                let source = format!("stored baseline {}", reference.name);
                for (name, q) in &p.measures {
                    let m = super::measure::measure_stored(&b.metrics, &source, q, &data);
                    data.measured.insert(name.clone(), m);
                }
                (Some(data), Some(reference))
            }
            None => (
                baseline_given.then(|| measured(&baseline_sel, query(&baseline_sel))),
                None,
            ),
        };
        let mut eval = match &look {
            Some((_, _, a, ..)) => slogate_gate::evaluate_look(
                &p.spec,
                a,
                &canary_data,
                baseline_data.as_ref(),
                window,
            ),
            None => slogate_gate::evaluate(&p.spec, &canary_data, baseline_data.as_ref(), window),
        };
        if p.spec
            .criteria
            .iter()
            .any(|c| c.sustained_seconds.is_some())
        {
            let key = format!(
                "{state_name}\u{1}{}\u{1}{canary_sel}\u{1}{baseline_label}",
                p.name
            );
            let mut st = self.sustain.lock();
            st.tick += 1;
            let tick = st.tick;
            if !st.states.contains_key(&key)
                && st.states.len() >= SUSTAIN_CAPACITY
                && let Some(oldest) = st
                    .states
                    .iter()
                    .min_by_key(|(_, (t, _))| *t)
                    .map(|(k, _)| k.clone())
            {
                st.states.remove(&oldest);
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
            inline: g.inline.clone(),
            analysis: match (&look, eval.look.take()) {
                (Some((_, id, _, since, is_final, interval_seconds)), Some(report)) => {
                    Some(AnalysisDoc {
                        id: id.clone(),
                        is_final: *is_final,
                        data_since: slogate_history::rfc3339(*since as i64),
                        interval_seconds: *interval_seconds,
                        look: report,
                    })
                }
                _ => None,
            },
            canary: summary(&canary_sel, &canary_data),
            baseline: CohortSummary {
                selector: baseline_label,
                stored: stored_ref,
                ..summary(&baseline_sel, baseline_data.as_ref().unwrap_or(&empty))
            },
            criteria: eval.criteria,
            reasons: eval.reasons,
        });
        self.record(&g.service, &doc);
        if let Some((key, _, _, _, is_final, _)) = &look {
            self.analyses.finish(key, &doc, *is_final);
        }
        Ok(doc)
    }

    fn record(&self, service: &str, doc: &Arc<VerdictDoc>) {
        let mut log = self.log.lock();
        if log.len() >= VERDICT_LOG_CAPACITY {
            log.pop_back();
        }
        log.push_front(doc.clone());
        drop(log);
        let previous = self
            .last
            .lock()
            .insert((doc.gate.clone(), doc.phase.clone()), doc.clone());
        *self
            .evaluations
            .lock()
            .entry((doc.gate.clone(), verdict_label(doc.verdict)))
            .or_default() += 1;
        // One INFO line per change of a gate's verdict (per phase), with the decision and why;
        // every evaluation at DEBUG.
        let changed = previous.as_ref().is_none_or(|p| {
            p.verdict != doc.verdict
                || p.canary.selector != doc.canary.selector
                || p.baseline.selector != doc.baseline.selector
        });
        let why = doc
            .reasons
            .first()
            .map_or("every criterion passed", String::as_str);
        if changed {
            tracing::info!(gate = %doc.gate, phase = %doc.phase, verdict = verdict_label(doc.verdict), decision = ?doc.decision, canary = %doc.canary.selector, baseline = %doc.baseline.selector, analysis = doc.analysis.as_ref().map(|a| a.id.as_str()), why, "gate verdict changed");
            if let Some(on_change) = &self.on_change {
                on_change(service, previous.as_deref(), doc);
            }
        } else {
            tracing::debug!(gate = %doc.gate, phase = %doc.phase, verdict = verdict_label(doc.verdict), canary = %doc.canary.selector, baseline = %doc.baseline.selector, "gate evaluated");
        }
        if let Some(hook) = &self.hook {
            hook(service, doc);
        }
    }

    /// Fills the verdict log and the last verdict per gate and phase with `docs` (newest
    /// first, as read back from the history at start), without calling the hooks: they were
    /// notified and written when first recorded. At most the log's capacity is kept.
    pub fn restore(&self, docs: Vec<VerdictDoc>) {
        let mut log = self.log.lock();
        let mut last = self.last.lock();
        for doc in docs {
            if log.len() >= VERDICT_LOG_CAPACITY {
                break;
            }
            let doc = Arc::new(doc);
            last.entry((doc.gate.clone(), doc.phase.clone()))
                .or_insert_with(|| doc.clone());
            log.push_back(doc);
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

    /// Appends the gate families: evaluations by verdict, and the last verdict per gate and
    /// phase with its criteria and cohorts.
    pub fn render_metrics(&self, out: &mut String) {
        use slogate_core::prom::{Kind, family};
        let mut f = family(
            out,
            "slogate_gate_evaluations_total",
            Kind::Counter,
            "Gate evaluations by verdict.",
        );
        for ((gate, verdict), n) in self.evaluations.lock().iter() {
            f.sample(&[("gate", gate), ("verdict", verdict)], *n);
        }
        family(
            out,
            "slogate_gate_analyses",
            Kind::Gauge,
            "Analyses (rollout steps judged at repeated looks) remembered now.",
        )
        .sample(&[], self.analyses.len());
        let last = self.last.lock();
        let mut f = family(
            out,
            "slogate_gate_verdict",
            Kind::Gauge,
            "The last verdict of each gate and phase (1 for the current one).",
        );
        for ((gate, phase), doc) in last.iter() {
            for v in ["pass", "fail", "inconclusive"] {
                f.sample(
                    &[("gate", gate), ("phase", phase), ("verdict", &v)],
                    verdict_label(doc.verdict) == v,
                );
            }
        }
        let mut f = family(
            out,
            "slogate_gate_criterion_observed",
            Kind::Gauge,
            "The observed value of each criterion at the last evaluation.",
        );
        for ((gate, phase), doc) in last.iter() {
            for c in &doc.criteria {
                if let Some(v) = c.observed {
                    f.sample(
                        &[("gate", gate), ("phase", phase), ("criterion", &c.name)],
                        v,
                    );
                }
            }
        }
        let mut f = family(
            out,
            "slogate_gate_criterion_passing",
            Kind::Gauge,
            "1 when the criterion passed at the last evaluation, 0 otherwise (marginal, fail, no data).",
        );
        for ((gate, phase), doc) in last.iter() {
            for c in &doc.criteria {
                let pass = matches!(c.result, slogate_gate::CriterionResult::Pass);
                f.sample(
                    &[("gate", gate), ("phase", phase), ("criterion", &c.name)],
                    pass,
                );
            }
        }
        let cohorts = || {
            last.iter().flat_map(|((gate, phase), doc)| {
                [("canary", &doc.canary), ("baseline", &doc.baseline)]
                    .map(move |(cohort, s)| (gate, phase, cohort, s))
            })
        };
        let mut f = family(
            out,
            "slogate_cohort_requests",
            Kind::Gauge,
            "Requests of each gate cohort in the window of the last evaluation.",
        );
        for (gate, phase, cohort, s) in cohorts() {
            f.sample(
                &[("gate", gate), ("phase", phase), ("cohort", &cohort)],
                s.requests,
            );
        }
        let mut f = family(
            out,
            "slogate_cohort_error_rate",
            Kind::Gauge,
            "Error rate of each gate cohort at the last evaluation (absent without requests).",
        );
        for (gate, phase, cohort, s) in cohorts() {
            if let Some(r) = s.error_rate {
                f.sample(&[("gate", gate), ("phase", phase), ("cohort", &cohort)], r);
            }
        }
        let mut f = family(
            out,
            "slogate_cohort_latency_seconds",
            Kind::Gauge,
            "Latency quantiles of each gate cohort at the last evaluation (a gauge per quantile, not a summary).",
        );
        for (gate, phase, cohort, s) in cohorts() {
            let l = &s.latency_ms;
            for (q, v) in [
                ("0.5", l.p50),
                ("0.9", l.p90),
                ("0.95", l.p95),
                ("0.99", l.p99),
            ] {
                if let Some(v) = v {
                    f.sample(
                        &[
                            ("gate", gate),
                            ("phase", phase),
                            ("cohort", &cohort),
                            ("latency_quantile", &q),
                        ],
                        v / 1e3,
                    );
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::Config;
    use slogate_core::{ObservationWriter, Recorder};
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
    pub(crate) fn setup(cohorts: &[(&str, u64, f64, u64)]) -> Gates {
        let cfg = Config::parse(CONFIG, "test.yaml").unwrap();
        let clock = ManualClock::new(1_800_000_000);
        let registry = Registry::new(cfg.window.clone(), clock);
        record(&registry, cohorts);
        gates_over(&cfg, registry)
    }

    /// Records `checkout` cohorts: `(version, n, scale, err)` is `n` requests whose latencies
    /// step evenly from 10 ms by `scale`, every `err`-th an error (none for 0).
    fn record(registry: &Registry, cohorts: &[(&str, u64, f64, u64)]) {
        let mut w = registry.writer();
        for (version, n, scale, err) in cohorts {
            for i in 0..*n {
                w.record(&crate::engine::checkout_request(
                    version,
                    *err > 0 && i % err == 0,
                    ((10.0 + (i % 100) as f64) * scale * 1e6) as u64,
                ));
            }
        }
    }

    /// `cfg`'s gates over `registry`, without stored baselines.
    fn gates_over(cfg: &Config, registry: Arc<Registry>) -> Gates {
        Gates::new(
            cfg.gates.clone(),
            registry,
            None,
            Arc::new(crate::engine::baselines::BaselineStore::new(
                std::env::temp_dir().join("slogate-gates-unit-no-baselines"),
            )),
        )
    }

    pub(crate) fn canary(v: &str) -> Vec<(String, String)> {
        vec![("version".into(), v.into())]
    }

    #[test]
    fn verdict_document_snapshot() {
        let gates = setup(&[("v1", 2000, 1.0, 200), ("v2", 500, 1.4, 25)]);
        let doc = gates
            .evaluate("checkout", Some("canary"), &canary("v2"), &[], None)
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
                .evaluate("checkout", Some(phase), &canary(version), &base, None)
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

    /// A gate whose one criterion fails the canary (5 % errors) and counts only after a
    /// minute of unbroken failure; `bounds` sets its pass and fail bounds.
    fn sustained_gate(bounds: &str) -> Config {
        let text = format!(
            "gates:\n  - name: checkout\n    service: checkout\n    window: 10m\n    min_requests: 100\n    baseline: {{version: v1}}\n    criteria:\n      - {{name: errors, metric: error_rate, {bounds}, sustained: 1m}}\n"
        );
        Config::parse(&text, "test.yaml").unwrap()
    }

    #[derive(Debug, Clone, Copy)]
    enum Step {
        /// Evaluate: the verdict expected.
        Eval(Verdict),
        /// Move the clock on this many seconds.
        Advance(u64),
        /// Reload with these bounds (the same bounds: the same definition).
        Load(&'static str),
        /// Reload without the gate.
        Remove,
    }

    #[test]
    fn a_reload_starts_a_changed_gate_afresh() {
        use Step::*;
        use Verdict::{Fail, Inconclusive};
        const A: &str = "pass: 0.01, fail: 0.02";
        const B: &str = "pass: 0.01, fail: 0.03";
        let steps = [
            // Held back for a minute, then the failure counts.
            Eval(Inconclusive),
            Advance(61),
            Eval(Fail),
            // Reloading the same definition keeps the streak.
            Load(A),
            Eval(Fail),
            // A changed definition starts its own.
            Load(B),
            Eval(Inconclusive),
            Advance(61),
            Eval(Fail),
        ];
        let mut cfg = sustained_gate(A);
        let clock = ManualClock::new(1_800_000_000);
        let registry = Registry::new(cfg.window.clone(), clock.clone());
        record(&registry, &[("v1", 2000, 1.0, 1000), ("v2", 2000, 1.0, 20)]);
        let gates = gates_over(&cfg, registry.clone());
        let eval = |gates: &Gates| gates.evaluate("checkout", None, &canary("v2"), &[], None);
        for (i, step) in steps.into_iter().chain([Remove]).enumerate() {
            match step {
                Eval(want) => {
                    let doc = eval(&gates).unwrap();
                    assert_eq!(doc.verdict, want, "step {i}: {:?}", doc.reasons);
                }
                Advance(secs) => {
                    clock.advance(secs);
                    registry.close_slots();
                }
                Load(bounds) => {
                    let new = sustained_gate(bounds);
                    let changes = gates.replace(
                        new.gates.clone(),
                        &cfg.gate_fingerprints(),
                        &new.gate_fingerprints(),
                    );
                    let changed = if bounds == A { 0 } else { 1 };
                    assert_eq!(changes.changed.len(), changed, "step {i}");
                    cfg = new;
                }
                Remove => {
                    let new = Config::parse("{}", "test.yaml").unwrap();
                    let changes = gates.replace(
                        Vec::new(),
                        &cfg.gate_fingerprints(),
                        &new.gate_fingerprints(),
                    );
                    assert_eq!(changes.removed, ["checkout"]);
                    assert_eq!(
                        eval(&gates).unwrap_err(),
                        GateError::UnknownGate("checkout".into())
                    );
                    // Its last verdicts leave /metrics; the log keeps what was decided.
                    let mut metrics = String::new();
                    gates.render_metrics(&mut metrics);
                    assert!(!metrics.contains("gate=\"checkout\""), "{metrics}");
                    assert_eq!(gates.history(Some("checkout"), 100).len(), 5);
                }
            }
        }
    }

    #[test]
    fn request_errors() {
        let gates = setup(&[("v1", 10, 1.0, 0)]);
        // (gate, phase, canary selector, error fragment)
        type Case<'a> = (&'a str, Option<&'a str>, Vec<(String, String)>, &'a str);
        let cases: &[Case] = &[
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
                .evaluate(gate, *phase, sel, &[], None)
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{err}");
        }
    }
}
