//! `slogate serve`: binds the three ports, runs the receivers, the slot closer and the API, and
//! shuts down gracefully on SIGTERM or Ctrl-C.

use crate::api::{self, AppState};
use crate::config::Config;
use anyhow::Context;
use slogate_ingest::grpc::TraceServiceServer;
use slogate_ingest::{IngestStats, Pipeline};
use slogate_window::{Registry, SystemClock};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub fn run(cfg: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("slogate")
        .build()?;
    runtime.block_on(serve(cfg))
}

async fn serve(cfg: Config) -> anyhow::Result<()> {
    let registry = Registry::new(cfg.window.clone(), Arc::new(SystemClock));
    let stats = Arc::new(IngestStats::default());
    let pipeline = Arc::new(Pipeline::new(
        registry.clone(),
        cfg.extract.clone(),
        cfg.limits.clone(),
        stats.clone(),
    ));
    let ready = Arc::new(AtomicBool::new(false));
    let history = open_history(&cfg, &registry).await?;
    let (notifier, delivery, sender) = pagerduty(&cfg)?;
    let transitions: Option<crate::alerts::TransitionSink> = history.as_ref().map(|h| {
        let w = h.alerts.clone();
        let sink: crate::alerts::TransitionSink =
            Arc::new(move |t: &crate::alerts::TransitionRecord| {
                append_doc(
                    &w,
                    doc_row(
                        &t.id,
                        t.transition,
                        serde_json::to_value(t).unwrap_or_default(),
                    ),
                );
            });
        sink
    });
    let alerts = Arc::new(crate::alerts::Alerts::new(
        &cfg,
        registry.clone(),
        notifier,
        transitions,
    ));
    let hook: crate::gates::VerdictHook = {
        let alerts = alerts.clone();
        let verdicts = history.as_ref().map(|h| h.verdicts.clone());
        Arc::new(move |doc| {
            if let Some(w) = &verdicts {
                append_doc(
                    w,
                    doc_row(
                        &doc.gate,
                        crate::gates::verdict_label(doc.verdict),
                        serde_json::to_value(doc).unwrap_or_default(),
                    ),
                );
            }
            alerts.on_verdict(doc)
        })
    };
    // Stored baselines live in the history root: the local directory, or the S3 prefix.
    let baselines = Arc::new(crate::baseline::BaselineStore::new(
        cfg.file
            .history
            .store()
            .context("invalid history location")?,
    ));
    tracing::info!(loaded = baselines.load_all(), "stored baselines");
    let gates = Arc::new(crate::gates::Gates::new(
        cfg.gates.clone(),
        registry.clone(),
        Some(hook),
        baselines,
    ));
    let (stop_tx, stop_rx) = watch::channel(false);

    let s = &cfg.file.server;
    let grpc_listener = TcpListener::bind(s.otlp_grpc)
        .await
        .with_context(|| format!("cannot bind OTLP/gRPC on {}", s.otlp_grpc))?;
    let http_listener = TcpListener::bind(s.otlp_http)
        .await
        .with_context(|| format!("cannot bind OTLP/HTTP on {}", s.otlp_http))?;
    let api_listener = TcpListener::bind(s.http)
        .await
        .with_context(|| format!("cannot bind the HTTP API on {}", s.http))?;
    tracing::info!(
        otlp_grpc = %grpc_listener.local_addr()?,
        otlp_http = %http_listener.local_addr()?,
        http = %api_listener.local_addr()?,
        config = %cfg.source,
        "slogate listening"
    );

    let grpc = {
        let mut stop = stop_rx.clone();
        let mut builder = tonic::transport::Server::builder()
            .max_concurrent_streams(Some(cfg.file.ingest.grpc_max_concurrent_streams))
            .http2_keepalive_timeout(Some(Duration::from_secs(20)))
            // An export of 512 spans is ~300 KB: with hyper's 1 MiB connection window, four
            // exports in flight on one connection stall on WINDOW_UPDATEs. 2 MiB per stream and
            // 8 MiB per connection keep a client's usual 4-16 exports flowing, still bounded.
            .initial_stream_window_size(Some(2 << 20))
            .initial_connection_window_size(Some(8 << 20))
            // Clients that honour SETTINGS_MAX_FRAME_SIZE (h2, Netty) then send an export as a
            // few large DATA frames instead of ~18 of 16 KiB: fewer frames to parse, and reads
            // of the socket in large pieces (fewer recv calls and ACKs). Bounded by the windows.
            .max_frame_size(Some(1 << 20))
            .timeout(Duration::from_secs(30));
        if cfg.file.ingest.grpc_keepalive {
            builder = builder.http2_keepalive_interval(Some(Duration::from_secs(60)));
        }
        let router = builder
            .add_service(TraceServiceServer::new(pipeline.clone()))
            .add_service(crate::grpc_api::VerdictServiceServer::new(gates.clone()));
        let incoming = tokio_stream_listener(grpc_listener);
        tokio::spawn(async move {
            router
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = stop.wait_for(|v| *v).await;
                })
                .await
        })
    };

    let http_limits = crate::http_server::HttpLimits {
        header_read_timeout: cfg.file.server.header_read_timeout.0,
        max_connections: cfg.file.server.max_connections,
        drain: cfg.file.server.shutdown_grace.0,
    };
    let otlp_http = {
        let mut stop = stop_rx.clone();
        let app = slogate_ingest::http::router(pipeline.clone());
        tokio::spawn(async move {
            crate::http_server::serve(http_listener, app, http_limits, async move {
                let _ = stop.wait_for(|v| *v).await;
            })
            .await;
        })
    };

    let state = AppState {
        history: history.as_ref().map(|h| h.query.clone()),
        sql_limits: (
            cfg.file.history.max_query_rows,
            cfg.file.history.query_timeout.0,
        ),
        registry: registry.clone(),
        stats: stats.clone(),
        ready: ready.clone(),
        started: std::time::Instant::now(),
        gates: gates.clone(),
        alerts: alerts.clone(),
        delivery,
    };
    // The API gets its own thread and runtime: verdicts and queries then never wait in a queue
    // behind ingest work on the receivers' workers, and the OS shares the cores between them.
    let http_api = {
        let mut stop = stop_rx.clone();
        let app = api::router(state);
        let api_listener = api_listener.into_std()?;
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("slogate-api".into())
            .spawn(move || {
                // Two workers, so a SQL query's timeout can fire while the query computes.
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("slogate-api")
                    .on_thread_start(crate::sched::latency_sensitive_thread)
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot start the API runtime");
                        return;
                    }
                };
                rt.block_on(async move {
                    match TcpListener::from_std(api_listener) {
                        Ok(listener) => {
                            crate::http_server::serve(listener, app, http_limits, async move {
                                let _ = stop.wait_for(|v| *v).await;
                            })
                            .await;
                        }
                        Err(e) => tracing::error!(error = %e, "cannot serve the HTTP API"),
                    }
                });
                let _ = done_tx.send(());
            })?;
        done_rx
    };

    let closer = {
        let registry = registry.clone();
        let writer = history.as_ref().map(|h| h.writer.clone());
        let dropped = history.as_ref().map(|h| h.dropped.clone());
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            // Closing is idempotent and cheap when nothing ended, so tick faster than a slot.
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let r = registry.clone();
                        let w = writer.clone();
                        let d = dropped.clone();
                        let _ = tokio::task::spawn_blocking(move || {
                            let rows = r.close_slots();
                            if let (Some(w), Some(d), false) = (w, d, rows.is_empty()) {
                                append_history(&w, &d, rows);
                            }
                        })
                        .await;
                    }
                    _ = async { let _ = stop.wait_for(|v| *v).await; } => break,
                }
            }
        })
    };

    let evaluator = {
        let alerts = alerts.clone();
        let mut stop = stop_rx.clone();
        let every = cfg.file.alerting.evaluation_interval.0;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let a = alerts.clone();
                        let _ = tokio::task::spawn_blocking(move || a.evaluate()).await;
                    }
                    _ = async { let _ = stop.wait_for(|v| *v).await; } => break,
                }
            }
        })
    };
    let sender = sender
        .map(|(sender, outbox, notify)| tokio::spawn(sender.run(outbox, notify, stop_rx.clone())));
    let flusher = history.as_ref().map(|h| {
        let writer = h.writer.clone();
        let (verdict_docs, alert_docs) = (h.verdicts.clone(), h.alerts.clone());
        let every = cfg.file.history.flush_interval.0;
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = async { let _ = stop.wait_for(|v| *v).await; } => break,
                }
                let (w, v, a) = (writer.clone(), verdict_docs.clone(), alert_docs.clone());
                let _ = tokio::task::spawn_blocking(move || {
                    flush_history(&w);
                    flush_docs(&v);
                    flush_docs(&a);
                })
                .await;
            }
        })
    });

    let compactor = history.as_ref().map(|h| {
        let maintenance = h.maintenance.clone();
        let every = cfg.file.history.compaction_interval.0;
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = async { let _ = stop.wait_for(|v| *v).await; } => break,
                }
                let m = maintenance.clone();
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
                match tokio::task::spawn_blocking(move || m.run_once(now)).await {
                    Ok(Ok(_)) => {}
                    // Every step can be re-run: the next tick picks up where this one stopped.
                    Ok(Err(e)) => tracing::error!(error = %e, "history compaction or retention failed; will retry"),
                    Err(e) => tracing::error!(error = %e, "history compaction panicked"),
                }
            }
        })
    });

    ready.store(true, Ordering::SeqCst);
    shutdown_signal().await;
    tracing::info!("shutting down");
    ready.store(false, Ordering::SeqCst);
    let _ = stop_tx.send(true);
    let grace = cfg.file.server.shutdown_grace.0;
    let all = async {
        let _ = grpc.await;
        let _ = otlp_http.await;
        let _ = http_api.await;
        let _ = closer.await;
        let _ = evaluator.await;
        if let Some(s) = sender {
            let _ = s.await;
        }
        if let Some(f) = flusher {
            let _ = f.await;
        }
        if let Some(c) = compactor {
            let _ = c.await;
        }
    };
    if tokio::time::timeout(grace, all).await.is_err() {
        tracing::warn!(
            grace_seconds = grace.as_secs(),
            "in-flight requests did not finish within the shutdown grace"
        );
    }
    // What is still open goes to the history too, so a restart loses nothing acknowledged.
    let rows = registry.close_slots_at(u64::MAX);
    if let Some(h) = &history {
        if !rows.is_empty() {
            append_history(&h.writer, &h.dropped, rows);
        }
        flush_history(&h.writer);
        flush_docs(&h.verdicts);
        flush_docs(&h.alerts);
    }
    Ok(())
}

