//! Realistic spans and pools of pre-encoded export requests.
//!
//! Encoding is done once, before sending starts: the run loop only replays `Bytes`, so the
//! generator costs a memcpy per request rather than a protobuf encode per span. Each pooled
//! request remembers its spans' exact durations and error count, so what was sent can be
//! accounted exactly by counting how often each pooled request went out.

use crate::scenario::{CohortSettings, CohortSpec, Operation};
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};
use prost::Message;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// How a pool's request bodies are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

/// What to build a pool from.
#[derive(Debug, Clone, Copy)]
pub struct PoolParams<'a> {
    pub cohort: &'a CohortSpec,
    pub settings: CohortSettings,
    pub batch_size: usize,
    pub pool_size: usize,
    pub seed: u64,
    pub encoding: Encoding,
    /// Compress bodies once here (OTLP/HTTP); gRPC compression is per message in tonic.
    pub gzip_body: bool,
}

/// One ready-to-send export request and what it contains.
#[derive(Debug, Clone)]
pub struct PooledRequest {
    pub body: Bytes,
    pub spans: u32,
    pub errors: u32,
    /// Distinct span durations in nanoseconds, ascending, with how many spans have each.
    pub durations: Vec<(u64, u32)>,
}

/// The requests one cohort replays during one segment.
#[derive(Debug, Clone)]
pub struct Pool {
    pub requests: Vec<PooledRequest>,
}

const STATUS_CODE_ERROR: i32 = status::StatusCode::Error as i32;

fn kv(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}
fn s(key: &str, v: impl Into<String>) -> KeyValue {
    kv(key, any_value::Value::StringValue(v.into()))
}
fn i(key: &str, v: i64) -> KeyValue {
    kv(key, any_value::Value::IntValue(v))
}

const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "okhttp/4.12.0",
    "Go-http-client/2.0",
    "python-requests/2.31.0",
    "grpc-gateway/2.19.1 envoy/1.29.2",
];

const LANGUAGES: &[(&str, &str, &str)] = &[
    ("java", "1.37.0", "io.opentelemetry.tomcat-10.0"),
    (
        "go",
        "1.26.0",
        "go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp",
    ),
    ("python", "1.24.0", "opentelemetry.instrumentation.flask"),
    ("nodejs", "1.24.1", "@opentelemetry/instrumentation-http"),
    ("rust", "0.29.0", "tower-http"),
];

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn nonzero_bytes<const N: usize>(rng: &mut SmallRng) -> Vec<u8> {
    loop {
        let b: [u8; N] = rng.random();
        if b.iter().any(|&x| x != 0) {
            return b.to_vec();
        }
    }
}

