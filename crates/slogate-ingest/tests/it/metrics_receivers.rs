//! The metrics receivers over real connections: a tonic server serving the trace and metrics
//! services side by side, called by tonic's client (plain and gzip), and the OTLP/HTTP router
//! served by axum, called by reqwest (protobuf, JSON, gzip). Checks the `partial_success`
//! shape, the status of malformed, unsupported and unconfigured calls, and the counters.

use crate::metrics_support::{
    Collect, T0, gauge, hist_point, histogram, number, request, resource_metrics,
};
use crate::overload::Counting;
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use prost::Message;
use slogate_ingest::extract::ExtractConfig;
use slogate_ingest::grpc::{
    METRICS_EXPORT_PATH, MetricsServiceServer, RawCodec, RpcStatus, TraceServiceServer,
};
use slogate_ingest::{
    IngestLimits, IngestStats, Pipeline, PointOutcome, RequestOutcome, Transport,
};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

struct Server {
    grpc: SocketAddr,
    http: SocketAddr,
    pipeline: Arc<Pipeline<Counting>>,
    sink: Arc<Collect>,
}

async fn start(metrics: bool) -> Server {
    let sink = Arc::new(Collect::default());
    let mut pipeline = Pipeline::new(
        Arc::new(Counting::default()),
        ExtractConfig::default(),
        IngestLimits {
            max_request_bytes: 1 << 20,
            max_inflight_requests: 4,
            retry_after: Duration::from_secs(2),
            ..IngestLimits::default()
        },
        Arc::new(IngestStats::default()),
    );
    if metrics {
        pipeline = pipeline.with_metrics(sink.clone());
    }
    let pipeline = Arc::new(pipeline);
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc_addr = grpc.local_addr().unwrap();
    let routes = tonic::service::Routes::new(TraceServiceServer::new(pipeline.clone()))
        .add_service(MetricsServiceServer::new(pipeline.clone()));
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_routes(routes)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(grpc)),
    );
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_addr = http.local_addr().unwrap();
    let router = slogate_ingest::http::router(pipeline.clone());
    tokio::spawn(async move { axum::serve(http, router).await });
    Server {
        grpc: grpc_addr,
        http: http_addr,
        pipeline,
        sink,
    }
}

/// One valid gauge point and one NaN point.
fn mixed_request() -> ExportMetricsServiceRequest {
    request(vec![resource_metrics(
        &[("service.name", "svc"), ("service.instance.id", "i-1")],
        vec![
            gauge("ok", vec![number(1.0)]),
            gauge("bad", vec![number(f64::NAN)]),
            histogram("h", vec![hist_point(vec![1.0, 2.0], vec![1, 2, 3])]),
        ],
    )])
}

async fn grpc_call(
    addr: SocketAddr,
    body: Vec<u8>,
    gzip: bool,
) -> Result<tonic::Response<Bytes>, tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = tonic::client::Grpc::new(channel);
    if gzip {
        client = client.send_compressed(tonic::codec::CompressionEncoding::Gzip);
    }
    client.ready().await.unwrap();
    client
        .unary(
            tonic::Request::new(Bytes::from(body)),
            http::uri::PathAndQuery::from_static(METRICS_EXPORT_PATH),
            RawCodec,
        )
        .await
}

