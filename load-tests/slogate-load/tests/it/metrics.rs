//! The metrics mode: generated requests are valid OTLP, shaped as configured, with cumulative
//! values that only grow; the run loop's accounting matches what servers counted.

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value::Value};
use opentelemetry_proto::tonic::metrics::v1::{ResourceMetrics, metric::Data, number_data_point};
use prost::Message;
use slogate_load::metrics::{EXP_SCALE, MetricsScenario, MetricsSpec, build_templates, now_ns};
use slogate_load::pool::Encoding;
use slogate_load::{Protocol, Rate, Target};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn text(v: &KeyValue) -> String {
    match v.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        other => format!("{other:?}"),
    }
}

fn res_attr(rm: &ResourceMetrics, key: &str) -> String {
    rm.resource
        .as_ref()
        .unwrap()
        .attributes
        .iter()
        .find(|a| a.key == key)
        .map(text)
        .unwrap_or_else(|| panic!("resource lacks {key}"))
}

/// One decoded point: stream identity, kind, time, start time and the values that must never
/// decrease for a cumulative stream (a monotonic sum's value; a histogram's or summary's count,
/// sum and buckets).
#[derive(Debug, Clone)]
struct Pt {
    id: String,
    kind: &'static str,
    time: u64,
    start: u64,
    monotone: Vec<f64>,
    /// Gauges and up-down counters: the value, which may go either way.
    free: Option<f64>,
}

fn id(rm: &ResourceMetrics, metric: &str, attrs: &[KeyValue]) -> String {
    let mut a: Vec<String> = attrs
        .iter()
        .map(|k| format!("{}={}", k.key, text(k)))
        .collect();
    a.sort();
    format!(
        "{}/{}/{metric}{{{}}}",
        res_attr(rm, "service.name"),
        res_attr(rm, "service.instance.id"),
        a.join(",")
    )
}

fn num(v: &Option<number_data_point::Value>) -> f64 {
    match v {
        Some(number_data_point::Value::AsInt(i)) => *i as f64,
        Some(number_data_point::Value::AsDouble(d)) => *d,
        None => panic!("number point without a value"),
    }
}

