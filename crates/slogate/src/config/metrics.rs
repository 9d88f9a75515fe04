//! OTLP metric selections in gate criteria and alert rules: parsing `otlp`, `where`,
//! `aggregate`, `across`, `state` and `divide_by` into a [`MetricQuery`].

use super::file::DivideByFile;
use slogate_metrics::{Aggregate, Combine, Selection};
use std::collections::BTreeMap;

/// One OTLP metric selection aggregated over a window into one number per cohort.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSelect {
    pub selection: Selection,
    pub aggregate: Aggregate,
    pub combine: Combine,
}

/// Which span count divides a metric (`divide_by: {spans: requests}`): cost per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanCount {
    Requests,
    Errors,
}

/// The denominator of a ratio.
#[derive(Debug, Clone, PartialEq)]
pub enum Divisor {
    Metric(MetricSelect),
    Spans(SpanCount),
}

/// What a metric criterion or rule measures: a selection, optionally divided by another
/// selection or by the cohort's span count, and how it is named in verdicts.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricQuery {
    pub numerator: MetricSelect,
    pub divide_by: Option<Divisor>,
    /// `max(queue_depth{queue="jobs"})`, `increase(cache.requests{result="hit"}) / increase(cache.requests)`.
    pub label: String,
}

/// The fields of a selection as written, whichever section they come from.
pub struct SelectFields<'a> {
    pub otlp: &'a str,
    pub where_: &'a BTreeMap<String, String>,
    pub aggregate: Option<&'a str>,
    pub across: Option<&'a str>,
    pub state: Option<f64>,
}

/// Parses a selection; errors name the field (relative to the selection) and say what to write.
pub fn select(f: SelectFields<'_>) -> Result<MetricSelect, (&'static str, String)> {
    if f.otlp.trim().is_empty() {
        return Err(("otlp", "must name an OTLP metric".into()));
    }
    for (k, v) in f.where_ {
        if k.is_empty() || v.is_empty() {
            return Err((
                "where",
                format!(
                    "attribute matchers need a key and a value (`*` for present, `!v` for not v), got {k:?}: {v:?}"
                ),
            ));
        }
    }
    // Named at `otlp`: a missing field has no line of its own to point at.
    let agg = f.aggregate.ok_or((
        "otlp",
        "an OTLP metric criterion needs aggregate: last, min, max, avg, sum, count, increase, rate, pNN, time_in_state or transitions".to_string(),
    ))?;
    let aggregate = parse_aggregate(agg, f.state).map_err(|e| ("aggregate", e))?;
    if f.state.is_some()
        && !matches!(
            aggregate,
            Aggregate::TimeInState { .. } | Aggregate::Transitions { .. }
        )
    {
        return Err((
            "state",
            "state applies to aggregate: time_in_state or transitions".into(),
        ));
    }
    if let Some(s) = f.state
        && !s.is_finite()
    {
        return Err(("state", format!("{s} must be a finite number")));
    }
    let combine = match f.across {
        None => default_combine(&aggregate),
        Some("sum") => Combine::Sum,
        Some("avg") => Combine::Avg,
        Some("max") => Combine::Max,
        Some("min") => Combine::Min,
        Some(other) => {
            return Err((
                "across",
                format!("unknown combination {other:?}; use sum, avg, max or min"),
            ));
        }
    };
    Ok(MetricSelect {
        selection: Selection {
            metric: f.otlp.to_owned(),
            matchers: f
                .where_
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        },
        aggregate,
        combine,
    })
}

/// How the streams of one cohort combine when the file does not say: minima and maxima keep
/// their sense, a time in a state is the longest any instance spent there, an average stays an
/// average, and everything else (counts, increases, rates, current values) adds up.
fn default_combine(a: &Aggregate) -> Combine {
    match a {
        Aggregate::Min => Combine::Min,
        Aggregate::Max | Aggregate::TimeInState { .. } => Combine::Max,
        Aggregate::Avg => Combine::Avg,
        _ => Combine::Sum,
    }
}

