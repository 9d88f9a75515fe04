//! OTLP/gRPC receivers: `opentelemetry.proto.collector.trace.v1.TraceService/Export` and
//! `opentelemetry.proto.collector.metrics.v1.MetricsService/Export`.
//!
//! The unary calls are served by hand on tonic's router (see [`TraceServiceServer`] and
//! [`MetricsServiceServer`]), so the request bytes reach the wire decoders untouched and usually
//! uncopied, and every status code is the one the OTLP spec's retry table asks for.

use crate::extract::Tally;
use crate::metrics::MetricTally;
use crate::pipeline::{IngestError, METRICS_NOT_CONFIGURED, Pipeline, Transport};
use crate::shed::{Reservation, ShedReason};
use bytes::{Buf, BufMut, Bytes};
use prost::Message;
use slogate_core::Recorder;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Code, Status};

pub const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
pub const METRICS_EXPORT_PATH: &str =
    "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";

/// `ExportTraceServiceResponse`.
#[derive(Clone, PartialEq, Message)]
pub struct ExportTraceServiceResponse {
    #[prost(message, optional, tag = "1")]
    pub partial_success: Option<ExportTracePartialSuccess>,
}

/// `ExportTracePartialSuccess`.
#[derive(Clone, PartialEq, Message)]
pub struct ExportTracePartialSuccess {
    #[prost(int64, tag = "1")]
    pub rejected_spans: i64,
    #[prost(string, tag = "2")]
    pub error_message: String,
}

impl ExportTraceServiceResponse {
    pub fn from_tally(tally: &Tally) -> Self {
        ExportTraceServiceResponse {
            partial_success: tally
                .message()
                .map(|error_message| ExportTracePartialSuccess {
                    rejected_spans: tally.total_rejected() as i64,
                    error_message,
                }),
        }
    }
}

/// `ExportMetricsServiceResponse`.
#[derive(Clone, PartialEq, Message)]
pub struct ExportMetricsServiceResponse {
    #[prost(message, optional, tag = "1")]
    pub partial_success: Option<ExportMetricsPartialSuccess>,
}

/// `ExportMetricsPartialSuccess`.
#[derive(Clone, PartialEq, Message)]
pub struct ExportMetricsPartialSuccess {
    #[prost(int64, tag = "1")]
    pub rejected_data_points: i64,
    #[prost(string, tag = "2")]
    pub error_message: String,
}

impl ExportMetricsServiceResponse {
    pub fn from_tally(tally: &MetricTally) -> Self {
        ExportMetricsServiceResponse {
            partial_success: tally
                .message()
                .map(|error_message| ExportMetricsPartialSuccess {
                    rejected_data_points: tally.total_rejected() as i64,
                    error_message,
                }),
        }
    }
}

/// `google.rpc.Status`, for HTTP error bodies and gRPC status details.
#[derive(Clone, PartialEq, Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<ProtoAny>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, Message)]
pub struct ProtoAny {
    #[prost(string, tag = "1")]
    pub type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, Message)]
struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    retry_delay: Option<ProtoDuration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, Message)]
struct ProtoDuration {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}

/// A `google.rpc.Status` carrying a `RetryInfo`, the form OTLP clients honour for throttling.
pub fn status_with_retry_info(code: Code, message: &str, delay: std::time::Duration) -> RpcStatus {
    let retry = RetryInfo {
        retry_delay: Some(ProtoDuration {
            seconds: delay.as_secs() as i64,
            nanos: delay.subsec_nanos() as i32,
        }),
    };
    RpcStatus {
        code: code as i32,
        message: message.to_string(),
        details: vec![ProtoAny {
            type_url: "type.googleapis.com/google.rpc.RetryInfo".into(),
            value: retry.encode_to_vec(),
        }],
    }
}