#[tokio::test]
async fn grpc_answers_partial_success_and_records_the_valid_points() {
    let s = start(true).await;
    for gzip in [false, true] {
        let resp = grpc_call(s.grpc, mixed_request().encode_to_vec(), gzip)
            .await
            .unwrap();
        let resp = ExportMetricsServiceResponse::decode(resp.into_inner()).unwrap();
        let partial = resp.partial_success.expect("one point was rejected");
        assert_eq!(partial.rejected_data_points, 1);
        assert!(
            partial
                .error_message
                .starts_with("rejected 1 invalid data point(s): 1 non_finite_value; first at resource_metrics[0].scope_metrics[0].metrics[1].data_points[0]"),
            "{}",
            partial.error_message
        );
        let points = s.sink.take();
        assert_eq!(points.len(), 2, "gzip {gzip}");
        assert_eq!(
            (points[0].metric.as_str(), points[0].instance.as_str()),
            ("ok", "i-1")
        );
    }
    // A fully valid request: partial_success left unset.
    let ok = request(vec![resource_metrics(
        &[("service.name", "svc")],
        vec![gauge("ok", vec![number(2.0)])],
    )]);
    let resp = grpc_call(s.grpc, ok.encode_to_vec(), false).await.unwrap();
    assert_eq!(
        ExportMetricsServiceResponse::decode(resp.into_inner()).unwrap(),
        ExportMetricsServiceResponse::default()
    );
    // Malformed: INVALID_ARGUMENT, nothing recorded.
    let status = grpc_call(s.grpc, b"\x0a\x05abc".to_vec(), false)
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status
            .message()
            .contains("invalid ExportMetricsServiceRequest")
    );
    assert_eq!(s.sink.take().len(), 1);

    let stats = &s.pipeline.stats;
    assert_eq!(
        stats.metric_points(Transport::Grpc, PointOutcome::Accepted),
        5
    );
    assert_eq!(
        stats.metric_points(Transport::Grpc, PointOutcome::Rejected),
        2
    );
    assert_eq!(
        stats.metric_requests(Transport::Grpc, RequestOutcome::Partial),
        2
    );
    assert_eq!(
        stats.metric_requests(Transport::Grpc, RequestOutcome::Malformed),
        1
    );
    let mut text = String::new();
    stats.render(&mut text);
    for line in [
        "slogate_ingest_points_total{signal=\"metrics\",transport=\"grpc\",outcome=\"accepted\"} 5",
        "slogate_ingest_points_rejected_total{signal=\"metrics\",reason=\"non_finite_value\"} 2",
        "slogate_ingest_requests_total{signal=\"metrics\",transport=\"grpc\",outcome=\"malformed\"} 1",
        "slogate_ingest_request_duration_seconds_count{signal=\"metrics\",transport=\"grpc\"} 4",
        // The trace families are untouched.
        "slogate_receiver_requests_total{transport=\"grpc\",outcome=\"ok\"} 0",
    ] {
        assert!(text.contains(line), "{line} not in\n{text}");
    }
}

#[tokio::test]
async fn grpc_without_a_metric_sink_is_unimplemented() {
    let s = start(false).await;
    let status = grpc_call(s.grpc, mixed_request().encode_to_vec(), false)
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unimplemented);
    assert!(
        status.message().contains("metrics ingest is not enabled"),
        "{status:?}"
    );
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

