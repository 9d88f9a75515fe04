//! The scenario model: what to send, where, how fast, and how it changes over time.
//!
//! Scenarios are YAML files (unknown fields are errors, so a typo never silently falls back to
//! a default) or are built in code by integration tests.

use crate::latency::LatencyDist;
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// Errors of loading or validating a scenario.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: String,
        source: serde_yaml_ng::Error,
    },
    #[error("invalid scenario: {0}")]
    Invalid(String),
}

/// Wire protocol of the OTLP exporter being imitated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// OTLP/gRPC `TraceService/Export`.
    Grpc,
    /// OTLP/HTTP `POST /v1/traces` with `application/x-protobuf`.
    HttpProtobuf,
    /// OTLP/HTTP `POST /v1/traces` with `application/json`.
    HttpJson,
}

/// Where the spans go.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// `http://127.0.0.1:4317` for gRPC, `http://127.0.0.1:4318/v1/traces` for HTTP (a missing
    /// path gets `/v1/traces`).
    pub endpoint: String,
    #[serde(default = "default_protocol")]
    pub protocol: Protocol,
    #[serde(default)]
    pub gzip: bool,
}

fn default_protocol() -> Protocol {
    Protocol::Grpc
}

impl Default for Target {
    fn default() -> Self {
        Target {
            endpoint: "http://127.0.0.1:4317".into(),
            protocol: Protocol::Grpc,
            gzip: false,
        }
    }
}

/// Target send rate over all cohorts, in spans per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    /// As fast as the connections and the server allow.
    Max,
    PerSecond(f64),
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(f64),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Num(n) => Ok(Rate::PerSecond(n)),
            Raw::Str(s) => Rate::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

impl Rate {
    /// Parses `max`, `250000`, `250k` or `1.5M`.
    pub fn parse(s: &str) -> Result<Rate, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("max") {
            return Ok(Rate::Max);
        }
        let (num, mult) = match s.as_bytes().last() {
            Some(b'k' | b'K') => (&s[..s.len() - 1], 1e3),
            Some(b'm' | b'M') => (&s[..s.len() - 1], 1e6),
            _ => (s, 1.0),
        };
        num.trim()
            .parse::<f64>()
            .map(|n| Rate::PerSecond(n * mult))
            .map_err(|_| {
                format!(
                    "rate {s:?} is neither a number of spans/s (e.g. 250000, 250k, 1M) nor `max`"
                )
            })
    }
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s)
        .map_err(|e| serde::de::Error::custom(format!("duration {s:?}: {e}")))
}

/// One `method route` pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub method: String,
    pub route: String,
}

impl<'de> Deserialize<'de> for Operation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Pair {
            method: String,
            route: String,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            // "GET /cart/{id}" is the compact spelling.
            Str(String),
            Pair(Pair),
        }
        match Raw::deserialize(d)? {
            Raw::Str(s) => {
                let (m, r) = s.trim().split_once(' ').ok_or_else(|| {
                    serde::de::Error::custom(format!("operation {s:?} is not `METHOD /route`"))
                })?;
                Ok(Operation {
                    method: m.to_string(),
                    route: r.trim().to_string(),
                })
            }
            Raw::Pair(p) => Ok(Operation {
                method: p.method,
                route: p.route,
            }),
        }
    }
}

/// A cohort's operations: an explicit list, or a count N that generates `/api/op{i}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Operations {
    Count(usize),
    List(Vec<Operation>),
}

impl Default for Operations {
    fn default() -> Self {
        Operations::Count(8)
    }
}

impl Operations {
    /// The concrete list; generated routes cycle through the common methods.
    pub fn expand(&self) -> Vec<Operation> {
        match self {
            Operations::List(l) => l.clone(),
            Operations::Count(n) => (0..*n)
                .map(|i| Operation {
                    method: ["GET", "GET", "POST", "PUT", "DELETE"][i % 5].to_string(),
                    route: format!("/api/op{i}"),
                })
                .collect(),
        }
    }
}

/// One (service, env, version) population with its traffic share and behaviour.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CohortSpec {
    /// Used by phase overrides and reports; defaults to `service@version`.
    #[serde(default)]
    pub name: Option<String>,
    pub service: String,
    #[serde(default = "default_env")]
    pub env: String,
    pub version: String,
    #[serde(default)]
    pub operations: Operations,
    /// Share of the traffic, relative to the other cohorts' weights.
    #[serde(default = "one")]
    pub weight: f64,
    pub latency: LatencyDist,
    /// Fraction of spans that are errors, in [0, 1].
    #[serde(default)]
    pub error_rate: f64,
    /// Pods the spans are spread over (each pooled request comes from one pod).
    #[serde(default = "default_pods")]
    pub pods: usize,
    /// `telemetry.sdk.language`; defaults to one picked from the service name.
    #[serde(default)]
    pub sdk_language: Option<String>,
}

