//! The HTTP API on :8080 and the gRPC verdict service: adapters from the wire to the engine.
//!
//! One file per resource: [`health`] (`/healthz`, `/readyz`, `/metrics`), [`sli`], [`gates`]
//! (the gate list, verdicts and the verdict log), [`baselines`], [`slos`] (SLOs and alerts),
//! [`sql`], [`metrics`] (OTLP metric queries and streams), [`grpc`] (`slogate.v1.VerdictService`)
//! and the [`dashboard`] at `/`.
//!
//! Every error answer is `{"error": "..."}` with a status, through one type, [`ApiError`]; the
//! status and gRPC code of each engine error are mapped in one place, [`gate_error_codes`].

pub mod baselines;
pub mod dashboard;
pub mod gates;
pub mod grpc;
pub mod health;
pub mod metrics;
pub mod openapi;
pub mod process;
pub mod sli;
pub mod slos;
pub mod sql;

use crate::engine::LatencyMs;
use crate::engine::alerts::Alerts;
use crate::engine::gates::{GateError, Gates};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use slogate_ingest::IngestStats;
use slogate_window::Registry;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// What every handler may read.
#[derive(Clone)]
pub struct AppState {
    /// The validated configuration in force, which a reload replaces (gates carried in
    /// verdict requests are checked against it), and the reload counters.
    pub config: Arc<crate::server::reload::LiveConfig>,
    pub registry: Arc<Registry>,
    pub stats: Arc<IngestStats>,
    pub ready: Arc<AtomicBool>,
    pub started: std::time::Instant,
    pub gates: Arc<Gates>,
    pub alerts: Arc<Alerts>,
    pub delivery: Option<Arc<slogate_alert::DeliveryStats>>,
    /// Every notification destination's delivery stats (PagerDuty, Slack, webhooks).
    pub notifications: Arc<slogate_alert::DeliveryBoard>,
    pub history: Option<slogate_history::History>,
    /// Row cap and timeout of a SQL query.
    pub sql_limits: (usize, std::time::Duration),
    /// Token checks and TLS: their gauges and counters on `/metrics`, warnings on `/readyz`.
    pub security: Arc<crate::auth::Security>,
    /// The OTLP metric store.
    pub metrics: Option<Arc<slogate_metrics::MetricStore>>,
    /// How the history's writes are going.
    pub history_health: Option<Arc<crate::server::history::HistoryHealth>>,
    /// The listeners' open connections, accept failures and closed connections.
    pub connections: Arc<crate::server::accept::ConnStats>,
    /// The memory watchdog's limit and shedding state.
    pub memory: Arc<crate::server::memory::MemoryStats>,
}

pub fn router(state: AppState) -> Router {
    let verdict_post = json_post(&state, gates::verdict_post);
    let sql_post = json_post(&state, sql::sql);
    Router::new()
        .route("/", get(|| async { dashboard::index() }))
        .route("/healthz", get(health::healthz))
        .route("/api/openapi.json", get(openapi::openapi_json))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/api/v1/sli", get(sli::sli))
        .route("/api/v1/metrics/query", get(metrics::query))
        .route("/api/v1/metrics/streams", get(metrics::streams))
        .route("/api/v1/gates", get(gates::list))
        .route(
            "/api/v1/gates/{gate}/verdict",
            get(gates::verdict_get).merge(verdict_post),
        )
        .route("/api/v1/gates/{gate}/timeline", get(gates::timeline))
        .route("/api/v1/verdicts", get(gates::verdict_log))
        .route("/api/v1/baselines", get(baselines::list))
        .route("/api/v1/slos", get(slos::list))
        .route("/api/v1/slos/{name}", get(slos::one))
        .route("/api/v1/alerts", get(slos::alerts))
        .route("/api/v1/sql", sql_post)
        .merge(dashboard::routes())
        .fallback(|| async {
            ApiError::not_found("no such endpoint; GET /api/openapi.json lists them")
        })
        .layer(axum::middleware::from_fn(openapi::json_errors))
        .with_state(state)
}

/// A POST route, behind [`json_body`].
fn json_post<H, T>(state: &AppState, handler: H) -> axum::routing::MethodRouter<AppState>
where
    H: axum::handler::Handler<T, AppState>,
    T: 'static,
{
    post(handler).route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        json_body,
    ))
}

/// The most bytes an API request body may have (a verdict request with its gate, a query).
pub const MAX_API_BODY: usize = 1 << 20;

/// The middleware of every route that takes a body (the API's POST routes), on those routes
/// alone so that another method or path still gets its 405 or 404:
/// - JSON only (415), so that a page on another origin cannot send one without a CORS
///   preflight, which slogate never grants;
/// - at most [`MAX_API_BODY`] bytes (413);
/// - whole within `server.body_read_timeout` of the head (408): a body trickling in a byte at
///   a time cannot hold one of the API's connections for longer.
async fn json_body(
    axum::extract::State(st): axum::extract::State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if !crate::auth::is_json(req.headers()) {
        return ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the body as application/json",
        )
        .into_response();
    }
    let deadline = st.config.get().server.body_read_timeout;
    let (parts, body) = req.into_parts();
    let read = tokio::time::timeout(deadline, axum::body::to_bytes(body, MAX_API_BODY)).await;
    let bytes = match read {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            return if too_large {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the request body is over {MAX_API_BODY} bytes"),
                )
            } else {
                ApiError::bad_request(format!("the request body could not be read: {e}"))
            }
            .into_response();
        }
        Err(_) => {
            let mut resp = ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {} (server.body_read_timeout)",
                    humantime::format_duration(deadline)
                ),
            )
            .into_response();
            // The rest of the body may still be on its way: the connection cannot be reused.
            resp.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
            return resp;
        }
    };
    next.run(axum::extract::Request::from_parts(
        parts,
        axum::body::Body::from(bytes),
    ))
    .await
}

