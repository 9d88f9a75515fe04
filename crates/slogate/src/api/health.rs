//! `/readyz` and `/metrics` (Prometheus text); `/healthz` is a constant in the router.

use super::AppState;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::atomic::Ordering;

/// Liveness: the process serves HTTP.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "`ok`", content_type = "text/plain", body = String)),
)]
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: the listeners are up and the history reloaded; warnings (an open server, a
/// failing disk) follow `ready`, one per line.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "`ready`, then any warnings", content_type = "text/plain", body = String),
        (status = 503, description = "`not ready`", content_type = "text/plain", body = String),
    ),
)]
pub async fn readyz(State(st): State<AppState>) -> Response {
    if st.ready.load(Ordering::SeqCst) {
        // Probes read the status; people read why an open server is open.
        let mut body = String::from("ready\n");
        for w in st.security.warnings() {
            body.push_str(&format!("warning: {w}\n"));
        }
        // Ready still: verdicts come from the live windows, which a failing disk does not stop.
        for w in st.history_health.iter().flat_map(|h| h.warnings()) {
            body.push_str(&format!("warning: {w}\n"));
        }
        // Ready still: a not-ready slogate would lose its endpoints, and exporters could not
        // even retry.
        if st.memory.shedding.load(Ordering::Relaxed) {
            body.push_str(
                "warning: over 85 % of the memory limit: export requests are refused until under 75 % (clients retry)\n",
            );
        }
        body.into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

/// Every family slogate exports: ingest, series state, gates, alerts and notification delivery.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format 0.0.4", content_type = "text/plain", body = String)),
)]
pub async fn metrics(State(st): State<AppState>) -> Response {
    let mut out = String::with_capacity(8 << 10);
    st.stats.render(&mut out);
    render_series(&st, &mut out);
    if let Some(m) = &st.metrics {
        m.render_metrics(&mut out);
    }
    st.gates.render_metrics(&mut out);
    st.alerts.render_metrics(&mut out);
    if let Some(d) = &st.delivery {
        d.render_metrics(&mut out);
    }
    if !st.notifications.entries().is_empty() {
        st.notifications.render_metrics(&mut out);
    }
    st.security.render_metrics(&mut out);
    st.config.render_metrics(&mut out);
    st.connections.render_metrics(&mut out);
    st.memory.render(&mut out);
    super::process::render(&mut out);
    if let Some(h) = &st.history {
        use slogate_core::prom::{Kind, family};
        family(
            &mut out,
            "slogate_history_quarantined_files_total",
            Kind::Counter,
            "History files that could not be read (truncated, corrupt), moved to quarantine/ and skipped.",
        )
        .sample(&[], h.quarantined_files());
    }
    if let Some(h) = &st.history_health {
        h.render_metrics(&mut out);
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

/// The registry's series, memory and slot families, and the uptime.
fn render_series(st: &AppState, out: &mut String) {
    use slogate_core::prom::{Kind, family};
    let r = &st.registry;
    let m = r.memory();
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    family(
        out,
        "slogate_series",
        Kind::Gauge,
        "Series tracked, including overflow series.",
    )
    .sample(&[], r.series_count());
    family(
        out,
        "slogate_overflow_observations_total",
        Kind::Counter,
        "Spans recorded into an overflow series because a cardinality cap was reached.",
    )
    .sample(&[], load(&r.stats.overflow_observations));
    family(
        out,
        "slogate_series_memory_bytes",
        Kind::Gauge,
        "Heap bytes held by series state (history, keys, open slots).",
    )
    .sample(&[], m.live + m.closed());
    let mut f = family(
        out,
        "slogate_series_state_bytes",
        Kind::Gauge,
        "The same heap bytes by part: live (keys, index, open slots), fine and coarse closed slots.",
    );
    for (part, bytes) in [("live", m.live), ("fine", m.fine), ("coarse", m.coarse)] {
        f.sample(&[("part", &part)], bytes);
    }
    family(
        out,
        "slogate_slots_closed_total",
        Kind::Counter,
        "Open slots merged into series histories.",
    )
    .sample(&[], load(&r.stats.slots_closed));
    family(
        out,
        "slogate_uptime_seconds",
        Kind::Gauge,
        "Seconds since the server started.",
    )
    .sample(&[], st.started.elapsed().as_secs());
}