fn to_status(err: &IngestError) -> Status {
    match err {
        IngestError::Overloaded(delay, _) => {
            let msg = err.to_string();
            let details = status_with_retry_info(Code::Unavailable, &msg, *delay).encode_to_vec();
            Status::with_details(Code::Unavailable, msg, Bytes::from(details))
        }
        other => Status::new(other.grpc_code(), other.to_string()),
    }
}

/// A codec that hands over the message bytes as they are (for clients: the load generator, tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// The tower service tonic's server routes `TraceService` calls to.
///
/// HOT PATH: the unary call is handled here rather than by `tonic::server::Grpc`. The request
/// body's DATA frames stay the `Bytes` h2 produced, and when the message arrives in one frame
/// (clients that honour our large SETTINGS_MAX_FRAME_SIZE send it so) it is decoded where it
/// lies, without a copy into a message buffer. Status codes follow the OTLP retry table rather
/// than tonic's defaults: an oversized message is RESOURCE_EXHAUSTED, never OUT_OF_RANGE (which
/// OTLP clients retry forever), and a corrupt one is INVALID_ARGUMENT, never INTERNAL.
pub struct TraceServiceServer<R: Recorder> {
    pipeline: Arc<Pipeline<R>>,
}

impl<R: Recorder> Clone for TraceServiceServer<R> {
    fn clone(&self) -> Self {
        TraceServiceServer {
            pipeline: self.pipeline.clone(),
        }
    }
}

impl<R: Recorder> TraceServiceServer<R> {
    pub fn new(pipeline: Arc<Pipeline<R>>) -> Self {
        TraceServiceServer { pipeline }
    }
}

impl<R: Recorder> tonic::server::NamedService for TraceServiceServer<R> {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, Infallible>> + Send>>;

impl<R, B> tower::Service<http::Request<B>> for TraceServiceServer<R>
where
    R: Recorder,
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let pipeline = self.pipeline.clone();
        Box::pin(async move { Ok(export(pipeline, req).await) })
    }
}

/// Why a call ended before the pipeline saw a message.
enum Refusal {
    /// A bad export: counted as a request outcome and answered with the error's status.
    Counted(IngestError),
    /// Not an export at all (unknown method, not gRPC, the client went away): answered only.
    Uncounted(Status),
    /// Refused for overload while reading: to be counted as shed.
    Shed(ShedReason),
}

/// The gRPC message header: compressed flag and big-endian length.
const HEADER: usize = 5;

async fn export<R, B>(
    pipeline: Arc<Pipeline<R>>,
    req: http::Request<B>,
) -> http::Response<tonic::body::Body>
where
    R: Recorder,
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    let started = std::time::Instant::now();
    let mut budget = pipeline.reservation();
    let limit = pipeline.limits.max_request_bytes;
    let early = || pipeline.refuse_early();
    let result = match read_message(EXPORT_PATH, limit, req, early, &mut budget).await {
        Err(Refusal::Uncounted(status)) => return status.into_http(),
        Err(Refusal::Counted(e)) => Err(e),
        Err(Refusal::Shed(reason)) => Err(pipeline.shed(reason)),
        Ok(message) => match pipeline.admit() {
            Ok(_permit) => pipeline.process(&message, false),
            Err(e) => Err(e),
        },
    };
    pipeline.finish(Transport::Grpc, started, &result);
    match result {
        Ok(tally) => unary_response(Bytes::from(
            ExportTraceServiceResponse::from_tally(&tally).encode_to_vec(),
        )),
        Err(e) => to_status(&e).into_http(),
    }
}

