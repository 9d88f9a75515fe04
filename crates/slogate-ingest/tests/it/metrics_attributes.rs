//! Point attributes on the protobuf fast path, beyond what the differential test generates:
//! many attributes (the large-n sort), keys that share long prefixes or hold NUL bytes, the
//! per-position key cache across points, integers of every size, and UTF-8 checks that only
//! the kept value of a repeated key is subject to.

use crate::metrics_differential::fast;
use crate::metrics_support::{
    any, gauge, kv, number, render_attributes, request, resource_metrics,
};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::NumberDataPoint;
use prost::Message;
use slogate_ingest::extract::ExtractConfig;
use slogate_ingest::metrics::{MetricDim, PointReject};

const SVC: &[(&str, &str)] = &[("service.name", "svc")];

fn int(k: &str, i: i64) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: any(any_value::Value::IntValue(i)),
        ..Default::default()
    }
}

/// A deterministic shuffle of attribute lists with repeated keys and awkward ones.
fn attr_lists() -> Vec<Vec<KeyValue>> {
    let keys = [
        "http.request.method",
        "http.request.body.size",
        "http.response.status_code",
        "http.route",
        "http.",
        "http",
        "",
        "a\0",
        "a",
        "a\0\0\0\0\0\0\0\0b",
        "a\0\0\0\0\0\0\0\0",
        "zz",
        "é.key",
    ];
    let mut lists = Vec::new();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for n in [0usize, 1, 2, 5, 15, 16, 17, 18, 40, 127, 128] {
        for _ in 0..3 {
            let list = (0..n)
                .map(|i| {
                    let r = next();
                    let key = if r % 3 == 0 {
                        keys[(r >> 8) as usize % keys.len()].to_string()
                    } else {
                        format!("k{}", (r >> 8) % 200)
                    };
                    match (r >> 20) % 4 {
                        0 => int(
                            &key,
                            [0i64, 7, 42, 999, 1000, -1, 1 << 40, i64::MIN, i64::MAX]
                                [(r >> 24) as usize % 9],
                        ),
                        1 => kv(&key, &format!("v{i}")),
                        2 => kv(&key, "/api/v1/items/é"),
                        _ => KeyValue {
                            key,
                            value: any(any_value::Value::BoolValue(r & 1 == 0)),
                            ..Default::default()
                        },
                    }
                })
                .collect();
            lists.push(list);
        }
    }
    lists
}

#[test]
fn attributes_are_sorted_deduplicated_and_rendered_like_the_reference() {
    let cfg = ExtractConfig::default();
    let lists = attr_lists();
    // All lists as points of one metric (so the key cache carries keys from point to point),
    // and each list twice in a row (so it hits).
    let points: Vec<NumberDataPoint> = lists
        .iter()
        .flat_map(|l| [l.clone(), l.clone()])
        .map(|attributes| NumberDataPoint {
            attributes,
            ..number(1.0)
        })
        .collect();
    let req = request(vec![resource_metrics(SVC, vec![gauge("g", points)])]);
    let (got, tally) = fast(&req.encode_to_vec(), &cfg).unwrap();
    assert_eq!(tally.total_rejected(), 0, "{:?}", tally.message());
    let want: Vec<_> = lists
        .iter()
        .flat_map(|l| [render_attributes(l), render_attributes(l)])
        .collect();
    let got: Vec<_> = got.into_iter().map(|p| p.attributes).collect();
    assert_eq!(got, want);
}

#[test]
fn only_the_kept_value_of_a_repeated_key_must_be_utf8() {
    let cfg = ExtractConfig::default();
    let cases: [(Vec<KeyValue>, bool); 5] = [
        // An invalid value replaced by a valid one: kept.
        (vec![kv("k", "bad#x"), kv("a", "1"), kv("k", "good")], true),
        // A valid value replaced by an invalid one: rejected.
        (vec![kv("k", "good"), kv("k", "bad#x")], false),
        // An invalid key: rejected, whatever its value.
        (vec![kv("a", "1"), int("key#x", 3)], false),
        (vec![kv("key#x", "1")], false),
        // Many attributes (the large-n sort) with an invalid value replaced.
        (
            (0..40)
                .map(|i| kv(&format!("k{}", i % 20), if i < 20 { "bad#x" } else { "ok" }))
                .collect(),
            true,
        ),
    ];
    for (attrs, kept) in cases {
        // The same key layout as a valid point first, so the key cache holds the keys.
        let valid: Vec<KeyValue> = attrs
            .iter()
            .map(|a| kv(&a.key.replace('#', "_"), "v"))
            .collect();
        let points = vec![
            NumberDataPoint {
                attributes: valid,
                ..number(1.0)
            },
            NumberDataPoint {
                attributes: attrs.clone(),
                ..number(2.0)
            },
        ];
        let req = request(vec![resource_metrics(SVC, vec![gauge("g", points)])]);
        let mut bytes = req.encode_to_vec();
        for i in 0..bytes.len().saturating_sub(1) {
            if &bytes[i..i + 2] == b"#x" {
                bytes[i] = 0xFF;
            }
        }
        let (got, tally) = fast(&bytes, &cfg).unwrap();
        if kept {
            assert_eq!(got.len(), 2, "{attrs:?}");
            assert_eq!(got[1].attributes, render_attributes(&attrs), "{attrs:?}");
        } else {
            assert_eq!(got.len(), 1, "{attrs:?}");
            assert_eq!(
                tally.first_reject.map(|r| r.0),
                Some(PointReject::InvalidUtf8(MetricDim::Attribute)),
                "{attrs:?}"
            );
        }
    }
}
