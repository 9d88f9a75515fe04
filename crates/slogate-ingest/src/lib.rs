//! OTLP trace ingest: the gRPC and HTTP receivers, the protobuf fast path, OTLP/JSON, and the
//! span → observation rules. Only this crate knows OTLP.
//!
//! Design decisions:
//! - **Wire-level decoding.** [`wire`] walks the protobuf bytes and reads only the fields the
//!   extraction rules need; observations borrow from the request buffer, so a span costs no
//!   allocation. OTLP/JSON ([`json`]) is the slow path and shares the rules in [`extract`].
//! - **A request is all or nothing on structure, per span on content.** Malformed protobuf or
//!   JSON rejects the whole request before anything is recorded; invalid spans (bad ids, end
//!   before start, no service) are rejected one by one and reported in `partial_success`.
//! - **Bounded.** Request bodies are capped before and after decompression; at most
//!   `max_inflight_requests` requests are decoded at once, and the next one is refused with the
//!   signal clients retry on (gRPC `UNAVAILABLE` with `RetryInfo`, HTTP 503 with `Retry-After`).
//! - **Status codes follow the OTLP spec**, not the library defaults: tonic's `OUT_OF_RANGE` for
//!   an oversized message becomes `RESOURCE_EXHAUSTED`, a corrupt gzip stream `INVALID_ARGUMENT`.

pub mod extract;
pub mod grpc;
pub mod http;
pub mod json;
mod pipeline;
mod stats;
pub mod wire;

pub use pipeline::{IngestError, IngestLimits, Pipeline, Transport};
pub use stats::{IngestStats, LatencyHistogram, RequestOutcome};