/// Reads the one message of a unary call: checks method, content type and encoding, keeps the
/// DATA frames as they come, stops reading as soon as the message is known to be too large, and
/// inflates gzip with a hard cap on the output.
/// Checks the call, asks `early` whether to refuse it before its message is read (overload:
/// a refused message is never buffered, and the client gets its status at once), then reads
/// the message.
async fn read_message<B>(
    path: &str,
    limit: usize,
    req: http::Request<B>,
    early: impl FnOnce() -> Result<(), IngestError>,
    budget: &mut Reservation,
) -> Result<Bytes, Refusal>
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    use http_body_util::BodyExt;
    if req.uri().path() != path {
        return Err(Refusal::Uncounted(Status::unimplemented(format!(
            "unknown method {}",
            req.uri().path()
        ))));
    }
    let headers = req.headers();
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if !content_type.starts_with(b"application/grpc") {
        return Err(Refusal::Uncounted(Status::unimplemented(
            "content-type must be application/grpc",
        )));
    }
    let gzip = match headers.get("grpc-encoding").map(|v| v.as_bytes()) {
        None | Some(b"identity") => false,
        Some(b"gzip") => true,
        Some(other) => {
            let other = String::from_utf8_lossy(other);
            return Err(Refusal::Counted(IngestError::Unsupported(format!(
                "grpc-encoding {other:?}: send gzip or no encoding"
            ))));
        }
    };
    early().map_err(Refusal::Counted)?;
    let mut body = std::pin::pin!(req.into_body());
    // Usually one chunk; more when the client sends 16 KiB frames.
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut have = 0usize;
    let mut want: Option<(bool, usize)> = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            let e: Box<dyn std::error::Error + Send + Sync> = e.into();
            Refusal::Uncounted(Status::cancelled(format!("request body: {e}")))
        })?;
        let Ok(mut data) = frame.into_data() else {
            continue;
        };
        let data = data.copy_to_bytes(data.remaining());
        have += data.len();
        chunks.push(data);
        if want.is_none() && have >= HEADER {
            let head = gather(&chunks, HEADER);
            let compressed = match head[0] {
                0 => false,
                1 if gzip => true,
                1 => {
                    return Err(Refusal::Counted(IngestError::Malformed(
                        "undecodable request: compressed-flag set but no grpc-encoding".into(),
                    )));
                }
                f => {
                    return Err(Refusal::Counted(IngestError::Malformed(format!(
                        "undecodable request: invalid compressed-flag {f}"
                    ))));
                }
            };
            let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
            if len > limit {
                return Err(Refusal::Counted(IngestError::TooLarge {
                    limit,
                    inflated: false,
                }));
            }
            // The whole message is reserved as soon as its length is known, before it is
            // buffered; one the budget cannot hold is refused unread.
            if !budget.grow(HEADER + len) {
                return Err(Refusal::Shed(ShedReason::InFlightBytes));
            }
            want = Some((compressed, len));
        }
        if want.is_some_and(|(_, len)| have > HEADER + len) {
            return Err(Refusal::Counted(IngestError::Malformed(
                "undecodable request: a unary call carried more than one message".into(),
            )));
        }
    }
    let Some((compressed, len)) = want else {
        if have == 0 {
            return Err(Refusal::Counted(IngestError::Malformed(
                "undecodable request: no message".into(),
            )));
        }
        return Err(Refusal::Counted(IngestError::Malformed(
            "undecodable request: truncated message header".into(),
        )));
    };
    if have < HEADER + len {
        return Err(Refusal::Counted(IngestError::Malformed(format!(
            "undecodable request: message of {len} bytes ends after {}",
            have - HEADER
        ))));
    }
    let message = if chunks.len() == 1 {
        chunks.pop().expect("one chunk").slice(HEADER..)
    } else {
        // Joining the frames copies the message once more, while the frames are still held.
        if !budget.grow(have) {
            return Err(Refusal::Shed(ShedReason::InFlightBytes));
        }
        let all = gather(&chunks, have);
        all.slice(HEADER..)
    };
    if !compressed {
        return Ok(message);
    }
    let inflated = crate::pipeline::gunzip(&message, limit, "gzip message")
        .map(Bytes::from)
        .map_err(Refusal::Counted)?;
    if !budget.grow(inflated.len()) {
        return Err(Refusal::Shed(ShedReason::InFlightBytes));
    }
    Ok(inflated)
}

