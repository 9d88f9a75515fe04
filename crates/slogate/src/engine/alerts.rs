//! Alerting: SLO status and burn rates, multi-window burn-rate and threshold rules, gate-failure
//! alerts, the alert state machines, and hand-off of every transition (and of every change of a
//! gate's verdict) to the notifier: the outboxes of PagerDuty, Slack and the webhooks that are
//! configured.
//!
//! What alerts watch (SLOs, burn tiers, threshold rules, gate-failure alerting) is one
//! [`AlertRules`] snapshot that a configuration reload replaces whole ([`Alerts::replace`]):
//! an evaluation reads one snapshot. Alerts of rules that stay keep their state; a firing alert
//! whose rule went away resolves once, through the notifier.

use crate::config::{Config, RuleMetric, SloConfig, ThresholdRule};
use crate::engine::gates::VerdictDoc;
use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use slogate_alert::{AlertNote, AlertState, Phase, Transition, VerdictNote};
use slogate_core::Selector;
use slogate_gate::{
    BurnTier, CohortData, Metric, Tier, Verdict, budget, good_total, humanize, multiwindow,
};
use slogate_window::Registry;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// Transitions kept for `/api/v1/alerts` (newest first).
const TRANSITION_LOG: usize = 1000;
/// Gates, phases and cohorts whose last notified verdict is remembered.
const VERDICTS_REMEMBERED: usize = 10_000;
/// Points of an SLO's budget history: 12 hours at one a minute.
pub const BUDGET_POINTS: usize = 720;
/// The span of time one point of an SLO's budget history stands for (its last evaluation).
pub const BUDGET_POINT_SECONDS: u64 = 60;

/// An SLO's remaining budget at one evaluation.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct BudgetPoint {
    pub at_unix: u64,
    /// `null` while the SLO had no data.
    pub remaining_ratio: Option<f64>,
}

/// Alerts (rule × series, gate × phase × cohorts) tracked at once. Past it an idle one
/// (inactive or resolved) is forgotten for a new one; a pending or firing one never is.
pub const MAX_TRACKED_ALERTS: usize = 10_000;

/// What a firing or resolving alert tells the notifier.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Notice {
    pub dedup_key: String,
    pub resolve: bool,
    /// The condition as evaluated, without a `resolved:` prefix.
    pub summary: String,
    pub tier: Tier,
    pub rule: String,
    pub service: String,
    pub class: &'static str,
    pub link: String,
    pub details: serde_json::Value,
    pub at_unix: u64,
    /// When the alert started firing (`at_unix` for a trigger).
    pub started_at_unix: u64,
}

impl Notice {
    /// The destination-neutral form Slack and the webhooks format.
    pub fn note(&self) -> AlertNote {
        AlertNote {
            id: self.dedup_key.clone(),
            firing: !self.resolve,
            rule: self.rule.clone(),
            class: self.class.to_string(),
            service: self.service.clone(),
            tier: self.tier.label().to_string(),
            severity: severity(self.tier),
            summary: self.summary.clone(),
            link: self.link.clone(),
            started_at: self.started_at_unix,
            ended_at: self.resolve.then_some(self.at_unix),
            details: self.details.clone(),
        }
    }
}

/// A verdict and its decision as messages name them: `fail`, `rollback`.
fn verdict_state(doc: &VerdictDoc) -> slogate_alert::VerdictState {
    let decision = match doc.decision {
        slogate_gate::Decision::Proceed => "proceed",
        slogate_gate::Decision::Hold => "hold",
        slogate_gate::Decision::Rollback => "rollback",
    };
    slogate_alert::VerdictState {
        verdict: crate::engine::gates::verdict_label(doc.verdict).to_string(),
        decision: decision.to_string(),
    }
}

fn severity(tier: Tier) -> slogate_alert::Severity {
    use slogate_alert::Severity;
    match tier {
        Tier::P1 => Severity::Critical,
        Tier::P2 => Severity::Error,
        Tier::Ticket => Severity::Warning,
    }
}

/// Called with every transition record (the history's alerts table).
pub type TransitionSink = Arc<dyn Fn(&TransitionRecord) + Send + Sync>;

/// Receives every transition, in order. Errors are logged and counted; the alert state still
/// moves (the outbox is the durable part).
pub trait Notifier: Send + Sync {
    fn notify(&self, notice: &Notice) -> Result<(), String>;

    /// A gate's verdict changed: called once per change, never per evaluation. PagerDuty pages
    /// on gate failures through [`Notifier::notify`] instead, so this does nothing by default.
    fn verdict_changed(&self, _change: &VerdictNote) -> Result<(), String> {
        Ok(())
    }
}

/// Writes each notice to the durable outbox and wakes the sender.
pub struct PagerDutyNotifier {
    pub outbox: Arc<slogate_alert::Outbox>,
    pub notify: Arc<tokio::sync::Notify>,
}

