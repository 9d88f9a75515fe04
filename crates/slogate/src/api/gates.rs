//! Gates over HTTP: `GET /api/v1/gates`, `GET|POST /api/v1/gates/{gate}/verdict` and the
//! verdict log `GET /api/v1/verdicts`.

use super::{ApiError, AppState};
use crate::engine::analysis::AnalysisRequest;
use crate::engine::gates::{TimelineDoc, VERDICT_LOG_CAPACITY, VerdictDoc};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::collections::BTreeMap;

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
    /// What each OTLP metric criterion measures, by name: `max(jobs.queue.depth)`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    measures: BTreeMap<&'a str, &'a str>,
}

fn pairs(p: &[(String, String)]) -> BTreeMap<&str, &str> {
    p.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// The configured gates: cohorts, phases, windows and criteria.
#[utoipa::path(
    get,
    path = "/api/v1/gates",
    tag = "gates",
    responses((status = 200, description = "`{\"gates\": [...]}`", body = serde_json::Value)),
)]
pub async fn list(State(st): State<AppState>) -> Response {
    let configs = st.gates.configs();
    let gates: Vec<GateListing<'_>> = configs
        .iter()
        .map(|g| GateListing {
            name: &g.name,
            service: &g.service,
            operation: g.operation.as_deref(),
            canary: pairs(&g.canary),
            baseline: pairs(&g.baseline),
            phases: g
                .phases
                .iter()
                .map(|p| PhaseListing {
                    name: &p.name,
                    window_seconds: p.window_seconds,
                    min_requests: p.spec.min_requests,
                    criteria: &p.spec.criteria,
                    measures: p
                        .measures
                        .iter()
                        .map(|(name, q)| (name.as_str(), q.label.as_str()))
                        .collect(),
                })
                .collect(),
        })
        .collect();
    Json(serde_json::json!({ "gates": gates })).into_response()
}

/// The body of `POST /api/v1/gates/{gate}/verdict`; the GET form carries the same as `phase`,
/// `canary.<dim>`, `baseline.<dim>`, `analysis`, `looks` and `interval` query parameters.
#[derive(serde::Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerdictRequest {
    #[serde(default)]
    pub phase: Option<String>,
    #[serde(default)]
    pub canary: BTreeMap<String, String>,
    #[serde(default)]
    pub baseline: BTreeMap<String, String>,
    /// The analysis (rollout step) this look belongs to: `{"id": "...", "looks": 10,
    /// "interval_seconds": 60}`.
    #[serde(default)]
    pub analysis: Option<AnalysisRequest>,
    /// The gate itself, as a gate of the configuration file is written (service, window,
    /// criteria, phases, ...), for a gate that the application's repository owns: validated
    /// exactly as the configuration is, named by the URL, never a configured gate's name.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub gate: Option<serde_json::Value>,
}

impl VerdictRequest {
    fn from_query(params: Vec<(String, String)>) -> Result<VerdictRequest, ApiError> {
        let mut req = VerdictRequest::default();
        let mut looks = None;
        let mut interval_seconds = None;
        for (k, v) in params {
            if k == "phase" {
                req.phase = Some(v);
            } else if k == "analysis" {
                req.analysis = Some(AnalysisRequest {
                    id: v,
                    ..AnalysisRequest::default()
                });
            } else if k == "looks" {
                looks = Some(v.parse::<u32>().map_err(|_| {
                    ApiError::bad_request(format!("looks={v:?} is not a whole number"))
                })?);
            } else if k == "interval" {
                let d = humantime::parse_duration(&v).map_err(|e| {
                    ApiError::bad_request(format!(
                        "interval={v:?} is not a duration (e.g. 1m): {e}"
                    ))
                })?;
                interval_seconds = Some(d.as_secs());
            } else if let Some(dim) = k.strip_prefix("canary.") {
                req.canary.insert(dim.to_string(), v);
            } else if let Some(dim) = k.strip_prefix("baseline.") {
                req.baseline.insert(dim.to_string(), v);
            } else {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter `{k}`; use phase, canary.<dimension>, baseline.<dimension>, analysis, looks and interval"
                )));
            }
        }
        match req.analysis.as_mut() {
            Some(a) => {
                a.looks = looks;
                a.interval_seconds = interval_seconds;
            }
            None if looks.is_some() || interval_seconds.is_some() => {
                return Err(ApiError::bad_request(
                    "looks and interval describe an analysis; pass analysis=<id> with them",
                ));
            }
            None => {}
        }
        Ok(req)
    }
}