/// Decodes a request and checks every point's own validity (what slogate's decoder refuses).
fn points(req: &ExportMetricsServiceRequest) -> Vec<Pt> {
    let mut out = Vec::new();
    for rm in &req.resource_metrics {
        for key in [
            "service.name",
            "service.version",
            "service.instance.id",
            "deployment.environment.name",
        ] {
            res_attr(rm, key);
        }
        for sm in &rm.scope_metrics {
            for m in &sm.metrics {
                assert!(!m.unit.is_empty(), "{} has no unit", m.name);
                match m.data.as_ref().expect("metric with data") {
                    Data::Gauge(g) => {
                        for p in &g.data_points {
                            out.push(Pt {
                                id: id(rm, &m.name, &p.attributes),
                                kind: "gauge",
                                time: p.time_unix_nano,
                                start: p.start_time_unix_nano,
                                monotone: vec![],
                                free: Some(num(&p.value)),
                            });
                        }
                    }
                    Data::Sum(s) => {
                        assert_eq!(s.aggregation_temporality, 2, "cumulative");
                        for p in &s.data_points {
                            let v = num(&p.value);
                            assert!(v.is_finite() && v >= 0.0);
                            out.push(Pt {
                                id: id(rm, &m.name, &p.attributes),
                                kind: if s.is_monotonic { "sum" } else { "updown" },
                                time: p.time_unix_nano,
                                start: p.start_time_unix_nano,
                                monotone: if s.is_monotonic { vec![v] } else { vec![] },
                                free: (!s.is_monotonic).then_some(v),
                            });
                        }
                    }
                    Data::Histogram(h) => {
                        assert_eq!(h.aggregation_temporality, 2);
                        for p in &h.data_points {
                            assert_eq!(p.explicit_bounds.len(), 15);
                            assert_eq!(p.bucket_counts.len(), 16, "16 buckets");
                            assert!(p.explicit_bounds.windows(2).all(|w| w[0] < w[1]));
                            assert_eq!(p.bucket_counts.iter().sum::<u64>(), p.count);
                            let (min, max, sum) = (p.min.unwrap(), p.max.unwrap(), p.sum.unwrap());
                            assert!(0.0 < min && min <= max);
                            assert!(sum >= min * p.count as f64 && sum <= max * p.count as f64);
                            let mut mono = vec![p.count as f64, sum];
                            mono.extend(p.bucket_counts.iter().map(|&c| c as f64));
                            out.push(Pt {
                                id: id(rm, &m.name, &p.attributes),
                                kind: "histogram",
                                time: p.time_unix_nano,
                                start: p.start_time_unix_nano,
                                monotone: mono,
                                free: None,
                            });
                        }
                    }
                    Data::ExponentialHistogram(h) => {
                        assert_eq!(h.aggregation_temporality, 2);
                        for p in &h.data_points {
                            assert_eq!(p.scale, EXP_SCALE);
                            let pos = p.positive.as_ref().unwrap();
                            assert!(
                                (36..=44).contains(&pos.bucket_counts.len()),
                                "{} exponential buckets",
                                pos.bucket_counts.len()
                            );
                            let neg: u64 = p
                                .negative
                                .as_ref()
                                .map_or(0, |n| n.bucket_counts.iter().sum());
                            assert_eq!(
                                p.zero_count + pos.bucket_counts.iter().sum::<u64>() + neg,
                                p.count
                            );
                            // Every observation lies within [min, max]: the buckets with counts
                            // overlap that range.
                            let base = 2f64.powf(2f64.powi(-EXP_SCALE));
                            let (min, max) = (p.min.unwrap(), p.max.unwrap());
                            for (k, &c) in pos.bucket_counts.iter().enumerate() {
                                let lo = base.powi(pos.offset + k as i32);
                                if c > 0 {
                                    assert!(lo < max && lo * base >= min, "bucket {k} off range");
                                }
                            }
                            let mut mono = vec![p.count as f64, p.sum.unwrap()];
                            mono.extend(pos.bucket_counts.iter().map(|&c| c as f64));
                            out.push(Pt {
                                id: id(rm, &m.name, &p.attributes),
                                kind: "exponential_histogram",
                                time: p.time_unix_nano,
                                start: p.start_time_unix_nano,
                                monotone: mono,
                                free: None,
                            });
                        }
                    }
                    Data::Summary(s) => {
                        for p in &s.data_points {
                            let q: Vec<f64> = p.quantile_values.iter().map(|q| q.value).collect();
                            assert!(q.len() >= 3 && q.windows(2).all(|w| w[0] <= w[1]));
                            out.push(Pt {
                                id: id(rm, &m.name, &p.attributes),
                                kind: "summary",
                                time: p.time_unix_nano,
                                start: p.start_time_unix_nano,
                                monotone: vec![p.count as f64, p.sum],
                                free: None,
                            });
                        }
                    }
                }
            }
        }
    }
    out
}

#[test]
fn metrics_requests_decode_with_every_point_type_and_configured_counts() {
    let spec = MetricsSpec {
        services: 3,
        instances: 2,
        series: 100,
        batch_size: 32,
        ..MetricsSpec::default()
    };
    let now = now_ns();
    let mut templates = build_templates(&spec, now);
    assert_eq!(templates.len(), 4, "ceil(100 / 32) requests per round");
    let mut ids = BTreeSet::new();
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    let mut services = BTreeSet::new();
    for (k, t) in templates.iter_mut().enumerate() {
        let body = t.encode_next(now, Encoding::Protobuf, false);
        let req = ExportMetricsServiceRequest::decode(body.clone()).expect("valid protobuf");
        // The sink's wire walk agrees with prost.
        let pts = points(&req);
        assert_eq!(
            slogate_load::sink::count_points(&body),
            Some(pts.len() as u64)
        );
        assert_eq!(pts.len(), if k < 3 { 32 } else { 4 }, "request {k}");
        for p in pts {
            assert_eq!(p.time, now);
            assert!(ids.insert(p.id.clone()), "stream {} twice", p.id);
            *kinds.entry(p.kind).or_default() += 1;
        }
        for rm in &req.resource_metrics {
            services.insert(res_attr(rm, "service.name"));
            // Metrics of one name are grouped, as SDKs send them.
            let names: Vec<&str> = rm.scope_metrics[0]
                .metrics
                .iter()
                .map(|m| m.name.as_str())
                .collect();
            let unique: BTreeSet<&str> = names.iter().copied().collect();
            assert_eq!(unique.len(), names.len());
        }
        // JSON and gzip encode the same request.
        let json = t.encode_next(now + 1, Encoding::Json, false);
        let back: ExportMetricsServiceRequest = serde_json::from_slice(&json).unwrap();
        assert_eq!(points(&back).len(), t.points());
        let gz = t.encode_next(now + 2, Encoding::Protobuf, true);
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut raw).unwrap();
        assert_eq!(
            points(&ExportMetricsServiceRequest::decode(&raw[..]).unwrap()).len(),
            t.points()
        );
    }
    assert_eq!(ids.len(), 100, "every stream distinct");
    assert_eq!(services.len(), 3);
    for kind in [
        "gauge",
        "sum",
        "updown",
        "histogram",
        "exponential_histogram",
        "summary",
    ] {
        assert!(kinds.contains_key(kind), "no {kind} points: {kinds:?}");
    }
    // The mix of slogate_load::metrics::CYCLE (4 histograms in 16, the 17th stream another):
    // 100 streams over 6 resources are 4 x 17 + 2 x 16.
    assert_eq!(kinds["histogram"], 4 * 5 + 2 * 4);
    let by_type = slogate_load::metrics::family_counts(&spec);
    assert_eq!(by_type.values().sum::<usize>(), 100);
    assert_eq!(by_type["summary"], kinds["summary"]);
}

