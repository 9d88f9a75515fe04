//! The HTTP API on :8080: `/api/v1/sli`, `/metrics`, `/healthz`, `/readyz`, and the dashboard at `/`.

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use slogate_core::Selector;
use slogate_ingest::IngestStats;
use slogate_window::Registry;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<Registry>,
    pub stats: Arc<IngestStats>,
    pub ready: Arc<AtomicBool>,
    pub started: std::time::Instant,
    pub gates: Arc<crate::gates::Gates>,
    pub alerts: Arc<crate::alerts::Alerts>,
    pub delivery: Option<Arc<slogate_alert::DeliveryStats>>,
    pub history: Option<slogate_history::History>,
    pub sql_limits: (usize, std::time::Duration),
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/sli", get(sli))
        .route("/api/v1/gates", get(list_gates))
        .route(
            "/api/v1/gates/{gate}/verdict",
            get(verdict_get).post(verdict_post),
        )
        .route("/api/v1/verdicts", get(verdict_history))
        .route("/api/v1/baselines", get(list_baselines))
        .route("/api/v1/slos", get(list_slos))
        .route("/api/v1/slos/{name}", get(one_slo))
        .route("/api/v1/alerts", get(list_alerts))
        .route("/api/v1/sql", axum::routing::post(sql))
        .merge(crate::dashboard::routes())
        .fallback(|| async {
            api_error(
                StatusCode::NOT_FOUND,
                "no such endpoint; see GET / for the list".into(),
            )
        })
        .with_state(state)
}

/// Every API error is `{"error": "..."}` with a matching status.
pub fn api_error(status: StatusCode, message: String) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

/// The dashboard (see `dashboard`): the page, its assets and `/api/v1/series`.
async fn index() -> Response {
    crate::dashboard::index()
}

