//! OTLP trace ingest: the gRPC and HTTP receivers, the protobuf fast path, OTLP/JSON, and the
//! span → observation rules. Only this crate knows OTLP.
//!
//! Design decisions:
//! - **Wire-level decoding.** [`wire`] walks the protobuf bytes and reads only the fields the
//!   extraction rules need; observations borrow from the request buffer, so a span costs no
//!   allocation. OTLP/JSON ([`json`]) is the slow path and shares the rules in [`extract`].
//! - **A request is all or nothing on structure, per span on content.** Malformed protobuf or
//!   JSON rejects the whole request before anything is recorded; invalid spans (bad ids, end
//!   before start, longer than [`SpanLimits::max_duration`], no service, a dimension value that
//!   is not valid UTF-8) are rejected one by one and reported in `partial_success`.
//! - **Dimension values are valid UTF-8.** Series keys end each dimension with `0xFF`, a byte
//!   UTF-8 never holds; both decoders keep strings as raw bytes and the shared rules reject a
//!   span whose service, env, version, operation or extra value is not UTF-8, so no value can
//!   carry a separator into another series. The check is an OR over the (short) values and the
//!   resource's values are checked once per resource.
//! - **Protobuf as the spec parses it.** Unknown fields are skipped whatever their wire type,
//!   groups included (to prost's nesting limit), and repeated or conflicting message fields
//!   merge as protobuf merges them: whatever prost accepts, the fast path accepts and reads
//!   alike (checked against prost by the differential tests and the `wire_decoder` fuzz target).
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

pub use extract::SpanLimits;
pub use pipeline::{IngestError, IngestLimits, Pipeline, Transport, gunzip};
pub use stats::{IngestStats, LatencyHistogram, RequestOutcome};
