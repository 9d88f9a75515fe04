//! Window queries over the metric store: selections, aggregates, how streams combine, and the
//! [`Measure`] that says what was found and, when nothing usable was, why.

use crate::restored::{Restored, RestoredSlot, RestoredStream};
use crate::store::{MetricStore, NS};
use crate::stream::{Data, FIRST, HAS_INC, Shape, Stream, StreamKey, exp_base};
use serde::Serialize;
use slogate_core::{MetricSlotRecord, Selector};
use slogate_sketch::{RELATIVE_ERROR, Sketch, nearest_rank};
use std::fmt;
use std::sync::Arc;

/// Which metric and which of its streams, by point attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Selection {
    pub metric: String,
    /// `(attribute, value)`: equality; the value `*` means "present", `!v` "absent or not v".
    pub matchers: Vec<(String, String)>,
}

impl Selection {
    pub fn new(metric: impl Into<String>) -> Selection {
        Selection {
            metric: metric.into(),
            matchers: Vec::new(),
        }
    }

    pub fn with(mut self, attribute: impl Into<String>, value: impl Into<String>) -> Selection {
        self.matchers.push((attribute.into(), value.into()));
        self
    }

    fn matches(&self, key: &StreamKey) -> bool {
        self.matches_with(|k| key.attribute(k))
    }

    fn matches_with<'a>(&self, attribute: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.matchers.iter().all(|(k, want)| {
            let have = attribute(k);
            if want == "*" {
                have.is_some()
            } else if let Some(not) = want.strip_prefix('!') {
                have != Some(not)
            } else {
                have == Some(want.as_str())
            }
        })
    }
}

