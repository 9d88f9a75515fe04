//! `slogate serve`: builds the pieces from the validated configuration, binds the three ports,
//! runs the background tasks, and shuts down gracefully on SIGTERM or Ctrl-C.
//!
//! - [`history`]: opening the Parquet history, appending closed slots and documents, flushing;
//! - [`notify`]: an outbox and a sender per destination (PagerDuty, Slack, webhooks) and the
//!   notifier;
//! - [`accept`]: the accept loop the three listeners share (connection caps, back-off when
//!   descriptors run out, first-request and idle deadlines); [`grpc`] and [`http`]: the
//!   listeners; [`sched`]: the API threads' hint;
//! - [`periodic`]: one way to run a background task (the slot closer, the alert evaluator, the
//!   history flusher and the compactor);
//! - [`reload`]: the configuration reload on SIGHUP or a change of the file.
//!
//! The API runs on its own thread and runtime, so a verdict never queues behind ingest work on
//! the receivers' workers.
//!
//! Shutdown: stop accepting, let in-flight requests finish within `shutdown_grace`, then close
//! every open slot and flush it with the buffered documents, so a restart loses nothing that
//! was acknowledged. A failing flush is retried until the grace (counted from the signal) ends;
//! rows still unwritten then are logged as lost and the process exits with an error.

pub mod accept;
pub mod grpc;
pub mod history;
pub mod http;
pub mod memory;
pub mod notify;
pub mod periodic;
pub mod reload;
pub mod sched;

use crate::api::{self, AppState};
use crate::auth::tls::Tls;
use crate::auth::{Listener, Security};
use crate::config::Config;
use crate::engine::alerts::{Alerts, TransitionRecord, TransitionSink};
use crate::engine::gates::{Gates, VerdictHook, verdict_label};
use anyhow::Context;
use periodic::{First, spawn_periodic};
use slogate_ingest::grpc::{MetricsServiceServer, TraceServiceServer};
use slogate_ingest::{IngestStats, Pipeline};
use slogate_metrics::MetricStore;
use slogate_window::{Registry, SystemClock};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

/// Serves `cfg`, read from `file` (`None`: the embedded defaults), which is reloaded on SIGHUP
/// and when it changes.
pub fn run(cfg: Config, file: Option<reload::ConfigFile>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("slogate")
        .build()?;
    runtime.block_on(serve(cfg, file))
}

/// Resolves when `stop` turns true.
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|v| *v).await;
}

/// The long-lived pieces of a running server, built from the configuration.
struct Engine {
    registry: Arc<Registry>,
    metrics: Arc<MetricStore>,
    stats: Arc<IngestStats>,
    pipeline: Arc<Pipeline<Registry>>,
    history: Option<Arc<history::HistoryParts>>,
    notify: notify::Notifications,
    alerts: Arc<Alerts>,
    gates: Arc<Gates>,
    memory: Arc<memory::MemoryStats>,
}

