//! SLOs and alerts: `GET /api/v1/slos`, `GET /api/v1/slos/{name}` and `GET /api/v1/alerts`.

use super::{ApiError, AppState};
use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};

/// Every SLO: its budget, burn rates and the budget over time.
#[utoipa::path(
    get,
    path = "/api/v1/slos",
    tag = "slos",
    responses((status = 200, description = "`{\"slos\": [...]}`", body = serde_json::Value)),
)]
pub async fn list(State(st): State<AppState>) -> Result<Response, ApiError> {
    let alerts = st.alerts.clone();
    let slos = tokio::task::spawn_blocking(move || {
        alerts
            .slo_names()
            .iter()
            .filter_map(|n| alerts.slo_status(n))
            .collect::<Vec<_>>()
    })
    .await?;
    Ok(Json(serde_json::json!({ "slos": slos })).into_response())
}

/// One SLO.
#[utoipa::path(
    get,
    path = "/api/v1/slos/{name}",
    tag = "slos",
    params(("name" = String, Path, description = "The SLO's name", example = "checkout-availability")),
    responses(
        (status = 200, description = "The SLO: objective, budget, burn rates, budget history", body = serde_json::Value),
        (status = 404, description = "No such SLO", body = super::openapi::ErrorBody),
    ),
)]
pub async fn one(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let alerts = st.alerts.clone();
    let lookup = name.clone();
    match tokio::task::spawn_blocking(move || alerts.slo_status(&lookup)).await? {
        Some(s) => Ok(Json(s).into_response()),
        None => Err(ApiError::not_found(format!(
            "unknown SLO {name:?}; GET /api/v1/slos lists them"
        ))),
    }
}

/// Alerts (state per rule and series), recent transitions and notification delivery.
#[utoipa::path(
    get,
    path = "/api/v1/alerts",
    tag = "slos",
    responses((status = 200, description = "`{alerts, transitions, delivery, notifications}`", body = serde_json::Value)),
)]
pub async fn alerts(State(st): State<AppState>) -> Response {
    let delivery = st.delivery.as_ref().map(|d| d.snapshot());
    Json(serde_json::json!({
        "alerts": st.alerts.views(),
        "transitions": st.alerts.transitions(100),
        "delivery": delivery,
        "notifications": st.notifications.snapshot(),
    }))
    .into_response()
}
