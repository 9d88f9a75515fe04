//! `slogate sla`: checks a service's availability, latency and error rate over the last hours
//! of history against targets, and says PASS or FAIL — or NO DATA, never PASS without data.
//!
//! Availability is time-based (what an SLA's "uptime" means): the share of minutes with traffic
//! in which the error rate stayed at or below `down_error_rate`. Minutes without traffic are
//! not counted either way. Latency and error rate come from the whole period's merged sketch
//! and counters.

use serde::Serialize;
use std::fmt::Write as _;

/// Minutes of history an SLA check may cover (90 days).
pub const MAX_HOURS: u64 = 90 * 24;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Pass,
    Fail,
    NoData,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Pass => "PASS",
            Outcome::Fail => "FAIL",
            Outcome::NoData => "NO DATA",
        }
    }
    /// 0 pass, 1 fail, 2 no data.
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Pass => 0,
            Outcome::Fail => 1,
            Outcome::NoData => 2,
        }
    }
}

/// What one check compares.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "metric", rename_all = "snake_case")]
pub enum Target {
    /// Share of minutes up, at least this fraction.
    Availability { min: f64 },
    /// The quantile of latency, at most this many milliseconds.
    Latency { quantile: f64, max_ms: f64 },
    /// `errors / requests`, at most this fraction.
    ErrorRate { max: f64 },
}

/// A target and where it came from (a flag or an SLO of the configuration).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetSpec {
    #[serde(flatten)]
    pub target: Target,
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    pub name: String,
    #[serde(flatten)]
    pub target: TargetSpec,
    pub observed: Option<f64>,
    /// The number of requests (or minutes, for availability) behind `observed`.
    pub sample: u64,
    pub sample_unit: &'static str,
    pub outcome: Outcome,
    pub detail: String,
}

/// The measured period.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    pub requests: u64,
    pub errors: u64,
    pub sketch: slogate_sketch::Sketch,
    /// `(minute_start_unix, requests, errors)` for minutes with traffic.
    pub minutes: Vec<(i64, u64, u64)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SlaReport {
    pub service: String,
    pub selector: String,
    pub hours: u64,
    pub from: String,
    pub to: String,
    pub requests: u64,
    pub errors: u64,
    pub minutes_with_traffic: u64,
    pub down_error_rate: f64,
    pub min_requests: u64,
    pub checks: Vec<Check>,
    pub result: Outcome,
}

/// Groups slot counts into minutes (by the slot's start).
pub fn minutes(slots: &[(i64, u64, u64)]) -> Vec<(i64, u64, u64)> {
    let mut out: Vec<(i64, u64, u64)> = Vec::new();
    for &(at, r, e) in slots {
        let m = at - at.rem_euclid(60);
        match out.last_mut() {
            Some(last) if last.0 == m => {
                last.1 += r;
                last.2 += e;
            }
            _ => out.push((m, r, e)),
        }
    }
    out.retain(|&(_, r, _)| r > 0);
    out
}

/// Judges every target: fail wins, then no data, and only all-pass passes.
pub fn judge(
    m: &Measured,
    targets: &[TargetSpec],
    min_requests: u64,
    down_error_rate: f64,
) -> (Vec<Check>, Outcome) {
    let thin = m.requests < min_requests.max(1);
    let thin_reason = format!(
        "{} requests, fewer than the {} required; no verdict on thin data",
        m.requests,
        min_requests.max(1)
    );
    let mut checks = Vec::new();
    for t in targets {
        let (name, observed, sample, unit, ok, detail) = match t.target {
            Target::Availability { min } => {
                let total = m.minutes.len() as u64;
                let down = m
                    .minutes
                    .iter()
                    .filter(|&&(_, r, e)| e as f64 > down_error_rate * r as f64)
                    .count() as u64;
                let obs = (total > 0).then(|| (total - down) as f64 / total as f64);
                (
                    "availability".to_string(),
                    obs,
                    total,
                    "minutes",
                    obs.map(|o| o >= min),
                    format!(
                        "{down} of {total} minutes with traffic down (a minute is down when more than {} of its requests fail)",
                        pct(down_error_rate)
                    ),
                )
            }
            Target::Latency { quantile, max_ms } => {
                let obs = m.sketch.quantile(quantile).map(|ns| ns as f64 / 1e6);
                let label = quantile_label(quantile);
                (
                    format!("latency {label}"),
                    obs,
                    m.sketch.count(),
                    "requests",
                    obs.map(|o| o <= max_ms),
                    String::new(),
                )
            }
            Target::ErrorRate { max } => {
                let obs =
                    (m.requests > 0).then(|| m.errors.min(m.requests) as f64 / m.requests as f64);
                (
                    "error rate".to_string(),
                    obs,
                    m.requests,
                    "requests",
                    obs.map(|o| o <= max),
                    format!("{} errors", m.errors),
                )
            }
        };
        let (outcome, detail) = match ok {
            _ if thin => (Outcome::NoData, thin_reason.clone()),
            None => (Outcome::NoData, "nothing to measure".to_string()),
            Some(true) => (Outcome::Pass, detail),
            Some(false) => (Outcome::Fail, detail),
        };
        checks.push(Check {
            name,
            target: t.clone(),
            observed,
            sample,
            sample_unit: unit,
            outcome,
            detail,
        });
    }
    let any = |o| checks.iter().any(|c| c.outcome == o);
    let overall = if checks.is_empty() || (!any(Outcome::Fail) && any(Outcome::NoData)) {
        Outcome::NoData
    } else if any(Outcome::Fail) {
        Outcome::Fail
    } else {
        Outcome::Pass
    };
    (checks, overall)
}

