//! Configuration: the YAML file format (unknown fields rejected, errors with file, line and
//! field), its embedded defaults, and validation into the runtime [`Config`].
//!
//! The file format ([`FileConfig`]) and the runtime struct ([`Config`]) are separate so that
//! defaults live in one place (`deploy/slogate.yaml` is embedded as the defaults' documentation
//! and parsed by a test) and the rest of the program only sees validated values.

use serde::{Deserialize, Deserializer, Serialize};
use slogate_ingest::extract::ExtractConfig;
use slogate_ingest::IngestLimits;
use slogate_window::WindowConfig;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// The annotated example, which is also what `slogate serve` runs without a file.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../../deploy/slogate.yaml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read { file: String, source: std::io::Error },
    #[error("{file}:{line}:{column}: {message}")]
    Parse { file: String, line: usize, column: usize, message: String },
    #[error("{file}{}: {field}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid { file: String, line: Option<usize>, field: String, message: String },
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
            .map_err(|e| serde::de::Error::custom(format!("invalid duration {s:?} ({e}); write e.g. 10s, 5m, 1h, 3d")))
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
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            otlp_grpc: Self::default_grpc(),
            otlp_http: Self::default_http(),
            http: Self::default_api(),
            shutdown_grace: Self::default_shutdown(),
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
        vec!["deployment.environment.name".into(), "deployment.environment".into()]
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
        LimitSection { max_series_per_service: Self::default_per_service(), max_series: Self::default_total() }
    }
}

/// The validated runtime configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub source: String,
    pub file: FileConfig,
    pub extract: ExtractConfig,
    pub limits: IngestLimits,
    pub window: WindowConfig,
}