/// `/cart/{id}` → `/cart/48213`: the concrete path a templated route was hit with.
fn concrete_path(route: &str, rng: &mut SmallRng) -> String {
    let mut out = String::with_capacity(route.len() + 8);
    let mut rest = route;
    while let Some(open) = rest.find(['{', ':']) {
        out.push_str(&rest[..open]);
        let after = &rest[open..];
        let end = if after.starts_with('{') {
            after.find('}').map_or(after.len(), |e| e + 1)
        } else {
            after.find('/').unwrap_or(after.len())
        };
        out.push_str(&rng.random_range(1000..1_000_000u32).to_string());
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

fn resource(c: &CohortSpec, pod: usize, seed: u64) -> Resource {
    let h = fnv(&c.service);
    let (lang, sdk_version, _) = match &c.sdk_language {
        Some(l) => {
            LANGUAGES
                .iter()
                .find(|x| x.0 == l)
                .copied()
                .unwrap_or((l.as_str(), "1.0.0", ""))
        }
        None => LANGUAGES[(h % LANGUAGES.len() as u64) as usize],
    };
    // Pod names look like a Deployment's: stable per version, different per replica.
    let rs = fnv(&format!("{}{}", c.version, seed)) & 0xff_ffff_ffff;
    let pod_name = format!(
        "{}-{:x}-{:05x}",
        c.service,
        rs % 0xff_ffff,
        (fnv(&pod.to_string()) ^ h) & 0xfffff
    );
    Resource {
        attributes: vec![
            s("service.name", c.service.clone()),
            s("service.version", c.version.clone()),
            s("service.namespace", "shop"),
            s(
                "service.instance.id",
                format!("{pod_name}-{:08x}", h as u32),
            ),
            s("deployment.environment.name", c.env.clone()),
            s(
                "host.name",
                format!("ip-10-42-{}-{}.ec2.internal", (h >> 8) % 250, pod % 250),
            ),
            s("k8s.pod.name", pod_name),
            s("k8s.namespace.name", format!("{}-{}", c.env, c.service)),
            s("telemetry.sdk.name", "opentelemetry"),
            s("telemetry.sdk.language", lang.to_string()),
            s("telemetry.sdk.version", sdk_version.to_string()),
        ],
        dropped_attributes_count: 0,
        entity_refs: Vec::new(),
    }
}

/// Which error signal a span carries. Alternating the two exercises each of the server's
/// error rules on its own (status ERROR without a 5xx, and a 503 without status ERROR).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    None,
    StatusError,
    Http503,
}

/// One SERVER span for `op` lasting `duration_ns` and ending at `end_ns`.
pub fn make_span(
    rng: &mut SmallRng,
    c: &CohortSpec,
    op: &Operation,
    duration_ns: u64,
    end_ns: u64,
    err: ErrorKind,
) -> Span {
    let http_status = match err {
        ErrorKind::Http503 => 503,
        // Some 4xx for realism: they must not count as errors.
        _ if rng.random_ratio(1, 50) => 404,
        _ if op.method == "POST" => 201,
        _ => 200,
    };
    let mut attributes = vec![
        s("http.request.method", op.method.clone()),
        s("http.route", op.route.clone()),
        s("url.path", concrete_path(&op.route, rng)),
        s("url.scheme", "https"),
        i("http.response.status_code", http_status),
        s(
            "server.address",
            format!("{}.{}.svc.cluster.local", c.service, c.env),
        ),
        i("server.port", 8080),
        s(
            "network.protocol.version",
            if rng.random_ratio(1, 3) { "2" } else { "1.1" },
        ),
        s(
            "user_agent.original",
            USER_AGENTS[rng.random_range(0..USER_AGENTS.len())],
        ),
        s(
            "client.address",
            format!(
                "10.{}.{}.{}",
                rng.random_range(0..64u8),
                rng.random::<u8>(),
                rng.random_range(1..255u8)
            ),
        ),
        i("http.response.body.size", rng.random_range(120..48_000)),
    ];
    if op.method != "GET" && op.method != "DELETE" {
        attributes.push(i("http.request.body.size", rng.random_range(60..4_096)));
    }
    let mut events = Vec::new();
    let status = match err {
        ErrorKind::StatusError => {
            events.push(span::Event {
                time_unix_nano: end_ns.saturating_sub(duration_ns / 10),
                name: "exception".into(),
                attributes: vec![
                    s("exception.type", "UpstreamError"),
                    s("exception.message", "upstream returned malformed data"),
                ],
                dropped_attributes_count: 0,
            });
            Some(Status {
                message: "upstream error".into(),
                code: STATUS_CODE_ERROR,
            })
        }
        _ => None,
    };
    let mut span = Span {
        trace_id: nonzero_bytes::<16>(rng),
        span_id: nonzero_bytes::<8>(rng),
        trace_state: String::new(),
        // Entry spans usually continue a trace started at the edge.
        parent_span_id: nonzero_bytes::<8>(rng),
        flags: 0x301, // sampled, parent is remote
        name: format!("{} {}", op.method, op.route),
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: end_ns - duration_ns,
        end_time_unix_nano: end_ns,
        attributes,
        dropped_attributes_count: 0,
        events,
        dropped_events_count: 0,
        links: Vec::new(),
        dropped_links_count: 0,
        status,
    };
    // Long service names and routes appear several times in a span; keep such spans under
    // 800 bytes by giving up the optional parts first, as a size-conscious SDK config would.
    if span.encoded_len() > MAX_SPAN_BYTES {
        span.events.clear();
        span.attributes.retain(|a| !a.key.ends_with(".body.size"));
        if let Some(ua) = span
            .attributes
            .iter_mut()
            .find(|a| a.key == "user_agent.original")
        {
            *ua = s("user_agent.original", "okhttp/4.12.0");
        }
    }
    span
}

/// The largest span the generator aims for (spans of real SDKs are typically 300 to 800 bytes).
pub const MAX_SPAN_BYTES: usize = 800;

/// The export requests of a pool, not yet encoded, with each request's span durations in ns.
pub fn build_requests(p: &PoolParams<'_>) -> Vec<(ExportTraceServiceRequest, Vec<u64>, u32)> {
    let c = p.cohort;
    let ops = c.operations.expand();
    let sampler = c.latency.sampler();
    let mut rng = SmallRng::seed_from_u64(p.seed ^ fnv(&c.display_name()));
    let lang = resource(c, 0, p.seed)
        .attributes
        .iter()
        .find(|k| k.key == "telemetry.sdk.language")
        .cloned();
    let scope_name = lang
        .and_then(|k| match k.value?.value? {
            any_value::Value::StringValue(l) => LANGUAGES.iter().find(|x| x.0 == l).map(|x| x.2),
            _ => None,
        })
        .unwrap_or("io.opentelemetry.instrumentation.http");
    // Far enough in the past that start >= 0 for any sane latency, close enough to count as now.
    let end_base = now_ns();
    let mut errors_so_far = 0u64;
    let mut out = Vec::with_capacity(p.pool_size);
    for r in 0..p.pool_size {
        let mut spans = Vec::with_capacity(p.batch_size);
        let mut durations = Vec::with_capacity(p.batch_size);
        let mut errors = 0u32;
        for k in 0..p.batch_size {
            let idx = (r * p.batch_size + k) as u64;
            // Errors spread evenly over the pool, so any prefix of a replay has the right rate
            // and the pool as a whole has exactly round(error_rate * spans) errors.
            let due = ((idx + 1) as f64 * p.settings.error_rate + 1e-9).floor() as u64;
            let err = if due > errors_so_far {
                errors_so_far = due;
                errors += 1;
                if due % 2 == 1 {
                    ErrorKind::StatusError
                } else {
                    ErrorKind::Http503
                }
            } else {
                ErrorKind::None
            };
            let ms = sampler.sample_ms(&mut rng) * p.settings.latency_multiplier;
            let dur = (ms * 1e6).round().max(0.0) as u64;
            let end = end_base - rng.random_range(0..1_000_000_000u64);
            let op = &ops[(idx % ops.len() as u64) as usize];
            spans.push(make_span(&mut rng, c, op, dur.min(end), end, err));
            durations.push(dur.min(end));
        }
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(resource(c, r % c.pods, p.seed)),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: scope_name.into(),
                        version: "2.3.0".into(),
                        attributes: Vec::new(),
                        dropped_attributes_count: 0,
                    }),
                    spans,
                    schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
                }],
                schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
            }],
        };
        out.push((req, durations, errors));
    }
    out
}

