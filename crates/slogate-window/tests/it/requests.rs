//! The export requests the allocation tests and `examples/flood.rs` send, and the real ingest
//! pipeline into a registry that takes them.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span::SpanKind};
use prost::Message;
use slogate_ingest::extract::ExtractConfig;
use slogate_ingest::{IngestLimits, IngestStats, Pipeline};
use slogate_window::{ManualClock, Registry, WindowConfig};
use std::sync::Arc;

/// A registry with `cfg` on a manual clock, and the ingest pipeline that records into it.
pub fn pipeline(cfg: WindowConfig) -> (Arc<Registry>, Pipeline<Registry>) {
    let registry = Registry::new(cfg, ManualClock::new(1_800_000_000));
    let pipeline = Pipeline::new(
        registry.clone(),
        ExtractConfig::default(),
        IngestLimits::default(),
        Arc::new(IngestStats::default()),
    );
    (registry, pipeline)
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

fn kv_int(k: &str, v: i64) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(v)),
        }),
        ..Default::default()
    }
}

/// 512 server spans over 4 services and 8 operations, with the usual attributes; with `flood`,
/// every span has a route never seen before and the request a version of its own (`v<seed>`):
/// a cardinality attack.
pub fn request_with(seed: u64, flood: bool) -> Vec<u8> {
    let services = ["checkout", "auth", "search", "recommendations"];
    let version = if flood {
        format!("v{seed}")
    } else {
        "v1.4.2".to_string()
    };
    let resource_spans = services
        .iter()
        .enumerate()
        .map(|(si, svc)| ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", svc),
                    kv("service.version", &version),
                    kv("deployment.environment.name", "prod"),
                    kv("host.name", "node-7"),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: (0..128u64)
                    .map(|i| {
                        let n = seed * 1000 + si as u64 * 128 + i;
                        Span {
                            trace_id: (n as u128 + 1).to_le_bytes().to_vec(),
                            span_id: (n + 1).to_le_bytes().to_vec(),
                            name: "handler".into(),
                            kind: SpanKind::Server as i32,
                            start_time_unix_nano: 1_700_000_000_000_000_000,
                            end_time_unix_nano: 1_700_000_000_000_000_000
                                + 1_000_000 * (1 + n % 300),
                            attributes: vec![
                                kv(
                                    "http.request.method",
                                    if i % 3 == 0 { "POST" } else { "GET" },
                                ),
                                kv(
                                    "http.route",
                                    &if flood {
                                        format!("/api/v1/flood/{n}")
                                    } else {
                                        format!("/api/v1/items/{}", i % 4)
                                    },
                                ),
                                kv("url.path", &format!("/api/v1/items/{}/{}", i % 4, n)),
                                kv_int(
                                    "http.response.status_code",
                                    if n.is_multiple_of(50) { 503 } else { 200 },
                                ),
                                kv(
                                    "user_agent.original",
                                    "Mozilla/5.0 (X11; Linux x86_64) slogate-test",
                                ),
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
