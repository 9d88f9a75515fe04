//! SLOs and alerts: `GET /api/v1/slos`, `GET /api/v1/slos/{name}` and `GET /api/v1/alerts`.

use super::{ApiError, AppState};
use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};

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
