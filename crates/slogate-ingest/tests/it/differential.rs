//! The fast decoder and prost must agree on every observation, tally and error.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use proptest::prelude::*;
use prost::Message;
use slogate_core::Observation;
use slogate_ingest::extract::{
    AttrValue, ExtractConfig, Extracted, ResourceFields, SpanFields, Tally, extract,
};
use slogate_ingest::wire::decode_traces;

/// The reference: prost decodes the request, then the same rules run on the decoded structs.
fn reference<'a>(
    req: &'a ExportTraceServiceRequest,
    cfg: &ExtractConfig,
) -> (Vec<Observation<'a>>, Tally) {
    let (mut out, mut tally) = (Vec::new(), Tally::default());
    let attr = |v: &'a Option<AnyValue>| match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => AttrValue::Str(s.as_bytes()),
        Some(any_value::Value::IntValue(i)) => AttrValue::Int(*i),
        Some(any_value::Value::DoubleValue(d)) => AttrValue::Double(*d),
        _ => AttrValue::Absent,
    };
    for (ri, rs) in req.resource_spans.iter().enumerate() {
        let mut res = ResourceFields::default();
        for kv in rs.resource.iter().flat_map(|r| &r.attributes) {
            res.offer(cfg, kv.key.as_bytes(), attr(&kv.value));
        }
        for (si, span) in rs.scope_spans.iter().flat_map(|s| &s.spans).enumerate() {
            let mut f = SpanFields {
                trace_id_ok: span.trace_id.len() == 16 && span.trace_id.iter().any(|b| *b != 0),
                span_id_ok: span.span_id.len() == 8 && span.span_id.iter().any(|b| *b != 0),
                name: span.name.as_bytes(),
                kind: span.kind,
                start_ns: span.start_time_unix_nano,
                end_ns: span.end_time_unix_nano,
                status_code: span.status.as_ref().map_or(0, |s| s.code),
                trace_state: span.trace_state.as_bytes(),
                ..Default::default()
            };
            for kv in &span.attributes {
                f.offer(cfg, kv.key.as_bytes(), attr(&kv.value));
            }
            match extract(cfg, &res, &f) {
                Extracted::Observation(o) => {
                    out.push(o);
                    tally.recorded += 1;
                }
                Extracted::Skipped => tally.skipped += 1,
                Extracted::Rejected(why) => tally.reject(why, ri as u32, si as u32),
            }
        }
    }
    (out, tally)
}

fn kv_str(k: &str, v: &str) -> KeyValue {
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

const LONG_KEY: &str = concat!(
    "x.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
);

fn arb_attr() -> impl Strategy<Value = KeyValue> {
    let keys = prop::sample::select(vec![
        "http.request.method",
        "http.method",
        "http.route",
        "rpc.service",
        "rpc.method",
        "http.response.status_code",
        "http.status_code",
        "cloud.region",
        "user.id",
        "net.peer.name",
        // Legacy sampling attributes (an int here; doubles below).
        "SampleRate",
        "sampling.probability",
        // 130 bytes: a key whose length needs a two-byte varint.
        LONG_KEY,
    ]);
    let values = prop::sample::select(vec![
        "GET",
        "POST",
        "/cart/{id}",
        "/pay",
        "ledger.Ledger",
        "Post",
        "500",
        "eu-west-1",
        "",
    ]);
    prop_oneof![
        (keys.clone(), values).prop_map(|(k, v)| kv_str(k, v)),
        // Values around the one-byte length boundary (the decoder has a fast path for < 128).
        (keys.clone(), "[a-z/{}]{120,140}").prop_map(|(k, v)| kv_str(k, &v)),
        (
            keys.clone(),
            // One-, two- and three-byte varints around the decoder's inline cases, and negative.
            prop::sample::select(vec![
                200i64, 404, 500, 503, -1, 0, 7, 127, 128, 16_383, 16_384, 70_000
            ])
        )
            .prop_map(|(k, v)| kv_int(k, v)),
        (
            prop::sample::select(vec!["sampling.probability", "cloud.region"]),
            prop::sample::select(vec![0.25f64, 0.1, 1.0, 0.0, 2.0, f64::NAN])
        )
            .prop_map(|(k, v)| KeyValue {
                key: k.into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::DoubleValue(v))
                }),
                ..Default::default()
            }),
        keys.prop_map(|k| KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::BoolValue(true))
            }),
            ..Default::default()
        }),
    ]
}

