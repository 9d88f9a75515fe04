//! Spans built to hurt: a dimension value carrying the series-key separator (`0xFF`, or any
//! other invalid UTF-8), and absurd durations. Each is rejected on its own through
//! `partial_success`, on both decoders and through the HTTP receiver, while the valid spans of
//! the same request are recorded.

use axum::body::Body;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use slogate_core::{Observation, ObservationWriter, Recorder, SeriesKey, write_key};
use slogate_ingest::extract::{Dim, ExtractConfig, Reject, SpanLimits, Tally};
use slogate_ingest::wire::{decode_traces, decode_traces_with};
use slogate_ingest::{IngestLimits, IngestStats, Pipeline, json};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use tower::ServiceExt;

const T0: u64 = 1_800_000_000_000_000_000;
/// Stands for the separator in the strings below; replaced by `0xFF` in the encoded bytes.
const SEP: char = '#';

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

/// One resource with one SERVER span; `attrs` go on the span.
fn resource_spans(resource: &[(&str, &str)], name: &str, attrs: &[(&str, &str)]) -> ResourceSpans {
    resource_spans_timed(resource, name, attrs, T0, T0 + 5_000_000)
}

fn resource_spans_timed(
    resource: &[(&str, &str)],
    name: &str,
    attrs: &[(&str, &str)],
    start: u64,
    end: u64,
) -> ResourceSpans {
    ResourceSpans {
        resource: Some(Resource {
            attributes: resource.iter().map(|(k, v)| kv(k, v)).collect(),
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans: vec![Span {
                trace_id: vec![0xAB; 16],
                span_id: vec![0xCD; 8],
                name: name.into(),
                kind: 2,
                start_time_unix_nano: start,
                end_time_unix_nano: end,
                attributes: attrs.iter().map(|(k, v)| kv(k, v)).collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The legitimate series the injection aims at.
fn legit() -> ResourceSpans {
    resource_spans(
        &[
            ("service.name", "gsvc"),
            ("deployment.environment.name", "prod"),
            ("service.version", "v2"),
        ],
        "GET /api/items",
        &[],
    )
}

/// Replaces every `SEP` inside each occurrence of a `marked` string with `0xFF`, in place.
fn inject(mut bytes: Vec<u8>, marked: &str) -> Vec<u8> {
    let needle = marked.as_bytes();
    let mut i = 0;
    let mut found = false;
    while i + needle.len() <= bytes.len() {
        if &bytes[i..i + needle.len()] == needle {
            for b in &mut bytes[i..i + needle.len()] {
                if *b == SEP as u8 {
                    *b = 0xFF;
                }
            }
            found = true;
            i += needle.len();
        } else {
            i += 1;
        }
    }
    assert!(found, "{marked:?} is not in the request");
    bytes
}

fn extras_config() -> ExtractConfig {
    ExtractConfig {
        extras: vec![vec![b"tenant".to_vec()]],
        ..Default::default()
    }
}

/// `(what, the hostile resource spans, the marked string, the dimension it lands in)`.
fn separator_cases() -> Vec<(&'static str, ResourceSpans, &'static str, Dim)> {
    let base = [
        ("service.name", "gsvc"),
        ("deployment.environment.name", "prod"),
        ("service.version", "v2"),
    ];
    vec![
        (
            "service.name",
            resource_spans(
                &[("service.name", "gsvc#prod#v2#GET /api/items")],
                "GET /api/items",
                &[],
            ),
            "gsvc#prod#v2#GET /api/items",
            Dim::Service,
        ),
        (
            "deployment.environment.name",
            resource_spans(
                &[
                    ("service.name", "gsvc"),
                    ("deployment.environment.name", "prod#v2#GET /api/items#"),
                ],
                "x",
                &[],
            ),
            "prod#v2#GET /api/items#",
            Dim::Env,
        ),
        (
            "service.version",
            resource_spans(
                &[
                    ("service.name", "gsvc"),
                    ("deployment.environment.name", "prod"),
                    ("service.version", "v2#GET /api/items"),
                ],
                "x",
                &[],
            ),
            "v2#GET /api/items",
            Dim::Version,
        ),
        (
            "span name",
            resource_spans(&base, "GET /api/items#evil", &[]),
            "GET /api/items#evil",
            Dim::Operation,
        ),
        (
            "http.route",
            resource_spans(
                &base,
                "x",
                &[
                    ("http.request.method", "GET"),
                    ("http.route", "/api/items#evil"),
                ],
            ),
            "/api/items#evil",
            Dim::Operation,
        ),
        (
            "rpc.method",
            resource_spans(
                &base,
                "x",
                &[("rpc.service", "ledger.Ledger"), ("rpc.method", "Post#x")],
            ),
            "Post#x",
            Dim::Operation,
        ),
        (
            "extra dimension (span attribute)",
            resource_spans(&base, "GET /api/items", &[("tenant", "acme#evil")]),
            "acme#evil",
            Dim::Extra(0),
        ),
    ]
}

fn encode(rs: Vec<ResourceSpans>) -> Vec<u8> {
    ExportTraceServiceRequest { resource_spans: rs }.encode_to_vec()
}

#[test]
fn separator_in_any_dimension_rejects_the_span_only() {
    let cfg = extras_config();
    for (what, hostile, marked, dim) in separator_cases() {
        let bytes = inject(encode(vec![legit(), hostile]), marked);
        let (mut out, mut tally) = (Vec::new(), Tally::default());
        decode_traces(&bytes, &cfg, &mut out, &mut tally).unwrap();
        assert_eq!(out.len(), 1, "{what}: only the legitimate span is recorded");
        let mut key = Vec::new();
        write_key(&out[0], cfg.extras.len(), &mut key);
        assert_eq!(
            SeriesKey::from_key_bytes(&key),
            SeriesKey {
                service: "gsvc".into(),
                env: "prod".into(),
                version: "v2".into(),
                operation: "GET /api/items".into(),
                extras: vec!["".into()],
            },
            "{what}"
        );
        assert_eq!(tally.recorded, 1, "{what}");
        assert_eq!(tally.total_rejected(), 1, "{what}");
        assert_eq!(
            tally.first_reject,
            Some((Reject::InvalidUtf8(dim), 1, 0)),
            "{what}"
        );
        let msg = tally.message().unwrap();
        let named = match dim {
            Dim::Service => "service (resource attribute service.name",
            Dim::Env => "env (resource attribute",
            Dim::Version => "version (resource attribute",
            Dim::Operation => "operation (span name",
            Dim::Extra(_) => "extra dimension #0",
        };
        assert!(
            msg.starts_with(
                "rejected 1 invalid span(s): 1 invalid_utf8; first at resource_spans[1] span #0: "
            ) && msg.contains(named)
                && msg.ends_with("is not valid UTF-8"),
            "{what}: {msg}"
        );
    }
}

#[test]
fn other_invalid_utf8_is_rejected_and_valid_utf8_is_kept() {
    let cfg = ExtractConfig::default();
    // A lone continuation byte, a truncated sequence, an overlong encoding, a surrogate: all
    // invalid; the same service with valid multi-byte characters is recorded.
    for bad in [
        &[0x80u8][..],
        &[0xC3],
        &[0xC0, 0xAF],
        &[0xED, 0xA0, 0x80],
        &[0xFE],
    ] {
        let bytes = encode(vec![resource_spans(
            &[("service.name", "svc-####")],
            "op",
            &[],
        )]);
        let at = bytes.windows(8).position(|w| w == b"svc-####").unwrap();
        let mut bytes = bytes;
        bytes[at + 4..at + 4 + bad.len()].copy_from_slice(bad);
        for b in &mut bytes[at + 4 + bad.len()..at + 8] {
            *b = b'x';
        }
        let (mut out, mut tally) = (Vec::new(), Tally::default());
        decode_traces(&bytes, &cfg, &mut out, &mut tally).unwrap();
        assert!(out.is_empty(), "{bad:x?}");
        assert_eq!(
            tally.rejected[Reject::InvalidUtf8(Dim::Service).index()],
            1,
            "{bad:x?}"
        );
    }
    let bytes = encode(vec![resource_spans(
        &[("service.name", "caf\u{e9}-\u{1F600}-\u{FF}")],
        "r\u{e9}sum\u{e9}",
        &[],
    )]);
    let (mut out, mut tally) = (Vec::new(), Tally::default());
    decode_traces(&bytes, &cfg, &mut out, &mut tally).unwrap();
    assert_eq!(out.len(), 1, "{tally:?}");
    assert_eq!(out[0].service, "caf\u{e9}-\u{1F600}-\u{FF}".as_bytes());
}

/// The JSON decoder reads strings as bytes too: raw invalid UTF-8 and a lone surrogate escape
/// reject the span, not the request.
#[test]
fn json_invalid_utf8_rejects_the_span_only() {
    let span = |name: &[u8]| {
        let mut s = br#"{"traceId":"abababababababababababababababab","spanId":"cdcdcdcdcdcdcdcd","kind":2,"startTimeUnixNano":"1","endTimeUnixNano":"2","name":""#.to_vec();
        s.extend_from_slice(name);
        s.extend_from_slice(b"\"}");
        s
    };
    let body = |service: &[u8], name: &[u8]| {
        let mut b = br#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"gsvc"}}]},"scopeSpans":[{"spans":["#.to_vec();
        b.extend_from_slice(&span(b"ok"));
        b.extend_from_slice(
            br#"]}]},{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":""#,
        );
        b.extend_from_slice(service);
        b.extend_from_slice(br#""}}]},"scopeSpans":[{"spans":["#);
        b.extend_from_slice(&span(name));
        b.extend_from_slice(b"]}]}]}");
        b
    };
    let cases: [(&[u8], &[u8], Dim); 4] = [
        (b"gsvc\xffprod\xffv2\xffGET /api/items", b"op", Dim::Service),
        (b"gsvc", b"GET /api/items\xff", Dim::Operation),
        (b"gsvc\\ud800", b"op", Dim::Service),
        (b"gsvc", b"\\udfff", Dim::Operation),
    ];
    for (service, name, dim) in cases {
        let body = body(service, name);
        let req = json::parse(&body).unwrap_or_else(|e| panic!("{service:x?}: {e}"));
        let (mut out, mut tally) = (Vec::new(), Tally::default());
        json::extract_request(&req, &ExtractConfig::default(), &mut out, &mut tally);
        assert_eq!(out.len(), 1, "{service:x?} {name:x?}");
        assert_eq!(out[0].service, b"gsvc");
        assert_eq!(tally.first_reject, Some((Reject::InvalidUtf8(dim), 1, 0)));
    }
    // An escaped U+00FF is the valid two-byte character, not the separator byte.
    let body = body(b"gsvc\\u00ffx", b"op");
    let req = json::parse(&body).unwrap();
    let (mut out, mut tally) = (Vec::new(), Tally::default());
    json::extract_request(&req, &ExtractConfig::default(), &mut out, &mut tally);
    assert_eq!(out.len(), 2, "{tally:?}");
    assert_eq!(out[1].service, "gsvc\u{ff}x".as_bytes());
}

/// Through the HTTP receiver on both encodings: the answer is a `partial_success` naming the
/// field, and the only series recorded is the legitimate one.
#[tokio::test]
async fn http_receiver_reports_injected_separator_as_partial_success() {
    let keys = Arc::new(Keys::default());
    let pipeline = Arc::new(Pipeline::new(
        keys.clone(),
        ExtractConfig::default(),
        IngestLimits::default(),
        Arc::new(IngestStats::default()),
    ));
    let proto = inject(
        encode(vec![
            legit(),
            resource_spans(
                &[("service.name", "gsvc#prod#v2#GET /api/items")],
                "GET /api/items",
                &[],
            ),
        ]),
        "gsvc#prod#v2#GET /api/items",
    );
    let mut json_body = br#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"gsvc\xffprod\xffv2\xffGET /api/items"}}]},"scopeSpans":[{"spans":[{"traceId":"abababababababababababababababab","spanId":"cdcdcdcdcdcdcdcd","kind":2,"startTimeUnixNano":"1","endTimeUnixNano":"2","name":"GET /api/items"}]}]}]}"#.to_vec();
    // The raw string literal above holds the four characters `\xff`: make them the byte.
    while let Some(i) = json_body.windows(4).position(|w| w == br"\xff") {
        json_body.splice(i..i + 4, [0xFF]);
    }
    for (content_type, body) in [
        ("application/x-protobuf", proto),
        ("application/json", json_body),
    ] {
        let req = http::Request::post("/v1/traces")
            .header("content-type", content_type)
            .body(Body::from(body))
            .unwrap();
        let resp = slogate_ingest::http::router(pipeline.clone())
            .oneshot(req)
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{content_type}");
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let (rejected, message) = if content_type == "application/json" {
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            (
                v["partialSuccess"]["rejectedSpans"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                v["partialSuccess"]["errorMessage"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        } else {
            let r = slogate_ingest::grpc::ExportTraceServiceResponse::decode(&body[..]).unwrap();
            let p = r.partial_success.unwrap();
            (p.rejected_spans.to_string(), p.error_message)
        };
        assert_eq!(rejected, "1", "{content_type}");
        assert!(
            message.contains("invalid_utf8") && message.contains("service.name"),
            "{content_type}: {message}"
        );
    }
    let seen = keys.0.lock().unwrap().clone();
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        vec![SeriesKey {
            service: "gsvc".into(),
            env: "prod".into(),
            version: "v2".into(),
            operation: "GET /api/items".into(),
            extras: vec![],
        }],
        "nothing but the legitimate series is recorded"
    );
    assert_eq!(
        pipeline
            .stats
            .spans_rejected(Reject::InvalidUtf8(Dim::Service)),
        2
    );
}

/// `(start, end, limits, rejected?)`: the default limit is one hour, inclusive.
#[test]
fn absurd_durations_are_rejected_per_span() {
    let hour = 3_600_000_000_000u64;
    let cases: [(u64, u64, SpanLimits, Option<Reject>); 7] = [
        (
            T0,
            u64::MAX,
            SpanLimits::default(),
            Some(Reject::DurationTooLong),
        ),
        (0, T0, SpanLimits::default(), Some(Reject::DurationTooLong)),
        (T0, T0 + hour, SpanLimits::default(), None),
        (
            T0,
            T0 + hour + 1,
            SpanLimits::default(),
            Some(Reject::DurationTooLong),
        ),
        (
            T0,
            T0 - 1,
            SpanLimits::default(),
            Some(Reject::EndBeforeStart),
        ),
        (
            T0,
            T0 + 2_000_000_000,
            SpanLimits {
                max_duration: Duration::from_secs(1),
            },
            Some(Reject::DurationTooLong),
        ),
        (
            T0,
            u64::MAX,
            SpanLimits {
                max_duration: Duration::MAX,
            },
            None,
        ),
    ];
    for (start, end, limits, want) in cases {
        let hostile = resource_spans_timed(&[("service.name", "gsvc")], "op", &[], start, end);
        let bytes = encode(vec![legit(), hostile]);
        let (mut out, mut tally) = (Vec::new(), Tally::default());
        decode_traces_with(
            &bytes,
            &ExtractConfig::default(),
            &limits,
            &mut out,
            &mut tally,
        )
        .unwrap();
        let what = format!("{start}..{end} under {limits:?}");
        match want {
            Some(why) => {
                assert_eq!(out.len(), 1, "{what}");
                assert_eq!(tally.first_reject, Some((why, 1, 0)), "{what}");
            }
            None => {
                assert_eq!(out.len(), 2, "{what}");
                assert_eq!(out[1].duration_ns, end - start, "{what}");
                assert_eq!(tally.total_rejected(), 0, "{what}");
            }
        }
    }
    // The message says what the limit is.
    let bytes = encode(vec![resource_spans_timed(
        &[("service.name", "gsvc")],
        "op",
        &[],
        T0,
        u64::MAX,
    )]);
    let mut tally = Tally::default();
    decode_traces(
        &bytes,
        &ExtractConfig::default(),
        &mut Vec::new(),
        &mut tally,
    )
    .unwrap();
    assert_eq!(
        tally.message().unwrap(),
        "rejected 1 invalid span(s): 1 duration_too_long; first at resource_spans[0] span #0: \
         end_time_unix_nano - start_time_unix_nano is longer than 3600s"
    );
}

/// The pipeline applies the limits it is given, on both encodings.
#[test]
fn pipeline_applies_span_limits_to_both_encodings() {
    let keys = Arc::new(Keys::default());
    let pipeline = Pipeline::new(
        keys.clone(),
        ExtractConfig::default(),
        IngestLimits::default(),
        Arc::new(IngestStats::default()),
    )
    .with_span_limits(SpanLimits {
        max_duration: Duration::from_millis(10),
    });
    // 5 ms is kept, 20 ms is not.
    let proto = encode(vec![
        legit(),
        resource_spans_timed(&[("service.name", "gsvc")], "op", &[], T0, T0 + 20_000_000),
    ]);
    let tally = pipeline.process(&proto, false).unwrap();
    assert_eq!((tally.recorded, tally.total_rejected()), (1, 1));
    let json_body = br#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"gsvc"}}]},"scopeSpans":[{"spans":[
        {"traceId":"abababababababababababababababab","spanId":"cdcdcdcdcdcdcdcd","kind":2,"startTimeUnixNano":"1000","endTimeUnixNano":"18446744073709551615"},
        {"traceId":"abababababababababababababababab","spanId":"cdcdcdcdcdcdcdcd","kind":2,"startTimeUnixNano":"1000","endTimeUnixNano":"1001000"}]}]}]}"#;
    let tally = pipeline.process(json_body, true).unwrap();
    assert_eq!((tally.recorded, tally.total_rejected()), (1, 1));
    assert_eq!(tally.first_reject, Some((Reject::DurationTooLong, 0, 0)));
    assert_eq!(pipeline.stats.spans_rejected(Reject::DurationTooLong), 2);
}

/// A recorder that keeps the series keys it sees.
#[derive(Default)]
struct Keys(Mutex<BTreeSet<SeriesKey>>);

struct KeysWriter<'a>(&'a Keys, Vec<u8>);

impl ObservationWriter for KeysWriter<'_> {
    fn record(&mut self, obs: &Observation<'_>) {
        write_key(obs, 0, &mut self.1);
        self.0
            .0
            .lock()
            .unwrap()
            .insert(SeriesKey::from_key_bytes(&self.1));
    }
}

impl Recorder for Keys {
    type Writer<'a> = KeysWriter<'a>;
    fn writer(&self) -> KeysWriter<'_> {
        KeysWriter(self, Vec::new())
    }
}
