//! Analyses: one rollout step judged at repeated looks (an Argo AnalysisRun polling every
//! minute, a CI job polling with a run id). Each look is judged on the data **cumulative since
//! the analysis began** and spends part of the gate's false-rollback budget
//! ([`slogate_gate::evaluate_look`]); this module keeps, per analysis, when it began, the
//! information fraction of every look so far and the verdict of the last one.
//!
//! Design decisions:
//! * **An analysis is named by the caller** (`analysis=ID`) and keyed by gate, phase, id and both
//!   cohorts, so the same id for another canary is another analysis.
//! * **Look `k` covers `k` intervals of traffic**: the data starts one interval before the first
//!   look (the canary has been serving since its weight was set), so the first look is not
//!   empty by construction.
//! * **Information is time**: look `k`'s fraction is the time its data spans over the planned
//!   step (`looks × interval`), so a missed poll does not distort the spending, and the look
//!   numbered `looks` is the last one (fraction 1: it spends what is left).
//! * **A retry is the same look**: a request less than half an interval after the previous look
//!   gets that look's verdict again instead of spending more alpha (Argo retries errors; a CI job
//!   may poll fast).
//! * **The last look is final**: later requests get its verdict until the analysis expires
//!   (`expire_after` without a look); the next request with the id then starts a new analysis.
//! * **Bounded**: at most [`ANALYSIS_CAPACITY`] analyses; the least recently looked-at goes
//!   first.

use super::gates::VerdictDoc;
use crate::config::AnalysisConfig;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use slogate_gate::{Analysis, LookReport};
use std::collections::HashMap;
use std::sync::Arc;

/// How many analyses are remembered at once.
pub const ANALYSIS_CAPACITY: usize = 10_000;
/// Longest analysis id accepted.
pub const MAX_ID_LEN: usize = 200;

/// What a verdict request says about its analysis.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnalysisRequest {
    /// Names the analysis: e.g. `{{args.gate}}-{{args.phase}}-{{args.canary-hash}}` in an Argo
    /// AnalysisTemplate, a pipeline's run id.
    pub id: String,
    /// Looks planned (Argo's `count`); the gate's `analysis.looks` when absent.
    #[serde(default)]
    pub looks: Option<u32>,
    /// Seconds between looks (Argo's `interval`); the gate's `analysis.interval` when absent.
    #[serde(default)]
    pub interval_seconds: Option<u64>,
}

impl AnalysisRequest {
    pub fn validate(&self) -> Result<(), String> {
        let id_ok = !self.id.is_empty()
            && self.id.len() <= MAX_ID_LEN
            && self
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:/".contains(&b));
        if !id_ok {
            return Err(format!(
                "analysis id {:?} must be 1-{MAX_ID_LEN} characters of [A-Za-z0-9._:/-]",
                self.id
            ));
        }
        if let Some(n) = self.looks
            && !(1..=crate::config::MAX_LOOKS).contains(&n)
        {
            return Err(format!(
                "looks={n} must be between 1 and {}",
                crate::config::MAX_LOOKS
            ));
        }
        if self.interval_seconds == Some(0) {
            return Err("interval must be at least 1s".into());
        }
        Ok(())
    }
}

/// The `analysis` object of a verdict document.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AnalysisDoc {
    pub id: String,
    /// The last planned look: its verdict is the step's. Before it, only a `fail` is final.
    #[serde(rename = "final")]
    pub is_final: bool,
    /// Start of the data every look of this analysis judges (one interval before the first).
    pub data_since: String,
    pub interval_seconds: u64,
    #[serde(flatten)]
    pub look: LookReport,
}

/// Where one look stands: what to evaluate, or the verdict already given.
pub enum Look {
    /// Judge the data since `since_unix` as look `analysis.look`.
    New {
        analysis: Analysis,
        since_unix: u64,
        is_final: bool,
        interval_seconds: u64,
    },
    /// A retry of the previous look, or a request after the final look: its verdict.
    Repeat(Arc<VerdictDoc>),
}

struct State {
    since_unix: u64,
    looks: u32,
    interval_seconds: u64,
    fractions: Vec<f64>,
    last_look_unix: u64,
    last: Option<Arc<VerdictDoc>>,
    done: bool,
}

#[derive(Default)]
pub struct Analyses {
    states: Mutex<HashMap<String, State>>,
}