fn pct(f: f64) -> String {
    let s = format!("{:.4}", f * 100.0);
    format!("{}%", s.trim_end_matches('0').trim_end_matches('.'))
}

fn quantile_label(q: f64) -> String {
    let s = format!("{:.3}", q * 100.0);
    format!(
        "p{}",
        s.trim_end_matches('0')
            .trim_end_matches('.')
            .replace('.', "")
    )
}

fn fmt_ms(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else {
        format!("{ms:.1} ms")
    }
}

/// Parses a percentage or fraction: `99.9`, `99.9%` and `0.999` are all 99.9% for availability
/// (`percent_default`); for error rates `0.5%` is half a percent and `0.005` a fraction.
pub fn parse_ratio(s: &str, percent_default: bool) -> anyhow::Result<f64> {
    let t = s.trim();
    let (num, percent) = match t.strip_suffix('%') {
        Some(n) => (n.trim(), true),
        None => (t, false),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| anyhow::anyhow!("invalid ratio {s:?}; write e.g. 99.9, 99.9% or 0.5%"))?;
    let v = if percent || (percent_default && v > 1.0) {
        v / 100.0
    } else {
        v
    };
    if !(0.0..=1.0).contains(&v) || v.is_nan() {
        anyhow::bail!("ratio {s:?} is outside 0..100%");
    }
    Ok(v)
}

/// Parses a latency target like `300ms` or `5s` into milliseconds.
pub fn parse_latency(s: &str) -> anyhow::Result<f64> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| anyhow::anyhow!("invalid latency {s:?}: {e}; write e.g. 300ms or 5s"))?;
    if d.is_zero() {
        anyhow::bail!("latency target {s:?} must be positive");
    }
    Ok(d.as_secs_f64() * 1e3)
}

/// Targets from the configured SLOs of `service` whose selector fits `env`: an availability SLO
/// of objective `o` is an error-rate ceiling of `1 - o`; a latency SLO (objective `o`,
/// threshold `t`) is "the `o` quantile at most `t`".
pub fn targets_from_slos(
    slos: &[crate::config::SloConfig],
    service: &str,
    env: Option<&str>,
) -> Vec<TargetSpec> {
    slos.iter()
        .filter(|s| s.service == service)
        .filter(|s| {
            s.selector
                .iter()
                .all(|(k, v)| k == "env" && env.is_none_or(|e| e == v.as_str()))
        })
        .map(|s| {
            let source = format!("slo {}", s.spec.name);
            match s.spec.kind {
                slogate_gate::SloKind::Availability => TargetSpec {
                    target: Target::ErrorRate {
                        max: 1.0 - s.spec.objective,
                    },
                    source,
                },
                slogate_gate::SloKind::Latency { threshold_ms } => TargetSpec {
                    target: Target::Latency {
                        quantile: s.spec.objective,
                        max_ms: threshold_ms,
                    },
                    source,
                },
            }
        })
        .collect()
}