fn evaluate(st: &AppState, gate: &str, req: VerdictRequest) -> Result<Response, ApiError> {
    let canary: Vec<(String, String)> = req.canary.into_iter().collect();
    let baseline: Vec<(String, String)> = req.baseline.into_iter().collect();
    let phase = req.phase.as_deref();
    let analysis = req.analysis.as_ref();
    let doc = match &req.gate {
        None => st
            .gates
            .evaluate(gate, phase, &canary, &baseline, analysis)?,
        Some(definition) => {
            let inline = st
                .config
                .get()
                .inline_gate(gate, definition)
                .map_err(|e| ApiError::bad_request(format!("invalid gate: {e}")))?;
            st.gates
                .evaluate_inline(&inline, phase, &canary, &baseline, analysis)?
        }
    };
    Ok(Json(&*doc).into_response())
}

/// Evaluates a configured gate now and records the verdict.
#[utoipa::path(
    get,
    path = "/api/v1/gates/{gate}/verdict",
    tag = "gates",
    params(
        ("gate" = String, Path, description = "A configured gate", example = "checkout"),
        ("phase" = Option<String>, Query, description = "The phase (default: the first)"),
        ("canary.version" = Option<String>, Query, description = "Canary cohort; any `canary.<dimension>`"),
        ("baseline.version" = Option<String>, Query, description = "Baseline cohort; any `baseline.<dimension>`, or `baseline.stored=NAME`"),
        ("analysis" = Option<String>, Query, description = "The analysis (rollout step) this look belongs to"),
        ("looks" = Option<u32>, Query, description = "Looks the analysis plans", minimum = 1, maximum = 1000),
        ("interval" = Option<String>, Query, description = "Time between looks", example = "1m"),
    ),
    responses(
        (status = 200, description = "The verdict, whatever it is (read `verdict`)", body = VerdictDoc),
        (status = 400, description = "An invalid cohort or analysis", body = super::openapi::ErrorBody),
        (status = 404, description = "No such gate, phase or stored baseline", body = super::openapi::ErrorBody),
        (status = 500, description = "A stored baseline that cannot be read", body = super::openapi::ErrorBody),
    ),
)]
pub async fn verdict_get(
    State(st): State<AppState>,
    Path(gate): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    evaluate(&st, &gate, VerdictRequest::from_query(params)?)
}

/// Evaluates a gate now (a configured one, or one carried in the body's `gate`) and records
/// the verdict.
#[utoipa::path(
    post,
    path = "/api/v1/gates/{gate}/verdict",
    tag = "gates",
    params(("gate" = String, Path, description = "A configured gate, or the name of the gate in the body", example = "checkout")),
    request_body(content = VerdictRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The verdict, whatever it is (read `verdict`)", body = VerdictDoc),
        (status = 400, description = "An invalid request or gate (the error names the field)", body = super::openapi::ErrorBody),
        (status = 404, description = "No such gate, phase or stored baseline", body = super::openapi::ErrorBody),
        (status = 408, description = "The body did not arrive within `server.body_read_timeout`", body = super::openapi::ErrorBody),
        (status = 413, description = "A body over 1 MiB", body = super::openapi::ErrorBody),
        (status = 415, description = "The body is not JSON", body = super::openapi::ErrorBody),
        (status = 500, description = "A stored baseline that cannot be read", body = super::openapi::ErrorBody),
    ),
)]
///
/// The POST form takes the request in its JSON body, or the cohorts, phase and analysis in the
/// query string as the GET form does and only the gate in the body (so an Argo template keeps
/// one URL whichever form it uses); not both.
pub async fn verdict_post(
    State(st): State<AppState>,
    Path(gate): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let mut req = if body.is_empty() {
        VerdictRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("invalid verdict request: {e}")))?
    };
    if !params.is_empty() {
        let in_body = req.phase.is_some()
            || !req.canary.is_empty()
            || !req.baseline.is_empty()
            || req.analysis.is_some();
        if in_body {
            return Err(ApiError::bad_request(
                "the request is in both the query string and the body; give phase, cohorts and analysis in one of them",
            ));
        }
        req = VerdictRequest {
            gate: req.gate,
            ..VerdictRequest::from_query(params)?
        };
    }
    evaluate(&st, &gate, req)
}