/// The tower service tonic's server routes `MetricsService` calls to: the metrics twin of
/// [`TraceServiceServer`], sharing its framing, limits, in-flight slots and status mapping.
/// Without a metric sink in the pipeline every call is answered `UNIMPLEMENTED`.
pub struct MetricsServiceServer<R: Recorder> {
    pipeline: Arc<Pipeline<R>>,
}

impl<R: Recorder> Clone for MetricsServiceServer<R> {
    fn clone(&self) -> Self {
        MetricsServiceServer {
            pipeline: self.pipeline.clone(),
        }
    }
}

impl<R: Recorder> MetricsServiceServer<R> {
    pub fn new(pipeline: Arc<Pipeline<R>>) -> Self {
        MetricsServiceServer { pipeline }
    }
}

impl<R: Recorder> tonic::server::NamedService for MetricsServiceServer<R> {
    const NAME: &'static str = "opentelemetry.proto.collector.metrics.v1.MetricsService";
}

impl<R, B> tower::Service<http::Request<B>> for MetricsServiceServer<R>
where
    R: Recorder,
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let pipeline = self.pipeline.clone();
        Box::pin(async move { Ok(export_metrics(pipeline, req).await) })
    }
}

async fn export_metrics<R, B>(
    pipeline: Arc<Pipeline<R>>,
    req: http::Request<B>,
) -> http::Response<tonic::body::Body>
where
    R: Recorder,
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    if !pipeline.metrics_enabled() {
        return Status::unimplemented(METRICS_NOT_CONFIGURED).into_http();
    }
    let started = std::time::Instant::now();
    let limit = pipeline.limits.max_request_bytes;
    let mut budget = pipeline.reservation();
    let early = || pipeline.refuse_early();
    let result = match read_message(METRICS_EXPORT_PATH, limit, req, early, &mut budget).await {
        Err(Refusal::Uncounted(status)) => return status.into_http(),
        Err(Refusal::Counted(e)) => Err(e),
        Err(Refusal::Shed(reason)) => Err(pipeline.shed(reason)),
        Ok(message) => match pipeline.admit() {
            Ok(_permit) => pipeline.process_metrics(&message, false),
            Err(e) => Err(e),
        },
    };
    pipeline.finish_metrics(Transport::Grpc, started, &result);
    match result {
        Ok(tally) => unary_response(Bytes::from(
            ExportMetricsServiceResponse::from_tally(&tally).encode_to_vec(),
        )),
        Err(e) => to_status(&e).into_http(),
    }
}

/// The first `n` bytes of the chunks as one `Bytes` (no copy when the first chunk has them).
fn gather(chunks: &[Bytes], n: usize) -> Bytes {
    if chunks[0].len() >= n {
        return chunks[0].slice(..n);
    }
    let mut out = bytes::BytesMut::with_capacity(n);
    for c in chunks {
        let take = (n - out.len()).min(c.len());
        out.extend_from_slice(&c[..take]);
        if out.len() == n {
            break;
        }
    }
    out.freeze()
}

/// A successful unary response: the message in one DATA frame, then `grpc-status: 0`.
fn unary_response(message: Bytes) -> http::Response<tonic::body::Body> {
    let mut framed = bytes::BytesMut::with_capacity(HEADER + message.len());
    framed.put_u8(0);
    framed.put_u32(message.len() as u32);
    framed.extend_from_slice(&message);
    let mut trailers = http::HeaderMap::with_capacity(1);
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    let mut resp = http::Response::new(tonic::body::Body::new(UnaryBody {
        data: Some(framed.freeze()),
        trailers: Some(trailers),
    }));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    resp
}

/// One DATA frame and the trailers.
struct UnaryBody {
    data: Option<Bytes>,
    trailers: Option<http::HeaderMap>,
}

impl http_body::Body for UnaryBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        if let Some(d) = self.data.take() {
            return Poll::Ready(Some(Ok(http_body::Frame::data(d))));
        }
        Poll::Ready(
            self.trailers
                .take()
                .map(|t| Ok(http_body::Frame::trailers(t))),
        )
    }
    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }
}