/// Text in the style of a release team's SLA validation.
pub fn render_text(r: &SlaReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "SLA check: {} · last {}h ({} → {}) · {} requests, {} errors",
        r.selector, r.hours, r.from, r.to, r.requests, r.errors
    );
    let mut rows = Vec::new();
    for c in &r.checks {
        let (obs, target) = match c.target.target {
            Target::Availability { min } => (c.observed.map(pct), format!(">= {}", pct(min))),
            Target::Latency { max_ms, .. } => {
                (c.observed.map(fmt_ms), format!("<= {}", fmt_ms(max_ms)))
            }
            Target::ErrorRate { max } => (c.observed.map(pct), format!("<= {}", pct(max))),
        };
        rows.push(vec![
            c.outcome.label().to_string(),
            c.name.clone(),
            obs.unwrap_or_else(|| "-".into()),
            format!("target {target}"),
            format!("{} {}", c.sample, c.sample_unit),
            c.target.source.clone(),
            c.detail.clone(),
        ]);
    }
    out.push_str(&super::aligned(&rows));
    let _ = writeln!(out, "SLA COMPLIANCE: {}", r.result.label());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured(latencies_ms: &[u64], errors: u64, minutes: Vec<(i64, u64, u64)>) -> Measured {
        let mut sketch = slogate_sketch::Sketch::new();
        for &l in latencies_ms {
            sketch.record(l * 1_000_000);
        }
        Measured {
            requests: latencies_ms.len() as u64,
            errors,
            sketch,
            minutes,
        }
    }

    fn t(target: Target) -> TargetSpec {
        TargetSpec {
            target,
            source: "flag".into(),
        }
    }

    #[test]
    fn checks_and_overall() {
        let lat: Vec<u64> = (1..=1000).collect();
        // 1000 minutes with traffic, one down (3 of 10 requests failed).
        let mut mins: Vec<(i64, u64, u64)> = (0..999).map(|i| (i * 60, 10, 0)).collect();
        mins.push((999 * 60, 10, 3));
        let m = measured(&lat, 13, mins);
        let cases: &[(Target, Outcome, Option<f64>)] = &[
            (
                Target::Availability { min: 0.999 },
                Outcome::Pass,
                Some(0.999),
            ),
            (
                Target::Availability { min: 0.9995 },
                Outcome::Fail,
                Some(0.999),
            ),
            (
                Target::Latency {
                    quantile: 0.95,
                    max_ms: 960.0,
                },
                Outcome::Pass,
                Some(950.0),
            ),
            (
                Target::Latency {
                    quantile: 0.95,
                    max_ms: 900.0,
                },
                Outcome::Fail,
                Some(950.0),
            ),
            (Target::ErrorRate { max: 0.02 }, Outcome::Pass, Some(0.013)),
            (Target::ErrorRate { max: 0.01 }, Outcome::Fail, Some(0.013)),
        ];
        for (target, want, obs) in cases {
            let (checks, overall) = judge(&m, &[t(target.clone())], 100, 0.05);
            assert_eq!((checks[0].outcome, overall), (*want, *want), "{target:?}");
            let got = checks[0].observed.unwrap();
            assert!(
                (got - obs.unwrap()).abs() / obs.unwrap() < 0.005,
                "{target:?}: {got}"
            );
        }
        // Fail wins over pass; every check is no data on thin or no traffic: never a pass.
        let all = [
            t(Target::ErrorRate { max: 0.01 }),
            t(Target::Availability { min: 0.9 }),
        ];
        assert_eq!(judge(&m, &all, 100, 0.05).1, Outcome::Fail);
        let thin = measured(&[5; 50], 0, vec![(0, 50, 0)]);
        let (checks, overall) = judge(&thin, &all, 100, 0.05);
        assert_eq!(overall, Outcome::NoData);
        assert!(checks.iter().all(|c| c.outcome == Outcome::NoData
            && c.detail.contains("50 requests, fewer than the 100")));
        assert_eq!(
            judge(&Measured::default(), &all, 1, 0.05).1,
            Outcome::NoData
        );
        assert_eq!(judge(&m, &[], 1, 0.05).1, Outcome::NoData);
    }

    #[test]
    fn parsing() {
        let ratio: &[(&str, bool, Result<f64, &str>)] = &[
            ("99.9", true, Ok(0.999)),
            ("99.9%", true, Ok(0.999)),
            ("0.999", true, Ok(0.999)),
            ("0.5%", false, Ok(0.005)),
            ("0.005", false, Ok(0.005)),
            ("2", false, Err("outside")),
            ("lots", true, Err("invalid ratio")),
        ];
        for (s, pd, want) in ratio {
            match (parse_ratio(s, *pd), want) {
                (Ok(g), Ok(w)) => assert!((g - w).abs() < 1e-12, "{s}: {g}"),
                (Err(g), Err(w)) => assert!(g.to_string().contains(w), "{s}: {g}"),
                (g, w) => panic!("{s}: {g:?} vs {w:?}"),
            }
        }
        assert_eq!(parse_latency("300ms").unwrap(), 300.0);
        assert_eq!(parse_latency("5s").unwrap(), 5000.0);
        assert!(parse_latency("fast").is_err());
        assert_eq!(
            minutes(&[(0, 1, 0), (10, 2, 1), (60, 0, 0), (130, 4, 0)]),
            vec![(0, 3, 1), (120, 4, 0)]
        );
    }

    #[test]
    fn report_text() {
        let lat: Vec<u64> = (1..=1000).collect();
        let mut mins: Vec<(i64, u64, u64)> = (0..999).map(|i| (i * 60, 10, 0)).collect();
        mins.push((999 * 60, 10, 3));
        let m = measured(&lat, 13, mins);
        let targets = [
            t(Target::Availability { min: 0.999 }),
            t(Target::Latency {
                quantile: 0.95,
                max_ms: 300.0,
            }),
            t(Target::Latency {
                quantile: 0.999,
                max_ms: 2000.0,
            }),
            TargetSpec {
                target: Target::ErrorRate { max: 0.02 },
                source: "slo checkout-availability".into(),
            },
        ];
        let (checks, result) = judge(&m, &targets, 100, 0.05);
        let report = SlaReport {
            service: "checkout".into(),
            selector: "service=checkout,env=prod".into(),
            hours: 24,
            from: "2026-11-23T09:00:00Z".into(),
            to: "2026-11-24T09:00:00Z".into(),
            requests: m.requests,
            errors: m.errors,
            minutes_with_traffic: m.minutes.len() as u64,
            down_error_rate: 0.05,
            min_requests: 100,
            checks,
            result,
        };
        insta::assert_snapshot!(render_text(&report));
    }
}