#[test]
fn cumulative_values_only_grow_across_rounds() {
    let spec = MetricsSpec {
        services: 2,
        instances: 1,
        series: 64,
        batch_size: 20,
        ..MetricsSpec::default()
    };
    let t0 = now_ns();
    let mut templates = build_templates(&spec, t0);
    let mut last: BTreeMap<String, Pt> = BTreeMap::new();
    let mut moved = 0;
    for round in 0..6u64 {
        let mut seen = 0;
        for t in &mut templates {
            // The same clock reading twice: times still strictly increase.
            let now = t0 + round / 2 * 1_000_000_000;
            let req =
                ExportMetricsServiceRequest::decode(t.encode_next(now, Encoding::Protobuf, false))
                    .unwrap();
            for p in points(&req) {
                seen += 1;
                if let Some(prev) = last.get(&p.id) {
                    assert!(p.time > prev.time, "{}: time went back", p.id);
                    assert_eq!(p.start, prev.start, "{}: start time moved", p.id);
                    for (a, b) in prev.monotone.iter().zip(&p.monotone) {
                        assert!(b >= a, "{} decreased: {a} -> {b}", p.id);
                    }
                    if p.monotone.first() > prev.monotone.first() || p.free != prev.free {
                        moved += 1;
                    }
                }
                if p.kind != "gauge" {
                    assert!(p.start > 0 && p.start < p.time, "{}: start time", p.id);
                }
                last.insert(p.id.clone(), p);
            }
        }
        assert_eq!(seen, 64, "one point per stream per round");
    }
    // Almost every stream changes every round (a gauge may stay put now and then).
    assert!(moved > 5 * 64 * 9 / 10, "only {moved} changes");
}

/// An OTLP/HTTP metrics receiver that decodes with prost, counts points, refuses every 7th
/// request with 503, reports 3 points rejected in every 5th and checks each stream's order.
#[derive(Default)]
struct Receiver {
    requests: AtomicU64,
    refused: AtomicU64,
    points: AtomicU64,
    rejected: AtomicU64,
    last: Mutex<BTreeMap<String, Pt>>,
    out_of_order: AtomicU64,
}

async fn receive(r: Arc<Receiver>, headers: HeaderMap, body: Bytes) -> (StatusCode, Vec<u8>) {
    let n = r.requests.fetch_add(1, Relaxed);
    if n % 7 == 6 {
        r.refused.fetch_add(1, Relaxed);
        return (StatusCode::SERVICE_UNAVAILABLE, b"busy".to_vec());
    }
    assert_eq!(headers["content-type"], "application/x-protobuf");
    let req = ExportMetricsServiceRequest::decode(body).expect("valid protobuf");
    let pts = points(&req);
    r.points.fetch_add(pts.len() as u64, Relaxed);
    let mut last = r.last.lock().unwrap();
    for p in pts {
        if let Some(prev) = last.get(&p.id)
            && (p.time <= prev.time || p.monotone.iter().zip(&prev.monotone).any(|(a, b)| a < b))
        {
            r.out_of_order.fetch_add(1, Relaxed);
        }
        last.insert(p.id.clone(), p);
    }
    let resp = if n % 5 == 4 {
        r.rejected.fetch_add(3, Relaxed);
        ExportMetricsServiceResponse {
            partial_success: Some(ExportMetricsPartialSuccess {
                rejected_data_points: 3,
                error_message: "3 points out of range".into(),
            }),
        }
    } else {
        ExportMetricsServiceResponse::default()
    };
    (StatusCode::OK, resp.encode_to_vec())
}