pub struct HistoryParts {
    pub writer: Arc<parking_lot::Mutex<slogate_history::HistoryWriter>>,
    pub query: slogate_history::History,
    pub dropped: Arc<std::sync::atomic::AtomicU64>,
    /// Every gate evaluation and every alert transition, as JSON documents.
    pub verdicts: Arc<parking_lot::Mutex<slogate_history::DocWriter>>,
    pub alerts: Arc<parking_lot::Mutex<slogate_history::DocWriter>>,
    /// Compaction and retention of the history root.
    pub maintenance: Arc<slogate_history::Maintenance>,
}

fn doc_row(name: &str, status: &str, doc: serde_json::Value) -> slogate_history::DocRow {
    let at_unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    slogate_history::DocRow {
        at_unix_ms,
        name: name.to_string(),
        status: status.to_string(),
        doc,
    }
}

fn append_doc(
    writer: &parking_lot::Mutex<slogate_history::DocWriter>,
    row: slogate_history::DocRow,
) {
    if let Err(e) = writer.lock().append(row) {
        tracing::warn!(error = %e, "document not written to the history");
    }
}

/// Opens the Parquet history and loads its recent part back into the live windows.
async fn open_history(
    cfg: &Config,
    registry: &Arc<Registry>,
) -> anyhow::Result<Option<HistoryParts>> {
    let h = &cfg.file.history;
    if !h.enabled {
        return Ok(None);
    }
    let extra = cfg.window.extra_dims.clone();
    let store = h.store().context("invalid history location")?;
    let root = store.describe();
    let mut mc = slogate_history::MaintenanceConfig::new(extra.clone());
    mc.retention = Some(h.retention.0);
    mc.compact_after = h.compact_after.0;
    let maintenance = Arc::new(
        slogate_history::Maintenance::new(&store, mc).context("invalid history settings")?,
    );
    // Before anything reads or writes: finish or undo a compaction a crash interrupted, and
    // remove interrupted writes, so no row is counted twice or lost.
    let m = maintenance.clone();
    match tokio::task::spawn_blocking(move || m.recover(true)).await {
        Ok(Ok(0)) => {}
        Ok(Ok(n)) => {
            tracing::info!(manifests = n, root = %root, "interrupted history compaction repaired")
        }
        Ok(Err(e)) => {
            return Err(e).with_context(|| format!("cannot recover the history in {root}"));
        }
        Err(e) => return Err(e).context("history recovery panicked"),
    }
    let mut wc = slogate_history::WriterConfig::new(&store, extra.clone());
    wc.max_buffered_rows = h.max_buffered_rows;
    let writer = slogate_history::HistoryWriter::new(wc)
        .with_context(|| format!("cannot open the history in {root}"))?;
    let query = slogate_history::History::open(&store, &extra)
        .await
        .with_context(|| format!("cannot read the history in {root}"))?;
    let since = registry.now_unix().saturating_sub(h.reload.0.as_secs()) as i64;
    let started = std::time::Instant::now();
    match query.load_since(since).await {
        Ok(rows) => {
            let closed: Vec<slogate_window::ClosedRow> = rows
                .into_iter()
                .map(|r| slogate_window::ClosedRow {
                    slot_start_unix: r.slot_start_unix.max(0) as u64,
                    slot_seconds: u64::from(r.slot_seconds),
                    key: r.key,
                    requests: r.requests,
                    errors: r.errors,
                    latency_sum_ns: r.latency_sum_ns,
                    latency_min_ns: r.latency_min_ns,
                    latency_max_ns: r.latency_max_ns,
                    sketch: r.sketch,
                })
                .collect();
            match registry.import(&closed) {
                Ok(n) => {
                    tracing::info!(rows = n, elapsed_ms = started.elapsed().as_millis() as u64, root = %root, "history reloaded into the live windows")
                }
                Err(e) => {
                    tracing::error!(error = %e, "history holds an invalid sketch; reload stopped")
                }
            }
        }
        Err(e) => tracing::error!(error = %e, "could not reload the history; windows start empty"),
    }
    let docs = |table| {
        slogate_history::DocWriter::new(&store, table, h.max_buffered_rows)
            .map(|w| Arc::new(parking_lot::Mutex::new(w)))
    };
    Ok(Some(HistoryParts {
        writer: Arc::new(parking_lot::Mutex::new(writer)),
        query,
        dropped: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        verdicts: docs(slogate_history::DocTable::Verdicts)?,
        alerts: docs(slogate_history::DocTable::Alerts)?,
        maintenance,
    }))
}

