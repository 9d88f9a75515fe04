//! `slogate serve`: binds the three ports, runs the receivers, the slot closer and the API, and
//! shuts down gracefully on SIGTERM or Ctrl-C.

use crate::api::{self, AppState};
use crate::config::Config;
use anyhow::Context;
use slogate_ingest::grpc::TraceServiceServer;
use slogate_ingest::{IngestStats, Pipeline};
use slogate_window::{Registry, SystemClock};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub fn run(cfg: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("slogate").build()?;
    runtime.block_on(serve(cfg))
}

async fn serve(cfg: Config) -> anyhow::Result<()> {
    let registry = Registry::new(cfg.window.clone(), Arc::new(SystemClock));
    let stats = Arc::new(IngestStats::default());
    let pipeline = Arc::new(Pipeline::new(registry.clone(), cfg.extract.clone(), cfg.limits.clone(), stats.clone()));
    let ready = Arc::new(AtomicBool::new(false));
    let (notifier, delivery, sender) = pagerduty(&cfg)?;
    let alerts = Arc::new(crate::alerts::Alerts::new(&cfg, registry.clone(), notifier));
    let hook: crate::gates::VerdictHook = {
        let alerts = alerts.clone();
        Arc::new(move |doc| alerts.on_verdict(doc))
    };
    let gates = Arc::new(crate::gates::Gates::new(cfg.gates.clone(), registry.clone(), Some(hook)));
    let (stop_tx, stop_rx) = watch::channel(false);

    let s = &cfg.file.server;
    let grpc_listener = TcpListener::bind(s.otlp_grpc).await.with_context(|| format!("cannot bind OTLP/gRPC on {}", s.otlp_grpc))?;
    let http_listener = TcpListener::bind(s.otlp_http).await.with_context(|| format!("cannot bind OTLP/HTTP on {}", s.otlp_http))?;
    let api_listener = TcpListener::bind(s.http).await.with_context(|| format!("cannot bind the HTTP API on {}", s.http))?;
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

    let otlp_http = {
        let mut stop = stop_rx.clone();
        let app = slogate_ingest::http::router(pipeline.clone());
        tokio::spawn(async move {
            axum::serve(http_listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|v| *v).await;
                })
                .await
        })
    };

    let state = AppState { registry: registry.clone(), stats: stats.clone(), ready: ready.clone(), started: std::time::Instant::now(), gates: gates.clone(), alerts: alerts.clone(), delivery };
    // The API gets its own thread and runtime: verdicts and queries then never wait in a queue
    // behind ingest work on the receivers' workers, and the OS shares the cores between them.
    let http_api = {
        let mut stop = stop_rx.clone();
        let app = api::router(state);
        let api_listener = api_listener.into_std()?;
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new().name("slogate-api".into()).spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the API runtime");
                    return;
                }
            };
            rt.block_on(async move {
                match TcpListener::from_std(api_listener) {
                    Ok(listener) => {
                        let served = axum::serve(listener, app)
                            .with_graceful_shutdown(async move {
                                let _ = stop.wait_for(|v| *v).await;
                            })
                            .await;
                        if let Err(e) = served {
                            tracing::error!(error = %e, "the HTTP API stopped");
                        }
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
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            // Closing is idempotent and cheap when nothing ended, so tick faster than a slot.
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let r = registry.clone();
                        let _ = tokio::task::spawn_blocking(move || r.close_slots()).await;
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
    let sender = sender.map(|(sender, outbox, notify)| tokio::spawn(sender.run(outbox, notify, stop_rx.clone())));

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
    };
    if tokio::time::timeout(grace, all).await.is_err() {
        tracing::warn!(grace_seconds = grace.as_secs(), "in-flight requests did not finish within the shutdown grace");
    }
    registry.close_slots();
    Ok(())
}

type SenderParts = (slogate_alert::Sender, Arc<slogate_alert::Outbox>, Arc<tokio::sync::Notify>);

/// The PagerDuty notifier, its delivery stats and the sender to run, when PagerDuty is enabled.
#[allow(clippy::type_complexity)]
fn pagerduty(cfg: &Config) -> anyhow::Result<(Option<Arc<dyn crate::alerts::Notifier>>, Option<Arc<slogate_alert::DeliveryStats>>, Option<SenderParts>)> {
    let p = &cfg.file.pagerduty;
    if !p.enabled {
        return Ok((None, None, None));
    }
    let key = match &p.routing_key_file {
        Some(path) => slogate_alert::Secret::from_file(path),
        None => slogate_alert::Secret::from_env(&p.routing_key_env),
    }
    .context("pagerduty is enabled but its routing key is not available")?;
    let outbox = Arc::new(slogate_alert::Outbox::open(&p.outbox_dir, p.max_pending).with_context(|| format!("cannot open the alert outbox in {}", p.outbox_dir.display()))?);
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
    let notifier: Arc<dyn crate::alerts::Notifier> = Arc::new(crate::alerts::PagerDutyNotifier { outbox: outbox.clone(), notify: notify.clone() });
    Ok((Some(notifier), Some(stats), Some((sender, outbox, notify))))
}

/// Adapts a tokio listener into the connection stream tonic serves, with TCP_NODELAY.
fn tokio_stream_listener(listener: TcpListener) -> impl futures_core::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    struct Accept(TcpListener);
    impl futures_core::Stream for Accept {
        type Item = std::io::Result<tokio::net::TcpStream>;
        fn poll_next(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<Self::Item>> {
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
