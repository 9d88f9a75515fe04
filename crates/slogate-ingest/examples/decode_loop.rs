//! Decodes one OTLP request N times and prints the wall time per span. Two uses: before/after
//! timings of the decode fast path run back to back (it builds in seconds, no DataFusion), and
//! instruction counts under callgrind, which do not move with the machine's other load.
//!
//! ```sh
//! SLOGATE_DUMP_REQUEST=/tmp/req.pb cargo bench -p slogate-benches --bench ingest -- --list
//! cargo build --release -p slogate-ingest --example decode_loop
//! target/release/examples/decode_loop /tmp/req.pb 3000
//! for n in 100 200; do valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$n \
//!     target/release/examples/decode_loop /tmp/req.pb $n; done
//! # instructions per span = (total(200) - total(100)) / (100 * spans)
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
    println!(
        "{spans} spans per request, {n} iterations, {:.1} ns per span",
        dt.as_nanos() as f64 / (n as f64 * spans as f64)
    );
}