/// `GET /api/v1/gates/{gate}/timeline?[phase=P][&canary.<dim>=v][&baseline.<dim>=v][&range=1h][&step=1m]`:
/// the gate's canary and baseline cohorts step by step, for charts.
#[utoipa::path(
    get,
    path = "/api/v1/gates/{gate}/timeline",
    tag = "gates",
    params(
        ("gate" = String, Path, description = "A configured gate", example = "checkout"),
        ("phase" = Option<String>, Query, description = "The phase (default: the first)"),
        ("canary.version" = Option<String>, Query, description = "Canary cohort; any `canary.<dimension>`"),
        ("baseline.version" = Option<String>, Query, description = "Baseline cohort; any `baseline.<dimension>`"),
        ("range" = Option<String>, Query, description = "How far back (default 1h, at most windows.coarse_retention)", example = "1h"),
        ("step" = Option<String>, Query, description = "Step (default 1m; rounded up to whole slots, at most 720 steps)", example = "1m"),
    ),
    responses(
        (status = 200, description = "Steps, oldest first", body = TimelineDoc),
        (status = 400, description = "An invalid cohort, range or step", body = super::openapi::ErrorBody),
        (status = 404, description = "No such gate or phase", body = super::openapi::ErrorBody),
    ),
)]
pub async fn timeline(
    State(st): State<AppState>,
    Path(gate): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let mut cohorts = Vec::new();
    let mut range = std::time::Duration::from_secs(3600);
    let mut step = std::time::Duration::from_secs(60);
    for (k, v) in params {
        let duration = |v: &str| {
            humantime::parse_duration(v)
                .ok()
                .filter(|d| d.as_secs() >= 1)
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "{k}={v:?} is not a duration of at least 1s (e.g. 1h)"
                    ))
                })
        };
        match k.as_str() {
            "range" => range = duration(&v)?,
            "step" => step = duration(&v)?,
            _ => cohorts.push((k, v)),
        }
    }
    let retention = st.registry.config().coarse_retention_seconds;
    if range.as_secs() > retention {
        return Err(ApiError::bad_request(format!(
            "range is longer than the live windows keep (windows.coarse_retention, {retention}s); the history holds the rest (SQL)"
        )));
    }
    let req = VerdictRequest::from_query(cohorts)?;
    if req.analysis.is_some() {
        return Err(ApiError::bad_request(
            "a timeline takes phase, canary.<dimension>, baseline.<dimension>, range and step",
        ));
    }
    let canary: Vec<(String, String)> = req.canary.into_iter().collect();
    let baseline: Vec<(String, String)> = req.baseline.into_iter().collect();
    let gates = st.gates.clone();
    let doc = tokio::task::spawn_blocking(move || {
        gates.timeline(
            &gate,
            req.phase.as_deref(),
            &canary,
            &baseline,
            range.as_secs(),
            step.as_secs(),
        )
    })
    .await??;
    Ok(Json(doc).into_response())
}

/// `GET /api/v1/verdicts[?gate=G][&limit=N]`: recorded verdicts, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/verdicts",
    tag = "gates",
    params(
        ("gate" = Option<String>, Query, description = "Only this gate"),
        ("limit" = Option<u32>, Query, description = "At most this many (default 100)", minimum = 1, maximum = 10000),
    ),
    responses(
        (status = 200, description = "`{\"verdicts\": [...]}`, newest first", body = serde_json::Value),
        (status = 400, description = "A bad limit", body = super::openapi::ErrorBody),
    ),
)]
pub async fn verdict_log(
    State(st): State<AppState>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<Response, ApiError> {
    let limit = match params.get("limit").map(|l| l.parse::<usize>()) {
        None => 100,
        Some(Ok(n)) if (1..=VERDICT_LOG_CAPACITY).contains(&n) => n,
        Some(_) => {
            return Err(ApiError::bad_request(format!(
                "limit must be 1..={VERDICT_LOG_CAPACITY}"
            )));
        }
    };
    let held = st
        .gates
        .history(params.get("gate").map(String::as_str), limit);
    let docs: Vec<&VerdictDoc> = held.iter().map(|d| &**d).collect();
    Ok(Json(serde_json::json!({ "verdicts": docs })).into_response())
}
