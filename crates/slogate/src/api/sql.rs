//! `POST /api/v1/sql {"query": "..."}`: read-only SQL over the Parquet history (DataFusion),
//! with row and time limits.

use super::{ApiError, AppState};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlRequest {
    query: String,
}

pub async fn sql(
    State(st): State<AppState>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let history = st.history.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the history is disabled (history.enabled: false)",
        )
    })?;
    let req: SqlRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "invalid sql request: {e}; send {{\"query\": \"SELECT ...\"}}"
        ))
    })?;
    let (max_rows, timeout) = st.sql_limits;
    let result = history.sql(&req.query, max_rows, timeout).await?;
    Ok(Json(result).into_response())
}
