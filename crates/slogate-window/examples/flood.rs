//! What a cardinality flood costs per span against normal traffic, through the real ingest
//! pipeline into the registry: the allocation tests' 512-span requests over 4 services, either
//! on their 8 known operations or with a new route every span and a new version every request
//! (over the caps).
//!
//! `cargo run --release -p slogate-window --example flood` (figures in BENCHMARKS.md).

// The requests and the pipeline of the allocation tests.
#[path = "../tests/it/requests.rs"]
mod requests;

use requests::{pipeline, request_with};
use slogate_window::WindowConfig;
use std::time::Instant;

/// Nanoseconds per span over `rounds` requests, after 20 warm-up requests.
fn measure(flood: bool, rounds: u64) -> f64 {
    let cfg = WindowConfig {
        max_series_per_service: 16,
        max_overflow_series_per_service: 2,
        ..WindowConfig::default()
    };
    let (_, pipeline) = pipeline(cfg);
    for seed in 1..=20 {
        pipeline.process(&request_with(seed, flood), false).unwrap();
    }
    let requests: Vec<Vec<u8>> = (0..rounds).map(|r| request_with(100 + r, flood)).collect();
    let started = Instant::now();
    for body in &requests {
        pipeline.process(body, false).unwrap();
    }
    started.elapsed().as_nanos() as f64 / (rounds * 512) as f64
}

fn main() {
    let rounds = 2_000;
    // Alternate, so a noisy neighbour hits both alike.
    let (mut normal, mut flood) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        normal.push(measure(false, rounds));
        flood.push(measure(true, rounds));
    }
    normal.sort_by(f64::total_cmp);
    flood.sort_by(f64::total_cmp);
    println!(
        "ns per span, median of 5 runs of {rounds} requests: normal {:.1}, flood over the caps {:.1} (ratio {:.2})",
        normal[2],
        flood[2],
        flood[2] / normal[2]
    );
}
