//! Latency distributions the spans' durations are drawn from.

use rand::Rng;
use rand_distr::{Distribution, LogNormal, Pareto};
use serde::Deserialize;

/// A log-normal given by its median (not its mean), which is what people read off dashboards.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogNormalSpec {
    pub median_ms: f64,
    /// Standard deviation of ln(latency); 0.3 is tight, 1.0 is a long tail.
    pub sigma: f64,
}

/// How a cohort's latencies are distributed. In YAML a one-key map:
/// `lognormal: {median_ms: 40, sigma: 0.5}` (serde_yaml_ng wants `!tags` for enums, which
/// people do not write, hence the hand-written `Deserialize`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LatencyDist {
    Lognormal(LogNormalSpec),
    /// Mostly `a`, with probability `p_b` from `b` (a cache miss, a slow dependency).
    Bimodal {
        a: LogNormalSpec,
        b: LogNormalSpec,
        p_b: f64,
    },
    /// Heavy tail starting at `scale_ms`, clipped at `cap_ms` (a client timeout).
    Pareto {
        scale_ms: f64,
        shape: f64,
        cap_ms: f64,
    },
    Constant {
        ms: f64,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BimodalSpec {
    a: LogNormalSpec,
    b: LogNormalSpec,
    p_b: f64,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ParetoSpec {
    scale_ms: f64,
    shape: f64,
    cap_ms: f64,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConstantSpec {
    ms: f64,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDist {
    lognormal: Option<LogNormalSpec>,
    bimodal: Option<BimodalSpec>,
    pareto: Option<ParetoSpec>,
    constant: Option<ConstantSpec>,
}

impl<'de> Deserialize<'de> for LatencyDist {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let r = RawDist::deserialize(d)?;
        let mut found = Vec::new();
        if let Some(s) = r.lognormal {
            found.push(LatencyDist::Lognormal(s));
        }
        if let Some(s) = r.bimodal {
            found.push(LatencyDist::Bimodal {
                a: s.a,
                b: s.b,
                p_b: s.p_b,
            });
        }
        if let Some(s) = r.pareto {
            found.push(LatencyDist::Pareto {
                scale_ms: s.scale_ms,
                shape: s.shape,
                cap_ms: s.cap_ms,
            });
        }
        if let Some(s) = r.constant {
            found.push(LatencyDist::Constant { ms: s.ms });
        }
        match found[..] {
            [one] => Ok(one),
            _ => Err(serde::de::Error::custom(
                "latency needs exactly one of lognormal, bimodal, pareto, constant",
            )),
        }
    }
}

impl LatencyDist {
    pub fn lognormal(median_ms: f64, sigma: f64) -> LatencyDist {
        LatencyDist::Lognormal(LogNormalSpec { median_ms, sigma })
    }

    pub fn validate(&self) -> Result<(), String> {
        let ln = |s: &LogNormalSpec| {
            if s.median_ms > 0.0 && s.median_ms.is_finite() && s.sigma >= 0.0 && s.sigma.is_finite()
            {
                Ok(())
            } else {
                Err(format!(
                    "lognormal needs median_ms > 0 and sigma >= 0, got {s:?}"
                ))
            }
        };
        match self {
            LatencyDist::Lognormal(s) => ln(s),
            LatencyDist::Bimodal { a, b, p_b } => {
                ln(a)?;
                ln(b)?;
                if (0.0..=1.0).contains(p_b) {
                    Ok(())
                } else {
                    Err(format!("bimodal p_b must be in [0, 1], got {p_b}"))
                }
            }
            LatencyDist::Pareto {
                scale_ms,
                shape,
                cap_ms,
            } => {
                if *scale_ms > 0.0 && *shape > 0.0 && cap_ms >= scale_ms {
                    Ok(())
                } else {
                    Err("pareto needs scale_ms > 0, shape > 0 and cap_ms >= scale_ms".into())
                }
            }
            LatencyDist::Constant { ms } => {
                if *ms >= 0.0 && ms.is_finite() {
                    Ok(())
                } else {
                    Err(format!("constant ms must be >= 0, got {ms}"))
                }
            }
        }
    }

    /// A ready-to-draw sampler; panics only on parameters [`LatencyDist::validate`] rejects.
    pub fn sampler(&self) -> Sampler {
        let ln = |s: &LogNormalSpec| {
            LogNormal::new(s.median_ms.ln(), s.sigma).expect("validated lognormal")
        };
        match *self {
            LatencyDist::Lognormal(s) => Sampler::LogNormal(ln(&s)),
            LatencyDist::Bimodal { a, b, p_b } => Sampler::Bimodal(ln(&a), ln(&b), p_b),
            LatencyDist::Pareto {
                scale_ms,
                shape,
                cap_ms,
            } => Sampler::Pareto(
                Pareto::new(scale_ms, shape).expect("validated pareto"),
                cap_ms,
            ),
            LatencyDist::Constant { ms } => Sampler::Constant(ms),
        }
    }
}

/// A [`LatencyDist`] with its distributions constructed once.
#[derive(Debug, Clone, Copy)]
pub enum Sampler {
    LogNormal(LogNormal<f64>),
    Bimodal(LogNormal<f64>, LogNormal<f64>, f64),
    Pareto(Pareto<f64>, f64),
    Constant(f64),
}

impl Sampler {
    /// One latency in milliseconds.
    pub fn sample_ms<R: Rng + ?Sized>(&self, rng: &mut R) -> f64 {
        match self {
            Sampler::LogNormal(d) => d.sample(rng),
            Sampler::Bimodal(a, b, p) => {
                if rng.random::<f64>() < *p {
                    b.sample(rng)
                } else {
                    a.sample(rng)
                }
            }
            Sampler::Pareto(d, cap) => d.sample(rng).min(*cap),
            Sampler::Constant(ms) => *ms,
        }
    }
}