async fn post(
    addr: SocketAddr,
    content_type: &str,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> (u16, String, Vec<u8>) {
    let mut req = reqwest::Client::new()
        .post(format!("http://{addr}/v1/metrics"))
        .header("content-type", content_type)
        .body(body);
    if let Some(e) = encoding {
        req = req.header("content-encoding", e);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ct, resp.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn http_serves_protobuf_json_and_gzip() {
    let s = start(true).await;
    let proto = mixed_request().encode_to_vec();
    // Protobuf, plain and gzip.
    for (body, encoding) in [(proto.clone(), None), (gzip(&proto), Some("gzip"))] {
        let (status, ct, body) = post(s.http, "application/x-protobuf", encoding, body).await;
        assert_eq!((status, ct.as_str()), (200, "application/x-protobuf"));
        let resp = ExportMetricsServiceResponse::decode(&body[..]).unwrap();
        assert_eq!(resp.partial_success.unwrap().rejected_data_points, 1);
        assert_eq!(s.sink.take().len(), 2);
    }
    // JSON: the NaN as the proto3 string.
    let mut json = serde_json::to_value(mixed_request()).unwrap();
    json["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][1]["gauge"]["dataPoints"][0]["asDouble"] =
        "NaN".into();
    let json = serde_json::to_vec(&json).unwrap();
    for (body, encoding) in [(json.clone(), None), (gzip(&json), Some("gzip"))] {
        let (status, ct, body) = post(s.http, "application/json", encoding, body).await;
        assert_eq!((status, ct.as_str()), (200, "application/json"));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["partialSuccess"]["rejectedDataPoints"], "1", "{v}");
        assert!(
            v["partialSuccess"]["errorMessage"]
                .as_str()
                .unwrap()
                .contains("non_finite_value"),
            "{v}"
        );
        let points = s.sink.take();
        assert_eq!(points.len(), 2);
        assert_eq!(points[0].time, T0);
    }
    // Fully valid JSON: an empty object.
    let (status, _, body) = post(s.http, "application/json", None, b"{}".to_vec()).await;
    assert_eq!((status, body.as_slice()), (200, b"{}".as_slice()));

    // 400 on malformed protobuf and JSON, with a google.rpc.Status body; nothing recorded.
    let (status, _, body) = post(
        s.http,
        "application/x-protobuf",
        None,
        b"\x0a\x05abc".to_vec(),
    )
    .await;
    assert_eq!(status, 400);
    let st = RpcStatus::decode(&body[..]).unwrap();
    assert_eq!(st.code, tonic::Code::InvalidArgument as i32);
    let (status, _, body) = post(
        s.http,
        "application/json",
        None,
        b"{\"resourceMetrics\":[".to_vec(),
    )
    .await;
    assert_eq!(status, 400);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(
        v["message"].as_str().unwrap().contains("invalid OTLP/JSON"),
        "{v}"
    );
    let bad_double = br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"g","gauge":{"dataPoints":[{"timeUnixNano":"1","asDouble":"lots"}]}}]}]}]}"#;
    let (status, _, _) = post(s.http, "application/json", None, bad_double.to_vec()).await;
    assert_eq!(status, 400);
    // Corrupt gzip: 400. Unknown encoding and content type: 415.
    let (status, _, _) = post(
        s.http,
        "application/x-protobuf",
        Some("gzip"),
        b"not gzip".to_vec(),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _, _) = post(s.http, "application/x-protobuf", Some("br"), proto.clone()).await;
    assert_eq!(status, 415);
    let (status, _, _) = post(s.http, "text/plain", None, proto.clone()).await;
    assert_eq!(status, 415);
    // Too large, before and after decompression: 413.
    let (status, _, _) = post(s.http, "application/x-protobuf", None, vec![0; 2 << 20]).await;
    assert_eq!(status, 413);
    let (status, _, _) = post(
        s.http,
        "application/x-protobuf",
        Some("gzip"),
        gzip(&vec![0; 2 << 20]),
    )
    .await;
    assert_eq!(status, 413);
    assert!(s.sink.take().is_empty());

    // Overload: 503 with Retry-After, shared with traces.
    let held: Vec<_> = (0..4).map(|_| s.pipeline.admit().unwrap()).collect();
    let resp = reqwest::Client::new()
        .post(format!("http://{}/v1/metrics", s.http))
        .header("content-type", "application/x-protobuf")
        .body(proto)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(resp.headers()["retry-after"], "2");
    drop(held);
    let stats = &s.pipeline.stats;
    assert_eq!(
        stats.metric_points(Transport::HttpJson, PointOutcome::Accepted),
        4
    );
    assert_eq!(
        stats.metric_points(Transport::HttpProtobuf, PointOutcome::Rejected),
        2
    );
    assert_eq!(
        stats.metric_requests(Transport::HttpProtobuf, RequestOutcome::Overloaded),
        1
    );
}

#[tokio::test]
async fn http_without_a_metric_sink_is_404() {
    let s = start(false).await;
    let (status, _, body) = post(
        s.http,
        "application/x-protobuf",
        None,
        mixed_request().encode_to_vec(),
    )
    .await;
    assert_eq!(status, 404);
    let st = RpcStatus::decode(&body[..]).unwrap();
    assert_eq!(st.code, tonic::Code::Unimplemented as i32);
    assert!(st.message.contains("metrics ingest is not enabled"));
}