impl Notifier for PagerDutyNotifier {
    fn notify(&self, n: &Notice) -> Result<(), String> {
        use slogate_alert::{Event, Severity};
        let event = if n.resolve {
            Event::resolve(&n.dedup_key)
        } else {
            let severity: Severity = severity(n.tier);
            let source = if n.service.is_empty() {
                "slogate".to_string()
            } else {
                n.service.clone()
            };
            Event::trigger(&n.dedup_key, &n.summary, source, severity)
                .with_timestamp_unix(n.at_unix)
                .with_component(&n.service)
                .with_group(&n.rule)
                .with_class(n.class)
                .with_custom_details(n.details.clone())
                .with_link(&n.link, "slogate")
        };
        self.outbox.enqueue(event).map_err(|e| e.to_string())?;
        self.notify.notify_one();
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AlertView {
    pub id: String,
    pub rule: String,
    pub kind: &'static str,
    pub service: String,
    pub tier: Tier,
    pub severity: &'static str,
    pub state: AlertState,
    pub summary: String,
    pub details: serde_json::Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct TransitionRecord {
    pub id: String,
    pub transition: &'static str,
    pub at_unix: u64,
    pub summary: String,
    pub notified: Result<(), String>,
    /// What raised it, so that a restart can resolve an alert whose rule is gone.
    pub rule: String,
    pub service: String,
    pub kind: &'static str,
    pub tier: Tier,
}

/// An alert's last transition as read back from the history at start. `rule`, `kind`,
/// `service` and `tier` are `None` in documents written before they were recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoredAlert {
    pub id: String,
    pub firing: bool,
    pub at_unix: u64,
    pub summary: String,
    pub rule: Option<String>,
    pub kind: Option<String>,
    pub service: Option<String>,
    pub tier: Option<Tier>,
}

/// Why an alert restored as firing resolves when its rule is no longer configured.
pub const GONE_AT_RESTART: &str = "rule no longer configured (removed while slogate was stopped)";

/// The alert kinds, as recorded.
const KINDS: [&str; 3] = ["threshold", "slo_burn", "gate_failure"];

struct Entry {
    /// When the alert was last evaluated (for a gate-failure alert: last looked at).
    seen_at: u64,
    view: AlertView,
    machine: AlertState,
}

/// What the alerts watch, from the configuration; replaced whole by a reload.
pub struct AlertRules {
    slos: Vec<SloConfig>,
    tiers: Vec<BurnTier>,
    rules: Vec<ThresholdRule>,
    min_requests: u64,
    /// The tier of gate-failure alerts; `None` when they are off.
    gate_failures: Option<slogate_gate::Tier>,
    /// Seconds without a verdict after which a firing gate-failure alert resolves.
    gate_failures_resolve_after: u64,
    /// The configured gates.
    gates: std::collections::BTreeSet<String>,
    /// Configured gates the reload that made these rules removed: their gate-failure alerts
    /// go. (Gates carried in verdict requests are in neither set and keep theirs.)
    removed_gates: std::collections::BTreeSet<String>,
    link_base: String,
}

impl AlertRules {
    /// The rules of `cfg` as they follow `old` in a reload.
    fn after(old: &AlertRules, cfg: &Config) -> AlertRules {
        let mut new = AlertRules::new(cfg);
        new.removed_gates = old.gates.difference(&new.gates).cloned().collect();
        new
    }

    pub fn new(cfg: &Config) -> AlertRules {
        AlertRules {
            slos: cfg.slos.clone(),
            tiers: cfg.burn_tiers.clone(),
            rules: cfg.rules.clone(),
            min_requests: cfg.alerting.min_requests,
            gate_failures: cfg.alerting.gate_failures,
            gate_failures_resolve_after: cfg.alerting.gate_failures_resolve_after.as_secs(),
            gates: cfg.gates.iter().map(|g| g.name.clone()).collect(),
            removed_gates: Default::default(),
            link_base: cfg.alerting.link_base_url.trim_end_matches('/').to_string(),
        }
    }

    /// The id of each SLO burn alert: its SLO and tier.
    fn burn_id(slo: &str, factor: f64, long_seconds: u64) -> String {
        dedup_key(&[
            "slo-burn",
            slo,
            &format!("{factor}x-{}", humanize(long_seconds)),
        ])
    }

    /// Whether an alert of `kind` raised by `rule` (with this id) still has its rule here.
    fn keeps(&self, id: &str, kind: &str, rule: &str) -> bool {
        match kind {
            "threshold" => self.rules.iter().any(|r| r.name == rule),
            "slo_burn" => self.slos.iter().any(|s| {
                s.spec.name == rule
                    && self
                        .tiers
                        .iter()
                        .any(|t| AlertRules::burn_id(rule, t.factor, t.long_seconds) == id)
            }),
            "gate_failure" => self.gate_failures.is_some() && !self.removed_gates.contains(rule),
            _ => true,
        }
    }

    /// The `for` of the threshold rule `rule` (0 for other kinds).
    fn for_seconds(&self, kind: &str, rule: &str) -> u64 {
        match kind {
            "threshold" => self
                .rules
                .iter()
                .find(|r| r.name == rule)
                .map_or(0, |r| r.for_seconds),
            _ => 0,
        }
    }
}

/// Why an alert whose rule a reload removed resolves.
pub const REMOVED_BY_RELOAD: &str = "rule removed by configuration reload";

pub struct Alerts {
    rules: RwLock<Arc<AlertRules>>,
    registry: Arc<Registry>,
    metrics: Option<Arc<slogate_metrics::MetricStore>>,
    notifier: Option<Arc<dyn Notifier>>,
    sink: Option<TransitionSink>,
    entries: Mutex<BTreeMap<String, Entry>>,
    log: Mutex<VecDeque<TransitionRecord>>,
    /// The last verdict notified per gate, phase and cohorts (bounded).
    notified_verdicts: Mutex<BTreeMap<String, slogate_alert::VerdictState>>,
    /// Per SLO, its remaining budget: the last evaluation of each [`BUDGET_POINT_SECONDS`],
    /// the newest [`BUDGET_POINTS`] (in memory; a restart starts it again).
    budget_history: Mutex<BTreeMap<String, VecDeque<BudgetPoint>>>,
    /// Phases read back from the history at start, by alert id: taken when the alert is first
    /// evaluated, so an alert that was firing before a restart does not fire again.
    restored: Mutex<BTreeMap<String, Phase>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BurnView {
    pub tier: Tier,
    pub factor: f64,
    pub long_window_seconds: u64,
    pub short_window_seconds: u64,
    #[serde(flatten)]
    pub check: slogate_gate::BurnCheck,
}

#[derive(Debug, Clone, Serialize)]
pub struct SloStatus {
    pub name: String,
    pub service: String,
    pub selector: String,
    pub objective: f64,
    pub kind: slogate_gate::SloKind,
    pub period_seconds: u64,
    /// The part of the period measured: the live windows keep at most the coarse retention.
    pub measured_seconds: u64,
    #[serde(flatten)]
    pub budget: slogate_gate::Budget,
    /// "2 weeks 3 days" of budget left at a sustainable burn, or null without data.
    pub budget_left: Option<String>,
    pub burn_rates: Vec<BurnView>,
    /// The remaining budget over time, oldest first (see [`BUDGET_POINTS`]).
    pub budget_history: Vec<BudgetPoint>,
}

fn selector(service: &str, dims: &[(String, String)], extra: &[String]) -> Selector {
    let pairs =
        std::iter::once(("service".to_string(), service.to_string())).chain(dims.iter().cloned());
    Selector::new(pairs, extra).expect("dimensions validated with the config")
}

/// A PagerDuty dedup key is at most 255 characters; long keys keep a readable prefix and a hash.
fn dedup_key(parts: &[&str]) -> String {
    let key = format!("slogate/{}", parts.join("/"));
    if key.len() <= 255 {
        return key;
    }
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    let mut cut = 200;
    while !key.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}#{:016x}", &key[..cut], h.finish())
}

impl Alerts {
    pub fn new(
        cfg: &Config,
        registry: Arc<Registry>,
        notifier: Option<Arc<dyn Notifier>>,
        sink: Option<TransitionSink>,
    ) -> Alerts {
        Alerts {
            sink,
            rules: RwLock::new(Arc::new(AlertRules::new(cfg))),
            registry,
            metrics: None,
            notifier,
            entries: Mutex::new(BTreeMap::new()),
            log: Mutex::new(VecDeque::new()),
            notified_verdicts: Mutex::new(BTreeMap::new()),
            budget_history: Mutex::new(BTreeMap::new()),
            restored: Mutex::new(BTreeMap::new()),
        }
    }

    /// Restores alert states from their last transitions (read back from the history at
    /// start): firing since `at_unix`, or resolved at it. Each alert continues from there at
    /// its next evaluation: still true sends nothing, no longer true resolves once. A firing
    /// alert whose rule is no longer configured resolves now, once, with [`GONE_AT_RESTART`];
    /// a firing gate-failure alert is tracked from now, so it resolves if no verdict looks at
    /// it within `alerting.gate_failures.resolve_after`. Returns the ids resolved now.
    pub fn restore(&self, last: impl IntoIterator<Item = RestoredAlert>) -> Vec<String> {
        let now = self.registry.now_unix();
        let rules = self.rules();
        let mut gone = Vec::new();
        {
            let mut entries = self.entries.lock();
            let mut restored = self.restored.lock();
            for a in last {
                let phase = if a.firing {
                    Phase::Firing {
                        since: a.at_unix,
                        quiet_since: None,
                    }
                } else {
                    Phase::Resolved { at: a.at_unix }
                };
                let kind = a.kind.and_then(|k| KINDS.into_iter().find(|x| *x == k));
                let (Some(rule), Some(kind), Some(service), Some(tier), true) =
                    (a.rule, kind, a.service, a.tier, a.firing)
                else {
                    // Resolved, or recorded without its rule: taken when first evaluated.
                    restored.insert(a.id, phase);
                    continue;
                };
                let mut machine = AlertState::new(rules.for_seconds(kind, &rule));
                machine.phase = phase;
                let view = AlertView {
                    id: a.id.clone(),
                    rule,
                    kind,
                    service,
                    tier,
                    severity: tier.severity(),
                    state: machine.clone(),
                    summary: a.summary,
                    details: serde_json::Value::Null,
                };
                if rules.keeps(&a.id, kind, &view.rule) {
                    let seen_at = now;
                    entries.insert(
                        a.id,
                        Entry {
                            seen_at,
                            view,
                            machine,
                        },
                    );
                } else {
                    gone.push((a.id, view, machine));
                }
            }
        }
        self.resolve_retired(gone, now, GONE_AT_RESTART)
    }

    /// Reads OTLP metric rules from `store`.
    pub fn with_metrics(mut self, store: Arc<slogate_metrics::MetricStore>) -> Alerts {
        self.metrics = Some(store);
        self
    }

    fn query(&self, sel: &Selector, window: u64) -> CohortData {
        let w = self.registry.query(sel, window);
        CohortData {
            requests: w.requests,
            errors: w.errors,
            sketch: w.sketch,
            observed_seconds: Some(w.observed_seconds),
            ..Default::default()
        }
    }

    /// What the alerts watch now.
    pub fn rules(&self) -> Arc<AlertRules> {
        self.rules.read().clone()
    }

    /// Puts `cfg`'s SLOs, burn tiers, threshold rules and gate-failure alerting in force (a
    /// configuration reload). Alerts whose rule stays keep their state (a threshold rule's new
    /// `for` applies to its next activation); alerts whose rule is gone are forgotten, and
    /// those firing resolve once first, through the notifier, with [`REMOVED_BY_RELOAD`].
    /// Returns the ids of the alerts resolved.
    pub fn replace(&self, cfg: &Config) -> Vec<String> {
        let new = Arc::new(AlertRules::after(&self.rules(), cfg));
        let now = self.registry.now_unix();
        let mut retired = Vec::new();
        {
            // Swapped under the entries' lock: an evaluation that started with the old rules
            // either tracked its alert before (and it is retired here) or sees the new rules
            // when it would start tracking one (see `observe`).
            let mut entries = self.entries.lock();
            *self.rules.write() = new.clone();
            entries.retain(|id, e| {
                if new.keeps(id, e.view.kind, &e.view.rule) {
                    e.machine.for_seconds = new.for_seconds(e.view.kind, &e.view.rule);
                    return true;
                }
                if matches!(e.machine.phase, Phase::Firing { .. }) {
                    retired.push((id.clone(), e.view.clone(), e.machine.clone()));
                }
                false
            });
            self.budget_history
                .lock()
                .retain(|name, _| new.slos.iter().any(|s| &s.spec.name == name));
        }
        self.resolve_retired(retired, now, REMOVED_BY_RELOAD)
    }

    /// Resolves, once each, alerts that were firing and are no longer tracked, with `why`
    /// appended to their summary and in their details (`resolved_because`). Returns their ids.
    fn resolve_retired(
        &self,
        retired: Vec<(String, AlertView, AlertState)>,
        now: u64,
        why: &str,
    ) -> Vec<String> {
        let mut ids = Vec::new();
        for (id, view, machine) in retired {
            let fired_at = match machine.phase {
                Phase::Firing { since, .. } => since,
                _ => now,
            };
            let summary = format!("{}: {why}", view.summary);
            let mut details = view.details.clone();
            match &mut details {
                serde_json::Value::Object(map) => {
                    map.insert("resolved_because".into(), why.into());
                }
                other => *other = serde_json::json!({ "resolved_because": why }),
            }
            let notice = Notice {
                dedup_key: id.clone(),
                resolve: true,
                summary,
                tier: view.tier,
                rule: view.rule.clone(),
                service: view.service.clone(),
                class: view.kind,
                link: String::new(),
                details,
                at_unix: now,
                started_at_unix: fired_at,
            };
            self.transition(&notice);
            ids.push(id);
        }
        ids
    }

    /// Resolves firing gate-failure alerts that no verdict has looked at for
    /// `alerting.gate_failures.resolve_after` (the rollout ended or was aborted), and forgets
    /// every gate-failure alert idle that long, so that alerts keyed by what requests asked
    /// for do not pile up.
    fn expire_gate_alerts(&self, r: &AlertRules, now: u64) -> Vec<String> {
        let after = r.gate_failures_resolve_after;
        let mut stale = Vec::new();
        self.entries.lock().retain(|id, e| {
            if e.view.kind != "gate_failure" || now.saturating_sub(e.seen_at) < after {
                return true;
            }
            if matches!(e.machine.phase, Phase::Firing { .. }) {
                stale.push((id.clone(), e.view.clone(), e.machine.clone()));
            }
            false
        });
        let why = format!(
            "no verdict for {}: the rollout ended or was aborted",
            humanize(after)
        );
        self.resolve_retired(stale, now, &why)
    }

    pub fn slo_names(&self) -> Vec<String> {
        self.rules()
            .slos
            .iter()
            .map(|s| s.spec.name.clone())
            .collect()
    }

    /// SLI, budget and burn rates of one SLO now.
    pub fn slo_status(&self, name: &str) -> Option<SloStatus> {
        let r = self.rules();
        let slo = r.slos.iter().find(|s| s.spec.name == name)?;
        Some(self.status_of(&r, slo))
    }

    fn status_of(&self, r: &AlertRules, slo: &SloConfig) -> SloStatus {
        let sel = selector(
            &slo.service,
            &slo.selector,
            &self.registry.config().extra_dims,
        );
        let retention = self.registry.config().coarse_retention_seconds;
        let measured = slo.spec.period_seconds.min(retention);
        let (good, total) = good_total(slo.spec.kind, &self.query(&sel, measured));
        let b = budget(good, total, slo.spec.objective, slo.spec.period_seconds);
        let burn_rates = r
            .tiers
            .iter()
            .map(|t| {
                let long = good_total(slo.spec.kind, &self.query(&sel, t.long_seconds));
                let short = good_total(slo.spec.kind, &self.query(&sel, t.short_seconds));
                BurnView {
                    tier: t.tier,
                    factor: t.factor,
                    long_window_seconds: t.long_seconds,
                    short_window_seconds: t.short_seconds,
                    check: multiwindow(long, short, t, slo.spec.objective, r.min_requests),
                }
            })
            .collect();
        SloStatus {
            name: slo.spec.name.clone(),
            service: slo.service.clone(),
            selector: sel.to_string(),
            objective: slo.spec.objective,
            kind: slo.spec.kind,
            period_seconds: slo.spec.period_seconds,
            measured_seconds: measured,
            budget_left: b.remaining_seconds.map(|s| {
                if s <= 0.0 {
                    "none".to_string()
                } else {
                    humantime::format_duration(std::time::Duration::from_secs(s as u64)).to_string()
                }
            }),
            budget: b,
            burn_rates,
            budget_history: self
                .budget_history
                .lock()
                .get(&slo.spec.name)
                .map(|h| h.iter().copied().collect())
                .unwrap_or_default(),
        }
    }

    /// Notes an SLO's budget in its history: one point per minute, the minute's latest.
    fn note_budget(&self, name: &str, at_unix: u64, remaining_ratio: Option<f64>) {
        let point = BudgetPoint {
            at_unix,
            remaining_ratio,
        };
        let mut all = self.budget_history.lock();
        let h = all.entry(name.to_string()).or_default();
        let minute = |t: u64| t / BUDGET_POINT_SECONDS;
        match h.back_mut() {
            Some(last) if minute(last.at_unix) == minute(at_unix) => *last = point,
            _ => {
                if h.len() >= BUDGET_POINTS {
                    h.pop_front();
                }
                h.push_back(point);
            }
        }
    }

    /// Evaluates every SLO burn tier and threshold rule once.
    pub fn evaluate(&self) {
        let now = self.registry.now_unix();
        let extra = self.registry.config().extra_dims.clone();
        let r = self.rules();
        for slo in &r.slos {
            let status = self.status_of(&r, slo);
            self.note_budget(&slo.spec.name, now, status.budget.remaining_ratio);
            for (i, burn) in status.burn_rates.iter().enumerate() {
                let id = AlertRules::burn_id(&slo.spec.name, burn.factor, burn.long_window_seconds);
                let summary = format!(
                    "[{}] {} SLO ({:.3}% target) is burning its error budget: {}",
                    burn.tier.label(),
                    slo.spec.name,
                    slo.spec.objective * 100.0,
                    burn.check.reason
                );
                let details = serde_json::json!({
                    "slo": slo.spec.name,
                    "selector": status.selector,
                    "objective": slo.spec.objective,
                    "burn_rate_factor": burn.factor,
                    "long_window_seconds": burn.long_window_seconds,
                    "short_window_seconds": burn.short_window_seconds,
                    "long_burn_rate": burn.check.long_burn_rate,
                    "short_burn_rate": burn.check.short_burn_rate,
                    "long_window_requests": burn.check.long_requests,
                    "budget_remaining_ratio": status.budget.remaining_ratio,
                    "budget_left": status.budget_left,
                    "tier_index": i,
                });
                let link = format!("{}/api/v1/slos/{}", r.link_base, slo.spec.name);
                self.observe(
                    &id,
                    &slo.spec.name,
                    "slo_burn",
                    &slo.service,
                    burn.tier,
                    0,
                    burn.check.active,
                    summary,
                    details,
                    link,
                    now,
                );
            }
        }
        for rule in &r.rules {
            let sel = selector(&rule.service, &rule.selector, &extra);
            let data = self.query(&sel, rule.window_seconds);
            let (summary, details) = match &rule.metric {
                RuleMetric::Span(metric) => {
                    let observed = match metric {
                        Metric::ErrorRate => {
                            (data.requests > 0).then(|| data.errors as f64 / data.requests as f64)
                        }
                        Metric::Latency { quantile } => {
                            data.sketch.quantile(*quantile).map(|ns| ns as f64 / 1e6)
                        }
                        Metric::RequestRate | Metric::Measured => None,
                    };
                    let enough = data.requests >= r.min_requests;
                    let active = enough && observed.is_some_and(|v| v > rule.bound);
                    let shown = observed.map_or("no data".to_string(), |v| match metric {
                        Metric::ErrorRate => format!("{:.2}%", v * 100.0),
                        _ => format!("{v:.1} ms"),
                    });
                    let limit = match metric {
                        Metric::ErrorRate => format!("{:.2}%", rule.bound * 100.0),
                        _ => format!("{:.1} ms", rule.bound),
                    };
                    let summary = format!(
                        "[{}] {}: {} {} is {shown} over {}s, above {limit}{}",
                        rule.tier.label(),
                        rule.name,
                        sel,
                        metric.name(),
                        rule.window_seconds,
                        if enough {
                            String::new()
                        } else {
                            format!(
                                " ({} requests, fewer than {} needed to alert)",
                                data.requests, r.min_requests
                            )
                        }
                    );
                    let details = serde_json::json!({
                        "rule": rule.name, "selector": sel.to_string(), "metric": metric.name(),
                        "observed": observed, "threshold": rule.bound, "window_seconds": rule.window_seconds,
                        "for_seconds": rule.for_seconds, "requests": data.requests,
                    });
                    ((active, summary), details)
                }
                RuleMetric::Otlp(q) => {
                    let m = super::measure::measure(
                        self.metrics.as_deref(),
                        &sel,
                        q,
                        rule.window_seconds,
                        &data,
                    );
                    // No data never fires and never keeps an alert firing: a metric that
                    // stopped reporting resolves nothing by itself either, it just cannot page.
                    let active = m.value.is_some_and(|v| {
                        if rule.below {
                            v < rule.bound
                        } else {
                            v > rule.bound
                        }
                    });
                    let unit = if m.unit.is_empty() {
                        String::new()
                    } else {
                        format!(" {}", m.unit)
                    };
                    let shown = match (m.value, &m.gap) {
                        (Some(v), _) => format!("{}{unit}", super::measure::format_number(v)),
                        (None, Some(gap)) => format!("no data ({gap})"),
                        (None, None) => "no data".into(),
                    };
                    let summary = format!(
                        "[{}] {}: {} {} is {shown} over {}s, {} {}{unit}",
                        rule.tier.label(),
                        rule.name,
                        sel,
                        m.label,
                        rule.window_seconds,
                        if rule.below { "below" } else { "above" },
                        super::measure::format_number(rule.bound),
                    );
                    let details = serde_json::json!({
                        "rule": rule.name, "selector": sel.to_string(), "metric": m.label,
                        "observed": m.value, "threshold": rule.bound,
                        "direction": if rule.below { "below" } else { "above" },
                        "window_seconds": rule.window_seconds, "for_seconds": rule.for_seconds,
                        "points": m.points, "series": m.series, "unit": m.unit, "gap": m.gap,
                    });
                    ((active, summary), details)
                }
            };
            let (active, summary) = summary;
            let id = dedup_key(&["threshold", &rule.name]);
            let link = format!(
                "{}/api/v1/sli?{}&window={}s",
                r.link_base,
                sel.to_string().replace(',', "&"),
                rule.window_seconds
            );
            self.observe(
                &id,
                &rule.name,
                "threshold",
                &rule.service,
                rule.tier,
                rule.for_seconds,
                active,
                summary,
                details,
                link,
                now,
            );
        }
        self.expire_gate_alerts(&r, now);
    }

    /// A verdict of a gate on `service`: `fail` raises (or keeps) the gate's alert, anything
    /// else resolves it.
    pub fn on_verdict(&self, service: &str, doc: &VerdictDoc) {
        let r = self.rules();
        let Some(tier) = r.gate_failures else {
            return;
        };
        let id = dedup_key(&[
            "gate",
            &doc.gate,
            &doc.phase,
            &doc.canary.selector,
            &doc.baseline.selector,
        ]);
        let failed = doc.verdict == Verdict::Fail;
        let summary = if failed {
            format!(
                "[{}] gate {} failed in phase {} for {}: {}",
                tier.label(),
                doc.gate,
                doc.phase,
                doc.canary.selector,
                doc.reasons.join("; ")
            )
        } else {
            format!(
                "gate {} is {} in phase {} for {}",
                doc.gate,
                crate::engine::gates::verdict_label(doc.verdict),
                doc.phase,
                doc.canary.selector
            )
        };
        let details = serde_json::json!({
            "gate": doc.gate, "phase": doc.phase, "verdict": doc.verdict, "decision": doc.decision,
            "canary": doc.canary, "baseline": doc.baseline, "reasons": doc.reasons, "evaluated_at": doc.evaluated_at,
        });
        let link = format!("{}/api/v1/verdicts?gate={}", r.link_base, doc.gate);
        self.observe(
            &id,
            &doc.gate,
            "gate_failure",
            service,
            tier,
            0,
            failed,
            summary,
            details,
            link,
            self.registry.now_unix(),
        );
    }

    /// A gate's verdict changed (the change the verdict log line reports): tells the notifier
    /// once. `previous` is the last verdict of the same gate and phase, if any.
    pub fn on_verdict_change(
        &self,
        service: &str,
        previous: Option<&VerdictDoc>,
        doc: &VerdictDoc,
    ) {
        let Some(notifier) = &self.notifier else {
            return;
        };
        // The gate's last verdict may be another rollout's (two cohorts polled in turn): what
        // this rollout was last told is remembered per cohort, so alternating polls of two
        // rollouts send nothing while neither changes.
        let to = verdict_state(doc);
        let key = format!(
            "{}/{}/{}/{}",
            doc.gate, doc.phase, doc.canary.selector, doc.baseline.selector
        );
        let from = {
            let mut seen = self.notified_verdicts.lock();
            let from = seen.get(&key).cloned().or_else(|| {
                previous
                    .filter(|p| {
                        p.canary.selector == doc.canary.selector
                            && p.baseline.selector == doc.baseline.selector
                    })
                    .map(verdict_state)
            });
            if from.as_ref() == Some(&to) {
                return;
            }
            if seen.len() >= VERDICTS_REMEMBERED && !seen.contains_key(&key) {
                seen.pop_first();
            }
            seen.insert(key, to.clone());
            from
        };
        let figures = |c: &crate::engine::gates::CohortSummary| slogate_alert::CohortFigures {
            selector: c.selector.clone(),
            requests: c.requests,
            error_rate: c.error_rate,
            p99_ms: c.latency_ms.p99,
        };
        let note = VerdictNote {
            gate: doc.gate.clone(),
            phase: doc.phase.clone(),
            service: service.to_string(),
            canary: figures(&doc.canary),
            baseline: figures(&doc.baseline),
            from,
            to,
            reasons: doc.reasons.clone(),
            evaluated_at: doc.evaluated_at.clone(),
            at: self.registry.now_unix(),
            link: format!(
                "{}/api/v1/verdicts?gate={}",
                self.rules().link_base,
                doc.gate
            ),
        };
        if let Err(e) = notifier.verdict_changed(&note) {
            tracing::error!(gate = %doc.gate, phase = %doc.phase, error = %e, "could not queue the verdict-change notification");
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn observe(
        &self,
        id: &str,
        rule: &str,
        kind: &'static str,
        service: &str,
        tier: Tier,
        for_seconds: u64,
        active: bool,
        summary: String,
        details: serde_json::Value,
        link: String,
        now: u64,
    ) {
        let mut entries = self.entries.lock();
        // An evaluation that began before a reload must not bring back an alert whose rule
        // the reload removed.
        if !entries.contains_key(id) && !self.rules().keeps(id, kind, rule) {
            return;
        }
        if entries.len() >= MAX_TRACKED_ALERTS && !entries.contains_key(id) {
            let idle = entries
                .iter()
                .find(|(_, e)| matches!(e.machine.phase, Phase::Inactive | Phase::Resolved { .. }))
                .map(|(k, _)| k.clone());
            match idle {
                Some(k) => {
                    entries.remove(&k);
                }
                None if !active => return,
                None => {
                    tracing::error!(alert = %id, tracked = entries.len(), "cannot track another alert: {MAX_TRACKED_ALERTS} are pending or firing");
                    return;
                }
            }
        }
        let entry = entries.entry(id.to_string()).or_insert_with(|| {
            let mut machine = AlertState::new(for_seconds);
            if let Some(phase) = self.restored.lock().remove(id) {
                machine.phase = phase;
            }
            Entry {
                seen_at: now,
                view: AlertView {
                    id: id.to_string(),
                    rule: rule.to_string(),
                    kind,
                    service: service.to_string(),
                    tier,
                    severity: tier.severity(),
                    state: machine.clone(),
                    summary: String::new(),
                    details: serde_json::Value::Null,
                },
                machine,
            }
        });
        entry.seen_at = now;
        let fired_at = match entry.machine.phase {
            Phase::Firing { since, .. } => since,
            _ => now,
        };
        let transition = entry.machine.observe(active, now);
        entry.view.state = entry.machine.clone();
        // Keep the summary of the firing condition while it fires; refresh it otherwise.
        if active || transition.is_some() || entry.view.summary.is_empty() {
            entry.view.summary = summary.clone();
            entry.view.details = details.clone();
        }
        drop(entries);
        let Some(t) = transition else { return };
        let resolve = matches!(t, Transition::Resolved);
        self.transition(&Notice {
            dedup_key: id.to_string(),
            resolve,
            summary,
            tier,
            rule: rule.to_string(),
            service: service.to_string(),
            class: kind,
            link,
            details,
            at_unix: now,
            started_at_unix: if resolve { fired_at } else { now },
        });
    }

    /// Hands a transition to the notifier, logs it, and records it (the transition log and
    /// the history's sink).
    fn transition(&self, notice: &Notice) {
        let (id, rule, service, tier) = (
            &notice.dedup_key,
            &notice.rule,
            &notice.service,
            notice.tier,
        );
        let resolve = notice.resolve;
        let shown = if resolve {
            format!("resolved: {}", notice.summary)
        } else {
            notice.summary.clone()
        };
        let notified = match &self.notifier {
            Some(n) => n.notify(notice),
            None => Ok(()),
        };
        if let Err(e) = &notified {
            tracing::error!(alert = %id, error = %e, "could not queue the notification");
        }
        // One line per transition: a page going out is a warning, its resolution is news.
        if resolve {
            tracing::info!(alert = %id, rule, service, tier = tier.label(), transition = "resolved", reason = %notice.summary, "alert transition");
        } else {
            tracing::warn!(alert = %id, rule, service, tier = tier.label(), transition = "fired", reason = %notice.summary, "alert transition");
        }
        let mut log = self.log.lock();
        if log.len() >= TRANSITION_LOG {
            log.pop_back();
        }
        let record = TransitionRecord {
            id: id.to_string(),
            transition: if resolve { "resolved" } else { "fired" },
            at_unix: notice.at_unix,
            summary: shown,
            notified,
            rule: rule.to_string(),
            service: service.to_string(),
            kind: notice.class,
            tier,
        };
        if let Some(sink) = &self.sink {
            sink(&record);
        }
        log.push_front(record);
    }

    pub fn views(&self) -> Vec<AlertView> {
        self.entries
            .lock()
            .values()
            .map(|e| e.view.clone())
            .collect()
    }

    pub fn transitions(&self, limit: usize) -> Vec<TransitionRecord> {
        self.log.lock().iter().take(limit).cloned().collect()
    }

    /// Appends alert gauges to `/metrics`.
    pub fn render_metrics(&self, out: &mut String) {
        use slogate_core::prom::{Kind, family};
        let mut f = family(
            out,
            "slogate_alert_state",
            Kind::Gauge,
            "Alert state per rule and series (1 for the current state).",
        );
        for e in self.entries.lock().values() {
            for s in ["inactive", "pending", "firing", "resolved"] {
                f.sample(
                    &[
                        ("alert", &e.view.id),
                        ("rule", &e.view.rule),
                        ("tier", &e.view.tier.label()),
                        ("state", &s),
                    ],
                    e.machine.name() == s,
                );
            }
        }
        let r = self.rules();
        let statuses: Vec<(&str, SloStatus)> = r
            .slos
            .iter()
            .map(|slo| (slo.spec.name.as_str(), self.status_of(&r, slo)))
            .collect();
        let mut f = family(
            out,
            "slogate_slo_burn_rate",
            Kind::Gauge,
            "Burn rate of each SLO over each alert window.",
        );
        for (name, st) in &statuses {
            // Tiers share windows (6h is one tier's long and another's short): one line each.
            let mut by_window = BTreeMap::new();
            for b in &st.burn_rates {
                for (w, rate) in [
                    (b.long_window_seconds, b.check.long_burn_rate),
                    (b.short_window_seconds, b.check.short_burn_rate),
                ] {
                    if let Some(rate) = rate {
                        by_window.insert(w, rate);
                    }
                }
            }
            for (w, rate) in by_window {
                f.sample(&[("slo", name), ("window", &humanize(w))], rate);
            }
        }
        let mut f = family(
            out,
            "slogate_slo_budget_remaining_ratio",
            Kind::Gauge,
            "Error budget left over the measured period (1 untouched, 0 spent).",
        );
        for (name, st) in &statuses {
            if let Some(r) = st.budget.remaining_ratio {
                f.sample(&[("slo", name)], r);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "
gates:
  - {name: checkout, service: checkout, criteria: [{name: e, metric: error_rate, pass: 0.01, fail: 0.02}]}
slos:
  - {name: checkout-availability, service: checkout, objective: 0.99, period: 1h}
alerting:
  burn_rates:
    - {tier: P1, factor: 10, long: 30s, short: 4s}
  rules:
    - {name: checkout-errors, service: checkout, metric: error_rate, above: 0.01, window: 1m, for: 2m, tier: P1}
";

    /// Every notice, as `trigger|resolve dedup_key summary`.
    #[derive(Default)]
    struct Recorded(Mutex<Vec<String>>);

    impl Notifier for Recorded {
        fn notify(&self, n: &Notice) -> Result<(), String> {
            let action = if n.resolve { "resolve" } else { "trigger" };
            self.0
                .lock()
                .push(format!("{action} {} {}", n.dedup_key, n.summary));
            Ok(())
        }
    }

    /// A failing verdict of the `checkout` gate's canary phase (a slow canary).
    fn failing_verdict() -> Arc<VerdictDoc> {
        let gates =
            crate::engine::gates::tests::setup(&[("v1", 2000, 1.0, 200), ("slow", 500, 1.4, 200)]);
        let doc = gates
            .evaluate(
                "checkout",
                Some("canary"),
                &crate::engine::gates::tests::canary("slow"),
                &[],
                None,
            )
            .unwrap();
        assert_eq!(doc.verdict, Verdict::Fail);
        doc
    }

    /// Alerts configured by `text`, recording their notices, on a manual clock.
    fn recorded_alerts(text: &str) -> (Alerts, Arc<Recorded>, Arc<slogate_window::ManualClock>) {
        let cfg = Config::parse(text, "t.yaml").unwrap();
        let clock = slogate_window::ManualClock::new(1_800_000_000);
        let registry = Registry::new(cfg.window.clone(), clock.clone());
        let notes = Arc::new(Recorded::default());
        let alerts = Alerts::new(&cfg, registry, Some(notes.clone()), None);
        (alerts, notes, clock)
    }

    #[test]
    fn a_removed_gate_resolves_its_firing_alert_once() {
        let doc = failing_verdict();
        let (alerts, notes, _) = recorded_alerts(CONFIG);
        alerts.on_verdict("checkout", &doc);
        // The same file without its gate.
        let text: Vec<&str> = CONFIG
            .lines()
            .filter(|l| !l.starts_with("gates:") && !l.contains("{name: checkout, service"))
            .collect();
        let without = Config::parse(&text.join("\n"), "t.yaml").unwrap();
        assert!(without.gates.is_empty() && without.slos.len() == 1);
        let resolved = alerts.replace(&without);
        // A verdict computed before the reload arrives late: it raises nothing.
        alerts.on_verdict("checkout", &doc);
        let notes = notes.0.lock().clone();
        assert_eq!(notes.len(), 2, "{notes:#?}");
        let id = "slogate/gate/checkout/canary/service=checkout,version=slow/service=checkout,version=v1";
        assert!(
            notes[0].starts_with(&format!("trigger {id} ")),
            "{notes:#?}"
        );
        assert!(
            notes[1].starts_with(&format!("resolve {id} "))
                && notes[1].ends_with(": rule removed by configuration reload"),
            "{notes:#?}"
        );
        assert_eq!(resolved, [id]);
        assert!(alerts.views().is_empty());
    }

    #[test]
    fn a_gate_failure_alert_nobody_looks_at_resolves_and_is_forgotten() {
        let doc = failing_verdict();
        let text = format!("{CONFIG}  gate_failures: {{tier: P1, resolve_after: 10m}}\n");
        let (alerts, notes, clock) = recorded_alerts(&text);
        alerts.on_verdict("checkout", &doc);
        // Looked at again within the 10 minutes: it stays.
        for _ in 0..3 {
            clock.advance(300);
            alerts.on_verdict("checkout", &doc);
            alerts.evaluate();
        }
        assert_eq!(notes.0.lock().len(), 1, "{:#?}", notes.0.lock());
        // Then nobody asks (the rollout was aborted).
        clock.advance(599);
        alerts.evaluate();
        assert_eq!(notes.0.lock().len(), 1);
        clock.advance(1);
        alerts.evaluate();
        let notes = notes.0.lock().clone();
        assert_eq!(notes.len(), 2, "{notes:#?}");
        assert!(
            notes[1].starts_with("resolve slogate/gate/checkout/")
                && notes[1].ends_with(": no verdict for 10m: the rollout ended or was aborted"),
            "{notes:#?}"
        );
        assert!(
            alerts.views().iter().all(|v| v.kind != "gate_failure"),
            "forgotten once resolved"
        );
        alerts.evaluate();
        assert_eq!(alerts.transitions(10).len(), 2, "resolved once");
    }

    #[test]
    fn restored_firing_alerts_of_rules_gone_resolve_once_and_the_others_continue() {
        let (alerts, notes, _) = recorded_alerts(CONFIG);
        let firing = |id: &str, rule: &str, kind: &str| RestoredAlert {
            id: id.into(),
            firing: true,
            at_unix: 1_799_999_000,
            summary: format!("{rule} was firing"),
            rule: Some(rule.into()),
            kind: Some(kind.into()),
            service: Some("checkout".into()),
            tier: Some(Tier::P1),
        };
        let resolved = alerts.restore([
            // Still configured: continues, nothing sent.
            firing(
                "slogate/rule/checkout-errors",
                "checkout-errors",
                "threshold",
            ),
            // Removed while stopped: resolves now.
            firing("slogate/rule/old-rule", "old-rule", "threshold"),
            firing("slogate/slo-burn/old-slo/10x-30s", "old-slo", "slo_burn"),
            // Recorded before rules were: left to its first evaluation, as before.
            RestoredAlert {
                rule: None,
                kind: None,
                service: None,
                tier: None,
                ..firing("slogate/rule/older", "older", "threshold")
            },
        ]);
        assert_eq!(
            resolved,
            ["slogate/rule/old-rule", "slogate/slo-burn/old-slo/10x-30s"]
        );
        let notes = notes.0.lock().clone();
        assert_eq!(notes.len(), 2, "{notes:#?}");
        assert!(
            notes.iter().all(|n| n.starts_with("resolve ")
                && n.ends_with(": rule no longer configured (removed while slogate was stopped)")),
            "{notes:#?}"
        );
        let views = alerts.views();
        assert_eq!(views.len(), 1, "{views:#?}");
        assert_eq!(views[0].rule, "checkout-errors");
        assert!(matches!(
            views[0].state.phase,
            Phase::Firing {
                since: 1_799_999_000,
                ..
            }
        ));
        // The record carries what a later restart needs.
        let t = &alerts.transitions(10)[0];
        assert_eq!(
            (t.rule.as_str(), t.kind, t.tier),
            ("old-slo", "slo_burn", Tier::P1)
        );
    }

    #[test]
    fn which_alerts_a_reload_keeps() {
        // Before the reload, `search` was a configured gate too.
        let with_search = CONFIG.replace(
            "gates:\n",
            "gates:\n  - {name: search, service: search, criteria: [{name: e, metric: error_rate, pass: 0.01, fail: 0.02}]}\n",
        );
        let before = AlertRules::new(&Config::parse(&with_search, "t.yaml").unwrap());
        let on = AlertRules::after(&before, &Config::parse(CONFIG, "t.yaml").unwrap());
        let off_text = format!("{CONFIG}  gate_failures: {{enabled: false}}\n");
        let off = AlertRules::after(&before, &Config::parse(&off_text, "t.yaml").unwrap());
        let burn = |slo: &str, factor: f64, long: u64| AlertRules::burn_id(slo, factor, long);
        // (alert id, kind, rule, kept with gate-failure alerts on, kept with them off)
        let cases = [
            (
                "slogate/threshold/checkout-errors".to_string(),
                "threshold",
                "checkout-errors",
                true,
                true,
            ),
            (
                "slogate/threshold/gone".into(),
                "threshold",
                "gone",
                false,
                false,
            ),
            (
                burn("checkout-availability", 10.0, 30),
                "slo_burn",
                "checkout-availability",
                true,
                true,
            ),
            // The SLO stays but this tier is gone.
            (
                burn("checkout-availability", 14.4, 3600),
                "slo_burn",
                "checkout-availability",
                false,
                false,
            ),
            (
                burn("search-latency", 10.0, 30),
                "slo_burn",
                "search-latency",
                false,
                false,
            ),
            (
                "slogate/gate/checkout/default/a/b".into(),
                "gate_failure",
                "checkout",
                true,
                false,
            ),
            // A removed gate's alert goes; a gate carried in verdict requests keeps its own.
            (
                "slogate/gate/search/default/a/b".into(),
                "gate_failure",
                "search",
                false,
                false,
            ),
            (
                "slogate/gate/inline/default/a/b".into(),
                "gate_failure",
                "inline",
                true,
                false,
            ),
        ];
        for (id, kind, rule, with_on, with_off) in cases {
            assert_eq!(on.keeps(&id, kind, rule), with_on, "{id}");
            assert_eq!(
                off.keeps(&id, kind, rule),
                with_off,
                "{id} (gate failures off)"
            );
        }
        assert_eq!(on.for_seconds("threshold", "checkout-errors"), 120);
    }
}
