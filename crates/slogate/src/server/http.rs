//! Serving the OTLP/HTTP receiver and the API over HTTP/1.1 and HTTP/2 with the limits
//! `axum::serve` does not set. The shared accept loop ([`super::accept`]) caps open connections
//! (past the cap, new ones wait in the kernel's accept queue), backs off when descriptors run
//! out, and closes connections that start no request within the header-read timeout or stay
//! idle; hyper's header-read timeout bounds every later request head too (a client that
//! trickles header bytes — slow-loris — is cut off). With TLS the handshake runs in the
//! connection's task, within the same deadline. Shutdown drains open connections for a bounded
//! time.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt;

use super::accept::{self, ConnLimits, ConnStats};
use crate::auth::tls::{Tls, handshake};
use crate::auth::{Listener, Security};

/// TLS (when configured) of one listener, and where its failures are counted.
#[derive(Clone)]
pub struct Secure {
    pub tls: Option<Arc<Tls>>,
    pub sec: Arc<Security>,
    pub listener: Listener,
}

/// Connection limits of one HTTP listener.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// The cap, the first-request deadline (also hyper's header-read timeout: a request head
    /// that has not fully arrived this long after the server started waiting for it closes the
    /// connection) and the idle timeout.
    pub conn: ConnLimits,
    /// After shutdown starts, open connections get this long to finish their requests.
    pub drain: Duration,
}

/// Accepts connections on `listener` and serves `app` on each until `shutdown` completes, then
/// stops accepting and drains open connections for at most `limits.drain`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    secure: Secure,
    conns: Arc<ConnStats>,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let timeout = limits.conn.first_request_timeout;
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(timeout)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    let which = secure.listener;
    accept::run(
        listener,
        which,
        limits.conn,
        conns,
        shutdown,
        |stream, guard| {
            let (app, builder, watcher, secure) = (
                app.clone(),
                builder.clone(),
                graceful.watcher(),
                secure.clone(),
            );
            tokio::spawn(async move {
                let tls = secure.tls.as_deref();
                let Some(io) = handshake(stream, tls, timeout, &secure.sec, secure.listener).await
                else {
                    return;
                };
                let io = guard.wrap(io);
                let activity = io.activity();
                // Each request counts as in flight on its connection until its response is ready.
                let service = tower::service_fn(move |req| {
                    let request = activity.begin();
                    let response = app.clone().oneshot(req);
                    async move {
                        let r = response.await;
                        drop(request);
                        r
                    }
                });
                let conn = builder
                    .serve_connection_with_upgrades(
                        TokioIo::new(io),
                        TowerToHyperService::new(service),
                    )
                    .into_owned();
                if let Err(e) = watcher.watch(conn).await {
                    tracing::debug!(error = %e, "HTTP connection ended with an error");
                }
            });
        },
    )
    .await;
    if tokio::time::timeout(limits.drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(listener = which.label(), drain = ?limits.drain, "HTTP connections still open after the drain period were closed");
    }
}
