//! OTLP metrics as the store holds them:
//! `GET /api/v1/metrics/query?service=S&metric=M&aggregate=max[&across=sum][&state=1]
//! [&window=5m][&where.ATTR=v][&env=..][&version=..]` measures one selection the way a gate
//! criterion would; `GET /api/v1/metrics/streams?service=S[&limit=N]` lists the streams.

use super::{ApiError, AppState, parse_window};
use crate::config::{SelectFields, select, select_label};
use axum::Json;
use axum::extract::{Query, State};
use serde::Serialize;
use slogate_core::Selector;
use slogate_metrics::{Measure, StreamInfo};
use std::collections::BTreeMap;

/// Streams listed when the request does not say; at most [`MAX_STREAMS`].
const DEFAULT_STREAMS: usize = 1000;
const MAX_STREAMS: usize = 10_000;

#[derive(Serialize, utoipa::ToSchema)]
pub struct QueryResponse {
    selector: String,
    /// The selection as verdicts name it: `max(jobs.queue.depth{queue="jobs"})`.
    label: String,
    window_seconds: u64,
    /// The value, its unit, points and series, or why there is no data.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    measure: Measure,
}

fn store(st: &AppState) -> Result<&slogate_metrics::MetricStore, ApiError> {
    st.metrics
        .as_deref()
        .ok_or_else(|| ApiError::not_found("the OTLP metric store is not running"))
}

/// One selection of OTLP metric points measured as a gate criterion would measure it.
#[utoipa::path(
    get,
    path = "/api/v1/metrics/query",
    tag = "traffic",
    params(
        ("service" = String, Query, description = "The service", min_length = 1, example = "checkout"),
        ("metric" = String, Query, description = "The OTLP metric name", min_length = 1, example = "jobs.queue.depth"),
        ("aggregate" = Option<String>, Query, description = "last, min, max, avg, sum, count, increase, rate, pNN, time_in_state, transitions"),
        ("across" = Option<String>, Query, description = "How streams combine: sum, max, min, avg"),
        ("state" = Option<String>, Query, description = "The state value of time_in_state and transitions"),
        ("window" = Option<String>, Query, description = "How far back (default 5m)"),
        ("env" = Option<String>, Query, description = "Cohort dimension"),
        ("version" = Option<String>, Query, description = "Cohort dimension"),
    ),
    responses(
        (status = 200, description = "The measure, or why there is no data", body = QueryResponse),
        (status = 400, description = "An invalid selection", body = super::openapi::ErrorBody),
        (status = 404, description = "The metric store is not running", body = super::openapi::ErrorBody),
    ),
)]
pub async fn query(
    State(st): State<AppState>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<Json<QueryResponse>, ApiError> {
    let store = store(&st)?;
    let need = |k: &str| {
        params
            .get(k)
            .filter(|s| !s.is_empty())
            .map(String::as_str)
            .ok_or_else(|| ApiError::bad_request(format!("missing query parameter `{k}`")))
    };
    need("service")?;
    let metric = need("metric")?;
    let window = parse_window(
        params.get("window").map_or("5m", String::as_str),
        &st.registry,
    )?;
    let state = params
        .get("state")
        .map(|s| {
            s.parse::<f64>()
                .map_err(|_| ApiError::bad_request(format!("state {s:?} is not a number")))
        })
        .transpose()?;
    let where_: BTreeMap<String, String> = params
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("where.").map(|k| (k.to_string(), v.clone())))
        .collect();
    let m = select(SelectFields {
        otlp: metric,
        where_: &where_,
        aggregate: params.get("aggregate").map(String::as_str),
        across: params.get("across").map(String::as_str),
        state,
    })
    .map_err(|(field, msg)| ApiError::bad_request(format!("{field}: {msg}")))?;
    const OWN: [&str; 5] = ["metric", "window", "aggregate", "across", "state"];
    let pairs = params
        .iter()
        .filter(|(k, _)| !OWN.contains(&k.as_str()) && !k.starts_with("where."))
        .map(|(k, v)| (k.clone(), v.clone()));
    let selector = Selector::new(pairs, &st.registry.config().extra_dims)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let measure = store.query(&selector, &m.selection, m.aggregate, m.combine, window);
    Ok(Json(QueryResponse {
        selector: selector.to_string(),
        label: select_label(&m),
        window_seconds: window,
        measure,
    }))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct StreamsResponse {
    /// Streams of the service in the store.
    total: usize,
    /// Whether `streams` stops short of `total` (raise `limit`, at most 10000).
    truncated: bool,
    #[schema(value_type = Vec<Object>)]
    streams: Vec<StreamInfo>,
}

/// The OTLP metric streams the store holds, of one service or all.
#[utoipa::path(
    get,
    path = "/api/v1/metrics/streams",
    tag = "traffic",
    params(
        ("service" = Option<String>, Query, description = "Only this service"),
        ("limit" = Option<u32>, Query, description = "At most this many streams (1 to 10000, default 1000)", minimum = 1, maximum = 10000),
    ),
    responses(
        (status = 200, description = "The streams", body = StreamsResponse),
        (status = 400, description = "A bad limit", body = super::openapi::ErrorBody),
        (status = 404, description = "The metric store is not running", body = super::openapi::ErrorBody),
    ),
)]
pub async fn streams(
    State(st): State<AppState>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<Json<StreamsResponse>, ApiError> {
    let store = store(&st)?;
    let limit = match params.get("limit") {
        None => DEFAULT_STREAMS,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=MAX_STREAMS).contains(l))
            .ok_or_else(|| {
                ApiError::bad_request(format!("limit {l:?} must be between 1 and {MAX_STREAMS}"))
            })?,
    };
    let mut streams = store.series(params.get("service").map(String::as_str));
    let total = streams.len();
    streams.truncate(limit);
    Ok(Json(StreamsResponse {
        total,
        truncated: total > limit,
        streams,
    }))
}