/// Sorted (duration, count) pairs of a list of durations.
pub fn histogram(mut durations: Vec<u64>) -> Vec<(u64, u32)> {
    durations.sort_unstable();
    let mut out: Vec<(u64, u32)> = Vec::new();
    for d in durations {
        match out.last_mut() {
            Some((v, n)) if *v == d => *n += 1,
            _ => out.push((d, 1)),
        }
    }
    out
}

/// Encodes a request the way an exporter would put it on the wire.
pub fn encode(req: &ExportTraceServiceRequest, encoding: Encoding, gzip: bool) -> Bytes {
    let raw = match encoding {
        Encoding::Protobuf => req.encode_to_vec(),
        Encoding::Json => serde_json::to_vec(req).expect("otlp request serialises to json"),
    };
    if !gzip {
        return Bytes::from(raw);
    }
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(raw.len() / 4),
        flate2::Compression::fast(),
    );
    enc.write_all(&raw).expect("write to vec");
    Bytes::from(enc.finish().expect("finish gzip to vec"))
}

/// Builds and encodes a pool.
pub fn build_pool(p: &PoolParams<'_>) -> Pool {
    let requests = build_requests(p)
        .into_iter()
        .map(|(req, durations, errors)| PooledRequest {
            body: encode(&req, p.encoding, p.gzip_body),
            spans: durations.len() as u32,
            errors,
            durations: histogram(durations),
        })
        .collect();
    Pool { requests }
}
