//! What a cardinality flood costs per span against normal traffic, through the real ingest
//! pipeline into the registry: 512-span requests over 4 services, either on 16 known routes or
//! with a new route every span and a new version every request (over the caps).
//!
//! `cargo run --release -p slogate-window --example flood` (figures in BENCHMARKS.md).

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span::SpanKind};
use prost::Message;
use slogate_ingest::extract::ExtractConfig;
use slogate_ingest::{IngestLimits, IngestStats, Pipeline};
use slogate_window::{ManualClock, Registry, WindowConfig};
use std::sync::Arc;
use std::time::Instant;

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

fn request(seed: u64, flood: bool) -> Vec<u8> {
    let resource_spans = ["checkout", "auth", "search", "recommendations"]
        .iter()
        .enumerate()
        .map(|(si, svc)| ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", svc),
                    kv(
                        "service.version",
                        &if flood {
                            format!("v{seed}")
                        } else {
                            "v1".into()
                        },
                    ),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: (0..128u64)
                    .map(|i| {
                        let n = seed * 1000 + si as u64 * 128 + i;
                        let route = if flood {
                            format!("/flood/{n}")
                        } else {
                            format!("/items/{}", i % 16)
                        };
                        Span {
                            trace_id: (n as u128 + 1).to_le_bytes().to_vec(),
                            span_id: (n + 1).to_le_bytes().to_vec(),
                            name: "handler".into(),
                            kind: SpanKind::Server as i32,
                            start_time_unix_nano: 1_700_000_000_000_000_000,
                            end_time_unix_nano: 1_700_000_000_000_000_000
                                + 1_000_000 * (1 + n % 300),
                            attributes: vec![
                                kv("http.request.method", "GET"),
                                kv("http.route", &route),
                            ],
                            ..Default::default()
                        }
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest { resource_spans }.encode_to_vec()
}

/// Nanoseconds per span over `rounds` requests, after 20 warm-up requests.
fn measure(flood: bool, rounds: u64) -> f64 {
    let cfg = WindowConfig {
        max_series_per_service: 16,
        max_overflow_series_per_service: 2,
        ..WindowConfig::default()
    };
    let registry = Registry::new(cfg, ManualClock::new(1_800_000_000));
    let pipeline = Pipeline::new(
        registry,
        ExtractConfig::default(),
        IngestLimits::default(),
        Arc::new(IngestStats::default()),
    );
    for seed in 1..=20 {
        pipeline.process(&request(seed, flood), false).unwrap();
    }
    let requests: Vec<Vec<u8>> = (0..rounds).map(|r| request(100 + r, flood)).collect();
    let started = Instant::now();
    for body in &requests {
        pipeline.process(body, false).unwrap();
    }
    started.elapsed().as_nanos() as f64 / (rounds * 512) as f64
}

fn main() {
    let rounds = 2_000;
    // Alternate, so a noisy neighbour hits both alike.
    let (mut normal, mut flood) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        normal.push(measure(false, rounds));
        flood.push(measure(true, rounds));
    }
    normal.sort_by(f64::total_cmp);
    flood.sort_by(f64::total_cmp);
    println!(
        "ns per span, median of 5 runs of {rounds} requests: normal {:.1}, flood over the caps {:.1} (ratio {:.2})",
        normal[2],
        flood[2],
        flood[2] / normal[2]
    );
}
