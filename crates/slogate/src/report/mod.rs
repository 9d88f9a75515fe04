//! Renderings for people: the verdict table of `slogate verdict`, SQL results, stored
//! baselines, the daily canary report (Markdown) and the SLA report. Everything here renders
//! typed documents (the verdict document, the report structs); nothing reads a server.
//!
//! - [`verdict`]: the terminal table of a verdict document;
//! - [`sql`]: a SQL result as a table, CSV or JSON;
//! - [`sli`]: the SLI document as a table;
//! - [`baseline`]: stored baselines as tables;
//! - [`daily`] gathers the daily canary report from the history and [`markdown`] renders it;
//! - [`sla`] judges and renders the SLA report.

pub mod baseline;
pub mod daily;
pub mod markdown;
pub mod sla;
pub mod sli;
pub mod sql;
pub mod verdict;

use slogate_gate::{CriterionOutcome, CriterionResult};
use std::fmt::Write as _;

/// How a value is shown: rates as percentages, latencies in ms, ratios with an `x`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Unit {
    Percent,
    Ms,
    Times,
    Plain,
    /// A measured OTLP metric in its own unit (four significant digits).
    Measured,
}

/// The unit of a criterion's metric (`comparison` is `absolute` for observed values).
fn unit_of(c: &CriterionOutcome, comparison: &str) -> Unit {
    match (c.metric.as_str(), comparison) {
        (_, "ratio") => Unit::Times,
        _ if c.unit.is_some() => Unit::Measured,
        (m, _) if m.starts_with("latency") => Unit::Ms,
        ("error_rate", _) => Unit::Percent,
        _ => Unit::Plain,
    }
}

/// A number in its unit, `-` when there is none.
fn cell(v: Option<f64>, unit: Unit) -> String {
    match (v, unit) {
        (None, _) => "-".into(),
        (Some(x), Unit::Times) => format!("{x:.3}x"),
        (Some(x), Unit::Plain) => format!("{x:.2}"),
        (Some(x), Unit::Percent) => pct(x),
        (Some(x), Unit::Ms) => format!("{x:.1} ms"),
        (Some(x), Unit::Measured) => crate::engine::measure::format_number(x),
    }
}

fn pct(x: f64) -> String {
    format!("{:.2}%", x * 100.0)
}

fn opt_pct(v: Option<f64>) -> String {
    v.map_or("-".into(), pct)
}

fn opt_ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |x| format!("{x:.1} ms"))
}

/// `pass`, `marginal`, `fail` or `no_data`, as in the verdict document.
pub fn result_label(r: CriterionResult) -> &'static str {
    match r {
        CriterionResult::Pass => "pass",
        CriterionResult::Marginal => "marginal",
        CriterionResult::Fail => "fail",
        CriterionResult::NoData => "no_data",
    }
}

/// The pass / fail bounds of a criterion, in words.
fn bounds_text(c: &CriterionOutcome) -> String {
    let t = &c.threshold;
    let confidence = t
        .confidence
        .map_or(String::new(), |p| format!(" at {}%", p * 100.0));
    match t.comparison.as_str() {
        "mann_whitney" => format!(
            "P(slower) <= {}{confidence}",
            cell(Some(t.fail), Unit::Plain)
        ),
        "two_proportion" => format!("+{:.2} pt{confidence}", t.fail * 100.0),
        comparison => {
            let unit = unit_of(c, comparison);
            format!(
                "{comparison} {} / {}",
                cell(Some(t.pass), unit),
                cell(Some(t.fail), unit)
            )
        }
    }
}

/// Where a look stands in its analysis, in one line.
pub fn analysis_text(a: &crate::engine::analysis::AnalysisDoc) -> String {
    let l = &a.look;
    let spending = match l.spending {
        slogate_gate::Spending::OBrienFleming => "O'Brien-Fleming",
        slogate_gate::Spending::Pocock => "Pocock",
    };
    format!(
        "analysis {} · look {} of {}{} · data since {} · false-rollback budget {} ({spending}): {} spent, {} at this look · boundary z = {:.2} · {} of {} tested criteria failed",
        a.id,
        l.look,
        l.looks,
        if a.is_final {
            " (final)"
        } else {
            " (not final: only a fail decides now)"
        },
        a.data_since,
        pct(l.alpha),
        pct(l.spent),
        pct(l.spent_this_look),
        l.boundary,
        l.rejected,
        l.tested,
    )
}

