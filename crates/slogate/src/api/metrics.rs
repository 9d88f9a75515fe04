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

#[derive(Serialize)]
pub struct QueryResponse {
    selector: String,
    /// The selection as verdicts name it: `max(jobs.queue.depth{queue="jobs"})`.
    label: String,
    window_seconds: u64,
    #[serde(flatten)]
    measure: Measure,
}

fn store(st: &AppState) -> Result<&slogate_metrics::MetricStore, ApiError> {
    st.metrics
        .as_deref()
        .ok_or_else(|| ApiError::not_found("the OTLP metric store is not running"))
}

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

#[derive(Serialize)]
pub struct StreamsResponse {
    /// Streams of the service in the store.
    total: usize,
    /// Whether `streams` stops short of `total` (raise `limit`, at most 10000).
    truncated: bool,
    streams: Vec<StreamInfo>,
}

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
