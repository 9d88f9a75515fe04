//! A counting OTLP sink, to measure the generator on its own (`slogate-load sink`).
//!
//! It accepts OTLP/gRPC and OTLP/HTTP trace and metrics exports and counts requests, spans and
//! data points with a wire-level walk (no allocation per span or point), so it is cheaper than
//! any real receiver and the generator is what a benchmark against it measures.

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
    /// Metric data points (of every point type).
    pub points: AtomicU64,
    /// Metrics export requests (also counted in `requests`).
    pub metric_requests: AtomicU64,
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
fn each_field<'a>(b: &'a [u8], want: u64, f: impl FnMut(&'a [u8]) -> Option<()>) -> Option<()> {
    each_field_of(b, |n| n == want, f)
}

/// Calls `f` with each length-delimited field whose number `want`s; skips everything else.
fn each_field_of<'a>(
    b: &'a [u8],
    want: impl Fn(u64) -> bool,
    mut f: impl FnMut(&'a [u8]) -> Option<()>,
) -> Option<()> {
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
                if want(key >> 3) {
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

/// Data points in an encoded `ExportMetricsServiceRequest` (gauge, sum, histogram, exponential
/// histogram and summary points alike), or `None` if it is not well-formed.
pub fn count_points(req: &[u8]) -> Option<u64> {
    let mut n = 0u64;
    // request.resource_metrics(1) → scope_metrics(2) → metrics(2) → gauge(5) | sum(7) |
    // histogram(9) | exponential_histogram(10) | summary(11) → data_points(1)
    each_field(req, 1, |rm| {
        each_field(rm, 2, |sm| {
            each_field(sm, 2, |m| {
                each_field_of(
                    m,
                    |f| matches!(f, 5 | 7 | 9 | 10 | 11),
                    |data| {
                        each_field(data, 1, |_| {
                            n += 1;
                            Some(())
                        })
                    },
                )
            })
        })
    })?;
    Some(n)
}

/// The signal a sink endpoint receives.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Traces,
    Metrics,
}

#[derive(Clone)]
struct GrpcSink(Arc<SinkCounters>);

impl tonic::server::NamedService for GrpcSink {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
}

#[derive(Clone)]
struct GrpcMetricsSink(Arc<SinkCounters>);

impl tonic::server::NamedService for GrpcMetricsSink {
    const NAME: &'static str = "opentelemetry.proto.collector.metrics.v1.MetricsService";
}

struct ExportSvc(Arc<SinkCounters>, Kind);

impl tonic::server::UnaryService<Bytes> for ExportSvc {
    type Response = Bytes;
    type Future = std::future::Ready<Result<tonic::Response<Bytes>, tonic::Status>>;
    fn call(&mut self, req: tonic::Request<Bytes>) -> Self::Future {
        std::future::ready(match record(&self.0, req.get_ref(), self.1) {
            // An empty export response encodes to zero bytes.
            true => Ok(tonic::Response::new(Bytes::new())),
            false => Err(tonic::Status::invalid_argument("malformed export request")),
        })
    }
}

fn record(c: &SinkCounters, body: &[u8], kind: Kind) -> bool {
    c.bytes.fetch_add(body.len() as u64, Relaxed);
    let counted = match kind {
        Kind::Traces => count_spans(body).map(|n| (n, &c.spans)),
        Kind::Metrics => count_points(body).map(|n| (n, &c.points)),
    };
    match counted {
        Some((n, counter)) => {
            c.requests.fetch_add(1, Relaxed);
            if kind == Kind::Metrics {
                c.metric_requests.fetch_add(1, Relaxed);
            }
            counter.fetch_add(n, Relaxed);
            true
        }
        None => {
            c.malformed.fetch_add(1, Relaxed);
            false
        }
    }
}

fn grpc_call<B>(
    counters: Arc<SinkCounters>,
    kind: Kind,
    req: http::Request<B>,
) -> Pin<Box<dyn Future<Output = Result<http::Response<tonic::body::Body>, Infallible>> + Send>>
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    Box::pin(async move {
        let mut grpc = tonic::server::Grpc::new(RawCodec)
            .accept_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(usize::MAX);
        Ok(grpc.unary(ExportSvc(counters, kind), req).await)
    })
}

impl<B> tonic::codegen::Service<http::Request<B>> for GrpcMetricsSink
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
        grpc_call(self.0.clone(), Kind::Metrics, req)
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
        grpc_call(self.0.clone(), Kind::Traces, req)
    }
}

async fn http_export(
    counters: Arc<SinkCounters>,
    kind: Kind,
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
    if json && kind == Kind::Metrics {
        counters.bytes.fetch_add(raw.len() as u64, Relaxed);
        let parsed: Result<
            opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest,
            _,
        > = serde_json::from_slice(&raw);
        return match parsed {
            Ok(r) => {
                counters.requests.fetch_add(1, Relaxed);
                counters.metric_requests.fetch_add(1, Relaxed);
                counters.points.fetch_add(json_points(&r), Relaxed);
                (StatusCode::OK, b"{}".to_vec())
            }
            Err(e) => {
                counters.malformed.fetch_add(1, Relaxed);
                (StatusCode::BAD_REQUEST, e.to_string().into_bytes())
            }
        };
    }
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
    if record(&counters, &raw, kind) {
        (StatusCode::OK, Vec::new())
    } else {
        (StatusCode::BAD_REQUEST, b"malformed".to_vec())
    }
}

fn json_points(
    r: &opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest,
) -> u64 {
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    r.resource_metrics
        .iter()
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|sm| &sm.metrics)
        .map(|m| match &m.data {
            Some(Data::Gauge(g)) => g.data_points.len(),
            Some(Data::Sum(x)) => x.data_points.len(),
            Some(Data::Histogram(h)) => h.data_points.len(),
            Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
            Some(Data::Summary(x)) => x.data_points.len(),
            None => 0,
        } as u64)
        .sum()
}

/// The OTLP/HTTP routes of the sink.
fn http_router(counters: Arc<SinkCounters>) -> axum::Router {
    let (c, m) = (counters.clone(), counters);
    axum::Router::new()
        .route(
            "/v1/traces",
            axum::routing::post(move |h: HeaderMap, b: Bytes| {
                http_export(c.clone(), Kind::Traces, h, b)
            }),
        )
        .route(
            "/v1/metrics",
            axum::routing::post(move |h: HeaderMap, b: Bytes| {
                http_export(m.clone(), Kind::Metrics, h, b)
            }),
        )
        .layer(axum::extract::DefaultBodyLimit::max(64 << 20))
}

/// Every route of the sink, OTLP/gRPC and OTLP/HTTP, in one router: for serving it over a
/// connection of one's own (e.g. TLS in the tests). [`serve`] is the fast path.
pub fn router(counters: Arc<SinkCounters>) -> axum::Router {
    tonic::service::Routes::new(GrpcSink(counters.clone()))
        .add_service(GrpcMetricsSink(counters.clone()))
        .into_axum_router()
        .merge(http_router(counters))
}

/// Serves the sink until the future is dropped. Either address may be omitted.
pub async fn serve(
    grpc: Option<SocketAddr>,
    http: Option<SocketAddr>,
    counters: Arc<SinkCounters>,
) -> anyhow::Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(addr) = grpc {
        let server = tonic::transport::Server::builder()
            .max_concurrent_streams(Some(1024))
            .add_service(GrpcSink(counters.clone()))
            .add_service(GrpcMetricsSink(counters.clone()));
        tasks.spawn(async move { server.serve(addr).await.map_err(anyhow::Error::from) });
    }
    if let Some(addr) = http {
        let app = http_router(counters.clone());
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
