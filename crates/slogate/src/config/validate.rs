//! Validation: every check of the file that serde cannot express (ranges, names, references
//! between sections, criteria), each error naming the field path (`gates[1].phases[0].window`)
//! so [`super::locate`] can point at its line, and the translation into the runtime [`Config`].

use super::file::{FileConfig, GateFile, HistorySection, HumanDuration, PhaseFile};
use super::locate;
use super::{
    AlertingConfig, AuthConfig, Config, ConfigError, GateConfig, HistoryConfig, HistoryLocation,
    PagerDutyConfig, PhaseConfig, STORED_BASELINE_KEY, SecretSource, ServerConfig, SloConfig,
    ThresholdRule, TlsConfig,
};
use super::{DestinationConfig, NotificationsConfig};
use super::{MetricQuery, RuleMetric};
use slogate_ingest::IngestLimits;
use slogate_ingest::extract::ExtractConfig;
use slogate_window::WindowConfig;
use std::collections::BTreeMap;
use std::time::Duration;

/// Checks every section of `f` and builds the runtime configuration; `text` is the file, for
/// error locations.
/// A validation error at a field path (`gates[1].window`), located in the text.
type Invalid<'a> = &'a dyn Fn(&str, String) -> ConfigError;

/// Checks every section of `f` and builds the runtime configuration; `text` is the file, for
/// error locations.
pub(super) fn validate(f: FileConfig, file: &str, text: &str) -> Result<Config, ConfigError> {
    let invalid = |field: &str, message: String| ConfigError::Invalid {
        file: file.into(),
        line: locate(text, field),
        field: field.into(),
        message,
    };
    let window = validate_windows(&f, &invalid)?;
    let (extract, limits) = validate_ingest(&f, &invalid)?;
    let server = validate_server(&f, &invalid)?;
    let auth = validate_auth(&f, &invalid)?;
    validate_history(&f.history, &invalid)?;
    let gates = validate_gates(&f, &invalid)?;
    let (slos, burn_tiers, rules) = validate_alerting(&f, &invalid)?;
    if f.ingest.max_span_duration.0.is_zero() {
        return Err(invalid(
            "ingest.max_span_duration",
            "must be more than 0s (e.g. 1h)".into(),
        ));
    }
    let span_limits = slogate_ingest::SpanLimits {
        max_duration: f.ingest.max_span_duration.0,
    };
    let metrics = validate_metrics(&f, &window, &invalid)?;
    let notifications = validate_notifications(&f, &invalid)?;
    Ok(Config {
        source: file.to_string(),
        server,
        extract,
        limits,
        span_limits,
        window,
        metrics,
        gates,
        slos,
        burn_tiers,
        rules,
        alerting: alerting_config(&f),
        pagerduty: pagerduty_config(&f),
        notifications,
        history: history_config(&f.history),
        auth,
        file: f,
    })
}

/// `metrics`: the OTLP metric store's limits.
fn validate_metrics(
    f: &FileConfig,
    window: &WindowConfig,
    invalid: Invalid,
) -> Result<slogate_metrics::MetricStoreConfig, ConfigError> {
    let m = &f.metrics;
    let retention = m.retention.0.as_secs();
    if retention < window.slot_seconds.max(60) || retention > 7 * 86_400 {
        return Err(invalid(
            "metrics.retention",
            format!("{retention}s must be between 1m (and one slot) and 7 days"),
        ));
    }
    for (field, v) in [
        ("metrics.max_points_per_series", m.max_points_per_series),
        ("metrics.max_series", m.max_series),
        ("metrics.max_series_per_metric", m.max_series_per_metric),
    ] {
        if v == 0 {
            return Err(invalid(field, "must be at least 1".into()));
        }
    }
    if m.max_points_per_series > 1_000_000 {
        return Err(invalid(
            "metrics.max_points_per_series",
            format!("{} is more than 1000000", m.max_points_per_series),
        ));
    }
    if m.stale_after.0.as_secs() == 0 {
        return Err(invalid("metrics.stale_after", "must be at least 1s".into()));
    }
    Ok(slogate_metrics::MetricStoreConfig {
        slot_seconds: window.slot_seconds as u32,
        retention_seconds: retention,
        max_points_per_series: m.max_points_per_series,
        max_series: m.max_series,
        max_series_per_metric: m.max_series_per_metric,
        stale_after_seconds: m.stale_after.0.as_secs(),
        extra_dims: window.extra_dims.clone(),
        ..slogate_metrics::MetricStoreConfig::default()
    })
}

