//! Configuration: the YAML file format (unknown fields rejected, errors with file, line and
//! field), its embedded defaults, and validation into the runtime [`Config`].
//!
//! The file format ([`FileConfig`]) and the runtime struct ([`Config`]) are separate so that
//! defaults live in one place (`deploy/slogate.yaml` is embedded as the defaults' documentation
//! and parsed by a test) and the rest of the program only sees validated values.

use serde::{Deserialize, Deserializer, Serialize};
use slogate_ingest::IngestLimits;
use slogate_ingest::extract::ExtractConfig;
use slogate_window::WindowConfig;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// The annotated example, which is also what `slogate serve` runs without a file.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../../deploy/slogate.yaml");

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

/// A duration written as `10s`, `5m`, `1h30m`, `3d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct HumanDuration(pub Duration);

impl From<HumanDuration> for String {
    fn from(d: HumanDuration) -> String {
        humantime::format_duration(d.0).to_string()
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(s.trim())
            .map(HumanDuration)
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "invalid duration {s:?} ({e}); write e.g. 10s, 5m, 1h, 3d"
                ))
            })
    }
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub ingest: IngestSection,
    #[serde(default)]
    pub cohorts: CohortSection,
    #[serde(default)]
    pub windows: WindowSection,
    #[serde(default)]
    pub limits: LimitSection,
    #[serde(default)]
    pub gates: Vec<GateFile>,
    #[serde(default)]
    pub slos: Vec<SloFile>,
    #[serde(default)]
    pub alerting: AlertingSection,
    #[serde(default)]
    pub pagerduty: PagerDutySection,
    #[serde(default)]
    pub history: HistorySection,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HistorySection {
    /// Every closed slot of every series is kept as Parquet for SQL, and reloaded on start.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Local directory of the history (when `url` is not set).
    #[serde(default = "HistorySection::default_dir")]
    pub dir: std::path::PathBuf,
    /// `s3://bucket/prefix`: keep the history on S3 or an S3-compatible server instead of `dir`.
    /// Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, never from this file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default)]
    pub s3: HistoryS3Section,
    /// Hour partitions older than this are deleted by a background task.
    #[serde(default = "HistorySection::default_retention")]
    pub retention: HumanDuration,
    /// How often closed hour partitions are compacted (one file per hour) and retention applied.
    #[serde(default = "HistorySection::default_compaction_interval")]
    pub compaction_interval: HumanDuration,
    /// An hour partition is compacted once its hour ended this long ago.
    #[serde(default = "HistorySection::default_compact_after")]
    pub compact_after: HumanDuration,
    /// Buffered rows are written as Parquet files this often (and on shutdown).
    #[serde(default = "HistorySection::default_flush")]
    pub flush_interval: HumanDuration,
    /// Rows buffered before a flush; past this, closed slots are counted as dropped from history
    /// (they stay in the live windows).
    #[serde(default = "HistorySection::default_max_rows")]
    pub max_buffered_rows: usize,
    /// On start, this much recent history is loaded back into the live windows.
    #[serde(default = "HistorySection::default_reload")]
    pub reload: HumanDuration,
    #[serde(default = "HistorySection::default_query_rows")]
    pub max_query_rows: usize,
    #[serde(default = "HistorySection::default_query_timeout")]
    pub query_timeout: HumanDuration,
}

/// The S3-compatible endpoint of `history.url`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryS3Section {
    /// e.g. `http://minio:9000`; AWS (or AWS_ENDPOINT) when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// AWS_REGION (or us-east-1) when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Allow a plain-HTTP endpoint.
    #[serde(default)]
    pub allow_http: bool,
    /// Files holding the access key id and the secret (e.g. a mounted Kubernetes secret); both
    /// or neither. Without them: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id_file: Option<std::path::PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key_file: Option<std::path::PathBuf>,
}

impl HistorySection {
    fn default_dir() -> std::path::PathBuf {
        "slogate-data/history".into()
    }
    fn default_retention() -> HumanDuration {
        HumanDuration(Duration::from_secs(30 * 86_400))
    }
    fn default_compaction_interval() -> HumanDuration {
        HumanDuration(Duration::from_secs(600))
    }
    fn default_compact_after() -> HumanDuration {
        HumanDuration(Duration::from_secs(600))
    }

    /// The history root: `url` on S3 when set (credentials from the environment), else `dir`.
    pub fn store(&self) -> Result<slogate_history::Store, slogate_history::HistoryError> {
        match &self.url {
            Some(url) => {
                let read = |p: &std::path::Path| {
                    std::fs::read_to_string(p)
                        .map(|s| s.trim().to_string())
                        .map_err(|source| slogate_history::HistoryError::Io {
                            path: p.to_path_buf(),
                            source,
                        })
                };
                let credentials =
                    match (&self.s3.access_key_id_file, &self.s3.secret_access_key_file) {
                        (Some(id), Some(secret)) => Some((read(id)?, read(secret)?)),
                        _ => None,
                    };
                let options = slogate_history::S3Options {
                    endpoint: self.s3.endpoint.clone(),
                    region: self.s3.region.clone(),
                    allow_http: self.s3.allow_http,
                    credentials,
                };
                slogate_history::Store::s3(url, &options)
            }
            None => Ok(slogate_history::Store::local(&self.dir)),
        }
    }
    fn default_flush() -> HumanDuration {
        HumanDuration(Duration::from_secs(60))
    }
    fn default_max_rows() -> usize {
        1_000_000
    }
    fn default_reload() -> HumanDuration {
        HumanDuration(Duration::from_secs(3600))
    }
    fn default_query_rows() -> usize {
        10_000
    }
    fn default_query_timeout() -> HumanDuration {
        HumanDuration(Duration::from_secs(30))
    }
}