fn parse_aggregate(s: &str, state: Option<f64>) -> Result<Aggregate, String> {
    Ok(match s {
        "last" => Aggregate::Last,
        "min" => Aggregate::Min,
        "max" => Aggregate::Max,
        "avg" => Aggregate::Avg,
        "sum" => Aggregate::Sum,
        "count" => Aggregate::Count,
        "increase" => Aggregate::Increase,
        "rate" => Aggregate::Rate,
        "time_in_state" => Aggregate::TimeInState { state },
        "transitions" => Aggregate::Transitions { into: state },
        other => {
            let digits = other
                .strip_prefix('p')
                .filter(|d| !d.is_empty() && d.len() <= 6 && d.bytes().all(|b| b.is_ascii_digit()));
            match digits {
                Some(d) => Aggregate::Quantile(
                    format!("0.{d}")
                        .parse()
                        .map_err(|_| format!("bad quantile in {other:?}"))?,
                ),
                None => {
                    return Err(format!(
                        "unknown aggregate {other:?}; use last, min, max, avg, sum, count, increase, rate, pNN (p50, p95, p999), time_in_state or transitions"
                    ));
                }
            }
        }
    })
}

/// Parses a whole query: the selection and its `divide_by`.
pub(super) fn query(
    numerator: SelectFields<'_>,
    divide_by: Option<&DivideByFile>,
) -> Result<MetricQuery, (String, String)> {
    let own = |(f, m): (&'static str, String)| (f.to_string(), m);
    let numerator = select(numerator).map_err(own)?;
    let divide_by = match divide_by {
        None => None,
        Some(d) => Some(divisor(d).map_err(|(f, m)| (format!("divide_by.{f}"), m))?),
    };
    let mut label = select_label(&numerator);
    match &divide_by {
        None => {}
        Some(Divisor::Metric(m)) => label = format!("{label} / {}", select_label(m)),
        Some(Divisor::Spans(SpanCount::Requests)) => label = format!("{label} per request"),
        Some(Divisor::Spans(SpanCount::Errors)) => label = format!("{label} per error"),
    }
    Ok(MetricQuery {
        numerator,
        divide_by,
        label,
    })
}

fn divisor(d: &DivideByFile) -> Result<Divisor, (&'static str, String)> {
    match (&d.spans, &d.otlp) {
        (Some(_), Some(_)) => Err((
            "spans",
            "divide by an OTLP metric (otlp) or a span count (spans), not both".into(),
        )),
        (Some(s), None) => {
            if !d.where_.is_empty()
                || d.aggregate.is_some()
                || d.across.is_some()
                || d.state.is_some()
            {
                return Err((
                    "spans",
                    "a span count takes no where, aggregate, across or state".into(),
                ));
            }
            match s.as_str() {
                "requests" => Ok(Divisor::Spans(SpanCount::Requests)),
                "errors" => Ok(Divisor::Spans(SpanCount::Errors)),
                other => Err((
                    "spans",
                    format!("unknown span count {other:?}; use requests or errors"),
                )),
            }
        }
        (None, Some(otlp)) => Ok(Divisor::Metric(select(SelectFields {
            otlp,
            where_: &d.where_,
            aggregate: d.aggregate.as_deref(),
            across: d.across.as_deref(),
            state: d.state,
        })?)),
        (None, None) => Err((
            "otlp",
            "divide_by needs otlp (a metric) or spans (requests or errors)".into(),
        )),
    }
}

/// `max(queue_depth{queue="jobs"})`.
pub fn select_label(m: &MetricSelect) -> String {
    let agg = match &m.aggregate {
        Aggregate::Last => "last".to_string(),
        Aggregate::Min => "min".into(),
        Aggregate::Max => "max".into(),
        Aggregate::Avg => "avg".into(),
        Aggregate::Sum => "sum".into(),
        Aggregate::Count => "count".into(),
        Aggregate::Increase => "increase".into(),
        Aggregate::Rate => "rate".into(),
        Aggregate::Quantile(q) => slogate_gate::quantile_label(*q),
        Aggregate::TimeInState { state: None } => "time_in_state".into(),
        Aggregate::TimeInState { state: Some(s) } => format!("time_in_state[{s}]"),
        Aggregate::Transitions { into: None } => "transitions".into(),
        Aggregate::Transitions { into: Some(s) } => format!("transitions[{s}]"),
    };
    let matchers = if m.selection.matchers.is_empty() {
        String::new()
    } else {
        let inner: Vec<String> = m
            .selection
            .matchers
            .iter()
            .map(|(k, v)| match v.strip_prefix('!') {
                Some(v) => format!("{k}!={v:?}"),
                None => format!("{k}={v:?}"),
            })
            .collect();
        format!("{{{}}}", inner.join(","))
    };
    format!("{agg}({}{matchers})", m.selection.metric)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(agg: &str, across: Option<&str>, state: Option<f64>, want: Result<&str, &str>) {
        let mut where_ = BTreeMap::new();
        where_.insert("queue".to_string(), "jobs".to_string());
        let got = query(
            SelectFields {
                otlp: "queue_depth",
                where_: &where_,
                aggregate: Some(agg),
                across,
                state,
            },
            None,
        );
        match (got, want) {
            (Ok(q), Ok(label)) => assert_eq!(q.label, label),
            (Err((_, e)), Err(msg)) => assert!(e.contains(msg), "{e}"),
            (got, want) => panic!("{agg}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn selections() {
        check("max", None, None, Ok(r#"max(queue_depth{queue="jobs"})"#));
        check("p95", None, None, Ok(r#"p95(queue_depth{queue="jobs"})"#));
        check("p999", None, None, Ok(r#"p999(queue_depth{queue="jobs"})"#));
        check(
            "time_in_state",
            None,
            Some(2.0),
            Ok(r#"time_in_state[2](queue_depth{queue="jobs"})"#),
        );
        check("median", None, None, Err("unknown aggregate \"median\""));
        check("max", Some("median"), None, Err("unknown combination"));
        check("max", None, Some(1.0), Err("state applies to"));
        check("transitions", None, Some(f64::NAN), Err("finite"));
    }

    #[test]
    fn default_combinations() {
        for (agg, want) in [
            ("max", Combine::Max),
            ("min", Combine::Min),
            ("avg", Combine::Avg),
            ("time_in_state", Combine::Max),
            ("last", Combine::Sum),
            ("increase", Combine::Sum),
            ("transitions", Combine::Sum),
        ] {
            let none = BTreeMap::new();
            let q = select(SelectFields {
                otlp: "m",
                where_: &none,
                aggregate: Some(agg),
                across: None,
                state: None,
            })
            .unwrap();
            assert_eq!(q.combine, want, "{agg}");
        }
    }

    #[test]
    fn divisors() {
        let none = BTreeMap::new();
        let num = || SelectFields {
            otlp: "cost",
            where_: &none,
            aggregate: Some("increase"),
            across: None,
            state: None,
        };
        let spans = DivideByFile {
            spans: Some("requests".into()),
            ..Default::default()
        };
        let q = query(num(), Some(&spans)).unwrap();
        assert_eq!(q.label, "increase(cost) per request");
        assert_eq!(q.divide_by, Some(Divisor::Spans(SpanCount::Requests)));
        let both = DivideByFile {
            spans: Some("requests".into()),
            otlp: Some("x".into()),
            ..Default::default()
        };
        assert_eq!(query(num(), Some(&both)).unwrap_err().0, "divide_by.spans");
        let neither = DivideByFile::default();
        assert_eq!(
            query(num(), Some(&neither)).unwrap_err().0,
            "divide_by.otlp"
        );
        let metric = DivideByFile {
            otlp: Some("calls".into()),
            aggregate: Some("increase".into()),
            ..Default::default()
        };
        let q = query(num(), Some(&metric)).unwrap();
        assert_eq!(q.label, "increase(cost) / increase(calls)");
    }
}