fn append_history(
    writer: &parking_lot::Mutex<slogate_history::HistoryWriter>,
    dropped: &std::sync::atomic::AtomicU64,
    rows: Vec<slogate_window::ClosedRow>,
) {
    let n = rows.len();
    let rows = rows
        .into_iter()
        .map(|r| slogate_history::SlotRow {
            slot_start_unix: r.slot_start_unix as i64,
            slot_seconds: r.slot_seconds as u32,
            key: r.key,
            requests: r.requests,
            errors: r.errors,
            latency_sum_ns: r.latency_sum_ns,
            latency_min_ns: r.latency_min_ns,
            latency_max_ns: r.latency_max_ns,
            sketch: r.sketch,
        })
        .collect();
    if let Err(e) = writer.lock().append_all(rows) {
        dropped.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        tracing::warn!(rows = n, error = %e, "closed slots not written to the history (they stay in the live windows)");
    }
}

/// Writes the buffered verdict or alert documents. The lock is held only to take them out:
/// verdicts append to this writer, so they must not wait for the Parquet write or an S3 retry.
fn flush_docs(writer: &parking_lot::Mutex<slogate_history::DocWriter>) {
    let batch = {
        let mut w = writer.lock();
        if w.buffered() == 0 {
            return;
        }
        w.take()
    };
    if let Err((e, rest)) = batch.write() {
        tracing::error!(error = %e, "history flush failed; will retry");
        writer.lock().restore(rest);
    }
}

