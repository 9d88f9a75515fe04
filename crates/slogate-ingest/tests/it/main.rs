//! Integration tests of the ingest crate: the wire fast paths against prost (the reference
//! decoder), decoder robustness on hostile input, the receivers over real connections, and the
//! metrics decoder's allocation count.

mod differential;
mod grpc_framing;
mod hostile;
mod metrics_alloc;
mod metrics_attributes;
mod metrics_differential;
mod metrics_hostile;
mod metrics_receivers;
mod metrics_support;
mod overload;
