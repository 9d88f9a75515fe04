//! `GET /api/v1/sli?service=S&window=10m[&env=..][&version=..][&operation=..]`: the rolling SLI
//! of a selector.

use super::{ApiError, AppState, SliLatency, parse_window};
use axum::Json;
use axum::extract::{Query, State};
use serde::Serialize;
use slogate_core::Selector;
use std::collections::BTreeMap;

#[derive(Serialize, utoipa::ToSchema)]
pub struct SliResponse {
    service: String,
    selector: String,
    window_seconds: u64,
    covered_seconds: u64,
    /// Seconds the data spans: from the first slot with a request to now (0 without requests).
    /// `rate_per_second` divides by this, so a cohort that started two minutes ago in a
    /// ten-minute window reports its real rate.
    observed_seconds: u64,
    series: usize,
    requests: u64,
    errors: u64,
    /// Set when the traffic is sampled: `requests` and `errors` are adjusted counts estimated
    /// from this many sampled spans (the latency percentiles come from them).
    #[serde(skip_serializing_if = "Option::is_none")]
    sampled_requests: Option<u64>,
    /// `null` when there were no requests: no data is not a zero error rate.
    error_rate: Option<f64>,
    rate_per_second: f64,
    /// p50, p90, p95, p99 and p999 in milliseconds; each `null` without requests.
    #[schema(value_type = Object)]
    latency_ms: SliLatency,
}

/// The rolling SLI of a selector: requests, errors, rate and latency percentiles.
#[utoipa::path(
    get,
    path = "/api/v1/sli",
    tag = "traffic",
    params(
        ("service" = String, Query, description = "The service (`service.name`)", min_length = 1, example = "checkout"),
        ("window" = Option<String>, Query, description = "How far back, one slot to `windows.coarse_retention` (default 10m)", example = "10m"),
        ("env" = Option<String>, Query, description = "Cohort dimension"),
        ("version" = Option<String>, Query, description = "Cohort dimension"),
        ("operation" = Option<String>, Query, description = "Only this operation"),
    ),
    responses(
        (status = 200, description = "The SLI; rates and percentiles are `null` without requests", body = SliResponse),
        (status = 400, description = "A missing service, a bad window or dimension", body = super::openapi::ErrorBody),
    ),
)]
pub async fn sli(
    State(st): State<AppState>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<Json<SliResponse>, ApiError> {
    let service = params
        .get("service")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::bad_request("missing query parameter `service`"))?;
    let window = parse_window(
        params.get("window").map_or("10m", String::as_str),
        &st.registry,
    )?;
    let pairs = params
        .iter()
        .filter(|(k, _)| k.as_str() != "window")
        .map(|(k, v)| (k.clone(), v.clone()));
    let selector = Selector::new(pairs, &st.registry.config().extra_dims)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let w = st.registry.query(&selector, window);
    Ok(Json(SliResponse {
        service: service.clone(),
        selector: selector.to_string(),
        window_seconds: window,
        covered_seconds: w.covered_seconds,
        observed_seconds: w.observed_seconds,
        series: w.series,
        requests: w.requests,
        errors: w.errors,
        sampled_requests: (w.sketch.count() > 0 && w.sketch.count() < w.requests)
            .then(|| w.sketch.count()),
        error_rate: (w.requests > 0).then(|| w.errors as f64 / w.requests as f64),
        rate_per_second: w.requests as f64 / w.observed_seconds.max(1) as f64,
        latency_ms: SliLatency::of(&w.sketch),
    }))
}