fn default_env() -> String {
    "prod".into()
}
fn one() -> f64 {
    1.0
}
fn default_pods() -> usize {
    3
}

impl CohortSpec {
    /// A cohort with defaults: env `prod`, 8 generated operations, weight 1, no errors.
    pub fn new(service: &str, version: &str, latency: LatencyDist) -> CohortSpec {
        CohortSpec {
            name: None,
            service: service.into(),
            env: default_env(),
            version: version.into(),
            operations: Operations::default(),
            weight: 1.0,
            latency,
            error_rate: 0.0,
            pods: default_pods(),
            sdk_language: None,
        }
    }
    pub fn display_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("{}@{}", self.service, self.version))
    }
}

/// What a phase changes for one cohort; unset fields keep the cohort's own values.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CohortOverride {
    #[serde(default)]
    pub weight: Option<f64>,
    #[serde(default)]
    pub error_rate: Option<f64>,
    /// Multiplies every drawn latency (1.4 = +40% at every quantile).
    #[serde(default)]
    pub latency_multiplier: Option<f64>,
}

/// A time segment starting `at` after the start and lasting until the next phase or the end.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(deserialize_with = "de_duration")]
    pub at: Duration,
    /// Total rate during the phase; unset keeps the scenario's rate.
    #[serde(default)]
    pub rate: Option<Rate>,
    /// Overrides keyed by cohort name (see [`CohortSpec::name`]).
    #[serde(default)]
    pub cohorts: BTreeMap<String, CohortOverride>,
}

/// A complete load scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub target: Target,
    /// TLS and headers for a secured target: from the command line or code, never from a
    /// scenario file (which would hold a token).
    #[serde(skip)]
    pub access: crate::transport::Access,
    /// Spans per export request.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// TCP connections (gRPC channels or HTTP/1.1 connections).
    #[serde(default = "default_connections")]
    pub connections: usize,
    /// Export requests in flight over all connections.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    pub rate: Rate,
    #[serde(deserialize_with = "de_duration")]
    pub duration: Duration,
    /// Pre-encoded requests per cohort and phase, replayed round-robin.
    #[serde(default = "default_pool")]
    pub pool_size: usize,
    /// Seed of every random draw: the same scenario and seed send the same bytes.
    #[serde(default = "default_seed")]
    pub seed: u64,
    pub cohorts: Vec<CohortSpec>,
    #[serde(default)]
    pub phases: Vec<Phase>,
}

fn default_batch() -> usize {
    512
}
fn default_connections() -> usize {
    4
}
fn default_concurrency() -> usize {
    16
}
fn default_pool() -> usize {
    32
}
fn default_seed() -> u64 {
    0x0510_6a7e
}

impl Scenario {
    /// A scenario with defaults for everything but what must be chosen.
    pub fn new(
        target: Target,
        rate: Rate,
        duration: Duration,
        cohorts: Vec<CohortSpec>,
    ) -> Scenario {
        Scenario {
            name: None,
            description: None,
            target,
            access: Default::default(),
            batch_size: default_batch(),
            connections: default_connections(),
            concurrency: default_concurrency(),
            rate,
            duration,
            pool_size: default_pool(),
            seed: default_seed(),
            cohorts,
            phases: Vec::new(),
        }
    }

    pub fn from_yaml(text: &str, path: &str) -> Result<Scenario, ScenarioError> {
        let s: Scenario = serde_yaml_ng::from_str(text).map_err(|source| ScenarioError::Parse {
            path: path.into(),
            source,
        })?;
        s.validate()?;
        Ok(s)
    }