impl Default for HistorySection {
    fn default() -> Self {
        HistorySection {
            enabled: true,
            dir: Self::default_dir(),
            url: None,
            s3: HistoryS3Section::default(),
            retention: Self::default_retention(),
            compaction_interval: Self::default_compaction_interval(),
            compact_after: Self::default_compact_after(),
            flush_interval: Self::default_flush(),
            max_buffered_rows: Self::default_max_rows(),
            reload: Self::default_reload(),
            max_query_rows: Self::default_query_rows(),
            query_timeout: Self::default_query_timeout(),
        }
    }
}

/// An SLO as written in the file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SloFile {
    pub name: String,
    pub service: String,
    /// Further dimension matchers (env, version, operation, extras).
    #[serde(default)]
    pub selector: std::collections::BTreeMap<String, String>,
    /// Target fraction of good requests, e.g. 0.999.
    pub objective: f64,
    /// With a threshold, good also means at most this slow (a latency SLO).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_threshold: Option<HumanDuration>,
    #[serde(default = "SloFile::default_period")]
    pub period: HumanDuration,
}

impl SloFile {
    fn default_period() -> HumanDuration {
        HumanDuration(Duration::from_secs(30 * 86400))
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BurnRateFile {
    pub tier: slogate_gate::Tier,
    pub factor: f64,
    pub long: HumanDuration,
    pub short: HumanDuration,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdRuleFile {
    pub name: String,
    pub service: String,
    #[serde(default)]
    pub selector: std::collections::BTreeMap<String, String>,
    /// `error_rate` or `latency_pNN` (milliseconds).
    pub metric: String,
    /// The rule is active while the metric is above this value.
    pub above: f64,
    #[serde(default = "ThresholdRuleFile::default_window")]
    pub window: HumanDuration,
    /// How long the condition must hold before the alert fires.
    #[serde(default = "ThresholdRuleFile::default_for", rename = "for")]
    pub for_: HumanDuration,
    pub tier: slogate_gate::Tier,
}

impl ThresholdRuleFile {
    fn default_window() -> HumanDuration {
        HumanDuration(Duration::from_secs(300))
    }
    fn default_for() -> HumanDuration {
        HumanDuration(Duration::from_secs(300))
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GateFailureAlerts {
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default = "GateFailureAlerts::default_tier")]
    pub tier: slogate_gate::Tier,
}

impl GateFailureAlerts {
    fn default_tier() -> slogate_gate::Tier {
        slogate_gate::Tier::P2
    }
}

impl Default for GateFailureAlerts {
    fn default() -> Self {
        GateFailureAlerts {
            enabled: true,
            tier: Self::default_tier(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AlertingSection {
    #[serde(default = "AlertingSection::default_interval")]
    pub evaluation_interval: HumanDuration,
    /// A rule's long window needs this many requests before it may fire: low traffic never pages.
    #[serde(default = "AlertingSection::default_min_requests")]
    pub min_requests: u64,
    /// Multi-window burn-rate tiers applied to every SLO (Google SRE Workbook by default).
    #[serde(default = "AlertingSection::default_burn_rates")]
    pub burn_rates: Vec<BurnRateFile>,
    #[serde(default)]
    pub rules: Vec<ThresholdRuleFile>,
    #[serde(default)]
    pub gate_failures: GateFailureAlerts,
}

impl AlertingSection {
    fn default_interval() -> HumanDuration {
        HumanDuration(Duration::from_secs(30))
    }
    fn default_min_requests() -> u64 {
        100
    }
    fn default_burn_rates() -> Vec<BurnRateFile> {
        slogate_gate::BurnTier::workbook_defaults()
            .into_iter()
            .map(|t| BurnRateFile {
                tier: t.tier,
                factor: t.factor,
                long: HumanDuration(Duration::from_secs(t.long_seconds)),
                short: HumanDuration(Duration::from_secs(t.short_seconds)),
            })
            .collect()
    }
}

impl Default for AlertingSection {
    fn default() -> Self {
        AlertingSection {
            evaluation_interval: Self::default_interval(),
            min_requests: Self::default_min_requests(),
            burn_rates: Self::default_burn_rates(),
            rules: Vec::new(),
            gate_failures: GateFailureAlerts::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PagerDutySection {
    /// Off by default: alerts are still evaluated and shown at /api/v1/alerts.
    #[serde(default)]
    pub enabled: bool,
    #[serde(default = "PagerDutySection::default_url")]
    pub url: String,
    /// The routing key is read from this environment variable...
    #[serde(default = "PagerDutySection::default_env")]
    pub routing_key_env: String,
    /// ...or from this file; it is never written to logs, disk or `config show`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_key_file: Option<std::path::PathBuf>,
    /// Notifications are written here (fsync'd) before the first send and removed after a 202.
    #[serde(default = "PagerDutySection::default_outbox")]
    pub outbox_dir: std::path::PathBuf,
    #[serde(default = "PagerDutySection::default_max_pending")]
    pub max_pending: usize,
    #[serde(default = "PagerDutySection::default_rate")]
    pub max_per_minute: u32,
    /// Base URL put in the `links` of each event (the dashboard, verdict or SLO page).
    #[serde(default = "PagerDutySection::default_link")]
    pub link_base_url: String,
    /// Retries after 429, 5xx or a network error back off exponentially with jitter, between
    /// these bounds.
    #[serde(default = "PagerDutySection::default_retry_min")]
    pub retry_min: HumanDuration,
    #[serde(default = "PagerDutySection::default_retry_max")]
    pub retry_max: HumanDuration,
}

impl PagerDutySection {
    fn default_url() -> String {
        "https://events.pagerduty.com".into()
    }
    fn default_env() -> String {
        "SLOGATE_PAGERDUTY_ROUTING_KEY".into()
    }
    fn default_outbox() -> std::path::PathBuf {
        "slogate-data/outbox".into()
    }
    fn default_max_pending() -> usize {
        10_000
    }
    fn default_rate() -> u32 {
        120
    }
    fn default_link() -> String {
        "http://localhost:8080".into()
    }
    fn default_retry_min() -> HumanDuration {
        HumanDuration(Duration::from_secs(1))
    }
    fn default_retry_max() -> HumanDuration {
        HumanDuration(Duration::from_secs(60))
    }
}

impl Default for PagerDutySection {
    fn default() -> Self {
        PagerDutySection {
            enabled: false,
            url: Self::default_url(),
            routing_key_env: Self::default_env(),
            routing_key_file: None,
            outbox_dir: Self::default_outbox(),
            max_pending: Self::default_max_pending(),
            max_per_minute: Self::default_rate(),
            link_base_url: Self::default_link(),
            retry_min: Self::default_retry_min(),
            retry_max: Self::default_retry_max(),
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
    pub metric: slogate_gate::Metric,
    pub above: f64,
    pub window_seconds: u64,
    pub for_seconds: u64,
    pub tier: slogate_gate::Tier,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    #[serde(default = "ServerSection::default_grpc")]
    pub otlp_grpc: SocketAddr,
    #[serde(default = "ServerSection::default_http")]
    pub otlp_http: SocketAddr,
    #[serde(default = "ServerSection::default_api")]
    pub http: SocketAddr,
    #[serde(default = "ServerSection::default_shutdown")]
    pub shutdown_grace: HumanDuration,
    /// OTLP/HTTP and API connections whose request head has not arrived this long after the
    /// connection opened (or the previous request ended) are closed: slow-loris protection.
    #[serde(default = "ServerSection::default_header_read_timeout")]
    pub header_read_timeout: HumanDuration,
    /// Open connections per HTTP listener (OTLP/HTTP, API); more wait in the accept queue.
    #[serde(default = "ServerSection::default_max_connections")]
    pub max_connections: usize,
}

impl ServerSection {
    fn default_grpc() -> SocketAddr {
        "0.0.0.0:4317".parse().expect("valid")
    }
    fn default_http() -> SocketAddr {
        "0.0.0.0:4318".parse().expect("valid")
    }
    fn default_api() -> SocketAddr {
        "0.0.0.0:8080".parse().expect("valid")
    }
    fn default_shutdown() -> HumanDuration {
        HumanDuration(Duration::from_secs(10))
    }
    fn default_header_read_timeout() -> HumanDuration {
        HumanDuration(Duration::from_secs(10))
    }
    fn default_max_connections() -> usize {
        4096
    }
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            otlp_grpc: Self::default_grpc(),
            otlp_http: Self::default_http(),
            http: Self::default_api(),
            shutdown_grace: Self::default_shutdown(),
            header_read_timeout: Self::default_header_read_timeout(),
            max_connections: Self::default_max_connections(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSection {
    #[serde(default = "IngestSection::default_max_request_bytes")]
    pub max_request_bytes: usize,
    #[serde(default = "IngestSection::default_inflight")]
    pub max_inflight_requests: usize,
    #[serde(default = "IngestSection::default_retry_after")]
    pub retry_after: HumanDuration,
    #[serde(default = "IngestSection::default_kinds")]
    pub span_kinds: Vec<String>,
    #[serde(default = "default_true")]
    pub grpc_keepalive: bool,
    #[serde(default = "IngestSection::default_streams")]
    pub grpc_max_concurrent_streams: u32,
}

impl IngestSection {
    fn default_max_request_bytes() -> usize {
        64 << 20
    }
    fn default_inflight() -> usize {
        256
    }
    fn default_retry_after() -> HumanDuration {
        HumanDuration(Duration::from_secs(1))
    }
    fn default_kinds() -> Vec<String> {
        vec!["server".into(), "consumer".into()]
    }
    fn default_streams() -> u32 {
        256
    }
}

impl Default for IngestSection {
    fn default() -> Self {
        IngestSection {
            max_request_bytes: Self::default_max_request_bytes(),
            max_inflight_requests: Self::default_inflight(),
            retry_after: Self::default_retry_after(),
            span_kinds: Self::default_kinds(),
            grpc_keepalive: true,
            grpc_max_concurrent_streams: Self::default_streams(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CohortSection {
    #[serde(default = "CohortSection::default_service")]
    pub service: Vec<String>,
    #[serde(default = "CohortSection::default_env")]
    pub env: Vec<String>,
    #[serde(default = "CohortSection::default_version")]
    pub version: Vec<String>,
    #[serde(default)]
    pub extra: Vec<ExtraDim>,
}

impl CohortSection {
    fn default_service() -> Vec<String> {
        vec!["service.name".into()]
    }
    fn default_env() -> Vec<String> {
        vec![
            "deployment.environment.name".into(),
            "deployment.environment".into(),
        ]
    }
    fn default_version() -> Vec<String> {
        vec!["service.version".into()]
    }
}

impl Default for CohortSection {
    fn default() -> Self {
        CohortSection {
            service: Self::default_service(),
            env: Self::default_env(),
            version: Self::default_version(),
            extra: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExtraDim {
    pub name: String,
    pub attributes: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSection {
    #[serde(default = "WindowSection::default_slot")]
    pub slot: HumanDuration,
    #[serde(default = "WindowSection::default_fine")]
    pub fine_retention: HumanDuration,
    #[serde(default = "WindowSection::default_coarse_slot")]
    pub coarse_slot: HumanDuration,
    #[serde(default = "WindowSection::default_coarse")]
    pub coarse_retention: HumanDuration,
}

impl WindowSection {
    fn default_slot() -> HumanDuration {
        HumanDuration(Duration::from_secs(10))
    }
    fn default_fine() -> HumanDuration {
        HumanDuration(Duration::from_secs(3600))
    }
    fn default_coarse_slot() -> HumanDuration {
        HumanDuration(Duration::from_secs(300))
    }
    fn default_coarse() -> HumanDuration {
        HumanDuration(Duration::from_secs(3 * 86400))
    }
}

impl Default for WindowSection {
    fn default() -> Self {
        WindowSection {
            slot: Self::default_slot(),
            fine_retention: Self::default_fine(),
            coarse_slot: Self::default_coarse_slot(),
            coarse_retention: Self::default_coarse(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSection {
    #[serde(default = "LimitSection::default_per_service")]
    pub max_series_per_service: usize,
    #[serde(default = "LimitSection::default_total")]
    pub max_series: usize,
}

impl LimitSection {
    fn default_per_service() -> usize {
        2000
    }
    fn default_total() -> usize {
        100_000
    }
}

impl Default for LimitSection {
    fn default() -> Self {
        LimitSection {
            max_series_per_service: Self::default_per_service(),
            max_series: Self::default_total(),
        }
    }
}

/// A gate as written in the file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GateFile {
    pub name: String,
    pub service: String,
    /// Only spans of this operation count (e.g. `GET /cart/{id}`); all operations when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    #[serde(default = "GateFile::default_window")]
    pub window: HumanDuration,
    /// Requests each cohort needs before any criterion is judged.
    #[serde(default = "GateFile::default_min_requests")]
    pub min_requests: u64,
    /// Default canary selector (`version: v2`); a verdict request's `canary.<dim>` overrides it.
    #[serde(default)]
    pub canary: std::collections::BTreeMap<String, String>,
    /// Default baseline selector; a verdict request's `baseline.<dim>` overrides it. Or
    /// `{stored: NAME}`: the stored baseline NAME (`slogate baseline capture`).
    #[serde(default)]
    pub baseline: std::collections::BTreeMap<String, String>,
    /// Criteria every phase applies.
    #[serde(default)]
    pub criteria: Vec<CriterionFile>,
    /// Phases in rollout order, each adding criteria (a criterion of the same name replaces the
    /// gate-wide one). Without phases the gate has one phase, `default`.
    #[serde(default)]
    pub phases: Vec<PhaseFile>,
}

impl GateFile {
    fn default_window() -> HumanDuration {
        HumanDuration(Duration::from_secs(600))
    }
    fn default_min_requests() -> u64 {
        100
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PhaseFile {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<HumanDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_requests: Option<u64>,
    #[serde(default)]
    pub criteria: Vec<CriterionFile>,
}

/// One criterion as written: a threshold (`metric`, `compare`, `pass`, `fail`) or a statistical
/// test (`test: mann_whitney` with `confidence` and `max_effect`, `test: two_proportion` with
/// `confidence` and `max_difference`).
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CriterionFile {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compare: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_effect: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_difference: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_requests: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sustained: Option<HumanDuration>,
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
    pub phases: Vec<PhaseConfig>,
}

/// The key of a gate's `baseline` map (and of a verdict request's `baseline.` parameters) that
/// names a stored baseline instead of a cohort dimension.
pub const STORED_BASELINE_KEY: &str = "stored";

#[derive(Debug, Clone)]
pub struct PhaseConfig {
    pub name: String,
    pub window_seconds: u64,
    pub spec: slogate_gate::GateSpec,
}

/// Parses a metric name: `error_rate`, `request_rate`, `latency_p95`, `latency_p999`, ...
fn parse_metric(s: &str) -> Result<slogate_gate::Metric, String> {
    use slogate_gate::Metric;
    match s {
        "error_rate" => Ok(Metric::ErrorRate),
        "request_rate" => Ok(Metric::RequestRate),
        other => {
            let digits = other
                .strip_prefix("latency_p")
                .filter(|d| !d.is_empty() && d.len() <= 6 && d.bytes().all(|b| b.is_ascii_digit()));
            match digits {
                Some(d) => Ok(Metric::Latency {
                    quantile: format!("0.{d}")
                        .parse()
                        .map_err(|_| format!("bad quantile in {other:?}"))?,
                }),
                None => Err(format!(
                    "unknown metric {other:?}; use error_rate, request_rate or latency_pNN (latency_p50, latency_p95, latency_p999)"
                )),
            }
        }
    }
}

fn criterion_spec(
    c: &CriterionFile,
) -> Result<slogate_gate::CriterionSpec, (&'static str, String)> {
    use slogate_gate::{Check, Comparison, Direction};
    let check = match c.test.as_deref() {
        Some("mann_whitney") => Check::MannWhitney {
            confidence: c.confidence.unwrap_or(0.99),
            max_effect: c.max_effect.ok_or((
                "max_effect",
                "mann_whitney needs max_effect (probability of superiority, e.g. 0.55)".to_string(),
            ))?,
        },
        Some("two_proportion") => Check::TwoProportion {
            confidence: c.confidence.unwrap_or(0.99),
            max_difference: c.max_difference.ok_or((
                "max_difference",
                "two_proportion needs max_difference (e.g. 0.005 for +0.5 points)".to_string(),
            ))?,
        },
        Some(other) => {
            return Err((
                "test",
                format!("unknown test {other:?}; use mann_whitney or two_proportion"),
            ));
        }
        None => {
            let metric = parse_metric(
                c.metric
                    .as_deref()
                    .ok_or(("metric", "a threshold criterion needs a metric".to_string()))?,
            )
            .map_err(|e| ("metric", e))?;
            let comparison = match c.compare.as_deref().unwrap_or("absolute") {
                "absolute" => Comparison::Absolute,
                "ratio" => Comparison::Ratio,
                "difference" => Comparison::Difference,
                other => {
                    return Err((
                        "compare",
                        format!("unknown comparison {other:?}; use absolute, ratio or difference"),
                    ));
                }
            };
            let direction = match c.direction.as_deref() {
                None => None,
                Some("lower_is_better") => Some(Direction::LowerIsBetter),
                Some("higher_is_better") => Some(Direction::HigherIsBetter),
                Some(other) => {
                    return Err((
                        "direction",
                        format!(
                            "unknown direction {other:?}; use lower_is_better or higher_is_better"
                        ),
                    ));
                }
            };
            Check::Threshold {
                metric,
                comparison,
                pass: c.pass.ok_or((
                    "pass",
                    "a threshold criterion needs a pass bound".to_string(),
                ))?,
                fail: c.fail.ok_or((
                    "fail",
                    "a threshold criterion needs a fail bound".to_string(),
                ))?,
                direction,
            }
        }
    };
    let spec = slogate_gate::CriterionSpec {
        name: c.name.clone(),
        check,
        min_requests: c.min_requests,
        sustained_seconds: c.sustained.map(|d| d.0.as_secs()),
    };
    spec.validate().map_err(|e| ("name", e.to_string()))?;
    Ok(spec)
}

/// The validated runtime configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub source: String,
    pub file: FileConfig,
    pub extract: ExtractConfig,
    pub limits: IngestLimits,
    pub window: WindowConfig,
    pub gates: Vec<GateConfig>,
    pub slos: Vec<SloConfig>,
    pub burn_tiers: Vec<slogate_gate::BurnTier>,
    pub rules: Vec<ThresholdRule>,
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
        let parsed: FileConfig = serde_path_to_error::deserialize(
            serde_yaml_ng::Deserializer::from_str(text),
        )
        .map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let (line, column) = inner.location().map_or((0, 0), |l| (l.line(), l.column()));
            // serde_yaml_ng appends " at line L column C" and may prefix a partial path; the
            // position goes first and the full field path comes from serde_path_to_error.
            let message = inner.to_string();
            let mut message = message
                .split(" at line ")
                .next()
                .unwrap_or(&message)
                .to_string();
            if let Some((prefix, rest)) = message.split_once(": ") {
                if !prefix.contains(' ') {
                    message = rest.to_string();
                }
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
        })?;
        Config::validate(parsed, file, text)
    }

    fn validate(f: FileConfig, file: &str, text: &str) -> Result<Config, ConfigError> {
        let invalid = |field: &str, message: String| ConfigError::Invalid {
            file: file.into(),
            line: locate(text, field),
            field: field.into(),
            message,
        };
        let secs = |d: HumanDuration| d.0.as_secs();
        let w = &f.windows;
        if secs(w.slot) == 0 || w.slot.0.subsec_nanos() != 0 {
            return Err(invalid(
                "windows.slot",
                "must be a whole number of seconds, at least 1s".into(),
            ));
        }
        if secs(w.coarse_slot) < secs(w.slot) || secs(w.coarse_slot) % secs(w.slot) != 0 {
            return Err(invalid(
                "windows.coarse_slot",
                format!("must be a multiple of windows.slot ({}s)", secs(w.slot)),
            ));
        }
        if secs(w.fine_retention) < 60 || secs(w.fine_retention) < secs(w.slot) {
            return Err(invalid(
                "windows.fine_retention",
                "must be at least 1m and at least one slot".into(),
            ));
        }
        if secs(w.coarse_retention) < secs(w.fine_retention) {
            return Err(invalid(
                "windows.coarse_retention",
                "must be at least windows.fine_retention".into(),
            ));
        }
        let mut kinds_mask = 0u8;
        for (i, k) in f.ingest.span_kinds.iter().enumerate() {
            match ExtractConfig::kind_from_name(k) {
                Some(kind) => kinds_mask |= 1 << kind,
                None => {
                    return Err(invalid(
                        &format!("ingest.span_kinds[{i}]"),
                        format!(
                            "unknown span kind {k:?}; use server, consumer, client, producer or internal"
                        ),
                    ));
                }
            }
        }
        if kinds_mask == 0 {
            return Err(invalid(
                "ingest.span_kinds",
                "must name at least one span kind".into(),
            ));
        }
        if f.ingest.max_request_bytes < 1024 {
            return Err(invalid(
                "ingest.max_request_bytes",
                "must be at least 1024".into(),
            ));
        }
        if f.ingest.max_inflight_requests == 0 {
            return Err(invalid(
                "ingest.max_inflight_requests",
                "must be at least 1".into(),
            ));
        }
        for (name, keys) in [
            ("cohorts.service", &f.cohorts.service),
            ("cohorts.env", &f.cohorts.env),
            ("cohorts.version", &f.cohorts.version),
        ] {
            if keys.is_empty() && name == "cohorts.service" {
                return Err(invalid(name, "must name at least one attribute".into()));
            }
        }
        if f.cohorts.extra.len() > slogate_core::MAX_EXTRA_DIMS {
            return Err(invalid(
                "cohorts.extra",
                format!("at most {} extra dimensions", slogate_core::MAX_EXTRA_DIMS),
            ));
        }
        for (i, e) in f.cohorts.extra.iter().enumerate() {
            let valid_name = !e.name.is_empty()
                && e.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !valid_name || slogate_core::DIMENSIONS.contains(&e.name.as_str()) {
                return Err(invalid(
                    &format!("cohorts.extra[{i}].name"),
                    format!(
                        "{:?} must be lowercase [a-z0-9_] and not a built-in dimension",
                        e.name
                    ),
                ));
            }
            if e.attributes.is_empty() {
                return Err(invalid(
                    &format!("cohorts.extra[{i}].attributes"),
                    "must name at least one attribute".into(),
                ));
            }
        }
        if f.server.header_read_timeout.0.is_zero() {
            return Err(invalid(
                "server.header_read_timeout",
                "must be more than 0s".into(),
            ));
        }
        if f.server.max_connections == 0 {
            return Err(invalid(
                "server.max_connections",
                "must be at least 1".into(),
            ));
        }
        if f.limits.max_series_per_service == 0 || f.limits.max_series == 0 {
            return Err(invalid("limits", "series caps must be at least 1".into()));
        }
        let bytes = |v: &Vec<String>| v.iter().map(|s| s.as_bytes().to_vec()).collect::<Vec<_>>();
        let extract = ExtractConfig {
            service_keys: bytes(&f.cohorts.service),
            env_keys: bytes(&f.cohorts.env),
            version_keys: bytes(&f.cohorts.version),
            extras: f
                .cohorts
                .extra
                .iter()
                .map(|e| bytes(&e.attributes))
                .collect(),
            kinds_mask,
        };
        let limits = IngestLimits {
            max_request_bytes: f.ingest.max_request_bytes,
            max_inflight_requests: f.ingest.max_inflight_requests,
            retry_after: f.ingest.retry_after.0,
        };
        let window = WindowConfig {
            slot_seconds: secs(w.slot),
            fine_retention_seconds: secs(w.fine_retention),
            coarse_slot_seconds: secs(w.coarse_slot),
            coarse_retention_seconds: secs(w.coarse_retention),
            max_series_per_service: f.limits.max_series_per_service,
            max_series: f.limits.max_series,
            max_overflow_series_per_service: 8,
            extra_dims: f.cohorts.extra.iter().map(|e| e.name.clone()).collect(),
        };
        validate_history(&f.history, &invalid)?;
        let gates = validate_gates(&f, &invalid)?;
        let (slos, burn_tiers, rules) = validate_alerting(&f, &invalid)?;
        Ok(Config {
            source: file.to_string(),
            file: f,
            extract,
            limits,
            window,
            gates,
            slos,
            burn_tiers,
            rules,
        })
    }
}

fn validate_history(
    h: &HistorySection,
    invalid: &dyn Fn(&str, String) -> ConfigError,
) -> Result<(), ConfigError> {
    if let Some(url) = &h.url {
        if !url.starts_with("s3://") || url.len() <= "s3://".len() {
            return Err(invalid(
                "history.url",
                format!(
                    "{url:?} must be an s3://bucket/prefix url (use history.dir for a local directory)"
                ),
            ));
        }
    }
    if h.s3.access_key_id_file.is_some() != h.s3.secret_access_key_file.is_some() {
        return Err(invalid(
            "history.s3",
            "access_key_id_file and secret_access_key_file go together".into(),
        ));
    }
    if h.retention.0 < Duration::from_secs(3600) {
        return Err(invalid("history.retention", "must be at least 1h".into()));
    }
    if h.compaction_interval.0 < Duration::from_secs(1) {
        return Err(invalid(
            "history.compaction_interval",
            "must be at least 1s".into(),
        ));
    }
    Ok(())
}

fn check_dims(
    sel: &std::collections::BTreeMap<String, String>,
    extra: &[&str],
    field: &str,
    invalid: &dyn Fn(&str, String) -> ConfigError,
) -> Result<Vec<(String, String)>, ConfigError> {
    for dim in sel.keys() {
        if !["env", "version", "operation"].contains(&dim.as_str())
            && !extra.contains(&dim.as_str())
        {
            return Err(invalid(
                &format!("{field}.{dim}"),
                "unknown dimension; use env, version, operation or a configured extra".into(),
            ));
        }
    }
    Ok(sel.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

type Alerting = (
    Vec<SloConfig>,
    Vec<slogate_gate::BurnTier>,
    Vec<ThresholdRule>,
);

fn validate_alerting(
    f: &FileConfig,
    invalid: &dyn Fn(&str, String) -> ConfigError,
) -> Result<Alerting, ConfigError> {
    let extra: Vec<&str> = f.cohorts.extra.iter().map(|e| e.name.as_str()).collect();
    let coarse = f.windows.coarse_retention.0.as_secs();
    let mut slos = Vec::new();
    for (i, s) in f.slos.iter().enumerate() {
        let at = |field: &str| format!("slos[{i}].{field}");
        if s.name.is_empty()
            || !s
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            || f.slos[..i].iter().any(|o| o.name == s.name)
        {
            return Err(invalid(
                &at("name"),
                format!("{:?} must be unique and [A-Za-z0-9._-]", s.name),
            ));
        }
        if !(s.objective > 0.0 && s.objective < 1.0) {
            return Err(invalid(
                &at("objective"),
                format!(
                    "{} must be between 0 and 1 exclusive, e.g. 0.999",
                    s.objective
                ),
            ));
        }
        if s.period.0.as_secs() < 3600 {
            return Err(invalid(&at("period"), "must be at least 1h".into()));
        }
        let kind = match s.latency_threshold {
            Some(t) if t.0.is_zero() => {
                return Err(invalid(&at("latency_threshold"), "must be positive".into()));
            }
            Some(t) => slogate_gate::SloKind::Latency {
                threshold_ms: t.0.as_secs_f64() * 1e3,
            },
            None => slogate_gate::SloKind::Availability,
        };
        slos.push(SloConfig {
            spec: slogate_gate::SloSpec {
                name: s.name.clone(),
                objective: s.objective,
                kind,
                period_seconds: s.period.0.as_secs(),
            },
            service: s.service.clone(),
            selector: check_dims(&s.selector, &extra, &at("selector"), invalid)?,
        });
    }
    let a = &f.alerting;
    if a.evaluation_interval.0.as_secs() == 0 {
        return Err(invalid(
            "alerting.evaluation_interval",
            "must be at least 1s".into(),
        ));
    }
    let mut tiers = Vec::new();
    for (i, b) in a.burn_rates.iter().enumerate() {
        let at = |field: &str| format!("alerting.burn_rates[{i}].{field}");
        let (long, short) = (b.long.0.as_secs(), b.short.0.as_secs());
        if !(b.factor > 0.0) {
            return Err(invalid(&at("factor"), "must be positive".into()));
        }
        if short == 0 || short >= long {
            return Err(invalid(
                &at("short"),
                "must be shorter than the long window".into(),
            ));
        }
        // The tiers apply to SLOs; without any, a long window is harmless.
        if long > coarse && !slos.is_empty() {
            return Err(invalid(
                &at("long"),
                format!(
                    "is longer than windows.coarse_retention ({coarse}s), so it could never be measured"
                ),
            ));
        }
        tiers.push(slogate_gate::BurnTier {
            tier: b.tier,
            factor: b.factor,
            long_seconds: long,
            short_seconds: short,
        });
    }
    let mut rules = Vec::new();
    for (i, r) in a.rules.iter().enumerate() {
        let at = |field: &str| format!("alerting.rules[{i}].{field}");
        if r.name.is_empty() || a.rules[..i].iter().any(|o| o.name == r.name) {
            return Err(invalid(
                &at("name"),
                format!("{:?} must be non-empty and unique", r.name),
            ));
        }
        let metric = parse_metric(&r.metric).map_err(|e| invalid(&at("metric"), e))?;
        if matches!(metric, slogate_gate::Metric::RequestRate) {
            return Err(invalid(
                &at("metric"),
                "threshold rules take error_rate or latency_pNN".into(),
            ));
        }
        let window = r.window.0.as_secs();
        if window < f.windows.slot.0.as_secs() || window > coarse {
            return Err(invalid(
                &at("window"),
                "must be between one slot and windows.coarse_retention".into(),
            ));
        }
        rules.push(ThresholdRule {
            name: r.name.clone(),
            service: r.service.clone(),
            selector: check_dims(&r.selector, &extra, &at("selector"), invalid)?,
            metric,
            above: r.above,
            window_seconds: window,
            for_seconds: r.for_.0.as_secs(),
            tier: r.tier,
        });
    }
    let p = &f.pagerduty;
    if p.enabled {
        if !(p.url.starts_with("http://") || p.url.starts_with("https://")) {
            return Err(invalid(
                "pagerduty.url",
                format!("{:?} must be an http(s) URL", p.url),
            ));
        }
        if p.max_per_minute == 0 || p.max_pending == 0 {
            return Err(invalid(
                "pagerduty",
                "max_per_minute and max_pending must be at least 1".into(),
            ));
        }
        if p.retry_min.0.is_zero() || p.retry_min.0 > p.retry_max.0 {
            return Err(invalid(
                "pagerduty.retry_min",
                "must be positive and at most pagerduty.retry_max".into(),
            ));
        }
    }
    Ok((slos, tiers, rules))
}

fn validate_gates(
    f: &FileConfig,
    invalid: &dyn Fn(&str, String) -> ConfigError,
) -> Result<Vec<GateConfig>, ConfigError> {
    let extra: Vec<&str> = f.cohorts.extra.iter().map(|e| e.name.as_str()).collect();
    let coarse = f.windows.coarse_retention.0.as_secs();
    let slot = f.windows.slot.0.as_secs();
    let mut gates = Vec::new();
    for (gi, g) in f.gates.iter().enumerate() {
        let at = |field: &str| format!("gates[{gi}].{field}");
        let valid_name = !g.name.is_empty()
            && g.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
        if !valid_name {
            return Err(invalid(
                &at("name"),
                format!(
                    "{:?} must be non-empty [A-Za-z0-9._-] (it appears in URLs)",
                    g.name
                ),
            ));
        }
        if f.gates[..gi].iter().any(|o| o.name == g.name) {
            return Err(invalid(
                &at("name"),
                format!("duplicate gate name {:?}", g.name),
            ));
        }
        if g.service.is_empty() {
            return Err(invalid(&at("service"), "must name a service".into()));
        }
        // `baseline: {stored: NAME}` names a stored baseline instead of a live cohort.
        let baseline_stored = match g.baseline.get(STORED_BASELINE_KEY) {
            Some(name) if g.baseline.len() == 1 => {
                slogate_history::baseline::validate_name(name)
                    .map_err(|e| invalid(&at("baseline.stored"), e.to_string()))?;
                Some(name.clone())
            }
            Some(_) => {
                return Err(invalid(
                    &at("baseline.stored"),
                    "a stored baseline is the whole baseline; give no other dimensions with it"
                        .into(),
                ));
            }
            None => None,
        };
        for (side, sel) in [("canary", &g.canary), ("baseline", &g.baseline)] {
            if side == "baseline" && baseline_stored.is_some() {
                continue;
            }
            for dim in sel.keys() {
                if !["env", "version", "operation"].contains(&dim.as_str())
                    && !extra.contains(&dim.as_str())
                {
                    return Err(invalid(
                        &at(&format!("{side}.{dim}")),
                        "unknown dimension; use env, version, operation or a configured extra"
                            .into(),
                    ));
                }
            }
        }
        let check_window = |field: String, w: &HumanDuration| {
            let s = w.0.as_secs();
            if s < slot.max(60) || s > coarse {
                Err(invalid(
                    &field,
                    format!(
                        "must be between 1m (and one slot) and windows.coarse_retention ({coarse}s)"
                    ),
                ))
            } else {
                Ok(s)
            }
        };
        let gate_window = check_window(at("window"), &g.window)?;
        let mut common = Vec::new();
        for (ci, c) in g.criteria.iter().enumerate() {
            common.push(
                criterion_spec(c).map_err(|(field, msg)| {
                    invalid(&at(&format!("criteria[{ci}].{field}")), msg)
                })?,
            );
        }
        let mut phases = Vec::new();
        let phase_files: Vec<PhaseFile> = if g.phases.is_empty() {
            vec![PhaseFile {
                name: "default".into(),
                window: None,
                min_requests: None,
                criteria: Vec::new(),
            }]
        } else {
            g.phases.clone()
        };
        for (pi, p) in phase_files.iter().enumerate() {
            let pat = |field: &str| at(&format!("phases[{pi}].{field}"));
            if p.name.is_empty() || phase_files[..pi].iter().any(|o| o.name == p.name) {
                return Err(invalid(
                    &pat("name"),
                    format!("phase names must be non-empty and unique, got {:?}", p.name),
                ));
            }
            let window_seconds = match &p.window {
                Some(w) => check_window(pat("window"), w)?,
                None => gate_window,
            };
            let mut criteria = common.clone();
            for (ci, c) in p.criteria.iter().enumerate() {
                let spec = criterion_spec(c).map_err(|(field, msg)| {
                    invalid(&pat(&format!("criteria[{ci}].{field}")), msg)
                })?;
                match criteria.iter_mut().find(|x| x.name == spec.name) {
                    Some(slot) => *slot = spec,
                    None => criteria.push(spec),
                }
            }
            if criteria.is_empty() {
                return Err(invalid(
                    &pat("criteria"),
                    "a phase needs at least one criterion (gate-wide or its own)".into(),
                ));
            }
            if baseline_stored.is_some() {
                // A stored baseline covers another span of time than the gate's window, so only
                // rates and latencies compare; a request rate would not.
                let by_rate = |c: &&slogate_gate::CriterionSpec| matches!(c.check, slogate_gate::Check::Threshold { metric: slogate_gate::Metric::RequestRate, comparison, .. } if comparison != slogate_gate::Comparison::Absolute);
                if let Some(c) = criteria.iter().find(by_rate) {
                    return Err(invalid(
                        &pat("criteria"),
                        format!(
                            "criterion {:?} compares request rates with a stored baseline, which covers a different span of time; compare error rates or latencies",
                            c.name
                        ),
                    ));
                }
            }
            let spec = slogate_gate::GateSpec {
                name: g.name.clone(),
                min_requests: p.min_requests.unwrap_or(g.min_requests),
                criteria,
            };
            spec.validate()
                .map_err(|e| invalid(&pat("criteria"), e.to_string()))?;
            phases.push(PhaseConfig {
                name: p.name.clone(),
                window_seconds,
                spec,
            });
        }
        gates.push(GateConfig {
            name: g.name.clone(),
            service: g.service.clone(),
            operation: g.operation.clone(),
            canary: g
                .canary
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            baseline: if baseline_stored.is_some() {
                Vec::new()
            } else {
                g.baseline
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            },
            baseline_stored,
            phases,
        });
    }
    Ok(gates)
}

/// The line of a field path like `windows.coarse_slot` or `cohorts.extra[0].name` in block-style
/// YAML, found by walking the keys in order; `None` when the field is not written (a default).
fn locate(text: &str, field: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let mut from = 0;
    let mut found = None;
    for seg in field.split('.') {
        let key = seg.split('[').next().unwrap_or(seg);
        let want = format!("{key}:");
        let i = (from..lines.len()).find(|&i| {
            let t = lines[i].trim_start().trim_start_matches("- ");
            !t.starts_with('#') && t.starts_with(&want)
        })?;
        found = Some(i + 1);
        from = i + 1;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_parses_and_matches_code_defaults() {
        let c = Config::load(None).unwrap();
        let from_empty = Config::parse("", "empty").unwrap();
        assert_eq!(
            serde_json::to_value(&c.file).unwrap(),
            serde_json::to_value(&from_empty.file).unwrap(),
            "deploy/slogate.yaml documents the real defaults"
        );
        assert_eq!(c.window.slot_seconds, 10);
    }

    #[test]
    fn every_example_under_deploy_parses() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy");
        let mut seen = 0;
        for entry in walk(Path::new(root)) {
            let text = std::fs::read_to_string(&entry).unwrap();
            if entry.extension().is_some_and(|e| e == "yaml")
                && text.starts_with("# slogate configuration")
            {
                Config::parse(&text, &entry.display().to_string())
                    .unwrap_or_else(|e| panic!("{e}"));
                seen += 1;
            }
            // Kubernetes manifests carry the configuration in a ConfigMap.
            if entry.extension().is_some_and(|e| e == "yaml") && text.contains("kind: ConfigMap") {
                for doc in serde_yaml_ng::Deserializer::from_str(&text) {
                    let v = serde_yaml_ng::Value::deserialize(doc).unwrap();
                    if let Some(cfg) = v
                        .get("data")
                        .and_then(|d| d.get("slogate.yaml"))
                        .and_then(|c| c.as_str())
                    {
                        Config::parse(cfg, &format!("{} (ConfigMap)", entry.display()))
                            .unwrap_or_else(|e| panic!("{e}"));
                        seen += 1;
                    }
                }
            }
        }
        assert!(
            seen >= 3,
            "expected the default, the example and the Kubernetes ConfigMap, found {seen}"
        );
    }

    fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }

    fn check(text: &str, expected: &str) {
        let err = Config::parse(text, "slogate.yaml").unwrap_err().to_string();
        assert_eq!(err, expected);
    }

    #[test]
    fn errors_name_file_line_and_field() {
        check(
            "server:\n  http: 0.0.0.0:8080\n  htpp: 1\n",
            "slogate.yaml:3:3: server.htpp: unknown field `htpp`, expected one of `otlp_grpc`, `otlp_http`, `http`, `shutdown_grace`, `header_read_timeout`, `max_connections`",
        );
        check(
            "windows:\n  slot: ten seconds\n",
            "slogate.yaml:2:3: windows.slot: invalid duration \"ten seconds\" (expected number at 0); write e.g. 10s, 5m, 1h, 3d",
        );
        check(
            "windows:\n  slot: 7s\n",
            "slogate.yaml: windows.coarse_slot: must be a multiple of windows.slot (7s)",
        );
        check(
            "ingest:\n  span_kinds: [server, sever]\n",
            "slogate.yaml:2: ingest.span_kinds[1]: unknown span kind \"sever\"; use server, consumer, client, producer or internal",
        );
        check(
            "cohorts:\n  extra:\n    - name: version\n      attributes: [x]\n",
            "slogate.yaml:3: cohorts.extra[0].name: \"version\" must be lowercase [a-z0-9_] and not a built-in dimension",
        );
        check(
            "limits: [1, 2]\n",
            "slogate.yaml:1:9: limits: invalid type: sequence, expected struct LimitSection",
        );
        check(
            "history:\n  url: /var/lib/slogate\n",
            "slogate.yaml:2: history.url: \"/var/lib/slogate\" must be an s3://bucket/prefix url (use history.dir for a local directory)",
        );
        check(
            "history:\n  retention: 10m\n",
            "slogate.yaml:2: history.retention: must be at least 1h",
        );
        check(
            "history:\n  s3:\n    secret_key: x\n",
            "slogate.yaml:3:5: history.s3.secret_key: unknown field `secret_key`, expected one of `endpoint`, `region`, `allow_http`, `access_key_id_file`, `secret_access_key_file`",
        );
    }
}