fn arb_span() -> impl Strategy<Value = Span> {
    (
        prop::sample::select(vec![vec![1u8; 16], vec![0u8; 16], vec![7u8; 15], vec![]]),
        prop::sample::select(vec![vec![2u8; 8], vec![0u8; 8], vec![3u8; 9]]),
        prop::sample::select(vec!["GET /x", "consume", ""]),
        0i32..7,
        (
            0u64..1_000_000,
            prop_oneof![
                8 => 0u64..10_000_000_000,
                // Around the default one-hour limit, and absurd.
                1 => 3_599_999_999_990u64..3_600_000_000_010,
                1 => Just(u64::MAX / 2),
            ],
        ),
        prop::collection::vec(arb_attr(), 0..8),
        (
            prop::option::of(0i32..3),
            // Sampling thresholds, the older p-value, other vendors, and garbage.
            prop::sample::select(vec![
                "",
                "ot=th:c",
                "rojo=00f067aa0ba902b7,ot=rv:0123456789abcd;th:8",
                "ot=p:3",
                "ot=th:zz",
                "congo=t61rcWkgMzE",
            ]),
        ),
    )
        .prop_map(
            |(trace_id, span_id, name, kind, (start, dur), attributes, (code, trace_state))| Span {
                trace_state: trace_state.into(),
                trace_id,
                span_id,
                name: name.into(),
                kind,
                start_time_unix_nano: 1_700_000_000_000_000_000 + start,
                // Some spans end before they start.
                end_time_unix_nano: (1_700_000_000_000_000_000u64 + start)
                    .saturating_add(dur)
                    .saturating_sub(if dur % 7 == 0 { 2_000_000 } else { 0 }),
                attributes,
                status: code.map(|code| Status {
                    code,
                    message: "m".into(),
                }),
                ..Default::default()
            },
        )
}

