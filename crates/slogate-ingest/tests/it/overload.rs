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
        ..IngestLimits::default()
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

/// What one export got on each transport.
#[derive(Debug)]
struct Exported {
    http: u16,
    retry_after: Option<String>,
    grpc: tonic::Code,
    retry_info: bool,
    grpc_message: String,
}

/// Sends `message` (an `ExportTraceServiceRequest`'s bytes) once over OTLP/HTTP and once over
/// gRPC.
async fn export_both(p: &Arc<Pipeline<Counting>>, message: &[u8]) -> Exported {
    let req = http::Request::post("/v1/traces")
        .header("content-type", "application/x-protobuf")
        .body(Body::from(message.to_vec()))
        .unwrap();
    let resp = slogate_ingest::http::router(p.clone())
        .oneshot(req)
        .await
        .unwrap();
    let http = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(message);
    let req = http::Request::post(slogate_ingest::grpc::EXPORT_PATH)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Body::from(frame))
        .unwrap();
    let resp = TraceServiceServer::new(p.clone())
        .oneshot(req)
        .await
        .unwrap();
    // A trailers-only answer is a refusal; a success has its status in the trailers.
    let status = tonic::Status::from_header_map(resp.headers());
    Exported {
        http,
        retry_after,
        grpc: status.as_ref().map_or(tonic::Code::Ok, |s| s.code()),
        retry_info: status.as_ref().is_some_and(|s| {
            RpcStatus::decode(s.details()).is_ok_and(|d| {
                d.details
                    .iter()
                    .any(|x| x.type_url.ends_with("google.rpc.RetryInfo"))
            })
        }),
        grpc_message: status.map(|s| s.message().to_string()).unwrap_or_default(),
    }
}

#[tokio::test]
async fn memory_pressure_and_the_drill_shed_with_the_retryable_signals() {
    use slogate_ingest::ShedReason;
    let (p, _rec) = pipeline();
    let ok = export_both(&p, &[]).await;
    assert_eq!((ok.http, ok.grpc), (200, tonic::Code::Ok), "{ok:?}");

    p.shedding().set_memory_pressure(true);
    let e = export_both(&p, &[]).await;
    assert_eq!((e.http, e.grpc), (503, tonic::Code::Unavailable), "{e:?}");
    assert_eq!(e.retry_after.as_deref(), Some("3"));
    assert!(e.retry_info);
    assert!(e.grpc_message.contains("memory limit"), "{e:?}");
    assert_eq!(p.stats.shed(ShedReason::Memory), 2);
    p.shedding().set_memory_pressure(false);
    let ok = export_both(&p, &[]).await;
    assert_eq!((ok.http, ok.grpc), (200, tonic::Code::Ok), "{ok:?}");

    p.shedding().set_drill_fraction(1.0);
    let e = export_both(&p, &[]).await;
    assert_eq!((e.http, e.grpc), (503, tonic::Code::Unavailable), "{e:?}");
    assert!(e.retry_after.is_some() && e.retry_info);
    assert!(e.grpc_message.contains("retry drill"), "{e:?}");
    assert_eq!(p.stats.shed(ShedReason::Drill), 2);
    assert_eq!(p.stats.shed(ShedReason::InFlight), 0);
    let mut out = String::new();
    p.stats.render(&mut out);
    assert!(
        out.contains("slogate_ingest_shed_total{reason=\"memory\"} 2\n")
            && out.contains("slogate_ingest_shed_total{reason=\"drill\"} 2\n"),
        "{out}"
    );
}

#[tokio::test]
async fn bodies_past_the_byte_budget_are_refused_retryably_and_the_budget_comes_back() {
    use slogate_ingest::ShedReason;
    let p = Arc::new(Pipeline::new(
        Arc::new(Counting::default()),
        ExtractConfig::default(),
        IngestLimits {
            max_request_bytes: 1 << 20,
            max_inflight_bytes: 64 << 10,
            retry_after: Duration::from_secs(2),
            ..IngestLimits::default()
        },
        Arc::new(IngestStats::default()),
    ));
    // Valid protobuf of ~100 KB: one resource_spans field holding an unknown field's bytes.
    let mut big = vec![0x0a];
    let inner_len = 100_000 + 4;
    prost::encoding::encode_varint(inner_len as u64, &mut big);
    big.push(0x7a); // field 15, length-delimited: unknown, skipped
    prost::encoding::encode_varint(100_000, &mut big);
    big.resize(big.len() + 100_000, b'x');

    let e = export_both(&p, &big).await;
    assert_eq!((e.http, e.grpc), (503, tonic::Code::Unavailable), "{e:?}");
    assert_eq!(e.retry_after.as_deref(), Some("2"));
    assert!(e.retry_info);
    assert_eq!(p.stats.shed(ShedReason::InFlightBytes), 2);
    // The refused bodies gave their share back: small requests go through, as many as wanted.
    for _ in 0..3 {
        let ok = export_both(&p, &[]).await;
        assert_eq!((ok.http, ok.grpc), (200, tonic::Code::Ok), "{ok:?}");
    }
    assert_eq!(p.stats.shed(ShedReason::InFlightBytes), 2);
}
