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
        (0u64..1_000_000, 0u64..10_000_000_000),
        prop::collection::vec(arb_attr(), 0..8),
        prop::option::of(0i32..3),
    )
        .prop_map(
            |(trace_id, span_id, name, kind, (start, dur), attributes, code)| Span {
                trace_id,
                span_id,
                name: name.into(),
                kind,
                start_time_unix_nano: 1_700_000_000_000_000_000 + start,
                // Some spans end before they start.
                end_time_unix_nano: (1_700_000_000_000_000_000 + start + dur)
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
        (b"\x13", "unsupported wire type at byte 1"),
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