impl Analyses {
    /// The next look of the analysis `key` at `now`. `expire` drops analyses idle longer than
    /// the gate's `expire_after` first.
    pub fn look(&self, key: &str, req: &AnalysisRequest, cfg: &AnalysisConfig, now: u64) -> Look {
        let mut states = self.states.lock();
        states.retain(|_, s| now.saturating_sub(s.last_look_unix) <= cfg.expire_seconds);
        if !states.contains_key(key)
            && states.len() >= ANALYSIS_CAPACITY
            && let Some(oldest) = states
                .iter()
                .min_by_key(|(_, s)| s.last_look_unix)
                .map(|(k, _)| k.clone())
        {
            states.remove(&oldest);
        }
        let looks = req.looks.unwrap_or(cfg.looks);
        let interval_seconds = req.interval_seconds.unwrap_or(cfg.interval_seconds);
        let s = states.entry(key.to_string()).or_insert_with(|| State {
            since_unix: now.saturating_sub(interval_seconds),
            looks,
            interval_seconds,
            fractions: Vec::new(),
            last_look_unix: now,
            last: None,
            done: false,
        });
        if let Some(last) = &s.last
            && (s.done || now.saturating_sub(s.last_look_unix) * 2 < s.interval_seconds)
        {
            return Look::Repeat(last.clone());
        }
        let look = s.fractions.len() as u32 + 1;
        let is_final = look >= s.looks;
        let planned = f64::from(s.looks) * s.interval_seconds as f64;
        let prev = s.fractions.last().copied().unwrap_or(0.0);
        let t = if is_final {
            1.0
        } else {
            // Strictly increasing and below 1, which only the last look reaches.
            let by_time = now.saturating_sub(s.since_unix) as f64 / planned;
            let ceiling = 1.0 - f64::from(s.looks - look) * 1e-6;
            by_time.min(ceiling).max(prev + 1e-6)
        };
        s.fractions.push(t);
        s.last_look_unix = now;
        Look::New {
            analysis: Analysis {
                look,
                looks: s.looks,
                fractions: s.fractions.clone(),
                alpha: cfg.alpha,
                spending: cfg.spending,
            },
            since_unix: s.since_unix,
            is_final,
            interval_seconds: s.interval_seconds,
        }
    }

    /// Records the verdict of the look just judged. The last look, and a `fail` at any look (a
    /// rollback needs no more data), end the analysis: later requests get this verdict.
    pub fn finish(&self, key: &str, doc: &Arc<VerdictDoc>, is_final: bool) {
        if let Some(s) = self.states.lock().get_mut(key) {
            s.last = Some(doc.clone());
            s.done |= is_final || doc.verdict == slogate_gate::Verdict::Fail;
        }
    }

    pub fn len(&self) -> usize {
        self.states.lock().len()
    }

    /// Forgets the analyses whose key starts with `prefix` (a gate whose definition changed).
    pub fn forget(&self, prefix: &str) {
        self.states.lock().retain(|k, _| !k.starts_with(prefix));
    }
}

#[cfg(test)]
mod tests {
    use super::AnalysisRequest;
    use crate::config::Config;
    use crate::engine::gates::{GateError, Gates};
    use rand::SeedableRng;
    use rand_distr::{Distribution, LogNormal};
    use slogate_core::{ObservationWriter, Recorder};
    use slogate_gate::Verdict;
    use slogate_window::{ManualClock, Registry};
    use std::sync::Arc;

    const CONFIG: &str = "
gates:
  - name: checkout
    service: checkout
    min_requests: 100
    baseline: {version: v1}
    analysis: {false_rollback_rate: 0.01, looks: 10, interval: 1m, expire_after: 5m}
    criteria:
      - {name: p95, metric: latency_p95, compare: ratio, pass: 1.1, fail: 1.0, confidence: 0.95}
      - {name: errors, metric: error_rate, compare: ratio, pass: 1.5, fail: 1.0, confidence: 0.95}
";

    struct Fixture {
        gates: Gates,
        registry: Arc<Registry>,
        clock: Arc<ManualClock>,
        rng: rand::rngs::StdRng,
    }

    impl Fixture {
        fn new() -> Fixture {
            let cfg = Config::parse(CONFIG, "test.yaml").unwrap();
            let clock = ManualClock::new(1_800_000_000);
            let registry = Registry::new(cfg.window.clone(), clock.clone());
            let gates = Gates::new(
                cfg.gates,
                registry.clone(),
                None,
                Arc::new(crate::engine::baselines::BaselineStore::new(
                    std::env::temp_dir().join("slogate-analysis-unit-no-baselines"),
                )),
            );
            Fixture {
                gates,
                registry,
                clock,
                rng: rand::rngs::StdRng::seed_from_u64(7),
            }
        }

        /// One minute of traffic: `n` requests per version, lognormal σ 0.6 around 50 ms times
        /// the version's scale, then the slots close.
        fn minute(&mut self, cohorts: &[(&str, u64, f64)]) {
            let dist = LogNormal::new((50e6f64).ln(), 0.6).unwrap();
            {
                let mut w = self.registry.writer();
                for (version, n, scale) in cohorts {
                    for _ in 0..*n {
                        let error = rand::Rng::random_bool(&mut self.rng, 0.005);
                        let duration_ns = (dist.sample(&mut self.rng) * scale) as u64;
                        w.record(&crate::engine::checkout_request(
                            version,
                            error,
                            duration_ns,
                        ));
                    }
                }
            }
            for _ in 0..6 {
                self.clock.advance(10);
                self.registry.close_slots();
            }
        }

