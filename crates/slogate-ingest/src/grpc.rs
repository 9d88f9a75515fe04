//! OTLP/gRPC receiver: `opentelemetry.proto.collector.trace.v1.TraceService/Export`.
//!
//! The service is written against tonic's server primitives with a pass-through codec, so the
//! request bytes reach [`wire`](crate::wire) untouched. Status codes are corrected after tonic
//! has built its response, because tonic picks codes the OTLP spec's retry table disagrees with.

use crate::extract::Tally;
use crate::pipeline::{IngestError, Pipeline, Transport};
use bytes::{Buf, BufMut, Bytes};
use prost::Message;
use slogate_core::Recorder;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Code, Status};

pub const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

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
        IngestError::Overloaded(delay) => {
            let msg = err.to_string();
            let details = status_with_retry_info(Code::Unavailable, &msg, *delay).encode_to_vec();
            Status::with_details(Code::Unavailable, msg, Bytes::from(details))
        }
        other => Status::new(other.grpc_code(), other.to_string()),
    }
}

/// A codec that hands over the message bytes as they are.
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

struct ExportSvc<R: Recorder>(Arc<Pipeline<R>>);

impl<R: Recorder> tonic::server::UnaryService<Bytes> for ExportSvc<R> {
    type Response = Bytes;
    type Future = Pin<Box<dyn Future<Output = Result<tonic::Response<Bytes>, Status>> + Send>>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let pipeline = self.0.clone();
        Box::pin(async move {
            let started = std::time::Instant::now();
            let result = match pipeline.admit() {
                Ok(_permit) => pipeline.process(request.get_ref(), false),
                Err(e) => Err(e),
            };
            pipeline.finish(Transport::Grpc, started, &result);
            match result {
                Ok(tally) => Ok(tonic::Response::new(Bytes::from(
                    ExportTraceServiceResponse::from_tally(&tally).encode_to_vec(),
                ))),
                Err(e) => Err(to_status(&e)),
            }
        })
    }
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
        Box::pin(async move {
            if req.uri().path() != EXPORT_PATH {
                return Ok(
                    Status::unimplemented(format!("unknown method {}", req.uri().path()))
                        .into_http(),
                );
            }
            let limit = pipeline.limits.max_request_bytes;
            let mut grpc = tonic::server::Grpc::new(RawCodec)
                .accept_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(limit)
                .max_encoding_message_size(usize::MAX);
            let started = std::time::Instant::now();
            let mut resp = grpc.unary(ExportSvc(pipeline.clone()), req).await;
            if remap_status(&mut resp, limit) {
                pipeline.stats.count_request(
                    Transport::Grpc,
                    if resp.headers().get("grpc-status").is_some_and(|v| v == "8") {
                        crate::stats::RequestOutcome::TooLarge
                    } else {
                        crate::stats::RequestOutcome::Malformed
                    },
                    started.elapsed(),
                );
            }
            Ok(resp)
        })
    }
}

/// Rewrites tonic's codes for failures that happen before our handler runs (message framing,
/// size, decompression). Returns true when it rewrote one, i.e. the request never reached the
/// handler and has not been counted yet.
fn remap_status(resp: &mut http::Response<tonic::body::Body>, limit: usize) -> bool {
    let Some(code) = resp
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
    else {
        return false;
    };
    let message = resp
        .headers()
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .map(|m| percent_decode(m))
        .unwrap_or_default();
    let replacement = match Code::from_i32(code) {
        // tonic: "decoded message length too large"; OTLP clients retry OUT_OF_RANGE forever.
        Code::OutOfRange => Some(Status::resource_exhausted(format!(
            "request body exceeds the {limit}-byte limit"
        ))),
        // tonic's decompression size limit: already RESOURCE_EXHAUSTED, but without our wording.
        Code::ResourceExhausted if message.contains("decompressing") => {
            Some(Status::resource_exhausted(format!(
                "request body exceeds the {limit}-byte limit after decompression"
            )))
        }
        // tonic: corrupt compressed data or bad framing; the request is malformed, not our fault.
        Code::Internal
            if message.contains("decompressing") || message.contains("protocol error") =>
        {
            Some(Status::invalid_argument(format!(
                "undecodable request: {message}"
            )))
        }
        _ => None,
    };
    match replacement {
        Some(status) => {
            let headers = resp.headers_mut();
            headers.remove("grpc-message");
            headers.remove("grpc-status-details-bin");
            let _ = status.add_header(headers);
            true
        }
        None => false,
    }
}

/// grpc-message is percent-encoded; only the common escapes matter for matching and logs.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
