//! Holder crate for the cross-crate criterion benchmarks in `benches/`.
