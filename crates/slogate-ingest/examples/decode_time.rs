//! Decodes one OTLP request N times and prints the wall time per span: a quick check of the
//! decode fast path that builds in seconds (no DataFusion), for before/after comparisons run
//! back to back. Instructions per span: `benches/examples/decode_loop.rs` under callgrind.
//!
//! ```sh
//! SLOGATE_DUMP_REQUEST=/tmp/req.pb cargo bench -p slogate-benches --bench ingest -- --list
//! cargo build --release -p slogate-ingest --example decode_time
//! target/release/examples/decode_time /tmp/req.pb 3000
//! ```

use slogate_ingest::extract::{ExtractConfig, Tally};
use slogate_ingest::wire;

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .expect("usage: decode_loop REQUEST.pb ITERATIONS");
    let n: usize = args
        .next()
        .and_then(|s| s.parse().ok())
        .expect("iterations");
    let bytes = std::fs::read(path).expect("read the request");
    let cfg = ExtractConfig::default();
    let mut out = Vec::with_capacity(1024);
    let mut spans = 0;
    let t0 = std::time::Instant::now();
    for _ in 0..n {
        out.clear();
        let mut tally = Tally::default();
        wire::decode_traces(std::hint::black_box(&bytes), &cfg, &mut out, &mut tally)
            .expect("valid request");
        spans = tally.recorded + tally.skipped;
        std::hint::black_box(&out);
    }
    let dt = t0.elapsed();
    println!("{spans} spans per request, {n} iterations, {:.1} ns per span", dt.as_nanos() as f64 / (n as f64 * spans as f64));
}
