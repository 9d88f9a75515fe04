//! The OTLP/gRPC listener on :4317: tonic's HTTP/2 server with slogate's window and frame
//! settings, serving the trace receiver and the verdict service, behind the bearer-token check
//! ([`crate::auth::GrpcAuthLayer`]) and, when configured, TLS: then an accept task hands each
//! connection's handshake to a task of its own and tonic serves the finished ones.

use crate::auth::tls::{Conn, handshake};
use crate::auth::{GrpcAuthLayer, Listener};
use crate::config::ServerConfig;
use crate::server::http::Secure;
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;

/// Serves `router`'s services on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    cfg: &ServerConfig,
    routes: tonic::service::Routes,
    secure: Secure,
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
        .layer(GrpcAuthLayer(secure.sec.clone()))
        .add_routes(routes);
    if secure.tls.is_none() {
        return router
            .serve_with_incoming_shutdown(Accept(listener), shutdown)
            .await;
    }
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(accept_tls(listener, secure, tx));
    router
        .serve_with_incoming_shutdown(Handshaken(rx), shutdown)
        .await
}

/// Accepts connections and completes each TLS handshake in a task of its own (a slow client
/// never holds up the others), until tonic stops listening.
async fn accept_tls(
    listener: TcpListener,
    secure: Secure,
    tx: tokio::sync::mpsc::Sender<std::io::Result<Conn>>,
) {
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed on the OTLP/gRPC port");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = tx.closed() => return,
        };
        let _ = stream.set_nodelay(true);
        let (tx, secure) = (tx.clone(), secure.clone());
        tokio::spawn(async move {
            let tls = secure.tls.as_deref();
            let timeout = Duration::from_secs(10);
            if let Some(conn) =
                handshake(stream, tls, timeout, &secure.sec, Listener::OtlpGrpc).await
            {
                let _ = tx.send(Ok(conn)).await;
            }
        });
    }
}

/// The connections whose TLS handshake completed.
struct Handshaken(tokio::sync::mpsc::Receiver<std::io::Result<Conn>>);

impl futures_core::Stream for Handshaken {
    type Item = std::io::Result<Conn>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

/// The connection stream tonic serves: accepted sockets with TCP_NODELAY.
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