async fn readyz(State(st): State<AppState>) -> Response {
    if st.ready.load(Ordering::SeqCst) {
        "ready\n".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

/// Parses a window like `10m`; windows run from one slot to the coarse retention.
pub fn parse_window(s: &str, registry: &Registry) -> Result<u64, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid window {s:?}: {e}; write e.g. 1m, 10m, 1h"))?;
    let secs = d.as_secs();
    let cfg = registry.config();
    if secs < cfg.slot_seconds || secs > cfg.coarse_retention_seconds {
        return Err(format!(
            "window {s:?} is outside {}s..{}s (one slot to the coarse retention)",
            cfg.slot_seconds, cfg.coarse_retention_seconds
        ));
    }
    Ok(secs)
}

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct LatencyMs {
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    pub p999: Option<f64>,
}

#[derive(Serialize)]
struct SliResponse {
    service: String,
    selector: String,
    window_seconds: u64,
    covered_seconds: u64,
    series: usize,
    requests: u64,
    errors: u64,
    /// `null` when there were no requests: no data is not a zero error rate.
    error_rate: Option<f64>,
    rate_per_second: f64,
    latency_ms: LatencyMs,
}

fn ms(v: Option<u64>) -> Option<f64> {
    // Round to the microsecond: the sketch is exact to 0.4%, more digits are noise.
    v.map(|ns| (ns as f64 / 1e3).round() / 1e3)
}

pub fn latency_ms(sketch: &slogate_sketch::Sketch) -> LatencyMs {
    let [p50, p90, p95, p99, p999] = sketch.quantiles([0.5, 0.9, 0.95, 0.99, 0.999]);
    LatencyMs {
        p50: ms(p50),
        p90: ms(p90),
        p95: ms(p95),
        p99: ms(p99),
        p999: ms(p999),
    }
}

async fn sli(
    State(st): State<AppState>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Response {
    let Some(service) = params.get("service").filter(|s| !s.is_empty()) else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "missing query parameter `service`".into(),
        );
    };
    let window = match parse_window(
        params.get("window").map_or("10m", String::as_str),
        &st.registry,
    ) {
        Ok(w) => w,
        Err(e) => return api_error(StatusCode::BAD_REQUEST, e),
    };
    let pairs = params
        .iter()
        .filter(|(k, _)| k.as_str() != "window")
        .map(|(k, v)| (k.clone(), v.clone()));
    let selector = match Selector::new(pairs, &st.registry.config().extra_dims) {
        Ok(s) => s,
        Err(e) => return api_error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let w = st.registry.query(&selector, window);
    Json(SliResponse {
        service: service.clone(),
        selector: selector.to_string(),
        window_seconds: window,
        covered_seconds: w.covered_seconds,
        series: w.series,
        requests: w.requests,
        errors: w.errors,
        error_rate: (w.requests > 0).then(|| w.errors as f64 / w.requests as f64),
        rate_per_second: w.requests as f64 / w.covered_seconds.max(1) as f64,
        latency_ms: latency_ms(&w.sketch),
    })
    .into_response()
}

async fn metrics(State(st): State<AppState>) -> Response {
    let mut out = String::with_capacity(8 << 10);
    st.stats.render(&mut out);
    let r = &st.registry;
    let series = r.series_count();
    let m = r.memory();
    let memory = m.live + m.closed();
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let _ = write!(
        out,
        "# HELP slogate_series Series tracked, including overflow series.\n# TYPE slogate_series gauge\nslogate_series {series}\n\
         # HELP slogate_overflow_observations_total Spans recorded into an overflow series because a cardinality cap was reached.\n# TYPE slogate_overflow_observations_total counter\nslogate_overflow_observations_total {}\n\
         # HELP slogate_series_memory_bytes Heap bytes held by series state (history, keys, open slots).\n# TYPE slogate_series_memory_bytes gauge\nslogate_series_memory_bytes {memory}\n\
         # HELP slogate_series_state_bytes The same heap bytes by part: live (keys, index, open slots), fine and coarse closed slots.\n# TYPE slogate_series_state_bytes gauge\nslogate_series_state_bytes{{part=\"live\"}} {}\nslogate_series_state_bytes{{part=\"fine\"}} {}\nslogate_series_state_bytes{{part=\"coarse\"}} {}\n\
         # HELP slogate_slots_closed_total Open slots merged into series histories.\n# TYPE slogate_slots_closed_total counter\nslogate_slots_closed_total {}\n\
         # HELP slogate_uptime_seconds Seconds since the server started.\n# TYPE slogate_uptime_seconds gauge\nslogate_uptime_seconds {}\n",
        load(&r.stats.overflow_observations),
        m.live,
        m.fine,
        m.coarse,
        load(&r.stats.slots_closed),
        st.started.elapsed().as_secs()
    );
    st.gates.render_metrics(&mut out);
    st.alerts.render_metrics(&mut out);
    if let Some(d) = &st.delivery {
        d.render_metrics(&mut out);
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

#[derive(Serialize)]
struct GateListing<'a> {
    name: &'a str,
    service: &'a str,
    operation: Option<&'a str>,
    canary: BTreeMap<&'a str, &'a str>,
    baseline: BTreeMap<&'a str, &'a str>,
    phases: Vec<PhaseListing<'a>>,
}

#[derive(Serialize)]
struct PhaseListing<'a> {
    name: &'a str,
    window_seconds: u64,
    min_requests: u64,
    criteria: &'a [slogate_gate::CriterionSpec],
}

async fn list_gates(State(st): State<AppState>) -> Response {
    let gates: Vec<GateListing<'_>> = st
        .gates
        .configs()
        .iter()
        .map(|g| GateListing {
            name: &g.name,
            service: &g.service,
            operation: g.operation.as_deref(),
            canary: g
                .canary
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
            baseline: g
                .baseline
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
            phases: g
                .phases
                .iter()
                .map(|p| PhaseListing {
                    name: &p.name,
                    window_seconds: p.window_seconds,
                    min_requests: p.spec.min_requests,
                    criteria: &p.spec.criteria,
                })
                .collect(),
        })
        .collect();
    Json(serde_json::json!({ "gates": gates })).into_response()
}

/// The body of `POST /api/v1/gates/{gate}/verdict`.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct VerdictRequest {
    #[serde(default)]
    pub phase: Option<String>,
    #[serde(default)]
    pub canary: BTreeMap<String, String>,
    #[serde(default)]
    pub baseline: BTreeMap<String, String>,
}

fn verdict_response(st: &AppState, gate: &str, req: VerdictRequest) -> Response {
    let canary: Vec<(String, String)> = req.canary.into_iter().collect();
    let baseline: Vec<(String, String)> = req.baseline.into_iter().collect();
    match st
        .gates
        .evaluate(gate, req.phase.as_deref(), &canary, &baseline)
    {
        Ok(doc) => Json(&*doc).into_response(),
        Err(e) => api_error(e.http_status(), e.to_string()),
    }
}

async fn verdict_get(
    State(st): State<AppState>,
    axum::extract::Path(gate): axum::extract::Path<String>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let mut req = VerdictRequest::default();
    for (k, v) in params {
        if k == "phase" {
            req.phase = Some(v);
        } else if let Some(dim) = k.strip_prefix("canary.") {
            req.canary.insert(dim.to_string(), v);
        } else if let Some(dim) = k.strip_prefix("baseline.") {
            req.baseline.insert(dim.to_string(), v);
        } else {
            return api_error(
                StatusCode::BAD_REQUEST,
                format!(
                    "unknown query parameter `{k}`; use phase, canary.<dimension> and baseline.<dimension>"
                ),
            );
        }
    }
    verdict_response(&st, &gate, req)
}

