//! The YAML file format: what a person writes. Unknown fields are rejected, and every default is
//! written once: a section's `impl Default` (the section carries `#[serde(default)]`, so a field
//! left out takes it from there), or, for list items that have required fields, one `fn` named
//! in the field's `default` attribute. `deploy/slogate.yaml` documents the same values and a test
//! keeps the two equal.

use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A duration written as `10s`, `5m`, `1h30m`, `3d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub const fn secs(s: u64) -> HumanDuration {
        HumanDuration(Duration::from_secs(s))
    }
}

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

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    pub server: ServerSection,
    pub ingest: IngestSection,
    pub cohorts: CohortSection,
    pub windows: WindowSection,
    pub limits: LimitSection,
    pub metrics: MetricsSection,
    pub gates: Vec<GateFile>,
    pub slos: Vec<SloFile>,
    pub alerting: AlertingSection,
    pub pagerduty: PagerDutySection,
    pub notifications: NotificationsSection,
    pub history: HistorySection,
    pub auth: AuthSection,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    pub otlp_grpc: SocketAddr,
    pub otlp_http: SocketAddr,
    pub http: SocketAddr,
    pub shutdown_grace: HumanDuration,
    /// Connections on any listener that have not started a request this long after they were
    /// accepted (TLS handshake included), and HTTP connections whose next request head has not
    /// arrived this long after the server started waiting for it, are closed: slow-loris
    /// protection.
    pub header_read_timeout: HumanDuration,
    /// Open connections per HTTP listener (OTLP/HTTP, API); more wait in the accept queue.
    pub max_connections: usize,
    /// Open connections on the OTLP/gRPC listener; more wait in the accept queue.
    pub grpc_max_connections: usize,
    /// Connections with no request in flight this long are closed, on every listener.
    pub idle_timeout: HumanDuration,
    /// OTLP/HTTP and API request bodies that have not fully arrived this long after their head
    /// are answered 408 and the connection closed; a body holds no ingest slot while it arrives.
    pub body_read_timeout: HumanDuration,
    /// TLS on all three listeners when `cert_file` and `key_file` are set; mutual TLS when
    /// `client_ca_file` is set too.
    pub tls: TlsSection,
}

/// `server.tls`: PEM files, re-read when they change on disk.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSection {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// Clients must present a certificate signed by one of these CAs (mutual TLS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ca_file: Option<PathBuf>,
}

/// `auth`: bearer tokens, read from files (one token a line, `#` comments), never from this
/// file. Several files per role allow rotation; the files are re-read when they change.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    pub ingest: IngestAuthSection,
    pub api: ApiAuthSection,
}

/// Tokens accepted on the OTLP ports (gRPC `authorization` metadata, HTTP `Authorization`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestAuthSection {
    pub token_files: Vec<PathBuf>,
}

/// Tokens accepted on the API (and the gRPC verdict service): read, or admin (SQL, baseline
/// writes, and everything read may do).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiAuthSection {
    pub read_token_files: Vec<PathBuf>,
    pub admin_token_files: Vec<PathBuf>,
}

