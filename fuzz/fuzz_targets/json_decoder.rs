//! OTLP/JSON: any body either fails to parse or extracts observations that keep the invariants
//! of `check_observations` (valid UTF-8 dimensions, canonical series keys). Never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use slogate_fuzz::{check_observations, config};
use slogate_ingest::extract::Tally;
use slogate_ingest::json;

fuzz_target!(|data: &[u8]| {
    let cfg = config();
    if let Ok(req) = json::parse(data) {
        let (mut out, mut tally) = (Vec::new(), Tally::default());
        json::extract_request(&req, &cfg, &mut out, &mut tally);
        check_observations(&out, &tally, cfg.extras.len());
    }
});
