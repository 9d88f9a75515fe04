//! OTLP metrics end to end: the real Python `opentelemetry-sdk` and Rust `opentelemetry-otlp`
//! metrics exporters feed the server over gRPC and HTTP; gates over queue depth, circuit
//! breakers and cost per request give the verdicts the rollout plans ask for; a cache-hit-ratio
//! rule pages PagerDuty once and resolves once; counter resets never make a negative rate; a
//! metric that stops reporting is no data; hostile points are refused one by one.

use crate::exporters::python;
use crate::harness::Server;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span::SpanKind};
use prost::Message;
use serde_json::Value;
use slogate_pagerduty_mock::MockServer;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const SEC: u64 = 1_000_000_000;

fn fast() -> &'static str {
    "windows:\n  slot: 1s\n  fine_retention: 10m\n  coarse_slot: 10s\n  coarse_retention: 1h\n\
     metrics:\n  retention: 10m\n"
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

fn attrs(pairs: &[(&str, &str)]) -> Vec<KeyValue> {
    pairs.iter().map(|(k, v)| kv(k, v)).collect()
}

fn point(start: u64, t: u64, v: f64, a: &[(&str, &str)]) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attrs(a),
        start_time_unix_nano: start,
        time_unix_nano: t,
        value: Some(number_data_point::Value::AsDouble(v)),
        ..Default::default()
    }
}

fn gauge(name: &str, points: Vec<NumberDataPoint>) -> Metric {
    Metric {
        name: name.into(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: points,
        })),
        ..Default::default()
    }
}

fn counter(name: &str, unit: &str, cumulative: bool, points: Vec<NumberDataPoint>) -> Metric {
    let temporality = if cumulative {
        AggregationTemporality::Cumulative
    } else {
        AggregationTemporality::Delta
    };
    Metric {
        name: name.into(),
        unit: unit.into(),
        data: Some(metric::Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: temporality as i32,
            is_monotonic: true,
        })),
        ..Default::default()
    }
}