impl Default for ServerSection {
    fn default() -> Self {
        let any = |port| SocketAddr::from(([0, 0, 0, 0], port));
        ServerSection {
            otlp_grpc: any(4317),
            otlp_http: any(4318),
            http: any(8080),
            shutdown_grace: HumanDuration::secs(10),
            header_read_timeout: HumanDuration::secs(10),
            max_connections: 4096,
            grpc_max_connections: 4096,
            idle_timeout: HumanDuration::secs(120),
            body_read_timeout: HumanDuration::secs(30),
            tls: TlsSection::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestSection {
    pub max_request_bytes: usize,
    pub max_inflight_requests: usize,
    /// Bytes of request bodies held at once (as received, and inflated).
    pub max_inflight_bytes: usize,
    pub retry_after: HumanDuration,
    pub span_kinds: Vec<String>,
    pub grpc_keepalive: bool,
    pub grpc_max_concurrent_streams: u32,
    /// Spans longer than this are rejected one by one (`partial_success`): an unset or garbage
    /// end time would otherwise own a series' top quantiles for the whole window.
    pub max_span_duration: HumanDuration,
    /// The resident memory slogate stays under: ingest is refused (retryably) from 85 % of
    /// it until usage falls below 75 %. Unset: 90 % of the cgroup's limit, else of the host's
    /// memory. `0` turns the watchdog off.
    pub memory_limit_bytes: Option<u64>,
    /// The retry drill: this fraction of export requests (0 to 1) is refused as if overloaded,
    /// to check that exporters retry. `0` in production.
    pub drill_refuse_fraction: f64,
}

impl Default for IngestSection {
    fn default() -> Self {
        IngestSection {
            max_request_bytes: 64 << 20,
            max_inflight_requests: 256,
            max_inflight_bytes: 256 << 20,
            retry_after: HumanDuration::secs(1),
            span_kinds: vec!["server".into(), "consumer".into()],
            grpc_keepalive: true,
            grpc_max_concurrent_streams: 256,
            max_span_duration: HumanDuration::secs(3600),
            memory_limit_bytes: None,
            drill_refuse_fraction: 0.0,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CohortSection {
    pub service: Vec<String>,
    pub env: Vec<String>,
    pub version: Vec<String>,
    pub extra: Vec<ExtraDim>,
}

impl Default for CohortSection {
    fn default() -> Self {
        CohortSection {
            service: vec!["service.name".into()],
            env: vec![
                "deployment.environment.name".into(),
                "deployment.environment".into(),
            ],
            version: vec!["service.version".into()],
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
#[serde(deny_unknown_fields, default)]
pub struct WindowSection {
    pub slot: HumanDuration,
    pub fine_retention: HumanDuration,
    pub coarse_slot: HumanDuration,
    pub coarse_retention: HumanDuration,
}

impl Default for WindowSection {
    fn default() -> Self {
        WindowSection {
            slot: HumanDuration::secs(10),
            fine_retention: HumanDuration::secs(3600),
            coarse_slot: HumanDuration::secs(300),
            coarse_retention: HumanDuration::secs(3 * 86_400),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitSection {
    pub max_series_per_service: usize,
    pub max_series: usize,
}

impl Default for LimitSection {
    fn default() -> Self {
        LimitSection {
            max_series_per_service: 2000,
            max_series: 100_000,
        }
    }
}

/// The OTLP metric store (`metrics:`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    /// How long data points are kept; every metric criterion's window must fit in it.
    pub retention: HumanDuration,
    /// Points kept per stream; the oldest go first (counted).
    pub max_points_per_series: usize,
    /// Streams across all services (overflow streams are outside this cap).
    pub max_series: usize,
    /// Streams per service and metric; more go to one overflow stream per cohort and metric.
    pub max_series_per_metric: usize,
    /// A stream whose newest point is older than this has stopped reporting: no data.
    pub stale_after: HumanDuration,
}

impl Default for MetricsSection {
    fn default() -> Self {
        MetricsSection {
            retention: HumanDuration::secs(3600),
            max_points_per_series: 2048,
            max_series: 20_000,
            max_series_per_metric: 1000,
            stale_after: HumanDuration::secs(300),
        }
    }
}

/// The denominator of a metric criterion or rule (`divide_by:`): another OTLP metric selection,
/// or the span cohort's request or error count (`spans: requests`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DivideByFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otlp: Option<String>,
    #[serde(default, rename = "where", skip_serializing_if = "BTreeMap::is_empty")]
    pub where_: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub across: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spans: Option<String>,
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
    pub canary: BTreeMap<String, String>,
    /// Default baseline selector; a verdict request's `baseline.<dim>` overrides it. Or
    /// `{stored: NAME}`: the stored baseline NAME (`slogate baseline capture`).
    #[serde(default)]
    pub baseline: BTreeMap<String, String>,
    /// Criteria every phase applies.
    #[serde(default)]
    pub criteria: Vec<CriterionFile>,
    /// Phases in rollout order, each adding criteria (a criterion of the same name replaces the
    /// gate-wide one). Without phases the gate has one phase, `default`.
    #[serde(default)]
    pub phases: Vec<PhaseFile>,
    /// How a verdict request that names an analysis (`analysis=ID`: one rollout step, polled
    /// repeatedly) spends the gate's error budget over its looks.
    #[serde(default)]
    pub analysis: AnalysisFile,
}

/// The repeated-looks design of a gate: one number, the false-rollback rate of the whole gate
/// over a whole step, spent over the step's looks and shared by its statistical criteria.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnalysisFile {
    /// Probability that a canary no worse than its baseline is rolled back at some look of a
    /// step, all statistical criteria together.
    pub false_rollback_rate: f64,
    /// Looks planned per step (Argo's `count`); a request may pass its own `looks=N`.
    pub looks: u32,
    /// Time between looks (Argo's `interval`). Look `k` judges the data since one interval
    /// before the first look, so each look adds one interval of traffic.
    pub interval: HumanDuration,
    /// `obrien_fleming` (little spent early, nearly all at the last look) or `pocock`.
    pub spending: slogate_gate::Spending,
    /// An analysis with no look for this long is forgotten; the next look with its id starts
    /// a new one (e.g. a step retried after an abort).
    pub expire_after: HumanDuration,
}

impl Default for AnalysisFile {
    fn default() -> Self {
        AnalysisFile {
            false_rollback_rate: 0.01,
            looks: 10,
            interval: HumanDuration::secs(60),
            spending: slogate_gate::Spending::OBrienFleming,
            expire_after: HumanDuration::secs(1800),
        }
    }
}

impl GateFile {
    fn default_window() -> HumanDuration {
        HumanDuration::secs(600)
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

/// One criterion as written: a threshold (`metric`, `compare`, `pass`, `fail`), judged on a
/// confidence interval when it has a `confidence`, or a statistical test (`test: mann_whitney`
/// with `confidence` and `max_effect`, `test: two_proportion` with `confidence` and
/// `max_difference`). Every field but `name` is optional here; which ones a
/// criterion needs is checked in validation, with the field named in the error.
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
    /// With `confidence` and a stored baseline: take the baseline's value as known (no
    /// sampling error of its own) instead of counting it with its own sample size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_known: Option<bool>,
    /// An OTLP metric instead of a span metric: its name...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otlp: Option<String>,
    /// ...point attributes it must have (`value`, `*` for present, `!value` for not equal)...
    #[serde(default, rename = "where", skip_serializing_if = "BTreeMap::is_empty")]
    pub where_: BTreeMap<String, String>,
    /// ...how the window's points become one number (last, min, max, avg, sum, count,
    /// increase, rate, pNN, time_in_state, transitions)...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregate: Option<String>,
    /// ...how the streams of the cohort combine (sum, avg, max, min)...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub across: Option<String>,
    /// ...the state of `time_in_state` / `transitions` (default: any non-zero value / any change)...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<f64>,
    /// ...and an optional denominator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub divide_by: Option<DivideByFile>,
}

/// An SLO as written in the file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SloFile {
    pub name: String,
    pub service: String,
    /// Further dimension matchers (env, version, operation, extras).
    #[serde(default)]
    pub selector: BTreeMap<String, String>,
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
        HumanDuration::secs(30 * 86_400)
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertingSection {
    pub evaluation_interval: HumanDuration,
    /// A rule's long window needs this many requests before it may fire: low traffic never pages.
    pub min_requests: u64,
    /// Multi-window burn-rate tiers applied to every SLO (Google SRE Workbook by default).
    pub burn_rates: Vec<BurnRateFile>,
    pub rules: Vec<ThresholdRuleFile>,
    pub gate_failures: GateFailureAlerts,
}

impl Default for AlertingSection {
    fn default() -> Self {
        AlertingSection {
            evaluation_interval: HumanDuration::secs(30),
            min_requests: 100,
            burn_rates: slogate_gate::BurnTier::workbook_defaults()
                .into_iter()
                .map(|t| BurnRateFile {
                    tier: t.tier,
                    factor: t.factor,
                    long: HumanDuration::secs(t.long_seconds),
                    short: HumanDuration::secs(t.short_seconds),
                })
                .collect(),
            rules: Vec::new(),
            gate_failures: GateFailureAlerts::default(),
        }
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
    pub selector: BTreeMap<String, String>,
    /// `error_rate` or `latency_pNN` (milliseconds)...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// ...or an OTLP metric selection, as in a gate criterion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otlp: Option<String>,
    #[serde(default, rename = "where", skip_serializing_if = "BTreeMap::is_empty")]
    pub where_: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub across: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub divide_by: Option<DivideByFile>,
    /// The rule is active while the metric is above this value...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub above: Option<f64>,
    /// ...or below this one (exactly one of the two).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub below: Option<f64>,
    #[serde(default = "ThresholdRuleFile::default_window")]
    pub window: HumanDuration,
    /// How long the condition must hold before the alert fires.
    #[serde(default = "ThresholdRuleFile::default_window", rename = "for")]
    pub for_: HumanDuration,
    pub tier: slogate_gate::Tier,
}

impl ThresholdRuleFile {
    /// Both the window and `for`.
    fn default_window() -> HumanDuration {
        HumanDuration::secs(300)
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GateFailureAlerts {
    pub enabled: bool,
    pub tier: slogate_gate::Tier,
    /// A firing gate-failure alert that no verdict has looked at for this long resolves: its
    /// rollout ended or was aborted.
    pub resolve_after: HumanDuration,
}

impl Default for GateFailureAlerts {
    fn default() -> Self {
        GateFailureAlerts {
            enabled: true,
            tier: slogate_gate::Tier::P2,
            resolve_after: HumanDuration::secs(3600),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PagerDutySection {
    /// Off by default: alerts are still evaluated and shown at /api/v1/alerts.
    pub enabled: bool,
    pub url: String,
    /// The routing key is read from this environment variable...
    pub routing_key_env: String,
    /// ...or from this file; it is never written to logs, disk or `config show`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routing_key_file: Option<PathBuf>,
    /// Notifications are written here (fsync'd) before the first send and removed after a 202.
    pub outbox_dir: PathBuf,
    pub max_pending: usize,
    pub max_per_minute: u32,
    /// Base URL put in the `links` of each event (the dashboard, verdict or SLO page).
    pub link_base_url: String,
    /// Retries after 429, 5xx or a network error back off exponentially with jitter, between
    /// these bounds.
    pub retry_min: HumanDuration,
    pub retry_max: HumanDuration,
}

impl Default for PagerDutySection {
    fn default() -> Self {
        PagerDutySection {
            enabled: false,
            url: "https://events.pagerduty.com".into(),
            routing_key_env: "SLOGATE_PAGERDUTY_ROUTING_KEY".into(),
            routing_key_file: None,
            outbox_dir: "slogate-data/outbox".into(),
            max_pending: 10_000,
            max_per_minute: 120,
            link_base_url: "http://localhost:8080".into(),
            retry_min: HumanDuration::secs(1),
            retry_max: HumanDuration::secs(60),
        }
    }
}

/// `notifications`: Slack and webhooks in Alertmanager's format, beside PagerDuty. Each
/// destination has its own outbox (a subdirectory of `outbox_dir`) and sender, so one being
/// down never delays another.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotificationsSection {
    /// Destinations queue in subdirectories of this: `slack/`, `webhook-NAME/`.
    pub outbox_dir: PathBuf,
    pub slack: SlackSection,
    pub webhooks: Vec<WebhookFile>,
}

impl Default for NotificationsSection {
    fn default() -> Self {
        NotificationsSection {
            outbox_dir: "slogate-data/notify-outbox".into(),
            slack: SlackSection::default(),
            webhooks: Vec::new(),
        }
    }
}

/// What a destination is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyEvent {
    /// Alert triggers and resolves (at `min_tier` or more urgent).
    Alerts,
    /// A gate's verdict changes (one message per change, never per evaluation).
    Verdicts,
}

/// `notifications.slack`: a Slack incoming webhook.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlackSection {
    pub enabled: bool,
    /// The webhook URL is the credential: it is read from this environment variable...
    pub webhook_url_env: String,
    /// ...or from this file, and never written to logs, disk or `config show`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_url_file: Option<PathBuf>,
    pub events: Vec<NotifyEvent>,
    /// Alerts of this tier or more urgent are sent (P1 is the most urgent).
    pub min_tier: slogate_gate::Tier,
    pub max_pending: usize,
    /// Slack takes about one message per second per webhook.
    pub max_per_minute: u32,
    pub retry_min: HumanDuration,
    pub retry_max: HumanDuration,
}

impl Default for SlackSection {
    fn default() -> Self {
        SlackSection {
            enabled: false,
            webhook_url_env: "SLOGATE_SLACK_WEBHOOK_URL".into(),
            webhook_url_file: None,
            events: vec![NotifyEvent::Alerts, NotifyEvent::Verdicts],
            min_tier: slogate_gate::Tier::Ticket,
            max_pending: 10_000,
            max_per_minute: 60,
            retry_min: HumanDuration::secs(1),
            retry_max: HumanDuration::secs(60),
        }
    }
}

/// `notifications.webhooks[]`: a receiver of Alertmanager's webhook payload (version 4).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookFile {
    /// `[a-z0-9_-]`: the payload's `receiver`, the `destination` label, the outbox subdirectory.
    pub name: String,
    pub url: String,
    /// An optional bearer token, from this environment variable or this file (not both).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    #[serde(default = "WebhookFile::default_events")]
    pub events: Vec<NotifyEvent>,
    #[serde(default = "WebhookFile::default_min_tier")]
    pub min_tier: slogate_gate::Tier,
    #[serde(default = "WebhookFile::default_max_pending")]
    pub max_pending: usize,
    #[serde(default = "WebhookFile::default_max_per_minute")]
    pub max_per_minute: u32,
    #[serde(default = "WebhookFile::default_retry_min")]
    pub retry_min: HumanDuration,
    #[serde(default = "WebhookFile::default_retry_max")]
    pub retry_max: HumanDuration,
}

impl WebhookFile {
    fn default_events() -> Vec<NotifyEvent> {
        vec![NotifyEvent::Alerts, NotifyEvent::Verdicts]
    }
    fn default_min_tier() -> slogate_gate::Tier {
        slogate_gate::Tier::Ticket
    }
    fn default_max_pending() -> usize {
        10_000
    }
    fn default_max_per_minute() -> u32 {
        120
    }
    fn default_retry_min() -> HumanDuration {
        HumanDuration::secs(1)
    }
    fn default_retry_max() -> HumanDuration {
        HumanDuration::secs(60)
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistorySection {
    /// Every closed slot of every series is kept as Parquet for SQL, and reloaded on start.
    pub enabled: bool,
    /// Local directory of the history (when `url` is not set).
    pub dir: PathBuf,
    /// `s3://bucket/prefix`: keep the history on S3 or an S3-compatible server instead of `dir`.
    /// Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, never from this file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub s3: HistoryS3Section,
    /// Hour partitions older than this are deleted by a background task.
    pub retention: HumanDuration,
    /// How often closed hour partitions are compacted (one file per hour) and retention applied.
    pub compaction_interval: HumanDuration,
    /// An hour partition is compacted once its hour ended this long ago.
    pub compact_after: HumanDuration,
    /// Buffered rows are written as Parquet files this often (and on shutdown).
    pub flush_interval: HumanDuration,
    /// Rows buffered before a flush; past this, closed slots are counted as dropped from history
    /// (they stay in the live windows).
    pub max_buffered_rows: usize,
    /// On start, this much recent history is loaded back into the live windows.
    pub reload: HumanDuration,
    pub max_query_rows: usize,
    pub query_timeout: HumanDuration,
    /// Bytes all running SQL queries may hold together (operators, function results, the
    /// result); a query past it fails with 422.
    pub sql_memory_limit_bytes: usize,
}

impl Default for HistorySection {
    fn default() -> Self {
        HistorySection {
            enabled: true,
            dir: "slogate-data/history".into(),
            url: None,
            s3: HistoryS3Section::default(),
            retention: HumanDuration::secs(30 * 86_400),
            compaction_interval: HumanDuration::secs(600),
            compact_after: HumanDuration::secs(600),
            flush_interval: HumanDuration::secs(60),
            max_buffered_rows: 1_000_000,
            reload: HumanDuration::secs(3600),
            max_query_rows: 10_000,
            query_timeout: HumanDuration::secs(30),
            sql_memory_limit_bytes: slogate_history::SqlLimits::DEFAULT_MEMORY_LIMIT,
        }
    }
}

/// The S3-compatible endpoint of `history.url`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistoryS3Section {
    /// e.g. `http://minio:9000`; AWS (or AWS_ENDPOINT) when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// AWS_REGION (or us-east-1) when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Allow a plain-HTTP endpoint.
    pub allow_http: bool,
    /// Files holding the access key id and the secret (e.g. a mounted Kubernetes secret); both
    /// or neither. Without them: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_key_id_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_access_key_file: Option<PathBuf>,
}
