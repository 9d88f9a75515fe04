//! OTLP metric criteria and rules measured for one cohort: the store's aggregate, divided by
//! another selection or by the cohort's span count, turned into what the gate judges.

use crate::config::{Divisor, MetricQuery, MetricSelect, SpanCount};
use slogate_core::Selector;
use slogate_gate::{CohortData, Measured};
use slogate_metrics::{Aggregate, Measure, MetricStore};

/// Measures `q` for the cohort `sel` over the last `window_seconds`; `spans` is the cohort's
/// span data over the same window (the denominator of a cost per request).
pub fn measure(
    store: Option<&MetricStore>,
    sel: &Selector,
    q: &MetricQuery,
    window_seconds: u64,
    spans: &CohortData,
) -> Measured {
    let Some(store) = store else {
        return Measured {
            label: q.label.clone(),
            gap: Some("the OTLP metric store is not running; no verdict without data".into()),
            ..Measured::default()
        };
    };
    measure_with(
        &|m: &MetricSelect| store.query(sel, &m.selection, m.aggregate, m.combine, window_seconds),
        q,
        spans,
    )
}

/// Measures `q` over a stored baseline's metric streams (`records`, merged over its range);
/// `spans` is the baseline's span totals, `source` names it in the sentences.
pub fn measure_stored(
    records: &[slogate_core::MetricSlotRecord],
    source: &str,
    q: &MetricQuery,
    spans: &CohortData,
) -> Measured {
    measure_with(
        &|m: &MetricSelect| {
            slogate_metrics::query_stored(records, &m.selection, m.aggregate, m.combine, source)
        },
        q,
        spans,
    )
}

/// `q` from `read`, which answers one selection (live or stored), divided as `q` says.
fn measure_with(
    read: &dyn Fn(&MetricSelect) -> Measure,
    q: &MetricQuery,
    spans: &CohortData,
) -> Measured {
    let num = read(&q.numerator);
    let unit = display_unit(&q.numerator, &num);
    let (value, points, series, error_bound, gap, unit) = match &q.divide_by {
        None => (
            num.value,
            num.points,
            num.series,
            num.error_bound,
            num.gap,
            unit,
        ),
        Some(Divisor::Metric(d)) => {
            let den = read(d);
            let den_unit = display_unit(d, &den);
            let unit = if unit == den_unit {
                String::new()
            } else if den_unit.is_empty() {
                unit
            } else {
                format!("{unit}/{den_unit}")
            };
            let r = Measure::ratio(&num, &den);
            (r.value, r.points, r.series, r.error_bound, r.gap, unit)
        }
        Some(Divisor::Spans(count)) => {
            let (n, what) = match count {
                SpanCount::Requests => (spans.requests, "requests"),
                SpanCount::Errors => (spans.errors, "errors"),
            };
            let unit = if unit.is_empty() {
                String::new()
            } else {
                format!("{unit}/{}", what.trim_end_matches('s'))
            };
            match num.value {
                None => (None, num.points, num.series, None, num.gap, unit),
                Some(_) if n == 0 => (
                    None,
                    num.points,
                    num.series,
                    None,
                    Some(format!(
                        "the cohort has no span {what} over the window to divide {} by; no verdict without data",
                        q.numerator.selection.metric
                    )),
                    unit,
                ),
                Some(v) => (Some(v / n as f64), num.points, num.series, None, None, unit),
            }
        }
    };
    Measured {
        value,
        label: q.label.clone(),
        unit,
        points,
        series,
        error_bound,
        gap,
    }
}

/// The unit a value is shown in: quantiles of durations in ms, times in a state in seconds,
/// counts bare, rates per second; an OTLP annotation `{job}` shows as `job`, and `1` as nothing.
fn display_unit(m: &MetricSelect, got: &Measure) -> String {
    let raw = got.unit.as_str();
    let plain = raw.trim_start_matches('{').trim_end_matches('}');
    let plain = if plain == "1" { "" } else { plain };
    match m.aggregate {
        Aggregate::TimeInState { .. } => "s".into(),
        Aggregate::Transitions { .. } | Aggregate::Count => String::new(),
        Aggregate::Quantile(_) if is_duration(raw) => "ms".into(),
        Aggregate::Rate if plain.is_empty() => "/s".into(),
        Aggregate::Rate => format!("{plain}/s"),
        _ => plain.to_string(),
    }
}

fn is_duration(unit: &str) -> bool {
    matches!(unit, "ns" | "us" | "ms" | "s" | "min" | "h")
}

/// A measured value for people: four significant digits, no exponent for everyday magnitudes,
/// no trailing zeros (`612`, `0.8512`, `0.031`, `1.235e+06`).
pub fn format_number(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    if v == 0.0 {
        return "0".into();
    }
    let mag = v.abs().log10().floor() as i32;
    if !(-4..6).contains(&mag) {
        return format!("{v:.3e}");
    }
    let decimals = (3 - mag).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::format_number;

    #[test]
    fn numbers() {
        for (v, want) in [
            (612.0, "612"),
            (0.8512, "0.8512"),
            (0.031, "0.031"),
            (0.85, "0.85"),
            (1234.6, "1235"),
            (123456.0, "123456"),
            (1_234_567.0, "1.235e6"),
            (0.000012, "1.200e-5"),
            (-3.5, "-3.5"),
            (0.0, "0"),
        ] {
            assert_eq!(format_number(v), want, "{v}");
        }
    }
}