/// The column headers of [`criterion_row`].
pub const CRITERION_COLUMNS: [&str; 8] = [
    "criterion",
    "result",
    "observed",
    "baseline",
    "score [interval]",
    "pass / fail",
    "alpha",
    "n canary/baseline",
];

/// One row per criterion: name, result, observed, baseline, the score compared with the
/// bounds and its confidence interval, the bounds, the level of the fail test, sample sizes.
fn criterion_row(c: &CriterionOutcome, sizes_sep: &str) -> Vec<String> {
    let value_unit = unit_of(c, "absolute");
    // A measured metric's values carry its unit; its sample is points, not requests.
    let with_unit = |v: Option<f64>| match (&c.unit, v) {
        (Some(u), Some(_)) if !u.is_empty() => format!("{} {u}", cell(v, value_unit)),
        _ => cell(v, value_unit),
    };
    let sizes = match c.points {
        Some(points) => format!(
            "{points}{sizes_sep}{} points",
            c.baseline_points.map_or("-".into(), |p| p.to_string())
        ),
        None => format!("{}{sizes_sep}{}", c.canary_requests, c.baseline_requests),
    };
    vec![
        c.name.clone(),
        result_label(c.result).into(),
        with_unit(c.observed),
        with_unit(c.baseline),
        score_text(c),
        bounds_text(c),
        c.alpha.map_or("-".into(), |a| format!("{a:.2e}")),
        sizes,
    ]
}

/// The score in its unit with its confidence interval, e.g. `1.120x [1.050x, 1.200x]`: the
/// lower bound is at the fail test's level, the upper at the criterion's confidence.
fn score_text(c: &CriterionOutcome) -> String {
    let unit = match c.threshold.comparison.as_str() {
        "mann_whitney" => Unit::Plain,
        "two_proportion" => Unit::Percent,
        comparison => unit_of(c, comparison),
    };
    let score = cell(c.score.filter(|s| s.is_finite()), unit);
    match (c.ci_lower, c.ci_upper) {
        (None, None) => score,
        (lo, hi) => format!(
            "{score} [{}, {}]",
            cell(lo.filter(|v| v.is_finite()), unit),
            cell(hi.filter(|v| v.is_finite()), unit)
        ),
    }
}

/// Rows as an aligned text table, each line indented by two spaces.
pub fn aligned(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            // Padded by hand: a `{:<w$}` width above u16::MAX panics, and a SQL cell can be
            // that wide.
            .map(|(i, s)| {
                let pad = widths[i].saturating_sub(s.chars().count());
                let mut cell = String::with_capacity(s.len() + pad);
                cell.push_str(s);
                cell.extend(std::iter::repeat_n(' ', pad));
                cell
            })
            .collect();
        let _ = writeln!(out, "  {}", line.join("  ").trim_end());
    }
    out
}

/// A header row from string literals.
fn header(cols: &[&str]) -> Vec<String> {
    cols.iter().map(|c| c.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells() {
        let cases = [
            (Some(0.0123), Unit::Percent, "1.23%"),
            (Some(12.345), Unit::Ms, "12.3 ms"),
            (Some(1.5), Unit::Times, "1.500x"),
            (Some(0.5), Unit::Plain, "0.50"),
            (None, Unit::Ms, "-"),
        ];
        for (v, unit, want) in cases {
            assert_eq!(cell(v, unit), want, "{v:?} {unit:?}");
        }
    }

    #[test]
    fn aligned_columns() {
        let rows = vec![header(&["a", "bbb"]), header(&["cccc", "d"])];
        assert_eq!(aligned(&rows), "  a     bbb\n  cccc  d\n");
        let wide = "x".repeat(70_000);
        let rows = vec![header(&["big", "n"]), vec![wide.clone(), "1".into()]];
        let want = format!("  big{}  n\n  {wide}  1\n", " ".repeat(70_000 - 3));
        assert_eq!(aligned(&rows), want);
    }
}
