//! Real OTLP exporters (Rust opentelemetry-otlp over gRPC, HTTP/protobuf and HTTP/JSON; Python
//! opentelemetry-sdk over gRPC and HTTP/protobuf) against the real server: the served
//! percentiles are within 1% of the exact ones and the error rate is exact.

use crate::harness::{Server, SpanSpec, assert_quantiles, expected_errors, lognormal_spans};
use opentelemetry::KeyValue;
use opentelemetry::trace::{Span, SpanKind, Status, Tracer, TracerProvider};
use opentelemetry_otlp::{
    Protocol, SpanExporter, WithExportConfig, WithHttpConfig, WithTonicConfig,
};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::time::{Duration, UNIX_EPOCH};

fn send_rust(exporter: SpanExporter, service: &str, version: &str, spans: &[SpanSpec]) {
    let resource = Resource::builder_empty()
        .with_attributes([
            KeyValue::new("service.name", service.to_string()),
            KeyValue::new("service.version", version.to_string()),
            KeyValue::new("deployment.environment.name", "prod"),
        ])
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("slogate-it");
    for (i, s) in spans.iter().enumerate() {
        let mut span = tracer
            .span_builder(s.name.clone())
            .with_kind(SpanKind::Server)
            .with_start_time(UNIX_EPOCH + Duration::from_nanos(s.start_ns))
            .with_attributes(vec![
                KeyValue::new("http.request.method", s.method.clone()),
                KeyValue::new("http.route", s.route.clone()),
                KeyValue::new("http.response.status_code", s.status_code),
            ])
            .start(&tracer);
        if s.error {
            span.set_status(Status::error("failed"));
        }
        span.end_with_timestamp(UNIX_EPOCH + Duration::from_nanos(s.end_ns));
        // The batch processor's queue holds 2048 spans; flush before it could drop any.
        if i % 1000 == 999 {
            provider.force_flush().expect("flush");
        }
    }
    provider.force_flush().expect("flush");
    provider.shutdown().expect("shutdown");
}

fn check(server: &Server, service: &str, version: &str, spans: &[SpanSpec]) {
    let sli = server.sli_when(
        &format!("service={service}&version={version}&window=10m"),
        spans.len() as u64,
    );
    assert_eq!(sli["requests"].as_u64(), Some(spans.len() as u64), "{sli}");
    assert_eq!(
        sli["errors"].as_u64(),
        Some(expected_errors(spans)),
        "{sli}"
    );
    assert_eq!(
        sli["error_rate"].as_f64(),
        Some(expected_errors(spans) as f64 / spans.len() as f64)
    );
    assert_quantiles(&sli, spans);
}

#[test]
fn rust_exporter_grpc_http_and_json() {
    let server = Server::start("");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();

    let grpc_spans = lognormal_spans(1, 5_000, 40.0, 0.7, 25);
    let exporter = SpanExporter::builder()
        .with_tonic()
        .with_endpoint(format!("http://127.0.0.1:{}", server.grpc))
        .with_compression(opentelemetry_otlp::Compression::Gzip)
        .build()
        .unwrap();
    send_rust(exporter, "checkout", "grpc-v1", &grpc_spans);
    check(&server, "checkout", "grpc-v1", &grpc_spans);

    let http_spans = lognormal_spans(2, 4_000, 120.0, 1.0, 40);
    let exporter = SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(format!("http://127.0.0.1:{}/v1/traces", server.http))
        .with_compression(opentelemetry_otlp::Compression::Gzip)
        .build()
        .unwrap();
    send_rust(exporter, "checkout", "http-v1", &http_spans);
    check(&server, "checkout", "http-v1", &http_spans);

    let json_spans = lognormal_spans(3, 2_000, 8.0, 0.5, 50);
    let exporter = SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpJson)
        .with_endpoint(format!("http://127.0.0.1:{}/v1/traces", server.http))
        .build()
        .unwrap();
    send_rust(exporter, "checkout", "json-v1", &json_spans);
    check(&server, "checkout", "json-v1", &json_spans);

    // The service as a whole is the sum of its cohorts.
    let all = server.get_json("/api/v1/sli?service=checkout&window=10m");
    assert_eq!(all["requests"].as_u64(), Some(11_000));
    // The rate is over the time the data spans (this test's few seconds, within two 10 s slots
    // and the test's run time), not over the 10-minute window: 11,000 / 600 s would be 18/s.
    let observed = all["observed_seconds"].as_u64().expect("observed_seconds");
    assert!((1..=120).contains(&observed), "{all}");
    let rate = all["rate_per_second"].as_f64().expect("rate");
    assert!(
        (rate - 11_000.0 / observed as f64).abs() < 1e-6 && rate > 90.0,
        "{all}"
    );
    assert_eq!(server.metric("slogate_spans_accepted_total"), 11_000.0);
}