/// `windows` and `limits`.
fn validate_windows(f: &FileConfig, invalid: Invalid) -> Result<WindowConfig, ConfigError> {
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
    if f.limits.max_series_per_service == 0 || f.limits.max_series == 0 {
        return Err(invalid("limits", "series caps must be at least 1".into()));
    }
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
    Ok(window)
}

/// `ingest` and `cohorts`: what the receivers accept and how spans become cohorts.
fn validate_ingest(
    f: &FileConfig,
    invalid: Invalid,
) -> Result<(ExtractConfig, IngestLimits), ConfigError> {
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
    if f.ingest.max_inflight_bytes < 2 * f.ingest.max_request_bytes {
        return Err(invalid(
            "ingest.max_inflight_bytes",
            format!(
                "must be at least twice ingest.max_request_bytes ({}), so that the largest gzip request and what it inflates to fit",
                2 * f.ingest.max_request_bytes
            ),
        ));
    }
    if !(0.0..=1.0).contains(&f.ingest.drill_refuse_fraction) {
        return Err(invalid(
            "ingest.drill_refuse_fraction",
            "must be between 0 and 1".into(),
        ));
    }
    if matches!(f.ingest.memory_limit_bytes, Some(n) if n > 0 && n < 64 << 20) {
        return Err(invalid(
            "ingest.memory_limit_bytes",
            "must be 0 (off) or at least 67108864 (64 MiB)".into(),
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
        // Extras are columns of the history's tables, beside theirs.
        if slogate_history::RESERVED_COLUMNS.contains(&e.name.as_str()) {
            return Err(invalid(
                &format!("cohorts.extra[{i}].name"),
                format!(
                    "{:?} is a column of the history's requests or metrics table; name the dimension otherwise",
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
        max_inflight_bytes: f.ingest.max_inflight_bytes,
        retry_after: f.ingest.retry_after.0,
        memory_limit_bytes: f.ingest.memory_limit_bytes,
        drill_refuse_fraction: f.ingest.drill_refuse_fraction,
    };
    Ok((extract, limits))
}

/// `server`, with the gRPC settings of `ingest`.
fn validate_server(f: &FileConfig, invalid: Invalid) -> Result<ServerConfig, ConfigError> {
    let s = &f.server;
    for (field, d) in [
        ("server.header_read_timeout", s.header_read_timeout),
        ("server.idle_timeout", s.idle_timeout),
        ("server.body_read_timeout", s.body_read_timeout),
    ] {
        if d.0.is_zero() {
            return Err(invalid(field, "must be more than 0s".into()));
        }
    }
    for (field, n) in [
        ("server.max_connections", s.max_connections),
        ("server.grpc_max_connections", s.grpc_max_connections),
    ] {
        if n == 0 {
            return Err(invalid(field, "must be at least 1".into()));
        }
    }
    let server = ServerConfig {
        otlp_grpc: s.otlp_grpc,
        otlp_http: s.otlp_http,
        http: s.http,
        shutdown_grace: s.shutdown_grace.0,
        header_read_timeout: s.header_read_timeout.0,
        max_connections: s.max_connections,
        grpc_max_connections: s.grpc_max_connections,
        idle_timeout: s.idle_timeout.0,
        body_read_timeout: s.body_read_timeout.0,
        grpc_keepalive: f.ingest.grpc_keepalive,
        grpc_max_concurrent_streams: f.ingest.grpc_max_concurrent_streams,
        tls: validate_tls(&s.tls, invalid)?,
    };
    Ok(server)
}

/// `server.tls`: a certificate and its key go together; a client CA needs both.
fn validate_tls(
    t: &super::file::TlsSection,
    invalid: Invalid,
) -> Result<Option<TlsConfig>, ConfigError> {
    match (&t.cert_file, &t.key_file) {
        (Some(cert), Some(key)) => Ok(Some(TlsConfig {
            cert_file: cert.clone(),
            key_file: key.clone(),
            client_ca_file: t.client_ca_file.clone(),
        })),
        (None, None) if t.client_ca_file.is_some() => Err(invalid(
            "server.tls.client_ca_file",
            "mutual TLS needs TLS: set cert_file and key_file too".into(),
        )),
        (None, None) => Ok(None),
        // The error points at the key that is there (the missing one has no line).
        (Some(_), None) => Err(invalid(
            "server.tls.cert_file",
            "needs key_file too: cert_file and key_file go together".into(),
        )),
        (None, Some(_)) => Err(invalid(
            "server.tls.key_file",
            "needs cert_file too: cert_file and key_file go together".into(),
        )),
    }
}

/// `auth`: token file paths (their contents are read by the server, never here).
fn validate_auth(f: &FileConfig, invalid: Invalid) -> Result<AuthConfig, ConfigError> {
    let a = &f.auth;
    for (field, files) in [
        ("auth.ingest.token_files", &a.ingest.token_files),
        ("auth.api.read_token_files", &a.api.read_token_files),
        ("auth.api.admin_token_files", &a.api.admin_token_files),
    ] {
        if files.iter().any(|p| p.as_os_str().is_empty()) {
            return Err(invalid(field, "a token file path is empty".into()));
        }
    }
    Ok(AuthConfig {
        ingest: a.ingest.token_files.clone(),
        api_read: a.api.read_token_files.clone(),
        api_admin: a.api.admin_token_files.clone(),
    })
}

fn alerting_config(f: &FileConfig) -> AlertingConfig {
    let a = &f.alerting;
    AlertingConfig {
        evaluation_interval: a.evaluation_interval.0,
        min_requests: a.min_requests,
        gate_failures: a.gate_failures.enabled.then_some(a.gate_failures.tier),
        gate_failures_resolve_after: a.gate_failures.resolve_after.0,
        link_base_url: f.pagerduty.link_base_url.clone(),
    }
}

fn pagerduty_config(f: &FileConfig) -> Option<PagerDutyConfig> {
    let p = &f.pagerduty;
    p.enabled.then(|| PagerDutyConfig {
        url: p.url.clone(),
        routing_key: match &p.routing_key_file {
            Some(path) => SecretSource::File(path.clone()),
            None => SecretSource::Env(p.routing_key_env.clone()),
        },
        outbox_dir: p.outbox_dir.clone(),
        max_pending: p.max_pending,
        max_per_minute: p.max_per_minute,
        retry_min: p.retry_min.0,
        retry_max: p.retry_max.0,
    })
}

/// `notifications`: Slack and the webhooks, each checked where it is written; an outbox is
/// never shared (two senders on one queue would acknowledge each other's items).
fn validate_notifications(
    f: &FileConfig,
    invalid: Invalid,
) -> Result<NotificationsConfig, ConfigError> {
    use super::file::NotifyEvent;
    let n = &f.notifications;
    let base = &n.outbox_dir;
    if base.as_os_str().is_empty() {
        return Err(invalid("notifications.outbox_dir", "is empty".into()));
    }
    if f.pagerduty.enabled && *base == f.pagerduty.outbox_dir {
        return Err(invalid(
            "notifications.outbox_dir",
            format!(
                "{} is pagerduty.outbox_dir too; give notifications a directory of their own",
                base.display()
            ),
        ));
    }
    // The checks Slack and a webhook share; `at` makes a field path.
    let common = |at: &dyn Fn(&str) -> String,
                  events: &[NotifyEvent],
                  max_pending: usize,
                  max_per_minute: u32,
                  retry_min: HumanDuration,
                  retry_max: HumanDuration|
     -> Result<(), ConfigError> {
        if events.is_empty() {
            return Err(invalid(
                &at("events"),
                "list what to send: alerts, verdicts or both".into(),
            ));
        }
        if max_pending == 0 {
            return Err(invalid(&at("max_pending"), "must be at least 1".into()));
        }
        if max_per_minute == 0 {
            return Err(invalid(&at("max_per_minute"), "must be at least 1".into()));
        }
        if retry_min.0.is_zero() || retry_min.0 > retry_max.0 {
            return Err(invalid(
                &at("retry_min"),
                format!("must be more than 0s and at most {}", at("retry_max")),
            ));
        }
        Ok(())
    };
    let mut out = NotificationsConfig::default();
    let s = &n.slack;
    if s.enabled {
        let at = |k: &str| format!("notifications.slack.{k}");
        if s.webhook_url_file.is_none() && s.webhook_url_env.trim().is_empty() {
            return Err(invalid(
                &at("webhook_url_env"),
                "name the environment variable holding the webhook URL, or set webhook_url_file"
                    .into(),
            ));
        }
        common(
            &at,
            &s.events,
            s.max_pending,
            s.max_per_minute,
            s.retry_min,
            s.retry_max,
        )?;
        out.slack = Some(DestinationConfig {
            name: "slack".into(),
            url: None,
            secret: Some(match &s.webhook_url_file {
                Some(path) => SecretSource::File(path.clone()),
                None => SecretSource::Env(s.webhook_url_env.clone()),
            }),
            outbox_dir: base.join("slack"),
            max_pending: s.max_pending,
            max_per_minute: s.max_per_minute,
            retry_min: s.retry_min.0,
            retry_max: s.retry_max.0,
            alerts: s.events.contains(&NotifyEvent::Alerts),
            verdicts: s.events.contains(&NotifyEvent::Verdicts),
            min_tier: s.min_tier,
        });
    }
    for (i, w) in n.webhooks.iter().enumerate() {
        let at = |k: &str| format!("notifications.webhooks[{i}].{k}");
        let valid_name = !w.name.is_empty()
            && w.name.len() <= 64
            && w.name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !valid_name {
            return Err(invalid(
                &at("name"),
                format!(
                    "{:?} must be 1 to 64 characters of [a-z0-9_-] (it names the outbox directory and the destination label)",
                    w.name
                ),
            ));
        }
        if matches!(w.name.as_str(), "slack" | "pagerduty")
            || n.webhooks[..i].iter().any(|o| o.name == w.name)
        {
            return Err(invalid(
                &at("name"),
                format!(
                    "{:?} is taken: every destination needs its own name",
                    w.name
                ),
            ));
        }
        if !(w.url.starts_with("http://") || w.url.starts_with("https://")) {
            return Err(invalid(
                &at("url"),
                format!("{:?} must be an http(s) URL", w.url),
            ));
        }
        let secret = match (&w.token_env, &w.token_file) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    &at("token_file"),
                    "set token_env or token_file, not both".into(),
                ));
            }
            (Some(var), None) if var.trim().is_empty() => {
                return Err(invalid(&at("token_env"), "is empty".into()));
            }
            (Some(var), None) => Some(SecretSource::Env(var.clone())),
            (None, Some(path)) => Some(SecretSource::File(path.clone())),
            (None, None) => None,
        };
        common(
            &at,
            &w.events,
            w.max_pending,
            w.max_per_minute,
            w.retry_min,
            w.retry_max,
        )?;
        out.webhooks.push(DestinationConfig {
            name: w.name.clone(),
            url: Some(w.url.clone()),
            secret,
            outbox_dir: base.join(format!("webhook-{}", w.name)),
            max_pending: w.max_pending,
            max_per_minute: w.max_per_minute,
            retry_min: w.retry_min.0,
            retry_max: w.retry_max.0,
            alerts: w.events.contains(&NotifyEvent::Alerts),
            verdicts: w.events.contains(&NotifyEvent::Verdicts),
            min_tier: w.min_tier,
        });
    }
    Ok(out)
}

fn history_config(h: &HistorySection) -> HistoryConfig {
    HistoryConfig {
        enabled: h.enabled,
        location: match &h.url {
            Some(url) => HistoryLocation::S3 {
                url: url.clone(),
                s3: h.s3.clone(),
            },
            None => HistoryLocation::Local(h.dir.clone()),
        },
        retention: h.retention.0,
        compaction_interval: h.compaction_interval.0,
        compact_after: h.compact_after.0,
        flush_interval: h.flush_interval.0,
        max_buffered_rows: h.max_buffered_rows,
        reload: h.reload.0,
        max_query_rows: h.max_query_rows,
        query_timeout: h.query_timeout.0,
        sql_limits: slogate_history::SqlLimits {
            memory_limit: h.sql_memory_limit_bytes,
        },
    }
}

fn validate_history(
    h: &HistorySection,
    invalid: &dyn Fn(&str, String) -> ConfigError,
) -> Result<(), ConfigError> {
    if let Some(url) = &h.url
        && (!url.starts_with("s3://") || url.len() <= "s3://".len())
    {
        return Err(invalid(
            "history.url",
            format!(
                "{url:?} must be an s3://bucket/prefix url (use history.dir for a local directory)"
            ),
        ));
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
    if h.flush_interval.0 < Duration::from_millis(100) {
        return Err(invalid(
            "history.flush_interval",
            "must be at least 100ms".into(),
        ));
    }
    if h.compaction_interval.0 < Duration::from_secs(1) {
        return Err(invalid(
            "history.compaction_interval",
            "must be at least 1s".into(),
        ));
    }
    if h.sql_memory_limit_bytes < 16 << 20 {
        return Err(invalid(
            "history.sql_memory_limit_bytes",
            "must be at least 16777216 (16 MiB)".into(),
        ));
    }
    Ok(())
}

fn check_dims(
    sel: &BTreeMap<String, String>,
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
    if a.gate_failures.resolve_after.0 < Duration::from_secs(60) {
        return Err(invalid(
            "alerting.gate_failures.resolve_after",
            "must be at least 1m".into(),
        ));
    }
    let mut tiers = Vec::new();
    for (i, b) in a.burn_rates.iter().enumerate() {
        let at = |field: &str| format!("alerting.burn_rates[{i}].{field}");
        let (long, short) = (b.long.0.as_secs(), b.short.0.as_secs());
        if b.factor.is_nan() || b.factor <= 0.0 {
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
        let metric = match (&r.metric, &r.otlp) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    &at("otlp"),
                    "a rule watches a span metric (metric) or an OTLP metric (otlp), not both"
                        .into(),
                ));
            }
            (None, None) => {
                return Err(invalid(
                    &at("metric"),
                    "a rule needs metric (error_rate, latency_pNN) or otlp (an OTLP metric)".into(),
                ));
            }
            (Some(m), None) => {
                for (field, set) in [
                    ("where", !r.where_.is_empty()),
                    ("aggregate", r.aggregate.is_some()),
                    ("across", r.across.is_some()),
                    ("state", r.state.is_some()),
                    ("divide_by", r.divide_by.is_some()),
                ] {
                    if set {
                        return Err(invalid(
                            &at(field),
                            format!("{field} applies to an OTLP metric rule (otlp: NAME)"),
                        ));
                    }
                }
                let metric = parse_metric(m).map_err(|e| invalid(&at("metric"), e))?;
                if matches!(metric, slogate_gate::Metric::RequestRate) {
                    return Err(invalid(
                        &at("metric"),
                        "threshold rules take error_rate or latency_pNN".into(),
                    ));
                }
                RuleMetric::Span(metric)
            }
            (None, Some(otlp)) => RuleMetric::Otlp(
                super::metrics::query(
                    super::metrics::SelectFields {
                        otlp,
                        where_: &r.where_,
                        aggregate: r.aggregate.as_deref(),
                        across: r.across.as_deref(),
                        state: r.state,
                    },
                    r.divide_by.as_ref(),
                )
                .map_err(|(field, msg)| invalid(&at(&field), msg))?,
            ),
        };
        let (bound, below) = match (r.above, r.below) {
            (Some(v), None) => (v, false),
            (None, Some(v)) => (v, true),
            _ => {
                return Err(invalid(
                    &at("above"),
                    "a rule needs exactly one of above and below".into(),
                ));
            }
        };
        if !bound.is_finite() {
            return Err(invalid(
                &at(if below { "below" } else { "above" }),
                format!("{bound} must be a finite number"),
            ));
        }
        if matches!(metric, RuleMetric::Span(_)) && below {
            return Err(invalid(
                &at("below"),
                "span rules alert above an error rate or latency; use above".into(),
            ));
        }
        let window = r.window.0.as_secs();
        if window < f.windows.slot.0.as_secs() || window > coarse {
            return Err(invalid(
                &at("window"),
                "must be between one slot and windows.coarse_retention".into(),
            ));
        }
        let retention = f.metrics.retention.0.as_secs();
        if matches!(metric, RuleMetric::Otlp(_)) && window > retention {
            return Err(invalid(
                &at("window"),
                format!(
                    "{window}s is longer than metrics.retention ({retention}s), which an OTLP metric rule reads"
                ),
            ));
        }
        rules.push(ThresholdRule {
            name: r.name.clone(),
            service: r.service.clone(),
            selector: check_dims(&r.selector, &extra, &at("selector"), invalid)?,
            metric,
            bound,
            below,
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
    let mut gates = Vec::new();
    for (gi, g) in f.gates.iter().enumerate() {
        let at = |field: &str| format!("gates[{gi}].{field}");
        if f.gates[..gi].iter().any(|o| o.name == g.name) {
            return Err(invalid(
                &at("name"),
                format!("duplicate gate name {:?}", g.name),
            ));
        }
        gates.push(validate_gate(f, g, &at, invalid)?);
    }
    Ok(gates)
}

/// Most phases, and most criteria per phase, of a gate carried in a verdict request.
pub const INLINE_MAX_PHASES: usize = 32;
pub const INLINE_MAX_CRITERIA: usize = 64;

/// A gate carried in a verdict request, checked as a gate of the file `f` is (the same
/// function), plus the size limits of [`INLINE_MAX_PHASES`] and [`INLINE_MAX_CRITERIA`]. Field
/// paths start at `gate.`.
pub(super) fn validate_inline_gate(
    f: &FileConfig,
    g: &GateFile,
    invalid: Invalid,
) -> Result<GateConfig, ConfigError> {
    let at = |field: &str| format!("gate.{field}");
    if g.phases.len() > INLINE_MAX_PHASES {
        return Err(invalid(
            &at("phases"),
            format!(
                "{} phases; a gate in a request may have at most {INLINE_MAX_PHASES}",
                g.phases.len()
            ),
        ));
    }
    let criteria = std::iter::once(("criteria".to_string(), g.criteria.len())).chain(
        g.phases
            .iter()
            .enumerate()
            .map(|(i, p)| (format!("phases[{i}].criteria"), p.criteria.len())),
    );
    for (field, n) in criteria {
        if n > INLINE_MAX_CRITERIA {
            return Err(invalid(
                &at(&field),
                format!(
                    "{n} criteria; a gate in a request may have at most {INLINE_MAX_CRITERIA} here"
                ),
            ));
        }
    }
    validate_gate(f, g, &at, invalid)
}

/// One gate of `f` (or carried in a request); `at` turns a field of the gate into its path.
fn validate_gate(
    f: &FileConfig,
    g: &GateFile,
    at: &dyn Fn(&str) -> String,
    invalid: Invalid,
) -> Result<GateConfig, ConfigError> {
    let extra: Vec<&str> = f.cohorts.extra.iter().map(|e| e.name.as_str()).collect();
    let coarse = f.windows.coarse_retention.0.as_secs();
    let slot = f.windows.slot.0.as_secs();
    {
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
        let canary = check_dims(&g.canary, &extra, &at("canary"), invalid)?;
        let baseline = match baseline_stored {
            Some(_) => Vec::new(),
            None => check_dims(&g.baseline, &extra, &at("baseline"), invalid)?,
        };
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
            phases.push(phase_config(
                g,
                p,
                &pat,
                window_seconds,
                &common,
                baseline_stored.is_some(),
                f.metrics.retention.0.as_secs(),
                invalid,
            )?);
        }
        let analysis = analysis_config(&g.analysis, at, invalid)?;
        Ok(GateConfig {
            name: g.name.clone(),
            service: g.service.clone(),
            operation: g.operation.clone(),
            canary,
            baseline,
            baseline_stored,
            phases,
            analysis,
            inline: None,
        })
    }
}

/// Most looks one analysis may plan: each look's boundary integrates over every earlier one.
pub const MAX_LOOKS: u32 = 1000;

fn analysis_config(
    a: &super::file::AnalysisFile,
    at: &dyn Fn(&str) -> String,
    invalid: Invalid,
) -> Result<super::AnalysisConfig, ConfigError> {
    if !(a.false_rollback_rate > 0.0 && a.false_rollback_rate < 0.5) {
        return Err(invalid(
            &at("analysis.false_rollback_rate"),
            format!(
                "{} must be above 0 and below 0.5 (e.g. 0.01: one false rollback in 100 steps)",
                a.false_rollback_rate
            ),
        ));
    }
    if !(1..=MAX_LOOKS).contains(&a.looks) {
        return Err(invalid(
            &at("analysis.looks"),
            format!("{} must be between 1 and {MAX_LOOKS}", a.looks),
        ));
    }
    let interval_seconds = a.interval.0.as_secs();
    if interval_seconds == 0 {
        return Err(invalid(
            &at("analysis.interval"),
            "must be at least 1s".into(),
        ));
    }
    let expire_seconds = a.expire_after.0.as_secs();
    if expire_seconds < interval_seconds {
        return Err(invalid(
            &at("analysis.expire_after"),
            format!("must be at least analysis.interval ({interval_seconds}s)"),
        ));
    }
    Ok(super::AnalysisConfig {
        alpha: a.false_rollback_rate,
        looks: a.looks,
        interval_seconds,
        spending: a.spending,
        expire_seconds,
    })
}

/// One phase of a gate: the gate-wide criteria with the phase's own (same name replaces), each
/// checked, and none that compares request rates with a stored baseline.
#[allow(clippy::too_many_arguments)]
fn phase_config(
    g: &GateFile,
    p: &PhaseFile,
    pat: &dyn Fn(&str) -> String,
    window_seconds: u64,
    common: &[(slogate_gate::CriterionSpec, Option<MetricQuery>)],
    stored_baseline: bool,
    metrics_retention: u64,
    invalid: Invalid,
) -> Result<PhaseConfig, ConfigError> {
    let mut both = common.to_vec();
    for (ci, c) in p.criteria.iter().enumerate() {
        let spec = criterion_spec(c)
            .map_err(|(field, msg)| invalid(&pat(&format!("criteria[{ci}].{field}")), msg))?;
        match both.iter_mut().find(|x| x.0.name == spec.0.name) {
            Some(slot) => *slot = spec,
            None => both.push(spec),
        }
    }
    let measures: std::collections::BTreeMap<String, MetricQuery> = both
        .iter()
        .filter_map(|(c, q)| q.clone().map(|q| (c.name.clone(), q)))
        .collect();
    let criteria: Vec<slogate_gate::CriterionSpec> = both.into_iter().map(|(c, _)| c).collect();
    if !measures.is_empty() && window_seconds > metrics_retention {
        // The phase's own window, or the gate's it inherits.
        let field = match p.window {
            Some(_) => pat("window"),
            None => {
                let phase = pat("window");
                let cut = phase.find(".phases[").unwrap_or(phase.len());
                format!("{}.window", &phase[..cut])
            }
        };
        return Err(invalid(
            &field,
            format!(
                "{window_seconds}s is longer than metrics.retention ({metrics_retention}s), which the OTLP metric criteria read"
            ),
        ));
    }
    if criteria.is_empty() {
        return Err(invalid(
            &pat("criteria"),
            "a phase needs at least one criterion (gate-wide or its own)".into(),
        ));
    }
    if stored_baseline && let Some(why) = stored_problem(&criteria, &measures) {
        return Err(invalid(&pat("criteria"), why));
    }
    let spec = slogate_gate::GateSpec {
        name: g.name.clone(),
        min_requests: p.min_requests.unwrap_or(g.min_requests),
        criteria,
    };
    spec.validate()
        .map_err(|e| invalid(&pat("criteria"), e.to_string()))?;
    Ok(PhaseConfig {
        name: p.name.clone(),
        window_seconds,
        spec,
        measures,
    })
}

/// Why a phase's criteria cannot compare with a stored baseline, if one cannot: checked at
/// config load for `baseline: {stored: NAME}` and per request for `baseline.stored=NAME`.
pub(crate) fn stored_problem(
    criteria: &[slogate_gate::CriterionSpec],
    measures: &std::collections::BTreeMap<String, MetricQuery>,
) -> Option<String> {
    for c in criteria.iter().filter(|c| c.check.is_relative()) {
        if let Some(why) = measures.get(&c.name).and_then(stored_comparison_problem) {
            return Some(format!(
                "criterion {:?} cannot be compared with a stored baseline: {why}; compare it absolutely or with a live baseline cohort",
                c.name
            ));
        }
        // A stored baseline covers another span of time than the gate's window, so only
        // rates and latencies compare; a request rate would not.
        if matches!(c.check, slogate_gate::Check::Threshold { metric: slogate_gate::Metric::RequestRate, comparison, .. } if comparison != slogate_gate::Comparison::Absolute)
        {
            return Some(format!(
                "criterion {:?} compares request rates with a stored baseline, which covers a different span of time; compare error rates or latencies",
                c.name
            ));
        }
    }
    None
}

/// Why an OTLP metric query cannot be compared with a stored baseline, if it cannot. A stored
/// baseline keeps each stream's per-slot totals merged over its range: time in a state and
/// transitions need the points; a count, increase or sum grows with the span of time, which
/// differs from the gate's window (a ratio of two selections, or per span request, does not).
fn stored_comparison_problem(q: &MetricQuery) -> Option<String> {
    use slogate_metrics::Aggregate as A;
    let aggregates = std::iter::once(&q.numerator).chain(match &q.divide_by {
        Some(crate::config::Divisor::Metric(d)) => Some(d),
        _ => None,
    });
    for m in aggregates {
        if matches!(m.aggregate, A::TimeInState { .. } | A::Transitions { .. }) {
            return Some(format!(
                "an OTLP metric's {} is measured from its points, and a stored baseline keeps per-slot totals",
                m.aggregate
            ));
        }
    }
    let spans_dependent = matches!(q.numerator.aggregate, A::Count | A::Increase | A::Sum);
    (q.divide_by.is_none() && spans_dependent).then(|| {
        format!(
            "the {} of an OTLP metric grows with the span of time, and a stored baseline covers another span than the window (compare a rate, or divide by another selection or by requests)",
            q.numerator.aggregate
        )
    })
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
    c: &super::file::CriterionFile,
) -> Result<(slogate_gate::CriterionSpec, Option<MetricQuery>), (String, String)> {
    use slogate_gate::{Check, Comparison, Direction};
    let own = |(f, m): (&'static str, String)| (f.to_string(), m);
    if let Some(otlp) = &c.otlp {
        return otlp_criterion_spec(c, otlp);
    }
    for (field, set) in [
        ("where", !c.where_.is_empty()),
        ("aggregate", c.aggregate.is_some()),
        ("across", c.across.is_some()),
        ("state", c.state.is_some()),
        ("divide_by", c.divide_by.is_some()),
    ] {
        if set {
            return Err((
                field.into(),
                format!("{field} applies to an OTLP metric criterion (otlp: NAME)"),
            ));
        }
    }
    let check = (|| -> Result<slogate_gate::Check, (&'static str, String)> { Ok(match c.test.as_deref() {
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
            let pass = c.pass.ok_or((
                "pass",
                "a threshold criterion needs a pass bound".to_string(),
            ))?;
            let fail = c.fail.ok_or((
                "fail",
                "a threshold criterion needs a fail bound".to_string(),
            ))?;
            match c.confidence {
                // A threshold with a confidence is judged on its confidence interval.
                Some(confidence) => {
                    if direction == Some(Direction::HigherIsBetter) {
                        return Err((
                            "direction",
                            "a criterion with a confidence judges a latency or the error rate, where lower is better".to_string(),
                        ));
                    }
                    if !matches!(
                        metric,
                        slogate_gate::Metric::Latency { .. } | slogate_gate::Metric::ErrorRate
                    ) {
                        return Err((
                            "confidence",
                            "confidence bounds exist for latency_pNN and error_rate; judge request_rate without one".to_string(),
                        ));
                    }
                    if comparison == Comparison::Difference {
                        return Err((
                            "compare",
                            "a criterion with a confidence compares absolute or ratio".to_string(),
                        ));
                    }
                    Check::Interval {
                        metric,
                        comparison,
                        pass,
                        fail,
                        confidence,
                        baseline_known: c.baseline_known.unwrap_or(false),
                    }
                }
                None if c.baseline_known.is_some() => {
                    return Err((
                        "baseline_known",
                        "baseline_known applies to a criterion with a confidence".to_string(),
                    ));
                }
                None => Check::Threshold {
                    metric,
                    comparison,
                    pass,
                    fail,
                    direction,
                },
            }
        }
    })})().map_err(own)?;
    let spec = slogate_gate::CriterionSpec {
        name: c.name.clone(),
        check,
        min_requests: c.min_requests,
        sustained_seconds: c.sustained.map(|d| d.0.as_secs()),
    };
    spec.validate()
        .map_err(|e| ("name".to_string(), e.to_string()))?;
    Ok((spec, None))
}

