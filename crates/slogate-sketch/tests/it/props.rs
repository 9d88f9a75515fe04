//! Property tests: merge algebra, encoding round trips, quantile and threshold-count bounds.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use slogate_sketch::{Sketch, bucket_index, bucket_lower, bucket_upper, nearest_rank};

use crate::{assert_close, exact_quantile, sketch_of};

/// Values of every magnitude: exact small buckets, then roughly log-uniform up to `u64::MAX`.
fn value() -> impl Strategy<Value = u64> {
    prop_oneof![
        2 => 0u64..300,
        6 => (any::<u64>(), 0u32..64).prop_map(|(x, shift)| x >> shift),
        1 => Just(u64::MAX),
    ]
}

/// One vector cut into three parts at two random points.
fn three_parts() -> impl Strategy<Value = (Vec<u64>, Vec<u64>, Vec<u64>)> {
    (vec(value(), 0..300), any::<Index>(), any::<Index>()).prop_map(|(v, i, j)| {
        let (mut a, mut b) = (i.index(v.len() + 1), j.index(v.len() + 1));
        if a > b {
            std::mem::swap(&mut a, &mut b);
        }
        (v[..a].to_vec(), v[a..b].to_vec(), v[b..].to_vec())
    })
}

fn merged(a: &Sketch, b: &Sketch) -> Sketch {
    let mut out = a.clone();
    out.merge(b);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn merge_is_exact_associative_and_commutative((a, b, c) in three_parts()) {
        let (sa, sb, sc) = (sketch_of(&a), sketch_of(&b), sketch_of(&c));
        let left = merged(&sa, &merged(&sb, &sc));
        let right = merged(&merged(&sa, &sb), &sc);
        prop_assert_eq!(&left, &right);
        prop_assert_eq!(left.encoded(), right.encoded());
        prop_assert_eq!(merged(&sa, &sb), merged(&sb, &sa));
        prop_assert_eq!(merged(&sa, &sb).encoded(), merged(&sb, &sa).encoded());
        let whole = sketch_of(&[a, b, c].concat());
        prop_assert_eq!(&left, &whole);
        prop_assert_eq!(left.encoded(), whole.encoded());
    }

    #[test]
    fn encode_decode_roundtrip((a, b, c) in three_parts()) {
        let s = sketch_of(&[a, b, c].concat());
        let bytes = s.encoded();
        let decoded = Sketch::decode(&bytes).unwrap();
        prop_assert_eq!(&decoded, &s);
        prop_assert_eq!(decoded.encoded(), bytes.clone());
        let mut appended = vec![0xAA];
        s.encode(&mut appended);
        prop_assert_eq!(&appended[1..], &bytes[..]);
    }

    #[test]
    fn merge_encoded_equals_merge((a, b, c) in three_parts()) {
        let (sa, sb, sc) = (sketch_of(&a), sketch_of(&b), sketch_of(&c));
        let mut via_bytes = sa.clone();
        via_bytes.merge_encoded(&sb.encoded()).unwrap();
        via_bytes.merge_encoded(&sc.encoded()).unwrap();
        prop_assert_eq!(via_bytes, merged(&merged(&sa, &sb), &sc));
    }

    #[test]
    fn merge_parts_equals_merge((a, b, c) in three_parts()) {
        // Bucket counts handed over in any order and split in pieces merge like the sketch.
        let (sa, sb) = (sketch_of(&a), sketch_of(&b));
        let mut parts = sa.clone();
        if let (Some(min), Some(max)) = (sb.min(), sb.max()) {
            let mut pieces: Vec<(u16, u64)> = sb.buckets().flat_map(|(i, n)| [(i, n / 2), (i, n - n / 2)]).collect();
            pieces.reverse();
            parts.merge_parts(sb.sum(), min, max, pieces);
        }
        prop_assert_eq!(&parts, &merged(&sa, &sb));
        let mut trusted = sa.clone();
        trusted.merge_encoded_trusted(&sb.encoded());
        trusted.merge_encoded_trusted(&sketch_of(&c).encoded());
        prop_assert_eq!(trusted, merged(&merged(&sa, &sb), &sketch_of(&c)));
    }

    #[test]
    fn quantiles_within_relative_error(values in vec(value(), 1..400), qs in vec(0.0f64..=1.0, 1..20)) {
        let s = sketch_of(&values);
        let mut sorted = values.clone();
        sorted.sort_unstable();
        for q in qs.into_iter().chain([0.0, 1.0]) {
            let exact = exact_quantile(&sorted, q).unwrap();
            let got = s.quantile(q).unwrap();
            assert_close(got, exact, &format!("q={q}"));
            prop_assert!(got >= sorted[0] && got <= sorted[sorted.len() - 1]);
            // Reading back the quantile as a threshold covers at least its rank.
            prop_assert!(s.count_at_most(got) >= nearest_rank(q, s.count()).unwrap());
        }
    }

    #[test]
    fn every_rank_is_within_relative_error(values in vec(value(), 1..400)) {
        let s = sketch_of(&values);
        let mut sorted = values.clone();
        sorted.sort_unstable();
        for (i, &exact) in sorted.iter().enumerate() {
            let got = s.value_at_rank(i as u64 + 1).unwrap();
            assert_close(got, exact, &format!("rank {}", i + 1));
        }
        prop_assert_eq!(s.value_at_rank(0), None);
        prop_assert_eq!(s.value_at_rank(sorted.len() as u64 + 1), None);
    }

    #[test]
    fn one_pass_quantiles_equal_single_ones(
        values in vec(value(), 0..300),
        qs in proptest::array::uniform5(prop_oneof![4 => -0.5f64..1.5, 1 => Just(f64::NAN)]),
    ) {
        let s = sketch_of(&values);
        prop_assert_eq!(s.quantiles(qs), qs.map(|q| s.quantile(q)));
    }

    #[test]
    fn count_at_most_is_bucket_exact_and_monotone(values in vec(value(), 0..300), extra in vec(value(), 0..20)) {
        let s = sketch_of(&values);
        let n = values.len() as u64;
        let mut probes: Vec<u64> = values.iter().flat_map(|&v| [v.saturating_sub(1), v, v.saturating_add(1)]).collect();
        probes.extend(extra);
        probes.extend([0, 255, 256, u64::MAX]);
        probes.sort_unstable();
        let mut prev = 0;
        for v in probes {
            let got = s.count_at_most(v);
            let idx = bucket_index(v);
            let below = values.iter().filter(|&&x| x < bucket_lower(idx)).count() as u64;
            let through = values
                .iter()
                .filter(|&&x| bucket_index(x) <= idx)
                .count() as u64;
            let exact = values.iter().filter(|&&x| x <= v).count() as u64;
            prop_assert!(below <= got && got <= through, "v={} got={} not in [{}, {}]", v, got, below, through);
            if v < 256 || values.iter().all(|&x| x > v) || values.iter().all(|&x| x <= v) {
                prop_assert_eq!(got, exact, "v={} should be exact", v);
            }
            prop_assert!(got >= prev, "not monotone at {}", v);
            prev = got;
        }
        prop_assert_eq!(s.count_at_most(u64::MAX), n);
        prop_assert_eq!(bucket_upper(bucket_index(u64::MAX)), u64::MAX);
    }

    #[test]
    fn clear_then_rerecord_does_not_reallocate(values in vec(value(), 1..300)) {
        let mut s = sketch_of(&values);
        let bytes = s.heap_bytes();
        s.clear();
        prop_assert!(s.is_empty());
        prop_assert_eq!(s.heap_bytes(), bytes);
        for &v in values.iter().rev() {
            s.record(v);
        }
        prop_assert_eq!(s.heap_bytes(), bytes);
        prop_assert_eq!(s, sketch_of(&values));
    }
}
