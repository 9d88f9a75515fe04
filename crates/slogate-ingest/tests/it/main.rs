//! Integration tests of the ingest crate: the wire fast path against prost (the reference
//! decoder), and decoder robustness on hostile input.

mod differential;
mod grpc_framing;
mod hostile;
mod overload;
