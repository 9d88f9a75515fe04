//! Load shedding: with every in-flight slot taken, both receivers refuse with the signal OTLP
//! clients retry on, and record nothing.

use axum::body::Body;
use prost::Message;
use slogate_core::{Observation, ObservationWriter, Recorder};
use slogate_ingest::extract::ExtractConfig;
use slogate_ingest::grpc::{RpcStatus, TraceServiceServer};
use slogate_ingest::{IngestLimits, IngestStats, Pipeline};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tower::ServiceExt;

#[derive(Default)]
pub(crate) struct Counting(pub(crate) AtomicU64);

pub(crate) struct CountingWriter<'a>(&'a AtomicU64);

impl ObservationWriter for CountingWriter<'_> {
    fn record(&mut self, _obs: &Observation<'_>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

impl Recorder for Counting {
    type Writer<'a> = CountingWriter<'a>;
    fn writer(&self) -> CountingWriter<'_> {
        CountingWriter(&self.0)
    }
}

pub(crate) fn pipeline() -> (Arc<Pipeline<Counting>>, Arc<Counting>) {
    let rec = Arc::new(Counting::default());
    let limits = IngestLimits {
        max_request_bytes: 1 << 20,
        max_inflight_requests: 1,
        retry_after: Duration::from_secs(3),
    };
    (
        Arc::new(Pipeline::new(
            rec.clone(),
            ExtractConfig::default(),
            limits,
            Arc::new(IngestStats::default()),
        )),
        rec,
    )
}

#[tokio::test]
async fn http_overload_is_503_with_retry_after() {
    let (p, rec) = pipeline();
    let held = p.admit().unwrap();
    let req = http::Request::post("/v1/traces")
        .header("content-type", "application/x-protobuf")
        .body(Body::empty())
        .unwrap();
    let resp = slogate_ingest::http::router(p.clone())
        .oneshot(req)
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "3");
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let status = RpcStatus::decode(&body[..]).unwrap();
    assert_eq!(status.code, tonic::Code::Unavailable as i32);
    assert!(
        status
            .message
            .contains("too many export requests in flight"),
        "{}",
        status.message
    );

    // Once the slot frees up, the same request goes through.
    drop(held);
    let req = http::Request::post("/v1/traces")
        .header("content-type", "application/x-protobuf")
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        slogate_ingest::http::router(p)
            .oneshot(req)
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(rec.0.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn grpc_overload_is_unavailable_with_retry_info() {
    let (p, _rec) = pipeline();
    let _held = p.admit().unwrap();
    // A gRPC frame: uncompressed flag, zero length (an empty request).
    let frame = vec![0u8, 0, 0, 0, 0];
    let req = http::Request::post(slogate_ingest::grpc::EXPORT_PATH)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Body::from(frame))
        .unwrap();
    let resp = TraceServiceServer::new(p).oneshot(req).await.unwrap();
    let status = tonic::Status::from_header_map(resp.headers()).expect("trailers-only status");
    assert_eq!(status.code(), tonic::Code::Unavailable);
    let details = RpcStatus::decode(status.details()).unwrap();
    assert_eq!(
        details.details[0].type_url,
        "type.googleapis.com/google.rpc.RetryInfo"
    );
    // RetryInfo{retry_delay: Duration{seconds: 3}}
    assert_eq!(details.details[0].value, vec![0x0a, 0x02, 0x08, 0x03]);
}
