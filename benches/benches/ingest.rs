//! Criterion benchmarks for the ingest path: OTLP decode + extraction (protobuf fast path and
//! OTLP/JSON), recording a batch into the window registry, both together, and window queries.
//!
//! The request is a realistic export: 512 SERVER spans over 4 resources (checkout, auth, search,
//! recommendations) with the usual HTTP semantic-convention attributes, 561 bytes per encoded
//! span on average (452..=698; 290,880 bytes per request, 636,475 as OTLP/JSON), carrying 50
//! distinct series. Data is seeded, so runs are comparable.
//!
//! Measured on 2 vCPUs, "Intel(R) Xeon(R) Processor" (a shared cloud VM), full run on a quiet
//! machine; `--quick` agreed within 4 %, runs made while other builds were going came out up to
//! 20 % slower:
//! - `decode_extract/protobuf`: 151 µs per request, 295 ns per span
//! - `decode_extract/json`: 2.38 ms per request, 4.6 µs per span
//! - `record/batch`: 21.1 µs per request, 41 ns per span
//! - `end_to_end_batch/protobuf`: 174 µs per request, 340 ns per span
//! - `window_query/service_version/600s` (50 of 1,000 series, 30 closed slots each): 183 µs
//! - `window_query/service/600s` (100 series): 366 µs
//!
//! Issue 6 (compact open slots, coarse-slot windows), old and new binary back to back on a
//! loaded machine (load ≈ 5): `record/batch` 28.8 → 30.7 µs (≈ +4 ns per span);
//! `window_query/service_version/600s` 283 → 78 µs; `window_query/service/600s` 548 → 139 µs.

use std::collections::HashSet;
use std::hint::black_box;
use std::sync::{Arc, LazyLock};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};
use prost::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal};
use slogate_core::{Observation, ObservationWriter, Operation, Recorder, Selector};
use slogate_ingest::extract::{ExtractConfig, Tally};
use slogate_ingest::{json, wire};
use slogate_window::{ManualClock, Registry, WindowConfig};

const SPANS_PER_REQUEST: usize = 512;
/// A multiple of the coarse slot, so fine and coarse slots line up as in production.
const T0: u64 = 1_800_000_000;

/// One instrumented service: its resource identity and the routes it serves.
struct Service {
    name: &'static str,
    version: &'static str,
    language: &'static str,
    sdk_version: &'static str,
    scope: &'static str,
    scope_version: &'static str,
    routes: &'static [(&'static str, &'static str)],
}

