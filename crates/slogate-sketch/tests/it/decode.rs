//! Decoder robustness: arbitrary and mutated bytes never panic, and failed merges change nothing.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use slogate_sketch::Sketch;

use crate::sketch_of;

#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(Index, u8),
    Set(Index, u8),
    Insert(Index, u8),
    Remove(Index),
    Truncate(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<Index>().prop_map(Mutation::Remove),
        any::<Index>().prop_map(Mutation::Truncate),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    if bytes.is_empty() {
        return;
    }
    let len = bytes.len();
    match *m {
        Mutation::FlipBit(ref i, bit) => bytes[i.index(len)] ^= 1 << bit,
        Mutation::Set(ref i, b) => bytes[i.index(len)] = b,
        Mutation::Insert(ref i, b) => bytes.insert(i.index(len + 1), b),
        Mutation::Remove(ref i) => {
            bytes.remove(i.index(len));
        }
        Mutation::Truncate(ref i) => bytes.truncate(i.index(len)),
    }
}

fn value() -> impl Strategy<Value = u64> {
    (any::<u64>(), 0u32..64).prop_map(|(x, shift)| x >> shift)
}

/// Decodes and merges `bytes` into a non-empty target; whatever the outcome, the answers of
/// `decode` and `merge_encoded` agree, and an error leaves the target exactly as it was.
fn check(bytes: &[u8], target: &Sketch) -> Result<(), TestCaseError> {
    let decoded = Sketch::decode(bytes);
    let mut merged = target.clone();
    let before_heap = merged.heap_bytes();
    let result = merged.merge_encoded(bytes);
    // The trusted merge (for bytes validated earlier) never panics either, agrees on valid
    // input, and leaves a consistent sketch on any: its buckets add up to its count.
    let mut trusted = target.clone();
    trusted.merge_encoded_trusted(bytes);
    prop_assert_eq!(
        trusted.buckets().map(|(_, c)| u128::from(c)).sum::<u128>(),
        u128::from(trusted.count())
    );
    let _ = (
        trusted.quantiles([0.0, 0.5, 0.99, 1.0]),
        trusted.count_at_most(u64::MAX / 3),
    );
    if let Ok(s) = &decoded {
        let mut want = target.clone();
        want.merge(s);
        prop_assert_eq!(&trusted, &want);
    }
    match decoded {
        Ok(s) => {
            prop_assert_eq!(result, Ok(()));
            // Accepted inputs are canonical: they re-encode to the very same bytes.
            prop_assert_eq!(s.encoded(), bytes.to_vec());
            let mut want = target.clone();
            want.merge(&s);
            prop_assert_eq!(merged, want);
        }
        Err(e) => {
            prop_assert!(!e.to_string().is_empty());
            prop_assert_eq!(result, Err(e));
            prop_assert_eq!(&merged, target);
            prop_assert_eq!(merged.heap_bytes(), before_heap);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn arbitrary_bytes_never_panic(
        mut bytes in vec(any::<u8>(), 0..80),
        versioned in any::<bool>(),
        target in vec(value(), 1..50),
    ) {
        // Half the inputs get a valid version byte so they reach the deeper checks.
        if versioned {
            bytes.insert(0, 1);
        }
        check(&bytes, &sketch_of(&target))?;
    }

    #[test]
    fn mutated_encodings_never_panic(
        values in vec(value(), 0..60),
        mutations in vec(mutation(), 1..4),
        target in vec(value(), 1..50),
    ) {
        let mut bytes = sketch_of(&values).encoded();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        check(&bytes, &sketch_of(&target))?;
    }
}
