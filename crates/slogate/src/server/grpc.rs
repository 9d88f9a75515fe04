//! The OTLP/gRPC listener on :4317: tonic's HTTP/2 server with slogate's window and frame
//! settings, serving the trace receiver and the verdict service.

use crate::config::ServerConfig;
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;

/// Serves `router`'s services on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    cfg: &ServerConfig,
    routes: tonic::service::Routes,
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
    builder
        .add_routes(routes)
        .serve_with_incoming_shutdown(Accept(listener), shutdown)
        .await
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