/// Builds the registry, the ingest pipeline, the history (reloading recent slots), notification
/// delivery, the alert state machines and the gates, wired so that every verdict and alert
/// transition is also a history document, and restores the verdict log and the alert states
/// from those documents.
async fn assemble(cfg: &Config) -> anyhow::Result<Engine> {
    let registry = Registry::new(cfg.window.clone(), Arc::new(SystemClock));
    let metrics = MetricStore::new(
        cfg.metrics.clone(),
        Arc::new(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        }),
    );
    let stats = Arc::new(IngestStats::default());
    let pipeline = Arc::new(
        Pipeline::new(
            registry.clone(),
            cfg.extract.clone(),
            cfg.limits.clone(),
            stats.clone(),
        )
        .with_span_limits(cfg.span_limits)
        .with_metrics(metrics.clone()),
    );
    let history = history::open(cfg, &registry).await?.map(Arc::new);
    if let Some(h) = &history {
        h.restore_metrics(&metrics).await;
        let store = metrics.clone();
        h.set_metric_source(Arc::new(move || store.close_slots()));
    }
    let notify = notify::open(cfg)?;
    let transitions: Option<TransitionSink> = history.as_ref().map(|h| {
        let h = h.clone();
        let sink: TransitionSink = Arc::new(move |t: &TransitionRecord| {
            let doc = serde_json::to_value(t).unwrap_or_default();
            history::append_doc(&h.alerts, &t.id, t.transition, doc);
        });
        sink
    });
    let mut restored_verdicts = Vec::new();
    let alerts = Arc::new(
        Alerts::new(cfg, registry.clone(), notify.notifier.clone(), transitions)
            .with_metrics(metrics.clone()),
    );
    if let Some(h) = &history {
        let restored = h
            .restore(
                crate::engine::gates::VERDICT_LOG_CAPACITY,
                cfg.history.query_timeout,
            )
            .await;
        let resolved = alerts.restore(restored.alerts);
        if !resolved.is_empty() {
            tracing::info!(
                alerts = resolved.len(),
                "alerts firing before the restart whose rule is no longer configured resolved"
            );
        }
        restored_verdicts = restored.verdicts;
    }
    let hook: VerdictHook = {
        let alerts = alerts.clone();
        let history = history.clone();
        Arc::new(move |service, doc| {
            if let Some(h) = &history {
                let value = serde_json::to_value(doc).unwrap_or_default();
                history::append_doc(&h.verdicts, &doc.gate, verdict_label(doc.verdict), value);
            }
            alerts.on_verdict(service, doc)
        })
    };
    // Stored baselines live in the history root: the local directory, or the S3 prefix.
    let baselines = Arc::new(crate::engine::baselines::BaselineStore::new(
        cfg.history.store().context("invalid history location")?,
    ));
    tracing::info!(loaded = baselines.load_all(), "stored baselines");
    let gates = Arc::new(
        Gates::new(cfg.gates.clone(), registry.clone(), Some(hook), baselines)
            .with_metrics(metrics.clone())
            .with_change_hook({
                let alerts = alerts.clone();
                Arc::new(move |service, previous, doc| {
                    alerts.on_verdict_change(service, previous, doc)
                })
            }),
    );
    gates.restore(restored_verdicts);
    Ok(Engine {
        registry,
        metrics,
        stats,
        pipeline,
        history,
        notify,
        alerts,
        gates,
        memory: Arc::new(memory::MemoryStats::default()),
    })
}

async fn serve(cfg: Config, file: Option<reload::ConfigFile>) -> anyhow::Result<()> {
    // From now on a SIGHUP is a reload (once the server runs), not the end of the process.
    #[cfg(unix)]
    let hup = reload::listen_sighup();
    let (sec, tls) = secure(&cfg)?;
    let mut engine = assemble(&cfg).await?;
    let watchdog_stop = Arc::new(AtomicBool::new(false));
    watch_memory(&cfg, &engine, watchdog_stop.clone())?;
    let ready = Arc::new(AtomicBool::new(false));
    let (stop_tx, stop_rx) = watch::channel(false);
    let live = Arc::new(reload::LiveConfig::new(cfg.clone()));
    let mut tasks = listen(&cfg, &engine, &live, ready.clone(), &stop_rx, &sec, &tls).await?;
    tasks.extend(background(&cfg, &mut engine, &stop_rx));
    let reloader = file.map(|f| {
        Arc::new(reload::Reloader::new(
            f,
            live.clone(),
            engine.gates.clone(),
            engine.alerts.clone(),
        ))
    });
    if let Some(r) = reloader.clone() {
        tasks.push(spawn_periodic(
            "configuration file poller",
            reload::POLL_INTERVAL,
            First::AfterOnePeriod,
            MissedTickBehavior::Delay,
            stop_rx.clone(),
            move || r.poll(),
        ));
    }
    #[cfg(unix)]
    tasks.push(reload::on_sighup(hup, reloader, stop_rx.clone()));
    tasks.push(spawn_periodic(
        "token and certificate reloader",
        crate::auth::RELOAD_INTERVAL,
        First::AfterOnePeriod,
        MissedTickBehavior::Delay,
        stop_rx.clone(),
        move || {
            sec.reload();
            if let Some(t) = &tls {
                t.reload();
            }
        },
    ));

    ready.store(true, Ordering::SeqCst);
    shutdown_signal().await;
    let stopping = std::time::Instant::now();
    tracing::info!("shutting down");
    ready.store(false, Ordering::SeqCst);
    let _ = stop_tx.send(true);
    watchdog_stop.store(true, Ordering::Relaxed);
    let grace = cfg.server.shutdown_grace;
    let all = async {
        for t in tasks {
            let _ = t.await;
        }
    };
    if tokio::time::timeout(grace, all).await.is_err() {
        tracing::warn!(
            grace_seconds = grace.as_secs(),
            "in-flight requests did not finish within the shutdown grace"
        );
    }
    // What is still open goes to the history too, so a restart loses nothing acknowledged.
    let rows = engine.registry.close_slots_at(u64::MAX);
    if let Some(h) = &engine.history {
        h.append(rows);
        h.append_metrics(engine.metrics.close_all_slots());
        let lost = h
            .flush_at_shutdown(grace.saturating_sub(stopping.elapsed()))
            .await;
        if lost > 0 {
            anyhow::bail!(
                "{lost} history rows could not be written before the shutdown grace ({} s) ended and are lost; see the errors above",
                grace.as_secs()
            );
        }
    }
    Ok(())
}