/// 13 + 12 + 12 + 13 = 50 routes, hence 50 series per request.
const SERVICES: [Service; 4] = [
    Service {
        name: "checkout",
        version: "2.14.1",
        language: "go",
        sdk_version: "1.38.0",
        scope: "go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp",
        scope_version: "0.63.0",
        routes: &[
            ("GET", "/api/v1/cart"),
            ("GET", "/api/v1/cart/{cartId}"),
            ("POST", "/api/v1/cart/{cartId}/items"),
            ("DELETE", "/api/v1/cart/{cartId}/items/{itemId}"),
            ("POST", "/api/v1/checkout"),
            ("GET", "/api/v1/orders"),
            ("GET", "/api/v1/orders/{orderId}"),
            ("POST", "/api/v1/orders/{orderId}/cancel"),
            ("GET", "/api/v1/shipping/quote"),
            ("POST", "/api/v1/payments"),
            ("GET", "/api/v1/payments/{paymentId}"),
            ("POST", "/api/v1/coupons/validate"),
            ("GET", "/healthz"),
        ],
    },
    Service {
        name: "auth",
        version: "1.9.0",
        language: "java",
        sdk_version: "1.54.1",
        scope: "io.opentelemetry.tomcat-10.0",
        scope_version: "2.20.1-alpha",
        routes: &[
            ("POST", "/oauth2/token"),
            ("POST", "/oauth2/revoke"),
            ("GET", "/oauth2/authorize"),
            ("GET", "/.well-known/openid-configuration"),
            ("GET", "/.well-known/jwks.json"),
            ("POST", "/api/v1/login"),
            ("POST", "/api/v1/logout"),
            ("POST", "/api/v1/sessions/refresh"),
            ("GET", "/api/v1/users/{userId}"),
            ("PATCH", "/api/v1/users/{userId}"),
            ("POST", "/api/v1/mfa/verify"),
            ("GET", "/healthz"),
        ],
    },
    Service {
        name: "search",
        version: "3.2.7",
        language: "rust",
        sdk_version: "0.31.0",
        scope: "tracing-opentelemetry",
        scope_version: "0.32.0",
        routes: &[
            ("GET", "/api/v2/search"),
            ("GET", "/api/v2/search/suggest"),
            ("GET", "/api/v2/search/facets"),
            ("GET", "/api/v2/products/{productId}"),
            ("GET", "/api/v2/categories/{categoryId}/products"),
            ("POST", "/api/v2/search/batch"),
            ("GET", "/api/v2/brands/{brandId}"),
            ("GET", "/api/v2/search/trending"),
            ("POST", "/api/v2/index/documents"),
            ("DELETE", "/api/v2/index/documents/{docId}"),
            ("GET", "/api/v2/search/spellcheck"),
            ("GET", "/healthz"),
        ],
    },
    Service {
        name: "recommendations",
        version: "0.18.3",
        language: "python",
        sdk_version: "1.37.0",
        scope: "opentelemetry.instrumentation.fastapi",
        scope_version: "0.58b0",
        routes: &[
            ("GET", "/api/v1/recommendations/home"),
            ("GET", "/api/v1/recommendations/product/{productId}"),
            ("GET", "/api/v1/recommendations/cart/{cartId}"),
            ("GET", "/api/v1/recommendations/user/{userId}"),
            ("GET", "/api/v1/recommendations/similar/{productId}"),
            ("GET", "/api/v1/recommendations/trending"),
            ("GET", "/api/v1/recommendations/recently-viewed"),
            ("POST", "/api/v1/events/view"),
            ("POST", "/api/v1/events/click"),
            ("POST", "/api/v1/events/purchase"),
            ("GET", "/api/v1/models/{modelId}"),
            ("POST", "/api/v1/feedback"),
            ("GET", "/healthz"),
        ],
    },
];

/// Real-world user agents of very different lengths, so span sizes spread like production's.
const USER_AGENTS: [&str; 5] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/139.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.6 Mobile/15E148 Safari/604.1",
    "okhttp/4.12.0",
    "Go-http-client/2.0",
    "python-requests/2.32.4",
];

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn kv_str(key: &str, value: impl Into<String>) -> KeyValue {
    kv(key, any_value::Value::StringValue(value.into()))
}

fn kv_int(key: &str, value: i64) -> KeyValue {
    kv(key, any_value::Value::IntValue(value))
}

/// The route with each `{param}` replaced by a random id, as a client would have sent it.
fn concrete_path(route: &str, rng: &mut StdRng) -> String {
    let mut out = String::with_capacity(route.len() + 16);
    let mut rest = route;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').map_or(rest.len(), |i| open + i + 1);
        out.push_str(&rest[..open]);
        out.push_str(&format!("{:012x}", rng.random::<u64>() >> 16));
        rest = &rest[close..];
    }
    out.push_str(rest);
    out
}

fn resource(svc: &Service, index: usize) -> Resource {
    let pod = format!("{}-7d9f8b6c4-{:05x}", svc.name, 0x1a2b3 + index);
    Resource {
        attributes: vec![
            kv_str("service.name", svc.name),
            kv_str("service.version", svc.version),
            kv_str("service.namespace", "shop"),
            kv_str("deployment.environment.name", "production"),
            kv_str(
                "host.name",
                format!("ip-10-42-{}-17.eu-west-1.compute.internal", 3 + index),
            ),
            kv_str("k8s.namespace.name", "shop-prod"),
            kv_str("k8s.deployment.name", svc.name),
            kv_str("k8s.pod.name", pod),
            kv_str("telemetry.sdk.name", "opentelemetry"),
            kv_str("telemetry.sdk.language", svc.language),
            kv_str("telemetry.sdk.version", svc.sdk_version),
        ],
        ..Default::default()
    }
}

