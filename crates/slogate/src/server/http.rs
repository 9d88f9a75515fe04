//! Serving the OTLP/HTTP receiver and the API over HTTP/1.1 and HTTP/2 with the limits
//! `axum::serve` does not set: a deadline for a request's head (a client that opens a
//! connection and trickles header bytes — slow-loris — is cut off), a cap on open connections
//! (past it, new connections wait in the kernel's accept queue), and a bounded graceful drain.
//! With TLS the handshake runs in the connection's task, bounded by the header-read timeout.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

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
    /// A connection whose request head (request line and headers) has not fully arrived this
    /// long after it started is closed.
    pub header_read_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
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
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning; the listener stays up.
                    tracing::warn!(error = %e, "accepting an HTTP connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let (builder, watcher, secure) = (builder.clone(), graceful.watcher(), secure.clone());
        let timeout = limits.header_read_timeout;
        tokio::spawn(async move {
            let tls = secure.tls.as_deref();
            if let Some(io) = handshake(stream, tls, timeout, &secure.sec, secure.listener).await {
                let conn = builder
                    .serve_connection_with_upgrades(TokioIo::new(io), service)
                    .into_owned();
                if let Err(e) = watcher.watch(conn).await {
                    tracing::debug!(error = %e, "HTTP connection ended with an error");
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(drain = ?limits.drain, "HTTP connections still open after the drain period were closed");
    }
}