    pub fn from_file(path: impl AsRef<Path>) -> Result<Scenario, ScenarioError> {
        let path = path.as_ref();
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: p.clone(),
            source,
        })?;
        Scenario::from_yaml(&text, &p)
    }

    /// Checks what serde cannot: ranges, names and ordering.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        let bad = |m: String| Err(ScenarioError::Invalid(m));
        if self.cohorts.is_empty() {
            return bad("no cohorts".into());
        }
        if self.batch_size == 0
            || self.connections == 0
            || self.concurrency == 0
            || self.pool_size == 0
        {
            return bad(
                "batch_size, connections, concurrency and pool_size must be at least 1".into(),
            );
        }
        if self.duration.is_zero() {
            return bad("duration must be positive".into());
        }
        check_rate(self.rate)?;
        let mut names = std::collections::HashSet::new();
        for c in &self.cohorts {
            let n = c.display_name();
            if !names.insert(n.clone()) {
                return bad(format!(
                    "two cohorts are named {n:?}; give them distinct `name`s"
                ));
            }
            if c.service.is_empty() {
                return bad(format!("cohort {n}: empty service"));
            }
            if !(c.weight >= 0.0 && c.weight.is_finite()) {
                return bad(format!("cohort {n}: weight must be >= 0"));
            }
            if !(0.0..=1.0).contains(&c.error_rate) {
                return bad(format!("cohort {n}: error_rate must be in [0, 1]"));
            }
            if c.operations.expand().is_empty() {
                return bad(format!("cohort {n}: no operations"));
            }
            if c.pods == 0 {
                return bad(format!("cohort {n}: pods must be at least 1"));
            }
            c.latency
                .validate()
                .map_err(|e| ScenarioError::Invalid(format!("cohort {n}: {e}")))?;
        }
        if self.cohorts.iter().map(|c| c.weight).sum::<f64>() <= 0.0
            && self.phases.iter().all(|p| p.at > Duration::ZERO)
        {
            return bad("the cohorts' weights add up to 0".into());
        }
        let mut last = None;
        for p in &self.phases {
            let label = p
                .name
                .clone()
                .unwrap_or_else(|| format!("at {}", humantime::format_duration(p.at)));
            if last.is_some_and(|l| p.at <= l) {
                return bad(format!(
                    "phase {label}: phases must be in increasing `at` order"
                ));
            }
            last = Some(p.at);
            if p.at >= self.duration {
                return bad(format!(
                    "phase {label}: starts at or after the end of the scenario"
                ));
            }
            if let Some(r) = p.rate {
                check_rate(r)?;
            }
            for (name, o) in &p.cohorts {
                if !names.contains(name) {
                    return bad(format!(
                        "phase {label}: no cohort named {name:?} (names: {:?})",
                        names
                    ));
                }
                if o.weight.is_some_and(|w| !(w >= 0.0 && w.is_finite())) {
                    return bad(format!("phase {label}, cohort {name}: weight must be >= 0"));
                }
                if o.error_rate.is_some_and(|e| !(0.0..=1.0).contains(&e)) {
                    return bad(format!(
                        "phase {label}, cohort {name}: error_rate must be in [0, 1]"
                    ));
                }
                if o.latency_multiplier
                    .is_some_and(|m| !(m > 0.0 && m.is_finite()))
                {
                    return bad(format!(
                        "phase {label}, cohort {name}: latency_multiplier must be positive"
                    ));
                }
            }
        }
        Ok(())
    }

    /// The time segments: the base settings from 0 (unless a phase starts at 0) and then each
    /// phase, each with its effective rate and per-cohort settings.
    pub fn segments(&self) -> Vec<Segment> {
        let base: Vec<CohortSettings> = self
            .cohorts
            .iter()
            .map(|c| CohortSettings {
                weight: c.weight,
                error_rate: c.error_rate,
                latency_multiplier: 1.0,
            })
            .collect();
        let mut out = Vec::new();
        if self.phases.first().is_none_or(|p| p.at > Duration::ZERO) {
            out.push(Segment {
                name: "base".into(),
                start: Duration::ZERO,
                rate: self.rate,
                cohorts: base.clone(),
            });
        }
        for (i, p) in self.phases.iter().enumerate() {
            let cohorts = self
                .cohorts
                .iter()
                .zip(&base)
                .map(|(c, b)| match p.cohorts.get(&c.display_name()) {
                    None => *b,
                    Some(o) => CohortSettings {
                        weight: o.weight.unwrap_or(b.weight),
                        error_rate: o.error_rate.unwrap_or(b.error_rate),
                        latency_multiplier: o.latency_multiplier.unwrap_or(1.0),
                    },
                })
                .collect();
            out.push(Segment {
                name: p.name.clone().unwrap_or_else(|| format!("phase{i}")),
                start: p.at,
                rate: p.rate.unwrap_or(self.rate),
                cohorts,
            });
        }
        out
    }
}

fn check_rate(r: Rate) -> Result<(), ScenarioError> {
    match r {
        Rate::PerSecond(n) if !(n > 0.0 && n.is_finite()) => {
            Err(ScenarioError::Invalid(format!("rate {n} must be positive")))
        }
        _ => Ok(()),
    }
}

/// A cohort's effective settings within one segment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CohortSettings {
    pub weight: f64,
    pub error_rate: f64,
    pub latency_multiplier: f64,
}

/// One stretch of time with fixed settings.
#[derive(Debug, Clone)]
pub struct Segment {
    pub name: String,
    pub start: Duration,
    pub rate: Rate,
    pub cohorts: Vec<CohortSettings>,
}
