//! `POST /api/v1/sql {"query": "..."}`: read-only SQL over the Parquet history (DataFusion),
//! with row, time and memory limits: 408 after `history.query_timeout` (the query is aborted,
//! its work stops), 422 past `history.sql_memory_limit_bytes` (the message names what took the
//! memory), 413 for a query text over 64 KiB. JSON bodies only (415 otherwise, in
//! [`crate::auth::api_layer`]), and no CORS headers: a page on another origin cannot send one.

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