/// Starts the memory watchdog (unless turned off) and says when the retry drill is on.
fn watch_memory(cfg: &Config, e: &Engine, stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    match memory::resolve(cfg.limits.memory_limit_bytes) {
        Some(limit) => memory::spawn(limit, e.pipeline.shedding().clone(), e.memory.clone(), stop)
            .context("cannot start the memory watchdog")?,
        None => tracing::warn!(
            "memory watchdog off (ingest.memory_limit_bytes: 0): under overload the kernel's OOM killer decides"
        ),
    }
    if cfg.limits.drill_refuse_fraction > 0.0 {
        tracing::warn!(
            fraction = cfg.limits.drill_refuse_fraction,
            "retry drill on: this share of export requests is refused as if overloaded (ingest.drill_refuse_fraction)"
        );
    }
    Ok(())
}

/// The token sets and TLS configuration, read now: a missing or empty token file, or an
/// unusable certificate, stops the start. Warns when something is left open.
fn secure(cfg: &Config) -> anyhow::Result<(Arc<Security>, Option<Arc<Tls>>)> {
    let sec = Security::new(&cfg.auth, cfg.server.tls.as_ref())?;
    let tls = cfg
        .server
        .tls
        .as_ref()
        .map(Tls::load)
        .transpose()?
        .map(Arc::new);
    let open = sec.warnings();
    if !open.is_empty() {
        tracing::warn!(
            open = %open.join("; "),
            "slogate is not secured: anyone who reaches its ports may send spans, read verdicts or run SQL; see auth and server.tls in deploy/slogate.yaml"
        );
    }
    Ok((Arc::new(sec), tls))
}

/// Binds the three ports and serves them until the stop: OTLP/gRPC (with the verdict
/// service), OTLP/HTTP, and the HTTP API on its own thread. Returns what to wait for.
async fn listen(
    cfg: &Config,
    e: &Engine,
    live: &Arc<reload::LiveConfig>,
    ready: Arc<AtomicBool>,
    stop_rx: &watch::Receiver<bool>,
    sec: &Arc<Security>,
    tls: &Option<Arc<Tls>>,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let secure = |listener| http::Secure {
        tls: tls.clone(),
        sec: sec.clone(),
        listener,
    };
    let s = &cfg.server;
    let bind = |addr, what: &'static str| async move {
        accept::bind(addr).with_context(|| format!("cannot bind {what} on {addr}"))
    };
    let grpc_listener = bind(s.otlp_grpc, "OTLP/gRPC").await?;
    let http_listener = bind(s.otlp_http, "OTLP/HTTP").await?;
    let api_listener = bind(s.http, "the HTTP API").await?;
    tracing::info!(
        otlp_grpc = %grpc_listener.local_addr()?,
        otlp_http = %http_listener.local_addr()?,
        http = %api_listener.local_addr()?,
        config = %cfg.source,
        tls = tls.is_some(),
        "slogate listening"
    );
    accept::check_descriptor_budget(2 * s.max_connections + s.grpc_max_connections);
    let conns = Arc::new(accept::ConnStats::default());
    let routes = tonic::service::Routes::new(TraceServiceServer::new(e.pipeline.clone()))
        .add_service(MetricsServiceServer::new(e.pipeline.clone()))
        .add_service(api::grpc::VerdictServiceServer::new(e.gates.clone()));
    let (server, stop) = (s.clone(), stopped(stop_rx.clone()));
    let grpc_secure = secure(Listener::OtlpGrpc);
    let grpc_conns = conns.clone();
    let grpc = tokio::spawn(async move {
        let served = grpc::serve(
            grpc_listener,
            &server,
            routes,
            grpc_secure,
            grpc_conns,
            stop,
        );
        if let Err(e) = served.await {
            tracing::error!(error = %e, "the OTLP/gRPC listener stopped");
        }
    });
    let limits = http::HttpLimits {
        conn: accept::ConnLimits {
            max_connections: s.max_connections,
            first_request_timeout: s.header_read_timeout,
            idle_timeout: s.idle_timeout,
        },
        drain: s.shutdown_grace,
    };
    let ingest_sec = sec.clone();
    let receiver = slogate_ingest::http::HttpOptions {
        body_read_timeout: s.body_read_timeout,
    };
    let otlp_http = tokio::spawn(http::serve(
        http_listener,
        slogate_ingest::http::router_with(e.pipeline.clone(), receiver).layer(
            axum::middleware::from_fn(move |req, next| {
                crate::auth::otlp_http_layer(ingest_sec.clone(), req, next)
            }),
        ),
        limits,
        secure(Listener::OtlpHttp),
        conns.clone(),
        stopped(stop_rx.clone()),
    ));
    let state = AppState {
        config: live.clone(),
        history: e.history.as_ref().map(|h| h.query.clone()),
        sql_limits: (cfg.history.max_query_rows, cfg.history.query_timeout),
        registry: e.registry.clone(),
        stats: e.stats.clone(),
        ready,
        started: std::time::Instant::now(),
        gates: e.gates.clone(),
        alerts: e.alerts.clone(),
        delivery: e.notify.pagerduty.clone(),
        notifications: e.notify.board.clone(),
        security: sec.clone(),
        metrics: Some(e.metrics.clone()),
        history_health: e.history.as_ref().map(|h| h.health.clone()),
        connections: conns.clone(),
        memory: e.memory.clone(),
    };
    let api_sec = sec.clone();
    let app = api::router(state).layer(axum::middleware::from_fn(move |req, next| {
        crate::auth::api_layer(api_sec.clone(), req, next)
    }));
    let api_done = spawn_api(
        app,
        api_listener.into_std()?,
        limits,
        secure(Listener::Api),
        conns,
        stopped(stop_rx.clone()),
    )?;
    let api = tokio::spawn(async move {
        let _ = api_done.await;
    });
    Ok(vec![grpc, otlp_http, api])
}