/// An error answer: `{"error": message}` with `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}

/// The HTTP status and gRPC code of each gate error: unknown names are not found, a stored
/// baseline that cannot be read is the server's problem, the rest are the request's.
pub fn gate_error_codes(e: &GateError) -> (StatusCode, tonic::Code) {
    match e {
        GateError::UnknownGate(_)
        | GateError::UnknownPhase { .. }
        | GateError::UnknownBaseline(_) => (StatusCode::NOT_FOUND, tonic::Code::NotFound),
        GateError::StoredBaseline(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            tonic::Code::FailedPrecondition,
        ),
        GateError::Selector(_)
        | GateError::Analysis(_)
        | GateError::SameCohort(_)
        | GateError::BaselineUnset(_) => (StatusCode::BAD_REQUEST, tonic::Code::InvalidArgument),
    }
}

impl From<GateError> for ApiError {
    fn from(e: GateError) -> ApiError {
        ApiError::new(gate_error_codes(&e).0, e.to_string())
    }
}

/// History errors: the time limit is 408; a query that needs more than the SQL memory limit
/// is 422 (well-formed, but not processable as asked: narrow it; a retry would fail the same
/// way, so not a 5xx), a query text over its limit 413; unreadable files are the server's
/// problem; the rest (syntax, unknown columns, writes) are the request's.
impl From<slogate_history::HistoryError> for ApiError {
    fn from(e: slogate_history::HistoryError) -> ApiError {
        use slogate_history::HistoryError as H;
        let status = match e {
            H::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            H::ResourcesExhausted(_) => StatusCode::UNPROCESSABLE_ENTITY,
            H::QueryTooLong { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            H::Io { .. } | H::Parquet(_) | H::Corrupt(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, e.to_string())
    }
}

/// A blocking task that did not finish (it panicked): the server's problem.
impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> ApiError {
        ApiError::internal(format!("request failed: {e}"))
    }
}

/// Parses a window like `10m`; windows run from one slot to the coarse retention.
pub fn parse_window(s: &str, registry: &Registry) -> Result<u64, ApiError> {
    let d = humantime::parse_duration(s.trim()).map_err(|e| {
        ApiError::bad_request(format!("invalid window {s:?}: {e}; write e.g. 1m, 10m, 1h"))
    })?;
    let secs = d.as_secs();
    let cfg = registry.config();
    if secs < cfg.slot_seconds || secs > cfg.coarse_retention_seconds {
        return Err(ApiError::bad_request(format!(
            "window {s:?} is outside {}s..{}s (one slot to the coarse retention)",
            cfg.slot_seconds, cfg.coarse_retention_seconds
        )));
    }
    Ok(secs)
}

/// Latency of a series or an SLI: the verdict document's quantiles and p99.9.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct SliLatency {
    #[serde(flatten)]
    pub quantiles: LatencyMs,
    pub p999: Option<f64>,
}

impl SliLatency {
    pub fn of(sketch: &slogate_sketch::Sketch) -> SliLatency {
        SliLatency {
            quantiles: LatencyMs::of(sketch),
            p999: crate::engine::ms(sketch.quantile(0.999)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use slogate_history::HistoryError;

    #[test]
    fn gate_errors_map_to_one_status_and_code() {
        let cases = [
            (
                GateError::UnknownGate("g".into()),
                404,
                tonic::Code::NotFound,
            ),
            (
                GateError::UnknownPhase {
                    gate: "g".into(),
                    phase: "p".into(),
                    known: "a".into(),
                },
                404,
                tonic::Code::NotFound,
            ),
            (
                GateError::UnknownBaseline("b".into()),
                404,
                tonic::Code::NotFound,
            ),
            (
                GateError::StoredBaseline("bad sketch".into()),
                500,
                tonic::Code::FailedPrecondition,
            ),
            (
                GateError::Selector("x".into()),
                400,
                tonic::Code::InvalidArgument,
            ),
            (
                GateError::SameCohort("x".into()),
                400,
                tonic::Code::InvalidArgument,
            ),
            (
                GateError::BaselineUnset("g".into()),
                400,
                tonic::Code::InvalidArgument,
            ),
        ];
        for (e, status, code) in cases {
            assert_eq!(
                gate_error_codes(&e),
                (StatusCode::from_u16(status).unwrap(), code),
                "{e}"
            );
            let api = ApiError::from(e.clone());
            assert_eq!((api.status.as_u16(), api.message), (status, e.to_string()));
        }
    }

    #[test]
    fn history_errors_map_to_statuses() {
        let cases = [
            (
                HistoryError::Timeout(std::time::Duration::from_secs(30)),
                408,
            ),
            (HistoryError::Corrupt("x".into()), 500),
            (HistoryError::Config("x".into()), 400),
            (HistoryError::ResourcesExhausted("x".into()), 422),
            (
                HistoryError::QueryTooLong {
                    bytes: 70_000,
                    max: 65_536,
                },
                413,
            ),
        ];
        for (e, status) in cases {
            let text = e.to_string();
            let api = ApiError::from(e);
            assert_eq!((api.status.as_u16(), api.message), (status, text));
        }
    }

    #[tokio::test]
    async fn error_body_is_json() {
        let resp = ApiError::bad_request("nope").into_response();
        assert_eq!(resp.status(), 400);
        let body = axum::body::to_bytes(resp.into_body(), 1 << 10)
            .await
            .unwrap();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
            serde_json::json!({ "error": "nope" })
        );
    }
}