impl Config {
    /// Loads a file, or the embedded defaults when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        match path {
            Some(p) => {
                let file = p.display().to_string();
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read { file: file.clone(), source })?;
                Config::parse(&text, &file)
            }
            None => Config::parse(EMBEDDED_DEFAULT, "<embedded default>"),
        }
    }

    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        // An empty file is the defaults, not a parse error.
        let text = if text.trim().is_empty() { "{}" } else { text };
        let parsed: FileConfig = serde_path_to_error::deserialize(serde_yaml_ng::Deserializer::from_str(text)).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let (line, column) = inner.location().map_or((0, 0), |l| (l.line(), l.column()));
            // serde_yaml_ng appends " at line L column C" and may prefix a partial path; the
            // position goes first and the full field path comes from serde_path_to_error.
            let message = inner.to_string();
            let mut message = message.split(" at line ").next().unwrap_or(&message).to_string();
            if let Some((prefix, rest)) = message.split_once(": ") {
                if !prefix.contains(' ') {
                    message = rest.to_string();
                }
            }
            let message = if path == "." { message } else { format!("{path}: {message}") };
            ConfigError::Parse { file: file.to_string(), line, column, message }
        })?;
        Config::validate(parsed, file, text)
    }

    fn validate(f: FileConfig, file: &str, text: &str) -> Result<Config, ConfigError> {
        let invalid = |field: &str, message: String| ConfigError::Invalid { file: file.into(), line: locate(text, field), field: field.into(), message };
        let secs = |d: HumanDuration| d.0.as_secs();
        let w = &f.windows;
        if secs(w.slot) == 0 || w.slot.0.subsec_nanos() != 0 {
            return Err(invalid("windows.slot", "must be a whole number of seconds, at least 1s".into()));
        }
        if secs(w.coarse_slot) < secs(w.slot) || secs(w.coarse_slot) % secs(w.slot) != 0 {
            return Err(invalid("windows.coarse_slot", format!("must be a multiple of windows.slot ({}s)", secs(w.slot))));
        }
        if secs(w.fine_retention) < 60 || secs(w.fine_retention) < secs(w.slot) {
            return Err(invalid("windows.fine_retention", "must be at least 1m and at least one slot".into()));
        }
        if secs(w.coarse_retention) < secs(w.fine_retention) {
            return Err(invalid("windows.coarse_retention", "must be at least windows.fine_retention".into()));
        }
        let mut kinds_mask = 0u8;
        for (i, k) in f.ingest.span_kinds.iter().enumerate() {
            match ExtractConfig::kind_from_name(k) {
                Some(kind) => kinds_mask |= 1 << kind,
                None => {
                    return Err(invalid(&format!("ingest.span_kinds[{i}]"), format!("unknown span kind {k:?}; use server, consumer, client, producer or internal")))
                }
            }
        }
        if kinds_mask == 0 {
            return Err(invalid("ingest.span_kinds", "must name at least one span kind".into()));
        }
        if f.ingest.max_request_bytes < 1024 {
            return Err(invalid("ingest.max_request_bytes", "must be at least 1024".into()));
        }
        if f.ingest.max_inflight_requests == 0 {
            return Err(invalid("ingest.max_inflight_requests", "must be at least 1".into()));
        }
        for (name, keys) in [("cohorts.service", &f.cohorts.service), ("cohorts.env", &f.cohorts.env), ("cohorts.version", &f.cohorts.version)] {
            if keys.is_empty() && name == "cohorts.service" {
                return Err(invalid(name, "must name at least one attribute".into()));
            }
        }
        if f.cohorts.extra.len() > slogate_core::MAX_EXTRA_DIMS {
            return Err(invalid("cohorts.extra", format!("at most {} extra dimensions", slogate_core::MAX_EXTRA_DIMS)));
        }
        for (i, e) in f.cohorts.extra.iter().enumerate() {
            let valid_name = !e.name.is_empty() && e.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !valid_name || slogate_core::DIMENSIONS.contains(&e.name.as_str()) {
                return Err(invalid(&format!("cohorts.extra[{i}].name"), format!("{:?} must be lowercase [a-z0-9_] and not a built-in dimension", e.name)));
            }
            if e.attributes.is_empty() {
                return Err(invalid(&format!("cohorts.extra[{i}].attributes"), "must name at least one attribute".into()));
            }
        }
        if f.limits.max_series_per_service == 0 || f.limits.max_series == 0 {
            return Err(invalid("limits", "series caps must be at least 1".into()));
        }
        let bytes = |v: &Vec<String>| v.iter().map(|s| s.as_bytes().to_vec()).collect::<Vec<_>>();
        let extract = ExtractConfig {
            service_keys: bytes(&f.cohorts.service),
            env_keys: bytes(&f.cohorts.env),
            version_keys: bytes(&f.cohorts.version),
            extras: f.cohorts.extra.iter().map(|e| bytes(&e.attributes)).collect(),
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
        Ok(Config { source: file.to_string(), file: f, extract, limits, window })
    }
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
        assert_eq!(serde_json::to_value(&c.file).unwrap(), serde_json::to_value(&from_empty.file).unwrap(), "deploy/slogate.yaml documents the real defaults");
        assert_eq!(c.window.slot_seconds, 10);
    }

    #[test]
    fn every_example_under_deploy_parses() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy");
        let mut seen = 0;
        for entry in walk(Path::new(root)) {
            let text = std::fs::read_to_string(&entry).unwrap();
            if entry.extension().is_some_and(|e| e == "yaml") && text.starts_with("# slogate configuration") {
                Config::parse(&text, &entry.display().to_string()).unwrap_or_else(|e| panic!("{e}"));
                seen += 1;
            }
        }
        assert!(seen >= 1, "no slogate configuration found under deploy/");
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
        check("server:\n  http: 0.0.0.0:8080\n  htpp: 1\n", "slogate.yaml:3:3: server.htpp: unknown field `htpp`, expected one of `otlp_grpc`, `otlp_http`, `http`, `shutdown_grace`");
        check("windows:\n  slot: ten seconds\n", "slogate.yaml:2:3: windows.slot: invalid duration \"ten seconds\" (expected number at 0); write e.g. 10s, 5m, 1h, 3d");
        check("windows:\n  slot: 7s\n", "slogate.yaml: windows.coarse_slot: must be a multiple of windows.slot (7s)");
        check("ingest:\n  span_kinds: [server, sever]\n", "slogate.yaml:2: ingest.span_kinds[1]: unknown span kind \"sever\"; use server, consumer, client, producer or internal");
        check("cohorts:\n  extra:\n    - name: version\n      attributes: [x]\n", "slogate.yaml:3: cohorts.extra[0].name: \"version\" must be lowercase [a-z0-9_] and not a built-in dimension");
        check("limits: [1, 2]\n", "slogate.yaml:1:9: limits: invalid type: sequence, expected struct LimitSection");
    }
}