fn serve(app: axum::Router) -> (u16, tokio::runtime::Runtime) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
    (port, rt)
}

#[test]
fn end_to_end_http_metrics_accounting() {
    let r = Arc::new(Receiver::default());
    let rr = r.clone();
    let (port, _rt) = serve(
        axum::Router::new()
            .route(
                "/v1/metrics",
                axum::routing::post(move |h: HeaderMap, b: Bytes| receive(rr.clone(), h, b)),
            )
            .layer(axum::extract::DefaultBodyLimit::max(64 << 20)),
    );
    let spec = MetricsSpec {
        services: 4,
        instances: 1,
        series: 400,
        batch_size: 50,
        ..MetricsSpec::default()
    };
    let mut sc = MetricsScenario::new(
        Target {
            endpoint: format!("http://127.0.0.1:{port}"),
            protocol: Protocol::HttpProtobuf,
            gzip: false,
        },
        spec,
        Rate::PerSecond(20_000.0),
        Duration::from_millis(1500),
    );
    sc.concurrency = 4;
    let report = slogate_load::run_metrics_blocking(&sc).unwrap();
    println!("{report}");
    assert_eq!(report.requests_failed, 0, "{:?}", report.first_error);
    assert!(report.requests_ok > 10);
    assert_eq!(report.requests_per_round, 8);
    assert_eq!(report.throttled, r.refused.load(Relaxed));
    assert!(report.throttled > 0);
    assert_eq!(
        report.errors_by_status.get("http 503").copied(),
        Some(report.throttled)
    );
    assert_eq!(
        report.points_accepted + report.points_rejected,
        r.points.load(Relaxed)
    );
    assert_eq!(report.points_rejected, r.rejected.load(Relaxed));
    assert!(report.points_rejected > 0);
    assert_eq!(
        report.points_sent,
        report.points_accepted + report.points_rejected + report.points_failed
    );
    assert_eq!(report.points_failed, report.throttled * 50);
    assert_eq!(r.out_of_order.load(Relaxed), 0, "a stream went back");
    // Paced: at most 1.5 s x 20k points/s plus the first request.
    assert!(report.points_sent <= 30_000 + 50, "{}", report.points_sent);
    assert!(!report.not_served());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_grpc_metrics_into_the_counting_sink() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let counters = Arc::new(slogate_load::sink::SinkCounters::default());
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    tokio::spawn(slogate_load::sink::serve(
        Some(addr),
        None,
        counters.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let spec = MetricsSpec {
        services: 2,
        instances: 3,
        series: 1000,
        batch_size: 300,
        ..MetricsSpec::default()
    };
    let sc = MetricsScenario::new(
        Target {
            endpoint: format!("http://127.0.0.1:{port}"),
            protocol: Protocol::Grpc,
            gzip: true,
        },
        spec,
        Rate::Max,
        Duration::from_millis(800),
    );
    let report = slogate_load::run_metrics(&sc).await.unwrap();
    println!("{report}");
    assert_eq!(report.requests_failed, 0, "{:?}", report.first_error);
    assert!(report.requests_ok > 4);
    assert_eq!(report.points_accepted, counters.points.load(Relaxed));
    assert_eq!(report.requests_ok, counters.metric_requests.load(Relaxed));
    assert_eq!(counters.spans.load(Relaxed), 0);
    assert!(report.rounds_min >= 1);
}

#[test]
fn a_server_without_metrics_is_reported_as_such() {
    // Traces only: /v1/metrics is a 404.
    let (port, _rt) = serve(axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(|| async { StatusCode::OK }),
    ));
    let sc = MetricsScenario::new(
        Target {
            endpoint: format!("http://127.0.0.1:{port}"),
            protocol: Protocol::HttpProtobuf,
            gzip: false,
        },
        MetricsSpec {
            series: 20,
            services: 1,
            ..MetricsSpec::default()
        },
        Rate::PerSecond(1000.0),
        Duration::from_millis(300),
    );
    let report = slogate_load::run_metrics_blocking(&sc).unwrap();
    assert_eq!(report.requests_ok, 0);
    assert!(report.errors_by_status["http 404"] > 0);
    assert!(report.not_served());
}
