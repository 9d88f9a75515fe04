//! The receivers' gzip path: the first two bytes are the decompressed-size limit (little
//! endian), the rest the compressed body. The output never exceeds the limit, matches flate2's
//! own decoding whenever it is accepted, and an over-limit body is reported as too large, never
//! as decoded. Never panics; libFuzzer's `-malloc_limit_mb` catches allocations past the limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use slogate_ingest::{IngestError, gunzip};
use std::io::Read;

fuzz_target!(|data: &[u8]| {
    let Some((limit, body)) = data.split_first_chunk::<2>() else {
        return;
    };
    let limit = usize::from(u16::from_le_bytes(*limit));
    // flate2 unbounded, but read only one byte past the limit: what the receiver must agree with.
    let mut reference = Vec::new();
    let reference = flate2::read::GzDecoder::new(body)
        .take(limit as u64 + 1)
        .read_to_end(&mut reference)
        .map(|_| reference);
    match gunzip(body, limit, "gzip body") {
        Ok(out) => {
            assert!(out.len() <= limit);
            assert_eq!(Some(&out), reference.as_ref().ok());
        }
        Err(IngestError::TooLarge { limit: l, inflated }) => {
            assert!(inflated && l == limit);
            assert!(reference.is_ok_and(|r| r.len() > limit));
        }
        Err(IngestError::Malformed(msg)) => {
            assert!(msg.starts_with("corrupt gzip body: "), "{msg}");
            assert!(reference.is_err());
        }
        Err(e) => panic!("unexpected error {e:?}"),
    }
});
