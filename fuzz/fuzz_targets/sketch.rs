//! `Sketch::decode` and merges of decoded sketches. The first byte is the length of the first
//! encoded sketch, the rest is the second. Accepted bytes re-encode to themselves (the format is
//! canonical); merging decoded sketches is commutative and agrees with `merge_encoded`; the
//! trusted merge never panics on any bytes and leaves a sketch that encodes and decodes again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use slogate_sketch::Sketch;

fn roundtrips(s: &Sketch) {
    let bytes = s.encoded();
    assert_eq!(Sketch::decode(&bytes).as_ref(), Ok(s));
    let _ = s.quantiles([0.0, 0.5, 0.9, 0.99, 0.999, 1.0]);
    let _ = (s.mean(), s.min(), s.max());
}

/// Whether the counts and sums of two sketches add without overflow: then `merge` is exact
/// (and commutative); otherwise it clips the counts (and `merge_encoded` refuses).
fn mergeable(a: &Sketch, b: &Sketch) -> bool {
    a.count().checked_add(b.count()).is_some() && a.sum().checked_add(b.sum()).is_some()
}

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let (first, second) = rest.split_at(usize::from(n).min(rest.len()));
    let decoded = [Sketch::decode(first), Sketch::decode(second)];
    for (bytes, d) in [first, second].iter().zip(&decoded) {
        if let Ok(s) = d {
            assert_eq!(&s.encoded(), bytes, "accepted bytes are not canonical");
            roundtrips(s);
        }
    }
    if let [Ok(a), Ok(b)] = &decoded {
        let mut by_bytes = a.clone();
        let checked = by_bytes.merge_encoded(second);
        if mergeable(a, b) {
            let (mut ab, mut ba) = (a.clone(), b.clone());
            ab.merge(b);
            ba.merge(a);
            assert_eq!(ab, ba, "merge is not commutative");
            assert_eq!(checked, Ok(()));
            assert_eq!(by_bytes, ab, "merge_encoded and merge disagree");
            assert_eq!(ab.count(), a.count() + b.count());
            roundtrips(&ab);
        } else {
            assert!(checked.is_err(), "an overflowing merge was accepted");
            assert_eq!(&by_bytes, a, "a refused merge changed the sketch");
            let mut clipped = a.clone();
            clipped.merge(b);
            assert_eq!(clipped.count(), u64::MAX);
            roundtrips(&clipped);
        }
    }
    // Trusted merges of arbitrary bytes: no panic, and the result encodes to bytes that decode
    // back to it (a sum the merged values cannot have is moved into their range, also when the
    // count saturates at u64::MAX: once a finding of this target, see fuzz/README.md).
    let mut acc = Sketch::new();
    acc.merge_encoded_trusted(first);
    acc.merge_encoded_trusted(second);
    let _ = acc.quantiles([0.0, 0.5, 0.9, 0.99, 0.999, 1.0]);
    match Sketch::decode(&acc.encoded()) {
        Ok(back) => assert_eq!(back, acc),
        Err(e) => panic!("a trusted merge left a sketch that does not decode: {e}"),
    }
});