fn flush_history(writer: &parking_lot::Mutex<slogate_history::HistoryWriter>) {
    let mut w = writer.lock();
    let buffered = w.buffered();
    if buffered == 0 {
        return;
    }
    match w.flush() {
        Ok(files) => tracing::debug!(rows = buffered, files = files.len(), "history flushed"),
        // The rows stay buffered and the next flush tries again.
        Err(e) => tracing::error!(rows = buffered, error = %e, "history flush failed; will retry"),
    }
}

type SenderParts = (
    slogate_alert::Sender,
    Arc<slogate_alert::Outbox>,
    Arc<tokio::sync::Notify>,
);

/// The PagerDuty notifier, its delivery stats and the sender to run, when PagerDuty is enabled.
#[allow(clippy::type_complexity)]
fn pagerduty(
    cfg: &Config,
) -> anyhow::Result<(
    Option<Arc<dyn crate::alerts::Notifier>>,
    Option<Arc<slogate_alert::DeliveryStats>>,
    Option<SenderParts>,
)> {
    let p = &cfg.file.pagerduty;
    if !p.enabled {
        return Ok((None, None, None));
    }
    let key = match &p.routing_key_file {
        Some(path) => slogate_alert::Secret::from_file(path),
        None => slogate_alert::Secret::from_env(&p.routing_key_env),
    }
    .context("pagerduty is enabled but its routing key is not available")?;
    let outbox = Arc::new(
        slogate_alert::Outbox::open(&p.outbox_dir, p.max_pending).with_context(|| {
            format!("cannot open the alert outbox in {}", p.outbox_dir.display())
        })?,
    );
    let pending = outbox.len();
    let mut sc = slogate_alert::SenderConfig::new(key);
    sc.url = p.url.clone();
    sc.max_per_minute = p.max_per_minute;
    sc.backoff_min = p.retry_min.0;
    sc.backoff_max = p.retry_max.0;
    let sender = slogate_alert::Sender::new(sc).context("invalid pagerduty settings")?;
    let stats = sender.stats();
    let notify = Arc::new(tokio::sync::Notify::new());
    tracing::info!(url = %p.url, outbox = %p.outbox_dir.display(), pending, "pagerduty delivery enabled");
    let notifier: Arc<dyn crate::alerts::Notifier> = Arc::new(crate::alerts::PagerDutyNotifier {
        outbox: outbox.clone(),
        notify: notify.clone(),
    });
    Ok((Some(notifier), Some(stats), Some((sender, outbox, notify))))
}

/// Adapts a tokio listener into the connection stream tonic serves, with TCP_NODELAY.
fn tokio_stream_listener(
    listener: TcpListener,
) -> impl futures_core::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    struct Accept(TcpListener);
    impl futures_core::Stream for Accept {
        type Item = std::io::Result<tokio::net::TcpStream>;
        fn poll_next(
            self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            match self.0.poll_accept(cx) {
                std::task::Poll::Ready(Ok((stream, _))) => {
                    let _ = stream.set_nodelay(true);
                    std::task::Poll::Ready(Some(Ok(stream)))
                }
                std::task::Poll::Ready(Err(e)) => {
                    // Accept errors (e.g. too many open files) are not fatal; log and go on.
                    tracing::warn!(error = %e, "accept failed on the OTLP/gRPC port");
                    cx.waker().wake_by_ref();
                    std::task::Poll::Pending
                }
                std::task::Poll::Pending => std::task::Poll::Pending,
            }
        }
    }
    Accept(listener)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