/// The background tasks: the slot closer, the alert evaluator, notification delivery, and the
/// history's flusher and compactor.
fn background(
    cfg: &Config,
    e: &mut Engine,
    stop_rx: &watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let (registry, history, alerts) = (e.registry.clone(), e.history.clone(), e.alerts.clone());
    let mut tasks = vec![
        // Closing is idempotent and cheap when nothing ended, so tick faster than a slot.
        spawn_periodic(
            "slot closer",
            Duration::from_millis(500),
            First::Now,
            MissedTickBehavior::Skip,
            stop_rx.clone(),
            move || {
                let rows = registry.close_slots();
                if let Some(h) = &history {
                    h.append(rows);
                }
            },
        ),
        spawn_periodic(
            "alert evaluator",
            cfg.alerting.evaluation_interval,
            First::Now,
            MissedTickBehavior::Delay,
            stop_rx.clone(),
            move || alerts.evaluate(),
        ),
    ];
    tasks.extend(e.notify.spawn(stop_rx));
    if let Some(h) = &e.history {
        let flushed = h.clone();
        tasks.push(spawn_periodic(
            "history flusher",
            cfg.history.flush_interval,
            First::AfterOnePeriod,
            MissedTickBehavior::Burst,
            stop_rx.clone(),
            move || flushed.flush(),
        ));
        let m = h.maintenance.clone();
        tasks.push(spawn_periodic(
            "history compactor",
            cfg.history.compaction_interval,
            First::Now,
            MissedTickBehavior::Delay,
            stop_rx.clone(),
            move || {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64);
                // Every step can be re-run: the next tick picks up where this one stopped.
                if let Err(e) = m.run_once(now) {
                    tracing::error!(error = %e, "history compaction or retention failed; will retry");
                }
            },
        ));
    }
    tasks
}

/// Runs the HTTP API on a thread and runtime of its own: verdicts and queries then never wait
/// in a queue behind ingest work on the receivers' workers, and the OS shares the cores between
/// them. Resolves when the API has stopped.
fn spawn_api(
    app: axum::Router,
    listener: std::net::TcpListener,
    limits: http::HttpLimits,
    secure: http::Secure,
    conns: Arc<accept::ConnStats>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<tokio::sync::oneshot::Receiver<()>> {
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("slogate-api".into())
        .spawn(move || {
            // Two workers, so a SQL query's timeout can fire while the query computes.
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("slogate-api")
                .on_thread_start(sched::latency_sensitive_thread)
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
                match TcpListener::from_std(listener) {
                    Ok(listener) => http::serve(listener, app, limits, secure, conns, stop).await,
                    Err(e) => tracing::error!(error = %e, "cannot serve the HTTP API"),
                }
            });
            let _ = done_tx.send(());
        })?;
    Ok(done_rx)
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
