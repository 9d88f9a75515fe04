//! Configuration: the YAML file format, its embedded defaults, and validation into the runtime
//! [`Config`] that the rest of the program reads.
//!
//! - [`file`]: what a person writes (unknown fields rejected; every default written once);
//! - [`validate`](mod@validate): the checks serde cannot express, and the translation into runtime values;
//! - [`locate`](mod@locate): the line of a field path, so every error says file, line and field;
//! - [`reload`](mod@reload): what a reload of a running server's file applies, and what waits
//!   for a restart.
//!
//! Architecture invariant: only `config/` and `slogate config show` read the file format; the
//! server, the API and the CLI see the validated [`Config`] (durations as `Duration`, selectors
//! as pairs, gates as `slogate_gate` specs).

mod file;
mod locate;
mod metrics;
mod reload;
mod validate;
pub use metrics::{
    Divisor, MetricQuery, MetricSelect, SelectFields, SpanCount, select, select_label,
};

pub use file::{FileConfig, HistoryS3Section};
use locate::locate;
use slogate_ingest::IngestLimits;
use slogate_ingest::extract::ExtractConfig;
use slogate_window::WindowConfig;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
pub use validate::MAX_LOOKS;
pub(crate) use validate::stored_problem;

/// The annotated example, which is also what `slogate serve` runs without a file.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../../../deploy/slogate.yaml");

/// The key of a gate's `baseline` map (and of a verdict request's `baseline.` parameters) that
/// names a stored baseline instead of a cohort dimension.
pub const STORED_BASELINE_KEY: &str = "stored";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}:{line}:{column}: {message}")]
    Parse {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{file}{}: {field}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid {
        file: String,
        line: Option<usize>,
        field: String,
        message: String,
    },
}

/// The validated runtime configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from, or `<embedded default>`.
    pub source: String,
    pub server: ServerConfig,
    pub extract: ExtractConfig,
    pub limits: IngestLimits,
    /// Per-span limits (`ingest.max_span_duration`).
    pub span_limits: slogate_ingest::SpanLimits,
    pub window: WindowConfig,
    /// The OTLP metric store.
    pub metrics: slogate_metrics::MetricStoreConfig,
    pub gates: Vec<GateConfig>,
    pub slos: Vec<SloConfig>,
    pub burn_tiers: Vec<slogate_gate::BurnTier>,
    pub rules: Vec<ThresholdRule>,
    pub alerting: AlertingConfig,
    /// `None` when PagerDuty delivery is off.
    pub pagerduty: Option<PagerDutyConfig>,
    /// Slack and webhook destinations.
    pub notifications: NotificationsConfig,
    pub history: HistoryConfig,
    pub auth: AuthConfig,
    /// The file as parsed, for `slogate config show` only.
    file: FileConfig,
}

/// Listeners and their limits.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub otlp_grpc: SocketAddr,
    pub otlp_http: SocketAddr,
    pub http: SocketAddr,
    pub shutdown_grace: Duration,
    /// A connection on any listener must start a request within this of being accepted (TLS
    /// handshake included); on the HTTP listeners every request head must arrive within it.
    pub header_read_timeout: Duration,
    /// Open connections per HTTP listener (OTLP/HTTP, API).
    pub max_connections: usize,
    /// Open connections on the OTLP/gRPC listener.
    pub grpc_max_connections: usize,
    /// Connections with no request in flight this long are closed (every listener).
    pub idle_timeout: Duration,
    /// An OTLP/HTTP request body must fully arrive within this of its head.
    pub body_read_timeout: Duration,
    pub grpc_keepalive: bool,
    pub grpc_max_concurrent_streams: u32,
    /// `None`: plain TCP on every listener.
    pub tls: Option<TlsConfig>,
}

/// TLS on the three listeners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Mutual TLS: client certificates must chain to these CAs.
    pub client_ca_file: Option<PathBuf>,
}

/// Bearer-token files per role; an empty list means that side is open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthConfig {
    pub ingest: Vec<PathBuf>,
    pub api_read: Vec<PathBuf>,
    pub api_admin: Vec<PathBuf>,
}

