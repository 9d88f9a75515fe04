//! The web dashboard at `/`: one HTML page, one stylesheet and one script, embedded in the
//! binary (no CDN, no build step), plus `GET /api/v1/series`, the one listing the page needs that
//! the rest of the API does not give (which services, versions and operations have traffic).
//!
//! The page only reads the JSON API (and posts verdict requests and SQL), so everything it shows
//! is also available to scripts. Its security headers forbid inline script and style, framing and
//! MIME sniffing; the script renders every value with `textContent`, never as HTML, because
//! service names and attribute values come from untrusted spans.

use crate::api::{ApiError, AppState, SliLatency, parse_window};
use axum::extract::{Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use slogate_core::Selector;
use std::collections::{BTreeMap, BTreeSet};

const INDEX_HTML: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");
const APP_CSS: &str = include_str!("app.css");
const FAVICON_SVG: &str = include_str!("favicon.svg");

/// No inline script or style, no framing, nothing fetched from anywhere but this server.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'";

/// Series rows `/api/v1/series` answers at most (the busiest first).
const MAX_SERIES_ROWS: usize = 500;
/// The most rows one page of `/api/v1/series` may ask for.
const MAX_SERIES_LIMIT: usize = 10_000;

/// The dashboard's routes besides `/` (which `api::router` maps to [`index`]).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/assets/app.js",
            get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/assets/app.css",
            get(|| async { asset(APP_CSS, "text/css; charset=utf-8") }),
        )
        .route(
            "/assets/favicon.svg",
            get(|| async { asset(FAVICON_SVG, "image/svg+xml") }),
        )
        .route("/api/v1/series", get(series))
}

/// The dashboard page.
pub fn index() -> Response {
    asset(INDEX_HTML, "text/html; charset=utf-8")
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // The assets change only with the binary; revalidating on every load keeps an upgraded
    // server from running an old script against a new API.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

/// One row of `/api/v1/series`: a (service, env, version, operation) with traffic in the window,
/// with the same figures as `/api/v1/sli` for that selector.
#[derive(Serialize)]
struct SeriesRow {
    service: String,
    env: String,
    version: String,
    operation: String,
    requests: u64,
    errors: u64,
    error_rate: Option<f64>,
    rate_per_second: f64,
    latency_ms: SliLatency,
}

#[derive(Serialize)]
struct SeriesResponse {
    window_seconds: u64,
    /// Every service with a series, busy or not, sorted.
    services: Vec<String>,
    /// Busiest first (then by service, version and operation), from `offset`; series without
    /// requests in the window are left out.
    series: Vec<SeriesRow>,
    /// Series with requests in the window, over every page.
    total: usize,
    /// True when more rows had traffic than this page returned.
    truncated: bool,
    /// The `offset` of the next page, when there is one.
    next_offset: Option<usize>,
}

/// `GET /api/v1/series?window=10m[&service=S][&limit=N][&offset=K]`: the series with traffic
/// in the window, busiest first, `limit` (default 500, at most 10,000) from `offset`. Each page
/// is ranked afresh, so a series whose traffic changes between two calls may move across their
/// boundary.
/// The most rows a `/api/v1/series` page may skip (more than any series cap).
const MAX_OFFSET: usize = 10_000_000;

#[utoipa::path(
    get,
    path = "/api/v1/series",
    tag = "traffic",
    params(
        ("window" = Option<String>, Query, description = "How far back (default 10m)", example = "10m"),
        ("service" = Option<String>, Query, description = "Only this service"),
        ("limit" = Option<u32>, Query, description = "Rows per page (default 500)", minimum = 1, maximum = 10000),
        ("offset" = Option<u32>, Query, description = "Rows to skip", minimum = 0, maximum = 10000000),
    ),
    responses(
        (status = 200, description = "`{series, total, truncated, next_offset}`, busiest first", body = serde_json::Value),
        (status = 400, description = "An unknown parameter, a bad window, limit or offset", body = super::openapi::ErrorBody),
    ),
)]
pub async fn series(
    State(st): State<AppState>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Response {
    if let Some(k) = params
        .keys()
        .find(|k| !matches!(k.as_str(), "window" | "service" | "limit" | "offset"))
    {
        return ApiError::bad_request(format!(
            "unknown query parameter `{k}`; use window, service, limit and offset"
        ))
        .into_response();
    }
    let number = |name: &str, default: usize, range: std::ops::RangeInclusive<usize>| match params
        .get(name)
    {
        None => Ok(default),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| range.contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "{name} {v:?} must be a whole number from {} to {}",
                    range.start(),
                    range.end()
                ))
            }),
    };
    let (limit, offset) = match (
        number("limit", MAX_SERIES_ROWS, 1..=MAX_SERIES_LIMIT),
        number("offset", 0, 0..=MAX_OFFSET),
    ) {
        (Ok(l), Ok(o)) => (l, o),
        (Err(e), _) | (_, Err(e)) => return e.into_response(),
    };
    let window = match parse_window(
        params.get("window").map_or("10m", String::as_str),
        &st.registry,
    ) {
        Ok(w) => w,
        Err(e) => return e.into_response(),
    };
    let service = params.get("service").filter(|s| !s.is_empty()).cloned();
    let registry = st.registry.clone();
    let answer = tokio::task::spawn_blocking(move || {
        // Extra dimensions are summed over: the dashboard breaks traffic down by the four
        // fixed dimensions only.
        let keys: BTreeSet<(String, String, String, String)> = registry
            .series_keys(service.as_deref())
            .into_iter()
            .map(|k| (k.service, k.env, k.version, k.operation))
            .collect();
        let services: Vec<String> = keys
            .iter()
            .map(|k| k.0.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let extra = &registry.config().extra_dims;
        let mut rows: Vec<SeriesRow> = keys
            .into_iter()
            .filter_map(|(service, env, version, operation)| {
                let pairs = [
                    ("service", &service),
                    ("env", &env),
                    ("version", &version),
                    ("operation", &operation),
                ];
                let sel = Selector::new(pairs.iter().map(|(k, v)| (*k, v.as_str())), extra).ok()?;
                let w = registry.query(&sel, window);
                (w.requests > 0).then(|| SeriesRow {
                    error_rate: Some(w.errors as f64 / w.requests as f64),
                    rate_per_second: w.requests as f64 / w.observed_seconds.max(1) as f64,
                    latency_ms: SliLatency::of(&w.sketch),
                    requests: w.requests,
                    errors: w.errors,
                    service,
                    env,
                    version,
                    operation,
                })
            })
            .collect();
        rows.sort_by(|a, b| {
            b.requests.cmp(&a.requests).then_with(|| {
                (&a.service, &a.version, &a.operation).cmp(&(&b.service, &b.version, &b.operation))
            })
        });
        let total = rows.len();
        let end = offset.saturating_add(limit).min(total);
        let page: Vec<SeriesRow> = rows.drain(offset.min(total)..end).collect();
        SeriesResponse {
            window_seconds: window,
            services,
            series: page,
            total,
            truncated: end < total,
            next_offset: (end < total).then_some(end),
        }
    })
    .await;
    match answer {
        Ok(a) => Json(a).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}
