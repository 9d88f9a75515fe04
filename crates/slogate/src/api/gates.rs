//! Gates over HTTP: `GET /api/v1/gates`, `GET|POST /api/v1/gates/{gate}/verdict` and the
//! verdict log `GET /api/v1/verdicts`.

use super::{ApiError, AppState};
use crate::engine::analysis::AnalysisRequest;
use crate::engine::gates::{VERDICT_LOG_CAPACITY, VerdictDoc};
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

pub async fn list(State(st): State<AppState>) -> Response {
    let gates: Vec<GateListing<'_>> = st
        .gates
        .configs()
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
#[derive(serde::Deserialize, Default)]
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
    let doc = st.gates.evaluate(
        gate,
        req.phase.as_deref(),
        &canary,
        &baseline,
        req.analysis.as_ref(),
    )?;
    Ok(Json(&*doc).into_response())
}

pub async fn verdict_get(
    State(st): State<AppState>,
    Path(gate): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    evaluate(&st, &gate, VerdictRequest::from_query(params)?)
}

pub async fn verdict_post(
    State(st): State<AppState>,
    Path(gate): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let req = if body.is_empty() {
        VerdictRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("invalid verdict request: {e}")))?
    };
    evaluate(&st, &gate, req)
}

/// `GET /api/v1/verdicts[?gate=G][&limit=N]`: recorded verdicts, newest first.
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