impl fmt::Display for Selection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`", self.metric)?;
        if !self.matchers.is_empty() {
            f.write_str("{")?;
            for (i, (k, v)) in self.matchers.iter().enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                write!(f, "{k}={v}")?;
            }
            f.write_str("}")?;
        }
        Ok(())
    }
}

/// What one stream contributes; see the crate notes for each aggregate's meaning per kind.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Aggregate {
    Last,
    Min,
    Max,
    Avg,
    Sum,
    Count,
    Increase,
    Rate,
    Quantile(f64),
    TimeInState { state: Option<f64> },
    Transitions { into: Option<f64> },
}

impl fmt::Display for Aggregate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Aggregate::Last => f.write_str("last"),
            Aggregate::Min => f.write_str("min"),
            Aggregate::Max => f.write_str("max"),
            Aggregate::Avg => f.write_str("avg"),
            Aggregate::Sum => f.write_str("sum"),
            Aggregate::Count => f.write_str("count"),
            Aggregate::Increase => f.write_str("increase"),
            Aggregate::Rate => f.write_str("rate"),
            Aggregate::Quantile(q) => write!(f, "quantile({q})"),
            Aggregate::TimeInState { state: Some(s) } => write!(f, "time_in_state({s})"),
            Aggregate::TimeInState { state: None } => f.write_str("time_in_state(non-zero)"),
            Aggregate::Transitions { into: Some(s) } => write!(f, "transitions(into {s})"),
            Aggregate::Transitions { into: None } => f.write_str("transitions"),
        }
    }
}

/// How the values of several matched streams become one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Combine {
    Sum,
    Avg,
    Max,
    Min,
}

/// The answer to a query. `value` is `None` exactly when `gap` says why: no data is never a
/// pass.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Measure {
    pub value: Option<f64>,
    /// Points in the window, over the streams that matched.
    pub points: u64,
    /// Streams that contributed data.
    pub series: u64,
    /// The time the data spans within the window.
    pub seconds: f64,
    pub unit: String,
    /// The metric kind (`gauge`, `sum`, ...), when streams matched.
    pub kind: Option<&'static str>,
    /// Relative error of a quantile: the true value lies within `value × (1 ± error_bound)`.
    /// `None` for other aggregates, and for a quantile whose bucket has no finite bound.
    pub error_bound: Option<f64>,
    /// One human sentence saying why `value` is `None`.
    pub gap: Option<String>,
}

impl Measure {
    fn gap(kind: Option<&'static str>, unit: String, sentence: String) -> Measure {
        Measure {
            value: None,
            points: 0,
            series: 0,
            seconds: 0.0,
            unit,
            kind,
            error_bound: None,
            gap: Some(sentence),
        }
    }

    /// `num / den`, e.g. errors over requests: `None` when either is, or when `den` is zero.
    pub fn ratio(num: &Measure, den: &Measure) -> Measure {
        let unit = if num.unit == den.unit {
            "1".to_string()
        } else {
            format!("{}/{}", num.unit, den.unit)
        };
        let error_bound = match (num.error_bound, den.error_bound) {
            (None, None) => None,
            (a, b) => {
                let (a, b) = (a.unwrap_or(0.0), b.unwrap_or(0.0));
                // (1 + a) / (1 - b) - 1 bounds the ratio's relative error from above.
                (b < 1.0).then(|| (1.0 + a) / (1.0 - b) - 1.0)
            }
        };
        let mut m = Measure {
            value: None,
            points: num.points + den.points,
            series: num.series + den.series,
            seconds: num.seconds.max(den.seconds),
            unit,
            kind: None,
            error_bound,
            gap: None,
        };
        match (num.value, den.value) {
            (Some(_), Some(0.0)) => {
                m.gap = Some("denominator is zero over the window".to_string());
                m.error_bound = None;
            }
            (Some(n), Some(d)) => m.value = Some(n / d),
            _ => {
                m.gap = num
                    .gap
                    .clone()
                    .or_else(|| den.gap.clone())
                    .or_else(|| Some("numerator or denominator has no value".to_string()));
                m.error_bound = None;
            }
        }
        m
    }
}

/// Why a stream with points in the window gave no value.
#[derive(Debug, Clone, PartialEq)]
enum Thin {
    /// Increase or rate of a cumulative stream with fewer than two points.
    FewPoints,
    /// A rate over a zero-length span.
    NoSpan,
    /// An average of histogram values with no observation.
    NoObservations,
    /// A summary without the asked quantile; the ones it has.
    NoQuantile(Vec<f64>),
    /// Time in a state or transitions over a window that reaches back before the store
    /// started, whose slots are restored as totals: seconds until the window has passed it.
    BeforeRestart(u64),
}

fn applies(agg: Aggregate, shape: Shape) -> bool {
    use Aggregate as A;
    match shape {
        Shape::Gauge => !matches!(agg, A::Increase | A::Rate | A::Quantile(_)),
        Shape::Sum { .. } => !matches!(agg, A::Quantile(_)),
        Shape::Histogram { .. } | Shape::Exponential { .. } | Shape::Summary => matches!(
            agg,
            A::Avg | A::Sum | A::Count | A::Increase | A::Rate | A::Quantile(_)
        ),
    }
}

fn cohort_matches(cohort: &Selector, key: &StreamKey, extra_names: &[String]) -> bool {
    cohort
        .matchers
        .iter()
        .all(|(dim, want)| match dim.as_str() {
            "service" => key.service == *want,
            "env" => key.env == *want,
            "version" => key.version == *want,
            // Metrics have no operation: a cohort's operation does not narrow them.
            "operation" => true,
            other => extra_names
                .iter()
                .position(|n| n == other)
                .and_then(|i| key.extras.get(i))
                .is_some_and(|v| v == want),
        })
}

fn same(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9
}

fn combine(values: &[f64], how: Combine) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    Some(match how {
        Combine::Sum => values.iter().sum(),
        Combine::Avg => values.iter().sum::<f64>() / values.len() as f64,
        Combine::Max => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        Combine::Min => values.iter().copied().fold(f64::INFINITY, f64::min),
    })
}

impl MetricStore {
    /// Streams of `sel.metric` in the cohort whose attributes match.
    fn matching(&self, cohort: &Selector, sel: &Selection) -> Vec<Arc<Stream>> {
        let cat = self.catalog.lock();
        let mut out = Vec::new();
        let mut take = |metrics: &std::collections::HashMap<String, crate::store::MetricEntry>| {
            if let Some(e) = metrics.get(&sel.metric) {
                out.extend(
                    e.streams
                        .iter()
                        .filter(|s| {
                            cohort_matches(cohort, &s.key, &self.cfg.extra_dims)
                                && sel.matches(&s.key)
                        })
                        .cloned(),
                );
            }
        };
        match cohort.service() {
            Some(svc) => {
                if let Some(m) = cat.services.get(svc) {
                    take(m);
                }
            }
            None => cat.services.values().for_each(&mut take),
        }
        out
    }

    /// Aggregates `sel` over the streams of `cohort` in the last `window_seconds`; see the crate
    /// notes. Never fails: a missing value comes with the sentence saying why.
    pub fn query(
        &self,
        cohort: &Selector,
        sel: &Selection,
        agg: Aggregate,
        how: Combine,
        window_seconds: u64,
    ) -> Measure {
        let now = self.now();
        let lim = self.limits(now);
        let ws = now.saturating_sub(window_seconds.saturating_mul(NS));
        let what = format!("{sel} for {cohort}");
        let over = format!("in the last {window_seconds} s");
        let streams = self.matching(cohort, sel);
        let Some(first) = streams.first() else {
            return Measure::gap(
                None,
                String::new(),
                format!("no stream of metric {what} exists"),
            );
        };
        let shape = first.shape;
        let kind = Some(shape.kind());
        if let Some(gap) = mixed(
            &what,
            kind,
            streams.iter().map(|s| (s.shape.kind(), s.unit.as_str())),
        ) {
            return gap;
        }
        let scale = first.scale;
        let unit = answer_unit(agg, shape, &first.unit, scale);
        if let Some(gap) = not_applicable(agg, shape, &what) {
            return Measure::gap(kind, unit, gap);
        }
        // Lock each stream once: prune, then read.
        let mut guards: Vec<_> = streams.iter().map(|s| s.state.lock()).collect();
        for g in &mut guards {
            g.data.prune(now, &lim);
        }
        let newest = guards.iter().map(|g| g.data.last_t).max().unwrap_or(0);
        let stale_ns = self.cfg.stale_after_seconds.saturating_mul(NS);
        if newest.saturating_add(stale_ns) < now {
            return Measure::gap(
                kind,
                unit,
                format!(
                    "metric {what} stopped reporting {} s ago",
                    (now - newest) / NS
                ),
            );
        }
        let mut m = Measure {
            value: None,
            points: 0,
            series: 0,
            seconds: 0.0,
            unit,
            kind,
            error_bound: None,
            gap: None,
        };
        let (mut from, mut to) = (u64::MAX, 0u64);
        let restored = self.restored.read();
        if let Some(wait) = restored.short(ws)
            && restored.by_metric.keys().any(|(_, m)| *m == sel.metric)
        {
            m.gap = Some(format!(
                "metric {what} {over} reaches back to slots the restart did not reload (the history held more than it reloads); known again in {wait} s"
            ));
            return m;
        }
        let only = restored_only(&restored, cohort, sel, &self.cfg.extra_dims, &streams);
        if let (Aggregate::Quantile(q), false) = (agg, shape == Shape::Summary) {
            let matched = streams
                .iter()
                .filter_map(|s| restored.streams.get(s.key.packed()))
                .map(|r| (r, false))
                .chain(only.iter().map(|r| (*r, true)))
                .filter(|(r, _)| r.kind == shape.kind() && r.unit == first.unit);
            let mut before: Vec<(&RestoredSlot, bool)> = Vec::new();
            for (r, alone) in matched {
                before.extend(r.in_window(ws).iter().map(|x| (x, alone)));
            }
            let alone = only
                .iter()
                .filter(|r| r.kind == shape.kind() && !r.in_window(ws).is_empty())
                .count() as u64;
            return self
                .histogram_quantile(&streams, &guards, &before, alone, q, ws, m, &what, &over);
        }
        let mut values = Vec::new();
        let mut thin: Option<Thin> = None;
        let mut add = |value: Result<f64, Thin>, points: u64, (f, t): (u64, u64)| {
            m.points += points;
            m.series += 1;
            from = from.min(f);
            to = to.max(t);
            match value {
                Ok(v) => values.push(v),
                Err(t) => {
                    thin.get_or_insert(t);
                }
            }
        };
        let state = matches!(
            agg,
            Aggregate::TimeInState { .. } | Aggregate::Transitions { .. }
        );
        for (s, g) in streams.iter().zip(&guards) {
            let known = restored
                .streams
                .get(s.key.packed())
                .filter(|r| r.kind == shape.kind());
            let before = known.filter(|r| !r.in_window(ws).is_empty());
            if state {
                let Some((v, n, f, t)) = state_value(&g.data, agg, ws, now, stale_ns) else {
                    continue;
                };
                // The state between the window's start and the first point since the restart
                // is not in the history.
                let value = match known {
                    Some(_) if ws < restored.until_ns => {
                        Err(Thin::BeforeRestart((restored.until_ns - ws).div_ceil(NS)))
                    }
                    _ => Ok(v),
                };
                add(value, n, (f, t));
                continue;
            }
            let live = if shape.has_samples() {
                sample_totals(&g.data, s.shape, ws)
            } else {
                cell_totals(&g.data, agg, s.scale, ws, lim.slot_ns)
            };
            let mut t = match (live, before) {
                (Some(t), _) => t,
                (None, Some(_)) => Totals::empty(),
                (None, None) => continue,
            };
            if let Some(r) = before {
                for slot in r.in_window(ws) {
                    t.add_slot(&slot.totals, ws);
                }
                bridge_restart(&mut t, &g.data, s.shape, r, ws, restored.until_ns);
            }
            add(t.value(shape, agg, s.scale), t.points, t.span(shape, agg));
        }
        // Streams that reported before the restart only.
        for r in only {
            if r.kind != shape.kind() || r.unit != first.unit || r.in_window(ws).is_empty() {
                continue;
            }
            if state {
                // A restored slot starts inside the window, so the window reaches before the
                // restart.
                add(
                    Err(Thin::BeforeRestart(
                        (restored.until_ns.saturating_sub(ws)).div_ceil(NS),
                    )),
                    r.in_window(ws).iter().map(|x| x.totals.points).sum(),
                    (ws, restored.until_ns),
                );
                continue;
            }
            let mut t = Totals::empty();
            for slot in r.in_window(ws) {
                t.add_slot(&slot.totals, ws);
            }
            add(t.value(shape, agg, scale), t.points, t.span(shape, agg));
        }
        if to > from {
            m.seconds = (to - from) as f64 / 1e9;
        }
        m.value = combine(&values, how);
        if m.value.is_none() {
            m.gap = Some(thin_gap(thin, agg, &what, &over));
        }
        m
    }

    /// A histogram quantile over the live cells and `before`, the restored slots in the
    /// window (each marked when its stream has no live points: `alone` such streams).
    #[allow(clippy::too_many_arguments)]
    fn histogram_quantile(
        &self,
        streams: &[Arc<Stream>],
        guards: &[parking_lot::MutexGuard<'_, crate::stream::StreamState>],
        before: &[(&RestoredSlot, bool)],
        alone: u64,
        q: f64,
        ws: u64,
        mut m: Measure,
        what: &str,
        over: &str,
    ) -> Measure {
        let slot_ns = u64::from(self.cfg.slot_seconds) * NS;
        let mut sketch = Sketch::new();
        let mut neg = 0u64;
        let (mut from, mut to) = (u64::MAX, 0u64);
        let scale = streams[0].scale;
        for g in guards {
            let d = &g.data;
            let mut points = 0;
            for c in window_cells(d, ws, slot_ns) {
                points += u64::from(c.points);
                sketch.merge_encoded_trusted(&c.sketch);
                d.pending.record_into(c.slot, &mut sketch);
                neg += c.neg;
                from = from.min(c.from.max(ws));
                to = to.max(c.last_t);
            }
            if let Some(b) = birth_in(d, ws) {
                sketch.merge_encoded_trusted(&b.sketch);
                neg += b.neg;
                from = from.min(b.from.max(ws));
            }
            if points > 0 {
                m.points += points;
                m.series += 1;
            }
        }
        for (slot, _) in before {
            let n = if slot.sketch.is_empty() {
                0
            } else {
                sketch.merge_encoded_trusted(&slot.sketch)
            };
            let t = &slot.totals;
            neg += (t.increase.round() as u64).saturating_sub(n);
            m.points += t.points;
            from = from.min(t.start.max(ws));
            to = to.max(t.last_t);
        }
        m.series += alone;
        if to > from {
            m.seconds = (to - from) as f64 / 1e9;
        }
        let v = match sketch_quantile(&sketch, neg, q, m.points, what, over) {
            Ok(v) => v,
            Err(gap) => {
                m.gap = Some(gap);
                return m;
            }
        };
        m.value = Some(scale.report_sketch(v));
        // The widest source bucket any matched stream could have put this value in.
        let x = v as f64 / scale.to_sketch;
        let mut rel: Option<f64> = Some(0.0);
        for (s, g) in streams.iter().zip(guards) {
            let d = &g.data;
            let cells: Vec<_> = window_cells(d, ws, slot_ns).collect();
            if cells.is_empty() {
                continue;
            }
            let r = match s.shape {
                Shape::Exponential { .. } => {
                    let sc = cells.iter().map(|c| c.scale).min().unwrap_or(i32::MAX);
                    if x == 0.0 || sc == i32::MAX {
                        Some(0.0)
                    } else {
                        Some((exp_base(sc) - 1.0) / 2.0)
                    }
                }
                _ => {
                    let vmin = cells.iter().map(|c| c.vmin).fold(f64::NAN, f64::min);
                    let vmax = cells.iter().map(|c| c.vmax).fold(f64::NAN, f64::max);
                    explicit_bound(&d.bounds, x, vmin, vmax)
                }
            };
            rel = match (rel, r) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            };
        }
        // A stream known from restored totals only has no buckets to bound the answer by.
        if alone > 0 {
            rel = None;
        }
        m.error_bound = rel.map(|r| (r + RELATIVE_ERROR) / (1.0 - RELATIVE_ERROR));
        m
    }
}

/// The sketch value at quantile `q` of `sketch` plus `neg` negative values ranked below it, or
/// the sentence saying why there is none.
fn sketch_quantile(
    sketch: &Sketch,
    neg: u64,
    q: f64,
    points: u64,
    what: &str,
    over: &str,
) -> Result<u64, String> {
    let Some(rank) = nearest_rank(q, sketch.count() + neg) else {
        return Err(if points == 0 {
            format!("no point of metric {what} {over}")
        } else {
            format!("histogram metric {what} recorded no value {over}")
        });
    };
    if rank <= neg {
        return Err(format!(
            "the {q} quantile of metric {what} {over} falls among negative values, which the sketch cannot hold"
        ));
    }
    sketch
        .value_at_rank(rank - neg)
        .ok_or_else(|| format!("histogram metric {what} recorded no value {over}"))
}

/// Aggregates `sel` over the streams of a stored baseline: history records each merged over
/// the captured range (`slot_start_unix` its first slot, `slot_seconds` up to the end of its
/// last; see `slogate_history::metric_totals`), all of one cohort. `source` names the baseline
/// in the sentences. What per-slot totals keep answers as a live window does: last, min, max,
/// avg, sum, count, increase, rate (over the time the stream's slots cover) and histogram
/// quantiles (error bound unknown: bucket bounds are not kept). Time in a state, transitions
/// and summary quantiles need the points themselves: no value, and the sentence says so.
pub fn query_stored(
    records: &[MetricSlotRecord],
    sel: &Selection,
    agg: Aggregate,
    how: Combine,
    source: &str,
) -> Measure {
    let what = format!("{sel} in {source}");
    let over = "over the captured range";
    let matched: Vec<&MetricSlotRecord> = records
        .iter()
        .filter(|r| {
            r.metric == sel.metric
                && sel.matches_with(|k| {
                    r.attributes
                        .iter()
                        .find(|(ak, _)| ak == k)
                        .map(|(_, v)| v.as_str())
                })
        })
        .collect();
    let Some(first) = matched.first() else {
        return Measure::gap(
            None,
            String::new(),
            format!("no stream of metric {what} was captured"),
        );
    };
    let Some(shape) = shape_of_kind(&first.kind) else {
        return Measure::gap(
            None,
            first.unit.clone(),
            format!("metric {what} has an unknown kind `{}`", first.kind),
        );
    };
    let kind = Some(shape.kind());
    if let Some(gap) = mixed(
        &what,
        kind,
        matched.iter().map(|r| (r.kind.as_str(), r.unit.as_str())),
    ) {
        return gap;
    }
    let scale = crate::config::Scale::of(&first.unit);
    let unit = answer_unit(agg, shape, &first.unit, scale);
    if let Some(gap) = not_applicable(agg, shape, &what) {
        return Measure::gap(kind, unit, gap);
    }
    let mut m = Measure {
        value: None,
        points: matched.iter().map(|r| r.points).sum(),
        series: matched.iter().filter(|r| r.points > 0).count() as u64,
        seconds: matched
            .iter()
            .map(|r| f64::from(r.slot_seconds))
            .fold(0.0, f64::max),
        unit,
        kind,
        error_bound: None,
        gap: None,
    };
    let points_only = |agg: Aggregate| {
        format!(
            "{agg} of metric {what} needs its points, and a stored baseline keeps per-slot totals only; compare it with a live baseline (another version or env) instead"
        )
    };
    match agg {
        Aggregate::TimeInState { .. } | Aggregate::Transitions { .. } => {
            m.gap = Some(points_only(agg));
            return m;
        }
        Aggregate::Quantile(_) if shape == Shape::Summary => {
            m.gap = Some(points_only(agg));
            return m;
        }
        Aggregate::Quantile(q) => {
            let mut sketch = Sketch::new();
            let mut counted = 0.0;
            for r in &matched {
                if !r.sketch.is_empty() {
                    sketch.merge_encoded_trusted(&r.sketch);
                }
                counted += r.increase;
            }
            // Values below zero are counted but not sketched.
            let neg = (counted.round() as u64).saturating_sub(sketch.count());
            match sketch_quantile(&sketch, neg, q, m.points, &what, over) {
                Ok(v) => m.value = Some(scale.report_sketch(v)),
                Err(gap) => m.gap = Some(gap),
            }
            return m;
        }
        _ => {}
    }
    let mut values = Vec::new();
    let mut thin = None;
    for r in matched.iter().filter(|r| r.points > 0) {
        let mut t = Totals::empty();
        t.add_slot(&SlotTotals::of_record(r), 0);
        match t.value(shape, agg, scale) {
            Ok(v) => values.push(v),
            Err(t) => {
                thin.get_or_insert(t);
            }
        }
    }
    m.value = combine(&values, how);
    if m.value.is_none() {
        m.gap = Some(thin_gap(thin, agg, &what, over));
    }
    m
}

/// The gap for matched streams (`(kind, unit)` each, the first deciding) of two kinds or two
/// units, which do not add up; `None` when they are all alike.
fn mixed<'a>(
    what: &str,
    kind: Option<&'static str>,
    parts: impl Iterator<Item = (&'a str, &'a str)> + Clone,
) -> Option<Measure> {
    let (kind0, unit0) = parts.clone().next()?;
    if let Some((other, _)) = parts.clone().find(|(k, _)| *k != kind0) {
        return Some(Measure::gap(
            kind,
            unit0.to_string(),
            format!(
                "metric {what} has streams of two kinds ({kind0} and {other}); add an attribute matcher that separates them"
            ),
        ));
    }
    let (_, other) = parts.clone().find(|(_, u)| *u != unit0)?;
    Some(Measure::gap(
        kind,
        unit0.to_string(),
        format!(
            "metric {what} has streams in two units (`{unit0}` and `{other}`); add an attribute matcher that separates them"
        ),
    ))
}

/// The shape class of a history row's `kind` (temporality and monotonicity are not kept:
/// what a stored query needs is only whether it holds samples or cells).
fn shape_of_kind(kind: &str) -> Option<Shape> {
    Some(match kind {
        "gauge" => Shape::Gauge,
        "sum" => Shape::Sum {
            monotonic: false,
            cumulative: true,
        },
        "histogram" => Shape::Histogram { cumulative: true },
        "exponential_histogram" => Shape::Exponential { cumulative: true },
        "summary" => Shape::Summary,
        _ => return None,
    })
}

/// The sentence for a query that matched streams but got no value from them.
fn thin_gap(thin: Option<Thin>, agg: Aggregate, what: &str, over: &str) -> String {
    let q = match agg {
        Aggregate::Quantile(q) => q,
        _ => f64::NAN,
    };
    match thin {
        None => format!("no point of metric {what} {over}"),
        Some(Thin::FewPoints) => format!(
            "metric {what} has fewer than 2 points of its cumulative value {over} and no counter started in it, so its increase is unknown"
        ),
        Some(Thin::NoSpan) => {
            format!("the points of metric {what} {over} span no time, so a rate is undefined")
        }
        Some(Thin::NoObservations) => {
            format!("metric {what} recorded no observation {over}")
        }
        Some(Thin::BeforeRestart(seconds)) => format!(
            "{agg} of metric {what} {over} reaches back before slogate started, where the history keeps per-slot totals only, not the points; known again in {seconds} s"
        ),
        Some(Thin::NoQuantile(have)) => {
            let have: Vec<String> = have.iter().map(f64::to_string).collect();
            format!(
                "summary metric {what} reports no {q} quantile (it has: {})",
                if have.is_empty() {
                    "none".to_string()
                } else {
                    have.join(", ")
                }
            )
        }
    }
}

/// The unit an answer over streams of `shape` in `unit` is given in.
fn answer_unit(agg: Aggregate, shape: Shape, unit: &str, scale: crate::config::Scale) -> String {
    match agg {
        Aggregate::Count | Aggregate::Transitions { .. } => "1".to_string(),
        Aggregate::TimeInState { .. } => "s".to_string(),
        Aggregate::Increase if !shape.has_samples() => "1".to_string(),
        Aggregate::Rate if !shape.has_samples() => "1/s".to_string(),
        Aggregate::Increase | Aggregate::Sum if shape.has_samples() => unit.to_string(),
        Aggregate::Rate => format!("{unit}/s"),
        _ if shape.has_samples() => unit.to_string(),
        _ => scale.report_unit(unit),
    }
}

/// Why `agg` has no meaning for streams of `shape`, if it has none.
fn not_applicable(agg: Aggregate, shape: Shape, what: &str) -> Option<String> {
    if applies(agg, shape) {
        return None;
    }
    let hint = if shape.has_samples() {
        ""
    } else {
        " (histograms and summaries answer avg, sum, count, increase, rate and quantile)"
    };
    Some(format!(
        "{agg} does not apply to metric {what}, a {}{hint}",
        shape.kind()
    ))
}

/// The restored streams of `sel` in `cohort` that have no live stream among `live`.
fn restored_only<'a>(
    restored: &'a Restored,
    cohort: &Selector,
    sel: &Selection,
    extra: &[String],
    live: &[Arc<Stream>],
) -> Vec<&'a RestoredStream> {
    if restored.streams.is_empty() {
        return Vec::new();
    }
    restored
        .by_metric
        .iter()
        .filter(|((svc, metric), _)| {
            *metric == sel.metric && cohort.service().is_none_or(|s| s == svc)
        })
        .flat_map(|(_, keys)| keys.iter())
        .filter_map(|k| restored.streams.get(k))
        .filter(|r| cohort_matches(cohort, &r.key, extra) && sel.matches(&r.key))
        .filter(|r| !live.iter().any(|s| s.key.packed() == r.key.packed()))
        .collect()
}

/// Cells that overlap the window: histogram windows are whole slots.
fn window_cells(d: &Data, ws: u64, slot_ns: u64) -> impl Iterator<Item = &crate::stream::Cell> {
    let lo = d
        .cells
        .partition_point(|c| (c.slot + 1).saturating_mul(slot_ns) <= ws);
    d.cells.range(lo..)
}

/// The birth cell, when the counter started inside the window.
fn birth_in(d: &Data, ws: u64) -> Option<&crate::stream::Cell> {
    d.birth.as_deref().filter(|b| b.from >= ws && b.from > 0)
}

/// Relative half-width (to the representative) of the explicit buckets an answer `x` may come
/// from, given the sketch's own error; `None` when a bucket has no finite bound.
fn explicit_bound(bounds: &[f64], x: f64, vmin: f64, vmax: f64) -> Option<f64> {
    let n = bounds.len();
    if n == 0 {
        return None;
    }
    let bucket = |y: f64| bounds.partition_point(|b| *b < y);
    let (a, b) = (
        bucket(x * (1.0 - RELATIVE_ERROR)),
        bucket(x * (1.0 + RELATIVE_ERROR)),
    );
    let mut worst: f64 = 0.0;
    for i in a..=b {
        let r = if i == 0 {
            // Represented by the smallest `min` reported: values lie in [min, b0].
            if vmin.is_nan() || vmin > bounds[0] {
                return None;
            }
            if vmin == bounds[0] {
                0.0
            } else if vmin > 0.0 {
                (bounds[0] - vmin) / vmin
            } else {
                return None;
            }
        } else if i >= n {
            // Represented by a reported `max`: values lie in (b_last, max].
            let last = bounds[n - 1];
            if vmax.is_nan() || vmax <= last || last <= 0.0 {
                return None;
            }
            (vmax - last) / last
        } else {
            let (lo, hi) = (bounds[i - 1], bounds[i]);
            if lo < 0.0 || hi <= 0.0 {
                return None;
            }
            (hi - lo) / (hi + lo)
        };
        worst = worst.max(r);
    }
    Some(worst)
}

/// What one stream holds in the window, before it becomes a value: its live points and the
/// restored slots (see `crate::restored`) alike.
#[derive(Debug, Clone)]
struct Totals {
    points: u64,
    /// Over the point values of gauges and sums.
    min: f64,
    max: f64,
    last: f64,
    last_t: u64,
    value_sum: f64,
    /// A sum's increase, or a histogram's or summary's count increase.
    inc: f64,
    /// A histogram's or summary's sum increase.
    hist_sum: f64,
    /// Whether any increase is known (a cumulative stream needs two points, or a start).
    increments: bool,
    /// Where the data starts, where its increases start, where it ends.
    from: u64,
    inc_from: u64,
    to: u64,
    /// A summary's asked quantile, or why it has none.
    quantile: Option<Result<f64, Thin>>,
}

impl Totals {
    fn empty() -> Totals {
        Totals {
            points: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            last: 0.0,
            last_t: 0,
            value_sum: 0.0,
            inc: 0.0,
            hist_sum: 0.0,
            increments: false,
            from: u64::MAX,
            inc_from: u64::MAX,
            to: 0,
            quantile: None,
        }
    }

    /// Adds one slot's totals (restored, or a stored baseline's range) that starts at
    /// `start` (clipped to `ws`) and ends at `end`.
    fn add_slot(&mut self, r: &SlotTotals, ws: u64) {
        if r.points == 0 {
            return;
        }
        self.points += r.points;
        self.min = self.min.min(r.min);
        self.max = self.max.max(r.max);
        if r.last_t >= self.last_t {
            self.last = r.last;
            self.last_t = r.last_t;
        }
        self.value_sum += r.value_sum;
        self.inc += r.increase;
        self.hist_sum += r.hist_sum;
        if r.points >= 2 || r.increase != 0.0 {
            self.increments = true;
            self.inc_from = self.inc_from.min(r.start.max(ws));
        }
        self.from = self.from.min(r.start.max(ws));
        self.to = self.to.max(r.end);
    }

    /// The value of `agg` (not time in state, transitions or a histogram quantile).
    fn value(
        &self,
        shape: Shape,
        agg: Aggregate,
        scale: crate::config::Scale,
    ) -> Result<f64, Thin> {
        let rate = |inc: f64| {
            if self.to > self.inc_from {
                Ok(inc / ((self.to - self.inc_from) as f64 / 1e9))
            } else {
                Err(Thin::NoSpan)
            }
        };
        if shape.has_samples() {
            return match agg {
                Aggregate::Last => Ok(self.last),
                Aggregate::Min => Ok(self.min),
                Aggregate::Max => Ok(self.max),
                Aggregate::Avg => Ok(self.value_sum / self.points as f64),
                Aggregate::Count => Ok(self.points as f64),
                Aggregate::Sum if shape == Shape::Gauge => Ok(self.value_sum),
                _ if !self.increments => Err(Thin::FewPoints),
                Aggregate::Sum | Aggregate::Increase => Ok(self.inc),
                Aggregate::Rate => rate(self.inc),
                _ => unreachable!("answered elsewhere or checked by `applies`"),
            };
        }
        match agg {
            Aggregate::Count => Ok(self.points as f64),
            Aggregate::Quantile(_) => self
                .quantile
                .clone()
                .unwrap_or(Err(Thin::NoQuantile(Vec::new()))),
            _ if !self.increments => Err(Thin::FewPoints),
            Aggregate::Increase => Ok(self.inc),
            Aggregate::Sum => Ok(scale.report(self.hist_sum)),
            Aggregate::Avg if self.inc <= 0.0 => Err(Thin::NoObservations),
            Aggregate::Avg => Ok(scale.report(self.hist_sum / self.inc)),
            Aggregate::Rate => rate(self.inc),
            _ => unreachable!("answered elsewhere or checked by `applies`"),
        }
    }

    /// The time the value covers: from its increases for increases and rates of sums.
    fn span(&self, shape: Shape, agg: Aggregate) -> (u64, u64) {
        let increases = !shape.has_samples()
            || matches!(agg, Aggregate::Increase | Aggregate::Rate)
            || (agg == Aggregate::Sum && shape != Shape::Gauge);
        let from = if increases && self.increments {
            self.inc_from
        } else if shape.has_samples() {
            self.from
        } else {
            self.to
        };
        (from.min(self.to), self.to)
    }
}

/// One slot's (or one stored range's) totals, as the history keeps them (times in ns).
#[derive(Debug, Clone)]
pub(crate) struct SlotTotals {
    pub start: u64,
    pub end: u64,
    pub points: u64,
    pub min: f64,
    pub max: f64,
    pub last: f64,
    pub last_t: u64,
    pub value_sum: f64,
    pub increase: f64,
    pub hist_sum: f64,
}

impl SlotTotals {
    pub fn of_record(r: &MetricSlotRecord) -> SlotTotals {
        let start = u64::try_from(r.slot_start_unix)
            .unwrap_or(0)
            .saturating_mul(NS);
        SlotTotals {
            start,
            end: start.saturating_add(u64::from(r.slot_seconds) * NS),
            points: r.points,
            min: r.min,
            max: r.max,
            last: r.last,
            last_t: r.last_time_unix_nano,
            value_sum: r.value_sum,
            increase: r.increase,
            hist_sum: r.hist_sum,
        }
    }
}

/// A gauge or sum stream's live totals in the window; `None` when it has no point there.
fn sample_totals(d: &Data, shape: Shape, ws: u64) -> Option<Totals> {
    let lo = d.samples.partition_point(|s| s.t < ws);
    let win = d.samples.range(lo..);
    let (first, last) = (win.clone().next()?, *d.samples.back()?);
    let mut t = Totals::empty();
    t.points = win.len() as u64;
    t.from = first.t;
    t.to = last.t;
    t.last = last.v;
    t.last_t = last.t;
    let cumulative = shape.cumulative();
    for s in win {
        t.min = t.min.min(s.v);
        t.max = t.max.max(s.v);
        t.value_sum += s.v;
        if s.flags & HAS_INC == 0 || (cumulative && s.from < ws) {
            continue;
        }
        t.inc += s.inc;
        t.increments = true;
        t.inc_from = t.inc_from.min(s.from.max(ws));
    }
    Some(t)
}

/// The increase a cumulative sum's first point after the restart adds to its restored slots:
/// the difference from the last restored value (the value itself after a reset of a monotonic
/// sum), in place of what that point counted alone.
fn bridge_restart(
    t: &mut Totals,
    d: &Data,
    shape: Shape,
    restored: &RestoredStream,
    ws: u64,
    until: u64,
) {
    let Shape::Sum {
        monotonic,
        cumulative: true,
    } = shape
    else {
        return;
    };
    let Some(before) = restored
        .slots
        .last()
        .map(|s| &s.totals)
        .filter(|s| s.start >= ws)
    else {
        return;
    };
    let i = d.samples.partition_point(|s| s.t < until);
    let Some(first) = d
        .samples
        .get(i)
        .filter(|s| s.flags & FIRST != 0 && s.t > before.last_t)
    else {
        return;
    };
    if first.flags & HAS_INC != 0 && first.from >= ws {
        t.inc -= first.inc;
    }
    t.inc += if monotonic && first.v < before.last {
        first.v
    } else {
        first.v - before.last
    };
    t.increments = true;
    t.inc_from = t.inc_from.min(before.last_t.max(ws));
}

/// A gauge's time in a state, or its transitions, from the points in the window (and the one
/// before it): the value, the points in the window and the time it covers.
fn state_value(
    d: &Data,
    agg: Aggregate,
    ws: u64,
    now: u64,
    stale_ns: u64,
) -> Option<(f64, u64, u64, u64)> {
    let lo = d.samples.partition_point(|s| s.t < ws);
    let n = (d.samples.len() - lo) as u64;
    let (first, last) = (d.samples.get(lo)?, d.samples.back()?);
    let (mut from, mut to) = (first.t, last.t);
    let value = match agg {
        Aggregate::TimeInState { state } => {
            let start = lo.saturating_sub(1);
            let mut inside = 0u64;
            let mut span_from = u64::MAX;
            for i in start..d.samples.len() {
                let s = d.samples[i];
                let next = d.samples.get(i + 1).map_or(now, |x| x.t);
                let begin = s.t.max(ws);
                let end = next.min(s.t.saturating_add(stale_ns)).min(now);
                if end <= begin {
                    continue;
                }
                span_from = span_from.min(begin);
                let hit = match state {
                    Some(st) => same(s.v, st),
                    None => s.v != 0.0,
                };
                if hit {
                    inside += end - begin;
                }
                to = to.max(end);
            }
            if span_from != u64::MAX {
                from = span_from;
            }
            inside as f64 / 1e9
        }
        Aggregate::Transitions { into } => {
            let start = lo.saturating_sub(1);
            let mut count = 0u64;
            for i in start + 1..d.samples.len() {
                let (a, b) = (d.samples[i - 1].v, d.samples[i].v);
                if !same(a, b) && into.is_none_or(|x| same(b, x)) {
                    count += 1;
                }
            }
            count as f64
        }
        _ => unreachable!("only time in state and transitions"),
    };
    Some((value, n, from, to))
}

/// A histogram or summary stream's live totals in the window (quantiles of histograms are
/// merged elsewhere); `None` when it has no point there.
fn cell_totals(
    d: &Data,
    agg: Aggregate,
    scale: crate::config::Scale,
    ws: u64,
    slot_ns: u64,
) -> Option<Totals> {
    let mut t = Totals::empty();
    let mut count = 0u64;
    for c in window_cells(d, ws, slot_ns) {
        t.points += u64::from(c.points);
        count += c.count;
        t.hist_sum += c.sum;
        t.to = t.to.max(c.last_t);
        if c.from != u64::MAX {
            t.increments = true;
            t.inc_from = t.inc_from.min(c.from.max(ws));
        }
    }
    if t.points == 0 {
        return None;
    }
    if let Some(b) = birth_in(d, ws) {
        count += b.count;
        t.hist_sum += b.sum;
        t.increments = true;
        t.inc_from = t.inc_from.min(b.from);
    }
    t.inc = count as f64;
    t.from = t.inc_from.min(t.to);
    if let Aggregate::Quantile(q) = agg {
        t.quantile = Some(if d.quantiles_t < ws {
            Err(Thin::NoQuantile(Vec::new()))
        } else {
            match d.quantiles.iter().find(|(qq, _)| same(*qq, q)) {
                Some((_, v)) => Ok(scale.report(*v)),
                None => Err(Thin::NoQuantile(
                    d.quantiles.iter().map(|(qq, _)| *qq).collect(),
                )),
            }
        });
    }
    Some(t)
}
