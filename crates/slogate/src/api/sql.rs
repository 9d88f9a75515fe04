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

#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlRequest {
    /// One read-only statement: SELECT, WITH, VALUES or EXPLAIN, at most 64 KiB (413 past it).
    #[schema(
        example = "SELECT service, sum(requests) FROM requests GROUP BY 1",
        min_length = 1
    )]
    query: String,
}

/// Read-only SQL over the Parquet history (tables `requests`, `metrics`, `verdicts`,
/// `alerts`); an admin token when `auth.api` is set.
#[utoipa::path(
    post,
    path = "/api/v1/sql",
    tag = "history",
    request_body(content = SqlRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "`{columns, rows, truncated}`", body = serde_json::Value),
        (status = 400, description = "Not a read-only statement, or invalid SQL", body = super::openapi::ErrorBody),
        (status = 408, description = "Over `history.query_timeout` (the query was cancelled), or the body did not arrive within `server.body_read_timeout`", body = super::openapi::ErrorBody),
        (status = 413, description = "A query text over 64 KiB, or a body over 1 MiB", body = super::openapi::ErrorBody),
        (status = 415, description = "The body is not JSON", body = super::openapi::ErrorBody),
        (status = 422, description = "Over `history.sql_memory_limit_bytes`", body = super::openapi::ErrorBody),
        (status = 500, description = "A history file cannot be read", body = super::openapi::ErrorBody),
        (status = 503, description = "The history is disabled", body = super::openapi::ErrorBody),
    ),
)]
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
