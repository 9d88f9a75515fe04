//! Integration tests for `slogate-sketch`: accuracy on realistic distributions, algebraic
//! properties of merge and encoding, and decoder robustness against hostile bytes.

mod accuracy;
mod decode;
mod props;

use slogate_sketch::{RELATIVE_ERROR, Sketch, nearest_rank};

pub fn sketch_of(values: &[u64]) -> Sketch {
    let mut s = Sketch::new();
    for &v in values {
        s.record(v);
    }
    s
}

/// Asserts `got` is within the sketch's relative error of `exact` (values below 256 are exact).
pub fn assert_close(got: u64, exact: u64, context: &str) {
    if exact < 256 {
        assert_eq!(got, exact, "{context}: small values are exact");
        return;
    }
    let err = (got as f64 - exact as f64).abs() / exact as f64;
    assert!(
        err <= RELATIVE_ERROR + 1e-9,
        "{context}: got {got}, exact {exact}, relative error {err:.6} > {RELATIVE_ERROR:.6}"
    );
}

/// Nearest-rank quantile of already sorted values.
pub fn exact_quantile(sorted: &[u64], q: f64) -> Option<u64> {
    nearest_rank(q, sorted.len() as u64).map(|r| sorted[(r - 1) as usize])
}