async fn verdict_post(
    State(st): State<AppState>,
    axum::extract::Path(gate): axum::extract::Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let req: VerdictRequest = if body.is_empty() {
        VerdictRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => {
                return api_error(
                    StatusCode::BAD_REQUEST,
                    format!("invalid verdict request: {e}"),
                );
            }
        }
    };
    verdict_response(&st, &gate, req)
}

async fn verdict_history(
    State(st): State<AppState>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Response {
    let limit = match params.get("limit").map(|l| l.parse::<usize>()) {
        None => 100,
        Some(Ok(n)) if (1..=crate::gates::VERDICT_LOG_CAPACITY).contains(&n) => n,
        Some(_) => {
            return api_error(
                StatusCode::BAD_REQUEST,
                format!("limit must be 1..={}", crate::gates::VERDICT_LOG_CAPACITY),
            );
        }
    };
    let held = st
        .gates
        .history(params.get("gate").map(String::as_str), limit);
    let docs: Vec<&crate::gates::VerdictDoc> = held.iter().map(|d| &**d).collect();
    Json(serde_json::json!({ "verdicts": docs })).into_response()
}

/// The stored baselines (summaries, no sketches), read afresh from the history root.
async fn list_baselines(State(st): State<AppState>) -> Response {
    let store = st.gates.baselines().clone();
    match tokio::task::spawn_blocking(move || store.summaries()).await {
        Ok(Ok(list)) => Json(serde_json::json!({ "baselines": list })).into_response(),
        Ok(Err(e)) => api_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => api_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn list_slos(State(st): State<AppState>) -> Response {
    let alerts = st.alerts.clone();
    let slos = tokio::task::spawn_blocking(move || {
        alerts
            .slo_names()
            .iter()
            .filter_map(|n| alerts.slo_status(n))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    Json(serde_json::json!({ "slos": slos })).into_response()
}

async fn one_slo(
    State(st): State<AppState>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Response {
    let alerts = st.alerts.clone();
    let lookup = name.clone();
    match tokio::task::spawn_blocking(move || alerts.slo_status(&lookup))
        .await
        .ok()
        .flatten()
    {
        Some(s) => Json(s).into_response(),
        None => api_error(
            StatusCode::NOT_FOUND,
            format!("unknown SLO {name:?}; GET /api/v1/slos lists them"),
        ),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlRequest {
    query: String,
}

/// Read-only SQL over the Parquet history (DataFusion), with row and time limits.
async fn sql(State(st): State<AppState>, body: axum::body::Bytes) -> Response {
    let Some(history) = st.history.clone() else {
        return api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the history is disabled (history.enabled: false)".into(),
        );
    };
    let req: SqlRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return api_error(
                StatusCode::BAD_REQUEST,
                format!("invalid sql request: {e}; send {{\"query\": \"SELECT ...\"}}"),
            );
        }
    };
    let (max_rows, timeout) = st.sql_limits;
    match history.sql(&req.query, max_rows, timeout).await {
        Ok(result) => Json(result).into_response(),
        Err(e) => {
            let status = match e {
                slogate_history::HistoryError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
                slogate_history::HistoryError::Io { .. }
                | slogate_history::HistoryError::Parquet(_)
                | slogate_history::HistoryError::Corrupt(_) => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::BAD_REQUEST,
            };
            api_error(status, e.to_string())
        }
    }
}

async fn list_alerts(State(st): State<AppState>) -> Response {
    let delivery = st.delivery.as_ref().map(|d| d.snapshot());
    Json(serde_json::json!({
        "alerts": st.alerts.views(),
        "transitions": st.alerts.transitions(100),
        "delivery": delivery,
    }))
    .into_response()
}

/// A minimal HTTP/1.1 client for the CLI (plain http only): GET, or POST with a JSON body.
pub fn client_request(url: &str, json_body: Option<&str>) -> Result<(u16, String), String> {
    use std::io::{Read, Write};
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("only http:// URLs are supported: {url}"))?;
    let (hostport, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let mut stream = std::net::TcpStream::connect(hostport)
        .map_err(|e| format!("cannot connect to {hostport}: {e}"))?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .ok();
    let request = match json_body {
        None => format!(
            "GET {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\nAccept: application/json\r\n\r\n"
        ),
        Some(body) => format!(
            "POST {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\nAccept: application/json\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    };
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    stream
        .read_to_end(&mut buf)
        .map_err(|e| format!("reading the response: {e}"))?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or("malformed HTTP response")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("malformed status line")?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, body))
}

pub fn client_get(url: &str) -> Result<(u16, String), String> {
    client_request(url, None)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}