        fn look(&self, version: &str, id: &str) -> Arc<crate::engine::gates::VerdictDoc> {
            let req = AnalysisRequest {
                id: id.into(),
                ..Default::default()
            };
            self.gates
                .evaluate(
                    "checkout",
                    None,
                    &[("version".into(), version.into())],
                    &[],
                    Some(&req),
                )
                .unwrap()
        }
    }

    #[test]
    fn looks_accumulate_and_only_the_last_one_passes_for_good() {
        let mut f = Fixture::new();
        let mut docs = Vec::new();
        for minute in 1..=10u64 {
            f.minute(&[("v1", 2000, 1.0), ("v2", 2000, 1.0)]);
            let doc = f.look("v2", "step-1");
            let a = doc.analysis.as_ref().expect("an analysis look");
            assert_eq!((a.look.look, a.look.looks), (minute as u32, 10));
            assert_eq!(a.is_final, minute == 10);
            // Cumulative: look k judges k minutes of traffic (plus the open slot).
            assert_eq!(doc.canary.requests, 2000 * minute, "look {minute}");
            assert_ne!(
                doc.verdict,
                Verdict::Fail,
                "A/A rolled back at look {minute}"
            );
            // A retry within half an interval is the same look, not a new one.
            assert!(Arc::ptr_eq(&doc, &f.look("v2", "step-1")));
            docs.push(doc);
        }
        let last = docs.last().unwrap();
        assert_eq!(last.verdict, Verdict::Pass, "{:#?}", last.criteria);
        let a = last.analysis.as_ref().unwrap();
        assert!(
            (a.look.spent - 0.01).abs() < 1e-12,
            "the whole budget is spent at the last look"
        );
        // After the last look the analysis answers its verdict until it expires...
        assert!(Arc::ptr_eq(last, &f.look("v2", "step-1")));
        // ...then the id starts a new analysis.
        f.clock.advance(301);
        let fresh = f.look("v2", "step-1");
        assert_eq!(fresh.analysis.as_ref().unwrap().look.look, 1);
        assert_eq!(f.gates.analyses.len(), 1, "the expired one was dropped");
    }

    #[test]
    fn a_regression_rolls_back_early_and_stays_rolled_back() {
        let mut f = Fixture::new();
        let mut failed_at = None;
        for minute in 1..=10u32 {
            f.minute(&[("v1", 2000, 1.0), ("v3", 2000, 1.5)]);
            let doc = f.look("v3", "step-1");
            if doc.verdict == Verdict::Fail {
                failed_at = Some(minute);
                assert!(!doc.analysis.as_ref().unwrap().is_final);
                // The rollback is final: the next minute answers the same document.
                f.minute(&[("v1", 2000, 1.0), ("v3", 2000, 1.0)]);
                assert!(Arc::ptr_eq(&doc, &f.look("v3", "step-1")));
                break;
            }
        }
        // p95 +50 % with 2,000 requests a minute is far past any boundary by the second look.
        assert!(failed_at.is_some_and(|m| m <= 2), "{failed_at:?}");
        // Another id, another analysis, starting at look 1.
        let other = f.look("v3", "step-2");
        assert_eq!(other.analysis.as_ref().unwrap().look.look, 1);
    }

    #[test]
    fn thin_data_never_passes_even_at_the_last_look() {
        let mut f = Fixture::new();
        let mut last = None;
        for _ in 1..=10 {
            f.minute(&[("v1", 2000, 1.0), ("v2", 20, 1.0)]);
            last = Some(f.look("v2", "thin"));
        }
        let last = last.unwrap();
        assert!(last.analysis.as_ref().unwrap().is_final);
        assert_eq!(last.verdict, Verdict::Inconclusive, "{:#?}", last.criteria);
    }

    #[test]
    fn bad_analysis_requests_are_refused() {
        let f = Fixture::new();
        for req in [
            AnalysisRequest {
                id: "a b".into(),
                ..Default::default()
            },
            AnalysisRequest {
                id: String::new(),
                ..Default::default()
            },
            AnalysisRequest {
                id: "ok".into(),
                looks: Some(0),
                ..Default::default()
            },
            AnalysisRequest {
                id: "ok".into(),
                interval_seconds: Some(0),
                ..Default::default()
            },
        ] {
            let err = f
                .gates
                .evaluate(
                    "checkout",
                    None,
                    &[("version".into(), "v2".into())],
                    &[],
                    Some(&req),
                )
                .unwrap_err();
            assert!(matches!(err, GateError::Analysis(_)), "{req:?}: {err}");
        }
    }
}
