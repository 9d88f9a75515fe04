//! The gRPC receiver's own framing (it does not use `tonic::server::Grpc`): a message split
//! over many DATA frames (as grpc-go and grpcio send it, 16 KiB each, the header itself split)
//! decodes exactly as one frame does, and every malformed call gets the status the OTLP retry
//! table asks for, records nothing, and is counted.

use crate::overload::pipeline;
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span::SpanKind};
use prost::Message;
use slogate_ingest::grpc::{EXPORT_PATH, TraceServiceServer};
use std::io::Write;
use std::sync::atomic::Ordering;
use tower::ServiceExt;

fn request(spans: usize) -> Vec<u8> {
    let kv = |k: &str, v: &str| KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    };
    let spans = (0..spans)
        .map(|i| Span {
            trace_id: vec![1; 16],
            span_id: (i as u64 + 1).to_be_bytes().to_vec(),
            name: "GET /cart/{id}".into(),
            kind: SpanKind::Server as i32,
            start_time_unix_nano: 1_800_000_000_000_000_000,
            end_time_unix_nano: 1_800_000_000_000_000_000 + 1_000_000 * (i as u64 % 300 + 1),
            attributes: vec![
                kv("http.request.method", "GET"),
                kv("http.route", "/cart/{id}"),
                kv("url.full", &"x".repeat(300)),
            ],
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", "checkout")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

fn framed(flag: u8, message: &[u8]) -> Vec<u8> {
    let mut out = vec![flag];
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A request body of the given DATA frames.
struct Chunks(std::collections::VecDeque<Bytes>);

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(self.0.pop_front().map(|b| Ok(http_body::Frame::data(b))))
    }
}

/// Sends `body` cut into frames of `frame` bytes; returns (grpc-status, message, response bytes).
async fn call(
    p: &std::sync::Arc<slogate_ingest::Pipeline<crate::overload::Counting>>,
    body: &[u8],
    frame: usize,
    encoding: Option<&str>,
) -> (i32, String, Bytes) {
    let chunks = body
        .chunks(frame.max(1))
        .map(Bytes::copy_from_slice)
        .collect();
    let mut req = http::Request::post(EXPORT_PATH)
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(e) = encoding {
        req = req.header("grpc-encoding", e);
    }
    let resp = TraceServiceServer::new(p.clone())
        .oneshot(req.body(Chunks(chunks)).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    if let Some(status) = tonic::Status::from_header_map(resp.headers()) {
        // Trailers-only: an error.
        return (
            status.code() as i32,
            status.message().to_string(),
            Bytes::new(),
        );
    }
    use http_body_util::BodyExt;
    let collected = resp.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().expect("trailers");
    let code: i32 = trailers["grpc-status"].to_str().unwrap().parse().unwrap();
    let data = collected.to_bytes();
    assert_eq!(data[0], 0, "uncompressed response");
    let len = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
    assert_eq!(data.len(), 5 + len);
    (code, String::new(), data.slice(5..))
}

#[tokio::test]
async fn a_message_split_over_many_frames_decodes_like_one_frame() {
    let req = request(600);
    assert!(req.len() > 200_000, "{}", req.len());
    let body = framed(0, &req);
    // One frame, 16 KiB frames, and frames so small the 5-byte header is split.
    for frame in [body.len(), 16 * 1024, 3] {
        let (p, rec) = pipeline();
        let (code, msg, resp) = call(&p, &body, frame, None).await;
        assert_eq!(code, 0, "frame {frame}: {msg}");
        let resp = ExportTraceServiceResponse::decode(resp).unwrap();
        assert_eq!(resp.partial_success, None, "frame {frame}");
        assert_eq!(rec.0.load(Ordering::Relaxed), 600, "frame {frame}");
    }
    // gzip, over 16 KiB frames.
    let (p, rec) = pipeline();
    let (code, msg, _) = call(&p, &framed(1, &gzip(&req)), 16 * 1024, Some("gzip")).await;
    assert_eq!(code, 0, "{msg}");
    assert_eq!(rec.0.load(Ordering::Relaxed), 600);
}

#[tokio::test]
async fn malformed_calls_get_the_right_status_and_record_nothing() {
    let good = framed(0, &request(3));
    let limit = 1 << 20;
    let mut two = good.clone();
    two.extend_from_slice(&good);
    let mut huge = framed(0, &[]);
    huge[1..5].copy_from_slice(&((limit as u32) + 1).to_be_bytes());
    let bomb = framed(1, &gzip(&vec![0u8; 4 * limit]));
    // (body, grpc-encoding, code, message fragment)
    let cases: Vec<(Vec<u8>, Option<&str>, tonic::Code, &str)> = vec![
        (vec![], None, tonic::Code::InvalidArgument, "no message"),
        (
            good[..3].to_vec(),
            None,
            tonic::Code::InvalidArgument,
            "truncated message header",
        ),
        (
            good[..good.len() - 1].to_vec(),
            None,
            tonic::Code::InvalidArgument,
            "ends after",
        ),
        (
            two,
            None,
            tonic::Code::InvalidArgument,
            "more than one message",
        ),
        (
            framed(1, &request(3)),
            None,
            tonic::Code::InvalidArgument,
            "no grpc-encoding",
        ),
        (
            framed(7, &request(3)),
            None,
            tonic::Code::InvalidArgument,
            "invalid compressed-flag 7",
        ),
        (
            framed(1, b"not gzip at all"),
            Some("gzip"),
            tonic::Code::InvalidArgument,
            "corrupt gzip",
        ),
        (
            good.clone(),
            Some("zstd"),
            tonic::Code::InvalidArgument,
            "grpc-encoding \"zstd\"",
        ),
        (
            huge,
            None,
            tonic::Code::ResourceExhausted,
            "exceeds the 1048576-byte limit",
        ),
        (
            bomb,
            Some("gzip"),
            tonic::Code::ResourceExhausted,
            "after decompression",
        ),
        (
            framed(0, b"\x0a\xff\xff\xff\x0fnot protobuf"),
            None,
            tonic::Code::InvalidArgument,
            "invalid ExportTraceServiceRequest",
        ),
    ];
    let (p, rec) = pipeline();
    let n = cases.len();
    for (body, enc, code, fragment) in cases {
        for frame in [16 * 1024, 2] {
            let (got, msg, _) = call(&p, &body, frame, enc).await;
            assert_eq!(got, code as i32, "{fragment}, frames of {frame}: {msg}");
            assert!(
                msg.contains(fragment),
                "{fragment}, frames of {frame}: {msg}"
            );
        }
    }
    assert_eq!(rec.0.load(Ordering::Relaxed), 0);
    use slogate_ingest::{RequestOutcome as O, Transport::Grpc};
    let count = |o| p.stats.requests(Grpc, o);
    assert_eq!(count(O::TooLarge), 2 * 2);
    assert_eq!(count(O::Unsupported), 2);
    assert_eq!(count(O::Malformed), 2 * (n as u64 - 3));
    assert_eq!(count(O::Ok), 0);
    // A good call still goes through.
    let (code, msg, _) = call(&p, &good, 16 * 1024, None).await;
    assert_eq!(code, 0, "{msg}");
    assert_eq!(rec.0.load(Ordering::Relaxed), 3);
}

#[tokio::test]
async fn other_methods_and_content_types_are_not_exports() {
    let (p, _rec) = pipeline();
    let req = http::Request::post("/opentelemetry.proto.collector.trace.v1.TraceService/Nope")
        .header("content-type", "application/grpc")
        .body(Chunks(Default::default()))
        .unwrap();
    let resp = TraceServiceServer::new(p.clone())
        .oneshot(req)
        .await
        .unwrap();
    assert_eq!(
        tonic::Status::from_header_map(resp.headers())
            .unwrap()
            .code(),
        tonic::Code::Unimplemented
    );
}