/// Alert evaluation.
#[derive(Debug, Clone)]
pub struct AlertingConfig {
    pub evaluation_interval: Duration,
    /// A rule's long window needs this many requests before it may fire.
    pub min_requests: u64,
    /// The tier of gate-failure alerts; `None` when they are off.
    pub gate_failures: Option<slogate_gate::Tier>,
    /// A firing gate-failure alert without a verdict for this long resolves.
    pub gate_failures_resolve_after: Duration,
    /// Base URL of the links put in notifications.
    pub link_base_url: String,
}

/// PagerDuty delivery, when enabled.
#[derive(Debug, Clone)]
pub struct PagerDutyConfig {
    pub url: String,
    pub routing_key: SecretSource,
    pub outbox_dir: PathBuf,
    pub max_pending: usize,
    pub max_per_minute: u32,
    pub retry_min: Duration,
    pub retry_max: Duration,
}

/// Where a secret (a routing key, a webhook URL, a token) is read from: never the
/// configuration file itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    Env(String),
    File(PathBuf),
}

/// The Slack and webhook destinations that are on.
#[derive(Debug, Clone, Default)]
pub struct NotificationsConfig {
    pub slack: Option<DestinationConfig>,
    pub webhooks: Vec<DestinationConfig>,
}

/// One Slack or webhook destination.
#[derive(Debug, Clone, PartialEq)]
pub struct DestinationConfig {
    /// `slack`, or the webhook's name.
    pub name: String,
    /// The webhook's URL; `None` for Slack, whose URL is the secret.
    pub url: Option<String>,
    /// Slack's webhook URL, or a webhook's bearer token (optional there).
    pub secret: Option<SecretSource>,
    pub outbox_dir: PathBuf,
    pub max_pending: usize,
    pub max_per_minute: u32,
    pub retry_min: Duration,
    pub retry_max: Duration,
    pub alerts: bool,
    pub verdicts: bool,
    /// Alerts of this tier or more urgent are sent.
    pub min_tier: slogate_gate::Tier,
}

/// The Parquet history.
#[derive(Debug, Clone)]
pub struct HistoryConfig {
    pub enabled: bool,
    pub location: HistoryLocation,
    pub retention: Duration,
    pub compaction_interval: Duration,
    pub compact_after: Duration,
    pub flush_interval: Duration,
    pub max_buffered_rows: usize,
    pub reload: Duration,
    pub max_query_rows: usize,
    pub query_timeout: Duration,
    /// The SQL memory pool (`history.sql_memory_limit_bytes`).
    pub sql_limits: slogate_history::SqlLimits,
}

#[derive(Debug, Clone)]
pub enum HistoryLocation {
    Local(PathBuf),
    S3 { url: String, s3: HistoryS3Section },
}

impl HistoryConfig {
    /// The history root: the S3 prefix (credentials from the environment or the configured
    /// files, read now) or the local directory.
    pub fn store(&self) -> Result<slogate_history::Store, slogate_history::HistoryError> {
        match &self.location {
            HistoryLocation::Local(dir) => Ok(slogate_history::Store::local(dir)),
            HistoryLocation::S3 { url, s3 } => {
                let read = |p: &Path| {
                    std::fs::read_to_string(p)
                        .map(|s| s.trim().to_string())
                        .map_err(|source| slogate_history::HistoryError::Io {
                            path: p.to_path_buf(),
                            source,
                        })
                };
                let credentials = match (&s3.access_key_id_file, &s3.secret_access_key_file) {
                    (Some(id), Some(secret)) => Some((read(id)?, read(secret)?)),
                    _ => None,
                };
                let options = slogate_history::S3Options {
                    endpoint: s3.endpoint.clone(),
                    region: s3.region.clone(),
                    allow_http: s3.allow_http,
                    credentials,
                };
                slogate_history::Store::s3(url, &options)
            }
        }
    }
}

/// A validated SLO.
#[derive(Debug, Clone)]
pub struct SloConfig {
    pub spec: slogate_gate::SloSpec,
    pub service: String,
    pub selector: Vec<(String, String)>,
}