fn server_span(svc: &Service, i: usize, rng: &mut StdRng, latency: &LogNormal<f64>) -> Span {
    // Round-robin over routes so every request carries every series.
    let (method, route) = svc.routes[i % svc.routes.len()];
    let (status_code, error) = match rng.random_range(0..100) {
        0..2 => (503, true),
        2..5 => (404, false),
        _ if method == "POST" => (201, false),
        _ => (200, false),
    };
    let start = T0 * 1_000_000_000 + rng.random_range(0..5_000_000_000u64);
    let duration = latency.sample(rng) as u64;
    let mut attributes = vec![
        kv_str("http.request.method", method),
        kv_str("http.route", route),
        kv_str("url.path", concrete_path(route, rng)),
        kv_str("url.scheme", "https"),
        kv_int("http.response.status_code", status_code),
        kv_str("server.address", format!("{}.shop.example.com", svc.name)),
        kv_int("server.port", 443),
        kv_str(
            "network.protocol.version",
            if rng.random_bool(0.7) { "2" } else { "1.1" },
        ),
        kv_str(
            "client.address",
            format!("203.0.113.{}", rng.random_range(1..255)),
        ),
        kv_str(
            "network.peer.address",
            format!(
                "10.42.{}.{}",
                rng.random_range(0..8),
                rng.random_range(1..255)
            ),
        ),
        kv_int("network.peer.port", rng.random_range(32768..61000)),
        kv_str(
            "user_agent.original",
            USER_AGENTS[rng.random_range(0..USER_AGENTS.len())],
        ),
    ];
    if route.starts_with("/api/v2/search") {
        attributes.push(kv_str("url.query", "q=trail+running+shoes&page=2&size=24"));
    }
    Span {
        trace_id: rng.random::<[u8; 16]>().to_vec(),
        span_id: rng.random::<[u8; 8]>().to_vec(),
        parent_span_id: rng.random::<[u8; 8]>().to_vec(),
        // Sampled, with a remote parent: what an entry span behind an instrumented client has.
        flags: 0x301,
        name: format!("{method} {route}"),
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: start + duration,
        attributes,
        status: Some(Status {
            code: if error {
                status::StatusCode::Error as i32
            } else {
                status::StatusCode::Unset as i32
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The export request every ingest benchmark uses: 128 spans from each of the 4 services.
fn export_request() -> ExportTraceServiceRequest {
    let mut rng = StdRng::seed_from_u64(7);
    // Median 25 ms, long tail: typical for HTTP entry spans.
    let latency = LogNormal::new((25e6f64).ln(), 0.9).expect("valid log-normal");
    let per_service = SPANS_PER_REQUEST / SERVICES.len();
    let resource_spans = SERVICES
        .iter()
        .enumerate()
        .map(|(index, svc)| ResourceSpans {
            resource: Some(resource(svc, index)),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: svc.scope.into(),
                    version: svc.scope_version.into(),
                    ..Default::default()
                }),
                spans: (0..per_service)
                    .map(|i| server_span(svc, i, &mut rng, &latency))
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest { resource_spans }
}

/// The request and its protobuf encoding, built once for all groups.
static REQUEST: LazyLock<(ExportTraceServiceRequest, Vec<u8>)> = LazyLock::new(encoded_request);

/// Encodes the request, checks span sizes are in the realistic range and that it decodes to 512
/// observations over 50 series, and prints the sizes so the figures can be quoted.
fn encoded_request() -> (ExportTraceServiceRequest, Vec<u8>) {
    let req = export_request();
    let sizes: Vec<usize> = req
        .resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .map(Message::encoded_len)
        .collect();
    assert_eq!(sizes.len(), SPANS_PER_REQUEST);
    let (min, max) = (*sizes.iter().min().unwrap(), *sizes.iter().max().unwrap());
    assert!(
        min >= 300 && max <= 800,
        "encoded spans must be 300-800 bytes, got {min}..={max}"
    );
    let bytes = req.encode_to_vec();
    // `crates/slogate-ingest/examples/decode_loop.rs` (time and callgrind instruction counts) reads
    // the same request.
    if let Some(path) = std::env::var_os("SLOGATE_DUMP_REQUEST") {
        std::fs::write(path, &bytes).expect("write the request dump");
    }
    eprintln!(
        "ingest bench request: {} spans, {} bytes; span {:.0} bytes on average ({min}..={max}), {:.0} bytes per span with resource and framing",
        sizes.len(),
        bytes.len(),
        sizes.iter().sum::<usize>() as f64 / sizes.len() as f64,
        bytes.len() as f64 / sizes.len() as f64,
    );
    let obs = decode(&bytes);
    let series: HashSet<_> = obs
        .iter()
        .map(|o| (o.service, o.version, o.operation.to_string_lossy()))
        .collect();
    assert_eq!(series.len(), 50, "the request should carry 50 series");
    (req, bytes)
}

fn decode(bytes: &[u8]) -> Vec<Observation<'_>> {
    let mut out = Vec::with_capacity(SPANS_PER_REQUEST);
    let mut tally = Tally::default();
    wire::decode_traces(bytes, &ExtractConfig::default(), &mut out, &mut tally)
        .expect("valid request");
    assert_eq!(
        tally.recorded as usize, SPANS_PER_REQUEST,
        "every span is a SERVER span: {tally:?}"
    );
    out
}

/// A registry whose clock never moves: every batch lands in the same open slot, so the figure
/// is the steady-state per-span cost, without slot flushes (the closer does those, off the
/// ingest path).
fn frozen_registry() -> Arc<Registry> {
    Registry::new(WindowConfig::default(), ManualClock::new(T0))
}

fn decode_extract(c: &mut Criterion) {
    let (req, bytes) = &*REQUEST;
    let cfg = ExtractConfig::default();
    let mut group = c.benchmark_group("decode_extract");
    group.throughput(Throughput::Elements(SPANS_PER_REQUEST as u64));

    // The output vector is reused, as the server reuses a per-thread one.
    let mut out = Vec::with_capacity(SPANS_PER_REQUEST);
    group.bench_function("protobuf", |b| {
        b.iter(|| {
            out.clear();
            let mut tally = Tally::default();
            wire::decode_traces(black_box(bytes), &cfg, &mut out, &mut tally)
                .expect("valid request");
            black_box((&out, tally));
        })
    });

    // opentelemetry-proto's serde support writes the OTLP/JSON mapping (hex ids, camelCase,
    // 64-bit integers as strings), which is what OTLP/HTTP JSON exporters send.
    let body = serde_json::to_vec(req).expect("serializable request");
    {
        let parsed = json::parse(&body).expect("valid OTLP/JSON");
        let mut out = Vec::new();
        let mut tally = Tally::default();
        json::extract_request(&parsed, &cfg, &mut out, &mut tally);
        assert_eq!(
            tally.recorded as usize, SPANS_PER_REQUEST,
            "JSON body extracts like protobuf: {tally:?}"
        );
        eprintln!("ingest bench request as OTLP/JSON: {} bytes", body.len());
    }
    group.bench_function("json", |b| {
        b.iter(|| {
            let parsed = json::parse(black_box(&body)).expect("valid OTLP/JSON");
            // Observations borrow from this iteration's parsed request, so the vector cannot
            // outlive it; one allocation is noise next to the parse.
            let mut out = Vec::with_capacity(SPANS_PER_REQUEST);
            let mut tally = Tally::default();
            json::extract_request(&parsed, &cfg, &mut out, &mut tally);
            black_box((&out, tally));
        })
    });
    group.finish();
}

fn record(c: &mut Criterion) {
    let obs = decode(&REQUEST.1);
    let registry = frozen_registry();
    let record_batch = |registry: &Registry| {
        // One writer per batch, as the server takes one per export request.
        let mut w = registry.writer();
        for o in &obs {
            w.record(black_box(o));
        }
    };
    // Series creation is a one-off per series; measure the steady state of known series.
    record_batch(&registry);

    let mut group = c.benchmark_group("record");
    group.throughput(Throughput::Elements(SPANS_PER_REQUEST as u64));
    group.bench_function("batch", |b| b.iter(|| record_batch(&registry)));
    group.finish();
}

fn end_to_end_batch(c: &mut Criterion) {
    let bytes = &REQUEST.1;
    let cfg = ExtractConfig::default();
    let registry = frozen_registry();
    let mut out = Vec::with_capacity(SPANS_PER_REQUEST);
    let mut process = || {
        out.clear();
        let mut tally = Tally::default();
        wire::decode_traces(black_box(bytes), &cfg, &mut out, &mut tally).expect("valid request");
        let mut w = registry.writer();
        for o in &out {
            w.record(o);
        }
        tally
    };
    process();

    let mut group = c.benchmark_group("end_to_end_batch");
    group.throughput(Throughput::Elements(SPANS_PER_REQUEST as u64));
    group.bench_function("protobuf", |b| b.iter(|| black_box(process())));
    group.finish();
}

fn window_query(c: &mut Criterion) {
    const SERVICES_N: usize = 10;
    const OPERATIONS: usize = 50;
    const VERSIONS: [&str; 2] = ["v1", "v2"];
    const SLOTS: usize = 30;
    const PER_SLOT: usize = 8;

    let services: Vec<String> = (0..SERVICES_N).map(|s| format!("svc-{s:02}")).collect();
    let operations: Vec<String> = (0..OPERATIONS)
        .map(|o| format!("/api/v1/resource-{o:02}/{{id}}"))
        .collect();
    let clock = ManualClock::new(T0);
    let registry = Registry::new(WindowConfig::default(), clock.clone());
    let mut rng = StdRng::seed_from_u64(11);
    let latency = LogNormal::new((25e6f64).ln(), 0.9).expect("valid log-normal");

    // 30 closed 10 s slots of history for every series: 5 minutes, inside a 10 minute window.
    for _ in 0..SLOTS {
        let mut w = registry.writer();
        for service in &services {
            for version in VERSIONS {
                for op in &operations {
                    for _ in 0..PER_SLOT {
                        w.record(&Observation {
                            service: service.as_bytes(),
                            env: b"production",
                            version: version.as_bytes(),
                            operation: Operation::pair(b"GET", b' ', op.as_bytes()),
                            extras: [b""; 4],
                            error: rng.random_bool(0.01),
                            duration_ns: latency.sample(&mut rng) as u64,
                            adjusted_count: 1,
                        });
                    }
                }
            }
        }
        drop(w);
        clock.advance(10);
        registry.close_slots();
    }
    assert_eq!(
        registry.series_count(),
        SERVICES_N * OPERATIONS * VERSIONS.len()
    );

    let one_version =
        Selector::new([("service", "svc-03"), ("version", "v2")], &[]).expect("valid selector");
    let whole_service = Selector::new([("service", "svc-03")], &[]).expect("valid selector");
    let stats = registry.query(&one_version, 600);
    assert_eq!(
        (stats.series, stats.requests),
        (OPERATIONS, (OPERATIONS * SLOTS * PER_SLOT) as u64)
    );

    let mut group = c.benchmark_group("window_query");
    for (name, sel) in [
        ("service_version", &one_version),
        ("service", &whole_service),
    ] {
        group.bench_with_input(BenchmarkId::new(name, "600s"), sel, |b, sel| {
            b.iter(|| black_box(registry.query(black_box(sel), 600)))
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    decode_extract,
    record,
    end_to_end_batch,
    window_query
);
criterion_main!(benches);
