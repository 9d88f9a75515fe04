//! A counting OTLP sink, to measure the generator on its own (`slogate-load sink`).
//!
//! It accepts OTLP/gRPC and OTLP/HTTP trace exports and counts requests and spans with a
//! wire-level walk (no allocation per span), so it is cheaper than any real receiver and the
//! generator is what a benchmark against it measures.

use crate::transport::RawCodec;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use tonic::codec::CompressionEncoding;

/// What the sink received.
#[derive(Debug, Default)]
pub struct SinkCounters {
    pub requests: AtomicU64,
    pub spans: AtomicU64,
    pub bytes: AtomicU64,
    pub malformed: AtomicU64,
}

fn varint(b: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*pos)?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(v);
        }
    }
    None
}

/// Calls `f` with each length-delimited field `want` of a message; skips everything else.
fn each_field<'a>(b: &'a [u8], want: u64, mut f: impl FnMut(&'a [u8]) -> Option<()>) -> Option<()> {
    let mut pos = 0;
    while pos < b.len() {
        let key = varint(b, &mut pos)?;
        match key & 7 {
            0 => {
                varint(b, &mut pos)?;
            }
            1 => pos += 8,
            5 => pos += 4,
            2 => {
                let len = varint(b, &mut pos)? as usize;
                let end = pos.checked_add(len).filter(|e| *e <= b.len())?;
                if key >> 3 == want {
                    f(&b[pos..end])?;
                }
                pos = end;
            }
            _ => return None,
        }
    }
    (pos == b.len()).then_some(())
}

/// Spans in an encoded `ExportTraceServiceRequest`, or `None` if it is not well-formed.
pub fn count_spans(req: &[u8]) -> Option<u64> {
    let mut n = 0u64;
    // request.resource_spans(1) → scope_spans(2) → spans(2)
    each_field(req, 1, |rs| {
        each_field(rs, 2, |ss| {
            each_field(ss, 2, |_| {
                n += 1;
                Some(())
            })
        })
    })?;
    Some(n)
}

#[derive(Clone)]
struct GrpcSink(Arc<SinkCounters>);

impl tonic::server::NamedService for GrpcSink {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
}

struct ExportSvc(Arc<SinkCounters>);

impl tonic::server::UnaryService<Bytes> for ExportSvc {
    type Response = Bytes;
    type Future = std::future::Ready<Result<tonic::Response<Bytes>, tonic::Status>>;
    fn call(&mut self, req: tonic::Request<Bytes>) -> Self::Future {
        std::future::ready(match record(&self.0, req.get_ref()) {
            // An empty ExportTraceServiceResponse encodes to zero bytes.
            true => Ok(tonic::Response::new(Bytes::new())),
            false => Err(tonic::Status::invalid_argument("malformed export request")),
        })
    }
}

fn record(c: &SinkCounters, body: &[u8]) -> bool {
    c.bytes.fetch_add(body.len() as u64, Relaxed);
    match count_spans(body) {
        Some(n) => {
            c.requests.fetch_add(1, Relaxed);
            c.spans.fetch_add(n, Relaxed);
            true
        }
        None => {
            c.malformed.fetch_add(1, Relaxed);
            false
        }
    }
}

impl<B> tonic::codegen::Service<http::Request<B>> for GrpcSink
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let counters = self.0.clone();
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(RawCodec)
                .accept_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(64 << 20)
                .max_encoding_message_size(usize::MAX);
            Ok(grpc.unary(ExportSvc(counters), req).await)
        })
    }
}

async fn http_export(
    counters: Arc<SinkCounters>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, Vec<u8>) {
    let gz = headers
        .get("content-encoding")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let json = headers
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let raw = if gz {
        let mut out = Vec::new();
        if std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut out)
            .is_err()
        {
            counters.malformed.fetch_add(1, Relaxed);
            return (StatusCode::BAD_REQUEST, b"bad gzip".to_vec());
        }
        Bytes::from(out)
    } else {
        body
    };
    if json {
        counters.bytes.fetch_add(raw.len() as u64, Relaxed);
        let parsed: Result<
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
            _,
        > = serde_json::from_slice(&raw);
        return match parsed {
            Ok(r) => {
                let n: usize = r
                    .resource_spans
                    .iter()
                    .flat_map(|rs| &rs.scope_spans)
                    .map(|ss| ss.spans.len())
                    .sum();
                counters.requests.fetch_add(1, Relaxed);
                counters.spans.fetch_add(n as u64, Relaxed);
                (StatusCode::OK, b"{}".to_vec())
            }
            Err(e) => {
                counters.malformed.fetch_add(1, Relaxed);
                (StatusCode::BAD_REQUEST, e.to_string().into_bytes())
            }
        };
    }
    if record(&counters, &raw) {
        (StatusCode::OK, Vec::new())
    } else {
        (StatusCode::BAD_REQUEST, b"malformed".to_vec())
    }
}

/// Serves the sink until the future is dropped. Either address may be omitted.
pub async fn serve(
    grpc: Option<SocketAddr>,
    http: Option<SocketAddr>,
    counters: Arc<SinkCounters>,
) -> anyhow::Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(addr) = grpc {
        let svc = GrpcSink(counters.clone());
        let server = tonic::transport::Server::builder()
            .max_concurrent_streams(Some(1024))
            .add_service(svc);
        tasks.spawn(async move { server.serve(addr).await.map_err(anyhow::Error::from) });
    }
    if let Some(addr) = http {
        let c = counters.clone();
        let app = axum::Router::new()
            .route(
                "/v1/traces",
                axum::routing::post(move |h: HeaderMap, b: Bytes| http_export(c.clone(), h, b)),
            )
            .layer(axum::extract::DefaultBodyLimit::max(64 << 20));
        let listener = tokio::net::TcpListener::bind(addr).await?;
        tasks.spawn(async move {
            axum::serve(listener, app)
                .await
                .map_err(anyhow::Error::from)
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(())
}