/// The Python interpreter of the test venv (made by scripts/test).
pub fn python() -> String {
    if let Ok(p) = std::env::var("SLOGATE_PYTHON") {
        return p;
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let venv = format!("{home}/.cache/slogate-venv/bin/python");
    assert!(
        std::path::Path::new(&venv).exists(),
        "the Python OpenTelemetry SDK is needed: run scripts/test (it creates {venv}) or set SLOGATE_PYTHON"
    );
    venv
}

fn send_python(protocol: &str, endpoint: &str, service: &str, version: &str, spans: &[SpanSpec]) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("spans.json");
    let doc =
        serde_json::json!({"service": service, "version": version, "env": "prod", "spans": spans});
    std::fs::write(&input, doc.to_string()).unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/python/send_spans.py"
    );
    let out = std::process::Command::new(python())
        .args([
            script,
            "--protocol",
            protocol,
            "--endpoint",
            endpoint,
            "--input",
        ])
        .arg(&input)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python exporter failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn python_sdk_grpc_and_http() {
    let server = Server::start("");
    let grpc_spans = lognormal_spans(11, 3_000, 25.0, 0.8, 20);
    send_python(
        "grpc",
        &format!("http://127.0.0.1:{}", server.grpc),
        "search",
        "py-grpc",
        &grpc_spans,
    );
    check(&server, "search", "py-grpc", &grpc_spans);

    let http_spans = lognormal_spans(12, 3_000, 300.0, 0.6, 30);
    send_python(
        "http",
        &format!("http://127.0.0.1:{}/v1/traces", server.http),
        "search",
        "py-http",
        &http_spans,
    );
    check(&server, "search", "py-http", &http_spans);
}

/// Sampled traffic: spans whose trace was sampled at one in four (the `th:c` threshold in the
/// `ot` entry of `tracestate`, which the Rust SDK carries from the remote parent to the span it
/// exports) count four requests each, and the verdict's tests use the sampled count.
#[test]
fn sampled_spans_count_as_their_adjusted_count() {
    use opentelemetry::trace::{SpanContext, TraceContextExt, TraceFlags, TraceId, TraceState};
    let server = Server::start(
        "gates:\n  - name: sampled\n    service: sampled\n    min_requests: 100\n    baseline: {version: v1}\n    criteria:\n      - {name: p95, metric: latency_p95, compare: ratio, pass: 1.5, fail: 2.0, confidence: 0.95}\n",
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    let resource = Resource::builder_empty()
        .with_attributes([
            KeyValue::new("service.name", "sampled"),
            KeyValue::new("service.version", "v2"),
        ])
        .build();
    let exporter = SpanExporter::builder()
        .with_tonic()
        .with_endpoint(format!("http://127.0.0.1:{}", server.grpc))
        .build()
        .unwrap();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("slogate-it");
    let spans = lognormal_spans(17, 300, 30.0, 0.5, 50);
    for (i, s) in spans.iter().enumerate() {
        let state = TraceState::from_key_value([("ot", "th:c")]).unwrap();
        let parent = SpanContext::new(
            TraceId::from_bytes([(i % 250) as u8 + 1; 16]),
            opentelemetry::trace::SpanId::from_bytes([9; 8]),
            TraceFlags::SAMPLED,
            true,
            state,
        );
        let cx = opentelemetry::Context::new().with_remote_span_context(parent);
        let mut span = tracer
            .span_builder(s.name.clone())
            .with_kind(SpanKind::Server)
            .with_start_time(UNIX_EPOCH + Duration::from_nanos(s.start_ns))
            .with_attributes(vec![
                KeyValue::new("http.request.method", s.method.clone()),
                KeyValue::new("http.route", s.route.clone()),
                KeyValue::new("http.response.status_code", s.status_code),
            ])
            .start_with_context(&tracer, &cx);
        if s.error {
            span.set_status(Status::error("failed"));
        }
        span.end_with_timestamp(UNIX_EPOCH + Duration::from_nanos(s.end_ns));
    }
    provider.force_flush().expect("flush");
    provider.shutdown().expect("shutdown");

    let sli = server.sli_when(
        "service=sampled&version=v2&window=10m",
        4 * spans.len() as u64,
    );
    assert_eq!(
        sli["requests"].as_u64(),
        Some(4 * spans.len() as u64),
        "{sli}"
    );
    assert_eq!(
        sli["errors"].as_u64(),
        Some(4 * expected_errors(&spans)),
        "{sli}"
    );
    assert_eq!(
        sli["sampled_requests"].as_u64(),
        Some(spans.len() as u64),
        "{sli}"
    );
    // The percentiles are the sample's, unchanged by the weights.
    assert_quantiles(&sli, &spans);
    // The verdict says the traffic is sampled and tests on the 300 sampled spans.
    let doc =
        server.get_json("/api/v1/gates/sampled/verdict?canary.version=v2&baseline.version=v2x");
    assert_eq!(doc["canary"]["requests"].as_u64(), Some(1200), "{doc}");
    assert_eq!(
        doc["canary"]["sampled_requests"].as_u64(),
        Some(300),
        "{doc}"
    );
}