fn arb_request() -> impl Strategy<Value = ExportTraceServiceRequest> {
    let resource = (
        prop::option::of(prop::sample::select(vec!["checkout", "auth", ""])),
        prop::option::of(prop::sample::select(vec!["prod", "staging"])),
        prop::option::of(prop::sample::select(vec!["v1", "v2"])),
        any::<bool>(),
    )
        .prop_map(|(svc, env, ver, legacy_env)| {
            let mut attrs = Vec::new();
            if let Some(s) = svc {
                attrs.push(kv_str("service.name", s));
            }
            if let Some(e) = env {
                attrs.push(kv_str(
                    if legacy_env {
                        "deployment.environment"
                    } else {
                        "deployment.environment.name"
                    },
                    e,
                ));
            }
            if let Some(v) = ver {
                attrs.push(kv_str("service.version", v));
            }
            attrs.push(kv_str("cloud.region", "us-east-1"));
            Resource {
                attributes: attrs,
                ..Default::default()
            }
        });
    prop::collection::vec(
        (
            resource,
            prop::collection::vec(prop::collection::vec(arb_span(), 0..6), 0..3),
        )
            .prop_map(|(resource, scopes)| ResourceSpans {
                resource: Some(resource),
                scope_spans: scopes
                    .into_iter()
                    .map(|spans| ScopeSpans {
                        spans,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
        0..4,
    )
    .prop_map(|resource_spans| ExportTraceServiceRequest { resource_spans })
}

fn config() -> ExtractConfig {
    ExtractConfig {
        extras: vec![
            vec![b"cloud.region".to_vec()],
            vec![LONG_KEY.as_bytes().to_vec()],
        ],
        ..Default::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn wire_agrees_with_prost(req in arb_request()) {
        let cfg = config();
        let bytes = req.encode_to_vec();
        let (want, want_tally) = reference(&req, &cfg);
        let (mut got, mut got_tally) = (Vec::new(), Tally::default());
        decode_traces(&bytes, &cfg, &mut got, &mut got_tally).unwrap();
        prop_assert_eq!(got, want);
        prop_assert_eq!(got_tally, want_tally);
    }

    /// Any prefix or bit flip of a valid request: the fast decoder errors exactly when prost
    /// does not accept the bytes as this message type... or at least never panics, and when it
    /// accepts, prost accepts too and they agree.
    #[test]
    fn hostile_bytes_never_panic(req in arb_request(), cut in any::<prop::sample::Index>(), flip in any::<prop::sample::Index>(), bit in 0u8..8) {
        let cfg = config();
        let mut bytes = req.encode_to_vec();
        if !bytes.is_empty() {
            let i = flip.index(bytes.len());
            bytes[i] ^= 1 << bit;
            let n = cut.index(bytes.len() + 1);
            bytes.truncate(n);
        }
        let (mut got, mut tally) = (Vec::new(), Tally::default());
        // Only requests that both decoders accept are compared.
        let ours = decode_traces(&bytes, &cfg, &mut got, &mut tally);
        if let (Ok(()), Ok(decoded)) = (ours, ExportTraceServiceRequest::decode(&bytes[..])) {
            let (want, want_tally) = reference(&decoded, &cfg);
            prop_assert_eq!(got, want);
            prop_assert_eq!(tally, want_tally);
        }
    }
}

#[test]
fn malformed_requests_report_an_offset() {
    let cases: &[(&[u8], &str)] = &[
        (
            b"\x0a\x05abc",
            "length-delimited field runs past the end of its message at byte 2",
        ),
        (b"\x0a", "truncated varint at byte 1"),
        // A group that never ends, one that ends with another field's end tag, an end tag with
        // no group, and the two wire types that do not exist.
        (b"\x13", "truncated varint at byte 1"),
        (
            b"\x13\x1c",
            "end-group tag does not match its start-group tag at byte 2",
        ),
        (
            b"\x14",
            "end-group tag without a matching start-group tag at byte 1",
        ),
        (b"\x16", "unsupported wire type at byte 1"),
        (b"\x17", "unsupported wire type at byte 1"),
        (
            b"\x0b",
            "wrong wire type for a message or string field at byte 1",
        ),
        (
            b"\x10\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
            "varint longer than 10 bytes at byte 11",
        ),
        (b"garbage!", "malformed protobuf"),
    ];
    for (bytes, want) in cases {
        let err = decode_traces(bytes, &config(), &mut Vec::new(), &mut Tally::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{bytes:?}: {err}");
    }
}

/// A length-delimited field: one-byte tag, varint length, payload.
fn field(tag: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let mut n = payload.len();
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out.extend_from_slice(payload);
    out
}

/// `depth` groups of field 5 nested in each other as an unknown field, the innermost holding
/// a varint or nothing.
fn nested_groups(depth: usize, content: bool) -> Vec<u8> {
    let mut out = vec![0x2B; depth];
    if content {
        out.extend_from_slice(&[0x08, 0x01]);
    }
    out.extend(std::iter::repeat_n(0x2C, depth));
    out
}

/// Unknown fields encoded as groups (proto2's wire types 3 and 4; prost, protobuf-go and the
/// C++ parser skip them) at every message level the decoder walks: both decoders accept the
/// request and agree on it. Before, the wire decoder refused the whole request.
#[test]
fn unknown_group_fields_are_skipped_as_prost_skips_them() {
    let cfg = config();
    let span = Span {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        name: "GET /x".into(),
        kind: 2,
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_000_005_000_000,
        attributes: vec![kv_str("http.request.method", "GET")],
        status: Some(Status {
            code: 2,
            message: "m".into(),
        }),
        ..Default::default()
    };
    let tag = |field: u32, wire_type: u32| {
        let (mut t, mut out) = ((field << 3) | wire_type, Vec::new());
        while t >= 0x80 {
            out.push((t as u8) | 0x80);
            t >>= 7;
        }
        out.push(t as u8);
        out
    };
    // An unknown field's start and end tags around a varint, a fixed64, a string and a nested
    // group.
    let group = |field: u32| {
        let mut g = tag(field, 3);
        g.extend_from_slice(&[0x08, 0x96, 0x01, 0x11]);
        g.extend_from_slice(&[7; 8]);
        g.extend_from_slice(&[0x1A, 0x02, b'h', b'i', 0x23, 0x28, 0x05, 0x24]);
        g.extend(tag(field, 4));
        g
    };
    let kv = [
        field(0x0A, b"http.route"),
        group(14),
        field(0x12, &[field(0x0A, b"/x"), group(9)].concat()),
    ]
    .concat();
    let span_bytes = [span.encode_to_vec(), group(20), field(0x4A, &kv)].concat();
    let scope = [group(15), field(0x12, &span_bytes), group(4)].concat();
    let resource = [
        field(0x0A, &kv_str("service.name", "checkout").encode_to_vec()),
        group(7),
    ]
    .concat();
    let rs = [field(0x0A, &resource), group(12), field(0x12, &scope)].concat();
    let bytes = [
        group(3),
        field(0x0A, &rs),
        group(2),
        nested_groups(99, true),
    ]
    .concat();

    let decoded = ExportTraceServiceRequest::decode(&bytes[..]).expect("prost skips groups");
    let (want, want_tally) = reference(&decoded, &cfg);
    assert_eq!(want.len(), 1, "{want_tally:?}");
    assert_eq!(want[0].operation.to_string_lossy(), "GET /x");
    let (mut got, mut tally) = (Vec::new(), Tally::default());
    decode_traces(&bytes, &cfg, &mut got, &mut tally).unwrap();
    assert_eq!((got, tally), (want, want_tally));
}

/// Nesting: both accept as deep as prost's recursion limit allows (a group's fields count one
/// level deeper than the group) and refuse one level more.
#[test]
fn group_nesting_limit_matches_prost() {
    let cases = [
        (1, true, true),
        (99, true, true),
        (100, true, false),
        (100, false, true),
        (101, false, false),
        (5_000, true, false),
    ];
    for (depth, content, accepted) in cases {
        let bytes = nested_groups(depth, content);
        assert_eq!(
            ExportTraceServiceRequest::decode(&bytes[..]).is_ok(),
            accepted,
            "prost at depth {depth} (content: {content})"
        );
        let ours = decode_traces(&bytes, &config(), &mut Vec::new(), &mut Tally::default());
        assert_eq!(
            ours.is_ok(),
            accepted,
            "wire decoder at depth {depth}: {ours:?}"
        );
    }
}

/// An `AnyValue` that sets two oneof members keeps the last, and a `KeyValue` with two values
/// merges them (a later one without a member keeps the earlier value): prost's rules.
#[test]
fn repeated_and_conflicting_values_follow_protobuf_merge_rules() {
    let cfg = config();
    let any = |members: &[Vec<u8>]| members.concat();
    let string = |s: &str| field(0x0A, s.as_bytes());
    let boolean = vec![0x10, 0x01];
    // (AnyValue occurrences of the `http.route` KeyValue, the operation both must derive).
    let cases: Vec<(Vec<Vec<u8>>, &str)> = vec![
        (vec![any(&[string("/a"), boolean.clone()])], "GET"),
        (vec![any(&[boolean.clone(), string("/b")])], "GET /b"),
        (vec![string("/c"), vec![]], "GET /c"),
        (vec![string("/c"), string("/d")], "GET /d"),
        (vec![string("/c"), boolean.clone()], "GET"),
        (
            vec![any(&[string(&"r".repeat(200)), vec![0x18, 0x05]])],
            "GET",
        ),
    ];
    for (values, want_op) in cases {
        let mut kv = field(0x0A, b"http.route");
        for v in &values {
            kv.extend(field(0x12, v));
        }
        let span = Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            name: "GET".into(),
            kind: 2,
            attributes: vec![kv_str("http.request.method", "GET")],
            ..Default::default()
        };
        let span_bytes = [span.encode_to_vec(), field(0x4A, &kv)].concat();
        let rs = [
            field(
                0x0A,
                &field(0x0A, &kv_str("service.name", "checkout").encode_to_vec()),
            ),
            field(0x12, &field(0x12, &span_bytes)),
        ]
        .concat();
        let bytes = field(0x0A, &rs);
        let decoded = ExportTraceServiceRequest::decode(&bytes[..]).unwrap();
        let (want, want_tally) = reference(&decoded, &cfg);
        let (mut got, mut tally) = (Vec::new(), Tally::default());
        decode_traces(&bytes, &cfg, &mut got, &mut tally).unwrap();
        assert_eq!(want[0].operation.to_string_lossy(), want_op, "{values:x?}");
        assert_eq!((got, tally), (want, want_tally), "{values:x?}");
    }
}

/// Sampled spans carry their adjusted count through both decoders: the `tracestate` threshold
/// first, then a legacy attribute, else 1.
#[test]
fn sampled_spans_carry_their_adjusted_count() {
    let cfg = config();
    let span = |trace_state: &str, attrs: Vec<KeyValue>| Span {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        name: "GET /x".into(),
        kind: 2,
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_000_010_000_000,
        trace_state: trace_state.into(),
        attributes: attrs,
        ..Default::default()
    };
    let prob = |p: f64| KeyValue {
        key: "sampling.probability".into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::DoubleValue(p)),
        }),
        ..Default::default()
    };
    let cases: Vec<(Span, u32)> = vec![
        (span("", vec![]), 1),
        (span("ot=th:c", vec![]), 4),
        (span("vendor=1,ot=th:e666666666666", vec![]), 10),
        (span("ot=p:3", vec![]), 8),
        (span("", vec![kv_int("SampleRate", 20)]), 20),
        (span("", vec![prob(0.25)]), 4),
        // The tracestate wins over a legacy attribute; garbage counts once.
        (span("ot=th:8", vec![kv_int("SampleRate", 20)]), 2),
        (span("ot=th:zz", vec![]), 1),
        (span("", vec![prob(0.0)]), 1),
    ];
    for (s, want) in cases {
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv_str("service.name", "checkout")],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: vec![s.clone()],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let bytes = req.encode_to_vec();
        let (mut got, mut tally) = (Vec::new(), Tally::default());
        decode_traces(&bytes, &cfg, &mut got, &mut tally).unwrap();
        assert_eq!(got.len(), 1, "{s:?}");
        assert_eq!(got[0].adjusted_count, want, "{s:?}");
        // OTLP/JSON says the same.
        let json = serde_json::json!({"resourceSpans": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "checkout"}}]},
            "scopeSpans": [{"spans": [{
                "traceId": "01010101010101010101010101010101",
                "spanId": "0202020202020202",
                "name": "GET /x",
                "kind": 2,
                "startTimeUnixNano": "1700000000000000000",
                "endTimeUnixNano": "1700000000010000000",
                "traceState": s.trace_state,
                "attributes": s.attributes.iter().map(|kv| {
                    let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                        Some(any_value::Value::IntValue(i)) => serde_json::json!({"intValue": i.to_string()}),
                        Some(any_value::Value::DoubleValue(d)) => serde_json::json!({"doubleValue": d}),
                        _ => serde_json::json!({}),
                    };
                    serde_json::json!({"key": kv.key, "value": v})
                }).collect::<Vec<_>>(),
            }]}]
        }]});
        let parsed = slogate_ingest::json::parse(json.to_string().as_bytes()).unwrap();
        let (mut got, mut tally) = (Vec::new(), Tally::default());
        slogate_ingest::json::extract_request(&parsed, &cfg, &mut got, &mut tally);
        assert_eq!(got.len(), 1, "{json}");
        assert_eq!(got[0].adjusted_count, want, "JSON: {json}");
    }
    // proto3 JSON may write a double as a string; an unreadable one is no value, not a 400.
    for (value, want) in [("\"0.25\"", 4), ("\"NaN\"", 1), ("\"x\"", 1)] {
        let json = format!(
            r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"checkout"}}}}]}},"scopeSpans":[{{"spans":[{{"traceId":"01010101010101010101010101010101","spanId":"0202020202020202","name":"GET /x","kind":2,"startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000010000000","attributes":[{{"key":"sampling.probability","value":{{"doubleValue":{value}}}}}]}}]}}]}}]}}"#
        );
        let parsed = slogate_ingest::json::parse(json.as_bytes()).expect(&json);
        let (mut got, mut tally) = (Vec::new(), Tally::default());
        slogate_ingest::json::extract_request(&parsed, &cfg, &mut got, &mut tally);
        assert_eq!(got[0].adjusted_count, want, "{json}");
    }
}