/// A validated threshold rule.
#[derive(Debug, Clone)]
pub struct ThresholdRule {
    pub name: String,
    pub service: String,
    pub selector: Vec<(String, String)>,
    pub metric: RuleMetric,
    /// The rule is active while the value is above `bound` (below it when `below`).
    pub bound: f64,
    pub below: bool,
    pub window_seconds: u64,
    pub for_seconds: u64,
    pub tier: slogate_gate::Tier,
}

/// What a threshold rule watches.
#[derive(Debug, Clone)]
pub enum RuleMetric {
    /// Error rate or a latency quantile of the selected spans.
    Span(slogate_gate::Metric),
    /// An OTLP metric.
    Otlp(MetricQuery),
}

/// A validated gate.
#[derive(Debug, Clone)]
pub struct GateConfig {
    pub name: String,
    pub service: String,
    pub operation: Option<String>,
    pub canary: Vec<(String, String)>,
    pub baseline: Vec<(String, String)>,
    /// The stored baseline the gate compares with (`baseline: {stored: NAME}`), instead of a
    /// live baseline cohort.
    pub baseline_stored: Option<String>,
    /// At least one; the first is the default phase.
    pub phases: Vec<PhaseConfig>,
    pub analysis: AnalysisConfig,
    /// For a gate carried in a verdict request: a fingerprint of its definition (16 hex
    /// digits), which keeps the state of two different definitions under one name apart.
    pub inline: Option<String>,
}

/// The validated `analysis:` section of a gate.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalysisConfig {
    pub alpha: f64,
    pub looks: u32,
    pub interval_seconds: u64,
    pub spending: slogate_gate::Spending,
    pub expire_seconds: u64,
}

#[derive(Debug, Clone)]
pub struct PhaseConfig {
    pub name: String,
    pub window_seconds: u64,
    pub spec: slogate_gate::GateSpec,
    /// What each OTLP metric criterion (by name) measures.
    pub measures: BTreeMap<String, MetricQuery>,
}

/// A gate or phase that is not configured.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LookupError {
    #[error("unknown gate {gate:?} in {file}; its gates are: {known}")]
    Gate {
        gate: String,
        file: String,
        known: String,
    },
    #[error("gate {gate:?} has no phase {phase:?}; its phases are {known}")]
    Phase {
        gate: String,
        phase: String,
        known: String,
    },
}