/// A criterion over an OTLP metric: a threshold on the number [`MetricQuery`] measures.
fn otlp_criterion_spec(
    c: &super::file::CriterionFile,
    otlp: &str,
) -> Result<(slogate_gate::CriterionSpec, Option<MetricQuery>), (String, String)> {
    use slogate_gate::{Check, Comparison, Direction};
    for (field, set) in [
        ("metric", c.metric.is_some()),
        ("test", c.test.is_some()),
        ("confidence", c.confidence.is_some()),
        ("baseline_known", c.baseline_known.is_some()),
        ("min_requests", c.min_requests.is_some()),
        ("max_effect", c.max_effect.is_some()),
        ("max_difference", c.max_difference.is_some()),
    ] {
        if set {
            return Err((
                field.into(),
                format!(
                    "an OTLP metric criterion (otlp: {otlp}) is a threshold on its value; {field} does not apply"
                ),
            ));
        }
    }
    let query = super::metrics::query(
        super::metrics::SelectFields {
            otlp,
            where_: &c.where_,
            aggregate: c.aggregate.as_deref(),
            across: c.across.as_deref(),
            state: c.state,
        },
        c.divide_by.as_ref(),
    )?;
    let comparison = match c.compare.as_deref().unwrap_or("absolute") {
        "absolute" => Comparison::Absolute,
        "ratio" => Comparison::Ratio,
        "difference" => Comparison::Difference,
        other => {
            return Err((
                "compare".into(),
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
                "direction".into(),
                format!("unknown direction {other:?}; use lower_is_better or higher_is_better"),
            ));
        }
    };
    let pass = c.pass.ok_or((
        "pass".to_string(),
        "a metric criterion needs a pass bound".to_string(),
    ))?;
    let fail = c.fail.ok_or((
        "fail".to_string(),
        "a metric criterion needs a fail bound".to_string(),
    ))?;
    let spec = slogate_gate::CriterionSpec {
        name: c.name.clone(),
        check: Check::Threshold {
            metric: slogate_gate::Metric::Measured,
            comparison,
            pass,
            fail,
            direction,
        },
        min_requests: None,
        sustained_seconds: c.sustained.map(|d| d.0.as_secs()),
    };
    spec.validate()
        .map_err(|e| ("name".to_string(), e.to_string()))?;
    Ok((spec, Some(query)))
}
