//! The OTLP/gRPC listener on :4317: tonic's HTTP/2 server with slogate's window and frame
//! settings, serving the trace receiver and the verdict service, behind the bearer-token check
//! ([`crate::auth::GrpcAuthLayer`]) and, when configured, TLS.
//!
//! Connections come from the accept loop the HTTP listeners use too ([`super::accept`]): the
//! cap on open connections (`server.grpc_max_connections`), the back-off when descriptors run
//! out, and the first-request and idle deadlines. Each accepted connection completes its TLS
//! handshake (if any) in a task of its own, so a slow client never holds up the others, and
//! reaches tonic through a bounded channel.

use super::accept::{self, ConnLimits, ConnStats, TrackRequestsLayer, Tracked};
use crate::auth::GrpcAuthLayer;
use crate::auth::tls::{Conn, handshake};
use crate::config::ServerConfig;
use crate::server::http::Secure;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Connections accepted (and handshaken) but not yet taken by tonic.
const QUEUED: usize = 64;

/// Serves `router`'s services on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    cfg: &ServerConfig,
    routes: tonic::service::Routes,
    secure: Secure,
    conns: Arc<ConnStats>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let mut builder = tonic::transport::Server::builder()
        .max_concurrent_streams(Some(cfg.grpc_max_concurrent_streams))
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
    if cfg.grpc_keepalive {
        builder = builder.http2_keepalive_interval(Some(Duration::from_secs(60)));
    }
    let router = builder
        .layer(TrackRequestsLayer)
        .layer(GrpcAuthLayer(secure.sec.clone()))
        .add_routes(routes);
    let limits = ConnLimits {
        max_connections: cfg.grpc_max_connections,
        first_request_timeout: cfg.header_read_timeout,
        idle_timeout: cfg.idle_timeout,
    };
    let (tx, rx) = mpsc::channel(QUEUED);
    tokio::spawn(accept_loop(listener, limits, secure, conns, tx));
    router
        .serve_with_incoming_shutdown(Accepted(rx), shutdown)
        .await
}

/// Accepts connections until tonic stops listening, completing each one's TLS handshake (when
/// configured) in a task of its own within the first-request deadline.
async fn accept_loop(
    listener: TcpListener,
    limits: ConnLimits,
    secure: Secure,
    conns: Arc<ConnStats>,
    tx: mpsc::Sender<std::io::Result<Tracked<Conn>>>,
) {
    let which = secure.listener;
    let closed = tx.clone();
    let stop = async move { closed.closed().await };
    accept::run(listener, which, limits, conns, stop, |stream, guard| {
        let (tx, secure) = (tx.clone(), secure.clone());
        tokio::spawn(async move {
            let tls = secure.tls.as_deref();
            let timeout = limits.first_request_timeout;
            if let Some(conn) = handshake(stream, tls, timeout, &secure.sec, which).await {
                // Fails only when tonic has stopped: the connection is dropped, its place freed.
                let _ = tx.send(Ok(guard.wrap(conn))).await;
            }
        });
    })
    .await;
}

/// The connection stream tonic serves.
struct Accepted(mpsc::Receiver<std::io::Result<Tracked<Conn>>>);

impl futures_core::Stream for Accepted {
    type Item = std::io::Result<Tracked<Conn>>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}