impl Config {
    /// Loads a file, or the embedded defaults when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        match path {
            Some(p) => {
                let file = p.display().to_string();
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    file: file.clone(),
                    source,
                })?;
                Config::parse(&text, &file)
            }
            None => Config::parse(EMBEDDED_DEFAULT, "<embedded default>"),
        }
    }

    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        // An empty file is the defaults, not a parse error.
        let text = if text.trim().is_empty() { "{}" } else { text };
        let parsed: FileConfig =
            serde_path_to_error::deserialize(serde_yaml_ng::Deserializer::from_str(text))
                .map_err(|e| parse_error(e, file))?;
        validate::validate(parsed, file, text)
    }

    /// The effective configuration as YAML (the file merged with the defaults): what
    /// `slogate config show` prints. Secrets are never in it: the file holds only where they are.
    pub fn effective_yaml(&self) -> Result<String, serde_yaml_ng::Error> {
        serde_yaml_ng::to_string(&self.file)
    }

    /// A gate carried in a verdict request (`POST /api/v1/gates/{name}/verdict` with
    /// `"gate": {...}`), validated exactly as a gate of the file is (the same function, against
    /// this configuration's windows, cohort dimensions and metric retention), within
    /// [`validate::INLINE_MAX_PHASES`] phases and [`validate::INLINE_MAX_CRITERIA`] criteria. Its name is `name`
    /// (the body may repeat it, not change it) and must not be a configured gate's. Errors name
    /// the field (`gate.criteria[0].pass`) in the request body.
    pub fn inline_gate(
        &self,
        name: &str,
        definition: &serde_json::Value,
    ) -> Result<GateConfig, ConfigError> {
        const BODY: &str = "request body";
        let invalid = |field: &str, message: String| ConfigError::Invalid {
            file: BODY.into(),
            line: None,
            field: field.into(),
            message,
        };
        let serde_json::Value::Object(fields) = definition else {
            return Err(invalid(
                "gate",
                "must be an object: the gate's service, criteria, phases... as in the configuration's gates".into(),
            ));
        };
        let mut fields = fields.clone();
        match fields.get("name") {
            None => {
                fields.insert("name".into(), name.into());
            }
            Some(serde_json::Value::String(n)) if n == name => {}
            Some(other) => {
                return Err(invalid(
                    "gate.name",
                    format!("{other} differs from the gate named in the URL ({name:?}); omit it"),
                ));
            }
        }
        if self.gates.iter().any(|g| g.name == name) {
            return Err(invalid(
                "gate.name",
                format!(
                    "{name:?} is a gate of {}; give the gate in the request a name of its own",
                    self.source
                ),
            ));
        }
        let parsed: file::GateFile =
            serde_path_to_error::deserialize(serde_json::Value::Object(fields)).map_err(|e| {
                let path = e.path().to_string();
                let field = if path == "." {
                    "gate".to_string()
                } else {
                    format!("gate.{path}")
                };
                invalid(&field, e.into_inner().to_string())
            })?;
        let mut gate = validate::validate_inline_gate(&self.file, &parsed, &invalid)?;
        gate.inline = Some(reload::fingerprint(&parsed));
        Ok(gate)
    }

    /// A gate and one of its phases (the first when `phase` is `None` or empty).
    pub fn gate_phase(
        &self,
        gate: &str,
        phase: Option<&str>,
    ) -> Result<(&GateConfig, &PhaseConfig), LookupError> {
        find_gate_phase(&self.gates, &self.source, gate, phase)
    }
}

/// A gate of `gates` and one of its phases (the first when `phase` is `None` or empty); the
/// one lookup the server's gates and the CLI's reports share. `source` names the file.
pub fn find_gate_phase<'a>(
    gates: &'a [GateConfig],
    source: &str,
    gate: &str,
    phase: Option<&str>,
) -> Result<(&'a GateConfig, &'a PhaseConfig), LookupError> {
    let names = |it: &mut dyn Iterator<Item = &str>| {
        let v: Vec<&str> = it.collect();
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    let g = gates
        .iter()
        .find(|g| g.name == gate)
        .ok_or_else(|| LookupError::Gate {
            gate: gate.into(),
            file: source.into(),
            known: names(&mut gates.iter().map(|g| g.name.as_str())),
        })?;
    let p = match phase.filter(|p| !p.is_empty()) {
        None => &g.phases[0],
        Some(name) => {
            g.phases
                .iter()
                .find(|p| p.name == name)
                .ok_or_else(|| LookupError::Phase {
                    gate: gate.into(),
                    phase: name.into(),
                    known: names(&mut g.phases.iter().map(|p| p.name.as_str())),
                })?
        }
    };
    Ok((g, p))
}

/// A serde error as `file:line:column: path: message`.
fn parse_error(e: serde_path_to_error::Error<serde_yaml_ng::Error>, file: &str) -> ConfigError {
    let path = e.path().to_string();
    let inner = e.into_inner();
    let (line, column) = inner.location().map_or((0, 0), |l| (l.line(), l.column()));
    // serde_yaml_ng appends " at line L column C" and may prefix a partial path; the position
    // goes first and the full field path comes from serde_path_to_error.
    let message = inner.to_string();
    let mut message = message
        .split(" at line ")
        .next()
        .unwrap_or(&message)
        .to_string();
    if let Some((prefix, rest)) = message.split_once(": ")
        && !prefix.contains(' ')
    {
        message = rest.to_string();
    }
    let message = if path == "." {
        message
    } else {
        format!("{path}: {message}")
    };
    ConfigError::Parse {
        file: file.to_string(),
        line,
        column,
        message,
    }
}

#[cfg(test)]
mod reference_tests;
#[cfg(test)]
mod tests;