fn request(service: &str, version: &str, instance: &str, metrics: Vec<Metric>) -> Vec<u8> {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: attrs(&[
                    ("service.name", service),
                    ("service.version", version),
                    ("deployment.environment.name", "prod"),
                    ("service.instance.id", instance),
                ]),
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

/// Posts an OTLP/HTTP protobuf request; returns the status and the decoded response.
fn post(server: &Server, path: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
    let resp = reqwest::blocking::Client::new()
        .post(format!("http://127.0.0.1:{}{path}", server.http))
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .expect("post");
    let status = resp.status().as_u16();
    (status, resp.bytes().unwrap().to_vec())
}

/// Sends metrics and asserts every point was accepted.
fn send(server: &Server, service: &str, version: &str, instance: &str, metrics: Vec<Metric>) {
    let (status, body) = post(
        server,
        "/v1/metrics",
        request(service, version, instance, metrics),
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let resp = ExportMetricsServiceResponse::decode(body.as_slice()).unwrap();
    if let Some(p) = resp.partial_success {
        assert_eq!(p.rejected_data_points, 0, "{}", p.error_message);
    }
}

/// `n` server spans of `service`/`version`, 20 ms each.
fn spans(server: &Server, service: &str, version: &str, n: usize) {
    let now = now_ns();
    let spans = (0..n)
        .map(|i| Span {
            trace_id: (i as u128 + 1).to_be_bytes().to_vec(),
            span_id: (i as u64 + 1).to_be_bytes().to_vec(),
            name: "POST /complete".into(),
            kind: SpanKind::Server as i32,
            start_time_unix_nano: now - 20_000_000,
            end_time_unix_nano: now,
            ..Default::default()
        })
        .collect();
    let body = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: attrs(&[("service.name", service), ("service.version", version)]),
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec();
    let (status, body) = post(server, "/v1/traces", body);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
}

fn query(server: &Server, q: &str) -> Value {
    server.get_json(&format!("/api/v1/metrics/query?{q}"))
}

fn verdict(server: &Server, gate: &str, q: &str) -> Value {
    server.get_json(&format!("/api/v1/gates/{gate}/verdict?{q}"))
}

fn criterion<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["criteria"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no criterion {name} in {doc:#}"))
}

fn close(got: f64, want: f64, rel: f64) -> bool {
    (got - want).abs() <= rel * want.abs().max(1e-12)
}

fn exact_quantile(values: &mut [f64], q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    values[rank - 1]
}

/// A quantile read from buckets: the exact one (give or take one rank, which the buckets cannot
/// resolve) within the bound the answer states.
fn assert_quantile(got: &Value, values: &[f64], q: f64, what: &str) {
    let value = got["value"]
        .as_f64()
        .unwrap_or_else(|| panic!("{what}: {got:#}"));
    let bound = got["error_bound"]
        .as_f64()
        .unwrap_or_else(|| panic!("{what}: no error bound in {got:#}"));
    let mut v = values.to_vec();
    let lo = exact_quantile(&mut v, q - 1.0 / values.len() as f64);
    let hi = exact_quantile(&mut v, q + 1.0 / values.len() as f64);
    // The bound is relative to the answer: the exact quantile lies in value × (1 ± bound).
    assert!(
        hi >= value * (1.0 - bound) * (1.0 - 1e-9) && lo <= value * (1.0 + bound) * (1.0 + 1e-9),
        "{what}: exact [{lo}, {hi}] outside {value} ± {bound}"
    );
    assert!(bound < 0.5, "{what}: bound {bound}");
}

fn send_python(server: &Server, protocol: &str, temporality: &str, service: &str) -> Value {
    let endpoint = match protocol {
        "grpc" => format!("http://127.0.0.1:{}", server.grpc),
        _ => format!("http://127.0.0.1:{}", server.http),
    };
    let out = std::process::Command::new(python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/python/send_metrics.py"
        ))
        .args(["--protocol", protocol, "--endpoint", &endpoint])
        .args(["--service", service, "--version", "v1"])
        .args(["--temporality", temporality, "--exports", "3"])
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python exporter failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("sent values as JSON")
}

#[test]
fn python_sdk_every_instrument_grpc_and_http() {
    let server = Server::start(fast());
    for (protocol, temporality) in [("grpc", "cumulative"), ("http", "delta")] {
        let service = format!("py-{protocol}");
        let sent = send_python(&server, protocol, temporality, &service);
        let q = |rest: &str| query(&server, &format!("service={service}&window=5m&{rest}"));
        let depth: Vec<f64> = sent["depth"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        // The observable gauge: its last and largest values.
        let last = q("metric=jobs.queue.depth&aggregate=last&where.queue=jobs");
        assert_eq!(last["value"].as_f64(), depth.last().copied(), "{last:#}");
        assert_eq!(last["kind"], "gauge");
        let max = q("metric=jobs.queue.depth&aggregate=max");
        assert_eq!(max["value"].as_f64(), Some(30.0), "{max:#}");
        // Three explicit exports and the final one at shutdown each observe the gauge.
        assert_eq!(max["points"].as_u64(), Some(4), "{max:#}");
        // The counter, cumulative or delta: its increase over the window is what was added.
        let hits = sent["hits"].as_f64().unwrap();
        let misses = sent["misses"].as_f64().unwrap();
        let inc = q("metric=cache.requests&aggregate=increase&where.result=hit");
        assert_eq!(inc["value"].as_f64(), Some(hits), "{temporality}: {inc:#}");
        let all = q("metric=cache.requests&aggregate=increase");
        assert_eq!(all["value"].as_f64(), Some(hits + misses), "{all:#}");
        assert_eq!(all["series"].as_u64(), Some(2), "{all:#}");
        // The up-down counter (always cumulative): its current value.
        let inflight = q("metric=jobs.inflight&aggregate=last");
        assert_eq!(
            inflight["value"].as_f64(),
            sent["inflight"].as_f64(),
            "{inflight:#}"
        );
        // The explicit-bucket histogram in seconds, read in milliseconds.
        let http_ms: Vec<f64> = sent["http_s"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() * 1e3)
            .collect();
        let p95 = q("metric=http.server.request.duration&aggregate=p95");
        assert_quantile(&p95, &http_ms, 0.95, "explicit p95");
        let count = q("metric=http.server.request.duration&aggregate=increase");
        assert_eq!(count["value"].as_f64(), Some(600.0), "{count:#}");
        // The exponential histogram in milliseconds.
        let rpc_ms: Vec<f64> = sent["rpc_ms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        for (q_, name) in [(0.5, "p50"), (0.95, "p95"), (0.99, "p99")] {
            let got = q(&format!("metric=rpc.server.duration&aggregate={name}"));
            assert_quantile(&got, &rpc_ms, q_, &format!("exponential {name}"));
            assert_eq!(got["kind"], "exponential_histogram");
        }
    }
}

#[test]
fn rust_sdk_metrics_exporter_grpc_and_http() {
    use opentelemetry::KeyValue as OtelKv;
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry_otlp::{MetricExporter, Protocol, WithExportConfig};
    use opentelemetry_sdk::Resource as SdkResource;
    use opentelemetry_sdk::metrics::{SdkMeterProvider, Temporality};

    let server = Server::start(fast());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    for (transport, temporality) in [
        ("grpc", Temporality::Cumulative),
        ("http", Temporality::Delta),
    ] {
        let exporter = match transport {
            "grpc" => MetricExporter::builder()
                .with_tonic()
                .with_endpoint(format!("http://127.0.0.1:{}", server.grpc))
                .with_temporality(temporality)
                .build()
                .unwrap(),
            _ => MetricExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(format!("http://127.0.0.1:{}/v1/metrics", server.http))
                .with_temporality(temporality)
                .build()
                .unwrap(),
        };
        let service = format!("rs-{transport}");
        let provider = SdkMeterProvider::builder()
            .with_periodic_exporter(exporter)
            .with_resource(
                SdkResource::builder_empty()
                    .with_attributes([
                        OtelKv::new("service.name", service.clone()),
                        OtelKv::new("service.version", "v1"),
                    ])
                    .build(),
            )
            .build();
        let meter = provider.meter("slogate-it");
        let requests = meter.u64_counter("llm.requests").build();
        let cost = meter.f64_counter("llm.cost").with_unit("USD").build();
        let depth = meter.i64_gauge("jobs.queue.depth").build();
        let latency = meter
            .f64_histogram("llm.duration")
            .with_unit("ms")
            .with_boundaries(vec![10.0, 20.0, 50.0, 100.0, 200.0, 500.0])
            .build();
        let mut values = Vec::new();
        for round in 0..3u64 {
            requests.add(100, &[OtelKv::new("model", "small")]);
            cost.add(1.25, &[]);
            depth.record(40 + round as i64, &[]);
            for i in 0..100 {
                let v = 5.0 + (i as f64) * 3.0;
                latency.record(v, &[]);
                values.push(v);
            }
            provider.force_flush().expect("flush");
        }
        provider.shutdown().expect("shutdown");
        let q = |rest: &str| query(&server, &format!("service={service}&window=5m&{rest}"));
        let inc = q("metric=llm.requests&aggregate=increase&where.model=small");
        assert_eq!(inc["value"].as_f64(), Some(300.0), "{transport}: {inc:#}");
        let cost = q("metric=llm.cost&aggregate=increase");
        assert!(
            close(cost["value"].as_f64().unwrap_or(f64::NAN), 3.75, 1e-9),
            "{cost:#}"
        );
        assert_eq!(cost["unit"], "USD");
        let depth = q("metric=jobs.queue.depth&aggregate=last");
        assert_eq!(depth["value"].as_f64(), Some(42.0), "{depth:#}");
        let p50 = q("metric=llm.duration&aggregate=p50");
        assert_quantile(&p50, &values, 0.5, "rust explicit p50");
    }
}

#[test]
fn queue_depth_gate_passes_holds_and_fails_when_sustained() {
    let config = format!(
        "{}gates:\n  - name: queue\n    service: jobs\n    window: 1m\n    criteria:\n      \
         - {{name: queue-depth, otlp: jobs.queue.depth, aggregate: max, pass: 200, fail: 500, sustained: 2s}}\n",
        fast()
    );
    let server = Server::start(&config);
    let g = |v: f64| {
        gauge(
            "jobs.queue.depth",
            vec![point(0, now_ns(), v, &[("queue", "jobs")])],
        )
    };
    // No point yet: no data, the rollout holds.
    let doc = verdict(&server, "queue", "canary.version=v2");
    assert_eq!(doc["verdict"], "inconclusive", "{doc:#}");
    assert_eq!(criterion(&doc, "queue-depth")["result"], "no_data");

    send(&server, "jobs", "v2", "pod-1", vec![g(150.0)]);
    let doc = verdict(&server, "queue", "canary.version=v2");
    assert_eq!(doc["verdict"], "pass", "{doc:#}");
    let c = criterion(&doc, "queue-depth");
    assert_eq!(c["observed"].as_f64(), Some(150.0), "{c:#}");
    assert_eq!(c["points"].as_u64(), Some(1), "{c:#}");
    assert_eq!(c["metric"], "max(jobs.queue.depth)");

    // Over the fail bound: held (marginal) until it has lasted 2 s, then a rollback.
    send(&server, "jobs", "v2", "pod-1", vec![g(600.0)]);
    let doc = verdict(&server, "queue", "canary.version=v2");
    assert_eq!(
        criterion(&doc, "queue-depth")["result"],
        "marginal",
        "{doc:#}"
    );
    assert_eq!(doc["decision"], "hold");
    std::thread::sleep(Duration::from_millis(2200));
    send(&server, "jobs", "v2", "pod-1", vec![g(620.0)]);
    let doc = verdict(&server, "queue", "canary.version=v2");
    assert_eq!(doc["verdict"], "fail", "{doc:#}");
    assert_eq!(doc["decision"], "rollback");
    let reason = criterion(&doc, "queue-depth")["reason"].as_str().unwrap();
    assert!(reason.contains("620"), "{reason}");

    // Another version of the service is judged on its own points only.
    send(&server, "jobs", "v3", "pod-9", vec![g(10.0)]);
    let doc = verdict(&server, "queue", "canary.version=v3");
    assert_eq!(doc["verdict"], "pass", "{doc:#}");
}

#[test]
fn breaker_open_too_long_holds_and_flapping_rolls_back() {
    let config = format!(
        "{}gates:\n  - name: breaker\n    service: ingestion\n    window: 1m\n    criteria:\n      \
         - {{name: breaker-open, otlp: ingest.breaker.state, aggregate: time_in_state, state: 1, pass: 5, fail: 1000}}\n      \
         - {{name: breaker-events, otlp: ingest.breaker.state, aggregate: transitions, state: 1, pass: 0, fail: 1}}\n",
        fast()
    );
    let server = Server::start(&config);
    let now = now_ns();
    let series = |states: &[(u64, f64)]| {
        gauge(
            "ingest.breaker.state",
            states
                .iter()
                .map(|&(ago, v)| point(0, now - ago * SEC, v, &[("breaker", "warehouse")]))
                .collect(),
        )
    };
    // v2: closed, then OPEN for the last 20 s: longer than 5 s, one event. Hold.
    send(
        &server,
        "ingestion",
        "v2",
        "pod-1",
        vec![series(&[(30, 0.0), (20, 1.0), (10, 1.0), (0, 1.0)])],
    );
    let doc = verdict(&server, "breaker", "canary.version=v2");
    assert_eq!(doc["verdict"], "inconclusive", "{doc:#}");
    assert_eq!(doc["decision"], "hold");
    let open = criterion(&doc, "breaker-open");
    assert_eq!(open["result"], "marginal", "{open:#}");
    let seconds = open["observed"].as_f64().unwrap();
    assert!((19.0..=22.0).contains(&seconds), "{open:#}");
    assert_eq!(
        criterion(&doc, "breaker-events")["observed"].as_f64(),
        Some(1.0)
    );

    // v3: flaps twice (two changes into OPEN): a rollback.
    send(
        &server,
        "ingestion",
        "v3",
        "pod-2",
        vec![series(&[
            (40, 0.0),
            (35, 1.0),
            (33, 0.0),
            (25, 1.0),
            (23, 0.0),
            (0, 0.0),
        ])],
    );
    let doc = verdict(&server, "breaker", "canary.version=v3");
    assert_eq!(doc["verdict"], "fail", "{doc:#}");
    assert_eq!(doc["decision"], "rollback");
    let events = criterion(&doc, "breaker-events");
    assert_eq!(events["observed"].as_f64(), Some(2.0), "{events:#}");
    assert_eq!(events["result"], "fail");
    // Open 2 s + 2 s: under the 5 s limit.
    assert_eq!(criterion(&doc, "breaker-open")["result"], "pass", "{doc:#}");

    // v4: always closed: both pass.
    send(
        &server,
        "ingestion",
        "v4",
        "pod-3",
        vec![series(&[(40, 0.0), (20, 0.0), (0, 0.0)])],
    );
    let doc = verdict(&server, "breaker", "canary.version=v4");
    assert_eq!(doc["verdict"], "pass", "{doc:#}");
}

#[test]
fn cost_per_request_divides_the_cost_counter_by_span_requests() {
    let config = format!(
        "{}gates:\n  - name: cost\n    service: llm\n    window: 1m\n    criteria:\n      \
         - {{name: cost-per-request, otlp: llm.cost, aggregate: increase, divide_by: {{spans: requests}}, pass: 0.02, fail: 0.05}}\n",
        fast()
    );
    let server = Server::start(&config);
    spans(&server, "llm", "v2", 400);
    server.sli_when("service=llm&version=v2&window=1m", 400);
    let now = now_ns();
    // A cumulative cost counter born inside the window: 1.5 + 4.5 + 3.0 dollars.
    send(
        &server,
        "llm",
        "v2",
        "pod-1",
        vec![counter(
            "llm.cost",
            "USD",
            true,
            vec![
                point(now - 40 * SEC, now - 30 * SEC, 1.5, &[]),
                point(now - 40 * SEC, now - 20 * SEC, 6.0, &[]),
                point(now - 40 * SEC, now - 10 * SEC, 9.0, &[]),
            ],
        )],
    );
    let doc = verdict(&server, "cost", "canary.version=v2");
    let c = criterion(&doc, "cost-per-request");
    let observed = c["observed"].as_f64().unwrap();
    assert!(close(observed, 9.0 / 400.0, 1e-9), "{c:#}");
    // 0.0225 is above the 0.02 target and below the 0.05 alert: hold.
    assert_eq!(c["result"], "marginal", "{c:#}");
    assert_eq!(c["metric"], "increase(llm.cost) per request");
    assert_eq!(c["unit"], "USD/request");
}

#[test]
fn counter_resets_never_make_a_negative_rate() {
    let config = format!(
        "{}gates:\n  - name: throughput\n    service: worker\n    window: 1m\n    criteria:\n      \
         - {{name: jobs-done, otlp: jobs.done, aggregate: increase, direction: higher_is_better, pass: 50, fail: 10}}\n",
        fast()
    );
    let server = Server::start(&config);
    let now = now_ns();
    let first = now - 200 * SEC; // started long before the window
    let restarted = now - 36 * SEC;
    send(
        &server,
        "worker",
        "v2",
        "pod-1",
        vec![counter(
            "jobs.done",
            "",
            true,
            vec![
                point(first, now - 50 * SEC, 1000.0, &[]),
                point(first, now - 40 * SEC, 1050.0, &[]),
                // The process restarted: a new start time, the count starts again.
                point(restarted, now - 30 * SEC, 10.0, &[]),
                point(restarted, now - 20 * SEC, 30.0, &[]),
                // A drop without a new start time is a reset too.
                point(restarted, now - 10 * SEC, 5.0, &[]),
            ],
        )],
    );
    let inc = query(
        &server,
        "service=worker&version=v2&metric=jobs.done&aggregate=increase&window=1m",
    );
    // 50 before the restart, 10 + 20 after it, 5 after the drop.
    assert_eq!(inc["value"].as_f64(), Some(85.0), "{inc:#}");
    let rate = query(
        &server,
        "service=worker&version=v2&metric=jobs.done&aggregate=rate&window=1m",
    );
    let r = rate["value"].as_f64().unwrap();
    assert!(r > 0.0 && r < 10.0, "{rate:#}");
    assert!(server.metric("slogate_metric_resets_total") >= 2.0);
    let doc = verdict(&server, "throughput", "canary.version=v2");
    assert_eq!(doc["verdict"], "pass", "{doc:#}");
}

#[test]
fn a_metric_that_stops_reporting_is_no_data() {
    let config = format!(
        "{}metrics:\n  retention: 10m\n  stale_after: 2s\ngates:\n  - name: memory\n    service: api\n    window: 1m\n    criteria:\n      \
         - {{name: memory, otlp: process.memory.utilization, aggregate: max, pass: 0.8, fail: 0.9}}\n",
        fast().replace("metrics:\n  retention: 10m\n", "")
    );
    let server = Server::start(&config);
    let g = || {
        gauge(
            "process.memory.utilization",
            vec![point(0, now_ns(), 0.5, &[])],
        )
    };
    send(&server, "api", "v2", "pod-1", vec![g()]);
    let doc = verdict(&server, "memory", "canary.version=v2");
    assert_eq!(doc["verdict"], "pass", "{doc:#}");
    std::thread::sleep(Duration::from_millis(3000));
    let doc = verdict(&server, "memory", "canary.version=v2");
    assert_eq!(doc["verdict"], "inconclusive", "{doc:#}");
    let c = criterion(&doc, "memory");
    assert_eq!(c["result"], "no_data", "{c:#}");
    let reason = c["reason"].as_str().unwrap();
    assert!(reason.contains("stopped reporting"), "{reason}");
    let q = query(
        &server,
        "service=api&metric=process.memory.utilization&aggregate=last&window=1m",
    );
    assert!(q["value"].is_null(), "{q:#}");
}

#[test]
fn cache_hit_ratio_rule_pages_once_and_resolves_once() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pd = rt
        .block_on(MockServer::start("127.0.0.1:0".parse().unwrap()))
        .unwrap();
    let outbox = tempfile::tempdir().unwrap();
    let config = format!(
        "{}alerting:\n  evaluation_interval: 1s\n  rules:\n    \
         - {{name: cache-hit-ratio, service: api, otlp: redis.commands, where: {{result: hit}}, aggregate: increase, \
         divide_by: {{otlp: redis.commands, aggregate: increase}}, below: 0.85, window: 4s, for: 2s, tier: P2}}\n\
         pagerduty:\n  enabled: true\n  url: {}\n  outbox_dir: {}\n  retry_min: 20ms\n  retry_max: 200ms\n",
        fast(),
        pd.url(),
        outbox.path().display()
    );
    let server = Server::start(&config);
    let tick = |hits: f64, misses: f64| {
        let t = now_ns();
        send(
            &server,
            "api",
            "v1",
            "pod-1",
            vec![counter(
                "redis.commands",
                "",
                false,
                vec![
                    point(t - SEC, t, hits, &[("result", "hit")]),
                    point(t - SEC, t, misses, &[("result", "miss")]),
                ],
            )],
        );
    };
    let wait = |what: &str, n: usize, hits: f64, misses: f64| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while pd.accepted().len() < n {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tick(hits, misses);
            std::thread::sleep(Duration::from_millis(500));
        }
    };
    // 70 % hits: below 85 % for more than 2 s pages.
    wait("the page", 1, 70.0, 30.0);
    // Healthy again: the window rolls over and the alert resolves.
    wait("the resolve", 2, 95.0, 5.0);
    // And stays resolved: no further events.
    for _ in 0..6 {
        tick(95.0, 5.0);
        std::thread::sleep(Duration::from_millis(500));
    }
    let events = pd.accepted();
    assert_eq!(events.len(), 2, "{events:#?}");
    assert_eq!(events[0]["event_action"], "trigger");
    assert_eq!(events[1]["event_action"], "resolve");
    assert_eq!(events[0]["dedup_key"], events[1]["dedup_key"]);
    assert_eq!(events[0]["payload"]["severity"], "error");
    let summary = events[0]["payload"]["summary"].as_str().unwrap();
    assert!(
        summary.contains("[P2] cache-hit-ratio") && summary.contains("below 0.85"),
        "{summary}"
    );
    let observed = events[0]["payload"]["custom_details"]["observed"]
        .as_f64()
        .unwrap();
    assert!(close(observed, 0.7, 1e-9), "{events:#?}");
}

#[test]
fn hostile_points_are_refused_one_by_one() {
    let server = Server::start(fast());
    let t = now_ns();
    let bad_histogram = Metric {
        name: "http.server.request.duration".into(),
        unit: "s".into(),
        data: Some(metric::Data::Histogram(Histogram {
            data_points: vec![
                // Bucket counts that do not add up to the count.
                HistogramDataPoint {
                    time_unix_nano: t,
                    count: 10,
                    bucket_counts: vec![1, 2, 3],
                    explicit_bounds: vec![0.1, 0.5],
                    ..Default::default()
                },
                // Bounds that do not match the buckets.
                HistogramDataPoint {
                    time_unix_nano: t,
                    count: 3,
                    bucket_counts: vec![1, 2],
                    explicit_bounds: vec![0.1, 0.5],
                    ..Default::default()
                },
            ],
            aggregation_temporality: AggregationTemporality::Delta as i32,
        })),
        ..Default::default()
    };
    let metrics = vec![
        gauge(
            "jobs.queue.depth",
            vec![
                point(0, t, f64::NAN, &[]),
                point(0, t, f64::INFINITY, &[("queue", "x")]),
                point(0, t, 7.0, &[("queue", "ok")]),
            ],
        ),
        bad_histogram,
    ];
    let (status, body) = post(&server, "/v1/metrics", request("api", "v1", "p", metrics));
    assert_eq!(status, 200);
    let resp = ExportMetricsServiceResponse::decode(body.as_slice()).unwrap();
    let partial = resp.partial_success.expect("partial success");
    assert_eq!(partial.rejected_data_points, 4, "{}", partial.error_message);
    assert!(!partial.error_message.is_empty());
    // The valid point is there, and nothing else.
    let q = query(&server, "service=api&metric=jobs.queue.depth&aggregate=max");
    assert_eq!(q["value"].as_f64(), Some(7.0), "{q:#}");
    assert_eq!(q["series"].as_u64(), Some(1), "{q:#}");
    let q = query(
        &server,
        "service=api&metric=http.server.request.duration&aggregate=count",
    );
    assert!(q["value"].is_null(), "{q:#}");
    // Malformed protobuf is refused whole.
    let (status, _) = post(&server, "/v1/metrics", vec![0x0a, 0xff, 0xff, 0xff]);
    assert_eq!(status, 400);
}

#[test]
fn metric_slots_reach_the_sql_history() {
    let config = format!("{}history:\n  flush_interval: 1s\n", fast());
    let server = Server::start(&config);
    let t = now_ns();
    send(
        &server,
        "api",
        "v1",
        "pod-1",
        vec![
            counter(
                "cache.requests",
                "",
                false,
                vec![
                    point(t - 6 * SEC, t - 5 * SEC, 80.0, &[("result", "hit")]),
                    point(t - 6 * SEC, t - 5 * SEC, 20.0, &[("result", "miss")]),
                ],
            ),
            gauge(
                "jobs.queue.depth",
                vec![point(0, t - 5 * SEC, 12.0, &[("queue", "jobs")])],
            ),
        ],
    );
    let sql = "SELECT metric, kind, sum(increase) AS inc, max(max) AS mx, count(*) AS n \
               FROM metrics WHERE service = 'api' GROUP BY metric, kind ORDER BY metric";
    let deadline = Instant::now() + Duration::from_secs(30);
    let rows = loop {
        let resp = reqwest::blocking::Client::new()
            .post(server.api_url("/api/v1/sql"))
            .json(&serde_json::json!({ "query": sql }))
            .send()
            .unwrap();
        let body: Value = resp.json().unwrap();
        if let Some(rows) = body["rows"].as_array()
            && rows.len() == 2
        {
            break rows.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no metric rows in time: {body:#}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(rows[0][0], "cache.requests", "{rows:?}");
    assert_eq!(rows[0][1], "sum");
    assert_eq!(rows[0][2].as_f64(), Some(100.0), "{rows:?}");
    assert_eq!(rows[1][0], "jobs.queue.depth");
    assert_eq!(rows[1][3].as_f64(), Some(12.0), "{rows:?}");
}

/// A delta histogram of `values` (milliseconds) over fixed buckets, one point at `t`.
fn durations(name: &str, t: u64, values: &[f64]) -> Metric {
    let bounds = vec![10.0, 20.0, 40.0, 80.0, 160.0, 320.0];
    let mut counts = vec![0u64; bounds.len() + 1];
    for v in values {
        counts[bounds.partition_point(|b| b < v)] += 1;
    }
    Metric {
        name: name.into(),
        unit: "ms".into(),
        data: Some(metric::Data::Histogram(Histogram {
            data_points: vec![HistogramDataPoint {
                time_unix_nano: t,
                start_time_unix_nano: t - SEC,
                count: values.len() as u64,
                sum: Some(values.iter().sum()),
                bucket_counts: counts,
                explicit_bounds: bounds,
                ..Default::default()
            }],
            aggregation_temporality: AggregationTemporality::Delta as i32,
        })),
        ..Default::default()
    }
}

/// The staging run's metrics captured as a stored baseline (a metrics-only service: no spans),
/// then canaries judged against it: the same numbers pass, a doubled queue and slower jobs fail,
/// a metric the baseline never captured is no data.
#[test]
fn metric_criteria_compare_with_a_stored_baseline() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("history");
    let dir_s = dir.to_str().unwrap();
    let config = format!(
        "{}history:\n  dir: {dir_s}\n  flush_interval: 1s\ngates:\n  - name: release\n    service: jobs\n    window: 1m\n    \
         canary: {{version: v2}}\n    baseline: {{stored: jobs-v1}}\n    criteria:\n      \
         - {{name: queue-vs-v1, otlp: jobs.queue.depth, aggregate: max, compare: ratio, pass: 1.2, fail: 1.5}}\n      \
         - {{name: p95-vs-v1, otlp: job.duration, aggregate: p95, compare: ratio, pass: 1.2, fail: 1.5}}\n  \
         - name: uncaptured\n    service: jobs\n    window: 1m\n    canary: {{version: v2}}\n    baseline: {{stored: jobs-v1}}\n    criteria:\n      \
         - {{name: inflight-vs-v1, otlp: jobs.inflight, aggregate: max, compare: ratio, pass: 1.2, fail: 1.5}}\n  \
         - name: live\n    service: jobs\n    window: 1m\n    canary: {{version: v2}}\n    baseline: {{version: v1}}\n    criteria:\n      \
         - {{name: queue-count, otlp: jobs.queue.depth, aggregate: count, compare: ratio, pass: 1.2, fail: 1.5}}\n",
        fast()
    );
    let server = Server::start(&config);
    let job_ms: Vec<f64> = (0..200).map(|i| 5.0 + f64::from(i) * 0.6).collect();
    let run = |version: &str, depths: [f64; 3], scale: f64| {
        let t = now_ns();
        let slower: Vec<f64> = job_ms.iter().map(|v| v * scale).collect();
        let queue = gauge(
            "jobs.queue.depth",
            depths
                .iter()
                .enumerate()
                .map(|(i, &d)| point(0, t - (3 - i as u64) * SEC, d, &[("queue", "jobs")]))
                .collect(),
        );
        let inflight = gauge("jobs.inflight", vec![point(0, t - SEC, 3.0, &[])]);
        let mut metrics = vec![queue, durations("job.duration", t - SEC, &slower)];
        if version != "v1" {
            metrics.push(inflight);
        }
        send(&server, "jobs", version, "pod-1", metrics);
    };
    run("v1", [100.0, 120.0, 110.0], 1.0);
    // The staging run's slots reach the history: 3 gauge points and 1 histogram point.
    let sql = "SELECT sum(points) FROM metrics WHERE service = 'jobs' AND version = 'v1'";
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = server.sql(sql);
        assert_eq!(status, 200, "{body}");
        if body["rows"][0][0].as_u64() == Some(4) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "v1's metric slots never reached the history: {body}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let capture = |name: &str, version: &str| {
        crate::harness::slogate(&[
            "baseline",
            "capture",
            "--name",
            name,
            "--service",
            "jobs",
            "--version",
            version,
            "--from",
            "-10m",
            "--to",
            "now",
            "--dir",
            dir_s,
        ])
    };
    let (code, _, err) = capture("nothing", "v9");
    assert_eq!(
        code, 2,
        "no spans and no metrics: refused, never saved empty: {err}"
    );
    let (code, out, err) = capture("jobs-v1", "v1");
    assert_eq!(code, 0, "a metrics-only baseline: {out}{err}");
    assert!(out.contains("OTLP metrics captured"), "{out}");
    let (code, out, _) = crate::harness::slogate(&[
        "baseline", "show", "jobs-v1", "--format", "json", "--dir", dir_s,
    ]);
    assert_eq!(code, 0);
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["total"]["requests"], 0, "{shown:#}");
    let metrics = shown["metrics"].as_array().unwrap();
    let names: Vec<(&str, u64, u64)> = metrics
        .iter()
        .map(|m| {
            (
                m["metric"].as_str().unwrap(),
                m["streams"].as_u64().unwrap(),
                m["points"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [("job.duration", 1, 1), ("jobs.queue.depth", 1, 3)],
        "{shown:#}"
    );

    // The same numbers from the canary: ratios of 1, pass.
    run("v2", [100.0, 120.0, 110.0], 1.0);
    let doc = verdict(&server, "release", "");
    assert_eq!(doc["verdict"], "pass", "{doc:#}");
    assert!(
        doc["baseline"]["selector"]
            .as_str()
            .unwrap()
            .starts_with("stored:jobs-v1"),
        "{doc:#}"
    );
    let q = criterion(&doc, "queue-vs-v1");
    assert_eq!(q["baseline"].as_f64(), Some(120.0), "{q:#}");
    assert_eq!(q["observed"].as_f64(), Some(120.0), "{q:#}");
    let p95 = criterion(&doc, "p95-vs-v1");
    let (canary, base) = (
        p95["observed"].as_f64().unwrap(),
        p95["baseline"].as_f64().unwrap(),
    );
    assert!(close(canary, base, 1e-9), "same buckets, same p95: {p95:#}");
    assert!(base > 100.0 && base < 160.0, "{p95:#}");

    // A doubled queue and jobs 1.8x slower: both criteria fail against the stored numbers.
    run("v3", [150.0, 260.0, 240.0], 1.8);
    let doc = verdict(&server, "release", "canary.version=v3");
    assert_eq!(doc["verdict"], "fail", "{doc:#}");
    assert_eq!(doc["decision"], "rollback");
    let q = criterion(&doc, "queue-vs-v1");
    assert_eq!(q["result"], "fail", "{q:#}");
    assert_eq!(q["observed"].as_f64(), Some(260.0), "{q:#}");
    assert_eq!(criterion(&doc, "p95-vs-v1")["result"], "fail", "{doc:#}");

    // A request naming a stored baseline for a comparison that grows with the span of time is
    // refused as the configuration would be, never judged.
    let (status, body) = server
        .get("/api/v1/gates/live/verdict?baseline.stored=jobs-v1")
        .unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("criterion \\\"queue-count\\\" cannot be compared with a stored baseline"),
        "{body}"
    );

    // A metric the baseline does not hold: no data, the rollout holds, the reason says so.
    let doc = verdict(&server, "uncaptured", "");
    assert_eq!(doc["verdict"], "inconclusive", "{doc:#}");
    let c = criterion(&doc, "inflight-vs-v1");
    assert_eq!(c["result"], "no_data", "{c:#}");
    let reason = c["reason"].as_str().unwrap();
    assert!(
        reason.contains(
            "no stream of metric `jobs.inflight` in stored baseline jobs-v1 was captured"
        ),
        "{reason}"
    );
}

/// A restart in the middle of a window: the metric slots come back from the history, so a
/// queue that was over its limit just before the restart still fails the gate, and a breaker's
/// time in its state, which the history cannot give back, is no data until the window has
/// passed the restart (before, both were judged on the points since the restart alone).
#[test]
fn a_restart_keeps_the_metric_window() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("history");
    let config = format!(
        "{}history:\n  dir: {}\n  flush_interval: 1s\ngates:\n  - name: queue\n    service: jobs\n    window: 1m\n    criteria:\n      \
         - {{name: queue-depth, otlp: jobs.queue.depth, aggregate: max, pass: 200, fail: 500}}\n  \
         - name: breaker\n    service: jobs\n    window: 1m\n    criteria:\n      \
         - {{name: breaker-open, otlp: jobs.breaker.state, aggregate: time_in_state, state: 1, pass: 5, fail: 300}}\n",
        fast(),
        dir.display()
    );
    let server = Server::start(&config);
    let t = now_ns();
    let points = |t: u64, depth: f64, open: f64| {
        vec![
            gauge(
                "jobs.queue.depth",
                vec![point(0, t, depth, &[("queue", "jobs")])],
            ),
            gauge("jobs.breaker.state", vec![point(0, t, open, &[])]),
        ]
    };
    send(
        &server,
        "jobs",
        "v2",
        "pod-1",
        points(t - 4 * SEC, 620.0, 1.0),
    );
    send(
        &server,
        "jobs",
        "v2",
        "pod-1",
        points(t - 2 * SEC, 150.0, 1.0),
    );
    let doc = verdict(&server, "queue", "canary.version=v2");
    assert_eq!(doc["verdict"], "fail", "{doc:#}");
    let (clean, log) = server.terminate(Duration::from_secs(15));
    assert!(clean, "{log}");

    let server = Server::start(&config);
    let log = server.log_text();
    assert!(
        log.contains("metric slots reloaded from the history"),
        "{log}"
    );
    // Two streams, each with the slots of its two points (1 s slots).
    assert_eq!(server.metric("slogate_metric_restored_streams"), 2.0);
    assert!(server.metric("slogate_metric_restored_slots") >= 2.0);
    send(&server, "jobs", "v2", "pod-1", points(now_ns(), 100.0, 0.0));
    let doc = verdict(&server, "queue", "canary.version=v2");
    let c = criterion(&doc, "queue-depth");
    assert_eq!(c["observed"].as_f64(), Some(620.0), "{c:#}");
    assert_eq!(
        doc["verdict"], "fail",
        "the window still holds the 620 from before: {doc:#}"
    );
    assert_eq!(c["points"].as_u64(), Some(3), "{c:#}");
    let doc = verdict(&server, "breaker", "canary.version=v2");
    assert_eq!(doc["verdict"], "inconclusive", "{doc:#}");
    let c = criterion(&doc, "breaker-open");
    assert_eq!(c["result"], "no_data", "{c:#}");
    assert!(
        c["reason"]
            .as_str()
            .unwrap()
            .contains("reaches back before slogate started"),
        "{c:#}"
    );
}
