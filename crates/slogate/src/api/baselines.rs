//! `GET /api/v1/baselines`: the stored baselines (summaries, no sketches), read afresh from the
//! history root.

use super::{ApiError, AppState};
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};

#[utoipa::path(
    get,
    path = "/api/v1/baselines",
    tag = "gates",
    responses(
        (status = 200, description = "`{\"baselines\": [...]}`: name, selector, period, totals", body = serde_json::Value),
        (status = 500, description = "The history root cannot be read", body = super::openapi::ErrorBody),
    ),
)]
pub async fn list(State(st): State<AppState>) -> Result<Response, ApiError> {
    let store = st.gates.baselines().clone();
    let list = tokio::task::spawn_blocking(move || store.summaries())
        .await?
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(serde_json::json!({ "baselines": list })).into_response())
}
